// Registrations per day as an SVG bar chart, drawn here: no charting library.
import { svg } from "./dom.js";

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
  const counts = days.map((day) => perDay[day] || 0);
  const top = Math.max(1, ...counts);
  const width = 600;
  const height = 140;
  const plot = height - 20;
  const step = width / days.length;
  const bars = days.map((day, n) => {
    const barHeight = counts[n] ? Math.max(2, (counts[n] / top) * (plot - 10)) : 0;
    return svg(
      "rect",
      {
        class: "bar",
        x: (n * step + 1).toFixed(1),
        y: (plot - barHeight).toFixed(1),
        width: (step - 2).toFixed(1),
        height: barHeight.toFixed(1),
        "data-day": day,
        "data-count": counts[n],
      },
      svg("title", {}, `${day}: ${counts[n]}`),
    );
  });
  const total = counts.reduce((a, b) => a + b, 0);
  return svg(
    "svg",
    {
      class: "chart",
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `${total} registrations in the last ${CHART_DAYS} days, at most ${top} a day`,
    },
    svg("line", { class: "axis", x1: 0, y1: plot, x2: width, y2: plot }),
    bars,
    svg("text", { class: "label", x: 0, y: height - 4 }, days[0]),
    svg("text", { class: "label", x: width, y: height - 4, "text-anchor": "end" }, days[days.length - 1]),
    svg("text", { class: "label", x: width / 2, y: height - 4, "text-anchor": "middle" }, `${total} in total`),
    total ? svg("text", { class: "label", x: 2, y: 10 }, `max ${top}/day`) : null,
  );
}
