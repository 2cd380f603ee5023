"""Limit and market orders: price-time priority, fills at the maker's price, sweeps and the market collar.

Prices are cents, quantities lots. The shipped EUA has reference price 7000
and a market collar of 350, so before any trade a market buy may trade up to
7350 and a market sell down to 6650.
"""

from scenario_helpers import BUY, SELL, Scenario, briefs, of_type

from exchange import CancelReason, LevelChanged, OrderAccepted, OrderType, SelfTradePrevention, TimeInForce, Trade


def test_limit_order_that_does_not_cross_rests_with_exact_events():
    s = Scenario()
    events = s.buy("alice", 5, 6990, clid="a1")
    assert events == [
        OrderAccepted(
            seq=1,
            ts=1000,
            instrument="EUA",
            order_id=1,
            account="alice",
            client_order_id="a1",
            side=BUY,
            order_type=OrderType.LIMIT,
            time_in_force=TimeInForce.GTC,
            price=6990,
            quantity=5,
            display_quantity=None,
            stop_price=None,
            expire_date=None,
            post_only=False,
            self_trade_prevention=SelfTradePrevention.NONE,
        ),
        LevelChanged(seq=2, ts=1000, instrument="EUA", side=BUY, price=6990, quantity=5, orders=1),
    ]
    assert s.depth(BUY) == [(6990, 5, 1)]
    assert s.depth(SELL) == []
    s.check()


def test_price_time_priority_better_price_first_then_earlier_arrival():
    s = Scenario()
    first = s.place("a", SELL, 5, 7000)
    second = s.place("b", SELL, 5, 7000)
    better = s.place("c", SELL, 5, 6990)
    worse = s.place("d", SELL, 5, 7010)
    events = s.buy("e", 12, 7000)
    taker = events[0].order_id
    assert briefs(events[1:]) == [
        ("trade", 6990, 5, taker, better, 7, 0),
        ("trade", 7000, 5, taker, first, 2, 0),
        ("trade", 7000, 2, taker, second, 0, 3),
        ("level", SELL, 6990, 0, 0),
        ("level", SELL, 7000, 3, 1),
    ]
    assert s.depth(SELL) == [(7000, 3, 1), (7010, 5, 1)]
    assert s.queue(SELL) == [second, worse]
    assert s.depth(BUY) == []
    s.check()


def test_trade_prints_at_the_resting_price_with_full_trade_fields():
    s = Scenario()
    maker = s.place("alice", BUY, 4, 7100, clid="bid-1")
    events = s.sell("bob", 3, 7000, clid="ask-1")
    taker = events[0].order_id
    trade = of_type(events, Trade)
    assert trade == [
        Trade(
            seq=4,
            ts=1001,
            instrument="EUA",
            trade_id=1,
            price=7100,
            quantity=3,
            aggressor_side=SELL,
            taker_order_id=taker,
            taker_account="bob",
            taker_client_order_id="ask-1",
            taker_leaves=0,
            maker_order_id=maker,
            maker_account="alice",
            maker_client_order_id="bid-1",
            maker_leaves=1,
            maker_fee=3 * 200,
            taker_fee=3 * 350,
        )
    ]  # shipped fees: EUR 2.00 and 3.50 a lot
    assert s.depth(BUY) == [(7100, 1, 1)]
    assert s.book.last_price == 7100
    s.check()


def test_buy_taker_pays_the_lower_resting_ask_not_its_limit():
    s = Scenario()
    s.place("alice", SELL, 2, 6950)
    events = s.buy("bob", 2, 7200)
    assert [trade.price for trade in of_type(events, Trade)] == [6950]
    s.check()


def test_partial_fill_leaves_the_maker_first_in_its_queue():
    s = Scenario()
    big = s.place("a", SELL, 10, 7000)
    later = s.place("b", SELL, 5, 7000)
    events = s.buy("c", 4, 7000)
    assert briefs(events[1:]) == [("trade", 7000, 4, events[0].order_id, big, 0, 6), ("level", SELL, 7000, 11, 2)]
    assert s.queue(SELL) == [big, later]
    events = s.buy("d", 7, 7000)
    assert briefs(events[1:]) == [
        ("trade", 7000, 6, events[0].order_id, big, 1, 0),
        ("trade", 7000, 1, events[0].order_id, later, 0, 4),
        ("level", SELL, 7000, 4, 1),
    ]
    s.check()


