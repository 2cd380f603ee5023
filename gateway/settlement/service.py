"""Settlement: the engine's events, turned into a durable ledger of holdings.

How this works
--------------
The engine (``exchange``) moves holdings in memory at every fill, for its
pre-trade risk checks. This module keeps the venue's book of record: the
settled ledger, in a :class:`gateway.settlement.ledger.LedgerStore` (SQLite by default).

1. :class:`Settlement` is pure logic over a store. ``apply(events)`` takes
   engine events, in the order the engine emitted them, and settles:

   - ``Trade``: delivery versus payment. The seller's units go to the buyer,
     the buyer's cash (price x units) to the seller; the buyer also pays its
     fee, the seller receives the price less its fee, and both fees go to
     the fee account. The taker is the buyer when ``aggressor_side`` is BUY.
   - ``Deposited`` / ``Withdrawn``: cash ("EUR", cents) or units in or out.
   - ``UnitsSurrendered`` (compliance): the units leave the account, retired.
   - ``PenaltyCharged`` (compliance): the part of the penalty paid from cash
     goes to the penalty account (the part owed moves nothing).
   - ``AccountOpened``: the account joins the ledger. The fee account joins
     with the first batch: the engine opens it at construction, unannounced;
     the penalty account with the first penalty paid into it, likewise.

   Every other kind of event is passed over (but counted as seen).

2. Exactly once. Every engine event carries a global, gap-free ``seq``. The
   store keeps the seq of the last event applied, written in the same
   transaction as the holdings it moved. ``apply`` skips events at or below
   it (re-delivery is a no-op, a restart resumes), and refuses a gap: the
   first new event must be the cursor + 1 and each next one its
   predecessor + 1 (:class:`SequenceGap`). Stepping over a gap would move
   the cursor past events never applied, and lose them for good; so the
   producer hands over *every* event, and filtering happens here.

3. :class:`SettlementService` is the asyncio shell. The producer (the
   gateway's engine loop) calls ``submit(events)`` after each command or
   batch: a ``put_nowait`` into a bounded queue, which never waits. A named
   consumer task takes whatever is queued (up to a number of events per
   transaction) and applies it in one worker thread, so a slow disk stalls
   the ledger, not the event loop and never the matching.

   When the queue is full, ``submit`` does not wait and does not drop the
   events silently: it raises :class:`SettlementOverloaded`, and from then
   on the service takes nothing more (every later ``submit`` raises
   :class:`SettlementStopped`), because a later batch applied after a
   missing one would step over its fills. The ledger stays exact up to its
   cursor; recovery is the restart path: a new service over the same store,
   with every event re-delivered from the start or the journal (what was
   applied already is skipped). No fill is lost, and matching went on
   throughout; the engine's own holdings keep the risk checks right while
   the ledger catches up. To keep that from happening, size the queue for
   the longest stall to ride out, and let the gateway watch ``has_room``
   (and ``pending_batches``) to stop taking new orders in at its edge
   before the queue fills.

4. :func:`reconcile` proves, once the queue is drained, that the ledger
   equals the engine's view of every holding and that trading conserved
   every asset; :func:`statement` and :func:`format_statement` produce an
   account's statement for the CLI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any

from exchange import AccountOpened, BidResult, Deposited, Instrument, PrimaryAuctionCleared, Side, Trade, Withdrawn
from exchange.clearing.contracts import MONTH_CODES
from exchange.clearing.tas import TAS_SUFFIX
from exchange.commands import CASH_ASSET
from exchange.engine import DEFAULT_FEE_ACCOUNT
from exchange.events import BlockTraded, Event, FuturesDelivered, PenaltyCharged, UnitsSurrendered, VariationMarginPaid
from exchange.instruments import cents_to_eur
from gateway.settlement.ledger import (
    AUCTION,
    DEPOSIT,
    SURRENDER,
    WITHDRAWAL,
    AssetMovement,
    BalanceChange,
    LedgerBatch,
    LedgerStore,
    SettledTrade,
)

if TYPE_CHECKING:
    from exchange import AccountBalances, Engine


class SettlementError(RuntimeError):
    """Settlement could not go on; the ledger is unchanged by the call that raised it."""


class SequenceGap(SettlementError):
    """Events are missing between the ledger's cursor and what was delivered."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(
            f"event seq {got} delivered, but the ledger needs seq {expected} next: "
            f"re-deliver events from seq {expected}"
        )
        self.expected = expected
        self.got = got


