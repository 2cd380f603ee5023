"""Time in force: GTC, DAY, IOC, FOK and GTD, and what EndOfDay does to each.

EndOfDay with trading date D expires every DAY order and every GTD order
whose expire date is D or earlier; the trading days need not be consecutive.
"""
from exchange import CancelReason, OrderExpired, RejectCode, TimeInForce, Trade
from scenario_helpers import BUY, SELL, Scenario, briefs, of_type

GTC, DAY, IOC, FOK, GTD = (TimeInForce.GTC, TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK,
                           TimeInForce.GTD)


def test_gtc_order_survives_end_of_day():
    s = Scenario()
    gtc = s.place("a", BUY, 5, 6990, time_in_force=GTC)
    assert briefs(s.end_of_day(20240102)) == [("day_closed", 20240102, 0)]
    assert briefs(s.end_of_day(20240103)) == [("day_closed", 20240103, 0)]
    assert s.queue(BUY) == [gtc]
    s.check()


def test_day_orders_expire_on_end_of_day_in_order_id_order():
    s = Scenario()
    first = s.place("a", BUY, 5, 6990, time_in_force=DAY)
    kept = s.place("b", SELL, 5, 7010)
    second = s.place("c", BUY, 3, 6980, time_in_force=DAY)
    events = s.end_of_day(20240102)
    assert briefs(events) == [
        ("expired", first, 5),
        ("expired", second, 3),
        ("day_closed", 20240102, 2),
        ("level", BUY, 6990, 0, 0),  # the levels after the day is closed, in the order they emptied
        ("level", BUY, 6980, 0, 0),
    ]
    expired = of_type(events, OrderExpired)[0]
    assert (expired.account, expired.client_order_id, expired.instrument) == ("a", "c1", "EUA")
    assert s.depth(BUY) == [] and s.queue(SELL) == [kept]
    assert first not in s.engine.open_orders and second not in s.engine.open_orders
    s.check()


def test_partially_filled_day_order_expires_with_its_leaves():
    s = Scenario()
    day = s.place("a", SELL, 10, 7000, time_in_force=DAY)
    s.buy("b", 4, 7000)
    events = s.end_of_day(20240102)
    assert briefs(events) == [("expired", day, 6), ("day_closed", 20240102, 1), ("level", SELL, 7000, 0, 0)]
    s.check()


def test_day_order_does_not_expire_before_end_of_day():
    s = Scenario()
    day = s.place("a", SELL, 10, 7000, time_in_force=DAY)
    events = s.buy("b", 10, 7000)
    assert [t.maker_order_id for t in of_type(events, Trade)] == [day]
    s.check()


def test_ioc_remainder_is_cancelled_after_partial_fill():
    s = Scenario()
    maker = s.place("a", SELL, 3, 7000)
    events = s.buy("b", 5, 7000, time_in_force=IOC)
    taker = events[0].order_id
    assert briefs(events) == [
        ("accepted", taker),
        ("trade", 7000, 3, taker, maker, 2, 0),
        ("canceled", taker, 2, CancelReason.IOC_REMAINDER),
        ("level", SELL, 7000, 0, 0),
    ]
    assert s.depth(BUY) == [] and taker not in s.engine.open_orders
    s.check()


def test_ioc_with_nothing_to_trade_is_cancelled_whole_and_never_rests():
    s = Scenario()
    s.place("a", SELL, 3, 7010)
    events = s.buy("b", 5, 7000, time_in_force=IOC)
    assert briefs(events) == [("accepted", events[0].order_id),
                              ("canceled", events[0].order_id, 5, CancelReason.IOC_REMAINDER)]
    assert s.depth(BUY) == [] and s.depth(SELL) == [(7010, 3, 1)]
    s.check()


def test_ioc_filled_in_full_has_no_cancel():
    s = Scenario()
    s.place("a", SELL, 5, 7000)
    events = s.buy("b", 5, 7000, time_in_force=IOC)
    assert [type(e).__name__ for e in events] == ["OrderAccepted", "Trade", "LevelChanged"]
    s.check()


def test_fok_that_cannot_fill_in_full_is_killed_without_any_trade():
    s = Scenario()
    a = s.place("a", SELL, 3, 7000)
    b = s.place("b", SELL, 3, 7010)
    c = s.place("c", SELL, 5, 7020)  # beyond the FOK's limit: does not count
    lines_before = list(s.engine.state_lines())[1:]
    events = s.buy("d", 7, 7010, time_in_force=FOK)
    assert briefs(events) == [("accepted", events[0].order_id),
                              ("canceled", events[0].order_id, 7, CancelReason.FOK_UNFILLED)]
    assert s.queue(SELL) == [a, b, c]
    assert s.depth(SELL) == [(7000, 3, 1), (7010, 3, 1), (7020, 5, 1)]
    assert s.book.last_price is None
    # Only the account's client order id (now closed) and the counters differ from before.
    lines_after = [line for line in list(s.engine.state_lines())[1:] if not line.startswith(("account d", "clid"))]
    assert lines_after == [line for line in lines_before if not line.startswith("clid")]
    s.check()


