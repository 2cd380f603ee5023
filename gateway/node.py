"""The trading gateway: sessions over TCP, one engine task, settlement behind it.

How this works
--------------
Each connection is served by its own task (``session-N``): it reads what
the socket has (up to 64 KiB at a time), and :class:`gateway.protocol.MessageReader`
turns the bytes into messages. The first must be a logon (within the logon
timeout); the secret is checked in a worker thread (scrypt takes tens of
milliseconds, which the market must not wait for). After logon each message
is throttled (a token bucket per session) and put on the one bounded
request queue. When the queue is full the session task waits, so the
client feels TCP backpressure; nothing is dropped.

One task, ``engine``, owns the exchange's state (:class:`gateway.sequencer.Sequencer`:
the engine, the order tracker, the market-data feed, outbound numbering).
It takes what is queued (up to ``max_batch`` requests), converts each
request to an engine command (prices from ticks or euro strings to cents,
a timestamp from the clock, never going back), runs the commands with
``Engine.handle_all`` and turns the events into messages for each account.
Requests that need no engine command (order status, balances, the book,
logout, session rejects, resend) are answered in their place in the queue,
so a session's answers always come in the order of its requests.

``_run_batch`` sequences and runs a batch, appending each engine batch to
the journal (:mod:`gateway.persistence.journal`) as it goes; ``_commit`` writes the
journal and, with ``journal_fsync = "batch"``, leaves the batch waiting for
the journal's sync thread to have it on disk; only then does ``_release``
hand the events to settlement (a ``put_nowait``: matching never
waits on the ledger), send the answers and publish the market data. A
journal failure stops the exchange with nothing of the batch sent.
Start-up rebuilds the state from the journal (:mod:`gateway.persistence.recovery`).

Every message to an account carries the account's outbound sequence
number (``seq``), counted across its connections and across restarts,
including messages produced while it is not connected (its fills, say):
a client that logs on again sees the gap from ``next_seq`` and asks for
it with ``resend``. A logon is accepted in the engine task's order, so
the session receives exactly the messages numbered from its ``next_seq``.

Writing never waits: messages go into the socket's transport buffer. A
client that does not read lets that buffer grow; past
``max_outbound_bytes`` it is disconnected as a slow consumer. When a
session ends for any reason (logout, timeout, error, disconnect) and its
account has cancel-on-disconnect (the default), a ``MassCancel`` with
``on_disconnect`` is queued behind everything the session sent.

Shutdown (:meth:`TradingGateway.stop`, on SIGINT or SIGTERM): stop
accepting, stop reading, let the engine finish every request already
queued, send each session a logout (711), close, drain settlement.
"""
from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import fcntl
import gc
import ipaddress
import itertools
import logging
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import AsyncIterator, Callable, Coroutine, Mapping

from exchange import (BlockAccount, CancelOrder, ClearPrimaryAuction, ComplianceConfig, ConfigError, InvalidCommand,
                      MassCancel, ModifyBid, NewOrder, OpenPrimaryAuction, RejectCode, ReplaceOrder, SetTradingPhase,
                      Side, SubmitBid, TradingPhase, UnblockAccount, WithdrawBid)
from exchange.engine import DEFAULT_FEE_ACCOUNT
from exchange.primary_auction import seed_hash
from exchange.instruments import Instrument, cents_to_eur

from gateway.config import AccountConfig, ServerConfig, start_up_commands
from gateway.sessions.credentials import verify_secret
from gateway.sessions.logon_guard import LogonGuard
from gateway.logs import log_event
from gateway.marketdata.feed import CHANNELS
from gateway.marketdata.mqtt import MqttPublisher, parse_mqtt_url
from gateway.persistence.journal import (Genesis, JournalError, JournalSyncer, JournalWriter, commit_record, execute_record, operator_record,
                      session_record, skip_record)
from gateway.settlement.ledger import SqliteLedgerStore
from gateway.wire.protocol import (PROTOCOL_VERSION, BalancesRequest, BookRequest, CancelRequest, Heartbeat, KillSwitchRequest,
                       Logon, Logout, MassCancelRequest, MessageReader, NewOrderRequest, OrderStatusRequest, Refusal,
                       ReleaseKillSwitchRequest, ReplaceRequest, ResendRequest, SetTradingPhaseRequest,
                       OpenAuctionRequest, SubmitBidRequest, ModifyBidRequest, WithdrawBidRequest, AuctionStatusRequest,
                       SnapshotRequest, SubscribeRequest, OpenOrdersRequest, TradesRequest, PingRequest,
                       UnsubscribeRequest, encode_frame)
from gateway.persistence.recovery import LEDGER_NAME, fork_snapshot, recover, snapshot_bytes, snapshot_path, write_snapshot
from gateway.pipeline.reports import price_in_cents, rejected_order_report, request_rejected
from gateway.pipeline.sequencer import Sequencer
from gateway.settlement.service import Settlement, SettlementService

log = logging.getLogger("carbonx.gateway")

MIN_CLIENT_HEARTBEAT = 1  # seconds: the shortest heartbeat interval a client may ask for
MAX_CLIENT_HEARTBEAT = 60
MAX_BOOK_LEVELS = 100
PAGE_SIZE = 100  # entries in one answer to open_orders or trades (about 31 KiB at the most; PROTOCOL section 1)
LOGOUT_WAIT = 5.0  # seconds a session waits for the engine loop to answer its logout
# Bytes a session's read takes at most: a few thousand frames, decoded in one go (2 million a second),
# and no more, so that one client's burst is a short stretch of the engine's queue.
SESSION_READ_SIZE = 65_536
MAX_THROTTLE_PAUSE = 1.0  # seconds a session over its rate goes unread, at the most, after a read
# Refused requests (NotProcessed) of one session waiting for the engine to answer them, at most: past this its
# task stops reading until they are answered. A session within its rate never gets near it (it would take
# seconds of its whole rate refused and unanswered); it bounds what a flood can make the exchange hold.
MAX_REFUSED_WAITING = 20_000
MAX_REFUSED_WAITING_IN_ALL = 200_000  # the same across every session (about 70 MB of refused requests at the most)
GC_YOUNG_THRESHOLD = 50_000  # allocations between collections of the youngest generation (serve only)
SECRET_CHECK_THREADS = 2  # scrypt checks at once (16 MiB of memory each)
MAX_UNSYNCED_BATCHES = 8  # batches written and waiting for the disk; past it the engine waits
MAX_MARKET_DATA_SESSIONS = 8  # market-data sessions an account may have at once (beside its trading session)
CLOSE_GRACE = 1.0  # seconds an ended session's connection lingers for the peer to take its logout
CLEARING_MARGIN = 0.01  # seconds after a primary auction's window before it is cleared (the clearing's ts must
# be at or past the window's end, and the engine compares the command's ts, stamped a moment later)
# Checked for an unknown account, so that it takes as long as a known one (the hash of a secret nobody has,
# made once with `carbonx hash-secret`: no scrypt at start-up).
_DUMMY_HASH = ("scrypt$16384$8$1$78f223a6f9b6208f247ba1cb71a403ab$"
               "d7c60b64e11498e01a3982e8973d3199c2e4c94584c9a5899cbca6be33567be6")


class TokenBucket:
    """Allows ``rate`` messages a second on average and ``burst`` at once."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float, cost: int = 1) -> bool:
        """Take ``cost`` tokens if the bucket has them (a message takes one; a paged query more)."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        self.stamp = now
        if tokens >= cost:
            self.tokens = min(tokens, self.burst) - cost
            return True
        self.tokens = tokens
        return False


class ExchangeStopped(RuntimeError):
    """The exchange stopped (or is stopping) before it could run what was asked."""


@dataclass(frozen=True, slots=True)
class NotProcessed:
    """Consecutive requests of a session refused unprocessed (``code``: 708 over the session's rate, 719 over the
    exchange's capacity), queued as one item so that their rejects keep their place among the answers (and a
    flood costs the queue one item per run, not one per message)."""

    code: RejectCode
    requests: list


@dataclass(frozen=True, slots=True)
class OperatorCommands:
    """Engine commands from the exchange's own operations (the registry's compliance feed, the end of day),
    run in their place in the queue; ``done`` receives their events."""

    commands: list
    done: asyncio.Future


@dataclass(frozen=True, slots=True)
class EndSession:
    """In the outbox: log the session out (``code`` None: at its request) once what precedes is sent."""

    code: RejectCode | None
    text: str | None
    request_id: object = None


@dataclass(frozen=True, slots=True)
class SubscriptionChange:
    """In the outbox: (un)subscribe the session to (instrument, channel) pairs when its batch is released, so
    that it receives market data of exactly the batches released after its ``subscribed``."""

    keys: list
    subscribe: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The gateway's own request: the account's session ended and it has cancel-on-disconnect."""

    account: str


@dataclass(frozen=True, slots=True)
class AcceptLogon:
    """The gateway's own request: a logon passed its checks; the engine loop accepts it in its place, so that
    the session receives exactly the account's messages numbered from the ``next_seq`` it is told."""

    request_id: object


class AccountLink:
    """An account as the gateway sees it: its configuration, and its session while one is logged on."""

    __slots__ = ("config", "session", "watchers")

    def __init__(self, config: AccountConfig) -> None:
        self.config = config
        self.session: Session | None = None  # its trading session
        self.watchers = 0  # its market-data sessions


