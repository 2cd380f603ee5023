"""End to end through the trading gateway: requests a second and acknowledgement latency over TCP.

Run: ``python3 benchmarks/gateway_bench.py [--sessions 4] [--orders 20000] [--rate 2000]``.

``carbonx serve`` runs in its own process (the engine's core to itself) on
a free loopback port; this process is the load generator: ``--sessions``
demo accounts log on with the client library and each sends its share of
``--orders`` as a new order followed by its cancel (non-crossing prices:
what a market maker's quoting looks like, and the heaviest request path
short of a fill). Two runs:

- throughput: every session pipelines with up to ``--window`` requests
  unanswered; figure: requests answered a second;
- latency: requests sent at ``--rate`` a second in all, spread over the
  sessions; figure: send-to-answer percentiles, measured by the client.

The server journals every request (``--journal-fsync``): ``batch``, the
default of ``carbonx serve``, answers a batch only once an fdatasync has it
on disk; ``off`` writes the journal without syncing. ``both`` (the default
here) runs each policy in turn, with a new server and a new data directory
each, ``off`` first as the baseline.

The load generator shares the machine (2 cores here) with the server; the
CPU each used during the throughput run is printed, so the reader can tell
which side was the limit (the server's one thread near 100%: the server).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

from gateway.client import ExchangeClient, connect

ACCOUNTS = [
    "bank",
    "broker",
    "utility-north",
    "speculator",
    "cdm-developer",
    "ji-developer",
    "gov-fund",
    "carbon-fund",
    "paper-mill",
    "cement-works",
]
SECRET = "carbonx-demo"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(
    port: int, fsync: str, data_dir: str | Path, *, options: list[str] = (), serve_options: list[str] = ()
) -> subprocess.Popen:
    """``carbonx [options] serve`` for measuring: no throttle, no periodic snapshot, a journal in
    ``data_dir``; its log goes to ``serve.log`` beside the data directory, quoted if it fails to start."""
    log_path = Path(data_dir).parent / f"serve-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                *options,
                "serve",
                "--port",
                str(port),
                "--log-level",
                "WARNING",
                "--throttle-rate",
                "1000000",
                "--throttle-burst",
                "1000000",
                "--journal-fsync",
                fsync,
                "--data-dir",
                str(data_dir),
                "--snapshot-every",
                "0",
                *serve_options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    if not listening(port, process, 60):
        raise RuntimeError(f"carbonx serve did not start: {log_path.read_text()[-2000:]}")
    return process


def listening(port: int, process: subprocess.Popen, seconds: float) -> bool:
    """Wait until ``port`` on 127.0.0.1 takes connections; False (the process killed) if it exits or the
    time runs out first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.02)
    process.kill()
    return False


def order_pair(client: ExchangeClient, number: int) -> tuple[dict, dict]:
    """A resting buy well under the market (no fill) and its cancel."""
    clid = f"{client.logon['session_id']}-{number}"
    order = client.new_order_message("EUA", "B", 1, 6700 + number % 50, client_order_id=clid)
    return order, {"type": "cancel_order", "client_order_id": clid}


async def pipelined(client: ExchangeClient, pairs: int, window: int) -> int:
    """Send ``pairs`` order+cancel pairs keeping at most ``window`` requests unanswered; return answers."""
    answered = 0
    sent = 0
    stream = client.messages()
    requests = [message for number in range(pairs) for message in order_pair(client, number)]
    while answered < len(requests):
        while sent < len(requests) and sent - answered < window:
            client.send(requests[sent])
            sent += 1
        await stream.__anext__()
        answered += 1
    return answered


async def paced(client: ExchangeClient, pairs: int, interval: float, latencies: list[float]) -> None:
    """Send order+cancel pairs every ``interval`` seconds, timing each request to its first answer."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for number in range(pairs):
        target = start + number * interval
        delay = target - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for message in order_pair(client, number + 10_000_000):
            sent = time.perf_counter()
            await client.request(message)
            latencies.append(time.perf_counter() - sent)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(args: argparse.Namespace, fsync: str, data_dir: str) -> None:
    port = free_port()
    server = start_server(
        port, fsync, Path(data_dir) / "data", serve_options=["--mqtt-url", args.mqtt_url] if args.mqtt_url else []
    )
    print(f"-- journal fsync {fsync}")
    try:
        async with asyncio.timeout(600), AsyncExitStack() as sessions:
            clients = [
                await sessions.enter_async_context(connect("127.0.0.1", port, account, SECRET))
                for account in ACCOUNTS[: args.sessions]
            ]
            pairs = args.orders // args.sessions
            cpu = time.process_time()
            server_cpu = process_cpu(server.pid)
            started = time.perf_counter()
            answered = sum(await asyncio.gather(*(pipelined(c, pairs, args.window) for c in clients)))
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            server_cpu = process_cpu(server.pid) - server_cpu
            print(
                f"throughput: {answered:,} requests answered in {elapsed:.2f} s = "
                f"{answered / elapsed:,.0f} requests/s ({answered / 2 / elapsed:,.0f} orders/s with their "
                f"cancels) over {args.sessions} sessions, window {args.window}; CPU of one core: "
                f"server {server_cpu / elapsed:.0%}, load generator {cpu / elapsed:.0%}"
            )
            latencies: list[float] = []
            per_session = args.rate / 2 / args.sessions  # pairs a second per session
            count = max(1, int(per_session * args.seconds))
            await asyncio.gather(*(paced(c, count, 1 / per_session, latencies) for c in clients))
            print(
                f"latency at {args.rate:,.0f} requests/s: "
                + ", ".join(
                    f"p{int(share * 1000) / 10:g} {percentile(latencies, share) * 1e3:.2f} ms"
                    for share in (0.5, 0.9, 0.99, 0.999)
                )
                + f", max {max(latencies) * 1e3:.2f} ms ({len(latencies):,} requests)"
            )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument(
        "--orders", type=int, default=20_000, help="orders (each with its cancel) in the throughput run"
    )
    parser.add_argument("--window", type=int, default=200, help="unanswered requests a session may have")
    parser.add_argument("--rate", type=float, default=2000.0, help="requests a second in the latency run")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the latency run")
    parser.add_argument("--mqtt-url", help="the server publishes market data to this broker too")
    parser.add_argument(
        "--journal-fsync",
        choices=("batch", "off", "both"),
        default="both",
        help="the server's journal policy (both: off, then batch)",
    )
    args = parser.parse_args()
    if not 1 <= args.sessions <= len(ACCOUNTS):
        raise SystemExit(f"--sessions: 1 to {len(ACCOUNTS)} (the demo accounts)")
    print(
        f"carbonx gateway benchmark: python {sys.version.split()[0]}, {os.cpu_count()} cores; "
        f"carbonx serve in its own process"
    )
    for fsync in ("off", "batch") if args.journal_fsync == "both" else (args.journal_fsync,):
        with tempfile.TemporaryDirectory(prefix="carbonx-gateway-bench-") as data_dir:
            asyncio.run(run(args, fsync, data_dir))


if __name__ == "__main__":
    main()
