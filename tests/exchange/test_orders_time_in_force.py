"""Time in force: GTC, DAY, IOC, FOK and GTD, and what EndOfDay does to each.

EndOfDay with trading date D expires every DAY order and every GTD order
whose expire date is D or earlier; the trading days need not be consecutive.
"""

import pytest
from scenario_helpers import BUY, SELL, Scenario, briefs, of_type, shipped_instruments

from exchange import (
    CancelReason,
    Deposit,
    Engine,
    LevelChanged,
    OpenAccount,
    OrderExpired,
    RejectCode,
    TimeInForce,
    Trade,
)

GTC, DAY, IOC, FOK, GTD = (TimeInForce.GTC, TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTD)


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
    assert briefs(events) == [
        ("accepted", events[0].order_id),
        ("canceled", events[0].order_id, 5, CancelReason.IOC_REMAINDER),
    ]
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
    assert briefs(events) == [
        ("accepted", events[0].order_id),
        ("canceled", events[0].order_id, 7, CancelReason.FOK_UNFILLED),
    ]
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


def state_without_client_ids(s: Scenario, account: str) -> list[str]:
    """The engine's canonical state without the counters, the client order ids and one account's line."""
    return [line for line in list(s.engine.state_lines())[1:] if not line.startswith(("clid", f"account {account} "))]


@pytest.mark.parametrize(
    "side, resting_side, resting_price, limit",
    [
        (BUY, SELL, 7010, 7000),  # best ask one tick above the FOK buy's limit
        (SELL, BUY, 6990, 7000),  # best bid one tick below the FOK sell's limit
    ],
)
def test_fok_whose_limit_does_not_reach_the_other_side_is_killed_whole(side, resting_side, resting_price, limit):
    s = Scenario()
    resting = s.place("a", resting_side, 5, resting_price)
    before = state_without_client_ids(s, "d")
    events = s.order("d", side, 5, limit, time_in_force=FOK)
    fok = events[0].order_id
    # Accepted, then cancelled whole as FOK_UNFILLED: no trade, no level ever shown for it.
    assert briefs(events) == [("accepted", fok), ("canceled", fok, 5, CancelReason.FOK_UNFILLED)]
    assert events[1].account == "d" and events[1].client_order_id == events[0].client_order_id
    assert s.queue(resting_side) == [resting] and s.queue(side) == []
    assert s.depth(resting_side) == [(resting_price, 5, 1)] and s.depth(side) == []
    assert fok not in s.engine.open_orders and s.engine.accounts["d"].open_orders == {}
    assert s.engine.accounts["d"].orders[events[0].client_order_id] is None  # closed: a cancel is "too late"
    assert s.book.last_price is None
    assert state_without_client_ids(s, "d") == before
    assert briefs(s.cancel("d", fok)) == [("cancel_rejected", "cancel", RejectCode.ORDER_CLOSED)]
    s.check()


@pytest.mark.parametrize("side", [BUY, SELL])
@pytest.mark.parametrize("price", [7000, None], ids=["limit", "market"])
def test_fok_on_an_empty_book_is_killed_whole(side, price):
    s = Scenario()
    if price is None:
        events = s.market("d", side, 4, time_in_force=FOK)
    else:
        events = s.order("d", side, 4, price, time_in_force=FOK)
    fok = events[0].order_id
    assert briefs(events) == [("accepted", fok), ("canceled", fok, 4, CancelReason.FOK_UNFILLED)]
    assert s.depth(BUY) == [] and s.depth(SELL) == [] and s.engine.open_orders == {}
    assert not of_type(s.log, LevelChanged)
    s.check()


def test_fok_that_does_not_cross_after_the_other_side_moved_away_is_killed_and_the_next_one_trades():
    # The same FOK is killed while the ask is out of reach, and trades in full once a reachable ask rests:
    # a killed FOK left nothing behind that could trade later.
    s = Scenario()
    far = s.place("a", SELL, 6, 7020)
    killed = s.buy("d", 6, 7010, time_in_force=FOK)
    assert briefs(killed[1:]) == [("canceled", killed[0].order_id, 6, CancelReason.FOK_UNFILLED)]
    near = s.place("b", SELL, 6, 7010)
    assert s.queue(SELL) == [near, far] and s.queue(BUY) == []
    events = s.buy("d", 6, 7010, time_in_force=FOK)
    taker = events[0].order_id
    assert briefs(events[1:]) == [("trade", 7010, 6, taker, near, 0, 0), ("level", SELL, 7010, 0, 0)]
    assert s.queue(SELL) == [far]
    s.check()


