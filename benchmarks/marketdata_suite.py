"""The market-data part of the benchmark suites (``suite.py marketdata``): messages a second through mosquitto,
and trade-to-subscriber delay.

How this works
--------------
A mosquitto broker of its own (anonymous, on a free loopback port, no persistence, logging errors only)
and ``carbonx serve --mqtt-url`` on it. Subscriber processes (``SUBSCRIBER_PROCESSES``, each with its
share of the N subscribers, aiomqtt) take every EUA topic (``carbonx/md/EUA/#``). Two sessions then trade
as fast as the exchange lets them: one lot sold, one lot bought, at the same price, pipelined; every pair
is a trade, with its trade message, book update, top of book and statistics.

Figures: trades a second made; messages a second the exchange published (what one subscriber received,
over the time it received them); messages a second delivered to all subscribers together; and the delay
from a trade's exchange timestamp (taken when the engine task sequenced the order) to its arrival at a
subscriber: engine, journal sync, publisher, broker and network, measured on the same clock, in HDR
histograms merged across the subscriber processes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway_bench import free_port, listening
from gateway_suite import SECRET, accounts_file, start_exchange
from plots import new_plot, save_plot

SUBSCRIBERS = (1, 10, 100)
QUICK_SUBSCRIBERS = (1, 10)
TRADES = 20_000
QUICK_TRADES = 4_000
PACED_RATE = 500  # trades a second in the delay run: well under what the feed carries
SUBSCRIBER_PROCESSES = 2
WINDOW = 200
TOPICS = "carbonx/md/EUA/#"


def start_broker(folder: Path) -> tuple[subprocess.Popen, int]:
    """A lean mosquitto for measuring: anonymous, loopback, no persistence, errors logged only."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    config = folder / "mosquitto.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence false",
        "set_tcp_nodelay true",
        "max_queued_messages 1000000",
        "log_dest stderr",
        "log_type error",
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # as root mosquitto would switch to the user mosquitto
    config.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not listening(port, process, 10):
        raise RuntimeError(f"mosquitto did not start ({binary})")
    return process, port


# -- one subscriber process ---------------------------------------------------------------------------


def subscriber(
    port: int, count: int, trades: int, ready: multiprocessing.Queue, results: multiprocessing.Queue
) -> None:
    results.put(asyncio.run(_subscribe(port, count, trades, ready)))


async def _subscribe(port: int, count: int, trades: int, ready: multiprocessing.Queue) -> tuple:
    import aiomqtt
    import msgspec
    from hdrh.histogram import HdrHistogram

    decode = msgspec.msgpack.Decoder().decode
    delays = HdrHistogram(1, 60_000_000_000, 3)
    received = [0] * count
    first = last = None

    async def one(index: int, client) -> None:
        nonlocal first, last
        seen_trades = 0
        async for message in client.messages:
            now = time.time_ns()
            if first is None:
                first = time.perf_counter()
            received[index] += 1
            if str(message.topic).endswith("/trades"):
                seen_trades += 1
                delays.record_value(max(1, now - decode(message.payload)["ts"]))
                if seen_trades >= trades:
                    last = time.perf_counter()
                    return

    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(count):
            # TCP_NODELAY, as the exchange's publisher: a subscriber's acknowledgements (QoS 1) must not wait
            # for Nagle's algorithm, or the broker's window to it stalls.
            client = await stack.enter_async_context(
                aiomqtt.Client(
                    "127.0.0.1",
                    port,
                    max_queued_incoming_messages=0,
                    socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
                )
            )
            await client.subscribe(TOPICS, qos=1)
            clients.append(client)
        ready.put(count)
        await asyncio.wait_for(
            asyncio.gather(*(one(index, client) for index, client in enumerate(clients))), timeout=600
        )
    return received, (last or time.perf_counter()) - (first or time.perf_counter()), delays.encode()


