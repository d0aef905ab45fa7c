"""The messages of a captured vector (tests/vectors/*/NAME.json), whole and in order."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.wire.message import ENVELOPE_SIZE, Message, decode_message


@dataclass(frozen=True)
class Captured:
    transport: str
    direction: str
    flow: int
    request_id: int
    data: bytes  # the whole message: a UDP message's datagrams joined behind the first envelope

    @property
    def message(self) -> Message:
        return decode_message(self.data)


def captured(path: Path) -> list[Captured]:
    """A vector's messages in the order their first byte was seen.

    A TCP exchange is one whole message (LIST answers in several under one request id); a
    UDP datagram of sequence 0 starts a message (a retry under the same request id starts
    another) and later sequence numbers are appended to the last one started.
    """
    messages: list[list[dict[str, Any]]] = []
    open_udp: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for ex in json.loads(path.read_text())["exchanges"]:
        key = (ex["direction"], ex["flow"], ex["request_id"])
        if ex["transport"] == "udp" and ex["sequence"] > 0 and key in open_udp:
            open_udp[key].append(ex)
            continue
        messages.append([ex])
        if ex["transport"] == "udp":
            open_udp[key] = messages[-1]
    out = []
    for exs in messages:
        exs.sort(key=lambda e: e["sequence"])
        raw = [bytes.fromhex(e["hex"]) for e in exs]
        data = raw[0] + b"".join(r[ENVELOPE_SIZE:] for r in raw[1:])
        first = exs[0]
        out.append(Captured(first["transport"], first["direction"], first["flow"], first["request_id"], data))
    return out
