"""Between the wire and the engine: requests become commands, events become execution reports.

How this works
--------------
Prices on the wire are integer ticks of the instrument (or decimal euro
strings, in requests); the engine counts cents. :func:`price_in_cents`
converts a request's price, and reports convert back (``cents // tick``).

:class:`OrderTracker` follows every order through the engine's events and
keeps what a FIX execution report needs and the engine does not carry: the
cumulative quantity, the traded value for the average price, the order's
status. :meth:`OrderTracker.messages` turns a command's events into the
messages each account is to receive (schemas of :mod:`gateway.wire.messages`,
numbered later by the sequencer): ``execution_report`` for every change
of an order (new, trade, canceled, replaced, rejected, expired, triggered),
``request_rejected`` for a refused cancel, replace, mass cancel or kill
switch, ``mass_cancel_report`` and ``kill_switch_report``. Events no trading
session receives (book levels, funding, compliance) produce nothing here.

The tracker keeps each open order, and the most recent closed ones (up to
``max_closed``) so that ``order_status`` can answer for a filled or
cancelled order too; older closed orders, and all closed ones at the end of
a trading day, are forgotten (they are then unknown, 402). For a trader's
own queries it also keeps each account's open orders (``open_orders``) and
its fills since the last end of day (``fills``: the newest
``MAX_FILLS_KEPT`` of them), both cleared as orders close and days end.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from decimal import Decimal

import msgspec
from msgspec import UNSET

from exchange import (
    AccountBlocked,
    AccountClosedOut,
    AccountUnblocked,
    AuctionCompleted,
    BidderAdmitted,
    BidPlaced,
    BidResult,
    BidWithdrawn,
    BlockTraded,
    BlockTradeLapsed,
    BlockTradeReported,
    ContractListed,
    InvalidCommand,
    MassCancelCompleted,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    OrderReplaced,
    PrimaryAuctionCancelled,
    PrimaryAuctionCleared,
    PrimaryAuctionOpened,
    RejectCode,
    RequestRejected,
    ScheduleAdvanced,
    ScheduleReached,
    ScheduleShifted,
    SetTradingPhase,
    ShiftSchedule,
    StopTriggered,
    TASPriced,
    Trade,
    TradingDayClosed,
    TradingPhaseChanged,
)
from exchange.instruments import Instrument, eur_to_cents
from gateway.pipeline.compliance_reports import INSTALLATION_EVENTS, compliance_report
from gateway.wire import messages
from gateway.wire.messages import (
    AuctionReport,
    BidderAdmission,
    BidReport,
    BlockReport,
    CloseOutReport,
    ComplianceReport,
    ExecutionReport,
    KillSwitchReport,
    MassCancelReport,
    OpenOrder,
    RejectedOrderReport,
    ScheduleReport,
    TasPricedReport,
    TradingPhaseReport,
    TransferEntry,
)

# Order statuses (FIX OrdStatus), as sent in ``order_status``.
NEW = "new"
PARTIALLY_FILLED = "partially_filled"
FILLED = "filled"
CANCELED = "canceled"
EXPIRED = "expired"
REJECTED = "rejected"
WAITING_TRIGGER = "waiting_trigger"  # a stop-limit order not yet triggered
CLOSED_STATUSES = frozenset((FILLED, CANCELED, EXPIRED, REJECTED))
MAX_CLOSED_KEPT = 100_000  # closed orders order_status still answers for (about 320 bytes each)
MAX_FILLS_KEPT = 10_000  # an account's fills of the day kept for its ``trades`` query (about 200 bytes each)
AVERAGE_PRICE_PLACES = Decimal("0.0001")  # average prices are euros to 4 decimals, rounded half to even


# A plain decimal: no exponent or spaces; a minus sign for a calendar spread's price (any other book refuses one)
PRICE_TEXT = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,12})?")


def price_in_cents(value: int | str | None, instrument: Instrument | None, field: str) -> int | None:
    """A request's price in cents: ``value`` is None, integer ticks, or a decimal string in euros ("70.25").

    Raises InvalidCommand for a price that cannot be one: INVALID_PRICE (or
    INVALID_STOP_PRICE) for text that is not a plain decimal or not a whole
    number of cents ("70.255"), PRICE_NOT_ON_TICK for whole cents between
    ticks ("70.01" where the tick is 0.05). For
    an unknown instrument an integer passes through unchanged (the engine
    then refuses the instrument).
    """
    if value is None:
        return None
    stop = field == "stop_price"
    tick = 1 if instrument is None else instrument.tick_size
    if isinstance(value, int):
        return value * tick
    if PRICE_TEXT.fullmatch(value) is None:
        raise InvalidCommand(RejectCode.INVALID_STOP_PRICE if stop else RejectCode.INVALID_PRICE, field)
    try:
        cents = eur_to_cents(value)
    except ValueError:  # a fraction of a cent: not a price at all (the engine's 106)
        raise InvalidCommand(RejectCode.INVALID_STOP_PRICE if stop else RejectCode.INVALID_PRICE, field) from None
    if cents % tick:
        raise InvalidCommand(RejectCode.INVALID_STOP_PRICE if stop else RejectCode.PRICE_NOT_ON_TICK, field)
    return cents


class OrderView:
    """What the gateway knows of one order of the day."""

    __slots__ = (
        "order_id",
        "account",
        "client_order_id",
        "instrument",
        "tick",
        "side",
        "order_type",
        "time_in_force",
        "price",
        "stop_price",
        "display_quantity",
        "expire_date",
        "quantity",
        "cum",
        "value",
        "status",
    )

    def __init__(self, event: OrderAccepted, tick: int) -> None:
        self.order_id = event.order_id
        self.account = event.account
        self.client_order_id = event.client_order_id
        self.instrument = event.instrument
        self.tick = tick
        # The members themselves: StrEnum members are their wire strings (equal to them, and encoded as them
        # by msgspec), and an enum's .value is a slow property on this path.
        self.side = event.side
        self.order_type = event.order_type
        self.time_in_force = event.time_in_force
        self.price = event.price  # cents
        self.stop_price = event.stop_price
        self.display_quantity = event.display_quantity
        self.expire_date = event.expire_date
        self.quantity = event.quantity
        self.cum = 0  # lots filled
        self.value = 0  # sum of price x lots over the fills, for the average price
        self.status = NEW if event.stop_price is None else WAITING_TRIGGER

    def report(self, exec_type: str, ts: int) -> ExecutionReport:
        """An execution report of the order as it is now."""
        tick = self.tick
        cum = self.cum
        price, stop_price = self.price, self.stop_price
        # Positional, in the schema's order (exec_type to ts): msgspec builds a struct from positional arguments
        # about five times faster than from keywords, and this runs for every change of every order.
        return ExecutionReport(
            exec_type,
            self.status,
            self.order_id,
            self.client_order_id,
            self.instrument,
            self.side,
            self.order_type,
            self.time_in_force,
            None if price is None else price // tick,
            None if stop_price is None else stop_price // tick,
            self.display_quantity,
            self.expire_date,
            self.quantity,
            cum,
            0 if self.status in CLOSED_STATUSES else self.quantity - cum,
            average_price(self.value, cum),
            ts,
        )

    def open_order(self) -> OpenOrder:
        """The order as an entry of ``open_orders``: what an ``order_status`` answer says of it, without its
        ``type``, ``exec_type`` and ``ts``."""
        report = self.report("status", 0)
        return OpenOrder(
            report.order_status,
            report.order_id,
            report.client_order_id,
            report.instrument,
            report.side,
            report.order_type,
            report.time_in_force,
            report.price,
            report.stop_price,
            report.display_quantity,
            report.expire_date,
            report.quantity,
            report.cum_quantity,
            report.leaves_quantity,
            report.avg_price,
        )


def average_price(value: int, lots: int) -> str | None:
    """The volume-weighted price of fills worth ``value`` (cents x lots) over ``lots``, as euros."""
    if not lots:
        return None
    return str((Decimal(value) / (lots * 100)).quantize(AVERAGE_PRICE_PLACES))


BLOCK_EVENTS = (BlockTradeReported, BlockTraded, BlockTradeLapsed)  # a block trade's, to its sides


class OrderTracker:
    """Every order of the trading day, followed through the engine's events."""

    def __init__(self, instruments: Mapping[str, Instrument], max_closed: int = MAX_CLOSED_KEPT) -> None:
        self.ticks = {symbol: instrument.tick_size for symbol, instrument in instruments.items()}
        self.orders: dict[int, OrderView] = {}  # by order id: open orders and recently closed ones
        self.by_client_id: dict[tuple[str, object], OrderView] = {}
        self.max_closed = max_closed
        self.closed: deque[OrderView] = deque()  # closed orders still kept, oldest first
        self.open_orders: dict[str, dict[int, OrderView]] = {}  # account -> its open orders, by order id
        # account -> its fills of the day, oldest first: (trade id, order id, client order id, instrument, side,
        # price in ticks, lots, liquidity, fee in cents, ts)
        self.fills: dict[str, deque[tuple]] = {}
        self.fills_dropped: set[str] = set()  # accounts whose older fills of the day were dropped (over the limit)
        self.fills_whole_day = True  # False after a start from a snapshot older than the fills kept
        # The engine's refusals (OrderRejected, RequestRejected) by code, for /metrics: counted where they become
        # reports, which an accepted order never passes. Not state: snapshots leave it out (__getstate__), and
        # the gateway starts it anew once recovery's replay is done (gateway.monitoring.collectors).
        self.refused: dict[RejectCode, int] = {}

    def fills_complete(self, account: str) -> bool:
        """Whether ``fills[account]`` holds every fill of the account since the last end of day."""
        return self.fills_whole_day and account not in self.fills_dropped

    def __getstate__(self) -> dict:
        """What a snapshot keeps: everything but the count of refusals (a figure of this process, not state)."""
        state = self.__dict__.copy()
        state.pop("refused", None)
        return state

    def __setstate__(self, state: dict) -> None:
        """A tracker pickled in a snapshot before the per-account indexes existed gets them rebuilt (its fills
        of the day start empty: they were not kept then)."""
        self.__dict__.update(state)
        self.refused = {}
        if "open_orders" not in state:
            self.fills = {}
            self.fills_dropped = set()
            self.fills_whole_day = False  # the day's fills so far were not kept
            self.open_orders = {}
            for view in self.orders.values():
                if view.status not in CLOSED_STATUSES:
                    self.open_orders.setdefault(view.account, {})[view.order_id] = view

    def find(self, account: str, order_id: int | None, client_order_id: object) -> OrderView | None:
        """The account's order named by its id or its client order id; None if the account has no such order."""
        if order_id is not None:
            view = self.orders.get(order_id)
            return view if view is not None and view.account == account else None
        return self.by_client_id.get((account, client_order_id))

    def messages(
        self, events: Iterable[object], fills: list[tuple[str, ExecutionReport]] | None = None
    ) -> list[tuple[str, Report]]:
        """(account, message) for each message the events cause, in event order; the trade reports (one per
        side of each Trade event) are also added to ``fills`` when given."""
        out: list[tuple[str, Report]] = []
        orders = self.orders
        for event in events:
            # One class test each, most frequent first (``__class__ is``: an event is never a subclass, and the
            # test is cheaper than isinstance on this path).
            if event.__class__ is Trade:
                auction = event.aggressor_side is None  # nobody took: the buy is in the taker fields
                self._fill(
                    orders[event.taker_order_id],
                    event,
                    event.taker_leaves,
                    "auction" if auction else "taker",
                    event.taker_fee,
                    out,
                    fills,
                )
                self._fill(
                    orders[event.maker_order_id],
                    event,
                    event.maker_leaves,
                    "auction" if auction else "maker",
                    event.maker_fee,
                    out,
                    fills,
                )
            elif event.__class__ is OrderAccepted:
                view = orders[event.order_id] = OrderView(event, self.ticks[event.instrument])
                self.by_client_id[(event.account, event.client_order_id)] = view
                account_orders = self.open_orders.get(event.account)
                if account_orders is None:
                    self.open_orders[event.account] = {event.order_id: view}
                else:
                    account_orders[event.order_id] = view
                out.append((event.account, view.report("new", event.ts)))
            elif event.__class__ is OrderCanceled:
                view = orders[event.order_id]
                view.status = CANCELED
                report = view.report("canceled", event.ts)
                report.reason = event.reason
                out.append((event.account, report))
                self._keep_closed(view)
            elif event.__class__ is OrderRejected:
                self.refused[event.code] = self.refused.get(event.code, 0) + 1
                out.append(
                    (
                        event.account,
                        rejected_order_report(event.client_order_id, event.instrument, event.code, event.ts),
                    )
                )
            elif event.__class__ is RequestRejected:
                self.refused[event.code] = self.refused.get(event.code, 0) + 1
                if event.account is not None:
                    out.append(
                        (
                            event.account,
                            request_rejected(
                                event.request, event.code, event.ts, event.order_id, event.client_order_id
                            ),
                        )
                    )
            elif event.__class__ is OrderReplaced:
                view = orders[event.order_id]
                view.price = event.price
                view.quantity = event.quantity
                report = view.report("replaced", event.ts)
                report.priority_kept = event.priority_kept
                out.append((event.account, report))
            elif event.__class__ is OrderExpired:
                view = orders[event.order_id]
                view.status = EXPIRED
                out.append((event.account, view.report("expired", event.ts)))
                self._keep_closed(view)
            elif event.__class__ is StopTriggered:
                view = orders[event.order_id]
                view.status = NEW if view.cum == 0 else PARTIALLY_FILLED
                report = view.report("triggered", event.ts)
                report.trigger_price = event.last_price // view.tick
                out.append((event.account, report))
            elif event.__class__ is MassCancelCompleted:
                out.append((event.account, MassCancelReport(event.instrument, event.canceled_orders, event.ts)))
            elif event.__class__ is AccountBlocked:
                out.append((event.account, KillSwitchReport(event.account, True, event.canceled_orders, event.ts)))
            elif event.__class__ is AccountUnblocked:
                out.append((event.account, KillSwitchReport(event.account, False, 0, event.ts)))
            elif event.__class__ is ContractListed:  # a futures month begins trading: its prices in its ticks
                self.ticks[event.instrument] = event.tick_size
            elif event.__class__ is TradingDayClosed:
                self._forget_closed()
                self.fills.clear()
                self.fills_dropped.clear()
                self.fills_whole_day = True
            elif event.__class__ in BLOCK_EVENTS:
                out.extend(block_reports(event, self.ticks))
            elif event.__class__ is TASPriced:  # a TAS fill's price, to each side
                out.extend(self._tas_reports(event))
            elif event.__class__ is AccountClosedOut:  # to the defaulter and the receiver (and the operator: sequencer)
                closed_out = close_out_report(event, self.ticks)
                out.append((event.account, closed_out))
                out.append((event.to_account, msgspec.structs.replace(closed_out)))
            elif event.__class__ is BidPlaced or event.__class__ is BidWithdrawn or event.__class__ is BidResult:
                out.append((event.account, self._bid_report(event)))  # to the bidder alone: bids are sealed
            elif (
                event.__class__ is PrimaryAuctionOpened
                or event.__class__ is PrimaryAuctionCleared
                or event.__class__ is PrimaryAuctionCancelled
            ):
                out.append((event.auctioneer, auction_report(event, self.ticks[event.instrument])))
            elif event.__class__ in INSTALLATION_EVENTS:  # to the installation (and the authority: sequencer)
                out.append((event.account, compliance_report(event)))
            elif event.__class__ is BidderAdmitted:  # to the account (and the operator: sequencer)
                out.append((event.account, BidderAdmission(event.account, event.admitted, event.ts)))
        return out

    def _tas_reports(self, event: TASPriced) -> list[tuple[str, Report]]:
        price = event.price // self.ticks[event.contract]
        out: list[tuple[str, Report]] = []
        for account, order_id, side in (
            (event.buyer, event.buy_order_id, "B"),
            (event.seller, event.sell_order_id, "S"),
        ):
            view = self.orders.get(order_id)
            clid = None if view is None else view.client_order_id
            out.append(
                (
                    account,
                    TasPricedReport(
                        event.instrument, event.contract, order_id, clid, side, event.quantity, price, event.ts
                    ),
                )
            )
        return out

    def _bid_report(self, event: BidPlaced | BidWithdrawn | BidResult) -> BidReport:
        """A bid's event as its bidder is told it (prices in ticks, amounts in cents)."""
        if isinstance(event, BidWithdrawn):
            return BidReport(
                auction_id=event.auction_id,
                bid_id=event.bid_id,
                instrument=event.instrument,
                status="withdrawn",
                released=event.released,
                ts=event.ts,
            )
        tick = self.ticks[event.instrument]
        if isinstance(event, BidPlaced):
            return BidReport(
                auction_id=event.auction_id,
                bid_id=event.bid_id,
                instrument=event.instrument,
                status="modified" if event.modified else "placed",
                price=event.price // tick,
                volume=event.volume,
                held=event.held,
                ts=event.ts,
            )
        status = (
            "auction_cancelled" if event.clearing_price is None else "allocated" if event.allocated else "not_allocated"
        )
        return BidReport(
            auction_id=event.auction_id,
            bid_id=event.bid_id,
            instrument=event.instrument,
            status=status,
            price=event.price // tick,
            volume=event.volume,
            allocated=event.allocated,
            clearing_price=None if event.clearing_price is None else event.clearing_price // tick,
            amount=event.amount,
            fee=event.fee,
            ts=event.ts,
        )

    def _fill(
        self,
        view: OrderView,
        trade: Trade,
        leaves: int,
        liquidity: str,
        fee: int,
        out: list[tuple[str, Report]],
        fills: list[tuple[str, ExecutionReport]] | None,
    ) -> None:
        view.cum += trade.quantity
        view.value += trade.price * trade.quantity
        view.status = FILLED if leaves == 0 else PARTIALLY_FILLED
        last_price = trade.price // view.tick
        report = view.report("trade", trade.ts)
        report.leaves_quantity = leaves
        report.trade_id = trade.trade_id
        report.last_price = last_price
        report.last_quantity = trade.quantity
        report.liquidity = liquidity
        report.fee = fee
        report.aggressor_side = trade.aggressor_side
        out.append((view.account, report))
        if fills is not None:
            fills.append((view.account, report))
        kept = self.fills.get(view.account)
        if kept is None:
            kept = self.fills[view.account] = deque(maxlen=MAX_FILLS_KEPT)
        elif len(kept) == MAX_FILLS_KEPT:  # the oldest goes
            self.fills_dropped.add(view.account)
        kept.append(
            (
                trade.trade_id,
                view.order_id,
                view.client_order_id,
                view.instrument,
                view.side,
                last_price,
                trade.quantity,
                liquidity,
                fee,
                trade.ts,
            )
        )
        if not leaves:
            self._keep_closed(view)

    def _keep_closed(self, view: OrderView) -> None:
        """A closed order stays known for a while; past ``max_closed`` the oldest closed one is forgotten."""
        account_orders = self.open_orders.get(view.account)
        if account_orders is not None:
            account_orders.pop(view.order_id, None)
            if not account_orders:
                del self.open_orders[view.account]
        closed = self.closed
        closed.append(view)
        if len(closed) > self.max_closed:
            old = closed.popleft()
            if self.orders.get(old.order_id) is old:
                del self.orders[old.order_id]
            key = (old.account, old.client_order_id)
            if self.by_client_id.get(key) is old:
                del self.by_client_id[key]

    def _forget_closed(self) -> None:
        """End of day: closed orders are forgotten (their client order ids may be used again)."""
        self.orders = {order_id: view for order_id, view in self.orders.items() if view.status not in CLOSED_STATUSES}
        self.by_client_id = {(view.account, view.client_order_id): view for view in self.orders.values()}
        self.closed.clear()


