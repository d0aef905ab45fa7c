"""Run wrk with bench/handles.lua against a URL and read back its figures.

The Lua script prints a ``wrk-json`` line from wrk's own counters and HDR histogram, so
nothing is parsed out of wrk's human-readable report (which is kept verbatim as the raw
result).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("handles.lua")
_MARK = "wrk-json "


@dataclass(frozen=True, slots=True)
class WrkRun:
    """One wrk run: throughput, latency in milliseconds, errors, and wrk's own CPU time."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # socket errors and timeouts
    bad_status: int  # responses that were not 2xx/3xx
    wrk_cpu_seconds: float
    report: str  # wrk's output, verbatim

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _parse(report: str, cpu: float) -> WrkRun:
    line = next((ln for ln in report.splitlines() if ln.startswith(_MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no {_MARK.strip()} line:\n{report}")
    data: dict[str, Any] = json.loads(line[len(_MARK) :])
    lat, err = data["latency_us"], data["errors"]
    return WrkRun(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        errors=err["connect"] + err["read"] + err["write"] + err["timeout"],
        bad_status=err["status"],
        wrk_cpu_seconds=cpu,
        report=report,
    )


def run(
    url: str,
    paths_file: Path,
    *,
    threads: int = 1,
    connections: int = 50,
    seconds: int = 15,
    timeout_s: int = 5,
    rate: float | None = None,
    env: dict[str, str] | None = None,
) -> WrkRun:
    """Drive ``url`` for ``seconds`` (at most ``rate`` requests/s in all when given); wrk
    itself is killed if it overruns by 30 s. ``env``: WRK_* variables for writes (handles.lua)."""
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={timeout_s}s",
        "--latency",
        "-s",
        str(SCRIPT),
        url,
        "--",
        str(paths_file),
    ]
    if rate is not None:
        cmd += [str(rate / threads), str(connections // threads)]
    before = _children_cpu()
    full_env = None if env is None else {**os.environ, **env}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False, env=full_env)
    cpu = _children_cpu() - before
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return _parse(done.stdout, cpu)
