"""One side of an order book: price levels in priority, each a queue of orders in time priority.

How this works
--------------
A :class:`BookSide` is a dict from *key* to :class:`Level` plus a
``SortedList`` of the keys. Asks are keyed by price, bids by minus the price,
so on both sides the best level has the smallest key and "the incoming order
reaches this level" is one comparison, ``side.best <= limit_key``, on either
side. ``best`` caches the smallest key (``EMPTY`` when the side is empty), so
the common case, an order that does not cross, never touches the SortedList.

A :class:`Level` keeps its orders in a ``deque`` in time priority, with the
total shown quantity and the number of live orders. Cancelling does not search
the deque: the order is marked dead (``visible == 0``), the level's counters
drop, and matching throws dead entries away when it meets them at the front.
When dead entries outnumber live ones the deque is rebuilt
(:func:`drop_dead_entries`), so memory stays proportional to live orders and
cancel stays O(1) amortised even with tens of thousands of orders at one price.

The book (``exchange.book``) adds and matches orders on its two sides
directly, for speed; what a side can answer or do on its own is here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from operator import attrgetter
from typing import Final

from mypy_extensions import mypyc_attr
from sortedcontainers import SortedList

from .enums import SelfTradePrevention, Side
from .orders import Order

SELL: Final = Side.SELL
EMPTY: Final = 1 << 62  # ``best`` of an empty side: no limit key reaches it
COMPACT_SLACK: Final = 16  # dead deque entries tolerated beyond the live count before a rebuild
STP_NONE: Final = SelfTradePrevention.NONE
STP_CANCEL_RESTING: Final = SelfTradePrevention.CANCEL_RESTING

_shown: Final = attrgetter("visible")


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled in snapshots (docs/PERFORMANCE.md)
class Level:
    """The orders resting at one price, in time priority, with their shown total."""

    __slots__ = ("price", "orders", "quantity", "count")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: deque[Order] = deque()  # may hold dead entries (visible == 0)
        self.quantity = 0  # lots shown by the live orders
        self.count = 0  # live orders

    def live_orders(self) -> Iterator[Order]:
        return filter(_shown, self.orders)  # filter + attrgetter: the rebuild after cancels runs at C speed


def drop_dead_entries(level: Level, count: int) -> None:
    """Keep a level's deque short after an order in it died (``count``: the level's live orders, at least one).

    Dead entries at the front are popped at once (a cancel of the oldest
    order is common, and matching would pop them anyway); when dead entries
    elsewhere outnumber the live ones, the deque is rebuilt. Each entry is
    dropped once, so the cost per cancel stays constant whatever the level's size.
    """
    queue = level.orders
    while not queue[0].visible:
        queue.popleft()
    if len(queue) > 2 * count + COMPACT_SLACK:
        level.orders = deque(level.live_orders())


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled in snapshots (docs/PERFORMANCE.md)
class BookSide:
    """One side of the book: levels by key (price for asks, -price for bids)."""

    __slots__ = ("side", "sign", "levels", "keys", "best", "changed")

    def __init__(self, side: Side) -> None:
        self.side = side
        self.sign = 1 if side is SELL else -1  # key = sign * price
        self.levels: dict[int, Level] = {}
        self.keys: SortedList[int] = SortedList()
        self.best = EMPTY
        self.changed: dict[int, Level] = {}  # price -> level, changed since the book last announced its levels

    def best_price(self) -> int | None:
        return None if self.best == EMPTY else self.sign * self.best

    def levels_in_priority(self) -> Iterator[Level]:
        levels = self.levels
        return (levels[key] for key in self.keys)

    def depth(self, max_levels: int | None = None) -> list[tuple[int, int, int]]:
        """Aggregated levels (price, shown lots, orders), best first; all of them with ``max_levels`` None."""
        out: list[tuple[int, int, int]] = []
        for level in self.levels_in_priority():
            if max_levels is not None and len(out) >= max_levels:
                break
            out.append((level.price, level.quantity, level.count))
        return out

    def resting_orders(self) -> Iterator[Order]:
        """Live resting orders, in matching priority."""
        for level in self.levels_in_priority():
            yield from level.live_orders()

    def add_level(self, key: int, price: int) -> Level:
        """A new, empty level at ``price`` (stored under ``key``), for an order about to rest there."""
        level = self.levels[key] = Level(price)
        self.keys.add(key)
        if key < self.best:
            self.best = key
        return level

    def remove_level(self, key: int) -> None:
        del self.levels[key]
        keys = self.keys
        if key == self.best:
            keys.pop(0)
            self.best = keys[0] if keys else EMPTY
        else:
            keys.remove(key)

    def take_out(self, order: Order) -> None:
        """Take a live order out of its level, leaving a dead entry; the level is marked changed and goes if it
        empties."""
        price = order.price
        assert price is not None  # a resting order has a limit price
        key = self.sign * price
        level = self.levels[key]
        level.quantity -= order.visible
        level.count -= 1
        order.visible = 0
        self.changed[price] = level
        if not level.count:
            self.remove_level(key)
        else:
            drop_dead_entries(level, level.count)

    def can_fill(self, order: Order, limit_key: int) -> bool:
        """Fill-or-kill check: would matching the order against this side now, up to ``limit_key``, fill it
        in full?

        Without self-trade prevention this is a sum of the open quantity at
        the levels in reach (iceberg reserves included: they refill within one
        sweep). With it, each level is played out as matching would play it:
        a refilled iceberg slice goes to the back of the level, an own order
        under CANCEL_RESTING is skipped (it would be cancelled, not traded),
        and under CANCEL_TAKING or CANCEL_BOTH meeting an own order stops the
        order, so it cannot fill in full.
        """
        needed = order.leaves
        stp = order.self_trade_prevention
        account = order.account
        for key in self.keys:
            if key > limit_key:
                return False
            if stp is STP_NONE:
                needed -= sum(maker.leaves for maker in self.levels[key].live_orders())
                if needed <= 0:
                    return True
                continue
            queue = deque((maker, maker.visible, maker.leaves) for maker in self.levels[key].live_orders())
            while queue:
                maker, shown, maker_leaves = queue.popleft()
                if maker.account is account:
                    if stp is STP_CANCEL_RESTING:
                        continue
                    return False
                fill = min(shown, needed)
                needed -= fill
                if not needed:
                    return True
                if maker_leaves > shown:  # iceberg: the next slice queues at the back
                    rest = maker_leaves - shown
                    display = maker.display_quantity
                    assert display is not None  # only an iceberg holds more than it shows
                    queue.append((maker, min(display, rest), rest))
        return False

    def check(self, open_orders: dict[int, Order]) -> None:
        """Assert the side's structural invariants (``OrderBook._check`` runs it on both sides)."""
        assert list(self.keys) == sorted(self.levels), "key list disagrees with the levels"
        assert self.best == (self.keys[0] if self.keys else EMPTY), "cached best is stale"
        assert not self.changed, "level changes left unannounced"
        for key, level in self.levels.items():
            assert key == self.sign * level.price, "level stored under the wrong key"
            live = list(level.live_orders())
            assert live, "empty price level"
            assert level.count == len(live), "level order count is wrong"
            assert level.quantity == sum(o.visible for o in live), "level quantity is wrong"
            assert len({id(o) for o in live}) == len(live), "an order is twice in one level"
            for order in live:
                assert order.side is self.side and order.price == level.price, "order in the wrong level"
                assert open_orders.get(order.order_id) is order, "resting order not in the index"
                assert 0 < order.visible <= order.leaves <= order.quantity, "bad order quantities"
                if order.display_quantity is not None:
                    assert order.visible <= order.display_quantity, "iceberg shows too much"
                else:
                    assert order.visible == order.leaves, "plain order hides quantity"
                assert order.account.orders.get(order.client_order_id) is order, "client id lost"
