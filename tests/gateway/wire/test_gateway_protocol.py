"""The gateway's sans-I/O layer, without sockets: framing, message decoding, prices and execution reports.

What is tested here
-------------------
* Framing (:class:`gateway.wire.protocol.FrameReader`, :class:`MessageReader`):
  one frame, many in one feed, a stream cut at every byte boundary and in
  random chunkings (the same messages come out), the length prefix split
  across feeds, and the fatal lengths (zero, above ``max_frame``) after
  which nothing more is returned; a frame of exactly ``max_frame`` bytes is
  accepted. :class:`DictReader`, the client's side, in brief.
* Messages: every inbound message type round-trips, encoded both with
  :func:`encode_frame` and with the reference ``msgpack`` package, as a
  dict and as its schema (the outbound ones: tests/gateway/wire/test_wire_messages.py); the
  defaults; the echo of ``request_id``, ``message_type`` and
  ``client_order_id`` in refusals; unknown types, missing, unknown and
  wrongly typed fields, non-string keys and ext values (not fatal, the field
  named); bodies that are not one MessagePack map (fatal), including strs
  that are not UTF-8 and values nested thousands deep (refused, never raised).
* Hostile input (hypothesis): arbitrary bytes in arbitrary chunkings never
  raise and keep the reader's promises; arbitrary MessagePack maps in valid
  frames never raise, are never fatal, decode to exactly what they say when
  they are valid, and do not disturb the frames after them.
* :func:`gateway.pipeline.reports.price_in_cents`.
* :class:`gateway.pipeline.reports.OrderTracker` fed real engine events, scenario by
  scenario and differentially against the engine under random order flow.
* Every session code (700-799) is tested here or in tests/gateway/sessions/test_gateway_sessions.py.
"""

from __future__ import annotations

import datetime
import itertools
import re
import typing
from decimal import Decimal
from pathlib import Path

import msgpack
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scenario_helpers import make_engine, shipped_instruments

from exchange import (
    BlockAccount,
    CancelOrder,
    EndOfDay,
    InvalidCommand,
    MassCancel,
    NewOrder,
    OrderType,
    RejectCode,
    ReplaceOrder,
    Side,
    TimeInForce,
    Trade,
    parse_instruments,
)
from gateway.pipeline.reports import (
    CANCELED,
    EXPIRED,
    FILLED,
    NEW,
    PARTIALLY_FILLED,
    WAITING_TRIGGER,
    OrderTracker,
    price_in_cents,
)
from gateway.wire.protocol import (
    DEFAULT_MAX_FRAME,
    INBOUND,
    LENGTH_BYTES,
    MESSAGE_TYPES,
    AdmitBidderRequest,
    AuctionStatusRequest,
    BalancesRequest,
    BookRequest,
    CancelRequest,
    CloseComplianceYearRequest,
    CloseOutRequest,
    CompliancePositionRequest,
    DictReader,
    ExtendTradingDayRequest,
    FrameReader,
    Heartbeat,
    Inbound,
    KillSwitchRequest,
    Logon,
    Logout,
    MassCancelRequest,
    MessageReader,
    ModifyBidRequest,
    NewOrderRequest,
    OpenAuctionRequest,
    OpenOrdersRequest,
    OrderStatusRequest,
    PingRequest,
    PositionsRequest,
    ProtocolError,
    RecordAllocationRequest,
    RecordEmissionsRequest,
    Refusal,
    ReleaseKillSwitchRequest,
    ReplaceRequest,
    ReportBlockRequest,
    ResendRequest,
    SetTradingPhaseRequest,
    SkipSchedulePointRequest,
    SnapshotRequest,
    SubmitBidRequest,
    SubscribeRequest,
    SurrenderRequest,
    TradesRequest,
    UnsubscribeRequest,
    WithdrawBidRequest,
    encode_frame,
    encode_message,
)

# A 5-cent tick (as in tests/exchange/test_rejects.py), so that prices off the tick exist.
COARSE = parse_instruments(
    {
        "instruments": {
            "TST": {
                "lot_units": 1000,
                "tick_size_eur": "0.05",
                "min_lots": 2,
                "max_lots": 100,
                "min_price_eur": "0.05",
                "max_price_eur": "1000.00",
                "reference_price_eur": "70.00",
                "market_collar_eur": "3.50",
            }
        }
    }
)
EUA = shipped_instruments()["EUA"]
TST = COARSE["TST"]


def frame(body: bytes) -> bytes:
    """A frame around any body (for bodies encode_frame cannot make)."""
    return len(body).to_bytes(LENGTH_BYTES, "big") + body


def packb_frame(message: dict) -> bytes:
    """A frame built with the reference MessagePack implementation."""
    return frame(msgpack.packb(message, use_bin_type=True))


