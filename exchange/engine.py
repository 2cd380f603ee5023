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
    6. match       ``OrderBook.execute``: trades (each moving holdings and fees), then the rest
                   of the order rests or is cancelled (OrderCanceled); in a call the order rests
                   unmatched; an order that would trade beyond the volatility band interrupts
                   trading instead (TradingPhaseChanged)
    7. stops       released by the new last price              -> StopTriggered, and 6. again
    8. depth       every price level the command changed       -> LevelChanged, once per level

Trading phases (``SetTradingPhase``, docs/TRADING_PHASES.md) and EU ETS
primary auctions (``exchange.primary_auction``, docs/PRIMARY_AUCTIONS.md) go through
the same command table; leaving a call runs its auction (``exchange.call_auction``).

Cancel, replace, mass cancel and end of day have the same shape: a command
that cannot be carried out changes nothing and yields one RequestRejected. No
command raises; an exception escaping ``handle`` is a bug.

The engine holds no clock and draws no random numbers; every timestamp comes
with a command. Replaying the same commands gives the same events and the
same :meth:`Engine.state_hash`.

The new-order and cancel paths are written for speed (at about 7 ns a
bytecode, every line of them shows in the benchmark): the common case is
decided with one combined test and anything unusual is handed to a helper
that works out the exact reject code.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Iterable, Mapping

from .accounts import CLOSED, Account, Counters
from .book import Order, OrderBook
from .codes import RejectCode
from .commands import (CASH_ASSET, BlockAccount, CancelOrder, ComplianceDeadline, Deposit, EndOfDay, MassCancel, NewOrder,
                       OpenAccount, RecordEmissions, RegisterInstallation, ReplaceOrder, SetSelfTradePrevention,
                       SetTradingPhase, Surrender, UnblockAccount, Withdraw)
from .commands import ClearPrimaryAuction, ModifyBid, OpenPrimaryAuction, SubmitBid, WithdrawBid
from .compliance import Compliance, ComplianceConfig, ComplianceReportRow, compliance_report
from .enums import CALL_PHASES, CancelReason, OrderType, Side, TimeInForce, TradingPhase
from .events import (AccountBlocked, AccountOpened, AccountUnblocked, RequestRejected, Deposited, MassCancelCompleted, OrderAccepted, OrderExpired,
                     OrderRejected, OrderReplaced, SelfTradePreventionSet, TradingDayClosed, TradingPhaseChanged, Withdrawn)
from .instruments import Instrument
from .primary_auction import PrimaryAuction, PrimaryAuctions
from .refusals import order_rejected, order_request_rejected, request_rejected
from .views import (AccountBalances, AccountSettings, BidView, EngineCounts, InstallationView,
                    PrimaryAuctionView)

BUY = Side.BUY
DAY = TimeInForce.DAY
GTD = TimeInForce.GTD
IOC = TimeInForce.IOC
FOK = TimeInForce.FOK
USER = CancelReason.USER
CONTINUOUS = TradingPhase.CONTINUOUS
CLOSED_PHASE = TradingPhase.CLOSED
HALTED = TradingPhase.HALTED
# The phase changes SetTradingPhase may make (a volatility interruption is entered by the engine alone).
PHASE_CHANGES = {
    TradingPhase.CLOSED: {TradingPhase.OPENING_CALL, CONTINUOUS, HALTED},
    TradingPhase.OPENING_CALL: {CONTINUOUS, CLOSED_PHASE, HALTED},
    CONTINUOUS: {TradingPhase.CLOSING_CALL, CLOSED_PHASE, HALTED},
    TradingPhase.CLOSING_CALL: {CLOSED_PHASE, HALTED},
    TradingPhase.VOLATILITY_INTERRUPTION: {CONTINUOUS, TradingPhase.CLOSING_CALL, HALTED},
    HALTED: {CLOSED_PHASE, TradingPhase.OPENING_CALL, CONTINUOUS},
}
DEFAULT_FEE_ACCOUNT = "carbonx-fees"
_MISSING = object()  # "no such client order id", distinct from CLOSED (None)
_new = tuple.__new__