class EventsOutOfOrder(SettlementError):
    """A delivery's events are not in strictly increasing seq order (a producer bug)."""


class SettlementOverloaded(SettlementError):
    """The settlement queue was full: the batch was not taken, and the service takes nothing more."""


class SettlementStopped(SettlementError):
    """The service takes no more events (closed, failed or overloaded); ``__cause__`` says why if it failed."""


# -- settlement logic ----------------------------------------------------------------------------


class Settlement:
    """Settles engine events into a ledger store, each exactly once (see the module notes)."""

    def __init__(
        self, store: LedgerStore, instruments: Mapping[str, Instrument], *, fee_account: str = DEFAULT_FEE_ACCOUNT
    ) -> None:
        self.store = store
        self.fee_account = fee_account
        self._lot_units = {symbol: instrument.lot_units for symbol, instrument in instruments.items()}
        # By the event's exact class, so each settler gets the event kind it is written for (hence Any).
        self._settlers: dict[type, Callable[[Any, LedgerBatch, dict[tuple[str, str], int]], None]] = {
            Trade: self._settle_trade,
            Deposited: self._settle_deposit,
            Withdrawn: self._settle_withdrawal,
            UnitsSurrendered: self._settle_surrender,
            PenaltyCharged: self._settle_penalty,
            AccountOpened: self._open_account,
            BidResult: self._settle_allocation,
            PrimaryAuctionCleared: self._settle_auction_proceeds,
            VariationMarginPaid: self._settle_variation_margin,
            FuturesDelivered: self._settle_delivery,
            BlockTraded: self._settle_block,
        }

    def apply(self, events: Iterable[Event]) -> int:
        """Settle the events the ledger has not applied yet, in one transaction.

        Returns how many new events the ledger moved past (settled or passed
        over); 0 when everything was applied already. Raises
        :class:`SequenceGap` or :class:`EventsOutOfOrder`, applying nothing,
        when the delivery cannot be settled exactly once.
        """
        previous = self.store.last_applied_seq()
        expected = previous + 1
        batch = LedgerBatch(previous_seq=previous, last_seq=previous)
        deltas: dict[tuple[str, str], int] = {}  # (account, asset) -> net change; one row write each
        settlers = self._settlers
        last_seen = -1
        for event in events:
            seq = event.seq
            if seq <= last_seen:
                raise EventsOutOfOrder(f"event seq {seq} delivered after seq {last_seen}")
            last_seen = seq
            if seq < expected:
                continue  # applied before: re-delivery after a restart
            if seq != expected:
                raise SequenceGap(expected, seq)
            expected += 1
            settle = settlers.get(event.__class__)
            if settle is not None:
                settle(event, batch, deltas)
        settled = expected - 1 - previous
        if not settled:
            return 0
        if previous == 0:  # the engine opens its fee account at construction, before any event
            batch.opened_accounts.insert(0, (self.fee_account, None))
        batch.last_seq = expected - 1
        batch.changes = [BalanceChange(account, asset, amount) for (account, asset), amount in deltas.items() if amount]
        self.store.commit(batch)
        return settled

    def _settle_trade(self, trade: Trade, batch: LedgerBatch, deltas: dict[tuple[str, str], int]) -> None:
        symbol = trade.instrument
        lot_units = self._lot_units.get(symbol)
        if lot_units is None and self._is_futures(symbol):
            # A futures trade moves no cash or units (the position is the clearing's, paid for by variation margin
            # and delivered at expiry): only its fees are paid.
            _add(deltas, trade.taker_account, CASH_ASSET, -trade.taker_fee)
            _add(deltas, trade.maker_account, CASH_ASSET, -trade.maker_fee)
            _add(deltas, self.fee_account, CASH_ASSET, trade.taker_fee + trade.maker_fee)
            return
        if lot_units is None:
            raise SettlementError(f"trade {trade.trade_id} (seq {trade.seq}) is on unknown instrument {symbol!r}")
        units = trade.quantity * lot_units
        notional = trade.price * units  # price is cents per unit
        if trade.aggressor_side is not Side.SELL:  # the taker buys; in an auction trade the taker fields are the buy
            buyer, buyer_fee = trade.taker_account, trade.taker_fee
            seller, seller_fee = trade.maker_account, trade.maker_fee
        else:
            buyer, buyer_fee = trade.maker_account, trade.maker_fee
            seller, seller_fee = trade.taker_account, trade.taker_fee
        _add(deltas, buyer, CASH_ASSET, -(notional + buyer_fee))
        _add(deltas, buyer, symbol, units)
        _add(deltas, seller, symbol, -units)
        _add(deltas, seller, CASH_ASSET, notional - seller_fee)
        _add(deltas, self.fee_account, CASH_ASSET, buyer_fee + seller_fee)
        batch.trades.append(
            SettledTrade(
                trade.seq,
                trade.ts,
                trade.trade_id,
                symbol,
                trade.price,
                trade.quantity,
                units,
                buyer,
                seller,
                buyer_fee,
                seller_fee,
                AUCTION if trade.aggressor_side is None else str(trade.aggressor_side),
            )
        )

    def _settle_deposit(self, event: Deposited, batch: LedgerBatch, deltas: dict[tuple[str, str], int]) -> None:
        _add(deltas, event.account, event.asset, event.amount)
        batch.movements.append(AssetMovement(event.seq, event.ts, event.account, event.asset, event.amount, DEPOSIT))

    def _settle_withdrawal(self, event: Withdrawn, batch: LedgerBatch, deltas: dict[tuple[str, str], int]) -> None:
        _add(deltas, event.account, event.asset, -event.amount)
        batch.movements.append(
            AssetMovement(event.seq, event.ts, event.account, event.asset, -event.amount, WITHDRAWAL)
        )

    def _settle_surrender(
        self, event: UnitsSurrendered, batch: LedgerBatch, deltas: dict[tuple[str, str], int]
    ) -> None:
        _add(deltas, event.account, event.instrument, -event.units)
        batch.movements.append(
            AssetMovement(event.seq, event.ts, event.account, event.instrument, -event.units, SURRENDER)
        )

    def _settle_penalty(self, event: PenaltyCharged, batch: LedgerBatch, deltas: dict[tuple[str, str], int]) -> None:
        if not event.paid:
            return  # nothing moved: the whole penalty is owed (and the engine opened no penalty account for it)
        batch.opened_accounts.append((event.penalty_account, None))  # the engine opens it on first payment
        _add(deltas, event.account, CASH_ASSET, -event.paid)
        _add(deltas, event.penalty_account, CASH_ASSET, event.paid)

    def _settle_allocation(self, event: BidResult, batch: LedgerBatch, deltas: dict[tuple[str, str], int]) -> None:
        """A winning bid of a primary auction: the bidder pays and receives the allowances (delivery at the
        clearing). Like a trade it moves holdings between accounts: nothing enters or leaves the exchange."""
        if event.allocated:
            _add(deltas, event.account, CASH_ASSET, -event.amount - event.fee)
            _add(deltas, event.account, event.instrument, event.allocated)
            if event.fee:  # the auction fee, to the exchange's fee account
                _add(deltas, self.fee_account, CASH_ASSET, event.fee)

    def _settle_auction_proceeds(
        self, event: PrimaryAuctionCleared, batch: LedgerBatch, deltas: dict[tuple[str, str], int]
    ) -> None:
        """The auctioneer delivers the allowances sold and receives the proceeds."""
        _add(deltas, event.auctioneer, event.instrument, -event.volume)
        _add(deltas, event.auctioneer, CASH_ASSET, event.proceeds)

    def _is_futures(self, symbol: str) -> bool:
        """A futures book's symbol: a spot instrument's, then a month code and two digits (EUAZ27), once more for a
        calendar spread (EUAZ26Z27), or ``TAS`` after a contract's (EUAZ27TAS)."""
        symbol = symbol.removesuffix(TAS_SUFFIX)
        while len(symbol) > 3 and symbol[-3] in MONTH_CODES and symbol[-2:].isdigit():
            symbol = symbol[:-3]
            if symbol in self._lot_units:
                return True
        return False

    def _settle_variation_margin(
        self, event: VariationMarginPaid, batch: LedgerBatch, deltas: dict[tuple[str, str], int]
    ) -> None:
        _add(deltas, event.account, CASH_ASSET, event.amount)

    def _settle_delivery(self, event: FuturesDelivered, batch: LedgerBatch, deltas: dict[tuple[str, str], int]) -> None:
        """A futures expiry's delivery: units short -> long, their price long -> short, a failure's compensation
        short -> long."""
        _add(deltas, event.long_account, event.underlying, event.units)
        _add(deltas, event.short_account, event.underlying, -event.units)
        _add(deltas, event.long_account, CASH_ASSET, event.compensation - event.cash)
        _add(deltas, event.short_account, CASH_ASSET, event.cash - event.compensation)

    def _settle_block(self, event: BlockTraded, batch: LedgerBatch, deltas: dict[tuple[str, str], int]) -> None:
        """A block trade or EFP: the fees (the position is the clearing's, like a fill's); an EFP's underlying
        from the futures buyer to the seller against its price the other way."""
        _add(deltas, event.buyer, CASH_ASSET, event.physical_units * (event.physical_price or 0) - event.buyer_fee)
        _add(deltas, event.seller, CASH_ASSET, -event.physical_units * (event.physical_price or 0) - event.seller_fee)
        _add(deltas, self.fee_account, CASH_ASSET, event.buyer_fee + event.seller_fee)
        if event.physical_units:
            _add(deltas, event.buyer, event.underlying, -event.physical_units)
            _add(deltas, event.seller, event.underlying, event.physical_units)

    def _open_account(self, event: AccountOpened, batch: LedgerBatch, deltas: dict[tuple[str, str], int]) -> None:
        batch.opened_accounts.append((event.account, event.seq))