def cut(data: bytes, cuts: typing.Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates allowed: empty chunks are fed too)."""
    points = [0, *sorted(min(max(c, 0), len(data)) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


def feed_all(reader, chunks: typing.Iterable[bytes]) -> list:
    out = []
    for chunk in chunks:
        out += reader.feed(chunk)
    return out


def bodies(reader: FrameReader, chunks: typing.Iterable[bytes]) -> list[bytes]:
    return [bytes(body) for body in feed_all(reader, chunks)]


def fatal(item: object) -> bool:
    return type(item) is Refusal and item.fatal


HEARTBEAT = encode_frame({"type": "heartbeat", "request_id": 99})

# Every inbound message type with every field set (not to its default), and the message it must become.
FULL = [
    (
        {"type": "logon", "request_id": 1, "account": "alice", "secret": "s3cret", "heartbeat_interval": 5},
        Logon(request_id=1, account="alice", secret="s3cret", heartbeat_interval=5),
    ),
    ({"type": "logout", "request_id": "bye"}, Logout(request_id="bye")),
    ({"type": "heartbeat", "request_id": 3}, Heartbeat(request_id=3)),
    (
        {
            "type": "new_order",
            "request_id": "r-4",
            "client_order_id": "c-1",
            "instrument": "EUA",
            "side": "S",
            "quantity": 12,
            "price": "70.25",
            "order_type": "MARKET",
            "time_in_force": "GTD",
            "display_quantity": 3,
            "stop_price": 7000,
            "expire_date": 20240131,
            "post_only": True,
            "self_trade_prevention": "CANCEL_BOTH",
        },
        NewOrderRequest(
            request_id="r-4",
            client_order_id="c-1",
            instrument="EUA",
            side="S",
            quantity=12,
            price="70.25",
            order_type="MARKET",
            time_in_force="GTD",
            display_quantity=3,
            stop_price=7000,
            expire_date=20240131,
            post_only=True,
            self_trade_prevention="CANCEL_BOTH",
        ),
    ),
    ({"type": "cancel_order", "request_id": 5, "order_id": 17}, CancelRequest(request_id=5, order_id=17)),
    ({"type": "cancel_order", "client_order_id": 42}, CancelRequest(client_order_id=42)),
    (
        {
            "type": "replace_order",
            "request_id": 6,
            "order_id": 8,
            "client_order_id": "c-8",
            "quantity": 9,
            "price": 7010,
        },
        ReplaceRequest(request_id=6, order_id=8, client_order_id="c-8", quantity=9, price=7010),
    ),
    ({"type": "mass_cancel", "request_id": 7, "instrument": "CER"}, MassCancelRequest(request_id=7, instrument="CER")),
    (
        {"type": "order_status", "request_id": 8, "order_id": 3, "client_order_id": "x"},
        OrderStatusRequest(request_id=8, order_id=3, client_order_id="x"),
    ),
    ({"type": "balances", "request_id": 9}, BalancesRequest(request_id=9)),
    ({"type": "positions", "request_id": 10}, PositionsRequest(request_id=10)),
    (
        {"type": "book", "request_id": 10, "instrument": "ERU", "levels": 3},
        BookRequest(request_id=10, instrument="ERU", levels=3),
    ),
    ({"type": "kill_switch", "request_id": 11, "account": "bob"}, KillSwitchRequest(request_id=11, account="bob")),
    (
        {"type": "release_kill_switch", "request_id": 12, "account": "bob"},
        ReleaseKillSwitchRequest(request_id=12, account="bob"),
    ),
    (
        {"type": "subscribe", "request_id": 13, "instruments": ["EUA", "CER"], "channels": ["book", "trades"]},
        SubscribeRequest(request_id=13, instruments=["EUA", "CER"], channels=["book", "trades"]),
    ),
    (
        {"type": "unsubscribe", "request_id": 14, "instruments": ["EUA"], "channels": ["top"]},
        UnsubscribeRequest(request_id=14, instruments=["EUA"], channels=["top"]),
    ),
    ({"type": "resend", "request_id": 15, "from_seq": 40}, ResendRequest(request_id=15, from_seq=40)),
    ({"type": "snapshot", "request_id": 16}, SnapshotRequest(request_id=16)),
    (
        {"type": "extend_trading_day", "request_id": "x", "minutes": 30},
        ExtendTradingDayRequest(request_id="x", minutes=30),
    ),
    (
        {"type": "skip_schedule_point", "request_id": "y", "point": "opening_call:CER"},
        SkipSchedulePointRequest(request_id="y", point="opening_call:CER"),
    ),
    (
        {
            "type": "set_trading_phase",
            "request_id": 17,
            "instrument": "EUA",
            "phase": "halted",
            "from_phase": "continuous",
        },
        SetTradingPhaseRequest(request_id=17, instrument="EUA", phase="halted", from_phase="continuous"),
    ),
    (
        {
            "type": "open_auction",
            "request_id": 18,
            "auction_id": "DE-1",
            "instrument": "EUA",
            "volume": 500,
            "window_seconds": 60,
            "reserve_discount_bps": 1500,
        },
        OpenAuctionRequest(
            request_id=18, auction_id="DE-1", instrument="EUA", volume=500, window_seconds=60, reserve_discount_bps=1500
        ),
    ),
    (
        {
            "type": "submit_bid",
            "request_id": 19,
            "auction_id": "DE-1",
            "bid_id": "b-1",
            "price": "70.10",
            "volume": 1000,
        },
        SubmitBidRequest(request_id=19, auction_id="DE-1", bid_id="b-1", price="70.10", volume=1000),
    ),
    (
        {"type": "modify_bid", "request_id": 20, "auction_id": "DE-1", "bid_id": 7, "price": 7020, "volume": 500},
        ModifyBidRequest(request_id=20, auction_id="DE-1", bid_id=7, price=7020, volume=500),
    ),
    (
        {"type": "withdraw_bid", "request_id": 21, "auction_id": "DE-1", "bid_id": 7},
        WithdrawBidRequest(request_id=21, auction_id="DE-1", bid_id=7),
    ),
    (
        {"type": "auction_status", "request_id": 22, "auction_id": "DE-1"},
        AuctionStatusRequest(request_id=22, auction_id="DE-1"),
    ),
    (
        {"type": "open_orders", "request_id": 23, "instrument": "EUA", "after": 41},
        OpenOrdersRequest(request_id=23, instrument="EUA", after=41),
    ),
    (
        {"type": "trades", "request_id": 24, "instrument": "CER", "after": 7},
        TradesRequest(request_id=24, instrument="CER", after=7),
    ),
    ({"type": "ping", "request_id": 25}, PingRequest(request_id=25)),
    (
        {"type": "close_out", "request_id": 27, "account": "fund", "to_account": "bank"},
        CloseOutRequest(request_id=27, account="fund", to_account="bank"),
    ),
    (
        {"type": "record_allocation", "request_id": 28, "account": "mill", "year": 2026, "units": 400_000},
        RecordAllocationRequest(request_id=28, account="mill", year=2026, units=400_000),
    ),
    (
        {"type": "record_emissions", "request_id": 29, "account": "mill", "year": 2026, "tonnes": 520_000},
        RecordEmissionsRequest(request_id=29, account="mill", year=2026, tonnes=520_000),
    ),
    (
        {"type": "close_compliance_year", "request_id": 30, "year": 2026},
        CloseComplianceYearRequest(request_id=30, year=2026),
    ),
    (
        {"type": "surrender", "request_id": 31, "year": 2026, "instrument": "EUA", "units": 1000},
        SurrenderRequest(request_id=31, year=2026, instrument="EUA", units=1000),
    ),
    (
        {"type": "compliance_position", "request_id": 32, "year": 2026, "account": "mill", "after": "a"},
        CompliancePositionRequest(request_id=32, year=2026, account="mill", after="a"),
    ),
    (
        {"type": "admit_bidder", "request_id": 33, "account": "bank", "admitted": False},
        AdmitBidderRequest(request_id=33, account="bank", admitted=False),
    ),
    (
        {
            "type": "report_block",
            "request_id": 26,
            "block_id": "B-1",
            "counterparty": "bank",
            "instrument": "EUAZ27",
            "side": "S",
            "quantity": 50,
            "price": "72.30",
            "kind": "efp",
            "physical_price": 7190,
        },
        ReportBlockRequest(
            request_id=26,
            block_id="B-1",
            counterparty="bank",
            instrument="EUAZ27",
            side="S",
            quantity=50,
            price="72.30",
            kind="efp",
            physical_price=7190,
        ),
    ),
]

# Only the required fields: everything else takes its default.
MINIMAL = [
    ({"type": "logon", "account": "a", "secret": "s"}, Logon(account="a", secret="s")),
    ({"type": "logout"}, Logout()),
    ({"type": "heartbeat"}, Heartbeat()),
    (
        {"type": "new_order", "client_order_id": 1, "instrument": "EUA", "side": "B", "quantity": 5},
        NewOrderRequest(client_order_id=1, instrument="EUA", side="B", quantity=5),
    ),
    ({"type": "cancel_order"}, CancelRequest()),
    ({"type": "replace_order"}, ReplaceRequest()),
    ({"type": "mass_cancel"}, MassCancelRequest()),
    ({"type": "order_status"}, OrderStatusRequest()),
    ({"type": "balances"}, BalancesRequest()),
    ({"type": "positions"}, PositionsRequest()),
    ({"type": "book", "instrument": "EUA"}, BookRequest(instrument="EUA")),
    ({"type": "kill_switch", "account": "x"}, KillSwitchRequest(account="x")),
    ({"type": "release_kill_switch", "account": "x"}, ReleaseKillSwitchRequest(account="x")),
    ({"type": "subscribe"}, SubscribeRequest()),
    ({"type": "unsubscribe"}, UnsubscribeRequest()),
    ({"type": "resend", "from_seq": 1}, ResendRequest(from_seq=1)),
    ({"type": "snapshot"}, SnapshotRequest()),
    (
        {"type": "set_trading_phase", "instrument": "EUA", "phase": "closed"},
        SetTradingPhaseRequest(instrument="EUA", phase="closed"),
    ),
    ({"type": "extend_trading_day", "minutes": 15}, ExtendTradingDayRequest(minutes=15)),
    ({"type": "skip_schedule_point"}, SkipSchedulePointRequest()),
    (
        {"type": "open_auction", "auction_id": "A", "instrument": "EUA", "volume": 500, "window_seconds": 1},
        OpenAuctionRequest(auction_id="A", instrument="EUA", volume=500, window_seconds=1),
    ),
    (
        {"type": "submit_bid", "auction_id": "A", "bid_id": 1, "price": 7000, "volume": 500},
        SubmitBidRequest(auction_id="A", bid_id=1, price=7000, volume=500),
    ),
    ({"type": "modify_bid", "auction_id": "A", "bid_id": 1}, ModifyBidRequest(auction_id="A", bid_id=1)),
    ({"type": "withdraw_bid", "auction_id": "A", "bid_id": 1}, WithdrawBidRequest(auction_id="A", bid_id=1)),
    ({"type": "auction_status", "auction_id": "A"}, AuctionStatusRequest(auction_id="A")),
    ({"type": "open_orders"}, OpenOrdersRequest()),
    ({"type": "trades"}, TradesRequest()),
    ({"type": "ping"}, PingRequest()),
    ({"type": "close_out", "account": "a", "to_account": "b"}, CloseOutRequest(account="a", to_account="b")),
    (
        {"type": "record_allocation", "account": "a", "year": 2026, "units": 0},
        RecordAllocationRequest(account="a", year=2026, units=0),
    ),
    (
        {"type": "record_emissions", "account": "a", "year": 2026, "tonnes": 0},
        RecordEmissionsRequest(account="a", year=2026, tonnes=0),
    ),
    ({"type": "close_compliance_year", "year": 2026}, CloseComplianceYearRequest(year=2026)),
    (
        {"type": "surrender", "year": 2026, "instrument": "EUA", "units": 1},
        SurrenderRequest(year=2026, instrument="EUA", units=1),
    ),
    ({"type": "compliance_position"}, CompliancePositionRequest()),
    ({"type": "admit_bidder", "account": "bank"}, AdmitBidderRequest(account="bank")),
    (
        {"type": "report_block", "block_id": 1, "counterparty": "b", "instrument": "EUAZ27", "side": "B"}
        | {"quantity": 50, "price": 7230},
        ReportBlockRequest(block_id=1, counterparty="b", instrument="EUAZ27", side="B", quantity=50, price=7230),
    ),
]

STREAM_MESSAGES = [FULL[0], FULL[3], FULL[6], FULL[2]]
STREAM = b"".join(encode_frame(document) for document, _ in STREAM_MESSAGES)
STREAM_EXPECTED = [message for _, message in STREAM_MESSAGES]


# -- framing ---------------------------------------------------------------------------------


def test_one_frame():
    reader = FrameReader()
    assert bodies(reader, [frame(b"\x80")]) == [b"\x80"]
    assert reader.buffered == 0 and reader.failed is None


def test_many_frames_in_one_feed():
    reader = FrameReader()
    payloads = [b"\x80", b"\x81\xa1a\x01", b"x" * 300, b"\xc0"]
    assert bodies(reader, [b"".join(frame(p) for p in payloads)]) == payloads
    assert reader.buffered == 0
    assert MessageReader().feed(STREAM) == STREAM_EXPECTED


def test_frame_split_at_every_boundary():
    expected = [bytes(b) for b in FrameReader().feed(STREAM)]
    assert len(expected) == len(STREAM_MESSAGES)
    for at in range(len(STREAM) + 1):
        reader = FrameReader()
        assert bodies(reader, cut(STREAM, [at])) == expected, at
        assert reader.buffered == 0
        assert feed_all(MessageReader(), cut(STREAM, [at])) == STREAM_EXPECTED, at


def test_frame_split_at_every_pair_of_boundaries():
    first = encode_frame(FULL[3][0])
    stream = first + HEARTBEAT
    for a in range(len(stream) + 1):
        for b in range(a, len(stream) + 1):
            assert feed_all(MessageReader(), cut(stream, [a, b])) == [FULL[3][1], Heartbeat(request_id=99)], (a, b)


def test_frames_fed_byte_by_byte():
    reader = MessageReader()
    out = []
    for at in range(len(STREAM)):
        got = reader.feed(STREAM[at : at + 1])
        out += got
        assert reader.frames.buffered == len(STREAM[: at + 1]) - sum(
            len(encode_frame(document)) for document, _ in STREAM_MESSAGES[: len(out)]
        )
    assert out == STREAM_EXPECTED


@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_frames_in_random_chunkings(cuts):
    assert feed_all(MessageReader(), cut(STREAM, cuts)) == STREAM_EXPECTED
    reader = FrameReader()
    assert bodies(reader, cut(STREAM, cuts)) == [bytes(b) for b in FrameReader().feed(STREAM)]
    assert reader.buffered == 0


def test_length_prefix_split_across_feeds():
    body = b"\x81\xa1k\xa1v"
    data = frame(body)
    reader = FrameReader()
    assert reader.feed(data[:1]) == [] and reader.buffered == 1
    assert reader.feed(data[1:3]) == [] and reader.buffered == 3
    assert reader.feed(data[3:4]) == [] and reader.buffered == 4
    assert reader.feed(data[4:6]) == [] and reader.buffered == 6
    assert bodies(reader, [data[6:] + data[:2]]) == [body]
    assert reader.buffered == 2
    assert bodies(reader, [data[2:]]) == [body]
    assert reader.buffered == 0 and reader.failed is None


def test_empty_feeds_change_nothing():
    reader = MessageReader()
    assert reader.feed(b"") == []
    assert reader.feed(HEARTBEAT[:3]) == []
    assert reader.feed(b"") == []
    assert reader.feed(HEARTBEAT[3:]) == [Heartbeat(request_id=99)]


@pytest.mark.parametrize("length", [0, 65, 66, 1000, 0xFFFFFFFF])
def test_bad_length_is_fatal_and_ends_the_stream(length):
    prefix = length.to_bytes(LENGTH_BYTES, "big")
    reader = FrameReader(max_frame=64)
    good = frame(b"\x80")
    # The frames before the bad length come out; the length alone (no body yet) is enough to refuse.
    assert bodies(reader, [good + prefix]) == [b"\x80"]
    failed = reader.failed
    assert failed is not None
    assert failed.code is RejectCode.FRAME_TOO_LARGE and failed.fatal
    assert f"length {length}, maximum 64" in failed.text
    assert (failed.field, failed.message_type, failed.request_id) == (None, None, None)
    assert reader.feed(good) == [] and reader.feed(b"\x80" * 100) == []
    assert reader.buffered == 0


@pytest.mark.parametrize("length", [0, DEFAULT_MAX_FRAME + 1, 0xFFFFFFFF])
def test_bad_length_in_message_reader(length):
    reader = MessageReader()
    prefix = length.to_bytes(LENGTH_BYTES, "big")
    out = reader.feed(HEARTBEAT + prefix[:2])
    assert out == [Heartbeat(request_id=99)]
    out = reader.feed(prefix[2:] + HEARTBEAT)
    assert len(out) == 1
    assert out[0].code is RejectCode.FRAME_TOO_LARGE and out[0].fatal is True
    assert reader.closed
    assert reader.feed(HEARTBEAT) == [] and reader.feed(HEARTBEAT * 3) == []


def test_frame_of_exactly_max_frame_is_accepted():
    document = {"type": "logon", "account": "a", "secret": ""}
    base = len(msgspec.msgpack.encode(document))
    target = 300  # a str of 32..255 bytes costs 2 bytes of header
    document["secret"] = "x" * (target - base - 2)
    data = encode_frame(document)
    assert len(data) == LENGTH_BYTES + target
    assert MessageReader(max_frame=target).feed(data) == [Logon(account="a", secret=document["secret"])]
    refused = MessageReader(max_frame=target - 1).feed(data)
    assert [(r.code, r.fatal) for r in refused] == [(RejectCode.FRAME_TOO_LARGE, True)]
    reader = FrameReader(max_frame=1)
    assert bodies(reader, [frame(b"\xc0")]) == [b"\xc0"] and reader.failed is None


def test_default_max_frame_boundary():
    document = {"type": "logon", "account": "a", "secret": ""}
    base = len(msgspec.msgpack.encode(document))
    document["secret"] = "y" * (DEFAULT_MAX_FRAME - base - 2)  # str 8..16 bit: 3 bytes of header
    body = msgspec.msgpack.encode(document)
    document["secret"] = "y" * (len(document["secret"]) - (len(body) - DEFAULT_MAX_FRAME))
    data = encode_frame(document)
    assert len(data) == LENGTH_BYTES + DEFAULT_MAX_FRAME
    assert MessageReader().feed(data) == [Logon(account="a", secret=document["secret"])]
    document["secret"] += "y"
    assert [r.code for r in MessageReader().feed(encode_frame(document))] == [RejectCode.FRAME_TOO_LARGE]


def test_dict_reader():
    reader = DictReader()
    data = encode_frame({"type": "heartbeat", "ts": 5}) + encode_frame({"a": [1, 2]})
    assert reader.feed(data[:7]) == []
    assert reader.feed(data[7:]) == [{"type": "heartbeat", "ts": 5}, {"a": [1, 2]}]
    with pytest.raises(ProtocolError):
        DictReader().feed(frame(msgpack.packb([1, 2])))
    with pytest.raises(ProtocolError):
        DictReader().feed(b"\x00\x00\x00\x00")
    with pytest.raises(ProtocolError):
        DictReader(max_frame=4).feed(frame(b"\x85" + b"\x00" * 4))


# -- messages --------------------------------------------------------------------------------


def test_every_message_type_has_a_sample():
    assert {document["type"] for document, _ in FULL} == MESSAGE_TYPES
    assert {document["type"] for document, _ in MINIMAL} == MESSAGE_TYPES
    assert len(MESSAGE_TYPES) == len(INBOUND) == 36


@pytest.mark.parametrize("document, expected", FULL + MINIMAL, ids=lambda v: v.get("type") if type(v) is dict else "")
@pytest.mark.parametrize("encode", [encode_frame, packb_frame], ids=["msgspec", "msgpack"])
def test_message_round_trip(encode, document, expected):
    reader = MessageReader()
    out = reader.feed(encode(document))
    assert out == [expected]
    message = out[0]
    assert type(message) is type(expected)
    assert msgspec.structs.asdict(message) == msgspec.structs.asdict(expected)
    for key, value in document.items():
        if key != "type":
            assert getattr(message, key) == value and type(getattr(message, key)) is type(value), key
    assert not reader.closed


@pytest.mark.parametrize(
    "message", [message for _, message in FULL + MINIMAL], ids=lambda message: message.__struct_config__.tag
)
def test_schema_encoded_reads_back_as_itself(message):
    """The other way round: a message built from its schema, encoded, is read back as itself, and the
    reference msgpack package reads the same map from it (the outbound schemas: tests/gateway/wire/test_wire_messages.py)."""
    frame = encode_frame(message)
    assert MessageReader().feed(frame) == [message]
    assert msgpack.unpackb(frame[LENGTH_BYTES:]) == msgspec.to_builtins(message)


def test_defaults():
    order = MessageReader().feed(encode_frame(MINIMAL[3][0]))[0]
    assert (
        order.request_id,
        order.price,
        order.order_type,
        order.time_in_force,
        order.display_quantity,
        order.stop_price,
        order.expire_date,
        order.post_only,
        order.self_trade_prevention,
    ) == (None, None, "LIMIT", "GTC", None, None, None, False, None)
    assert MessageReader().feed(encode_frame({"type": "book", "instrument": "EUA"}))[0].levels == 10
    logon = MessageReader().feed(encode_frame({"type": "logon", "account": "a", "secret": "s"}))[0]
    assert logon.heartbeat_interval is None and logon.request_id is None
    cancel = MessageReader().feed(encode_frame({"type": "cancel_order"}))[0]
    assert (cancel.order_id, cancel.client_order_id) == (None, None)
    replace = MessageReader().feed(encode_frame({"type": "replace_order"}))[0]
    assert (replace.order_id, replace.client_order_id, replace.quantity, replace.price) == (None,) * 4
    # Explicit nils are the defaults too.
    assert MessageReader().feed(encode_frame({"type": "mass_cancel", "instrument": None, "request_id": None})) == [
        MassCancelRequest()
    ]


def test_operator_only_messages():
    assert {kind for kind in INBOUND if kind.role == "operator"} == {
        KillSwitchRequest,
        ReleaseKillSwitchRequest,
        SnapshotRequest,
        SetTradingPhaseRequest,
        ExtendTradingDayRequest,
        SkipSchedulePointRequest,
        CloseOutRequest,
        AdmitBidderRequest,
    }


def test_auctioneer_only_messages():
    assert {kind for kind in INBOUND if kind.role == "auctioneer"} == {OpenAuctionRequest}
    assert {kind.role for kind in INBOUND} <= {"", "operator", "auctioneer", "authority"}


def test_many_messages_in_one_frame_stream_keep_their_order():
    data = b"".join(encode_frame(document) for document, _ in FULL)
    assert MessageReader().feed(data) == [message for _, message in FULL]


@pytest.mark.parametrize("request_id", [7, "req-7", 0, -1, 2**63 - 1, -(2**63)])
def test_request_id_echoed_in_refusals(request_id):
    reader = MessageReader()
    unknown, invalid, good = reader.feed(
        encode_frame({"type": "no_such_thing", "request_id": request_id})
        + encode_frame(
            {
                "type": "new_order",
                "request_id": request_id,
                "client_order_id": "c9",
                "instrument": "EUA",
                "side": "B",
                "quantity": "5",
            }
        )
        + encode_frame({"type": "heartbeat", "request_id": request_id})
    )
    assert (unknown.code, unknown.request_id, unknown.message_type) == (
        RejectCode.UNKNOWN_MESSAGE_TYPE,
        request_id,
        "no_such_thing",
    )
    assert (invalid.code, invalid.request_id, invalid.message_type, invalid.client_order_id, invalid.field) == (
        RejectCode.INVALID_FIELD,
        request_id,
        "new_order",
        "c9",
        "quantity",
    )
    assert good == Heartbeat(request_id=request_id)


@pytest.mark.parametrize(
    "request_id, field",
    [(1.5, "request_id"), (True, "request_id"), ([1], "request_id"), (b"r", "request_id"), ({"a": 1}, "request_id")],
)
def test_bad_request_id_is_refused_and_not_echoed(request_id, field):
    (refusal,) = MessageReader().feed(packb_frame({"type": "heartbeat", "request_id": request_id}))
    assert (refusal.code, refusal.fatal, refusal.field, refusal.request_id, refusal.message_type) == (
        RejectCode.INVALID_FIELD,
        False,
        field,
        None,
        "heartbeat",
    )


@pytest.mark.parametrize(
    "document, message_type",
    [
        ({"type": "nope", "request_id": 5, "client_order_id": "x"}, "nope"),
        ({"type": "NEW_ORDER", "client_order_id": 1, "instrument": "EUA", "side": "B", "quantity": 1}, "NEW_ORDER"),
        ({"type": "", "request_id": 5}, ""),
        ({"request_id": 5}, None),
        ({}, None),
        ({"type": 5, "request_id": 5}, None),
        ({"type": None}, None),
        ({"type": b"logon", "account": "a", "secret": "s"}, None),
        ({"type": ["heartbeat"]}, None),
    ],
)
def test_unknown_message_type(document, message_type):
    reader = MessageReader()
    out = reader.feed(packb_frame(document) + HEARTBEAT)
    assert len(out) == 2
    refusal = out[0]
    assert type(refusal) is Refusal
    assert refusal.code is RejectCode.UNKNOWN_MESSAGE_TYPE
    assert refusal.fatal is False
    assert refusal.field == "type"
    assert refusal.message_type == message_type
    assert refusal.request_id == document.get("request_id")
    assert refusal.client_order_id == document.get("client_order_id")
    assert refusal.text.startswith(RejectCode.UNKNOWN_MESSAGE_TYPE.text)
    assert out[1] == Heartbeat(request_id=99)
    assert not reader.closed
    assert reader.feed(HEARTBEAT) == [Heartbeat(request_id=99)]


ORDER = {"type": "new_order", "client_order_id": "c1", "instrument": "EUA", "side": "B", "quantity": 5}


def without(document: dict, key: str) -> dict:
    return {k: v for k, v in document.items() if k != key}


def with_(document: dict, **fields) -> dict:
    return {**document, **fields}


INVALID = [
    # missing required fields
    ("missing quantity", without(ORDER, "quantity"), "quantity"),
    ("missing client_order_id", without(ORDER, "client_order_id"), "client_order_id"),
    ("missing instrument", without(ORDER, "instrument"), "instrument"),
    ("missing side", without(ORDER, "side"), "side"),
    ("missing secret", {"type": "logon", "account": "a"}, "secret"),
    ("missing account", {"type": "logon", "secret": "s"}, "account"),
    ("missing book instrument", {"type": "book"}, "instrument"),
    ("missing kill account", {"type": "kill_switch"}, "account"),
    ("missing release account", {"type": "release_kill_switch"}, "account"),
    ("missing phase", {"type": "set_trading_phase", "instrument": "EUA"}, "phase"),
    # unknown fields
    ("unknown field", with_(ORDER, colour="red"), "colour"),
    ("unknown field on heartbeat", {"type": "heartbeat", "ts": 1}, "ts"),
    ("class flag is not a field", {"type": "kill_switch", "account": "a", "admin": True}, "admin"),
    ("unknown field with underscore", {"type": "logout", "_x1": None}, "_x1"),
    ("unknown field with a dash", {"type": "logout", "bad-field": 1}, "bad-field"),
    # str for int
    ("str quantity", with_(ORDER, quantity="5"), "quantity"),
    ("str levels", {"type": "book", "instrument": "EUA", "levels": "10"}, "levels"),
    ("str order_id", {"type": "cancel_order", "order_id": "17"}, "order_id"),
    ("str expire_date", with_(ORDER, expire_date="20240131"), "expire_date"),
    (
        "str heartbeat_interval",
        {"type": "logon", "account": "a", "secret": "s", "heartbeat_interval": "5"},
        "heartbeat_interval",
    ),
    # bool for int
    ("bool quantity", with_(ORDER, quantity=True), "quantity"),
    ("bool levels", {"type": "book", "instrument": "EUA", "levels": False}, "levels"),
    ("bool price", with_(ORDER, price=True), "price"),
    ("bool client_order_id", with_(ORDER, client_order_id=True), "client_order_id"),
    (
        "bool heartbeat_interval",
        {"type": "logon", "account": "a", "secret": "s", "heartbeat_interval": True},
        "heartbeat_interval",
    ),
    # float for int
    ("float quantity", with_(ORDER, quantity=5.0), "quantity"),
    ("float price", with_(ORDER, price=70.25), "price"),
    ("float stop_price", with_(ORDER, stop_price=70.0), "stop_price"),
    ("float order_id", {"type": "replace_order", "order_id": 1.0}, "order_id"),
    ("float display_quantity", with_(ORDER, display_quantity=1.5), "display_quantity"),
    # bin for str
    ("bin instrument", with_(ORDER, instrument=b"EUA"), "instrument"),
    ("bin side", with_(ORDER, side=b"B"), "side"),
    ("bin account", {"type": "logon", "account": b"alice", "secret": "s"}, "account"),
    ("bin secret", {"type": "logon", "account": "alice", "secret": b"s"}, "secret"),
    ("bin price", with_(ORDER, price=b"70.25"), "price"),
    ("bin client_order_id", with_(ORDER, client_order_id=b"c1"), "client_order_id"),
    # other wrong types
    ("int for bool", with_(ORDER, post_only=1), "post_only"),
    ("str for bool", with_(ORDER, post_only="true"), "post_only"),
    ("nil for required str", with_(ORDER, instrument=None), "instrument"),
    ("nil for non-optional int", {"type": "book", "instrument": "EUA", "levels": None}, "levels"),
    ("array for str", with_(ORDER, side=["B"]), "side"),
    ("map for int", with_(ORDER, quantity={"lots": 5}), "quantity"),
    ("int for str", {"type": "mass_cancel", "instrument": 1}, "instrument"),
]


@pytest.mark.parametrize("encode", [encode_frame, packb_frame], ids=["msgspec", "msgpack"])
@pytest.mark.parametrize("document, field", [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_field(encode, document, field):
    reader = MessageReader()
    out = reader.feed(encode(document) + HEARTBEAT)
    assert len(out) == 2, out
    refusal = out[0]
    assert type(refusal) is Refusal
    assert refusal.code is RejectCode.INVALID_FIELD
    assert refusal.fatal is False
    assert refusal.field == field, refusal.text
    assert refusal.message_type == document["type"]
    assert refusal.text.startswith(RejectCode.INVALID_FIELD.text)
    coid = document.get("client_order_id")
    assert refusal.client_order_id == (coid if type(coid) in (int, str) else None)
    assert out[1] == Heartbeat(request_id=99)
    assert not reader.closed


def test_type_may_be_anywhere_in_the_map():
    document = {key: value for key, value in FULL[3][0].items() if key != "type"} | {"type": "new_order"}
    assert list(document)[-1] == "type"
    assert MessageReader().feed(packb_frame(document)) == [FULL[3][1]]
    assert MessageReader().feed(encode_frame(document)) == [FULL[3][1]]


@pytest.mark.parametrize(
    "document, field",
    [
        ({"type": "heartbeat", 1: "x"}, None),  # a key that is not a string: 707, no field to name
        ({"type": "heartbeat", b"request_id": 1}, None),  # a bin key
        ({"type": "logon", "account": msgpack.ExtType(1, b"x"), "secret": "s"}, "account"),  # ext is never accepted
        ({"type": "logon", "account": "a", "secret": "s", "extra": msgpack.ExtType(1, b"x")}, "extra"),
    ],
)
def test_non_string_keys_and_ext_values_are_invalid_fields(document, field):
    reader = MessageReader()
    refusal, heartbeat = reader.feed(packb_frame(document) + HEARTBEAT)
    assert (refusal.code, refusal.fatal, refusal.field, refusal.message_type) == (
        RejectCode.INVALID_FIELD,
        False,
        field,
        document["type"],
    )
    assert heartbeat == Heartbeat(request_id=99)


NOT_A_MAP = [
    ("never used byte", b"\xc1"),
    ("truncated map", b"\x82\xa4type\xa9heartbeat"),
    ("truncated str", b"\x81\xa4ty"),
    ("map of too many entries", b"\xdf\xff\xff\xff\xff"),
    ("array", msgpack.packb([{"type": "heartbeat"}])),
    ("empty array", b"\x90"),
    ("int", msgpack.packb(7)),
    ("negative int", msgpack.packb(-7)),
    ("str", msgpack.packb("heartbeat")),
    ("nil", b"\xc0"),
    ("true", b"\xc3"),
    ("float", msgpack.packb(1.5)),
    ("bin", msgpack.packb(b"\x80")),
    ("ext", msgpack.packb(msgpack.ExtType(5, b"abc"))),
    ("map then a byte", msgpack.packb({"type": "heartbeat"}) + b"\x00"),
    ("map then a map", msgpack.packb({"type": "heartbeat"}) * 2),
    ("map then garbage", msgpack.packb({"type": "heartbeat"}) + b"\xc1"),
    ("invalid map then a byte", msgpack.packb({"type": "nope"}) + b"\x00"),
    ("map with a bad field then a byte", msgpack.packb({"type": "book"}) + b"\xc0"),
    ("empty map then a byte", b"\x80\x80"),
]


@pytest.mark.parametrize("body", [case[1] for case in NOT_A_MAP], ids=[case[0] for case in NOT_A_MAP])
def test_body_not_exactly_one_map_is_fatal(body):
    reader = MessageReader()
    out = reader.feed(HEARTBEAT + frame(body) + HEARTBEAT)
    assert len(out) == 2, out
    assert out[0] == Heartbeat(request_id=99)
    refusal = out[1]
    assert type(refusal) is Refusal
    assert refusal.code is RejectCode.MALFORMED_FRAME
    assert refusal.fatal is True
    assert refusal.text.startswith(RejectCode.MALFORMED_FRAME.text)
    assert reader.closed
    assert reader.feed(HEARTBEAT) == []
    assert reader.feed(b"\x00\x00\x00\x00") == []  # not even a bad length is reported again


def test_nothing_after_a_fatal_refusal_in_later_feeds():
    reader = MessageReader()
    data = frame(b"\xc1") + HEARTBEAT
    out = reader.feed(data[:6])
    assert [(r.code, r.fatal) for r in out] == [(RejectCode.MALFORMED_FRAME, True)]
    assert reader.feed(data[6:]) == [] and reader.feed(HEARTBEAT) == []


BAD_UTF8 = [
    ("the whole body", b"\xa3\x00\x00\x80"),
    ("in an array", b"\x91\xa2\xff\xfe"),
    ("the type", b"\x81\xa4type\xa2\xff\xfe"),
    ("a known field", b"\x83\xa4type\xa5logon\xa7account\xa2\xff\xfe\xa6secret\xa1s"),
    ("a key", b"\x82\xa4type\xa9heartbeat\xa2\xff\xfe\xc0"),
    ("an unknown field's value", b"\x82\xa4type\xa9heartbeat\xa1x\xa2\xff\xfe"),
    ("after an unknown type", b"\x82\xa4type\xa4nope\xa1x\xa2\xff\xfe"),
]


@pytest.mark.parametrize("body", [case[1] for case in BAD_UTF8], ids=[case[0] for case in BAD_UTF8])
def test_str_that_is_not_utf8_is_malformed_not_raised(body):
    """A MessagePack str must hold UTF-8: one that does not makes the body malformed (fatal), not an exception."""
    reader = MessageReader()
    out = reader.feed(HEARTBEAT + frame(body) + HEARTBEAT)
    assert [(type(r), getattr(r, "code", None), getattr(r, "fatal", None)) for r in out] == [
        (Heartbeat, None, None),
        (Refusal, RejectCode.MALFORMED_FRAME, True),
    ]
    assert reader.closed and reader.feed(HEARTBEAT) == []


@pytest.mark.parametrize("depth", [200, 2_000, 20_000])
def test_deeply_nested_array_is_refused_not_raised(depth):
    """An array nested ``depth`` deep (a few kilobytes, well inside a frame) is not a map: fatal, no exception."""
    reader = MessageReader()
    out = reader.feed(frame(b"\x91" * depth + b"\xc0"))
    assert [(type(r), r.code, r.fatal) for r in out] == [(Refusal, RejectCode.MALFORMED_FRAME, True)]
    assert reader.feed(HEARTBEAT) == []


@pytest.mark.parametrize("depth", [200, 2_000, 20_000])
@pytest.mark.parametrize("where", ["known field", "unknown field before the type"])
def test_deeply_nested_value_in_a_map_is_refused_not_raised(depth, where):
    """A map whose value nests ``depth`` deep: refused (INVALID_FIELD naming it, or fatal MALFORMED_FRAME), no exception."""
    nested = b"\x91" * depth + b"\xc0"
    if where == "known field":
        body, field = b"\x83\xa4type\xa5logon\xa6secret\xa1s\xa7account" + nested, "account"
    else:
        body, field = b"\x82\xa5extra" + nested + b"\xa4type\xa9heartbeat", "extra"
    reader = MessageReader()
    out = reader.feed(frame(body) + HEARTBEAT)
    assert out and type(out[0]) is Refusal
    if out[0].fatal:
        assert [(r.code, r.fatal) for r in out] == [(RejectCode.MALFORMED_FRAME, True)]
    else:
        assert (out[0].code, out[0].field) == (RejectCode.INVALID_FIELD, field)
        assert out[1:] == [Heartbeat(request_id=99)]


# -- hostile input ---------------------------------------------------------------------------


def check_reader_output(items: list) -> None:
    """Every item is a message or a refusal; at most one fatal refusal, and it is last."""
    for item in items:
        assert isinstance(item, (Inbound, Refusal)), item
        if isinstance(item, Inbound):
            assert type(item) in INBOUND
        else:
            assert isinstance(item.code, RejectCode) and 700 <= item.code <= 799
            assert item.fatal == (item.code in (RejectCode.FRAME_TOO_LARGE, RejectCode.MALFORMED_FRAME))
    fatal_at = [i for i, item in enumerate(items) if fatal(item)]
    assert fatal_at in ([], [len(items) - 1]), items


leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=8), st.binary(max_size=8)
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)


def typed(annotation) -> st.SearchStrategy:
    """Values of a field's own type."""
    if annotation is int:
        return st.integers(-(2**63), 2**64 - 1)
    if annotation is str:
        return st.text(max_size=10)
    if typing.get_origin(annotation) is typing.Annotated:  # a short str, or an int within 64 bits signed
        base, meta = typing.get_args(annotation)[:2]
        if base is int:
            return st.integers(meta.ge, meta.le)
        return st.text(max_size=meta.max_length)
    if typing.get_origin(annotation) is list:
        return st.lists(typed(typing.get_args(annotation)[0]), max_size=3)
    if annotation is bool:
        return st.booleans()
    if annotation is type(None):
        return st.none()
    if typing.get_origin(annotation) is typing.Union:
        return st.one_of([typed(argument) for argument in typing.get_args(annotation)])
    raise AssertionError(f"no strategy for {annotation!r}")


