"""Small builders for scenario tests: an engine from the shipped config, commands with a running clock, event filters.

A :class:`Scenario` sends commands to one engine and checks, for every
command, the promises every event list must keep (sequence numbers gap free
and continuing from the last event, every event stamped with its command's
``ts``, and the book changes announced last: one ``LevelChanged`` per level,
book by book in the engine's instrument order, bids before asks, each in the
level's final state), so each scenario test checks them without saying so.
:func:`brief` turns an event into a short tuple of the fields that matter,
so an expected event sequence reads like the story it tells.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable

from exchange import (
    CancelOrder,
    EndOfDay,
    Engine,
    LevelChanged,
    MassCancel,
    MassCancelCompleted,
    NewOrder,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    OrderReplaced,
    OrderType,
    ReplaceOrder,
    RequestRejected,
    SelfTradePreventionSet,
    SetSelfTradePrevention,
    SettlementPriceFixed,
    Side,
    StopTriggered,
    Trade,
    TradingDayClosed,
)
from exchange.instruments import Instrument
from gateway.config import load_instruments

BUY = Side.BUY
SELL = Side.SELL
SYM = "EUA"

_SHIPPED: dict[str, Instrument] | None = None


def shipped_instruments() -> dict[str, Instrument]:
    """The instruments of config/instruments.toml without their volatility band (read once; Instrument is
    frozen, the dict is a copy).

    The scenario and model tests here are about continuous matching, the collar and the price band; the
    volatility band, which would send a deep sweep into a call, is tested on its own (test_call_auction.py).
    """
    global _SHIPPED
    if _SHIPPED is None:
        _SHIPPED = {
            symbol: dataclasses.replace(instrument, volatility_band_bps=0)
            for symbol, instrument in load_instruments().items()
        }
    return dict(_SHIPPED)


def make_engine(extra: dict[str, Instrument] | None = None) -> Engine:
    """An engine over the shipped instruments, plus any extra ones a test needs."""
    instruments = shipped_instruments()
    instruments.update(extra or {})
    return Engine(instruments, pre_trade_risk=False)


def of_type(events: Iterable, *kinds: type) -> list:
    """The events of the given types, in order."""
    return [event for event in events if isinstance(event, kinds)]


def one(events: Iterable, kind: type):
    """The single event of a type; fails if there is not exactly one."""
    found = of_type(events, kind)
    assert len(found) == 1, f"expected one {kind.__name__}, got {found}"
    return found[0]


def brief(event) -> tuple:
    """The fields of an event that a scenario asserts on, as a short tuple."""
    if isinstance(event, OrderAccepted):
        return ("accepted", event.order_id)
    if isinstance(event, Trade):
        return (
            "trade",
            event.price,
            event.quantity,
            event.taker_order_id,
            event.maker_order_id,
            event.taker_leaves,
            event.maker_leaves,
        )
    if isinstance(event, LevelChanged):
        return ("level", event.side, event.price, event.quantity, event.orders)
    if isinstance(event, OrderCanceled):
        return ("canceled", event.order_id, event.canceled_quantity, event.reason)
    if isinstance(event, OrderRejected):
        return ("rejected", event.code)
    if isinstance(event, RequestRejected):
        return ("cancel_rejected", event.request, event.code)
    if isinstance(event, OrderReplaced):
        return ("replaced", event.order_id, event.price, event.quantity, event.leaves, event.priority_kept)
    if isinstance(event, OrderExpired):
        return ("expired", event.order_id, event.expired_quantity)
    if isinstance(event, StopTriggered):
        return ("triggered", event.order_id, event.stop_price, event.last_price)
    if isinstance(event, TradingDayClosed):
        return ("day_closed", event.trading_date, event.expired_orders)
    if isinstance(event, SelfTradePreventionSet):
        return ("stp_set", event.account, event.mode)
    if isinstance(event, MassCancelCompleted):
        return ("mass_canceled", event.account, event.instrument, event.canceled_orders)
    raise AssertionError(f"not an event: {event!r}")


def briefs(events: Iterable) -> list[tuple]:
    """The events' briefs, without the settlement prices every end of day fixes (tests/exchange/
    test_settlement_prices.py asserts on those; the scenarios look at what happens to orders)."""
    return [brief(event) for event in events if type(event) is not SettlementPriceFixed]


def is_level(event) -> bool:
    return type(event) is LevelChanged


def level_key(event: LevelChanged) -> tuple[str, Side, int]:
    """Which level a LevelChanged is about: (instrument, side, price)."""
    return event.instrument, event.side, event.price


def book_levels(engine: Engine) -> dict[tuple[str, Side, int], tuple[int, int]]:
    """Every level in the engine's books: (instrument, side, price) -> (shown lots, orders)."""
    return {
        (symbol, side, price): (quantity, orders)
        for symbol, book in engine.books.items()
        for side in (BUY, SELL)
        for price, quantity, orders in book.depth(side)
    }


