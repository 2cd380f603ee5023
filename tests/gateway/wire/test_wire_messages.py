"""The outbound schemas (gateway/wire/messages.py) against the dicts they replaced: the same bytes.

What is tested here
-------------------
* For every outbound message kind, and every variant of one (each exec type, each auction outcome,
  each bid status, the closing statistics, a logon of a market-data session...), a message built from
  its schema encodes with :func:`encode_frame` to exactly the bytes of the dict literal the exchange
  built before the schemas existed (the same keys in the same order, a null sent where the dict held
  None, a key left out where the dict had none). ``CASES`` is that list, and must name every schema.
* :func:`encode_message` (an MQTT payload) is the frame's body, with the smallest map header: msgspec
  would size a struct's header by its declared fields, not by those present.
* The reference ``msgpack`` package packs the old dict to the same bytes, and reads the frame's body
  back to the same map as the client's reader (:class:`DictReader`).
* Round trip: the frame read by the client's reader and converted to the schema is the message
  again. (Every inbound message's round trip, with both encoders, is in tests/gateway/wire/test_gateway_protocol.py.)
"""

from __future__ import annotations

import msgpack
import msgspec
import pytest
from msgspec import UNSET

from exchange import CancelReason, OrderType, Side, TimeInForce, TradingPhase
from gateway.wire.messages import (
    OUTBOUND,
    AuctionReport,
    AuctionStatusAnswer,
    Balance,
    BalancesAnswer,
    BidderAdmission,
    BidReport,
    BlockReport,
    BookAnswer,
    BookSnapshot,
    BookUpdate,
    CloseOutReport,
    CompliancePositionAnswer,
    ComplianceReport,
    ComplianceRow,
    ExecutionReport,
    Fill,
    FuturesPosition,
    InstrumentStatus,
    InstrumentTerms,
    KillSwitchReport,
    LoggedOut,
    LogonAccepted,
    MassCancelReport,
    MessageRejected,
    OpenOrder,
    OpenOrdersAnswer,
    OwnBid,
    Pong,
    PositionsAnswer,
    PublicTrade,
    RejectedOrderReport,
    RequestRejected,
    ResendBegin,
    ResendEnd,
    ScheduleReport,
    ServerHeartbeat,
    SnapshotTaken,
    Statistics,
    Subscribed,
    TasPricedReport,
    TopOfBook,
    TradesAnswer,
    TradingPhaseReport,
    TransferEntry,
    Unsubscribed,
)
from gateway.wire.protocol import LENGTH_BYTES, DictReader, encode_frame, encode_message

TS = 1_764_323_000_123_456_789
COMPLIANCE_ROW = {
    "year": 2026,
    "account": "mill",
    "allocation": 400_000,
    "emissions": 520_000,
    "carried_in": 0,
    "obligation": 520_000,
    "surrendered": {"EUA": 1000},
    "credit_entitlement": 0,
    "credits_left": 0,
    "shortfall": 519_000,
    "penalty": 0,
    "penalty_owed": 0,
    "closed": False,
}
CLOSES = TS + 3_600_000_000_000


def report_dict(exec_type: str, status: str, **changes: object) -> dict:
    """An execution report as ``OrderView.report`` built it: the common fields, in its order."""
    message = {
        "type": "execution_report",
        "exec_type": exec_type,
        "order_status": status,
        "order_id": 17,
        "client_order_id": "c-1",
        "instrument": "EUA",
        "side": Side.BUY,
        "order_type": OrderType.LIMIT,
        "time_in_force": TimeInForce.GTC,
        "price": 7025,
        "stop_price": None,
        "display_quantity": None,
        "expire_date": None,
        "quantity": 10,
        "cum_quantity": 0,
        "leaves_quantity": 10,
        "avg_price": None,
        "ts": TS,
    }
    message.update(changes)
    return message


def report(exec_type: str, status: str, **changes: object) -> ExecutionReport:
    fields = {key: value for key, value in report_dict(exec_type, status).items() if key != "type"}
    return ExecutionReport(**{**fields, **changes})


