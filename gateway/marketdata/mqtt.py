"""Publishing market data to an MQTT broker (mosquitto), off the matching path.

How this works
--------------
The engine task hands each batch's market data to :meth:`MqttPublisher.offer`,
which only files it and never waits; one task, ``mqtt-publisher``, connects
to the broker (``aiomqtt``) and publishes what is filed. Three kinds of
message are filed three ways, so that a slow or absent broker costs memory
within set bounds and never costs matching:

- **Reliable** (trades, primary auctions, private fills; QoS 1): a bounded queue, published in
  order, each taken off the queue only once the broker has acknowledged it.
  After a disconnection the unacknowledged ones are sent again (a subscriber
  may see one twice: ``md_seq`` tells). Only if the queue is full (the broker
  unreachable for longer than the bound lasts) is one dropped: never
  silently (counted in ``dropped_reliable``, logged, and seen by subscribers
  as a gap in ``md_seq``).
- **Book updates and tops of book** (QoS 0; tops retained): a bounded queue
  too, every change published in order, but when it is full its messages
  are conflated instead: they are dropped (counted in ``conflated_updates``)
  and each instrument's current snapshot and top of book are published in
  their place, so subscribers see a gap and realign on the snapshot.
- **State** (statistics, status; retained): only the latest per instrument
  and channel is kept ("latest state wins"), and published retained, so a
  subscriber that joins late gets it at once. Snapshots are retained too.

On every (re)connection the publisher first publishes the retained state of
every instrument, then carries on. Snapshots are also published every
``snapshot_interval`` seconds for instruments whose book changed, so a late
joiner, or one that missed an update, realigns within that time.

The broker's URL is ``mqtt://`` or, for TLS, ``mqtts://`` (:func:`parse_mqtt_url`); over TLS the
broker's certificate and host name are verified with the context of :func:`broker_tls_context`
(``mqtt_ca_file``, else the system's trusted CAs), which aiomqtt is given as it stands.

Topics (docs/MARKET_DATA.md): ``carbonx/md/<instrument>/<channel>`` with the
channels ``snapshot``, ``updates``, ``top``, ``trades``, ``stats``,
``status``, ``auctions``; ``carbonx/private/<account>/fills`` for each account's fills.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import deque
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiomqtt

from exchange import ConfigError
from gateway.logs import log_event
from gateway.marketdata.feed import MarketDataFeed
from gateway.tls import client_context
from gateway.wire.messages import AuctionReport, ExecutionReport, MarketData, PublicTrade, Statistics
from gateway.wire.protocol import encode_message

log = logging.getLogger("carbonx.mqtt")

TOPIC_ROOT = "carbonx"
RECONNECT_DELAY = 0.5  # seconds before the first retry; doubles up to the next
STOP_TIMEOUT = 5.0  # seconds the publisher's task is given to end when the exchange stops
MAX_RECONNECT_DELAY = 5.0
PROBE_TIMEOUT = 2.0  # seconds to wait for the exchange's own status to come back from the broker
# Messages handed to the client at once, and QoS 1 messages awaiting acknowledgement. Small, because the
# client's bookkeeping costs grow with what is pending (each publish and each acknowledgement walks it);
# with TCP_NODELAY a round trip to a broker on the same network is a fraction of a millisecond.
PUBLISH_WINDOW = 64
# Market data is many small writes with no answer to carry the TCP acknowledgement back (QoS 0), and a
# QoS 1 subscriber's acknowledgements are small writes too: with Nagle's algorithm on, each write after
# the first waits for the peer's delayed acknowledgement (tens of milliseconds). Every connection of
# carbonx to the broker (the publisher, the market-data viewer) sends each message at once.
SOCKET_OPTIONS = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
_encode = encode_message  # a payload is a frame's body: the same bytes as on the trading socket

# Where each channel of the feed goes: (topic suffix, QoS, retained).
CHANNEL_TOPICS = {
    "book": ("snapshot", 1, True),  # snapshots; updates go to "updates"
    "top": ("top", 0, True),
    "stats": ("stats", 1, True),
    "status": ("status", 1, True),
    "trades": ("trades", 1, False),
    "auctions": ("auctions", 1, False),  # primary auctions' openings and results: in order, none lost
}
UPDATES = ("updates", 0, False)  # book updates: not retained (a late joiner starts from the snapshot)


def market_data_topic(instrument: str, suffix: str) -> str:
    return f"{TOPIC_ROOT}/md/{instrument}/{suffix}"


def fills_topic(account: str) -> str:
    return f"{TOPIC_ROOT}/private/{account}/fills"


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool = False  # mqtts://: the connection is TLS, the broker's certificate verified


DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}  # MQTT's registered ports, plain and over TLS


def parse_mqtt_url(url: str) -> BrokerAddress:
    """``mqtt://user:password@host:port`` (port 1883 if left out), or ``mqtts://`` for TLS (port 8883)."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(
            "market_data.mqtt_url",
            f"must look like mqtt://user:password@host:1883 (or mqtts://...:8883 for TLS), not {url!r}",
        )
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ConfigError("market_data.mqtt_url", f"bad port in {url!r}") from None
    return BrokerAddress(
        parts.hostname,
        port,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        parts.scheme == "mqtts",
    )


