"""A small province in a box, run by bench.province (the same code as the 50-node benchmark):
two top-level nodes and five secondary nodes as real processes on loopback addresses of their
own, one of them on a PostgreSQL server of its own with a mirror site on a synchronous standby;
cross-node resolution (through a node and CNRI's way), then under a steady cross-node load the
primary top-level node killed, the mirrored node killed (its mirror takes over reads, none of
its acknowledged writes lost, writes again once it is back) and both top-level nodes killed.
Bounded: about a minute."""

from __future__ import annotations

import random
from pathlib import Path

from bench import province

CHECKS = (
    "cold REST: every cross-node handle resolved",
    "cold REST: ≤ 3 upstream round trips a handle",
    "cold REST: a prefix's referral fetched once per node",
    "cold UDP: every cross-node handle resolved",
    "cold UDP: a prefix's referral fetched once per node",
    "CNRI's way over REST",
    "CNRI's way over UDP",
    "new prefix resolved at 4 other nodes",
    "steady load: no resolution failed",
    "top down: 0 of",
    "top down: a prefix created meanwhile resolved through the twin at 4/4",
    "n3 down: 0 of the",  # writes it acknowledged before the kill missing at its mirror
    "n3's mirror refuses a write: HTTP 503",
    "n3 down: 0 resolutions of other nodes' identifiers failed",
    "n3 back:",
    "both top-level nodes down: 0 of",
    "after the faults: 0 failed",
)


def test_a_small_province_keeps_resolving_through_its_faults(tmp_path: Path) -> None:
    net = f"127.{random.randint(100, 250)}.{random.randint(0, 255)}"  # the standard ports, on addresses of its own
    argv = ["--nodes", "5", "--seconds", "20", "--identifiers", "20", "--warm-seconds", "0", "--net", net]
    status = province.main([*argv, "--out", str(tmp_path), "--work", str(tmp_path / "work"), "--no-picture"])
    summary = (tmp_path / "province_5.md").read_text()
    assert status == 0, summary
    for check in CHECKS:
        assert any(line.strip().startswith(f"PASS  {check}") for line in summary.splitlines()), (check, summary)
