"""Market data end to end: the pure feed, socket subscriptions, and MQTT through a real mosquitto.

How it works
------------
1. **The pure feed** (:class:`gateway.marketdata.feed.MarketDataFeed`, no I/O). Random order flows (hypothesis,
   and a seeded 20,000-command run) go through an engine without pre-trade risk in batches
   (``handle_all``, as the gateway runs them); after each batch :class:`FeedChecker` feeds the batch's
   events to the feed and checks every message it publishes against models built by the test alone:

   - :class:`BookModel`, a subscriber that starts from a ``book_snapshot`` and applies ``book_update``
     changes (a level with quantity 0 is deleted), must hold exactly the engine's top ``levels`` of each
     side after every batch (prices converted to ticks; one instrument has a 5-cent tick);
   - ``md_seq`` is gap free per instrument and channel; every ``top_of_book`` equals the best levels of
     the model at that point, and the last one the engine's best after the batch;
   - ``trade`` messages equal the engine's Trade events; :class:`DayStats` recomputes the statistics
     (open, high, low, last, volume, tonnes, VWAP string, trades) from the trades, and at each end of
     day the settlement price: the volume-weighted average of the trades since the instrument's
     settlement window opened (``OpenSettlementWindow``, told apart by event numbers), else the last
     price; then the day starts again;
   - subscribers that join midway from ``feed.state(symbol)`` stay exact too.

2. **Socket subscriptions** (the whole exchange on a free port, client-library sessions, no broker):
   what ``subscribe``/``unsubscribe`` answer and deliver, their rejects, a late joiner's snapshot, and
   that market data (``md_seq``, no ``seq``) leaves the account's ``seq`` numbering alone.

3. **MQTT** against mosquitto in the project's production configuration (the exchange publishes as
   ``carbonx-exchange``, subscribers are demo accounts): :class:`MqttSubscriber` rebuilds the books from
   the retained snapshot plus updates (buffering, ignoring stale updates, realigning on the next
   snapshot after a gap) and collects trades, and reconnects when the broker goes away. Long random
   runs from pipelining sessions, a late joiner, the end of a trading day, the ACL (no forged market
   data, no one else's fills), a broker restart mid-run, a broker that dies while the publisher waits
   for acknowledgements, state replaced while being published, and a stalled (SIGSTOPped) broker.
   Skipped without mosquitto.

4. **docs/MARKET_DATA.md** against the code and itself: the channels it names, its worked example (one run: the
   published bytes are the maps shown, the socket got the same maps), the broker's queue limits as the shipped
   configuration leaves them, and (as root, with mosquitto) a password file the broker's user cannot read.

Every wait has a timeout. Waits for socket market data use a request answered in a later batch as a
barrier: the gateway writes a batch's market data before it runs the next batch, so by the time that
answer arrives, everything published before it is in the client's market-data queue
(:func:`md_so_far`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import pwd
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Self

import aiomqtt
import msgpack
import msgspec
import pytest
from gateway_helpers import TIMEOUT, Inbox, eventually, exchange_on_port, session
from hypothesis import given
from hypothesis import strategies as st
from mosquitto_broker import MosquittoBroker, requires_mosquitto, running_broker
from scenario_helpers import shipped_instruments

import gateway.marketdata.mqtt as gateway_mqtt
from exchange import (
    CancelOrder,
    EndOfDay,
    Engine,
    InvalidCommand,
    LevelChanged,
    MassCancel,
    NewOrder,
    OpenSettlementWindow,
    ReplaceOrder,
    SettlementWindowOpened,
    SetTradingPhase,
    Side,
    Trade,
    TradingDayClosed,
    TradingPhase,
)
from exchange.instruments import Instrument
from gateway.marketdata.feed import CHANNELS, MarketDataFeed
from gateway.wire.protocol import encode_message

NS = 1_000_000_000
BUY, SELL = Side.BUY, Side.SELL
CHANNEL_TYPES = {
    "book": "book_update",
    "top": "top_of_book",
    "trades": "trade",
    "stats": "statistics",
    "status": "status",
}
TYPE_CHANNELS = {kind: channel for channel, kind in CHANNEL_TYPES.items()} | {"book_snapshot": "book"}

# A fourth instrument with a 5-cent tick and 500-tonne lots, so that every conversion to ticks and tonnes shows.
UKA = Instrument(
    symbol="UKA",
    name="UK Allowance (test)",
    lot_units=500,
    tick_size=5,
    min_lots=1,
    max_lots=1000,
    min_price=5,
    max_price=100_000,
    reference_price=4000,
    market_collar=None,
    price_band_bps=0,
)
MID = {"EUA": 7000, "CER": 5800, "ERU": 5500, "UKA": 4000}  # cents


def feed_engine() -> Engine:
    instruments = shipped_instruments()
    instruments["UKA"] = UKA
    return Engine(instruments, pre_trade_risk=False)


def in_ticks(levels: Iterable[tuple[int, int, int]], tick: int) -> list[tuple[int, int, int]]:
    return [(price // tick, lots, orders) for price, lots, orders in levels]


def vwap_string(value: int, lots: int) -> str | None:
    """Euros to 4 decimals, half to even, from cents x lots over lots (the protocol's average price)."""
    if not lots:
        return None
    return str((Decimal(value) / Decimal(lots) / 100).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN))


# -- what a subscriber builds ------------------------------------------------------------------------


class BookModel:
    """A subscriber's book: loaded from a ``book_snapshot``, kept by ``book_update`` changes, in ticks."""

    def __init__(self, snapshot: dict, levels: int) -> None:
        assert snapshot["type"] == "book_snapshot" and snapshot["levels"] == levels, snapshot
        self.levels = levels
        self.symbol = snapshot["instrument"]
        self.md_seq = snapshot["md_seq"]
        self.sides = {"B": {}, "S": {}}
        for side, rows in (("B", snapshot["bids"]), ("S", snapshot["asks"])):
            for price, lots, orders in rows:
                assert lots > 0 and orders > 0, snapshot
                self.sides[side][price] = (lots, orders)
        assert self.depth("B") == [tuple(row) for row in snapshot["bids"]], "snapshot bids not best first"
        assert self.depth("S") == [tuple(row) for row in snapshot["asks"]], "snapshot asks not best first"
        self.pushed_out = 0  # levels that left the top while still in the book (seen by the checker)

    def apply(self, update: dict) -> None:
        assert update["type"] == "book_update" and update["instrument"] == self.symbol, update
        assert update["md_seq"] == self.md_seq + 1, f"book md_seq {update['md_seq']} after {self.md_seq}"
        changes = update["changes"]
        assert changes, f"an empty book_update: {update}"
        keys = [(side, price) for side, price, _, _ in changes]
        assert len(set(keys)) == len(keys), f"a level twice in one update: {update}"
        for side, price, lots, orders in changes:
            book = self.sides[side]
            if lots == 0:
                assert orders == 0, update
                assert price in book, f"removal of a level the subscriber never had: {update}"
                del book[price]
            else:
                assert orders > 0, update
                assert book.get(price) != (lots, orders), f"an unchanged level sent as a change: {update}"
                book[price] = (lots, orders)
        for side in ("B", "S"):
            assert len(self.sides[side]) <= self.levels, f"more than {self.levels} levels after {update}"
        self.md_seq = update["md_seq"]

    def depth(self, side: str) -> list[tuple[int, int, int]]:
        book = self.sides[side]
        return [(price, *book[price]) for price in sorted(book, reverse=side == "B")]

    def best(self) -> tuple:
        bids, asks = self.depth("B"), self.depth("S")
        return ((bids[0][0], bids[0][1]) if bids else (None, 0)) + ((asks[0][0], asks[0][1]) if asks else (None, 0))


def top_fields(message: dict) -> tuple:
    return message["bid"], message["bid_quantity"], message["ask"], message["ask_quantity"]


