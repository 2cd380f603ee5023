"""Self-trade prevention: the taking order's mode decides, maker by maker, before each fill.

Modes (ICE's): NONE trades with yourself; CANCEL_RESTING cancels your
resting order and matching goes on; CANCEL_TAKING cancels the rest of the
incoming order; CANCEL_BOTH cancels both. An order without a mode of its own
takes its account's mode, set with SetSelfTradePrevention (default NONE).
"""

import pytest
from scenario_helpers import BUY, SELL, Scenario, briefs, of_type

from exchange import CancelReason, SelfTradePrevention, Trade

NONE = SelfTradePrevention.NONE
RESTING = SelfTradePrevention.CANCEL_RESTING
TAKING = SelfTradePrevention.CANCEL_TAKING
BOTH = SelfTradePrevention.CANCEL_BOTH
SELF_TRADE = CancelReason.SELF_TRADE


def test_default_mode_none_lets_an_account_trade_with_itself():
    s = Scenario()
    own = s.place("a", SELL, 5, 7000)
    events = s.buy("a", 5, 7000)
    assert events[0].self_trade_prevention is NONE
    trade = of_type(events, Trade)[0]
    assert (trade.maker_order_id, trade.taker_account, trade.maker_account) == (own, "a", "a")
    s.check()


def test_cancel_resting_cancels_own_order_and_goes_on_matching():
    s = Scenario()
    own = s.place("a", SELL, 5, 7000)
    other = s.place("b", SELL, 5, 7000)
    events = s.buy("a", 8, 7000, self_trade_prevention=RESTING)
    taker = events[0].order_id
    assert briefs(events) == [
        ("accepted", taker),
        ("canceled", own, 5, SELF_TRADE),
        ("trade", 7000, 5, taker, other, 3, 0),
        ("level", BUY, 7000, 3, 1),
        ("level", SELL, 7000, 0, 0),
    ]
    assert own not in s.engine.open_orders
    s.check()


def test_cancel_taking_cancels_the_rest_of_the_taker_and_keeps_own_resting_order():
    s = Scenario()
    first = s.place("b", SELL, 2, 7000)
    own = s.place("a", SELL, 5, 7000)
    later = s.place("b", SELL, 5, 7000)
    events = s.buy("a", 8, 7000, self_trade_prevention=TAKING)
    taker = events[0].order_id
    assert briefs(events) == [
        ("accepted", taker),
        ("trade", 7000, 2, taker, first, 6, 0),
        ("canceled", taker, 6, SELF_TRADE),
        ("level", SELL, 7000, 10, 2),
    ]
    assert s.queue(SELL) == [own, later]
    assert s.depth(BUY) == []
    s.check()


def test_cancel_taking_reports_no_level_change_when_nothing_at_the_level_changed():
    # LevelChanged means "a price level's shown quantity or order count changed" (events.py).
    s = Scenario()
    own = s.place("a", SELL, 5, 7000)
    events = s.buy("a", 5, 7000, self_trade_prevention=TAKING)
    taker = events[0].order_id
    assert briefs(events) == [("accepted", taker), ("canceled", taker, 5, SELF_TRADE)]
    assert s.queue(SELL) == [own]
    s.check()


def test_cancel_both_cancels_both_orders():
    s = Scenario()
    own = s.place("a", SELL, 5, 7000)
    other = s.place("b", SELL, 5, 7000)
    events = s.buy("a", 8, 7000, self_trade_prevention=BOTH)
    taker = events[0].order_id
    assert briefs(events) == [
        ("accepted", taker),
        ("canceled", own, 5, SELF_TRADE),
        ("canceled", taker, 8, SELF_TRADE),
        ("level", SELL, 7000, 5, 1),
    ]
    assert s.queue(SELL) == [other]
    assert of_type(events, Trade) == []
    s.check()


def test_cancel_both_removes_a_level_left_empty():
    s = Scenario()
    own = s.place("a", SELL, 5, 7000)
    events = s.buy("a", 5, 7010, self_trade_prevention=BOTH)
    taker = events[0].order_id
    assert briefs(events[1:]) == [
        ("canceled", own, 5, SELF_TRADE),
        ("canceled", taker, 5, SELF_TRADE),
        ("level", SELL, 7000, 0, 0),
    ]
    assert s.depth(SELL) == [] and s.depth(BUY) == []
    s.check()


def test_account_mode_applies_to_orders_without_their_own():
    s = Scenario()
    assert briefs(s.set_stp("a", RESTING)) == [("stp_set", "a", RESTING)]
    own = s.place("a", SELL, 5, 7000)
    events = s.buy("a", 5, 7000)
    assert events[0].self_trade_prevention is RESTING
    assert briefs(events[1:]) == [
        ("canceled", own, 5, SELF_TRADE),
        ("level", BUY, 7000, 5, 1),
        ("level", SELL, 7000, 0, 0),
    ]
    s.check()