class Engine:
    """All order books of the venue, the accounts (holdings, holds, client order ids), compliance, and the
    sequence counters."""

    def __init__(self, instruments: Mapping[str, Instrument], *, pre_trade_risk: bool = True,
                 fee_account: str = DEFAULT_FEE_ACCOUNT, compliance: ComplianceConfig | None = None) -> None:
        """An engine for these instruments.

        With ``pre_trade_risk`` (the exchange's way) accounts must be opened
        and funded through commands, every order holds back what it may cost
        or deliver, and every fill moves holdings and fees. Without it the
        engine only matches: accounts open on first use and hold nothing
        (for replaying order flow in research, and for measuring what the
        risk path costs).

        ``compliance`` says which instruments count for EU ETS compliance
        and what a missing tonne costs (default: none count; EUR 100); see
        :mod:`exchange.compliance`.
        """
        self.instruments = dict(instruments)
        self.counters = Counters()
        self.open_orders: dict[int, Order] = {}  # every open order (resting or waiting stop) by id
        self.accounts: dict[str, Account] = {}
        fees = None
        if pre_trade_risk:
            fees = self.accounts[fee_account] = Account(fee_account, self.instruments)
        self.fee_account = fees
        self.books = {symbol: OrderBook(instrument, self.counters, self.open_orders, fees)
                      for symbol, instrument in self.instruments.items()}
        self._book_list = list(self.books.values())
        self.last_closed_date: int | None = None  # trading date of the last EndOfDay
        self.compliance = Compliance(self, compliance)  # installations, obligations, retired units
        self.primary = PrimaryAuctions(self)  # EU ETS primary auctions: bids, clearing, carry-over
        self._handlers: dict[type, Callable] = {  # NewOrder and CancelOrder are dispatched before the table
            ReplaceOrder: self._replace_order,
            MassCancel: self._mass_cancel,
            BlockAccount: self._block_account,
            UnblockAccount: self._unblock_account,
            SetSelfTradePrevention: self._set_self_trade_prevention,
            SetTradingPhase: self._set_trading_phase,
            EndOfDay: self._end_of_day,
            OpenAccount: self._open_account,
            Deposit: self._deposit,
            Withdraw: self._withdraw,
            RegisterInstallation: self.compliance.register_installation,
            RecordEmissions: self.compliance.record_emissions,
            Surrender: self.compliance.surrender,
            ComplianceDeadline: self.compliance.deadline,
            OpenPrimaryAuction: self.primary.open,
            SubmitBid: self.primary.submit_bid,
            ModifyBid: self.primary.modify_bid,
            WithdrawBid: self.primary.withdraw_bid,
            ClearPrimaryAuction: self.primary.clear,
        }

    @property
    def pre_trade_risk(self) -> bool:
        """True when the engine keeps holdings and checks orders against them (it then has a fee account)."""
        return self.fee_account is not None

    # -- read API: questions the shell asks, answered with copies (exchange.views) --------
    # An unknown symbol in phase, last_price and depth is the caller's bug (KeyError): ask has_instrument.

    @property
    def last_seq(self) -> int:
        """Number of the last event emitted (0 before the first)."""
        return self.counters.seq

    def counts(self) -> EngineCounts:
        counters = self.counters
        return EngineCounts(counters.seq, counters.order_id, len(self.open_orders), counters.trade_id,
                            len(self.accounts))

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
        return AccountBalances(account.cash, account.reserved_cash, dict(account.units),
                               dict(account.reserved_units), account.blocked)

    def account_settings(self, account_id: str) -> AccountSettings | None:
        account = self.accounts.get(account_id)
        if account is None:
            return None
        return AccountSettings(account.self_trade_prevention, account.order_value_limit, account.blocked)

    def has_instrument(self, symbol: str) -> bool:
        return symbol in self.books

    def phase(self, symbol: str) -> TradingPhase:
        return self.books[symbol].phase

    def last_price(self, symbol: str) -> int | None:
        """Price of the instrument's last trade (cents); None before its first."""
        return self.books[symbol].last_price

    def depth(self, symbol: str, side: Side, levels: int | None = None) -> list[tuple[int, int, int]]:
        """The best ``levels`` price levels of one side (all with None): (price, shown lots, orders), best first."""
        return self.books[symbol].depth(side, levels)

    def primary_auction(self, auction_id: str) -> PrimaryAuctionView | None:
        auction = self.primary.auctions.get(auction_id)
        return None if auction is None else _auction_view(auction)

    def primary_auctions(self) -> list[PrimaryAuctionView]:
        """Every primary auction ever opened, decided ones included, by auction id."""
        auctions = self.primary.auctions
        return [_auction_view(auctions[auction_id]) for auction_id in sorted(auctions)]

    def installation(self, account_id: str) -> InstallationView | None:
        """The account as an EU ETS installation; None if it is not registered as one."""
        installation = self.compliance.installations.get(account_id)
        if installation is None:
            return None
        return InstallationView(installation.account_id, installation.credit_limit_bps,
                                tuple(sorted(installation.years)))

    @property
    def compliance_config(self) -> ComplianceConfig:
        """What counts for compliance and what a missing tonne costs (fixed for the engine's life)."""
        return self.compliance.config

    def compliance_report(self, year: int | None = None) -> list[ComplianceReportRow]:
        """Per year (or the one given), per installation: obligation, surrendered, shortfall, penalty."""
        return compliance_report(self.compliance, year)

    def reference_price(self, symbol: str) -> int:
        """Price the instrument's collar and bands are centred on: its last trade, else its configured reference."""
        return self.books[symbol].reference_price()

    # -- hooks: what compliance and primary auctions, which move holdings, use of the engine --

    def account(self, account_id: str) -> Account:
        """An account the engine knows (a KeyError for another is the caller's bug)."""
        return self.accounts[account_id]

    def holding_account(self, account_id: str) -> Account | None:
        """The account whose holdings a command moves; None if the engine does not know it or keeps no holdings
        (without pre-trade risk accounts hold nothing, so nothing can be surrendered, auctioned or paid)."""
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
        kind = command.__class__
        if kind is NewOrder:  # the two commands of the hot path skip the table
            self._new_order(command, events)
        elif kind is CancelOrder:
            self._cancel_order(command, events)
        else:
            self._handle_other(command, events)
        self._flush_level_changes(events, command)
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
        new_order = self._new_order
        cancel_order = self._cancel_order
        mark = None if command_ends is None else command_ends.append
        command = None
        for command in commands:
            kind = command.__class__
            if kind is NewOrder:
                new_order(command, events)
            elif kind is CancelOrder:
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
                    book.announce_indicative(events, ts)
                book.flush_level_changes(events, ts)

    def _handle_other(self, command: object, events: list) -> None:
        """Every command but a new order or a cancel: its handler appends its events, or says which rule it
        breaks, and the command is refused here (one RequestRejected; nothing else changed)."""
        handler = self._handlers.get(command.__class__)
        code = RejectCode.UNKNOWN_COMMAND if handler is None else handler(command, events)
        if code is not None:
            events.append(request_rejected(self.counters.next_seq(), command, code))

    # -- new orders ----------------------------------------------------------------------

    def _new_order(self, cmd: NewOrder, events: list) -> None:
        book = self.books.get(cmd.instrument)
        if book is None:
            events.append(self._order_rejected(cmd, RejectCode.UNKNOWN_INSTRUMENT))
            return
        instrument = book.instrument
        quantity = cmd.quantity
        price = cmd.price
        if quantity not in instrument.allowed_lots or price is not None and price not in instrument.allowed_prices:
            events.append(self._order_rejected(cmd, _broken_instrument_rule(quantity, price, instrument)))
            return
        stop_price = cmd.stop_price
        display = cmd.display_quantity
        time_in_force = cmd.time_in_force
        side = cmd.side
        in_call = book.phase is not CONTINUOUS  # (closed and halted refuse below: "in a call" from then on)
        if in_call:
            code = _phase_refusal(book.phase, cmd)
            if code is not None:
                events.append(self._order_rejected(cmd, code))
                return
        if stop_price is not None or display is not None or time_in_force is GTD or cmd.post_only:
            code = self._broken_option_rule(cmd, book)
            if code is not None:
                events.append(self._order_rejected(cmd, code))
                return
        account = self.accounts.get(cmd.account)
        if account is None:
            if self.pre_trade_risk:
                events.append(self._order_rejected(cmd, RejectCode.UNKNOWN_ACCOUNT))
                return
            account = self._account(cmd.account)
        clid = cmd.client_order_id
        if clid in account.orders or account.blocked:
            code = RejectCode.ACCOUNT_BLOCKED if account.blocked else RejectCode.DUPLICATE_CLIENT_ORDER_ID
            events.append(self._order_rejected(cmd, code))
            return
        if self.pre_trade_risk:
            reserve_per_lot = self._reserve(account, book, side, price, stop_price, quantity, 0)
            if reserve_per_lot.__class__ is RejectCode:
                events.append(self._order_rejected(cmd, reserve_per_lot))
                return
        else:
            reserve_per_lot = 0
        stp = cmd.self_trade_prevention
        if stp is None:
            stp = account.self_trade_prevention
        counters = self.counters
        order_id = counters.next_order_id()
        ts = cmd.ts
        order_type = cmd.order_type
        post_only = cmd.post_only
        expire_date = cmd.expire_date
        order = Order(order_id, book, account, clid, side, order_type, time_in_force, price, quantity,
                      display, stop_price, expire_date, post_only, stp, ts, reserve_per_lot)
        account.orders[clid] = order
        events.append(_new(OrderAccepted, (counters.next_seq(), ts, book.symbol, order_id, account.account_id, clid, side,
                                       order_type, time_in_force, price, quantity, display, stop_price,
                                       expire_date, post_only, stp)))
        if stop_price is not None:
            book.park_stop(order)  # triggered below, with any other stop, if the last price has reached it
        elif in_call:  # collected for the auction, no matching
            book.rest(order, quantity)
            return
        elif price is not None and time_in_force is not IOC and time_in_force is not FOK and (
                book.asks.best > price if side is BUY else book.bids.best > -price):
            book.rest(order, quantity)  # does not cross: no trade, no stop to release
            return
        else:
            book.execute(order, events, ts)
        if book.stop_count and book.last_price is not None and book.phase is CONTINUOUS:
            book.release_stops(events, ts)
        return

    def _broken_option_rule(self, cmd: NewOrder, book: OrderBook) -> RejectCode | None:
        """Check a stop, iceberg, GTD or post-only order against its instrument and the book."""
        instrument = book.instrument
        stop_price = cmd.stop_price
        if stop_price is not None and not instrument.price_allowed(stop_price):
            return RejectCode.INVALID_STOP_PRICE
        if cmd.display_quantity is not None and cmd.display_quantity < instrument.min_lots:
            return RejectCode.INVALID_DISPLAY_QUANTITY
        if cmd.time_in_force is GTD and self.last_closed_date is not None \
                and cmd.expire_date <= self.last_closed_date:
            return RejectCode.EXPIRE_DATE_PASSED
        if cmd.post_only and book.would_take(cmd.side, cmd.price):
            return RejectCode.POST_ONLY_WOULD_TAKE
        return None

    # -- pre-trade risk --------------------------------------------------------------------

    def _reserve(self, account: Account, book: OrderBook, side: Side, price: int | None, stop_price: int | None,
                 lots: int, held: int, price_changed: bool = True) -> int | RejectCode:
        """Hold back what an order may cost or deliver; return what each lot holds, or the rule it breaks.

        A buy holds its worst-case cost: the price times the lot, plus the
        larger of the two fees; a sell holds the lot's units. A market order is
        valued at its collar price (without a collar: a buy at the instrument's
        highest price, a sell at the reference price). ``held`` is what the order holds already (a replace): it
        counts as available, and the new hold replaces it. The band applies
        to a new price only (``price_changed``): an order keeping its price is not
        refused because the market moved away from it. Nothing changes when a
        rule is broken.
        """
        instrument = book.instrument
        if price is None:
            collar = instrument.market_collar
            if side is BUY:
                price = instrument.max_price if collar is None else book.reference_price() + collar
            else:  # a sell holds units; its price only values it against the account's limit
                price = book.reference_price() if collar is None else max(book.reference_price() - collar,
                                                                          instrument.min_price)
        elif instrument.price_band_bps and stop_price is None and price_changed:
            reference = book.reference_price()
            if abs(price - reference) * 10_000 > reference * instrument.price_band_bps:
                return RejectCode.PRICE_OUTSIDE_BAND
        lot_units = instrument.lot_units
        limit = account.order_value_limit
        if limit is not None and price * lots * lot_units > limit:
            return RejectCode.ORDER_VALUE_OVER_LIMIT
        if side is BUY:
            per_lot = price * lot_units + instrument.max_fee
            hold = per_lot * lots - held
            if hold > account.cash - account.reserved_cash:
                return RejectCode.INSUFFICIENT_CASH
            account.reserved_cash += hold
            return per_lot
        symbol = book.symbol
        hold = lot_units * lots - held
        if hold > account.units[symbol] - account.reserved_units[symbol]:
            return RejectCode.INSUFFICIENT_UNITS
        account.reserved_units[symbol] += hold
        return lot_units

    def _open_account(self, cmd: OpenAccount, events: list) -> RejectCode | None:
        if cmd.account in self.accounts:
            return RejectCode.ACCOUNT_ALREADY_OPEN
        account = self.accounts[cmd.account] = Account(cmd.account, self.instruments, cmd.order_value_limit)
        if cmd.self_trade_prevention is not None:
            account.self_trade_prevention = cmd.self_trade_prevention
        seq = self.counters.next_seq()
        events.append(AccountOpened(seq, cmd.ts, cmd.account, cmd.order_value_limit,
                                    account.self_trade_prevention))
        return None

    def _deposit(self, cmd: Deposit, events: list) -> RejectCode | None:
        return self._move_assets(cmd, events, cmd.amount)

    def _withdraw(self, cmd: Withdraw, events: list) -> RejectCode | None:
        return self._move_assets(cmd, events, -cmd.amount)

    def _move_assets(self, cmd: Deposit | Withdraw, events: list, change: int) -> RejectCode | None:
        """Cash (asset EUR, in cents) or units of an instrument into (+) or out of (-) an account."""
        account = self.accounts.get(cmd.account)
        code = None
        if account is None or not self.pre_trade_risk:
            code = RejectCode.UNKNOWN_ACCOUNT
        elif cmd.asset != CASH_ASSET and cmd.asset not in self.instruments:
            code = RejectCode.UNKNOWN_ASSET
        elif cmd.asset == CASH_ASSET:
            if account.cash - account.reserved_cash + change < 0:
                code = RejectCode.INSUFFICIENT_CASH
        elif account.units[cmd.asset] - account.reserved_units[cmd.asset] + change < 0:
            code = RejectCode.INSUFFICIENT_UNITS
        if code is not None:
            return code
        if cmd.asset == CASH_ASSET:
            account.cash += change
            balance = account.cash
        else:
            account.units[cmd.asset] += change
            balance = account.units[cmd.asset]
        seq = self.counters.next_seq()
        event = Deposited if change > 0 else Withdrawn
        events.append(event(seq, cmd.ts, cmd.account, cmd.asset, abs(change), balance))
        return None

    # -- cancel, replace, mass cancel ------------------------------------------------------

    def _find_order(self, cmd: CancelOrder | ReplaceOrder) -> Order | RejectCode:
        """The open order a cancel or replace names, or the reject code that explains why there is none."""
        clid = cmd.client_order_id
        if clid is not None:
            account = self.accounts.get(cmd.account)
            order = _MISSING if account is None else account.orders.get(clid, _MISSING)
            if order is _MISSING:
                return RejectCode.UNKNOWN_ORDER
            if order is CLOSED:
                return RejectCode.ORDER_CLOSED
            return order
        order_id = cmd.order_id
        order = self.open_orders.get(order_id)
        if order is None:
            return RejectCode.ORDER_CLOSED if order_id <= self.counters.order_id else RejectCode.UNKNOWN_ORDER
        if order.account.account_id != cmd.account:
            return RejectCode.NOT_ORDER_OWNER
        return order

    def _cancel_order(self, cmd: CancelOrder, events: list) -> None:
        order = self._find_order(cmd)
        if order.__class__ is not Order:
            counters = self.counters
            seq = counters.seq = counters.seq + 1  # Counters.next_seq, inlined: a cancel too late is common
            events.append(order_request_rejected(seq, cmd, order))
            return
        order.book.cancel(order, USER, events, cmd.ts)
        return

    def _replace_order(self, cmd: ReplaceOrder, events: list) -> RejectCode | None:
        order = self._find_order(cmd)
        if order.__class__ is not Order:
            return order
        book = order.book
        if book.phase is CLOSED_PHASE:
            return RejectCode.INSTRUMENT_CLOSED
        if book.phase is HALTED:
            return RejectCode.TRADING_HALTED
        instrument = book.instrument
        quantity = order.quantity if cmd.quantity is None else cmd.quantity
        price = order.price if cmd.price is None else cmd.price
        if price is None:  # a market order never rests, so it cannot be here; keep the check honest
            return RejectCode.PRICE_NOT_ALLOWED
        code = _broken_instrument_rule(quantity, price, instrument)
        if code is None and quantity <= order.filled:
            code = RejectCode.REPLACE_QUANTITY_NOT_ABOVE_FILLED
        if code is None and quantity == order.quantity and price == order.price:
            code = RejectCode.REPLACE_CHANGES_NOTHING
        waiting = order.stop_price is not None
        if code is None and order.post_only and not waiting and price != order.price \
                and book.phase is CONTINUOUS and book.would_take(order.side, price):
            code = RejectCode.POST_ONLY_WOULD_TAKE
        new_leaves = quantity - order.filled
        if code is None and self.pre_trade_risk:
            # The amended order must be affordable with what the order already holds back.
            held = order.leaves * order.reserve_per_lot
            reserve_per_lot = self._reserve(order.account, book, order.side, price, order.stop_price, new_leaves,
                                            held, price_changed=price != order.price)
            if reserve_per_lot.__class__ is RejectCode:
                code = reserve_per_lot
            else:
                order.reserve_per_lot = reserve_per_lot
        if code is not None:
            return code

        ts = cmd.ts
        counters = self.counters
        if waiting or (price == order.price and quantity < order.quantity):
            # Keeps its place: a smaller quantity at the same price, or a stop still waiting
            # (it has no place in the book yet and is amended where it waits).
            seq = counters.next_seq()
            events.append(OrderReplaced(seq, ts, book.symbol, order.order_id, order.account.account_id,
                                        order.client_order_id, price, quantity, quantity - order.filled, True))
            if waiting:
                order.leaves = quantity - order.filled
                order.quantity = quantity
                order.price = price
            else:
                book.reduce_in_place(order, quantity)
            return None
        # Loses priority: the order leaves the book and arrives again, as a new object so that
        # the dead entry it leaves in its old level can never be mistaken for it.
        filled = order.filled
        seq = counters.next_seq()
        events.append(OrderReplaced(seq, ts, book.symbol, order.order_id, order.account.account_id,
                                    order.client_order_id, price, quantity, quantity - filled, False))
        book.unlink(order)
        moved = Order(order.order_id, book, order.account, order.client_order_id, order.side,
                      order.order_type, order.time_in_force, price, quantity, order.display_quantity, None,
                      order.expire_date, order.post_only, order.self_trade_prevention, ts, order.reserve_per_lot)
        moved.leaves = quantity - filled
        del self.open_orders[order.order_id]
        del order.account.open_orders[order.order_id]
        order.account.orders[order.client_order_id] = moved
        if book.phase is not CONTINUOUS:  # a call: it waits for the auction at its new place
            book.rest(moved, moved.leaves)
            return None
        book.execute(moved, events, ts)
        if book.stop_count:
            book.release_stops(events, ts)
        return None

    def _mass_cancel(self, cmd: MassCancel, events: list) -> RejectCode | None:
        symbol = cmd.instrument
        if symbol is not None and symbol not in self.books:
            return RejectCode.UNKNOWN_INSTRUMENT
        reason = CancelReason.DISCONNECT if cmd.on_disconnect else CancelReason.MASS_CANCEL
        canceled = self._cancel_all(self.accounts.get(cmd.account), symbol, reason, events, cmd.ts)
        seq = self.counters.next_seq()
        events.append(MassCancelCompleted(seq, cmd.ts, cmd.account, symbol, canceled))
        return None

    def _cancel_all(self, account: Account | None, symbol: str | None, reason: CancelReason, events: list,
                    ts: int) -> int:
        """Cancel the account's open orders (on one instrument, or all), oldest first; return how many."""
        doomed = [] if account is None else sorted(
            (order for order in account.open_orders.values() if symbol is None or order.book.symbol == symbol),
            key=_by_order_id)
        for order in doomed:
            order.book.cancel(order, reason, events, ts)
        return len(doomed)

    def _block_account(self, cmd: BlockAccount, events: list) -> RejectCode | None:
        account = self.accounts.get(cmd.account)
        if account is None:
            return RejectCode.UNKNOWN_ACCOUNT
        account.blocked = True
        canceled = self._cancel_all(account, None, CancelReason.KILL_SWITCH, events, cmd.ts)
        if self.pre_trade_risk:
            self.primary.withdraw_all(cmd.account, cmd.ts, events)  # its sealed bids go too
        seq = self.counters.next_seq()
        events.append(AccountBlocked(seq, cmd.ts, cmd.account, canceled))
        return None

    def _unblock_account(self, cmd: UnblockAccount, events: list) -> RejectCode | None:
        account = self.accounts.get(cmd.account)
        if account is None:
            return RejectCode.UNKNOWN_ACCOUNT
        account.blocked = False
        seq = self.counters.next_seq()
        events.append(AccountUnblocked(seq, cmd.ts, cmd.account))
        return None

    def _set_self_trade_prevention(self, cmd: SetSelfTradePrevention, events: list) -> RejectCode | None:
        if self.pre_trade_risk and cmd.account not in self.accounts:  # accounts are opened, never implied
            return RejectCode.UNKNOWN_ACCOUNT
        self._account(cmd.account).self_trade_prevention = cmd.mode
        seq = self.counters.next_seq()
        events.append(SelfTradePreventionSet(seq, cmd.ts, cmd.account, cmd.mode))
        return None

    # -- trading phases -----------------------------------------------------------------------

    def _set_trading_phase(self, cmd: SetTradingPhase, events: list) -> RejectCode | None:
        book = self.books.get(cmd.instrument)
        if book is None:
            return RejectCode.UNKNOWN_INSTRUMENT
        previous, phase = book.phase, cmd.phase
        if phase not in PHASE_CHANGES[previous] or (cmd.from_phase is not None and cmd.from_phase is not previous):
            return RejectCode.PHASE_CHANGE_NOT_ALLOWED
        ts = cmd.ts
        if (phase is CONTINUOUS or phase is CLOSED_PHASE) and (previous in CALL_PHASES or previous is HALTED):
            book.uncross(events, ts)  # a halt entered from a call may hold a crossed book: it ends the same way
        book.phase = phase
        seq = self.counters.next_seq()
        events.append(TradingPhaseChanged(seq, ts, book.symbol, phase, previous, "operator", None, None))
        if phase is CONTINUOUS and book.stop_count and book.last_price is not None:
            book.release_stops(events, ts)
        return None

    # -- end of day ----------------------------------------------------------------------

    def _end_of_day(self, cmd: EndOfDay, events: list) -> RejectCode | None:
        ts, trading_date = cmd.ts, cmd.trading_date
        if self.last_closed_date is not None and trading_date <= self.last_closed_date:
            return RejectCode.TRADING_DATE_NOT_AFTER_LAST
        counters = self.counters
        expiring = [order for order in self.open_orders.values()
                    if order.time_in_force is DAY
                    or (order.time_in_force is GTD and order.expire_date <= trading_date)]
        expiring.sort(key=_by_order_id)
        for order in expiring:
            book = order.book
            book.unlink(order)
            expired = book.retire(order)
            events.append(OrderExpired(counters.next_seq(), ts, book.symbol, order.order_id,
                                       order.account.account_id, order.client_order_id, expired))
        # Client order ids are unique per trading day: forget those of orders no longer open.
        for account in self.accounts.values():
            account.orders = {clid: order for clid, order in account.orders.items() if order is not CLOSED}
        self.last_closed_date = trading_date
        seq = counters.next_seq()
        events.append(TradingDayClosed(seq, ts, trading_date, len(expiring)))
        return None

    # -- helpers -------------------------------------------------------------------------

    def _account(self, account_id: str) -> Account:
        """The account, opened on first use: only without pre-trade risk, where accounts hold nothing."""
        account = self.accounts.get(account_id)
        if account is None:
            account = self.accounts[account_id] = Account(account_id)
        return account

    def _order_rejected(self, cmd: NewOrder, code: RejectCode) -> OrderRejected:
        seq = self.counters.next_seq()
        return order_rejected(seq, cmd, cmd.instrument if cmd.instrument in self.books else None, code)

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
        c = self.counters
        yield f"counters seq={c.seq} order_id={c.order_id} trade_id={c.trade_id} closed={self.last_closed_date}"
        for symbol in sorted(self.books):
            book = self.books[symbol]
            yield f"book {symbol} last={book.last_price} phase={book.phase}"
            for side in (Side.BUY, Side.SELL):
                for order in book.resting_orders(side):
                    yield "rest " + _order_line(order)
            for order in sorted(book.waiting_stops(), key=_by_order_id):
                yield "stop " + _order_line(order)
        for account_id in sorted(self.accounts):
            account = self.accounts[account_id]
            yield (f"account {account_id} stp={account.self_trade_prevention} limit={account.order_value_limit} "
                   f"blocked={account.blocked} "
                   f"cash={account.cash} reserved={account.reserved_cash} "
                   + " ".join(f"{symbol}={account.units[symbol]}/{account.reserved_units[symbol]}"
                              for symbol in sorted(account.units)))
            for clid in sorted(account.orders, key=repr):
                order = account.orders[clid]
                yield f"clid {clid!r} {'closed' if order is CLOSED else order.order_id}"
        yield from self.compliance.state_lines()
        yield from self.primary.state_lines()


