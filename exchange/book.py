"""The limit order book of one instrument, and its matching.

How this works
--------------
The book holds its two sides (:class:`~exchange.book_side.BookSide`: price
levels in priority, each a queue of orders in time priority; the layout is
explained there), its waiting stop orders (:class:`~exchange.stops.StopOrders`)
and its trading phase. An order the engine accepted arrives through
:meth:`OrderBook.execute` (matching, then rest or cancel) or, when it cannot
cross, :meth:`OrderBook.rest`. The call phases' auction runs on the book from
``exchange.call_auction``; what fills and cancels move in holdings is
``exchange.risk``.

Rules
-----
1. Price-time priority: best price first, then earliest at that price.
2. A trade prints at the resting (maker) order's price.
3. An iceberg shows ``display_quantity`` lots at a time; when the shown part
   is filled it refills from the reserve and goes to the back of its level.
4. Reducing an order's quantity at the same price keeps its place; any other
   change makes it a new arrival (the engine re-enters it through
   :meth:`OrderBook.execute`).
5. Self-trade prevention is checked maker by maker, before each fill.
6. Stop-limit orders wait outside the book, ordered by stop price then
   arrival; a trade that reaches the stop price releases them, one at a time,
   nearest stop first on each side (between a buy and a sell stop both
   reached, the earlier arrival), and each enters as a new limit order.

7. Orders match on arrival only in the CONTINUOUS phase. In a call phase
   they rest, the book may cross, and ``call_auction.uncross`` ends the
   call with an auction at one price (``exchange.call_auction``): bids by price
   then time meet asks by price then time, every fill at that price.
8. With a volatility band, an incoming order trades only at prices within
   the band around the last trade (or auction) price. If it would trade
   beyond, it stops there and the instrument goes into a volatility
   interruption (a call); the rest of the order rests if it is a persistent
   limit order and is cancelled otherwise (IOC, FOK, market).

The book never reads a clock and never raises on bad input: the engine
validates commands before they reach it. Events are appended to the list the
caller passes in, each with the next number from the shared
:class:`~exchange.accounts.Counters`.
"""
from __future__ import annotations

from collections.abc import Iterator

from .accounts import CLOSED, Account, Counters
from .book_side import EMPTY, BookSide
from .enums import CancelReason, SelfTradePrevention, Side, TimeInForce, TradingPhase
from .events import OrderCanceled, StopTriggered, Trade, TradingPhaseChanged
from .instruments import Instrument
from .orders import Order
from .risk import release, settle_fill
from .stops import StopOrders

BUY = Side.BUY
SELL = Side.SELL
NO_LIMIT = EMPTY - 1  # limit key of a market order without a collar: reaches every level
STP_NONE = SelfTradePrevention.NONE
STP_CANCEL_RESTING = SelfTradePrevention.CANCEL_RESTING
STP_CANCEL_TAKING = SelfTradePrevention.CANCEL_TAKING
IOC = TimeInForce.IOC
FOK = TimeInForce.FOK
CONTINUOUS = TradingPhase.CONTINUOUS
VOLATILITY_INTERRUPTION = TradingPhase.VOLATILITY_INTERRUPTION

_new = tuple.__new__  # builds an event tuple without the NamedTuple constructor's keyword handling


