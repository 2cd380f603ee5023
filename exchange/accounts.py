"""What the engine keeps per account, and the engine-wide counters.

An :class:`Account` is the engine's view of one participant: holdings moved at
every fill, what open orders hold back, the client order ids of the day and
the account's settings (self-trade prevention, order value limit, the kill
switch). :class:`Counters` hands out the gap-free numbers every book shares:
event sequence numbers, trade ids and order ids.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from .enums import SelfTradePrevention

if TYPE_CHECKING:
    from .book import Order

STP_NONE = SelfTradePrevention.NONE


class Counters:
    """The engine-wide sequence numbers, shared by all books: the one place numbers are given out.

    Every event takes its ``seq`` from :meth:`next_seq`, every trade its id
    from :meth:`next_trade_id`, every accepted order its id from
    :meth:`next_order_id`. The hot path writes them out where the call shows
    in the benchmark, and says so where it does: two loops number many events
    in a local and write the last number back (``OrderBook._match``,
    ``OrderBook.flush_level_changes``), and a cancel inlines ``next_seq``
    (``OrderBook.cancel``, and the refusal of a cancel in the engine).
    """

    __slots__ = ("seq", "trade_id", "order_id")

    def __init__(self) -> None:
        self.seq = 0  # number of the last event emitted
        self.trade_id = 0  # id of the last trade
        self.order_id = 0  # id of the last order accepted

    def next_seq(self) -> int:
        seq = self.seq = self.seq + 1
        return seq

    def next_trade_id(self) -> int:
        trade_id = self.trade_id = self.trade_id + 1
        return trade_id

    def next_order_id(self) -> int:
        order_id = self.order_id = self.order_id + 1
        return order_id


class Account:
    """What the engine knows of an account: holdings, reservations, settings and client order ids.

    ``orders`` maps each client order id used this trading day to the open
    :class:`Order`, or to ``CLOSED`` once the order is filled, cancelled or
    expired, so a duplicate id is refused and a late cancel is told "too late".

    Holdings are the engine's view, moved at every fill: ``cash`` in euro
    cents and ``units`` per instrument. ``reserved_cash`` and
    ``reserved_units`` are what open orders hold back (available = holding -
    reserved); each equals the sum of ``leaves * reserve_per_lot`` over the
    account's open buy (cash) or sell (units) orders.
    """

    __slots__ = ("account_id", "self_trade_prevention", "orders", "open_orders", "cash", "reserved_cash", "units",
                 "reserved_units", "order_value_limit", "blocked")

    def __init__(self, account_id: str, symbols: Iterable[str] = (), order_value_limit: int | None = None) -> None:
        self.account_id = account_id
        self.self_trade_prevention = STP_NONE
        self.orders: dict[str | int, Order | None] = {}
        # The account's open orders (resting or waiting stops) by order id: the engine's ``open_orders``
        # for this account alone, so a mass cancel costs what the account has open, not its history.
        self.open_orders: dict[int, Order] = {}
        self.cash = 0
        self.reserved_cash = 0
        self.units = dict.fromkeys(symbols, 0)
        self.reserved_units = dict.fromkeys(symbols, 0)
        self.order_value_limit = order_value_limit  # cents; None: no limit
        self.blocked = False  # the kill switch: new orders are refused while it is on


CLOSED = None  # value in ``Account.orders`` for a client order id whose order is no longer open
