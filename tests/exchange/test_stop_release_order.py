"""Stops reached at the same moment: which is released first.

Stop-limit orders placed during a call wait (a call releases nothing); when
continuous trading resumes, every stop the auction price (or the last price)
reaches is released, one at a time: on each side the nearest stop first
(ties by arrival), and between a buy and a sell stop both reached, the
earlier arrival (``OrderBook.next_stop_to_release``). The order matters: a
released stop enters as a limit order arriving now, so the first one may
rest and become the maker of the second, at its own price.

How it works
------------
1. Scenarios with exact events: a buy stop and a sell stop whose limits cross
   each other, both reached by the reopening auction; whichever arrived first
   rests and the other trades against it, at the first one's price. Both
   arrival orders are played, so neither "buy first" nor "sell first" passes;
   a third scenario has no auction trade at all: the last price from before
   the call reaches both stops, and the phase change alone releases them.
2. Properties (hypothesis): stops placed in a call, with limits that cannot
   trade with each other, released by the auction: with one shared stop
   price they come out in arrival order exactly; with stop prices of their
   own they follow a small model of the documented rule (per side nearest
   first, between the sides the earlier arrival), and the unreached ones
   keep waiting.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from scenario_helpers import BUY, SELL, SYM, Scenario, of_type

from exchange import (
    AuctionCompleted,
    LevelChanged,
    SetTradingPhase,
    Side,
    StopTriggered,
    Trade,
    TradingPhase,
    TradingPhaseChanged,
)

OPENING, CONT, CLOSED = TradingPhase.OPENING_CALL, TradingPhase.CONTINUOUS, TradingPhase.CLOSED
AUCTION_PRICE = 7000  # the reference price: a lone bid and ask at it clear there


def phase(s: Scenario, to: TradingPhase) -> list:
    return s.send(SetTradingPhase(ts=s.ts(), instrument=SYM, phase=to))


def into_opening_call_with_an_auction_at_7000(s: Scenario) -> tuple[int, int]:
    """Continuous -> closed -> opening call, with one bid and one ask at 7000 that the auction will match."""
    phase(s, CLOSED)
    phase(s, OPENING)
    bid = s.place("x", BUY, 1, AUCTION_PRICE)
    ask = s.place("y", SELL, 1, AUCTION_PRICE)
    return bid, ask


def trades(events) -> list[tuple]:
    return [
        (
            t.price,
            t.quantity,
            t.aggressor_side,
            t.taker_order_id,
            t.taker_account,
            t.taker_leaves,
            t.maker_order_id,
            t.maker_account,
            t.maker_leaves,
        )
        for t in of_type(events, Trade)
    ]


def levels(events) -> list[tuple]:
    return [(e.side, e.price, e.quantity, e.orders) for e in of_type(events, LevelChanged)]


def triggered(events) -> list[tuple]:
    return [(e.order_id, e.account, e.stop_price, e.last_price) for e in of_type(events, StopTriggered)]


# -- 1. scenarios ------------------------------------------------------------------------------------


def test_buy_stop_arriving_first_is_released_first_and_becomes_the_maker():
    s = Scenario()
    bid, ask = into_opening_call_with_an_auction_at_7000(s)
    buy_stop = s.place("b", BUY, 5, 7050, stop_price=6990)  # reached by 7000 (buy: last >= stop)
    sell_stop = s.place("s", SELL, 3, 6950, stop_price=7010)  # reached by 7000 (sell: last <= stop)
    assert s.book.last_price is None and {o.order_id for o in s.book.waiting_stops()} == {buy_stop, sell_stop}

    events = phase(s, CONT)

    assert trades(events) == [
        (7000, 1, None, bid, "x", 0, ask, "y", 0),  # the auction
        # The buy stop rested at its 7050 first; the sell stop takes it there.
        (7050, 3, SELL, sell_stop, "s", 0, buy_stop, "b", 2),
    ]
    assert triggered(events) == [(buy_stop, "b", 6990, 7000), (sell_stop, "s", 7010, 7000)]
    assert [type(e) for e in events] == [
        Trade,
        AuctionCompleted,
        TradingPhaseChanged,
        StopTriggered,
        StopTriggered,
        Trade,
        LevelChanged,
        LevelChanged,
        LevelChanged,
    ]
    assert levels(events) == [(BUY, 7000, 0, 0), (BUY, 7050, 2, 1), (SELL, 7000, 0, 0)]
    assert s.queue(BUY) == [buy_stop] and s.depth(BUY) == [(7050, 2, 1)] and s.depth(SELL) == []
    assert s.book.last_price == 7050 and s.book.waiting_stops() == []
    s.check()


def test_sell_stop_arriving_first_is_released_first_and_becomes_the_maker():
    s = Scenario()
    bid, ask = into_opening_call_with_an_auction_at_7000(s)
    sell_stop = s.place("s", SELL, 3, 6950, stop_price=7010)
    buy_stop = s.place("b", BUY, 5, 7050, stop_price=6990)

    events = phase(s, CONT)

    assert trades(events) == [
        (7000, 1, None, bid, "x", 0, ask, "y", 0),
        # The sell stop rested at its 6950 first; the buy stop takes all of it there and rests the rest.
        (6950, 3, BUY, buy_stop, "b", 2, sell_stop, "s", 0),
    ]
    assert triggered(events) == [(sell_stop, "s", 7010, 7000), (buy_stop, "b", 6990, 7000)]
    assert [type(e) for e in events] == [
        Trade,
        AuctionCompleted,
        TradingPhaseChanged,
        StopTriggered,
        StopTriggered,
        Trade,
        LevelChanged,
        LevelChanged,
        LevelChanged,
        LevelChanged,
    ]
    # The sell stop's level at 6950 came and went within the command: announced empty.
    assert levels(events) == [(BUY, 7000, 0, 0), (BUY, 7050, 2, 1), (SELL, 7000, 0, 0), (SELL, 6950, 0, 0)]
    assert s.queue(BUY) == [buy_stop] and s.depth(BUY) == [(7050, 2, 1)] and s.depth(SELL) == []
    assert s.book.last_price == 6950 and s.book.waiting_stops() == []
    s.check()


def test_stops_placed_in_a_call_after_a_last_trade_are_released_in_arrival_order_without_an_auction():
    # The last price (7000, from continuous trading before the call) already reaches both stops; the call
    # has nothing to match, so they are released by the phase change alone, the earlier arrival first.
    s = Scenario()
    s.place("x", SELL, 1, 7000)
    s.buy("y", 1, 7000)
    phase(s, CLOSED)
    phase(s, OPENING)
    sell_stop = s.place("s", SELL, 4, 6980, stop_price=7000)
    buy_stop = s.place("b", BUY, 4, 7020, stop_price=7000)

    events = phase(s, CONT)

    assert trades(events) == [(6980, 4, BUY, buy_stop, "b", 0, sell_stop, "s", 0)]
    assert triggered(events) == [(sell_stop, "s", 7000, 7000), (buy_stop, "b", 7000, 7000)]
    assert s.depth(BUY) == [] and s.depth(SELL) == [] and s.book.last_price == 6980
    s.check()


# -- 2. properties -----------------------------------------------------------------------------------

# (side, stop distance in ticks from the auction price towards "reached", limit offset in ticks, lots).
# A buy stop is reached when 7000 >= stop, so its stop is 7000 - 10 * distance; a sell stop's is
# 7000 + 10 * distance; a negative distance is not reached. Buy limits stay at or below 6990 and sell
# limits at or above 7010: released stops rest without trading, so the last price stays 7000 throughout.
stop_orders = st.lists(
    st.tuples(st.sampled_from([BUY, SELL]), st.integers(-2, 3), st.integers(1, 4), st.integers(1, 9)),
    min_size=1,
    max_size=12,
)


def place_stops_in_a_call(s: Scenario, stops, same_stop_price: bool) -> list[tuple[int, Side, int]]:
    """Place the stops in arrival order; return (order id, side, stop price) of each."""
    placed = []
    for side, distance, offset, lots in stops:
        if same_stop_price:
            distance = 0
        toward = -1 if side is BUY else 1
        stop_price = AUCTION_PRICE + toward * 10 * distance
        limit = AUCTION_PRICE + toward * 10 * offset
        order_id = s.place("b" if side is BUY else "s", side, lots, limit, stop_price=stop_price)
        placed.append((order_id, side, stop_price))
    return placed


def released_by_the_rule(placed: list[tuple[int, Side, int]], last: int) -> list[int]:
    """The documented release order: on each side nearest stop first (then arrival), between the two
    sides' next stops the earlier arrival; only stops the last price reaches."""
    buys = sorted((stop, order_id) for order_id, side, stop in placed if side is BUY and stop <= last)
    sells = sorted((-stop, order_id) for order_id, side, stop in placed if side is SELL and stop >= last)
    out = []
    while buys or sells:
        if buys and (not sells or buys[0][1] < sells[0][1]):
            out.append(buys.pop(0)[1])
        else:
            out.append(sells.pop(0)[1])
    return out