class Session:
    """One client connection: its transport, its logon state, throttle and heartbeat clocks."""

    def __init__(self, gateway: TradingGateway, number: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.gateway = gateway
        self.number = number
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        peer = writer.get_extra_info("peername")  # None when the peer reset the connection before it was taken
        self.host = _address_key(peer[0]) if peer else "?"  # whose logons and pending connections are counted
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.pending = False  # counted among the connections waiting to log on
        self.market_data_only = False  # set at logon: a session for market data, with no orders and no numbering
        self.link: AccountLink | None = None  # set at logon
        self.account: str | None = None
        self.cancel_on_disconnect = True  # set at logon: the logon's choice, else the account's setting
        self.heartbeat_interval = gateway.config.heartbeat_interval
        now = gateway.clock()
        self.last_received = now
        self.last_sent = now
        self.bucket = TokenBucket(gateway.config.throttle_rate, gateway.config.throttle_burst, now)
        self.closed = False
        self.accepted = False  # logon_accepted sent: from then on it receives the account's messages
        self.close_code: RejectCode | None = None
        self.ended = asyncio.Event()  # set once the session is closed, by either side
        self.waiting = False  # its task waits on the exchange (a full queue, the throttle): not timed out
        self.subscriptions: set[tuple[str, str]] = set()  # (instrument, channel) of market data it receives
        self.refused_waiting = 0  # requests in NotProcessed runs queued and not answered yet
        self.refusals_answered = asyncio.Event()  # set when the engine has answered all of them
        self.queued = 0  # its requests on the engine's queue (not counting refusals)

    def write(self, message: dict) -> None:
        """Send a message now (no waiting); a client too far behind in reading is disconnected."""
        self.write_frame(encode_frame(message))

    def write_frame(self, frame: bytes) -> None:
        """Send an encoded message (one frame made once for many sessions: market data)."""
        transport = self.transport
        if self.closed or transport.is_closing():  # the client went away; its session task is ending it
            return
        try:
            transport.write(frame)
            buffered = transport.get_write_buffer_size()
        except Exception as error:  # the peer vanished under us: this session ends, nothing else
            self.lost(error)
            return
        self.last_sent = self.gateway.clock()
        if buffered > self.gateway.config.max_outbound_bytes:
            log_event(log, "slow_consumer", logging.WARNING, session=self.number, account=self.account,
                      peer=self.peer, buffered=buffered)
            self.end(RejectCode.SLOW_CONSUMER)  # the logout sits behind everything unread

    def end(self, code: RejectCode | None, text: str | None = None, request_id: object = None,
            **fields: object) -> None:
        """Send a logout (with ``code`` if the exchange ends the session; ``fields`` added to it) and close after
        it is written."""
        if self.closed:
            return
        self.close_code = code
        self._close()
        message = {"type": "logout", "code": None if code is None else int(code),
                   "text": text or ("logged out" if code is None else code.text), **fields, "ts": time.time_ns()}
        if request_id is not None:
            message["request_id"] = request_id
        transport = self.transport
        # Half-close: the logout goes out after what is queued, and the peer sees the end of the stream.
        # A full close now would answer data the client is still sending with a reset, which can
        # destroy the logout in flight; the connection is cut for good after a grace period.
        # The peer may be gone already (a reset, or a close that our last write turned into one): then
        # the write or the shutdown fails (ENOTCONN, EPIPE), and the connection is simply cut.
        try:
            if transport.is_closing():
                return
            transport.write(encode_frame(message))
            if transport.can_write_eof():
                transport.write_eof()
                asyncio.get_running_loop().call_later(CLOSE_GRACE, _abort, transport)
            else:
                transport.close()
        except Exception as error:
            self.lost(error)

    def lost(self, error: BaseException) -> None:
        """The connection failed under a write, a shutdown or a close: cut it. Only this session ends; the
        caller (the engine task, the stop, the heartbeat task) goes on."""
        log_event(log, "session_io_error", logging.INFO, session=self.number, account=self.account,
                  peer=self.peer, error=f"{type(error).__name__}: {error}")
        if not self.closed:
            self._close()
        _abort(self.transport)

    def _close(self) -> None:
        """Mark the session closed: nothing more is read from it, and its task, waiting in a read, ends."""
        self.closed = True
        self.ended.set()
        self.refusals_answered.set()  # its task, waiting for the engine to answer its refusals, ends too
        with contextlib.suppress(Exception):  # a transport already closed has nothing to pause
            self.transport.pause_reading()
        self.reader.feed_eof()

    def pause(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self.transport.pause_reading()


class TradingGateway:
    """The exchange process's network side: accepts sessions and runs the engine loop."""

    def __init__(self, core: Sequencer, journal: JournalWriter, accounts: Mapping[str, AccountConfig],
                 config: ServerConfig, settlement: SettlementService, data_dir: Path, *,
                 clock: Callable[[], float] = time.monotonic, commands_since_snapshot: int = 0) -> None:
        self.core = core
        self.engine = core.engine
        self.tracker = core.tracker
        self.feed = core.feed
        self.journal = journal
        self.data_dir = data_dir
        self.config = config
        self.settlement = settlement
        self.clock = clock
        self._sync_each_batch = config.journal_fsync == "batch"
        # Batches written to the journal, waiting for the sync thread to have them on disk, oldest first:
        # (journal size after the batch, events, outbox, market data, finished operator commands).
        self._unsynced: deque[tuple] = deque()
        self._synced = asyncio.Event()
        self._syncer: JournalSyncer | None = None
        # Counted from the newest snapshot, not from this process's start: crash after crash, the journal to
        # replay at the next start stays within snapshot_every commands.
        self._commands_since_snapshot = commands_since_snapshot
        self.snapshots_taken = 0
        self._snapshot_requests: list[tuple[Session, SnapshotRequest]] = []
        self._snapshot_writer: asyncio.Task | None = None  # waits for the snapshot being written
        self.subscribers: dict[tuple[str, str], set[Session]] = {}  # (instrument, channel) -> sessions
        self.publisher = (MqttPublisher(parse_mqtt_url(config.mqtt_url), self.feed, max_reliable=config.mqtt_queue,
                                        snapshot_interval=config.snapshot_interval) if config.mqtt_url else None)
        self.links = {account_id: AccountLink(account) for account_id, account in accounts.items()}
        # Requests for the engine, in order, with the clock when each was queued: (session, request, queued at).
        # Sessions never wait to add to it: past ``queue_size`` what they send is refused at once (719), and a
        # request that has waited longer than ``max_queue_delay`` is refused when its turn comes rather than run
        # late; the refusals themselves are answered in their place (NotProcessed, bounded per session).
        self.requests: asyncio.Queue[tuple[Session | None, object, float]] = asyncio.Queue()
        self.overloaded = 0  # requests refused with 719, for the log and the benchmarks
        # Requests on the queue, not counting runs of refused ones: the queue's bound is on these (a flood's
        # refusals, queued to be answered in their place, must not take the room of other sessions' requests).
        self.queued = 0
        self.refused_waiting = 0  # requests in NotProcessed runs queued and not answered yet, every session's
        self._session_share = max(1, config.queue_size // 4)  # requests one session may have queued at once
        self._overload_logged = float("-inf")
        self.sessions: dict[int, Session] = {}  # every connection, logged on or not
        self.logged_on = 0  # sessions logged on (at most max_sessions)
        self._pending_logons: dict[str, int] = {}  # connections not logged on yet, by peer address
        self._pending_total = 0
        self.logon_guard = LogonGuard(config.logon_free_failures, config.logon_backoff, config.logon_lockout_failures,
                                      config.logon_lockout_seconds)
        self._numbers = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task] = []
        self._connection_tasks: set[asyncio.Task] = set()
        # Volatility interruptions under way: the timer that ends each (instrument -> handle), and the tasks
        # sending the reopening command.
        self._reopenings: dict[str, asyncio.TimerHandle] = {}
        self._timed_tasks: set[asyncio.Task] = set()
        self._clearings: dict[str, asyncio.TimerHandle] = {}  # primary auctions open: the timer that clears each
        self._in_hand = False  # the engine task holds a batch it has not finished
        self._finished: list = []  # (future, events) of the batch's operator commands
        self._operator_waits: set[asyncio.Future] = set()
        # Secrets are checked in threads of their own, a few at a time, so that a storm of logons (or of
        # bad secrets) neither takes the default executor nor runs without bound.
        self._secret_checker = ThreadPoolExecutor(max_workers=SECRET_CHECK_THREADS, thread_name_prefix="secret-check")
        self._logon_checks = asyncio.Semaphore(SECRET_CHECK_THREADS * 2)
        self._stop_task: asyncio.Task | None = None
        self.stopping = False
        self.failure: BaseException | None = None  # set when the engine loop stops on an error
        self.stopped = asyncio.Event()
        self.instrument_list = [_instrument_entry(instrument) for instrument in self.engine.instruments.values()]
        self._commands: dict[type, Callable[[Session | None, object, int], object]] = {
            NewOrderRequest: self._new_order,
            CancelRequest: self._cancel_order,
            ReplaceRequest: self._replace_order,
            MassCancelRequest: self._mass_cancel,
            KillSwitchRequest: self._kill_switch,
            ReleaseKillSwitchRequest: self._release_kill_switch,
            SetTradingPhaseRequest: self._set_trading_phase,
            OpenAuctionRequest: self._open_auction,
            SubmitBidRequest: self._submit_bid,
            ModifyBidRequest: self._modify_bid,
            WithdrawBidRequest: self._withdraw_bid,
            Disconnected: self._disconnected,
        }
        self._answers: dict[type, Callable[[Session, object], None]] = {
            OrderStatusRequest: self._order_status,
            BalancesRequest: self._balances,
            BookRequest: self._book,
            Logout: self._logout,
            Refusal: self._refusal,
            NotProcessed: self._not_processed,
            OperatorCommands: self._operator_commands,
            AcceptLogon: self._accept_logon,
            ResendRequest: self._resend,
            SnapshotRequest: self._snapshot_request,
            SubscribeRequest: self._subscribe,
            UnsubscribeRequest: self._unsubscribe,
            AuctionStatusRequest: self._auction_status,
            OpenOrdersRequest: self._open_orders,
            TradesRequest: self._trades,
            PingRequest: self._ping,
        }

    # -- life cycle ------------------------------------------------------------------------

    async def start(self, opening: list | None = None, listener: asyncio.Server | None = None) -> None:
        """Run the start-up commands, listen, and start the engine, heartbeat and journal tasks.

        Before anyone can log on: ``opening`` (engine commands opening and
        funding accounts the state does not know yet), then the
        cancel-on-disconnect of every session the last stop or crash ended.
        ``listener``: the address bound beforehand and not yet serving
        (:func:`bind_listener`, as ``running_exchange`` does before it opens
        anything); without it the address is bound here, first of all, so
        that an address in use fails before any start-up command runs.
        """
        self._server = listener or await bind_listener(self.config.host, self.config.port, self._serve_connection)
        if self._sync_each_batch:
            self._syncer = JournalSyncer(self.journal, asyncio.get_running_loop(), self._synced_to, self._fail)
        first: list = []
        now = self.clock()
        if opening:
            first.append((None, OperatorCommands(opening, asyncio.get_running_loop().create_future()), now))
        first += [(None, Disconnected(account), now) for account in sorted(self.core.cod_sessions)]
        if first:
            self._run_batch(first)
        await self._server.start_serving()
        self._tasks = [asyncio.create_task(self._engine_loop(), name="engine"),
                       asyncio.create_task(self._heartbeats(), name="session-heartbeats")]
        if self.publisher is not None:
            self.publisher.start()
        for symbol, book in self.engine.books.items():  # interrupted when the exchange stopped: a full call again
            if book.phase is TradingPhase.VOLATILITY_INTERRUPTION:
                self._schedule_reopening(symbol)
        for auction in self.engine.primary.auctions.values():  # open when the exchange stopped: cleared when due
            if auction.outcome is None:
                self._schedule_clearing(auction.auction_id, auction.closes_at)
        log_event(log, "listening", host=self.config.host, port=self.port, instruments=list(self.engine.instruments),
                  accounts=len(self.links))

    @property
    def port(self) -> int:
        """The port listened on (useful with port 0)."""
        return self._server.sockets[0].getsockname()[1]

    def request_stop(self) -> asyncio.Task:
        """Start the graceful shutdown in its own task (from a signal handler or a failure); idempotent."""
        if self._stop_task is None:
            self._stop_task = asyncio.get_running_loop().create_task(self.stop(), name="gateway-stop")
        return self._stop_task

    async def stop(self) -> None:
        """Graceful shutdown: stop accepting and reading, answer what is queued, log everyone out, close.

        Each step runs whatever the steps before it met: a failure in one
        (a connection the peer has just reset, a snapshot the disk refuses)
        is logged and the stop goes on, so that the journal is always
        closed, the data directory unlocked and ``stopped`` set. A second
        call waits for the first to finish."""
        if self.stopping:
            await self.stopped.wait()
            return
        self.stopping = True
        log_event(log, "stopping", sessions=len(self.sessions), queued=self.requests.qsize())
        try:
            for step in (self._stop_taking, self._end_sessions, self._stop_tasks, self._sync_journal,
                         self._snapshot_at_stop, self._stop_publishing, self._close_connections):
                try:
                    await step()
                except Exception as error:
                    log.error("a step of the stop failed; the stop goes on", exc_info=error,
                              extra={"carbonx_fields": {"event": "stop_step_failed", "step": step.__name__}})
        finally:
            self._secret_checker.shutdown(wait=False, cancel_futures=True)
            log_event(log, "stopped", last_event_seq=self.engine.counters.seq, state_hash=self.engine.state_hash())
            self.stopped.set()

    async def _stop_taking(self) -> None:
        """No new connections, nothing more read; the engine finishes the batch in hand and everything queued."""
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions.values()):
            session.pause()
        engine = self._tasks[0] if self._tasks else None
        while ((self._in_hand or not self.requests.empty() or self._unsynced) and self.failure is None
               and engine is not None and not engine.done() and (self._syncer is None or self._syncer.alive)):
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)

    async def _end_sessions(self) -> None:
        for session in list(self.sessions.values()):
            session.end(RejectCode.SHUTTING_DOWN)  # never raises: a vanished peer ends only its session

    async def _stop_tasks(self) -> None:
        """The engine, heartbeat and timed tasks end; a snapshot being written finishes (its answers synced)."""
        for handle in [*self._reopenings.values(), *self._clearings.values()]:
            handle.cancel()
        self._reopenings.clear()
        self._clearings.clear()
        for task in [*self._tasks, *self._timed_tasks]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._timed_tasks, return_exceptions=True)
        if self._snapshot_writer is not None:
            await asyncio.gather(self._snapshot_writer, return_exceptions=True)

    async def _sync_journal(self) -> None:
        try:
            while self._unsynced and self.failure is None and self._syncer is not None and self._syncer.alive:
                self._synced.clear()
                await self._synced.wait()
        finally:
            if self._syncer is not None:
                self._syncer.stop()

    async def _snapshot_at_stop(self) -> None:
        if self.failure is None and self.config.data_dir:  # a temporary directory is deleted at exit anyway
            try:
                await self._write_snapshot()  # the next start replays nothing
            except Exception as error:  # the journal has everything: a failed snapshot costs start-up time only
                log.error("snapshot at stop failed", exc_info=error,
                          extra={"carbonx_fields": {"event": "snapshot_failed"}})

    async def _stop_publishing(self) -> None:
        if self.publisher is not None:
            await self.publisher.stop()
        for waiting in self._operator_waits:  # queued behind a failure, or never run: say so
            if not waiting.done():
                waiting.set_exception(ExchangeStopped("the exchange stopped before running the commands"))

    async def _close_connections(self) -> None:
        if self._connection_tasks:
            await asyncio.wait(self._connection_tasks, timeout=2.0)
        for task in self._connection_tasks:
            task.cancel()
        for session in list(self.sessions.values()):
            _abort(session.transport)  # whatever lingers (a logout the peer never read) is cut now
        if self._server is not None:
            # From Python 3.12 this waits for every connection to be closed: bounded, whatever a peer does.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_GRACE)

    # -- sessions --------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        number = next(self._numbers)
        task.set_name(f"session-{number}")
        self._connection_tasks.add(task)
        session = Session(self, number, reader, writer)
        self.sessions[number] = session
        log_event(log, "connected", session=number, peer=session.peer)
        try:
            if self.stopping:
                session.end(RejectCode.SHUTTING_DOWN)
            elif (self._pending_total >= self.config.max_pending_logons
                  or self._pending_logons.get(session.host, 0) >= self.config.max_pending_logons_per_peer):
                log_event(log, "pending_logons_full", logging.WARNING, session=number, peer=session.peer,
                          pending=self._pending_total, from_peer=self._pending_logons.get(session.host, 0))
                session.end(RejectCode.TOO_MANY_PENDING_LOGONS)
            else:
                self._count_pending(session, True)
                await self._run_session(session)
        except (ConnectionError, OSError) as error:
            log_event(log, "connection_error", logging.INFO, session=number, error=str(error))
        finally:
            self._count_pending(session, False)
            del self.sessions[number]
            self._connection_tasks.discard(task)
            for key in session.subscriptions:
                self.subscribers[key].discard(session)
            if not session.closed:
                session.closed = True
                with contextlib.suppress(Exception):  # the peer's reset may have closed it already
                    writer.close()
            await self._session_ended(session)

    def _count_pending(self, session: Session, pending: bool) -> None:
        """A connection starts or stops waiting to log on (its logon was answered, or it went away)."""
        if session.pending == pending:
            return
        session.pending = pending
        step = 1 if pending else -1
        self._pending_total += step
        count = self._pending_logons.get(session.host, 0) + step
        if count:
            self._pending_logons[session.host] = count
        else:
            del self._pending_logons[session.host]

    async def _run_session(self, session: Session) -> None:
        messages = MessageReader(self.config.max_frame)
        try:
            items = await asyncio.wait_for(self._first_messages(session, messages), self.config.logon_timeout)
        except asyncio.TimeoutError:
            session.end(RejectCode.LOGON_TIMEOUT)
            return
        if not items:
            return  # the client went away before logging on
        logged_on = await self._logon(session, items[0])
        self._count_pending(session, False)
        if not logged_on:
            return
        if not await self._take(session, items[1:]):
            return await self._await_logout(session)
        reader = session.reader
        clock = self.clock
        while not session.closed:
            data = await reader.read(SESSION_READ_SIZE)
            if not data:
                return
            session.last_received = clock()
            if not await self._take(session, messages.feed(data)):
                return await self._await_logout(session)

    @staticmethod
    async def _await_logout(session: Session) -> None:
        """A logout is queued (or the session ended): the engine loop answers it after what came before it."""
        if not session.closed:
            try:
                await asyncio.wait_for(session.ended.wait(), LOGOUT_WAIT)
            except asyncio.TimeoutError:
                pass

    @staticmethod
    async def _first_messages(session: Session, messages: MessageReader) -> list:
        while True:
            data = await session.reader.read(SESSION_READ_SIZE)
            if not data:
                return []
            items = messages.feed(data)
            if items:
                return items

    async def _logon(self, session: Session, first: object) -> bool:
        if type(first) is Refusal:  # before logon any refusal ends the connection, with its own code
            session.end(first.code, first.text, first.request_id)
            return False
        if type(first) is not Logon:
            session.end(RejectCode.NOT_LOGGED_ON, request_id=first.request_id)
            return False
        interval = first.heartbeat_interval
        if interval is not None and not MIN_CLIENT_HEARTBEAT <= interval <= MAX_CLIENT_HEARTBEAT:
            session.end(RejectCode.INVALID_FIELD, f"heartbeat_interval: whole seconds from {MIN_CLIENT_HEARTBEAT} "
                                                  f"to {MAX_CLIENT_HEARTBEAT}", first.request_id)
            return False
        account = first.account[:64]  # as counted and logged: an account name is never longer
        known = first.account in self.links
        guard = self.logon_guard
        wait = guard.admit(account, known, session.host, self.clock())
        if wait is not None:  # backing off or locked out: refused before its secret is looked at
            log_event(log, "logon_refused_locked", logging.WARNING, session=session.number, peer=session.peer,
                      account=account, by=wait.key, retry_after=round(wait.seconds, 3))
            retry_after = round(wait.seconds, 3)
            session.end(RejectCode.LOGON_LOCKED, f"too many failed logons for this {wait.key}: try again in "
                        f"{retry_after} s", first.request_id, retry_after=retry_after)
            return False
        link = self.links.get(first.account)
        stored = link.config.secret_hash if link is not None else _DUMMY_HASH
        try:
            async with self._logon_checks:  # scrypt costs memory and tens of milliseconds: a few at a time
                verified = await asyncio.get_running_loop().run_in_executor(self._secret_checker, verify_secret,
                                                                            first.secret, stored)
        except BaseException:
            guard.abandoned(account, known, session.host)
            raise
        if link is None or not verified:
            for key, failures, seconds in guard.failed(account, known, session.host, self.clock()):
                log_event(log, "logon_lockout" if guard.locked_out(key, failures) else "logon_backoff",
                          logging.WARNING, account=account if key == "account" else None,
                          peer=session.host if key == "peer" else None, failures=failures, seconds=seconds)
            log_event(log, "logon_failed", logging.WARNING, session=session.number, peer=session.peer,
                      account=account)
            session.end(RejectCode.LOGON_FAILED, request_id=first.request_id)
            return False
        guard.succeeded(account, known, session.host, self.clock())
        market_data_only = first.market_data_only
        refusal = self._refuse_logon(link, market_data_only)
        if refusal is not None:
            log_event(log, "logon_refused", logging.WARNING, session=session.number, account=first.account,
                      peer=session.peer, code=int(refusal))
            session.end(refusal, request_id=first.request_id)
            return False
        if session.closed or self.stopping:
            return False
        if market_data_only:
            link.watchers += 1
            session.market_data_only = True
            session.cancel_on_disconnect = False
        else:
            link.session = session
            session.cancel_on_disconnect = (link.config.cancel_on_disconnect if first.cancel_on_disconnect is None
                                            else first.cancel_on_disconnect)
        self.logged_on += 1
        session.link = link
        session.account = first.account
        if interval is not None:
            session.heartbeat_interval = float(interval)
        session.last_received = self.clock()
        self._queue(session, AcceptLogon(first.request_id))  # ahead of everything the session sends
        return True

    def _refuse_logon(self, link: AccountLink, market_data_only: bool) -> RejectCode | None:
        """Why an account whose secret was right may not have this session now (None: it may)."""
        if self.logged_on >= self.config.max_sessions:
            return RejectCode.TOO_MANY_SESSIONS
        if market_data_only:
            return RejectCode.ALREADY_LOGGED_ON if link.watchers >= MAX_MARKET_DATA_SESSIONS else None
        return RejectCode.ALREADY_LOGGED_ON if link.session is not None else None

    def _accept_logon(self, session: Session, request: AcceptLogon) -> None:
        """In the engine loop: the logon's answer takes its place in the outbox, after every message the
        account had before it; a session with cancel-on-disconnect is journaled (see Sequencer.cod_sessions)."""
        if session.closed:
            return
        if session.cancel_on_disconnect:
            self.journal.append(session_record(session.account))
            self.core.session_started(session.account)
        market_data_only = session.market_data_only
        config = self.config
        next_seq = self.core.next_seq(session.account)
        accepted = {
            "type": "logon_accepted", "account": session.account,
            "protocol_version": PROTOCOL_VERSION, "session_id": session.number,
            "heartbeat_interval": session.heartbeat_interval,
            "heartbeat_timeout": session.heartbeat_interval * config.heartbeat_timeout_factor,
            "max_frame": config.max_frame, "throttle_rate": config.throttle_rate,
            "throttle_burst": config.throttle_burst, "cancel_on_disconnect": session.cancel_on_disconnect,
            "operator": session.link.config.is_operator, "next_seq": next_seq, "instruments": self.instrument_list,
            "ts": time.time_ns(),
        }
        if market_data_only:  # stated only when asked for: a trading session's logon_accepted is as it was
            accepted["market_data_only"] = True
        if request.request_id is not None:
            accepted["request_id"] = request.request_id
        self.core.outbox.append((session, accepted, None))
        log_event(log, "logon", session=session.number, account=session.account, peer=session.peer,
                  next_seq=next_seq, market_data_only=market_data_only)

    async def _take(self, session: Session, items: list) -> bool:
        """Queue a logged-on session's messages for the engine; False when the session must stop reading.

        Every message gets exactly one answer, a refused one too, in its place
        among the answers: 708 when the session is over its rate, 719 when the
        exchange's queue is full (the session is never made to wait for room:
        that would leave its requests to age unseen in the socket). A client
        far over its rate is also slowed down: its task sleeps for as long as
        the messages it had no token for would have taken at the rate (at
        most ``MAX_THROTTLE_PAUSE``), reading nothing meanwhile, so a flood
        costs the engine task at most one read's worth of rejects a second.
        """
        if self.stopping:  # the stop answers what was queued before it; nothing read after it is taken
            return False
        now = self.clock()
        operator = session.link.config.is_operator
        market_data_only = session.market_data_only
        # Requests the queue still takes from this session: what is left of it, and of the session's share (a
        # quarter: one session alone cannot fill it and leave the others only 719s).
        room = min(self.config.queue_size - self.queued, self._session_share - session.queued)
        max_batch = self.config.max_batch
        refused: list = []  # the run of messages refused unprocessed, not yet queued
        refused_code = None
        throttled = 0
        for item in items:
            if session.closed:  # ended while this read was being queued (a heartbeat timeout, say)
                return False
            kind = item.__class__
            if kind is Heartbeat:
                continue
            if kind is not Logout and not (kind is Refusal and item.fatal):
                code = (RejectCode.THROTTLED if not session.bucket.take(now, kind.cost) else
                        RejectCode.OVERLOADED if room <= 0 else None)
                if code is not None:
                    if refused and code is not refused_code:
                        self._refuse_run(session, refused_code, refused)
                        refused = []
                    refused.append(item)
                    refused_code = code
                    throttled += code is RejectCode.THROTTLED
                    if len(refused) >= max_batch:  # a run is at most a batch: other sessions' turns come between
                        self._refuse_run(session, refused_code, refused)
                        refused = []
                    continue
            if refused:
                self._refuse_run(session, refused_code, refused)
                refused = []
            room -= 1
            if kind is Refusal and item.fatal:  # answered after the requests before it, then closed
                self._queue(session, item)
                return False
            if kind is Logout:
                self._queue(session, item)
                return False
            if kind is Logon:
                self._queue(session, Refusal(RejectCode.ALREADY_LOGGED_ON_HERE, RejectCode.ALREADY_LOGGED_ON_HERE.text,
                                             fatal=False, message_type="logon", request_id=item.request_id))
            elif kind is not Refusal and market_data_only and not kind.market_data:
                self._queue(session, Refusal(RejectCode.MARKET_DATA_SESSION, RejectCode.MARKET_DATA_SESSION.text,
                                             fatal=False, message_type=item.__struct_config__.tag,
                                             request_id=item.request_id))
            elif kind is not Refusal and ((kind.admin and not operator)
                                          or (kind.auctioneer and not session.link.config.is_auctioneer)):
                self._queue(session, Refusal(RejectCode.NOT_AUTHORISED, RejectCode.NOT_AUTHORISED.text,
                                             fatal=False, message_type=item.__struct_config__.tag,
                                             request_id=item.request_id))
            else:
                self._queue(session, item)
        if refused:
            self._refuse_run(session, refused_code, refused)
        if throttled or session.refused_waiting >= MAX_REFUSED_WAITING or self._refusals_full():
            session.waiting = True  # not silent: slowed down by the exchange
            try:
                if throttled:
                    await asyncio.wait_for(session.ended.wait(), min(throttled / self.config.throttle_rate,
                                                                     MAX_THROTTLE_PAUSE))
            except asyncio.TimeoutError:
                pass
            # The exchange holds a bounded part of this session's refused excess: no more is read until it has
            # answered it.
            while session.refused_waiting >= MAX_REFUSED_WAITING and not session.closed:
                session.refusals_answered.clear()
                await session.refusals_answered.wait()
            while self._refusals_full() and not session.closed:  # every session's excess together
                await asyncio.sleep(0.005)
            session.waiting = False
            session.last_received = self.clock()
        return not session.closed

    def _refusals_full(self) -> bool:
        return self.refused_waiting >= MAX_REFUSED_WAITING_IN_ALL

    def _queue(self, session: Session | None, request: object) -> None:
        """Put a request on the engine's queue (never waits: the queue's bound is kept by ``_take``)."""
        self.queued += 1
        if session is not None:
            session.queued += 1
        self.requests.put_nowait((session, request, self.clock()))

    def _refuse_run(self, session: Session, code: RejectCode, requests: list) -> None:
        """Queue a run of refused requests, to be answered in their place."""
        session.refused_waiting += len(requests)
        self.refused_waiting += len(requests)
        if code is RejectCode.OVERLOADED:
            self._note_overload(len(requests))
        self.requests.put_nowait((session, NotProcessed(code, requests), self.clock()))

    def _note_overload(self, count: int) -> None:
        """Count requests refused for want of capacity; the log says so once a second at the most."""
        self.overloaded += count
        now = self.clock()
        if now - self._overload_logged >= 1.0:
            self._overload_logged = now
            log_event(log, "overloaded", logging.WARNING, refused_so_far=self.overloaded,
                      queued=self.queued, hint="the excess is refused with 719; raise capacity or "
                      "ask clients to slow down")

    async def _session_ended(self, session: Session) -> None:
        link = session.link
        if link is None:
            log_event(log, "disconnected", session=session.number, peer=session.peer,
                      code=None if session.close_code is None else int(session.close_code))
            return
        self.logged_on -= 1
        if link.session is session:
            link.session = None
        elif session.market_data_only:
            link.watchers -= 1
        log_event(log, "session_ended", session=session.number, account=session.account,
                  code=None if session.close_code is None else int(session.close_code),
                  cancel_on_disconnect=session.cancel_on_disconnect)
        if session.cancel_on_disconnect and not self.stopping:
            self._queue(None, Disconnected(session.account))

    async def _heartbeats(self) -> None:
        """Send a heartbeat to sessions that heard nothing for an interval; end those silent too long."""
        factor = self.config.heartbeat_timeout_factor
        while True:
            shortest = min((s.heartbeat_interval for s in self.sessions.values()), default=1.0)
            await asyncio.sleep(max(0.02, min(shortest / 4, 1.0)))
            now = self.clock()
            for session in list(self.sessions.values()):
                if not session.accepted or session.closed or session.waiting:
                    continue
                if now - session.last_received > session.heartbeat_interval * factor:
                    log_event(log, "heartbeat_timeout", logging.WARNING, session=session.number,
                              account=session.account)
                    session.end(RejectCode.HEARTBEAT_TIMEOUT)
                elif now - session.last_sent >= session.heartbeat_interval:
                    session.write({"type": "heartbeat", "ts": time.time_ns()})

    # -- the engine loop ---------------------------------------------------------------------

    async def _engine_loop(self) -> None:
        queue = self.requests
        max_batch = self.config.max_batch
        try:
            while self.failure is None:
                batch = [await queue.get()]
                self._in_hand = True  # stop() waits for this batch too
                # A batch holds up to max_batch requests, a run of refusals counting each of its requests: an
                # overloaded exchange's batches stay as short as its others.
                size = _requests_in(batch[0])
                while size < max_batch and not queue.empty():
                    item = queue.get_nowait()
                    batch.append(item)
                    size += _requests_in(item)
                # The ledger is far behind: wait for it, lose nothing (batches waiting for the disk are
                # submitted when it has them, so they need room too).
                while self.settlement.room <= len(self._unsynced) and self.failure is None:
                    self.settlement.check()  # a settlement that has stopped for good stops the exchange
                    await asyncio.sleep(0.001)
                while len(self._unsynced) >= MAX_UNSYNCED_BATCHES and self.failure is None:
                    self._synced.clear()  # the disk is far behind: wait for it
                    await self._synced.wait()
                if self.failure is not None:
                    break
                self._run_batch(batch)
                if self._snapshot_due():
                    await self._begin_snapshot()
                self._in_hand = False
                for _ in batch:
                    queue.task_done()
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # a bug, a journal or settlement failure: stop taking orders, say why
            self._fail(error)
            raise

    def _fail(self, error: BaseException) -> None:
        """Stop for good: nothing written but not synced is sent, no more requests are taken."""
        if self.failure is None:
            self.failure = error
            log.critical("engine loop stopped", exc_info=error,
                         extra={"carbonx_fields": {"event": "engine_failed"}})
        self._unsynced.clear()  # written, perhaps not on disk: never acknowledged
        self._synced.set()
        self.request_stop()

    def _now(self) -> int:
        """The next command timestamp: the clock in nanoseconds, never going back."""
        return self.core.now(time.time_ns())

    def _run_batch(self, batch: list) -> None:
        """Sequence a batch, run it through the engine, journal it, then commit: settle and send, in order.

        Nothing of the batch leaves before ``_commit``, and ``_commit``
        sends nothing before the journal has the batch (synced, with
        ``journal_fsync = "batch"``).
        """
        pending: list[tuple[str | None, object, object]] = []  # (account or None, request_id, command)
        ordering: set[str] = set()  # accounts with a new order among the pending commands
        commands = self._commands
        too_old = self.clock() - self.config.max_queue_delay  # queued before this: refused, not run late
        for session, request, queued_at in batch:
            kind = request.__class__
            if kind is not NotProcessed:
                self.queued -= 1
                if session is not None:
                    session.queued -= 1
            if queued_at < too_old and session is not None and kind in commands:
                self._execute(pending)
                self._note_overload(1)
                self._refuse_unprocessed(session, RejectCode.OVERLOADED, [request])
                continue
            if kind is NewOrderRequest:
                ordering.add(session.account)
            elif (kind is CancelRequest or kind is ReplaceRequest) and session.account in ordering:
                self._execute(pending)  # it may name an order still pending: the tracker must know it first
                ordering.clear()
            make = commands.get(kind)
            if make is not None:
                try:
                    command = make(session, request, self._now())
                except InvalidCommand as refused:
                    self._execute(pending)
                    self._refuse(session, request, refused.code)
                    continue
                if session is None:
                    pending.append((None, None, command))
                else:
                    pending.append((session.account, request.request_id, command))
            else:
                self._execute(pending)
                self._answers[request.__class__](session, request)
        self._execute(pending)
        self._commit()

    def _execute(self, pending: list) -> None:
        """Journal the pending commands and run them through the engine as one batch."""
        if not pending:
            return
        self.journal.append(execute_record(pending))
        self._commands_since_snapshot += len(pending)
        self.core.execute(pending)
        pending.clear()

    def _commit(self) -> None:
        """Write the batch to the journal, then release it: now, or (fsync per batch) once the disk has it.

        With ``journal_fsync = "batch"`` the journal's sync thread
        (:class:`gateway.journal.JournalSyncer`) fdatasyncs whatever has been
        written since its last sync, while this task matches the next
        batches: one sync covers every batch written before it started
        (group commit). A batch waits behind earlier ones, so answers keep
        their order. A JournalFailure propagates: nothing of the batch is sent.
        """
        events, outbox, market_data = self.core.commit()
        finished, self._finished = self._finished, []
        journal = self.journal
        if journal.buffered:
            journal.append(commit_record())
            journal.flush()
            if self._syncer is not None:
                self._unsynced.append((journal.size, events, outbox, market_data, finished))
                self._syncer.written(journal.size)
                return
        if self._unsynced:  # earlier batches wait for the disk: this one is released with them
            self._unsynced.append((journal.size, events, outbox, market_data, finished))
            return
        self._release(events, outbox, market_data, finished)

    def _synced_to(self, size: int) -> None:
        """The sync thread has the journal on disk up to ``size``: release every batch written before it."""
        unsynced = self._unsynced
        while unsynced and unsynced[0][0] <= size and self.failure is None:
            _, events, outbox, market_data, finished = unsynced.popleft()
            try:
                self._release(events, outbox, market_data, finished)
            except Exception as error:  # a settlement failure: as in the engine loop
                self._fail(error)
        self._synced.set()

    def _release(self, events: list, outbox: list, market_data: list, finished: list) -> None:
        """A batch is on disk: settle it, send its answers, publish its market data and fills, in that order."""
        if events:
            self.settlement.submit(events)  # a SettlementError stops the exchange: see _fail
        links = self.links
        fills = []  # (account, trade report) for the accounts' private market-data topics
        # Each session's frames of this batch go out in one write (a system call a frame would cost more
        # than the frame's encoding); anything written otherwise goes after what is gathered before it.
        gathered: dict[Session, list[bytes]] = {}
        for target, message, frame in outbox:
            if frame is None or message is None:
                _write_gathered(gathered)
            if frame is None:  # the gateway's own: a logout, logon_accepted, resend markers, subscriptions
                kind = type(message)
                if kind is EndSession:  # a logout, after everything answered before it
                    target.end(message.code, message.text, message.request_id)
                elif kind is SubscriptionChange:
                    self._apply_subscription(target, message)
                elif message["type"] == "logon_accepted":
                    if not target.closed:
                        target.accepted = True
                        target.write(message)
                else:
                    target.write(message)
            elif message is None:  # a frame resent to the session that asked
                target.write_frame(frame)
            else:  # numbered for an account: to its session, if one is logged on
                if message.get("exec_type") == "trade":
                    fills.append((target, message))
                link = links.get(target)
                if link is not None:
                    session = link.session
                    if session is not None and session.accepted:
                        frames = gathered.get(session)
                        if frames is None:
                            gathered[session] = [frame]
                        else:
                            frames.append(frame)
        if market_data:
            self._send_market_data(market_data, gathered)
            if self.publisher is not None:
                self.publisher.offer(market_data, fills)
            for instrument, channel, message in market_data:
                if channel == "status":
                    self._follow_interruption(instrument, message["phase"])
                elif channel == "auctions" and message["status"] == "open":
                    self._schedule_clearing(message["auction_id"], message["closes_at"])
        _write_gathered(gathered)
        for future, done_events in finished:
            if not future.done():
                future.set_result(done_events)

    # -- volatility interruptions ----------------------------------------------------------------

    def _follow_interruption(self, instrument: str, phase: TradingPhase) -> None:
        """An instrument's phase as published: a volatility interruption gets its timer; any other phase ends
        the timer of one that ended otherwise (the operator halted the instrument meanwhile)."""
        if phase is TradingPhase.VOLATILITY_INTERRUPTION:
            self._schedule_reopening(instrument)
        else:
            handle = self._reopenings.pop(instrument, None)
            if handle is not None:
                handle.cancel()

    def _schedule_reopening(self, instrument: str) -> None:
        """One timer per interruption: the start-up and the release of a batch may both ask for it."""
        if instrument in self._reopenings:
            return
        seconds = self.engine.instruments[instrument].volatility_call_seconds
        log_event(log, "volatility_interruption", instrument=instrument, call_seconds=seconds)
        self._reopenings[instrument] = asyncio.get_running_loop().call_later(seconds, self._reopen, instrument)

    def _reopen(self, instrument: str) -> None:
        """The interruption's call is over: its auction, then continuous trading (only if it is still the
        interruption: ``from_phase``)."""
        self._reopenings.pop(instrument, None)
        if self.stopping:
            return
        command = SetTradingPhase(ts=0, instrument=instrument, phase=TradingPhase.CONTINUOUS,
                                  from_phase=TradingPhase.VOLATILITY_INTERRUPTION)
        self._run_timed(self.run_operator_commands([command]), f"reopen-{instrument}")

    def _run_timed(self, work: Coroutine, name: str) -> None:
        """Run the exchange's own command that a timer started, in a task of its own (kept, and cancelled at
        stop)."""
        task = asyncio.create_task(work, name=name)
        self._timed_tasks.add(task)
        task.add_done_callback(self._timed_done)

    def _timed_done(self, task: asyncio.Task) -> None:
        self._timed_tasks.discard(task)
        if not task.cancelled() and isinstance(task.exception(), ExchangeStopped):
            return  # the exchange stopped first: the next start schedules it again
        if not task.cancelled() and task.exception() is not None:
            log.error("the exchange's own timed command failed", exc_info=task.exception(),
                      extra={"carbonx_fields": {"event": "timed_command_failed", "task": task.get_name()}})

    # -- primary auctions ---------------------------------------------------------------------------

    def _schedule_clearing(self, auction_id: str, closes_at: int) -> None:
        """Clear the auction when its window has closed (by this process's clock, which stamps the bids)."""
        if auction_id in self._clearings:
            return
        delay = max(0.0, (closes_at - time.time_ns()) / 1e9) + CLEARING_MARGIN
        self._clearings[auction_id] = asyncio.get_running_loop().call_later(delay, self._clear, auction_id)

    def _clear(self, auction_id: str) -> None:
        self._clearings.pop(auction_id, None)
        if self.stopping:
            return
        self._run_timed(self._clear_when_due(auction_id), f"clear-{auction_id}")

    async def _clear_when_due(self, auction_id: str) -> None:
        """Clear the auction; if the engine finds the window still open (this host's clock stepped back, and
        the clearing's stamp with it), try again when the clock has passed the window's end."""
        events = await self.run_operator_commands([ClearPrimaryAuction(ts=0, auction_id=auction_id)])
        if any(getattr(event, "code", None) is RejectCode.BIDDING_NOT_CLOSED for event in events):
            auction = self.engine.primary.auctions[auction_id]
            log_event(log, "auction_clearing_early", logging.WARNING, auction_id=auction_id,
                      closes_at=auction.closes_at, now=time.time_ns())
            self._schedule_clearing(auction_id, auction.closes_at)

    def _send_market_data(self, market_data: list[tuple[str, str, dict]], gathered: dict[Session, list[bytes]]) -> None:
        """Market data to the socket subscribers, gathered for their sessions' next write: each message encoded
        once, for all who take it."""
        subscribers = self.subscribers
        for instrument, channel, message in market_data:
            sessions = subscribers.get((instrument, channel))
            if sessions:
                frame = encode_frame(message)
                for session in sessions:
                    frames = gathered.get(session)
                    if frames is None:
                        gathered[session] = [frame]
                    else:
                        frames.append(frame)

    def _answer(self, session: Session, message: dict, request: object) -> None:
        """Answer a request that changed nothing: numbered for the account, journaled only as a number used."""
        request_id = getattr(request, "request_id", None)
        if request_id is not None:
            message["request_id"] = request_id
        if session.market_data_only:  # not the account's trading session: answered to it alone, unnumbered
            self.core.outbox.append((session, message, None))
            return
        self.journal.append(skip_record(session.account, 1))
        self.core.deliver(session.account, message)

    # -- snapshots ----------------------------------------------------------------------------

    async def _wait_for_the_disk(self) -> None:
        """Until every batch written is synced: a snapshot must never be ahead of the journal on disk."""
        while self._unsynced and self.failure is None:
            self._synced.clear()
            await self._synced.wait()
        if self.failure is not None:
            raise ExchangeStopped("the exchange failed: no snapshot of its state is taken")

    def _snapshot_due(self) -> bool:
        """An operator asked, or enough commands were journaled (not for a temporary data directory), and no
        snapshot is being written."""
        if self._snapshot_writer is not None and not self._snapshot_writer.done():
            return False
        every = self.config.snapshot_every
        return bool(self._snapshot_requests) or (bool(self.config.data_dir) and 0 < every <= self._commands_since_snapshot)

    async def _begin_snapshot(self) -> None:
        """Between batches: snapshot the state from a forked child, answer the operators who asked when it is
        written. The engine waits for the disk (one sync) and the fork (milliseconds), not for the copy."""
        requests, self._snapshot_requests = self._snapshot_requests, []
        started = time.perf_counter()
        await self._wait_for_the_disk()
        journal = self.journal
        record_seq, event_seq = journal.next_seq - 1, self.engine.counters.seq
        self._commands_since_snapshot = 0
        try:
            pid = fork_snapshot(self.core, journal.journal_id, record_seq, journal.size, self.data_dir)
        except OSError as error:  # no process to be had (a container's limits, say): nothing else changes
            log_event(log, "snapshot_failed", logging.ERROR, error=str(error),
                      hint="the journal has everything; the next start replays more of it")
            self._answer_snapshot_requests(requests, None, record_seq, event_seq)
            return
        paused = time.perf_counter() - started
        self._snapshot_writer = asyncio.create_task(
            self._finish_snapshot(pid, record_seq, event_seq, started, paused, requests), name="snapshot-writer")

    async def _finish_snapshot(self, pid: int, record_seq: int, event_seq: int, started: float, paused: float,
                               requests: list[tuple[Session, SnapshotRequest]]) -> None:
        _, status = await asyncio.get_running_loop().run_in_executor(None, os.waitpid, pid, 0)
        code = os.waitstatus_to_exitcode(status)
        path = snapshot_path(self.data_dir, record_seq)
        if code == 0:
            self.snapshots_taken += 1
            log_event(log, "snapshot", path=str(path), record_seq=record_seq, bytes=path.stat().st_size,
                      engine_paused_seconds=round(paused, 4), seconds=round(time.perf_counter() - started, 3))
        else:
            log_event(log, "snapshot_failed", logging.ERROR, path=str(path), exit_status=code,
                      hint="the journal has everything; the next start replays more of it")
        self._answer_snapshot_requests(requests, path if code == 0 else None, record_seq, event_seq)
        if self._snapshot_requests and not self.stopping:  # asked while this one was being written
            await self._begin_snapshot()

    def _answer_snapshot_requests(self, requests: list[tuple[Session, SnapshotRequest]], path: Path | None,
                                  record_seq: int, event_seq: int) -> None:
        if not requests or self.failure is not None:
            return
        for session, request in requests:
            if path is None:
                self._answer(session, _reject(RejectCode.SNAPSHOT_FAILED, RejectCode.SNAPSHOT_FAILED.text,
                                              "snapshot", None, None), request)
            else:
                self._answer(session, {"type": "snapshot_taken", "path": str(path), "record_seq": record_seq,
                                       "event_seq": event_seq, "ts": time.time_ns()}, request)
        self._commit()

    async def _write_snapshot(self) -> Path:
        """A snapshot written by this process (at a graceful stop, when nothing else runs)."""
        await self._wait_for_the_disk()
        journal = self.journal
        started = time.perf_counter()
        data = snapshot_bytes(self.core, journal.journal_id, journal.next_seq - 1, journal.size)
        path = await asyncio.get_running_loop().run_in_executor(None, write_snapshot, self.data_dir,
                                                                journal.next_seq - 1, data)
        self.snapshots_taken += 1
        log_event(log, "snapshot", path=str(path), record_seq=journal.next_seq - 1, bytes=len(data),
                  seconds=round(time.perf_counter() - started, 3))
        return path

    # -- requests that become engine commands --------------------------------------------------

    def _new_order(self, session: Session, request: NewOrderRequest, ts: int) -> NewOrder:
        instrument = self.engine.instruments.get(request.instrument)
        return NewOrder(ts=ts, account=session.account, client_order_id=request.client_order_id,
                        instrument=request.instrument, side=request.side, quantity=request.quantity,
                        price=price_in_cents(request.price, instrument, "price"), order_type=request.order_type,
                        time_in_force=request.time_in_force, display_quantity=request.display_quantity,
                        stop_price=price_in_cents(request.stop_price, instrument, "stop_price"),
                        expire_date=request.expire_date, post_only=request.post_only,
                        self_trade_prevention=request.self_trade_prevention)

    def _own_order(self, session: Session, request: CancelRequest | ReplaceRequest):
        """The session's order a cancel or replace names; another account's order is unknown, as is none."""
        if (request.order_id is None) == (request.client_order_id is None):
            raise InvalidCommand(RejectCode.ORDER_REFERENCE_REQUIRED, "order_id")
        view = self.tracker.find(session.account, request.order_id, request.client_order_id)
        if view is None:
            raise InvalidCommand(RejectCode.UNKNOWN_ORDER, "order_id")
        return view

    def _cancel_order(self, session: Session, request: CancelRequest, ts: int) -> CancelOrder:
        self._own_order(session, request)
        return CancelOrder(ts=ts, account=session.account, order_id=request.order_id,
                           client_order_id=request.client_order_id)

    def _replace_order(self, session: Session, request: ReplaceRequest, ts: int) -> ReplaceOrder:
        view = self._own_order(session, request)
        instrument = self.engine.instruments[view.instrument]
        return ReplaceOrder(ts=ts, account=session.account, order_id=request.order_id,
                            client_order_id=request.client_order_id, quantity=request.quantity,
                            price=price_in_cents(request.price, instrument, "price"))

    def _mass_cancel(self, session: Session, request: MassCancelRequest, ts: int) -> MassCancel:
        return MassCancel(ts=ts, account=session.account, instrument=request.instrument)

    def _kill_switch(self, session: Session, request: KillSwitchRequest, ts: int) -> BlockAccount:
        return BlockAccount(ts=ts, account=request.account)

    def _release_kill_switch(self, session: Session, request: ReleaseKillSwitchRequest, ts: int) -> UnblockAccount:
        return UnblockAccount(ts=ts, account=request.account)

    def _set_trading_phase(self, session: Session, request: SetTradingPhaseRequest, ts: int) -> SetTradingPhase:
        return SetTradingPhase(ts=ts, instrument=request.instrument, phase=request.phase, from_phase=request.from_phase)

    def _open_auction(self, session: Session, request: OpenAuctionRequest, ts: int) -> OpenPrimaryAuction:
        """An auctioneer's auction: the window from now, the seed drawn here (the engine draws nothing)."""
        if not 1 <= request.window_seconds <= self.config.max_auction_window:
            raise InvalidCommand(RejectCode.INVALID_FIELD, "window_seconds")
        discount = request.reserve_discount_bps
        return OpenPrimaryAuction(ts=ts, auction_id=request.auction_id, auctioneer=session.account,
                                  instrument=request.instrument, volume=request.volume,
                                  closes_at=ts + request.window_seconds * 1_000_000_000, seed=secrets.token_hex(32),
                                  reserve_discount_bps=self.config.auction_reserve_discount_bps if discount is None
                                  else discount)

    def _auction_instrument(self, auction_id: str) -> Instrument | None:
        auction = self.engine.primary.auctions.get(auction_id)
        return None if auction is None else self.engine.instruments[auction.instrument]

    def _submit_bid(self, session: Session, request: SubmitBidRequest, ts: int) -> SubmitBid:
        instrument = self._auction_instrument(request.auction_id)
        return SubmitBid(ts=ts, account=session.account, auction_id=request.auction_id, bid_id=request.bid_id,
                         price=price_in_cents(request.price, instrument, "price"), volume=request.volume)

    def _modify_bid(self, session: Session, request: ModifyBidRequest, ts: int) -> ModifyBid:
        instrument = self._auction_instrument(request.auction_id)
        return ModifyBid(ts=ts, account=session.account, auction_id=request.auction_id, bid_id=request.bid_id,
                         price=price_in_cents(request.price, instrument, "price"), volume=request.volume)

    def _withdraw_bid(self, session: Session, request: WithdrawBidRequest, ts: int) -> WithdrawBid:
        return WithdrawBid(ts=ts, account=session.account, auction_id=request.auction_id, bid_id=request.bid_id)

    def _disconnected(self, session: None, request: Disconnected, ts: int) -> MassCancel:
        return MassCancel(ts=ts, account=request.account, on_disconnect=True)

    def _refuse(self, session: Session, request: object, code: RejectCode) -> None:
        """A request that could not become a command (InvalidCommand): answered like an engine reject."""
        ts = time.time_ns()
        if type(request) is NewOrderRequest:
            instrument = request.instrument if request.instrument in self.engine.instruments else None
            message = rejected_order_report(request.client_order_id, instrument, code, ts)
        else:
            message = request_rejected(request.__struct_config__.tag, code, ts, getattr(request, "order_id", None),
                                       getattr(request, "client_order_id", None))
        self._answer(session, message, request)

    async def run_operator_commands(self, commands: list) -> list:
        """Run engine commands of the exchange's own operations in sequence with the sessions' requests.

        For what has no wire message: opening accounts, the registry's
        compliance commands, the end of a trading day. Their events are
        settled and reported like any other; returns them.
        """
        if self.stopping or self.failure is not None:
            raise ExchangeStopped("the exchange is stopping: no more commands are taken")
        done = asyncio.get_running_loop().create_future()
        self._operator_waits.add(done)
        try:
            self._queue(None, OperatorCommands(list(commands), done))
            return await done
        finally:
            self._operator_waits.discard(done)

    def _operator_commands(self, session: None, request: OperatorCommands) -> None:
        commands = [replace(command, ts=self._now()) for command in request.commands]
        self.journal.append(operator_record(commands))
        self._commands_since_snapshot += len(commands)
        self._finished.append((request.done, self.core.operator(commands)))

    # -- requests answered by the gateway ------------------------------------------------------

    def _subscription_keys(self, session: Session, request: SubscribeRequest | UnsubscribeRequest
                           ) -> list[tuple[str, str]] | None:
        """(instrument, channel) pairs a (un)subscription names; None after answering a bad one."""
        instruments = list(self.feed.instruments) if request.instruments is None else request.instruments
        channels = list(CHANNELS) if request.channels is None else request.channels
        unknown = [symbol for symbol in instruments if symbol not in self.feed.instruments]
        if unknown:
            self._refuse(session, request, RejectCode.UNKNOWN_INSTRUMENT)
            return None
        if any(channel not in CHANNELS for channel in channels):
            self._answer(session, _reject(RejectCode.INVALID_FIELD, f"{RejectCode.INVALID_FIELD.text}: channels "
                                          f"are {', '.join(CHANNELS)}", request.__struct_config__.tag, "channels",
                                          None), request)
            return None
        return [(symbol, channel) for symbol in dict.fromkeys(instruments) for channel in dict.fromkeys(channels)]

    def _subscribe(self, session: Session, request: SubscribeRequest) -> None:
        """Answer now; the subscription starts when the batch is released (``_apply_subscription``): the current
        state of each channel, then every message of the batches released after it."""
        self._change_subscription(session, request, True)

    def _unsubscribe(self, session: Session, request: UnsubscribeRequest) -> None:
        self._change_subscription(session, request, False)

    def _change_subscription(self, session: Session, request: SubscribeRequest | UnsubscribeRequest,
                             subscribe: bool) -> None:
        keys = self._subscription_keys(session, request)
        if keys is None:
            return
        self._answer(session, {"type": "subscribed" if subscribe else "unsubscribed",
                               "instruments": sorted({symbol for symbol, _ in keys}),
                               "channels": sorted({channel for _, channel in keys}), "ts": time.time_ns()}, request)
        self.core.outbox.append((session, SubscriptionChange(keys, subscribe), None))

    def _apply_subscription(self, session: Session, change: SubscriptionChange) -> None:
        """At release, in the outbox's order. The state sent is the feed's now, which may already include batches
        still waiting for the disk; their market data, released after, carries md_seq at or below the
        state's and is passed over by the subscriber (docs/MARKET_DATA.md)."""
        if not change.subscribe:
            for key in change.keys:
                session.subscriptions.discard(key)
                self.subscribers.get(key, set()).discard(session)
            return
        if session.closed:  # its connection's clean-up has run: nothing to add it to
            return
        for key in change.keys:
            session.subscriptions.add(key)
            self.subscribers.setdefault(key, set()).add(session)
        for symbol in dict.fromkeys(symbol for symbol, _ in change.keys):
            for channel, message in self.feed.state(symbol):
                if (symbol, channel) in session.subscriptions:
                    session.write(message)  # market data: not numbered for the account

    def _resend(self, session: Session, request: ResendRequest) -> None:
        """Send again the account's numbered messages from ``from_seq`` on, as they were first sent.

        Between a ``resend_begin`` and a ``resend_end`` (neither numbered)
        come the kept frames, byte for byte, in seq order; ``unavailable``
        lists the ranges not kept (older than the resend window, or answers
        to queries from before a restart) for the client to fill with
        ``order_status`` and ``balances``.
        """
        account = session.account
        last = self.core.next_seq(account) - 1
        if not 1 <= request.from_seq <= last + 1:
            self._answer(session, _reject(RejectCode.INVALID_FIELD, f"{RejectCode.INVALID_FIELD.text}: from_seq "
                                          f"from 1 to {last + 1} (next_seq)", "resend", "from_seq", None), request)
            return
        frames, last = self.core.resend(account, request.from_seq)
        unavailable: list[list[int]] = []
        expected = request.from_seq
        for seq, _ in frames:
            if seq > expected:
                unavailable.append([expected, seq - 1])
            expected = seq + 1
        if expected <= last:
            unavailable.append([expected, last])
        outbox = self.core.outbox
        begin = {"type": "resend_begin", "from_seq": request.from_seq, "to_seq": last, "messages": len(frames),
                 "unavailable": unavailable, "ts": time.time_ns()}
        end = {"type": "resend_end", "from_seq": request.from_seq, "to_seq": last, "ts": time.time_ns()}
        if request.request_id is not None:
            begin["request_id"] = end["request_id"] = request.request_id
        outbox.append((session, begin, None))
        outbox += [(session, None, frame) for _, frame in frames]
        outbox.append((session, end, None))

    def _snapshot_request(self, session: Session, request: SnapshotRequest) -> None:
        """An operator asks for a snapshot now: taken after this batch (see _engine_loop), then answered."""
        self._snapshot_requests.append((session, request))

    def _order_status(self, session: Session, request: OrderStatusRequest) -> None:
        try:
            view = self._own_order(session, request)
        except InvalidCommand as refused:
            self._refuse(session, request, refused.code)
            return
        self._answer(session, view.report("status", time.time_ns()), request)

    def _balances(self, session: Session, request: BalancesRequest) -> None:
        account = self.engine.accounts.get(session.account)
        balances = []
        if account is not None:
            balances.append({"asset": "EUR", "holding": account.cash, "held": account.reserved_cash,
                             "available": account.cash - account.reserved_cash})
            for symbol in account.units:
                units, held = account.units[symbol], account.reserved_units[symbol]
                balances.append({"asset": symbol, "holding": units, "held": held, "available": units - held})
        self._answer(session, {"type": "balances", "account": session.account, "balances": balances,
                               "blocked": account is not None and account.blocked, "ts": time.time_ns()}, request)

    def _book(self, session: Session, request: BookRequest) -> None:
        book = self.engine.books.get(request.instrument)
        if book is None:
            self._refuse(session, request, RejectCode.UNKNOWN_INSTRUMENT)
            return
        if not 1 <= request.levels <= MAX_BOOK_LEVELS:
            self._answer(session, _reject(RejectCode.INVALID_FIELD, f"{RejectCode.INVALID_FIELD.text}: levels "
                                          f"from 1 to {MAX_BOOK_LEVELS}", "book", "levels", None), request)
            return
        tick = book.instrument.tick_size
        bids, asks = ([[price // tick, lots, orders] for price, lots, orders in book.depth(side, request.levels)]
                      for side in (Side.BUY, Side.SELL))
        self._answer(session, {"type": "book", "instrument": request.instrument, "bids": bids, "asks": asks,
                               "last_price": None if book.last_price is None else book.last_price // tick,
                               "ts": time.time_ns()}, request)

    def _open_orders(self, session: Session, request: OpenOrdersRequest) -> None:
        """The account's open orders (resting, or stops waiting for their trigger), oldest first, a page at a
        time: ``more`` says whether a request with ``after`` the last order id would find more."""
        if request.instrument is not None and request.instrument not in self.engine.instruments:
            self._refuse(session, request, RejectCode.UNKNOWN_INSTRUMENT)
            return
        orders = self.tracker.open_orders.get(session.account, {})
        ts = time.time_ns()
        # The account's open orders are kept in order_id order (the order of acceptance): a page starts after a
        # binary search and stops at its size, whatever the account holds.
        ids = list(orders)
        start = 0 if request.after is None else bisect.bisect_right(ids, request.after)
        instrument = request.instrument
        page = itertools.islice((orders[order_id] for order_id in itertools.islice(ids, start, None)
                                 if instrument is None or orders[order_id].instrument == instrument), PAGE_SIZE + 1)
        entries = []
        for view in page:
            entry = view.report("status", ts)
            del entry["type"], entry["exec_type"], entry["ts"]
            entries.append(entry)
        more = len(entries) > PAGE_SIZE
        self._answer(session, {"type": "open_orders", "orders": entries[:PAGE_SIZE], "more": more, "ts": ts}, request)

    def _trades(self, session: Session, request: TradesRequest) -> None:
        """The account's fills since the last end of day, oldest first, a page at a time; ``complete`` is false
        when older fills of the day are no longer kept (the ledger's statement has them all)."""
        if request.instrument is not None and request.instrument not in self.engine.instruments:
            self._refuse(session, request, RejectCode.UNKNOWN_INSTRUMENT)
            return
        fills = self.tracker.fills.get(session.account, ())
        # Kept in trade_id order: a page starts after a binary search. A self-trade gives the account two fills
        # of one trade_id: they never go to different pages (``after`` names a trade, not a fill).
        start = 0 if request.after is None else bisect.bisect_right(fills, request.after, key=_trade_id)
        instrument = request.instrument
        page: list[tuple] = []
        more = False
        for fill in itertools.islice(fills, start, None):
            if instrument is not None and fill[3] != instrument:
                continue
            if len(page) >= PAGE_SIZE and fill[0] != page[-1][0]:
                more = True  # the next page's first fill
                break
            page.append(fill)
        trades = [{"trade_id": trade_id, "order_id": order_id, "client_order_id": client_order_id,
                   "instrument": instrument, "side": side, "price": price, "quantity": quantity,
                   "liquidity": liquidity, "fee": fee, "ts": ts}
                  for trade_id, order_id, client_order_id, instrument, side, price, quantity, liquidity, fee, ts
                  in page]
        self._answer(session, {"type": "trades", "trades": trades, "more": more,
                               "complete": self.tracker.fills_complete(session.account), "ts": time.time_ns()},
                     request)

    def _ping(self, session: Session, request: PingRequest) -> None:
        """``pong``, unnumbered, after every answer to what the session sent before the ping."""
        message = {"type": "pong", "ts": time.time_ns()}
        if request.request_id is not None:
            message["request_id"] = request.request_id
        self.core.outbox.append((session, message, None))

    def _auction_status(self, session: Session, request: AuctionStatusRequest) -> None:
        """A primary auction as this account may see it: its terms and (once decided) its results for all; the
        account's own bids, and for the auctioneer how many bids are in (never whose or at what price)."""
        auction = self.engine.primary.auctions.get(request.auction_id)
        if auction is None:
            self._refuse(session, request, RejectCode.UNKNOWN_AUCTION)
            return
        tick = self.engine.instruments[auction.instrument].tick_size
        own = [{"bid_id": bid.bid_id, "price": bid.price // tick, "volume": bid.volume, "held": bid.held}
               for bid in sorted(auction.bids.values(), key=lambda bid: bid.number) if bid.account == session.account]
        message = {"type": "auction_status", "auction_id": auction.auction_id, "instrument": auction.instrument,
                   "auctioneer": auction.auctioneer, "volume": auction.volume, "closes_at": auction.closes_at,
                   "seed_hash": seed_hash(auction.seed),
                   "status": "open" if auction.outcome is None else "cleared" if auction.outcome == "cleared" else
                   "cancelled",
                   "own_bids": own if auction.outcome is None else [],
                   "bids": len(auction.bids) if session.account == auction.auctioneer else None,
                   "result": self.feed.auction_results.get(auction.auction_id), "ts": time.time_ns()}
        self._answer(session, message, request)

    def _logout(self, session: Session, request: Logout) -> None:
        log_event(log, "logout", session=session.number, account=session.account)
        self.core.outbox.append((session, EndSession(None, None, request.request_id), None))

    def _refusal(self, session: Session, refusal: Refusal) -> None:
        if refusal.fatal:  # a frame that breaks the stream: logout with its code, after the answers before it
            self.core.outbox.append((session, EndSession(refusal.code, refusal.text), None))
            return
        self._answer(session, _reject(refusal.code, refusal.text, refusal.message_type, refusal.field,
                                      refusal.client_order_id), refusal)

    def _not_processed(self, session: Session, run: NotProcessed) -> None:
        self._refuse_unprocessed(session, run.code, run.requests)
        session.refused_waiting -= len(run.requests)
        self.refused_waiting -= len(run.requests)
        if not session.refused_waiting:
            session.refusals_answered.set()

    def _refuse_unprocessed(self, session: Session, code: RejectCode, requests: list) -> None:
        """Answer requests that were not processed (708, 719) with a ``reject`` each: one journal record for the
        numbers they use (an overloaded exchange refuses thousands a second)."""
        ts = time.time_ns()  # one moment for the run: refused together
        if session.market_data_only:
            for request in requests:
                self._answer(session, _unprocessed_reject(code, request, ts), request)
            return
        self.journal.append(skip_record(session.account, len(requests)))
        deliver, account = self.core.deliver, session.account
        for request in requests:
            message = _unprocessed_reject(code, request, ts)
            if request.request_id is not None:
                message["request_id"] = request.request_id
            deliver(account, message)


def _trade_id(fill: tuple) -> int:
    return fill[0]


def _address_key(host: str) -> str:
    """The address a peer's logons and pending connections are counted under: an IPv4 address itself, an IPv6
    one by its /64 (one host is usually given a whole /64 to pick addresses from)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _requests_in(item: tuple) -> int:
    """Requests a queue item stands for: a run of refusals, each of its requests; anything else, one."""
    request = item[1]
    return len(request.requests) if request.__class__ is NotProcessed else 1


def _abort(transport: asyncio.BaseTransport) -> None:
    """Cut a connection at once; a transport that is already gone is left as it is."""
    try:
        transport.abort()
    except Exception:  # closing twice, or a socket the system has already dropped: nothing more to do
        pass


def _write_gathered(gathered: dict[Session, list[bytes]]) -> None:
    """Each session's gathered frames in one write, in the order they were gathered; empties ``gathered``."""
    for session, frames in gathered.items():
        session.write_frame(frames[0] if len(frames) == 1 else b"".join(frames))
    gathered.clear()


def _unprocessed_reject(code: RejectCode, request: object, ts: int) -> dict:
    """The ``reject`` of a request the exchange did not process (708 throttled, 719 over capacity)."""
    kind = request.__class__
    return {"type": "reject", "ref_type": request.message_type if kind is Refusal else kind.__struct_config__.tag,
            "field": None, "client_order_id": getattr(request, "client_order_id", None), "code": int(code),
            "text": code.text, "ts": ts}


def _reject(code: RejectCode, text: str, message_type: str | None, field: str | None,
            client_order_id: object) -> dict:
    """A session-level reject: the message was not processed at all."""
    return {"type": "reject", "ref_type": message_type, "field": field, "client_order_id": client_order_id,
            "code": int(code), "text": text, "ts": time.time_ns()}


def _instrument_entry(instrument: Instrument) -> dict:
    """An instrument's terms for logon_accepted: prices in ticks, fees in cents per lot."""
    tick = instrument.tick_size
    return {"symbol": instrument.symbol, "name": instrument.name, "lot_units": instrument.lot_units,
            "tick_size": cents_to_eur(tick), "min_lots": instrument.min_lots, "max_lots": instrument.max_lots,
            "min_price": instrument.min_price // tick, "max_price": instrument.max_price // tick,
            "reference_price": instrument.reference_price // tick,
            "market_collar": None if instrument.market_collar is None else instrument.market_collar // tick,
            "price_band_bps": instrument.price_band_bps, "maker_fee": instrument.maker_fee,
            "taker_fee": instrument.taker_fee, "volatility_band_bps": instrument.volatility_band_bps,
            "volatility_call_seconds": instrument.volatility_call_seconds}


# -- the exchange process -------------------------------------------------------------------------

@asynccontextmanager
async def running_exchange(config: ServerConfig, instruments: Mapping[str, Instrument],
                           accounts: Mapping[str, AccountConfig],
                           compliance: ComplianceConfig | None = None) -> AsyncIterator[TradingGateway]:
    """The whole exchange, listening: state recovered from the journal, settlement, the gateway.

    The data directory (``data_dir``; empty: a temporary one) is locked for
    the process's life: one exchange per journal. Start-up replays the
    journal (:func:`gateway.recovery.recover`) and settles what the ledger
    had not; configured accounts the state does not know yet are opened and
    funded, and changed account settings applied, through the engine's own
    commands, journaled like any other (``start_up_commands``). Stops
    gracefully on exit.

    The address is bound first of all, before the data directory, journal,
    ledger or settlement exist: a port in use, or an address the machine
    does not have, is a :class:`ConfigError` that leaves nothing behind. It
    is bound, not yet listening, until the gateway starts serving it.
    """
    gateway: TradingGateway | None = None
    listener = await bind_listener(config.host, config.port,
                                   lambda reader, writer: gateway._serve_connection(reader, writer))
    with contextlib.ExitStack() as resources:
        resources.callback(listener.close)
        data_dir = Path(config.data_dir or resources.enter_context(tempfile.TemporaryDirectory(prefix="carbonx-")))
        ledger_path = Path(config.ledger) if config.ledger else data_dir / LEDGER_NAME
        # What this start creates is removed again if it fails before serving (a full disk, a damaged journal):
        # a refused start leaves the machine as it found it.
        leftovers = [path for path in (data_dir, ledger_path) if not path.exists()]
        started = resources.enter_context(_removed_unless_started(leftovers))
        resources.enter_context(_data_dir_lock(data_dir))
        try:
            store = SqliteLedgerStore(ledger_path)
        except (sqlite3.Error, OSError) as error:  # a full or read-only disk, a file that is not a ledger
            raise ConfigError("settlement.ledger", f"cannot open the ledger {ledger_path}: {error} (is the disk "
                              "full or read-only?)") from None
        resources.callback(store.close)
        genesis = Genesis(dict(instruments), compliance, config.md_levels, config.settlement_window,
                          config.resend_window)
        settler = Settlement(store, instruments, fee_account=DEFAULT_FEE_ACCOUNT)
        try:
            recovered = recover(data_dir, genesis, ledger_cursor=store.last_applied_seq(), settle=settler.apply)
        except JournalError as error:
            raise ConfigError("journal.data_dir", str(error)) from error
        log_event(log, "recovered", **recovered.report.fields(), state_seq=recovered.core.engine.counters.seq)
        resources.callback(recovered.journal.close)
        settlement = SettlementService(settler, max_pending_batches=config.settlement_queue)
        settlement.start()
        try:
            gateway = TradingGateway(recovered.core, recovered.journal, accounts, config, settlement, data_dir,
                                     commands_since_snapshot=recovered.commands_since_snapshot)
            commands, unapplied = start_up_commands(accounts, recovered.core.engine, time.time_ns())
            for change in unapplied:
                log_event(log, "account_setting_not_applied", logging.WARNING, change=change,
                          hint="an open account keeps its order value limit and its credit share")
            await gateway.start(commands, listener)
            started.set()
            log_event(log, "ledger", path=str(store.path))
            try:
                yield gateway
            finally:
                await gateway.stop()
        finally:
            await settlement.close(drain=True)


async def bind_listener(host: str, port: int, connected: Callable) -> asyncio.Server:
    """The gateway's address, bound but not yet listening (``start_serving`` opens it); ``connected`` serves a
    connection. A failure to bind is a :class:`ConfigError` saying what is wrong and what to do."""
    where = f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"
    try:
        return await asyncio.start_server(connected, host, port, limit=SESSION_READ_SIZE, start_serving=False)
    except socket.gaierror as error:
        raise ConfigError("server.host", f"no such address {host!r} ({error.strerror}): give an IP address or a "
                          "name this machine resolves with --host") from None
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise ConfigError("server.port", f"{where} is already in use (another exchange, or another program, "
                              "listens there): stop it, or choose another port with --port") from None
        # From Python 3.13 asyncio takes EADDRNOTAVAIL for an address family the machine lacks, passes the
        # address over, and raises an OSError without an errno once none is left.
        if error.errno == errno.EADDRNOTAVAIL or (error.errno is None and "could not bind on any address" in str(error)):
            raise ConfigError("server.host", f"{host} is not an address of this machine: give one of its own with "
                              "--host (127.0.0.1 for this machine only, 0.0.0.0 for all of them)") from None
        if error.errno == errno.EACCES:
            raise ConfigError("server.port", f"not allowed to listen on {where} (ports below 1024 need privileges): "
                              "choose another port with --port") from None
        raise ConfigError("server.host", f"cannot listen on {where}: {error.strerror or error}") from None
    except OverflowError as error:  # a port outside 0-65535
        raise ConfigError("server.port", f"cannot listen on {where}: {error}: choose a port from 1 to 65535") from None


@contextlib.contextmanager
def _removed_unless_started(paths: list[Path]):
    """Yield an event; if the block fails before it is set, remove ``paths`` (files or directories)."""
    started = asyncio.Event()
    try:
        yield started
    except BaseException:
        if not started.is_set():
            for path in paths:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _data_dir_lock(data_dir: Path):
    """Hold an exclusive lock on the data directory: a second exchange on the same journal is refused."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = open(data_dir / "lock", "w")
    except OSError as error:
        raise ConfigError("journal.data_dir", f"cannot use {data_dir} as the data directory "
                          f"({error.strerror or error}): choose another with --data-dir") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError("journal.data_dir", f"{data_dir} is in use by another running exchange") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def serve(config: ServerConfig, instruments: Mapping[str, Instrument], accounts: Mapping[str, AccountConfig],
                compliance: ComplianceConfig | None = None,
                ready: Callable[[TradingGateway], None] | None = None) -> int:
    """Run the exchange until SIGINT or SIGTERM (or an engine failure); the process's exit status.

    This is the process's own loop, so it tunes the process's garbage
    collector: what exists at start-up (configuration, code) is frozen out
    of collection, and the youngest generation is collected after 50,000
    allocations rather than 700. The engine's objects form few reference
    cycles, and each collection of the young generation walks every order
    and event made since the last: the default costs the engine about 40%
    of its throughput (benchmarks/RESULTS.md) and shows as latency spikes.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    async with running_exchange(config, instruments, accounts, compliance) as gateway:
        if ready is not None:
            ready(gateway)
        await run_until_stopped(gateway)
        return 1 if gateway.failure is not None else 0


async def run_until_stopped(gateway: TradingGateway) -> None:
    """Wait until the gateway has stopped: on SIGINT or SIGTERM it stops gracefully.

    The handlers stay for the rest of the event loop's life (its closing
    removes them): a second signal while the exchange shuts down (and
    settles, and closes the ledger) must not kill it half way.
    """
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, gateway.request_stop)
    await gateway.stopped.wait()
