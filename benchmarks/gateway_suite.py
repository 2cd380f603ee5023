"""The gateway part of the benchmark suites (``suite.py gateway``): requests a second and acknowledgement
latency over TCP.

How this works
--------------
``carbonx serve`` runs in its own process on a free loopback port, on a new data directory, with an
accounts file made for the run (``bench-0001`` ... as many as sessions, one secret hashed once). The
load comes from separate load-generator processes (``LOAD_PROCESSES``, each with its share of the
sessions, started together); each session sends new orders that rest (no fill) and their cancels:

- maximum rate: every session pipelines with up to ``WINDOW`` requests unanswered; figure: requests
  answered a second, with the CPU the server and the generators used (the server's one thread near a
  whole core and the generators below it: the server was the limit);
- fixed rates: requests sent at each offered rate in all, spread over the sessions, on schedule
  whether or not earlier ones were answered (an open loop); figure: the latency from when a request
  was due to its answer, measured by the client, in HDR histograms merged across the generators. A
  server that cannot keep up shows as growing latency, not as a slower sender (coordinated omission).

Each is run with the journal synced per batch (``journal_fsync = "batch"``, the default) and without.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway_bench import free_port, order_pair, pipelined, process_cpu, start_server
from plots import new_plot, save_plot

SESSIONS = (1, 10, 100, 1000)
QUICK_SESSIONS = (1, 10)
OFFERED = (1_000, 2_000, 5_000, 10_000, 20_000)  # requests a second, in all
QUICK_OFFERED = (1_000, 5_000)
LATENCY_SESSIONS = 10  # sessions sharing the offered load
LOAD_PROCESSES = 2
WINDOW = 100
REQUESTS = 60_000  # requests (orders and their cancels) in a maximum-rate run
QUICK_REQUESTS = 20_000
SECONDS_A_RATE = 4.0
QUICK_SECONDS_A_RATE = 2.0
SECRET = "carbonx-bench"
POLICIES = ("batch", "off")


def accounts_file(folder: Path, count: int) -> Path:
    """An accounts.toml of ``count`` funded bench accounts sharing one secret (hashed once)."""
    from gateway.sessions.credentials import hash_secret

    stored = hash_secret(SECRET)
    lines = ["# Made by benchmarks/gateway_suite.py for one run.\n"]
    for number in range(1, count + 1):
        lines.append(
            f'[accounts.bench-{number:04d}]\nname = "Benchmark session {number}"\nkind = "bank"\n'
            f'cash_eur = "100000000000.00"\nunits = {{ EUA = 1000000000 }}\nsecret_hash = "{stored}"\n\n'
        )
    path = folder / "accounts.toml"
    path.write_text("".join(lines))
    return path


def start_exchange(port: int, fsync: str, folder: Path, accounts: Path, extra: list[str] = ()) -> subprocess.Popen:
    """The exchange for one measurement: the bench accounts, room for every session."""
    return start_server(
        port,
        fsync,
        folder / "data",
        options=["--accounts", str(accounts)],
        serve_options=["--max-sessions", "2000", *extra],
    )


# -- one load-generator process ------------------------------------------------------------------------


def generator(
    port: int,
    accounts: list[str],
    mode: str,
    amount: float,
    seconds: float,
    start_at: float,
    results: multiprocessing.Queue,
) -> None:
    """Log the sessions on, wait for ``start_at`` (time.time), load the server, report (answered, elapsed,
    cpu seconds, encoded HDR histogram of latencies in ns) on ``results``."""
    results.put(asyncio.run(_generate(port, accounts, mode, amount, seconds, start_at)))


async def _generate(port: int, accounts: list[str], mode: str, amount: float, seconds: float, start_at: float) -> tuple:
    from contextlib import AsyncExitStack

    from hdrh.histogram import HdrHistogram

    from gateway.client import connect

    histogram = HdrHistogram(1, 60_000_000_000, 3)
    lateness = HdrHistogram(1, 60_000_000_000, 3)
    async with AsyncExitStack() as stack:
        clients = []
        for account in accounts:
            clients.append(
                await stack.enter_async_context(connect("127.0.0.1", port, account, SECRET, cancel_on_disconnect=False))
            )
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu = time.process_time()
        started = time.perf_counter()
        if mode == "max":
            per_session = int(amount) // len(accounts) // 2
            answered = sum(await asyncio.gather(*(pipelined(client, per_session, WINDOW) for client in clients)))
        else:
            per_session_rate = amount / len(accounts) / 2  # order+cancel pairs a second per session
            pairs = max(1, int(per_session_rate * seconds))
            await asyncio.gather(
                *(_paced(client, pairs, 1 / per_session_rate, histogram, lateness) for client in clients)
            )
            answered = histogram.get_total_count()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return answered, elapsed, cpu, histogram.encode(), lateness.encode()


async def _paced(client, pairs: int, interval: float, histogram, lateness) -> None:
    """Send an order and its cancel every ``interval`` seconds, on schedule whether or not earlier ones were
    answered (an open loop: a server that falls behind shows as latency, instead of slowing the sender
    down and hiding it, the "coordinated omission" of closed-loop generators), and time each answer from
    its send. How late each send was against its schedule goes to ``lateness``: the event loop's timers
    wake a millisecond or so late, which is the generator's, not the server's."""
    due: dict[object, int] = {}  # request_id -> when it was sent (perf_counter_ns)
    expected = 2 * pairs

    async def answers() -> None:
        answered = 0
        async for message in client.messages():
            sent = due.pop(message.get("request_id"), None)
            if sent is not None:
                histogram.record_value(max(1, time.perf_counter_ns() - sent))
                answered += 1
                if answered == expected:
                    return

    reader = asyncio.create_task(answers(), name="bench-answers")
    started = time.perf_counter_ns()
    for number in range(pairs):
        on_time = started + int(number * interval * 1e9)
        delay = (on_time - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        sent = time.perf_counter_ns()
        lateness.record_value(max(1, sent - on_time))
        for message in order_pair(client, number + 10_000_000):
            due[client.send(message)] = sent
    await asyncio.wait_for(reader, 300)


def drive(port: int, server_pid: int, sessions: int, mode: str, amount: float, seconds: float) -> dict:
    """Run the load from LOAD_PROCESSES processes; the merged figures."""
    from hdrh.histogram import HdrHistogram

    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    accounts = [f"bench-{number:04d}" for number in range(1, sessions + 1)]
    processes = min(LOAD_PROCESSES, sessions)
    shares = [accounts[index::processes] for index in range(processes)]
    start_at = time.time() + 3.0 + sessions * 0.03  # time for every logon (scrypt) before the load starts
    workers = [
        context.Process(
            target=generator,
            name=f"load-{index}",
            args=(port, share, mode, amount * len(share) / sessions, seconds, start_at, results),
        )
        for index, share in enumerate(shares)
    ]
    for worker in workers:
        worker.start()
    server_cpu = None
    while time.time() < start_at:
        time.sleep(0.01)
    server_cpu = process_cpu(server_pid)
    reports = [results.get(timeout=600) for _ in workers]
    server_cpu = process_cpu(server_pid) - server_cpu
    for worker in workers:
        worker.join()
    merged = HdrHistogram(1, 60_000_000_000, 3)
    late = HdrHistogram(1, 60_000_000_000, 3)
    for *_, encoded, lateness in reports:
        if encoded:
            merged.decode_and_add(encoded)
            late.decode_and_add(lateness)
    answered = sum(report[0] for report in reports)
    elapsed = max(report[1] for report in reports)
    out = {
        "sessions": sessions,
        "answered": answered,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(answered / elapsed),
        "server_cpu": round(server_cpu / elapsed, 3),
        "generator_cpu": [round(report[2] / report[1], 3) for report in reports],
    }
    if mode != "max":
        out["offered_per_s"] = amount
        out["latency_ms"] = {
            f"p{p:g}": round(merged.get_value_at_percentile(p) / 1e6, 3) for p in (50.0, 90.0, 99.0, 99.9)
        }
        out["latency_ms"]["max"] = round(merged.get_max_value() / 1e6, 3)
        out["sender_late_ms"] = {
            "p50": round(late.get_value_at_percentile(50.0) / 1e6, 3),
            "p99": round(late.get_value_at_percentile(99.0) / 1e6, 3),
        }
    return out


def steps(quick: bool) -> int:
    sessions = QUICK_SESSIONS if quick else SESSIONS
    offered = QUICK_OFFERED if quick else OFFERED
    return len(POLICIES) * (len(sessions) + len(offered))


def gateway_suite(quick: bool, progress: Callable[[str], None]) -> dict:
    sessions_list = QUICK_SESSIONS if quick else SESSIONS
    offered = QUICK_OFFERED if quick else OFFERED
    requests = QUICK_REQUESTS if quick else REQUESTS
    seconds = QUICK_SECONDS_A_RATE if quick else SECONDS_A_RATE
    results: dict = {"window": WINDOW, "load_processes": LOAD_PROCESSES, "maximum": [], "fixed_rate": []}
    with tempfile.TemporaryDirectory(prefix="carbonx-bench-gateway-") as scratch:
        folder = Path(scratch)
        accounts = accounts_file(folder, max(max(sessions_list), LATENCY_SESSIONS))
        for fsync in POLICIES:
            for sessions in sessions_list:
                progress(f"gateway: {sessions} sessions at their maximum rate, journal fsync {fsync}")
                results["maximum"].append(
                    {
                        "journal_fsync": fsync,
                        **_with_server(fsync, folder, accounts, sessions, "max", requests, seconds),
                    }
                )
            for rate in offered:
                progress(f"gateway: {rate:,} requests/s over {LATENCY_SESSIONS} sessions, journal fsync {fsync}")
                results["fixed_rate"].append(
                    {
                        "journal_fsync": fsync,
                        **_with_server(fsync, folder, accounts, LATENCY_SESSIONS, "rate", rate, seconds),
                    }
                )
    return results


def _with_server(
    fsync: str, folder: Path, accounts: Path, sessions: int, mode: str, amount: float, seconds: float
) -> dict:
    run = folder / f"run-{time.monotonic_ns()}"
    run.mkdir()
    port = free_port()
    server = start_exchange(port, fsync, run, accounts)
    try:
        return drive(port, server.pid, sessions, mode, amount, seconds)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def plot_gateway(results: dict, stem: Path) -> list[Path]:
    """Acknowledgement latency against offered load, per journal policy."""
    figure, axis = new_plot()
    for fsync in POLICIES:
        rows = [row for row in results["fixed_rate"] if row["journal_fsync"] == fsync]
        for percentile, style in (("p50", "-"), ("p99", "--")):
            axis.plot(
                [row["offered_per_s"] for row in rows],
                [row["latency_ms"][percentile] for row in rows],
                style,
                marker="o",
                label=f"{percentile}, journal fsync {fsync}",
            )
    return [
        save_plot(
            figure,
            axis,
            stem.with_name(stem.name + "-latency-vs-load.png"),
            title=f"Gateway acknowledgement latency ({LATENCY_SESSIONS} sessions)",
            xlabel="offered load, requests per second",
            ylabel="send to first answer, ms",
        )
    ]


def summary_lines(results: dict) -> list[str]:
    lines = []
    for row in results["maximum"]:
        lines.append(
            f"gateway {row['sessions']:>5} sessions, fsync {row['journal_fsync']:<5}: "
            f"{row['requests_per_s']:>7,} requests/s (CPU: server {row['server_cpu']:.0%}, generators "
            + ", ".join(f"{cpu:.0%}" for cpu in row["generator_cpu"])
            + ")"
        )
    for row in results["fixed_rate"]:
        latency = row["latency_ms"]
        lines.append(
            f"gateway {row['offered_per_s']:>7,} requests/s offered, fsync {row['journal_fsync']:<5}: "
            f"p50 {latency['p50']:.2f} ms, p99 {latency['p99']:.2f} ms, p99.9 {latency['p99.9']:.2f} ms, "
            f"max {latency['max']:.2f} ms ({row['requests_per_s']:,}/s carried; sends late by p50 "
            f"{row['sender_late_ms']['p50']:.2f} ms, p99 {row['sender_late_ms']['p99']:.2f} ms)"
        )
    return lines