@given(stops=stop_orders)
def test_stops_sharing_a_stop_price_are_released_in_arrival_order(stops):
    s = Scenario()
    into_opening_call_with_an_auction_at_7000(s)
    placed = place_stops_in_a_call(s, stops, same_stop_price=True)
    events = phase(s, CONT)
    arrival = [order_id for order_id, _, _ in placed]
    assert [e.order_id for e in of_type(events, StopTriggered)] == arrival
    assert len(of_type(events, Trade)) == 1  # the auction only: released stops rest
    assert all(e.last_price == AUCTION_PRICE for e in of_type(events, StopTriggered))
    assert s.book.waiting_stops() == []
    s.check()


@given(stops=stop_orders)
def test_simultaneously_reached_stops_follow_the_release_rule(stops):
    s = Scenario()
    into_opening_call_with_an_auction_at_7000(s)
    placed = place_stops_in_a_call(s, stops, same_stop_price=False)
    events = phase(s, CONT)
    assert s.book.last_price == AUCTION_PRICE
    assert [e.order_id for e in of_type(events, StopTriggered)] == released_by_the_rule(placed, AUCTION_PRICE)
    assert all(e.last_price == AUCTION_PRICE for e in of_type(events, StopTriggered))
    unreached = sorted(
        order_id for order_id, side, stop in placed if (stop > AUCTION_PRICE if side is BUY else stop < AUCTION_PRICE)
    )
    assert sorted(o.order_id for o in s.book.waiting_stops()) == unreached
    s.check()