@st.composite
def documents(draw) -> tuple[dict, type[Inbound] | None, bool]:
    """A map with str keys: (map, the message type it names, whether it is certainly valid)."""
    kind = draw(st.sampled_from([*INBOUND, None]))
    document: dict = {}
    valid = kind is not None
    if kind is None:
        how = draw(st.integers(0, 2))
        if how == 1:
            document["type"] = draw(st.text(max_size=12))
        elif how == 2:
            document["type"] = draw(values)
    else:
        document["type"] = kind.__struct_config__.tag
        for info in msgspec.structs.fields(kind):
            choice = draw(st.integers(0, 4))  # 0: left out, 1-3: of its type, 4: anything
            if choice == 0:
                valid = valid and not info.required
            elif choice < 4:
                document[info.encode_name] = draw(typed(info.type))
            else:
                document[info.encode_name] = draw(values)
                valid = False
    for key, value in draw(st.dictionaries(st.text(max_size=8), values, max_size=2)).items():
        if key not in document:
            document[key] = value
            valid = False
    return document, kind, valid


def check_decoded(document: dict, kind, valid: bool, item: object) -> None:
    """What one map in a valid frame must become."""
    assert not fatal(item), item
    tag = document.get("type")
    if isinstance(item, Inbound):
        assert kind is not None and type(item) is kind
        names = {info.encode_name for info in msgspec.structs.fields(kind)}
        assert set(document) - {"type"} <= names
        assert {info.encode_name for info in msgspec.structs.fields(kind) if info.required} <= set(document)
        for key, value in document.items():
            if key != "type":
                assert getattr(item, key) == value and type(getattr(item, key)) is type(value), key
        return
    assert type(item) is Refusal and not valid, (document, item)
    assert item.message_type == (tag if type(tag) is str else None)
    request_id = document.get("request_id")
    echoable = (
        type(request_id) is int and -(2**63) <= request_id < 2**63 or type(request_id) is str and len(request_id) <= 64
    )
    assert item.request_id == (request_id if echoable else None)
    if type(tag) is str and tag in MESSAGE_TYPES:
        assert item.code is RejectCode.INVALID_FIELD
    else:
        assert (item.code, item.field) == (RejectCode.UNKNOWN_MESSAGE_TYPE, "type")


