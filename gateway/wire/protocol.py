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

Outbound messages are schemas too, in :mod:`gateway.wire.messages` (their
fields are listed in docs/PROTOCOL.md and docs/MARKET_DATA.md);
:func:`encode_frame` packs one into a frame (and a dict, as the client
sends its requests). The client (:mod:`gateway.client`) reads the server's
frames with :class:`DictReader`, which decodes any map as a dict.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Union, get_args

import msgspec
import msgspec.inspect

from exchange import RejectCode
from gateway.wire.malformed import malformation, may_nest_deeply, unreadable

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
    # The account kind the message is for alone (gateway.config ACCOUNT_KINDS): "operator" (the exchange's
    # staff), "auctioneer" (a member state selling allowances), "authority" (a competent authority of the EU
    # ETS); "" anyone. Other accounts are refused with 712.
    role: ClassVar[str] = ""
    market_data: ClassVar[bool] = False  # allowed in a market-data session too
    cost: ClassVar[int] = 1  # throttle tokens it takes: a query that answers a page of 100 entries takes more


# -- session ---------------------------------------------------------------------------------


class Logon(Inbound, tag="logon", frozen=True):
    account: str
    secret: str
    heartbeat_interval: Union[int, None] = None  # noqa: UP007 seconds; None: the server's default
    cancel_on_disconnect: Union[bool, None] = None  # noqa: UP007 for this session; None: the account's setting
    market_data_only: bool = False  # a session that watches: no orders, no numbered messages, no cancel-on-disconnect


class Logout(Inbound, tag="logout", frozen=True):
    market_data: ClassVar[bool] = True


class Heartbeat(Inbound, tag="heartbeat", frozen=True):
    market_data: ClassVar[bool] = True


# -- orders ----------------------------------------------------------------------------------


class NewOrderRequest(Inbound, tag="new_order", frozen=True):
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


class CancelRequest(Inbound, tag="cancel_order", frozen=True):
    order_id: Union[int, None] = None  # noqa: UP007 exactly one of the two
    client_order_id: Union[ClientOrderId, None] = None  # noqa: UP007


class ReplaceRequest(Inbound, tag="replace_order", frozen=True):
    order_id: Union[int, None] = None  # noqa: UP007
    client_order_id: Union[ClientOrderId, None] = None  # noqa: UP007
    quantity: Union[int, None] = None  # noqa: UP007 the new total, filled part included
    price: Price = None


class MassCancelRequest(Inbound, tag="mass_cancel", frozen=True):
    instrument: Union[str, None] = None  # noqa: UP007 None: every instrument


class OrderStatusRequest(Inbound, tag="order_status", frozen=True):
    order_id: Union[int, None] = None  # noqa: UP007
    client_order_id: Union[ClientOrderId, None] = None  # noqa: UP007


class BalancesRequest(Inbound, tag="balances", frozen=True):
    pass


class PositionsRequest(Inbound, tag="positions", frozen=True):
    pass


class OpenOrdersRequest(Inbound, tag="open_orders", frozen=True):
    cost: ClassVar[int] = 10
    instrument: Union[str, None] = None  # noqa: UP007 None: every instrument
    after: Union[int, None] = None  # noqa: UP007 only orders with a higher order id (the next page)


class TradesRequest(Inbound, tag="trades", frozen=True):
    cost: ClassVar[int] = 10
    instrument: Union[str, None] = None  # noqa: UP007 None: every instrument
    after: Union[int, None] = None  # noqa: UP007 only fills with a higher trade id (the next page)


class PingRequest(Inbound, tag="ping", frozen=True):
    """Answered with ``pong`` after everything the session sent before it: the end of earlier answers."""

    market_data: ClassVar[bool] = True


class BookRequest(Inbound, tag="book", frozen=True):
    market_data: ClassVar[bool] = True
    instrument: str
    levels: int = 10


class ResendRequest(Inbound, tag="resend", frozen=True):
    from_seq: WireInt  # the first seq wanted again; the answer runs to the last seq used so far


# -- market data over the socket ------------------------------------------------------------


