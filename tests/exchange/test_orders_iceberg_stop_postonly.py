"""Post-only, iceberg and stop-limit orders.

Post-only is refused (POST_ONLY_WOULD_TAKE) if it would trade on entry. An
iceberg shows ``display_quantity`` at a time; a refilled slice goes to the
back of its level. A stop-limit waits unseen until the last trade price
reaches its stop (buy: last >= stop, sell: last <= stop), is announced with
StopTriggered and then enters as a limit order arriving at that moment.
"""

import pytest
from scenario_helpers import BUY, SELL, Scenario, assert_only_seq_moved, briefs, of_type, snapshot

from exchange import CancelReason, RejectCode, StopTriggered, Trade

# -- post-only -----------------------------------------------------------------------------


@pytest.mark.parametrize("side, price", [(BUY, 7000), (BUY, 7050), (SELL, 6990), (SELL, 6900)])
def test_post_only_that_would_take_is_rejected_and_changes_nothing(side, price):
    s = Scenario()
    ask = s.place("a", SELL, 5, 7000)
    bid = s.place("a", BUY, 5, 6990)
    before = snapshot(s.engine)
    events = s.order("b", side, 5, price, post_only=True)
    assert briefs(events) == [("rejected", RejectCode.POST_ONLY_WOULD_TAKE)]
    assert_only_seq_moved(s.engine, before)
    assert (s.queue(SELL), s.queue(BUY)) == ([ask], [bid])
    assert s.depth(SELL) == [(7000, 5, 1)] and s.depth(BUY) == [(6990, 5, 1)]
    s.check()


@pytest.mark.parametrize(
    "side, price, level",
    [
        (BUY, 6999, (5, 1)),  # inside the spread: a new level
        (BUY, 6990, (10, 2)),  # joins the best bid
        (SELL, 6991, (5, 1)),
        (SELL, 7000, (10, 2)),  # joins the best ask
    ],
)
def test_post_only_that_would_not_take_rests(side, price, level):
    s = Scenario()
    s.place("a", SELL, 5, 7000)
    s.place("a", BUY, 5, 6990)
    events = s.order("b", side, 5, price, post_only=True)
    assert events[0].post_only is True
    assert briefs(events[1:]) == [("level", side, price, *level)]
    s.check()


def test_post_only_on_an_empty_book_rests():
    s = Scenario()
    events = s.buy("a", 5, 9000, post_only=True)
    assert briefs(events) == [("accepted", events[0].order_id), ("level", BUY, 9000, 5, 1)]
    s.check()


# -- iceberg -------------------------------------------------------------------------------


def test_iceberg_shows_only_its_display_quantity():
    s = Scenario()
    events = s.sell("a", 30, 7000, display_quantity=10)
    assert events[0].display_quantity == 10 and events[0].quantity == 30
    assert briefs(events[1:]) == [("level", SELL, 7000, 10, 1)]
    assert s.depth(SELL) == [(7000, 10, 1)]
    order = next(s.book.resting_orders(SELL))
    assert (order.visible, order.leaves) == (10, 30)
    s.check()


def test_iceberg_refill_goes_to_the_back_of_its_level():
    s = Scenario()
    iceberg = s.place("a", SELL, 30, 7000, display_quantity=10)
    plain = s.place("b", SELL, 10, 7000)
    events = s.buy("c", 10, 7000)
    assert briefs(events[1:]) == [("trade", 7000, 10, events[0].order_id, iceberg, 0, 20), ("level", SELL, 7000, 20, 2)]
    assert s.queue(SELL) == [plain, iceberg]
    events = s.buy("c", 10, 7000)
    assert briefs(events[1:]) == [("trade", 7000, 10, events[0].order_id, plain, 0, 0), ("level", SELL, 7000, 10, 1)]
    assert s.queue(SELL) == [iceberg]
    s.check()


def test_iceberg_reserve_fills_within_one_sweep_alternating_with_its_level():
    s = Scenario()
    iceberg = s.place("a", SELL, 30, 7000, display_quantity=10)
    plain = s.place("b", SELL, 10, 7000)
    events = s.buy("c", 35, 7000)
    taker = events[0].order_id
    assert briefs(events[1:]) == [
        ("trade", 7000, 10, taker, iceberg, 25, 20),
        ("trade", 7000, 10, taker, plain, 15, 0),
        ("trade", 7000, 10, taker, iceberg, 5, 10),
        ("trade", 7000, 5, taker, iceberg, 0, 5),
        ("level", SELL, 7000, 5, 1),
    ]
    s.check()


