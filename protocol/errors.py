"""One root exception for everything the Handle layer can refuse.

Each subclass carries the response code it maps to; front-ends turn an error into a
status and a body in one place and never look at the exception's type.
"""

from __future__ import annotations

from protocol.codes import ResponseCode


class HandleError(Exception):
    """A request the node refuses, with the Handle response code that says why."""

    code: ResponseCode = ResponseCode.ERROR
    http_status: int | None = None  # when the status is not the code's usual one
    retry_after: int | None = None  # seconds after which asking again may succeed (HTTP's Retry-After)

    def __init__(self, message: str, *, handle: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.handle = handle
        self.logged = False  # set once the refusal is in the audit log


class ProtocolViolation(HandleError):
    code = ResponseCode.PROTOCOL_ERROR


class OperationNotSupported(HandleError):
    code = ResponseCode.OPERATION_NOT_SUPPORTED


class HandleNotFound(HandleError):
    code = ResponseCode.HANDLE_NOT_FOUND


class HandleAlreadyExists(HandleError):
    code = ResponseCode.HANDLE_ALREADY_EXISTS


class InvalidHandle(HandleError):
    code = ResponseCode.INVALID_HANDLE


class ValuesNotFound(HandleError):
    code = ResponseCode.VALUES_NOT_FOUND


class ValueAlreadyExists(HandleError):
    code = ResponseCode.VALUE_ALREADY_EXISTS


class InvalidValue(HandleError):
    code = ResponseCode.INVALID_VALUE


class NotResponsible(HandleError):
    code = ResponseCode.SERVER_NOT_RESPONSIBLE


class AuthenticationNeeded(HandleError):
    code = ResponseCode.AUTHENTICATION_NEEDED


class AuthenticationFailed(HandleError):
    code = ResponseCode.AUTHENTICATION_FAILED


class AuthenticationTimeout(HandleError):
    """An answer to a challenge that is not pending (any more): it expired or was answered."""

    code = ResponseCode.AUTHEN_TIMEOUT


class SessionFailed(HandleError):
    """A session the node will not set up (an unsupported key exchange, a bad key)."""

    code = ResponseCode.SESSION_FAILED


class InsufficientPermissions(HandleError):
    code = ResponseCode.INSUFFICIENT_PERMISSIONS


class StoreUnavailable(HandleError):
    """The store failed or timed out; the request may be retried."""

    code = ResponseCode.SERVER_TOO_BUSY


class MirrorReadOnly(HandleError):
    """A write sent to a mirror site, which serves resolution only from a replica of its primary's store.

    Over the Handle protocol it is what CNRI's server answers an administrative request on a
    server that is not primary (301, "Not a primary server"): CNRI's clients send administration
    to a primary site. Over HTTP it is 503: not the request's fault (a 400 would tell the client
    never to send it again), and the write succeeds at the primary site, or here once this site
    is promoted; a client or balancer that retries elsewhere on 503 finds the primary.
    """

    code = ResponseCode.SERVER_NOT_RESPONSIBLE
    http_status = 503


class UpstreamFailed(HandleError):
    """A node this one delegated to failed, timed out or answered what it may not (bailiwick)."""

    code = ResponseCode.ERROR
    http_status = 502


class UpstreamTimeout(UpstreamFailed):
    http_status = 504


class RecursionLoop(HandleError):
    """Delegation went round in a loop between nodes, or deeper than allowed."""

    code = ResponseCode.RECURSION_COUNT_TOO_HIGH


class TooManyFailures(HandleError):
    """Too many failed authentications from this identity or address; wait and retry."""

    code = ResponseCode.AUTHENTICATION_FAILED
    http_status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceeded(HandleError):
    """A prefix's plan does not allow this (``registry.quota``): ``kind`` says which quota,
    ``prefix`` whose. Nothing was written and nothing counted."""

    def __init__(
        self, message: str, *, kind: str, prefix: str, handle: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message, handle=handle)
        self.kind = kind
        self.prefix = prefix
        self.retry_after = retry_after


class DailyQuotaExceeded(QuotaExceeded):
    """Registrations under a prefix, or resolutions by an identity, reached today's limit."""

    code = ResponseCode.REQUEST_LIMIT_DAILY


class IdentifierQuotaExceeded(QuotaExceeded):
    """The prefix holds as many identifiers as its plan allows."""

    code = ResponseCode.REGISTER_COUNT_LIMIT


class PrefixQuotaExceeded(QuotaExceeded):
    """As many prefixes are derived from the prefix as its plan allows."""

    code = ResponseCode.PREFIX_LIMIT