class SubscribeRequest(Inbound, tag="subscribe", frozen=True):
    market_data: ClassVar[bool] = True
    instruments: Union[list[str], None] = None  # noqa: UP007 None: every instrument
    channels: Union[list[str], None] = None  # noqa: UP007 None: every channel (book, top, trades, stats, status)


class UnsubscribeRequest(Inbound, tag="unsubscribe", frozen=True):
    market_data: ClassVar[bool] = True
    instruments: Union[list[str], None] = None  # noqa: UP007
    channels: Union[list[str], None] = None  # noqa: UP007


# -- operators -------------------------------------------------------------------------------


class KillSwitchRequest(Inbound, tag="kill_switch", frozen=True):
    account: str
    role: ClassVar[str] = "operator"


class CloseOutRequest(Inbound, tag="close_out", frozen=True):
    """Close out an account on a margin call: blocked, its orders cancelled, its futures positions to
    ``to_account`` at their last settlement prices (docs/FUTURES.md)."""

    account: str
    to_account: str
    role: ClassVar[str] = "operator"


class ReleaseKillSwitchRequest(Inbound, tag="release_kill_switch", frozen=True):
    account: str
    role: ClassVar[str] = "operator"


class SnapshotRequest(Inbound, tag="snapshot", frozen=True):
    role: ClassVar[str] = "operator"


class SetTradingPhaseRequest(Inbound, tag="set_trading_phase", frozen=True):
    instrument: str
    phase: str  # exchange.enums.TradingPhase, checked when the command is built (code 128)
    from_phase: Union[str, None] = None  # noqa: UP007 only from this phase (505 otherwise)
    role: ClassVar[str] = "operator"


class ExtendTradingDayRequest(Inbound, tag="extend_trading_day", frozen=True):
    minutes: int  # the open trading day's closing points move this much later (1 to 1440)
    role: ClassVar[str] = "operator"


class SkipSchedulePointRequest(Inbound, tag="skip_schedule_point", frozen=True):
    point: Union[str, None] = None  # noqa: UP007 the open day's point to pass over (e.g. "opening_call:CER"); nil: the next
    role: ClassVar[str] = "operator"


# -- EU ETS primary auctions -----------------------------------------------------------------------


class OpenAuctionRequest(Inbound, tag="open_auction", frozen=True):
    auction_id: str
    instrument: str
    volume: int  # allowances, a multiple of 500
    window_seconds: int  # bids are taken for this long from now
    reserve_discount_bps: Union[int, None] = None  # noqa: UP007 None: the exchange's setting
    role: ClassVar[str] = "auctioneer"


class AdmitBidderRequest(Inbound, tag="admit_bidder", frozen=True):
    account: str
    admitted: bool = True  # False: the admission is withdrawn (its bids already in stay until the clearing)
    role: ClassVar[str] = "operator"


class SubmitBidRequest(Inbound, tag="submit_bid", frozen=True):
    auction_id: str
    bid_id: ClientOrderId
    price: Union[int, str]  # noqa: UP007 ticks, or a decimal string in euros ("70.25")
    volume: int  # allowances, a multiple of 500


class ModifyBidRequest(Inbound, tag="modify_bid", frozen=True):
    auction_id: str
    bid_id: ClientOrderId
    price: Price = None
    volume: Union[int, None] = None  # noqa: UP007


class WithdrawBidRequest(Inbound, tag="withdraw_bid", frozen=True):
    auction_id: str
    bid_id: ClientOrderId


class AuctionStatusRequest(Inbound, tag="auction_status", frozen=True):
    auction_id: str


# -- futures off the book (docs/FUTURES.md) ---------------------------------------------------------------------


class ReportBlockRequest(Inbound, tag="report_block", frozen=True):
    """One side of a block trade or EFP agreed with ``counterparty``: it trades when the other side reports the
    same ``block_id`` with the same terms."""

    block_id: ClientOrderId
    counterparty: str
    instrument: str  # a listed futures contract
    side: str  # "B" or "S": this account's side of the futures
    quantity: int  # lots
    price: Union[int, str]  # noqa: UP007 ticks, or a decimal string in euros ("70.25")
    kind: str = "block"  # or "efp"
    physical_price: Price = None  # an EFP's price of the underlying: its ticks, or euros


