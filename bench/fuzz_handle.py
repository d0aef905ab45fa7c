"""Issue 21: Handle protocol fuzzing of a real node over UDP or TCP, with an oracle on every reply.

Starts ``idnode serve --workers 2`` on free loopback ports and a fresh store, gives it what
bench.fuzz_http gives it (an enterprise prefix with its own admin identity, records of every
value format, a sub-prefix delegated to a closed loopback port, a template) and a sentinel
record, then sends generated Handle messages (bench.fuzzgen_handle: every op code the codec
knows and unknown ones, well-formed, then mutated) from ``--concurrency`` tasks, each case
from one of 64 loopback source addresses, until ``--count`` cases or ``--seconds`` have gone.
A challenge (402) is answered as the case says (right, wrong key, unknown identity, garbled).

The oracle, per reply: it decodes with the project's decoder as a response (a response code
the protocol defines) and carries the request id of the message it answers. Per case:

* UDP: every datagram that is a whole message (at least an envelope, truncated flag clear)
  is answered within 5 s. A datagram that is no parsable envelope (under 20 bytes) or is one
  part of a multi-datagram message (truncated flag set) may be dropped: a server cannot
  answer a part whose message never completes, nor address an answer to an envelope it
  cannot read (it may still answer, with request id 0);
* TCP: the messages the stream frames (envelope, then as many bytes as its length says) are
  answered in order, KEEP_ALIVE or not; the fuzzer half-closes after a stream of whole
  messages, and the node closes once it has answered them; it may close early only after
  answering a message from a client before protocol 2.8 (no suggested version) without
  KEEP_ALIVE, as CNRI's 7.x server does, or after refusing an envelope whose length is out of
  bounds (answered with a protocol error first, unless the close beat it); a stream that
  stops inside a message is closed by the node; no connection waits over 5 s for an answer
  or a close;

and for the run: the same worker processes at the end as at the start, no ERROR or
Traceback in the node's log, and a normal resolution of the sentinel over UDP and TCP still
answers it. Failures go to bench/results/fuzz_handle_failures.jsonl, a summary to
bench/results/fuzz_handle_summary.txt (one line per transport, the last run of each); the
exit status is 1 on any failure::

    timeout 1800 python -m bench.fuzz_handle --seed 1 --count 100000 --transport udp
    python -m bench.fuzz_handle --seed 1 --transport tcp --replay 4711   # one case: its bytes, the replies
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import re
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.fuzz_http import ENTERPRISE_SECRET, LOG_RECORD, call, log_problems, prepare
from bench.fuzzgen_handle import Case, Generator, Identity, World
from bench.fuzzoracle_handle import (
    HANG_SECONDS,
    Gatherer,
    frames,
    int32,
    judge_tcp,
    read_reply,
    udp_expectations,
)
from bench.resolve_baseline import ADMIN_SECRET, RESULTS, Target, machine, revision, serve_command
from protocol.codes import ResponseCode
from protocol.wire.auth import hashed_secret_key
from protocol.wire.message import (
    ENVELOPE_SIZE,
    MAX_MESSAGE,
    MAX_UDP_PACKET,
    Envelope,
    ErrorResponse,
    Message,
    OpCode,
    ResolutionRequest,
    ResolutionResponse,
    encode_message,
)
from tests.support.nodeproc import child_pids

DROP_WAIT = 0.25  # how long to listen for a reply a server may drop
SOURCES = 64  # loopback source addresses the cases come from: 127.0.0.2 onwards
MAX_FOLLOW_UPS = 4  # challenges answered per case
MESSAGE_TIMEOUT = 2.0  # the node's handle_message_timeout for the run (the default is 10 s)
SENTINEL = ("88.118.5/SENTINEL", b"https://example.com/sentinel")
NODE_ENV = {
    # Raised: the fuzzer answers challenges with wrong keys on purpose (the limits have tests of their own).
    "IDNODE_AUTH_FAILURE_LIMIT": "10000",
    "IDNODE_AUTH_BRAKE_LIMIT": "10000",
    # Lowered: a stream that stops inside a message is cut within the oracle's 5 s (default 10 s).
    "IDNODE_HANDLE_MESSAGE_TIMEOUT": str(MESSAGE_TIMEOUT),
}
LIMITS_NOTE = (
    "limits: auth failure and brake limits raised to 10000 a minute; handle_message_timeout lowered to 2 s; "
    "UDP rate not applied (loopback is in handle_udp_exempt, the default); challenges pending per source "
    "(8 small, 2 large) and session setups (50 a second per node, 2 at once per worker) as shipped, the cases "
    f"spread over {SOURCES} loopback addresses and answering their challenges"
)


@dataclass
class Tally:
    transport: str
    sent: int = 0
    codes: collections.Counter[int] = field(default_factory=collections.Counter)
    by_op: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)  # reply op, code
    errors: collections.Counter[tuple[int, str]] = field(default_factory=collections.Counter)  # code, message
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    dropped: int = 0  # UDP: datagrams a server may drop, not answered
    closed_early: int = 0  # TCP: connections closed, as allowed, before every message was answered
    follow_ups: int = 0  # challenge answers sent
    in_sessions: int = 0  # requests sent in sessions the cases set up
    failures: list[dict[str, Any]] = field(default_factory=list)
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0

    def fail(self, case: Case, reason: str, replies: Sequence[bytes] = (), sent: Sequence[bytes] = ()) -> None:
        self.reasons[reason.split(":")[0]] += 1
        entry: dict[str, Any] = {**case.describe(), "reason": reason}
        if sent:
            entry["sent"] = [s.hex() for s in sent]
        entry["replies"] = [r[:2000].hex() for r in replies]
        self.failures.append(entry)

    def count(self, message: Message) -> None:
        """A reply that passed the oracle: its code, its op code with it, and an error's words."""
        self.codes[message.response_code] += 1
        op = message.op_code.name if isinstance(message.op_code, OpCode) else str(message.op_code)
        self.by_op[op, message.response_code] += 1
        if isinstance(message.body, ErrorResponse):
            self.errors[message.response_code, re.sub(r"\d+", "N", message.body.message)[:90]] += 1