garbage_segments = st.one_of(
    st.binary(max_size=40),  # anything at all
    st.binary(min_size=1, max_size=40).map(frame),  # a good length around anything
    documents().map(lambda case: encode_frame(case[0])),  # a good length around a map
    st.sampled_from([HEARTBEAT, b"\x00\x00\x00\x00", b"\x00\x01\x00\x00", b"\xff" * 4]),
)


@given(
    segments=st.lists(garbage_segments, max_size=6),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
    max_frame=st.sampled_from([1, 16, 100, DEFAULT_MAX_FRAME]),
)
def test_arbitrary_bytes_in_arbitrary_chunkings(segments, cuts, max_frame):
    data = b"".join(segments)
    whole = MessageReader(max_frame).feed(data)
    check_reader_output(whole)
    reader = MessageReader(max_frame)
    chunked = []
    for chunk in cut(data, cuts):
        closed_before = reader.closed
        got = reader.feed(chunk)
        if closed_before:
            assert got == []  # nothing after a fatal refusal
        assert reader.closed == (closed_before or any(fatal(item) for item in got))
        chunked += got
    check_reader_output(chunked)
    assert chunked == whole
    assert reader.closed == any(fatal(item) for item in whole)
    if reader.closed:
        assert reader.feed(HEARTBEAT) == []
    # The framing alone: the same bodies and the same failure in any chunking.
    frames, once = FrameReader(max_frame), FrameReader(max_frame)
    assert bodies(frames, cut(data, cuts)) == [bytes(b) for b in once.feed(data)]
    assert frames.failed == once.failed and frames.buffered == once.buffered
    if frames.failed is not None:
        assert frames.failed.code is RejectCode.FRAME_TOO_LARGE and frames.failed.fatal


