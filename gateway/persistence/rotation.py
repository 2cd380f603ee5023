"""The journal's segments while the exchange runs: a new one each trading day and past a size; closed
ones archived once a snapshot covers them; archives removed after their retention.

How this works
--------------
Between two batches, where snapshots are taken too, the engine loop awaits
:meth:`JournalRotation.between_batches`. After a batch that ended a trading
day (an ``EndOfDay`` command), or once the segment holds
``journal_segment_mb``, the rotation waits for the disk to have every batch
written, closes the segment and begins the next
(:meth:`gateway.persistence.journal.JournalWriter.roll`); at the end of a
day it also asks for a snapshot, so that the day's segment is covered, and
archived, at once.

After every snapshot written while the exchange runs (periodic, at the end
of a day, an operator's), and once at start from the snapshot recovery used,
an archiving pass runs in a thread (the task ``journal-archiver``): the
closed segments the snapshot covers are compressed into archives and
removed, then archives older than ``journal_archive_days`` are removed
(:mod:`gateway.persistence.segments`). A pass touches closed segments only,
never the one being written, and one pass runs at a time. A failure is
logged (``journal_archive_failed``) and left to the next pass: the segment
stays where it was, and nothing is lost. A snapshot taken at a stop starts
no pass: the next start does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from gateway.config import ServerConfig
from gateway.logs import log_event
from gateway.persistence.journal import JournalWriter
from gateway.persistence.segments import (
    ARCHIVE_DIR,
    archive_segment,
    covered_segments,
    expired_archives,
    journal_dir,
    journal_segments,
)
from gateway.persistence.snapshots import Snapshots
from gateway.pipeline.engine_loop import EngineLoop

log = logging.getLogger("carbonx.journal")


class JournalRotation:
    """Closes segments between batches and archives what snapshots cover; see the module notes."""

    def __init__(
        self,
        loop: EngineLoop,
        journal: JournalWriter,
        snapshots: Snapshots,
        config: ServerConfig,
        data_dir: Path,
    ) -> None:
        self.loop = loop
        self.journal = journal
        self.snapshots = snapshots
        self.config = config
        self.data_dir = data_dir
        self.segment_bytes = config.journal_segment_mb << 20
        self.rolled = 0  # segments closed by this process
        self.archived = 0  # segments archived by this process
        self.removed = 0  # archives removed by this process
        self.archiver: asyncio.Task | None = None  # the archiving pass in progress
        self._covered_seq = 0  # the newest snapshot's record seq: what a pass may archive up to
        snapshots.on_written = self.archive_covered

    async def between_batches(self) -> None:
        """After each batch: the segment closed if the day ended or it is full; then a snapshot if one is due."""
        if self.loop.day_ended or self.journal.size >= self.segment_bytes:
            await self.roll()
        await self.snapshots.between_batches()

    async def roll(self) -> None:
        """Close the segment once every batch written is on disk, and begin the next (a day's end: a snapshot)."""
        await self.loop.wait_for_the_disk()
        day_ended, self.loop.day_ended = self.loop.day_ended, False  # (after the wait: a stop may cut it short)
        closed, size, first_seq = self.journal.path, self.journal.size, self.journal.next_seq
        started = time.perf_counter()
        path = self.journal.roll()
        self.rolled += 1
        log_event(
            log,
            "journal_segment_closed",
            segment=closed.name,
            bytes=size,
            reason="end_of_day" if day_ended else "size",
            next_segment=path.name,
            first_seq=first_seq,
            seconds=round(time.perf_counter() - started, 4),
        )
        if day_ended:
            self.snapshots.want()

    def archive_covered(self, record_seq: int) -> None:
        """A snapshot after record ``record_seq`` is on disk: archive what it covers (in a thread, one pass at a
        time; a pass asked for while one runs follows it)."""
        self._covered_seq = max(self._covered_seq, record_seq)
        if self.archiver is None or self.archiver.done():
            self.archiver = asyncio.get_running_loop().create_task(self._archive_passes(), name="journal-archiver")

    async def _archive_passes(self) -> None:
        done = 0
        while self._covered_seq > done:
            done = self._covered_seq
            try:
                archived, removed = await asyncio.to_thread(self._archive_pass, done, time.time())
            except Exception as error:  # a full disk, a damaged file: the segment stays, the next pass tries again
                log_event(
                    log,
                    "journal_archive_failed",
                    logging.ERROR,
                    error=repr(error),
                    hint="the segment stays where it is, nothing is lost; the next snapshot's pass tries again",
                )
                return
            self.archived += archived
            self.removed += removed

    def _archive_pass(self, covered_seq: int, now: float) -> tuple[int, int]:
        """(In a thread.) Archive the closed segments up to ``covered_seq``; remove expired archives."""
        directory = journal_dir(self.data_dir)
        for left in directory.glob(f"{ARCHIVE_DIR}/.segment-*.new"):  # a pass a stop or crash cut short
            with contextlib.suppress(OSError):
                left.unlink()
        archived = 0
        for segment in covered_segments(journal_segments(directory), covered_seq):
            done = archive_segment(segment)
            archived += 1
            log_event(
                log,
                "journal_archived",
                segment=segment.path.name,
                archive=str(done.archive),
                bytes=done.bytes,
                compressed_bytes=done.compressed_bytes,
                ratio=round(done.bytes / max(done.compressed_bytes, 1), 2),
                seconds=round(done.seconds, 3),
            )
        expired = expired_archives(journal_segments(directory), self.config.journal_archive_days, now)
        for segment in expired:
            segment.path.unlink()
            log_event(
                log,
                "journal_archive_removed",
                archive=str(segment.path),
                first_seq=segment.first_seq,
                retention_days=self.config.journal_archive_days,
            )
        return archived, len(expired)

    async def finish(self) -> None:
        """At stop: an archiving pass in progress finishes (its thread cannot be cut short)."""
        if self.archiver is not None:
            await asyncio.gather(self.archiver, return_exceptions=True)
