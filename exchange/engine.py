"""The matching engine: commands in, events out, deterministically.

How this works
--------------
``Engine.handle(command)`` returns the list of events the command caused.
Commands arrive well-formed (they check their own fields when built, see
:mod:`exchange.commands`); the engine checks what depends on its state. The
pipeline for a new order is, in order:

    1. instrument  known, quantity and price within its rules  -> OrderRejected (1xx)
       phase       closed (126), halted (127); in a call only orders that can wait (302)
    2. options     stop price, display, expire date, post-only  -> OrderRejected (1xx, 3xx)
    3. account     opened (under pre-trade risk), client order id not used today
                                                               -> OrderRejected (201, 401)
    4. risk        band, order value limit, cash or units to hold back
                                                               -> OrderRejected (2xx)
    5. accept      the next order id is given out, the hold is taken  -> OrderAccepted
    6. match       ``matching.execute``: trades (each moving holdings and fees), then the rest
                   of the order rests or is cancelled (OrderCanceled); in a call the order rests
                   unmatched; an order that would trade beyond the volatility band interrupts
                   trading instead (TradingPhaseChanged)
    7. stops       released by the new last price              -> StopTriggered, and 6. again
    8. depth       every price level the command changed       -> LevelChanged, once per level

Trading phases (``SetTradingPhase``, docs/TRADING_PHASES.md) and EU ETS
primary auctions (``exchange.primary_auction``, docs/PRIMARY_AUCTIONS.md) go through
the same command table; leaving a call runs its auction (``exchange.call_auction``).

Every other command has the same shape: one that cannot be carried out
changes nothing and yields one RequestRejected (its handler returns the rule
it breaks and the engine refuses it, :mod:`exchange.refusals`). No command
raises; an exception escaping ``handle`` is a bug.

Who does what: the engine wires the parts and routes each command to the
one that owns it: :class:`~exchange.order_commands.OrderCommands` (new order,
cancel, replace, mass cancel, end of day), the books
(:class:`~exchange.book.OrderBook`, with ``exchange.call_auction`` and
``exchange.stops``), :class:`~exchange.accounts.AccountCommands` (open, fund,
settings), :class:`~exchange.compliance.Compliance` and
:class:`~exchange.primary_auction.PrimaryAuctions`; it keeps the kill switch
and the trading phases itself. All of them number their events from one
:class:`~exchange.accounts.Counters`. The shell asks the engine about its
state through the read API below (answers in :mod:`exchange.views`); the
compliance and primary-auction parts reach accounts through its hooks.

The engine holds no clock and draws no random numbers; every timestamp comes
with a command. Replaying the same commands gives the same events and the
same :meth:`Engine.state_hash`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from mypy_extensions import mypyc_attr

from .accounts import CLOSED, Account, AccountCommands, Counters
from .book import OrderBook
from .call_auction import announce_indicative, uncross
from .clearing.desk import FuturesDesk
from .clearing.terms import FuturesConfig
from .codes import RejectCode
from .commands import (
    AdmitBidder,
    BlockAccount,
    CancelOrder,
    ClearPrimaryAuction,
    ComplianceDeadline,
    Deposit,
    EndOfDay,
    ListFutures,
    MassCancel,
    ModifyBid,
    NewOrder,
    OpenAccount,
    OpenPrimaryAuction,
    OpenSettlementWindow,
    RecordAllocation,
    RecordEmissions,
    RegisterInstallation,
    ReplaceOrder,
    ScheduleReached,
    SetSelfTradePrevention,
    SetTradingPhase,
    ShiftSchedule,
    SubmitBid,
    Surrender,
    UnblockAccount,
    Withdraw,
    WithdrawBid,
)
from .compliance import Compliance, ComplianceConfig, ComplianceReportRow, compliance_report
from .enums import CALL_PHASES, CancelReason, Side, TradingPhase
from .events import AccountBlocked, SettlementWindowOpened, TradingPhaseChanged
from .futures_commands import CloseOutAccount, ReportBlockTrade
from .instruments import Instrument
from .order_commands import OrderCommands
from .orders import Order, by_order_id
from .primary_auction import PrimaryAuction, PrimaryAuctions
from .refusals import request_rejected
from .schedule_marks import ScheduleMarks
from .views import (
    AccountBalances,
    AccountSettings,
    BidView,
    EngineCounts,
    InstallationView,
    MarginView,
    PrimaryAuctionView,
)

CONTINUOUS: Final = TradingPhase.CONTINUOUS
CLOSED_PHASE: Final = TradingPhase.CLOSED
HALTED: Final = TradingPhase.HALTED
# The phase changes SetTradingPhase may make (a volatility interruption is entered by the engine alone).
PHASE_CHANGES: Final = {
    TradingPhase.CLOSED: {TradingPhase.OPENING_CALL, CONTINUOUS, HALTED},
    TradingPhase.OPENING_CALL: {CONTINUOUS, CLOSED_PHASE, HALTED},
    CONTINUOUS: {TradingPhase.CLOSING_CALL, CLOSED_PHASE, HALTED},
    TradingPhase.CLOSING_CALL: {CLOSED_PHASE, HALTED},
    # (closed: the day's close may come during an interruption; its call ends in the auction like any other)
    TradingPhase.VOLATILITY_INTERRUPTION: {CONTINUOUS, TradingPhase.CLOSING_CALL, CLOSED_PHASE, HALTED},
    HALTED: {CLOSED_PHASE, TradingPhase.OPENING_CALL, CONTINUOUS},
}
DEFAULT_FEE_ACCOUNT: Final = "carbonx-fees"


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled in snapshots (docs/PERFORMANCE.md)
class Engine:
    """All order books, the accounts (holdings, holds, client order ids), compliance and the sequence counters."""

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        *,
        pre_trade_risk: bool = True,
        fee_account: str = DEFAULT_FEE_ACCOUNT,
        compliance: ComplianceConfig | None = None,
        futures: FuturesConfig | None = None,
    ) -> None:
        """An engine for these instruments.

        With ``pre_trade_risk`` (the exchange's way) accounts must be opened
        and funded through commands, every order holds back what it may cost
        or deliver, and every fill moves holdings and fees. Without it the
        engine only matches: accounts open on first use and hold nothing
        (for replaying order flow in research, and for measuring what the
        risk path costs).

        ``compliance``: the EU ETS rules of each year (default: nothing
        counts); see :mod:`exchange.compliance`.

        ``futures``: the futures series listed and cleared (``ListFutures``
        lists each day's contracts; :mod:`exchange.clearing`); they need
        pre-trade risk, since margin is what a futures order holds.
        """
        if futures is not None and not pre_trade_risk:
            raise ValueError("futures need pre-trade risk: a futures order holds margin")
        self.instruments = dict(instruments)
        self.counters = Counters()
        self.open_orders: dict[int, Order] = {}  # every open order (resting or waiting stop) by id
        self.accounts: dict[str, Account] = {}
        fees = None
        if pre_trade_risk:
            fees = self.accounts[fee_account] = Account(fee_account, self.instruments)
        self.fee_account = fees
        self.books = {
            symbol: OrderBook(instrument, self.counters, self.open_orders, fees)
            for symbol, instrument in self.instruments.items()
        }
        self._book_list = list(self.books.values())
        # The collaborators, each owning its commands (their handlers append events or return a reject code):
        self.order_commands = OrderCommands(self.books, self.accounts, self.open_orders, self.counters, pre_trade_risk)
        self.account_commands = AccountCommands(self.accounts, self.instruments, self.counters, pre_trade_risk)
        self.compliance = Compliance(self, compliance)  # installations, obligations, retired units
        self.primary = PrimaryAuctions(self)  # EU ETS primary auctions: bids, clearing, carry-over
        self.schedule = ScheduleMarks(self.counters, self.order_commands)  # how far the trading calendar has come
        self.futures = None if futures is None else FuturesDesk(self, futures)  # listing, clearing, delivery
        orders, accounts = self.order_commands, self.account_commands
        self._handlers: dict[type, Callable[[Any, list], RejectCode | None]] = {
            # (NewOrder and CancelOrder, the hot path, are dispatched before the table)
            ReplaceOrder: orders.replace_order,
            MassCancel: orders.mass_cancel,
            EndOfDay: self._end_of_day,
            BlockAccount: self.block_account,
            SetTradingPhase: self._set_trading_phase,
            OpenSettlementWindow: self._open_settlement_window,
            ScheduleReached: self.schedule.reached,
            ShiftSchedule: self.schedule.shift,
            UnblockAccount: accounts.unblock_account,
            SetSelfTradePrevention: accounts.set_self_trade_prevention,
            OpenAccount: accounts.open_account,
            Deposit: self._deposit,
            Withdraw: accounts.withdraw,
            RegisterInstallation: self.compliance.register_installation,
            RecordAllocation: self.compliance.record_allocation,
            RecordEmissions: self.compliance.record_emissions,
            Surrender: self.compliance.surrender,
            ComplianceDeadline: self.compliance.deadline,
            OpenPrimaryAuction: self.primary.open,
            SubmitBid: self.primary.submit_bid,
            ModifyBid: self.primary.modify_bid,
            WithdrawBid: self.primary.withdraw_bid,
            ClearPrimaryAuction: self.primary.clear,
            AdmitBidder: self.primary.admit,
        }
        self._handlers.update(_futures_handlers(self.futures))

    @property
    def pre_trade_risk(self) -> bool:
        """True when the engine keeps holdings and checks orders against them (it then has a fee account)."""
        return self.fee_account is not None

    @property
    def last_closed_date(self) -> int | None:
        """Trading date (YYYYMMDD) of the last end of day; None before the first."""
        return self.order_commands.last_closed_date

    # -- read API: questions the shell asks, answered with copies (exchange.views) --------
    # An unknown symbol in phase, last_price and depth is the caller's bug (KeyError): ask has_instrument.

    @property
    def last_seq(self) -> int:
        """Number of the last event emitted (0 before the first)."""
        return self.counters.seq

    def counts(self) -> EngineCounts:
        counters = self.counters
        return EngineCounts(
            counters.seq, counters.order_id, len(self.open_orders), counters.trade_id, len(self.accounts)
        )

    @property
    def fee_account_id(self) -> str | None:
        """The account fees are paid into; None without pre-trade risk."""
        return None if self.fee_account is None else self.fee_account.account_id

    def has_account(self, account_id: str) -> bool:
        return account_id in self.accounts

    def account_ids(self) -> list[str]:
        return sorted(self.accounts)

    def balances(self, account_id: str) -> AccountBalances | None:
        """The account's holdings and holds; None for an account the engine does not know."""
        account = self.accounts.get(account_id)
        if account is None:
            return None
        return AccountBalances(
            account.cash, account.reserved_cash, dict(account.units), dict(account.reserved_units), account.blocked
        )

    def account_settings(self, account_id: str) -> AccountSettings | None:
        account = self.accounts.get(account_id)
        if account is None:
            return None
        settings = (account.self_trade_prevention, account.order_value_limit, account.blocked)
        return AccountSettings(*settings, account_id in self.primary.admitted)

    def has_instrument(self, symbol: str) -> bool:
        return symbol in self.books

    def phase(self, symbol: str) -> TradingPhase:
        return self.books[symbol].phase

    def schedule_done(self, trading_date: int) -> frozenset[str]:
        """The trading calendar's points of an open trading day already done (exchange.schedule_marks)."""
        return frozenset(self.schedule.done.get(trading_date, ()))

    def schedule_dates(self) -> list[int]:
        """The trading days (YYYYMMDD) with schedule points done and no end of day yet, oldest first."""
        return sorted(self.schedule.done)

    def schedule_extension(self, trading_date: int) -> int:
        """Seconds the operator extended a trading day's closing points by (0: none)."""
        return self.schedule.shifts.get(trading_date, 0)

    def instrument(self, symbol: str) -> Instrument | None:
        """The terms of an instrument trading now: spot, or a futures contract listed; None for an unknown one."""
        book = self.books.get(symbol)
        return None if book is None else book.instrument

    def margin(self, account_id: str) -> MarginView | None:
        """An account's futures positions and margin; None for an unknown account or without futures."""
        account = self.accounts.get(account_id)
        return None if account is None or self.futures is None else self.futures.margin_view(account)

    @property
    def lists_futures(self) -> bool:
        """Whether futures are configured (contracts listed by ListFutures), whether or not any is listed now."""
        return self.futures is not None

    def futures_contracts(self, underlying: str | None = None, with_books: bool = False) -> list[str]:
        """Futures listed now (of an underlying, or all), nearest first, then (``with_books``) TAS books and spreads."""
        return [] if self.futures is None else self.futures.contracts_of(underlying, with_books)

    def underlying(self, symbol: str) -> str | None:
        """The spot instrument a listed futures contract delivers; None for any other symbol."""
        contract = None if self.futures is None else self.futures.contracts.get(symbol)
        return None if contract is None else contract.underlying

    def settlement_price(self, symbol: str) -> int | None:
        """The settlement price fixed at the last end of day (cents), None before the first."""
        return self.books[symbol].settlement_price

    def last_price(self, symbol: str) -> int | None:
        """Price of the instrument's last trade (cents); None before its first."""
        return self.books[symbol].last_price

    def depth(self, symbol: str, side: Side, levels: int | None = None) -> list[tuple[int, int, int]]:
        """The best ``levels`` price levels of one side (all with None): (price, shown lots, orders), best first."""
        return self.books[symbol].depth(side, levels)

    def primary_auction(self, auction_id: str) -> PrimaryAuctionView | None:
        auction = self.primary.auctions.get(auction_id)
        return None if auction is None else _auction_view(auction)

    def primary_auction_instrument(self, auction_id: str) -> str | None:
        """The instrument a primary auction sells (None: no such auction), without copying its bids."""
        auction = self.primary.auctions.get(auction_id)
        return None if auction is None else auction.instrument

    def primary_auctions(self) -> list[PrimaryAuctionView]:
        """Every primary auction ever opened, decided ones included, by auction id."""
        auctions = self.primary.auctions
        return [_auction_view(auctions[auction_id]) for auction_id in sorted(auctions)]

    def installation(self, account_id: str) -> InstallationView | None:
        """The account as an EU ETS installation; None if it is not registered as one."""
        installation = self.compliance.installations.get(account_id)
        if installation is None:
            return None
        return InstallationView(
            installation.account_id, installation.credit_limit_bps, tuple(sorted(installation.years))
        )

    @property
    def compliance_config(self) -> ComplianceConfig:
        """What counts for compliance and what a missing tonne costs (fixed for the engine's life)."""
        return self.compliance.config

    def compliance_report(self, year: int | None = None, **page: Any) -> list[ComplianceReportRow]:
        """Per year and installation (``page``: :func:`~exchange.compliance.compliance_report`'s filters)."""
        return compliance_report(self.compliance, year, **page)

    def reference_price(self, symbol: str) -> int:
        """Price the instrument's collar and bands are centred on: its last trade, else its configured reference."""
        return self.books[symbol].reference_price()

    # -- hooks: what compliance and primary auctions, which move holdings, use of the engine --

    def account(self, account_id: str) -> Account:
        """An account the engine knows (a KeyError for another is the caller's bug)."""
        return self.accounts[account_id]

    def holding_account(self, account_id: str) -> Account | None:
        """The account whose holdings a command moves; None if unknown or without pre-trade risk (no holdings)."""
        return self.accounts.get(account_id) if self.fee_account is not None else None

    def system_account(self, account_id: str) -> Account:
        """One of the exchange's own accounts (the penalty account), opened on first use."""
        account = self.accounts.get(account_id)
        if account is None:
            account = self.accounts[account_id] = Account(account_id, self.instruments)
        return account

    # -- entry point ---------------------------------------------------------------------

    def handle(self, command: object) -> list:
        """Carry out one command and return the events it caused, in order.

        The command's own events come first; the price levels it changed are
        announced after them (LevelChanged, once per level, in its final state).
        """
        events: list = []
        # The two commands of the hot path skip the table, and touch one book only (the one they name, stops
        # and all): only that book's levels are announced, without a look at the others.
        if type(command) is NewOrder:
            book = self.order_commands.new_order(command, events)
        elif type(command) is CancelOrder:
            book = self.order_commands.cancel_order(command, events)
        else:
            self._handle_other(command, events)
            self._flush_level_changes(events, command)
            return events
        if book is not None and (book.bids.changed or book.asks.changed):
            ts = command.ts
            if book.phase in CALL_PHASES:
                announce_indicative(book, events, ts)
            book.flush_level_changes(events, ts)
        return events

    def handle_all(self, commands: Iterable[object], command_ends: list[int] | None = None) -> list:
        """Carry out a batch of commands in order; return all their events in one list.

        The same as :meth:`handle` on each command, except that price levels
        are announced once for the whole batch, after its last command: the
        market-data feed publishes conflated depth, so a level that changed a
        hundred times in a batch is one event, not a hundred. Orders, trades
        and every other event are exactly as one by one.

        ``command_ends``, if given, receives after each command the number of
        events so far: command i caused ``events[ends[i-1]:ends[i]]`` (the
        gateway answers each request from its own slice); the level changes
        follow the last end.
        """
        events: list = []
        new_order = self.order_commands.new_order
        cancel_order = self.order_commands.cancel_order
        mark = None if command_ends is None else command_ends.append
        command = None
        for command in commands:
            if type(command) is NewOrder:
                new_order(command, events)
            elif type(command) is CancelOrder:
                cancel_order(command, events)
            else:
                self._handle_other(command, events)
            if mark is not None:
                mark(len(events))
        self._flush_level_changes(events, command)
        return events

    def _flush_level_changes(self, events: list, last_command: object) -> None:
        for book in self._book_list:
            if book.bids.changed or book.asks.changed:
                ts = getattr(last_command, "ts", 0)
                ts = ts if type(ts) is int else 0
                if book.phase in CALL_PHASES:
                    announce_indicative(book, events, ts)
                book.flush_level_changes(events, ts)

    def _handle_other(self, command: object, events: list) -> None:
        """Every command but a new order or a cancel: its handler appends its events, or says which rule it
        breaks, and the command is refused here (one RequestRejected; nothing else changed)."""
        handler = self._handlers.get(type(command))
        code = RejectCode.UNKNOWN_COMMAND if handler is None else handler(command, events)
        if code is not None:
            events.append(request_rejected(self.counters.next_seq(), command, code))

    def block_account(self, cmd: BlockAccount, events: list) -> RejectCode | None:
        """The kill switch (also the first step of a futures close-out): blocked, its orders and bids gone."""
        account = self.accounts.get(cmd.account)
        if account is None:
            return RejectCode.UNKNOWN_ACCOUNT
        account.blocked = True
        canceled = self.order_commands.cancel_all(account, None, CancelReason.KILL_SWITCH, events, cmd.ts)
        if self.pre_trade_risk:
            self.primary.withdraw_all(cmd.account, cmd.ts, events)  # its sealed bids go too
        seq = self.counters.next_seq()
        events.append(AccountBlocked(seq, cmd.ts, cmd.account, canceled))
        return None

    # -- trading phases -----------------------------------------------------------------------

    def _end_of_day(self, cmd: EndOfDay, events: list) -> RejectCode | None:
        last_closed = self.order_commands.last_closed_date
        if last_closed is not None and cmd.trading_date <= last_closed:
            return RejectCode.TRADING_DATE_NOT_AFTER_LAST
        if self.futures is not None:  # settled before the spot close: at the day's last quotes, before DAY orders go
            self.futures.end_of_day(cmd, events)
        code = self.order_commands.end_of_day(cmd, events)
        if code is None:
            self.schedule.forget_through(cmd.trading_date)
        return code

    def _deposit(self, cmd: Deposit, events: list) -> RejectCode | None:
        code = self.account_commands.deposit(cmd, events)
        if code is None and self.futures is not None:
            self.futures.call_met(self.accounts[cmd.account], cmd.ts, events)
        return code

    def add_book(self, book: OrderBook) -> None:
        """A new instrument's book (a futures contract listed)."""
        self.books[book.symbol] = book
        self._book_list = list(self.books.values())

    def remove_book(self, symbol: str) -> None:
        """An instrument gone (a futures contract expired): its book, with no order left in it."""
        del self.books[symbol]
        self._book_list = list(self.books.values())

    def _open_settlement_window(self, cmd: OpenSettlementWindow, events: list) -> RejectCode | None:
        book = self.books.get(cmd.instrument)
        if book is None:
            return RejectCode.UNKNOWN_INSTRUMENT
        if book.settling:  # refused: a second opening must not forget what the window has counted
            return RejectCode.SETTLEMENT_WINDOW_OPEN
        book.settling = True
        events.append(SettlementWindowOpened(self.counters.next_seq(), cmd.ts, book.symbol))
        return None

    def _set_trading_phase(self, cmd: SetTradingPhase, events: list) -> RejectCode | None:
        book = self.books.get(cmd.instrument)
        if book is None:
            return RejectCode.UNKNOWN_INSTRUMENT
        previous, phase = book.phase, cmd.phase
        if phase not in PHASE_CHANGES[previous] or (cmd.from_phase is not None and cmd.from_phase is not previous):
            return RejectCode.PHASE_CHANGE_NOT_ALLOWED
        ts = cmd.ts
        if (phase is CONTINUOUS or phase is CLOSED_PHASE) and (previous in CALL_PHASES or previous is HALTED):
            uncross(book, events, ts)  # a halt entered from a call may hold a crossed book: it ends the same way
        book.phase = phase
        seq = self.counters.next_seq()
        events.append(TradingPhaseChanged(seq, ts, book.symbol, phase, previous, "operator", None, None))
        if phase is CONTINUOUS and book.stops.count and book.last_price is not None:
            book.release_stops(events, ts)
        return None

    # -- state -------------------------------------------------------------------------------

    def state_hash(self) -> str:
        """SHA-256 of the engine's logical state, independent of how its structures are laid out.

        Covers every book (levels in priority, orders with all their terms),
        waiting stops, last prices, the accounts' settings and client order ids,
        and the counters. Dead entries, compaction and dict or list internals
        do not enter it.
        """
        digest = hashlib.sha256()
        for line in self.state_lines():
            digest.update(line.encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def state_lines(self) -> Iterable[str]:
        """The canonical text the state hash is taken over, one fact a line."""
        return _state_lines(self)


def _no_futures(command: object, events: list) -> RejectCode:
    """The futures commands of an engine without futures."""
    return RejectCode.NO_FUTURES


def _futures_handlers(desk: FuturesDesk | None) -> dict[type, Callable[[Any, list], RejectCode | None]]:
    """The futures commands' handlers: the desk's, or refusals when the engine has no futures."""
    kinds = (ListFutures, ReportBlockTrade, CloseOutAccount)
    if desk is None:
        return dict.fromkeys(kinds, _no_futures)
    return dict(zip(kinds, (desk.list_futures, desk.blocks.report, desk.close_out), strict=True))


def _state_lines(engine: Engine) -> Iterator[str]:
    """What :meth:`Engine.state_lines` answers (a function of its own: the class stays within the layout's limit)."""
    c = engine.counters
    yield f"counters seq={c.seq} order_id={c.order_id} trade_id={c.trade_id} closed={engine.last_closed_date}"
    schedule = engine.schedule.state_line()
    if schedule is not None:
        yield schedule
    for symbol in sorted(engine.books):
        book = engine.books[symbol]
        line = f"book {symbol} last={book.last_price} phase={book.phase}"
        # Written only once there is a settlement or a window, so that command streams that never had one
        # hash as they always did (the cross-checks keep hashes of such streams).
        if book.settlement_price is not None or book.settling:
            line += f" settlement={book.settlement_price} window={book.settling}:{book.window_value}/{book.window_lots}"
        yield line
        for side in (Side.BUY, Side.SELL):
            for order in book.resting_orders(side):
                yield "rest " + _order_line(order)
        for order in sorted(book.waiting_stops(), key=by_order_id):
            yield "stop " + _order_line(order)
    for account_id in sorted(engine.accounts):
        account = engine.accounts[account_id]
        yield (
            f"account {account_id} stp={account.self_trade_prevention} limit={account.order_value_limit} "
            f"blocked={account.blocked} "
            + ("margin_called " if account.margin_called else "")
            + f"cash={account.cash} reserved={account.reserved_cash} "
            + " ".join(
                f"{symbol}={account.units[symbol]}/{account.reserved_units[symbol]}" for symbol in sorted(account.units)
            )
        )
        for clid in sorted(account.orders, key=repr):
            named = account.orders[clid]
            yield f"clid {clid!r} {'closed' if named is CLOSED else named.order_id}"
    yield from engine.compliance.state_lines()
    if engine.futures is not None:
        yield from engine.futures.state_lines()
    yield from engine.primary.state_lines()


def _auction_view(auction: PrimaryAuction) -> PrimaryAuctionView:
    bids = tuple(
        BidView(bid.bid_id, bid.account, bid.price, bid.volume, bid.held, bid.number)
        for bid in sorted(auction.bids.values(), key=lambda bid: bid.number)
    )
    return PrimaryAuctionView(
        auction.auction_id,
        auction.instrument,
        auction.auctioneer,
        auction.volume,
        auction.closes_at,
        auction.seed,
        auction.outcome,
        bids,
    )


def _order_line(order: Order) -> str:
    return (
        f"{order.order_id} {order.account.account_id} {order.client_order_id!r} {order.side} "
        f"{order.order_type} {order.time_in_force} p={order.price} q={order.quantity} "
        f"leaves={order.leaves} shown={order.visible} display={order.display_quantity} "
        f"stop={order.stop_price} exp={order.expire_date} po={order.post_only} "
        f"stp={order.self_trade_prevention} ts={order.ts} reserve={order.reserve_per_lot}"
    )
