"""Commands: what the engine is asked to do.

Commands are imperative (``NewOrder``, ``CancelOrder``), plain slotted records
built with keywords. They do not validate themselves: the engine checks every
field and answers a bad one with a reject event carrying a code from
:mod:`exchange.codes`, never with an exception, so that whatever arrives from
the wire is handled the same way. Every command carries ``ts``, the
gateway's timestamp in nanoseconds since the epoch; the engine never reads a
clock.

Prices are integer euro cents, quantities integer lots, dates integers
written YYYYMMDD.
"""
from __future__ import annotations

from dataclasses import dataclass

from .enums import OrderType, SelfTradePrevention, Side, TimeInForce


@dataclass(slots=True, kw_only=True)
class NewOrder:
    ts: int
    account: str
    client_order_id: str | int  # unique per account and trading day
    instrument: str
    side: Side
    quantity: int  # lots; for an iceberg the whole quantity, shown and hidden
    price: int | None = None  # cents; required for LIMIT, absent for MARKET
    order_type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce = TimeInForce.GTC
    display_quantity: int | None = None  # iceberg: lots shown at a time
    stop_price: int | None = None  # stop-limit: rests unseen until the last trade reaches it
    expire_date: int | None = None  # GTD only: YYYYMMDD, expires at that day's end-of-day
    post_only: bool = False  # rejected if it would trade on entry
    self_trade_prevention: SelfTradePrevention | None = None  # None: the account's setting


@dataclass(slots=True, kw_only=True)
class CancelOrder:
    """Cancel one order, named by exactly one of its order id and its client order id."""

    ts: int
    account: str
    order_id: int | None = None
    client_order_id: str | int | None = None


@dataclass(slots=True, kw_only=True)
class ReplaceOrder:
    """Amend an order's price and/or total quantity.

    ``quantity`` is the new total quantity, filled part included (FIX OrderQty),
    so a replace that races a fill still means what the trader meant. Lowering
    the quantity at the same price keeps time priority; a new price or a larger
    quantity sends the order to the back of its (new) level.
    """

    ts: int
    account: str
    order_id: int | None = None
    client_order_id: str | int | None = None
    quantity: int | None = None
    price: int | None = None


@dataclass(slots=True, kw_only=True)
class MassCancel:
    """Cancel every open order of an account, optionally on one instrument only."""

    ts: int
    account: str
    instrument: str | None = None


@dataclass(slots=True, kw_only=True)
class SetSelfTradePrevention:
    """Set an account's default self-trade prevention mode (orders may override it)."""

    ts: int
    account: str
    mode: SelfTradePrevention


@dataclass(slots=True, kw_only=True)
class EndOfDay:
    """Close a trading day: DAY orders and GTD orders expiring on or before it expire.

    Client order ids of orders no longer open may be used again after it.
    """

    ts: int
    trading_date: int  # YYYYMMDD


Command = NewOrder | CancelOrder | ReplaceOrder | MassCancel | SetSelfTradePrevention | EndOfDay
