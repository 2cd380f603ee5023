"""Snapshots while the exchange runs: when to take one, and how without stopping the market.

How this works
--------------
A snapshot is due every ``snapshot_every`` journaled commands and after the
journal's segment closes at the end of a trading day
(:mod:`gateway.persistence.rotation`; neither for a temporary data
directory), or when an operator asks (``snapshot``). Between
two batches the engine loop waits for the disk to have every batch written
(a snapshot must never be ahead of the journal on disk), then forks: the
child pickles the state and writes it (:func:`gateway.persistence.recovery.fork_snapshot`)
while the parent goes on matching. The engine waits for one sync and the
fork (milliseconds), not for the copy. The operators who asked are answered
once the child has exited, and ``on_written`` (the rotation's archiving
pass) is told how far the new snapshot covers the journal. At a graceful
stop the snapshot is written by the process itself, so that the next start
replays nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from exchange import RejectCode
from gateway.config import ServerConfig
from gateway.lifecycle import Lifecycle
from gateway.logs import log_event
from gateway.persistence.journal import JournalWriter
from gateway.persistence.recovery import fork_snapshot, snapshot_bytes, snapshot_path, write_snapshot
from gateway.pipeline.engine_loop import EngineLoop
from gateway.pipeline.replies import Replies
from gateway.pipeline.sequencer import Sequencer
from gateway.sessions.session import Session
from gateway.wire.messages import SnapshotTaken
from gateway.wire.protocol import SnapshotRequest

log = logging.getLogger("carbonx.gateway")


class Snapshots:
    """Takes snapshots between batches and at stop; answers the operators who asked. See the module notes."""

    def __init__(
        self,
        loop: EngineLoop,
        sequencer: Sequencer,
        journal: JournalWriter,
        replies: Replies,
        config: ServerConfig,
        data_dir: Path,
        lifecycle: Lifecycle,
    ) -> None:
        self.loop = loop
        self.sequencer = sequencer
        self.journal = journal
        self.replies = replies
        self.config = config
        self.data_dir = data_dir
        self.lifecycle = lifecycle
        self.taken = 0
        self._requests: list[tuple[Session, SnapshotRequest]] = []
        self._wanted = False  # the journal's day segment closed: a snapshot to cover it
        self.writer: asyncio.Task | None = None  # waits for the snapshot being written by a child
        self.on_written: Callable[[int], None] | None = None  # told the record seq of each snapshot written

    def request(self, session: Session, request: SnapshotRequest) -> None:
        """An operator asks for a snapshot now: taken after this batch, then answered."""
        self._requests.append((session, request))

    def want(self) -> None:
        """A snapshot after this batch (not for a temporary data directory): the journal's day segment closed."""
        self._wanted = bool(self.config.data_dir)

    def due(self) -> bool:
        """An operator asked, a closed day wants one, or enough commands were journaled (not for a temporary
        data directory), and no snapshot is being written."""
        if self.writer is not None and not self.writer.done():
            return False
        every = self.config.snapshot_every
        return (
            bool(self._requests)
            or self._wanted
            or (bool(self.config.data_dir) and 0 < every <= self.loop.commands_since_snapshot)
        )

    async def between_batches(self) -> None:
        if self.due():
            await self.begin()

    async def begin(self) -> None:
        """Snapshot the state from a forked child, answer the operators who asked when it is written."""
        requests, self._requests = self._requests, []
        self._wanted = False
        started = time.perf_counter()
        await self.loop.wait_for_the_disk()
        journal = self.journal
        record_seq, event_seq = journal.next_seq - 1, self.sequencer.engine.last_seq
        self.loop.commands_since_snapshot = 0
        try:
            pid = fork_snapshot(self.sequencer, journal.journal_id, record_seq, journal.size, self.data_dir)
        except OSError as error:  # no process to be had (a container's limits, say): nothing else changes
            log_event(
                log,
                "snapshot_failed",
                logging.ERROR,
                error=str(error),
                hint="the journal has everything; the next start replays more of it",
            )
            self._answer(requests, None, record_seq, event_seq)
            return
        paused = time.perf_counter() - started
        self.writer = asyncio.create_task(
            self._finish(pid, record_seq, event_seq, started, paused, requests), name="snapshot-writer"
        )

    async def _finish(
        self,
        pid: int,
        record_seq: int,
        event_seq: int,
        started: float,
        paused: float,
        requests: list[tuple[Session, SnapshotRequest]],
    ) -> None:
        _, status = await asyncio.get_running_loop().run_in_executor(None, os.waitpid, pid, 0)
        code = os.waitstatus_to_exitcode(status)
        path = snapshot_path(self.data_dir, record_seq)
        if code == 0:
            self.taken += 1
            log_event(
                log,
                "snapshot",
                path=str(path),
                record_seq=record_seq,
                bytes=path.stat().st_size,
                engine_paused_seconds=round(paused, 4),
                seconds=round(time.perf_counter() - started, 3),
            )
            if self.on_written is not None:
                self.on_written(record_seq)
        else:
            log_event(
                log,
                "snapshot_failed",
                logging.ERROR,
                path=str(path),
                exit_status=code,
                hint="the journal has everything; the next start replays more of it",
            )
        self._answer(requests, path if code == 0 else None, record_seq, event_seq)
        if (self._requests or self._wanted) and not self.lifecycle.stopping:  # asked while this one was written
            await self.begin()

    def _answer(
        self, requests: list[tuple[Session, SnapshotRequest]], path: Path | None, record_seq: int, event_seq: int
    ) -> None:
        if not requests or self.lifecycle.failure is not None:
            return
        for session, request in requests:
            if path is None:
                self.replies.reject(session, request, RejectCode.SNAPSHOT_FAILED, RejectCode.SNAPSHOT_FAILED.text, None)
            else:
                self.replies.answer(
                    session,
                    SnapshotTaken(path=str(path), record_seq=record_seq, event_seq=event_seq, ts=time.time_ns()),
                    request,
                )
        self.loop.commit()

    async def finish_writing(self) -> None:
        """At stop: a snapshot being written by a child finishes (its answers synced)."""
        if self.writer is not None:
            await asyncio.gather(self.writer, return_exceptions=True)

    async def write(self) -> Path:
        """A snapshot written by this process (at a graceful stop, when nothing else runs)."""
        await self.loop.wait_for_the_disk()
        journal = self.journal
        started = time.perf_counter()
        data = snapshot_bytes(self.sequencer, journal.journal_id, journal.next_seq - 1, journal.size)
        path = await asyncio.get_running_loop().run_in_executor(
            None, write_snapshot, self.data_dir, journal.next_seq - 1, data
        )
        self.taken += 1
        log_event(
            log,
            "snapshot",
            path=str(path),
            record_seq=journal.next_seq - 1,
            bytes=len(data),
            seconds=round(time.perf_counter() - started, 3),
        )
        return path
