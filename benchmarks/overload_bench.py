"""Overload: the exchange offered three times what it can take, for a minute; what each session sees.

Run: ``python3 benchmarks/overload_bench.py [--sessions 50] [--factor 3] [--seconds 60]``
(``--quick``: 20 sessions, 10 seconds).

How this works
--------------
``carbonx serve`` runs in its own process on a free loopback port (journal
synced per batch, the shipped throttle of 5,000 messages a second a
session). Load generators in two processes of their own each drive half of
``--sessions`` bench accounts over bare sockets, with frames encoded before
the clock starts:

1. **maximum rate**: every session pipelines orders and their cancels with
   up to ``WINDOW`` unanswered; the answers a second are the exchange's
   capacity ``C``;
2. **overload**: every session sends at its share of ``--factor`` x ``C``,
   open loop (a request is sent when it is due, whether or not the earlier
   ones were answered), for ``--seconds``. Each request's latency runs from
   when it was due to its answer, whatever the answer: executed, refused
   over capacity (719) or throttled (708). At 3 x C over 50 sessions each
   session sends at about a quarter of its throttle rate, so a 708 means
   the throttle charged a session for the exchange's own backlog.

Printed: C; then for the overload run the answers by kind, and the latency
percentiles of all answers and of the executed ones (HDR histograms, merged
across the generators), and the exchange's own count of 719s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gateway_suite  # noqa: E402
from gateway_bench import free_port, process_cpu  # noqa: E402

PROCESSES = 2
WINDOW = 50  # requests a session keeps unanswered in the maximum-rate run
MAX_RATE_SECONDS = 6.0
TICK = 0.005  # seconds between the overload generator's sends (each sends what fell due since the last)
HIGHEST_US = 600_000_000  # the histograms' range: up to 10 minutes, in microseconds
THROTTLED, OVERLOADED = 708, 719


class Answer(msgspec.Struct):
    """What the generator reads of an answer (msgspec skips the other fields unread: the generator must stay
    cheaper than the exchange it measures)."""

    type: str
    request_id: object = None
    code: object = None


def frame(message: dict) -> bytes:
    body = msgspec.msgpack.encode(message)
    return len(body).to_bytes(4, "big") + body


def requests_for(session: int, count: int) -> list[bytes]:
    """``count`` requests: a resting buy (never filled) and its cancel, in turn; request_id is the index."""
    frames = []
    for number in range(count):
        clid = f"{session}-{number // 2}"
        if number % 2 == 0:
            message = {
                "type": "new_order",
                "instrument": "EUA",
                "side": "B",
                "quantity": 1,
                "price": 6700 + (number // 2) % 50,
                "client_order_id": clid,
                "request_id": number,
            }
        else:
            message = {"type": "cancel_order", "client_order_id": clid, "request_id": number}
        frames.append(frame(message))
    return frames


class Session:
    """One bench account's connection: what it sent when, and the first answer to each request."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.answered = 0
        self.kinds = {"executed": 0, "throttled": 0, "overloaded": 0}
        self.latencies_us: list[int] = []
        self.executed_us: list[int] = []
        self.due: list[float] = []  # when each request was due (overload run) or sent (maximum rate)
        self.seen: set[int] = set()

    @classmethod
    async def open(cls, port: int, account: str) -> Session:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        writer.write(
            frame({"type": "logon", "account": account, "secret": gateway_suite.SECRET, "cancel_on_disconnect": False})
        )
        header = await reader.readexactly(4)
        answer = msgspec.msgpack.decode(await reader.readexactly(int.from_bytes(header, "big")))
        if answer.get("type") != "logon_accepted":
            raise RuntimeError(f"logon refused: {answer}")
        return cls(reader, writer)

    async def read_answers(self, expected: int, timing: bool) -> None:
        decode = msgspec.msgpack.Decoder(Answer).decode
        buffer = b""
        while self.answered < expected:
            data = await self.reader.read(1 << 20)
            if not data:
                raise RuntimeError("the exchange closed the session")
            buffer += data
            now = time.perf_counter()
            offset = 0
            while len(buffer) - offset >= 4:
                size = int.from_bytes(buffer[offset : offset + 4], "big")
                if len(buffer) - offset - 4 < size:
                    break
                message = decode(buffer[offset + 4 : offset + 4 + size])
                offset += 4 + size
                request_id = message.request_id
                if request_id is None or request_id in self.seen:
                    continue
                self.seen.add(request_id)
                self.answered += 1
                code = message.code if message.type == "reject" else None
                kind = "throttled" if code == THROTTLED else "overloaded" if code == OVERLOADED else "executed"
                self.kinds[kind] += 1
                if timing:
                    latency = max(1, int((now - self.due[request_id]) * 1e6))
                    self.latencies_us.append(latency)
                    if kind == "executed":
                        self.executed_us.append(latency)
            buffer = buffer[offset:]