def test_iceberg_refill_that_restores_the_level_is_still_announced():
    # The shown slice is taken and the next one shown: the level changed and changed back
    # (10 lots, 1 order), and is announced all the same.
    s = Scenario()
    iceberg = s.place("a", SELL, 30, 7000, display_quantity=10)
    events = s.buy("c", 10, 7000)
    assert briefs(events) == [
        ("accepted", events[0].order_id),
        ("trade", 7000, 10, events[0].order_id, iceberg, 0, 20),
        ("level", SELL, 7000, 10, 1),
    ]
    assert s.depth(SELL) == [(7000, 10, 1)]
    s.check()


def test_iceberg_last_slice_is_what_is_left():
    s = Scenario()
    iceberg = s.place("a", SELL, 25, 7000, display_quantity=10)
    s.buy("c", 20, 7000)
    assert s.depth(SELL) == [(7000, 5, 1)]
    events = s.buy("c", 5, 7000)
    assert briefs(events[1:]) == [("trade", 7000, 5, events[0].order_id, iceberg, 0, 0), ("level", SELL, 7000, 0, 0)]
    assert iceberg not in s.engine.open_orders
    s.check()


def test_iceberg_taker_rests_its_remainder_showing_one_slice():
    s = Scenario()
    ask = s.place("a", SELL, 5, 7000)
    events = s.buy("b", 30, 7000, display_quantity=10)
    taker = events[0].order_id
    assert briefs(events) == [
        ("accepted", taker),
        ("trade", 7000, 5, taker, ask, 25, 0),
        ("level", BUY, 7000, 10, 1),  # bids before asks, whatever changed first
        ("level", SELL, 7000, 0, 0),
    ]
    order = next(s.book.resting_orders(BUY))
    assert (order.visible, order.leaves) == (10, 25)
    s.check()


# -- stop-limit ----------------------------------------------------------------------------


def test_stop_waits_unseen():
    s = Scenario()
    events = s.buy("a", 5, 7100, stop_price=7050)
    stop = events[0].order_id
    assert briefs(events) == [("accepted", stop)]
    assert events[0].stop_price == 7050
    assert s.depth(BUY) == [] and s.depth(SELL) == []
    assert [o.order_id for o in s.book.waiting_stops()] == [stop]
    assert stop in s.engine.open_orders
    s.check()


def test_buy_stop_triggers_when_last_trade_reaches_it_then_acts_as_limit():
    s = Scenario()
    stop = s.place("a", BUY, 5, 7100, stop_price=7050)
    small = s.place("b", SELL, 1, 7050)
    ask = s.place("b", SELL, 10, 7100)
    events = s.buy("c", 1, 7050)
    taker = events[0].order_id
    assert briefs(events) == [
        ("accepted", taker),
        ("trade", 7050, 1, taker, small, 0, 0),
        ("triggered", stop, 7050, 7050),
        ("trade", 7100, 5, stop, ask, 0, 5),
        ("level", SELL, 7050, 0, 0),  # the levels after everything else, in the order they changed
        ("level", SELL, 7100, 5, 1),
    ]
    trigger = of_type(events, StopTriggered)[0]
    assert (trigger.account, trigger.client_order_id, trigger.instrument) == ("a", "c1", "EUA")
    assert s.book.waiting_stops() == [] and stop not in s.engine.open_orders
    s.check()


def test_buy_stop_does_not_trigger_below_its_stop():
    s = Scenario()
    stop = s.place("a", BUY, 5, 7100, stop_price=7050)
    s.place("b", SELL, 1, 7049)
    events = s.buy("c", 1, 7049)
    assert of_type(events, StopTriggered) == []
    assert [o.order_id for o in s.book.waiting_stops()] == [stop]
    s.check()


