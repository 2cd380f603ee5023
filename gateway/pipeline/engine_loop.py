"""The engine loop: the one task that owns the exchange's state.

How this works
--------------
The ``engine`` task takes what the intake queued (up to ``max_batch``
requests, a run of refusals counting each of its requests) and runs it as
one batch (:meth:`EngineLoop.run_batch`), in order:

1. each request that changes state becomes an engine command
   (:class:`gateway.pipeline.commands.CommandBuilder`); consecutive commands
   are journaled as one ``execute`` record and run through the sequencer as
   one engine batch;
2. a request that changes nothing is answered in its place (queries,
   session requests, refusals), numbered for its account;
3. the batch is committed (:meth:`EngineLoop.commit`): a ``commit`` record
   is written and, with ``journal_fsync = "batch"``, the batch waits for the
   journal's sync thread to have it on disk; a batch waits behind earlier
   ones, so answers keep their order. One sync covers every batch written
   before it started (group commit) while this task matches the next ones.
4. Only then is it released (:mod:`gateway.pipeline.release`): settled, sent,
   published, its timers followed. Each release is timed from the arrival of
   the batch's oldest request (``ack_latency``, one observation a batch: one
   a request would cost the request path a loop over the batch), and each
   sync of the journal in its thread (``sync_time``); /metrics reads both.

Nothing of a batch leaves before the journal has it. A fault of the loop
itself (a journal write or sync failure, a settlement that stopped for
good, a bug) stops the exchange with nothing of the batch sent; a session's
I/O failure never reaches here (:class:`gateway.sessions.session.Session`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from msgspec.structs import replace

from exchange import EndOfDay, InvalidCommand, RejectCode
from gateway.config import ServerConfig
from gateway.lifecycle import ExchangeStopped, Lifecycle
from gateway.monitoring.histogram import ACK_BUCKETS, SYNC_BUCKETS, Histogram
from gateway.persistence.journal import JournalSyncer, JournalWriter, commit_record, execute_record, operator_record
from gateway.pipeline.intake import Intake, NotProcessed, OperatorCommands, QueueItem, requests_in
from gateway.pipeline.replies import OutboxEntry, Replies
from gateway.pipeline.sequencer import Sequencer
from gateway.settlement.service import SettlementService
from gateway.wire.messages import ExecutionReport
from gateway.wire.protocol import CancelRequest, NewOrderRequest, ReplaceRequest

log = logging.getLogger("carbonx.gateway")

MAX_UNSYNCED_BATCHES = 8  # batches written and waiting for the disk; past it the engine waits


class ReleasedBatch(NamedTuple):
    """What a batch hands on once the journal has it: its engine events, its outbox (everything it sends, in
    order), its fills (account, trade report), its market data, its operator commands' futures with their
    events, and when its oldest request arrived (the clock's reading as it was queued)."""

    events: list
    outbox: list[OutboxEntry]
    fills: list[tuple[str, ExecutionReport]]
    market_data: list
    finished: list[tuple[asyncio.Future, list]]
    arrived: float


class Unsynced(NamedTuple):
    """A batch written to the journal and waiting for the sync thread: the journal's position after it."""

    journal_position: int
    batch: ReleasedBatch


@dataclass
class Handlers:
    """What the loop does with each kind of request: make a command of it, or answer it."""

    commands: dict[type, Callable]  # request class -> (session, request, ts) -> engine command
    answers: dict[type, Callable]  # request class -> (session, request) -> None


class EngineLoop:
    """Runs batches through the sequencer and journal, commits and releases them; see the module notes."""

    def __init__(
        self,
        sequencer: Sequencer,
        journal: JournalWriter,
        intake: Intake,
        replies: Replies,
        settlement: SettlementService,
        config: ServerConfig,
        lifecycle: Lifecycle,
        release: Callable[[ReleasedBatch], None],
        clock: Callable[[], float],
        commands_since_snapshot: int = 0,
        wall_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.sequencer = sequencer
        self.journal = journal
        self.intake = intake
        self.replies = replies
        self.settlement = settlement
        self.config = config
        self.lifecycle = lifecycle
        self.release = release
        self.clock = clock  # monotonic: queueing delays
        self.wall_clock = wall_clock  # nanoseconds since the epoch: the commands' timestamps
        self.handlers = Handlers({}, {})  # filled in by the node, which builds the parts that handle requests
        self._sync_each_batch = config.journal_fsync == "batch"
        self.unsynced: deque[Unsynced] = deque()  # batches written, waiting for the disk, oldest first
        self.synced = asyncio.Event()  # set whenever the sync thread has released batches
        self.syncer: JournalSyncer | None = None
        self.in_hand = False  # the engine task holds a batch it has not finished
        self._finished: list[tuple[asyncio.Future, list]] = []  # the batch's operator commands and their events
        # Counted from the newest snapshot, not from this process's start: crash after crash, the journal to
        # replay at the next start stays within snapshot_every commands.
        self.commands_since_snapshot = commands_since_snapshot
        self.between_batches: Callable[[], Awaitable[None]] | None = None  # awaited after each batch (snapshots)
        self.day_ended = False  # a batch ran an EndOfDay: the journal's segment closes after it (its rotation)
        self.ack_latency = Histogram(ACK_BUCKETS)  # seconds from a batch's oldest request's arrival to its release
        self.sync_time = Histogram(SYNC_BUCKETS)  # seconds each fdatasync of the journal took (its thread's)

    def start_syncing(self) -> None:
        if self._sync_each_batch:
            self.syncer = JournalSyncer(
                self.journal, asyncio.get_running_loop(), self.synced_to, self.fail, self.sync_time.observe
            )

    def now(self) -> int:
        """The next command timestamp: the clock in nanoseconds, never going back."""
        return self.sequencer.now(self.wall_clock())

    async def run(self) -> None:
        """The ``engine`` task: batch after batch until the exchange stops or fails."""
        queue = self.intake.requests
        max_batch = self.config.max_batch
        lifecycle = self.lifecycle
        try:
            while lifecycle.failure is None:
                batch = [await queue.get()]
                self.in_hand = True  # the stop waits for this batch too
                # A batch holds up to max_batch requests, a run of refusals counting each of its requests: an
                # overloaded exchange's batches stay as short as its others.
                size = requests_in(batch[0])
                while size < max_batch and not queue.empty():
                    item = queue.get_nowait()
                    batch.append(item)
                    size += requests_in(item)
                # The ledger is far behind: wait for it, lose nothing (batches waiting for the disk are
                # submitted when it has them, so they need room too).
                while self.settlement.room <= len(self.unsynced) and lifecycle.failure is None:
                    self.settlement.check()  # a settlement that has stopped for good stops the exchange
                    await asyncio.sleep(0.001)
                while len(self.unsynced) >= MAX_UNSYNCED_BATCHES and lifecycle.failure is None:
                    self.synced.clear()  # the disk is far behind: wait for it
                    await self.synced.wait()
                if lifecycle.failure is not None:
                    break
                self.run_batch(batch)
                if self.between_batches is not None:
                    await self.between_batches()
                self.in_hand = False
                for _ in batch:
                    queue.task_done()
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # a bug, a journal or settlement failure: stop taking orders, say why
            self.fail(error)
            raise

    def fail(self, error: BaseException) -> None:
        """Stop for good: nothing written but not synced is sent, no more requests are taken."""
        if self.lifecycle.failure is None:
            self.lifecycle.failure = error
            log.critical("engine loop stopped", exc_info=error, extra={"carbonx_fields": {"event": "engine_failed"}})
        self.unsynced.clear()  # written, perhaps not on disk: never acknowledged
        self.synced.set()
        self.lifecycle.request_stop()

    def run_batch(self, batch: list[QueueItem]) -> None:
        """Sequence a batch, run it through the engine, journal it, then commit: settle and send, in order."""
        pending: list[tuple[str | None, object, object]] = []  # (account or None, request_id, command)
        ordering: set[str] = set()  # accounts with a new order among the pending commands
        commands, answers = self.handlers.commands, self.handlers.answers
        intake = self.intake
        too_old = self.clock() - self.config.max_queue_delay  # queued before this: refused, not run late
        for session, request, queued_at in batch:
            kind = request.__class__
            if kind is not NotProcessed:
                intake.queued -= 1  # taken off the queue: the intake's counts of what is queued, in all and per session
                if session is not None:
                    session.queued -= 1
            if session is None:  # the gateway's own: cancel-on-disconnect, operator commands
                if isinstance(request, OperatorCommands):  # (the gateway's own: rare, so isinstance is fine)
                    self._execute(pending)
                    self._operator_commands(request)
                else:
                    pending.append((None, None, commands[kind](None, request, self.now())))
                continue
            account = session.account
            assert account is not None  # only logged-on sessions' requests are queued
            if queued_at < too_old and kind in commands:
                self._execute(pending)
                intake.note_overload(1)
                self.replies.refuse_unprocessed(session, RejectCode.OVERLOADED, [request])
                continue
            if kind is NewOrderRequest:
                ordering.add(account)
            elif (kind is CancelRequest or kind is ReplaceRequest) and account in ordering:
                self._execute(pending)  # it may name an order still pending: the tracker must know it first
                ordering.clear()
            make = commands.get(kind)
            if make is not None:
                try:
                    command = make(session, request, self.now())
                except InvalidCommand as refused:
                    self._execute(pending)
                    self.replies.refuse(session, request, refused.code)
                    continue
                pending.append((account, getattr(request, "request_id", None), command))
            else:
                self._execute(pending)
                answers[kind](session, request)
        self._execute(pending)
        self.commit(batch[0][2])  # the queue is first in, first out: its first item is the oldest

    def _execute(self, pending: list) -> None:
        """Journal the pending commands and run them through the engine as one batch."""
        if not pending:
            return
        self.journal.append(execute_record(pending))
        self.commands_since_snapshot += len(pending)
        self.sequencer.execute(pending, self.replies.outbox)
        pending.clear()

    def _operator_commands(self, request: OperatorCommands) -> None:
        commands = [replace(command, ts=self.now()) for command in request.commands]
        if any(command.__class__ is EndOfDay for command in commands):
            self.day_ended = True
        self.journal.append(operator_record(commands))
        self.commands_since_snapshot += len(commands)
        self._finished.append((request.done, self.sequencer.operator(commands, self.replies.outbox)))

    def commit(self, arrived: float | None = None) -> None:
        """Write the batch to the journal, then release it: now, or (fsync per batch) once the disk has it.

        ``arrived``: when the batch's oldest request was queued (None: the batch is the gateway's own, now).
        A JournalFailure propagates: nothing of the batch is sent.
        """
        events, fills, market_data = self.sequencer.commit()
        finished, self._finished = self._finished, []
        batch = ReleasedBatch(
            events,
            self.replies.take_outbox(),
            fills,
            market_data,
            finished,
            self.clock() if arrived is None else arrived,
        )
        journal = self.journal
        if journal.buffered:
            journal.append(commit_record())
            journal.flush()
            if self.syncer is not None:
                self.unsynced.append(Unsynced(journal.position, batch))
                self.syncer.written(journal.position)
                return
        if self.unsynced:  # earlier batches wait for the disk: this one is released with them
            self.unsynced.append(Unsynced(journal.position, batch))
            return
        self.release(batch)
        self.ack_latency.observe(self.clock() - batch.arrived)

    def synced_to(self, position: int) -> None:
        """The sync thread has the journal on disk up to ``position``: release every batch written before it."""
        unsynced = self.unsynced
        while unsynced and unsynced[0].journal_position <= position and self.lifecycle.failure is None:
            batch = unsynced.popleft().batch
            try:
                self.release(batch)
            except Exception as error:  # a settlement failure: as in the engine loop
                self.fail(error)
            else:
                self.ack_latency.observe(self.clock() - batch.arrived)
        self.synced.set()

    async def wait_for_the_disk(self) -> None:
        """Until every batch written is synced (a snapshot must never be ahead of the journal on disk)."""
        while self.unsynced and self.lifecycle.failure is None:
            self.synced.clear()
            await self.synced.wait()
        if self.lifecycle.failure is not None:
            raise ExchangeStopped("the exchange failed: its state is not taken further")

    async def drain(self, task: asyncio.Task | None) -> None:
        """At stop: until the batch in hand and everything queued and written have been released (while the
        ``engine`` task runs, and the sync thread)."""
        queue = self.intake.requests
        while (
            (self.in_hand or not queue.empty() or self.unsynced)
            and self.lifecycle.failure is None
            and task is not None
            and not task.done()
            and (self.syncer is None or self.syncer.alive)
        ):
            await asyncio.sleep(0.001)

    async def sync_at_stop(self) -> None:
        """At stop: the last batches written reach the disk and are released; the sync thread ends."""
        try:
            while self.unsynced and self.lifecycle.failure is None and self.syncer is not None and self.syncer.alive:
                self.synced.clear()
                await self.synced.wait()
        finally:
            if self.syncer is not None:
                self.syncer.stop()
