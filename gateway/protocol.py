"""The wire protocol, sans I/O: bytes in, messages out; messages in, bytes out.

How this works
--------------
A frame is a 4-byte big-endian unsigned length, then that many bytes
holding exactly one MessagePack map (docs/PROTOCOL.md is the specification;
this module is its implementation, and nothing here touches a socket).

:class:`FrameReader` takes whatever bytes a read returned (one frame, many,
or a part of one) and hands back every complete frame's body. The length is
checked before the body is awaited: zero or more than the maximum frame
size is fatal, because a stream whose lengths cannot be trusted cannot be
resynchronised.

:class:`MessageReader` decodes the bodies. Each inbound message kind is a
``msgspec.Struct`` tagged by its ``type`` field, so one decoder call checks
the MessagePack, the message type, every field's type and that no unknown
field is present, and builds the message. Measured here
(benchmarks/codec_bench.py, 94-byte order frames in 64 KiB reads): about
1.9 million frames a second, twice ``msgpack.unpackb`` to a bare dict with
no checking at all, and as fast as msgpack's streaming unpacker on the
same maps without framing (which cannot honour a length prefix). A body that is not
MessagePack, or not a map, is fatal (:class:`Refusal` with ``fatal``); a
map with an unknown type or a bad field is refused with a code and the
session goes on (the frame boundary is intact, so the stream still is).

Outbound messages are plain dicts (their fields are listed in
docs/PROTOCOL.md); :func:`encode_frame` packs one into a frame. The client
(:mod:`gateway.client`) uses the same reader with ``schema=None``, which
decodes any map as a dict.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Annotated, ClassVar, Union

import msgspec

from exchange import RejectCode

PROTOCOL_VERSION = 1
LENGTH_BYTES = 4
DEFAULT_MAX_FRAME = 65_536  # bytes of body; the logon answer says the server's actual limit

ShortText = Annotated[str, msgspec.Meta(max_length=64)]  # ids echoed in answers: a reply stays a small frame
WireInt = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)]  # a signed 64-bit integer
RequestId = Union[WireInt, ShortText, None]  # noqa: UP007 (msgspec reads the annotation at run time)
Price = Union[int, str, None]  # noqa: UP007 integer ticks, or a decimal string in euros ("70.25")
ClientOrderId = Union[int, ShortText]  # noqa: UP007


class Inbound(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A message from a client. ``request_id`` is the client's own label, echoed in the answer."""

    request_id: RequestId = None
    admin: ClassVar[bool] = False  # operator accounts only
    auctioneer: ClassVar[bool] = False  # auctioneer accounts only (member states selling allowances)


# -- session ---------------------------------------------------------------------------------

class Logon(Inbound, tag="logon"):
    account: str
    secret: str
    heartbeat_interval: Union[int, None] = None  # noqa: UP007 seconds; None: the server's default
    cancel_on_disconnect: Union[bool, None] = None  # noqa: UP007 for this session; None: the account's setting


class Logout(Inbound, tag="logout"):
    pass


class Heartbeat(Inbound, tag="heartbeat"):
    pass


# -- orders ----------------------------------------------------------------------------------

class NewOrderRequest(Inbound, tag="new_order"):
    client_order_id: ClientOrderId
    instrument: str
    side: str  # "B" or "S"
    quantity: int  # lots
    price: Price = None  # required for LIMIT
    order_type: str = "LIMIT"
    time_in_force: str = "GTC"
    display_quantity: Union[int, None] = None  # noqa: UP007 iceberg: lots shown at a time
    stop_price: Price = None
    expire_date: Union[int, None] = None  # noqa: UP007 GTD: YYYYMMDD
    post_only: bool = False
    self_trade_prevention: Union[str, None] = None  # noqa: UP007 None: the account's default


class CancelRequest(Inbound, tag="cancel_order"):
    order_id: Union[int, None] = None  # noqa: UP007 exactly one of the two
    client_order_id: Union[ClientOrderId, None] = None  # noqa: UP007


class ReplaceRequest(Inbound, tag="replace_order"):
    order_id: Union[int, None] = None  # noqa: UP007
    client_order_id: Union[ClientOrderId, None] = None  # noqa: UP007
    quantity: Union[int, None] = None  # noqa: UP007 the new total, filled part included
    price: Price = None


class MassCancelRequest(Inbound, tag="mass_cancel"):
    instrument: Union[str, None] = None  # noqa: UP007 None: every instrument


class OrderStatusRequest(Inbound, tag="order_status"):
    order_id: Union[int, None] = None  # noqa: UP007
    client_order_id: Union[ClientOrderId, None] = None  # noqa: UP007


class BalancesRequest(Inbound, tag="balances"):
    pass


class BookRequest(Inbound, tag="book"):
    instrument: str
    levels: int = 10


class ResendRequest(Inbound, tag="resend"):
    from_seq: WireInt  # the first seq wanted again; the answer runs to the last seq used so far


# -- market data over the socket ------------------------------------------------------------