# UDP ---------------------------------------------------------------------------------------


async def udp_exchange(source: str, port: int, units: list[bytes]) -> tuple[list[bytes], str | None]:
    """Send ``units`` from a socket of their own; the whole replies, and a problem (or None).

    Waits for every required reply (up to 5 s each), or, when none is required, DROP_WAIT
    for any reply."""
    loop = asyncio.get_running_loop()
    required, optional = udp_expectations(units)
    replies: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind((source, 0))
        for unit in units:
            await loop.sock_sendto(sock, unit, ("127.0.0.1", port))
        gather = Gatherer()
        waiting = required.copy()
        while True:
            wait = HANG_SECONDS if +waiting else (DROP_WAIT if not replies else 0.0)
            if wait == 0.0:
                return replies, None
            try:
                async with asyncio.timeout(wait):
                    datagram, _ = await loop.sock_recvfrom(sock, 65536)
            except TimeoutError:
                if +waiting:
                    return replies, f"no reply: request ids {sorted(waiting)} unanswered after {wait:.0f} s"
                return replies, None
            whole = gather.add(datagram)
            if isinstance(whole, str):
                return replies, whole
            if whole is None:
                continue
            replies.append(whole)
            rid = int32(whole, 8)
            if waiting[rid] > 0:
                waiting[rid] -= 1
            elif rid not in optional and rid not in required:
                return replies, f"wrong request id: a reply carries {rid}, sent {sorted({*required, *optional})}"
            if not +waiting:
                return replies, None


# TCP ---------------------------------------------------------------------------------------


async def tcp_exchange(source: str, port: int, units: list[bytes]) -> tuple[list[bytes], str, float]:
    """Write ``units`` in turn on a new connection, half-closing it after a stream of whole
    messages, then read replies: the replies, how it ended ("closed", "reset", "hang"), and how
    long writing the pieces took (on a loaded machine, longer than the node waits for a message).
    A stream that stops inside a message is left open: the node must cut it (message timeout)."""
    expected = frames(b"".join(units))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0), limit=2**20)
    except OSError as exc:
        raise RuntimeError(f"cannot connect to the node: {exc}") from None
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    replies: list[bytes] = []
    started = time.monotonic()
    try:
        for i, unit in enumerate(units):
            writer.write(unit)
            await writer.drain()
            if i < len(units) - 1:
                await asyncio.sleep(0.005)
        if not expected.partial:
            writer.write_eof()  # done sending: every message is answered, then the node closes
    except OSError:
        pass  # closed (or reset) while we wrote: read what came
    writing = time.monotonic() - started
    try:
        while True:
            try:
                async with asyncio.timeout(HANG_SECONDS):
                    head = await reader.readexactly(ENVELOPE_SIZE)
                    length = int32(head, 16)
                    if not 0 <= length <= MAX_MESSAGE:
                        replies.append(head)
                        return replies, "closed", writing  # judged: the reply does not decode
                    replies.append(head + await reader.readexactly(length))
            except TimeoutError:
                return replies, "hang", writing
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    replies.append(exc.partial)  # judged: a reply cut short
                return replies, "closed", writing
            except ConnectionError:
                return replies, "reset", writing
    finally:
        writer.close()


