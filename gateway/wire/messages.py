"""The exchange's messages to clients and subscribers: one schema per kind, as the inbound ones are.

How this works
--------------
Each outbound message kind is a ``msgspec.Struct`` tagged by its ``type``
field, like the inbound messages of :mod:`gateway.wire.protocol`, and
:func:`gateway.wire.protocol.encode_frame` packs one into a frame. The
schemas are the wire format: the encoder writes the tag first, then the
fields in the order they are declared here, which is the order
docs/PROTOCOL.md (section 8) and docs/MARKET_DATA.md (section 3) list them.

Three kinds of field:

- always present, declared without a default: a value that may be null
  (``price`` of a market order) is sent as nil, never left out;
- present only in some messages of the kind, defaulting to ``UNSET``, which
  the encoder leaves out (a fill's ``trade_id``, a cancel's ``reason``, the
  closing statistics' ``trading_day_closed``);
- ``request_id`` and ``seq``, last: set by the pipeline once the message is
  made (the request's label is echoed, the account's number given at
  delivery), so messages are mutable structs.

tests/gateway/wire/test_wire_messages.py holds every kind against the dict it replaced
and checks the bytes are the same, and decodes each with the client's reader
and the reference ``msgpack`` package.

Speed: the messages sent for every order (execution reports) and for every
batch (market data) declare their always-present fields first, so that the
pipeline can build them from positional arguments, about five times faster
than from keywords and faster than a dict literal (msgspec 0.19-0.23); the
rest are built by keyword. ``gc=False``: a message holds strings, numbers
and lists of them, never a reference back to itself, so the garbage
collector need not track it (cheaper to make, and no collections triggered
by the millions made).

A new message kind goes here (its class, then ``OUTBOUND``), in the
document's table, and in the tests' list of dicts.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from exchange import CancelReason, OrderType, Side, TimeInForce, TradingPhase

RequestId = int | str  # the client's label, echoed
ClientOrderId = int | str
Level = tuple[int, int, int]  # a book level: price in ticks, lots shown, orders
LevelChange = tuple[str, int, int, int]  # a book update's entry: side ("B" or "S"), price in ticks, lots, orders


class Outbound(msgspec.Struct, tag_field="type", gc=False):
    """A message from the exchange. Subclasses declare ``request_id`` and ``seq`` themselves, last."""


# -- entries of messages (maps inside a message's arrays) ------------------------------------------------


class InstrumentTerms(msgspec.Struct, gc=False):
    """An instrument of ``logon_accepted``: prices in ticks, fees in cents per lot, the tick in euros."""

    symbol: str
    name: str
    lot_units: int
    tick_size: str
    min_lots: int
    max_lots: int
    min_price: int
    max_price: int
    reference_price: int
    market_collar: int | None
    price_band_bps: int
    price_band_sides: str  # "one": only a buy above the band or a sell below it is refused; "both": either
    maker_fee: int
    taker_fee: int
    volatility_band_bps: int
    volatility_call_seconds: int


class Balance(msgspec.Struct, gc=False):
    """An asset of ``balances``: cents for "EUR", units (tonnes) for an instrument."""

    asset: str
    holding: int
    held: int
    available: int


class FuturesPosition(msgspec.Struct, gc=False):
    """A contract of ``positions``: net lots, the last settlement price in ticks (None before the first)."""

    instrument: str
    lots: int
    settlement_price: int | None
    last_trading_day: int
    delivery_day: int


class OpenOrder(msgspec.Struct, gc=False):
    """An order of ``open_orders``: an execution report's common fields but ``type``, ``exec_type`` and ``ts``."""

    order_status: str
    order_id: int
    client_order_id: ClientOrderId
    instrument: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int | None
    stop_price: int | None
    display_quantity: int | None
    expire_date: int | None
    quantity: int
    cum_quantity: int
    leaves_quantity: int
    avg_price: str | None


class Fill(msgspec.Struct, gc=False):
    """A fill of ``trades``: the account's side of one trade."""

    trade_id: int
    order_id: int
    client_order_id: ClientOrderId
    instrument: str
    side: Side
    price: int
    quantity: int
    liquidity: str  # "maker", "taker" or "auction"
    fee: int  # cents
    ts: int


