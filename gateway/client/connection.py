"""An asyncio client for the carbonx trading protocol (docs/PROTOCOL.md).

How this works
--------------
``async with connect(host, port, account, secret) as client:`` opens the
connection, logs on (raising :class:`LogonRefused` with the exchange's code
if it is refused) and, on leaving the block, logs out and closes.

One task reads the connection: every message the exchange numbers with
``seq`` (execution reports, rejects, answers) goes to the stream of
:meth:`ExchangeClient.messages`, and a message that carries a
``request_id`` the client is waiting for also completes that request. Each
request method (:meth:`new_order`, :meth:`cancel`, ...) gives its request
an id of its own and returns the first answer: for a new order the ``new``
(or ``rejected``) execution report, later fills arrive on the stream only.
:meth:`send` sends without waiting, for pipelining many requests. A second
task sends heartbeats when the client has sent nothing for an interval.

When the exchange ends the session, waiting requests fail with
:class:`SessionClosed` carrying its code, and the message stream ends.

Opening the connection and the logon are bounded in time (``connect_timeout``
and ``logon_timeout``, 10 s each by default): a port that takes the
connection and never answers raises :class:`NoAnswer`; one that answers
something other than this protocol (a web server, say) raises
:class:`NotAnExchange`. Both are :class:`SessionClosed`.

Over TLS (``tls=True``, or a CA file or client certificate given) the
connection is wrapped by the standard ``ssl`` module, TLS 1.2 at least, the
gateway's certificate verified; a failed handshake raises
:class:`TlsFailed`, a :class:`SessionClosed` too.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

from gateway.tls import client_context
from gateway.wire.protocol import DictReader, ProtocolError, encode_frame

READ_SIZE = 262_144  # bytes a socket read asks for: many frames are decoded per read
SERVER_FRAME_LIMIT = 1_048_576  # the largest server frame accepted (docs/PROTOCOL.md, section 1)
MAX_QUEUED_MESSAGES = 100_000  # the stream's bound: a program this far behind in reading it loses the session
CONNECT_TIMEOUT = 10.0  # seconds to open the connection, by default
# Seconds from sending the logon to its answer, by default: the exchange checks the secret with scrypt (tens of
# milliseconds, a few at a time), so a storm of logons takes a while, but never this long.
LOGON_TIMEOUT = 10.0
SHOWN_BYTES = 48  # bytes of a reply that is not the protocol quoted in the error


class SessionClosed(ConnectionError):
    """The session ended: by a logout from the exchange (``code``, ``text``) or a lost connection."""

    def __init__(self, text: str, code: int | None = None) -> None:
        super().__init__(text if code is None else f"{text} (code {code})")
        self.code = code
        self.text = text


class LogonRefused(SessionClosed):
    """The exchange refused the logon (wrong secret, account already logged on, ...)."""


class NotAnExchange(SessionClosed):
    """What answered the logon does not speak the carbonx protocol (another service on that port)."""


class NoAnswer(SessionClosed, TimeoutError):
    """No connection, or no answer to the logon, within the time allowed."""


class TlsFailed(SessionClosed):
    """The TLS handshake failed: an untrusted or misnamed server certificate, a client certificate missing or
    refused, or a gateway that does not speak TLS."""


class RequestRefused(Exception):
    """The exchange refused a request whose answer is not a message of its own (a ``reject``): ``answer``."""

    def __init__(self, answer: dict) -> None:
        super().__init__(f"{answer.get('text')} (code {answer.get('code')})")
        self.answer = answer


class ClientSession:
    """A connection's logon, its reading and heartbeat tasks, and the request plumbing (ids, waiting for the
    answer, the streams of messages and market data); :class:`ExchangeClient` adds the protocol's requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._frames = DictReader(SERVER_FRAME_LIMIT)
        self._request_ids = itertools.count(1)
        self._waiting: dict[object, asyncio.Future] = {}
        self._messages: asyncio.Queue[dict | None] = asyncio.Queue(MAX_QUEUED_MESSAGES)
        self._market_data: asyncio.Queue[dict | None] = asyncio.Queue(MAX_QUEUED_MESSAGES)
        self._tasks: list[asyncio.Task] = []
        self._client_order_ids = itertools.count(1)
        self._client_order_prefix = f"c{time.time_ns():x}-"
        self.logon: dict = {}  # the exchange's logon_accepted message
        self.closed: SessionClosed | None = None
        self.last_seq = 0
        self._resent: dict | None = None  # the resend_begin being answered, collecting what is resent
        self._last_sent = time.monotonic()

    # -- session ------------------------------------------------------------------------------

    async def _log_on(
        self,
        account: str,
        secret: str,
        heartbeat_interval: int | None,
        cancel_on_disconnect: bool | None,
        market_data_only: bool = False,
    ) -> dict:
        message: dict[str, object] = {"type": "logon", "account": account, "secret": secret}
        if heartbeat_interval is not None:
            message["heartbeat_interval"] = heartbeat_interval
        if cancel_on_disconnect is not None:
            message["cancel_on_disconnect"] = cancel_on_disconnect
        if market_data_only:
            message["market_data_only"] = True
        self._write(message)
        received = b""  # the start of the answer, quoted if it is not the protocol
        while True:
            try:
                data = await self._reader.read(READ_SIZE)
            except ConnectionResetError:
                # The same refusal, seen as a reset rather than an end of file (Python 3.13's TLS transport,
                # when the server aborts the connection under the client's first records).
                if received or self._writer.get_extra_info("ssl_object") is None:
                    raise
                data = b""
            if not data:
                if received:
                    raise NotAnExchange(
                        f"the answer to the logon is not the carbonx protocol: {received!r}, "
                        f"then the connection was closed"
                    )
                if self._writer.get_extra_info("ssl_object") is not None:
                    # A gateway that refuses a client certificate in the handshake closes the connection without
                    # a word (TLS 1.3 lets the client finish its side of the handshake first).
                    raise TlsFailed(
                        "the exchange closed the TLS connection during logon: a client certificate missing, "
                        "or not one it trusts"
                    )
                raise LogonRefused("the exchange closed the connection during logon")
            received = (received + data)[:SHOWN_BYTES]
            try:
                messages = self._frames.feed(data)
            except ProtocolError:
                answer = f"the answer to the logon is not the carbonx protocol: it began {received!r}"
                raise NotAnExchange(answer) from None
            if messages:
                break
        first = messages[0]
        if first.get("type") == "logout":
            raise LogonRefused(str(first.get("text", "logon refused")), first.get("code"))
        if first.get("type") != "logon_accepted":
            raise NotAnExchange(
                f"the answer to the logon is not logon_accepted or logout of the carbonx protocol: "
                f"{str(first)[: SHOWN_BYTES * 2]}"
            )
        self.logon = first
        self._tasks = [
            asyncio.create_task(self._read_loop(messages[1:]), name=f"client-reader-{account}"),
            asyncio.create_task(self._heartbeat_loop(), name=f"client-heartbeat-{account}"),
        ]
        return first

    async def logout(self) -> None:
        """Log out and wait (briefly) for the exchange's logout; then close."""
        if self.closed is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting["logout"] = future
            self._write({"type": "logout"})
            try:
                await asyncio.wait_for(future, 5.0)
            except (TimeoutError, SessionClosed):
                pass
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._end(SessionClosed("closed by the client"))
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    # -- sending --------------------------------------------------------------------------------

    def _write(self, message: dict) -> None:
        if self.closed is not None:
            raise self.closed
        self._writer.write(encode_frame(message))
        self._last_sent = time.monotonic()

    def send(self, message: dict) -> object:
        """Send a request without waiting for its answer; returns its request id (one is given if absent)."""
        if message.get("request_id") is None:
            message = {**message, "request_id": next(self._request_ids)}
        self._write(message)
        return message["request_id"]

    async def request(self, message: dict) -> dict:
        """Send a request and return the first message the exchange answers it with."""
        future = asyncio.get_running_loop().create_future()
        request_id = next(self._request_ids)
        self._waiting[request_id] = future
        try:
            self._write({**message, "request_id": request_id})
            return await future
        finally:
            self._waiting.pop(request_id, None)

    async def drain(self) -> None:
        """Wait until the socket has taken what was sent (flow control for a fast sender)."""
        await self._writer.drain()

    # -- receiving ---------------------------------------------------------------------------------

    async def messages(self) -> AsyncIterator[dict]:
        """Every numbered message from the exchange, in order, until the session ends.

        They are kept for this stream until read, up to ``MAX_QUEUED_MESSAGES``;
        a program that leaves that many unread loses the session
        (:class:`SessionClosed`) rather than any message.
        """
        while True:
            message = await self._messages.get()
            if message is None:
                return
            yield message

    async def _read_loop(self, first: list[dict]) -> None:
        try:
            self._dispatch(first)
            while True:
                data = await self._reader.read(READ_SIZE)
                if not data:
                    self._end(SessionClosed("the exchange closed the connection"))
                    return
                self._dispatch(self._frames.feed(data))
                if self.closed is not None:
                    return
        except (ConnectionError, OSError, ProtocolError) as error:
            self._end(SessionClosed(f"connection lost: {error}"))

    def _dispatch(self, messages: list[dict]) -> None:
        for message in messages:
            kind = message.get("type")
            if kind == "heartbeat":
                continue
            if kind == "logout":
                waiter = self._waiting.pop("logout", None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(message)
                self._end(SessionClosed(str(message.get("text")), message.get("code")))
                return
            if self._resent is not None:  # between resend_begin and resend_end: old messages, old request ids
                if kind == "resend_end":
                    begin, self._resent = self._resent, None
                    waiter = self._waiting.get(message.get("request_id"))
                    if waiter is not None and not waiter.done():
                        waiter.set_result(begin)
                else:
                    self._resent["messages_resent"].append(message)
                continue
            if kind == "resend_begin":
                self._resent = {**message, "messages_resent": []}
                continue
            if "md_seq" in message:  # market data: its own numbering, its own stream
                if not self._keep(self._market_data, message, "market_data()"):
                    return
                continue
            if "seq" in message:
                self.last_seq = message["seq"]
                if not self._keep(self._messages, message, "messages()"):
                    return
            waiter = self._waiting.get(message.get("request_id"))
            if waiter is not None and not waiter.done():
                waiter.set_result(message)

    def _keep(self, stream: asyncio.Queue, message: dict, name: str) -> bool:
        """Queue a message for one of the streams; never block the reader (answers must get through): a
        stream left this far behind ends the session instead of losing a message."""
        try:
            stream.put_nowait(message)
            return True
        except asyncio.QueueFull:
            self._end(
                SessionClosed(
                    f"{MAX_QUEUED_MESSAGES} messages were left unread in {name}; the session "
                    f"is closed rather than lose any"
                )
            )
            self._writer.close()
            return False

    async def _heartbeat_loop(self) -> None:
        interval = float(self.logon.get("heartbeat_interval", 5.0))
        while self.closed is None:
            await asyncio.sleep(interval / 2)
            if time.monotonic() - self._last_sent >= interval / 2 and self.closed is None:
                self._write({"type": "heartbeat"})

    def _end(self, reason: SessionClosed) -> None:
        if self.closed is not None:
            return
        self.closed = reason
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(reason)
        self._waiting.clear()
        for stream in (self._messages, self._market_data):
            if stream.full():  # make room for the end of the stream; the session is over anyway
                stream.get_nowait()
            stream.put_nowait(None)


class ExchangeClient(ClientSession):
    """A logged-on session with one method per request of the protocol. Make one with :func:`connect`."""

    def next_client_order_id(self) -> str:
        return f"{self._client_order_prefix}{next(self._client_order_ids)}"

    # -- requests --------------------------------------------------------------------------------

    def new_order_message(
        self,
        instrument: str,
        side: str,
        quantity: int,
        price: int | str | Decimal | None = None,
        *,
        client_order_id: str | int | None = None,
        **options: object,
    ) -> dict:
        """A ``new_order`` message; ``options`` are the protocol's optional fields (order_type, stop_price, ...)."""
        message = {
            "type": "new_order",
            "instrument": instrument,
            "side": side,
            "quantity": quantity,
            "client_order_id": self.next_client_order_id() if client_order_id is None else client_order_id,
        }
        if price is not None:
            message["price"] = str(price) if isinstance(price, Decimal) else price
        for name, value in options.items():
            if value is not None:
                message[name] = str(value) if isinstance(value, Decimal) else value
        return message

    async def new_order(
        self,
        instrument: str,
        side: str,
        quantity: int,
        price: int | str | Decimal | None = None,
        *,
        client_order_id: str | int | None = None,
        **options: object,
    ) -> dict:
        """Enter an order; returns its ``new`` or ``rejected`` execution report (or a session ``reject``)."""
        return await self.request(
            self.new_order_message(instrument, side, quantity, price, client_order_id=client_order_id, **options)
        )

    async def cancel(self, order_id: int | None = None, client_order_id: str | int | None = None) -> dict:
        return await self.request(_order_reference("cancel_order", order_id, client_order_id))

    async def replace(
        self,
        order_id: int | None = None,
        client_order_id: str | int | None = None,
        *,
        quantity: int | None = None,
        price: int | str | Decimal | None = None,
    ) -> dict:
        message = _order_reference("replace_order", order_id, client_order_id)
        if quantity is not None:
            message["quantity"] = quantity
        if price is not None:
            message["price"] = str(price) if isinstance(price, Decimal) else price
        return await self.request(message)

    async def mass_cancel(self, instrument: str | None = None) -> dict:
        return await self.request({"type": "mass_cancel", "instrument": instrument})

    async def order_status(self, order_id: int | None = None, client_order_id: str | int | None = None) -> dict:
        return await self.request(_order_reference("order_status", order_id, client_order_id))

    async def balances(self) -> dict:
        return await self.request({"type": "balances"})

    async def positions(self) -> dict:
        """The account's futures positions and margin (docs/FUTURES.md)."""
        return await self.request({"type": "positions"})

    async def report_block(
        self,
        block_id: str | int,
        counterparty: str,
        instrument: str,
        side: str,
        quantity: int,
        price: int | str | Decimal,
        *,
        physical_price: int | str | Decimal | None = None,
    ) -> dict:
        """One side of a block trade agreed with ``counterparty`` (an EFP when ``physical_price`` is given): the
        answer is the ``block_report``, ``reported`` until the other side reports, ``traded`` once it has."""
        return await self.request(
            {
                "type": "report_block",
                "block_id": block_id,
                "counterparty": counterparty,
                "instrument": instrument,
                "side": side,
                "quantity": quantity,
                "price": str(price) if isinstance(price, Decimal) else price,
                "kind": "block" if physical_price is None else "efp",
                "physical_price": str(physical_price) if isinstance(physical_price, Decimal) else physical_price,
            }
        )

    async def book(self, instrument: str, levels: int = 10) -> dict:
        return await self.request({"type": "book", "instrument": instrument, "levels": levels})

    async def subscribe(self, instruments: list[str] | None = None, channels: list[str] | None = None) -> dict:
        """Market data on this session: the answer ``subscribed``, then :meth:`market_data` has the current
        state of each channel and every message after it."""
        return await self.request({"type": "subscribe", "instruments": instruments, "channels": channels})

    async def unsubscribe(self, instruments: list[str] | None = None, channels: list[str] | None = None) -> dict:
        return await self.request({"type": "unsubscribe", "instruments": instruments, "channels": channels})

    async def open_orders(self, instrument: str | None = None) -> list[dict]:
        """The account's open orders (all of them: page after page), oldest first; a refusal raises
        :class:`RequestRefused`."""
        return await self._all_pages("open_orders", "orders", "order_id", instrument)

    async def trades(self, instrument: str | None = None) -> tuple[list[dict], bool]:
        """The account's fills since the last end of day, oldest first, and whether that is all of them (the
        exchange keeps the newest 10,000 of a day)."""
        complete = True

        def note(answer: dict) -> None:
            nonlocal complete
            complete = complete and answer["complete"]

        fills = await self._all_pages("trades", "trades", "trade_id", instrument, note)
        return fills, complete

    async def _all_pages(
        self, kind: str, entries: str, key: str, instrument: str | None, each: Callable[[dict], None] | None = None
    ) -> list[dict]:
        found: list[dict] = []
        after = None
        while True:
            answer = await self.request({"type": kind, "instrument": instrument, "after": after})
            if answer["type"] != kind:
                raise RequestRefused(answer)
            if each is not None:
                each(answer)
            found += answer[entries]
            if not answer["more"] or not answer[entries]:
                return found
            after = answer[entries][-1][key]

    async def ping(self) -> dict:
        """``pong``: every answer to what was sent before the ping has arrived."""
        return await self.request({"type": "ping"})

    async def market_data(self) -> AsyncIterator[dict]:
        """Every market-data message of the subscriptions, in order, until the session ends."""
        while True:
            message = await self._market_data.get()
            if message is None:
                return
            yield message

    async def kill_switch(self, account: str) -> dict:
        return await self.request({"type": "kill_switch", "account": account})

    async def close_out(self, account: str, to_account: str) -> dict:
        """(operator) Close out an account on a margin call: its futures positions pass to ``to_account``."""
        return await self.request({"type": "close_out", "account": account, "to_account": to_account})

    # -- EU ETS compliance (docs/COMPLIANCE.md) --------------------------------------------------

    async def record_allocation(self, account: str, year: int, units: int) -> dict:
        """(Authority) An installation's free allocation for a year: its ``compliance_report``."""
        return await self.request({"type": "record_allocation", "account": account, "year": year, "units": units})

    async def record_emissions(self, account: str, year: int, tonnes: int) -> dict:
        """(Authority) An installation's verified emissions for a year: its ``compliance_report``."""
        return await self.request({"type": "record_emissions", "account": account, "year": year, "tonnes": tonnes})

    async def close_compliance_year(self, year: int) -> dict:
        """(Authority) The year's deadline, today: the ``year_closed`` report (each installation's penalty and
        make-good come before it, in ``messages()``)."""
        return await self.request({"type": "close_compliance_year", "year": year})

    async def surrender(self, year: int, instrument: str, units: int) -> dict:
        """(Installation) Surrender units against the year's obligation: the ``compliance_report``."""
        return await self.request({"type": "surrender", "year": year, "instrument": instrument, "units": units})

    async def compliance_position(
        self, year: int | None = None, account: str | None = None, after: str | None = None
    ) -> dict:
        """The account's compliance year by year (an authority: any installation's, or every one's of a year, a
        page of 100 after ``after``)."""
        return await self.request({"type": "compliance_position", "year": year, "account": account, "after": after})

    async def release_kill_switch(self, account: str) -> dict:
        return await self.request({"type": "release_kill_switch", "account": account})

    async def set_trading_phase(self, instrument: str, phase: str, from_phase: str | None = None) -> dict:
        """(Operator) move an instrument to another trading phase; the ``trading_phase_report`` (with the
        auction the change ran) or the refusal."""
        message = {"type": "set_trading_phase", "instrument": instrument, "phase": phase}
        if from_phase is not None:
            message["from_phase"] = from_phase
        return await self.request(message)

    async def extend_trading_day(self, minutes: int) -> dict:
        """(Operator) move the open trading day's closing points ``minutes`` later; the ``schedule_report``."""
        return await self.request({"type": "extend_trading_day", "minutes": minutes})

    async def skip_schedule_point(self, point: str | None = None) -> dict:
        """(Operator) pass over the open day's ``point`` (e.g. "opening_call:CER"; None: the next one); the
        ``schedule_report`` naming it."""
        message: dict = {"type": "skip_schedule_point"}
        if point is not None:
            message["point"] = point
        return await self.request(message)

    # -- EU ETS primary auctions --------------------------------------------------------------------

    async def open_auction(
        self,
        auction_id: str,
        instrument: str,
        volume: int,
        window_seconds: int,
        reserve_discount_bps: int | None = None,
    ) -> dict:
        """(Auctioneer) offer ``volume`` allowances, bids taken for ``window_seconds``; the ``auction_report``."""
        return await self.request(
            {
                "type": "open_auction",
                "auction_id": auction_id,
                "instrument": instrument,
                "volume": volume,
                "window_seconds": window_seconds,
                "reserve_discount_bps": reserve_discount_bps,
            }
        )

    async def submit_bid(self, auction_id: str, bid_id: str | int, price: int | str | Decimal, volume: int) -> dict:
        return await self.request(
            {
                "type": "submit_bid",
                "auction_id": auction_id,
                "bid_id": bid_id,
                "price": str(price) if isinstance(price, Decimal) else price,
                "volume": volume,
            }
        )

    async def modify_bid(
        self, auction_id: str, bid_id: str | int, *, price: int | str | Decimal | None = None, volume: int | None = None
    ) -> dict:
        return await self.request(
            {
                "type": "modify_bid",
                "auction_id": auction_id,
                "bid_id": bid_id,
                "price": str(price) if isinstance(price, Decimal) else price,
                "volume": volume,
            }
        )

    async def admit_bidder(self, account: str, admitted: bool = True) -> dict:
        """(Operator) Admit an account to bid in primary auctions, or withdraw its admission: ``bidder_admission``."""
        return await self.request({"type": "admit_bidder", "account": account, "admitted": admitted})

    async def withdraw_bid(self, auction_id: str, bid_id: str | int) -> dict:
        return await self.request({"type": "withdraw_bid", "auction_id": auction_id, "bid_id": bid_id})

    async def auction_status(self, auction_id: str) -> dict:
        return await self.request({"type": "auction_status", "auction_id": auction_id})

    async def snapshot(self) -> dict:
        """(Operator) have the exchange snapshot its state now; the ``snapshot_taken`` answer."""
        return await self.request({"type": "snapshot"})

    async def resend(self, from_seq: int) -> tuple[dict, list[dict]]:
        """The account's numbered messages from ``from_seq`` on, sent again: (``resend_begin``, the messages).

        ``resend_begin["unavailable"]`` lists the seq ranges the exchange no
        longer keeps. The messages resent do not enter :meth:`messages` (they
        carry their first ``seq``, which the stream has passed); a refused
        request (a ``reject``) raises :class:`RequestRefused`.
        """
        request_id = next(self._request_ids)
        done = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = done
        try:
            self._write({"type": "resend", "from_seq": from_seq, "request_id": request_id})
            answer = await done
        finally:
            self._waiting.pop(request_id, None)
        if answer["type"] != "resend_begin":
            raise RequestRefused(answer)
        return answer, answer.pop("messages_resent")


def _order_reference(kind: str, order_id: int | None, client_order_id: str | int | None) -> dict:
    message: dict = {"type": kind}
    if order_id is not None:
        message["order_id"] = order_id
    if client_order_id is not None:
        message["client_order_id"] = client_order_id
    return message


@asynccontextmanager
async def connect(
    host: str,
    port: int,
    account: str,
    secret: str,
    *,
    heartbeat_interval: int | None = None,
    cancel_on_disconnect: bool | None = None,
    connect_timeout: float | None = CONNECT_TIMEOUT,
    logon_timeout: float | None = LOGON_TIMEOUT,
    market_data_only: bool = False,
    tls: ssl.SSLContext | bool = False,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
    server_hostname: str | None = None,
) -> AsyncIterator[ExchangeClient]:
    """A logged-on session for the ``async with`` block; logs out on leaving it.

    ``cancel_on_disconnect``: whether the exchange cancels the account's
    orders when this session ends; None keeps the account's setting.
    ``market_data_only``: a session that only watches (subscribe, book), beside
    the account's trading session; its end cancels nothing.
    ``connect_timeout`` and ``logon_timeout`` (seconds; None: no limit) bound
    the opening of the connection (its TLS handshake included) and the wait
    for the logon's answer: :class:`NoAnswer` when one runs out. An answer
    that is not the protocol raises :class:`NotAnExchange`, a refused logon
    :class:`LogonRefused`.

    TLS (docs/PROTOCOL.md, section 1.1): ``tls`` an ``ssl.SSLContext`` of
    the caller's, or True; any of ``ca_file`` (the CA the gateway's
    certificate is checked against; default: the system's), ``cert_file`` and
    ``key_file`` (a client certificate, for mutual TLS) also turns it on.
    ``server_hostname``: the name the gateway's certificate must carry
    (default: ``host``). A failed handshake raises :class:`TlsFailed`.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    context = _tls_context(tls, ca_file, cert_file, key_file)
    opening = (
        asyncio.open_connection(host, port, limit=READ_SIZE)
        if context is None
        else asyncio.open_connection(host, port, limit=READ_SIZE, ssl=context, server_hostname=server_hostname or host)
    )
    try:
        reader, writer = await asyncio.wait_for(opening, connect_timeout)
    except TimeoutError:
        raise NoAnswer(f"no connection to {where} within {connect_timeout:g} s") from None
    except ssl.SSLError as error:
        raise TlsFailed(f"the TLS handshake with {where} failed: {_ssl_reason(error)}") from None
    except ConnectionResetError:
        if context is None:
            raise
        # A gateway that refuses the client's certificate may abort the connection under the handshake.
        raise TlsFailed(
            f"the exchange at {where} reset the TLS handshake: a client certificate missing, or not one it trusts"
        ) from None
    client = ExchangeClient(reader, writer)
    try:
        await asyncio.wait_for(
            client._log_on(account, secret, heartbeat_interval, cancel_on_disconnect, market_data_only), logon_timeout
        )
    except TimeoutError:
        writer.close()
        silence = f"{where} took the connection but did not answer the logon within {logon_timeout:g} s"
        raise NoAnswer(silence) from None
    except ssl.SSLError as error:
        # With TLS 1.3 the server checks the client's certificate after the client has finished its side of
        # the handshake: a refusal arrives as an alert at the first read.
        writer.close()
        raise TlsFailed(f"the exchange at {where} ended the TLS session: {_ssl_reason(error)}") from None
    except BaseException:
        writer.close()
        raise
    try:
        yield client
    finally:
        await client.logout()


def _tls_context(
    tls: ssl.SSLContext | bool, ca_file: str | Path | None, cert_file: str | Path | None, key_file: str | Path | None
) -> ssl.SSLContext | None:
    """The context ``connect`` uses: the caller's, else one made from the files, else None (plain TCP)."""
    if isinstance(tls, ssl.SSLContext):
        if ca_file is not None or cert_file is not None or key_file is not None:
            raise ValueError("give either an SSLContext or the files to make one (ca_file, cert_file, key_file)")
        return tls
    if tls or ca_file is not None or cert_file is not None or key_file is not None:
        return client_context(ca_file, cert_file, key_file)
    return None


def _ssl_reason(error: ssl.SSLError) -> str:
    """What went wrong in a handshake, in OpenSSL's words without the source location."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"the exchange's certificate is not trusted ({error.verify_message}): check the CA file and the host name"
        )
    return (error.reason or str(error)).replace("_", " ").lower()
