// Registrations per day as an SVG bar chart, drawn here: no charting library.
import { svg } from "./dom.js";
import { day, t } from "./i18n.js";

export const CHART_DAYS = 30;

export function lastDays(perDay) {
  const known = Object.keys(perDay).sort();
  const today = new Date().toISOString().slice(0, 10);
  const end = known.length && known[known.length - 1] > today ? known[known.length - 1] : today;
  const days = [];
  const cursor = new Date(end + "T00:00:00Z");
  for (let n = 0; n < CHART_DAYS; n++) {
    days.unshift(cursor.toISOString().slice(0, 10));
    cursor.setUTCDate(cursor.getUTCDate() - 1);
  }
  return days;
}

export function barChart(perDay) {
  const days = lastDays(perDay);
  const counts = days.map((date) => perDay[date] || 0);
  const top = Math.max(1, ...counts);
  const width = 600;
  const height = 140;
  const plot = height - 20;
  const step = width / days.length;
  const bars = days.map((date, n) => {
    const barHeight = counts[n] ? Math.max(2, (counts[n] / top) * (plot - 10)) : 0;
    return svg(
      "rect",
      {
        class: "bar",
        x: (n * step + 1).toFixed(1),
        y: (plot - barHeight).toFixed(1),
        width: (step - 2).toFixed(1),
        height: barHeight.toFixed(1),
        "data-day": date,
        "data-count": counts[n],
      },
      svg("title", {}, t("chart.bar", { day: day(date, "long"), count: counts[n] })),
    );
  });
  const total = counts.reduce((a, b) => a + b, 0);
  const [first, last] = [day(days[0], "short"), day(days[days.length - 1], "short")];
  const axis = { class: "label", y: height - 4 };
  return svg(
    "svg",
    {
      class: "chart",
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": t("chart.summary", { total, days: CHART_DAYS, top }),
    },
    svg("line", { class: "axis", x1: 0, y1: plot, x2: width, y2: plot }),
    bars,
    svg("text", { ...axis, x: 0 }, first),
    svg("text", { ...axis, x: width, "text-anchor": "end" }, last),
    svg("text", { ...axis, x: width / 2, "text-anchor": "middle" }, t("chart.total", { total })),
    total ? svg("text", { class: "label", x: 2, y: 10 }, t("chart.max", { top })) : null,
  );
}
