"""Market data: the engine's events turned into the public feed of each instrument.

How this works
--------------
:class:`MarketDataFeed` is pure logic, run by the gateway's engine task at
each batch's commit (so it sees the books exactly as the batch left them).
``messages(events)`` returns what the batch publishes, per instrument and
channel, in order (the schemas of :mod:`gateway.wire.messages`):

- ``trades``: one ``trade`` per fill (price, quantity, aggressor side, trade id,
  exchange timestamp), and per block trade or EFP of a futures contract (flagged
  ``block``: counted in the day's volume, not in its open, high, low or last);
- ``book``: one ``book_update`` with the levels of the top ``levels`` (10 by
  default) that changed, per side, found by comparing the top of the book as
  last published with the top now. Only instruments with a ``LevelChanged``
  event in the batch are looked at. A level whose quantity is 0 in an update
  has left the top (emptied, or pushed below it by a better one); one that
  comes up from below arrives with its quantity. ``book_snapshot`` gives the
  whole top at a sequence number, for a subscriber that joins or has missed
  an update;
- ``top``: ``top_of_book`` whenever the best bid or ask, or their quantity,
  changed;
- ``stats``: ``statistics`` after a batch with trades (open, high, low, last,
  volume, VWAP, number of trades) and at the end of a trading day, with the
  settlement price the engine fixed (``SettlementPriceFixed``: the
  volume-weighted average of the settlement window's trades, see
  ``exchange.settlement_prices``), marked ``trading_day_closed``; then the
  next day's (empty) figures, which keep the settlement price until the next
  close;
- ``auctions``: each primary auction of the instrument when it opens
  (volume, window, the seed's hash) and when it is decided (clearing
  price, volume, total bids, cover ratio, bidders, successful bidders, the
  seed; or why it was cancelled); no bid is ever published;
- ``status``: the instrument's trading phase (``exchange.enums.TradingPhase``)
  and the coarse ``status`` (``open`` in continuous trading and calls,
  ``halted``, ``closed``), with why it changed (``reason``: ``operator``, or
  ``volatility`` for a volatility interruption, with the price that would
  have traded and the band's reference); during a call, after each batch
  that changed the book, the indicative auction price and quantity; after
  an auction, its price and quantity.

Every message carries ``md_seq``, numbered per instrument and channel from 1,
gap free: a subscriber that sees a gap in ``book`` updates takes the next
snapshot (its ``md_seq`` is that of the last update it includes). Prices are
integer ticks and quantities lots, as on the trading protocol
(docs/MARKET_DATA.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from exchange import (
    CALL_PHASES,
    AuctionCompleted,
    AuctionIndicative,
    BlockTraded,
    ContractExpired,
    ContractListed,
    Engine,
    LevelChanged,
    PrimaryAuctionCancelled,
    PrimaryAuctionCleared,
    PrimaryAuctionOpened,
    SettlementPriceFixed,
    Side,
    Trade,
    TradingDayClosed,
    TradingPhase,
    TradingPhaseChanged,
)
from gateway.pipeline.reports import auction_report, average_price
from gateway.wire.messages import (
    AuctionReport,
    BookSnapshot,
    BookUpdate,
    InstrumentStatus,
    LevelChange,
    MarketData,
    PublicTrade,
    Statistics,
    TopOfBook,
)

CHANNELS = ("book", "top", "trades", "stats", "status", "auctions")
OPEN, HALTED, CLOSED = "open", "halted", "closed"
DEFAULT_LEVELS = 10


class InstrumentFeed:
    """The published state of one instrument: its top of book, statistics, status and sequence numbers."""

    def __init__(
        self,
        symbol: str,
        tick: int,
        lot_units: int,
        levels: int,
        phase: TradingPhase = TradingPhase.CONTINUOUS,
    ) -> None:
        self.symbol = symbol
        self.tick = tick
        self.lot_units = lot_units
        self.levels = levels
        self.seq = dict.fromkeys(CHANNELS, 0)  # the md_seq of the last message of each channel
        self.seq["status"] = 1  # the first status, open, is a message of its own
        self.bids: list[tuple[int, int, int]] = []  # the top as last published: (price, lots, orders), cents
        self.asks: list[tuple[int, int, int]] = []
        self.top: tuple[int | None, int, int | None, int] = (None, 0, None, 0)  # bid, lots, ask, lots (cents)
        self.phase = phase
        self.reason: str | None = None  # why the phase last changed: "operator" or "volatility"
        self.trigger_price: int | None = None  # cents: a volatility interruption's price outside the band
        self.reference_price: int | None = None  # cents: the band's centre, for a volatility interruption
        self.indicative: tuple[int | None, int, int, int] = (None, 0, 0, 0)  # a call's price, lots, demand, supply
        self.auction: tuple[int | None, int] = (None, 0)  # the last auction's price and lots
        self.last: int | None = None  # cents
        self.settlement_price: int | None = None
        self.last_close: Statistics | None = None  # the statistics the last trading day closed with
        self.ts = 0  # of the last message
        self._new_day()

    def _new_day(self) -> None:
        self.open: int | None = None
        self.high: int | None = None
        self.low: int | None = None
        self.volume = 0  # lots
        self.value = 0  # cents x lots
        self.trades = 0

    def next_seq(self, channel: str) -> int:
        self.seq[channel] += 1
        return self.seq[channel]

    # -- messages of the current state -----------------------------------------------------

    # Messages built from positional arguments, in each schema's field order: msgspec makes a struct from them about
    # five times faster than from keywords, and the feed makes several for every batch.

    def snapshot(self) -> BookSnapshot:
        """The book channel's state: the whole published top, at the last update's ``md_seq``."""
        tick = self.tick
        return BookSnapshot(
            self.symbol,
            self.seq["book"],
            self.levels,
            [(p // tick, q, n) for p, q, n in self.bids],
            [(p // tick, q, n) for p, q, n in self.asks],
            self.ts,
        )

    def top_message(self) -> TopOfBook:
        bid, bid_lots, ask, ask_lots = self.top
        tick = self.tick
        return TopOfBook(
            self.symbol,
            self.seq["top"],
            None if bid is None else bid // tick,
            bid_lots,
            None if ask is None else ask // tick,
            ask_lots,
            self.ts,
        )

    def statistics(self) -> Statistics:
        tick = self.tick
        return Statistics(
            self.symbol,
            self.seq["stats"],
            _ticks(self.open, tick),
            _ticks(self.high, tick),
            _ticks(self.low, tick),
            _ticks(self.last, tick),
            self.volume,
            self.volume * self.lot_units,
            average_price(self.value, self.volume),
            self.trades,
            _ticks(self.settlement_price, tick),
            self.ts,
        )

    @property
    def status(self) -> str:
        """The coarse status: open (continuous trading or a call), halted or closed."""
        phase = self.phase
        return CLOSED if phase is TradingPhase.CLOSED else HALTED if phase is TradingPhase.HALTED else OPEN

    def status_message(self) -> InstrumentStatus:
        tick = self.tick
        price, lots, demand, supply = self.indicative
        return InstrumentStatus(
            self.symbol,
            self.seq["status"],
            self.status,
            self.phase,
            self.reason,
            _ticks(self.trigger_price, tick),
            _ticks(self.reference_price, tick),
            _ticks(price, tick),
            lots,
            demand,
            supply,
            _ticks(self.auction[0], tick),
            self.auction[1],
            self.ts,
        )

    def phase_changed(self, event: TradingPhaseChanged) -> None:
        self.phase = event.phase
        self.reason = event.reason
        self.trigger_price = event.trigger_price
        self.reference_price = event.reference_price
        if event.phase not in CALL_PHASES:
            self.indicative = (None, 0, 0, 0)
        self.ts = event.ts

    def state(self) -> list[tuple[str, MarketData]]:
        """(channel, message) for every channel that has a state: what a late joiner needs first."""
        return [
            ("book", self.snapshot()),
            ("top", self.top_message()),
            ("stats", self.statistics()),
            ("status", self.status_message()),
        ]

    # -- changes ------------------------------------------------------------------------------

    def trade(self, event: Trade) -> PublicTrade:
        price, lots = event.price, event.quantity
        high, low = self.high, self.low
        if high is None or low is None:  # the day's first trade
            self.open = self.high = self.low = price
        elif price > high:
            self.high = price
        elif price < low:
            self.low = price
        self.last = price
        self.volume += lots
        self.value += price * lots
        self.trades += 1
        self.ts = event.ts
        return PublicTrade(
            self.symbol,
            self.next_seq("trades"),
            event.trade_id,
            price // self.tick,
            lots,
            event.aggressor_side,
            event.ts,
        )

    def block_trade(self, event: BlockTraded) -> PublicTrade:
        """A block trade or EFP: in the day's volume, value and count, but not its open, high, low or last (a
        price agreed off the book says nothing of the book's)."""
        self.volume += event.quantity
        self.value += event.price * event.quantity
        self.trades += 1
        self.ts = event.ts
        trade = PublicTrade(
            self.symbol,
            self.next_seq("trades"),
            event.trade_id,
            event.price // self.tick,
            event.quantity,
            None,
            event.ts,
        )
        trade.block = event.kind
        return trade

    def book_changes(
        self, bids: list[tuple[int, int, int]], asks: list[tuple[int, int, int]], ts: int
    ) -> list[tuple[str, MarketData]]:
        """The book update and top of book for the top now being ``bids`` and ``asks`` (if anything changed)."""
        changes = _changed_levels("B", self.bids, bids, self.tick) + _changed_levels("S", self.asks, asks, self.tick)
        out: list[tuple[str, MarketData]] = []
        self.ts = ts
        if changes:
            self.bids, self.asks = bids, asks
            out.append(("book", BookUpdate(self.symbol, self.next_seq("book"), changes, ts)))
        bid, bid_lots = (bids[0][0], bids[0][1]) if bids else (None, 0)
        ask, ask_lots = (asks[0][0], asks[0][1]) if asks else (None, 0)
        top = (bid, bid_lots, ask, ask_lots)
        if top != self.top:
            self.top = top
            self.next_seq("top")
            out.append(("top", self.top_message()))
        return out

    def close_day(self, ts: int) -> list[Statistics]:
        """The day's last statistics, with the settlement price the engine fixed just before, then the next
        day's, starting from nothing (the settlement price carries on in them until the next close)."""
        self.ts = ts
        self.next_seq("stats")
        closing = self.statistics()
        closing.trading_day_closed = True
        self.last_close = closing  # for the day's report (gateway.schedule.day_files)
        self._new_day()
        self.next_seq("stats")
        return [closing, self.statistics()]