def test_sell_stop_triggers_when_last_trade_falls_to_it():
    s = Scenario()
    stop = s.place("a", SELL, 5, 6900, stop_price=6950)
    s.place("b", BUY, 1, 6951)
    events = s.sell("c", 1, 6951)
    assert of_type(events, StopTriggered) == []  # 6951 is above the sell stop
    small = s.place("b", BUY, 1, 6950)
    bid = s.place("b", BUY, 10, 6900)
    events = s.sell("c", 1, 6950)
    taker = events[0].order_id
    assert briefs(events) == [
        ("accepted", taker),
        ("trade", 6950, 1, taker, small, 0, 0),
        ("triggered", stop, 6950, 6950),
        ("trade", 6900, 5, stop, bid, 0, 5),
        ("level", BUY, 6950, 0, 0),
        ("level", BUY, 6900, 5, 1),
    ]
    s.check()


def test_stop_entered_when_last_price_is_already_past_triggers_at_once():
    s = Scenario()
    s.place("a", SELL, 1, 7050)
    s.buy("b", 1, 7050)
    events = s.buy("c", 5, 7000, stop_price=7000)
    stop = events[0].order_id
    assert briefs(events) == [("accepted", stop), ("triggered", stop, 7000, 7050), ("level", BUY, 7000, 5, 1)]
    s.check()


def test_stop_without_any_last_trade_waits_even_if_the_book_is_past_it():
    s = Scenario()
    s.place("a", SELL, 5, 7100)
    events = s.buy("b", 5, 7200, stop_price=7000)
    assert briefs(events) == [("accepted", events[0].order_id)]
    assert s.depth(SELL) == [(7100, 5, 1)]
    s.check()


def test_triggered_stop_takes_time_priority_from_its_trigger():
    s = Scenario()
    stop = s.place("a", BUY, 5, 7000, stop_price=7050)  # entered first ...
    plain = s.place("b", BUY, 5, 7000)  # ... but this one rests first
    s.place("c", SELL, 1, 7050)
    s.buy("d", 1, 7050)
    assert s.queue(BUY) == [plain, stop]
    s.check()


def test_stop_cascade_each_trigger_can_trigger_the_next():
    s = Scenario()
    first = s.place("a", BUY, 2, 7020, stop_price=7010)
    second = s.place("a", BUY, 2, 7030, stop_price=7020)
    ask_10 = s.place("b", SELL, 1, 7010)
    ask_20 = s.place("b", SELL, 2, 7020)
    ask_30 = s.place("b", SELL, 2, 7030)
    events = s.buy("c", 1, 7010)
    taker = events[0].order_id
    assert briefs(events) == [
        ("accepted", taker),
        ("trade", 7010, 1, taker, ask_10, 0, 0),
        ("triggered", first, 7010, 7010),
        ("trade", 7020, 2, first, ask_20, 0, 0),
        ("triggered", second, 7020, 7020),
        ("trade", 7030, 2, second, ask_30, 0, 0),
        ("level", SELL, 7010, 0, 0),
        ("level", SELL, 7020, 0, 0),
        ("level", SELL, 7030, 0, 0),
    ]
    assert s.book.waiting_stops() == [] and s.depth(SELL) == [] and s.book.last_price == 7030
    s.check()


def test_stops_reached_together_release_nearest_stop_first():
    s = Scenario()
    far = s.place("a", BUY, 1, 6000, stop_price=7030)
    near = s.place("a", BUY, 1, 6000, stop_price=7010)
    s.place("b", SELL, 1, 7040)
    events = s.buy("c", 1, 7040)
    assert [(e.order_id, e.stop_price) for e in of_type(events, StopTriggered)] == [(near, 7010), (far, 7030)]
    assert s.queue(BUY) == [near, far]  # both rest at 6000, in trigger order
    s.check()


def test_cancel_of_a_waiting_stop_emits_no_level_change_and_it_never_triggers():
    s = Scenario()
    stop = s.place("a", BUY, 5, 7100, stop_price=7050)
    events = s.cancel("a", stop)
    assert briefs(events) == [("canceled", stop, 5, CancelReason.USER)]
    assert s.book.waiting_stops() == [] and stop not in s.engine.open_orders
    s.place("b", SELL, 6, 7050)
    events = s.buy("c", 1, 7050)
    assert of_type(events, StopTriggered) == []
    assert [t.quantity for t in of_type(events, Trade)] == [1]
    s.check()