# -- EU ETS compliance (docs/COMPLIANCE.md): the authority records and closes, installations surrender ----------


class RecordAllocationRequest(Inbound, tag="record_allocation", frozen=True):
    account: str  # the installation
    year: int
    units: int  # its free allocation for the year
    role: ClassVar[str] = "authority"


class RecordEmissionsRequest(Inbound, tag="record_emissions", frozen=True):
    account: str  # the installation
    year: int
    tonnes: int  # its verified emissions for the year
    role: ClassVar[str] = "authority"


class CloseComplianceYearRequest(Inbound, tag="close_compliance_year", frozen=True):
    year: int  # its deadline is today (the exchange's date): shortfalls are charged and carried over
    role: ClassVar[str] = "authority"


class SurrenderRequest(Inbound, tag="surrender", frozen=True):
    year: int
    instrument: str
    units: int  # units (tonnes), not lots


class CompliancePositionRequest(Inbound, tag="compliance_position", frozen=True):
    cost: ClassVar[int] = 10  # (every installation's rows of a year come 100 to an answer)
    year: Union[int, None] = None  # noqa: UP007 None: every year with a record
    account: Union[str, None] = None  # noqa: UP007 None: the session's own; an authority: any, or every one
    after: Union[str, None] = None  # noqa: UP007 every installation's: only those whose id sorts after this


InboundMessage = (
    Logon
    | Logout
    | Heartbeat
    | NewOrderRequest
    | CancelRequest
    | ReplaceRequest
    | MassCancelRequest
    | OrderStatusRequest
    | BalancesRequest
    | PositionsRequest
    | BookRequest
    | ResendRequest
    | SubscribeRequest
    | UnsubscribeRequest
    | KillSwitchRequest
    | ReleaseKillSwitchRequest
    | SnapshotRequest
    | SetTradingPhaseRequest
    | ExtendTradingDayRequest
    | SkipSchedulePointRequest
    | OpenAuctionRequest
    | SubmitBidRequest
    | ModifyBidRequest
    | WithdrawBidRequest
    | AuctionStatusRequest
    | ReportBlockRequest
    | CloseOutRequest
    | OpenOrdersRequest
    | TradesRequest
    | PingRequest
    | RecordAllocationRequest
    | RecordEmissionsRequest
    | CloseComplianceYearRequest
    | SurrenderRequest
    | CompliancePositionRequest
    | AdmitBidderRequest
)
INBOUND: tuple[type[Inbound], ...] = get_args(InboundMessage)


def type_tag(kind: type[msgspec.Struct]) -> str:
    """The ``type`` a message schema is tagged with."""
    tag = kind.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{kind.__name__} is not a message schema (tagged by a string)")
    return tag


