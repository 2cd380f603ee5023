"""The metrics endpoint of a running exchange, over real sockets on 127.0.0.1.

Each test starts the whole exchange (``exchange_on_port``) with ``metrics_port`` set to a free port, trades
through the client library, and reads the endpoint with a plain socket, the way curl or Prometheus would; the
scrape is parsed with prometheus-client's own parser. The requests are made from a worker thread (blocking
sockets) so that the exchange's event loop, in the test's thread, is never the one answering for itself; for
the recovery test that is the point: the event loop is held by recovery while /readyz is asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time

import pytest
from gateway_helpers import TIMEOUT, demo_configuration, eventually, exchange_on_port, session
from prometheus_client.parser import text_string_to_metric_families

import gateway.node
from exchange import ConfigError, RejectCode
from gateway.config import load_futures
from gateway.monitoring import endpoint as endpoint_module
from gateway.monitoring.histogram import Histogram

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def http(port: int, request: bytes, timeout: float = TIMEOUT) -> tuple[int, dict[str, str], str]:
    """Send ``request`` as it is and read the answer to the end: (status, headers, body). Blocking."""
    with socket.create_connection((HOST, port), timeout=timeout) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body)
    return int(lines[0].split(" ")[1]), headers, body.decode()


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    return http(port, f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nAccept: */*\r\n\r\n".encode())


async def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics: (name, its labels) -> value."""
    status, headers, body = await asyncio.to_thread(get, port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain"), (status, body)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@contextlib.asynccontextmanager
async def exchange_with_metrics(**overrides: object):
    port = free_port()
    async with exchange_on_port(metrics_port=port, **overrides) as gateway:
        yield gateway, port


async def test_a_scrape_counts_the_requests_refusals_trades_phases_and_sessions_sent():
    async with (
        exchange_with_metrics() as (gateway, port),
        session(gateway, "bank") as bank,
        session(gateway, "utility-north") as util,
        session(gateway, "market-ops") as ops,
    ):
        assert (await bank.new_order("EUA", "S", 10, 7025, client_order_id="s1"))["exec_type"] == "new"
        await util.new_order("EUA", "B", 4, 7030, client_order_id="b1")  # trades 4 lots with s1
        await util.new_order("EUA", "B", 2, 7025, client_order_id="b2")  # and 2 more
        refused = await util.new_order("EUA", "B", 1, "70.255", client_order_id="off-tick")  # refused: 0.5 cent
        assert refused["code"] == RejectCode.INVALID_PRICE
        unknown = await bank.cancel(order_id=424242)  # refused: no such order
        assert unknown["type"] == "request_rejected"
        assert (await ops.set_trading_phase("CER", "halted"))["type"] == "trading_phase_report"
        await bank.balances()

        samples = await scrape(port)

        requests = {
            kind: value(samples, "carbonx_requests_total", kind=kind)
            for kind in ("new_order", "cancel_order", "set_trading_phase", "balances")
        }
        assert requests == {"new_order": 4, "cancel_order": 1, "set_trading_phase": 1, "balances": 1}
        invalid_price = RejectCode.INVALID_PRICE
        assert value(samples, "carbonx_refusals_total", code=str(int(invalid_price)), reason=invalid_price.name) == 1
        not_found = RejectCode(unknown["code"])
        assert value(samples, "carbonx_refusals_total", code=str(int(not_found)), reason=not_found.name) == 1
        assert sum(v for (name, _), v in samples.items() if name == "carbonx_refusals_total") == 2

        assert value(samples, "carbonx_trades_total", instrument="EUA") == 2
        assert value(samples, "carbonx_trades_today", instrument="EUA") == 2
        assert value(samples, "carbonx_traded_lots_today", instrument="EUA") == 6
        assert value(samples, "carbonx_trades_total", instrument="CER") == 0
        assert value(samples, "carbonx_trading_phase", instrument="CER", phase="halted") == 1
        assert value(samples, "carbonx_trading_phase", instrument="CER", phase="continuous") == 0
        assert value(samples, "carbonx_trading_phase", instrument="EUA", phase="continuous") == 1
        assert value(samples, "carbonx_engine_open_orders") == 1  # what is left of s1

        assert value(samples, "carbonx_sessions_logged_on") == 3
        assert value(samples, "carbonx_connections") == 3
        assert value(samples, "carbonx_ready") == 1
        assert value(samples, "carbonx_uptime_seconds") > 0
        assert value(samples, "carbonx_journal_records_total") == gateway.journal.next_seq - 1 > 0
        assert value(samples, "carbonx_intake_queued_requests") == 0
        assert value(samples, "carbonx_journal_unsynced_batches") == 0
        # Every answer above was released: a batch each at least, timed; each synced (fsync per batch).
        assert value(samples, "carbonx_ack_latency_seconds_count") >= 7
        assert value(samples, "carbonx_ack_latency_seconds_bucket", le="+Inf") == value(
            samples, "carbonx_ack_latency_seconds_count"
        )
        assert value(samples, "carbonx_journal_sync_seconds_count") >= 1
        if sys.platform == "linux":
            assert value(samples, "process_resident_memory_bytes") > 1_000_000

        await util.logout()
        await eventually(lambda: gateway.host.logged_on == 2)
        samples = await scrape(port)
        assert value(samples, "carbonx_sessions_logged_on") == 2
        assert value(samples, "carbonx_connections_ended_total", code="none", reason="none") == 1


async def test_two_exchanges_in_one_process_keep_their_figures_apart():
    async with exchange_with_metrics() as (first, first_port), exchange_with_metrics() as (_, second_port):
        async with session(first, "bank") as bank:
            await bank.balances()
        one, other = await scrape(first_port), await scrape(second_port)
        assert value(one, "carbonx_requests_total", kind="balances") == 1
        assert value(other, "carbonx_requests_total", kind="balances") == 0


async def test_readyz_says_503_while_recovery_runs_and_200_once_listening_then_503_while_stopping(monkeypatch):
    port = free_port()
    during_recovery: dict[str, tuple] = {}
    recover = gateway.node.recover

    def held_recovery(*args, **kwargs):
        # Recovery holds the event loop, as a long journal's replay does: the endpoint answers all the same.
        for path in ("/healthz", "/readyz", "/metrics"):
            during_recovery[path] = get(port, path)
        return recover(*args, **kwargs)

    monkeypatch.setattr(gateway.node, "recover", held_recovery)
    async with exchange_on_port(metrics_port=port) as running:
        assert during_recovery["/healthz"][0] == 200
        assert during_recovery["/readyz"][0] == 503 and "recovering" in during_recovery["/readyz"][2]
        status, _, body = during_recovery["/metrics"]
        assert status == 200 and "carbonx_ready 0.0" in body and "carbonx_requests" not in body

        assert (await asyncio.to_thread(get, port, "/readyz"))[:1] == (200,)
        assert (await asyncio.to_thread(get, port, "/healthz"))[0] == 200

        stopping = running.request_stop()
        await asyncio.sleep(0)  # the stop has begun: nothing new is taken
        status, _, body = await asyncio.to_thread(get, port, "/readyz")
        assert (status, body) == (503, "stopping\n")
        await stopping
    with pytest.raises(ConnectionRefusedError):  # closed with the exchange
        get(port, "/healthz")


async def test_other_paths_are_404_other_methods_405_and_bad_requests_are_answered_not_raised():
    async with exchange_with_metrics() as (_, port):
        assert (await asyncio.to_thread(get, port, "/"))[0] == 404
        assert (await asyncio.to_thread(get, port, "/metrics/../etc"))[0] == 404
        status, headers, _ = await asyncio.to_thread(get, port, "/metrics", "POST")
        assert (status, headers["Allow"]) == (405, "GET")
        assert (await asyncio.to_thread(get, port, "/readyz", "DELETE"))[0] == 405
        assert (await asyncio.to_thread(http, port, b"hello\r\n\r\n"))[0] == 400
        huge = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n"
        assert (await asyncio.to_thread(http, port, huge))[0] == 431
        status, _, body = await asyncio.to_thread(get, port, "/metrics?debug=1")  # a query is not a path
        assert status == 200 and "carbonx_ready 1.0" in body


async def test_a_client_that_connects_and_sends_nothing_stops_neither_trading_nor_scraping(monkeypatch):
    monkeypatch.setattr(endpoint_module, "REQUEST_TIMEOUT", 2.0)
    async with exchange_with_metrics() as (gateway, port), session(gateway, "bank") as bank:
        silent = [socket.create_connection((HOST, port), timeout=TIMEOUT) for _ in range(3)]
        trickle = socket.create_connection((HOST, port), timeout=TIMEOUT)
        trickle.sendall(b"GET /met")  # half a request, and then nothing
        try:
            started = time.monotonic()
            assert (await bank.new_order("EUA", "S", 1, 7100))["exec_type"] == "new"
            samples = await scrape(port)
            assert value(samples, "carbonx_requests_total", kind="new_order") == 1
            assert time.monotonic() - started < 2.0  # answered while the silent ones still wait
            for connection in [*silent, trickle]:  # each is answered 408 and closed after the timeout
                answer = await asyncio.to_thread(connection.recv, 4096)
                assert answer.startswith(b"HTTP/1.1 408 ")
        finally:
            for connection in [*silent, trickle]:
                connection.close()
        assert (await bank.new_order("EUA", "S", 1, 7100))["exec_type"] == "new"


async def test_a_metrics_port_in_use_is_a_configuration_error_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(ConfigError) as refused:
            async with exchange_on_port(metrics_port=busy, data_dir=str(tmp_path / "data")):
                pass
        assert refused.value.field == "metrics.metrics_port" and "already in use" in str(refused.value)
        assert not (tmp_path / "data").exists()  # nothing was created

        served = subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", "serve", "--port", "0", "--data-dir", str(tmp_path / "cli")]
            + ["--metrics-port", str(busy)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert served.returncode == 2
    assert served.stderr.startswith("carbonx: configuration error: metrics.metrics_port")
    assert "Traceback" not in served.stderr


def test_the_histogram_puts_each_observation_in_the_first_bucket_at_or_above_it():
    histogram = Histogram((0.001, 0.01, 0.1))
    for seconds in (0.0005, 0.001, 0.002, 0.5, 0.05):
        histogram.observe(seconds)
    buckets, total = histogram.cumulative()
    assert buckets == [("0.001", 2), ("0.01", 3), ("0.1", 4), ("+Inf", 5)]
    assert total == pytest.approx(0.5535)
    with pytest.raises(ValueError):
        Histogram((0.1, 0.01))


async def test_futures_contracts_are_counted_like_spot_instruments():
    futures = load_futures(demo_configuration()[0])  # the shipped EUA series
    async with exchange_with_metrics(futures=futures) as (gateway, port):
        symbol = gateway.engine.futures_contracts("EUA")[-1]
        async with session(gateway, "bank") as bank, session(gateway, "broker") as broker:
            await bank.new_order(symbol, "S", 3, "72.00", client_order_id="s1")
            await broker.new_order(symbol, "B", 3, "72.00", client_order_id="b1")
            await bank.report_block("B1", "broker", symbol, "S", 50, "72.10")
            await broker.report_block("B1", "bank", symbol, "B", 50, "72.10")
            samples = await scrape(port)
        assert value(samples, "carbonx_trades_today", instrument=symbol) == 2  # the fill and the block
        assert value(samples, "carbonx_traded_lots_today", instrument=symbol) == 53
        assert value(samples, "carbonx_trading_phase", instrument=symbol, phase="continuous") == 1