async def maximum_rate(port: int, accounts: list[str], seconds: float) -> int:
    """Answers in ``seconds``, every session keeping WINDOW requests unanswered."""
    sessions = [await Session.open(port, account) for account in accounts]
    count = 400_000 // max(1, len(accounts))
    deadline = time.perf_counter() + seconds

    async def drive(index: int, session: Session) -> None:
        frames = requests_for(index, count)
        sent = 0
        reader = asyncio.create_task(session.read_answers(count, timing=False))
        while time.perf_counter() < deadline and sent < count:
            window = min(count, session.answered + WINDOW)
            if window > sent:
                session.writer.write(b"".join(frames[sent:window]))
                sent = window
            await asyncio.sleep(0.0005)
        reader.cancel()

    await asyncio.gather(*(drive(index, session) for index, session in enumerate(sessions)))
    return sum(session.answered for session in sessions)


async def overload(port: int, accounts: list[str], rate_each: float, seconds: float) -> dict:
    sessions = [await Session.open(port, account) for account in accounts]
    count = int(rate_each * seconds)
    frames = [requests_for(index, count) for index in range(len(sessions))]
    start = time.perf_counter() + 0.2
    for session in sessions:
        session.due = [start + number / rate_each for number in range(count)]
    readers = [asyncio.create_task(session.read_answers(count, timing=True)) for session in sessions]
    sent = [0] * len(sessions)
    while min(sent) < count:
        now = time.perf_counter()
        due = min(count, max(0, int((now - start) * rate_each) + 1))
        for index, session in enumerate(sessions):
            if due > sent[index]:
                session.writer.write(b"".join(frames[index][sent[index] : due]))
                sent[index] = due
        await asyncio.sleep(TICK)
    await asyncio.wait_for(asyncio.gather(*readers), seconds * 20 + 60)
    kinds = {"executed": 0, "throttled": 0, "overloaded": 0}
    for session in sessions:
        for kind, number in session.kinds.items():
            kinds[kind] += number
    return {
        "kinds": kinds,
        "all": histogram([s.latencies_us for s in sessions]),
        "executed": histogram([s.executed_us for s in sessions]),
        "throttled_sessions": sum(1 for s in sessions if s.kinds["throttled"]),
    }


def histogram(groups: list[list[int]]) -> str:
    from hdrh.histogram import HdrHistogram

    result = HdrHistogram(1, HIGHEST_US, 3)
    for values in groups:
        for value in values:
            result.record_value(min(value, HIGHEST_US))
    return result.encode().decode()


def worker(mode: str, port: int, accounts: list[str], rate_each: float, seconds: float, results) -> None:
    cpu = time.process_time()
    if mode == "max":
        outcome = asyncio.run(maximum_rate(port, accounts, seconds))
    else:
        outcome = asyncio.run(overload(port, accounts, rate_each, seconds))
    results.put((outcome, time.process_time() - cpu))