@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=6))
def test_raw_random_bytes(data, cuts):
    reader = MessageReader(max_frame=64)
    out = feed_all(reader, cut(data, cuts))
    check_reader_output(out)
    assert out == MessageReader(max_frame=64).feed(data)


@given(
    cases=st.lists(documents(), min_size=1, max_size=5),
    packer=st.sampled_from([encode_frame, packb_frame]),
    cuts=st.lists(st.integers(0, 3000), max_size=5),
)
def test_arbitrary_maps_in_valid_frames(cases, packer, cuts):
    data = b"".join(packer(document) for document, _, _ in cases) + HEARTBEAT
    reader = MessageReader()
    out = feed_all(reader, cut(data, cuts))
    check_reader_output(out)
    assert len(out) == len(cases) + 1
    for (document, kind, valid), item in zip(cases, out[:-1], strict=True):
        check_decoded(document, kind, valid, item)
        if valid:
            assert isinstance(item, Inbound)
    assert out[-1] == Heartbeat(request_id=99)  # the frames after refused ones still decode
    assert not reader.closed


# -- price_in_cents --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "instrument, value, cents",
    [
        (EUA, 7025, 7025),
        (EUA, 1, 1),
        (TST, 1405, 7025),
        (TST, 1, 5),
        (None, 7025, 7025),
        (EUA, "70.25", 7025),
        (EUA, "70", 7000),
        (EUA, "70.2", 7020),
        (EUA, "70.20", 7020),
        (EUA, "0.01", 1),
        (TST, "70.25", 7025),
        (TST, "70", 7000),
        (TST, "70.2", 7020),
        (TST, "0.05", 5),
        (None, "70.25", 7025),
    ],
)
def test_price_in_cents(instrument, value, cents):
    assert price_in_cents(value, instrument, "price") == cents
    assert price_in_cents(value, instrument, "stop_price") == cents


def assert_price_refused(value: str, instrument, code: RejectCode) -> None:
    """As a price ``value`` is refused with ``code``; as a stop price always with INVALID_STOP_PRICE."""
    with pytest.raises(InvalidCommand) as raised:
        price_in_cents(value, instrument, "price")
    assert (raised.value.code, raised.value.field) == (code, "price")
    with pytest.raises(InvalidCommand) as raised:
        price_in_cents(value, instrument, "stop_price")
    assert (raised.value.code, raised.value.field) == (RejectCode.INVALID_STOP_PRICE, "stop_price")


def test_price_none_is_none():
    assert price_in_cents(None, EUA, "price") is None
    assert price_in_cents(None, TST, "stop_price") is None


@pytest.mark.parametrize("value", ["70.21", "70.24", "0.01", "70.26", "1000.99"])
def test_price_off_the_tick(value):
    assert_price_refused(value, TST, RejectCode.PRICE_NOT_ON_TICK)
    assert price_in_cents(value, EUA, "price") == int(Decimal(value) * 100)  # on the 1-cent tick


@pytest.mark.parametrize(
    "value",
    ["abc", "NaN", "nan", "sNaN", "inf", "-inf", "Infinity", "", " ", "70,25", "1e-3", "€70", "70.25.1", "0x10"],
)
@pytest.mark.parametrize("instrument", [EUA, TST, None], ids=["EUA", "TST", "none"])
def test_price_not_a_number(value, instrument):
    assert_price_refused(value, instrument, RejectCode.INVALID_PRICE)


