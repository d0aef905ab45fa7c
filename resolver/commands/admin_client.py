"""The admin commands' side of the REST API: credentials, one request, and what its failures mean.

The commands talk to a node only over HTTP, as any REST client would, so they work against
a node on another machine and go through the same permissions, rate limits and audit log.
Every failure becomes an ``AdminError`` carrying the exit code the command ends with.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import stat
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from protocol.basic_auth import basic_credentials
from protocol.codes import ResponseCode

OK, REFUSED, USAGE, UNREACHABLE, AUTH_FAILED = 0, 1, 2, 3, 4
EXIT_CODES = (
    "exit codes: 0 done; 1 refused by the node (its responseCode and message are shown); "
    "2 bad usage, credentials file or input; 3 the node cannot be reached; 4 authentication failed"
)

NODE_URL_ENV = "IDNODE_NODE_URL"
IDENTITY_ENV = "IDNODE_CLIENT_IDENTITY"
SECRET_ENV = "IDNODE_CLIENT_SECRET"
DEFAULT_NODE_URL = "http://127.0.0.1:8000"
INSECURE_HTTP_FLAG = "--insecure-http"
MIN_SECRET_LENGTH = 16  # as for the node admin's secret (resolver.config)
MAX_SECRET_FILE_BYTES = 4096
_AUTH_CODES = {ResponseCode.AUTHENTICATION_NEEDED, ResponseCode.AUTHENTICATION_FAILED, ResponseCode.INVALID_CREDENTIAL}


class AdminError(Exception):
    """A command cannot complete; ``exit_code`` says why, ``body`` is the node's answer if any."""

    exit_code = REFUSED

    def __init__(self, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.body: dict[str, Any] | None = dict(body) if isinstance(body, Mapping) else None


class UsageError(AdminError):
    exit_code = USAGE


class NodeUnreachable(AdminError):
    exit_code = UNREACHABLE


class NodeRefused(AdminError):
    exit_code = REFUSED


class AuthenticationRefused(AdminError):
    exit_code = AUTH_FAILED


@dataclass(frozen=True, slots=True)
class Credentials:
    identity: str
    secret: str = field(repr=False)


def load_credentials(path: Path | None, env: Mapping[str, str]) -> Credentials | None:
    """The admin's credentials: from ``path`` (TOML with ``identity`` and ``secret``) if given,
    else from IDNODE_CLIENT_IDENTITY / IDNODE_CLIENT_SECRET, else None (anonymous)."""
    if path is not None:
        return _credentials_file(path)
    identity, secret = env.get(IDENTITY_ENV), env.get(SECRET_ENV)
    if identity is None and secret is None:
        return None
    if not identity or not secret:
        raise UsageError(f"set both {IDENTITY_ENV} and {SECRET_ENV}, or give --credentials FILE")
    return Credentials(identity, secret)


def _credentials_file(path: Path) -> Credentials:
    try:
        with open(path, "rb") as fh:
            mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)
            if mode & 0o077:
                raise UsageError(
                    f"credentials file {path} is readable by other users (mode {mode:o}): chmod 600 {path}"
                )
            data = tomllib.load(fh)
    except OSError as exc:
        raise UsageError(f"credentials file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"credentials file {path}: not TOML ({exc})") from None
    identity, secret = data.get("identity"), data.get("secret")
    if not isinstance(identity, str) or not identity or not isinstance(secret, str) or not secret:
        raise UsageError(f'credentials file {path}: expected identity = "INDEX:HANDLE" and secret = "..."')
    return Credentials(identity, secret)


def read_secret(source: str) -> str:
    """A secret chosen by the operator, from a file or ``-`` (standard input): its first line."""
    try:
        if source == "-":
            text = sys.stdin.read(MAX_SECRET_FILE_BYTES)
        else:
            with open(source, encoding="utf-8") as fh:
                text = fh.read(MAX_SECRET_FILE_BYTES)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--secret-file {source}: {getattr(exc, 'strerror', None) or exc}") from None
    lines = text.splitlines()
    secret = lines[0].strip() if lines else ""
    if len(secret) < MIN_SECRET_LENGTH:
        raise UsageError(f"--secret-file {source}: the secret must be at least {MIN_SECRET_LENGTH} characters")
    return secret


# C0 controls, DEL and C1 controls (0x9b is a CSI on some terminals): in a record's data or a
# node's message they would move the cursor, recolour or retitle the admin's terminal.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_C1_AND_DEL = re.compile("[\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\u009b``)."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m[0]):02x}" if m[0] < "\x80" else f"\\u{ord(m[0]):04x}", text)


def json_text(obj: Any, **options: Any) -> str:
    """``obj`` as JSON for a terminal: non-ASCII text as is, but DEL and C1 escaped as well
    (json.dumps escapes only C0 when ``ensure_ascii`` is off); they occur only inside strings."""
    text = json.dumps(obj, ensure_ascii=False, **options)
    return _C1_AND_DEL.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def is_loopback(host: str) -> bool:
    """``localhost`` or an address of 127.0.0.0/8 or ::1: plain HTTP to it never leaves the machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def handle_path(handle: str) -> str:
    return "/api/handles/" + quote(handle, safe="/")


Query = Sequence[tuple[str, str]]


class AdminClient:
    """Blocking requests to one node; each answer is the node's JSON object or an AdminError."""

    def __init__(
        self, url: str, credentials: Credentials | None, timeout: float = 10.0, *, insecure_http: bool = False
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--node: expected http://HOST:PORT or https://HOST:PORT, got {url!r}")
        if parts.scheme == "http" and not insecure_http and not is_loopback(parts.hostname):
            raise UsageError(
                f"{url} is plain http:// to another machine: Basic credentials and answers would cross the "
                f"network readable and alterable; use https://, or {INSECURE_HTTP_FLAG} to send them anyway"
            )
        self.url = url.rstrip("/")
        self._parts = parts
        self.credentials = credentials
        self.timeout = timeout

    def get(self, path: str, query: Query = (), *, auth: bool = True) -> dict[str, Any]:
        return self.request("GET", path, query, auth=auth)[1]

    def put(self, path: str, body: Any, query: Query = ()) -> tuple[int, dict[str, Any]]:
        """The HTTP status (201 created, 200 replaced) and the node's answer."""
        return self.request("PUT", path, query, body=body)

    def delete(self, path: str, query: Query = ()) -> dict[str, Any]:
        return self.request("DELETE", path, query)[1]

    def request(
        self, method: str, path: str, query: Query = (), *, body: Any = None, auth: bool = True
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Accept": "application/json"}
        if auth and self.credentials is not None:
            headers["Authorization"] = basic_credentials(self.credentials.identity, self.credentials.secret)
        payload = None if body is None else json.dumps(body).encode()
        if payload is not None:
            headers["Content-Type"] = "application/json"
        target = (self._parts.path.rstrip("/") + path) + (("?" + urlencode(query)) if query else "")
        status, retry_after, raw = self._exchange(method, target, payload, headers)
        return status, _answer(method, path, status, retry_after, raw)

    def _exchange(
        self, method: str, target: str, payload: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str | None, bytes]:
        host, port = self._parts.hostname or "", self._parts.port
        conn: http.client.HTTPConnection
        if self._parts.scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        try:
            conn.request(method, target, body=payload, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheader("Retry-After"), response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise NodeUnreachable(f"cannot reach the node at {self.url}: {_reason(exc)}") from None
        finally:
            conn.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _answer(method: str, path: str, status: int, retry_after: str | None, raw: bytes) -> dict[str, Any]:
    """The node's JSON answer, or the AdminError its status and responseCode mean."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    wait = f"; retry after {retry_after} s" if retry_after else ""
    if status == 429 and (not isinstance(body, dict) or body.get("responseCode") in _AUTH_CODES):
        raise AuthenticationRefused(f"too many failed authentications from here{wait}", body)
    if not isinstance(body, dict) or "responseCode" not in body:
        kind = NodeUnreachable if status in (502, 503, 504) else NodeRefused
        raise kind(f"{method} {path}: HTTP {status} without an idnode answer (is this the node's URL?)")
    code, message = body["responseCode"], body.get("message") or ""
    if code in _AUTH_CODES or status == 401:
        raise AuthenticationRefused(f"authentication failed (responseCode {code}): {message}".rstrip(": "), body)
    if status >= 400 or code != ResponseCode.SUCCESS:
        raise NodeRefused(f"refused (responseCode {code}, HTTP {status}): {message}".rstrip(": ") + wait, body)
    return body
