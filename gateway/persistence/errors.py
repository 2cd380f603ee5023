"""What can be wrong with a journal: the errors the journal, its segments and recovery raise."""

from __future__ import annotations

from pathlib import Path


class JournalError(RuntimeError):
    """The journal cannot be used as it is; the message says where and why."""


class JournalFailure(JournalError):
    """Writing or syncing the journal failed: fatal, nothing pending may be acknowledged."""


class JournalCorrupt(JournalError):
    """A damaged record with valid records after it: not a torn tail, so nothing is truncated."""

    def __init__(self, path: Path, offset: int, seq: int, reason: str, message: str | None = None) -> None:
        super().__init__(
            message
            or (
                f"{path}: record {seq} at byte {offset} is damaged ({reason}), and valid records follow it; this is "
                "not a crash's torn tail. The journal is left as it is: restore it from a copy, or cut it at that "
                "offset by hand if the records after it may be given up"
            )
        )
        self.path = path
        self.offset = offset
        self.seq = seq
        self.reason = reason


class JournalTailAcknowledged(JournalCorrupt):
    """The journal's last records cannot be read or are missing, and something durable (a snapshot, the
    ledger) shows they were acknowledged: a crash's torn tail is cut off at start-up, these are not.
    ``offset`` and ``seq`` name the first record that cannot be read (or is missing); ``committed_end``
    is where the readable batches end."""

    def __init__(self, path: Path, offset: int, seq: int, reason: str, committed_end: int, evidence: str) -> None:
        super().__init__(
            path,
            offset,
            seq,
            reason,
            (
                f"{path}: record {seq} at byte {offset} cannot be read ({reason}), yet {evidence}: the batches from "
                f"byte {committed_end} on were acknowledged, so this is not a crash's torn tail, and the exchange "
                "does not start without them. Nothing was changed. Restore the journal from a copy; to give those "
                "batches up instead, see docs/DURABILITY.md, section 4"
            ),
        )
        self.committed_end = committed_end
        self.evidence = evidence
