"""Release: a batch the journal has, handed to each of its audiences, in order.

How this works
--------------
Once the journal has a batch (synced, with ``journal_fsync = "batch"``),
:class:`Release` hands it on, one consumer per audience:

1. **settlement** gets the engine events (a ``put_nowait`` into its bounded
   queue: matching never waits on the ledger);
2. **sessions** get the outbox, in order (:class:`SessionDelivery`): the
   numbered messages to the account's logged-on session, the gateway's own
   messages, logouts and subscription changes where they stand;
3. **market data** goes to the socket's subscribers and to the MQTT
   publisher, with the batch's fills (the trade reports made of its Trade
   events) for the accounts' private topics;
4. **timers** follow the batch's engine events (volatility interruptions,
   primary auctions' windows);
5. the operator commands of the batch get their events.

Each session's frames of the batch go out in one write (a system call per
frame would cost more than the frame's encoding); anything written
otherwise goes after what is gathered before it, so order holds.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.marketdata.mqtt import MqttPublisher
from gateway.marketdata.subscribers import Subscribers
from gateway.pipeline.engine_loop import ReleasedBatch
from gateway.pipeline.replies import Direct, EndSession, OutboxEntry, Resent, SubscriptionChange
from gateway.pipeline.sequencer import Numbered
from gateway.pipeline.timers import Timers
from gateway.sessions.session import AccountLink, Session, write_gathered
from gateway.settlement.service import SettlementService
from gateway.wire.messages import LogonAccepted


class SessionDelivery:
    """The outbox of a released batch to the sessions, in order."""

    def __init__(self, links: Mapping[str, AccountLink], subscribers: Subscribers) -> None:
        self.links = links
        self.subscribers = subscribers

    def deliver(self, outbox: list[OutboxEntry], gathered: dict[Session, list[bytes]]) -> None:
        """Gather each numbered frame for its account's session; write the gateway's own entries in their place."""
        links = self.links
        for entry in outbox:
            if type(entry) is Numbered:  # to the account's trading session, if one is logged on
                link = links.get(entry.account)
                if link is not None:
                    session = link.session
                    if session is not None and session.accepted:
                        frames = gathered.get(session)
                        if frames is None:
                            gathered[session] = [entry.frame]
                        else:
                            frames.append(entry.frame)
                continue
            write_gathered(gathered)  # the gateway's own entries go after what was gathered before them
            if type(entry) is Direct:
                session = entry.session
                if type(entry.message) is LogonAccepted:
                    if session.closed:
                        continue
                    session.accepted = True  # from now on it receives the account's messages
                session.write(entry.message)
            elif type(entry) is Resent:
                entry.session.write_frame(entry.frame)
            elif type(entry) is EndSession:  # a logout, after everything answered before it
                entry.session.end(entry.code, entry.text, entry.request_id)
            elif type(entry) is SubscriptionChange:
                self.subscribers.apply(entry.session, entry.keys, entry.subscribe)
            else:  # an entry nobody delivers would be a message silently lost: stop and say so
                raise TypeError(f"no delivery for the outbox entry {entry!r}")


class Release:
    """Hands a released batch to settlement, sessions, market data and timers; see the module notes."""

    def __init__(
        self,
        settlement: SettlementService,
        sessions: SessionDelivery,
        subscribers: Subscribers,
        publisher: MqttPublisher | None,
        timers: Timers,
    ) -> None:
        self.settlement = settlement
        self.sessions = sessions
        self.subscribers = subscribers
        self.publisher = publisher
        self.timers = timers

    def __call__(self, batch: ReleasedBatch) -> None:
        events, outbox, fills, market_data, finished, _ = batch
        if events:
            self.settlement.submit(events)  # a SettlementError stops the exchange (the engine loop's fail)
        gathered: dict[Session, list[bytes]] = {}
        self.sessions.deliver(outbox, gathered)
        if market_data:
            self.subscribers.gather(market_data, gathered)
            if self.publisher is not None:
                self.publisher.offer(market_data, fills)
        write_gathered(gathered)
        if events:
            self.timers.follow(events)
        for future, done_events in finished:
            if not future.done():
                future.set_result(done_events)
