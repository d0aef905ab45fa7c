"""Locust scenarios on every front-end of a running node (headless; see bench/README.md).

* ``ResolveUser``: an enterprise system resolving identifiers over REST, drawn from a
  Zipf-like popularity (P(rank r) ~ 1/r) over the stored population of bench.load_store
  records;
* ``RegisterUser``: a factory registering 2,000-item batches of new identifiers (msgpack);
* ``HandleUdpUser``, ``HandleTcpUser``: the same resolutions over the Handle protocol
  (``bench.locust_handle``: the node's own codec on gevent's blocking sockets), UDP one
  datagram a request, TCP on one kept connection with KEEP_ALIVE as China's SDKs keep
  theirs; Locust shows them as request types ``UDP`` and ``TCP``;
* ``SnmsUser``: an enterprise system on SNMS's management API: it logs in through
  ``/identity/token``, reads identifiers' details (the same Zipf popularity) and registers
  single identifiers against an SNMS template it defines on the node prefix (10 : 1);
* all of them together for a mixed load (weights 50 : 50 : 50 : 10 : 1, REST, UDP, TCP,
  SNMS, batches; ``bench.locust_run`` gives ``RegisterUser`` exactly one user instead).

Every answer is checked (REST and SNMS: HTTP 200 and success in the body; Handle: response
code 1 under the request's id): anything else is a Locust failure saying what came back.

Settings come from the environment: ``IDNODE_BENCH_COUNT`` (records loaded with
bench.load_store, default 1,000,000), ``IDNODE_ADMIN_SECRET`` (the node admin's secret, for
registering and for SNMS's login), ``IDNODE_BENCH_HANDLE_PORT`` (the node's Handle port, TCP
and UDP, on the host of ``-H``; default 2641, loopback only). ``python -m bench.locust_run``
runs each scenario and plots it; by hand, for example::

    IDNODE_BENCH_HANDLE_PORT=2641 locust -f bench/locustfile.py --headless -H http://127.0.0.1:8000 \\
        -u 50 -r 50 -t 60s --csv bench/results/locust/udp --csv-full-history HandleUdpUser
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import msgpack
from locust import FastHttpUser, User, constant, task

from bench.load_store import NODE_PREFIX, handle_for
from bench.locust_handle import HandleFailure, TcpResolver, UdpResolver

POPULATION = int(os.environ.get("IDNODE_BENCH_COUNT", "1000000"))
HANDLE_PORT = int(os.environ.get("IDNODE_BENCH_HANDLE_PORT", "2641"))
ADMIN = f"300:0.NA/{NODE_PREFIX}"
BATCH = 2000
SNMS_TEMPLATE = "locust-1.0"  # the SNMS template version SnmsUser registers against
_SHOWN = 200  # bytes of an unexpected answer kept in a failure
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


def admin_secret() -> str:
    return os.environ.get("IDNODE_ADMIN_SECRET", "")


class RegisterUser(FastHttpUser):
    """A factory registering batches of 2,000 new identifiers under its enterprise prefix."""

    weight = 1
    wait_time = constant(0)

    def on_start(self) -> None:
        credentials = base64.b64encode(f"{ADMIN.replace(':', '%3A')}:{admin_secret()}".encode()).decode()
        self.headers = {"Authorization": f"Basic {credentials}", "Content-Type": "application/msgpack"}
        self.run_id = uuid.uuid4().hex[:8]
        self.serial = itertools.count()

    @task
    def register(self) -> None:
        batch = next(self.serial)
        operations = [
            {
                "op": "create",
                "handle": f"{NODE_PREFIX}.{batch % 1000 + 1}/LOCUST-{self.run_id}-{batch}-{i}",
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


class _HandleUser(User):
    """Resolutions over the Handle protocol, reported to Locust as request type ``transport``."""

    abstract = True
    wait_time = constant(0)
    transport = ""

    def on_start(self) -> None:
        self.rng = random.Random()
        host = urlsplit(self.host or "").hostname or "127.0.0.1"
        self.resolver = self.connect(host, HANDLE_PORT)

    def connect(self, host: str, port: int) -> UdpResolver | TcpResolver:
        raise NotImplementedError

    def on_stop(self) -> None:
        self.resolver.close()

    @task
    def resolve(self) -> None:
        handle = handle_for(zipf_index(self.rng))
        started = time.perf_counter()
        size, failure = 0, None
        try:
            size = self.resolver.resolve(handle)
        except HandleFailure as exc:
            failure = exc
        self.environment.events.request.fire(
            request_type=self.transport,
            name="resolution [h]",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=size,
            exception=failure,
            context={},
        )


class HandleUdpUser(_HandleUser):
    """A client resolving over UDP, as CNRI's resolver and most of China's SDKs ask first."""

    weight = 50
    transport = "UDP"

    def connect(self, host: str, port: int) -> UdpResolver:
        return UdpResolver(host, port)


class HandleTcpUser(_HandleUser):
    """A client resolving over one kept TCP connection (KEEP_ALIVE), reopened after an error."""

    weight = 50
    transport = "TCP"

    def connect(self, host: str, port: int) -> TcpResolver:
        return TcpResolver(host, port)


class SnmsUser(FastHttpUser):
    """An enterprise system on SNMS's API: reads identifiers' details, now and then registers one."""

    weight = 10
    wait_time = constant(0)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.run_id = uuid.uuid4().hex[:8]
        self.serial = itertools.count()
        self.headers: dict[str, str] = {}
        token = self._snms("POST", "/identity/token", {"username": ADMIN, "password": admin_secret()})
        self.headers = {"Authorization": f"Bearer {token.get('token', '') if isinstance(token, dict) else ''}"}
        self._define_template()

    def _define_template(self) -> None:
        """The template SnmsUser's identifiers name: a URL and a product name. Defined by the first
        user to get there; the others are told it exists, which is what they need."""
        items = [
            {"name": "网址", "idType": "URL", "idIndex": 2000, "required": True},
            {"name": "产品名称", "idType": "productName", "idIndex": 2001, "required": True},
        ]
        for item in items:
            item["metadata"] = {"type": "string", "minLength": 1, "maxLength": 200}
        template: dict[str, Any] = {"prefix": NODE_PREFIX, "version": SNMS_TEMPLATE, "type": 1, "items": items}
        template |= {"description": "locust", "industryCategory": "C", "industrySpecific": "C"}
        template |= {"industryTrade": "C", "industrySubclass": "C"}
        self._snms("POST", "/snms/api/v5/template", template, tolerate="已存在")

    def _snms(self, method: str, path: str, body: Any = None, *, name: str = "", tolerate: str = "") -> Any:
        """SNMS's ``data`` of a request whose envelope says success (status 1, or a message
        containing ``tolerate``); else a Locust failure, and None."""
        with self.client.request(
            method, path, name=name or path, json=body, headers=self.headers, catch_response=True
        ) as reply:
            raw = reply.content or b""
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = None
            if reply.status_code != 200 or not isinstance(answer, dict):
                reply.failure(f"HTTP {reply.status_code}: {raw[:_SHOWN]!r}")
                return None
            if answer.get("status") != 1 and not (tolerate and tolerate in str(answer.get("message"))):
                reply.failure(f"SNMS status {answer.get('status')}: {str(answer.get('message'))[:_SHOWN]}")
                return None
            return answer.get("data")

    @task(10)
    def resolve(self) -> None:
        handle = handle_for(zipf_index(self.rng))
        self._snms("GET", f"/identityv2/data/detail?handle={handle}", name="/identityv2/data/detail?handle=[h]")

    @task(1)
    def register(self) -> None:
        serial = next(self.serial)
        handle = f"{NODE_PREFIX}.{serial % 1000 + 1}/SNMS-{self.run_id}-{serial}"
        values = [
            {"index": 2000, "type": "URL", "data": {"format": "string", "value": f"https://factory.example/{handle}"}},
            {"index": 2001, "type": "productName", "data": {"format": "string", "value": "轴承座"}},
        ]
        body = {"handle": handle, "templateVersion": SNMS_TEMPLATE, "value": values}
        self._snms("POST", "/identityv2/data", body, name="/identityv2/data")