def test_partially_filled_taker_rests_its_remainder_at_its_limit():
    s = Scenario()
    maker = s.place("a", SELL, 4, 7000)
    events = s.buy("b", 10, 7000)
    taker = events[0].order_id
    assert briefs(events[1:]) == [
        ("trade", 7000, 4, taker, maker, 6, 0),
        ("level", BUY, 7000, 6, 1),  # bids before asks, though the ask level changed first
        ("level", SELL, 7000, 0, 0),
    ]
    assert s.depth(BUY) == [(7000, 6, 1)] and s.depth(SELL) == []
    assert s.engine.open_orders[taker].leaves == 6
    s.check()


def test_sweep_over_several_levels_reports_each_level_and_rests_the_rest():
    s = Scenario()
    a = s.place("a", SELL, 2, 7000)
    b = s.place("b", SELL, 3, 7000)
    c = s.place("c", SELL, 4, 7001)
    d = s.place("d", SELL, 5, 7003)
    events = s.buy("e", 20, 7002)
    taker = events[0].order_id
    assert briefs(events) == [
        ("accepted", taker),
        ("trade", 7000, 2, taker, a, 18, 0),
        ("trade", 7000, 3, taker, b, 15, 0),
        ("trade", 7001, 4, taker, c, 11, 0),
        ("level", BUY, 7002, 11, 1),
        ("level", SELL, 7000, 0, 0),
        ("level", SELL, 7001, 0, 0),
    ]
    assert [t.trade_id for t in of_type(events, Trade)] == [1, 2, 3]
    assert s.depth(SELL) == [(7003, 5, 1)]
    assert s.queue(SELL) == [d]
    assert s.depth(BUY) == [(7002, 11, 1)]
    assert s.book.last_price == 7001
    s.check()


def test_sell_sweep_walks_bids_from_the_highest_down():
    s = Scenario()
    low = s.place("a", BUY, 5, 6990)
    high = s.place("b", BUY, 5, 7000)
    events = s.sell("c", 7, 6990)
    taker = events[0].order_id
    assert briefs(events[1:]) == [
        ("trade", 7000, 5, taker, high, 2, 0),
        ("trade", 6990, 2, taker, low, 0, 3),
        ("level", BUY, 7000, 0, 0),  # in the order the levels changed, not by price
        ("level", BUY, 6990, 3, 1),
    ]
    s.check()


def test_market_order_sweeps_levels():
    s = Scenario()
    a = s.place("a", SELL, 3, 7000)
    b = s.place("b", SELL, 4, 7010)
    events = s.market("c", BUY, 5)
    taker = events[0].order_id
    assert events[0].price is None and events[0].order_type is OrderType.MARKET
    assert briefs(events[1:]) == [
        ("trade", 7000, 3, taker, a, 2, 0),
        ("trade", 7010, 2, taker, b, 0, 2),
        ("level", SELL, 7000, 0, 0),
        ("level", SELL, 7010, 2, 1),
    ]
    assert taker not in s.engine.open_orders
    s.check()


def test_market_order_leftover_is_cancelled_and_never_rests():
    s = Scenario()
    a = s.place("a", SELL, 3, 7000)
    events = s.market("b", BUY, 10)
    taker = events[0].order_id
    assert briefs(events[1:]) == [
        ("trade", 7000, 3, taker, a, 7, 0),
        ("canceled", taker, 7, CancelReason.MARKET_REMAINDER),
        ("level", SELL, 7000, 0, 0),
    ]
    assert s.depth(BUY) == [] and s.depth(SELL) == []
    assert taker not in s.engine.open_orders
    # A later sell finds nobody: the market order's rest is really gone.
    events = s.sell("c", 5, 6000)
    assert of_type(events, Trade) == []
    s.check()


def test_market_order_on_an_empty_book_is_cancelled_whole():
    s = Scenario()
    for side in (BUY, SELL):
        events = s.market("a", side, 4)
        assert briefs(events) == [
            ("accepted", events[0].order_id),
            ("canceled", events[0].order_id, 4, CancelReason.MARKET_REMAINDER),
        ]
    assert s.depth(BUY) == [] and s.depth(SELL) == []
    s.check()