class OrderBook:
    """Bids, asks and waiting stop orders of one instrument."""

    __slots__ = ("instrument", "symbol", "bids", "asks", "last_price", "stops", "counters", "open_orders",
                 "fee_account", "phase")

    def __init__(self, instrument: Instrument, counters: Counters, open_orders: dict[int, Order],
                 fee_account: Account | None = None) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        # The account fees are paid to; None when the engine keeps no holdings (no pre-trade risk):
        # then fills move nothing and orders reserve nothing.
        self.fee_account = fee_account
        self.bids = BookSide(BUY)
        self.asks = BookSide(SELL)
        self.last_price: int | None = None  # price of the last trade
        self.phase = CONTINUOUS  # until the exchange's schedule says otherwise (SetTradingPhase)
        self.stops = StopOrders()
        self.counters = counters
        self.open_orders = open_orders  # the engine's index of open orders by order id

    # -- queries -------------------------------------------------------------------------

    def best_bid(self) -> int | None:
        return self.bids.best_price()

    def best_ask(self) -> int | None:
        return self.asks.best_price()

    def reference_price(self) -> int:
        """Price the market-order collar is centred on: the last trade, else the configured reference."""
        return self.instrument.reference_price if self.last_price is None else self.last_price

    def depth(self, side: Side, max_levels: int | None = None) -> list[tuple[int, int, int]]:
        """Aggregated levels (price, shown lots, orders), best first."""
        return (self.bids if side is BUY else self.asks).depth(max_levels)

    def resting_orders(self, side: Side) -> Iterator[Order]:
        """Live resting orders of one side, in matching priority."""
        return (self.bids if side is BUY else self.asks).resting_orders()

    # -- matching --------------------------------------------------------------------------

    def _market_limit_key(self, order: Order) -> int:
        """The largest opposite-side key a market order may trade at: its collar, or every level."""
        collar = self.instrument.market_collar
        if collar is None:
            return NO_LIMIT
        reference = self.reference_price()
        return reference + collar if order.side is BUY else collar - reference

    def would_take(self, side: Side, price: int) -> bool:
        """True if a limit order at this price would trade on entry (post-only check)."""
        if side is BUY:
            return self.asks.best <= price
        return self.bids.best <= -price

    def execute(self, order: Order, events: list, ts: int) -> None:
        """Match an accepted order against the book, then rest, cancel or kill what is left.

        The order must be valid and already announced (OrderAccepted,
        StopTriggered or OrderReplaced is in ``events``). Stops that its trades
        reach are not released here: the engine calls :meth:`release_stops`.
        """
        side = order.side
        price = order.price
        if price is not None:  # a limit order (a market order has no price)
            if side is BUY:
                opposite = self.asks
                limit_key = price
            else:
                opposite = self.bids
                limit_key = -price
        else:
            opposite = self.asks if side is BUY else self.bids
            limit_key = self._market_limit_key(order)
        time_in_force = order.time_in_force
        order_key = limit_key
        band = self.instrument.volatility_band_bps
        if band:  # trade only within the band around the last price; beyond it, a volatility interruption
            reference = self.reference_price()
            reach = max(reference * band // 10_000, self.instrument.tick_size)  # at least a tick, at any price
            band_key = reference + reach if side is BUY else reach - reference
            if band_key < limit_key:
                limit_key = band_key
        if time_in_force is FOK and opposite.best <= order_key and not opposite.can_fill(order, limit_key):
            # All or nothing: if it fills in full only beyond the band it does not trade at all.
            if limit_key < order_key and opposite.can_fill(order, order_key):
                self._interrupt(order, opposite, limit_key, reference, events, ts)
            else:
                self._canceled(order, CancelReason.FOK_UNFILLED, events, ts)
            return
        if opposite.best <= limit_key:
            leaves = self._match(order, opposite, limit_key, events, ts)
            if not leaves:  # filled in full: retired (inlined: it never rested, and its fills freed its hold)
                order.account.orders[order.client_order_id] = CLOSED
                return
            if leaves < 0:  # self-trade prevention stopped the order; it is closed already
                return
        else:
            leaves = order.leaves
        if limit_key < order_key and opposite.best <= order_key:  # it would trade outside the band
            self._interrupt(order, opposite, limit_key, reference, events, ts)
            return
        if time_in_force is IOC or time_in_force is FOK or price is None:
            reason = (CancelReason.FOK_UNFILLED if time_in_force is FOK else
                      CancelReason.MARKET_REMAINDER if price is None else CancelReason.IOC_REMAINDER)
            self._canceled(order, reason, events, ts)
            return
        self.rest(order, leaves)

    def rest(self, order: Order, leaves: int) -> None:
        """Put an order with ``leaves`` lots open at the back of its price level (the level is marked changed)."""
        side = order.side
        price = order.price
        assert price is not None  # only limit orders rest
        if side is BUY:
            own = self.bids
            key = -price
        else:
            own = self.asks
            key = price
        level = own.levels.get(key)
        if level is None:
            level = own.add_level(key, price)
        display = order.display_quantity
        shown = leaves if display is None or display > leaves else display
        order.visible = shown
        level.orders.append(order)
        level.quantity += shown
        level.count += 1
        own.changed[price] = level
        self.open_orders[order.order_id] = order
        order.account.open_orders[order.order_id] = order

    def _match(self, order: Order, opposite: BookSide, limit_key: int, events: list, ts: int) -> int:
        """Trade the order against the opposite side up to its limit key; return its leaves.

        Returns -1 when self-trade prevention cancelled the rest of the order.

        The hot loop of the engine, so two things are written out here rather than called: event and trade
        numbers are counted in locals and written back to the counters (around any call that numbers events
        itself), and a filled maker is retired inline (:meth:`retire`, without the release: its fills used up
        what it held). Each call would cost about 5% of the benchmark.
        """
        counters = self.counters
        symbol = self.symbol
        side = order.side
        append = events.append
        leaves = order.leaves
        seq = counters.seq
        trade_id = counters.trade_id
        levels = opposite.levels
        changed = opposite.changed
        open_orders = self.open_orders
        taker_account = order.account
        taker_account_id = taker_account.account_id
        taker_id = order.order_id
        taker_clid = order.client_order_id
        stp = order.self_trade_prevention
        fee_account = self.fee_account
        maker_fee = self.instrument.maker_fee
        taker_fee = self.instrument.taker_fee
        taker_stopped = False  # self-trade prevention cancelled the taker
        last_price = 0
        while leaves and opposite.best <= limit_key:
            key = opposite.best
            level = levels[key]
            queue = level.orders
            price = level.price
            before = trade_id, level.count  # to tell whether this level changed at all
            while True:
                maker = queue[0]
                shown = maker.visible
                if not shown:  # dead entry left by a cancel or a replace
                    queue.popleft()
                    continue
                if stp is not STP_NONE and maker.account is taker_account:
                    counters.seq = seq
                    if stp is not STP_CANCEL_TAKING:  # CANCEL_RESTING or CANCEL_BOTH
                        queue.popleft()
                        maker.visible = 0
                        level.quantity -= shown
                        level.count -= 1
                        self._canceled(maker, CancelReason.SELF_TRADE, events, ts)
                    if stp is not STP_CANCEL_RESTING:  # CANCEL_TAKING or CANCEL_BOTH
                        taker_stopped = True
                    seq = counters.seq
                    if taker_stopped or not level.count:
                        break
                    continue
                fill = shown if shown < leaves else leaves
                leaves -= fill
                maker_leaves = maker.leaves - fill
                maker.leaves = maker_leaves
                level.quantity -= fill
                seq += 1
                trade_id += 1
                fill_maker_fee = maker_fee * fill
                fill_taker_fee = taker_fee * fill
                append(_new(Trade, (seq, ts, symbol, trade_id, price, fill, side, taker_id,
                                    taker_account_id, taker_clid, leaves, maker.order_id,
                                    maker.account.account_id, maker.client_order_id, maker_leaves,
                                    fill_maker_fee, fill_taker_fee)))
                if fee_account is not None:
                    settle_fill(self, fee_account, order, maker, price, fill, fill_maker_fee, fill_taker_fee)
                last_price = price
                if fill == shown:
                    queue.popleft()
                    if maker_leaves:  # iceberg: show the next slice at the back of the level
                        display = maker.display_quantity
                        assert display is not None  # only an iceberg has lots left when its shown part fills
                        shown = display if display < maker_leaves else maker_leaves
                        maker.visible = shown
                        level.quantity += shown
                        queue.append(maker)
                    else:  # filled: retired (inlined, see above)
                        maker.visible = 0
                        level.count -= 1
                        del open_orders[maker.order_id]
                        maker_account = maker.account
                        del maker_account.open_orders[maker.order_id]
                        maker_account.orders[maker.client_order_id] = CLOSED
                        if not level.count:
                            break
                else:
                    maker.visible = shown - fill
                if not leaves:
                    break
            if before != (trade_id, level.count):
                changed[price] = level
            if not level.count:
                opposite.remove_level(key)
            if taker_stopped:
                break
        counters.seq = seq
        counters.trade_id = trade_id
        if last_price:
            self.last_price = last_price
        order.leaves = leaves
        if taker_stopped and leaves:
            self._canceled(order, CancelReason.SELF_TRADE, events, ts)
            return -1
        return leaves

    def _interrupt(self, order: Order, opposite: BookSide, band_key: int, reference: int, events: list,
                   ts: int) -> None:
        """The order would trade outside the volatility band (``band_key``, around ``reference``, the last
        price when the order arrived): the instrument goes into a volatility interruption; the rest of the
        order (its ``leaves``) rests if it is a persistent limit order, else it is cancelled."""
        keys = opposite.keys
        outside = keys[keys.bisect_right(band_key)]  # the first price beyond the band: the one it would trade at
        events.append(TradingPhaseChanged(self.counters.next_seq(), ts, self.symbol, VOLATILITY_INTERRUPTION,
                                          self.phase, "volatility", opposite.sign * outside, reference))
        self.phase = VOLATILITY_INTERRUPTION
        time_in_force = order.time_in_force
        if order.price is None or time_in_force is IOC or time_in_force is FOK:
            self._canceled(order, CancelReason.VOLATILITY_INTERRUPTION, events, ts)
        else:
            self.rest(order, order.leaves)

    # -- closing orders ------------------------------------------------------------------

    def retire(self, order: Order) -> int:
        """Close an order that is out of the book (filled, or taken off its level or stop list): what its open
        lots held goes back, it leaves the open-order indexes if it was in them, and its client order id
        answers "closed" from now on. Returns the lots it still had open.

        The one way an order closes (the matching loop keeps an inlined copy for a filled maker)."""
        leaves = order.leaves
        if leaves:
            if self.fee_account is not None:
                release(order, leaves)
            order.leaves = 0
        order_id = order.order_id
        account = order.account
        self.open_orders.pop(order_id, None)  # (an order that never rested was never in them)
        account.open_orders.pop(order_id, None)
        account.orders[order.client_order_id] = CLOSED
        return leaves

    def _canceled(self, order: Order, reason: CancelReason, events: list, ts: int) -> None:
        """Retire an order that is out of the book and announce its open lots cancelled."""
        leaves = self.retire(order)
        events.append(_new(OrderCanceled, (self.counters.next_seq(), ts, self.symbol, order.order_id,
                                           order.account.account_id, order.client_order_id, leaves, reason)))

    # -- removing and amending resting orders ------------------------------------------------

    def unlink(self, order: Order) -> None:
        """Take an open order out of the book (or the stop list) without closing it.

        Leaves a dead entry in the level's deque and marks the level changed.
        """
        if order.stop_price is not None:  # a waiting stop: not in the book
            self.stops.remove(order)
            return
        (self.bids if order.side is BUY else self.asks).take_out(order)

    def cancel(self, order: Order, reason: CancelReason, events: list, ts: int) -> None:
        """Cancel an open order (resting or waiting stop): :meth:`unlink` and :meth:`_canceled` in one.

        :meth:`_canceled` and :meth:`retire` under it are written out here: cancels are close to half of all
        commands, and the two calls cost about 100 ns, 7% of a cancel (measured with pre-trade risk).
        """
        leaves = order.leaves
        if self.fee_account is not None:
            release(order, leaves)
        order.leaves = 0
        order_id = order.order_id
        del self.open_orders[order_id]
        account = order.account
        del account.open_orders[order_id]
        clid = order.client_order_id
        account.orders[clid] = CLOSED
        counters = self.counters
        seq = counters.seq = counters.seq + 1  # Counters.next_seq, inlined
        events.append(_new(OrderCanceled, (seq, ts, self.symbol, order_id, account.account_id, clid, leaves,
                                           reason)))
        if order.stop_price is not None:  # a waiting stop: not in the book
            self.stops.remove(order)
        else:
            (self.bids if order.side is BUY else self.asks).take_out(order)

    def reduce_in_place(self, order: Order, quantity: int) -> None:
        """Lower a resting order's total quantity, keeping its place in the queue."""
        leaves = quantity - order.filled
        order.quantity = quantity
        order.leaves = leaves
        shown = order.visible
        if order.stop_price is None and (shown > leaves or self.phase is not CONTINUOUS):
            # (In a call the whole open quantity counts for the auction: a smaller hidden reserve changes
            # the indicative price, which is announced with the level's change.)
            own = self.bids if order.side is BUY else self.asks
            price = order.price
            assert price is not None  # a resting order has a limit price
            level = own.levels[own.sign * price]
            if shown > leaves:
                level.quantity -= shown - leaves
                order.visible = leaves
            own.changed[level.price] = level

    # -- stop orders -----------------------------------------------------------------------

    def waiting_stops(self) -> list[Order]:
        """The stops waiting for their trigger: buy stops, then sell stops, each in trigger priority."""
        return list(self.stops)

    def park_stop(self, order: Order) -> None:
        """Hold a stop-limit order until the last trade price reaches its stop price."""
        self.stops.add(order)
        self.open_orders[order.order_id] = order
        order.account.open_orders[order.order_id] = order

    def release_stops(self, events: list, ts: int) -> None:
        """Trigger every stop the last trade price reaches; their trades may reach more (in continuous trading
        only: a triggered stop that sends the instrument into a call leaves the others waiting)."""
        stops = self.stops
        while stops.count and self.phase is CONTINUOUS:
            last_price = self.last_price
            if last_price is None:
                return
            order = stops.next_reached(last_price)
            if order is None:
                return
            self.trigger(order, last_price, events, ts)

    def trigger(self, order: Order, last_price: int, events: list, ts: int) -> None:
        """Turn a waiting stop, which the last trade price reached, into a limit order arriving now."""
        stop_price = order.stop_price
        assert stop_price is not None  # a waiting stop
        self.stops.remove(order)
        del self.open_orders[order.order_id]  # it arrives again as a new order, which indexes it if it rests
        del order.account.open_orders[order.order_id]
        events.append(StopTriggered(self.counters.next_seq(), ts, self.symbol, order.order_id,
                                    order.account.account_id, order.client_order_id, stop_price, last_price))
        order.stop_price = None
        self.execute(order, events, ts)

    # -- book changes ---------------------------------------------------------------------

    def flush_level_changes(self, events: list, ts: int) -> None:
        """Announce every level changed since the last flush, once each, in its final state: bids first, then
        asks (see :meth:`BookSide.announce_changes`)."""
        for own in (self.bids, self.asks):
            if own.changed:
                own.announce_changes(self.symbol, self.counters, events, ts)

    # -- self-check --------------------------------------------------------------------------

    def _check(self) -> None:
        """Assert every structural invariant; the property tests call it after each step."""
        self.bids.check(self.open_orders)
        self.asks.check(self.open_orders)
        best_bid, best_ask = self.best_bid(), self.best_ask()
        if self.phase is CONTINUOUS or self.phase is TradingPhase.CLOSED:  # calls and halts may cross
            assert best_bid is None or best_ask is None or best_bid < best_ask, "book is crossed"
        assert self.stops.count == len(self.stops.buy) + len(self.stops.sell), "stop count is wrong"
        for order in self.stops:
            assert order.visible == 0 and order.stop_price is not None, "bad waiting stop"
            assert self.open_orders.get(order.order_id) is order, "waiting stop not in the index"