@pytest.mark.parametrize("value", ["70.255", "70.001", "0.001", "70.2500001"])
@pytest.mark.parametrize("instrument", [EUA, TST, None], ids=["EUA", "TST", "none"])
def test_price_finer_than_a_cent_is_an_invalid_price(value, instrument):
    """docs/PROTOCOL.md section 3: a price string must be a whole number of cents, otherwise 106
    (stop_price: 114); "70.255" is refused with 106, not 107 (PRICE_NOT_ON_TICK is for whole cents
    between ticks)."""
    assert_price_refused(value, instrument, RejectCode.INVALID_PRICE)


@pytest.mark.parametrize("value", ["1e999999", "-1e999999", "9.99e999998", "1E+999999"])
def test_price_with_a_huge_exponent_is_invalid_not_an_exception(value):
    """A price string whose cents overflow the decimal context must be refused like any other bad price."""
    for field, code in (("price", RejectCode.INVALID_PRICE), ("stop_price", RejectCode.INVALID_STOP_PRICE)):
        with pytest.raises(InvalidCommand) as raised:
            price_in_cents(value, EUA, field)
        assert (raised.value.code, raised.value.field) == (code, field)


# -- OrderTracker ----------------------------------------------------------------------------


def as_sent(messages: list[tuple[str, msgspec.Struct]]) -> list[tuple[str, dict]]:
    """The tracker's messages as the accounts read them: their bytes decoded (by the reference msgpack package)."""
    return [(account, msgpack.unpackb(encode_message(message))) for account, message in messages]


class Desk:
    """An engine (no pre-trade risk) and a tracker fed with every event it produces."""

    def __init__(self) -> None:
        self.engine = make_engine(COARSE)
        self.tracker = OrderTracker(self.engine.instruments)
        self.clock = itertools.count(1_000)
        self.ts = 0

    def send(self, kind, **fields) -> list[tuple[str, dict]]:
        self.ts = next(self.clock)
        events = self.engine.handle(kind(ts=self.ts, **fields))
        return as_sent(self.tracker.messages(events))

    def order(
        self,
        account: str,
        clid,
        side: Side,
        quantity: int,
        price: int | None = None,
        *,
        instrument: str = "EUA",
        **fields,
    ) -> list[tuple[str, dict]]:
        return self.send(
            NewOrder,
            account=account,
            client_order_id=clid,
            instrument=instrument,
            side=side,
            quantity=quantity,
            price=price,
            **fields,
        )


def pick(message: dict, *keys: str) -> tuple:
    return tuple(message[key] for key in keys)


def test_resting_then_partial_then_full_fill():
    desk = Desk()
    messages = desk.order("alice", "s1", Side.SELL, 10, 7000)
    assert messages == [
        (
            "alice",
            {
                "type": "execution_report",
                "exec_type": "new",
                "order_status": "new",
                "order_id": 1,
                "client_order_id": "s1",
                "instrument": "EUA",
                "side": "S",
                "order_type": "LIMIT",
                "time_in_force": "GTC",
                "price": 7000,
                "stop_price": None,
                "display_quantity": None,
                "expire_date": None,
                "quantity": 10,
                "cum_quantity": 0,
                "leaves_quantity": 10,
                "avg_price": None,
                "ts": desk.ts,
            },
        )
    ]

    messages = desk.order("bob", "b1", Side.BUY, 4, 7005)
    ts = desk.ts
    assert [account for account, _ in messages] == ["bob", "bob", "alice"]
    assert pick(messages[0][1], "exec_type", "order_status", "order_id", "quantity", "price") == (
        "new",
        "new",
        2,
        4,
        7005,
    )
    assert messages[1][1] == {
        "type": "execution_report",
        "exec_type": "trade",
        "order_status": "filled",
        "order_id": 2,
        "client_order_id": "b1",
        "instrument": "EUA",
        "side": "B",
        "order_type": "LIMIT",
        "time_in_force": "GTC",
        "price": 7005,
        "stop_price": None,
        "display_quantity": None,
        "expire_date": None,
        "quantity": 4,
        "cum_quantity": 4,
        "leaves_quantity": 0,
        "avg_price": "70.0000",
        "ts": ts,
        "trade_id": 1,
        "last_price": 7000,
        "last_quantity": 4,
        "liquidity": "taker",
        "fee": 4 * 350,
        "aggressor_side": "B",
    }
    assert messages[2][1] == {
        "type": "execution_report",
        "exec_type": "trade",
        "order_status": "partially_filled",
        "order_id": 1,
        "client_order_id": "s1",
        "instrument": "EUA",
        "side": "S",
        "order_type": "LIMIT",
        "time_in_force": "GTC",
        "price": 7000,
        "stop_price": None,
        "display_quantity": None,
        "expire_date": None,
        "quantity": 10,
        "cum_quantity": 4,
        "leaves_quantity": 6,
        "avg_price": "70.0000",
        "ts": ts,
        "trade_id": 1,
        "last_price": 7000,
        "last_quantity": 4,
        "liquidity": "maker",
        "fee": 4 * 200,
        "aggressor_side": "B",
    }

    messages = desk.order("carol", "c1", Side.BUY, 6, 7010)
    assert [account for account, _ in messages] == ["carol", "carol", "alice"]
    assert pick(
        messages[2][1],
        "exec_type",
        "order_status",
        "cum_quantity",
        "leaves_quantity",
        "avg_price",
        "last_quantity",
        "liquidity",
        "fee",
        "trade_id",
    ) == ("trade", "filled", 10, 0, "70.0000", 6, "maker", 6 * 200, 2)
    assert pick(messages[1][1], "order_status", "cum_quantity", "leaves_quantity", "liquidity", "fee") == (
        "filled",
        6,
        0,
        "taker",
        6 * 350,
    )
    view = desk.tracker.find("alice", 1, None)
    assert (view.cum, view.value, view.status) == (10, 70_000, FILLED)
    assert desk.tracker.find("alice", None, "s1") is view
    assert desk.tracker.find("bob", 1, None) is None  # not bob's order
    assert desk.tracker.find("alice", None, "nope") is None


def test_open_order_entry_is_the_status_report_without_type_exec_type_and_ts():
    desk = Desk()
    desk.order("alice", "s1", Side.SELL, 10, 7000, display_quantity=2)
    desk.order("bob", "b1", Side.BUY, 4, 7005)
    view = desk.tracker.find("alice", 1, None)
    report = msgpack.unpackb(encode_message(view.report("status", desk.ts)))
    del report["type"], report["exec_type"], report["ts"]
    assert encode_frame(view.open_order()) == encode_frame(report)
    assert report["order_status"] == PARTIALLY_FILLED and report["leaves_quantity"] == 6


def test_average_price_over_several_levels():
    desk = Desk()
    desk.order("bob", "a1", Side.SELL, 3, 7001)
    desk.order("bob", "a2", Side.SELL, 4, 7002)
    messages = desk.order("alice", "b1", Side.BUY, 10, 7005)
    alice = [message for account, message in messages if account == "alice"]
    assert pick(alice[0], "exec_type", "order_status", "cum_quantity", "leaves_quantity", "avg_price") == (
        "new",
        NEW,
        0,
        10,
        None,
    )
    trade_reports = [
        pick(m, "order_status", "cum_quantity", "leaves_quantity", "avg_price", "last_price")
        for m in alice
        if m["exec_type"] == "trade"
    ]
    assert trade_reports == [(PARTIALLY_FILLED, 3, 7, "70.0100", 7001), (PARTIALLY_FILLED, 7, 3, "70.0157", 7002)]
    messages = desk.order("carol", "s1", Side.SELL, 3, 7000)  # trades at alice's price, 70.05
    (report,) = [message for account, message in messages if account == "alice"]
    assert pick(report, "order_status", "cum_quantity", "leaves_quantity", "avg_price", "liquidity") == (
        FILLED,
        10,
        0,
        "70.0260",
        "maker",
    )  # (49,011 + 21,015) / 1,000


def test_average_price_rounds_half_to_even():
    desk = Desk()
    desk.order("bob", "a1", Side.SELL, 7, 7000)
    desk.order("bob", "a2", Side.SELL, 1, 7001)
    messages = desk.order("alice", "b1", Side.BUY, 8, 7001)
    last = [message for account, message in messages if account == "alice"][-1]
    assert pick(last, "order_status", "cum_quantity", "avg_price") == (FILLED, 8, "70.0012")  # 70.00125
    desk = Desk()
    desk.order("bob", "a1", Side.SELL, 7, 7000)
    desk.order("bob", "a2", Side.SELL, 1, 7003)
    messages = desk.order("alice", "b1", Side.BUY, 8, 7003)
    last = [message for account, message in messages if account == "alice"][-1]
    assert last["avg_price"] == "70.0038"  # 70.00375


def test_cancel():
    desk = Desk()
    desk.order("alice", "s1", Side.SELL, 10, 7000)
    desk.order("bob", "b1", Side.BUY, 3, 7000)
    messages = desk.send(CancelOrder, account="alice", client_order_id="s1")
    assert messages == [
        (
            "alice",
            {
                "type": "execution_report",
                "exec_type": "canceled",
                "order_status": "canceled",
                "order_id": 1,
                "client_order_id": "s1",
                "instrument": "EUA",
                "side": "S",
                "order_type": "LIMIT",
                "time_in_force": "GTC",
                "price": 7000,
                "stop_price": None,
                "display_quantity": None,
                "expire_date": None,
                "quantity": 10,
                "cum_quantity": 3,
                "leaves_quantity": 0,
                "avg_price": "70.0000",
                "ts": desk.ts,
                "reason": "USER",
            },
        )
    ]
    assert desk.tracker.find("alice", 1, None).status == CANCELED
    # A cancel of an order that is gone is a request_rejected, with the code and its text.
    messages = desk.send(CancelOrder, account="alice", order_id=1)
    assert messages == [
        (
            "alice",
            {
                "type": "request_rejected",
                "request": "cancel",
                "order_id": 1,
                "client_order_id": None,
                "code": int(RejectCode.ORDER_CLOSED),
                "text": RejectCode.ORDER_CLOSED.text,
                "ts": desk.ts,
            },
        )
    ]