class SubscribeRequest(Inbound, tag="subscribe"):
    instruments: Union[list[str], None] = None  # noqa: UP007 None: every instrument
    channels: Union[list[str], None] = None  # noqa: UP007 None: every channel (book, top, trades, stats, status)


class UnsubscribeRequest(Inbound, tag="unsubscribe"):
    instruments: Union[list[str], None] = None  # noqa: UP007
    channels: Union[list[str], None] = None  # noqa: UP007


# -- operators -------------------------------------------------------------------------------

class KillSwitchRequest(Inbound, tag="kill_switch"):
    account: str
    admin: ClassVar[bool] = True


class ReleaseKillSwitchRequest(Inbound, tag="release_kill_switch"):
    account: str
    admin: ClassVar[bool] = True


class SnapshotRequest(Inbound, tag="snapshot"):
    admin: ClassVar[bool] = True


class SetTradingPhaseRequest(Inbound, tag="set_trading_phase"):
    instrument: str
    phase: str  # exchange.enums.TradingPhase, checked when the command is built (code 128)
    from_phase: Union[str, None] = None  # noqa: UP007 only from this phase (505 otherwise)
    admin: ClassVar[bool] = True


# -- EU ETS primary auctions -----------------------------------------------------------------------

class OpenAuctionRequest(Inbound, tag="open_auction"):
    auction_id: str
    instrument: str
    volume: int  # allowances, a multiple of 500
    window_seconds: int  # bids are taken for this long from now
    reserve_discount_bps: Union[int, None] = None  # noqa: UP007 None: the exchange's setting
    auctioneer: ClassVar[bool] = True


class SubmitBidRequest(Inbound, tag="submit_bid"):
    auction_id: str
    bid_id: ClientOrderId
    price: Union[int, str]  # noqa: UP007 ticks, or a decimal string in euros ("70.25")
    volume: int  # allowances, a multiple of 500


class ModifyBidRequest(Inbound, tag="modify_bid"):
    auction_id: str
    bid_id: ClientOrderId
    price: Price = None
    volume: Union[int, None] = None  # noqa: UP007


class WithdrawBidRequest(Inbound, tag="withdraw_bid"):
    auction_id: str
    bid_id: ClientOrderId


class AuctionStatusRequest(Inbound, tag="auction_status"):
    auction_id: str


INBOUND: tuple[type[Inbound], ...] = (
    Logon, Logout, Heartbeat, NewOrderRequest, CancelRequest, ReplaceRequest, MassCancelRequest,
    OrderStatusRequest, BalancesRequest, BookRequest, ResendRequest, SubscribeRequest, UnsubscribeRequest,
    KillSwitchRequest, ReleaseKillSwitchRequest, SnapshotRequest, SetTradingPhaseRequest, OpenAuctionRequest,
    SubmitBidRequest, ModifyBidRequest, WithdrawBidRequest, AuctionStatusRequest,
)
INBOUND_BY_TYPE: dict[str, type[Inbound]] = {kind.__struct_config__.tag: kind for kind in INBOUND}
MESSAGE_TYPES = frozenset(INBOUND_BY_TYPE)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An inbound frame that could not become a message: answered with ``code``; ``fatal`` closes the session.

    ``message_type``, ``request_id`` and ``client_order_id`` are echoed from
    the frame when it was a readable map, so the client can tell which
    request was refused.
    """

    code: RejectCode
    text: str
    fatal: bool
    field: str | None = None
    message_type: str | None = None
    request_id: object = None
    client_order_id: object = None


class FrameReader:
    """Splits a byte stream into frame bodies. After a bad length it yields nothing more (``failed``)."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._pending = b""  # the start of a frame whose end has not arrived
        self.failed: Refusal | None = None

    def feed(self, data: bytes) -> list[memoryview]:
        """Every complete frame body in the stream so far; a bad length sets ``failed`` and stops."""
        if self.failed is not None:
            return []
        if self._pending:
            data = self._pending + data
        view = memoryview(data)
        end = len(data)
        at = 0
        bodies = []
        max_frame = self.max_frame
        while end - at >= LENGTH_BYTES:
            length = int.from_bytes(view[at:at + LENGTH_BYTES], "big")
            if not 0 < length <= max_frame:
                self.failed = Refusal(RejectCode.FRAME_TOO_LARGE, f"{RejectCode.FRAME_TOO_LARGE.text}: length "
                                      f"{length}, maximum {max_frame}", fatal=True)
                self._pending = b""
                return bodies
            stop = at + LENGTH_BYTES + length
            if stop > end:
                break
            bodies.append(view[at + LENGTH_BYTES:stop])
            at = stop
        self._pending = bytes(view[at:]) if at < end else b""
        return bodies

    @property
    def buffered(self) -> int:
        """Bytes held of a frame not yet complete."""
        return len(self._pending)


_FIELD_IN_ERROR = re.compile(r"`\$\.([A-Za-z_][A-Za-z0-9_]*)|field `([A-Za-z_][A-Za-z0-9_]*)`")  # a known field
MAX_ECHO = 64  # longest string of a refused frame echoed in the answer
# What decoding a hostile body may raise besides a schema error: broken MessagePack, a str that is
# not UTF-8, nesting deeper than the decoder recurses.
_UNREADABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
_any_decoder = msgspec.msgpack.Decoder()
_inbound_decoder = msgspec.msgpack.Decoder(Union[INBOUND])  # type: ignore[valid-type]  # noqa: UP007