async def _trade(port: int, trades: int, rate: float | None) -> float:
    """Sell and buy one lot at one price, ``trades`` times, pipelined (or ``rate`` trades a second); the
    seconds it took."""
    from gateway.client import connect

    async with (
        connect("127.0.0.1", port, "bench-0001", SECRET, cancel_on_disconnect=False) as seller,
        connect("127.0.0.1", port, "bench-0002", SECRET, cancel_on_disconnect=False) as buyer,
    ):
        started = time.perf_counter()
        streams = [seller.messages(), buyer.messages()]
        answered = sent = 0
        total = 2 * trades
        expected = 4 * trades  # each side: its new report and its trade report
        while answered < expected:
            if rate is not None and sent < total:  # paced: the next pair at its time
                delay = started + (sent // 2) / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                for client, side in ((seller, "S"), (buyer, "B")):
                    client.send(client.new_order_message("EUA", side, 1, 7000))
                sent += 2
                await asyncio.gather(*(stream.__anext__() for stream in streams))
                await asyncio.gather(*(stream.__anext__() for stream in streams))
                answered += 4
                continue
            while sent < total and sent - answered // 2 < WINDOW:
                client, side = (seller, "S") if sent % 2 == 0 else (buyer, "B")
                client.send(client.new_order_message("EUA", side, 1, 7000))
                sent += 1
            await asyncio.gather(*(stream.__anext__() for stream in streams))
            answered += 2
        return time.perf_counter() - started


def steps(quick: bool) -> int:
    return 2 * len(QUICK_SUBSCRIBERS if quick else SUBSCRIBERS)


def marketdata_suite(quick: bool, progress: Callable[[str], None]) -> dict:
    from hdrh.histogram import HdrHistogram

    trades = QUICK_TRADES if quick else TRADES
    out: dict = {"trades": trades, "subscriber_processes": SUBSCRIBER_PROCESSES, "runs": []}
    context = multiprocessing.get_context("spawn")
    for subscribers, rate in [
        (count, rate) for count in (QUICK_SUBSCRIBERS if quick else SUBSCRIBERS) for rate in (None, PACED_RATE)
    ]:
        pace = "as fast as they come" if rate is None else f"at {rate:,} a second"
        made = trades if rate is None else min(trades, 10 * rate)
        progress(f"market data: {made:,} trades {pace} to {subscribers} subscribers through mosquitto")
        with tempfile.TemporaryDirectory(prefix="carbonx-bench-md-") as scratch:
            folder = Path(scratch)
            broker, broker_port = start_broker(folder)
            server = None
            try:  # the broker is stopped whatever happens next, the exchange failing to start included
                port = free_port()
                server = start_exchange(
                    port,
                    "batch",
                    folder,
                    accounts_file(folder, 2),
                    extra=["--mqtt-url", f"mqtt://127.0.0.1:{broker_port}"],
                )
                ready, results = context.Queue(), context.Queue()
                processes = min(SUBSCRIBER_PROCESSES, subscribers)
                shares = [len(range(index, subscribers, processes)) for index in range(processes)]
                workers = [
                    context.Process(
                        target=subscriber,
                        name=f"md-subscriber-{index}",
                        args=(broker_port, share, made, ready, results),
                    )
                    for index, share in enumerate(shares)
                ]
                for worker in workers:
                    worker.start()
                for _ in workers:
                    ready.get(timeout=120)
                elapsed = asyncio.run(_trade(port, made, rate))
                reports = [results.get(timeout=600) for _ in workers]
                for worker in workers:
                    worker.join()
            finally:
                if server is not None:
                    server.send_signal(signal.SIGTERM)
                    server.wait(timeout=60)
                broker.send_signal(signal.SIGTERM)
                broker.wait(timeout=30)
        delays = HdrHistogram(1, 60_000_000_000, 3)
        for *_, encoded in reports:
            delays.decode_and_add(encoded)
        per_subscriber = [count for report in reports for count in report[0]]
        receiving = max(report[1] for report in reports)
        out["runs"].append(
            {
                "subscribers": subscribers,
                "paced_trades_per_s": rate,
                "trades_per_s": round(made / elapsed),
                "published_per_s": round(max(per_subscriber) / receiving) if receiving else None,
                "delivered_per_s": round(sum(per_subscriber) / receiving) if receiving else None,
                "messages_per_subscriber": max(per_subscriber),
                "trade_delay_ms": {
                    **{f"p{p:g}": round(delays.get_value_at_percentile(p) / 1e6, 3) for p in (50.0, 90.0, 99.0, 99.9)},
                    "max": round(delays.get_max_value() / 1e6, 3),
                },
            }
        )
    return out


def plot_marketdata(results: dict, stem: Path) -> list[Path]:
    runs = [run for run in results["runs"] if run["paced_trades_per_s"]]
    figure, axis = new_plot()
    for percentile in ("p50", "p99"):
        axis.plot(
            [run["subscribers"] for run in runs],
            [run["trade_delay_ms"][percentile] for run in runs],
            marker="o",
            label=percentile,
        )
    axis.set_yscale("log")  # from milliseconds to the seconds of a saturated machine
    return [
        save_plot(
            figure,
            axis,
            stem.with_name(stem.name + "-trade-delay.png"),
            title=f"Market data: delay from a trade to its subscribers ({PACED_RATE} trades/s)",
            xlabel="subscribers (MQTT, QoS 1)",
            ylabel="trade to subscriber, ms",
        )
    ]


def summary_lines(results: dict) -> list[str]:
    return [
        f"market data {run['subscribers']:>4} subscribers, "
        f"{'max rate' if not run['paced_trades_per_s'] else str(run['paced_trades_per_s']) + ' trades/s'}: "
        f"{run['trades_per_s']:,} trades/s, published "
        f"{run['published_per_s']:,} messages/s, delivered {run['delivered_per_s']:,}/s in all; trade to "
        f"subscriber p50 {run['trade_delay_ms']['p50']:.2f} ms, p99 {run['trade_delay_ms']['p99']:.2f} ms, "
        f"max {run['trade_delay_ms']['max']:.2f} ms"
        for run in results["runs"]
    ]