def test_replace():
    desk = Desk()
    desk.order("alice", "s1", Side.SELL, 10, 7000)
    desk.order("bob", "b1", Side.BUY, 4, 7000)
    messages = desk.send(ReplaceOrder, account="alice", order_id=1, quantity=8)
    assert len(messages) == 1 and messages[0][0] == "alice"
    report = messages[0][1]
    assert pick(
        report,
        "exec_type",
        "order_status",
        "quantity",
        "price",
        "cum_quantity",
        "leaves_quantity",
        "avg_price",
        "priority_kept",
        "ts",
    ) == ("replaced", PARTIALLY_FILLED, 8, 7000, 4, 4, "70.0000", True, desk.ts)
    messages = desk.send(ReplaceOrder, account="alice", client_order_id="s1", price=7010, quantity=12)
    assert pick(
        messages[0][1],
        "exec_type",
        "order_status",
        "quantity",
        "price",
        "cum_quantity",
        "leaves_quantity",
        "priority_kept",
    ) == ("replaced", PARTIALLY_FILLED, 12, 7010, 4, 8, False)
    messages = desk.order("carol", "c1", Side.BUY, 8, 7010)
    (alice,) = [message for account, message in messages if account == "alice"]
    assert pick(alice, "order_status", "cum_quantity", "leaves_quantity", "avg_price", "last_price") == (
        FILLED,
        12,
        0,
        "70.0667",
        7010,
    )  # (4 x 70.00 + 8 x 70.10) / 12 = 70.0666...
    messages = desk.send(ReplaceOrder, account="alice", order_id=1, quantity=20)
    assert [pick(m, "type", "request", "code") for _, m in messages] == [
        ("request_rejected", "replace", int(RejectCode.ORDER_CLOSED))
    ]


def test_ioc_remainder():
    desk = Desk()
    desk.order("bob", "a1", Side.SELL, 3, 7000)
    messages = desk.order("alice", "i1", Side.BUY, 5, 7000, time_in_force=TimeInForce.IOC)
    alice = [message for account, message in messages if account == "alice"]
    assert [
        pick(m, "exec_type", "order_status", "cum_quantity", "leaves_quantity", "time_in_force") for m in alice
    ] == [("new", NEW, 0, 5, "IOC"), ("trade", PARTIALLY_FILLED, 3, 2, "IOC"), ("canceled", CANCELED, 3, 0, "IOC")]
    assert alice[-1]["reason"] == "IOC_REMAINDER"
    assert alice[-1]["avg_price"] == "70.0000"


def test_market_order_remainder():
    desk = Desk()
    desk.order("bob", "a1", Side.SELL, 2, 7000)
    messages = desk.order("alice", "m1", Side.BUY, 5, None, order_type=OrderType.MARKET)
    alice = [message for account, message in messages if account == "alice"]
    assert [
        pick(m, "exec_type", "order_status", "price", "cum_quantity", "leaves_quantity", "order_type") for m in alice
    ] == [
        ("new", NEW, None, 0, 5, "MARKET"),
        ("trade", PARTIALLY_FILLED, None, 2, 3, "MARKET"),
        ("canceled", CANCELED, None, 2, 0, "MARKET"),
    ]
    assert alice[-1]["reason"] == "MARKET_REMAINDER"


@pytest.mark.parametrize(
    "fields, code, instrument",
    [
        ({"instrument": "XXX"}, RejectCode.UNKNOWN_INSTRUMENT, None),  # an unknown symbol is not echoed
        ({"quantity": 1001}, RejectCode.QUANTITY_ABOVE_MAXIMUM, "EUA"),
        ({"instrument": "TST", "price": 7001}, RejectCode.PRICE_NOT_ON_TICK, "TST"),
        ({"instrument": "TST", "quantity": 1}, RejectCode.QUANTITY_BELOW_MINIMUM, "TST"),
    ],
)
def test_rejected_order(fields, code, instrument):
    desk = Desk()
    arguments = {"instrument": "EUA", "quantity": 5, "price": 7000} | fields
    messages = desk.order("alice", "r1", Side.BUY, arguments.pop("quantity"), arguments.pop("price"), **arguments)
    assert messages == [
        (
            "alice",
            {
                "type": "execution_report",
                "exec_type": "rejected",
                "order_status": "rejected",
                "order_id": None,
                "client_order_id": "r1",
                "instrument": instrument,
                "cum_quantity": 0,
                "leaves_quantity": 0,
                "code": int(code),
                "text": code.text,
                "ts": desk.ts,
            },
        )
    ]
    assert desk.tracker.orders == {} and desk.tracker.by_client_id == {}


def test_duplicate_client_order_id_rejected_and_original_kept():
    desk = Desk()
    desk.order("alice", "x", Side.BUY, 5, 6900)
    messages = desk.order("alice", "x", Side.BUY, 7, 6800)
    assert [pick(m, "exec_type", "code") for _, m in messages] == [
        ("rejected", int(RejectCode.DUPLICATE_CLIENT_ORDER_ID))
    ]
    view = desk.tracker.find("alice", None, "x")
    assert (view.order_id, view.quantity, view.price) == (1, 5, 6900)


def test_stop_order_waits_then_triggers():
    desk = Desk()
    messages = desk.order("alice", "st", Side.BUY, 5, 7100, stop_price=7050)
    assert [pick(m, "exec_type", "order_status", "stop_price", "price", "leaves_quantity") for _, m in messages] == [
        ("new", WAITING_TRIGGER, 7050, 7100, 5)
    ]
    desk.order("bob", "a1", Side.SELL, 1, 7050)
    desk.order("bob", "a2", Side.SELL, 10, 7100)
    messages = desk.order("carol", "c1", Side.BUY, 1, 7050)
    alice = [message for account, message in messages if account == "alice"]
    assert [pick(m, "exec_type", "order_status", "cum_quantity", "leaves_quantity") for m in alice] == [
        ("triggered", NEW, 0, 5),
        ("trade", FILLED, 5, 0),
    ]
    assert alice[0]["trigger_price"] == 7050 and alice[0]["stop_price"] == 7050
    assert pick(alice[1], "avg_price", "last_price", "liquidity", "fee") == ("71.0000", 7100, "taker", 5 * 350)


def test_stop_order_on_a_coarse_tick_reports_ticks():
    desk = Desk()
    messages = desk.order("alice", "st", Side.SELL, 4, 6900, instrument="TST", stop_price=6950)
    assert pick(messages[0][1], "order_status", "price", "stop_price") == (WAITING_TRIGGER, 1380, 1390)
    desk.order("bob", "b1", Side.BUY, 2, 6950, instrument="TST")
    desk.order("bob", "b2", Side.BUY, 10, 6900, instrument="TST")
    messages = desk.order("carol", "c1", Side.SELL, 2, 6950, instrument="TST")
    alice = [message for account, message in messages if account == "alice"]
    assert [pick(m, "exec_type", "order_status", "cum_quantity") for m in alice] == [
        ("triggered", NEW, 0),
        ("trade", FILLED, 4),
    ]
    assert alice[0]["trigger_price"] == 1390  # 69.50 in 5-cent ticks
    assert pick(alice[1], "last_price", "price", "avg_price", "fee") == (1380, 1380, "69.0000", 0)


def test_end_of_day_expiry_and_forgetting_closed_orders():
    desk = Desk()
    desk.order("alice", "day", Side.SELL, 5, 7000, time_in_force=TimeInForce.DAY)
    desk.order("alice", "gtd", Side.SELL, 5, 7100, time_in_force=TimeInForce.GTD, expire_date=20240110)
    desk.order("alice", "gtc", Side.SELL, 5, 7200)
    desk.order("alice", "gone", Side.SELL, 1, 7300)
    desk.send(CancelOrder, account="alice", client_order_id="gone")
    desk.order("bob", "b1", Side.BUY, 2, 7000)
    messages = desk.send(EndOfDay, trading_date=20240105)
    assert messages == [
        (
            "alice",
            {
                "type": "execution_report",
                "exec_type": "expired",
                "order_status": "expired",
                "order_id": 1,
                "client_order_id": "day",
                "instrument": "EUA",
                "side": "S",
                "order_type": "LIMIT",
                "time_in_force": "DAY",
                "price": 7000,
                "stop_price": None,
                "display_quantity": None,
                "expire_date": None,
                "quantity": 5,
                "cum_quantity": 2,
                "leaves_quantity": 0,
                "avg_price": "70.0000",
                "ts": desk.ts,
            },
        )
    ]
    # Closed orders of the day are forgotten (bob's filled one, the cancelled and the expired one).
    assert sorted(desk.tracker.orders) == [2, 3] == sorted(desk.engine.open_orders)
    assert desk.tracker.find("alice", None, "day") is None and desk.tracker.find("alice", None, "gone") is None
    assert desk.tracker.find("alice", None, "gtc").order_id == 3
    messages = desk.send(EndOfDay, trading_date=20240110)
    assert [
        pick(m, "exec_type", "order_status", "order_id", "expire_date", "leaves_quantity") for _, m in messages
    ] == [("expired", EXPIRED, 2, 20240110, 0)]
    assert sorted(desk.tracker.orders) == [3]
    # A client order id of a forgotten order may be used again.
    messages = desk.order("alice", "day", Side.BUY, 1, 6000)
    assert pick(messages[0][1], "exec_type", "order_id") == ("new", 6)
    assert desk.tracker.find("alice", None, "day").order_id == 6


def test_mass_cancel_and_kill_switch_reports():
    desk = Desk()
    desk.order("alice", "a", Side.BUY, 1, 6900)
    desk.order("alice", "b", Side.BUY, 1, 6800)
    messages = desk.send(MassCancel, account="alice")
    assert [pick(m, "type", "order_status", "reason") for _, m in messages[:2]] == [
        ("execution_report", CANCELED, "MASS_CANCEL")
    ] * 2
    assert messages[2] == (
        "alice",
        {"type": "mass_cancel_report", "instrument": None, "canceled_orders": 2, "ts": desk.ts},
    )
    desk.order("alice", "c", Side.BUY, 1, 6900)
    messages = desk.send(BlockAccount, account="alice")
    assert [pick(m, "type", "order_status", "reason") for _, m in messages[:1]] == [
        ("execution_report", CANCELED, "KILL_SWITCH")
    ]
    assert messages[1] == (
        "alice",
        {"type": "kill_switch_report", "account": "alice", "blocked": True, "canceled_orders": 1, "ts": desk.ts},
    )


def trading_date(day: int) -> int:
    d = datetime.date(2024, 1, 1) + datetime.timedelta(days=day)
    return d.year * 10000 + d.month * 100 + d.day