class MessageReader:
    """Bytes in, inbound messages (or refusals) out: a :class:`FrameReader` plus the message schema."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.frames = FrameReader(max_frame)
        self.closed = False  # a fatal refusal was returned: nothing more is read

    def feed(self, data: bytes) -> list[Inbound | Refusal]:
        if self.closed:
            return []
        out: list[Inbound | Refusal] = []
        decode = _inbound_decoder.decode
        for body in self.frames.feed(data):
            try:
                out.append(decode(body))
            except msgspec.ValidationError as error:
                refusal = _classify(body, error)
                out.append(refusal)
                if refusal.fatal:
                    break
            except _UNREADABLE as error:
                out.append(Refusal(RejectCode.MALFORMED_FRAME, f"{RejectCode.MALFORMED_FRAME.text}: "
                                   f"{_unreadable(error)}", fatal=True))
                break
        else:
            if self.frames.failed is not None:
                out.append(self.frames.failed)
        if out and type(out[-1]) is Refusal and out[-1].fatal:
            self.closed = True
        return out


def _classify(body: memoryview, error: msgspec.ValidationError) -> Refusal:
    """Why a well-formed MessagePack body is not a valid message."""
    try:  # the schema failed first; the body may still be broken MessagePack further on
        document = _any_decoder.decode(body)
    except _UNREADABLE as decode_error:
        return Refusal(RejectCode.MALFORMED_FRAME, f"{RejectCode.MALFORMED_FRAME.text}: {_unreadable(decode_error)}",
                       fatal=True)
    if type(document) is not dict:
        return Refusal(RejectCode.MALFORMED_FRAME, f"{RejectCode.MALFORMED_FRAME.text}: a "
                       f"{type(document).__name__}, not a map", fatal=True)
    message_type = _echo(document.get("type"), str)
    echo = {"message_type": message_type, "request_id": _echo(document.get("request_id"), (int, str)),
            "client_order_id": _echo(document.get("client_order_id"), (int, str))}
    kind = INBOUND_BY_TYPE.get(message_type)
    if kind is None:
        return Refusal(RejectCode.UNKNOWN_MESSAGE_TYPE, f"{RejectCode.UNKNOWN_MESSAGE_TYPE.text} (known: "
                       f"{', '.join(sorted(MESSAGE_TYPES))})", fatal=False, field="type", **echo)
    unknown = [key for key in document if key != "type" and key not in kind.__struct_fields__]
    if unknown:
        field = _echo(unknown[0], str)
        return Refusal(RejectCode.INVALID_FIELD, f"{RejectCode.INVALID_FIELD.text}: unknown field "
                       f"{field if field is not None else '(not a short string)'}", fatal=False, field=field,
                       **echo)
    match = _FIELD_IN_ERROR.search(str(error))
    field = (match.group(1) or match.group(2)) if match else None
    return Refusal(RejectCode.INVALID_FIELD, f"{RejectCode.INVALID_FIELD.text}: {error}", fatal=False, field=field,
                   **echo)


def _echo(value: object, kinds: type | tuple[type, ...]) -> object:
    """A value of the frame fit to be echoed: of the right kind, short (a reply must stay a small frame), and
    for an integer one that fits the signed 64 bits of the wire."""
    if not isinstance(value, kinds) or type(value) is bool:
        return None
    if type(value) is str and len(value) > MAX_ECHO or type(value) is int and not -(1 << 63) <= value < 1 << 63:
        return None
    return value


def _unreadable(error: Exception) -> str:
    if isinstance(error, UnicodeDecodeError):
        return "a string that is not UTF-8"
    if isinstance(error, RecursionError):
        return "nested too deeply"
    return str(error)


_encoder = msgspec.msgpack.Encoder()
_length = struct.Struct(">I").pack  # LENGTH_BYTES, big-endian: a C call, cheaper than int.to_bytes


def encode_frame(message: dict) -> bytes:
    """One outbound (or, for the client, inbound) message as a frame: length, then the MessagePack map."""
    body = _encoder.encode(message)
    return _length(len(body)) + body


class DictReader:
    """The client's side: frames in, dicts out (the server's messages are not checked against a schema)."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.frames = FrameReader(max_frame)

    def feed(self, data: bytes) -> list[dict]:
        try:
            messages = [_any_decoder.decode(body) for body in self.frames.feed(data)]
        except _UNREADABLE as error:
            raise ProtocolError(f"the server sent an unreadable frame: {_unreadable(error)}") from None
        if self.frames.failed is not None:
            raise ProtocolError(self.frames.failed.text)
        for message in messages:
            if type(message) is not dict:
                raise ProtocolError(f"the server sent a {type(message).__name__}, not a map")
        return messages


class ProtocolError(Exception):
    """The peer broke the protocol (the client's view of a server, or a test's)."""
