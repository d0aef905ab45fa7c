"""Handle response codes (RFC 3652 §2.2.2.2) and their HTTP statuses (handle.net v9).

601-605 are Teleinfo's additions (id-pointer-sdk, ``cn.teleinfo.idpointer.sdk.core.AbstractMessage``):
603 RC_REQUEST_LIMIT_DAILY, 604 RC_REGISTER_COUNT_LIMIT and 605 RC_PREFIX_LIMIT, which its
decoder reads as error responses (an error message body), as it does 601 and 602, the SDK's
own client-side failures that no server sends. A node answers them when a quota is used up
(``registry.quota``).
"""

from __future__ import annotations

from enum import IntEnum


class ResponseCode(IntEnum):
    SUCCESS = 1
    ERROR = 2
    SERVER_TOO_BUSY = 3
    PROTOCOL_ERROR = 4
    OPERATION_NOT_SUPPORTED = 5
    RECURSION_COUNT_TOO_HIGH = 6
    SERVER_BACKUP = 7  # on the wire as 303 before protocol 2.5
    HANDLE_NOT_FOUND = 100
    HANDLE_ALREADY_EXISTS = 101
    INVALID_HANDLE = 102
    VALUES_NOT_FOUND = 200
    VALUE_ALREADY_EXISTS = 201
    INVALID_VALUE = 202
    EXPIRED_SITE_INFO = 300
    SERVER_NOT_RESPONSIBLE = 301
    SERVICE_REFERRAL = 302
    PREFIX_REFERRAL = 303
    INVALID_ADMIN = 400
    INSUFFICIENT_PERMISSIONS = 401
    AUTHENTICATION_NEEDED = 402
    AUTHENTICATION_FAILED = 403
    INVALID_CREDENTIAL = 404
    AUTHEN_TIMEOUT = 405
    AUTHEN_ERROR = 406
    SESSION_TIMEOUT = 500
    SESSION_FAILED = 501
    INVALID_SESSION_KEY = 502
    NEED_RSAKEY_FOR_SESSIONEXCHANGE = 503
    INVALID_SESSIONSETUP_REQUEST = 504
    SESSION_MESSAGE_REJECTED = 505
    REQUEST_LIMIT_DAILY = 603  # a daily quota is used up: registrations of a prefix, resolutions of an identity
    REGISTER_COUNT_LIMIT = 604  # the identifiers a prefix may hold are all registered
    PREFIX_LIMIT = 605  # the prefixes that may be derived from a prefix all exist


_HTTP_STATUS: dict[ResponseCode, int] = {
    ResponseCode.SUCCESS: 200,
    ResponseCode.ERROR: 500,
    ResponseCode.SERVER_TOO_BUSY: 503,
    ResponseCode.PROTOCOL_ERROR: 400,
    ResponseCode.OPERATION_NOT_SUPPORTED: 405,
    ResponseCode.HANDLE_NOT_FOUND: 404,
    ResponseCode.HANDLE_ALREADY_EXISTS: 409,
    ResponseCode.INVALID_HANDLE: 400,
    ResponseCode.VALUES_NOT_FOUND: 400,
    ResponseCode.VALUE_ALREADY_EXISTS: 409,
    ResponseCode.INVALID_VALUE: 400,
    ResponseCode.SERVER_NOT_RESPONSIBLE: 400,
    ResponseCode.RECURSION_COUNT_TOO_HIGH: 508,
    ResponseCode.AUTHENTICATION_NEEDED: 401,
    ResponseCode.INVALID_ADMIN: 403,
    ResponseCode.INSUFFICIENT_PERMISSIONS: 403,
    ResponseCode.AUTHENTICATION_FAILED: 403,
    ResponseCode.INVALID_CREDENTIAL: 403,
    # A daily quota is a rate: "come back after midnight" (with Retry-After). A count quota is
    # not: asking again does not help until identifiers or prefixes go or the plan grows.
    ResponseCode.REQUEST_LIMIT_DAILY: 429,
    ResponseCode.REGISTER_COUNT_LIMIT: 403,
    ResponseCode.PREFIX_LIMIT: 403,
}


def http_status(code: ResponseCode) -> int:
    """The HTTP status handle.net's REST API pairs with a response code."""
    return _HTTP_STATUS.get(code, 400)
