"""The commands that enter, amend and end orders: new order, cancel, replace, mass cancel, end of day.

How this works
--------------
:class:`OrderCommands` carries out these commands on the engine's books
(``Engine`` routes them here; the new-order and cancel paths are called
directly from its loop, without the command table). A new order goes through
the pipeline of :mod:`exchange.engine`'s notes: checks against the
instrument, the phase and the order's options, the account, pre-trade risk
(:func:`exchange.risk.reserve`), then acceptance and matching in its book. A
cancel, replace or mass cancel that cannot be carried out changes nothing and
returns the rule it breaks (the engine refuses it); the cancel path, being
hot, builds its own refusal.

The end of day expires DAY orders and GTD orders whose date has come, and
forgets the client order ids of orders no longer open: they are unique per
trading day.

The new-order and cancel paths are written for speed (at about 7 ns a
bytecode, every line of them shows in the benchmark): the common case is
decided with one combined test and anything unusual is handed to a helper
that works out the exact reject code.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Final, cast

from msgspec.structs import astuple
from mypy_extensions import mypyc_attr

from .accounts import CLOSED, Account, Counters, account_on_first_use
from .book import OrderBook
from .codes import RejectCode
from .commands import CancelOrder, EndOfDay, MassCancel, NewOrder, ReplaceOrder
from .enums import CancelReason, OrderType, SelfTradePrevention, Side, TimeInForce, TradingPhase
from .events import MassCancelCompleted, OrderAccepted, OrderExpired, OrderRejected, OrderReplaced, TradingDayClosed
from .instruments import Instrument
from .matching import execute
from .orders import Order, by_order_id
from .refusals import order_rejected, order_request_rejected
from .risk import refusal, reserve
from .settlement_prices import fix_all

BUY: Final = Side.BUY
DAY: Final = TimeInForce.DAY
GTD: Final = TimeInForce.GTD
IOC: Final = TimeInForce.IOC
FOK: Final = TimeInForce.FOK
USER: Final = CancelReason.USER
CONTINUOUS: Final = TradingPhase.CONTINUOUS
CLOSED_PHASE: Final = TradingPhase.CLOSED
HALTED: Final = TradingPhase.HALTED


class _Missing(Enum):  # an enum member, so that a type checker tells the sentinel apart from an order by ``is``
    MISSING = "missing"


_MISSING: Final = _Missing.MISSING  # "no such client order id", distinct from CLOSED (None)

# A new order's fields in one tuple, in NewOrder's order, with their types (astuple itself says only "a tuple").
NewOrderFields = tuple[
    int,
    str,
    str | int,
    str,
    Side,
    int,
    int | None,
    OrderType,
    TimeInForce,
    int | None,
    int | None,
    int | None,
    bool,
    SelfTradePrevention | None,
]
_fields: Final = cast("Callable[[NewOrder], NewOrderFields]", astuple)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled in snapshots (docs/PERFORMANCE.md)
class OrderCommands:
    """New orders, cancels, replaces and mass cancels on every book of the engine, and the end of day."""

    def __init__(
        self,
        books: dict[str, OrderBook],
        accounts: dict[str, Account],
        open_orders: dict[int, Order],
        counters: Counters,
        pre_trade_risk: bool,
    ) -> None:
        self.books = books
        self.accounts = accounts  # the engine's accounts by id (shared)
        self.open_orders = open_orders  # the engine's open orders by id (shared with the books)
        self.counters = counters
        self.pre_trade_risk = pre_trade_risk  # accounts must be opened, and orders hold back what they may cost
        self.last_closed_date: int | None = None  # trading date of the last EndOfDay

    # -- new orders ----------------------------------------------------------------------

    def new_order(self, cmd: NewOrder, events: list) -> OrderBook | None:
        """The new-order pipeline of :mod:`exchange.engine`'s notes, steps 1 to 7; returns the book it went to (None:
        no such instrument), the one book whose levels it may have changed."""
        # Every field at once, in NewOrder's order, typed: one call where fourteen reads were (compiled, each read of
        # a msgspec field is a look-up by name, about 160 instructions).
        ts, account_id, clid, symbol, side, lots, price, kind, tif, display, stop, expiry, post_only, stp = _fields(cmd)
        book = self.books.get(symbol)
        if book is None:
            events.append(self._order_rejected(cmd, RejectCode.UNKNOWN_INSTRUMENT))
            return None
        if (
            lots < book.min_lots
            or lots > book.max_lots
            or price is not None
            and (price % book.tick_size or price < book.min_price or price > book.max_price)
        ):
            broken = _broken_instrument_rule(lots, price, book.instrument)
            assert broken is not None  # the test above is the rules', all at once
            events.append(self._order_rejected(cmd, broken))
            return book
        in_call = book.phase is not CONTINUOUS  # (closed and halted refuse below: "in a call" from then on)
        if in_call:
            code = _phase_refusal(book.phase, cmd)
            if code is not None:
                events.append(self._order_rejected(cmd, code))
                return book
        if stop is not None or display is not None or tif is GTD or post_only:
            code = _broken_option_rule(cmd, book, self.last_closed_date)
            if code is not None:
                events.append(self._order_rejected(cmd, code))
                return book
        account = self.accounts.get(account_id)
        if account is None:
            if self.pre_trade_risk:
                events.append(self._order_rejected(cmd, RejectCode.UNKNOWN_ACCOUNT))
                return book
            account = account_on_first_use(self.accounts, account_id)
        if clid in account.orders or account.blocked:
            code = RejectCode.ACCOUNT_BLOCKED if account.blocked else RejectCode.DUPLICATE_CLIENT_ORDER_ID
            events.append(self._order_rejected(cmd, code))
            return book
        if self.pre_trade_risk:
            reserve_per_lot = reserve(account, book, side, price, stop, lots, 0)
            if reserve_per_lot < 0:
                events.append(self._order_rejected(cmd, refusal(reserve_per_lot)))
                return book
        else:
            reserve_per_lot = 0
        if stp is None:
            stp = account.self_trade_prevention
        counters = self.counters
        order_id = counters.order_id = counters.order_id + 1  # the next order id and event number, counted inline
        seq = counters.seq = counters.seq + 1
        order = Order(
            order_id,
            book,
            account,
            clid,
            side,
            kind,
            tif,
            price,
            lots,
            display,
            stop,
            expiry,
            post_only,
            stp,
            ts,
            reserve_per_lot,
        )
        account.orders[clid] = order
        events.append(
            OrderAccepted(
                seq,
                ts,
                book.symbol,
                order_id,
                account.account_id,
                clid,
                side,
                kind,
                tif,
                price,
                lots,
                display,
                stop,
                expiry,
                post_only,
                stp,
            )
        )
        if stop is not None:
            book.park_stop(order)  # triggered below, with any other stop, if the last price has reached it
        elif in_call:  # collected for the auction, no matching
            book.rest(order, lots)
            return book
        elif (
            price is not None
            and tif is not IOC
            and tif is not FOK
            and (book.asks.best > price if side is BUY else book.bids.best > -price)
        ):
            book.rest(order, lots)  # does not cross: no trade, no stop to release
            return book
        else:
            execute(book, order, events, ts)
        if book.stops.count and book.last_price is not None and book.phase is CONTINUOUS:
            book.release_stops(events, ts)
        return book

    def _find_order(self, cmd: CancelOrder | ReplaceOrder) -> Order | RejectCode:
        """The open order a cancel or replace names, or the reject code that explains why there is none."""
        clid = cmd.client_order_id
        if clid is not None:
            account = self.accounts.get(cmd.account)
            named = _MISSING if account is None else account.orders.get(clid, _MISSING)
            if named is _MISSING:
                return RejectCode.UNKNOWN_ORDER
            if named is CLOSED:
                return RejectCode.ORDER_CLOSED
            return named
        order_id = cmd.order_id
        assert order_id is not None  # a command names its order by one of the two (exchange.commands)
        order = self.open_orders.get(order_id)
        if order is None:
            return RejectCode.ORDER_CLOSED if order_id <= self.counters.order_id else RejectCode.UNKNOWN_ORDER
        if order.account.account_id != cmd.account:
            return RejectCode.NOT_ORDER_OWNER
        return order

    def cancel_order(self, cmd: CancelOrder, events: list) -> OrderBook | None:
        """Cancel the order named; returns its book (None: refused, nothing changed)."""
        clid = cmd.client_order_id
        if clid is not None:  # the usual cancel, of an open order named by its client order id: found at once
            account = self.accounts.get(cmd.account)
            named = None if account is None else account.orders.get(clid)
            if type(named) is Order:
                book = named.book
                book.cancel(named, USER, events, cmd.ts)
                return book
        order = self._find_order(cmd)  # anything else: the order, or the code that says why there is none
        if type(order) is not Order:
            counters = self.counters
            seq = counters.seq = counters.seq + 1  # Counters.next_seq, inlined: a cancel too late is common
            events.append(order_request_rejected(seq, cmd, order))
            return None
        book = order.book
        book.cancel(order, USER, events, cmd.ts)
        return book

    def replace_order(self, cmd: ReplaceOrder, events: list) -> RejectCode | None:
        order = self._find_order(cmd)
        if type(order) is not Order:
            return order
        terms = self._amended_terms(cmd, order)
        if isinstance(terms, RejectCode):
            return terms
        quantity, price = terms
        book = order.book
        waiting = order.stop_price is not None
        ts = cmd.ts
        counters = self.counters
        if waiting or (price == order.price and quantity < order.quantity):
            # Keeps its place: a smaller quantity at the same price, or a stop still waiting
            # (it has no place in the book yet and is amended where it waits).
            seq = counters.next_seq()
            events.append(
                OrderReplaced(
                    seq,
                    ts,
                    book.symbol,
                    order.order_id,
                    order.account.account_id,
                    order.client_order_id,
                    price,
                    quantity,
                    quantity - order.filled,
                    True,
                )
            )
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
        events.append(
            OrderReplaced(
                seq,
                ts,
                book.symbol,
                order.order_id,
                order.account.account_id,
                order.client_order_id,
                price,
                quantity,
                quantity - filled,
                False,
            )
        )
        book.unlink(order)
        moved = Order(
            order.order_id,
            book,
            order.account,
            order.client_order_id,
            order.side,
            order.order_type,
            order.time_in_force,
            price,
            quantity,
            order.display_quantity,
            None,
            order.expire_date,
            order.post_only,
            order.self_trade_prevention,
            ts,
            order.reserve_per_lot,
        )
        moved.leaves = quantity - filled
        del self.open_orders[order.order_id]
        del order.account.open_orders[order.order_id]
        order.account.orders[order.client_order_id] = moved
        if book.phase is not CONTINUOUS:  # a call: it waits for the auction at its new place
            book.rest(moved, moved.leaves)
            return None
        execute(book, moved, events, ts)
        if book.stops.count:
            book.release_stops(events, ts)
        return None

    def _amended_terms(self, cmd: ReplaceOrder, order: Order) -> tuple[int, int] | RejectCode:
        """The total quantity and price a replace gives the order, if it may (what the amended order holds
        back is then taken); else the rule the replace breaks, with nothing changed."""
        book = order.book
        if book.phase is CLOSED_PHASE:
            return RejectCode.INSTRUMENT_CLOSED
        if book.phase is HALTED:
            return RejectCode.TRADING_HALTED
        quantity = order.quantity if cmd.quantity is None else cmd.quantity
        price = order.price if cmd.price is None else cmd.price
        if price is None:  # a market order never rests, so it cannot be here; keep the check honest
            return RejectCode.PRICE_NOT_ALLOWED
        code = _broken_instrument_rule(quantity, price, book.instrument)
        if code is None and quantity <= order.filled:
            code = RejectCode.REPLACE_QUANTITY_NOT_ABOVE_FILLED
        if code is None and quantity == order.quantity and price == order.price:
            code = RejectCode.REPLACE_CHANGES_NOTHING
        if (
            code is None
            and order.post_only
            and order.stop_price is None
            and price != order.price
            and book.phase is CONTINUOUS
            and book.would_take(order.side, price)
        ):
            code = RejectCode.POST_ONLY_WOULD_TAKE
        if code is None and self.pre_trade_risk:
            # The amended order must be affordable with what the order already holds back.
            held = order.leaves * order.reserve_per_lot
            reserve_per_lot = reserve(
                order.account,
                book,
                order.side,
                price,
                order.stop_price,
                quantity - order.filled,
                held,
                price_changed=price != order.price,
            )
            if reserve_per_lot < 0:
                code = refusal(reserve_per_lot)
            else:
                order.reserve_per_lot = reserve_per_lot
        return (quantity, price) if code is None else code

    def mass_cancel(self, cmd: MassCancel, events: list) -> RejectCode | None:
        symbol = cmd.instrument
        if symbol is not None and symbol not in self.books:
            return RejectCode.UNKNOWN_INSTRUMENT
        reason = CancelReason.DISCONNECT if cmd.on_disconnect else CancelReason.MASS_CANCEL
        canceled = self.cancel_all(self.accounts.get(cmd.account), symbol, reason, events, cmd.ts)
        seq = self.counters.next_seq()
        events.append(MassCancelCompleted(seq, cmd.ts, cmd.account, symbol, canceled))
        return None

    def cancel_all(
        self, account: Account | None, symbol: str | None, reason: CancelReason, events: list, ts: int
    ) -> int:
        """Cancel the account's open orders (on one instrument, or all), oldest first; return how many."""
        doomed = (
            []
            if account is None
            else sorted(
                (order for order in account.open_orders.values() if symbol is None or order.book.symbol == symbol),
                key=by_order_id,
            )
        )
        for order in doomed:
            order.book.cancel(order, reason, events, ts)
        return len(doomed)

    # -- end of day ----------------------------------------------------------------------

    def end_of_day(self, cmd: EndOfDay, events: list) -> RejectCode | None:
        ts, trading_date = cmd.ts, cmd.trading_date
        if self.last_closed_date is not None and trading_date <= self.last_closed_date:
            return RejectCode.TRADING_DATE_NOT_AFTER_LAST
        counters = self.counters
        expiring = [
            order
            for order in self.open_orders.values()
            if order.time_in_force is DAY or (order.expire_date is not None and order.expire_date <= trading_date)
        ]  # (GTD)
        expiring.sort(key=by_order_id)
        for order in expiring:
            book = order.book
            book.unlink(order)
            expired = book.retire(order)
            events.append(
                OrderExpired(
                    counters.next_seq(),
                    ts,
                    book.symbol,
                    order.order_id,
                    order.account.account_id,
                    order.client_order_id,
                    expired,
                )
            )
        # Client order ids are unique per trading day: forget those of orders no longer open.
        for account in self.accounts.values():
            account.orders = {clid: order for clid, order in account.orders.items() if order is not CLOSED}
        fix_all(self.books, counters, trading_date, ts, events)
        self.last_closed_date = trading_date
        seq = counters.next_seq()
        events.append(TradingDayClosed(seq, ts, trading_date, len(expiring)))
        return None

    # -- helpers -------------------------------------------------------------------------

    def _order_rejected(self, cmd: NewOrder, code: RejectCode) -> OrderRejected:
        seq = self.counters.next_seq()
        return order_rejected(seq, cmd, cmd.instrument if cmd.instrument in self.books else None, code)


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
        if price <= 0 < instrument.min_price:  # (a TAS book's prices are ticks either side of zero)
            return RejectCode.INVALID_PRICE
        if price % instrument.tick_size:
            return RejectCode.PRICE_NOT_ON_TICK
        if not instrument.min_price <= price <= instrument.max_price:
            return RejectCode.PRICE_OUT_OF_RANGE
    return None


def _broken_option_rule(cmd: NewOrder, book: OrderBook, last_closed: int | None) -> RejectCode | None:
    """Check a stop, iceberg, GTD or post-only order against its instrument and the book."""
    instrument = book.instrument
    stop_price = cmd.stop_price
    if stop_price is not None and not instrument.price_allowed(stop_price):
        return RejectCode.INVALID_STOP_PRICE
    if cmd.display_quantity is not None and cmd.display_quantity < instrument.min_lots:
        return RejectCode.INVALID_DISPLAY_QUANTITY
    expire_date = cmd.expire_date
    if expire_date is not None and last_closed is not None and expire_date <= last_closed:  # (GTD only)
        return RejectCode.EXPIRE_DATE_PASSED
    if cmd.post_only and cmd.price is not None and book.would_take(cmd.side, cmd.price):  # (limit only)
        return RejectCode.POST_ONLY_WOULD_TAKE
    return None
