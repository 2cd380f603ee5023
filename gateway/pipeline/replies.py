"""Replies: how an answer takes its place in a batch's outbox.

How this works
--------------
Everything a batch sends waits in its outbox, in order, until the journal
has the batch (:mod:`gateway.pipeline.release` sends it). Entries are typed:

- numbered messages for an account (its ``seq``, kept for resend), made by
  the sequencer from engine events, or by :meth:`Replies.answer` for a
  request that changed nothing (the journal records only that a number was
  used: a ``skip`` record);
- :class:`Direct`: a message to one session, unnumbered (logon_accepted,
  pong, resend markers, a market-data session's answers);
- :class:`Resent`: a frame sent again, byte for byte;
- :class:`EndSession`: log the session out once what precedes is sent;
- :class:`SubscriptionChange`: start or stop a session's market data at the
  batch's release.

Refusals are built here too, one way each: a request the gateway could not
turn into a command (:meth:`Replies.refuse`), one it did not process at all
(708, 719: :meth:`Replies.refuse_unprocessed`), and a session-level reject.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

import msgspec

from exchange import RejectCode
from gateway.persistence.journal import JournalWriter, skip_record
from gateway.pipeline.reports import rejected_order_report, request_rejected
from gateway.pipeline.sequencer import Numbered, Sequencer
from gateway.sessions.session import Session
from gateway.wire.messages import (
    LogonAccepted,
    MessageRejected,
    NumberedMessage,
    Pong,
    RejectedOrderReport,
    RequestRejected,
    ResendBegin,
    ResendEnd,
)
from gateway.wire.protocol import NewOrderRequest, Refusal, type_tag

# What goes to one session unnumbered: the gateway's own, and a market-data session's answers.
DirectMessage = LogonAccepted | Pong | ResendBegin | ResendEnd | NumberedMessage


class Direct(NamedTuple):
    """A message to one session, not numbered for its account."""

    session: Session
    message: DirectMessage


class Resent(NamedTuple):
    """A numbered message sent again to the session that asked, as it was first sent."""

    session: Session
    frame: bytes


@dataclass(frozen=True, slots=True)
class EndSession:
    """Log the session out (``code`` None: at its request) once what precedes it is sent."""

    session: Session
    code: RejectCode | None
    text: str | None
    request_id: int | str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionChange:
    """(Un)subscribe the session to (instrument, channel) pairs when its batch is released, so that it receives
    market data of exactly the batches released after its ``subscribed``."""

    session: Session
    keys: list[tuple[str, str]]
    subscribe: bool


# Everything a batch's outbox holds: numbered messages (gateway.pipeline.sequencer.Numbered) and the gateway's own.
OutboxEntry = Numbered | Direct | Resent | EndSession | SubscriptionChange


class Replies:
    """Puts answers in the outbox of the batch in hand; see the module notes."""

    def __init__(self, sequencer: Sequencer, journal: JournalWriter) -> None:
        self.sequencer = sequencer
        self.journal = journal
        self.outbox: list[OutboxEntry] = []  # the batch in hand's: everything it sends, in order
        # The gateway's own refusals by code (the engine's are the order tracker's), for /metrics; counted here,
        # where every one of them is made, and nowhere an accepted request passes.
        self.refused: defaultdict[RejectCode, int] = defaultdict(int)

    def take_outbox(self) -> list[OutboxEntry]:
        """The batch is committed: its outbox; the next batch starts an empty one."""
        outbox, self.outbox = self.outbox, []
        return outbox

    def answer(self, session: Session, message: NumberedMessage, request: object) -> None:
        """Answer a request that changed nothing: numbered for the account, journaled only as a number used."""
        request_id = getattr(request, "request_id", None)
        if request_id is not None:
            message.request_id = request_id
        if session.market_data_only:  # not the account's trading session: answered to it alone, unnumbered
            self.outbox.append(Direct(session, message))
            return
        self.journal.append(skip_record(session.account, 1))
        self.sequencer.deliver(session.account, message, self.outbox)

    def direct(self, session: Session, message: DirectMessage, request_id: int | str | None = None) -> None:
        """An unnumbered message to the session alone, in its place among the batch's answers."""
        if request_id is not None:
            message.request_id = request_id
        self.outbox.append(Direct(session, message))

    def refuse(self, session: Session, request: object, code: RejectCode) -> None:
        """A request that could not become a command (InvalidCommand): answered like an engine reject."""
        self.refused[code] += 1
        ts = time.time_ns()
        message: RejectedOrderReport | RequestRejected
        if isinstance(request, NewOrderRequest):
            known = self.sequencer.engine.has_instrument(request.instrument)
            message = rejected_order_report(request.client_order_id, request.instrument if known else None, code, ts)
        else:
            message = request_rejected(
                request_type(request),
                code,
                ts,
                getattr(request, "order_id", None),
                getattr(request, "client_order_id", None),
            )
        self.answer(session, message, request)

    def reject(self, session: Session, request: object, code: RejectCode, text: str, field: str | None) -> None:
        """A session-level reject of a request that was read but not processed (a field out of range)."""
        self.refused[code] += 1
        self.answer(
            session,
            session_reject(
                code,
                text,
                request_type(request),
                field,
                None,
            ),
            request,
        )

    def refuse_unprocessed(self, session: Session, code: RejectCode, requests: list) -> None:
        """Answer requests that were not processed (708, 719) with a ``reject`` each: one journal record for the
        numbers they use (an overloaded exchange refuses thousands a second)."""
        self.refused[code] += len(requests)
        ts = time.time_ns()  # one moment for the run: refused together
        if session.market_data_only:
            for request in requests:
                self.answer(session, unprocessed_reject(code, request, ts), request)
            return
        self.journal.append(skip_record(session.account, len(requests)))
        deliver, account, outbox = self.sequencer.deliver, session.account, self.outbox
        for request in requests:
            message = unprocessed_reject(code, request, ts)
            if request.request_id is not None:
                message.request_id = request.request_id
            deliver(account, message, outbox)

    def end_session(
        self, session: Session, code: RejectCode | None, text: str | None, request_id: int | str | None = None
    ) -> None:
        self.outbox.append(EndSession(session, code, text, request_id))

    def change_subscription(self, session: Session, keys: list[tuple[str, str]], subscribe: bool) -> None:
        self.outbox.append(SubscriptionChange(session, keys, subscribe))

    def resend(self, session: Session, begin: ResendBegin, frames: list[bytes], end: ResendEnd) -> None:
        outbox = self.outbox
        outbox.append(Direct(session, begin))
        outbox += [Resent(session, frame) for frame in frames]
        outbox.append(Direct(session, end))


def request_type(request: object) -> str:
    """The wire ``type`` of a request read from a session (an inbound schema)."""
    if not isinstance(request, msgspec.Struct):
        raise TypeError(f"{request!r} is not a message read from a session")
    return type_tag(type(request))


def unprocessed_reject(code: RejectCode, request: object, ts: int) -> MessageRejected:
    """The ``reject`` of a request the exchange did not process (708 throttled, 719 over capacity)."""
    ref_type = request.message_type if isinstance(request, Refusal) else request_type(request)
    return MessageRejected(ref_type, None, getattr(request, "client_order_id", None), int(code), code.text, ts)


def session_reject(
    code: RejectCode, text: str, message_type: str | None, field: str | None, client_order_id: int | str | None
) -> MessageRejected:
    """A session-level reject: the message was not processed at all."""
    return MessageRejected(message_type, field, client_order_id, int(code), text, time.time_ns())
