"""The matching engine: commands in, events out, deterministically.

How this works
--------------
``Engine.handle(command)`` returns the list of events the command caused. The
pipeline for a new order is, in order:

    1. validate   fields and instrument rules          -> OrderRejected (codes 1xx)
    2. state      duplicate client order id, post-only -> OrderRejected (codes 3xx, 4xx)
    3. accept     order id given out                   -> OrderAccepted
    4. match      against the book (``OrderBook.execute``)  -> Trade, LevelChanged,
                  then the rest: rested (LevelChanged) or cancelled (OrderCanceled)
    5. stops      released by the new last price       -> StopTriggered, and 4. again

Cancel, replace, mass cancel and end of day follow the same shape: a command
that cannot be carried out changes nothing and produces one CancelRejected.
No command raises: anything malformed becomes a reject with a code from
:mod:`exchange.codes`. An exception escaping ``handle`` is a bug.

The engine holds no clock and draws no random numbers; every timestamp comes
with a command. Replaying the same commands therefore gives the same events
and the same :meth:`Engine.state_hash`.
"""
from __future__ import annotations

import hashlib
from datetime import date
from typing import Callable, Iterable, Mapping

from .book import CLOSED, Account, Counters, Order, OrderBook
from .codes import RejectCode
from .commands import CancelOrder, EndOfDay, MassCancel, NewOrder, ReplaceOrder, SetSelfTradePrevention
from .enums import CancelReason, OrderType, SelfTradePrevention, Side, TimeInForce
from .events import (CancelRejected, OrderAccepted, OrderExpired, OrderRejected, OrderReplaced,
                     SelfTradePreventionSet, TradingDayClosed)
from .instruments import Instrument

MAX_CLIENT_ORDER_ID_LENGTH = 64

# Wire values and enum members both look up to the member (a StrEnum hashes as its string).
_SIDES = {member.value: member for member in Side}
_ORDER_TYPES = {member.value: member for member in OrderType}
_TIMES_IN_FORCE = {member.value: member for member in TimeInForce}
_STP_MODES = {member.value: member for member in SelfTradePrevention}

BUY = Side.BUY
LIMIT = OrderType.LIMIT
MARKET = OrderType.MARKET
GTC = TimeInForce.GTC
DAY = TimeInForce.DAY
GTD = TimeInForce.GTD
IOC = TimeInForce.IOC
FOK = TimeInForce.FOK
RESTING_TIMES_IN_FORCE = (GTC, DAY, GTD)

_new = tuple.__new__