# The run -----------------------------------------------------------------------------------


def source_of(n: int) -> str:
    return f"127.0.0.{2 + n % SOURCES}"


async def run_case(generator: Generator, case: Case, port: int, tally: Tally, *, verbose: bool = False) -> None:
    """Send one case, then what its replies call for (answers to challenges, requests in the
    sessions it set up), each on its own socket, and judge every reply."""
    source = source_of(case.n)
    exchanges = [case.units]
    seen = collections.Counter[str]()  # challenges and sessions met so far
    while exchanges:
        units = exchanges.pop(0)
        for message, raw in await _exchange(case, units, source, port, tally, verbose=verbose):
            tally.count(message)
            exchanges += [[m] for m in _follow_ups(generator, case, message, raw, seen, tally)]


def _follow_ups(
    generator: Generator, case: Case, message: Message, raw: bytes, seen: collections.Counter[str], tally: Tally
) -> list[bytes]:
    """What to send after ``message``: the answer to a challenge, or requests in a session it set up."""
    if message.response_code == ResponseCode.AUTHENTICATION_NEEDED and case.answer != "none":
        seen["challenge"] += 1
        if seen["challenge"] > MAX_FOLLOW_UPS:
            return []
        answers = generator.answers(case, raw, seen["challenge"] - 1)
        tally.follow_ups += len(answers)
        return answers
    if message.op_code == OpCode.SESSION_SETUP and message.response_code == ResponseCode.SUCCESS:
        seen["session"] += 1
        if seen["session"] > MAX_FOLLOW_UPS:
            return []
        requests = generator.in_session(case, raw, seen["session"] - 1)
        tally.in_sessions += len(requests)
        return requests
    return []


async def _exchange(
    case: Case, units: list[bytes], source: str, port: int, tally: Tally, *, verbose: bool
) -> list[tuple[Message, bytes]]:
    if case.transport == "udp":
        replies, problem = await udp_exchange(source, port, units)
        decoded = []
        for raw in replies:
            message, bad = read_reply(raw)
            if bad is not None:
                problem = problem or bad
            elif message is not None:
                decoded.append((message, raw))
        required, _ = udp_expectations(units)
        if not replies and not required:
            tally.dropped += 1
        bound = max(MAX_UDP_PACKET, 2 * sum(len(u) for u in units))  # the node's promise against amplification
        if problem is None and any(len(raw) > bound for raw in replies):
            problem = f"amplification: a reply of {max(map(len, replies))} bytes to {len(units)} datagrams"
        problems = [problem] if problem else []
    else:
        replies, end, writing = await tcp_exchange(source, port, units)
        expected = frames(b"".join(units))
        decoded, problems = judge_tcp(expected, replies, end, slow=writing > MESSAGE_TIMEOUT / 2)
        if not problems and len(decoded) < len(expected.messages):
            tally.closed_early += 1
    if verbose:
        _show(units, replies, problems)
    for problem in problems:
        tally.fail(case, problem, replies, units if units is not case.units else ())
    return decoded


def _show(units: list[bytes], replies: list[bytes], problems: list[str]) -> None:
    for unit in units:
        print(f"--> {len(unit)} bytes: {unit[:600].hex()}")
    for raw in replies:
        message, problem = read_reply(raw)
        print(f"<-- {len(raw)} bytes: {problem or message}")
    print(f"oracle: {problems or 'ok'}")