def announcement_order(engine: Engine, keys: Iterable[tuple[str, Side, int]]) -> list[tuple[str, Side, int]]:
    """Levels in the order the engine must announce them, given the order they first changed in:
    book by book in the engine's instrument order, bids before asks, first change first."""
    symbols = list(engine.books)
    return sorted(dict.fromkeys(keys), key=lambda key: (symbols.index(key[0]), key[1] is not BUY))  # stable


def check_level_announcements(engine: Engine, events: list) -> None:
    """The promises about LevelChanged in the events of one ``handle`` or one ``handle_all`` batch.

    They come after every other event; no level is announced twice; they are
    grouped book by book in instrument order, bids before asks; and each
    carries the level's state in the engine now (0 lots, 0 orders if gone).
    """
    levels = [event for event in events if is_level(event)]
    assert events[len(events) - len(levels) :] == levels, "a LevelChanged comes before another event"
    keys = [level_key(event) for event in levels]
    assert len(set(keys)) == len(keys), f"a level is announced twice: {keys}"
    assert announcement_order(engine, keys) == keys, f"levels are not grouped by book and side: {keys}"
    now = book_levels(engine)
    assert [(event.quantity, event.orders) for event in levels] == [now.get(key, (0, 0)) for key in keys], (
        "a LevelChanged does not carry its level's final state"
    )


class DepthMirror:
    """What a market-data subscriber builds from LevelChanged events alone.

    Per book side a map price -> (shown lots, orders); a level announced with
    quantity 0 is deleted.
    """

    def __init__(self) -> None:
        self.levels: dict[tuple[str, Side], dict[int, tuple[int, int]]] = {}

    def apply(self, events: Iterable) -> None:
        for event in events:
            if not is_level(event):
                continue
            assert (event.quantity == 0) == (event.orders == 0), f"half-empty level: {event}"
            side = self.levels.setdefault((event.instrument, event.side), {})
            if event.quantity == 0:
                side.pop(event.price, None)  # a level born and gone within one batch was never seen
            else:
                side[event.price] = (event.quantity, event.orders)

    def depth(self, symbol: str, side: Side) -> list[tuple[int, int, int]]:
        """The mirrored levels of one side, best first, in the shape of ``OrderBook.depth``."""
        levels = self.levels.get((symbol, side), {})
        return [(price, *levels[price]) for price in sorted(levels, reverse=side is BUY)]

    def assert_matches(self, engine: Engine) -> None:
        for symbol, book in engine.books.items():
            for side in (BUY, SELL):
                assert self.depth(symbol, side) == book.depth(side), f"mirrored depth of {symbol} {side} differs"


def check_books(engine: Engine) -> None:
    """Every book's structural invariants, and the engine's index of open orders agrees with the books."""
    in_books = set()
    for book in engine.books.values():
        book._check()
        for side in (BUY, SELL):
            in_books.update(order.order_id for order in book.resting_orders(side))
        in_books.update(order.order_id for order in book.waiting_stops())
    assert in_books == set(engine.open_orders), "open-order index disagrees with the books"
    for account in engine.accounts.values():
        open_here = {order.order_id for order in account.orders.values() if order is not None}
        assert set(account.open_orders) == open_here, f"{account.account_id}: its open-order index disagrees"
        assert all(engine.open_orders[order_id] is order for order_id, order in account.open_orders.items())


def snapshot(engine: Engine) -> tuple[tuple[int, int, int, int | None], list[str]]:
    """The engine's counters and the rest of its canonical state, to compare before and after a command."""
    c = engine.counters
    return (c.seq, c.order_id, c.trade_id, engine.last_closed_date), list(engine.state_lines())[1:]


def assert_only_seq_moved(engine: Engine, before, by: int = 1) -> None:
    """Since ``before`` (a :func:`snapshot`) nothing changed but the event sequence counter, which moved ``by``."""
    (seq, order_id, trade_id, closed), lines = before
    assert snapshot(engine) == ((seq + by, order_id, trade_id, closed), lines)