EUA_TERMS = {
    "symbol": "EUA",
    "name": "EU Allowance",
    "lot_units": 1000,
    "tick_size": "0.01",
    "min_lots": 1,
    "max_lots": 10000,
    "min_price": 1,
    "max_price": 100000,
    "reference_price": 7000,
    "market_collar": 350,
    "price_band_bps": 1000,
    "price_band_sides": "one",
    "maker_fee": 200,
    "taker_fee": 350,
    "volatility_band_bps": 500,
    "volatility_call_seconds": 120,
}
CER_TERMS = {**EUA_TERMS, "symbol": "CER", "name": "Certified Emission Reduction", "market_collar": None}
LOGON = {
    "account": "bank",
    "protocol_version": 1,
    "session_id": 3,
    "heartbeat_interval": 30,
    "heartbeat_timeout": 90,
    "max_frame": 65536,
    "throttle_rate": 100.0,
    "throttle_burst": 200,
    "cancel_on_disconnect": True,
    "operator": False,
    "next_seq": 41,
}
OPEN_ORDER = {
    key: value
    for key, value in report_dict(
        "status", "partially_filled", cum_quantity=4, leaves_quantity=6, avg_price="70.2500"
    ).items()
    if key not in ("type", "exec_type", "ts")
}
FILL = {
    "trade_id": 9,
    "order_id": 17,
    "client_order_id": "c-1",
    "instrument": "EUA",
    "side": Side.BUY,
    "price": 7025,
    "quantity": 4,
    "liquidity": "taker",
    "fee": 1400,
    "ts": TS,
}
OPENED = {
    "type": "auction_report",
    "auction_id": "DE-1",
    "instrument": "EUA",
    "auctioneer": "de",
    "volume": 5000,
    "status": "open",
    "carried_in": 500,
    "closes_at": CLOSES,
    "seed_hash": "ab" * 32,
    "reserve_discount_bps": 500,
    "ts": TS,
}
CLEARED = {
    "type": "auction_report",
    "auction_id": "DE-1",
    "instrument": "EUA",
    "auctioneer": "de",
    "volume": 5000,
    "status": "cleared",
    "clearing_price": 7010,
    "total_bid_volume": 9000,
    "cover_ratio": "1.80",
    "bidders": 4,
    "successful_bidders": 3,
    "proceeds": 35_050_000,
    "reserve_price": 6650,
    "seed": "cd" * 32,
    "ts": TS,
}
CANCELLED = {
    "type": "auction_report",
    "auction_id": "DE-2",
    "instrument": "EUA",
    "auctioneer": "de",
    "volume": 5000,
    "status": "cancelled",
    "reason": "undersubscribed",
    "clearing_price": None,
    "total_bid_volume": 1500,
    "cover_ratio": "0.30",
    "bidders": 1,
    "reserve_price": 6650,
    "carried_over": [1500, 1500, 1000, 1000],
    "seed": "ef" * 32,
    "ts": TS,
}
STATISTICS = {
    "type": "statistics",
    "instrument": "EUA",
    "md_seq": 6,
    "open": 7000,
    "high": 7100,
    "low": 6990,
    "last": 7025,
    "volume": 40,
    "volume_tonnes": 40_000,
    "vwap": "70.3125",
    "trades": 7,
    "settlement_price": None,
    "ts": TS,
}
STATUS = {
    "type": "status",
    "instrument": "EUA",
    "md_seq": 3,
    "status": "open",
    "phase": TradingPhase.VOLATILITY_INTERRUPTION,
    "reason": "volatility",
    "trigger_price": 7800,
    "reference_price": 7025,
    "indicative_price": None,
    "indicative_quantity": 0,
    "indicative_demand": 0,
    "indicative_supply": 0,
    "auction_price": None,
    "auction_quantity": 0,
    "ts": TS,
}


def without_type(message: dict) -> dict:
    return {key: value for key, value in message.items() if key != "type"}


def auction(message: dict, **extra: object) -> AuctionReport:
    return AuctionReport(**without_type(message), **extra)