INBOUND_BY_TYPE: dict[str, type[Inbound]] = {type_tag(kind): kind for kind in INBOUND}
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
    request_id: int | str | None = None
    client_order_id: int | str | None = None
    cost: ClassVar[int] = 1  # throttle tokens, as for a message


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
        bodies: list[memoryview] = []
        max_frame = self.max_frame
        while end - at >= LENGTH_BYTES:
            length = int.from_bytes(view[at : at + LENGTH_BYTES], "big")
            if not 0 < length <= max_frame:
                self.failed = Refusal(
                    RejectCode.FRAME_TOO_LARGE,
                    f"{RejectCode.FRAME_TOO_LARGE.text}: length {length}, maximum {max_frame}",
                    fatal=True,
                )
                self._pending = b""
                return bodies
            stop = at + LENGTH_BYTES + length
            if stop > end:
                break
            bodies.append(view[at + LENGTH_BYTES : stop])
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
# not UTF-8, nesting deeper than the decoder recurses (which error each is depends on msgspec's release).
_UNREADABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
_any_decoder = msgspec.msgpack.Decoder()
_inbound_decoder = msgspec.msgpack.Decoder(InboundMessage)


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
                out.append(
                    Refusal(
                        RejectCode.MALFORMED_FRAME,
                        f"{RejectCode.MALFORMED_FRAME.text}: {unreadable(body, error)}",
                        fatal=True,
                    )
                )
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
        return Refusal(
            RejectCode.MALFORMED_FRAME,
            f"{RejectCode.MALFORMED_FRAME.text}: {unreadable(body, decode_error)}",
            fatal=True,
        )
    if may_nest_deeply(body):  # the decoder's own depth limit is the interpreter's, which differs by version
        problem = malformation(body)
        if problem is not None:
            return Refusal(RejectCode.MALFORMED_FRAME, f"{RejectCode.MALFORMED_FRAME.text}: {problem}", fatal=True)
    if type(document) is not dict:
        return Refusal(
            RejectCode.MALFORMED_FRAME,
            f"{RejectCode.MALFORMED_FRAME.text}: {_describe_value(document)}, not a map",
            fatal=True,
        )
    message_type = _echo_text(document.get("type"))
    request_id, client_order_id = _echo_id(document.get("request_id")), _echo_id(document.get("client_order_id"))

    def refused(code: RejectCode, detail: str, field: str | None) -> Refusal:
        return Refusal(
            code,
            f"{code.text}{detail}",
            fatal=False,
            field=field,
            message_type=message_type,
            request_id=request_id,
            client_order_id=client_order_id,
        )

    kind = None if message_type is None else INBOUND_BY_TYPE.get(message_type)
    if kind is None:
        return refused(RejectCode.UNKNOWN_MESSAGE_TYPE, f" (known: {', '.join(sorted(MESSAGE_TYPES))})", "type")
    unknown = [key for key in document if key != "type" and key not in kind.__struct_fields__]
    if unknown:
        field = _echo_text(unknown[0])
        return refused(
            RejectCode.INVALID_FIELD, f": unknown field {field if field is not None else '(not a short string)'}", field
        )
    match = _FIELD_IN_ERROR.search(str(error))
    field, problem = _field_problem(kind, document, (match.group(1) or match.group(2)) if match else None)
    return refused(RejectCode.INVALID_FIELD, f": {problem}", field)


def _echo_text(value: object) -> str | None:
    """A string of the frame fit to be echoed: short (a reply must stay a small frame)."""
    return value if type(value) is str and len(value) <= MAX_ECHO else None


def _echo_id(value: object) -> int | str | None:
    """An id of the frame fit to be echoed: a short string, or an integer that fits the signed 64 bits of the
    wire (not a bool)."""
    if type(value) is int:
        return value if -(1 << 63) <= value < 1 << 63 else None
    return _echo_text(value)


# -- refusal texts ---------------------------------------------------------------------------------
#
# Every refusal's text is the project's own. The decoder (msgspec) only tells that a body failed: its
# sentences are never passed on, because their wording changes between its releases (0.19 rewrote its
# UTF-8 error) and clients and tests must not see that. What went wrong is found here instead: a
# malformed body by reading its MessagePack structure (gateway.wire.malformed, asked only about a refused
# body), a bad field by holding the decoded map against the message's schema (_field_problem). Only which field the decoder stopped at is taken from its error (_FIELD_IN_ERROR);
# should that ever fail to match, the field is looked for in the map.


def _fields(kind: type[Inbound]) -> dict[str, msgspec.inspect.Field]:
    info = msgspec.inspect.type_info(kind)
    if not isinstance(info, msgspec.inspect.StructType):
        raise TypeError(f"{kind.__name__} is not a message schema")
    return {field.name: field for field in info.fields}


_INBOUND_FIELDS = {kind: _fields(kind) for kind in INBOUND}
_WIRE_INT_RANGE = (-(1 << 63), (1 << 63) - 1)


def _field_problem(kind: type[Inbound], document: dict, named: str | None) -> tuple[str | None, str]:
    """The field of ``document`` that does not fit message ``kind`` and what is wrong with it. ``named`` is the
    field the decoder stopped at, if its error named one; else a missing required field is looked for."""
    fields = _INBOUND_FIELDS[kind]
    if named not in fields:
        missing = [name for name, field in fields.items() if field.required and name not in document]
        if not missing:
            return None, "a value does not fit the message's schema (docs/PROTOCOL.md)"
        named = missing[0]
    if named not in document:
        return named, f"missing required field `{named}`"
    expected = fields[named].type
    value = document[named]
    got = _describe_value(value)
    if type(value) is list and isinstance(expected, (msgspec.inspect.ListType, msgspec.inspect.UnionType)):
        wrong = [item for item in value if type(item) is not str]  # the only arrays of the schema hold strings
        if wrong:
            got = f"an array holding {_describe_value(wrong[0])}"
    return named, f"`{named}` must be {_describe_type(expected)}, not {got}"


