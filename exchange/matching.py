"""Matching: an order arriving in continuous trading against the opposite side of its book.

How this works
--------------
:func:`execute` takes an accepted order (announced already: OrderAccepted,
StopTriggered or OrderReplaced is in the events) and works out its limit on
the opposite side as a *key* (``exchange.book_side``: the best level has the
smallest key on either side, so "the order reaches this level" is
``side.best <= limit_key``): its price, or for a market order its collar.
A volatility band lowers the limit to the band's edge. :func:`_match` then
trades level by level, maker by maker; what is left rests, or is cancelled
(IOC, FOK, market), or the instrument goes into a volatility interruption.
Stops the new last price reaches are released by the caller
(``OrderBook.release_stops``), once the order is done.

Rules
-----
1. Price-time priority: best price first, then earliest at that price.
2. A trade prints at the resting (maker) order's price.
3. An iceberg shows ``display_quantity`` lots at a time; when the shown part
   is filled it refills from the reserve and goes to the back of its level.
4. Reducing an order's quantity at the same price keeps its place; any other
   change makes it a new arrival (the engine re-enters it through
   :func:`execute`).
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

Holdings move at every fill (``exchange.risk.settle_fill``) when the
engine keeps them; an order leaves the book through the book's own methods
(``OrderBook.retire``, ``OrderBook.close_canceled``), except where the
matching loop writes them out for speed, and says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .accounts import CLOSED
from .book_side import EMPTY, BookSide, Level
from .enums import CancelReason, SelfTradePrevention, Side, TimeInForce, TradingPhase
from .events import Trade, TradingPhaseChanged
from .orders import Order
from .risk import settle_fill

if TYPE_CHECKING:
    from .book import OrderBook

BUY: Final = Side.BUY
NO_LIMIT: Final = EMPTY - 1  # limit key of a market order without a collar: reaches every level
STP_NONE: Final = SelfTradePrevention.NONE
STP_CANCEL_RESTING: Final = SelfTradePrevention.CANCEL_RESTING
STP_CANCEL_TAKING: Final = SelfTradePrevention.CANCEL_TAKING
IOC: Final = TimeInForce.IOC
FOK: Final = TimeInForce.FOK
VOLATILITY_INTERRUPTION: Final = TradingPhase.VOLATILITY_INTERRUPTION


def execute(book: OrderBook, order: Order, events: list, ts: int) -> None:
    """Match an accepted order against the book, then rest, cancel or kill what is left.

    The order must be valid and already announced (OrderAccepted,
    StopTriggered or OrderReplaced is in ``events``). Stops that its trades
    reach are not released here: the caller calls ``OrderBook.release_stops``.
    """
    side = order.side
    price = order.price
    if price is not None:  # a limit order (a market order has no price)
        if side is BUY:
            opposite = book.asks
            limit_key = price
        else:
            opposite = book.bids
            limit_key = -price
    else:
        opposite = book.asks if side is BUY else book.bids
        limit_key = _market_limit_key(book, order)
    time_in_force = order.time_in_force
    order_key = limit_key
    band = book.volatility_band_bps
    if band:  # trade only within the band around the last price; beyond it, a volatility interruption
        reference = book.reference_price()
        reach = max(reference * band // 10_000, book.tick_size)  # at least a tick, at any price
        band_key = reference + reach if side is BUY else reach - reference
        if band_key < limit_key:
            limit_key = band_key
    if time_in_force is FOK and opposite.best <= order_key and not opposite.can_fill(order, limit_key):
        # All or nothing: if it fills in full only beyond the band it does not trade at all.
        if limit_key < order_key and opposite.can_fill(order, order_key):
            _interrupt(book, order, opposite, limit_key, reference, events, ts)
        else:
            book.close_canceled(order, CancelReason.FOK_UNFILLED, events, ts)
        return
    if opposite.best <= limit_key:
        leaves = _match(book, order, opposite, limit_key, events, ts)
        if not leaves:  # filled in full: retired, inlined (see _match): it never rested, its fills freed its hold
            order.account.orders[order.client_order_id] = CLOSED
            return
        if leaves < 0:  # self-trade prevention stopped the order; it is closed already
            return
    else:
        leaves = order.leaves
    if limit_key < order_key and opposite.best <= order_key:  # it would trade outside the band
        _interrupt(book, order, opposite, limit_key, reference, events, ts)
        return
    if time_in_force is IOC or time_in_force is FOK or price is None:
        reason = (
            CancelReason.FOK_UNFILLED
            if time_in_force is FOK
            else CancelReason.MARKET_REMAINDER
            if price is None
            else CancelReason.IOC_REMAINDER
        )
        book.close_canceled(order, reason, events, ts)
        return
    book.rest(order, leaves)


def _market_limit_key(book: OrderBook, order: Order) -> int:
    """The largest opposite-side key a market order may trade at: its collar, or every level."""
    collar = book.market_collar
    if collar is None:
        return NO_LIMIT
    reference = book.reference_price()
    return reference + collar if order.side is BUY else collar - reference


def _match(book: OrderBook, order: Order, opposite: BookSide, limit_key: int, events: list, ts: int) -> int:
    """Trade the order against the opposite side up to its limit key; return its leaves.

    Returns -1 when self-trade prevention cancelled the rest of the order.

    The hot loop of the engine, so two things are written out here rather than called: event and trade
    numbers are counted in locals and written back to the counters (around any call that numbers events
    itself), and a filled maker is retired inline (``OrderBook.retire``, without the release: its fills used up
    what it held), as is a taker filled in full in :func:`execute`. Measured: the two retire calls cost about 5%
    of an order that takes a level (200 ns of 4 us).
    """
    counters, symbol, open_orders = book.counters, book.symbol, book.open_orders
    seq, trade_id = counters.seq, counters.trade_id
    levels, changed = opposite.levels, opposite.changed
    side, leaves, stp = order.side, order.leaves, order.self_trade_prevention
    taker_account, taker_id, taker_clid = order.account, order.order_id, order.client_order_id
    taker_account_id = taker_account.account_id
    fee_account, maker_fee, taker_fee = book.fee_account, book.maker_fee, book.taker_fee
    taker_stopped = False  # self-trade prevention cancelled the taker
    last_price = 0
    settling = book.settling  # in the settlement window: the fills' value and lots are summed
    window_value = window_lots = 0
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
                taker_stopped = _prevent_self_trade(book, stp, maker, level, events, ts)
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
            events.append(
                Trade(
                    seq,
                    ts,
                    symbol,
                    trade_id,
                    price,
                    fill,
                    side,
                    taker_id,
                    taker_account_id,
                    taker_clid,
                    leaves,
                    maker.order_id,
                    maker.account.account_id,
                    maker.client_order_id,
                    maker_leaves,
                    fill_maker_fee,
                    fill_taker_fee,
                )
            )
            if fee_account is not None:
                settle_fill(book, fee_account, order, maker, price, fill, fill_maker_fee, fill_taker_fee)
            last_price = price
            if settling:
                window_value += price * fill
                window_lots += fill
            if fill == shown:
                queue.popleft()
                if maker_leaves:  # iceberg: show the next slice at the back of the level
                    display = maker.display_quantity
                    assert display is not None  # only an iceberg has lots left when its shown part fills
                    shown = maker.visible = display if display < maker_leaves else maker_leaves
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
        book.last_price = last_price
    if window_lots:
        book.window_value += window_value
        book.window_lots += window_lots
    order.leaves = leaves
    if taker_stopped and leaves:
        book.close_canceled(order, CancelReason.SELF_TRADE, events, ts)
        return -1
    return leaves


def _prevent_self_trade(
    book: OrderBook, stp: SelfTradePrevention, maker: Order, level: Level, events: list, ts: int
) -> bool:
    """The taker met an order of its own account at the front of ``level``: cancel that maker (CANCEL_RESTING,
    CANCEL_BOTH) and say whether the taker stops too (CANCEL_TAKING, CANCEL_BOTH)."""
    if stp is not STP_CANCEL_TAKING:
        level.orders.popleft()
        level.quantity -= maker.visible
        level.count -= 1
        maker.visible = 0
        book.close_canceled(maker, CancelReason.SELF_TRADE, events, ts)
    return stp is not STP_CANCEL_RESTING


def _interrupt(
    book: OrderBook, order: Order, opposite: BookSide, band_key: int, reference: int, events: list, ts: int
) -> None:
    """The order would trade outside the volatility band (``band_key``, around ``reference``, the last
    price when the order arrived): the instrument goes into a volatility interruption; the rest of the
    order (its ``leaves``) rests if it is a persistent limit order, else it is cancelled."""
    keys = opposite.keys
    outside = keys[keys.bisect_right(band_key)]  # the first price beyond the band: the one it would trade at
    events.append(
        TradingPhaseChanged(
            book.counters.next_seq(),
            ts,
            book.symbol,
            VOLATILITY_INTERRUPTION,
            book.phase,
            "volatility",
            opposite.sign * outside,
            reference,
        )
    )
    book.phase = VOLATILITY_INTERRUPTION
    time_in_force = order.time_in_force
    if order.price is None or time_in_force is IOC or time_in_force is FOK:
        book.close_canceled(order, CancelReason.VOLATILITY_INTERRUPTION, events, ts)
    else:
        book.rest(order, order.leaves)