new_orders = st.tuples(
    st.just("new"),
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(1, 8),
    st.integers(6996, 7004),
    st.sampled_from([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK]),
    st.sampled_from(["limit", "limit", "limit", "market", "stop", "iceberg"]),
)
OPERATION = {
    "new": new_orders,
    "cancel": st.tuples(st.just("cancel"), st.integers(0, 100)),
    "replace": st.tuples(
        st.just("replace"),
        st.integers(0, 100),
        st.one_of(st.none(), st.integers(1, 10)),
        st.one_of(st.none(), st.integers(6996, 7004)),
    ),
    "eod": st.tuples(st.just("eod")),
}
# Mostly new orders (so that there are trades), some cancels and replaces, an end of day now and then.
operations = st.lists(
    st.sampled_from(["new"] * 12 + ["cancel"] * 2 + ["replace"] * 2 + ["eod"]).flatmap(OPERATION.__getitem__),
    min_size=2,
    max_size=40,
)


STATUSES_AFTER = {  # the order statuses an execution report of each kind may carry
    "new": {NEW, WAITING_TRIGGER},
    "trade": {PARTIALLY_FILLED, FILLED},
    "canceled": {CANCELED},
    "expired": {EXPIRED},
    "triggered": {NEW, PARTIALLY_FILLED},
    "replaced": {NEW, PARTIALLY_FILLED, WAITING_TRIGGER},
}


def check_report(report: dict, cum: int, tracker: OrderTracker) -> None:
    """One execution report, just after the event that caused it: consistent in itself and with the tracker."""
    status, quantity = report["order_status"], report["quantity"]
    assert report["cum_quantity"] == cum
    assert status in STATUSES_AFTER[report["exec_type"]], report
    assert (status == FILLED) == (cum == quantity)
    if status in (NEW, WAITING_TRIGGER):
        assert cum == 0
    if status == PARTIALLY_FILLED:
        assert 0 < cum < quantity
    assert report["leaves_quantity"] == (0 if status in (FILLED, CANCELED, EXPIRED) else quantity - cum)
    view = tracker.orders[report["order_id"]]
    assert (view.status, view.cum, view.quantity) == (status, cum, quantity)


@given(operations)
def test_tracker_agrees_with_the_trades(plan):
    engine = make_engine()
    tracker = OrderTracker(engine.instruments)
    ts = itertools.count(1)
    accepted: list[tuple[int, str]] = []  # (order id, account)
    traded: dict[int, int] = {}
    value: dict[int, int] = {}
    last: dict[int, dict] = {}
    days = 0
    for step, operation in enumerate(plan):
        kind = operation[0]
        if kind == "new":
            _, account, side, quantity, price, tif, shape = operation
            fields = {"time_in_force": tif}
            if shape == "market":
                fields.update(
                    order_type=OrderType.MARKET, time_in_force=tif if tif is not TimeInForce.DAY else TimeInForce.GTC
                )
                price = None
            elif shape == "stop":
                fields.update(stop_price=price + (2 if side is Side.BUY else -2))
            elif shape == "iceberg" and tif in (TimeInForce.GTC, TimeInForce.DAY):
                fields.update(display_quantity=1)
            command = NewOrder(
                ts=next(ts),
                account=account,
                client_order_id=f"o{step}",
                instrument="EUA",
                side=side,
                quantity=quantity,
                price=price,
                **fields,
            )
        elif kind in ("cancel", "replace"):
            if not accepted:
                continue
            order_id, account = accepted[operation[1] % len(accepted)]
            if kind == "cancel":
                command = CancelOrder(ts=next(ts), account=account, order_id=order_id)
            else:
                quantity, price = operation[2], operation[3]
                if quantity is None and price is None:
                    quantity = 5
                command = ReplaceOrder(ts=next(ts), account=account, order_id=order_id, quantity=quantity, price=price)
        else:
            days += 1
            command = EndOfDay(ts=next(ts), trading_date=trading_date(days))
        events = engine.handle(command)
        messages = []
        for event in events:  # one event at a time: each report is checked against the trades before it
            if type(event) is Trade:
                for order_id in (event.taker_order_id, event.maker_order_id):
                    traded[order_id] = traded.get(order_id, 0) + event.quantity
                    value[order_id] = value.get(order_id, 0) + event.quantity * event.price
            caused = as_sent(tracker.messages([event]))
            for _, message in caused:
                if message["type"] == "execution_report" and message["order_id"] is not None:
                    check_report(message, traded.get(message["order_id"], 0), tracker)
            messages += caused
        for account, message in messages:
            if message["type"] != "execution_report":
                continue
            if message["exec_type"] == "rejected":
                assert message["order_id"] is None and message["order_status"] == "rejected"
                continue
            order_id = message["order_id"]
            if message["exec_type"] == "new":
                accepted.append((order_id, account))
            last[order_id] = message
        assert set(engine.open_orders) <= set(tracker.orders)

    waiting = {order.order_id for book in engine.books.values() for order in book.waiting_stops()}
    for order_id, _ in accepted:
        report = last[order_id]
        cum = traded.get(order_id, 0)
        status = report["order_status"]
        assert report["cum_quantity"] == cum
        assert report["avg_price"] == (
            None if cum == 0 else str((Decimal(value[order_id]) / (cum * 100)).quantize(Decimal("0.0001")))
        )
        order = engine.open_orders.get(order_id)
        if order is not None:
            assert status in (NEW, PARTIALLY_FILLED, WAITING_TRIGGER)
            assert (status == WAITING_TRIGGER) == (order_id in waiting)
            assert (report["quantity"], report["leaves_quantity"], cum) == (order.quantity, order.leaves, order.filled)
            view = tracker.orders[order_id]
            assert (view.cum, view.status, view.quantity) == (cum, status, order.quantity)
        else:
            assert status in (FILLED, CANCELED, EXPIRED)
            assert report["leaves_quantity"] == 0
        assert (status == FILLED) == (cum == report["quantity"])
        if status == PARTIALLY_FILLED:
            assert 0 < cum < report["quantity"]
        if status in (NEW, WAITING_TRIGGER):
            assert cum == 0
        if order_id in tracker.orders:
            assert tracker.orders[order_id].cum == cum
    if plan and plan[-1][0] == "eod":
        assert set(tracker.orders) == set(engine.open_orders)


# -- session codes ---------------------------------------------------------------------------


def test_every_session_code_is_tested():
    """Every 7xx code is named as RejectCode.<NAME> here or in the end-to-end session, TLS and recovery tests."""
    gateway_tests = Path(__file__).resolve().parents[1]
    text = "".join(
        (gateway_tests / name).read_text(encoding="utf-8")
        for name in (
            "wire/test_gateway_protocol.py",
            "sessions/test_gateway_sessions.py",
            "sessions/test_tls.py",
            "persistence/test_recovery.py",
        )
    )
    named = set(re.findall(r"RejectCode\.([A-Z_0-9]+)\b", text))
    session_codes = [code for code in RejectCode if 700 <= code <= 799]
    assert session_codes, "no session codes in the table"
    missing = [code.name for code in session_codes if code.name not in named]
    assert not missing, f"session codes no test names: {missing}"


# -- what a refusal echoes stays small ---------------------------------------------------------------


@pytest.mark.parametrize("key", ["a`b", "", "`", "bad-field", "x" * 64])
def test_unknown_key_of_any_spelling_is_named(key):
    [refusal] = MessageReader().feed(encode_frame({"type": "logout", key: 1}))
    assert (refusal.code, refusal.field, refusal.fatal) == (RejectCode.INVALID_FIELD, key, False)


def test_a_huge_unknown_key_is_refused_without_echoing_it():
    key = "k" * 40_000
    [refusal] = MessageReader().feed(encode_frame({"type": "logout", key: 1, "request_id": 7}))
    assert (refusal.code, refusal.field, refusal.request_id) == (RejectCode.INVALID_FIELD, None, 7)
    assert len(refusal.text) < 200


@pytest.mark.parametrize("field", ["request_id", "client_order_id"])
def test_ids_longer_than_64_characters_are_invalid_fields(field):
    message = {
        "type": "new_order",
        "client_order_id": "c1",
        "instrument": "EUA",
        "side": "B",
        "quantity": 1,
        field: "i" * 65,
    }
    [refusal] = MessageReader().feed(encode_frame(message))
    assert (refusal.code, refusal.field) == (RejectCode.INVALID_FIELD, field)
    assert refusal.client_order_id == (None if field == "client_order_id" else "c1")
    [accepted] = MessageReader().feed(encode_frame({**message, field: "i" * 64}))
    assert getattr(accepted, field) == "i" * 64


def test_an_unknown_type_is_not_echoed_when_long():
    [refusal] = MessageReader().feed(encode_frame({"type": "t" * 1000, "request_id": "r"}))
    assert (refusal.code, refusal.message_type, refusal.request_id) == (RejectCode.UNKNOWN_MESSAGE_TYPE, None, "r")
    assert "t" * 100 not in refusal.text


@pytest.mark.parametrize("request_id", [2**63, 2**64 - 1])  # MessagePack holds no more
def test_request_id_beyond_64_bits_signed_is_an_invalid_field_and_not_echoed(request_id):
    [refusal] = MessageReader().feed(encode_frame({"type": "heartbeat", "request_id": request_id}))
    assert (refusal.code, refusal.field, refusal.request_id) == (RejectCode.INVALID_FIELD, "request_id", None)


def test_tracker_forgets_the_oldest_closed_orders_past_its_bound():
    engine = make_engine()
    tracker = OrderTracker(engine.instruments, max_closed=2)
    for n in range(3):  # three orders, each rests and is cancelled
        tracker.messages(
            engine.handle(
                NewOrder(
                    ts=n, account="a", client_order_id=f"c{n}", instrument="EUA", side=Side.BUY, quantity=1, price=6900
                )
            )
        )
        tracker.messages(engine.handle(CancelOrder(ts=n, account="a", client_order_id=f"c{n}")))
    open_one = engine.handle(
        NewOrder(ts=9, account="a", client_order_id="open", instrument="EUA", side=Side.BUY, quantity=1, price=6900)
    )
    tracker.messages(open_one)
    assert tracker.find("a", None, "c0") is None and tracker.find("a", 1, None) is None  # the oldest closed
    assert [tracker.find("a", None, clid).status for clid in ("c1", "c2", "open")] == [CANCELED, CANCELED, NEW]
    assert len(tracker.orders) == 3
