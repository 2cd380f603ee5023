"""``carbonx md``: a live terminal view of the market-data feed, from MQTT or from the gateway socket.

How this works: :class:`MarketView` is a subscriber's state, built the way
docs/MARKET_DATA.md says a subscriber builds it: each instrument's book
starts from a snapshot; updates before the first snapshot wait; an update
whose ``md_seq`` is not the next one is a gap, and the book is then marked
stale until the next snapshot realigns it. Trades and statistics are kept
as they come. ``lines()`` renders it. Two sources feed it: an MQTT broker
(``aiomqtt``, the topics ``carbonx/md/<instrument>/#``; over TLS for an
``mqtts://`` URL) or a logged-on session of the trading gateway
(``subscribe``; over TLS with the session flags).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TextIO

import aiomqtt
import msgspec

from gateway.cli.display import eur, ladder
from gateway.client import connect
from gateway.marketdata.mqtt import SOCKET_OPTIONS, market_data_topic, parse_mqtt_url

SHOWN_LEVELS = 5
SHOWN_TRADES = 8


class InstrumentView:
    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: dict[int, tuple[int, int]] = {}  # price (ticks) -> (lots, orders)
        self.asks: dict[int, tuple[int, int]] = {}
        self.book_seq: int | None = None  # None: no snapshot yet, or a gap since the last one
        self.waiting: list[dict] = []  # updates that arrived before the first snapshot
        self.gaps = 0
        self.trades: deque[dict] = deque(maxlen=SHOWN_TRADES)
        self.stats: dict = {}
        self.status: dict = {}  # the latest status message: phase, and during a call the indicative auction
        self.auction: dict | None = None  # the latest primary auction message

    def apply(self, message: dict) -> None:
        kind = message["type"]
        if kind == "book_snapshot":
            self.bids = {price: (lots, orders) for price, lots, orders in message["bids"]}
            self.asks = {price: (lots, orders) for price, lots, orders in message["asks"]}
            self.book_seq = message["md_seq"]
            waiting, self.waiting = self.waiting, []
            for update in waiting:
                self._update(update)
        elif kind == "book_update":
            if self.book_seq is None:
                self.waiting.append(message)
            else:
                self._update(message)
        elif kind == "trade":
            self.trades.appendleft(message)
        elif kind == "statistics":
            self.stats = message
        elif kind == "status":
            self.status = message
        elif kind == "auction_report":
            self.auction = message

    def _update(self, message: dict) -> None:
        seq = message["md_seq"]
        if self.book_seq is None or seq <= self.book_seq:
            return  # before the snapshot, or already in it
        if seq != self.book_seq + 1:
            self.gaps += 1
            self.book_seq = None  # stale until the next snapshot
            return
        for side, price, lots, orders in message["changes"]:
            levels = self.bids if side == "B" else self.asks
            if lots:
                levels[price] = (lots, orders)
            else:
                levels.pop(price, None)
        self.book_seq = seq

    def lines(self, tick: int = 1) -> list[str]:
        stats = self.stats
        last = stats.get("last")
        head = (
            f"{self.symbol}  {self._phase(tick)}  last EUR {eur(None if last is None else last * tick)}  "
            f"volume {stats.get('volume', 0)} lots in {stats.get('trades', 0)} trades  "
            f"VWAP EUR {stats.get('vwap') or '-'}"
        )
        if stats.get("settlement_price") is not None:
            head += f"  settlement EUR {eur(stats['settlement_price'] * tick)}"
        out = [head]
        if self.book_seq is None:
            out.append("    (book: waiting for a snapshot)")
        bids = sorted(((p, lots, n) for p, (lots, n) in self.bids.items()), reverse=True)[:SHOWN_LEVELS]
        asks = sorted((p, lots, n) for p, (lots, n) in self.asks.items())[:SHOWN_LEVELS]
        out.extend("    " + line for line in ladder(bids, asks, tick))
        for trade in self.trades:
            side = {"B": "buy ", "S": "sell", None: "auct"}[trade["aggressor_side"]]
            out.append(
                f"    trade #{trade['trade_id']:<6} {side} {trade['quantity']:>4} lots @ EUR "
                f"{eur(trade['price'] * tick)}"
            )
        if self.auction is not None:
            out.append("    " + _auction_line(self.auction, tick))
        return out

    def _phase(self, tick: int) -> str:
        """The trading phase, with the indicative auction during a call."""
        status = self.status
        phase = status.get("phase", "?")
        if status.get("indicative_price") is not None:
            phase += (
                f" (indicative {status['indicative_quantity']} lots @ EUR {eur(status['indicative_price'] * tick)})"
            )
        elif status.get("reason") == "volatility":
            phase += f" (beyond the band: EUR {eur(status['trigger_price'] * tick)})"
        return phase


def _auction_line(auction: dict, tick: int) -> str:
    """A primary auction as one line: its terms, and its outcome once decided."""
    head = f"primary auction {auction['auction_id']}: {auction['volume']:,} allowances, {auction['status']}"
    if auction["status"] == "cleared":
        head += (
            f" at EUR {eur(auction['clearing_price'] * tick)}, cover {auction['cover_ratio']}, "
            f"{auction['successful_bidders']} of {auction['bidders']} bidders"
        )
    elif auction["status"] == "cancelled":
        head += f" ({auction['reason']})"
    return head


class MarketView:
    """What a subscriber knows of each instrument it follows; ``ticks``: cents per tick, for the display."""

    def __init__(self, instruments: Sequence[str], ticks: Mapping[str, int] | None = None) -> None:
        self.instruments = {symbol: InstrumentView(symbol) for symbol in instruments}
        self.ticks = dict(ticks or {})
        self.messages = 0

    def apply(self, message: dict) -> None:
        view = self.instruments.get(message.get("instrument") or "")
        if view is not None:
            self.messages += 1
            view.apply(message)

    def lines(self) -> list[str]:
        out: list[str] = []
        for symbol, view in self.instruments.items():
            out.extend(view.lines(self.ticks.get(symbol, 1)))
            out.append("")
        return out


async def socket_feed(
    host: str,
    port: int,
    account: str,
    secret: str,
    instruments: Sequence[str],
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> AsyncIterator[dict]:
    # A market-data session: it may run beside the account's trading session (carbonx order works meanwhile),
    # and its end cancels nothing.
    async with connect(
        host, port, account, secret, market_data_only=True, tls=tls or False, server_hostname=server_name
    ) as client:
        answer = await client.subscribe(list(instruments))
        if answer["type"] != "subscribed":
            raise ValueError(f"subscription refused: {answer.get('code')} {answer.get('text')}")
        async for message in client.market_data():
            yield message


async def mqtt_feed(url: str, instruments: Sequence[str], tls: ssl.SSLContext | None = None) -> AsyncIterator[dict]:
    """The feed of an MQTT broker; ``tls``: the context of an mqtts:// broker (``broker_tls_context``)."""
    address = parse_mqtt_url(url)
    decode = msgspec.msgpack.Decoder().decode
    async with aiomqtt.Client(
        address.host,
        address.port,
        username=address.username,
        password=address.password,
        socket_options=SOCKET_OPTIONS,
        tls_context=tls,
    ) as client:
        for symbol in instruments:
            await client.subscribe(market_data_topic(symbol, "#"), qos=1)
        async for message in client.messages:
            try:
                yield decode(message.payload)
            except msgspec.DecodeError:
                continue  # not ours; the ACL keeps others from publishing here


async def run_view(
    feed: AsyncIterator[dict],
    view: MarketView,
    out: TextIO,
    *,
    seconds: float | None,
    interval: float = 0.5,
    live: bool | None = None,
) -> MarketView:
    """Follow the feed, redrawing the view every ``interval`` seconds (in place on a terminal), for
    ``seconds`` (None: until interrupted); return the view."""
    live = out.isatty() if live is None else live

    async def follow() -> None:
        async for message in feed:
            view.apply(message)

    reader = asyncio.create_task(follow(), name="md-view-feed")
    loop = asyncio.get_running_loop()
    deadline = None if seconds is None else loop.time() + seconds
    try:
        while deadline is None or loop.time() < deadline:
            done, _ = await asyncio.wait(
                {reader}, timeout=interval if deadline is None else max(0.0, min(interval, deadline - loop.time()))
            )
            if done:
                reader.result()  # the feed ended or failed: say so
                break
            if live:
                out.write("\x1b[H\x1b[2J" + "\n".join(view.lines()) + "\n")
                out.flush()
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    if not live:
        print("\n".join(view.lines()), file=out)
    return view