def rejected_order_report(
    client_order_id: int | str | None, instrument: str | None, code: RejectCode, ts: int
) -> RejectedOrderReport:
    """The execution report of a new order that was refused (by the engine, or before it)."""
    return RejectedOrderReport(
        exec_type="rejected",
        order_status=REJECTED,
        order_id=None,
        client_order_id=client_order_id,
        instrument=instrument,
        cum_quantity=0,
        leaves_quantity=0,
        code=int(code),
        text=code.text,
        ts=ts,
    )


def request_rejected(
    request: str, code: RejectCode, ts: int, order_id: int | None = None, client_order_id: int | str | None = None
) -> messages.RequestRejected:
    """A refused request other than a new order (cancel, replace, mass cancel, status, kill switch)."""
    return messages.RequestRejected(
        request=request, order_id=order_id, client_order_id=client_order_id, code=int(code), text=code.text, ts=ts
    )


def trading_phase_answer(events: list, tick: int) -> TradingPhaseReport | messages.RequestRejected:
    """The answer to an operator's set_trading_phase, from the events of its command: ``trading_phase_report``
    (with the auction the change ran, if any; its price in ticks of ``tick`` cents), or the engine's refusal."""
    auction = None
    for event in events:
        if event.__class__ is RequestRejected:
            return request_rejected("set_trading_phase", event.code, event.ts)
        if event.__class__ is AuctionCompleted:
            auction = event
        elif event.__class__ is TradingPhaseChanged and event.reason == "operator":
            return TradingPhaseReport(
                instrument=event.instrument,
                phase=event.phase,
                previous=event.previous,
                auction_price=None if auction is None or auction.price is None else auction.price // tick,
                auction_quantity=0 if auction is None else auction.quantity,
                auction_trades=0 if auction is None else auction.trades,
                ts=event.ts,
            )
    raise ValueError("a set_trading_phase command caused neither a phase change nor a refusal")


