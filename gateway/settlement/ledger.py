"""The settled ledger's storage: an interface, and its SQLite implementation.

How this works
--------------
Settlement (:mod:`gateway.settlement.service`) turns engine events into a
:class:`LedgerBatch`: signed balance changes per (account, asset), the trades
and the deposits and withdrawals it settled, the accounts it opened, and the
sequence number of the last event the batch covers. A :class:`LedgerStore`
commits a batch atomically: every change and the new "last applied seq"
land in one transaction, or none of them do. That single rule is what makes
settlement exactly-once: an event is either in the ledger together with a
cursor past it, or absent together with a cursor before it, so re-delivering
it after a crash applies it exactly once.

A batch also names the cursor it was built against (``previous_seq``); the
store refuses a batch whose ``previous_seq`` is not the stored cursor
(:class:`StaleBatch`), so two writers, or a batch built from a stale read,
can never apply the same events twice.

Everything stored is an integer: cash in euro cents, units of an instrument
(tonnes of CO2e), lots, prices in cents per unit. Assets are named as the
engine names them: ``"EUR"`` for cash, an instrument symbol for units.

The interface speaks in plain records and no SQL leaves this module, so a
PostgreSQL store is one more class here (the SQL below is standard: upserts
with ``ON CONFLICT``, integer columns, a one-row cursor table) and
settlement does not change.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class StaleBatch(RuntimeError):
    """A batch was built against a cursor that is no longer the stored one; nothing was applied."""


@dataclass(frozen=True, slots=True)
class BalanceChange:
    """A signed change of one account's holding of one asset (cents for "EUR", units otherwise)."""

    account: str
    asset: str
    amount: int


@dataclass(frozen=True, slots=True)
class SettledTrade:
    """One trade as settled: who delivered, who paid, and what each paid in fees."""

    seq: int  # the Trade event's seq
    ts: int  # nanoseconds since the epoch, from the engine event
    trade_id: int
    instrument: str
    price: int  # cents per unit
    quantity: int  # lots
    units: int  # quantity x the instrument's lot_units
    buyer: str
    seller: str
    buyer_fee: int  # cents
    seller_fee: int  # cents
    aggressor_side: str  # "B" or "S": the taker's side; "auction" for an auction trade (nobody took)


AUCTION = "auction"  # SettledTrade.aggressor_side of an auction trade
DEPOSIT = "deposit"  # cash paid in, or units transferred in from the registry
WITHDRAWAL = "withdrawal"  # cash paid out, or units transferred out to the registry
SURRENDER = "surrender"  # units surrendered for compliance: retired, out of circulation for good


@dataclass(frozen=True, slots=True)
class AssetMovement:
    """Cash or units that came into (+) or left (-) the venue's accounts."""

    seq: int
    ts: int
    account: str
    asset: str
    amount: int  # signed: positive in, negative out
    kind: str  # DEPOSIT, WITHDRAWAL or SURRENDER


@dataclass(slots=True)
class LedgerBatch:
    """Everything settlement learnt from a run of consecutive events, committed as one transaction."""

    previous_seq: int  # the stored cursor this batch was built against
    last_seq: int  # the cursor after it: the seq of the last event it covers
    opened_accounts: list[tuple[str, int | None]] = field(default_factory=list)  # (account, seq); None: implicit
    changes: list[BalanceChange] = field(default_factory=list)
    trades: list[SettledTrade] = field(default_factory=list)
    movements: list[AssetMovement] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """The ledger's state as of one moment: the cursor and everything reconciliation compares."""

    last_applied_seq: int
    accounts: list[str]  # sorted
    balances: dict[str, dict[str, int]]  # account -> asset -> amount; an absent (account, asset) holds 0
    net_movements: dict[str, int]  # per asset: deposited minus withdrawn and surrendered