class OwnBid(msgspec.Struct, gc=False):
    """A bid of ``auction_status``'s ``own_bids``."""

    bid_id: ClientOrderId
    price: int
    volume: int
    held: int


# -- session (PROTOCOL 8.1-8.3) ----------------------------------------------------------------------------


class LogonAccepted(Outbound, tag="logon_accepted"):
    account: str
    protocol_version: int
    session_id: int
    heartbeat_interval: float  # seconds
    heartbeat_timeout: float  # seconds
    max_frame: int
    throttle_rate: float
    throttle_burst: int
    cancel_on_disconnect: bool
    operator: bool
    next_seq: int
    instruments: list[InstrumentTerms]
    ts: int
    market_data_only: bool | UnsetType = UNSET  # True, for a market-data session only
    request_id: RequestId | UnsetType = UNSET


class ServerHeartbeat(Outbound, tag="heartbeat"):
    ts: int


class LoggedOut(Outbound, tag="logout", kw_only=True):
    code: int | None  # None: the client logged out
    text: str
    retry_after: float | UnsetType = UNSET  # seconds; with 717 only
    ts: int
    request_id: RequestId | UnsetType = UNSET


# -- orders and requests (PROTOCOL 8.4-8.8) ----------------------------------------------------------------


class ExecutionReport(Outbound, tag="execution_report"):
    """A change of an order, or its state (``exec_type`` "status"); a refused new order is a
    :class:`RejectedOrderReport`. Prices in ticks."""

    exec_type: str  # new, trade, canceled, replaced, expired, triggered, status
    order_status: str
    order_id: int
    client_order_id: ClientOrderId
    instrument: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int | None
    stop_price: int | None
    display_quantity: int | None
    expire_date: int | None
    quantity: int
    cum_quantity: int
    leaves_quantity: int
    avg_price: str | None  # euros, 4 decimals
    ts: int
    trade_id: int | UnsetType = UNSET  # the fill's: trade_id to aggressor_side
    last_price: int | UnsetType = UNSET
    last_quantity: int | UnsetType = UNSET
    liquidity: str | UnsetType = UNSET
    fee: int | UnsetType = UNSET  # cents
    aggressor_side: Side | None | UnsetType = UNSET
    reason: CancelReason | UnsetType = UNSET  # canceled
    priority_kept: bool | UnsetType = UNSET  # replaced
    trigger_price: int | UnsetType = UNSET  # triggered
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class RejectedOrderReport(Outbound, tag="execution_report"):
    """The execution report of a refused new order: a shorter set of fields (``exec_type`` "rejected")."""

    exec_type: str
    order_status: str
    order_id: None
    client_order_id: ClientOrderId | None
    instrument: str | None  # None: not a known instrument
    cum_quantity: int
    leaves_quantity: int
    code: int
    text: str
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class RequestRejected(Outbound, tag="request_rejected"):
    request: str  # the type of the refused request
    order_id: int | None
    client_order_id: ClientOrderId | None
    code: int
    text: str
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class MessageRejected(Outbound, tag="reject"):
    """A message not processed at all (session level)."""

    ref_type: str | None
    field: str | None
    client_order_id: ClientOrderId | None
    code: int
    text: str
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class MassCancelReport(Outbound, tag="mass_cancel_report"):
    instrument: str | None  # None: every instrument
    canceled_orders: int
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class KillSwitchReport(Outbound, tag="kill_switch_report"):
    account: str
    blocked: bool
    canceled_orders: int
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class TransferEntry(msgspec.Struct, gc=False):
    """One position of a close-out: what the receiver took (the defaulter's lots, signed) at what price."""

    instrument: str
    lots: int
    price: int  # ticks