def _ticks(cents: int | None, tick: int) -> int | None:
    return None if cents is None else cents // tick


def _changed_levels(
    side: str, before: list[tuple[int, int, int]], after: list[tuple[int, int, int]], tick: int
) -> list[LevelChange]:
    """[side, price, lots, orders] for each level of ``after`` that is new or different, and [side, price, 0, 0]
    for each level of ``before`` that is gone from ``after``; prices in ticks."""
    if before == after:
        return []
    old = {price: (lots, orders) for price, lots, orders in before}
    new_prices = set()
    changes: list[LevelChange] = []
    for price, lots, orders in after:
        new_prices.add(price)
        if old.get(price) != (lots, orders):
            changes.append((side, price // tick, lots, orders))
    changes.extend((side, price // tick, 0, 0) for price, _, _ in before if price not in new_prices)
    return changes


# The engine events the feed publishes or follows; it passes over every other kind with one set lookup.
PUBLISHED = frozenset(
    {
        Trade,
        LevelChanged,
        BlockTraded,
        PrimaryAuctionOpened,
        PrimaryAuctionCleared,
        PrimaryAuctionCancelled,
        AuctionIndicative,
        TradingPhaseChanged,
        AuctionCompleted,
        TradingDayClosed,
        SettlementPriceFixed,
        ContractListed,
        ContractExpired,
    }
)


class MarketDataFeed:
    """The public feed of every instrument of an engine (see the module notes)."""

    def __init__(self, engine: Engine, levels: int = DEFAULT_LEVELS) -> None:
        self.engine = engine
        self.levels = levels
        self.instruments: dict[str, InstrumentFeed] = {
            symbol: InstrumentFeed(
                symbol,
                instrument.tick_size,
                instrument.lot_units,
                levels,
                engine.phase(symbol),
            )
            for symbol, instrument in engine.instruments.items()
        }
        self.auction_results: dict[str, AuctionReport] = {}  # auction id -> the published outcome of a decided auction

    def messages(self, events: Iterable[object]) -> list[tuple[str, str, MarketData]]:
        """(instrument, channel, message) for everything a batch's events publish, in order."""
        out: list[tuple[str, str, MarketData]] = []
        feeds = self.instruments
        changed: dict[str, int] = {}  # instruments whose book changed -> ts of the change
        traded: dict[str, int] = {}
        for event in events:
            kind = event.__class__
            if kind not in PUBLISHED:  # most of a batch's events (accepted, filled, canceled orders)
                continue
            if isinstance(event, LevelChanged):  # (isinstance on an exact class: about as fast as ``is``, and typed)
                changed[event.instrument] = event.ts
            elif isinstance(event, Trade):
                out.append((event.instrument, "trades", feeds[event.instrument].trade(event)))
                traded[event.instrument] = event.ts
            elif isinstance(event, BlockTraded):
                out.append((event.instrument, "trades", feeds[event.instrument].block_trade(event)))
                traded[event.instrument] = event.ts
            elif isinstance(event, (PrimaryAuctionOpened, PrimaryAuctionCleared, PrimaryAuctionCancelled)):
                feed = feeds[event.instrument]
                message = auction_report(event, feed.tick)
                message.md_seq = feed.next_seq("auctions")
                if kind is not PrimaryAuctionOpened:
                    self.auction_results[event.auction_id] = message
                out.append((event.instrument, "auctions", message))
            elif isinstance(event, AuctionIndicative):  # published after the book change it reflects, with it
                feed = feeds[event.instrument]
                feed.indicative = (event.price, event.quantity, event.demand, event.supply)
                feed.ts = event.ts
            else:
                # A phase change, a call auction's completion or the day's close. In order: the trades and book
                # before it are published first (an auction's trades before the phase it opens; the day's
                # trades before its close).
                self._flush(changed, traded, out)
                changed, traded = {}, {}
                if isinstance(event, ContractListed):  # a futures month begins trading: its channels open
                    feed = feeds[event.instrument] = InstrumentFeed(
                        event.instrument, event.tick_size, event.lot_units, self.levels, event.phase
                    )
                    out.append((event.instrument, "status", feed.status_message()))
                elif isinstance(event, ContractExpired):  # its last statistics and status; then its channels go
                    feed = feeds.pop(event.instrument)
                    feed.phase = TradingPhase.CLOSED
                    feed.ts = event.ts
                    feed.next_seq("stats")
                    closing = feed.statistics()  # with the final settlement price: the day's close never reaches it
                    closing.trading_day_closed = True
                    out.append((event.instrument, "stats", closing))
                    feed.next_seq("status")
                    out.append((event.instrument, "status", feed.status_message()))
                elif isinstance(event, SettlementPriceFixed):  # just before the day's close (TradingDayClosed)
                    feeds[event.instrument].settlement_price = event.price
                elif isinstance(event, TradingDayClosed):
                    for symbol, feed in feeds.items():
                        out.extend((symbol, "stats", message) for message in feed.close_day(event.ts))
                elif isinstance(event, AuctionCompleted):
                    feed = feeds[event.instrument]
                    feed.auction = (event.price, event.quantity)
                    feed.ts = event.ts  # the phase change that follows it publishes the status
                elif isinstance(event, TradingPhaseChanged):
                    feed = feeds[event.instrument]
                    feed.phase_changed(event)
                    feed.next_seq("status")
                    out.append((event.instrument, "status", feed.status_message()))
        self._flush(changed, traded, out)
        return out

    def _flush(
        self, changed: Mapping[str, int], traded: Mapping[str, int], out: list[tuple[str, str, MarketData]]
    ) -> None:
        depth, levels = self.engine.depth, self.levels
        for symbol, ts in changed.items():
            if not self.engine.has_instrument(symbol):  # a futures contract expired in the batch: its book is gone
                continue
            feed = self.instruments[symbol]
            for channel, message in feed.book_changes(
                depth(symbol, Side.BUY, levels), depth(symbol, Side.SELL, levels), ts
            ):
                out.append((symbol, channel, message))
            if feed.phase in CALL_PHASES:  # the indicative price the change made (AuctionIndicative)
                feed.next_seq("status")
                out.append((symbol, "status", feed.status_message()))
        for symbol, ts in traded.items():
            if symbol not in self.instruments:  # (an expired contract whose channels have closed)
                continue
            feed = self.instruments[symbol]
            feed.ts = ts
            feed.next_seq("stats")
            out.append((symbol, "stats", feed.statistics()))

    def state(self, symbol: str) -> list[tuple[str, MarketData]]:
        """The current state of an instrument's channels (snapshot, top, statistics, status)."""
        return self.instruments[symbol].state()