def test_market_order_with_day_time_in_force_still_never_rests():
    s = Scenario()
    events = s.market("a", SELL, 4, time_in_force=TimeInForce.DAY)
    assert briefs(events)[-1] == ("canceled", events[0].order_id, 4, CancelReason.MARKET_REMAINDER)
    assert s.depth(SELL) == []
    s.check()


def test_market_buy_stops_at_the_collar_above_the_configured_reference():
    s = Scenario()
    assert s.book.reference_price() == 7000 and s.book.instrument.market_collar == 350
    inside = s.place("a", SELL, 5, 7300)
    edge = s.place("b", SELL, 5, 7350)
    beyond = s.place("c", SELL, 5, 7351)
    events = s.market("d", BUY, 20)
    taker = events[0].order_id
    assert briefs(events[1:]) == [
        ("trade", 7300, 5, taker, inside, 15, 0),
        ("trade", 7350, 5, taker, edge, 10, 0),
        ("canceled", taker, 10, CancelReason.MARKET_REMAINDER),
        ("level", SELL, 7300, 0, 0),
        ("level", SELL, 7350, 0, 0),
    ]
    assert s.queue(SELL) == [beyond]
    s.check()


def test_market_collar_recentres_on_the_last_trade_price():
    s = Scenario()
    s.place("a", SELL, 1, 7350)
    s.buy("b", 1, 7350)  # last trade 7350: the collar now spans 7000..7700
    assert s.book.reference_price() == 7350
    near = s.place("a", SELL, 5, 7700)
    far = s.place("a", SELL, 5, 7701)
    events = s.market("c", BUY, 8)
    taker = events[0].order_id
    assert briefs(events[1:]) == [
        ("trade", 7700, 5, taker, near, 3, 0),
        ("canceled", taker, 3, CancelReason.MARKET_REMAINDER),
        ("level", SELL, 7700, 0, 0),
    ]
    assert s.queue(SELL) == [far]
    # That trade moved the reference again, to 7700: a market sell now reaches 7350, not 7349.
    assert s.book.reference_price() == 7700
    low_ok = s.place("d", BUY, 2, 7350)
    low_out = s.place("d", BUY, 2, 7349)
    events = s.market("e", SELL, 5)
    assert briefs(events[1:]) == [
        ("trade", 7350, 2, events[0].order_id, low_ok, 3, 0),
        ("canceled", events[0].order_id, 3, CancelReason.MARKET_REMAINDER),
        ("level", BUY, 7350, 0, 0),
    ]
    assert s.queue(BUY) == [low_out]
    s.check()


def test_market_sell_stops_at_the_collar_below_the_reference():
    s = Scenario()
    edge = s.place("a", BUY, 5, 6650)
    beyond = s.place("b", BUY, 5, 6649)
    events = s.market("c", SELL, 20)
    taker = events[0].order_id
    assert briefs(events[1:]) == [
        ("trade", 6650, 5, taker, edge, 15, 0),
        ("canceled", taker, 15, CancelReason.MARKET_REMAINDER),
        ("level", BUY, 6650, 0, 0),
    ]
    assert s.queue(BUY) == [beyond]
    s.check()


def test_market_order_entirely_outside_the_collar_trades_nothing():
    s = Scenario()
    s.place("a", SELL, 5, 7400)
    events = s.market("b", BUY, 5)
    assert briefs(events[1:]) == [("canceled", events[0].order_id, 5, CancelReason.MARKET_REMAINDER)]
    assert s.depth(SELL) == [(7400, 5, 1)]
    s.check()


def test_each_instrument_has_its_own_collar_reference_and_book():
    s = Scenario(symbol="CER")  # reference 5800, collar 300
    ok = s.place("a", SELL, 1, 6100)
    out = s.place("a", SELL, 1, 6101)
    events = s.market("b", BUY, 2)
    assert [(t.price, t.maker_order_id) for t in of_type(events, Trade)] == [(6100, ok)]
    assert s.queue(SELL) == [out]
    assert s.engine.books["EUA"].last_price is None and s.engine.books["EUA"].depth(SELL) == []
    s.check()