# (the dict the exchange built, the message built from the schema): the same message, both ways
CASES: list[tuple[dict, msgspec.Struct]] = [
    # session
    (
        {"type": "logon_accepted", **LOGON, "instruments": [EUA_TERMS, CER_TERMS], "ts": TS, "request_id": "L"},
        LogonAccepted(
            **LOGON, instruments=[InstrumentTerms(**EUA_TERMS), InstrumentTerms(**CER_TERMS)], ts=TS, request_id="L"
        ),
    ),
    (
        {"type": "logon_accepted", **LOGON, "instruments": [EUA_TERMS], "ts": TS, "market_data_only": True},
        LogonAccepted(**LOGON, instruments=[InstrumentTerms(**EUA_TERMS)], ts=TS, market_data_only=True),
    ),
    (
        {"type": "logon_accepted", **LOGON, "instruments": [], "ts": TS, "market_data_only": True, "request_id": 1},
        LogonAccepted(**LOGON, instruments=[], ts=TS, market_data_only=True, request_id=1),
    ),  # 16 entries: map 16
    ({"type": "heartbeat", "ts": TS}, ServerHeartbeat(ts=TS)),
    (
        {"type": "logout", "code": None, "text": "logged out", "ts": TS, "request_id": 7},
        LoggedOut(code=None, text="logged out", ts=TS, request_id=7),
    ),
    (
        {
            "type": "logout",
            "code": 717,
            "text": "too many failed logons for this account: try again in 2.5 s",
            "retry_after": 2.5,
            "ts": TS,
        },
        LoggedOut(code=717, text="too many failed logons for this account: try again in 2.5 s", retry_after=2.5, ts=TS),
    ),
    # execution reports, each exec type
    ({**report_dict("new", "new"), "request_id": 12, "seq": 5}, report("new", "new", request_id=12, seq=5)),
    (
        {
            **report_dict(
                "new",
                "waiting_trigger",
                order_type=OrderType.LIMIT,
                time_in_force=TimeInForce.GTD,
                stop_price=7100,
                display_quantity=2,
                expire_date=20261231,
            ),
            "seq": 6,
        },
        report(
            "new",
            "waiting_trigger",
            time_in_force=TimeInForce.GTD,
            stop_price=7100,
            display_quantity=2,
            expire_date=20261231,
            seq=6,
        ),
    ),
    (
        {
            **report_dict("trade", "partially_filled", cum_quantity=4, leaves_quantity=6, avg_price="70.2500"),
            "trade_id": 9,
            "last_price": 7025,
            "last_quantity": 4,
            "liquidity": "taker",
            "fee": 1400,
            "aggressor_side": Side.BUY,
            "request_id": "r",
            "seq": 7,
        },
        report(
            "trade",
            "partially_filled",
            cum_quantity=4,
            leaves_quantity=6,
            avg_price="70.2500",
            trade_id=9,
            last_price=7025,
            last_quantity=4,
            liquidity="taker",
            fee=1400,
            aggressor_side=Side.BUY,
            request_id="r",
            seq=7,
        ),
    ),
    (
        {
            **report_dict(
                "trade",
                "filled",
                side=Side.SELL,
                price=None,
                order_type=OrderType.MARKET,
                time_in_force=TimeInForce.IOC,
                cum_quantity=10,
                leaves_quantity=0,
                avg_price="70.0000",
            ),
            "trade_id": 10,
            "last_price": 7000,
            "last_quantity": 6,
            "liquidity": "auction",
            "fee": 1200,
            "aggressor_side": None,
            "seq": 8,
        },
        report(
            "trade",
            "filled",
            side=Side.SELL,
            price=None,
            order_type=OrderType.MARKET,
            time_in_force=TimeInForce.IOC,
            cum_quantity=10,
            leaves_quantity=0,
            avg_price="70.0000",
            trade_id=10,
            last_price=7000,
            last_quantity=6,
            liquidity="auction",
            fee=1200,
            aggressor_side=None,
            seq=8,
        ),
    ),
    (
        {
            **report_dict("canceled", "canceled", leaves_quantity=0),
            "reason": CancelReason.USER,
            "request_id": 3,
            "seq": 9,
        },
        report("canceled", "canceled", leaves_quantity=0, reason=CancelReason.USER, request_id=3, seq=9),
    ),
    (
        {
            **report_dict("replaced", "new", price=7030, quantity=12, leaves_quantity=12),
            "priority_kept": False,
            "seq": 10,
        },
        report("replaced", "new", price=7030, quantity=12, leaves_quantity=12, priority_kept=False, seq=10),
    ),
    (
        {**report_dict("expired", "expired", leaves_quantity=0), "seq": 11},
        report("expired", "expired", leaves_quantity=0, seq=11),
    ),
    (
        {**report_dict("triggered", "new", stop_price=7100), "trigger_price": 7105, "seq": 12},
        report("triggered", "new", stop_price=7100, trigger_price=7105, seq=12),
    ),
    ({**report_dict("status", "new"), "request_id": 99, "seq": 13}, report("status", "new", request_id=99, seq=13)),
    (
        {
            "type": "execution_report",
            "exec_type": "rejected",
            "order_status": "rejected",
            "order_id": None,
            "client_order_id": "c-2",
            "instrument": None,
            "cum_quantity": 0,
            "leaves_quantity": 0,
            "code": 101,
            "text": "unknown instrument",
            "ts": TS,
            "request_id": 4,
            "seq": 14,
        },
        RejectedOrderReport(
            exec_type="rejected",
            order_status="rejected",
            order_id=None,
            client_order_id="c-2",
            instrument=None,
            cum_quantity=0,
            leaves_quantity=0,
            code=101,
            text="unknown instrument",
            ts=TS,
            request_id=4,
            seq=14,
        ),
    ),
    # refusals and reports of requests
    (
        {
            "type": "request_rejected",
            "request": "cancel_order",
            "order_id": 17,
            "client_order_id": None,
            "code": 402,
            "text": "unknown order",
            "ts": TS,
            "request_id": 5,
            "seq": 15,
        },
        RequestRejected(
            request="cancel_order",
            order_id=17,
            client_order_id=None,
            code=402,
            text="unknown order",
            ts=TS,
            request_id=5,
            seq=15,
        ),
    ),
    (
        {
            "type": "request_rejected",
            "request": "set_trading_phase",
            "order_id": None,
            "client_order_id": None,
            "code": 505,
            "text": "not in that phase",
            "ts": TS,
            "seq": 16,
        },
        RequestRejected(
            request="set_trading_phase",
            order_id=None,
            client_order_id=None,
            code=505,
            text="not in that phase",
            ts=TS,
            seq=16,
        ),
    ),
    (
        {
            "type": "reject",
            "ref_type": "new_order",
            "field": "quantity",
            "client_order_id": 5,
            "code": 707,
            "text": "invalid field: `quantity` must be an integer, not a float",
            "ts": TS,
            "request_id": 1,
            "seq": 17,
        },
        MessageRejected(
            ref_type="new_order",
            field="quantity",
            client_order_id=5,
            code=707,
            text="invalid field: `quantity` must be an integer, not a float",
            ts=TS,
            request_id=1,
            seq=17,
        ),
    ),
    (
        {
            "type": "reject",
            "ref_type": None,
            "field": None,
            "client_order_id": None,
            "code": 719,
            "text": "over capacity",
            "ts": TS,
        },
        MessageRejected(ref_type=None, field=None, client_order_id=None, code=719, text="over capacity", ts=TS),
    ),
    (
        {"type": "mass_cancel_report", "instrument": None, "canceled_orders": 3, "ts": TS, "request_id": 8, "seq": 18},
        MassCancelReport(instrument=None, canceled_orders=3, ts=TS, request_id=8, seq=18),
    ),
    (
        {"type": "kill_switch_report", "account": "bank", "blocked": True, "canceled_orders": 2, "ts": TS, "seq": 19},
        KillSwitchReport(account="bank", blocked=True, canceled_orders=2, ts=TS, seq=19),
    ),
    (
        {
            "type": "trading_phase_report",
            "instrument": "EUA",
            "phase": TradingPhase.CONTINUOUS,
            "previous": TradingPhase.OPENING_CALL,
            "auction_price": 7020,
            "auction_quantity": 12,
            "auction_trades": 3,
            "ts": TS,
            "request_id": "p",
            "seq": 20,
        },
        TradingPhaseReport(
            instrument="EUA",
            phase=TradingPhase.CONTINUOUS,
            previous=TradingPhase.OPENING_CALL,
            auction_price=7020,
            auction_quantity=12,
            auction_trades=3,
            ts=TS,
            request_id="p",
            seq=20,
        ),
    ),
    (
        {
            "type": "schedule_report",
            "trading_date": 20260105,
            "extension_seconds": 1800,
            "skipped": None,
            "ts": TS,
            "request_id": "e",
            "seq": 21,
        },
        ScheduleReport(trading_date=20260105, extension_seconds=1800, skipped=None, ts=TS, request_id="e", seq=21),
    ),
    # answers to queries
    (
        {
            "type": "balances",
            "account": "bank",
            "balances": [
                {"asset": "EUR", "holding": 10_000_000, "held": 70_350, "available": 9_929_650},
                {"asset": "EUA", "holding": 5000, "held": 0, "available": 5000},
            ],
            "blocked": False,
            "ts": TS,
            "request_id": 2,
            "seq": 21,
        },
        BalancesAnswer(
            account="bank",
            balances=[Balance("EUR", 10_000_000, 70_350, 9_929_650), Balance("EUA", 5000, 0, 5000)],
            blocked=False,
            ts=TS,
            request_id=2,
            seq=21,
        ),
    ),
    (
        {
            "type": "positions",
            "account": "bank",
            "positions": [
                {
                    "instrument": "EUAZ27",
                    "lots": -3,
                    "settlement_price": 7230,
                    "last_trading_day": 20271220,
                    "delivery_day": 20271223,
                }
            ],
            "initial_margin": 2_400_000,
            "maintenance_margin": 1_920_000,
            "orders_hold": 0,
            "cash": 10_000_000,
            "margin_call": False,
            "ts": TS,
            "request_id": 3,
            "seq": 22,
        },
        PositionsAnswer(
            account="bank",
            positions=[FuturesPosition("EUAZ27", -3, 7230, 20271220, 20271223)],
            initial_margin=2_400_000,
            maintenance_margin=1_920_000,
            orders_hold=0,
            cash=10_000_000,
            margin_call=False,
            ts=TS,
            request_id=3,
            seq=22,
        ),
    ),
    (
        {
            "type": "book",
            "instrument": "EUA",
            "bids": [[7020, 5, 2], [7010, 1, 1]],
            "asks": [],
            "last_price": None,
            "ts": TS,
            "seq": 22,
        },
        BookAnswer(instrument="EUA", bids=[(7020, 5, 2), (7010, 1, 1)], asks=[], last_price=None, ts=TS, seq=22),
    ),
    (
        {"type": "open_orders", "orders": [OPEN_ORDER], "more": True, "ts": TS, "request_id": 6, "seq": 23},
        OpenOrdersAnswer(orders=[OpenOrder(**OPEN_ORDER)], more=True, ts=TS, request_id=6, seq=23),
    ),
    (
        {"type": "open_orders", "orders": [], "more": False, "ts": TS, "seq": 24},
        OpenOrdersAnswer(orders=[], more=False, ts=TS, seq=24),
    ),
    (
        {"type": "trades", "trades": [FILL], "more": False, "complete": True, "ts": TS, "seq": 25},
        TradesAnswer(trades=[Fill(**FILL)], more=False, complete=True, ts=TS, seq=25),
    ),
    ({"type": "pong", "ts": TS}, Pong(ts=TS)),
    ({"type": "pong", "ts": TS, "request_id": "ping-1"}, Pong(ts=TS, request_id="ping-1")),
    (
        {
            "type": "subscribed",
            "instruments": ["CER", "EUA"],
            "channels": ["book", "trades"],
            "ts": TS,
            "request_id": 1,
            "seq": 26,
        },
        Subscribed(instruments=["CER", "EUA"], channels=["book", "trades"], ts=TS, request_id=1, seq=26),
    ),
    (
        {"type": "unsubscribed", "instruments": ["EUA"], "channels": ["book"], "ts": TS},
        Unsubscribed(instruments=["EUA"], channels=["book"], ts=TS),
    ),
    (
        {
            "type": "resend_begin",
            "from_seq": 3,
            "to_seq": 30,
            "messages": 20,
            "unavailable": [[3, 5], [9, 10]],
            "ts": TS,
            "request_id": 11,
        },
        ResendBegin(from_seq=3, to_seq=30, messages=20, unavailable=[(3, 5), (9, 10)], ts=TS, request_id=11),
    ),
    ({"type": "resend_end", "from_seq": 3, "to_seq": 30, "ts": TS}, ResendEnd(from_seq=3, to_seq=30, ts=TS)),
    (
        {
            "type": "snapshot_taken",
            "path": "/var/lib/carbonx/snapshot-00000042.bin",
            "record_seq": 42,
            "event_seq": 1234,
            "ts": TS,
            "request_id": "s",
            "seq": 27,
        },
        SnapshotTaken(
            path="/var/lib/carbonx/snapshot-00000042.bin", record_seq=42, event_seq=1234, ts=TS, request_id="s", seq=27
        ),
    ),
    # primary auctions, to the auctioneer and bidders
    ({**OPENED, "request_id": "o", "seq": 28}, auction(OPENED, request_id="o", seq=28)),
    ({**CLEARED, "seq": 29}, auction(CLEARED, seq=29)),
    ({**CANCELLED, "seq": 30}, auction(CANCELLED, seq=30)),
    (
        {"type": "tas_priced", "instrument": "EUAZ27TAS", "contract": "EUAZ27", "order_id": 5, "client_order_id": "t2"}
        | {"side": "B", "quantity": 5, "price": 7228, "ts": TS, "seq": 12},
        TasPricedReport("EUAZ27TAS", "EUAZ27", 5, "t2", "B", 5, 7228, TS, seq=12),
    ),
    (
        {"type": "compliance_report", "event": "surrender", "year": 2026, "account": "mill", "instrument": "EUA"}
        | {"units": 1000, "tonnes": None, "obligation": None, "outstanding": 519_000, "credits_left": None}
        | {"penalty": None, "owed": None, "date": None, "ts": TS, "request_id": 3, "seq": 8},
        ComplianceReport(
            "surrender", 2026, "mill", "EUA", 1000, None, None, 519_000, None, None, None, None, TS, request_id=3, seq=8
        ),
    ),
    (
        {"type": "bidder_admission", "account": "bank", "admitted": True, "ts": TS, "request_id": 7, "seq": 12},
        BidderAdmission("bank", True, TS, request_id=7, seq=12),
    ),
    (
        {"type": "compliance_position", "rows": [COMPLIANCE_ROW], "more": False, "ts": TS, "request_id": 5, "seq": 11},
        CompliancePositionAnswer([ComplianceRow(**COMPLIANCE_ROW)], False, TS, request_id=5, seq=11),
    ),
    (
        {"type": "close_out_report", "account": "fund", "to_account": "bank"}
        | {"transfers": [{"instrument": "EUAZ27", "lots": -10, "price": 7340}], "ts": TS, "request_id": 2, "seq": 9},
        CloseOutReport("fund", "bank", [TransferEntry("EUAZ27", -10, 7340)], TS, request_id=2, seq=9),
    ),
    (
        {
            "type": "block_report",
            "block_id": "B-1",
            "instrument": "EUAZ27",
            "status": "traded",
            "counterparty": "bank",
            "side": "B",
            "quantity": 60,
            "price": 7250,
            "kind": "efp",
            "physical_price": 7190,
            "trade_id": 12,
            "fee": 21_000,
            "physical_units": -60_000,
            "ts": TS,
            "request_id": 4,
            "seq": 40,
        },
        BlockReport(
            block_id="B-1",
            instrument="EUAZ27",
            status="traded",
            counterparty="bank",
            side="B",
            quantity=60,
            price=7250,
            kind="efp",
            physical_price=7190,
            trade_id=12,
            fee=21_000,
            physical_units=-60_000,
            ts=TS,
            request_id=4,
            seq=40,
        ),
    ),
    (
        {"type": "block_report", "block_id": 7, "instrument": "EUAZ27", "status": "lapsed"}
        | {"counterparty": "bank", "code": None, "ts": TS, "seq": 41},
        BlockReport(block_id=7, instrument="EUAZ27", status="lapsed", counterparty="bank", code=None, ts=TS, seq=41),
    ),
    (
        {
            "type": "bid_report",
            "auction_id": "DE-1",
            "bid_id": 1,
            "instrument": "EUA",
            "status": "placed",
            "price": 7010,
            "volume": 500,
            "held": 3_505_000,
            "ts": TS,
            "request_id": 1,
            "seq": 31,
        },
        BidReport(
            auction_id="DE-1",
            bid_id=1,
            instrument="EUA",
            status="placed",
            price=7010,
            volume=500,
            held=3_505_000,
            ts=TS,
            request_id=1,
            seq=31,
        ),
    ),
    (
        {
            "type": "bid_report",
            "auction_id": "DE-1",
            "bid_id": "b",
            "instrument": "EUA",
            "status": "modified",
            "price": 7020,
            "volume": 1000,
            "held": 7_020_000,
            "ts": TS,
            "seq": 32,
        },
        BidReport(
            auction_id="DE-1",
            bid_id="b",
            instrument="EUA",
            status="modified",
            price=7020,
            volume=1000,
            held=7_020_000,
            ts=TS,
            seq=32,
        ),
    ),
    (
        {
            "type": "bid_report",
            "auction_id": "DE-1",
            "bid_id": "b",
            "instrument": "EUA",
            "status": "withdrawn",
            "released": 7_020_000,
            "ts": TS,
            "seq": 33,
        },
        BidReport(
            auction_id="DE-1", bid_id="b", instrument="EUA", status="withdrawn", released=7_020_000, ts=TS, seq=33
        ),
    ),
    (
        {
            "type": "bid_report",
            "auction_id": "DE-1",
            "bid_id": 1,
            "instrument": "EUA",
            "status": "allocated",
            "price": 7010,
            "volume": 500,
            "allocated": 500,
            "clearing_price": 7010,
            "amount": 3_505_000,
            "ts": TS,
            "seq": 34,
        },
        BidReport(
            auction_id="DE-1",
            bid_id=1,
            instrument="EUA",
            status="allocated",
            price=7010,
            volume=500,
            allocated=500,
            clearing_price=7010,
            amount=3_505_000,
            ts=TS,
            seq=34,
        ),
    ),
    (
        {
            "type": "bid_report",
            "auction_id": "DE-2",
            "bid_id": 2,
            "instrument": "EUA",
            "status": "auction_cancelled",
            "price": 6000,
            "volume": 1500,
            "allocated": 0,
            "clearing_price": None,
            "amount": 0,
            "ts": TS,
            "seq": 35,
        },
        BidReport(
            auction_id="DE-2",
            bid_id=2,
            instrument="EUA",
            status="auction_cancelled",
            price=6000,
            volume=1500,
            allocated=0,
            clearing_price=None,
            amount=0,
            ts=TS,
            seq=35,
        ),
    ),
    (
        {
            "type": "auction_status",
            "auction_id": "DE-1",
            "instrument": "EUA",
            "auctioneer": "de",
            "volume": 5000,
            "closes_at": CLOSES,
            "seed_hash": "ab" * 32,
            "status": "open",
            "own_bids": [{"bid_id": 1, "price": 7010, "volume": 500, "held": 3_505_000}],
            "bids": None,
            "result": None,
            "ts": TS,
            "request_id": 3,
            "seq": 36,
        },
        AuctionStatusAnswer(
            auction_id="DE-1",
            instrument="EUA",
            auctioneer="de",
            volume=5000,
            closes_at=CLOSES,
            seed_hash="ab" * 32,
            status="open",
            own_bids=[OwnBid(1, 7010, 500, 3_505_000)],
            bids=None,
            result=None,
            ts=TS,
            request_id=3,
            seq=36,
        ),
    ),
    (
        {
            "type": "auction_status",
            "auction_id": "DE-1",
            "instrument": "EUA",
            "auctioneer": "de",
            "volume": 5000,
            "closes_at": CLOSES,
            "seed_hash": "ab" * 32,
            "status": "cleared",
            "own_bids": [],
            "bids": 4,
            "result": {**CLEARED, "md_seq": 2},
            "ts": TS,
            "seq": 37,
        },
        AuctionStatusAnswer(
            auction_id="DE-1",
            instrument="EUA",
            auctioneer="de",
            volume=5000,
            closes_at=CLOSES,
            seed_hash="ab" * 32,
            status="cleared",
            own_bids=[],
            bids=4,
            result=auction(CLEARED, md_seq=2),
            ts=TS,
            seq=37,
        ),
    ),
    # market data
    (
        {
            "type": "book_snapshot",
            "instrument": "EUA",
            "md_seq": 12,
            "levels": 10,
            "bids": [[7020, 5, 2]],
            "asks": [[7030, 1, 1], [7040, 8, 3]],
            "ts": TS,
        },
        BookSnapshot(
            instrument="EUA", md_seq=12, levels=10, bids=[(7020, 5, 2)], asks=[(7030, 1, 1), (7040, 8, 3)], ts=TS
        ),
    ),
    (
        {"type": "book_snapshot", "instrument": "CER", "md_seq": 0, "levels": 10, "bids": [], "asks": [], "ts": 0},
        BookSnapshot(instrument="CER", md_seq=0, levels=10, bids=[], asks=[], ts=0),
    ),
    (
        {
            "type": "book_update",
            "instrument": "EUA",
            "md_seq": 13,
            "changes": [["B", 7020, 0, 0], ["S", 7030, 4, 2]],
            "ts": TS,
        },
        BookUpdate(instrument="EUA", md_seq=13, changes=[("B", 7020, 0, 0), ("S", 7030, 4, 2)], ts=TS),
    ),
    (
        {
            "type": "top_of_book",
            "instrument": "EUA",
            "md_seq": 4,
            "bid": None,
            "bid_quantity": 0,
            "ask": 7030,
            "ask_quantity": 4,
            "ts": TS,
        },
        TopOfBook(instrument="EUA", md_seq=4, bid=None, bid_quantity=0, ask=7030, ask_quantity=4, ts=TS),
    ),
    (
        {
            "type": "trade",
            "instrument": "EUA",
            "md_seq": 7,
            "trade_id": 9,
            "price": 7025,
            "quantity": 4,
            "aggressor_side": Side.SELL,
            "ts": TS,
        },
        PublicTrade(instrument="EUA", md_seq=7, trade_id=9, price=7025, quantity=4, aggressor_side=Side.SELL, ts=TS),
    ),
    (
        {
            "type": "trade",
            "instrument": "EUA",
            "md_seq": 8,
            "trade_id": 10,
            "price": 7020,
            "quantity": 12,
            "aggressor_side": None,
            "ts": TS,
        },
        PublicTrade(instrument="EUA", md_seq=8, trade_id=10, price=7020, quantity=12, aggressor_side=None, ts=TS),
    ),
    (
        {"type": "trade", "instrument": "EUAZ27", "md_seq": 9, "trade_id": 11, "price": 7230, "quantity": 50}
        | {"aggressor_side": None, "ts": TS, "block": "block"},
        PublicTrade(
            instrument="EUAZ27",
            md_seq=9,
            trade_id=11,
            price=7230,
            quantity=50,
            aggressor_side=None,
            ts=TS,
            block="block",
        ),
    ),
    (STATISTICS, Statistics(**without_type(STATISTICS))),
    (
        {**STATISTICS, "settlement_price": 7030, "trading_day_closed": True},
        Statistics(**{**without_type(STATISTICS), "settlement_price": 7030}, trading_day_closed=True),
    ),
    (STATUS, InstrumentStatus(**without_type(STATUS))),
    (
        {
            **STATUS,
            "status": "halted",
            "phase": TradingPhase.HALTED,
            "reason": "operator",
            "trigger_price": None,
            "reference_price": None,
        },
        InstrumentStatus(
            **{
                **without_type(STATUS),
                "status": "halted",
                "phase": TradingPhase.HALTED,
                "reason": "operator",
                "trigger_price": None,
                "reference_price": None,
            }
        ),
    ),
    ({**OPENED, "md_seq": 1}, auction(OPENED, md_seq=1)),
    ({**CANCELLED, "md_seq": 2}, auction(CANCELLED, md_seq=2)),
]
IDS = [f"{document['type']}-{number}" for number, (document, _) in enumerate(CASES)]