class TasPricedReport(Outbound, tag="tas_priced"):
    """A trade-at-settlement fill priced at the end of day, to each side: the contract's settlement price plus
    the fill's offset, what the lots count at in the day's variation margin (docs/FUTURES.md section 7)."""

    instrument: str  # the TAS book (EUAZ27TAS)
    contract: str
    order_id: int  # this account's order that filled
    client_order_id: ClientOrderId | None  # None: the order is no longer known to the gateway's tracker
    side: str
    quantity: int
    price: int  # ticks of the contract
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class CloseOutReport(Outbound, tag="close_out_report"):
    """A close-out: to the operator that asked, the closed-out account and the receiver of its positions."""

    account: str  # closed out (blocked; its orders cancelled)
    to_account: str
    transfers: list[TransferEntry]
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class ComplianceReport(Outbound, tag="compliance_report"):
    """A compliance record (docs/COMPLIANCE.md): to the installation it concerns and to the authority that made
    it; ``event`` says which, and the fields it does not use are nil."""

    event: str  # allocation | emissions | surrender | penalty | carried_over | year_closed
    year: int
    account: str | None  # the installation; nil for year_closed
    instrument: str | None  # surrender: the units' instrument
    units: int | None  # allocation: allocated; surrender: surrendered
    tonnes: int | None  # emissions: verified; penalty: the shortfall; carried_over and year_closed: carried over
    obligation: int | None  # emissions: the year's obligation; carried_over: the next year's
    outstanding: int | None  # surrender: still to cover
    credits_left: int | None  # allocation: the credit entitlement still unused
    penalty: int | None  # cents: penalty, and year_closed in all
    owed: int | None  # cents owed to the authority (penalty)
    date: int | None  # year_closed: the deadline, YYYYMMDD
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class ComplianceRow(msgspec.Struct, gc=False):
    """One installation's year of ``compliance_position``: units and tonnes, cents for the penalty."""

    year: int
    account: str
    allocation: int | None
    emissions: int | None
    carried_in: int
    obligation: int
    surrendered: dict[str, int]  # units per instrument
    credit_entitlement: int
    credits_left: int
    shortfall: int  # open year: still to surrender; closed: missing at the deadline
    penalty: int
    penalty_owed: int
    closed: bool


class CompliancePositionAnswer(Outbound, tag="compliance_position"):
    rows: list[ComplianceRow]
    more: bool  # every installation's rows: more after the last row's account (ask again with ``after``)
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


# -- answers to queries (PROTOCOL 8.9-8.13, 8.18-8.20) ----------------------------------------------------


class BalancesAnswer(Outbound, tag="balances"):
    account: str
    balances: list[Balance]
    blocked: bool
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class PositionsAnswer(Outbound, tag="positions"):
    """The account's futures positions and margin (cents); docs/FUTURES.md."""

    account: str
    positions: list[FuturesPosition]
    initial_margin: int
    maintenance_margin: int
    orders_hold: int
    cash: int
    margin_call: bool
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class BookAnswer(Outbound, tag="book"):
    instrument: str
    bids: list[Level]
    asks: list[Level]
    last_price: int | None
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class OpenOrdersAnswer(Outbound, tag="open_orders"):
    orders: list[OpenOrder]
    more: bool
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class TradesAnswer(Outbound, tag="trades"):
    trades: list[Fill]
    more: bool
    complete: bool
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class Pong(Outbound, tag="pong"):
    ts: int
    request_id: RequestId | UnsetType = UNSET


class Subscribed(Outbound, tag="subscribed"):
    instruments: list[str]
    channels: list[str]
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class Unsubscribed(Outbound, tag="unsubscribed"):
    instruments: list[str]
    channels: list[str]
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class ResendBegin(Outbound, tag="resend_begin"):
    from_seq: int
    to_seq: int
    messages: int
    unavailable: list[tuple[int, int]]  # [first, last] seq ranges not resent
    ts: int
    request_id: RequestId | UnsetType = UNSET


class ResendEnd(Outbound, tag="resend_end"):
    from_seq: int
    to_seq: int
    ts: int
    request_id: RequestId | UnsetType = UNSET


