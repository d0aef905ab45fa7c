"""protocol.wire.sign checks what CNRI's own servers signed, byte for byte.

A certifying CNRI client refuses an answer its site's key does not verify, so the bytes a
server signs must be exactly CNRI's. Every signed answer captured from CNRI 7.3.1 (protocol
2.5: header and body) and 9.0.0 (2.10: versions and ids first) verifies with the committed
server key under ``verify_signed_credential`` and ``bound_prefix``, and stops verifying when
one byte or one id changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.wire.keys import decode_public_key
from protocol.wire.message import Message
from protocol.wire.sign import bound_prefix, verify_signed_credential
from tests.vectors.load import captured

VECTORS = Path(__file__).parents[2] / "vectors"


def _prefix(msg: Message, session_id: int | None = None) -> bytes:
    env = msg.envelope
    sid = env.session_id if session_id is None else session_id
    return bound_prefix(env.version, env.suggest, sid, env.request_id)


def _signed_answers(release: str) -> list[Message]:
    return [
        m.message
        for path in sorted((VECTORS / f"cnri-{release}").glob("*.json"))
        for m in captured(path)
        if m.direction == "response" and b"HS_SIGNED" in m.message.credential
    ]


@pytest.mark.parametrize("release", ["7.3.1", "9.0.0"])
def test_cnri_servers_signed_answers_verify_and_altered_ones_do_not(release: str) -> None:
    key = decode_public_key((VECTORS / f"cnri-{release}" / "keys" / "server_dsa_pub.bin").read_bytes())
    answers = _signed_answers(release)
    assert answers, "no signed answer captured"
    for msg in answers:
        assert msg.header_and_body is not None
        assert verify_signed_credential(key, msg.credential, msg.header_and_body, _prefix(msg))
        altered = msg.header_and_body[:-1] + bytes([msg.header_and_body[-1] ^ 1])
        assert not verify_signed_credential(key, msg.credential, altered, _prefix(msg))
        if msg.version >= (2, 7):  # the ids are bound in
            other = _prefix(msg, msg.envelope.session_id ^ 1)
            assert not verify_signed_credential(key, msg.credential, msg.header_and_body, other)
