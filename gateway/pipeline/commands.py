"""Requests that become engine commands: wire fields to the engine's terms.

How this works
--------------
The engine loop looks up each request's class in :attr:`CommandBuilder.makers`
and calls the maker with the session, the request and the command's
timestamp. A maker converts prices from ticks or euro strings to cents,
names the session's account, checks what only the gateway can (the order a
cancel names is the session's own; an auction window within bounds) and
draws what the engine may not (a primary auction's seed). A request it
cannot convert raises :class:`exchange.InvalidCommand`, answered with the
engine's own refusal format.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable
from typing import Any, cast

from exchange import (
    AdmitBidder,
    BlockAccount,
    CancelOrder,
    CloseOutAccount,
    ComplianceDeadline,
    Engine,
    InvalidCommand,
    MassCancel,
    ModifyBid,
    NewOrder,
    OpenPrimaryAuction,
    RecordAllocation,
    RecordEmissions,
    RejectCode,
    ReplaceOrder,
    ReportBlockTrade,
    ScheduleReached,
    SetTradingPhase,
    ShiftSchedule,
    SubmitBid,
    Surrender,
    UnblockAccount,
    WithdrawBid,
)
from exchange.instruments import Instrument
from gateway.config import ServerConfig
from gateway.logs import log_event
from gateway.pipeline.intake import Disconnected
from gateway.pipeline.reports import OrderTracker, OrderView, price_in_cents
from gateway.schedule.calendar import date_number
from gateway.schedule.runner import CalendarRunner, auction_terms, point_name
from gateway.sessions.session import Session
from gateway.wire.protocol import (
    AdmitBidderRequest,
    CancelRequest,
    CloseComplianceYearRequest,
    CloseOutRequest,
    ExtendTradingDayRequest,
    KillSwitchRequest,
    MassCancelRequest,
    ModifyBidRequest,
    NewOrderRequest,
    OpenAuctionRequest,
    OrderStatusRequest,
    RecordAllocationRequest,
    RecordEmissionsRequest,
    ReleaseKillSwitchRequest,
    ReplaceRequest,
    ReportBlockRequest,
    SetTradingPhaseRequest,
    SkipSchedulePointRequest,
    SubmitBidRequest,
    SurrenderRequest,
    WithdrawBidRequest,
)

# The engine's commands take the wire's strings for their enums (side, order type, time in force, self-trade
# prevention, phase): they convert them, and refuse a bad one with its own code (exchange.commands). The gateway
# passes them on as they came, through these names typed Any: no conversion (nor a cast call) on the order path.
log = logging.getLogger("carbonx.gateway")
NEW_ORDER_FROM_WIRE: Any = NewOrder
PHASE_FROM_WIRE: Any = SetTradingPhase
BLOCK_FROM_WIRE: Any = ReportBlockTrade

CommandMaker = Callable[..., object]  # (session or None, request, ts) -> an engine command


def own_order(
    tracker: OrderTracker, account: str, request: CancelRequest | ReplaceRequest | OrderStatusRequest
) -> OrderView:
    """The account's order a request names; another account's order is unknown, as is none."""
    if (request.order_id is None) == (request.client_order_id is None):
        raise InvalidCommand(RejectCode.ORDER_REFERENCE_REQUIRED, "order_id")
    view = tracker.find(account, request.order_id, request.client_order_id)
    if view is None:
        raise InvalidCommand(RejectCode.UNKNOWN_ORDER, "order_id")
    return view


class CommandBuilder:
    """Makes the engine command of each request that changes state; see the module notes."""

    def __init__(self, engine: Engine, tracker: OrderTracker, config: ServerConfig) -> None:
        self.engine = engine
        self.tracker = tracker
        self.config = config
        self.calendar: CalendarRunner | None = None  # set when the exchange runs its days on a calendar
        self.makers: dict[type, CommandMaker] = {
            NewOrderRequest: self._new_order,
            CancelRequest: self._cancel_order,
            ReplaceRequest: self._replace_order,
            MassCancelRequest: self._mass_cancel,
            KillSwitchRequest: self._kill_switch,
            ReleaseKillSwitchRequest: self._release_kill_switch,
            SetTradingPhaseRequest: self._set_trading_phase,
            ExtendTradingDayRequest: self._extend_trading_day,
            SkipSchedulePointRequest: self._skip_schedule_point,
            OpenAuctionRequest: self._open_auction,
            SubmitBidRequest: self._submit_bid,
            ModifyBidRequest: self._modify_bid,
            WithdrawBidRequest: self._withdraw_bid,
            ReportBlockRequest: self._report_block,
            CloseOutRequest: self._close_out,
            RecordAllocationRequest: self._record_allocation,
            RecordEmissionsRequest: self._record_emissions,
            CloseComplianceYearRequest: self._close_compliance_year,
            SurrenderRequest: self._surrender,
            AdmitBidderRequest: self._admit_bidder,
            Disconnected: self._disconnected,
        }

    def _new_order(self, session: Session, request: NewOrderRequest, ts: int) -> NewOrder:
        instrument = self.engine.instrument(request.instrument)
        return NEW_ORDER_FROM_WIRE(
            ts=ts,
            account=session.account,
            client_order_id=request.client_order_id,
            instrument=request.instrument,
            side=request.side,
            quantity=request.quantity,
            price=price_in_cents(request.price, instrument, "price"),
            order_type=request.order_type,
            time_in_force=request.time_in_force,
            display_quantity=request.display_quantity,
            stop_price=price_in_cents(request.stop_price, instrument, "stop_price"),
            expire_date=request.expire_date,
            post_only=request.post_only,
            self_trade_prevention=request.self_trade_prevention,
        )

    def _cancel_order(self, session: Session, request: CancelRequest, ts: int) -> CancelOrder:
        own_order(self.tracker, session.account, request)
        return CancelOrder(
            ts=ts, account=session.account, order_id=request.order_id, client_order_id=request.client_order_id
        )

    def _replace_order(self, session: Session, request: ReplaceRequest, ts: int) -> ReplaceOrder:
        view = own_order(self.tracker, session.account, request)
        instrument = self.engine.instrument(view.instrument)
        price = price_in_cents(request.price, instrument, "price")
        if price is not None and instrument is not None and price <= 0 < instrument.min_price:
            # (refused before the order's state, as the protocol orders the checks; only a TAS book takes it)
            raise InvalidCommand(RejectCode.INVALID_PRICE, "price")
        return ReplaceOrder(
            ts=ts,
            account=session.account,
            order_id=request.order_id,
            client_order_id=request.client_order_id,
            quantity=request.quantity,
            price=price,
        )

    def _mass_cancel(self, session: Session, request: MassCancelRequest, ts: int) -> MassCancel:
        return MassCancel(ts=ts, account=session.account, instrument=request.instrument)

    def _kill_switch(self, session: Session, request: KillSwitchRequest, ts: int) -> BlockAccount:
        return BlockAccount(ts=ts, account=request.account)

    def _release_kill_switch(self, session: Session, request: ReleaseKillSwitchRequest, ts: int) -> UnblockAccount:
        return UnblockAccount(ts=ts, account=request.account)

    def _set_trading_phase(self, session: Session, request: SetTradingPhaseRequest, ts: int) -> SetTradingPhase:
        return PHASE_FROM_WIRE(ts=ts, instrument=request.instrument, phase=request.phase, from_phase=request.from_phase)

    def _extend_trading_day(self, session: Session, request: ExtendTradingDayRequest, ts: int) -> ShiftSchedule:
        """The operator's extension of the open trading day (docs/TRADING_CALENDAR.md 3)."""
        if self.calendar is None:
            raise InvalidCommand(RejectCode.NO_TRADING_CALENDAR, "type")
        if type(request.minutes) is not int or not 1 <= request.minutes <= 1440:
            raise InvalidCommand(RejectCode.INVALID_SCHEDULE_CHANGE, "minutes")
        return ShiftSchedule(ts=ts, trading_date=date_number(self.calendar.open_day()), seconds=request.minutes * 60)

    def _skip_schedule_point(self, session: Session, request: SkipSchedulePointRequest, ts: int) -> ScheduleReached:
        """The operator passes over the calendar's next point (never the end of day)."""
        if self.calendar is None:
            raise InvalidCommand(RejectCode.NO_TRADING_CALENDAR, "type")
        try:
            point = self.calendar.point_to_skip(request.point)
        except ValueError as why:
            reason = str(why)
            if reason == "end_of_day":
                raise InvalidCommand(RejectCode.END_OF_DAY_NOT_SKIPPED, "point") from None
            if reason == "unknown":  # not a point of the open day, or one already done
                raise InvalidCommand(RejectCode.INVALID_FIELD, "point") from None
            raise InvalidCommand(RejectCode.SCHEDULE_POINT_PASSED, "point") from None  # due: being carried out
        log_event(
            log, "schedule_point_skipped", trading_date=point.trading_date, point=point_name(point), by=session.account
        )
        return ScheduleReached(ts=ts, trading_date=point.trading_date, point=point_name(point), skipped=True)

    def _open_auction(self, session: Session, request: OpenAuctionRequest, ts: int) -> OpenPrimaryAuction:
        """An auctioneer's auction: the window from now, the seed drawn here (the engine draws nothing)."""
        if not 1 <= request.window_seconds <= self.config.max_auction_window:
            raise InvalidCommand(RejectCode.INVALID_FIELD, "window_seconds")
        discount = request.reserve_discount_bps
        return OpenPrimaryAuction(
            ts=ts,
            auction_id=request.auction_id,
            auctioneer=session.account,
            instrument=request.instrument,
            volume=request.volume,
            closes_at=ts + request.window_seconds * 1_000_000_000,
            seed=secrets.token_hex(32),
            **{**auction_terms(self.config), **({} if discount is None else {"reserve_discount_bps": discount})},
        )

    def _auction_instrument(self, auction_id: str) -> Instrument | None:
        symbol = self.engine.primary_auction_instrument(auction_id)
        return None if symbol is None else self.engine.instruments[symbol]

    def _submit_bid(self, session: Session, request: SubmitBidRequest, ts: int) -> SubmitBid:
        instrument = self._auction_instrument(request.auction_id)
        return SubmitBid(
            ts=ts,
            account=session.account,
            auction_id=request.auction_id,
            bid_id=request.bid_id,
            price=cast("int", price_in_cents(request.price, instrument, "price")),  # a bid has a price
            volume=request.volume,
        )

    def _modify_bid(self, session: Session, request: ModifyBidRequest, ts: int) -> ModifyBid:
        instrument = self._auction_instrument(request.auction_id)
        return ModifyBid(
            ts=ts,
            account=session.account,
            auction_id=request.auction_id,
            bid_id=request.bid_id,
            price=price_in_cents(request.price, instrument, "price"),
            volume=request.volume,
        )

    def _withdraw_bid(self, session: Session, request: WithdrawBidRequest, ts: int) -> WithdrawBid:
        return WithdrawBid(ts=ts, account=session.account, auction_id=request.auction_id, bid_id=request.bid_id)

    def _report_block(self, session: Session, request: ReportBlockRequest, ts: int) -> ReportBlockTrade:
        underlying = self.engine.underlying(request.instrument)
        spot = None if underlying is None else self.engine.instrument(underlying)
        return BLOCK_FROM_WIRE(
            ts=ts,
            account=session.account,
            block_id=request.block_id,
            counterparty=request.counterparty,
            instrument=request.instrument,
            side=request.side,
            quantity=request.quantity,
            price=price_in_cents(request.price, self.engine.instrument(request.instrument), "price"),
            kind=request.kind,
            physical_price=price_in_cents(request.physical_price, spot, "physical_price"),
        )

    def _close_out(self, session: Session, request: CloseOutRequest, ts: int) -> CloseOutAccount:
        return CloseOutAccount(ts=ts, account=request.account, to_account=request.to_account)

    def _record_allocation(self, session: Session, request: RecordAllocationRequest, ts: int) -> RecordAllocation:
        return RecordAllocation(ts=ts, account=request.account, year=request.year, units=request.units)

    def _record_emissions(self, session: Session, request: RecordEmissionsRequest, ts: int) -> RecordEmissions:
        return RecordEmissions(ts=ts, account=request.account, year=request.year, tonnes=request.tonnes)

    def _close_compliance_year(
        self, session: Session, request: CloseComplianceYearRequest, ts: int
    ) -> ComplianceDeadline:
        """The year's deadline is today: the exchange's clock gives the date (UTC), never the authority, so a
        year is not closed before its configured deadline (616)."""
        today = date_number(dt.datetime.fromtimestamp(ts / 1e9, dt.UTC).date())
        if type(request.year) is int and today // 10_000 <= request.year:  # the year is not even over
            raise InvalidCommand(RejectCode.DEADLINE_NOT_DUE, "year")
        return ComplianceDeadline(ts=ts, year=request.year, date=today)

    def _surrender(self, session: Session, request: SurrenderRequest, ts: int) -> Surrender:
        return Surrender(
            ts=ts, account=session.account, year=request.year, instrument=request.instrument, units=request.units
        )

    def _admit_bidder(self, session: Session, request: AdmitBidderRequest, ts: int) -> AdmitBidder:
        return AdmitBidder(ts=ts, account=request.account, admitted=request.admitted)

    def _disconnected(self, session: None, request: Disconnected, ts: int) -> MassCancel:
        return MassCancel(ts=ts, account=request.account, on_disconnect=True)
