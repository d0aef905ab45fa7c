"""CPU seconds of a process tree, read from /proc: what a server spent serving a load.

A server's workers are child processes and its work runs on threads; /proc/<pid>/stat
already sums a process's threads, so the tree is every process whose ancestor is one of
the given pids (or in one of the given process groups). Children reaped during the run
move their time into their parent's cutime/cstime, which is counted too, so a before and
after difference stays right when workers come and go.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None  # gone between listing and reading
    return text.rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses


def _all_stats() -> dict[int, list[str]]:
    stats = {}
    for entry in os.scandir(_PROC):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                stats[int(entry.name)] = fields
    return stats


def process_tree(
    pids: Iterable[int] = (), pgids: Iterable[int] = (), stats: dict[int, list[str]] | None = None
) -> set[int]:
    """The given pids, the members of the given process groups, and all their descendants,
    except this process and its own descendants: a load generator started in the server's
    process group (or under the pid of an ``unshare`` wrapping both) must not count itself."""
    stats = _all_stats() if stats is None else stats
    groups = set(pgids)
    roots = {pid for pid in pids if pid in stats} | {pid for pid, f in stats.items() if int(f[2]) in groups}
    children: dict[int, list[int]] = {}
    for pid, f in stats.items():
        children.setdefault(int(f[1]), []).append(pid)
    tree, todo = set(), list(roots)
    me = os.getpid()
    while todo:
        pid = todo.pop()
        if pid not in tree and pid != me:
            tree.add(pid)
            todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_times(pids: Iterable[int] = (), pgids: Iterable[int] = ()) -> tuple[float, float]:
    """(user, system) seconds of the tree: utime + cutime, stime + cstime (clock-tick resolution)."""
    stats = _all_stats()
    tree = process_tree(pids, pgids, stats)
    user = sum(int(stats[pid][11]) + int(stats[pid][13]) for pid in tree)
    system = sum(int(stats[pid][12]) + int(stats[pid][14]) for pid in tree)
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def tree_cpu_seconds(pids: Iterable[int] = (), pgids: Iterable[int] = ()) -> float:
    """All CPU seconds of the tree, user and system."""
    return sum(tree_cpu_times(pids, pgids))


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a server's workers), in pid order."""
    return sorted(child for child, f in _all_stats().items() if int(f[1]) == pid)


def cpu_seconds_each(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds of each process (all its threads); 0 for one that is gone."""
    tick = os.sysconf("SC_CLK_TCK")
    each = {}
    for pid in pids:
        fields = _stat_fields(pid)
        each[pid] = 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / tick
    return each


def rss_bytes(pid: int) -> int:
    """Resident bytes of a process (VmRSS); 0 when it is gone."""
    try:
        text = (_PROC / str(pid) / "status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    line = next((ln for ln in text.splitlines() if ln.startswith("VmRSS:")), "VmRSS: 0 kB")
    return int(line.split()[1]) * 1024


def check_exists(pids: Iterable[int] = (), pgids: Iterable[int] = ()) -> None:
    """Raises LookupError naming a pid or process group that /proc does not know."""
    stats = _all_stats()
    for pid in pids:
        if pid not in stats:
            raise LookupError(f"no process {pid} in /proc")
    groups = {int(f[2]) for f in stats.values()}
    for pgid in pgids:
        if pgid not in groups:
            raise LookupError(f"no process group {pgid} in /proc")