async def fuzz(generator: Generator, port: int, transport: str, count: int, seconds: float, concurrency: int) -> Tally:
    """Send cases 0..count-1 (or as many as ``seconds`` allow) and judge every reply."""
    tally = Tally(transport)
    numbers = iter(range(count))
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        for n in numbers:
            if time.monotonic() > deadline:
                break
            case = generator.case(n, transport)
            tally.sent += 1
            tally.kinds[case.kind] += 1
            await run_case(generator, case, port, tally)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.seconds = time.monotonic() - started
    return tally


async def still_answers(port: int) -> list[str]:
    """A plain resolution of the sentinel over UDP and TCP, after the run: what is wrong, if anything."""
    handle, url = SENTINEL
    problems = []
    for transport in ("udp", "tcp"):
        envelope = Envelope(request_id=424242, version=(2, 10), suggest=(2, 10))
        request = encode_message(Message(OpCode.RESOLUTION, ResolutionRequest(handle), envelope=envelope))
        if transport == "udp":
            replies, problem = await udp_exchange("127.0.0.1", port, [request])
        else:
            replies, end, _ = await tcp_exchange("127.0.0.1", port, [request])
            problem = None if replies else f"no reply ({end})"
        message = read_reply(replies[0])[0] if replies else None
        body = message.body if message is not None else None
        if problem or not isinstance(body, ResolutionResponse) or url not in [v.data for v in body.values]:
            problems.append(f"after the run, resolving {handle} over {transport}: {problem or message}")
    return problems


# The node under test -------------------------------------------------------------------------


def world_of(port: int, admin_secret: str = ADMIN_SECRET) -> World:
    """The node's records (bench.fuzz_http.prepare), a sentinel, and the identities as the generator
    needs them; ``admin_secret`` is the node admin's (IDNODE_ADMIN_SECRET)."""
    admin = ("300:0.NA/88.118", admin_secret)
    http_world = prepare(port, admin)
    handle, url = SENTINEL
    status, answer = call(
        port, "PUT", f"/api/handles/{handle}", [{"index": 1, "type": "URL", "data": url.decode()}], admin
    )
    if status != 201:
        raise RuntimeError(f"preparing the node: the sentinel: HTTP {status}: {answer}")
    records = tuple(h for h in http_world.handles if "/REC-" in h)
    return World(
        admin=Identity("0.NA/88.118", 300, hashed_secret_key(admin_secret.encode())),
        enterprise=Identity(f"0.NA/{http_world.enterprise_prefix}", 300, hashed_secret_key(ENTERPRISE_SECRET.encode())),
        enterprise_prefix=http_world.enterprise_prefix,
        node_prefix=http_world.node_prefix,
        handles=(*http_world.handles, handle),
        writable=records,
    )


def summary(tally: Tally, restarts: int, log_found: list[str], after: list[str], args: argparse.Namespace) -> str:
    codes = " ".join(f"{c}:{n}" for c, n in sorted(tally.codes.items()))
    failed = len(tally.failures) + restarts + len(log_found) + len(after)
    verdict = "PASS" if failed == 0 else "FAIL"
    if tally.transport == "udp":
        dropped = f"UDP datagrams dropped as allowed {tally.dropped}"
    else:
        dropped = f"TCP connections closed early as allowed {tally.closed_early}"
    rate = tally.sent / max(tally.seconds, 1e-9)
    return (
        f"fuzz_handle[{tally.transport}] {verdict}: seed {args.seed}, store {args.store}, "
        f"{tally.sent} cases in {tally.seconds:.1f} s ({rate:.0f}/s), {tally.follow_ups} challenge answers, "
        f"{tally.in_sessions} requests in sessions; "
        f"reply codes {codes}; {dropped}; failures {len(tally.failures)} {dict(tally.reasons)}; "
        f"worker restarts {restarts}; node log errors {len(log_found)}; after the run: {after or 'answers'}; "
        f"revision {revision()}; {machine()}"
    )


