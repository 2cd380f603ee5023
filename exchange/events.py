"""Events: everything the engine reports, in the order it happened.

Events are past tense (``OrderAccepted``, ``Trade``) and immutable. They are
msgspec ``Struct`` classes built on :class:`Event`: built in C from their fields
in order (about half the cost of a named tuple, whose ``tuple.__new__`` copies
its fields twice, which matters because every command makes two or three and
the matching loop one per fill), read as fast as slots, not tracked by the
garbage collector (an event holds plain values only), and packed into
MessagePack as an array of their fields (``array_like``), as a tuple was.

Every event starts with ``seq``, the engine's global sequence number (gap
free: one more than the event before it, whatever its kind) and ``ts``, the
timestamp of the command that caused it. Within one command events come in
causal order: accepted, then trades, then the fate of the rest (cancelled,
or resting silently), then any stop orders triggered by the trades. Book
changes come last: one ``LevelChanged`` per price level that changed, in its
final state, after the command (``Engine.handle``) or after the whole batch
(``Engine.handle_all``), so depth is conflated the way a market-data feed
publishes it.
"""

from __future__ import annotations

import msgspec

from .codes import RejectCode
from .enums import CancelReason, OrderType, SelfTradePrevention, Side, TimeInForce, TradingPhase


class Event(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """What every event below has, whatever its kind (its own fields follow these two)."""

    seq: int
    ts: int


class OrderAccepted(Event, frozen=True):
    instrument: str
    order_id: int
    account: str
    client_order_id: str | int
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int | None  # cents; None for a market order
    quantity: int  # lots, whole order
    display_quantity: int | None
    stop_price: int | None
    expire_date: int | None
    post_only: bool
    self_trade_prevention: SelfTradePrevention


class OrderRejected(Event, frozen=True):
    """A new order refused; no order id was given out."""

    account: str
    client_order_id: str | int | None
    instrument: str | None
    code: RejectCode
    text: str


class RequestRejected(Event, frozen=True):
    """Any command other than a new order refused (cancel, replace, mass cancel, funding, admin,
    compliance); nothing changed. ``request`` says which kind of command it was."""

    account: str | None
    request: str  # "cancel", "replace", "mass_cancel", "block_account", "unblock_account", "set_stp", "end_of_day", "open_account", "deposit",
    # "withdraw", "register_installation", "record_emissions", "surrender", "compliance_deadline", "unknown"
    order_id: int | None
    client_order_id: str | int | None
    code: RejectCode
    text: str


class Trade(Event, frozen=True):
    """One fill. In continuous trading the taker is the incoming order; in an auction nobody takes
    (``aggressor_side`` is None): the taker fields hold the buy order, the maker fields the sell order, and
    both pay the maker fee."""

    instrument: str
    trade_id: int
    price: int  # cents: always the resting (maker) order's price
    quantity: int  # lots
    aggressor_side: Side | None  # the taker's side; None for an auction trade
    taker_order_id: int
    taker_account: str
    taker_client_order_id: str | int
    taker_leaves: int  # lots the taker still has open after this fill
    maker_order_id: int
    maker_account: str
    maker_client_order_id: str | int
    maker_leaves: int
    maker_fee: int  # cents the maker pays (instrument's maker fee per lot x quantity)
    taker_fee: int  # cents the taker pays


class OrderCanceled(Event, frozen=True):
    instrument: str
    order_id: int
    account: str
    client_order_id: str | int
    canceled_quantity: int  # lots that were still open
    reason: CancelReason


class OrderReplaced(Event, frozen=True):
    instrument: str
    order_id: int
    account: str
    client_order_id: str | int
    price: int  # cents, the price after the replace
    quantity: int  # the new total quantity
    leaves: int  # lots open after the replace
    priority_kept: bool


class OrderExpired(Event, frozen=True):
    instrument: str
    order_id: int
    account: str
    client_order_id: str | int
    expired_quantity: int


class StopTriggered(Event, frozen=True):
    """A stop-limit order's stop price was reached; it now enters the book as a limit order."""

    instrument: str
    order_id: int
    account: str
    client_order_id: str | int
    stop_price: int
    last_price: int  # the trade price that triggered it


class LevelChanged(Event, frozen=True):
    """A price level's shown quantity or order count changed; quantity 0 means the level is gone.

    One per level per command or batch, in the level's final state; ``ts`` is
    the timestamp of the last command of the batch.
    """

    instrument: str
    side: Side  # BUY: a bid level, SELL: an ask level
    price: int
    quantity: int  # lots shown at the level (iceberg reserves are not shown)
    orders: int


class MassCancelCompleted(Event, frozen=True):
    """A mass cancel was carried out; each order it cancelled has its own OrderCanceled before this."""

    account: str
    instrument: str | None  # None: every instrument
    canceled_orders: int


class AccountBlocked(Event, frozen=True):
    """The kill switch: each order it cancelled has its own OrderCanceled (reason KILL_SWITCH) before this."""

    account: str
    canceled_orders: int


class AccountUnblocked(Event, frozen=True):
    account: str


class AccountOpened(Event, frozen=True):
    account: str
    order_value_limit: int | None  # cents
    self_trade_prevention: SelfTradePrevention


class Deposited(Event, frozen=True):
    """Cash (asset "EUR", cents) or units of an instrument came into an account."""

    account: str
    asset: str
    amount: int
    balance: int  # the account's holding of the asset afterwards


class Withdrawn(Event, frozen=True):
    """Cash or units left an account."""

    account: str
    asset: str
    amount: int
    balance: int


class TradingDayClosed(Event, frozen=True):
    trading_date: int
    expired_orders: int


class ScheduleAdvanced(Event, frozen=True):
    """A schedule point of a trading day is done (``skipped``: passed over by the operator)."""

    trading_date: int
    point: str
    skipped: bool


class ScheduleShifted(Event, frozen=True):
    """A trading day extended: its closing points not yet reached ``seconds`` later (``total_seconds`` in all)."""

    trading_date: int
    seconds: int
    total_seconds: int


class SettlementWindowOpened(Event, frozen=True):
    """From now until the end of day, the instrument's trades make its settlement price."""

    instrument: str


class SettlementPriceFixed(Event, frozen=True):
    """An instrument's settlement price for a trading day, fixed at its end of day (exchange.settlement_prices):
    ``method`` says how ("window": the volume-weighted average of the window's trades; "last_trade": none in the
    window, the last trade's price; "previous": nothing ever traded in the window or since, the last
    settlement carried over; "none": no price at all yet). ``price`` in cents, on the tick."""

    instrument: str
    trading_date: int
    price: int | None
    method: str
    window_lots: int


class SelfTradePreventionSet(Event, frozen=True):
    account: str
    mode: SelfTradePrevention


# -- compliance (see exchange.compliance) -----------------------------------------------------


class InstallationRegistered(Event, frozen=True):
    account: str
    credit_limit_bps: int  # the share project credits may cover: of the allocation over a phase, or of an obligation


class AllocationRecorded(Event, frozen=True):
    account: str
    year: int
    units: int  # the year's free allocation
    credit_entitlement: int  # project credits that may count now (over the phase when capped on allocation)
    credits_left: int  # of which not yet used


class EmissionsRecorded(Event, frozen=True):
    account: str
    year: int
    tonnes: int  # verified emissions
    carried_in: int  # tonnes carried over from the year before
    obligation: int  # tonnes + carried_in


class UnitsSurrendered(Event, frozen=True):
    """Units left the account and were retired against a year's obligation."""

    account: str
    year: int
    instrument: str
    units: int
    counted_as: str  # "allowance" (1:1) or "credit" (up to the installation's share)
    surrendered: int  # units surrendered against the year so far, all instruments
    credits_surrendered: int  # of which project credits
    outstanding: int  # obligation still to cover
    balance: int  # the account's units of the instrument afterwards
    retired: int  # units of the instrument retired so far, all accounts and years


class PenaltyCharged(Event, frozen=True):
    """A shortfall at a deadline was charged; ``owed`` is owed to the authority (all of it unless the venue
    takes penalties from cash: then what the available cash could not pay)."""

    account: str
    year: int
    shortfall: int  # tonnes missing
    penalty_per_tonne: int  # cents
    penalty: int  # cents: shortfall x penalty_per_tonne
    paid: int  # cents moved from the account's available cash to the penalty account
    owed: int  # cents: penalty - paid
    penalty_account: str
    cash: int  # the account's cash afterwards


class ObligationCarriedOver(Event, frozen=True):
    """Make-good: the tonnes missing at a deadline were added to the next year's obligation."""

    account: str
    from_year: int
    to_year: int
    tonnes: int
    obligation: int  # to_year's obligation afterwards


class DeadlinePassed(Event, frozen=True):
    """A compliance year closed; its PenaltyCharged and ObligationCarriedOver events come before this."""

    year: int
    date: int  # YYYYMMDD
    installations: int  # installations with an obligation for the year
    short: int  # of which short of it
    penalties: int  # cents charged in all
    carried_over: int  # tonnes carried into the next year in all


class TradingPhaseChanged(Event, frozen=True):
    """An instrument's trading phase changed: by the exchange's command (``reason`` "operator") or because an
    order would have traded outside the volatility band (``reason`` "volatility"; ``trigger_price`` is the
    price it would have traded at)."""

    instrument: str
    phase: TradingPhase
    previous: TradingPhase
    reason: str  # "operator" or "volatility"
    trigger_price: int | None  # cents; a volatility interruption's only
    reference_price: int | None  # cents: the band's centre, for a volatility interruption


class AuctionIndicative(Event, frozen=True):
    """During a call: the auction's price and quantity if the call ended now (after each batch that changed
    the book). ``price`` is None while nothing would execute."""

    instrument: str
    phase: TradingPhase
    price: int | None  # cents
    quantity: int  # lots that would execute
    demand: int  # lots bid at the price or higher (0 without a price)
    supply: int  # lots offered at the price or lower


class AuctionCompleted(Event, frozen=True):
    """A call ended: its auction executed ``quantity`` lots at ``price`` in ``trades`` trades (the Trade events
    before this one), or nothing (price None)."""

    instrument: str
    phase: TradingPhase  # the call that ended
    price: int | None  # cents
    quantity: int
    trades: int


# -- EU ETS primary auctions (exchange.primary_auction) -------------------------------------------------------


class PrimaryAuctionOpened(Event, frozen=True):
    auction_id: str
    auctioneer: str
    instrument: str
    volume: int  # allowances offered, carried-over volume included
    carried_in: int  # of which carried over from cancelled auctions
    closes_at: int  # ns since the epoch
    seed_hash: str  # SHA-256 of the seed (hex): the seed itself is published with the results
    reserve_discount_bps: int


class BidPlaced(Event, frozen=True):
    """A bid taken or changed (``modified``); ``held`` is what it holds back of the bidder's cash (cents)."""

    auction_id: str
    account: str
    bid_id: str | int
    instrument: str
    price: int  # cents per allowance
    volume: int  # allowances
    held: int
    modified: bool


class BidWithdrawn(Event, frozen=True):
    auction_id: str
    account: str
    bid_id: str | int
    instrument: str
    released: int  # cents no longer held


class BidderAdmitted(Event, frozen=True):
    """An account admitted to bid in primary auctions, or its admission withdrawn (``admitted`` False)."""

    account: str
    admitted: bool


class BidResult(Event, frozen=True):
    """One bid's outcome at the clearing (or cancellation): ``allocated`` allowances at ``clearing_price``,
    ``amount`` cents paid; 0 allocated for a losing bid or a cancelled auction."""

    auction_id: str
    account: str
    bid_id: str | int
    instrument: str
    price: int  # the bid's price, cents
    volume: int  # the bid's volume
    allocated: int  # allowances won
    clearing_price: int | None  # cents; None if the auction was cancelled
    amount: int  # cents paid: clearing_price x allocated
    fee: int = 0  # cents paid to the exchange: the auction's fee per lot of 500 allocated


class PrimaryAuctionCleared(Event, frozen=True):
    auction_id: str
    auctioneer: str
    instrument: str
    volume: int  # allowances sold: all that was offered
    clearing_price: int  # cents per allowance
    total_bid_volume: int
    bidders: int
    successful_bidders: int
    proceeds: int  # cents paid to the auctioneer
    reserve_price: int  # cents: the floor the clearing price cleared
    seed: str  # revealed: anyone can check the tie order against the hash published at the opening


class PrimaryAuctionCancelled(Event, frozen=True):
    auction_id: str
    auctioneer: str
    instrument: str
    volume: int
    reason: str  # "undersubscribed" (bids short of the volume) or "below_reserve"
    total_bid_volume: int
    bidders: int
    clearing_price: int | None  # cents: the price it would have cleared at (None when undersubscribed)
    reserve_price: int  # cents
    carried_over: tuple[int, ...]  # the volume added to the auctioneer's next four auctions of the instrument
    seed: str


# -- futures and clearing (see exchange.clearing) ---------------------------------------------


class ContractListed(Event, frozen=True):
    """A futures contract month begins trading: it has its book from now until its last trading day."""

    instrument: str  # the contract's symbol (EUAZ27)
    underlying: str
    year: int
    month: int
    last_trading_day: int  # YYYYMMDD
    delivery_day: int  # YYYYMMDD
    tick_size: int  # cents
    lot_units: int
    phase: TradingPhase  # its underlying's: a month listed overnight opens with the spot market


class VariationMarginPaid(Event, frozen=True):
    """An account's variation margin on one contract at a day's settlement: cents, plus received, minus paid."""

    account: str
    instrument: str
    trading_date: int
    amount: int
    position: int  # the net lots it was marked on


class MarginCalled(Event, frozen=True):
    """An account's cash fell below its maintenance margin: new futures orders are refused (207) until its cash
    covers ``required`` (its margin and what its orders hold) again."""

    account: str
    cash: int
    required: int
    maintenance: int


class MarginCallMet(Event, frozen=True):
    account: str
    cash: int


class FuturesDelivered(Event, frozen=True):
    """One delivery at a contract's expiry: ``units`` of the underlying from the short to the long against
    ``cash`` the other way (the final price); units the short did not have are ``failed_units``, paid for by
    ``compensation`` (cents, short to long) instead; units the long could not pay for are ``unpaid_units``."""

    instrument: str
    underlying: str
    long_account: str
    short_account: str
    lots: int
    units: int
    cash: int
    failed_units: int
    compensation: int
    unpaid_units: int  # units the long could not pay for: they stay with the short (the long is in default)


class ContractExpired(Event, frozen=True):
    """A futures contract's last trading day has ended: its book is gone, its positions delivered."""

    instrument: str
    final_price: int | None  # None: it never traded nor was quoted (and so nobody held it)
    orders_expired: int


class BlockTradeReported(Event, frozen=True):
    """One side of a block trade or EFP is reported and waits for its counterparty's (until the day ends)."""

    account: str  # who reported it
    counterparty: str
    block_id: str | int
    instrument: str
    underlying: str
    side: Side  # the reporter's
    quantity: int
    price: int
    kind: str  # block, efp
    physical_price: int | None


class BlockTraded(Event, frozen=True):
    """A block trade or EFP registered and cleared: the futures position moved off the book at ``price``; for an
    EFP the buyer of the futures also delivered ``physical_units`` of ``underlying`` to the seller at
    ``physical_price``. Published on the trades channel flagged with its kind."""

    instrument: str
    trade_id: int
    block_id: str | int
    kind: str
    price: int
    quantity: int
    buyer: str
    seller: str
    buyer_fee: int
    seller_fee: int
    underlying: str
    physical_price: int | None
    physical_units: int


class BlockTradeLapsed(Event, frozen=True):
    """A reported side that will not trade: the day ended before its counterparty reported (``code`` None), or the
    counterparty's report found one of them unable to take it (``code`` says why; both reports are void)."""

    account: str
    counterparty: str
    block_id: str | int
    instrument: str
    code: RejectCode | None


class AccountClosedOut(Event, frozen=True):
    """The operator closed out an account on a margin call (after its ``AccountBlocked``): each of its futures
    positions passed to ``to_account``; ``transfers`` are (contract, lots the receiver took: the defaulter's
    position, signed, positive long; price in cents a tonne), nearest month first."""

    account: str
    to_account: str
    transfers: tuple[tuple[str, int, int], ...]


class TASPriced(Event, frozen=True):
    """A trade at settlement priced at the end of day: the contract's settlement price plus the fill's offset."""

    instrument: str  # the TAS book (EUAZ27TAS)
    contract: str
    buy_order_id: int  # the fill's two orders
    sell_order_id: int
    buyer: str
    seller: str
    quantity: int
    price: int  # cents a tonne: what the lots count at in the day's variation margin
