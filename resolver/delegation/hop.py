"""The one rule for accepting another server's answer, whichever transport brought it.

Every answer is hostile until checked. A resolution answer is accepted only if it is
success or "handle not found", only for the handle that was asked (bailiwick), and only
with a record whose values have valid, distinct indexes and usable types. Anything else
raises ``HopFailed`` with the delegation metric's result label (``loop`` for a server that
refused an over-deep chain, ``bailiwick`` for an answer about another handle, ``error``),
so the engine's failover, caching and serve-stale apply the same over HTTP and over the
Handle protocol. A failure to get any answer at all is the one ``unreachable`` message:
a client who wrote the record must not learn from the answer whether a port is open.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from protocol.codes import ResponseCode
from protocol.errors import HandleError
from protocol.identifiers import Handle, parse_handle
from protocol.records import MAX_INDEX, MAX_TYPE_CHARS, HandleRecord, HandleValue

MAX_SHOWN = 200  # characters of a server's words kept in a message


class HopFailed(Exception):
    """One request to one server failed; ``result`` is the delegation metric's label.

    ``message`` may reach the client; ``detail`` (the message, or the cause it hides) is for
    the log only.
    """

    def __init__(self, message: str, result: str = "error", code: ResponseCode | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.result = result
        self.code = code
        self.detail = detail or message


def unreachable(peer: str, timeout: float) -> str:
    """The one message for every way of not getting an answer from ``peer``."""
    return f"{peer} could not be reached or did not answer within {timeout:.3g} s"


def accept(
    peer: str,
    handle: Handle,
    code: int,
    answered: object,
    values: Callable[[], Sequence[HandleValue]],
    *,
    said: str = "",
    how: str | None = None,
    case_sensitive: bool = False,
    named_when_missing: bool = True,
) -> HandleRecord | None:
    """What ``peer``'s answer says of ``handle``: its record, None (not found), or HopFailed.

    ``answered``: the handle the answer names; ``named_when_missing``: False for a transport
    whose "not found" names no handle (the Handle protocol's error body); ``values``: decodes
    the answer's values (raising HandleError when malformed); ``said``: the server's own
    message; ``how``: how the code came (" (HTTP 502)"; by default the code's name).
    """
    if code not in (ResponseCode.SUCCESS, ResponseCode.HANDLE_NOT_FOUND):
        result = "loop" if code == ResponseCode.RECURSION_COUNT_TOO_HIGH else "error"
        known = ResponseCode(code) if code in ResponseCode._value2member_map_ else None
        if how is None:
            how = f" ({known.name})" if known is not None else ""
        shown = f": {said[:MAX_SHOWN]}" if said else ""
        raise HopFailed(f"{peer} answered {code}{how}{shown}", result, known)
    missing = code == ResponseCode.HANDLE_NOT_FOUND
    if missing and not named_when_missing:
        return None
    if not _same_handle(answered, handle, case_sensitive):
        shown_handle = answered[:MAX_SHOWN] if isinstance(answered, str) else answered
        raise HopFailed(f"{peer} answered for {shown_handle!r}, not for {handle.text}", "bailiwick")
    if missing:
        return None
    try:
        decoded = values()
    except HandleError as exc:
        raise HopFailed(f"{peer} answered a malformed record for {handle.text}: {exc.message}") from None
    problem = _bad_values(decoded)
    if problem:
        raise HopFailed(f"{peer} answered a malformed record for {handle.text}: {problem}")
    return HandleRecord(handle.text, tuple(decoded))


def _same_handle(answered: object, handle: Handle, case_sensitive: bool) -> bool:
    if not isinstance(answered, str):
        return False
    try:
        return parse_handle(answered, case_sensitive=case_sensitive).key == handle.key
    except HandleError:
        return False


def _bad_values(values: Sequence[HandleValue]) -> str:
    """What is wrong with a record's values as another server sent them ("" when nothing)."""
    if len({v.index for v in values}) != len(values):
        return "an index appears more than once"
    for v in values:
        if not 1 <= v.index <= MAX_INDEX:
            return f"value index {v.index} is outside 1..{MAX_INDEX}"
        if len(v.type) > MAX_TYPE_CHARS or any(c < " " for c in v.type):
            return f"value {v.index} has an unusable type {v.type[:MAX_SHOWN]!r}"
    return ""
