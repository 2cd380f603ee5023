"""What the engine answers when asked about its state: small immutable views.

How this works
--------------
The gateway asks the engine questions (``Engine.balances``, ``Engine.depth``,
``Engine.primary_auction`` and the rest, see :class:`exchange.engine.Engine`)
and gets one of these named tuples back, built at the moment of asking. A view
holds plain values and copies, never the engine's own objects: a caller can
keep it, change its dicts or send it away without touching the engine, and
the engine can lay its structures out as it likes without breaking callers.
"""

from __future__ import annotations

from typing import NamedTuple

from .enums import SelfTradePrevention


class EngineCounts(NamedTuple):
    """How much the engine has done and holds."""

    events: int  # events emitted: the number of the last one
    orders: int  # orders ever accepted: the id of the last one
    open_orders: int  # resting or waiting stops now
    trades: int  # trades ever made: the id of the last one
    accounts: int  # accounts known, the fee account included


class AccountBalances(NamedTuple):
    """An account's holdings and what its open orders and bids hold back (available = holding - reserved)."""

    cash: int  # euro cents
    reserved_cash: int
    units: dict[str, int]  # per instrument symbol (a copy)
    reserved_units: dict[str, int]  # (a copy)
    blocked: bool  # the kill switch is on: new orders are refused


class AccountSettings(NamedTuple):
    """An account's settings, as commands set them."""

    self_trade_prevention: SelfTradePrevention
    order_value_limit: int | None  # cents; None: no limit
    blocked: bool
    auction_bidder: bool = False  # admitted to bid in primary auctions that take admitted bidders only


class BidView(NamedTuple):
    """One open bid of a primary auction."""

    bid_id: str | int
    account: str
    price: int  # cents per allowance
    volume: int  # allowances
    held: int  # cents the bid holds back: price * volume and the auction fee on each lot of 500
    number: int  # arrival order in its auction


class PrimaryAuctionView(NamedTuple):
    """A primary auction: its terms, its outcome once decided, and its open bids in arrival order."""

    auction_id: str
    instrument: str
    auctioneer: str
    volume: int  # allowances offered, carried-over volume included
    closes_at: int  # ns; bidding is over from then on
    seed: str  # orders bids at equal prices; published (hashed) at the opening, in full at the end
    outcome: str | None  # None while open; "cleared", "undersubscribed" or "below_reserve"
    bids: tuple[BidView, ...]


class InstallationView(NamedTuple):
    """An account registered as an EU ETS installation."""

    account_id: str
    credit_limit_bps: int  # share of an obligation project credits may cover, in basis points
    years: tuple[int, ...]  # the years it has an obligation record for, in order


class PositionView(NamedTuple):
    """An account's net position in one futures contract."""

    instrument: str
    lots: int  # long positive, short negative
    settlement_price: int | None  # cents: the contract's last settlement price, None before its first
    last_trading_day: int  # YYYYMMDD
    delivery_day: int  # YYYYMMDD


class MarginView(NamedTuple):
    """An account's futures positions and the margin they take (cents)."""

    positions: tuple[PositionView, ...]  # nearest month first
    initial_margin: int  # held back from cash for the positions
    maintenance_margin: int  # cash below it (besides what orders hold) is a margin call
    orders_hold: int  # what the account's working orders and bids hold back besides
    cash: int
    margin_called: bool
