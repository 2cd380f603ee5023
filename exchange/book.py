"""The limit order book of one instrument: its resting and waiting orders, and the ways they leave.

How this works
--------------
The book holds its two sides (:class:`~exchange.book_side.BookSide`: price
levels in priority, each a queue of orders in time priority; the layout is
explained there), its waiting stop orders (:class:`~exchange.stops.StopOrders`)
and its trading phase. An accepted order is matched against the opposite side
by ``exchange.matching.execute`` (the matching rules are there), and what is
left of it rests here (:meth:`OrderBook.rest`) if it may; in a call phase it
rests unmatched, and ``exchange.call_auction`` ends the call with an auction.

An order leaves the book in one of these ways, each with its method, and
every way of closing ends in :meth:`OrderBook.retire` (hold released, indexes
left, client order id closed):

* cancelled: :meth:`OrderBook.cancel` for an open order,
  :meth:`OrderBook.close_canceled` for one already out of the book (the rest
  of an IOC, FOK or market order, a self-trade);
* filled: matching retires it;
* expired: the engine's end of day, through :meth:`OrderBook.unlink` and
  :meth:`OrderBook.retire`;
* amended: :meth:`OrderBook.reduce_in_place` keeps its place; any other
  change takes it out (:meth:`OrderBook.unlink`) and it arrives again;
* triggered, a waiting stop: :meth:`OrderBook.trigger` turns it into a limit
  order arriving now.

Every level an order entered or left is marked changed and announced once,
in its final state, after the command or batch
(:meth:`OrderBook.flush_level_changes`).

The book never reads a clock and never raises on bad input: the engine
validates commands before they reach it. Events are appended to the list the
caller passes in, each with the next number from the shared
:class:`~exchange.accounts.Counters`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from mypy_extensions import mypyc_attr

from .accounts import CLOSED, Account, Counters
from .book_side import BookSide
from .enums import CancelReason, Side, TradingPhase
from .events import LevelChanged, OrderCanceled, StopTriggered
from .instruments import Instrument
from .matching import execute
from .orders import Order
from .risk import release
from .stops import StopOrders

if TYPE_CHECKING:
    from .clearing.desk import FuturesDesk

BUY: Final = Side.BUY
SELL: Final = Side.SELL
CONTINUOUS: Final = TradingPhase.CONTINUOUS


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled in snapshots (docs/PERFORMANCE.md)
class OrderBook:
    """Bids, asks and waiting stop orders of one instrument."""

    __slots__ = (
        "instrument",
        "symbol",
        "min_lots",
        "max_lots",
        "tick_size",
        "min_price",
        "max_price",
        "lot_units",
        "max_fee",
        "maker_fee",
        "taker_fee",
        "price_band_bps",
        "price_band_one_sided",
        "volatility_band_bps",
        "market_collar",
        "bids",
        "asks",
        "last_price",
        "stops",
        "counters",
        "open_orders",
        "fee_account",
        "phase",
        "settling",
        "window_value",
        "window_lots",
        "settlement_price",
        "clearing",
        "margin_per_lot",
    )

    def __init__(
        self,
        instrument: Instrument,
        counters: Counters,
        open_orders: dict[int, Order],
        fee_account: Account | None = None,
    ) -> None:
        self.symbol = instrument.symbol
        self.adopt(instrument)
        # The account fees are paid to; None when the engine keeps no holdings (no pre-trade risk):
        # then fills move nothing and orders reserve nothing.
        self.fee_account = fee_account
        self.bids = BookSide(BUY)
        self.asks = BookSide(SELL)
        self.last_price: int | None = None  # price of the last trade
        self.phase = CONTINUOUS  # until the exchange's schedule says otherwise (SetTradingPhase)
        # The settlement window (OpenSettlementWindow until the end of day): its trades' value (cents x lots)
        # and lots, summed as they happen so that the settlement price needs no list of the day's trades.
        self.settling = False
        self.window_value = 0
        self.window_lots = 0
        self.settlement_price: int | None = None  # fixed at each end of day (exchange.settlement_prices)
        self.stops = StopOrders()
        self.counters = counters
        self.open_orders = open_orders  # the engine's index of open orders by order id
        # A futures contract's: the clearing desk its fills go to, and the initial margin a working lot holds
        # (exchange.clearing); None and 0 for a spot instrument, whose fills move cash and units.
        self.clearing: FuturesDesk | None = None
        self.margin_per_lot = 0

    def adopt(self, instrument: Instrument) -> None:
        """Trade on these terms from now on (at construction; a futures contract's, once it has a settlement
        price to centre its bands on)."""
        self.instrument = instrument
        # The instrument's terms that every order reads, copied (an Instrument never changes: new terms come as a
        # new one): ``book.x`` is one read where ``book.instrument.x`` is two, and in the compiled build a field of
        # a compiled class rather than a look-up on one it does not compile.
        self.min_lots, self.max_lots, self.tick_size = instrument.min_lots, instrument.max_lots, instrument.tick_size
        self.min_price, self.max_price = instrument.min_price, instrument.max_price
        self.lot_units, self.max_fee = instrument.lot_units, instrument.max_fee
        self.maker_fee, self.taker_fee = instrument.maker_fee, instrument.taker_fee
        self.price_band_bps, self.volatility_band_bps = instrument.price_band_bps, instrument.volatility_band_bps
        self.market_collar = instrument.market_collar
        self.price_band_one_sided = instrument.price_band_one_sided

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

    # -- arriving orders --------------------------------------------------------------------

    def would_take(self, side: Side, price: int) -> bool:
        """True if a limit order at this price would trade on entry (post-only check)."""
        if side is BUY:
            return self.asks.best <= price
        return self.bids.best <= -price

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

    def close_canceled(self, order: Order, reason: CancelReason, events: list, ts: int) -> None:
        """Retire an order that is out of the book and announce its open lots cancelled."""
        leaves = self.retire(order)
        events.append(
            OrderCanceled(
                self.counters.next_seq(),
                ts,
                self.symbol,
                order.order_id,
                order.account.account_id,
                order.client_order_id,
                leaves,
                reason,
            )
        )

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
        """Cancel an open order (resting or waiting stop): :meth:`unlink` and :meth:`close_canceled` in one.

        :meth:`close_canceled` and :meth:`retire` under it are written out here: cancels are close to half of all
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
        events.append(OrderCanceled(seq, ts, self.symbol, order_id, account.account_id, clid, leaves, reason))
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
        events.append(
            StopTriggered(
                self.counters.next_seq(),
                ts,
                self.symbol,
                order.order_id,
                order.account.account_id,
                order.client_order_id,
                stop_price,
                last_price,
            )
        )
        order.stop_price = None
        execute(self, order, events, ts)

    # -- book changes ---------------------------------------------------------------------

    def flush_level_changes(self, events: list, ts: int) -> None:
        """A LevelChanged for every level changed since the last flush, once each, in its final state: bids, then
        asks, each in the order its levels first changed. A level that emptied is announced with quantity 0 and
        no orders; one that changed and changed back is announced all the same.

        Both sides in one loop, with the event numbers counted in a local (see Counters): nearly every command
        ends here, and a call per side cost about a tenth of a resting order."""
        counters = self.counters
        seq = counters.seq
        symbol = self.symbol
        for own in (self.bids, self.asks):
            changed = own.changed
            if changed:
                side = own.side
                for price, level in changed.items():
                    seq += 1
                    events.append(LevelChanged(seq, ts, symbol, side, price, level.quantity, level.count))
                changed.clear()
        counters.seq = seq

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
