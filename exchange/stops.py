"""Stop-limit orders waiting for their trigger, outside the book.

How this works
--------------
A stop-limit order waits unseen until the last trade price reaches its stop
price: a buy stop when the price rises to it or above, a sell stop when it
falls to it or below. :class:`StopOrders` keeps each side in a ``SortedList``
keyed so that the next to trigger comes first (buy stops lowest stop first,
sell stops highest first; ties by order id, that is by arrival). Between a
buy and a sell stop both reached, the earlier arrival goes first.

The book (``OrderBook.release_stops``) asks for the next stop reached after
every trade that moved the last price, turns it into a limit order arriving
now, and asks again, since its trades may reach more.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from mypy_extensions import mypyc_attr
from sortedcontainers import SortedList

from .enums import Side
from .orders import Order

BUY: Final = Side.BUY


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled in snapshots (docs/PERFORMANCE.md)
class StopOrders:
    """The waiting stops of one instrument, in trigger priority."""

    __slots__ = ("buy", "sell", "count")

    def __init__(self) -> None:
        self.buy: SortedList = SortedList(key=_buy_stop_priority)
        self.sell: SortedList = SortedList(key=_sell_stop_priority)
        self.count = 0  # waiting stops on both sides; a plain int, cheaper to test than the lists

    def __iter__(self) -> Iterator[Order]:
        """Buy stops, then sell stops, each in trigger priority."""
        yield from self.buy
        yield from self.sell

    def add(self, order: Order) -> None:
        (self.buy if order.side is BUY else self.sell).add(order)
        self.count += 1

    def remove(self, order: Order) -> None:
        (self.buy if order.side is BUY else self.sell).remove(order)
        self.count -= 1

    def next_reached(self, last_price: int) -> Order | None:
        """The waiting stop the last trade price has reached: nearest first on each side; between sides, by
        arrival. None if the price reaches none."""
        buy, sell = self.buy, self.sell
        if buy and buy[0].stop_price <= last_price:
            candidate: Order = buy[0]
            if sell and sell[0].stop_price >= last_price:
                other: Order = sell[0]
                return candidate if candidate.order_id < other.order_id else other
            return candidate
        if sell and sell[0].stop_price >= last_price:
            return sell[0]
        return None


def stop_reached(order: Order, last_price: int | None) -> bool:
    """Whether the last trade price (None: no trade yet) has reached a waiting stop's stop price."""
    stop_price = order.stop_price
    if last_price is None or stop_price is None:
        return False
    return last_price >= stop_price if order.side is BUY else last_price <= stop_price


# Priority keys are module functions, not lambdas, so that the lists can be pickled (snapshots).
def _buy_stop_priority(order: Order) -> tuple[int, int]:
    stop_price = order.stop_price
    assert stop_price is not None  # only stops wait here
    return stop_price, order.order_id


def _sell_stop_priority(order: Order) -> tuple[int, int]:
    stop_price = order.stop_price
    assert stop_price is not None
    return -stop_price, order.order_id