class Scenario:
    """One engine, a running clock (ts goes up by one per command) and generated client order ids."""

    def __init__(self, engine: Engine | None = None, symbol: str = SYM, start_ts: int = 1_000) -> None:
        self.engine = engine if engine is not None else make_engine()
        self.symbol = symbol
        self._ts = itertools.count(start_ts)
        self._clids = itertools.count(1)
        self.log: list = []

    # -- commands -------------------------------------------------------------------------

    def ts(self) -> int:
        return next(self._ts)

    def send(self, command) -> list:
        """Handle one command; check sequence numbers and timestamps of what it caused."""
        before = self.engine.counters.seq
        events = self.engine.handle(command)
        assert [event.seq for event in events] == list(range(before + 1, before + 1 + len(events))), (
            "sequence numbers are not gap free"
        )
        ts = getattr(command, "ts", None)
        if type(ts) is int and ts >= 0:
            assert all(event.ts == ts for event in events), "an event does not carry its command's ts"
        check_level_announcements(self.engine, events)
        self.log += events
        return events

    def new_order(
        self,
        account: str,
        side: Side,
        quantity: int,
        price: int | None = None,
        *,
        clid: str | int | None = None,
        instrument: str | None = None,
        **fields,
    ) -> NewOrder:
        """Build (not send) a NewOrder; LIMIT GTC unless fields say otherwise."""
        return NewOrder(
            ts=self.ts(),
            account=account,
            client_order_id=f"c{next(self._clids)}" if clid is None else clid,
            instrument=self.symbol if instrument is None else instrument,
            side=side,
            quantity=quantity,
            price=price,
            **fields,
        )

    def order(self, account: str, side: Side, quantity: int, price: int | None = None, **fields) -> list:
        return self.send(self.new_order(account, side, quantity, price, **fields))

    def buy(self, account: str, quantity: int, price: int | None = None, **fields) -> list:
        return self.order(account, BUY, quantity, price, **fields)

    def sell(self, account: str, quantity: int, price: int | None = None, **fields) -> list:
        return self.order(account, SELL, quantity, price, **fields)

    def market(self, account: str, side: Side, quantity: int, **fields) -> list:
        return self.order(account, side, quantity, None, order_type=OrderType.MARKET, **fields)

    def place(self, account: str, side: Side, quantity: int, price: int | None = None, **fields) -> int:
        """Send a new order and return its order id (it must be accepted)."""
        events = self.order(account, side, quantity, price, **fields)
        return one(events, OrderAccepted).order_id

    def cancel(self, account: str, order_id: int | None = None, clid: str | int | None = None) -> list:
        return self.send(CancelOrder(ts=self.ts(), account=account, order_id=order_id, client_order_id=clid))

    def replace(
        self,
        account: str,
        order_id: int | None = None,
        *,
        clid: str | int | None = None,
        quantity: int | None = None,
        price: int | None = None,
    ) -> list:
        return self.send(
            ReplaceOrder(
                ts=self.ts(), account=account, order_id=order_id, client_order_id=clid, quantity=quantity, price=price
            )
        )

    def mass_cancel(self, account: str, instrument: str | None = None) -> list:
        return self.send(MassCancel(ts=self.ts(), account=account, instrument=instrument))

    def set_stp(self, account: str, mode) -> list:
        return self.send(SetSelfTradePrevention(ts=self.ts(), account=account, mode=mode))

    def end_of_day(self, trading_date: int) -> list:
        return self.send(EndOfDay(ts=self.ts(), trading_date=trading_date))

    # -- looking at the book ----------------------------------------------------------------

    @property
    def book(self):
        return self.engine.books[self.symbol]

    def depth(self, side: Side, symbol: str | None = None) -> list[tuple[int, int, int]]:
        return self.engine.books[symbol or self.symbol].depth(side)

    def queue(self, side: Side, symbol: str | None = None) -> list[int]:
        """Order ids resting on one side, in matching priority."""
        return [order.order_id for order in self.engine.books[symbol or self.symbol].resting_orders(side)]

    def check(self) -> None:
        check_books(self.engine)


__all__ = [
    "BUY",
    "SELL",
    "SYM",
    "DepthMirror",
    "Scenario",
    "announcement_order",
    "assert_only_seq_moved",
    "book_levels",
    "brief",
    "briefs",
    "check_books",
    "check_level_announcements",
    "is_level",
    "level_key",
    "make_engine",
    "of_type",
    "one",
    "shipped_instruments",
    "snapshot",
]