class SnapshotTaken(Outbound, tag="snapshot_taken"):
    path: str
    record_seq: int
    event_seq: int
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class TradingPhaseReport(Outbound, tag="trading_phase_report"):
    instrument: str
    phase: TradingPhase
    previous: TradingPhase
    auction_price: int | None  # ticks
    auction_quantity: int
    auction_trades: int
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class ScheduleReport(Outbound, tag="schedule_report"):
    trading_date: int  # YYYYMMDD: the open trading day
    extension_seconds: int  # how much later its closing points come, in all
    skipped: str | None  # the point passed over (skip_schedule_point), e.g. "opening_call:CER"; None otherwise
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


# -- primary auctions (PROTOCOL 8.15-8.17; MARKET_DATA 3.8) ------------------------------------------------


class AuctionReport(Outbound, tag="auction_report", kw_only=True):
    """An auction opened (``status`` "open"), cleared or cancelled: to its auctioneer (numbered) and on the
    ``auctions`` channel (with ``md_seq``). Prices in ticks, amounts in cents."""

    auction_id: str
    instrument: str
    auctioneer: str
    volume: int
    status: str
    carried_in: int | UnsetType = UNSET  # open: carried_in to reserve_discount_bps
    closes_at: int | UnsetType = UNSET
    seed_hash: str | UnsetType = UNSET
    reserve_discount_bps: int | UnsetType = UNSET
    reason: str | UnsetType = UNSET  # cancelled
    clearing_price: int | None | UnsetType = UNSET  # decided: clearing_price to seed (some for one outcome only)
    total_bid_volume: int | UnsetType = UNSET
    cover_ratio: str | UnsetType = UNSET
    bidders: int | UnsetType = UNSET
    successful_bidders: int | UnsetType = UNSET  # cleared
    proceeds: int | UnsetType = UNSET  # cleared
    reserve_price: int | UnsetType = UNSET
    carried_over: list[int] | UnsetType = UNSET  # cancelled
    seed: str | UnsetType = UNSET
    ts: int
    md_seq: int | UnsetType = UNSET  # on the auctions channel
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class BidReport(Outbound, tag="bid_report", kw_only=True):
    """A bid placed, modified or withdrawn, or its outcome: to its bidder alone."""

    auction_id: str
    bid_id: ClientOrderId
    instrument: str
    status: str
    price: int | UnsetType = UNSET  # ticks; not when withdrawn
    volume: int | UnsetType = UNSET
    held: int | UnsetType = UNSET  # placed, modified
    released: int | UnsetType = UNSET  # withdrawn
    allocated: int | UnsetType = UNSET  # the outcome: allocated to amount
    clearing_price: int | None | UnsetType = UNSET
    amount: int | UnsetType = UNSET
    fee: int | UnsetType = UNSET  # the outcome: cents paid to the exchange on the lots allocated
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class BidderAdmission(Outbound, tag="bidder_admission"):
    """An account admitted to bid in primary auctions, or its admission withdrawn: to it and the operator."""

    account: str
    admitted: bool
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class BlockReport(Outbound, tag="block_report", kw_only=True):
    """A block trade or EFP as one side is told it: ``reported`` (its own report waits), ``alleged`` (the
    counterparty reported one against it), ``traded``, or ``lapsed`` (never matched by the day's end, or void:
    ``code`` says which check failed)."""

    block_id: ClientOrderId
    instrument: str
    status: str
    counterparty: str
    side: str | UnsetType = UNSET  # this account's side of the futures; the terms are not repeated in a lapse
    quantity: int | UnsetType = UNSET
    price: int | UnsetType = UNSET  # ticks
    kind: str | UnsetType = UNSET  # block, efp
    physical_price: int | None | UnsetType = UNSET  # an EFP's, in the underlying's ticks
    trade_id: int | UnsetType = UNSET  # traded
    fee: int | UnsetType = UNSET  # traded: cents
    physical_units: int | UnsetType = UNSET  # traded EFP: units delivered (sold) or received (bought)
    code: int | None | UnsetType = UNSET  # lapsed: None at the day's end, else the failed check's code
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