def _describe_type(kind: object) -> str:
    """A field's type from the schema (msgspec.inspect), as docs/PROTOCOL.md words it."""
    inspect = msgspec.inspect
    if isinstance(kind, inspect.UnionType):
        parts = [_describe_type(member) for member in kind.types]
        return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"
    if isinstance(kind, inspect.IntType):
        return "a signed 64-bit integer" if (kind.ge, kind.le) == _WIRE_INT_RANGE else "an integer"
    if isinstance(kind, inspect.StrType):
        return "a string" if kind.max_length is None else f"a string of at most {kind.max_length} characters"
    if isinstance(kind, inspect.BoolType):
        return "true or false"
    if isinstance(kind, inspect.NoneType):
        return "nil"
    if isinstance(kind, inspect.ListType):
        return "an array of strings" if isinstance(kind.item_type, inspect.StrType) else "an array"
    return "of the type docs/PROTOCOL.md gives"


def _describe_value(value: object) -> str:
    """What a decoded MessagePack object is, in the protocol's terms (never Python's type names)."""
    if value is None:
        return "nil"
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return "an integer" if -(1 << 63) <= value < 1 << 63 else "an integer beyond the signed 64 bits"
    if type(value) is float:
        return "a float"
    if type(value) is str:
        return "a string" if len(value) <= MAX_ECHO else f"a string of {len(value)} characters"
    if type(value) is bytes:
        return "bin"
    if type(value) is list:
        return "an array"
    if type(value) is dict:
        return "a map"
    return "an ext value"


_encoder = msgspec.msgpack.Encoder()
_length = struct.Struct(">I").pack  # LENGTH_BYTES, big-endian: a C call, cheaper than int.to_bytes
_MAP16 = 0xDE  # MessagePack's map with a 2-byte count; a map of up to 15 entries has a 1-byte header (0x80 | count)


def encode_message(message: msgspec.Struct | dict[str, Any]) -> bytes:
    """One message as a MessagePack map (a frame's body, an MQTT payload), its header the smallest that holds it.

    msgspec sizes a struct's map header by the fields the struct declares,
    before it leaves out the UNSET ones: a message of 16 or more declared
    fields of which 15 or fewer are present (an auction's opening, a logon
    answer) would get the 3-byte header where a dict of the same entries,
    and MessagePack's reference packers, write 1 byte. The bytes depend on
    what is sent, not on how its schema is declared.
    """
    body = _encoder.encode(message)
    if body[0] == _MAP16 and body[2] < 16 and not body[1]:
        return bytes((0x80 | body[2],)) + body[3:]
    return body


def encode_frame(message: msgspec.Struct | dict[str, Any]) -> bytes:
    """One outbound (or, for the client, inbound) message as a frame: length, then the MessagePack map."""
    body = _encoder.encode(message)
    if body[0] == _MAP16 and body[2] < 16 and not body[1]:  # encode_message's rule, inlined: this runs per frame
        body = bytes((0x80 | body[2],)) + body[3:]
    return _length(len(body)) + body


class DictReader:
    """The client's side: frames in, dicts out (the server's messages are not checked against a schema)."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.frames = FrameReader(max_frame)

    def feed(self, data: bytes) -> list[dict]:
        messages = []
        for body in self.frames.feed(data):
            try:
                messages.append(_any_decoder.decode(body))
            except _UNREADABLE as error:
                raise ProtocolError(f"the server sent an unreadable frame: {unreadable(body, error)}") from None
        if self.frames.failed is not None:
            raise ProtocolError(self.frames.failed.text)
        for message in messages:
            if type(message) is not dict:
                raise ProtocolError(f"the server sent {_describe_value(message)}, not a map")
        return messages


class ProtocolError(Exception):
    """The peer broke the protocol (the client's view of a server, or a test's)."""