def schedule_answer(
    command: ShiftSchedule | ScheduleReached, events: list, extension: int
) -> ScheduleReport | messages.RequestRejected:
    """The answer to an operator's extend_trading_day or skip_schedule_point: the open day's schedule as it now
    stands, or the engine's refusal."""
    request = "extend_trading_day" if command.__class__ is ShiftSchedule else "skip_schedule_point"
    for event in events:
        if event.__class__ is RequestRejected:
            return request_rejected(request, event.code, event.ts)
        if event.__class__ is ScheduleShifted:
            return ScheduleReport(
                trading_date=event.trading_date, extension_seconds=event.total_seconds, skipped=None, ts=event.ts
            )
        if event.__class__ is ScheduleAdvanced:
            return ScheduleReport(
                trading_date=event.trading_date, extension_seconds=extension, skipped=event.point, ts=event.ts
            )
    raise ValueError(f"a {request} command caused neither a change nor a refusal")


# The commands whose events name no account: the operator who sent one is answered from them.
OPERATOR_ANSWERED = frozenset((SetTradingPhase, ShiftSchedule, ScheduleReached))


def operator_answer(command: object, events: list, ticks: dict[str, int], extension: int = 0) -> Report:
    """The answer to an operator's command whose events name no account (``extension``: the open day's, for a
    schedule report)."""
    if command.__class__ is SetTradingPhase:
        return trading_phase_answer(events, ticks.get(command.instrument, 1))  # type: ignore[attr-defined]
    return schedule_answer(command, events, extension)  # type: ignore[arg-type]


