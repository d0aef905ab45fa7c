"""Runs the tasks of bench/locustfile.py's users in this process, without the locust command.

``python -m tests.support.locust_driver --host http://127.0.0.1:PORT --rounds N CLASS...``
starts one user of each class (``on_start``), calls each of its tasks ``N`` times, stops it,
and prints one JSON object: for each class, the request events its tasks fired (type, name,
time, length, the failure's text or null) and, for a Handle TCP user, how many connections
it opened. Settings reach the locustfile through the environment, as under locust.

Importing Locust patches the whole process for gevent (sockets, threads, the ssl module):
that is why this runs in a process of its own, never in pytest's.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from locust.env import Environment

from bench import locustfile


def run(class_name: str, host: str, rounds: int) -> dict[str, Any]:
    """One user of ``class_name``: the events its tasks fired, in order."""
    user_class = getattr(locustfile, class_name)
    env = Environment(user_classes=[user_class], host=host)
    events: list[dict[str, Any]] = []

    def record(request_type: str, name: str, response_time: float, response_length: int, **kw: Any) -> None:
        failure = kw.get("exception")
        events.append(
            {
                "type": request_type,
                "name": name,
                "ms": response_time,
                "length": response_length,
                "failure": None if failure is None else str(failure),
            }
        )

    env.events.request.add_listener(record)  # type: ignore[no-untyped-call]
    user_class.host = host  # what Locust's runner does with -H
    user = user_class(env)
    user.on_start()
    for task in dict.fromkeys(user_class.tasks):  # each task once, whatever its weight
        for _ in range(rounds):
            task(user)
    resolver = getattr(user, "resolver", None)
    connections = getattr(resolver, "connections", None)
    user.on_stop()
    return {"events": events, "connections": connections}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.locust_driver", description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True, help="Locust's -H: the node's HTTP base URL")
    parser.add_argument("--rounds", type=int, default=20, help="calls of each task")
    parser.add_argument("classes", nargs="+", help="user classes of bench/locustfile.py")
    args = parser.parse_args(argv)
    json.dump({name: run(name, args.host, args.rounds) for name in args.classes}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