def test_fok_that_can_fill_exactly_trades_across_levels():
    s = Scenario()
    a = s.place("a", SELL, 3, 7000)
    b = s.place("b", SELL, 3, 7010)
    events = s.buy("d", 6, 7010, time_in_force=FOK)
    taker = events[0].order_id
    assert briefs(events[1:]) == [
        ("trade", 7000, 3, taker, a, 3, 0),
        ("trade", 7010, 3, taker, b, 0, 0),
        ("level", SELL, 7000, 0, 0),
        ("level", SELL, 7010, 0, 0),
    ]
    s.check()


def test_fok_is_fillable_through_iceberg_reserves():
    s = Scenario()
    iceberg = s.place("a", SELL, 30, 7000, display_quantity=10)
    assert s.depth(SELL) == [(7000, 10, 1)]  # the FOK below needs 25: more than is shown
    events = s.buy("b", 25, 7000, time_in_force=FOK)
    taker = events[0].order_id
    assert briefs(events[1:]) == [
        ("trade", 7000, 10, taker, iceberg, 15, 20),
        ("trade", 7000, 10, taker, iceberg, 5, 10),
        ("trade", 7000, 5, taker, iceberg, 0, 5),
        ("level", SELL, 7000, 5, 1),
    ]
    s.check()


def test_fok_beyond_iceberg_total_is_killed():
    s = Scenario()
    s.place("a", SELL, 30, 7000, display_quantity=10)
    events = s.buy("b", 31, 7000, time_in_force=FOK)
    assert briefs(events[1:]) == [("canceled", events[0].order_id, 31, CancelReason.FOK_UNFILLED)]
    assert s.depth(SELL) == [(7000, 10, 1)]
    s.check()


def test_market_fok_respects_the_collar():
    s = Scenario()
    s.place("a", SELL, 5, 7350)
    s.place("a", SELL, 5, 7351)  # outside the collar of 7000 + 350
    events = s.market("b", BUY, 6, time_in_force=FOK)
    assert briefs(events[1:]) == [("canceled", events[0].order_id, 6, CancelReason.FOK_UNFILLED)]
    events = s.market("b", BUY, 5, time_in_force=FOK)
    assert [(t.price, t.quantity) for t in of_type(events, Trade)] == [(7350, 5)]
    s.check()


def test_gtd_expires_on_the_end_of_day_of_its_date_not_before():
    s = Scenario()
    gtd = s.place("a", BUY, 5, 6990, time_in_force=GTD, expire_date=20240105)
    assert briefs(s.end_of_day(20240104)) == [("day_closed", 20240104, 0)]
    assert s.queue(BUY) == [gtd]
    assert briefs(s.end_of_day(20240105)) == [("expired", gtd, 5), ("day_closed", 20240105, 1),
                                              ("level", BUY, 6990, 0, 0)]
    assert s.depth(BUY) == []
    s.check()


def test_gtd_expires_when_the_closed_day_is_past_its_date():
    s = Scenario()
    gtd = s.place("a", BUY, 5, 6990, time_in_force=GTD, expire_date=20240103)
    later = s.place("a", BUY, 5, 6980, time_in_force=GTD, expire_date=20240108)
    assert briefs(s.end_of_day(20240105)) == [("expired", gtd, 5), ("day_closed", 20240105, 1),
                                              ("level", BUY, 6990, 0, 0)]
    assert s.queue(BUY) == [later]
    s.check()


def test_gtd_with_an_expire_date_already_closed_is_rejected():
    s = Scenario()
    s.end_of_day(20240105)
    for passed in (20240105, 20240104, 20231231):
        events = s.buy("a", 5, 6990, time_in_force=GTD, expire_date=passed)
        assert briefs(events) == [("rejected", RejectCode.EXPIRE_DATE_PASSED)]
    events = s.buy("a", 5, 6990, time_in_force=GTD, expire_date=20240106)
    assert briefs(events)[0] == ("accepted", events[0].order_id)
    assert events[0].expire_date == 20240106
    s.check()


def test_waiting_day_stop_expires_without_a_level_change():
    s = Scenario()
    stop = s.place("a", BUY, 5, 7100, stop_price=7050, time_in_force=DAY)
    assert briefs(s.end_of_day(20240102)) == [("expired", stop, 5), ("day_closed", 20240102, 1)]
    assert s.book.waiting_stops() == []
    s.check()
