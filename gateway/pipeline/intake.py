"""The intake: what sessions send, admitted to the engine's queue or refused in its place.

How this works
--------------
Every logged-on session's task hands each read's messages to
:meth:`Intake.take`. A message within the session's rate (a token bucket)
and within the queue's room goes on the one request queue the engine task
drains (:mod:`gateway.pipeline.engine_loop`). The rest is refused unprocessed
(708 over the session's rate, 719 over capacity) without ever waiting for
room: a run of consecutive refusals is queued as one :class:`NotProcessed`
item so that each reject keeps its place among the session's answers.

The queue's bound is on requests (``queue_size``), and one session may hold
at most a quarter of it, so a single flooding client cannot leave the others
only 719s. Refusals waiting to be answered are bounded too, per session and
in all: past the bound the session's task stops reading until the engine
has answered them (TCP backpressure, with nothing dropped).

Besides sessions' requests the queue carries the gateway's own
(:class:`AcceptLogon`, :class:`Disconnected`, :class:`OperatorCommands`),
so that they run in sequence with everything else.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exchange import RejectCode
from gateway.config import ServerConfig
from gateway.lifecycle import Lifecycle
from gateway.logs import log_event
from gateway.sessions.session import Session
from gateway.wire.protocol import Heartbeat, Logon, Logout, Refusal, type_tag

log = logging.getLogger("carbonx.gateway")

MAX_THROTTLE_PAUSE = 1.0  # seconds a session over its rate goes unread, at the most, after a read
# Refused requests (NotProcessed) of one session waiting for the engine to answer them, at most: past this its
# task stops reading until they are answered. A session within its rate never gets near it (it would take
# seconds of its whole rate refused and unanswered); it bounds what a flood can make the exchange hold.
MAX_REFUSED_WAITING = 20_000
MAX_REFUSED_WAITING_IN_ALL = 200_000  # the same across every session (about 70 MB of refused requests at the most)


@dataclass(frozen=True, slots=True)
class NotProcessed:
    """Consecutive requests of a session refused unprocessed (``code``: 708 over the session's rate, 719 over the
    exchange's capacity), queued as one item so that their rejects keep their place among the answers (and a
    flood costs the queue one item per run, not one per message)."""

    code: RejectCode
    requests: list


@dataclass(frozen=True, slots=True)
class OperatorCommands:
    """Engine commands from the exchange's own operations (the registry's compliance feed, the end of day),
    run in their place in the queue; ``done`` receives their events."""

    commands: list
    done: asyncio.Future


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The gateway's own request: the account's session ended and it has cancel-on-disconnect."""

    account: str


@dataclass(frozen=True, slots=True)
class AcceptLogon:
    """The gateway's own request: a logon passed its checks; the engine loop accepts it in its place, so that
    the session receives exactly the account's messages numbered from the ``next_seq`` it is told."""

    request_id: int | str | None


QueueItem = tuple[Session | None, object, float]  # (who asked, or None: the gateway; the request; queued at)


def requests_in(item: QueueItem) -> int:
    """Requests a queue item stands for: a run of refusals, each of its requests; anything else, one."""
    request = item[1]
    return len(request.requests) if type(request) is NotProcessed else 1


def refused_in_place(code: RejectCode, request: Any) -> Refusal:
    """A request this session may not send, answered with ``code`` in its place among the session's answers (the
    session goes on)."""
    return Refusal(code, code.text, fatal=False, message_type=type_tag(type(request)), request_id=request.request_id)


