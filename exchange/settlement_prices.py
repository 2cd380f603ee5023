"""Settlement prices: each instrument's price of the day, fixed at its end of day.

How this works
--------------
The exchange's schedule opens an instrument's settlement window
(:class:`~exchange.commands.OpenSettlementWindow`; ICE Endex uses the last ten
minutes of trading, 16:50:00-16:59:59 London time). From then on every fill
of the instrument, continuous or in a closing auction, adds its value and
lots to two running sums on the book (``exchange.matching``,
``exchange.call_auction``): no list of trades is kept, so a day's memory does
not grow with its trades.

At the end of day (:class:`~exchange.commands.EndOfDay`) :func:`fix_all`
fixes every instrument's price, in symbol order, each as one
:class:`~exchange.events.SettlementPriceFixed` event:

1. ``window``: the volume-weighted average of the window's trades, rounded
   half to even to the cent, then down onto the instrument's tick;
2. ``last_trade``: nothing traded in the window: the last trade's price
   (of this day or an earlier one);
3. ``previous`` / ``none``: nothing ever traded: the last settlement price
   carried over, or none at all.

The window closes with the day; the price stays on the book (the engine's
read API answers it, snapshots keep it) until the next end of day.
"""

from __future__ import annotations

from .accounts import Counters
from .book import OrderBook
from .events import SettlementPriceFixed


def window_price(value: int, lots: int, tick: int) -> int:
    """The volume-weighted average price in cents of trades worth ``value`` (cents x lots) over ``lots``: half to
    even to the cent, then down onto the tick. Integer arithmetic only."""
    quotient, remainder = divmod(value, lots)
    if 2 * remainder > lots or (2 * remainder == lots and quotient % 2):
        quotient += 1
    return quotient - quotient % tick


def fix(book: OrderBook, counters: Counters, trading_date: int, ts: int) -> SettlementPriceFixed:
    """Fix one instrument's settlement price for ``trading_date`` and close its window."""
    lots = book.window_lots
    if lots:
        price: int | None = window_price(book.window_value, lots, book.instrument.tick_size)
        method = "window"
    elif book.last_price is not None:
        price, method = book.last_price, "last_trade"
    elif book.settlement_price is not None:
        price, method = book.settlement_price, "previous"
    else:
        price, method = None, "none"
    book.settlement_price = price
    book.settling = False
    book.window_value = book.window_lots = 0
    return SettlementPriceFixed(counters.next_seq(), ts, book.symbol, trading_date, price, method, lots)


def fix_all(books: dict[str, OrderBook], counters: Counters, trading_date: int, ts: int, events: list) -> None:
    """Every spot instrument's settlement price for the day, in symbol order (so that a replay numbers them alike);
    futures contracts are settled by their clearing desk (exchange.clearing.desk), by their own method."""
    for symbol in sorted(books):
        book = books[symbol]
        if book.clearing is None:
            events.append(fix(book, counters, trading_date, ts))
