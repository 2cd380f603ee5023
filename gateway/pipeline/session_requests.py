"""Requests about the session itself, answered in the engine loop in their place.

How this works
--------------
A logon is checked by the session host (:mod:`gateway.sessions.host`) but
accepted here, in the engine loop's order, so that the session receives
exactly the account's messages numbered from the ``next_seq`` it is told.
Logout, refusals of malformed frames, runs of requests refused unprocessed,
ping, resend and market-data (un)subscriptions are answered here too: each
takes its place in the batch's outbox behind everything the session sent
before it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from exchange import RejectCode
from exchange.instruments import Instrument, cents_to_eur
from gateway.config import ServerConfig
from gateway.logs import log_event
from gateway.marketdata.feed import CHANNELS, MarketDataFeed
from gateway.persistence.journal import JournalWriter, session_record
from gateway.pipeline.intake import AcceptLogon, Intake, NotProcessed
from gateway.pipeline.replies import Replies, session_reject
from gateway.pipeline.sequencer import Sequencer
from gateway.sessions.session import Session
from gateway.wire.messages import InstrumentTerms, LogonAccepted, Pong, ResendBegin, ResendEnd, Subscribed, Unsubscribed
from gateway.wire.protocol import (
    PROTOCOL_VERSION,
    Logout,
    PingRequest,
    Refusal,
    ResendRequest,
    SubscribeRequest,
    UnsubscribeRequest,
)

log = logging.getLogger("carbonx.gateway")


class SessionRequests:
    """Answers logon acceptance, logout, refusals, ping, resend and subscriptions; see the module notes."""

    def __init__(
        self, sequencer: Sequencer, journal: JournalWriter, replies: Replies, intake: Intake, config: ServerConfig
    ) -> None:
        self.sequencer = sequencer
        self.journal = journal
        self.replies = replies
        self.intake = intake
        self.feed: MarketDataFeed = sequencer.feed
        self.config = config
        self.instrument_list = [instrument_entry(instrument) for instrument in sequencer.engine.instruments.values()]
        self.answers: dict[type, Callable[..., None]] = {
            AcceptLogon: self.accept_logon,
            Logout: self.logout,
            Refusal: self.refusal,
            NotProcessed: self.not_processed,
            PingRequest: self.ping,
            ResendRequest: self.resend,
            SubscribeRequest: self.subscribe,
            UnsubscribeRequest: self.unsubscribe,
        }

    def _futures_list(self) -> list:
        """The futures contracts listed now, nearest first, then their TAS and spread books (they come and go with
        the calendar)."""
        engine = self.sequencer.engine
        listed = (engine.instrument(symbol) for symbol in engine.futures_contracts(with_books=True))
        return [instrument_entry(instrument) for instrument in listed if instrument is not None]

    def accept_logon(self, session: Session, request: AcceptLogon) -> None:
        """In the engine loop: the logon's answer takes its place in the outbox, after every message the
        account had before it; a session with cancel-on-disconnect is journaled (see Sequencer.cod_sessions)."""
        link = session.link
        if session.closed or link is None:
            return
        if session.cancel_on_disconnect:
            self.journal.append(session_record(session.account))
            self.sequencer.session_started(session.account)
        market_data_only = session.market_data_only
        config = self.config
        next_seq = self.sequencer.next_seq(session.account)
        accepted = LogonAccepted(
            account=session.account,
            protocol_version=PROTOCOL_VERSION,
            session_id=session.number,
            heartbeat_interval=session.heartbeat_interval,
            heartbeat_timeout=session.heartbeat_interval * config.heartbeat_timeout_factor,
            max_frame=config.max_frame,
            throttle_rate=config.throttle_rate,
            throttle_burst=config.throttle_burst,
            cancel_on_disconnect=session.cancel_on_disconnect,
            operator=link.config.is_operator,
            next_seq=next_seq,
            instruments=self.instrument_list + self._futures_list(),
            ts=time.time_ns(),
        )
        if market_data_only:  # stated only when asked for: a trading session's logon_accepted is as it was
            accepted.market_data_only = True
        self.replies.direct(session, accepted, request.request_id)
        log_event(
            log,
            "logon",
            session=session.number,
            account=session.account,
            peer=session.peer,
            next_seq=next_seq,
            market_data_only=market_data_only,
        )

    def logout(self, session: Session, request: Logout) -> None:
        log_event(log, "logout", session=session.number, account=session.account)
        self.replies.end_session(session, None, None, request.request_id)

    def refusal(self, session: Session, refusal: Refusal) -> None:
        self.replies.refused[refusal.code] += 1  # a frame that was not a request, or one the session may not send
        if refusal.fatal:  # a frame that breaks the stream: logout with its code, after the answers before it
            self.replies.end_session(session, refusal.code, refusal.text)
            return
        self.replies.answer(
            session,
            session_reject(refusal.code, refusal.text, refusal.message_type, refusal.field, refusal.client_order_id),
            refusal,
        )

    def not_processed(self, session: Session, run: NotProcessed) -> None:
        self.replies.refuse_unprocessed(session, run.code, run.requests)
        self.intake.answered(session, run)

    def ping(self, session: Session, request: PingRequest) -> None:
        """``pong``, unnumbered, after every answer to what the session sent before the ping."""
        self.replies.direct(session, Pong(ts=time.time_ns()), request.request_id)

    def resend(self, session: Session, request: ResendRequest) -> None:
        """Send again the account's numbered messages from ``from_seq`` on, as they were first sent.

        Between a ``resend_begin`` and a ``resend_end`` (neither numbered)
        come the kept frames, byte for byte, in seq order; ``unavailable``
        lists the ranges not kept (older than the resend window, or answers
        to queries from before a restart) for the client to fill with
        ``order_status`` and ``balances``.
        """
        account = session.account
        last = self.sequencer.next_seq(account) - 1
        if not 1 <= request.from_seq <= last + 1:
            self.replies.reject(
                session,
                request,
                RejectCode.INVALID_FIELD,
                f"{RejectCode.INVALID_FIELD.text}: from_seq from 1 to {last + 1} (next_seq)",
                "from_seq",
            )
            return
        frames, last = self.sequencer.resend(account, request.from_seq)
        unavailable: list[tuple[int, int]] = []
        expected = request.from_seq
        for seq, _ in frames:
            if seq > expected:
                unavailable.append((expected, seq - 1))
            expected = seq + 1
        if expected <= last:
            unavailable.append((expected, last))
        begin = ResendBegin(
            from_seq=request.from_seq, to_seq=last, messages=len(frames), unavailable=unavailable, ts=time.time_ns()
        )
        end = ResendEnd(from_seq=request.from_seq, to_seq=last, ts=time.time_ns())
        if request.request_id is not None:
            begin.request_id = end.request_id = request.request_id
        self.replies.resend(session, begin, [frame for _, frame in frames], end)

    def _subscription_keys(
        self, session: Session, request: SubscribeRequest | UnsubscribeRequest
    ) -> list[tuple[str, str]] | None:
        """(instrument, channel) pairs a (un)subscription names; None after answering a bad one."""
        instruments = list(self.feed.instruments) if request.instruments is None else request.instruments
        channels = list(CHANNELS) if request.channels is None else request.channels
        unknown = [symbol for symbol in instruments if symbol not in self.feed.instruments]
        if unknown:
            self.replies.refuse(session, request, RejectCode.UNKNOWN_INSTRUMENT)
            return None
        if any(channel not in CHANNELS for channel in channels):
            self.replies.reject(
                session,
                request,
                RejectCode.INVALID_FIELD,
                f"{RejectCode.INVALID_FIELD.text}: channels are {', '.join(CHANNELS)}",
                "channels",
            )
            return None
        return [(symbol, channel) for symbol in dict.fromkeys(instruments) for channel in dict.fromkeys(channels)]

    def subscribe(self, session: Session, request: SubscribeRequest) -> None:
        """Answer now; the subscription starts when the batch is released (``_apply_subscription``): the current
        state of each channel, then every message of the batches released after it."""
        self._change_subscription(session, request, True)

    def unsubscribe(self, session: Session, request: UnsubscribeRequest) -> None:
        self._change_subscription(session, request, False)

    def _change_subscription(
        self, session: Session, request: SubscribeRequest | UnsubscribeRequest, subscribe: bool
    ) -> None:
        keys = self._subscription_keys(session, request)
        if keys is None:
            return
        answer = Subscribed if subscribe else Unsubscribed
        self.replies.answer(
            session,
            answer(
                instruments=sorted({symbol for symbol, _ in keys}),
                channels=sorted({channel for _, channel in keys}),
                ts=time.time_ns(),
            ),
            request,
        )
        self.replies.change_subscription(session, keys, subscribe)


def instrument_entry(instrument: Instrument) -> InstrumentTerms:
    """An instrument's terms for logon_accepted: prices in ticks, fees in cents per lot."""
    tick = instrument.tick_size
    return InstrumentTerms(
        symbol=instrument.symbol,
        name=instrument.name,
        lot_units=instrument.lot_units,
        tick_size=cents_to_eur(tick),
        min_lots=instrument.min_lots,
        max_lots=instrument.max_lots,
        min_price=instrument.min_price // tick,
        max_price=instrument.max_price // tick,
        reference_price=instrument.reference_price // tick,
        market_collar=None if instrument.market_collar is None else instrument.market_collar // tick,
        price_band_bps=instrument.price_band_bps,
        price_band_sides="one" if instrument.price_band_one_sided else "both",
        maker_fee=instrument.maker_fee,
        taker_fee=instrument.taker_fee,
        volatility_band_bps=instrument.volatility_band_bps,
        volatility_call_seconds=instrument.volatility_call_seconds,
    )