def write_results(tally: Tally, line: str, log_found: list[str], after: list[str]) -> None:
    """This transport's summary line and failures, keeping the other transport's."""
    RESULTS.mkdir(exist_ok=True)
    tag = f"fuzz_handle[{tally.transport}]"
    summary_file = RESULTS / "fuzz_handle_summary.txt"
    kept = [
        x
        for x in (summary_file.read_text().splitlines() if summary_file.exists() else [])
        if x.startswith("fuzz_handle[")
    ]
    lines = sorted([*(x for x in kept if not x.startswith(tag)), line])
    summary_file.write_text("\n".join([*lines, LIMITS_NOTE]) + "\n")
    failures_file = RESULTS / "fuzz_handle_failures.jsonl"
    entries = failures_file.read_text().splitlines() if failures_file.exists() else []
    others = [e for e in entries if json.loads(e).get("transport") != tally.transport]
    mine = [json.dumps(f, ensure_ascii=False) for f in tally.failures]
    mine += [
        json.dumps({"transport": tally.transport, "reason": "log", "log": c}, ensure_ascii=False) for c in log_found
    ]
    mine += [json.dumps({"transport": tally.transport, "reason": a}, ensure_ascii=False) for a in after]
    failures_file.write_text("".join(f"{e}\n" for e in [*others, *mine]))


def node_problems(lines: list[str]) -> list[str]:
    """ERROR records of the node (bench.fuzz_http.log_problems), and any Traceback outside them."""
    found, _ = log_problems(lines)
    if not found and any("Traceback" in line for line in lines):
        found = [line for line in lines if "Traceback" in line]
    return found


def warnings_in(lines: list[str]) -> collections.Counter[str]:
    """The node's WARNING records, counted by their words (numbers as N): not failures, but worth a look."""
    found: collections.Counter[str] = collections.Counter()
    for line in lines:
        record = LOG_RECORD.match(line)
        if record is not None and record["level"] == "WARNING":
            found[f"{record['logger']}: {re.sub(r'[0-9]+', 'N', record['message'])[:120]}"] += 1
    return found


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="idnode-fuzz-handle-") as work, contextlib.ExitStack() as stack:
        cmd = [*serve_command("--data-dir", f"{work}/data"), "--workers", "2"]
        if args.store != "sqlite":
            from tests.support.pgproc import temp_database

            cmd += ["--store", stack.enter_context(temp_database(args.store))]
        node = Target("node", "idnode serve", cmd)
        node.env = dict(NODE_ENV)
        node.start()
        try:
            assert node.proc is not None
            world = world_of(node.port)
            generator = Generator(args.seed, world)
            if args.replay is not None:
                return replay(generator, node.handle_port, args.transport, args.replay)
            before = child_pids(node.proc.pid)
            concurrency = args.concurrency or (32 if args.transport == "udp" else 96)
            tally = asyncio.run(
                fuzz(generator, node.handle_port, args.transport, args.count, args.seconds, concurrency)
            )
            after = asyncio.run(still_answers(node.handle_port))
            time.sleep(0.5)  # let the log drain
            restarts = len(before - child_pids(node.proc.pid))
        finally:
            node.stop()
    log_found = node_problems(node.log)
    if args.log is not None:
        args.log.write_text("".join(node.log))
    line = summary(tally, restarts, log_found, after, args)
    print(line)
    print(f"cases by kind: {dict(tally.kinds.most_common())}")
    print(f"node log warnings: {dict(warnings_in(node.log).most_common())}")
    print(f"replies by op and code: {sorted(tally.by_op.items())}")
    if args.errors:
        for (code, text), count in sorted(tally.errors.items()):
            print(f"  {code:>3} {count:>6}  {text}")
    write_results(tally, line, log_found, after)
    return 0 if not tally.failures and not restarts and not log_found and not after else 1


def replay(generator: Generator, port: int, transport: str, n: int) -> int:
    case = generator.case(n, transport)
    print(json.dumps(case.describe(20_000), indent=1, ensure_ascii=False))
    tally = Tally(transport)
    asyncio.run(run_case(generator, case, port, tally, verbose=True))
    print(f"codes {dict(tally.codes)}; failures: {[f['reason'] for f in tally.failures] or 'none'}")
    return 1 if tally.failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=100_000, help="cases to send (at most)")
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument(
        "--store",
        default="sqlite",
        help="sqlite (in a temporary directory) or a PostgreSQL server URL (a new database)",
    )
    parser.add_argument("--seconds", type=float, default=1500.0, help="stop sending after this long")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="cases in flight at once (default: UDP 32, TCP 96)"
    )
    parser.add_argument("--log", type=Path, default=None, help="write the node's log to this file")
    parser.add_argument("--errors", action="store_true", help="print the error replies' messages, counted")
    parser.add_argument("--replay", type=int, default=None, metavar="N", help="send case N only and show it")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
