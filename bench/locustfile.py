"""Locust scenarios against a running node (headless, one command each; see bench/README.md).

* ``ResolveUser``: an enterprise system resolving identifiers, drawn from a Zipf-like
  popularity (P(rank r) ~ 1/r) over the stored population of bench.load_store records;
* ``RegisterUser``: a factory registering 2,000-item batches of new identifiers (msgpack);
* both together for a mixed load (weights 50 : 1).

Settings come from the environment: ``IDNODE_BENCH_COUNT`` (records loaded with
bench.load_store, default 1,000,000), ``IDNODE_ADMIN_SECRET`` (the node admin's secret,
for registering). Example::

    locust -f bench/locustfile.py --headless -H http://127.0.0.1:8000 -u 100 -r 50 -t 60s \\
        --processes 2 --csv bench/results/locust-resolve ResolveUser
"""

from __future__ import annotations

import base64
import itertools
import os
import random
import uuid

import msgpack
from locust import FastHttpUser, constant, task

from bench.load_store import handle_for

POPULATION = int(os.environ.get("IDNODE_BENCH_COUNT", "1000000"))
ADMIN = "300:0.NA/88.118"
BATCH = 2000
_SCATTER = 2654435761  # Knuth's multiplicative hash: popular ranks land all over the store


def zipf_index(rng: random.Random, population: int = POPULATION) -> int:
    """A record index whose rank r is drawn with probability about 1/r (log-uniform ranks)."""
    rank = int(population ** rng.random())  # 1 .. population
    return (rank * _SCATTER) % population


class ResolveUser(FastHttpUser):
    """An enterprise system resolving identifiers, popular ones far more often."""

    weight = 50
    wait_time = constant(0)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task
    def resolve(self) -> None:
        handle = handle_for(zipf_index(self.rng))
        with self.client.get(f"/api/handles/{handle}", name="/api/handles/[h]", catch_response=True) as reply:
            if reply.status_code != 200 or b'"responseCode":1' not in (reply.content or b""):
                reply.failure(f"{reply.status_code}: {(reply.content or b'')[:200]!r}")


class RegisterUser(FastHttpUser):
    """A factory registering batches of 2,000 new identifiers under its enterprise prefix."""

    weight = 1
    wait_time = constant(0)

    def on_start(self) -> None:
        secret = os.environ.get("IDNODE_ADMIN_SECRET", "")
        credentials = base64.b64encode(f"{ADMIN.replace(':', '%3A')}:{secret}".encode()).decode()
        self.headers = {"Authorization": f"Basic {credentials}", "Content-Type": "application/msgpack"}
        self.run_id = uuid.uuid4().hex[:8]
        self.serial = itertools.count()

    @task
    def register(self) -> None:
        batch = next(self.serial)
        operations = [
            {
                "op": "create",
                "handle": f"88.118.{batch % 1000 + 1}/LOCUST-{self.run_id}-{batch}-{i}",
                "values": [{"index": 1, "type": "URL", "data": f"https://factory.example/{self.run_id}/{batch}/{i}"}],
            }
            for i in range(BATCH)
        ]
        body = msgpack.packb({"operations": operations})
        with self.client.post(
            "/api/batch", data=body, headers=self.headers, name="/api/batch (2000)", catch_response=True
        ) as reply:
            if reply.status_code != 200:
                reply.failure(f"{reply.status_code}: {(reply.content or b'')[:200]!r}")