class AuctionStatusAnswer(Outbound, tag="auction_status"):
    auction_id: str
    instrument: str
    auctioneer: str
    volume: int
    closes_at: int
    seed_hash: str
    status: str  # open, cleared, cancelled
    own_bids: list[OwnBid]
    bids: int | None  # how many: for the auctioneer only
    result: AuctionReport | None  # the published outcome, with its md_seq
    ts: int
    request_id: RequestId | UnsetType = UNSET
    seq: int | UnsetType = UNSET


# -- market data (MARKET_DATA 3.1-3.6): prices in ticks, quantities in lots, numbered by md_seq ------------


class BookSnapshot(Outbound, tag="book_snapshot"):
    instrument: str
    md_seq: int
    levels: int
    bids: list[Level]
    asks: list[Level]
    ts: int


class BookUpdate(Outbound, tag="book_update"):
    instrument: str
    md_seq: int
    changes: list[LevelChange]
    ts: int


class TopOfBook(Outbound, tag="top_of_book"):
    instrument: str
    md_seq: int
    bid: int | None
    bid_quantity: int
    ask: int | None
    ask_quantity: int
    ts: int


class PublicTrade(Outbound, tag="trade"):
    instrument: str
    md_seq: int
    trade_id: int
    price: int
    quantity: int
    aggressor_side: Side | None  # None: an auction's fill (and a block's)
    ts: int
    block: str | UnsetType = UNSET  # only on an off-book futures trade: "block" or "efp" (docs/FUTURES.md)


class Statistics(Outbound, tag="statistics"):
    instrument: str
    md_seq: int
    open: int | None
    high: int | None
    low: int | None
    last: int | None
    volume: int
    volume_tonnes: int
    vwap: str | None  # euros, 4 decimals
    trades: int
    settlement_price: int | None
    ts: int
    trading_day_closed: bool | UnsetType = UNSET  # True, in the message that closes a trading day only


class InstrumentStatus(Outbound, tag="status"):
    instrument: str
    md_seq: int
    status: str  # open, halted, closed
    phase: TradingPhase
    reason: str | None  # why the phase last changed: operator, volatility
    trigger_price: int | None
    reference_price: int | None
    indicative_price: int | None
    indicative_quantity: int
    indicative_demand: int
    indicative_supply: int
    auction_price: int | None
    auction_quantity: int
    ts: int


# The messages numbered for an account (docs/PROTOCOL.md section 5): ``seq`` is set when one is delivered.
NumberedMessage = (
    ExecutionReport
    | RejectedOrderReport
    | RequestRejected
    | MessageRejected
    | MassCancelReport
    | KillSwitchReport
    | BalancesAnswer
    | PositionsAnswer
    | BookAnswer
    | OpenOrdersAnswer
    | TradesAnswer
    | Subscribed
    | Unsubscribed
    | SnapshotTaken
    | TradingPhaseReport
    | ScheduleReport
    | AuctionReport
    | BidReport
    | AuctionStatusAnswer
    | BlockReport
    | CloseOutReport
    | TasPricedReport
    | ComplianceReport
    | CompliancePositionAnswer
    | BidderAdmission
)
MarketData = BookSnapshot | BookUpdate | TopOfBook | PublicTrade | Statistics | InstrumentStatus | AuctionReport

OUTBOUND: tuple[type[Outbound], ...] = (
    LogonAccepted,
    ServerHeartbeat,
    LoggedOut,
    ExecutionReport,
    RejectedOrderReport,
    RequestRejected,
    MessageRejected,
    MassCancelReport,
    KillSwitchReport,
    BalancesAnswer,
    PositionsAnswer,
    BookAnswer,
    OpenOrdersAnswer,
    TradesAnswer,
    Pong,
    Subscribed,
    Unsubscribed,
    ResendBegin,
    ResendEnd,
    SnapshotTaken,
    TradingPhaseReport,
    ScheduleReport,
    AuctionReport,
    BidReport,
    AuctionStatusAnswer,
    BlockReport,
    CloseOutReport,
    TasPricedReport,
    ComplianceReport,
    CompliancePositionAnswer,
    BidderAdmission,
    BookSnapshot,
    BookUpdate,
    TopOfBook,
    PublicTrade,
    Statistics,
    InstrumentStatus,
)