class Intake:
    """The engine's request queue and the admission of what sessions send; see the module notes."""

    def __init__(self, config: ServerConfig, clock: Callable[[], float], lifecycle: Lifecycle) -> None:
        self.config = config
        self.clock = clock
        self.lifecycle = lifecycle
        # Requests for the engine, in order, with the clock when each was queued. Sessions never wait to add to
        # it: past ``queue_size`` what they send is refused at once (719), and a request that has waited longer
        # than ``max_queue_delay`` is refused when its turn comes rather than run late (see the engine loop).
        self.requests: asyncio.Queue[QueueItem] = asyncio.Queue()
        # Requests on the queue, not counting runs of refused ones: the queue's bound is on these (a flood's
        # refusals, queued to be answered in their place, must not take the room of other sessions' requests).
        self.queued = 0
        self.overloaded = 0  # requests refused with 719, for the log and the benchmarks
        self.refused_waiting = 0  # requests in NotProcessed runs queued and not answered yet, every session's
        self.session_share = max(1, config.queue_size // 4)  # requests one session may have queued at once
        # Messages read from logged-on sessions by class (heartbeats aside), refused ones too, for /metrics: one
        # increment of a C dict's entry a message.
        self.received: defaultdict[type, int] = defaultdict(int)
        self._overload_logged = float("-inf")

    async def take(self, session: Session, items: list) -> bool:
        """Queue a logged-on session's messages for the engine; False when the session must stop reading.

        Every message gets exactly one answer, a refused one too, in its place
        among the answers: 708 when the session is over its rate, 719 when the
        exchange's queue is full (the session is never made to wait for room:
        that would leave its requests to age unseen in the socket). A client
        far over its rate is also slowed down: its task sleeps for as long as
        the messages it had no token for would have taken at the rate (at
        most ``MAX_THROTTLE_PAUSE``), reading nothing meanwhile, so a flood
        costs the engine task at most one read's worth of rejects a second.
        """
        if self.lifecycle.stopping:  # the stop answers what was queued before it; nothing read after it is taken
            return False
        now = self.clock()
        link = session.link
        assert link is not None  # only logged-on sessions are read into the intake
        account_kind = link.config.kind
        market_data_only = session.market_data_only
        # Requests the queue still takes from this session: what is left of it, and of the session's share (a
        # quarter: one session alone cannot fill it and leave the others only 719s).
        room = min(self.config.queue_size - self.queued, self.session_share - session.queued)
        max_batch = self.config.max_batch
        refused: list = []  # the run of messages refused unprocessed, not yet queued
        refused_code = RejectCode.THROTTLED  # the code of the run in ``refused``
        throttled = 0
        received = self.received
        for item in items:
            if session.closed:  # ended while this read was being queued (a heartbeat timeout, say)
                return False
            kind = item.__class__
            if kind is Heartbeat:
                continue
            received[kind] += 1
            if kind is not Logout and not (kind is Refusal and item.fatal):
                code = (
                    RejectCode.THROTTLED
                    if not session.bucket.take(now, kind.cost)
                    else RejectCode.OVERLOADED
                    if room <= 0
                    else None
                )
                if code is not None:
                    if refused and code is not refused_code:
                        self.refuse_run(session, refused_code, refused)
                        refused = []
                    refused.append(item)
                    refused_code = code
                    throttled += code is RejectCode.THROTTLED
                    if len(refused) >= max_batch:  # a run is at most a batch: other sessions' turns come between
                        self.refuse_run(session, refused_code, refused)
                        refused = []
                    continue
            if refused:
                self.refuse_run(session, refused_code, refused)
                refused = []
            room -= 1
            if kind is Refusal and item.fatal:  # answered after the requests before it, then closed
                self.put(session, item)
                return False
            if kind is Logout:
                self.put(session, item)
                return False
            if kind is Logon:
                self.put(session, refused_in_place(RejectCode.ALREADY_LOGGED_ON_HERE, item))
            elif kind is not Refusal and market_data_only and not kind.market_data:
                self.put(session, refused_in_place(RejectCode.MARKET_DATA_SESSION, item))
            elif kind is not Refusal and kind.role and kind.role != account_kind:
                self.put(session, refused_in_place(RejectCode.NOT_AUTHORISED, item))
            else:
                self.put(session, item)
        if refused:
            self.refuse_run(session, refused_code, refused)
        if throttled or session.refused_waiting >= MAX_REFUSED_WAITING or self.refusals_full():
            session.waiting = True  # not silent: slowed down by the exchange
            try:
                if throttled:
                    await asyncio.wait_for(
                        session.ended.wait(), min(throttled / self.config.throttle_rate, MAX_THROTTLE_PAUSE)
                    )
            except TimeoutError:
                pass
            # The exchange holds a bounded part of this session's refused excess: no more is read until it has
            # answered it.
            while session.refused_waiting >= MAX_REFUSED_WAITING and not session.closed:
                session.refusals_answered.clear()
                await session.refusals_answered.wait()
            while self.refusals_full() and not session.closed:  # every session's excess together
                await asyncio.sleep(0.005)
            session.waiting = False
            session.last_received = self.clock()
        return not session.closed

    def refusals_full(self) -> bool:
        return self.refused_waiting >= MAX_REFUSED_WAITING_IN_ALL

    def put(self, session: Session | None, request: object) -> None:
        """Put a request on the engine's queue (never waits: the queue's bound is kept by ``_take``)."""
        self.queued += 1
        if session is not None:
            session.queued += 1
        self.requests.put_nowait((session, request, self.clock()))

    def refuse_run(self, session: Session, code: RejectCode, requests: list) -> None:
        """Queue a run of refused requests, to be answered in their place."""
        session.refused_waiting += len(requests)
        self.refused_waiting += len(requests)
        if code is RejectCode.OVERLOADED:
            self.note_overload(len(requests))
        self.requests.put_nowait((session, NotProcessed(code, requests), self.clock()))

    def note_overload(self, count: int) -> None:
        """Count requests refused for want of capacity; the log says so once a second at the most."""
        self.overloaded += count
        now = self.clock()
        if now - self._overload_logged >= 1.0:
            self._overload_logged = now
            log_event(
                log,
                "overloaded",
                logging.WARNING,
                refused_so_far=self.overloaded,
                queued=self.queued,
                hint="the excess is refused with 719; raise capacity or ask clients to slow down",
            )

    def take_all(self) -> list[QueueItem]:
        """Everything queued, at once (the start-up batch, run before anyone is served)."""
        items = []
        while not self.requests.empty():
            items.append(self.requests.get_nowait())
            self.requests.task_done()
        return items

    def answered(self, session: Session, run: NotProcessed) -> None:
        """The engine has answered a run of refusals: the session may read again once all of its are."""
        session.refused_waiting -= len(run.requests)
        self.refused_waiting -= len(run.requests)
        if not session.refused_waiting:
            session.refusals_answered.set()
