"""The exchange process: its parts built, wired, started and stopped.

How this works
--------------
:class:`TradingGateway` is where the running exchange is put together, the
one place that knows every part (docs/ARCHITECTURE.md draws them):

- the **session host** (:mod:`gateway.sessions.host`) accepts connections,
  checks logons and reads each session into the **intake**
  (:mod:`gateway.pipeline.intake`), the one bounded queue of requests;
- the **engine loop** (:mod:`gateway.pipeline.engine_loop`) is the one task
  that owns the state (the :class:`~gateway.pipeline.sequencer.Sequencer`:
  the engine, the order tracker, the market-data feed, numbering): it turns
  requests into engine commands (:mod:`gateway.pipeline.commands`) or
  answers them (:mod:`gateway.pipeline.queries`,
  :mod:`gateway.pipeline.session_requests`), journals each batch and
  commits it;
- once the journal has a batch, **release** (:mod:`gateway.pipeline.release`)
  hands it to settlement, the sessions, market data (socket subscribers and
  MQTT) and the timers (:mod:`gateway.pipeline.timers`);
- **snapshots** (:mod:`gateway.persistence.snapshots`) are taken between
  batches and at stop; between batches too the journal's segment is closed
  at each day's end and past its size, and segments snapshots cover are
  archived (:mod:`gateway.persistence.rotation`).

:func:`running_exchange` recovers the state from the data directory, starts
settlement and the gateway, and stops them; :func:`serve` runs it as the
process (``carbonx serve``) until SIGINT or SIGTERM.

The stop (:meth:`TradingGateway.stop`) is a sequence of named steps: stop
taking work, let the engine loop finish everything queued, log every
session out (711), stop the tasks and timers, sync the journal, snapshot,
stop publishing, close the connections. A step that fails is logged and
the next runs, so that the journal is closed, the data directory unlocked
and ``stopped`` set whatever a peer does meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import fcntl
import gc
import logging
import os
import shutil
import signal
import sqlite3
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from exchange import ComplianceConfig, ConfigError, ListFutures, RejectCode
from exchange.clearing import FuturesConfig
from exchange.engine import DEFAULT_FEE_ACCOUNT
from exchange.instruments import Instrument
from gateway.config import AccountConfig, ServerConfig
from gateway.lifecycle import ExchangeStopped, Lifecycle
from gateway.listening import Address, bind_failure
from gateway.logs import log_event
from gateway.marketdata.mqtt import MqttPublisher, broker_tls_context, parse_mqtt_url
from gateway.marketdata.subscribers import Subscribers
from gateway.monitoring.endpoint import metrics_endpoint
from gateway.opening import start_up_commands
from gateway.persistence.journal import Genesis, JournalError, JournalWriter
from gateway.persistence.recovery import LEDGER_NAME, recover
from gateway.persistence.rotation import JournalRotation
from gateway.persistence.snapshots import Snapshots
from gateway.pipeline.commands import CommandBuilder
from gateway.pipeline.engine_loop import EngineLoop
from gateway.pipeline.intake import Disconnected, Intake, OperatorCommands
from gateway.pipeline.queries import Queries
from gateway.pipeline.release import Release, SessionDelivery
from gateway.pipeline.replies import Replies
from gateway.pipeline.sequencer import Sequencer
from gateway.pipeline.session_requests import SessionRequests
from gateway.pipeline.timers import Timers
from gateway.schedule.calendar import TradingCalendar, date_number
from gateway.schedule.clock import Clock, clock_from_settings
from gateway.schedule.day_files import DayFiles
from gateway.schedule.runner import CalendarRunner, auction_terms
from gateway.sessions.host import SESSION_READ_SIZE, SessionHost
from gateway.sessions.session import CLOSE_GRACE, AccountLink, abort
from gateway.settlement.ledger import SqliteLedgerStore
from gateway.settlement.service import Settlement, SettlementService
from gateway.tls import server_context
from gateway.wire.protocol import SnapshotRequest

log = logging.getLogger("carbonx.gateway")

GC_YOUNG_THRESHOLD = 50_000  # allocations between collections of the youngest generation (serve only)

__all__ = ["ExchangeStopped", "TradingGateway", "bind_listener", "run_until_stopped", "running_exchange", "serve"]


class TradingGateway:
    """The running exchange's parts, wired; its start and its stop. See the module notes."""

    def __init__(
        self,
        sequencer: Sequencer,
        journal: JournalWriter,
        accounts: Mapping[str, AccountConfig],
        config: ServerConfig,
        settlement: SettlementService,
        data_dir: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], int] = time.time_ns,
        commands_since_snapshot: int = 0,
        snapshot_seq: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: the gateway's TLS context (:func:`gateway.tls.server_context`), None for plain TCP.
        ``snapshot_seq``: the record seq of the snapshot recovery started from (0: none): the journal's
        segments it covers are archived once the gateway has started."""
        self.sequencer = sequencer
        self.engine = sequencer.engine
        self.tracker = sequencer.tracker
        self.feed = sequencer.feed
        self.journal = journal
        self.data_dir = data_dir
        self.config = config
        self.settlement = settlement
        self.clock = clock
        self.lifecycle = Lifecycle()
        self.lifecycle.on_stop_request(self.request_stop)
        self.links = {account_id: AccountLink(account) for account_id, account in accounts.items()}
        self.publisher = (
            MqttPublisher(
                parse_mqtt_url(config.mqtt_url),
                self.feed,
                tls=broker_tls_context(config.mqtt_url, config.mqtt_ca_file),
                max_reliable=config.mqtt_queue,
                snapshot_interval=config.snapshot_interval,
            )
            if config.mqtt_url
            else None
        )
        self.subscribers = Subscribers(self.feed)
        self.intake = Intake(config, clock, self.lifecycle)
        self.host = SessionHost(self.links, self.intake, self.subscribers, config, self.lifecycle, clock, tls)
        self.replies = Replies(sequencer, journal)
        self.timers = Timers(
            self.engine, self.lifecycle, self.run_operator_commands, wall_clock, getattr(wall_clock, "speed", 1.0)
        )
        release = Release(
            settlement, SessionDelivery(self.links, self.subscribers), self.subscribers, self.publisher, self.timers
        )
        self.loop = EngineLoop(
            sequencer,
            journal,
            self.intake,
            self.replies,
            settlement,
            config,
            self.lifecycle,
            release,
            clock,
            commands_since_snapshot,
            wall_clock,
        )
        self.snapshots = Snapshots(self.loop, sequencer, journal, self.replies, config, data_dir, self.lifecycle)
        self.rotation = JournalRotation(self.loop, journal, self.snapshots, config, data_dir)
        self.loop.between_batches = self.rotation.between_batches
        self._snapshot_seq = snapshot_seq
        session_requests = SessionRequests(sequencer, journal, self.replies, self.intake, config)
        queries = Queries(self.engine, self.tracker, self.feed, self.replies)
        self.commands = CommandBuilder(self.engine, self.tracker, config)
        self.loop.handlers.commands = self.commands.makers
        self.loop.handlers.answers = {
            **queries.answers,
            **session_requests.answers,
            SnapshotRequest: self.snapshots.request,
        }
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task] = []
        self._stop_task: asyncio.Task | None = None
        self._operator_waits: set[asyncio.Future] = set()
        self.calendar: CalendarRunner | None = None  # the trading calendar's runner, when it runs the days

    def run_calendar(self, calendar: TradingCalendar, clock: Clock, data_dir: Path) -> None:
        """Run the trading days by ``calendar``: its points caught up, then each when due (the gateway has started)."""
        self.calendar = CalendarRunner(
            calendar,
            self.engine,
            clock,
            self.lifecycle,
            self.run_operator_commands,
            auction_terms(self.config),
            DayFiles(self.engine, self.feed, data_dir / "days"),
        )
        self.commands.calendar = self.calendar  # the operator's extend_trading_day and skip_schedule_point
        self.calendar.start()

    @property
    def failure(self) -> BaseException | None:
        """The fault that stopped the engine loop, if one did."""
        return self.lifecycle.failure

    @property
    def stopped(self) -> asyncio.Event:
        """Set once the stop has finished (the data directory is unlocked)."""
        return self.lifecycle.stopped

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
        self._server = listener or await bind_listener(self.config.host, self.config.port, self.host.serve_connection)
        self.loop.start_syncing()
        if opening:
            self.intake.put(None, OperatorCommands(opening, asyncio.get_running_loop().create_future()))
        for account in sorted(self.sequencer.cod_sessions):
            self.intake.put(None, Disconnected(account))
        first = self.intake.take_all()
        if first:
            self.loop.run_batch(first)
        await self._server.start_serving()
        self._tasks = [
            asyncio.create_task(self.loop.run(), name="engine"),
            asyncio.create_task(self.host.heartbeats(), name="session-heartbeats"),
        ]
        if self.publisher is not None:
            self.publisher.start()
        self.timers.resume()
        if self._snapshot_seq:
            self.rotation.archive_covered(self._snapshot_seq)
        log_event(
            log,
            "listening",
            host=self.config.host,
            port=self.port,
            tls=self.config.tls_mode,
            instruments=list(self.engine.instruments),
            accounts=len(self.links),
        )

    @property
    def port(self) -> int:
        """The port listened on (useful with port 0)."""
        assert self._server is not None, "not started"
        return self._server.sockets[0].getsockname()[1]

    async def run_operator_commands(self, commands: list) -> list:
        """Run engine commands of the exchange's own operations in sequence with the sessions' requests.

        For what has no wire message: opening accounts, the registry's
        compliance commands, the end of a trading day. Their events are
        settled and reported like any other; returns them.
        """
        if not self.lifecycle.running:
            raise ExchangeStopped("the exchange is stopping: no more commands are taken")
        done = asyncio.get_running_loop().create_future()
        self._operator_waits.add(done)
        try:
            self.intake.put(None, OperatorCommands(list(commands), done))
            return await done
        finally:
            self._operator_waits.discard(done)

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
        if self.lifecycle.stopping:
            await self.lifecycle.stopped.wait()
            return
        self.lifecycle.stopping = True
        log_event(log, "stopping", sessions=len(self.host.sessions), queued=self.intake.queued)
        try:
            for step in (
                self._stop_taking,
                self._end_sessions,
                self._stop_tasks,
                self._sync_journal,
                self._snapshot_at_stop,
                self._stop_publishing,
                self._close_connections,
            ):
                try:
                    await step()
                except Exception as error:
                    log.error(
                        "a step of the stop failed; the stop goes on",
                        exc_info=error,
                        extra={"carbonx_fields": {"event": "stop_step_failed", "step": step.__name__}},
                    )
        finally:
            self.host.shutdown()
            log_event(log, "stopped", last_event_seq=self.engine.last_seq, state_hash=self.engine.state_hash())
            self.lifecycle.stopped.set()

    async def _stop_taking(self) -> None:
        """No new connections, nothing more read; the engine finishes the batch in hand and everything queued."""
        if self._server is not None:
            self._server.close()
        self.host.pause_all()
        await self.loop.drain(self._tasks[0] if self._tasks else None)
        await asyncio.sleep(0)

    async def _end_sessions(self) -> None:
        self.host.end_all(RejectCode.SHUTTING_DOWN)

    async def _stop_tasks(self) -> None:
        """The engine, heartbeat and timed tasks end; a snapshot being written finishes (its answers synced)."""
        if self.calendar is not None:
            await self.calendar.stop()
        await self.timers.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.snapshots.finish_writing()
        await self.rotation.finish()

    async def _sync_journal(self) -> None:
        await self.loop.sync_at_stop()

    async def _snapshot_at_stop(self) -> None:
        if self.lifecycle.failure is None and self.config.data_dir:  # a temporary directory goes at exit anyway
            try:
                await self.snapshots.write()  # the next start replays nothing
            except Exception as error:  # the journal has everything: a failed snapshot costs start-up time only
                log.error(
                    "snapshot at stop failed", exc_info=error, extra={"carbonx_fields": {"event": "snapshot_failed"}}
                )

    async def _stop_publishing(self) -> None:
        if self.publisher is not None:
            await self.publisher.stop()
        for waiting in self._operator_waits:  # queued behind a failure, or never run: say so
            if not waiting.done():
                waiting.set_exception(ExchangeStopped("the exchange stopped before running the commands"))

    async def _close_connections(self) -> None:
        tasks = self.host.connection_tasks
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for task in tasks:
            task.cancel()
        for session in list(self.host.sessions.values()):
            abort(session.transport)  # whatever lingers (a logout the peer never read) is cut now
        if self._server is not None:
            # From Python 3.12 this waits for every connection to be closed: bounded, whatever a peer does.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_GRACE)


# -- the exchange process -------------------------------------------------------------------------


@asynccontextmanager
async def running_exchange(
    config: ServerConfig,
    instruments: Mapping[str, Instrument],
    accounts: Mapping[str, AccountConfig],
    compliance: ComplianceConfig | None = None,
    calendar: TradingCalendar | None = None,
    clock: Clock | None = None,
    futures: FuturesConfig | None = None,
) -> AsyncIterator[TradingGateway]:
    """The whole exchange, listening: state recovered from the journal, settlement, the gateway.

    With a ``calendar`` (required when ``config.schedule`` is "calendar") the
    exchange runs its own trading days (:mod:`gateway.schedule.runner`), by
    the host's clock or a simulated one (``clock_start``, ``clock_speed``); ``clock`` replaces both (a
    clock a test moves itself). With ``futures`` the engine lists and clears them (docs/FUTURES.md): the
    contracts of the day are listed at start, and by the calendar after each end of day.

    The data directory (``data_dir``; empty: a temporary one) is locked for
    the process's life: one exchange per journal. Start-up replays the
    journal (:func:`gateway.persistence.recovery.recover`) and settles what the ledger
    had not; configured accounts the state does not know yet are opened and
    funded, and changed account settings applied, through the engine's own
    commands, journaled like any other (``start_up_commands``). Stops
    gracefully on exit.

    The TLS settings are checked (their files read) and the address is
    bound first of all, before the data directory, journal, ledger or
    settlement exist: a missing certificate, a key that is not its own, a
    port in use, or an address the machine does not have, is a
    :class:`ConfigError` that leaves nothing behind. The address is bound,
    not yet listening, until the gateway starts serving it.
    So is the metrics endpoint's (``metrics_port``; :mod:`gateway.monitoring.endpoint`), which serves
    /healthz at once and says ready on /readyz once the gateway listens.
    """
    gateway: TradingGateway | None = None
    tls = server_context(config.tls_mode, config.tls_cert_file, config.tls_key_file, config.tls_ca_file)
    broker_tls_context(config.mqtt_url, config.mqtt_ca_file)

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert gateway is not None  # the listener serves only once the gateway has started
        await gateway.host.serve_connection(reader, writer)

    if config.schedule == "calendar" and calendar is None:
        raise ConfigError("calendar.schedule", "the exchange runs on its calendar, but no calendar was loaded")
    if clock is None:
        clock = clock_from_settings(config.clock_start, config.clock_speed, calendar.zone if calendar else None)
    listener = await bind_listener(config.host, config.port, connected)
    with contextlib.ExitStack() as resources:
        resources.callback(listener.close)
        endpoint = resources.enter_context(metrics_endpoint(config))  # closed last: /readyz says 503 meanwhile
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
            raise ConfigError(
                "settlement.ledger", f"cannot open the ledger {ledger_path}: {error} (is the disk full or read-only?)"
            ) from None
        resources.callback(store.close)
        genesis = Genesis(dict(instruments), compliance, config.md_levels, config.resend_window, futures)
        settler = Settlement(store, instruments, fee_account=DEFAULT_FEE_ACCOUNT)
        try:
            recovered = recover(data_dir, genesis, ledger_cursor=store.last_applied_seq(), settle=settler.apply)
        except JournalError as error:
            raise ConfigError("journal.data_dir", str(error)) from error
        log_event(log, "recovered", **recovered.report.fields(), state_seq=recovered.core.engine.last_seq)
        resources.callback(recovered.journal.close)
        settlement = SettlementService(settler, max_pending_batches=config.settlement_queue)
        settlement.start()
        try:
            gateway = TradingGateway(
                recovered.core,
                recovered.journal,
                accounts,
                config,
                settlement,
                data_dir,
                wall_clock=clock,
                commands_since_snapshot=recovered.commands_since_snapshot,
                snapshot_seq=0 if recovered.report.snapshot is None else recovered.report.snapshot.record_seq,
                tls=tls,
            )
            clock.resume_from(recovered.core.last_ts)  # time never runs backwards across a restart
            commands, unapplied = start_up_commands(accounts, recovered.core.engine, time.time_ns())
            if futures is not None:  # the contracts trading today (those listed already are left as they are)
                today = (
                    calendar.local_date(clock())
                    if calendar is not None
                    else dt.datetime.fromtimestamp(clock() / 1e9, dt.UTC).date()
                )
                commands.append(ListFutures(ts=time.time_ns(), trading_date=date_number(today)))
            for change in unapplied:
                log_event(
                    log,
                    "account_setting_not_applied",
                    logging.WARNING,
                    change=change,
                    hint="an open account keeps its order value limit and its credit share",
                )
            await gateway.start(commands, listener)
            if config.schedule == "calendar":
                assert calendar is not None
                gateway.run_calendar(calendar, clock, data_dir)
            if endpoint is not None:
                endpoint.attach(gateway)
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
    try:
        return await asyncio.start_server(connected, host, port, limit=SESSION_READ_SIZE, start_serving=False)
    except (OSError, OverflowError) as error:
        raise bind_failure(Address(host, port, "server.host", "server.port", "--host", "--port"), error) from None


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
        raise ConfigError(
            "journal.data_dir",
            f"cannot use {data_dir} as the data directory ({error.strerror or error}): choose another with --data-dir",
        ) from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError("journal.data_dir", f"{data_dir} is in use by another running exchange") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


MALLOC_ARENAS = 2  # the event loop's and one for every other thread (the sync, settlement, metrics, executor threads)
M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process, unless ``MALLOC_ARENA_MAX`` says otherwise; True if set.

    glibc gives each thread that allocates its own arena, up to eight per
    core, and an arena keeps what was freed in it for the next allocation
    there. The exchange's helper threads each allocate now and then (a day's
    files, a snapshot's wait, a journal archive's compression buffers), so
    each of them kept some megabytes: resident memory stepped up by about
    10 MB at each of the first days' ends and stayed there. With two arenas
    the steps are gone and the process is some 40 MB smaller
    (benchmarks/RESULTS.md, the soak); the threads rarely allocate at once,
    and Python's small objects come from its own allocator under the GIL,
    so they hardly ever wait for each other. Elsewhere than glibc: nothing.
    """
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (no mallopt)
        return False


async def serve(
    config: ServerConfig,
    instruments: Mapping[str, Instrument],
    accounts: Mapping[str, AccountConfig],
    compliance: ComplianceConfig | None = None,
    ready: Callable[[TradingGateway], None] | None = None,
    calendar: TradingCalendar | None = None,
    futures: FuturesConfig | None = None,
) -> int:
    """Run the exchange until SIGINT or SIGTERM (or an engine failure); the process's exit status.

    This is the process's own loop, so it tunes the process's garbage
    collector: what exists at start-up (configuration, code) is frozen out
    of collection, and the youngest generation is collected after 50,000
    allocations rather than 700. The engine's objects form few reference
    cycles, and each collection of the young generation walks every order
    and event made since the last: the default costs the engine about 40%
    of its throughput (benchmarks/RESULTS.md) and shows as latency spikes.
    It also caps the C allocator's arenas (:func:`limit_malloc_arenas`).
    """
    limit_malloc_arenas()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    async with running_exchange(config, instruments, accounts, compliance, calendar, futures=futures) as gateway:
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
