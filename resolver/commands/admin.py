"""``idnode prefix|identity|handle|stats|audit``: the node admin's tool, over the node's REST API.

The counterpart of handle.net's admin tool for operators and scripts. Credentials come from
``--credentials FILE`` (TOML: ``identity = "300:0.NA/88.118"`` and ``secret = "..."``, mode
0600) or from IDNODE_CLIENT_IDENTITY and IDNODE_CLIENT_SECRET, never from a flag, so a secret
shows neither in ``ps`` nor in shell history. The node is ``--node URL``, else
IDNODE_NODE_URL, else http://127.0.0.1:8000.

Output is for people by default; ``--json`` prints the node's answer (``prefix create``,
``prefix show`` and ``identity set-secret`` print an object of their own, described in
deploy/ADMIN-CLI.md) and, on failure, ``{"exitCode", "message", "node"}`` with the node's answer.

Exit codes: 0 done; 1 refused by the node (its responseCode and message are shown); 2 bad
usage, credentials file or input; 3 the node cannot be reached; 4 authentication failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from protocol.codes import ResponseCode
from protocol.errors import HandleError
from protocol.identifiers import NA_PREFIX, parse_prefix
from registry.identity.secrets import generate_secret
from resolver.commands.admin_client import (
    DEFAULT_NODE_URL,
    EXIT_CODES,
    IDENTITY_ENV,
    INSECURE_HTTP_FLAG,
    NODE_URL_ENV,
    SECRET_ENV,
    AdminClient,
    AdminError,
    NodeRefused,
    UsageError,
    handle_path,
    json_text,
    load_credentials,
    printable,
    read_secret,
)

ADMIN_INDEX = 300
# --option: what it limits; the REST API's name is the option's in camel case (registry.quota.JSON_NAMES).
QUOTA_OPTIONS = {
    "identifiers": "identifiers the prefix may hold",
    "registrations-per-day": "identifiers it may create per day (China's day)",
    "resolutions-per-day": "authenticated resolutions per identity of the prefix per day",
    "prefixes": "prefixes that may be derived from it",
}
_UNSET = object()
ADMIN_GRANT_INDEX = 100
ALL_PERMISSIONS = "111111111111"
SHOWN_DAYS = 7

Shown = tuple[dict[str, Any], list[str]]  # what --json prints, and the lines people read
Command = Callable[[AdminClient, argparse.Namespace], Shown]


def add_parsers(commands: Any) -> None:
    common = _common()
    prefix = _group(commands, "prefix", "allocate, inspect and remove enterprise prefixes")
    c = _command(prefix, "create", common, _prefix_create, "allocate a prefix: 0.NA/P with an admin and a secret")
    c.add_argument("prefix", metavar="PREFIX", help="e.g. 88.118.8")
    _secret_file(c)
    d = _command(prefix, "delete", common, _prefix_delete, "remove a prefix handle")
    d.add_argument("prefix", metavar="PREFIX")
    d.add_argument("--force", action="store_true", help="even if identifiers remain under it (node admin only)")
    _command(prefix, "list", common, _prefix_list, "the prefixes this node serves")
    s = _command(prefix, "show", common, _prefix_show, "a prefix's values, identifier count and templates")
    s.add_argument("prefix", metavar="PREFIX")
    q = _command(prefix, "quota", common, _prefix_quota, "show a prefix's quotas and today's use; set them")
    q.add_argument("prefix", metavar="PREFIX")
    for option, what in QUOTA_OPTIONS.items():
        q.add_argument(
            f"--{option}",
            type=_quota_value,
            metavar="N",
            default=_UNSET,
            help=f"{what}: N (0: no limit), or 'default' for the node's setting",
        )
    identity = _group(commands, "identity", "manage the identities that authenticate")
    i = _command(identity, "set-secret", common, _set_secret, "give an identity a new secret (HS_SECKEY)")
    i.add_argument("identity", metavar="IDENTITY", help="INDEX:HANDLE, e.g. 300:0.NA/88.118.8")
    _secret_file(i)
    handle = _group(commands, "handle", "read, write and delete one handle record")
    g = _command(handle, "get", common, _handle_get, "show a record (with credentials: its non-public values too)")
    g.add_argument("handle", metavar="HANDLE")
    g.add_argument("--index", type=int, action="append", help="only this value (repeatable)")
    g.add_argument("--type", action="append", help="only values of this type (repeatable)")
    p = _command(handle, "put", common, _handle_put, "create or replace a record from a JSON file")
    p.add_argument("handle", metavar="HANDLE")
    p.add_argument("file", metavar="FILE", help='the body as PUT /api/handles takes it ({"values": [...]}), or -')
    p.add_argument("--index", type=int, action="append", help="change only this value (repeatable)")
    p.add_argument("--no-overwrite", action="store_true", help="refuse an existing handle (or existing values)")
    r = _command(handle, "delete", common, _handle_delete, "delete a record, or some of its values")
    r.add_argument("handle", metavar="HANDLE")
    r.add_argument("--index", type=int, action="append", help="delete only this value (repeatable)")
    st = _command(commands, "stats", common, _stats, "identifiers and registrations per day, per prefix")
    st.add_argument("--prefix", help="only this prefix (and those under it)")
    a = _command(commands, "audit", common, _audit, "the audit log of writes")
    a.add_argument("--prefix", help="only handles under this prefix")
    a.add_argument("--since", help="epoch seconds or ISO-8601 (e.g. 2026-12-01T00:00:00Z)")
    a.add_argument("--limit", type=int, help="most entries (node default 100, at most 10000)")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--node", metavar="URL", help=f"the node (default ${NODE_URL_ENV} or {DEFAULT_NODE_URL})")
    common.add_argument(
        "--credentials",
        metavar="FILE",
        type=Path,
        help=f'TOML file (mode 0600): identity = "300:0.NA/88.118", secret = "..." '
        f"(default ${IDENTITY_ENV} and ${SECRET_ENV})",
    )
    common.add_argument(
        INSECURE_HTTP_FLAG,
        action="store_true",
        help="allow a plain http:// URL to another machine (credentials then cross the network in clear)",
    )
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    common.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    return common


def _group(commands: Any, name: str, help_text: str) -> Any:
    parser = commands.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def _command(
    commands: Any, name: str, common: argparse.ArgumentParser, command: Command, help_text: str
) -> argparse.ArgumentParser:
    # No abbreviations: "--secret S" must not be taken for "--secret-file S".
    parser: argparse.ArgumentParser = commands.add_parser(
        name, parents=[common], help=help_text, description=help_text, epilog=EXIT_CODES, allow_abbrev=False
    )
    parser.set_defaults(run=lambda args: run(command, args))
    return parser


def _secret_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secret-file",
        metavar="FILE",
        help="take the secret from FILE's first line (- for standard input) instead of generating one",
    )


def run(command: Command, args: argparse.Namespace) -> int:
    """Run one command: its output on stdout, an error on stderr; the exit code."""
    name = " ".join(filter(None, ("idnode", args.command, getattr(args, "action", None))))
    try:
        url = args.node or os.environ.get(NODE_URL_ENV) or DEFAULT_NODE_URL
        credentials = load_credentials(args.credentials, os.environ)
        client = AdminClient(url, credentials, args.timeout, insecure_http=args.insecure_http)
        shown, lines = command(client, args)
    except AdminError as exc:
        print(f"{name}: error: {printable(exc.message)}", file=sys.stderr)
        if args.json:
            print(json.dumps({"exitCode": exc.exit_code, "message": exc.message, "node": exc.body}))
        return exc.exit_code
    if args.json:
        print(json_text(shown, indent=2))
    else:
        print("\n".join(printable(line) for line in lines))
    return 0


def _authenticated(client: AdminClient) -> None:
    if client.credentials is None:
        raise UsageError(f"this command needs credentials: --credentials FILE, or {IDENTITY_ENV} and {SECRET_ENV}")


def _prefix(text: str) -> str:
    if text.upper().startswith(NA_PREFIX + "/"):
        text = text[len(NA_PREFIX) + 1 :]
    try:
        return parse_prefix(text)
    except HandleError as exc:
        raise UsageError(f"prefix {text!r}: {exc.message}") from None


def _index_query(indexes: list[int] | None) -> list[tuple[str, str]]:
    return [("index", str(i)) for i in indexes or ()]


def _new_secret(args: argparse.Namespace) -> tuple[str, bool]:
    """The secret to set, and whether it was generated here (then it is shown, once)."""
    if args.secret_file is not None:
        return read_secret(args.secret_file), False
    return generate_secret(), True


def _secret_lines(secret: str) -> list[str]:
    return [f"secret: {secret}", "(shown once: keep it now; the node stores only its hash)"]


# Prefixes --------------------------------------------------------------------------


def _prefix_create(client: AdminClient, args: argparse.Namespace) -> Shown:
    _authenticated(client)
    prefix = _prefix(args.prefix)
    secret, generated = _new_secret(args)
    handle = f"{NA_PREFIX}/{prefix}"
    grant = {"handle": handle, "index": ADMIN_INDEX, "permissions": ALL_PERMISSIONS}
    values = [
        {"index": ADMIN_GRANT_INDEX, "type": "HS_ADMIN", "data": {"format": "admin", "value": grant}},
        {"index": ADMIN_INDEX, "type": "HS_SECKEY", "data": secret},
    ]
    client.put(handle_path(handle), {"values": values}, [("overwrite", "false")])
    identity = f"{ADMIN_INDEX}:{handle}"
    shown: dict[str, Any] = {"responseCode": 1, "prefix": prefix, "handle": handle, "identity": identity}
    lines = [f"created prefix {prefix} ({handle})", f"admin identity: {identity}"]
    if generated:
        shown["secret"] = secret
        lines += _secret_lines(secret)
    return shown, lines


def _prefix_delete(client: AdminClient, args: argparse.Namespace) -> Shown:
    _authenticated(client)
    prefix = _prefix(args.prefix)
    answer = client.delete(handle_path(f"{NA_PREFIX}/{prefix}"), [("force", "true")] if args.force else [])
    return answer, [f"deleted prefix {prefix}"]


def _prefix_list(client: AdminClient, args: argparse.Namespace) -> Shown:
    answer = client.get("/api/prefixes", auth=False)
    publication: dict[str, list[dict[str, Any]]] = answer.get("publication") or {}
    lines = [f"role: {answer.get('role')}"]
    for prefix in answer.get("prefixes", []):
        states = ", ".join(f"{row.get('state')} at {row.get('upstream')}" for row in publication.get(prefix, []))
        lines.append(f"{prefix}  ({states})" if states else prefix)
    return answer, lines


def _prefix_show(client: AdminClient, args: argparse.Namespace) -> Shown:
    _authenticated(client)
    prefix = _prefix(args.prefix)
    handle = f"{NA_PREFIX}/{prefix}"
    record = client.get(handle_path(handle))
    stats = client.get("/api/stats", [("prefix", prefix)]).get("prefixes", [])
    templates = client.get("/api/templates/" + quote(prefix, safe=""), auth=False).get("templates", [])
    own: dict[str, Any] = next((s for s in stats if str(s.get("prefix", "")).upper() == prefix), {})
    shown = {
        "responseCode": 1,
        "prefix": prefix,
        "handle": handle,
        "values": record.get("values", []),
        "identifiers": own.get("handles", 0),
        "stats": stats,
        "templates": templates,
    }
    lines = [f"prefix {prefix} ({handle})", "values:", *("  " + value_line(v) for v in shown["values"])]
    lines.append(f"identifiers: {shown['identifiers']}")
    lines += ["statistics:", *(f"  {line}" for s in stats for line in _stats_lines(s))]
    names = ", ".join(f"{t.get('name')}@{t.get('version')}" for t in templates)
    lines.append(f"templates: {names or 'none'}")
    return shown, lines


def _quota_value(text: str) -> int | None:
    if text == "default":
        return None
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number (0: no limit) or 'default', not {text!r}")
    return int(text)


def _prefix_quota(client: AdminClient, args: argparse.Namespace) -> Shown:
    _authenticated(client)
    prefix = _prefix(args.prefix)
    path = "/api/quotas/" + quote(prefix, safe="")
    changes = {
        _camel(option): value
        for option in QUOTA_OPTIONS
        if (value := getattr(args, option.replace("-", "_"))) is not _UNSET
    }
    answer = client.request("PUT", path, body=changes)[1] if changes else client.get(path)
    return answer, _quota_lines(answer)


def _camel(option: str) -> str:
    first, *rest = option.split("-")
    return first + "".join(word.title() for word in rest)


def _quota_lines(answer: dict[str, Any]) -> list[str]:
    limits, own, used = answer.get("limits") or {}, answer.get("set") or {}, answer.get("used") or {}
    lines = [f"prefix {answer.get('prefix')}: quotas, and their use on {answer.get('day')} (China's day)"]
    for option in QUOTA_OPTIONS:
        name = _camel(option)
        limit = limits.get(name, 0)
        shown = f"{limit:,}" if limit else "no limit"
        source = "set for this prefix" if own.get(name) is not None else "node default"
        use = used.get(name)
        if isinstance(use, dict):
            use = ", ".join(f"{who} {n:,}" for who, n in use.items()) or "none"
        lines.append(f"  {option:<22} {shown} ({source}); used: {use}")
    refusals = ", ".join(f"{kind} {n:,}" for kind, n in (answer.get("refusals") or {}).items())
    lines.append(f"  refused today: {refusals or 'nothing'}")
    return lines


# Identities ------------------------------------------------------------------------


def _set_secret(client: AdminClient, args: argparse.Namespace) -> Shown:
    _authenticated(client)
    index_text, colon, handle = args.identity.partition(":")
    if not colon or not index_text.isdigit() or not handle:
        raise UsageError(f"identity {args.identity!r}: expected INDEX:HANDLE, e.g. 300:0.NA/88.118.8")
    index = int(index_text)
    secret, generated = _new_secret(args)
    old = _value_at(client, handle, index)
    if old.get("type") != "HS_SECKEY":
        raise UsageError(f"value {index} of {handle} is {old.get('type')}, not HS_SECKEY: it holds no secret")
    value: dict[str, Any] = {k: old[k] for k in ("index", "type", "ttl", "permissions", "references") if k in old}
    value["data"] = secret
    client.put(handle_path(handle), value, [("index", str(index))])
    shown: dict[str, Any] = {"responseCode": 1, "identity": f"{index}:{handle}", "handle": handle, "index": index}
    lines = [f"secret of {index}:{handle} changed"]
    if generated:
        shown["secret"] = secret
        lines += _secret_lines(secret)
    return shown, lines


def _value_at(client: AdminClient, handle: str, index: int) -> dict[str, Any]:
    try:
        found = client.get(handle_path(handle), [("index", str(index))]).get("values", [])
    except NodeRefused as exc:
        if exc.body is None or exc.body.get("responseCode") != ResponseCode.VALUES_NOT_FOUND:
            raise
        found = []
    old = next((v for v in found if v.get("index") == index), None)
    if old is None:
        raise UsageError(f"{handle} has no value at index {index}: no such identity")
    return dict(old)


# Handles ---------------------------------------------------------------------------


def _handle_get(client: AdminClient, args: argparse.Namespace) -> Shown:
    query = _index_query(args.index) + [("type", t) for t in args.type or ()]
    answer = client.get(handle_path(args.handle), query)
    return answer, [str(answer.get("handle", args.handle)), *("  " + value_line(v) for v in answer["values"])]


def _handle_put(client: AdminClient, args: argparse.Namespace) -> Shown:
    _authenticated(client)
    body = _read_json(args.file)
    query = _index_query(args.index) + ([("overwrite", "false")] if args.no_overwrite else [])
    status, answer = client.put(handle_path(args.handle), body, query)
    what = "created" if status == 201 else "changed" if args.index else "replaced"
    return answer, [f"{what} {answer.get('handle', args.handle)}"]


def _read_json(source: str) -> Any:
    try:
        if source == "-":
            return json.load(sys.stdin)
        with open(source, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise UsageError(f"{source}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{source}: not JSON ({exc})") from None


def _handle_delete(client: AdminClient, args: argparse.Namespace) -> Shown:
    _authenticated(client)
    answer = client.delete(handle_path(args.handle), _index_query(args.index))
    shown = answer.get("handle", args.handle)
    if args.index:
        return answer, [f"deleted values {', '.join(map(str, args.index))} of {shown}"]
    return answer, [f"deleted {shown}"]


def value_line(value: dict[str, Any]) -> str:
    """One value as a person reads it: index, type, data, and its permissions and TTL."""
    data = value.get("data")
    if isinstance(data, dict):
        fmt, inner = data.get("format"), data.get("value")
        if fmt == "admin" and isinstance(inner, dict):
            text = f"{inner.get('index')}:{inner.get('handle')} permissions {inner.get('permissions')}"
        elif fmt == "string":
            text = str(inner)
        else:
            text = f"({fmt}) {inner if isinstance(inner, str) else json.dumps(inner, ensure_ascii=False)}"
    else:
        text = str(data)
    extra = f"  [permissions {value['permissions']}, ttl {value.get('ttl')}]" if "permissions" in value else ""
    return f"{value.get('index')} {value.get('type')} {text}{extra}"


# Statistics and audit --------------------------------------------------------------


def _stats(client: AdminClient, args: argparse.Namespace) -> Shown:
    _authenticated(client)
    query = [("prefix", _prefix(args.prefix))] if args.prefix else []
    answer = client.get("/api/stats", query)
    lines = [line for entry in answer.get("prefixes", []) for line in _stats_lines(entry)]
    return answer, lines or ["no prefixes"]


def _stats_lines(entry: dict[str, Any]) -> list[str]:
    days = sorted((entry.get("registrationsPerDay") or {}).items())[-SHOWN_DAYS:]
    shown = ", ".join(f"{day} {count}" for day, count in days)
    lines = [f"{entry.get('prefix')}: {entry.get('handles')} identifiers" + (f"; registered {shown}" if shown else "")]
    refused = sorted((entry.get("quotaRefusalsPerDay") or {}).items())[-SHOWN_DAYS:]
    for day, kinds in refused:
        lines.append(f"  quota refusals {day}: " + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())))
    return lines


def _audit(client: AdminClient, args: argparse.Namespace) -> Shown:
    _authenticated(client)
    query = [("prefix", _prefix(args.prefix))] if args.prefix else []
    query += [(k, str(v)) for k, v in (("since", args.since), ("limit", args.limit)) if v is not None]
    answer = client.get("/api/audit", query)
    lines = [
        " ".join(str(e.get(k, "")) for k in ("time", "identity", "address", "operation", "handle", "responseCode"))
        + (f" {e['message']}" if e.get("message") else "")
        for e in answer.get("entries", [])
    ]
    return answer, lines or ["no entries"]
