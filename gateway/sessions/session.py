"""One client connection: its transport, logon state, throttle and clocks, and its writes.

How this works
--------------
A :class:`Session` is created for every accepted connection by the session
host (:mod:`gateway.sessions.host`), which reads it; everyone else only
writes to it. Writing never waits: frames go into the transport's buffer,
and a client that lets that buffer grow past ``max_outbound_bytes`` is
logged out as a slow consumer (710). Ending a session half-closes the
connection behind a ``logout`` and cuts it for good after ``CLOSE_GRACE``;
any failure of the socket on the way (the peer reset, ENOTCONN, EPIPE) is
contained here: it ends this session, and the engine task or the stop that
was writing goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from msgspec import UNSET, UnsetType

from exchange import RejectCode
from gateway.logs import log_event
from gateway.wire.messages import LoggedOut, Outbound
from gateway.wire.protocol import encode_frame

if TYPE_CHECKING:
    from gateway.config import AccountConfig, ServerConfig

log = logging.getLogger("carbonx.gateway")

CLOSE_GRACE = 1.0  # seconds an ended session's connection lingers for the peer to take its logout


class TokenBucket:
    """Allows ``rate`` messages a second on average and ``burst`` at once."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float, cost: int = 1) -> bool:
        """Take ``cost`` tokens if the bucket has them (a message takes one; a paged query more)."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        self.stamp = now
        if tokens >= cost:
            self.tokens = min(tokens, self.burst) - cost
            return True
        self.tokens = tokens
        return False


class AccountLink:
    """An account as the gateway sees it: its configuration, and its session while one is logged on."""

    __slots__ = ("config", "session", "watchers")

    def __init__(self, config: AccountConfig) -> None:
        self.config = config
        self.session: Session | None = None  # its trading session
        self.watchers = 0  # its market-data sessions


class Session:
    """One client connection: its transport, its logon state, throttle and heartbeat clocks."""

    def __init__(
        self,
        number: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        config: ServerConfig,
        clock: Callable[[], float],
    ) -> None:
        self.number = number
        self.config = config
        self.clock = clock
        self.reader = reader
        self.writer = writer
        self.transport = cast(asyncio.Transport, writer.transport)  # a socket (or TLS) transport: it reads too
        peer = writer.get_extra_info("peername")  # None when the peer reset the connection before it was taken
        self.host = address_key(peer[0]) if peer else "?"  # whose logons and pending connections are counted
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.pending = False  # counted among the connections waiting to log on
        self.market_data_only = False  # set at logon: a session for market data, with no orders and no numbering
        self.link: AccountLink | None = None  # set at logon
        self.account = ""  # set at logon (every request on the queue is a logged-on session's)
        self.cancel_on_disconnect = True  # set at logon: the logon's choice, else the account's setting
        self.heartbeat_interval = config.heartbeat_interval
        now = clock()
        self.last_received = now
        self.last_sent = now
        self.bucket = TokenBucket(config.throttle_rate, config.throttle_burst, now)
        self.closed = False
        self.accepted = False  # logon_accepted sent: from then on it receives the account's messages
        self.close_code: RejectCode | None = None
        self.ended = asyncio.Event()  # set once the session is closed, by either side
        self.waiting = False  # its task waits on the exchange (a full queue, the throttle): not timed out
        self.subscriptions: set[tuple[str, str]] = set()  # (instrument, channel) of market data it receives
        self.refused_waiting = 0  # requests in NotProcessed runs queued and not answered yet
        self.refusals_answered = asyncio.Event()  # set when the engine has answered all of them
        self.queued = 0  # its requests on the engine's queue (not counting refusals)
        self.certificate_account: str | None = None  # mutual TLS: the account its client certificate names

    def secured(self, writer: asyncio.StreamWriter, certificate_account: str | None) -> None:
        """The TLS handshake is done: write through the TLS transport from now on (the reader is the same)."""
        self.transport = cast(asyncio.Transport, writer.transport)
        self.certificate_account = certificate_account

    def write(self, message: Outbound) -> None:
        """Send a message now (no waiting); a client too far behind in reading is disconnected."""
        self.write_frame(encode_frame(message))

    def write_frame(self, frame: bytes) -> None:
        """Send an encoded message (one frame made once for many sessions: market data)."""
        transport = self.transport
        if self.closed or transport.is_closing():  # the client went away; its session task is ending it
            return
        try:
            transport.write(frame)
            buffered = transport.get_write_buffer_size()
        except Exception as error:  # the peer vanished under us: this session ends, nothing else
            self.lost(error)
            return
        self.last_sent = self.clock()
        if buffered > self.config.max_outbound_bytes:
            log_event(
                log,
                "slow_consumer",
                logging.WARNING,
                session=self.number,
                account=self.account or None,
                peer=self.peer,
                buffered=buffered,
            )
            self.end(RejectCode.SLOW_CONSUMER)  # the logout sits behind everything unread

    def end(
        self,
        code: RejectCode | None,
        text: str | None = None,
        request_id: int | str | None = None,
        retry_after: float | UnsetType = UNSET,
    ) -> None:
        """Send a logout (with ``code`` if the exchange ends the session; ``retry_after`` for a lockout) and close
        after it is written."""
        if self.closed:
            return
        self.close_code = code
        self._close()
        message = LoggedOut(
            code=None if code is None else int(code),
            text=text or ("logged out" if code is None else code.text),
            retry_after=retry_after,
            ts=time.time_ns(),
            request_id=UNSET if request_id is None else request_id,
        )
        transport = self.transport
        # Half-close: the logout goes out after what is queued, and the peer sees the end of the stream.
        # A full close now would answer data the client is still sending with a reset, which can
        # destroy the logout in flight; the connection is cut for good after a grace period.
        # The peer may be gone already (a reset, or a close that our last write turned into one): then
        # the write or the shutdown fails (ENOTCONN, EPIPE), and the connection is simply cut.
        try:
            if transport.is_closing():
                return
            transport.write(encode_frame(message))
            if transport.can_write_eof():
                transport.write_eof()
            else:
                # TLS cannot half-close: its close sends what is queued, then the close_notify, and waits
                # for the peer's; a peer that never answers is cut off after the same grace.
                transport.close()
            asyncio.get_running_loop().call_later(CLOSE_GRACE, abort, transport)
        except Exception as error:
            self.lost(error)

    def lost(self, error: BaseException) -> None:
        """The connection failed under a write, a shutdown or a close: cut it. Only this session ends; the
        caller (the engine task, the stop, the heartbeat task) goes on."""
        log_event(
            log,
            "session_io_error",
            logging.INFO,
            session=self.number,
            account=self.account or None,
            peer=self.peer,
            error=f"{type(error).__name__}: {error}",
        )
        if not self.closed:
            self._close()
        abort(self.transport)

    def _close(self) -> None:
        """Mark the session closed: nothing more is read from it, and its task, waiting in a read, ends."""
        self.closed = True
        self.ended.set()
        self.refusals_answered.set()  # its task, waiting for the engine to answer its refusals, ends too
        with contextlib.suppress(Exception):  # a transport already closed has nothing to pause
            self.transport.pause_reading()
        self.reader.feed_eof()

    def pause(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self.transport.pause_reading()


def address_key(host: str) -> str:
    """The address a peer's logons and pending connections are counted under: an IPv4 address itself, an IPv6
    one by its /64 (one host is usually given a whole /64 to pick addresses from)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def abort(transport: asyncio.Transport) -> None:
    """Cut a connection at once; a transport that is already gone is left as it is."""
    try:
        transport.abort()
    except Exception:  # closing twice, or a socket the system has already dropped: nothing more to do
        pass


def write_gathered(gathered: dict[Session, list[bytes]]) -> None:
    """Each session's gathered frames in one write, in the order they were gathered; empties ``gathered``."""
    for session, frames in gathered.items():
        session.write_frame(frames[0] if len(frames) == 1 else b"".join(frames))
    gathered.clear()