def funded_scenario() -> Scenario:
    """An engine with pre-trade risk: "buyer" with EUR 1,000,000.00, "seller" with 20 lots of EUA."""
    s = Scenario(Engine(shipped_instruments(), pre_trade_risk=True))
    for account, asset, amount in (("buyer", "EUR", 100_000_000), ("seller", "EUA", 20_000)):
        s.send(OpenAccount(ts=s.ts(), account=account))
        s.send(Deposit(ts=s.ts(), account=account, asset=asset, amount=amount))
    return s


def holdings(s: Scenario, account: str) -> tuple[int, int, int, int]:
    a = s.engine.accounts[account]
    return a.cash, a.reserved_cash, a.units["EUA"], a.reserved_units["EUA"]


@pytest.mark.parametrize(
    "book, quantity, limit",
    [
        ([], 5, 7000),  # an empty book
        ([(SELL, 5, 7010)], 5, 7000),  # the ask is beyond the limit
        ([(SELL, 3, 7000), (SELL, 4, 7020)], 5, 7010),  # only 3 of 5 within the limit
    ],
    ids=["empty", "out_of_reach", "partly"],
)
def test_fok_buy_that_cannot_fill_with_pre_trade_risk_holds_nothing_back_afterwards(book, quantity, limit):
    s = funded_scenario()
    resting = [s.place("seller", side, lots, price) for side, lots, price in book]
    seller_before, fees_before = holdings(s, "seller"), s.engine.fee_account.cash
    assert holdings(s, "buyer") == (100_000_000, 0, 0, 0)
    events = s.buy("buyer", quantity, limit, time_in_force=FOK)
    fok = events[0].order_id
    assert briefs(events) == [("accepted", fok), ("canceled", fok, quantity, CancelReason.FOK_UNFILLED)]
    assert holdings(s, "buyer") == (100_000_000, 0, 0, 0)  # the hold taken at acceptance is all given back
    assert holdings(s, "seller") == seller_before and s.engine.fee_account.cash == fees_before
    assert s.queue(SELL) == resting and s.queue(BUY) == []
    s.check()


@pytest.mark.parametrize(
    "book, quantity, limit",
    [
        ([], 5, 7000),
        ([(BUY, 5, 6990)], 5, 7000),
        ([(BUY, 3, 7000), (BUY, 4, 6980)], 5, 6990),
    ],
    ids=["empty", "out_of_reach", "partly"],
)
def test_fok_sell_that_cannot_fill_with_pre_trade_risk_holds_nothing_back_afterwards(book, quantity, limit):
    s = funded_scenario()
    resting = [s.place("buyer", side, lots, price) for side, lots, price in book]
    buyer_before, fees_before = holdings(s, "buyer"), s.engine.fee_account.cash
    assert holdings(s, "seller") == (0, 0, 20_000, 0)
    events = s.sell("seller", quantity, limit, time_in_force=FOK)
    fok = events[0].order_id
    assert briefs(events) == [("accepted", fok), ("canceled", fok, quantity, CancelReason.FOK_UNFILLED)]
    assert holdings(s, "seller") == (0, 0, 20_000, 0)  # its units are no longer held back
    assert holdings(s, "buyer") == buyer_before and s.engine.fee_account.cash == fees_before
    assert s.queue(BUY) == resting and s.queue(SELL) == []
    s.check()


def test_gtd_expires_on_the_end_of_day_of_its_date_not_before():
    s = Scenario()
    gtd = s.place("a", BUY, 5, 6990, time_in_force=GTD, expire_date=20240105)
    assert briefs(s.end_of_day(20240104)) == [("day_closed", 20240104, 0)]
    assert s.queue(BUY) == [gtd]
    assert briefs(s.end_of_day(20240105)) == [
        ("expired", gtd, 5),
        ("day_closed", 20240105, 1),
        ("level", BUY, 6990, 0, 0),
    ]
    assert s.depth(BUY) == []
    s.check()


def test_gtd_expires_when_the_closed_day_is_past_its_date():
    s = Scenario()
    gtd = s.place("a", BUY, 5, 6990, time_in_force=GTD, expire_date=20240103)
    later = s.place("a", BUY, 5, 6980, time_in_force=GTD, expire_date=20240108)
    assert briefs(s.end_of_day(20240105)) == [
        ("expired", gtd, 5),
        ("day_closed", 20240105, 1),
        ("level", BUY, 6990, 0, 0),
    ]
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
