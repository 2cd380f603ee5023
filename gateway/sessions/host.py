"""The session host: connections accepted, logons checked, sessions read and timed.

How this works
--------------
Each connection is served by its own task (``session-N``,
:meth:`SessionHost.serve_connection`). It reads what the socket has (up to
``SESSION_READ_SIZE`` bytes at a time) and the wire reader
(:class:`gateway.wire.protocol.MessageReader`) turns the bytes into
messages. The first must be a logon, within the logon timeout; connections
waiting to log on are bounded in all and per peer address. The secret is
checked in a worker thread (scrypt takes tens of milliseconds the market
must not wait for), a few at a time, behind the logon guard's back-off and
lockout (:mod:`gateway.sessions.logon_guard`). A logon that passes is queued
for the engine loop, which accepts it in its place; from then on every read
goes to the intake (:mod:`gateway.pipeline.intake`).

When a session ends for any reason (logout, timeout, error, disconnect)
and it has cancel-on-disconnect, a ``Disconnected`` request is queued
behind everything it sent. The heartbeat task writes a heartbeat to
sessions that heard nothing for an interval and ends those silent too long
(not while the exchange itself keeps them waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from exchange import RejectCode
from gateway.config import ServerConfig
from gateway.lifecycle import Lifecycle
from gateway.logs import log_event
from gateway.marketdata.subscribers import Subscribers
from gateway.pipeline.intake import AcceptLogon, Disconnected, Intake
from gateway.sessions.credentials import verify_secret
from gateway.sessions.logon_guard import LogonGuard
from gateway.sessions.session import AccountLink, Session, abort
from gateway.tls import certificate_account
from gateway.wire.messages import ServerHeartbeat
from gateway.wire.protocol import Logon, MessageReader, Refusal

log = logging.getLogger("carbonx.gateway")

MIN_CLIENT_HEARTBEAT = 1  # seconds: the shortest heartbeat interval a client may ask for
MAX_CLIENT_HEARTBEAT = 60
LOGOUT_WAIT = 5.0  # seconds a session waits for the engine loop to answer its logout
# Bytes a session's read takes at most: a few thousand frames, decoded in one go (2 million a second),
# and no more, so that one client's burst is a short stretch of the engine's queue.
SESSION_READ_SIZE = 65_536
SECRET_CHECK_THREADS = 2  # scrypt checks at once (16 MiB of memory each)
MAX_MARKET_DATA_SESSIONS = 8  # market-data sessions an account may have at once (beside its trading session)
# Checked for an unknown account, so that it takes as long as a known one (the hash of a secret nobody has,
# made once with `carbonx hash-secret`: no scrypt at start-up).
_DUMMY_HASH = (
    "scrypt$16384$8$1$78f223a6f9b6208f247ba1cb71a403ab$d7c60b64e11498e01a3982e8973d3199c2e4c94584c9a5899cbca6be33567be6"
)


class SessionHost:
    """Every connection, logged on or not; see the module notes."""

    def __init__(
        self,
        links: dict[str, AccountLink],
        intake: Intake,
        subscribers: Subscribers,
        config: ServerConfig,
        lifecycle: Lifecycle,
        clock: Callable[[], float],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.links = links
        self.tls = tls  # the gateway's TLS context (tls_mode on or mutual); None: plain TCP
        self.mutual = tls is not None and config.tls_mode == "mutual"
        self.intake = intake
        self.subscribers = subscribers
        self.config = config
        self.lifecycle = lifecycle
        self.clock = clock
        self.sessions: dict[int, Session] = {}  # every connection, logged on or not
        self.logged_on = 0  # sessions logged on (at most max_sessions)
        self._pending_logons: dict[str, int] = {}  # connections not logged on yet, by peer address
        self._pending_total = 0
        self.logon_guard = LogonGuard(
            config.logon_free_failures,
            config.logon_backoff,
            config.logon_lockout_failures,
            config.logon_lockout_seconds,
        )
        self._numbers = itertools.count(1)
        self.connection_tasks: set[asyncio.Task] = set()
        # Connections ended, by the code they were ended with (None: the client's logout or disconnect), for
        # /metrics: logons refused, timeouts, slow consumers.
        self.ends: defaultdict[RejectCode | None, int] = defaultdict(int)
        # Secrets are checked in threads of their own, a few at a time, so that a storm of logons (or of
        # bad secrets) neither takes the default executor nor runs without bound.
        self._secret_checker = ThreadPoolExecutor(max_workers=SECRET_CHECK_THREADS, thread_name_prefix="secret-check")
        self._logon_checks = asyncio.Semaphore(SECRET_CHECK_THREADS * 2)

    @property
    def pending_total(self) -> int:
        """Connections waiting to log on."""
        return self._pending_total

    def pending_from(self, host: str) -> int:
        return self._pending_logons.get(host, 0)

    def pause_all(self) -> None:
        for session in list(self.sessions.values()):
            session.pause()

    def end_all(self, code: RejectCode) -> None:
        for session in list(self.sessions.values()):
            session.end(code)  # never raises: a vanished peer ends only its session

    def shutdown(self) -> None:
        self._secret_checker.shutdown(wait=False, cancel_futures=True)

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # asyncio's server runs each connection in a task
        number = next(self._numbers)
        task.set_name(f"session-{number}")
        self.connection_tasks.add(task)
        session = Session(number, reader, writer, self.config, self.clock)
        self.sessions[number] = session
        log_event(log, "connected", session=number, peer=session.peer)
        try:
            if self.lifecycle.stopping:
                self._turn_away(session, RejectCode.SHUTTING_DOWN)
            elif (
                self._pending_total >= self.config.max_pending_logons
                or self._pending_logons.get(session.host, 0) >= self.config.max_pending_logons_per_peer
            ):
                log_event(
                    log,
                    "pending_logons_full",
                    logging.WARNING,
                    session=number,
                    peer=session.peer,
                    pending=self._pending_total,
                    from_peer=self._pending_logons.get(session.host, 0),
                )
                self._turn_away(session, RejectCode.TOO_MANY_PENDING_LOGONS)
            else:
                # A connection in its TLS handshake counts as waiting to log on: a flood of stalled handshakes
                # is bounded like a flood of idle connections.
                self._count_pending(session, True)
                if self.tls is None or await self._handshake(session, writer):
                    await self._run_session(session)
        except (ConnectionError, OSError) as error:
            log_event(log, "connection_error", logging.INFO, session=number, error=str(error))
        finally:
            self._count_pending(session, False)
            del self.sessions[number]
            self.connection_tasks.discard(task)
            self.subscribers.forget(session)
            if not session.closed:
                session.closed = True
                with contextlib.suppress(Exception):  # the peer's reset may have closed it already
                    writer.close()
            await self._session_ended(session)

    def _turn_away(self, session: Session, code: RejectCode) -> None:
        """End a connection before its logon: a logout with ``code`` over plain TCP; with TLS it is cut without a
        word, since a plain logout would be garbage to a TLS client and a handshake is not worth spending on it."""
        if self.tls is None:
            session.end(code)
        else:
            session.close_code = code
            session.closed = True
            abort(session.transport)

    async def _handshake(self, session: Session, writer: asyncio.StreamWriter) -> bool:
        """The TLS handshake, within ``tls_handshake_timeout``; False (after logging why) if it fails.

        It runs in the connection's own task, so a client that fails or stalls in it holds up nobody else:
        the engine, the other sessions and their handshakes go on, and the timeout cuts it off.
        """
        assert self.tls is not None
        timeout = self.config.tls_handshake_timeout
        try:
            await writer.start_tls(self.tls, ssl_handshake_timeout=timeout)
        except (OSError, TimeoutError, EOFError) as error:  # ssl.SSLError is an OSError; a timeout aborts
            log_event(
                log,
                "tls_handshake_failed",
                logging.WARNING,
                session=session.number,
                peer=session.peer,
                error=f"{type(error).__name__}: {error}",
                hint="a plain (not TLS) client, an untrusted or missing client certificate, or a stalled client",
            )
            session.closed = True
            abort(session.transport)  # asyncio has cut it already (with no alert to the client); made sure
            return False
        session.secured(writer, certificate_account(writer.get_extra_info("peercert")) if self.mutual else None)
        return True

    def _count_pending(self, session: Session, pending: bool) -> None:
        """A connection starts or stops waiting to log on (its logon was answered, or it went away)."""
        if session.pending == pending:
            return
        session.pending = pending
        step = 1 if pending else -1
        self._pending_total += step
        count = self._pending_logons.get(session.host, 0) + step
        if count:
            self._pending_logons[session.host] = count
        else:
            del self._pending_logons[session.host]

    async def _run_session(self, session: Session) -> None:
        messages = MessageReader(self.config.max_frame)
        try:
            items = await asyncio.wait_for(self._first_messages(session, messages), self.config.logon_timeout)
        except TimeoutError:
            session.end(RejectCode.LOGON_TIMEOUT)
            return
        if not items:
            return  # the client went away before logging on
        logged_on = await self._logon(session, items[0])
        self._count_pending(session, False)
        if not logged_on:
            return
        if not await self.intake.take(session, items[1:]):
            return await self._await_logout(session)
        reader = session.reader
        clock = self.clock
        while not session.closed:
            data = await reader.read(SESSION_READ_SIZE)
            if not data:
                return
            session.last_received = clock()
            if not await self.intake.take(session, messages.feed(data)):
                return await self._await_logout(session)

    @staticmethod
    async def _await_logout(session: Session) -> None:
        """A logout is queued (or the session ended): the engine loop answers it after what came before it."""
        if not session.closed:
            try:
                await asyncio.wait_for(session.ended.wait(), LOGOUT_WAIT)
            except TimeoutError:
                pass

    @staticmethod
    async def _first_messages(session: Session, messages: MessageReader) -> list:
        while True:
            data = await session.reader.read(SESSION_READ_SIZE)
            if not data:
                return []
            items = messages.feed(data)
            if items:
                return items

    async def _logon(self, session: Session, first: object) -> bool:
        if type(first) is Refusal:  # before logon any refusal ends the connection, with its own code
            session.end(first.code, first.text, first.request_id)
            return False
        if type(first) is not Logon:
            session.end(RejectCode.NOT_LOGGED_ON, request_id=getattr(first, "request_id", None))
            return False
        interval = first.heartbeat_interval
        if interval is not None and not MIN_CLIENT_HEARTBEAT <= interval <= MAX_CLIENT_HEARTBEAT:
            session.end(
                RejectCode.INVALID_FIELD,
                f"heartbeat_interval: whole seconds from {MIN_CLIENT_HEARTBEAT} to {MAX_CLIENT_HEARTBEAT}",
                first.request_id,
            )
            return False
        account = first.account[:64]  # as counted and logged: an account name is never longer
        if self.mutual and first.account != session.certificate_account:
            # The certificate was verified in the handshake: it is whom the connection is. Refused before the
            # secret is looked at (and not counted against the account): its holder is known, and is not
            # guessing a secret.
            log_event(
                log,
                "logon_refused_certificate",
                logging.WARNING,
                session=session.number,
                peer=session.peer,
                account=account,
                certificate=session.certificate_account,
            )
            session.end(RejectCode.CERTIFICATE_MISMATCH, request_id=first.request_id)
            return False
        known = first.account in self.links
        guard = self.logon_guard
        wait = guard.admit(account, known, session.host, self.clock())
        if wait is not None:  # backing off or locked out: refused before its secret is looked at
            log_event(
                log,
                "logon_refused_locked",
                logging.WARNING,
                session=session.number,
                peer=session.peer,
                account=account,
                by=wait.key,
                retry_after=round(wait.seconds, 3),
            )
            retry_after = round(wait.seconds, 3)
            session.end(
                RejectCode.LOGON_LOCKED,
                f"too many failed logons for this {wait.key}: try again in {retry_after} s",
                first.request_id,
                retry_after=retry_after,
            )
            return False
        link = self.links.get(first.account)
        stored = link.config.secret_hash if link is not None else _DUMMY_HASH
        try:
            async with self._logon_checks:  # scrypt costs memory and tens of milliseconds: a few at a time
                verified = await asyncio.get_running_loop().run_in_executor(
                    self._secret_checker, verify_secret, first.secret, stored
                )
        except BaseException:
            guard.abandoned(account, known, session.host)
            raise
        if link is None or not verified:
            for key, failures, seconds in guard.failed(account, known, session.host, self.clock()):
                log_event(
                    log,
                    "logon_lockout" if guard.locked_out(key, failures) else "logon_backoff",
                    logging.WARNING,
                    account=account if key == "account" else None,
                    peer=session.host if key == "peer" else None,
                    failures=failures,
                    seconds=seconds,
                )
            log_event(log, "logon_failed", logging.WARNING, session=session.number, peer=session.peer, account=account)
            session.end(RejectCode.LOGON_FAILED, request_id=first.request_id)
            return False
        guard.succeeded(account, known, session.host, self.clock())
        market_data_only = first.market_data_only
        refusal = self._refuse_logon(link, market_data_only)
        if refusal is not None:
            log_event(
                log,
                "logon_refused",
                logging.WARNING,
                session=session.number,
                account=first.account,
                peer=session.peer,
                code=int(refusal),
            )
            session.end(refusal, request_id=first.request_id)
            return False
        if session.closed or self.lifecycle.stopping:
            return False
        if market_data_only:
            link.watchers += 1
            session.market_data_only = True
            session.cancel_on_disconnect = False
        else:
            link.session = session
            session.cancel_on_disconnect = (
                link.config.cancel_on_disconnect if first.cancel_on_disconnect is None else first.cancel_on_disconnect
            )
        self.logged_on += 1
        session.link = link
        session.account = first.account
        if interval is not None:
            session.heartbeat_interval = float(interval)
        session.last_received = self.clock()
        self.intake.put(session, AcceptLogon(first.request_id))  # ahead of everything the session sends
        return True

    def _refuse_logon(self, link: AccountLink, market_data_only: bool) -> RejectCode | None:
        """Why an account whose secret was right may not have this session now (None: it may)."""
        if self.logged_on >= self.config.max_sessions:
            return RejectCode.TOO_MANY_SESSIONS
        if market_data_only:
            return RejectCode.ALREADY_LOGGED_ON if link.watchers >= MAX_MARKET_DATA_SESSIONS else None
        return RejectCode.ALREADY_LOGGED_ON if link.session is not None else None

    async def _session_ended(self, session: Session) -> None:
        self.ends[session.close_code] += 1
        link = session.link
        if link is None:
            log_event(
                log,
                "disconnected",
                session=session.number,
                peer=session.peer,
                code=None if session.close_code is None else int(session.close_code),
            )
            return
        self.logged_on -= 1
        if link.session is session:
            link.session = None
        elif session.market_data_only:
            link.watchers -= 1
        log_event(
            log,
            "session_ended",
            session=session.number,
            account=session.account,
            code=None if session.close_code is None else int(session.close_code),
            cancel_on_disconnect=session.cancel_on_disconnect,
        )
        if session.cancel_on_disconnect and not self.lifecycle.stopping:
            self.intake.put(None, Disconnected(session.account))

    async def heartbeats(self) -> None:
        """Send a heartbeat to sessions that heard nothing for an interval; end those silent too long."""
        factor = self.config.heartbeat_timeout_factor
        while True:
            shortest = min((s.heartbeat_interval for s in self.sessions.values()), default=1.0)
            await asyncio.sleep(max(0.02, min(shortest / 4, 1.0)))
            now = self.clock()
            for session in list(self.sessions.values()):
                if not session.accepted or session.closed or session.waiting:
                    continue
                if now - session.last_received > session.heartbeat_interval * factor:
                    log_event(
                        log, "heartbeat_timeout", logging.WARNING, session=session.number, account=session.account
                    )
                    session.end(RejectCode.HEARTBEAT_TIMEOUT)
                elif now - session.last_sent >= session.heartbeat_interval:
                    session.write(ServerHeartbeat(ts=time.time_ns()))