def run_generators(mode: str, port: int, accounts: list[str], rate_each: float, seconds: float) -> list:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    shares = [accounts[index::PROCESSES] for index in range(PROCESSES)]
    processes = [
        context.Process(target=worker, args=(mode, port, share, rate_each, seconds, results))
        for share in shares
        if share
    ]
    for process in processes:
        process.start()
    outcome = [results.get(timeout=seconds * 30 + 300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    print(f"  (load generators' CPU: {', '.join(f'{cpu:.1f} s' for _, cpu in outcome)})")
    return [part for part, _ in outcome]


def percentiles(encoded: list[str]) -> str:
    from hdrh.histogram import HdrHistogram

    merged = HdrHistogram(1, HIGHEST_US, 3)
    for text in encoded:
        merged.decode_and_add(text)
    if merged.get_total_count() == 0:
        return "none"
    parts = [f"p{share:g} {merged.get_value_at_percentile(share) / 1000:,.1f} ms" for share in (50, 90, 99, 99.9)]
    return ", ".join(parts) + f", max {merged.get_max_value() / 1000:,.1f} ms ({merged.get_total_count():,})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--factor", type=float, default=3.0, help="the overload, times the maximum rate")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="20 sessions for 10 seconds")
    parser.add_argument(
        "--checkout",
        type=Path,
        help="run the exchange from this checkout of carbonx (an earlier "
        "commit, say: git worktree add /tmp/base COMMIT); default: this one",
    )
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.seconds = 20, 10.0
    print(
        f"carbonx overload benchmark: python {sys.version.split()[0]}, {os.cpu_count()} cores; "
        f"carbonx serve in its own process, {args.sessions} sessions in {PROCESSES} load processes"
    )
    with tempfile.TemporaryDirectory(prefix="carbonx-overload-") as scratch:
        folder = Path(scratch)
        accounts_path = gateway_suite.accounts_file(folder, args.sessions)
        accounts = [f"bench-{number:04d}" for number in range(1, args.sessions + 1)]
        port = free_port()
        here = os.getcwd()
        os.chdir(args.checkout or Path(__file__).resolve().parent.parent)  # python -m gateway.cli runs from here
        try:
            server = gateway_suite.start_exchange(
                port, "batch", folder, accounts_path, ["--throttle-rate", "5000", "--throttle-burst", "1000"]
            )
        finally:
            os.chdir(here)
        try:
            started, cpu = time.perf_counter(), process_cpu(server.pid)
            answered = sum(run_generators("max", port, accounts, 0.0, MAX_RATE_SECONDS))
            elapsed = time.perf_counter() - started
            capacity = answered / MAX_RATE_SECONDS
            print(
                f"maximum rate: {capacity:,.0f} requests/s answered ({answered:,} in {MAX_RATE_SECONDS:g} s; "
                f"server CPU {(process_cpu(server.pid) - cpu) / elapsed:.0%} of a core)"
            )
            rate_each = capacity * args.factor / args.sessions
            print(
                f"overload: {args.factor:g} x that = {capacity * args.factor:,.0f} requests/s offered, "
                f"{rate_each:,.0f} a session ({rate_each / 5000:.0%} of its throttle rate), for {args.seconds:g} s"
            )
            outcome = run_generators("overload", port, accounts, rate_each, args.seconds)
            kinds = {kind: sum(part["kinds"][kind] for part in outcome) for kind in outcome[0]["kinds"]}
            total = sum(kinds.values())
            print(
                f"answers: {total:,} of {int(rate_each * args.seconds) * args.sessions:,} requests; executed "
                f"{kinds['executed']:,} ({kinds['executed'] / total:.0%}), refused over capacity (719) "
                f"{kinds['overloaded']:,} ({kinds['overloaded'] / total:.0%}), throttled (708) "
                f"{kinds['throttled']:,} in {sum(part['throttled_sessions'] for part in outcome)} sessions"
            )
            print(f"latency, due to answered, every answer: {percentiles([part['all'] for part in outcome])}")
            print(f"latency, due to answered, executed only: {percentiles([part['executed'] for part in outcome])}")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