def _add(deltas: dict[tuple[str, str], int], account: str, asset: str, amount: int) -> None:
    key = (account, asset)
    deltas[key] = deltas.get(key, 0) + amount


# -- the asyncio consumer ------------------------------------------------------------------------


class SettlementService:
    """Feeds engine events to a :class:`Settlement` through a bounded queue, off the matching path.

    ``submit`` never waits (see the module notes for a full queue). One
    named task, ``settlement-consumer``, applies what is queued in one
    worker thread, ``settlement-writer``, one transaction per take of up to
    ``max_events_per_transaction`` events. Start it with :meth:`start` (in a
    TaskGroup if given) or ``async with``; stop it with :meth:`close`.
    """

    CONSUMER_TASK_NAME = "settlement-consumer"

    def __init__(
        self, settlement: Settlement, *, max_pending_batches: int = 16_384, max_events_per_transaction: int = 20_000
    ) -> None:
        """``max_pending_batches``: submits the queue holds before it is full. Each is one command's
        (or one ``handle_all`` batch's) events, about 200 bytes an event; size it for the longest
        ledger stall to ride out. ``max_events_per_transaction``: the most events one commit takes
        (a take is whole submits, so it may go over by one submit)."""
        if max_pending_batches < 1 or max_events_per_transaction < 1:
            raise ValueError("max_pending_batches and max_events_per_transaction must be at least 1")
        self.settlement = settlement
        self.max_events_per_transaction = max_events_per_transaction
        self._queue: asyncio.Queue[Sequence[Event]] = asyncio.Queue(maxsize=max_pending_batches)
        # One thread: transactions must commit in order, and a SQLite connection takes one writer.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="settlement-writer")
        self._task: asyncio.Task | None = None
        self._failure: BaseException | None = None  # what stopped the consumer from applying
        self._refusal: str | None = None  # why submit refuses: closed, overloaded or failed
        self.committed_takes = 0  # transactions the consumer has run (diagnostics and tests)

    # -- producer side -----------------------------------------------------------------

    def submit(self, events: Sequence[Event]) -> None:
        """Queue one command's events for settlement, without waiting; the list must not change afterwards.

        Raises :class:`SettlementOverloaded` if the queue is full, and
        :class:`SettlementStopped` once the service takes no more; in both
        cases matching may go on, and the ledger resumes from its cursor
        when the events are re-delivered to a new service.
        """
        if self._refusal is not None:
            raise SettlementStopped(self._refusal) from self._failure
        if not events:
            return
        try:
            self._queue.put_nowait(events)
        except asyncio.QueueFull:
            self._refusal = (
                f"the settlement queue overflowed at event seq {events[0].seq}: "
                f"re-deliver events from the ledger's cursor to a new service"
            )
            raise SettlementOverloaded(
                f"the settlement queue is full ({self._queue.maxsize} batches); "
                f"event seq {events[0].seq} onwards not taken"
            ) from None

    @property
    def has_room(self) -> bool:
        """True while ``submit`` would take one more batch."""
        return self.room > 0

    def check(self) -> None:
        """Raise :class:`SettlementStopped` if the service takes no more batches, for good (closed, overloaded
        or failed): waiting for room would wait forever."""
        if self._refusal is not None:
            raise SettlementStopped(self._refusal) from self._failure

    @property
    def room(self) -> int:
        """How many more ``submit`` calls the queue takes now (0 once it refuses): the gateway waits for
        room for every batch it has in hand."""
        return 0 if self._refusal is not None else self._queue.maxsize - self._queue.qsize()

    @property
    def pending_batches(self) -> int:
        return self._queue.qsize()

    # -- life cycle ----------------------------------------------------------------------

    def start(self, task_group: asyncio.TaskGroup | None = None) -> None:
        """Start the consumer task (in ``task_group`` if given, so the group owns it)."""
        if self._task is not None:
            raise RuntimeError("the settlement service is started already")
        create = task_group.create_task if task_group is not None else asyncio.create_task
        self._task = create(self._consume(), name=self.CONSUMER_TASK_NAME)

    async def drain(self) -> None:
        """Wait until every submitted batch is applied.

        Raises :class:`SettlementStopped` (with the cause) if the consumer
        failed, or ended, before applying them.
        """
        if self._task is None:
            raise RuntimeError("the settlement service is not started")
        if self._task.done():  # it only ends when cancelled (close, or its TaskGroup): nothing more is applied
            raise SettlementStopped("the settlement consumer has stopped")
        joined = asyncio.create_task(self._queue.join(), name="settlement-drain")
        try:
            # Wait on the consumer too: if it is cancelled, the queue would never join.
            await asyncio.wait({joined, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            drained = joined.done()
            if not drained:
                joined.cancel()
        if not drained:
            raise SettlementStopped("the settlement consumer stopped before the queue was drained")
        if self._failure is not None:
            raise SettlementStopped(f"settlement failed: {self._failure}") from self._failure

    async def close(self, *, drain: bool = True) -> None:
        """Stop in order: take no more, drain (unless ``drain=False``), stop the consumer, let the
        transaction in flight finish, stop the writer thread. The store stays open: its owner closes it.

        ``drain=False`` is an abort: batches still queued are dropped, and
        the ledger keeps its cursor, so re-delivery to a new service
        resumes exactly.
        """
        if self._refusal is None:  # a failure or an overload keeps its own, more telling, reason
            self._refusal = "the settlement service is closed"
        try:
            if drain and self._task is not None and not self._task.done():
                await self.drain()
        finally:
            if self._task is not None:
                self._task.cancel()
                await asyncio.wait({self._task})  # wait without re-raising its CancelledError
            # A cancelled consumer does not stop a commit already running in the writer thread:
            # wait for it (in a thread, so the loop does not block), so the store can be closed after.
            await asyncio.to_thread(self._writer.shutdown, wait=True, cancel_futures=True)

    async def __aenter__(self) -> SettlementService:
        self.start()
        return self

    async def __aexit__(self, kind: object, error: object, traceback: object) -> None:
        await self.close(drain=error is None)

    # -- consumer --------------------------------------------------------------------------

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        apply = self.settlement.apply
        limit = self.max_events_per_transaction
        while True:
            taken = [await queue.get()]
            size = len(taken[0])
            while size < limit and not queue.empty():
                batch = queue.get_nowait()
                taken.append(batch)
                size += len(batch)
            try:
                if self._failure is None:
                    events = taken[0] if len(taken) == 1 else list(chain.from_iterable(taken))
                    await loop.run_in_executor(self._writer, apply, events)
                    self.committed_takes += 1
                # After a failure the rest is only counted off, so drain() returns and reports it:
                # the ledger's cursor stays before the first event not applied.
            except Exception as error:  # a disk error, a sequence gap: stop applying, say why on drain
                self._failure = error
                self._refusal = f"settlement failed: {error}"
            finally:
                for _ in taken:
                    queue.task_done()


# -- reconciliation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReconciliationReport:
    """The outcome of :func:`reconcile`: ``ok`` when ``differences`` is empty."""

    ok: bool
    differences: list[str]
    settled_through_seq: int  # the ledger's cursor
    engine_seq: int  # the engine's last event seq
    accounts_checked: int
    totals: dict[str, int] = field(default_factory=dict)  # per asset: the ledger's total over all accounts

    def summary(self) -> list[str]:
        lines = [
            f"reconciliation {'OK' if self.ok else 'FAILED'}: {self.accounts_checked} accounts, "
            f"ledger settled through event seq {self.settled_through_seq}, engine at seq {self.engine_seq}"
        ]
        lines += [f"  total {asset}: {format_amount(asset, total)}" for asset, total in self.totals.items()]
        lines += [f"  difference: {difference}" for difference in self.differences]
        return lines


def reconcile(engine: Engine, store: LedgerStore) -> ReconciliationReport:
    """Compare the settled ledger with the engine's holdings; meaningful once the queue is drained.

    Checks (each failure is one line in ``differences``):

    1. the ledger has settled every event the engine emitted;
    2. the same accounts are open in both (the fee account is the engine's own);
    3. for every account and every asset (EUR and each instrument), the
       ledger's holding equals the engine's, and none is negative;
    4. for every asset, the total over all accounts, in the ledger and in
       the engine, equals everything deposited minus everything withdrawn
       or surrendered (retired): trading, fees and penalties only move
       assets between accounts (futures variation margin and deliveries too);
    5. with futures, every contract's positions net to zero across the
       accounts (each long lot is someone's short lot).
    """
    differences: list[str] = []
    assets = [CASH_ASSET, *engine.instruments]
    snapshot = store.snapshot()
    settled = snapshot.last_applied_seq
    engine_seq = engine.last_seq
    if settled != engine_seq:
        differences.append(
            f"the ledger has settled through event seq {settled}, the engine is at seq "
            f"{engine_seq}: drain the settlement queue before reconciling"
        )

    ledger = snapshot.balances
    ledger_accounts = set(snapshot.accounts)
    engine_balances = {account_id: engine.balances(account_id) for account_id in engine.account_ids()}
    engine_accounts = set(engine_balances)
    fee_account = engine.fee_account_id
    for account in sorted(engine_accounts - ledger_accounts - {fee_account}):
        differences.append(f"account {account!r} is open in the engine but not in the ledger")
    for account in sorted(ledger_accounts - engine_accounts):
        differences.append(f"account {account!r} is open in the ledger but not in the engine")

    every_account = sorted(engine_accounts | ledger_accounts | set(ledger))
    for account_id in every_account:
        held = ledger.get(account_id, {})
        for asset in assets:
            settled_amount = held.get(asset, 0)
            engine_amount = _holding(engine_balances.get(account_id), asset)
            if settled_amount != engine_amount:
                differences.append(
                    f"{account_id} {asset}: ledger {format_amount(asset, settled_amount)}, "
                    f"engine {format_amount(asset, engine_amount)}"
                )
            if settled_amount < 0:
                differences.append(
                    f"{account_id} {asset}: negative ledger holding {format_amount(asset, settled_amount)}"
                )
        for asset in sorted(set(held) - set(assets)):
            differences.append(f"{account_id} holds {asset!r} in the ledger, which the engine does not know")

    net_in = snapshot.net_movements
    totals = {}
    for asset in assets:
        ledger_total = totals[asset] = sum(held.get(asset, 0) for held in ledger.values())
        engine_total = sum(_holding(balances, asset) for balances in engine_balances.values())
        brought_in = net_in.get(asset, 0)
        for where, total in (("ledger", ledger_total), ("engine", engine_total)):
            if total != brought_in:
                differences.append(
                    f"{asset} is not conserved in the {where}: accounts hold "
                    f"{format_amount(asset, total)} in total, but "
                    f"{format_amount(asset, brought_in)} was deposited net of withdrawals "
                    f"and surrenders"
                )
    net_positions: dict[str, int] = {}
    for account_id in engine_balances:
        margin = engine.margin(account_id)
        for position in () if margin is None else margin.positions:
            net_positions[position.instrument] = net_positions.get(position.instrument, 0) + position.lots
    for contract, lots in sorted(net_positions.items()):
        if lots:
            differences.append(f"{contract}: positions net to {lots:+,} lots across the accounts, not zero")
    return ReconciliationReport(not differences, differences, settled, engine_seq, len(every_account), totals)


def _holding(balances: AccountBalances | None, asset: str) -> int:
    """What the engine's balances of an account (None: an account it does not know) hold of an asset."""
    if balances is None:
        return 0
    return balances.cash if asset == CASH_ASSET else balances.units.get(asset, 0)


# -- statements ----------------------------------------------------------------------------------


class UnknownAccount(LookupError):
    """Neither the engine nor the ledger knows the account."""


@dataclass(frozen=True, slots=True)
class Holding:
    """One asset of an account: settled holding, what open orders hold back, and what is left."""

    asset: str  # "EUR" (amounts in cents) or an instrument symbol (amounts in units)
    holding: int  # settled, from the ledger
    reserved: int  # held back by open orders, from the engine

    @property
    def available(self) -> int:
        return self.holding - self.reserved


@dataclass(frozen=True, slots=True)
class StatementTrade:
    """One side of a settled trade, as the account saw it (a self-trade gives two lines)."""

    seq: int
    trade_id: int
    side: Side
    instrument: str
    quantity: int  # lots
    price: int  # cents per unit
    units: int
    fee: int  # cents paid by this account for this side
    liquidity: str  # "maker", "taker" or "auction"
    cash: int  # signed cents: what this side moved in the account's cash, fee included


@dataclass(frozen=True, slots=True)
class AccountStatement:
    account: str
    settled_through_seq: int
    engine_seq: int
    holdings: list[Holding]
    trades: list[StatementTrade]
    fees_paid: int  # cents, over all the account's trades
    fees_paid_by_instrument: dict[str, int]
    fees_received: int  # cents; only the fee account receives fees


def statement(engine: Engine, store: LedgerStore, account: str) -> AccountStatement:
    """The account's settled holdings with the engine's reservations, its settled trades and its fees."""
    engine_account = engine.balances(account)
    if engine_account is None and account not in store.accounts():
        raise UnknownAccount(f"no account {account!r}")
    held = store.holdings_of(account)
    holdings = []
    for asset in [CASH_ASSET, *engine.instruments]:
        if engine_account is None:
            reserved = 0
        elif asset == CASH_ASSET:
            reserved = engine_account.reserved_cash
        else:
            reserved = engine_account.reserved_units.get(asset, 0)
        holdings.append(Holding(asset, held.get(asset, 0), reserved))

    lines: list[StatementTrade] = []
    fees_by_instrument: dict[str, int] = {}
    for trade in store.trades_of(account):
        notional = trade.price * trade.units
        sides = []
        if trade.buyer == account:
            sides.append(
                (Side.BUY, trade.buyer_fee, _liquidity(trade.aggressor_side, Side.BUY), -(notional + trade.buyer_fee))
            )
        if trade.seller == account:
            sides.append(
                (Side.SELL, trade.seller_fee, _liquidity(trade.aggressor_side, Side.SELL), notional - trade.seller_fee)
            )
        for side, fee, liquidity, cash in sides:
            lines.append(
                StatementTrade(
                    trade.seq,
                    trade.trade_id,
                    side,
                    trade.instrument,
                    trade.quantity,
                    trade.price,
                    trade.units,
                    fee,
                    liquidity,
                    cash,
                )
            )
            fees_by_instrument[trade.instrument] = fees_by_instrument.get(trade.instrument, 0) + fee

    fees_received = 0
    if account == engine.fee_account_id:
        fees_received = store.total_fees()
    return AccountStatement(
        account,
        store.last_applied_seq(),
        engine.last_seq,
        holdings,
        lines,
        sum(fees_by_instrument.values()),
        fees_by_instrument,
        fees_received,
    )


def _liquidity(aggressor_side: str, side: Side) -> str:
    """What one side of a ledger trade was: "taker" (its side aggressed), "maker", or "auction" (nobody did)."""
    if aggressor_side == AUCTION:
        return AUCTION
    return "taker" if aggressor_side == side else "maker"


def format_euros(cents: int) -> str:
    """Integer cents as euros with two decimals and thousands separators: 123456789 -> "1,234,567.89"."""
    return cents_to_eur(cents, thousands=True)


def format_amount(asset: str, amount: int) -> str:
    """An amount of an asset for people: "EUR 1,234.56" or "12,000 EUA"."""
    return f"EUR {format_euros(amount)}" if asset == CASH_ASSET else f"{amount:,} {asset}"


def format_statement(account_statement: AccountStatement) -> list[str]:
    """The statement as lines of text for the CLI; euros with two decimals, units with separators."""
    s = account_statement
    lines = [
        f"Statement of account {s.account}",
        f"settled through event seq {s.settled_through_seq} (engine at seq {s.engine_seq})",
    ]
    if s.settled_through_seq != s.engine_seq:
        lines.append(
            f"note: the ledger is {s.engine_seq - s.settled_through_seq} events behind the engine; "
            f"the latest trades may not show yet"
        )
    lines += ["", f"{'asset':<6} {'holding':>18} {'reserved':>18} {'available':>18}"]
    for holding in s.holdings:
        if holding.asset == CASH_ASSET:
            cells = [format_euros(amount) for amount in (holding.holding, holding.reserved, holding.available)]
        else:
            cells = [f"{amount:,}" for amount in (holding.holding, holding.reserved, holding.available)]
        lines.append(f"{holding.asset:<6} {cells[0]:>18} {cells[1]:>18} {cells[2]:>18}")
    lines.append("(EUR in euros; instruments in units, 1 unit = 1 tCO2e)")

    lines += ["", f"trades: {len(s.trades)}"]
    if s.trades:
        lines.append(
            f"{'seq':>8} {'trade':>7} {'side':<4} {'instr':<6} {'lots':>6} {'EUR/t':>10} "
            f"{'fee EUR':>10} {'role':<5} {'cash EUR':>16}"
        )
        for trade in s.trades:
            lines.append(
                f"{trade.seq:>8} {trade.trade_id:>7} {trade.side.name:<4} {trade.instrument:<6} "
                f"{trade.quantity:>6} {format_euros(trade.price):>10} {format_euros(trade.fee):>10} "
                f"{trade.liquidity:<5} {format_euros(trade.cash):>16}"
            )
    by_instrument = ", ".join(
        f"{symbol} {format_euros(fee)}" for symbol, fee in sorted(s.fees_paid_by_instrument.items())
    )
    lines.append(f"fees paid: EUR {format_euros(s.fees_paid)}" + (f" ({by_instrument})" if by_instrument else ""))
    if s.fees_received:
        lines.append(f"fees received: EUR {format_euros(s.fees_received)}")
    return lines
