"""The running exchange's figures, read from its live objects when /metrics is scraped.

How this works
--------------
:class:`ExchangeCollector` is a prometheus-client collector: its
``collect`` builds every family of the exchange afresh from what the parts
already hold (the intake's queue, the session host's sessions, the journal's
record sequence, the engine's read API, the market-data feed's statistics
of the day) and from the few counts kept for it where they cost nothing on
the way of an accepted request (the intake's messages by class, the
refusals of the gateway and of the engine by code, the sessions' ends by
code, and the two histograms of :mod:`gateway.monitoring.histogram`).
Nothing here is updated as the exchange works: a scrape costs the exchange
one pass over its sessions and instruments, and nothing between scrapes.

``collect`` must run on the exchange's event loop, the one thread that
changes what it reads (:mod:`gateway.monitoring.endpoint` sees to it): read
from another thread, a dict the loop changes meanwhile would fail the
scrape.

Figures counted by this process (requests, refusals, ends, latencies) start
at zero when the exchange is ready; those kept in the state (trades,
events, the journal's records) go on from the journal's first record.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from exchange import RejectCode, TradingPhase
from gateway.monitoring.histogram import Histogram
from gateway.persistence.segments import disk_usage
from gateway.wire.protocol import Refusal, type_tag

if TYPE_CHECKING:
    from gateway.node import TradingGateway

INVALID = "invalid"  # the ``kind`` of a frame that was not a request (bad MessagePack, a schema it failed)


def request_kind(kind: type) -> str:
    """A request class as the ``kind`` label: its wire ``type``."""
    if kind is Refusal:
        return INVALID
    if issubclass(kind, msgspec.Struct):
        return type_tag(kind)
    return kind.__name__  # never read from a session: named as the code names it


def histogram_family(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    buckets, total = histogram.cumulative()
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


class ExchangeCollector:
    """Every family of one running exchange; see the module notes."""

    def __init__(self, gateway: TradingGateway) -> None:
        self.gateway = gateway
        # What recovery's replay counted is the journal's past, not this process's work: counts start now.
        gateway.tracker.refused.clear()

    def collect(self) -> Iterator[Metric]:
        yield from self.requests()
        yield from self.sessions()
        yield from self.queues()
        yield from self.market()
        yield from self.journal()

    def requests(self) -> Iterator[Metric]:
        gateway = self.gateway
        received = CounterMetricFamily(
            "carbonx_requests",
            "Messages read from logged-on sessions, by wire type (heartbeats aside; refused ones too; "
            "invalid: a frame that was no request)",
            labels=["kind"],
        )
        for kind, count in sorted(gateway.intake.received.items(), key=lambda item: request_kind(item[0])):
            received.add_metric([request_kind(kind)], count)
        yield received
        refused = CounterMetricFamily(
            "carbonx_refusals",
            "Requests refused, by reject code (the engine's and the gateway's: 708 throttled, 719 overloaded, ...)",
            labels=["code", "reason"],
        )
        codes: dict[RejectCode, int] = dict(gateway.replies.refused)
        for code, count in gateway.tracker.refused.items():
            codes[code] = codes.get(code, 0) + count
        for code, count in sorted(codes.items()):
            refused.add_metric([str(int(code)), code.name], count)
        yield refused
        yield histogram_family(
            "carbonx_ack_latency_seconds",
            "Per batch: seconds from the arrival of the batch's oldest request to the release of its answers "
            "(journaled, and synced with fsync per batch); one observation a batch, the worst wait in it",
            gateway.loop.ack_latency,
        )

    def sessions(self) -> Iterator[Metric]:
        host = self.gateway.host
        yield GaugeMetricFamily("carbonx_sessions_logged_on", "Sessions logged on", value=host.logged_on)
        yield GaugeMetricFamily("carbonx_connections", "Connections open, logged on or not", value=len(host.sessions))
        yield GaugeMetricFamily(
            "carbonx_connections_pending_logon", "Connections not logged on yet", value=host.pending_total
        )
        ends = CounterMetricFamily(
            "carbonx_connections_ended",
            "Connections ended, by the code the exchange ended them with (none: the client logged out or went "
            "away; 710 a slow consumer, 709 a heartbeat timeout, a refused logon's code, ...)",
            labels=["code", "reason"],
        )
        for code, count in sorted(host.ends.items(), key=lambda item: -1 if item[0] is None else int(item[0])):
            ends.add_metric(["none", "none"] if code is None else [str(int(code)), code.name], count)
        yield ends

    def queues(self) -> Iterator[Metric]:
        gateway = self.gateway
        intake = gateway.intake
        yield GaugeMetricFamily(
            "carbonx_intake_queued_requests", "Requests waiting for the engine (the bound is queue_size)", intake.queued
        )
        yield GaugeMetricFamily(
            "carbonx_intake_refusals_waiting",
            "Refused requests (708, 719) waiting to be answered",
            intake.refused_waiting,
        )
        yield GaugeMetricFamily(
            "carbonx_journal_unsynced_batches",
            "Batches written to the journal and waiting for its sync before their answers go out",
            len(gateway.loop.unsynced),
        )
        yield GaugeMetricFamily(
            "carbonx_outbound_bytes",
            "Bytes written to sessions and not yet taken by the network (a client far behind is a slow consumer)",
            sum(session.transport.get_write_buffer_size() for session in gateway.host.sessions.values()),
        )
        yield GaugeMetricFamily(
            "carbonx_settlement_pending_batches",
            "Engine batches waiting for the settlement ledger",
            gateway.settlement.pending_batches,
        )
        if gateway.publisher is not None:
            yield GaugeMetricFamily(
                "carbonx_mqtt_pending_messages",
                "Market-data messages waiting for the MQTT broker",
                gateway.publisher.pending,
            )
            yield CounterMetricFamily(
                "carbonx_mqtt_dropped_messages",
                "Trades and fills dropped for want of room while the broker was slow or away",
                gateway.publisher.dropped_reliable,
            )

    def market(self) -> Iterator[Metric]:
        gateway = self.gateway
        engine = gateway.engine
        trades = CounterMetricFamily(
            "carbonx_trades",
            "Trades made, by instrument, since the journal began (the md_seq of the trades channel)",
            labels=["instrument"],
        )
        trades_today = GaugeMetricFamily(
            "carbonx_trades_today", "Trades of the current trading day, by instrument", labels=["instrument"]
        )
        lots_today = GaugeMetricFamily(
            "carbonx_traded_lots_today",
            "Lots traded in the current trading day, by instrument (the stats channel's volume)",
            labels=["instrument"],
        )
        phases = GaugeMetricFamily(
            "carbonx_trading_phase",
            "The trading phase of each instrument: 1 for the phase it is in, 0 for the others",
            labels=["instrument", "phase"],
        )
        for symbol in [*sorted(engine.instruments), *engine.futures_contracts(with_books=True)]:  # spot, then futures
            feed = gateway.feed.instruments[symbol]
            trades.add_metric([symbol], feed.seq["trades"])
            trades_today.add_metric([symbol], feed.trades)
            lots_today.add_metric([symbol], feed.volume)
            phase = engine.phase(symbol)
            for each in TradingPhase:
                phases.add_metric([symbol, each.value], 1 if each is phase else 0)
        yield from (trades, trades_today, lots_today, phases)
        counts = engine.counts()
        yield CounterMetricFamily("carbonx_engine_events", "Events the engine has emitted", counts.events)
        yield CounterMetricFamily("carbonx_engine_orders", "Orders the engine has accepted", counts.orders)
        yield GaugeMetricFamily("carbonx_engine_open_orders", "Orders resting or waiting (stops)", counts.open_orders)
        yield GaugeMetricFamily("carbonx_engine_accounts", "Accounts the engine knows", counts.accounts)

    def journal(self) -> Iterator[Metric]:
        gateway = self.gateway
        journal = gateway.journal
        yield CounterMetricFamily(
            "carbonx_journal_records", "Records in the journal: the seq of the last one", journal.next_seq - 1
        )
        yield GaugeMetricFamily("carbonx_journal_bytes", "Bytes of the journal segment being written", journal.size)
        disk = GaugeMetricFamily(
            "carbonx_disk_bytes",
            "Bytes on disk in the data directory: the journal's segments, its archives, the snapshots",
            labels=["kind"],
        )
        for kind, size in disk_usage(gateway.data_dir).items():
            disk.add_metric([kind], size)
        yield disk
        rotation = gateway.rotation
        yield CounterMetricFamily(
            "carbonx_journal_segments_closed", "Journal segments closed (a day's end, or full)", rotation.rolled
        )
        yield CounterMetricFamily(
            "carbonx_journal_segments_archived", "Closed journal segments compressed into archives", rotation.archived
        )
        yield histogram_family(
            "carbonx_journal_sync_seconds",
            "Seconds each fdatasync of the journal took (group commit: one covers every batch written before it; "
            "none with journal_fsync = off)",
            gateway.loop.sync_time,
        )
