"""An order, as the engine keeps it from acceptance until it closes.

How this works
--------------
An :class:`Order` is created when a new order is accepted and lives while it
is open: resting in a price level of its book, or waiting outside the book as
a stop. ``leaves`` counts its open lots, ``visible`` the lots it shows in its
level (an iceberg shows a slice at a time). A closed order (filled, cancelled
or expired) has ``leaves == 0`` and is no longer in any index; its client
order id then maps to ``CLOSED`` in its account (``exchange.accounts``).

Plain attributes with ``__slots__``, no methods on the hot path: the book and
the engine read and write them directly, which is what makes matching fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from mypy_extensions import mypyc_attr

from .enums import OrderType, SelfTradePrevention, Side, TimeInForce

if TYPE_CHECKING:
    from .accounts import Account
    from .book import OrderBook


@final  # (so that a test of an order's class narrows its type both ways)
@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled in snapshots (docs/PERFORMANCE.md)
class Order:
    """One order. ``leaves`` is what is still open; ``visible`` the part shown in the book.

    An order is live in the book while ``visible > 0``; a dead entry left in a
    level's deque (cancelled, or moved by a replace) has ``visible == 0``.
    """

    __slots__ = (
        "order_id",
        "book",
        "account",
        "client_order_id",
        "side",
        "order_type",
        "time_in_force",
        "price",
        "quantity",
        "leaves",
        "visible",
        "display_quantity",
        "stop_price",
        "expire_date",
        "post_only",
        "self_trade_prevention",
        "ts",
        "reserve_per_lot",
    )

    def __init__(
        self,
        order_id: int,
        book: OrderBook,
        account: Account,
        client_order_id: str | int,
        side: Side,
        order_type: OrderType,
        time_in_force: TimeInForce,
        price: int | None,
        quantity: int,
        display_quantity: int | None,
        stop_price: int | None,
        expire_date: int | None,
        post_only: bool,
        self_trade_prevention: SelfTradePrevention,
        ts: int,
        reserve_per_lot: int,
    ) -> None:
        self.order_id = order_id
        self.book = book
        self.account = account
        self.client_order_id = client_order_id
        self.side = side
        self.order_type = order_type
        self.time_in_force = time_in_force
        self.price = price
        self.quantity = quantity
        self.leaves = quantity
        self.visible = 0  # set when the order rests
        self.display_quantity = display_quantity
        self.stop_price = stop_price
        self.expire_date = expire_date
        self.post_only = post_only
        self.self_trade_prevention = self_trade_prevention
        self.ts = ts
        # What each open lot holds back: cents (price, fee included) for a buy, units for a sell;
        # 0 when the engine runs without pre-trade risk.
        self.reserve_per_lot = reserve_per_lot

    @property
    def filled(self) -> int:
        """Lots filled so far (only meaningful while the order is open)."""
        return self.quantity - self.leaves

    def __repr__(self) -> str:
        return (
            f"Order(id={self.order_id}, account={self.account.account_id!r}, "
            f"clid={self.client_order_id!r}, {self.side.name} {self.leaves}/{self.quantity} "
            f"@ {self.price}, visible={self.visible})"
        )


def by_order_id(order: Order) -> int:
    """Sort key: orders in the order they were accepted."""
    return order.order_id