def body(frame: bytes) -> bytes:
    return frame[LENGTH_BYTES:]


def test_every_schema_has_a_case():
    assert {type(message) for _, message in CASES} == set(OUTBOUND)
    assert len(OUTBOUND) == len(set(OUTBOUND)) == 37


def test_schemas_are_tagged_by_type_and_list_their_fields_in_wire_order():
    for kind in OUTBOUND:
        config = kind.__struct_config__
        assert config.tag_field == "type" and isinstance(config.tag, str), kind
    for document, message in CASES:  # the order of the dict's keys is the order of the schema's fields
        fields = [name for name in type(message).__struct_fields__ if name in document]
        assert ["type", *fields] == list(document), document["type"]


@pytest.mark.parametrize("document, message", CASES, ids=IDS)
def test_same_bytes_as_the_dict(document, message):
    assert encode_frame(message) == encode_frame(document)


@pytest.mark.parametrize("document, message", CASES, ids=IDS)
def test_the_body_alone_is_the_frames(document, message):
    """encode_message (MQTT payloads) writes what encode_frame frames, the smallest map header included."""
    frame = encode_frame(message)
    assert encode_message(message) == body(frame) == encode_message(document)
    assert (body(frame)[0] == 0xDE) == (len(document) >= 16)  # 0x80-0x8f: a map of up to 15 entries


@pytest.mark.parametrize("document, message", CASES, ids=IDS)
def test_reference_msgpack_agrees(document, message):
    frame = encode_frame(message)
    assert msgpack.packb(document) == body(frame)
    assert msgpack.unpackb(body(frame)) == DictReader().feed(frame)[0]


@pytest.mark.parametrize("document, message", CASES, ids=IDS)
def test_round_trip_through_the_clients_reader(document, message):
    frame = encode_frame(message)
    [decoded] = DictReader().feed(frame)
    assert decoded == msgpack.unpackb(msgpack.packb(document))  # enum members arrive as their strings
    assert msgspec.convert(decoded, type(message)) == message
    assert encode_frame(decoded) == frame


def test_unset_fields_are_left_out_and_null_ones_sent():
    message = report("new", "new")
    assert message.trade_id is UNSET and message.seq is UNSET
    [decoded] = DictReader().feed(encode_frame(message))
    assert "trade_id" not in decoded and "seq" not in decoded and "request_id" not in decoded
    assert decoded["price"] == 7025 and decoded["stop_price"] is None and "stop_price" in decoded
    message.seq = 3  # numbered at delivery: written last
    assert list(DictReader().feed(encode_frame(message))[0])[-1] == "seq"