def broker_tls_context(url: str, ca_file: str, setting: str = "market_data.mqtt_ca_file") -> ssl.SSLContext | None:
    """The TLS context for the broker of ``url``: None for mqtt:// (or no broker); for mqtts:// one that verifies
    the broker's certificate against ``ca_file`` (empty: the system's trusted CAs) and its host name.

    ``setting`` names the CA file's option in a :class:`ConfigError` (a flag of the command line, say)."""
    secured = bool(url) and parse_mqtt_url(url).tls
    if not secured:
        if ca_file:
            # A CA for a plain broker would read as a secured feed while the password crosses in clear.
            raise ConfigError(setting, f"is set but the broker's URL is not mqtts:// ({url or 'none'}): use mqtts://")
        return None
    try:
        return client_context(ca_file or None)
    except ConfigError as error:
        raise ConfigError(setting, error.problem) from None


class MqttPublisher:
    """Files market data without waiting, and publishes it from its own task (see the module notes)."""

    TASK_NAME = "mqtt-publisher"

    def __init__(
        self,
        address: BrokerAddress,
        feed: MarketDataFeed,
        *,
        max_reliable: int = 1_000_000,
        max_updates: int = 100_000,
        snapshot_interval: float = 1.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: the context of an mqtts:// broker (:func:`broker_tls_context`), None for plain MQTT."""
        self.address = address
        self.tls = tls
        self.feed = feed
        self.snapshot_interval = snapshot_interval
        self._reliable: deque[tuple[str, bytes]] = deque()
        self._max_reliable = max_reliable
        self._updates: deque[tuple[str, bytes, bool]] = deque()  # book updates and tops: (topic, payload, retain)
        self._max_updates = max_updates
        self._state: dict[tuple[str, str], MarketData] = {}  # (instrument, channel) -> latest state message
        self._stale_books: set[str] = set()  # snapshot to publish: changed since the last one
        self._conflating: set[str] = set()  # updates dropped: the current snapshot replaces them
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.connected = False
        self.delivery_checked: bool | None = None  # the broker delivered the exchange's own message back
        self.connections = 0  # successful connections so far
        self.published = 0
        self.dropped_reliable = 0
        self.conflated_updates = 0

    # -- the engine task's side: never waits ------------------------------------------------

    def offer(self, market_data: list[tuple[str, str, MarketData]], fills: list[tuple[str, ExecutionReport]]) -> None:
        """File a batch's market data and the fills for the accounts' private topics."""
        for instrument, channel, message in market_data:
            if channel == "book" or channel == "top":
                self._file_update(instrument, channel, message)
            elif message.__class__ is PublicTrade or message.__class__ is AuctionReport:  # trades, auctions
                self._file_reliable(market_data_topic(instrument, channel), message)
            elif message.__class__ is Statistics and message.trading_day_closed is True:
                # the day's closing statistics, with the settlement price: never conflated away
                self._file_reliable(market_data_topic(instrument, CHANNEL_TOPICS["stats"][0]), message)
            else:
                self._state[(instrument, channel)] = message
        for account, report in fills:
            self._file_reliable(fills_topic(account), report)
        if market_data or fills:
            self._wake.set()

    def _file_reliable(self, topic: str, message: PublicTrade | AuctionReport | Statistics | ExecutionReport) -> None:
        if len(self._reliable) >= self._max_reliable:
            self.dropped_reliable += 1
            # a fill is numbered for its account (seq), market data per channel (md_seq)
            md_seq, seq = (None, message.seq) if isinstance(message, ExecutionReport) else (message.md_seq, None)
            log_event(
                log,
                "mqtt_reliable_dropped",
                logging.ERROR,
                topic=topic,
                md_seq=md_seq,
                seq=seq,
                dropped=self.dropped_reliable,
                queued=len(self._reliable),
            )
            return
        self._reliable.append((topic, _encode(message)))

    def _file_update(self, instrument: str, channel: str, message: MarketData) -> None:
        if channel == "book":
            self._stale_books.add(instrument)
        if instrument in self._conflating:
            self.conflated_updates += 1
            return
        if len(self._updates) >= self._max_updates:  # the broker is behind: the latest state wins
            self._conflating.update(self.feed.instruments)
            self.conflated_updates += len(self._updates) + 1
            log_event(
                log,
                "mqtt_updates_conflated",
                logging.WARNING,
                dropped=len(self._updates) + 1,
                conflated=self.conflated_updates,
            )
            self._updates.clear()
            return
        topic = market_data_topic(instrument, UPDATES[0] if channel == "book" else CHANNEL_TOPICS["top"][0])
        self._updates.append((topic, _encode(message), channel == "top"))

    # -- the publisher task -------------------------------------------------------------------

    def start(self) -> asyncio.Task:
        self._task = asyncio.create_task(self._run(), name=self.TASK_NAME)
        return self._task

    async def stop(self, flush_timeout: float = 2.0) -> None:
        """Publish what is filed (for up to ``flush_timeout`` seconds if connected), then disconnect."""
        if self._task is None:
            return
        if self.connected:
            deadline = asyncio.get_running_loop().time() + flush_timeout
            while (self._reliable or self._updates or self._state) and asyncio.get_running_loop().time() < deadline:
                self._wake.set()
                await asyncio.sleep(0.01)
        self._task.cancel()
        # A broker that stopped answering can hold the client's disconnect: the exchange's stop does not wait
        # for it past a bound.
        done, _ = await asyncio.wait({self._task}, timeout=STOP_TIMEOUT)
        if not done:
            log_event(log, "mqtt_stop_timed_out", logging.WARNING, seconds=STOP_TIMEOUT)
        self._task = None

    @property
    def pending(self) -> int:
        return len(self._reliable) + len(self._updates) + len(self._state)

    async def _run(self) -> None:
        delay = RECONNECT_DELAY
        address = self.address
        while True:
            try:
                async with aiomqtt.Client(
                    address.host,
                    address.port,
                    username=address.username,
                    password=address.password,
                    keepalive=10,
                    max_inflight_messages=PUBLISH_WINDOW,
                    socket_options=SOCKET_OPTIONS,
                    tls_context=self.tls,
                ) as client:
                    # No fixed client id: with one, any user of the broker could take it over and knock
                    # the exchange's connection off (mosquitto lets a second connection of an id win).
                    # The client logs a warning whenever more than a few calls are pending: a window is
                    # the normal state here, not a concern.
                    client.pending_calls_threshold = 2 * PUBLISH_WINDOW + 16
                    self.connected = True
                    self.connections += 1
                    delay = RECONNECT_DELAY
                    log_event(
                        log,
                        "mqtt_connected",
                        host=address.host,
                        port=address.port,
                        reliable_queued=len(self._reliable),
                        connections=self.connections,
                    )
                    await self._republish_state_and_check(client)
                    self._wake.set()  # what waited for the broker goes now, not at the next offer or snapshot
                    # Publishing waits for the broker's acknowledgements, which a dead connection never
                    # sends (aiomqtt would wait out its timeout): a watcher ends both at the first sign
                    # of a lost connection.
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._watch_connection(client), name="mqtt-connection-watch")
                        group.create_task(self._publish_forever(client), name="mqtt-publish-loop")
            except* aiomqtt.MqttError as errors:
                error = errors.exceptions[0]
                if self.connected:
                    log_event(log, "mqtt_disconnected", logging.WARNING, error=str(error))
                else:
                    log_event(log, "mqtt_connect_failed", logging.WARNING, error=str(error), retry_in=delay)
                self.connected = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)

    async def _republish_state_and_check(self, client: aiomqtt.Client) -> None:
        """Republish the retained state, and check that the broker delivers what the exchange publishes.

        Mosquitto drops a publish its ACL refuses without telling the
        publisher (QoS 1 is acknowledged all the same), so a wrong user in
        ``mqtt_url`` would look like a working feed. The exchange reads one of
        its own messages back; if none comes, it says so loudly (and goes on
        trying to publish: the ACL may be fixed and reloaded).
        """
        probe = market_data_topic(next(iter(self.feed.instruments)), CHANNEL_TOPICS["status"][0])
        await client.subscribe(probe, qos=1)
        await self._republish_state(client)
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                async for message in client.messages:
                    if message.topic.matches(probe) and not message.retain:  # not an earlier run's copy
                        break
            self.delivery_checked = True
        except TimeoutError:
            self.delivery_checked = False
            log_event(
                log,
                "mqtt_publish_not_delivered",
                logging.ERROR,
                user=self.address.username,
                topic=probe,
                hint="the broker accepts the connection but does not deliver what this user "
                "publishes: check that mqtt_url names the exchange's user and the broker's ACL lets it write",
            )
        await client.unsubscribe(probe)

    @staticmethod
    async def _watch_connection(client: aiomqtt.Client) -> None:
        """Return never; raise MqttError as soon as the connection is lost (the message stream says so)."""
        async for _ in client.messages:
            pass  # the exchange subscribes to nothing after its delivery check
        raise aiomqtt.MqttError("the connection to the broker ended")

    async def _republish_state(self, client: aiomqtt.Client) -> None:
        """After a (re)connection: the retained state of every instrument, the book's first."""
        self._updates.clear()  # subscribers realign on the snapshots below
        self._conflating.clear()
        self._stale_books.clear()
        for instrument in self.feed.instruments:
            for channel, message in self.feed.state(instrument):
                self._state.pop((instrument, channel), None)
                suffix, qos, retain = CHANNEL_TOPICS[channel]
                await client.publish(market_data_topic(instrument, suffix), _encode(message), qos=qos, retain=retain)
                self.published += 1

    async def _publish_forever(self, client: aiomqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        next_snapshots = loop.time() + self.snapshot_interval
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_snapshots - loop.time()))
            except TimeoutError:
                pass
            self._wake.clear()
            while self._conflating:  # what was dropped is replaced by the current snapshot
                instrument = min(self._conflating)
                self._conflating.discard(instrument)  # its next updates queue again, after this snapshot
                await self._publish_snapshot(client, instrument, with_top=True)
            updates = self._updates
            while updates:
                window = [updates.popleft() for _ in range(min(PUBLISH_WINDOW, len(updates)))]
                await _publish_together(client, [(topic, payload, 0, retain) for topic, payload, retain in window])
                self.published += len(window)
            await self._publish_reliable(client)  # before the state: a closing statistics precedes the next
            while self._state:
                latest = list(self._state.items())
                await _publish_together(
                    client,
                    [
                        (
                            market_data_topic(instrument, CHANNEL_TOPICS[channel][0]),
                            _encode(message),
                            *CHANNEL_TOPICS[channel][1:],
                        )
                        for (instrument, channel), message in latest
                    ],
                )
                for key, message in latest:
                    if self._state.get(key) is message:  # a newer state filed meanwhile is published next
                        del self._state[key]
                self.published += len(latest)
            if loop.time() >= next_snapshots:
                for instrument in sorted(self._stale_books):
                    await self._publish_snapshot(client, instrument)
                self._stale_books.clear()
                next_snapshots = loop.time() + self.snapshot_interval

    async def _publish_snapshot(self, client: aiomqtt.Client, instrument: str, with_top: bool = False) -> None:
        """The instrument's book snapshot (and, after conflation, its top of book) as they are now."""
        feed = self.feed.instruments[instrument]
        messages = [("book", feed.snapshot())] + ([("top", feed.top_message())] if with_top else [])
        for channel, message in messages:
            suffix, qos, retain = CHANNEL_TOPICS[channel]
            await client.publish(market_data_topic(instrument, suffix), _encode(message), qos=qos, retain=retain)
            self.published += 1

    async def _publish_reliable(self, client: aiomqtt.Client) -> None:
        """Publish the reliable queue in windows; a message leaves the queue once the broker has it."""
        reliable = self._reliable
        while reliable:
            window = [reliable[i] for i in range(min(PUBLISH_WINDOW, len(reliable)))]
            await _publish_together(client, [(topic, payload, 1, False) for topic, payload in window])
            for _ in window:
                reliable.popleft()
            self.published += len(window)


async def _publish_together(client: aiomqtt.Client, messages: list[tuple[str, bytes, int, bool]]) -> None:
    """Publish (topic, payload, qos, retain) messages at once, in order, and wait until all are done.

    Awaiting each publish in turn costs an event-loop turn a message (the
    client writes on the loop's next turn), so a busy exchange would publish
    one message a turn. The publishes start in list order, so the client
    queues them in that order. On a failure, or a lost connection, the rest
    are abandoned; the caller's queues still hold what must be sent again.
    """
    tasks = [
        asyncio.create_task(client.publish(topic, payload, qos=qos, retain=retain), name="mqtt-publish")
        for topic, payload, qos, retain in messages
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