def valid_date(value: object) -> bool:
    """True for an int written YYYYMMDD that names a real calendar date."""
    if type(value) is not int or not 10000101 <= value <= 99991231:
        return False
    try:
        date(value // 10000, value // 100 % 100, value % 100)
    except ValueError:
        return False
    return True


def _valid_client_order_id(value: object) -> bool:
    kind = type(value)
    if kind is int:
        return value >= 0
    if kind is str:
        return 0 < len(value) <= MAX_CLIENT_ORDER_ID_LENGTH
    return False


class Engine:
    """All order books of the venue, the accounts' order registries, and the sequence counters."""

    def __init__(self, instruments: Mapping[str, Instrument]) -> None:
        self.instruments = dict(instruments)
        self.counters = Counters()
        self.open_orders: dict[int, Order] = {}  # every open order (resting or waiting stop) by id
        self.books = {symbol: OrderBook(instrument, self.counters, self.open_orders)
                      for symbol, instrument in self.instruments.items()}
        self.accounts: dict[str, Account] = {}
        self.last_closed_date: int | None = None  # trading date of the last EndOfDay
        self._handlers: dict[type, Callable[[object], list]] = {
            NewOrder: self._new_order,
            CancelOrder: self._cancel_order,
            ReplaceOrder: self._replace_order,
            MassCancel: self._mass_cancel,
            SetSelfTradePrevention: self._set_self_trade_prevention,
            EndOfDay: self._end_of_day,
        }

    # -- entry point ---------------------------------------------------------------------

    def handle(self, command: object) -> list:
        """Carry out one command and return the events it caused, in order."""
        handler = self._handlers.get(command.__class__)
        if handler is None:
            return [self._command_rejected(command, "unknown", RejectCode.UNKNOWN_COMMAND)]
        return handler(command)

    def handle_all(self, commands: Iterable[object]) -> list:
        """Carry out commands in order; return all their events."""
        events: list = []
        handle = self.handle
        for command in commands:
            events += handle(command)
        return events

    # -- new orders ----------------------------------------------------------------------

    def _new_order(self, cmd: NewOrder) -> list:
        ts = cmd.ts
        code = self._invalid_new_order(cmd)
        if code is not None:
            return [self._order_rejected(cmd, code)]
        book = self.books[cmd.instrument]
        account = self._account(cmd.account)
        clid = cmd.client_order_id
        if clid in account.orders:
            return [self._order_rejected(cmd, RejectCode.DUPLICATE_CLIENT_ORDER_ID)]
        side = _SIDES[cmd.side]
        order_type = _ORDER_TYPES[cmd.order_type]
        tif = _TIMES_IN_FORCE[cmd.time_in_force]
        stp = cmd.self_trade_prevention
        stp = account.self_trade_prevention if stp is None else _STP_MODES[stp]
        price = cmd.price
        stop_price = cmd.stop_price
        if cmd.post_only and book.would_take(side, price):
            return [self._order_rejected(cmd, RejectCode.POST_ONLY_WOULD_TAKE)]

        counters = self.counters
        order_id = counters.order_id = counters.order_id + 1
        order = Order(order_id, book, account, clid, side, order_type, tif, price, cmd.quantity,
                      cmd.display_quantity, stop_price, cmd.expire_date, cmd.post_only, stp, ts)
        account.orders[clid] = order
        seq = counters.seq = counters.seq + 1
        events = [_new(OrderAccepted, (seq, ts, book.symbol, order_id, account.account_id, clid, side,
                                       order_type, tif, price, order.quantity, order.display_quantity,
                                       stop_price, order.expire_date, order.post_only, stp))]
        if stop_price is not None:
            book.park_stop(order)
            if book.stop_reached(order):
                book.trigger(order, events, ts)
        else:
            book.execute(order, events, ts)
        if counters.trade_id and (book.buy_stops or book.sell_stops):
            book.release_stops(events, ts)
        return events

    def _invalid_new_order(self, cmd: NewOrder) -> RejectCode | None:
        """Check a new order's fields against the rules of its instrument; None when valid."""
        ts = cmd.ts
        if type(ts) is not int or ts < 0:
            return RejectCode.INVALID_TIMESTAMP
        account = cmd.account
        if type(account) is not str or not account:
            return RejectCode.INVALID_ACCOUNT
        if not _valid_client_order_id(cmd.client_order_id):
            return RejectCode.INVALID_CLIENT_ORDER_ID
        symbol = cmd.instrument
        instrument = self.instruments.get(symbol) if type(symbol) is str else None
        if instrument is None:
            return RejectCode.UNKNOWN_INSTRUMENT
        try:
            _SIDES[cmd.side]
        except (KeyError, TypeError):
            return RejectCode.INVALID_SIDE
        try:
            order_type = _ORDER_TYPES[cmd.order_type]
        except (KeyError, TypeError):
            return RejectCode.INVALID_ORDER_TYPE
        try:
            tif = _TIMES_IN_FORCE[cmd.time_in_force]
        except (KeyError, TypeError):
            return RejectCode.INVALID_TIME_IN_FORCE
        stp = cmd.self_trade_prevention
        if stp is not None:
            try:
                _STP_MODES[stp]
            except (KeyError, TypeError):
                return RejectCode.INVALID_SELF_TRADE_MODE
        quantity = cmd.quantity
        if type(quantity) is not int or quantity <= 0:
            return RejectCode.INVALID_QUANTITY
        if quantity < instrument.min_lots:
            return RejectCode.QUANTITY_BELOW_MINIMUM
        if quantity > instrument.max_lots:
            return RejectCode.QUANTITY_ABOVE_MAXIMUM
        price = cmd.price
        if order_type is LIMIT:
            if price is None:
                return RejectCode.PRICE_REQUIRED
            code = _invalid_price(price, instrument)
            if code is not None:
                return code
        elif price is not None:
            return RejectCode.PRICE_NOT_ALLOWED
        post_only = cmd.post_only
        if post_only is not True and post_only is not False:
            return RejectCode.INVALID_POST_ONLY
        display = cmd.display_quantity
        if display is not None and (type(display) is not int or not instrument.min_lots <= display <= quantity):
            return RejectCode.INVALID_DISPLAY_QUANTITY
        stop_price = cmd.stop_price
        if stop_price is not None and _invalid_price(stop_price, instrument) is not None:
            return RejectCode.INVALID_STOP_PRICE
        expire_date = cmd.expire_date
        if tif is GTD:
            if expire_date is None:
                return RejectCode.EXPIRE_DATE_REQUIRED
            if not valid_date(expire_date):
                return RejectCode.INVALID_EXPIRE_DATE
            if self.last_closed_date is not None and expire_date <= self.last_closed_date:
                return RejectCode.EXPIRE_DATE_PASSED
        elif expire_date is not None:
            return RejectCode.INVALID_EXPIRE_DATE
        # What is offered: market orders never rest (GTC, DAY and IOC all mean IOC for them,
        # FOK means fill or kill), carry no stop, no display and no post-only; post-only and
        # iceberg orders are resting orders (GTC, DAY, GTD); a stop-limit is not post-only.
        if order_type is MARKET:
            if tif is GTD or stop_price is not None or display is not None or post_only:
                return RejectCode.INVALID_COMBINATION
        elif (post_only or display is not None) and tif not in RESTING_TIMES_IN_FORCE:
            return RejectCode.INVALID_COMBINATION
        if post_only and stop_price is not None:
            return RejectCode.INVALID_COMBINATION
        return None

    # -- cancel, replace, mass cancel ------------------------------------------------------

    def _find_order(self, cmd: CancelOrder | ReplaceOrder, request: str) -> Order | CancelRejected:
        """The open order a cancel or replace names, or the reject that explains why there is none."""
        ts, account_id = cmd.ts, cmd.account
        if type(ts) is not int or ts < 0:
            return self._command_rejected(cmd, request, RejectCode.INVALID_TIMESTAMP)
        if type(account_id) is not str or not account_id:
            return self._command_rejected(cmd, request, RejectCode.INVALID_ACCOUNT)
        order_id, clid = cmd.order_id, cmd.client_order_id
        if (order_id is None) == (clid is None):
            return self._command_rejected(cmd, request, RejectCode.ORDER_REFERENCE_REQUIRED)
        if order_id is not None:
            if type(order_id) is not int:
                return self._command_rejected(cmd, request, RejectCode.UNKNOWN_ORDER)
            order = self.open_orders.get(order_id)
            if order is None:
                closed = 0 < order_id <= self.counters.order_id
                return self._command_rejected(
                    cmd, request, RejectCode.ORDER_CLOSED if closed else RejectCode.UNKNOWN_ORDER)
            if order.account.account_id != account_id:
                return self._command_rejected(cmd, request, RejectCode.NOT_ORDER_OWNER)
            return order
        if not _valid_client_order_id(clid):
            return self._command_rejected(cmd, request, RejectCode.INVALID_CLIENT_ORDER_ID)
        account = self.accounts.get(account_id)
        if account is None or clid not in account.orders:
            return self._command_rejected(cmd, request, RejectCode.UNKNOWN_ORDER)
        order = account.orders[clid]
        if order is CLOSED:
            return self._command_rejected(cmd, request, RejectCode.ORDER_CLOSED)
        return order

    def _cancel_order(self, cmd: CancelOrder) -> list:
        found = self._find_order(cmd, "cancel")
        if type(found) is CancelRejected:
            return [found]
        events: list = []
        found.book.cancel(found, CancelReason.USER, events, cmd.ts)
        return events

    def _replace_order(self, cmd: ReplaceOrder) -> list:
        found = self._find_order(cmd, "replace")
        if type(found) is CancelRejected:
            return [found]
        order: Order = found
        book = order.book
        instrument = book.instrument
        quantity = order.quantity if cmd.quantity is None else cmd.quantity
        price = order.price if cmd.price is None else cmd.price
        if type(quantity) is not int or quantity <= 0:
            return [self._command_rejected(cmd, "replace", RejectCode.INVALID_QUANTITY)]
        if quantity < instrument.min_lots:
            return [self._command_rejected(cmd, "replace", RejectCode.QUANTITY_BELOW_MINIMUM)]
        if quantity > instrument.max_lots:
            return [self._command_rejected(cmd, "replace", RejectCode.QUANTITY_ABOVE_MAXIMUM)]
        code = _invalid_price(price, instrument)
        if code is not None:
            return [self._command_rejected(cmd, "replace", code)]
        if quantity <= order.filled:
            return [self._command_rejected(cmd, "replace", RejectCode.REPLACE_QUANTITY_NOT_ABOVE_FILLED)]
        if quantity == order.quantity and price == order.price:
            return [self._command_rejected(cmd, "replace", RejectCode.REPLACE_CHANGES_NOTHING)]
        waiting = order.stop_price is not None
        if order.post_only and not waiting and price != order.price and book.would_take(order.side, price):
            return [self._command_rejected(cmd, "replace", RejectCode.POST_ONLY_WOULD_TAKE)]

        ts = cmd.ts
        events: list = []
        counters = self.counters
        if waiting or (price == order.price and quantity < order.quantity):
            # Keeps its place: a smaller quantity at the same price, or a stop still waiting
            # (it has no place in the book yet and is amended where it waits).
            seq = counters.seq = counters.seq + 1
            events.append(OrderReplaced(seq, ts, book.symbol, order.order_id, order.account.account_id,
                                        order.client_order_id, price, quantity, quantity - order.filled, True))
            if waiting:
                order.leaves = quantity - order.filled
                order.quantity = quantity
                order.price = price
            else:
                book.reduce_in_place(order, quantity, events, ts)
            return events
        # Loses priority: the order leaves the book and arrives again, as a new object so that
        # the dead entry it leaves in its old level can never be mistaken for it.
        filled = order.filled
        book.unlink(order, events, ts)
        moved = Order(order.order_id, book, order.account, order.client_order_id, order.side,
                      order.order_type, order.time_in_force, price, quantity, order.display_quantity, None,
                      order.expire_date, order.post_only, order.self_trade_prevention, ts)
        moved.leaves = quantity - filled
        del self.open_orders[order.order_id]
        order.account.orders[order.client_order_id] = moved
        seq = counters.seq = counters.seq + 1
        events.append(OrderReplaced(seq, ts, book.symbol, moved.order_id, moved.account.account_id,
                                    moved.client_order_id, price, quantity, moved.leaves, False))
        book.execute(moved, events, ts)
        if book.buy_stops or book.sell_stops:
            book.release_stops(events, ts)
        return events

    def _mass_cancel(self, cmd: MassCancel) -> list:
        ts, account_id, symbol = cmd.ts, cmd.account, cmd.instrument
        if type(ts) is not int or ts < 0:
            return [self._command_rejected(cmd, "mass_cancel", RejectCode.INVALID_TIMESTAMP)]
        if type(account_id) is not str or not account_id:
            return [self._command_rejected(cmd, "mass_cancel", RejectCode.INVALID_ACCOUNT)]
        if symbol is not None and (type(symbol) is not str or symbol not in self.books):
            return [self._command_rejected(cmd, "mass_cancel", RejectCode.UNKNOWN_INSTRUMENT)]
        account = self.accounts.get(account_id)
        events: list = []
        if account is None:
            return events
        doomed = sorted((order for order in account.orders.values()
                         if order is not CLOSED and (symbol is None or order.book.symbol == symbol)),
                        key=_by_order_id)
        for order in doomed:
            order.book.cancel(order, CancelReason.MASS_CANCEL, events, ts)
        return events

    def _set_self_trade_prevention(self, cmd: SetSelfTradePrevention) -> list:
        ts, account_id = cmd.ts, cmd.account
        if type(ts) is not int or ts < 0:
            return [self._command_rejected(cmd, "set_stp", RejectCode.INVALID_TIMESTAMP)]
        if type(account_id) is not str or not account_id:
            return [self._command_rejected(cmd, "set_stp", RejectCode.INVALID_ACCOUNT)]
        try:
            mode = _STP_MODES[cmd.mode]
        except (KeyError, TypeError):
            return [self._command_rejected(cmd, "set_stp", RejectCode.INVALID_SELF_TRADE_MODE)]
        self._account(account_id).self_trade_prevention = mode
        seq = self.counters.seq = self.counters.seq + 1
        return [SelfTradePreventionSet(seq, ts, account_id, mode)]

    # -- end of day ----------------------------------------------------------------------

    def _end_of_day(self, cmd: EndOfDay) -> list:
        ts, trading_date = cmd.ts, cmd.trading_date
        if type(ts) is not int or ts < 0:
            return [self._command_rejected(cmd, "end_of_day", RejectCode.INVALID_TIMESTAMP)]
        if not valid_date(trading_date):
            return [self._command_rejected(cmd, "end_of_day", RejectCode.INVALID_TRADING_DATE)]
        if self.last_closed_date is not None and trading_date <= self.last_closed_date:
            return [self._command_rejected(cmd, "end_of_day", RejectCode.TRADING_DATE_NOT_AFTER_LAST)]
        events: list = []
        counters = self.counters
        expiring = [order for order in self.open_orders.values()
                    if order.time_in_force is DAY
                    or (order.time_in_force is GTD and order.expire_date <= trading_date)]
        expiring.sort(key=_by_order_id)
        for order in expiring:
            book = order.book
            book.unlink(order, events, ts)
            expired = order.leaves
            order.leaves = 0
            del self.open_orders[order.order_id]
            order.account.orders[order.client_order_id] = CLOSED
            seq = counters.seq = counters.seq + 1
            events.append(OrderExpired(seq, ts, book.symbol, order.order_id, order.account.account_id,
                                       order.client_order_id, expired))
        # Client order ids are unique per trading day: forget those of orders no longer open.
        for account in self.accounts.values():
            account.orders = {clid: order for clid, order in account.orders.items() if order is not CLOSED}
        self.last_closed_date = trading_date
        seq = counters.seq = counters.seq + 1
        events.append(TradingDayClosed(seq, ts, trading_date, len(expiring)))
        return events

    # -- helpers -------------------------------------------------------------------------

    def _account(self, account_id: str) -> Account:
        account = self.accounts.get(account_id)
        if account is None:
            account = self.accounts[account_id] = Account(account_id)
        return account

    def _order_rejected(self, cmd: NewOrder, code: RejectCode) -> OrderRejected:
        seq = self.counters.seq = self.counters.seq + 1
        clid = cmd.client_order_id if _valid_client_order_id(cmd.client_order_id) else None
        symbol = cmd.instrument if type(cmd.instrument) is str and cmd.instrument in self.books else None
        account = cmd.account if type(cmd.account) is str else None
        return OrderRejected(seq, cmd.ts if type(cmd.ts) is int else 0, account, clid, symbol, code, code.text)

    def _command_rejected(self, cmd: object, request: str, code: RejectCode) -> CancelRejected:
        seq = self.counters.seq = self.counters.seq + 1
        ts = getattr(cmd, "ts", 0)
        account = getattr(cmd, "account", None)
        order_id = getattr(cmd, "order_id", None)
        clid = getattr(cmd, "client_order_id", None)
        return CancelRejected(seq, ts if type(ts) is int else 0, account if type(account) is str else None,
                              request, order_id if type(order_id) is int else None,
                              clid if _valid_client_order_id(clid) else None, code, code.text)

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
            yield f"book {symbol} last={book.last_price}"
            for side in (Side.BUY, Side.SELL):
                for order in book.resting_orders(side):
                    yield "rest " + _order_line(order)
            for order in sorted(book.waiting_stops(), key=_by_order_id):
                yield "stop " + _order_line(order)
        for account_id in sorted(self.accounts):
            account = self.accounts[account_id]
            yield f"account {account_id} stp={account.self_trade_prevention}"
            for clid in sorted(account.orders, key=repr):
                order = account.orders[clid]
                yield f"clid {clid!r} {'closed' if order is CLOSED else order.order_id}"


def _order_line(order: Order) -> str:
    return (f"{order.order_id} {order.account.account_id} {order.client_order_id!r} {order.side} "
            f"{order.order_type} {order.time_in_force} p={order.price} q={order.quantity} "
            f"leaves={order.leaves} shown={order.visible} display={order.display_quantity} "
            f"stop={order.stop_price} exp={order.expire_date} po={order.post_only} "
            f"stp={order.self_trade_prevention} ts={order.ts}")


def _by_order_id(order: Order) -> int:
    return order.order_id


def _invalid_price(price: object, instrument: Instrument) -> RejectCode | None:
    if type(price) is not int:
        return RejectCode.INVALID_PRICE
    if price % instrument.tick_size:
        return RejectCode.PRICE_NOT_ON_TICK
    if not instrument.min_price <= price <= instrument.max_price:
        return RejectCode.PRICE_OUT_OF_RANGE
    return None