class LedgerStore(Protocol):
    """What settlement, reconciliation and statements need from storage.

    Implementations must make :meth:`commit` atomic and may be called from
    one writer thread while readers call the query methods from another.
    """

    def last_applied_seq(self) -> int:
        """The seq of the last event committed (0 for an empty ledger)."""
        ...

    def commit(self, batch: LedgerBatch) -> None:
        """Apply the whole batch and move the cursor to ``batch.last_seq`` in one transaction.

        Raises :class:`StaleBatch`, applying nothing, if the stored cursor is
        not ``batch.previous_seq``.
        """
        ...

    def snapshot(self) -> LedgerSnapshot:
        """Cursor, accounts, every balance and the net movements, read together (no commit in between)."""
        ...

    def accounts(self) -> list[str]:
        """Every account the ledger has opened, sorted."""
        ...

    def holdings_of(self, account: str) -> dict[str, int]:
        """One account's holdings: asset -> amount; an absent asset holds 0."""
        ...

    def trades_of(self, account: str) -> list[SettledTrade]:
        """The account's settled trades (as buyer or seller), in seq order."""
        ...

    def all_trades(self) -> list[SettledTrade]:
        """Every settled trade, in seq order."""
        ...

    def total_fees(self) -> int:
        """Cents of fees over every settled trade: what the fee account has received from trading."""
        ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_cursor (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    last_applied_seq INTEGER NOT NULL
) STRICT;
INSERT OR IGNORE INTO ledger_cursor (id, last_applied_seq) VALUES (1, 0);

CREATE TABLE IF NOT EXISTS accounts (
    account    TEXT PRIMARY KEY,
    opened_seq INTEGER            -- NULL: opened with the engine (the fee account), not by an event
) STRICT;

