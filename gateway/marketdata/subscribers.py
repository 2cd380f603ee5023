"""Market data over the gateway socket: who subscribed to what, and their frames of each batch.

How this works
--------------
A session subscribes to (instrument, channel) pairs. The subscription takes
effect when its batch is released (:meth:`Subscribers.apply`), in the
outbox's order: the session first gets the current state of each channel,
then every message of the batches released after it. Each market-data
message of a batch is encoded once for all who take it, and gathered into
each subscriber's next write (:meth:`Subscribers.gather`).
"""

from __future__ import annotations

from gateway.marketdata.feed import MarketDataFeed
from gateway.sessions.session import Session
from gateway.wire.messages import MarketData
from gateway.wire.protocol import encode_frame


class Subscribers:
    """The socket's market-data subscriptions; see the module notes."""

    def __init__(self, feed: MarketDataFeed) -> None:
        self.feed = feed
        self.by_key: dict[tuple[str, str], set[Session]] = {}  # (instrument, channel) -> sessions

    def apply(self, session: Session, keys: list[tuple[str, str]], subscribe: bool) -> None:
        """At release. The state sent is the feed's now, which may already include batches still waiting for
        the disk; their market data, released after, carries md_seq at or below the state's and is passed over
        by the subscriber (docs/MARKET_DATA.md)."""
        if not subscribe:
            for key in keys:
                session.subscriptions.discard(key)
                self.by_key.get(key, set()).discard(session)
            return
        if session.closed:  # its connection's clean-up has run: nothing to add it to
            return
        for key in keys:
            session.subscriptions.add(key)
            self.by_key.setdefault(key, set()).add(session)
        for symbol in dict.fromkeys(symbol for symbol, _ in keys):
            for channel, message in self.feed.state(symbol):
                if (symbol, channel) in session.subscriptions:
                    session.write(message)  # market data: not numbered for the account

    def forget(self, session: Session) -> None:
        """The session's connection is over."""
        for key in session.subscriptions:
            self.by_key[key].discard(session)

    def gather(self, market_data: list[tuple[str, str, MarketData]], gathered: dict[Session, list[bytes]]) -> None:
        """A batch's market data for the socket subscribers, gathered for their sessions' next write."""
        by_key = self.by_key
        for instrument, channel, message in market_data:
            sessions = by_key.get((instrument, channel))
            if sessions:
                frame = encode_frame(message)
                for session in sessions:
                    frames = gathered.get(session)
                    if frames is None:
                        gathered[session] = [frame]
                    else:
                        frames.append(frame)