def engine_best(engine: Engine, symbol: str) -> tuple:
    book, tick = engine.books[symbol], engine.instruments[symbol].tick_size
    bids, asks = book.depth(BUY, 1), book.depth(SELL, 1)
    return ((bids[0][0] // tick, bids[0][1]) if bids else (None, 0)) + (
        (asks[0][0] // tick, asks[0][1]) if asks else (None, 0)
    )


def engine_top(engine: Engine, symbol: str, levels: int) -> tuple[list, list]:
    book, tick = engine.books[symbol], engine.instruments[symbol].tick_size
    return in_ticks(book.depth(BUY, levels), tick), in_ticks(book.depth(SELL, levels), tick)


class DayStats:
    """An instrument's statistics recomputed from its trades: the day's figures, the last price, settlement."""

    def __init__(self, instrument: Instrument) -> None:
        self.tick = instrument.tick_size
        self.lot_units = instrument.lot_units
        self.day: list[tuple[int, int, int]] = []  # (ts, price cents, lots) of the day's trades
        self.opens: list[int] = []  # event seqs of the settlement window's openings not yet closed by a day's end
        self.closed_seq = 0  # event seq of the last end of day
        self.window: list[tuple[int, int]] | None = None  # (price cents, lots) of the trades in the window
        self.last: int | None = None  # cents, across days
        self.settlement: int | None = None  # ticks, the last close's
        self.closes = {"window": 0, "last_price": 0, "none": 0}  # how each settlement price was made

    def add(self, ts: int, price: int, lots: int, seq: int) -> None:
        """A trade (event ``seq``): in the window if one opened before it since the last end of day."""
        self.day.append((ts, price, lots))
        self.last = price
        if self.window is None and any(self.closed_seq < opened < seq for opened in self.opens):
            self.window = []
        if self.window is not None:
            self.window.append((price, lots))

    def expected(self) -> dict:
        tick, prices = self.tick, [price for _, price, _ in self.day]
        volume = sum(lots for _, _, lots in self.day)
        value = sum(price * lots for _, price, lots in self.day)
        return {
            "open": prices[0] // tick if prices else None,
            "high": max(prices) // tick if prices else None,
            "low": min(prices) // tick if prices else None,
            "last": None if self.last is None else self.last // tick,
            "volume": volume,
            "volume_tonnes": volume * self.lot_units,
            "vwap": vwap_string(value, volume),
            "trades": len(self.day),
            "settlement_price": self.settlement,
        }

    def close(self, seq: int) -> dict:
        """The closing statistics (settlement price included) of the end of day numbered ``seq``; the next day
        starts from nothing."""
        window = self.window or []
        self.window = None
        self.closed_seq = seq
        self.opens = [opened for opened in self.opens if opened > seq]
        lots = sum(lots for _, lots in window)
        if lots:
            cents = int(
                (Decimal(sum(price * lots for price, lots in window)) / lots).to_integral_value(
                    rounding=ROUND_HALF_EVEN
                )
            )
            self.settlement = cents // self.tick  # on the tick, rounded down (exact for a 1-cent tick)
            self.closes["window"] += 1
        elif self.last is not None:
            self.settlement = self.last // self.tick
            self.closes["last_price"] += 1
        else:
            self.closes["none"] += 1
        expected = self.expected()
        self.day = []
        return expected


def stats_fields(message: dict) -> dict:
    return {
        name: message[name]
        for name in ("open", "high", "low", "last", "volume", "volume_tonnes", "vwap", "trades", "settlement_price")
    }


class FeedChecker:
    """Runs batches through an engine and its feed, and checks every published message (module notes, 1)."""

    def __init__(self, engine: Engine, levels: int) -> None:
        self.engine = engine
        self.levels = levels
        self.feed = MarketDataFeed(engine, levels=levels)
        self.symbols = list(engine.instruments)
        self.seq = {
            (symbol, channel): (1 if channel == "status" else 0) for symbol in self.symbols for channel in CHANNELS
        }
        self.stats = {symbol: DayStats(engine.instruments[symbol]) for symbol in self.symbols}
        self.tops = {symbol: (None, 0, None, 0) for symbol in self.symbols}
        self.books: dict[str, list[BookModel]] = {symbol: [] for symbol in self.symbols}
        for symbol in self.symbols:
            self.join(symbol)  # the first subscriber of each instrument, from the start
        self.seen = Counter()

    def join(self, symbol: str) -> BookModel:
        """A subscriber joining now from the instrument's current state; checks that state too."""
        state = state_of(self.feed, symbol)
        assert list(state) == ["book", "top", "stats", "status"]
        book = BookModel(state["book"], self.levels)
        assert book.md_seq == self.seq[(symbol, "book")]
        assert (book.depth("B"), book.depth("S")) == engine_top(self.engine, symbol, self.levels)
        top = state["top"]
        assert top["type"] == "top_of_book" and top["md_seq"] == self.seq[(symbol, "top")]
        assert top_fields(top) == engine_best(self.engine, symbol) == book.best()
        stats = state["stats"]
        assert stats["type"] == "statistics" and stats["md_seq"] == self.seq[(symbol, "stats")]
        assert stats_fields(stats) == self.stats[symbol].expected()
        assert state["status"] == {
            "type": "status",
            "instrument": symbol,
            "md_seq": self.seq[(symbol, "status")],
            "status": "open",
            "phase": "continuous",
            "reason": None,
            "trigger_price": None,
            "reference_price": None,
            "indicative_price": None,
            "indicative_quantity": 0,
            "indicative_demand": 0,
            "indicative_supply": 0,
            "auction_price": None,
            "auction_quantity": 0,
            "ts": state["status"]["ts"],
        }
        self.books[symbol].append(book)
        return book

    def run(self, commands: list) -> list:
        events = self.engine.handle_all(commands)
        messages = published(self.feed.messages(events))
        self.check(events, messages)
        return events

    def check(self, events: list, messages: list[tuple[str, str, dict]]) -> None:
        engine = self.engine
        level_ts = {event.instrument: event.ts for event in events if type(event) is LevelChanged}
        trades = [event for event in events if type(event) is Trade]
        closes = [event for event in events if type(event) is TradingDayClosed]
        trade_seqs = {event.trade_id: event.seq for event in trades}
        for event in events:
            if type(event) is SettlementWindowOpened:
                self.stats[event.instrument].opens.append(event.seq)
        # trades: one message per Trade event, in order, numbered per instrument
        trade_numbers = defaultdict(int)
        expected_trades = []
        for event in trades:
            trade_numbers[event.instrument] += 1
            tick = engine.instruments[event.instrument].tick_size
            expected_trades.append(
                {
                    "type": "trade",
                    "instrument": event.instrument,
                    "md_seq": self.seq[(event.instrument, "trades")] + trade_numbers[event.instrument],
                    "trade_id": event.trade_id,
                    "price": event.price // tick,
                    "quantity": event.quantity,
                    "aggressor_side": event.aggressor_side.value,
                    "ts": event.ts,
                }
            )
        assert [message for _, channel, message in messages if channel == "trades"] == expected_trades
        # every message in order: numbering, and the models of the subscribers and of the statistics
        dirty: dict[str, int] = {}  # instruments with trades not yet in a statistics message -> last trade's ts
        next_day: dict[str, int] = {}  # instruments whose day just closed -> ts of the close
        closing = 0
        for symbol, channel, message in messages:
            assert symbol in self.symbols and channel in CHANNELS, (symbol, channel)
            assert message["instrument"] == symbol and message["type"] == CHANNEL_TYPES[channel], message
            assert "seq" not in message and "request_id" not in message, message
            key = (symbol, channel)
            assert message["md_seq"] == self.seq[key] + 1, f"{key}: md_seq {message['md_seq']} after {self.seq[key]}"
            self.seq[key] += 1
            if channel == "trades":
                self.stats[symbol].add(
                    message["ts"],
                    message["price"] * engine.instruments[symbol].tick_size,
                    message["quantity"],
                    trade_seqs[message["trade_id"]],
                )
                dirty[symbol] = message["ts"]
            elif channel == "book":
                assert message["ts"] == level_ts[symbol], "a book update for a book without a level change"
                tick = engine.instruments[symbol].tick_size
                in_book = {
                    (side.value, price // tick)
                    for side in (BUY, SELL)
                    for price, _, _ in engine.books[symbol].depth(side)
                }
                self.seen["updates"] += 1
                self.seen["pushed_out"] += sum(
                    1 for side, price, lots, _ in message["changes"] if lots == 0 and (side, price) in in_book
                )  # still there after
                for book in self.books[symbol]:
                    book.apply(message)
            elif channel == "top":
                assert top_fields(message) != self.tops[symbol], f"a top of book that did not change: {message}"
                assert message["ts"] == level_ts[symbol], message
                for book in self.books[symbol]:
                    assert top_fields(message) == book.best(), f"top of book {message} against the book"
                self.tops[symbol] = top_fields(message)
            elif channel == "stats":
                if "trading_day_closed" in message:  # the day's last statistics, with its settlement price
                    assert message["trading_day_closed"] is True
                    assert not dirty, "the day's trades were not in a statistics message before its close"
                    assert symbol not in next_day, "two closes without the next day's statistics between"
                    closing += 1
                    event = closes[(closing - 1) // len(self.symbols)]
                    assert message["ts"] == event.ts
                    expected = self.stats[symbol].close(event.seq)
                    assert stats_fields(message) == expected, f"closing statistics of {symbol}"
                    next_day[symbol] = event.ts
                    self.seen["closes"] += 1
                elif symbol in next_day:  # right after the close: the next day's, from nothing
                    assert message["ts"] == next_day.pop(symbol)
                    assert stats_fields(message) == self.stats[symbol].expected(), f"next day's statistics of {symbol}"
                else:
                    assert symbol in dirty, f"statistics without a trade: {message}"
                    assert message["ts"] == dirty.pop(symbol), "statistics not stamped with the last trade's ts"
                    assert stats_fields(message) == self.stats[symbol].expected(), f"statistics of {symbol}"
            else:
                raise AssertionError(f"a status message without a status change: {message}")
        assert not dirty, f"trades of {sorted(dirty)} without a statistics message"
        assert not next_day, f"no next day's statistics after the close for {sorted(next_day)}"
        assert closing == len(closes) * len(self.symbols), "each close publishes each instrument's statistics"
        self.seen["trades"] += len(trades)
        # after the batch: every subscriber's book is the engine's top, and the last top of book its best
        for symbol in self.symbols:
            top = engine_top(engine, symbol, self.levels)
            for book in self.books[symbol]:
                assert (book.depth("B"), book.depth("S")) == top, f"{symbol}: the subscriber's book differs"
            assert self.tops[symbol] == engine_best(engine, symbol), f"{symbol}: top of book differs"


# -- order flows -----------------------------------------------------------------------------------

KINDS = ("limit", "limit", "limit", "day", "ioc", "fok", "market", "iceberg", "post", "stop")


class Flow:
    """Turns command specs into engine commands: a running nanosecond clock, client order ids per account."""

    def __init__(self, start_ts: int = 1_700_000_000 * NS) -> None:
        self.ts = start_ts
        self.clids: dict[str, list[tuple[int, str]]] = defaultdict(list)  # account -> (client order id, symbol)
        self.next_clid = 0
        self.date = 20240101

    def command(self, step: int, spec: tuple):
        self.ts += step
        ts, kind = self.ts, spec[0]
        if kind == "order":
            _, account, symbol, side, lots, offset, order_kind, shown = spec
            self.next_clid += 1
            self.clids[account].append((self.next_clid, symbol))
            tick = UKA.tick_size if symbol == "UKA" else 1
            price = MID[symbol] + offset * tick
            fields = {
                "ts": ts,
                "account": account,
                "client_order_id": self.next_clid,
                "instrument": symbol,
                "side": side,
                "quantity": lots,
            }
            if order_kind == "market":
                return NewOrder(order_type="MARKET", time_in_force="IOC", **fields)
            if order_kind == "iceberg":
                return NewOrder(price=price, display_quantity=min(shown, lots), **fields)
            if order_kind == "stop":
                return NewOrder(price=price, stop_price=MID[symbol] + (shown - 6) * tick, **fields)
            tif = {"day": "DAY", "ioc": "IOC", "fok": "FOK"}.get(order_kind, "GTC")
            return NewOrder(price=price, time_in_force=tif, post_only=order_kind == "post", **fields)
        if kind == "cancel":
            _, account, back = spec
            clids = self.clids[account]
            return CancelOrder(ts=ts, account=account, client_order_id=clids[-1 - back % len(clids)][0] if clids else 1)
        if kind == "replace":
            _, account, back, lots, offset = spec
            clids = self.clids[account]
            if not clids:
                return CancelOrder(ts=ts, account=account, client_order_id=1)
            clid, symbol = clids[-1 - back % len(clids)]
            tick = UKA.tick_size if symbol == "UKA" else 1
            return ReplaceOrder(
                ts=ts,
                account=account,
                client_order_id=clid,
                quantity=lots,
                price=None if offset is None else MID[symbol] + offset * tick,
            )
        if kind == "mass":
            return MassCancel(ts=ts, account=spec[1], instrument=spec[2])
        if kind == "window":
            return OpenSettlementWindow(ts=ts, instrument=spec[1])
        if kind == "eod":
            self.date += 1
            return EndOfDay(ts=ts, trading_date=self.date)
        raise AssertionError(spec)

    def batch(self, specs: list[tuple[int, tuple]]) -> list:
        commands = []
        for step, spec in specs:
            try:
                commands.append(self.command(step, spec))
            except InvalidCommand:
                pass  # a combination the protocol refuses before the engine (not market data's business)
        return commands


ACCOUNTS = ("a", "b", "c")
FLOW_SYMBOLS = ("EUA", "UKA")
steps = st.one_of(st.integers(1, 1000), st.integers(1, 40 * NS))  # nanoseconds: same second, or up to 40 s
spec_strategies = {
    "order": st.tuples(
        st.just("order"),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(FLOW_SYMBOLS),
        st.sampled_from((BUY, SELL)),
        st.integers(1, 12),
        st.sampled_from(range(-3, 4)),
        st.sampled_from(KINDS),
        st.integers(1, 11),
    ),
    "cancel": st.tuples(st.just("cancel"), st.sampled_from(ACCOUNTS), st.integers(0, 10)),
    "replace": st.tuples(
        st.just("replace"),
        st.sampled_from(ACCOUNTS),
        st.integers(0, 10),
        st.none() | st.integers(1, 12),
        st.none() | st.integers(-3, 3),
    ),
    "mass": st.tuples(st.just("mass"), st.sampled_from(ACCOUNTS), st.sampled_from((None,) + FLOW_SYMBOLS)),
    "eod": st.just(("eod",)),
    "window": st.tuples(st.just("window"), st.sampled_from(FLOW_SYMBOLS)),
}
# mostly orders: 14 in 20 commands; a settlement window's opening and an end of day in 41
command_specs = st.tuples(
    steps,
    st.sampled_from(("order",) * 28 + ("cancel",) * 5 + ("replace",) * 4 + ("mass", "eod", "window")).flatmap(
        spec_strategies.__getitem__
    ),
)


@given(
    batches=st.lists(st.lists(command_specs, min_size=1, max_size=12), min_size=1, max_size=40),
    levels=st.integers(1, 4),
    joins=st.sets(st.integers(0, 29)),
)
def test_feed_rebuilds_books_and_recomputes_trades_and_statistics(batches, levels, joins):
    checker = FeedChecker(feed_engine(), levels)
    flow = Flow()
    for number, specs in enumerate(batches):
        checker.run(flow.batch(specs))
        if number in joins:
            for symbol in FLOW_SYMBOLS:
                checker.join(symbol)


class RandomFlow:
    """A seeded stream of command specs (the same specs as the hypothesis strategies), three instruments."""

    SYMBOLS = ("EUA", "CER", "UKA")

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def spec(self) -> tuple[int, tuple]:
        rng = self.rng
        roll = rng.random()
        step = rng.randint(1, 1000) if rng.random() < 0.7 else rng.randint(1, 20 * NS)
        account = rng.choice(ACCOUNTS)
        if roll < 0.14:
            return step, ("cancel", account, rng.randint(0, 15))
        if roll < 0.22:
            return step, (
                "replace",
                account,
                rng.randint(0, 15),
                rng.choice((None, rng.randint(1, 12))),
                rng.choice((None, rng.randint(-5, 5))),
            )
        if roll < 0.225:
            return step, ("mass", account, rng.choice((None,) + self.SYMBOLS))
        if roll < 0.229:
            return step, ("eod",)
        if roll < 0.236:
            return step, ("window", rng.choice(self.SYMBOLS))
        return step, (
            "order",
            account,
            rng.choice(self.SYMBOLS),
            rng.choice((BUY, SELL)),
            rng.randint(1, 12),
            rng.randint(-6, 6),
            rng.choice(KINDS),
            rng.randint(1, 11),
        )


def test_feed_is_exact_over_a_seeded_20000_command_run():
    checker = FeedChecker(feed_engine(), levels=5)
    flow, stream = Flow(), RandomFlow(20240601)
    sizes = random.Random(7)
    sent = 0
    while sent < 20_000:
        specs = [stream.spec() for _ in range(min(sizes.randint(1, 40), 20_000 - sent))]
        sent += len(specs)
        checker.run(flow.batch(specs))
        if sizes.random() < 0.01:
            checker.join(sizes.choice(RandomFlow.SYMBOLS))  # a late joiner, kept exact from now on
    seen = checker.seen
    closes = Counter()
    for stats in checker.stats.values():
        closes.update(stats.closes)
    assert seen["trades"] > 3000 and seen["updates"] > 2000 and seen["pushed_out"] > 100, seen
    assert closes["window"] > 20 and closes["last_price"] > 5, closes  # both ways to a settlement price
    for symbol in RandomFlow.SYMBOLS:
        assert len(checker.books[symbol]) >= 2, "no late joiner for {symbol}"


# -- settlement and statistics, by hand ------------------------------------------------------------------

_CLIDS = itertools.count(1)


def order(ts: int, account: str, side: Side, lots: int, price: int, symbol: str = "EUA", **fields) -> NewOrder:
    return NewOrder(
        ts=ts,
        account=account,
        client_order_id=next(_CLIDS),
        instrument=symbol,
        side=side,
        quantity=lots,
        price=price,
        **fields,
    )


T0 = 1_700_000_000 * NS


def test_settlement_price_is_the_vwap_of_the_closing_window_then_the_day_starts_again():
    engine = feed_engine()
    feed = MarketDataFeed(engine, levels=3)
    out = []

    def run(*commands):
        out.extend(published(feed.messages(engine.handle_all(list(commands)))))

    close = T0 + 3600 * NS
    # EUA: one trade before the window, two in it (the first exactly at its start), one at the close
    run(order(T0, "a", SELL, 10, 7000), order(T0 + 1, "b", BUY, 10, 7000))
    run(order(close - 600 * NS - 1, "a", SELL, 1, 7100), order(close - 600 * NS - 1, "b", BUY, 1, 7100))
    run(OpenSettlementWindow(ts=close - 600 * NS, instrument="EUA"))
    run(order(close - 600 * NS, "a", SELL, 3, 7003), order(close - 600 * NS, "b", BUY, 3, 7003))
    run(order(close - 300 * NS, "a", SELL, 2, 7010), order(close - 300 * NS, "b", BUY, 2, 7010))
    run(order(close, "a", SELL, 1, 7002), order(close, "b", BUY, 1, 7002))
    # UKA (5-cent tick): trades only before the window; CER: never traded
    run(order(T0, "a", SELL, 4, 4005, "UKA"), order(T0, "b", BUY, 4, 4005, "UKA"))
    out.clear()
    run(EndOfDay(ts=close, trading_date=20240102))
    # per instrument: the closing statistics, then the next day's
    assert [(symbol, "trading_day_closed" in message) for symbol, _, message in out] == [
        (symbol, closed) for symbol in engine.instruments for closed in (True, False)
    ]
    assert {channel for _, channel, _ in out} == {"stats"}
    closing = {symbol: message for symbol, _, message in out if "trading_day_closed" in message}
    eua = closing["EUA"]
    # (3 x 7003 + 2 x 7010 + 1 x 7002) / 6 = 7005.17 -> 7005 cents; 7000 and 7100 are outside the window
    # (with 7100 in: 7020; without the trade at the window's very start: 7007)
    assert eua == {
        "type": "statistics",
        "instrument": "EUA",
        "md_seq": 6,
        "open": 7000,
        "high": 7100,
        "low": 7000,
        "last": 7002,
        "volume": 17,
        "volume_tonnes": 17_000,
        "vwap": "70.0771",
        "trades": 5,
        "settlement_price": 7005,
        "ts": close,
        "trading_day_closed": True,
    }
    assert closing["UKA"]["settlement_price"] == 4005 // 5  # none in the window: the last price, in ticks
    assert closing["UKA"]["volume_tonnes"] == 4 * 500 and closing["UKA"]["vwap"] == "40.0500"
    assert closing["CER"]["settlement_price"] is None and closing["CER"]["trades"] == 0
    # the next day starts from nothing (the last price and the settlement price stay), under its own md_seq
    next_day = {symbol: message for symbol, _, message in out if "trading_day_closed" not in message}
    assert next_day["EUA"] == {
        "type": "statistics",
        "instrument": "EUA",
        "md_seq": 7,
        "open": None,
        "high": None,
        "low": None,
        "last": 7002,
        "volume": 0,
        "volume_tonnes": 0,
        "vwap": None,
        "trades": 0,
        "settlement_price": 7005,
        "ts": close,
    }
    assert state_of(feed, "EUA")["stats"] == next_day["EUA"]
    out.clear()
    run(order(close + NS, "a", SELL, 2, 6990), order(close + NS, "b", BUY, 2, 6990))
    stats = [message for _, channel, message in out if channel == "stats"]
    assert (
        len(stats) == 1
        and stats[0]["md_seq"] == 8
        and stats_fields(stats[0])
        == {
            "open": 6990,
            "high": 6990,
            "low": 6990,
            "last": 6990,
            "volume": 2,
            "volume_tonnes": 2000,
            "vwap": "69.9000",
            "trades": 1,
            "settlement_price": 7005,
        }
    )
    assert [message["md_seq"] for _, channel, message in out if channel == "trades"] == [6]  # trades go on counting
    # a second day with no window settles at the last price, and one whose window holds no trade (yesterday's
    # window closed with yesterday) too
    out.clear()
    run(EndOfDay(ts=close + 10 * NS, trading_date=20240103))
    run(OpenSettlementWindow(ts=close + 11 * NS, instrument="EUA"))
    assert closing_price(out, "EUA") == 6990
    out.clear()
    run(EndOfDay(ts=close + 20 * NS, trading_date=20240104))
    assert closing_price(out, "EUA") == 6990
    assert stats_fields(state_of(feed, "EUA")["stats"])["trades"] == 0


def closing_price(out: list, symbol: str) -> int | None:
    closing, following = [message for name, channel, message in out if channel == "stats" and name == symbol]
    assert closing["trading_day_closed"] is True and "trading_day_closed" not in following
    assert following["settlement_price"] == closing["settlement_price"]
    return closing["settlement_price"]


def test_trades_and_end_of_day_in_one_batch_are_counted_on_the_right_day():
    engine = feed_engine()
    feed = MarketDataFeed(engine, levels=2)
    out = published(
        feed.messages(
            engine.handle_all(
                [
                    order(T0, "a", SELL, 5, 7000),
                    order(T0, "b", BUY, 2, 7000),
                    EndOfDay(ts=T0 + NS, trading_date=20240102),
                    order(T0 + 2 * NS, "b", BUY, 3, 7000),
                ]
            )
        )
    )
    summary = [
        (channel, message.get("trading_day_closed", False), message.get("trades"), message.get("volume"))
        for symbol, channel, message in out
        if symbol == "EUA" and channel in ("stats", "trades")
    ]
    assert summary == [
        ("trades", False, None, None),
        ("stats", False, 1, 2),
        ("stats", True, 1, 2),
        ("stats", False, 0, 0),
        ("trades", False, None, None),
        ("stats", False, 1, 3),
    ]
    assert [message["md_seq"] for symbol, channel, message in out if (symbol, channel) == ("EUA", "stats")] == [
        1,
        2,
        3,
        4,
    ]


def test_status_change_is_numbered_and_part_of_the_state():
    engine = feed_engine()
    feed = MarketDataFeed(engine)
    assert state_of(feed, "CER")["status"]["md_seq"] == 1
    out = published(feed.messages(engine.handle(SetTradingPhase(ts=T0, instrument="CER", phase=TradingPhase.HALTED))))
    expected = {
        "type": "status",
        "instrument": "CER",
        "md_seq": 2,
        "status": "halted",
        "phase": "halted",
        "reason": "operator",
        "trigger_price": None,
        "reference_price": None,
        "indicative_price": None,
        "indicative_quantity": 0,
        "indicative_demand": 0,
        "indicative_supply": 0,
        "auction_price": None,
        "auction_quantity": 0,
        "ts": T0,
    }
    assert out == [("CER", "status", expected)]
    assert state_of(feed, "CER")["status"] == expected
    assert state_of(feed, "EUA")["status"]["md_seq"] == 1
    out = published(
        feed.messages(engine.handle(SetTradingPhase(ts=T0 + 1, instrument="CER", phase=TradingPhase.CLOSED)))
    )
    assert [(message["status"], message["phase"], message["md_seq"]) for _, _, message in out] == [
        ("closed", "closed", 3)
    ]


# == 2. socket subscriptions ==========================================================================

FAST = {"throttle_rate": 1e6, "throttle_burst": 1_000_000}  # pipelined runs are not throttled
SESSION_SYMBOLS = ("EUA", "CER", "ERU")


async def md_so_far(client) -> list[dict]:
    """Every market-data message the session has been sent so far (see the module notes: a barrier).

    The second request is sent after the first is answered, so it runs in a later batch than anything
    answered before; its answer is written after that batch's market data, and the client reads in order.
    """
    await asyncio.wait_for(client.balances(), TIMEOUT)
    await asyncio.wait_for(client.balances(), TIMEOUT)
    queue = client._market_data  # the client's market-data stream, read without waiting
    out = []
    while not queue.empty():
        message = queue.get_nowait()
        assert message is not None, f"the session ended: {client.closed!r}"
        out.append(message)
    return out


def without_ts(message: dict | msgspec.Struct) -> dict:
    message = as_sent(message)
    assert type(message.get("ts")) is int, message
    return {name: value for name, value in message.items() if name != "ts"}


def as_sent(message: dict | msgspec.Struct) -> dict:
    """A message of the feed as a subscriber reads it: its bytes decoded (by the reference msgpack package)."""
    return msgpack.unpackb(encode_message(message)) if isinstance(message, msgspec.Struct) else message


def published(messages: list[tuple[str, str, msgspec.Struct]]) -> list[tuple[str, str, dict]]:
    """A batch's market data as subscribers read it."""
    return [(symbol, channel, as_sent(message)) for symbol, channel, message in messages]


def state_of(feed: MarketDataFeed, symbol: str) -> dict[str, dict]:
    """An instrument's current state per channel, as a late subscriber reads it."""
    return {channel: as_sent(message) for channel, message in feed.state(symbol)}


class SocketSubscriber:
    """What a socket subscriber builds from its market data: books, the last of each channel, trades."""

    def __init__(self, levels: int = 10) -> None:
        self.levels = levels
        self.books: dict[str, BookModel] = {}
        self.seq: dict[tuple[str, str], int] = {}
        self.latest: dict[tuple[str, str], dict] = {}
        self.trades: dict[str, list[dict]] = defaultdict(list)

    def take(self, messages: list[dict]) -> None:
        for message in messages:
            assert "md_seq" in message and "seq" not in message, f"market data numbered for the account: {message}"
            symbol, kind = message["instrument"], message["type"]
            key = (symbol, TYPE_CHANNELS[kind])
            if kind == "book_snapshot":
                self.books[symbol] = BookModel(message, self.levels)
            elif kind == "book_update":
                self.books[symbol].apply(message)  # checks md_seq follows the snapshot's or the last update's
            else:
                if key in self.seq:  # (the first: the state at subscription, or the first trade after it)
                    assert message["md_seq"] == self.seq[key] + 1, f"md_seq gap: {message}"
                if kind == "trade":
                    self.trades[symbol].append(message)
            self.seq[key] = message["md_seq"]
            self.latest[key] = message


async def test_socket_subscription_sends_the_state_then_only_the_subscribed_channels():
    async with (
        exchange_on_port() as gateway,
        session(gateway, "bank") as viewer,
        session(gateway, "broker") as seller,
        session(gateway, "gov-fund") as buyer,
    ):
        await seller.new_order("EUA", "S", 5, 7010)
        answer = await viewer.subscribe(["EUA"], ["book", "trades"])
        assert without_ts(answer) == {
            "type": "subscribed",
            "instruments": ["EUA"],
            "channels": ["book", "trades"],
            "request_id": answer["request_id"],
            "seq": answer["seq"],
        }
        state = await md_so_far(viewer)
        assert [without_ts(message) for message in state] == [
            {
                "type": "book_snapshot",
                "instrument": "EUA",
                "md_seq": 1,
                "levels": 10,
                "bids": [],
                "asks": [[7010, 5, 1]],
            }
        ]
        # live: only EUA, only the book and trades (no top of book, statistics, status, CER)
        await buyer.new_order("EUA", "B", 2, 7010)
        await buyer.new_order("CER", "B", 1, 5800)
        await seller.new_order("EUA", "S", 1, 7020)
        live = [without_ts(message) for message in await md_so_far(viewer)]
        assert live == [
            {
                "type": "trade",
                "instrument": "EUA",
                "md_seq": 1,
                "trade_id": 1,
                "price": 7010,
                "quantity": 2,
                "aggressor_side": "B",
            },
            {"type": "book_update", "instrument": "EUA", "md_seq": 2, "changes": [["S", 7010, 3, 1]]},
            {"type": "book_update", "instrument": "EUA", "md_seq": 3, "changes": [["S", 7020, 1, 1]]},
        ]
        # more channels, another instrument: the state of just those, then their live messages
        answer = await viewer.subscribe(["CER"], ["top"])
        assert (answer["type"], answer["instruments"], answer["channels"]) == ("subscribed", ["CER"], ["top"])
        assert [without_ts(message) for message in await md_so_far(viewer)] == [
            {
                "type": "top_of_book",
                "instrument": "CER",
                "md_seq": 1,
                "bid": 5800,
                "bid_quantity": 1,
                "ask": None,
                "ask_quantity": 0,
            }
        ]
        # unsubscribing the book: EUA trades still come, its book updates no longer
        answer = await viewer.unsubscribe(["EUA"], ["book"])
        assert without_ts(answer) == {
            "type": "unsubscribed",
            "instruments": ["EUA"],
            "channels": ["book"],
            "request_id": answer["request_id"],
            "seq": answer["seq"],
        }
        await buyer.new_order("EUA", "B", 1, 7010)
        await seller.new_order("EUA", "S", 4, 7030)
        await seller.new_order("CER", "S", 1, 5810)
        assert [without_ts(message) for message in await md_so_far(viewer)] == [
            {
                "type": "trade",
                "instrument": "EUA",
                "md_seq": 2,
                "trade_id": 2,
                "price": 7010,
                "quantity": 1,
                "aggressor_side": "B",
            },
            {
                "type": "top_of_book",
                "instrument": "CER",
                "md_seq": 2,
                "bid": 5800,
                "bid_quantity": 1,
                "ask": 5810,
                "ask_quantity": 1,
            },
        ]
        await viewer.unsubscribe()  # everything
        await buyer.new_order("EUA", "B", 3, 7010)
        await seller.new_order("CER", "S", 1, 5800)
        assert await md_so_far(viewer) == []


async def test_socket_subscription_rejects_unknown_instruments_and_channels():
    async with exchange_on_port() as gateway, session(gateway, "bank") as viewer, session(gateway, "broker") as seller:
        inbox = Inbox(viewer)
        answer = await viewer.subscribe(["EUA", "XYZ"], ["book"])
        assert without_ts(answer) == {
            "type": "request_rejected",
            "request": "subscribe",
            "order_id": None,
            "client_order_id": None,
            "code": 101,
            "text": "unknown instrument",
            "request_id": answer["request_id"],
            "seq": answer["seq"],
        }
        answer = await viewer.subscribe(["EUA"], ["book", "candles"])
        assert (answer["type"], answer["code"], answer["field"], answer["ref_type"]) == (
            "reject",
            707,
            "channels",
            "subscribe",
        )
        answer = await viewer.unsubscribe(["XYZ"])
        assert (answer["type"], answer["request"], answer["code"]) == ("request_rejected", "unsubscribe", 101)
        answer = await viewer.unsubscribe(None, ["tops"])
        assert (answer["type"], answer["code"], answer["field"]) == ("reject", 707, "channels")
        # a refused subscription subscribes to nothing, not even its good part
        await seller.new_order("EUA", "S", 1, 7000)
        assert await md_so_far(viewer) == []
        assert [message["type"] for message in await inbox.take(4)] == [
            "request_rejected",
            "reject",
            "request_rejected",
            "reject",
        ]


def random_order(client, rng: random.Random, symbols=SESSION_SYMBOLS, clids: list | None = None) -> dict:
    """A random request for a pipelined run: mostly limit orders around the middle, some IOC, market, cancels."""
    if clids and rng.random() < 0.15:
        return {"type": "cancel_order", "client_order_id": rng.choice(clids)}
    symbol = rng.choice(symbols)
    side = rng.choice("BS")
    lots = rng.randint(1, 10)
    roll = rng.random()
    if roll < 0.08:
        message = client.new_order_message(symbol, side, lots, order_type="MARKET", time_in_force="IOC")
    else:
        price = MID[symbol] + rng.randint(-8, 8)
        message = client.new_order_message(symbol, side, lots, price, time_in_force="IOC" if roll < 0.2 else None)
    if clids is not None:
        clids.append(message["client_order_id"])
    return message


async def pipelined(client, rng: random.Random, count: int, symbols=SESSION_SYMBOLS) -> None:
    """Send ``count`` random requests without waiting, then wait until the exchange has answered them all."""
    clids: list = []
    for number in range(count):
        client.send(random_order(client, rng, symbols, clids))
        if number % 100 == 99:
            await client.drain()
    await asyncio.wait_for(client.balances(), 3 * TIMEOUT)  # answered after everything sent before it


async def test_late_socket_subscriber_gets_the_current_state_and_stays_exact():
    async with (
        exchange_on_port(**FAST) as gateway,
        session(gateway, "bank") as viewer,
        session(gateway, "broker") as one,
        session(gateway, "gov-fund") as other,
    ):
        await asyncio.gather(pipelined(one, random.Random(1), 300), pipelined(other, random.Random(2), 300))
        feed = gateway.feed
        traded = {symbol: feed.instruments[symbol].seq["trades"] for symbol in SESSION_SYMBOLS}
        assert all(traded.values()), traded
        inbox = Inbox(viewer)
        await viewer.subscribe()  # every instrument, every channel
        state = await md_so_far(viewer)
        assert [(message["instrument"], message["type"]) for message in state] == [
            (symbol, kind)
            for symbol in SESSION_SYMBOLS
            for kind in ("book_snapshot", "top_of_book", "statistics", "status")
        ]
        model = SocketSubscriber()
        model.take(state)
        for symbol in SESSION_SYMBOLS:
            book = model.books[symbol]
            assert (book.depth("B"), book.depth("S")) == engine_top(gateway.engine, symbol, 10)
            assert top_fields(model.latest[(symbol, "top")]) == engine_best(gateway.engine, symbol)
            stats = model.latest[(symbol, "stats")]
            assert stats["trades"] == traded[symbol] and stats["md_seq"] == feed.instruments[symbol].seq["stats"]
            assert model.latest[(symbol, "status")]["status"] == "open"
        # trading goes on; the late joiner follows every change, and its trades continue the numbering
        await asyncio.gather(
            pipelined(one, random.Random(3), 300),
            pipelined(other, random.Random(4), 300),
            pipelined(viewer, random.Random(5), 100),
        )
        model.take(await md_so_far(viewer))
        for symbol in SESSION_SYMBOLS:
            instrument_feed = feed.instruments[symbol]
            book = model.books[symbol]
            assert book.md_seq == instrument_feed.seq["book"]
            assert (book.depth("B"), book.depth("S")) == engine_top(gateway.engine, symbol, 10)
            assert without_ts(model.latest[(symbol, "top")]) == without_ts(instrument_feed.top_message())
            assert without_ts(model.latest[(symbol, "stats")]) == without_ts(instrument_feed.statistics())
            assert [trade["md_seq"] for trade in model.trades[symbol]] == list(
                range(traded[symbol] + 1, instrument_feed.seq["trades"] + 1)
            )
            assert model.trades[symbol], f"no trade in {symbol} after the join"
        # market data took no account sequence number: the viewer's own messages are gap free to the end
        numbered = [await inbox.next() for _ in range(gateway.sequencer.next_seq("bank") - inbox.last_seq - 1)]
        assert numbered and inbox.last_seq == gateway.sequencer.next_seq("bank") - 1 == viewer.last_seq
        assert all("md_seq" not in message for message in numbered)
        assert any(message.get("exec_type") == "trade" for message in numbered)  # the viewer traded too
        await inbox.nothing_more(0.1)


# == 3. MQTT through a real broker ======================================================================

EXCHANGE_USER = "carbonx-exchange"
MQTT_PASSWORD = "carbonx-demo"  # every demo user's (config/mosquitto/README.md)
SNAPSHOT_INTERVAL = 0.2
CONVERGE = 20.0  # seconds the subscribers may take to catch up once the order flow has stopped


@pytest.fixture
def broker():
    with running_broker("production") as broker:
        yield broker


@contextlib.asynccontextmanager
async def exchange_with_broker(broker: MosquittoBroker, **overrides):
    """The exchange publishing to ``broker`` as carbonx-exchange; entered once its first connection is checked."""
    settings = {
        "mqtt_url": broker.url(EXCHANGE_USER, MQTT_PASSWORD),
        "snapshot_interval": SNAPSHOT_INTERVAL,
        **FAST,
        **overrides,
    }
    async with exchange_on_port(**settings) as gateway:
        await eventually(lambda: gateway.publisher.delivery_checked is not None, TIMEOUT)
        assert gateway.publisher.delivery_checked is True, "the broker does not deliver what the exchange publishes"
        yield gateway


class SyncedBook:
    """One instrument's book as an MQTT subscriber keeps it: from the (retained) snapshot plus updates.

    Updates are buffered until a snapshot arrives; those with ``md_seq`` at or below the book's are
    ignored; after a gap the book waits (buffering) for the missing update or for a newer snapshot, on
    which it realigns. A snapshot at the book's own ``md_seq`` must equal the book (``checked``).
    """

    def __init__(self, levels: int = 10) -> None:
        self.levels = levels
        self.book: BookModel | None = None
        self.pending: dict[int, dict] = {}
        self.snapshots = self.realignments = self.checked = self.ignored = 0

    def on_snapshot(self, snapshot: dict) -> None:
        self.snapshots += 1
        book = self.book
        if book is not None and snapshot["md_seq"] <= book.md_seq:
            if snapshot["md_seq"] == book.md_seq:
                self.checked += 1
                assert ([tuple(row) for row in snapshot["bids"]], [tuple(row) for row in snapshot["asks"]]) == (
                    book.depth("B"),
                    book.depth("S"),
                ), f"snapshot {snapshot} differs from the book at its md_seq"
            return
        if book is not None:
            self.realignments += 1
        self.book = BookModel(snapshot, self.levels)
        self.pending = {seq: update for seq, update in self.pending.items() if seq > snapshot["md_seq"]}
        self._catch_up()

    def on_update(self, update: dict) -> None:
        if self.book is not None and update["md_seq"] <= self.book.md_seq:
            self.ignored += 1
            return
        self.pending[update["md_seq"]] = update
        if self.book is not None:
            self._catch_up()

    def _catch_up(self) -> None:
        book = self.book
        while book.md_seq + 1 in self.pending:
            book.apply(self.pending.pop(book.md_seq + 1))

    def matches(self, engine: Engine, symbol: str, md_seq: int) -> bool:
        book = self.book
        return (
            book is not None
            and book.md_seq == md_seq
            and (book.depth("B"), book.depth("S")) == engine_top(engine, symbol, self.levels)
        )


class MqttSubscriber:
    """A demo account on the broker: keeps books, trades, the latest state and fills; reconnects by itself."""

    def __init__(
        self,
        broker: MosquittoBroker,
        user: str,
        topics: Iterable[str] = ("carbonx/md/#",),
        *,
        identifier: str | None = None,
        clean_session: bool | None = None,
    ) -> None:
        self.broker = broker
        self.user = user
        self.topics = tuple(topics)
        self.identifier = identifier
        self.clean_session = clean_session
        self.books: dict[str, SyncedBook] = defaultdict(SyncedBook)
        self.trades: dict[str, list[dict]] = defaultdict(list)
        self.latest: dict[tuple[str, str], dict] = {}  # (instrument, top|stats|status) -> highest md_seq seen
        self.fills: dict[str, list[dict]] = defaultdict(list)
        self.received: list[tuple[str, bytes, bool]] = []  # (topic, payload, retained), everything
        self.errors: list[str] = []
        self.subscribed = asyncio.Event()
        self.subscribed_at: list[float] = []  # loop times of each (re)subscription
        self.disconnections = 0
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name=f"mqtt-subscriber-{self.user}")
        await asyncio.wait_for(self.subscribed.wait(), TIMEOUT)
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    username=self.user,
                    password=MQTT_PASSWORD,
                    identifier=self.identifier,
                    clean_session=self.clean_session,
                    timeout=TIMEOUT,
                ) as client:
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self.subscribed_at.append(asyncio.get_running_loop().time())
                    self.subscribed.set()
                    async for message in client.messages:
                        self.receive(message.topic.value, message.payload, message.retain)
            except aiomqtt.MqttError:
                if self.subscribed.is_set():
                    self.disconnections += 1
                self.subscribed.clear()
                await asyncio.sleep(0.02)

    def receive(self, topic: str, payload: bytes, retained: bool) -> None:
        self.received.append((topic, payload, retained))
        parts = topic.split("/")
        try:
            message = msgpack.unpackb(payload, raw=False)
        except Exception as error:  # noqa: BLE001 - a forged payload must show, not kill the subscriber
            self.errors.append(f"{topic}: undecodable payload {payload!r}: {error}")
            return
        try:
            if parts[1] == "private":
                self.fills[parts[2]].append(message)
                return
            symbol, suffix = parts[2], parts[3]
            assert message["instrument"] == symbol, f"{topic}: {message}"
            if suffix == "snapshot":
                self.books[symbol].on_snapshot(message)
            elif suffix == "updates":
                self.books[symbol].on_update(message)
            elif suffix == "trades":
                self.trades[symbol].append(message)
            else:
                key = (symbol, suffix)
                if key not in self.latest or message["md_seq"] >= self.latest[key]["md_seq"]:
                    self.latest[key] = message
        except (AssertionError, KeyError, TypeError) as error:
            self.errors.append(f"{topic}: {error!r}")

    def trade_numbers(self, symbol: str) -> Counter:
        return Counter(trade["md_seq"] for trade in self.trades[symbol])

    def caught_up(self, gateway) -> bool:
        feed = gateway.feed
        for symbol, instrument_feed in feed.instruments.items():
            if not self.books[symbol].matches(gateway.engine, symbol, instrument_feed.seq["book"]):
                return False
        return True


async def caught_up(gateway, *subscribers: MqttSubscriber, trades: bool = True) -> None:
    """Wait until the publisher has drained and every subscriber's books (and trades) are the exchange's."""
    feed = gateway.feed

    def done() -> bool:
        if gateway.publisher.pending:
            return False
        for subscriber in subscribers:
            if not subscriber.caught_up(gateway):
                return False
            if trades and any(
                set(subscriber.trade_numbers(symbol)) != set(range(1, item.seq["trades"] + 1))
                for symbol, item in feed.instruments.items()
            ):
                return False
        return True

    try:
        await eventually(done, CONVERGE, interval=0.02)
    except AssertionError:
        report = {
            subscriber.user: {
                symbol: (
                    None if book.book is None else book.book.md_seq,
                    feed.instruments[symbol].seq["book"],
                    len(book.pending),
                    len(subscriber.trade_numbers(symbol)),
                    feed.instruments[symbol].seq["trades"],
                )
                for symbol, book in subscriber.books.items()
            }
            for subscriber in subscribers
        }
        raise AssertionError(
            f"subscribers did not catch up (book md_seq, exchange's, buffered, trades, "
            f"exchange's): {report}; publisher pending {gateway.publisher.pending}, "
            f"errors {[subscriber.errors[:3] for subscriber in subscribers]}"
        ) from None


def state_differences(gateway, subscriber: MqttSubscriber) -> dict:
    """Where the subscriber's latest top of book, statistics and status differ from the exchange's (ts aside)."""
    differences = {}
    for symbol, instrument_feed in gateway.feed.instruments.items():
        for suffix, message in (
            ("top", instrument_feed.top_message()),
            ("stats", instrument_feed.statistics()),
            ("status", instrument_feed.status_message()),
        ):
            got = subscriber.latest.get((symbol, suffix))
            if got is None or without_ts(got) != without_ts(message):
                differences[(symbol, suffix)] = (got, message)
    return differences


async def assert_state_matches(gateway, subscriber: MqttSubscriber, timeout: float = TIMEOUT) -> None:
    """The subscriber's latest top of book, statistics and status become the exchange's current ones (QoS 0
    tops may still be on their way when the publisher's queues are empty, hence the wait)."""
    with contextlib.suppress(AssertionError):
        await eventually(lambda: not state_differences(gateway, subscriber), timeout, interval=0.02)
    assert state_differences(gateway, subscriber) == {}, f"{subscriber.user}: (received, the exchange's)"


@requires_mosquitto
async def test_mqtt_subscriber_rebuilds_every_book_and_gets_every_trade_over_a_long_run(broker):
    # Without the volatility band: the random flow would otherwise spend part of the run in calls, where its
    # market and IOC orders are refused, and trade too little to be a long run.
    async with (
        exchange_with_broker(broker, instruments=shipped_instruments()) as gateway,
        MqttSubscriber(broker, "bank") as subscriber,
        session(gateway, "paper-mill") as watcher,
        session(gateway, "broker") as one,
        session(gateway, "bank") as two,
        session(gateway, "gov-fund") as three,
    ):
        await watcher.subscribe(None, ["trades"])  # the same trades on the socket, to compare payloads
        await asyncio.gather(
            *(pipelined(client, random.Random(seed), 1500) for seed, client in enumerate((one, two, three)))
        )
        await caught_up(gateway, subscriber)
        assert subscriber.errors == []
        feed, publisher = gateway.feed, gateway.publisher
        socket_trades = defaultdict(list)
        for message in await md_so_far(watcher):
            socket_trades[message["instrument"]].append(message)
        total = 0
        for symbol, instrument_feed in feed.instruments.items():
            count = instrument_feed.seq["trades"]
            total += count
            assert subscriber.trade_numbers(symbol) == Counter(range(1, count + 1)), f"{symbol}: trades not once each"
            assert sorted(subscriber.trades[symbol], key=lambda trade: trade["md_seq"]) == socket_trades[symbol]
            assert subscriber.books[symbol].book.md_seq == instrument_feed.seq["book"]
        # How many of the 4,500 random requests trade depends on how the three sessions interleave (431 is
        # a common outcome when they run one after another, 197 was seen on a loaded machine); a hundred and
        # more make the run long enough.
        assert total > 100, f"only {total} trades"
        await assert_state_matches(gateway, subscriber)
        assert sum(book.checked for book in subscriber.books.values()) > 0, "no snapshot was checked against the book"
        assert (publisher.connections, publisher.dropped_reliable, publisher.conflated_updates) == (1, 0, 0)


@requires_mosquitto
async def test_mqtt_late_joiner_gets_the_retained_state_at_once(broker):
    async with (
        exchange_with_broker(broker) as gateway,
        session(gateway, "broker") as one,
        session(gateway, "gov-fund") as two,
    ):
        await asyncio.gather(pipelined(one, random.Random(11), 300), pipelined(two, random.Random(12), 300))
        await eventually(lambda: not gateway.publisher.pending, TIMEOUT)
        await asyncio.sleep(3 * SNAPSHOT_INTERVAL)  # the last changes' snapshots are out
        joined = asyncio.get_running_loop().time()
        async with MqttSubscriber(broker, "paper-mill") as late:
            expected = {
                (symbol, suffix): message
                for symbol in SESSION_SYMBOLS
                for (channel, message), suffix in zip(
                    gateway.feed.state(symbol), ("snapshot", "top", "stats", "status"), strict=True
                )
            }
            await eventually(lambda: len(late.received) >= len(expected), TIMEOUT)
            took = asyncio.get_running_loop().time() - joined
            await asyncio.sleep(0.2)
        retained = {}
        for topic, payload, is_retained in late.received:
            assert is_retained, f"{topic} was not a retained message: the exchange published while idle"
            _, _, symbol, suffix = topic.split("/")
            retained[(symbol, suffix)] = without_ts(msgpack.unpackb(payload))
        assert retained == {key: without_ts(message) for key, message in expected.items()}
        assert took < 2.0, f"the retained state took {took:.2f} s"
        assert late.caught_up(gateway) and late.errors == []
        assert gateway.feed.instruments["EUA"].seq["trades"] > 0


@requires_mosquitto
async def test_end_of_day_statistics_reach_socket_and_mqtt_subscribers_in_order(broker):
    async with (
        exchange_with_broker(broker) as gateway,
        MqttSubscriber(broker, "bank") as subscriber,
        session(gateway, "paper-mill") as watcher,
        session(gateway, "broker") as seller,
        session(gateway, "gov-fund") as buyer,
    ):
        await watcher.subscribe(["EUA"], ["stats"])
        await seller.new_order("EUA", "S", 5, 7010)
        await buyer.new_order("EUA", "B", 2, 7010)
        await buyer.new_order("EUA", "B", 1, 7010)
        await eventually(lambda: not gateway.publisher.pending, TIMEOUT)
        await gateway.run_operator_commands([EndOfDay(ts=0, trading_date=20240102)])
        await eventually(
            lambda: not gateway.publisher.pending and subscriber.latest.get(("EUA", "stats"), {}).get("md_seq") == 4,
            TIMEOUT,
        )
        await asyncio.sleep(0.2)  # anything still on its way
        # MQTT: on the stats topic the closing statistics (md_seq 3, settlement price, once), then the next day's
        # (md_seq 4, the retained state): the numbers never go down, and the last received is the current state
        stats = [
            msgpack.unpackb(payload) for topic, payload, _ in subscriber.received if topic == "carbonx/md/EUA/stats"
        ]
        closing = [message for message in stats if message.get("trading_day_closed")]
        assert [(message["md_seq"], message["settlement_price"], message["trades"]) for message in closing] == [
            (3, 7010, 2)
        ]
        numbers = [message["md_seq"] for message in stats]
        assert numbers == sorted(numbers), f"md_seq went down on carbonx/md/EUA/stats: {numbers}"
        assert without_ts(stats[-1]) == without_ts(gateway.feed.instruments["EUA"].statistics()), (
            f"the last statistics received is not the current state: {stats[-1]}"
        )
        async with MqttSubscriber(broker, "cement-works") as late:  # the retained statistics: the next day's
            await eventually(lambda: ("EUA", "stats") in late.latest, TIMEOUT)
            assert late.latest[("EUA", "stats")]["md_seq"] == 4
        # the socket: every statistics, in order, from the subscription's state on
        await buyer.new_order("EUA", "B", 1, 7010)  # the next day's first trade
        assert [
            (
                message["md_seq"],
                message.get("trading_day_closed", False),
                message["trades"],
                message["volume"],
                message["settlement_price"],
            )
            for message in await md_so_far(watcher)
        ] == [
            (0, False, 0, 0, None),
            (1, False, 1, 2, None),
            (2, False, 2, 3, None),
            (3, True, 2, 3, 7010),
            (4, False, 0, 0, 7010),
            (5, False, 1, 1, 7010),
        ]


@requires_mosquitto
async def test_mqtt_accounts_cannot_forge_market_data_or_read_other_accounts_fills(broker):
    async with (
        exchange_with_broker(broker) as gateway,
        MqttSubscriber(broker, "bank", ("carbonx/#",)) as bank,
        MqttSubscriber(broker, "speculator", ("carbonx/#",)) as speculator,
        MqttSubscriber(broker, "paper-mill", ("carbonx/private/#", "carbonx/md/EUA/trades")) as bystander,
        session(gateway, "bank") as buyer,
        session(gateway, "speculator") as seller,
    ):
        forged = msgpack.packb(
            {
                "type": "trade",
                "instrument": "EUA",
                "md_seq": 1,
                "trade_id": 999,
                "price": 1,
                "quantity": 1000,
                "aggressor_side": "B",
                "ts": 1,
            }
        )
        async with aiomqtt.Client(
            broker.host, broker.port, username="bank", password=MQTT_PASSWORD, timeout=TIMEOUT
        ) as forger:
            for suffix in ("trades", "snapshot", "updates", "top", "stats", "status"):
                await forger.publish(f"carbonx/md/EUA/{suffix}", forged, qos=1, retain=suffix != "trades")
            for account in ("speculator", "bank", "paper-mill"):
                await forger.publish(f"carbonx/private/{account}/fills", forged, qos=1)
        inbox_buyer, inbox_seller = Inbox(buyer), Inbox(seller)
        await seller.new_order("EUA", "S", 3, 7000)
        await buyer.new_order("EUA", "B", 3, 7000)
        bought = [message for message in await inbox_buyer.take(2) if message.get("exec_type") == "trade"]
        sold = [message for message in await inbox_seller.take(2) if message.get("exec_type") == "trade"]
        assert len(bought) == len(sold) == 1
        await eventually(
            lambda: bank.fills["bank"] and speculator.fills["speculator"] and bystander.trades["EUA"], TIMEOUT
        )
        await asyncio.sleep(0.3)  # anything else would have come by now
        assert bank.fills == {"bank": bought} and speculator.fills == {"speculator": sold}
        assert bystander.fills == {} and [trade["trade_id"] for trade in bystander.trades["EUA"]] == [1]
        for subscriber in (bank, speculator, bystander):
            assert all(payload != forged for _, payload, _ in subscriber.received), (
                f"{subscriber.user} received a message a subscriber published"
            )
            assert subscriber.errors == []
        # a newcomer's retained state is the exchange's, not the forger's
        async with MqttSubscriber(broker, "cement-works") as newcomer:
            await caught_up(gateway, newcomer, trades=False)  # trades are not retained
            assert all(payload != forged for _, payload, _ in newcomer.received)
            await assert_state_matches(gateway, newcomer)


def queued_trades(publisher) -> dict[str, set[int]]:
    """The trades waiting in the publisher's reliable queue (not acknowledged by the broker): md_seq by instrument."""
    waiting = defaultdict(set)
    for topic, payload in list(publisher._reliable):
        if topic.endswith("/trades"):
            message = msgpack.unpackb(payload)
            waiting[message["instrument"]].add(message["md_seq"])
    return waiting


class OrderFlow:
    """Sessions sending random orders, pipelined, in small bursts until stopped."""

    def __init__(self, clients: list, seed: int, burst: int = 10, pause: float = 0.01) -> None:
        self.clients = clients
        self.rng = random.Random(seed)
        self.burst = burst
        self.pause = pause
        self.sent = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        clids = {id(client): [] for client in self.clients}
        while not self._stop.is_set():
            for client in self.clients:
                for _ in range(self.burst):
                    client.send(random_order(client, self.rng, SESSION_SYMBOLS, clids[id(client)]))
                    self.sent += 1
                await client.drain()
            await asyncio.sleep(self.pause)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="order-flow")

    async def stop(self) -> None:
        """Stop sending and wait until the exchange has answered everything sent."""
        self._stop.set()
        await asyncio.wait_for(self._task, TIMEOUT)
        for client in self.clients:
            await asyncio.wait_for(client.balances(), 3 * TIMEOUT)


@requires_mosquitto
async def test_mqtt_broker_restart_mid_run_loses_no_trade_the_broker_had_not_acknowledged(broker, monkeypatch):
    # The publisher's first retry comes 1 s after it loses the broker, so the reconnecting subscriber (which
    # retries every 20 ms) is subscribed again before the publisher sends what it still holds.
    monkeypatch.setattr(gateway_mqtt, "RECONNECT_DELAY", 1.0)
    async with (
        exchange_with_broker(broker) as gateway,
        MqttSubscriber(broker, "bank") as subscriber,
        MqttSubscriber(broker, "speculator", identifier="carbonx-test-durable", clean_session=False) as durable,
        session(gateway, "broker") as one,
        session(gateway, "gov-fund") as two,
    ):
        publisher, feed = gateway.publisher, gateway.feed
        loop = asyncio.get_running_loop()
        flow = OrderFlow([one, two], seed=21, burst=4, pause=0.02)
        flow.start()
        try:
            await asyncio.sleep(0.8)
            assert sum(item.seq["trades"] for item in feed.instruments.values()) > 0
            stopping = loop.time()
            await broker.astop()
            await eventually(lambda: not publisher.connected, 4 * TIMEOUT, interval=0.001)
            noticed = loop.time()
            # from here on nothing more is acknowledged: what the queue holds is what the broker never took
            waiting = queued_trades(publisher)
            first_unacknowledged = {
                symbol: min(waiting[symbol], default=item.seq["trades"] + 1)
                for symbol, item in feed.instruments.items()
            }
            await broker.astart()
            await eventually(lambda: subscriber.subscribed.is_set() and durable.subscribed.is_set(), TIMEOUT)
            resubscribed = loop.time()
            await eventually(lambda: publisher.connections == 2, 3 * TIMEOUT, interval=0.001)
            reconnected = loop.time()
            at_reconnect = {symbol: item.seq["trades"] for symbol, item in feed.instruments.items()}
            assert resubscribed < reconnected, "the test's subscriber was not back before the publisher"
            await asyncio.sleep(0.8)  # orders keep flowing after the reconnection
        finally:
            await flow.stop()
        await caught_up(gateway, durable)
        await caught_up(gateway, subscriber, trades=False)
        assert subscriber.errors == [] and durable.errors == []
        assert publisher.connections == 2 and publisher.dropped_reliable == 0
        assert subscriber.disconnections == 1 and durable.disconnections == 1
        for symbol, item in feed.instruments.items():
            count = item.seq["trades"]
            received = set(subscriber.trade_numbers(symbol))
            assert set(range(at_reconnect[symbol] + 1, count + 1)) <= received, (
                f"{symbol}: trades made after the publisher reconnected are missing"
            )
            missing = set(range(1, count + 1)) - received
            assert all(number < first_unacknowledged[symbol] for number in missing), (
                f"{symbol}: trades {sorted(number for number in missing if number >= first_unacknowledged[symbol])} "
                f"were not acknowledged by the broker before it stopped, yet never arrived"
            )
            # the durable subscriber (persistent session, kept by the broker across the restart): every trade
            assert set(durable.trade_numbers(symbol)) == set(range(1, count + 1))
        total = sum(item.seq["trades"] for item in feed.instruments.values())
        assert total > sum(at_reconnect.values()) > 0, "no trades after the reconnection"
        assert sum(book.realignments for book in subscriber.books.values()) > 0, "the book never realigned"
        await assert_state_matches(gateway, subscriber)
        async with MqttSubscriber(broker, "cement-works") as newcomer:  # the retained state is current again
            await caught_up(gateway, newcomer, trades=False)
            await assert_state_matches(gateway, newcomer)
        # the broker was back within a fraction of a second: the publisher noticed the loss at once (whatever
        # it was waiting for) and was publishing again after its retry delay (1 s here)
        assert noticed - stopping < 3.0 and reconnected - stopping < 5.0, (
            f"noticed after {noticed - stopping:.1f} s, publishing again after {reconnected - stopping:.1f} s"
        )


@requires_mosquitto
async def test_mqtt_publisher_notices_a_lost_broker_while_it_waits_for_acknowledgements(broker):
    async with (
        exchange_with_broker(broker, snapshot_interval=3600.0) as gateway,
        session(gateway, "broker") as seller,
        session(gateway, "gov-fund") as buyer,
    ):
        publisher = gateway.publisher
        broker.pause()  # the publisher's next QoS 1 publish waits for an acknowledgement that never comes
        await seller.new_order("EUA", "S", 1, 7000)
        await buyer.new_order("EUA", "B", 1, 7000)
        await asyncio.sleep(0.3)
        assert publisher.pending and publisher.connected
        broker.kill()  # the broker dies: the kernel closes its connections at once
        try:
            await eventually(lambda: not publisher.connected, 3.0, interval=0.005)
        except AssertionError:
            pytest.fail(
                "3 s after the broker died the publisher still took itself for connected and sent nothing: "
                "it waits for acknowledgements of a closed connection (until aiomqtt's 10 s timeout) "
                "instead of noticing the disconnection"
            )
        await broker.astart()
        await eventually(lambda: publisher.connections == 2 and not publisher.pending, 3 * TIMEOUT)
        async with MqttSubscriber(broker, "bank") as late:
            await caught_up(gateway, late, trades=False)
            await assert_state_matches(gateway, late)


@requires_mosquitto
async def test_mqtt_latest_state_wins_even_when_it_changes_while_being_published(broker):
    async with (
        exchange_with_broker(broker, snapshot_interval=3600.0) as gateway,
        MqttSubscriber(broker, "bank") as subscriber,
        session(gateway, "broker") as seller,
        session(gateway, "gov-fund") as buyer,
    ):
        publisher, feed = gateway.publisher, gateway.feed
        await seller.new_order("EUA", "S", 10, 7000)
        await eventually(lambda: not publisher.pending, TIMEOUT)
        await asyncio.sleep(0.05)
        broker.pause()  # every QoS 1 publish now waits for its acknowledgement
        try:
            # a status change (a halt): published at once, so the publisher is in the middle of publishing it
            # when the next one (the reopening) replaces it
            await gateway.run_operator_commands(
                [SetTradingPhase(ts=time.time_ns(), instrument="EUA", phase=TradingPhase.HALTED)]
            )
            await asyncio.sleep(0.3)
            assert publisher._state[("EUA", "status")].md_seq == 2 and not publisher._reliable
            await gateway.run_operator_commands(
                [SetTradingPhase(ts=time.time_ns(), instrument="EUA", phase=TradingPhase.CONTINUOUS)]
            )
            # statistics waiting behind the trade and fills of their batch, replaced by the next batch's
            await buyer.new_order("EUA", "B", 1, 7000)
            await buyer.new_order("EUA", "B", 2, 7000)
            assert publisher._state[("EUA", "stats")].md_seq == 2
        finally:
            broker.resume()
        await eventually(lambda: not publisher.pending, TIMEOUT)
        await caught_up(gateway, subscriber)
        assert (feed.instruments["EUA"].status_message().md_seq, feed.instruments["EUA"].statistics().md_seq) == (3, 2)
        await assert_state_matches(gateway, subscriber, timeout=1.0)  # the latest status and statistics reached it
        async with MqttSubscriber(broker, "paper-mill") as late:  # and are the retained ones
            await assert_state_matches(gateway, late, timeout=1.0)


@requires_mosquitto
async def test_mqtt_stalled_broker_never_slows_matching_and_subscribers_realign_after(broker):
    async with (
        exchange_with_broker(broker, mqtt_queue=1000) as gateway,
        MqttSubscriber(broker, "bank") as subscriber,
        session(gateway, "broker") as seller,
        session(gateway, "gov-fund") as buyer,
    ):
        publisher = gateway.publisher
        publisher._max_updates = 50  # MqttPublisher(max_updates=...): no exchange setting reaches it
        loop = asyncio.get_running_loop()
        for symbol in SESSION_SYMBOLS:  # a book on every instrument, out of the way of the trades below
            await seller.new_order(symbol, "S", 5, MID[symbol] + 5)
            await buyer.new_order(symbol, "B", 5, MID[symbol] - 5)
        await caught_up(gateway, subscriber)
        largest = {"reliable": 0, "updates": 0}

        async def sample() -> None:
            while True:
                largest["reliable"] = max(largest["reliable"], len(publisher._reliable))
                largest["updates"] = max(largest["updates"], len(publisher._updates))
                await asyncio.sleep(0.001)

        sampler = asyncio.create_task(sample())
        latencies: list[float] = []
        rng = random.Random(8)
        broker.pause()
        try:
            started = loop.time()
            # at least 1.5 s, and until the trades and fills filed overflow the reliable queue (3 per trade)
            while loop.time() - started < 1.5 or (publisher.dropped_reliable == 0 and loop.time() - started < 6.0):
                symbol = rng.choice(SESSION_SYMBOLS)
                price = MID[symbol] + rng.randint(-3, 3)
                # the second order of each pair trades with the first; the second pair takes the lot back
                for client, side in ((seller, "S"), (buyer, "B"), (buyer, "S"), (seller, "B")):
                    sent = time.perf_counter()
                    answer = await asyncio.wait_for(client.new_order(symbol, side, 1, price), TIMEOUT)
                    latencies.append(time.perf_counter() - sent)
                    assert answer["exec_type"] == "new", answer
            paused_for = loop.time() - started
        finally:
            broker.resume()
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        latencies.sort()
        p99, worst = latencies[int(len(latencies) * 0.99)], latencies[-1]
        assert p99 < 0.050 and worst < 0.500, (
            f"{len(latencies)} orders in {paused_for:.1f} s: p99 {p99 * 1000:.1f} ms, worst {worst * 1000:.1f} ms"
        )
        assert len(latencies) > 600, f"only {len(latencies)} orders in {paused_for:.1f} s"
        assert largest["reliable"] <= 1000 and largest["updates"] <= 50, largest
        assert publisher.dropped_reliable > 0 and publisher.conflated_updates > 0, (
            publisher.dropped_reliable,
            publisher.conflated_updates,
        )
        # once the broker answers again: the conflated books are republished and the subscriber realigns on them
        await caught_up(gateway, subscriber, trades=False)
        assert subscriber.errors == []
        assert sum(book.realignments for book in subscriber.books.values()) > 0, "the subscriber never realigned"
        for symbol, item in gateway.feed.instruments.items():
            assert subscriber.books[symbol].matches(gateway.engine, symbol, item.seq["book"])
            received = set(subscriber.trade_numbers(symbol))
            assert received <= set(range(1, item.seq["trades"] + 1))

        def missing() -> int:
            return sum(
                item.seq["trades"] - len(set(subscriber.trade_numbers(symbol)))
                for symbol, item in gateway.feed.instruments.items()
            )

        # The books realign first; the trades filed while the broker stalled are still being published (and
        # delivered) after it: wait for them. Every trade missing in the end was dropped by the exchange
        # (counted: trades and fills alike, so the drops may all have been fills), or by the broker itself
        # for this subscriber, whose queue the burst can overflow (mosquitto's own bound for a slow
        # subscriber, docs/MARKET_DATA.md 6; the broker logs it).
        deadline = loop.time() + 20
        while missing() > publisher.dropped_reliable and loop.time() < deadline:
            await asyncio.sleep(0.05)
        broker_dropped = "Outgoing messages are being dropped for client" in broker.log_text()
        assert missing() <= publisher.dropped_reliable or broker_dropped, (
            f"trades lost other than those dropped (and counted): {missing()} missing, {publisher.dropped_reliable} "
            f"dropped, {len(publisher._reliable)} still queued"
        )
        assert publisher.connections == 1


# == 4. docs/MARKET_DATA.md against the feed, the broker's configuration and itself =====================

DOCS = Path(__file__).resolve().parents[3] / "docs"
MOSQUITTO_CONF = Path(__file__).resolve().parents[3] / "config" / "mosquitto" / "mosquitto.conf"


def market_data_doc(start: str, end: str) -> str:
    text = (DOCS / "MARKET_DATA.md").read_text()
    at = text.index(start)
    return text[at : text.index(end, at)]


def test_documented_channels_are_the_feeds():
    """Sections 1 and 10 (and PROTOCOL.md 7.13) name the six channels of gateway.marketdata.feed.CHANNELS."""
    words = market_data_doc("a **channel** is one of the", "); an **account**")
    assert re.findall(r"`([a-z]+)`", words) == list(CHANNELS), words
    table = market_data_doc("| Channel | Messages |", "\n\n")
    assert [row.split("|")[1].strip().strip("`") for row in table.splitlines()[2:]] == list(CHANNELS)
    for text in (
        market_data_doc("**`subscribe`** and **`unsubscribe`**", "**Market-data messages on the socket**"),
        (DOCS / "PROTOCOL.md").read_text().split("### 7.13 subscribe")[1].split("### 7.14")[0],
    ):
        row = next(line for line in text.splitlines() if line.startswith("| `channels` |"))
        assert re.findall(r'`"([a-z]+)"`', row) == list(CHANNELS), row
        assert f"channels are {', '.join(CHANNELS)}" in text


def test_worked_example_is_one_run_and_its_maps_agree():
    """Section 11: one run; the published trade's bytes are its map; the socket got the same maps (same md_seq)
    as MQTT; the socket subscription without channels answered every channel."""
    section = market_data_doc("## 11. A worked example", "## 12. A minimal subscriber")
    mqtt = re.search(r"What the subscriber receives.*?```\n(.*?)```", section, re.DOTALL).group(1)
    published = [json.loads(line) for line in mqtt.splitlines() if line.startswith("  {")]
    socket_block = re.search(r"It\nreceived, in this order:\n\n```\n(.*?)```", section, re.DOTALL).group(1)
    on_socket = [json.loads(line) for line in socket_block.splitlines() if line.startswith("{")]
    answers = re.search(r"The answers \(each refusal.*?```\n(.*?)```", section, re.DOTALL).group(1)
    unsubscribed = json.loads(answers.splitlines()[1].removeprefix("  -> "))
    subscribed = on_socket[0]
    assert (subscribed["type"], subscribed["channels"]) == ("subscribed", sorted(CHANNELS))
    assert unsubscribed["type"] == "unsubscribed" and unsubscribed["seq"] == subscribed["seq"] + 1
    hex_text = re.search(
        r"The payload of the first `trade`, as published \((\d+) bytes.*?```\n(.*?)```", section, re.DOTALL
    )
    payload = bytes.fromhex("".join(hex_text.group(2).split()))
    first_trade = next(message for message in published if message["type"] == "trade")
    assert len(payload) == int(hex_text.group(1)) and msgpack.unpackb(payload) == first_trade
    by_key = {(message["type"], message["md_seq"]): message for message in published if "md_seq" in message}
    for message in on_socket[1:]:
        assert by_key[(message["type"], message["md_seq"])] == message, message
    stamps = [message["ts"] for message in published + on_socket + [unsubscribed] if message.get("ts")]
    assert max(stamps) - min(stamps) < 60 * NS, "the example mixes runs"
    assert subscribed["ts"] < min(message["ts"] for message in published if message.get("ts"))


def test_broker_queue_limits_are_the_shipped_configurations():
    """Section 6: a slow subscriber is bounded by mosquitto's per-client queue; the values stated are those in
    effect with config/mosquitto/mosquitto.conf (mosquitto 2.0's defaults where the file sets none)."""
    conf = MOSQUITTO_CONF.read_text()

    def setting(name: str, default: int) -> int:
        found = re.search(rf"^{name}\s+(\d+)", conf, re.MULTILINE)
        return int(found.group(1)) if found else default

    text = market_data_doc("- **A slow subscriber, even connected", "\n- **Message size")
    assert f"not yet acknowledged ({setting('max_inflight_messages', 20)})" in text
    assert f"`max_queued_messages` more waiting behind them ({setting('max_queued_messages', 1000)})" in text
    assert setting("max_queued_bytes", 0) == 0 and "`max_queued_bytes`, 0: no limit in bytes" in text
    persistent = market_data_doc("- **Persistent sessions.**", "- **A slow subscriber")
    assert (
        f"`max_queued_messages` messages per client\n  (its default, {setting('max_queued_messages', 1000)}"
        in persistent
    )


@requires_mosquitto
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mosquitto drops privileges only as root")
def test_broker_run_as_root_cannot_read_a_password_file_in_a_private_folder():
    """Section 9: started as root, mosquitto becomes the user mosquitto before it reads passwd: a password file
    in a folder of mode 0700 owned by root stops it ("Unable to open pwfile"); the same file where that user
    can read it does not."""
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto user: the broker would become nobody")
    base = Path(tempfile.mkdtemp(prefix="carbonx-mosquitto-"))  # in /tmp: every folder above it may be entered
    try:
        base.chmod(0o755)
        outcomes = {}
        for name, mode in (("private", 0o700), ("shared", 0o755)):
            folder = base / name
            folder.mkdir()
            folder.chmod(mode)
            shutil.copy(MOSQUITTO_CONF.parent / "passwd", folder / "passwd")
            (folder / "passwd").chmod(0o600 if name == "private" else 0o644)
            conf = base / f"{name}.conf"
            conf.write_text(
                f"listener {free_tcp_port()} 127.0.0.1\nallow_anonymous false\n"
                f"password_file {folder / 'passwd'}\nlog_dest stderr\n"
            )
            try:
                run = subprocess.run(
                    ["mosquitto", "-c", str(conf)], capture_output=True, text=True, timeout=2, check=False
                )
                outcomes[name] = (run.returncode, run.stderr)
            except subprocess.TimeoutExpired as still_running:  # it started: stopped by the timeout
                stderr = still_running.stderr
                outcomes[name] = (None, stderr.decode() if isinstance(stderr, bytes) else stderr or "")
        code, log = outcomes["private"]
        assert code is not None and code != 0 and "Unable to open pwfile" in log, outcomes
        code, log = outcomes["shared"]
        assert code is None and "Unable to open pwfile" not in log, outcomes
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert "Unable to open pwfile" in market_data_doc("**Started as root, the broker drops", "\n\n")


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