def _auction_view(auction: PrimaryAuction) -> PrimaryAuctionView:
    bids = tuple(BidView(bid.bid_id, bid.account, bid.price, bid.volume, bid.held, bid.number)
                 for bid in sorted(auction.bids.values(), key=lambda bid: bid.number))
    return PrimaryAuctionView(auction.auction_id, auction.instrument, auction.auctioneer, auction.volume,
                              auction.closes_at, auction.seed, auction.outcome, bids)


def _order_line(order: Order) -> str:
    return (f"{order.order_id} {order.account.account_id} {order.client_order_id!r} {order.side} "
            f"{order.order_type} {order.time_in_force} p={order.price} q={order.quantity} "
            f"leaves={order.leaves} shown={order.visible} display={order.display_quantity} "
            f"stop={order.stop_price} exp={order.expire_date} po={order.post_only} "
            f"stp={order.self_trade_prevention} ts={order.ts} reserve={order.reserve_per_lot}")


def _by_order_id(order: Order) -> int:
    return order.order_id


def _phase_refusal(phase: TradingPhase, cmd: NewOrder) -> RejectCode | None:
    """Why a new order is not taken in a phase other than continuous trading, if it is not."""
    if phase is CLOSED_PHASE:
        return RejectCode.INSTRUMENT_CLOSED
    if phase is HALTED:
        return RejectCode.TRADING_HALTED
    # A call: only orders that can wait for the auction (limit, not IOC or FOK, not post-only).
    if cmd.order_type is OrderType.MARKET or cmd.time_in_force is IOC or cmd.time_in_force is FOK or cmd.post_only:
        return RejectCode.NOT_TAKEN_IN_CALL
    return None


def _broken_instrument_rule(quantity: int, price: int | None, instrument: Instrument) -> RejectCode | None:
    """The first of the instrument's size and price rules that a quantity and price break, if any."""
    if quantity < instrument.min_lots:
        return RejectCode.QUANTITY_BELOW_MINIMUM
    if quantity > instrument.max_lots:
        return RejectCode.QUANTITY_ABOVE_MAXIMUM
    if price is not None:
        if price % instrument.tick_size:
            return RejectCode.PRICE_NOT_ON_TICK
        if not instrument.min_price <= price <= instrument.max_price:
            return RejectCode.PRICE_OUT_OF_RANGE
    return None