# What the tracker sends an account (OrderTracker.messages), and the answer to set_trading_phase.
Report = (
    ExecutionReport
    | BlockReport
    | CloseOutReport
    | TasPricedReport
    | RejectedOrderReport
    | messages.RequestRejected
    | MassCancelReport
    | KillSwitchReport
    | BidReport
    | AuctionReport
    | TradingPhaseReport
    | ScheduleReport
    | ComplianceReport
    | BidderAdmission
)


def close_out_report(event: AccountClosedOut, ticks: Mapping[str, int]) -> CloseOutReport:
    transfers = [TransferEntry(symbol, lots, price // ticks[symbol]) for symbol, lots, price in event.transfers]
    return CloseOutReport(event.account, event.to_account, transfers, event.ts)


def block_reports(
    event: BlockTradeReported | BlockTraded | BlockTradeLapsed, ticks: Mapping[str, int]
) -> list[tuple[str, BlockReport]]:
    """(account, report) for each side a block trade's event is told to: a report to its reporter and, as
    alleged, to the counterparty; a trade to both sides; a lapse to its reporter."""
    tick = ticks[event.instrument]
    if isinstance(event, BlockTraded):
        physical_tick = ticks[event.underlying]
        out = []
        for account, counterparty, side, units in (
            (event.buyer, event.seller, "B", -event.physical_units),
            (event.seller, event.buyer, "S", event.physical_units),
        ):
            report = BlockReport(
                block_id=event.block_id,
                instrument=event.instrument,
                status="traded",
                counterparty=counterparty,
                side=side,
                quantity=event.quantity,
                price=event.price // tick,
                kind=event.kind,
                trade_id=event.trade_id,
                fee=event.buyer_fee if side == "B" else event.seller_fee,
                ts=event.ts,
            )
            if event.physical_price is not None:
                report.physical_price = event.physical_price // physical_tick
                report.physical_units = units
            out.append((account, report))
        return out
    if isinstance(event, BlockTradeLapsed):
        # A report the day's end lapsed is told to both (the counterparty was told it was alleged); a void one is
        # one event per reporter.
        told = [(event.account, event.counterparty)]
        if event.code is None:
            told.append((event.counterparty, event.account))
        code = None if event.code is None else int(event.code)
        return [
            (
                account,
                BlockReport(
                    block_id=event.block_id,
                    instrument=event.instrument,
                    status="lapsed",
                    counterparty=counterparty,
                    code=code,
                    ts=event.ts,
                ),
            )
            for account, counterparty in told
        ]
    physical = UNSET if event.physical_price is None else event.physical_price // ticks[event.underlying]
    reported = []
    for account, counterparty, side, status in (
        (event.account, event.counterparty, str(event.side), "reported"),
        (event.counterparty, event.account, "S" if event.side == "B" else "B", "alleged"),
    ):
        reported.append(
            (
                account,
                BlockReport(
                    block_id=event.block_id,
                    instrument=event.instrument,
                    status=status,
                    counterparty=counterparty,
                    side=side,
                    quantity=event.quantity,
                    price=event.price // tick,
                    kind=event.kind,
                    physical_price=physical,
                    ts=event.ts,
                ),
            )
        )
    return reported


def auction_report(
    event: PrimaryAuctionOpened | PrimaryAuctionCleared | PrimaryAuctionCancelled, tick: int
) -> AuctionReport:
    """A primary auction's opening or outcome as the auctioneer is told it and the market-data ``auctions``
    channel publishes it (prices in ticks, amounts in cents, volumes in allowances)."""
    if isinstance(event, PrimaryAuctionOpened):
        return AuctionReport(
            auction_id=event.auction_id,
            instrument=event.instrument,
            auctioneer=event.auctioneer,
            volume=event.volume,
            status="open",
            carried_in=event.carried_in,
            closes_at=event.closes_at,
            seed_hash=event.seed_hash,
            reserve_discount_bps=event.reserve_discount_bps,
            ts=event.ts,
        )
    if isinstance(event, PrimaryAuctionCleared):
        return AuctionReport(
            auction_id=event.auction_id,
            instrument=event.instrument,
            auctioneer=event.auctioneer,
            volume=event.volume,
            status="cleared",
            clearing_price=event.clearing_price // tick,
            total_bid_volume=event.total_bid_volume,
            cover_ratio=cover_ratio(event.total_bid_volume, event.volume),
            bidders=event.bidders,
            successful_bidders=event.successful_bidders,
            proceeds=event.proceeds,
            reserve_price=event.reserve_price // tick,
            seed=event.seed,
            ts=event.ts,
        )
    return AuctionReport(
        auction_id=event.auction_id,
        instrument=event.instrument,
        auctioneer=event.auctioneer,
        volume=event.volume,
        status="cancelled",
        reason=event.reason,
        clearing_price=None if event.clearing_price is None else event.clearing_price // tick,
        total_bid_volume=event.total_bid_volume,
        cover_ratio=cover_ratio(event.total_bid_volume, event.volume),
        bidders=event.bidders,
        reserve_price=event.reserve_price // tick,
        carried_over=list(event.carried_over),
        seed=event.seed,
        ts=event.ts,
    )


def cover_ratio(total_bid_volume: int, volume: int) -> str:
    """Bids over the volume offered, to 2 decimals rounded half to even ("1.87")."""
    return str((Decimal(total_bid_volume) / volume).quantize(Decimal("0.01")))