def test_order_mode_overrides_the_account_mode():
    s = Scenario()
    s.set_stp("a", BOTH)
    s.place("a", SELL, 5, 7000)
    events = s.buy("a", 5, 7000, self_trade_prevention=NONE)
    assert [t.quantity for t in of_type(events, Trade)] == [5]
    s.check()


def test_wire_string_mode_is_accepted():
    s = Scenario()
    events = s.set_stp("a", "CANCEL_TAKING")
    assert events[0].mode is TAKING
    assert s.engine.accounts["a"].self_trade_prevention is TAKING
    s.check()


@pytest.mark.parametrize("mode", [RESTING, TAKING, BOTH])
def test_prevention_only_concerns_the_same_account(mode):
    s = Scenario()
    other = s.place("b", SELL, 5, 7000)
    events = s.buy("a", 5, 7000, self_trade_prevention=mode)
    assert [(t.maker_order_id, t.quantity) for t in of_type(events, Trade)] == [(other, 5)]
    s.check()


def test_the_taking_orders_mode_decides_not_the_resting_ones():
    s = Scenario()
    s.place("a", SELL, 5, 7000, self_trade_prevention=BOTH)
    events = s.buy("a", 5, 7000, self_trade_prevention=NONE)
    assert [t.quantity for t in of_type(events, Trade)] == [5]
    s.check()


def test_cancel_resting_cancels_an_iceberg_with_its_reserve():
    s = Scenario()
    iceberg = s.place("a", SELL, 30, 7000, display_quantity=10)
    events = s.buy("a", 5, 7000, self_trade_prevention=RESTING)
    assert briefs(events[1:]) == [
        ("canceled", iceberg, 30, SELF_TRADE),
        ("level", BUY, 7000, 5, 1),
        ("level", SELL, 7000, 0, 0),
    ]
    s.check()


def test_market_order_stopped_by_cancel_taking_is_cancelled_as_self_trade():
    s = Scenario()
    other = s.place("b", SELL, 2, 6990)
    s.place("a", SELL, 5, 7000)
    events = s.market("a", BUY, 5, self_trade_prevention=TAKING)
    taker = events[0].order_id
    # The 7000 level was reached but nothing in it changed: it is not announced.
    assert briefs(events) == [
        ("accepted", taker),
        ("trade", 6990, 2, taker, other, 3, 0),
        ("canceled", taker, 3, SELF_TRADE),
        ("level", SELL, 6990, 0, 0),
    ]
    assert s.depth(SELL) == [(7000, 5, 1)]
    s.check()


def test_fok_with_cancel_resting_does_not_count_own_orders():
    s = Scenario()
    own = s.place("a", SELL, 5, 7000)
    other = s.place("b", SELL, 5, 7000)
    events = s.buy("a", 6, 7000, time_in_force="FOK", self_trade_prevention=RESTING)
    assert briefs(events[1:]) == [("canceled", events[0].order_id, 6, CancelReason.FOK_UNFILLED)]
    assert s.queue(SELL) == [own, other]  # a killed FOK cancels nothing else
    events = s.buy("a", 5, 7000, time_in_force="FOK", self_trade_prevention=RESTING)
    assert briefs(events[1:]) == [
        ("canceled", own, 5, SELF_TRADE),
        ("trade", 7000, 5, events[0].order_id, other, 0, 0),
        ("level", SELL, 7000, 0, 0),
    ]
    s.check()


@pytest.mark.parametrize("mode", [TAKING, BOTH])
def test_fok_meeting_own_order_under_cancel_taking_or_both_is_killed(mode):
    s = Scenario()
    s.place("a", SELL, 5, 7000)
    s.place("b", SELL, 5, 7000)
    events = s.buy("a", 5, 7000, time_in_force="FOK", self_trade_prevention=mode)
    assert briefs(events[1:]) == [("canceled", events[0].order_id, 5, CancelReason.FOK_UNFILLED)]
    assert s.depth(SELL) == [(7000, 10, 2)]
    s.check()


@pytest.mark.parametrize("mode", [TAKING, BOTH])
def test_fok_is_never_filled_in_part_when_an_iceberg_refill_queues_behind_own_order(mode):
    # The FOK check counts the iceberg's reserve at the front of the level, but its refill goes to
    # the back, behind the taker's own order, where self-trade prevention stops the taker.
    s = Scenario()
    iceberg = s.place("b", SELL, 30, 7000, display_quantity=10)
    own = s.place("a", SELL, 5, 7000)
    events = s.buy("a", 20, 7000, time_in_force="FOK", self_trade_prevention=mode)
    assert of_type(events, Trade) == [], "a fill-or-kill order traded in part"
    assert briefs(events[1:]) == [("canceled", events[0].order_id, 20, CancelReason.FOK_UNFILLED)]
    assert s.queue(SELL) == [iceberg, own]
    s.check()