CREATE TABLE IF NOT EXISTS balances (
    account TEXT    NOT NULL,
    asset   TEXT    NOT NULL,     -- "EUR" (cents) or an instrument symbol (units)
    amount  INTEGER NOT NULL,
    PRIMARY KEY (account, asset)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS trades (
    trade_id       INTEGER PRIMARY KEY,
    seq            INTEGER NOT NULL UNIQUE,
    ts             INTEGER NOT NULL,
    instrument     TEXT    NOT NULL,
    price          INTEGER NOT NULL,  -- cents per unit
    quantity       INTEGER NOT NULL,  -- lots
    units          INTEGER NOT NULL,
    buyer          TEXT    NOT NULL,
    seller         TEXT    NOT NULL,
    buyer_fee      INTEGER NOT NULL,  -- cents
    seller_fee     INTEGER NOT NULL,  -- cents
    aggressor_side TEXT    NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS trades_by_buyer ON trades (buyer, seq);
CREATE INDEX IF NOT EXISTS trades_by_seller ON trades (seller, seq);

CREATE TABLE IF NOT EXISTS movements (
    seq     INTEGER PRIMARY KEY,
    ts      INTEGER NOT NULL,
    account TEXT    NOT NULL,
    asset   TEXT    NOT NULL,
    amount  INTEGER NOT NULL,         -- signed: deposits positive, withdrawals and surrenders negative
    kind    TEXT    NOT NULL          -- deposit, withdrawal or surrender
) STRICT;
"""

_TRADE_COLUMNS = (
    "seq, ts, trade_id, instrument, price, quantity, units, buyer, seller, buyer_fee, seller_fee, aggressor_side"
)


class SqliteLedgerStore:
    """The ledger in one SQLite file (stdlib ``sqlite3``), in WAL mode.

    WAL lets statements and reconciliation read while the settlement thread
    writes. ``synchronous=FULL``: every commit is fsynced before it returns,
    so a holding a statement has shown cannot disappear in a power cut.
    NORMAL would stay consistent (the cursor commits with the changes, so a
    lost tail would only be re-applied on re-delivery), but it needs the
    event source to be more durable than the ledger, and the fsync it saves
    costs little here: commits are off the matching path, in the settlement
    thread, one per batch of events rather than one per trade.

    Needs SQLite 3.37 or later (STRICT tables, which refuse anything but an
    integer in an INTEGER column). One connection, shared by the settlement
    thread and readers, guarded by a lock; transactions are explicit
    (``BEGIN IMMEDIATE``: take the write lock up front, so a second writer
    waits or fails at once instead of deadlocking half-way).
    """

    BUSY_TIMEOUT_MS = 5_000  # how long a writer waits for another process's write lock before failing

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        # check_same_thread=False: the settlement thread writes, the event loop reads; the lock below
        # serialises every use, so the connection is never used by two threads at once.
        self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        connection = self._connection
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal" and self.path != ":memory:":  # an in-memory database has no WAL
            connection.close()
            raise sqlite3.OperationalError(f"{self.path}: could not switch to WAL mode (got {mode!r})")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(f"PRAGMA busy_timeout={self.BUSY_TIMEOUT_MS}")
        with self._lock:
            connection.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    # -- writing -----------------------------------------------------------------------------

    def commit(self, batch: LedgerBatch) -> None:
        with self._lock:
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE")
            try:
                stored = connection.execute("SELECT last_applied_seq FROM ledger_cursor WHERE id = 1").fetchone()[0]
                if stored != batch.previous_seq:
                    raise StaleBatch(f"batch built after seq {batch.previous_seq}, ledger is at seq {stored}")
                connection.executemany(
                    "INSERT INTO accounts (account, opened_seq) VALUES (?, ?) ON CONFLICT (account) DO NOTHING",
                    batch.opened_accounts,
                )
                connection.executemany(
                    "INSERT INTO balances (account, asset, amount) VALUES (?, ?, ?) "
                    "ON CONFLICT (account, asset) DO UPDATE SET amount = amount + excluded.amount",
                    [(change.account, change.asset, change.amount) for change in batch.changes],
                )
                connection.executemany(
                    f"INSERT INTO trades ({_TRADE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            t.seq,
                            t.ts,
                            t.trade_id,
                            t.instrument,
                            t.price,
                            t.quantity,
                            t.units,
                            t.buyer,
                            t.seller,
                            t.buyer_fee,
                            t.seller_fee,
                            t.aggressor_side,
                        )
                        for t in batch.trades
                    ],
                )
                connection.executemany(
                    "INSERT INTO movements (seq, ts, account, asset, amount, kind) VALUES (?, ?, ?, ?, ?, ?)",
                    [(m.seq, m.ts, m.account, m.asset, m.amount, m.kind) for m in batch.movements],
                )
                connection.execute("UPDATE ledger_cursor SET last_applied_seq = ? WHERE id = 1", (batch.last_seq,))
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    # -- reading -----------------------------------------------------------------------------

    def last_applied_seq(self) -> int:
        with self._lock:
            return self._connection.execute("SELECT last_applied_seq FROM ledger_cursor WHERE id = 1").fetchone()[0]

    def snapshot(self) -> LedgerSnapshot:
        # The writer shares this connection and this lock, so no commit can land between the reads.
        with self._lock:
            connection = self._connection
            cursor = connection.execute("SELECT last_applied_seq FROM ledger_cursor WHERE id = 1").fetchone()[0]
            accounts = [row[0] for row in connection.execute("SELECT account FROM accounts ORDER BY account")]
            balances: dict[str, dict[str, int]] = {}
            for account, asset, amount in connection.execute(
                "SELECT account, asset, amount FROM balances ORDER BY account, asset"
            ):
                balances.setdefault(account, {})[asset] = amount
            net_movements = dict(
                connection.execute("SELECT asset, SUM(amount) FROM movements GROUP BY asset ORDER BY asset").fetchall()
            )
        return LedgerSnapshot(cursor, accounts, balances, net_movements)

    def accounts(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._connection.execute("SELECT account FROM accounts ORDER BY account")]

    def holdings_of(self, account: str) -> dict[str, int]:
        with self._lock:
            return dict(
                self._connection.execute(
                    "SELECT asset, amount FROM balances WHERE account = ? ORDER BY asset", (account,)
                ).fetchall()
            )

    def trades_of(self, account: str) -> list[SettledTrade]:
        with self._lock:
            rows = self._connection.execute(
                f"SELECT {_TRADE_COLUMNS} FROM trades WHERE buyer = ? OR seller = ? ORDER BY seq", (account, account)
            ).fetchall()
        return [SettledTrade(*row) for row in rows]

    def all_trades(self) -> list[SettledTrade]:
        with self._lock:
            rows = self._connection.execute(f"SELECT {_TRADE_COLUMNS} FROM trades ORDER BY seq").fetchall()
        return [SettledTrade(*row) for row in rows]

    def total_fees(self) -> int:
        with self._lock:
            return self._connection.execute("SELECT COALESCE(SUM(buyer_fee + seller_fee), 0) FROM trades").fetchone()[0]

    def pragma(self, name: str) -> object:
        """The value of a PRAGMA (``journal_mode``, ``synchronous``): for checks and diagnostics."""
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        with self._lock:
            return self._connection.execute(f"PRAGMA {name}").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._connection.close()
