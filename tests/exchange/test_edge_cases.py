"""Named edge cases that order books commonly get wrong.

Each test is one trap: a late cancel, a market order's leftover, a sticky
IOC flag, a reused client order id, a replace racing a fill, a foreign
cancel, a dead queue entry mistaken for a live order. Where a reject is
expected, nothing else may change (:func:`assert_only_seq_moved`).
"""

import dataclasses

import pytest
from scenario_helpers import (
    BUY,
    SELL,
    Scenario,
    assert_only_seq_moved,
    briefs,
    make_engine,
    of_type,
    shipped_instruments,
    snapshot,
)

from exchange import CancelReason, InvalidCommand, NewOrder, RejectCode, Side, TimeInForce, Trade

IOC = TimeInForce.IOC
FOK = TimeInForce.FOK
DAY = TimeInForce.DAY


def test_cancel_of_an_order_already_filled_is_a_clean_reject():
    s = Scenario()
    maker = s.place("a", SELL, 5, 7000, clid="m")
    taker = s.place("b", BUY, 5, 7000, clid="t")
    before = snapshot(s.engine)
    assert briefs(s.cancel("a", maker)) == [("cancel_rejected", "cancel", RejectCode.ORDER_CLOSED)]
    assert_only_seq_moved(s.engine, before)
    before = snapshot(s.engine)
    assert briefs(s.cancel("a", clid="m")) == [("cancel_rejected", "cancel", RejectCode.ORDER_CLOSED)]
    assert briefs(s.cancel("b", taker)) == [("cancel_rejected", "cancel", RejectCode.ORDER_CLOSED)]
    assert_only_seq_moved(s.engine, before, by=2)
    s.check()


def test_cancel_twice_second_is_too_late():
    s = Scenario()
    order = s.place("a", SELL, 5, 7000)
    s.cancel("a", order)
    before = snapshot(s.engine)
    assert briefs(s.cancel("a", order)) == [("cancel_rejected", "cancel", RejectCode.ORDER_CLOSED)]
    assert_only_seq_moved(s.engine, before)
    s.check()


def test_market_order_leftover_never_rests():
    s = Scenario()
    s.place("a", SELL, 3, 7000)
    market = s.market("b", BUY, 10)[0].order_id
    assert market not in s.engine.open_orders and s.depth(BUY) == []
    events = s.sell("c", 5, 6900)  # would hit a resting market remainder if there were one
    assert of_type(events, Trade) == [] and s.depth(SELL) == [(6900, 5, 1)]
    assert briefs(s.cancel("b", market)) == [("cancel_rejected", "cancel", RejectCode.ORDER_CLOSED)]
    s.check()


def test_market_order_without_a_collar_sweeps_everything_and_still_never_rests():
    instruments = shipped_instruments()
    instruments["EUA"] = dataclasses.replace(instruments["EUA"], market_collar=None)
    s = Scenario(make_engine(instruments))
    low = s.place("a", SELL, 1, 100)
    high = s.place("a", SELL, 1, 99_000)
    events = s.market("b", BUY, 5)
    market = events[0].order_id
    assert [t.price for t in of_type(events, Trade)] == [100, 99_000]
    assert briefs(events) == [
        ("accepted", market),
        ("trade", 100, 1, market, low, 4, 0),
        ("trade", 99_000, 1, market, high, 3, 0),
        ("canceled", market, 3, CancelReason.MARKET_REMAINDER),
        ("level", SELL, 100, 0, 0),  # the book changes come after the order's fate
        ("level", SELL, 99_000, 0, 0),
    ]
    assert s.depth(BUY) == [] and s.depth(SELL) == []
    s.check()


def test_market_fok_that_cannot_fill_is_killed_as_fok_whether_or_not_anything_is_in_reach():
    # FOK_UNFILLED: "a fill-or-kill order that could not fill in full" (enums.py). A market FOK
    # that finds too little in reach is killed with it; one that finds nothing in reach must be too.
    s = Scenario()
    s.place("a", SELL, 1, 7350)  # in reach of the collar, but not enough
    thin = s.market("b", BUY, 5, time_in_force=FOK)
    assert briefs(thin)[-1] == ("canceled", thin[0].order_id, 5, CancelReason.FOK_UNFILLED)
    empty = Scenario().market("b", BUY, 5, time_in_force=FOK)
    assert briefs(empty)[-1] == ("canceled", empty[0].order_id, 5, CancelReason.FOK_UNFILLED)


def test_ioc_on_one_order_does_not_affect_other_orders():
    s = Scenario()
    ask = s.place("a", SELL, 5, 7000)
    ioc = s.buy("b", 2, 6990, time_in_force=IOC)
    assert briefs(ioc)[-1] == ("canceled", ioc[0].order_id, 2, CancelReason.IOC_REMAINDER)
    gtc = s.place("b", BUY, 3, 6990)  # same account, same price, right after: rests
    assert s.queue(BUY) == [gtc]
    events = s.buy("c", 8, 7000, time_in_force=IOC)
    assert [t.maker_order_id for t in of_type(events, Trade)] == [ask]
    assert briefs(events) == [
        ("accepted", events[0].order_id),
        ("trade", 7000, 5, events[0].order_id, ask, 3, 0),
        ("canceled", events[0].order_id, 3, CancelReason.IOC_REMAINDER),
        ("level", SELL, 7000, 0, 0),
    ]
    later = s.buy("c", 4, 6995)  # the next order of the IOC's account is an ordinary GTC
    assert briefs(later)[-1] == ("level", BUY, 6995, 4, 1)
    assert s.queue(BUY) == [later[0].order_id, gtc]
    s.check()


def test_duplicate_client_order_id_is_rejected_while_open():
    s = Scenario()
    s.place("a", SELL, 5, 7000, clid="x")
    before = snapshot(s.engine)
    assert briefs(s.sell("a", 1, 7100, clid="x")) == [("rejected", RejectCode.DUPLICATE_CLIENT_ORDER_ID)]
    assert_only_seq_moved(s.engine, before)
    s.check()


def test_duplicate_client_order_id_is_rejected_after_the_first_is_filled_the_same_day():
    s = Scenario()
    s.place("a", SELL, 5, 7000, clid="x")
    s.buy("b", 5, 7000)
    assert briefs(s.sell("a", 1, 7100, clid="x")) == [("rejected", RejectCode.DUPLICATE_CLIENT_ORDER_ID)]
    s.check()


def test_client_order_id_of_a_closed_order_may_be_used_again_after_end_of_day():
    s = Scenario()
    first = s.place("a", SELL, 5, 7000, clid="x")
    s.buy("b", 5, 7000)
    s.end_of_day(20240102)
    events = s.sell("a", 1, 7100, clid="x")
    assert briefs(events) == [("accepted", first + 2), ("level", SELL, 7100, 1, 1)]
    assert events[0].client_order_id == "x"
    s.check()


def test_client_order_id_of_an_order_still_open_stays_taken_after_end_of_day():
    s = Scenario()
    s.place("a", SELL, 5, 7000, clid="x")  # GTC: survives the day
    s.end_of_day(20240102)
    assert briefs(s.sell("a", 1, 7100, clid="x")) == [("rejected", RejectCode.DUPLICATE_CLIENT_ORDER_ID)]
    s.check()


def test_client_order_ids_are_per_account_and_int_differs_from_str():
    s = Scenario()
    s.place("a", SELL, 5, 7000, clid=1)
    assert briefs(s.sell("b", 5, 7000, clid=1))[0][0] == "accepted"
    assert briefs(s.sell("a", 5, 7000, clid="1"))[0][0] == "accepted"
    s.check()


def test_rejected_orders_use_no_order_id():
    s = Scenario()
    first = s.place("a", SELL, 5, 7000)
    s.sell("a", 5000, 7000)  # above the maximum
    assert s.place("a", SELL, 5, 7000) == first + 1
    s.check()


def test_replace_after_a_partial_fill_counts_the_fill_in_the_new_total():
    s = Scenario()
    order = s.place("a", SELL, 10, 7000)
    s.buy("b", 4, 7000)  # the fill races the trader's "make it 6"
    events = s.replace("a", order, quantity=6)
    assert briefs(events) == [("replaced", order, 7000, 6, 2, True), ("level", SELL, 7000, 2, 1)]
    s.check()


def test_replace_to_a_quantity_not_above_the_filled_part_is_rejected():
    s = Scenario()
    order = s.place("a", SELL, 10, 7000)
    s.buy("b", 4, 7000)
    for quantity in (4, 3, 1):
        before = snapshot(s.engine)
        assert briefs(s.replace("a", order, quantity=quantity)) == [
            ("cancel_rejected", "replace", RejectCode.REPLACE_QUANTITY_NOT_ABOVE_FILLED)
        ]
        assert_only_seq_moved(s.engine, before)
    s.check()


def test_replace_after_a_full_fill_is_too_late():
    s = Scenario()
    order = s.place("a", SELL, 10, 7000, clid="r")
    s.buy("b", 10, 7000)
    before = snapshot(s.engine)
    assert briefs(s.replace("a", order, quantity=6)) == [("cancel_rejected", "replace", RejectCode.ORDER_CLOSED)]
    assert briefs(s.replace("a", clid="r", price=7010)) == [("cancel_rejected", "replace", RejectCode.ORDER_CLOSED)]
    assert_only_seq_moved(s.engine, before, by=2)
    s.check()


def test_cancel_of_another_accounts_order_is_refused_and_the_order_stays():
    s = Scenario()
    order = s.place("a", SELL, 5, 7000, clid="mine")
    before = snapshot(s.engine)
    assert briefs(s.cancel("b", order)) == [("cancel_rejected", "cancel", RejectCode.NOT_ORDER_OWNER)]
    # By client order id the other account only searches its own ids.
    assert briefs(s.cancel("b", clid="mine")) == [("cancel_rejected", "cancel", RejectCode.UNKNOWN_ORDER)]
    assert briefs(s.replace("b", order, quantity=1)) == [("cancel_rejected", "replace", RejectCode.NOT_ORDER_OWNER)]
    assert_only_seq_moved(s.engine, before, by=3)
    assert briefs(s.mass_cancel("b")) == [("mass_canceled", "b", None, 0)]
    assert s.queue(SELL) == [order]
    s.check()


def test_cancelled_front_order_is_skipped_by_matching():
    s = Scenario()
    front = s.place("a", SELL, 5, 7000)
    second = s.place("b", SELL, 5, 7000)
    s.cancel("a", front)  # leaves a dead entry at the front of the level's queue
    events = s.buy("c", 5, 7000)
    assert briefs(events[1:]) == [("trade", 7000, 5, events[0].order_id, second, 0, 0), ("level", SELL, 7000, 0, 0)]
    s.check()


def test_order_replaced_away_and_back_is_not_confused_with_its_dead_entry():
    s = Scenario()
    a = s.place("a", SELL, 5, 7000)
    b = s.place("b", SELL, 5, 7000)
    s.replace("a", a, price=7010)
    s.replace("a", a, price=7000)  # back at 7000, behind b; its old entry is still at the front
    assert s.queue(SELL) == [b, a]
    events = s.buy("c", 10, 7000)
    assert [(t.maker_order_id, t.quantity) for t in of_type(events, Trade)] == [(b, 5), (a, 5)]
    assert s.depth(SELL) == []
    s.check()


def test_cancel_of_a_partly_filled_iceberg_cancels_its_reserve_too():
    s = Scenario()
    iceberg = s.place("a", SELL, 30, 7000, display_quantity=10)
    s.buy("b", 12, 7000)
    assert briefs(s.cancel("a", iceberg)) == [("canceled", iceberg, 18, CancelReason.USER), ("level", SELL, 7000, 0, 0)]
    s.check()


def test_day_order_after_end_of_day_is_closed_by_id_and_forgotten_by_client_id():
    s = Scenario()
    order = s.place("a", SELL, 5, 7000, clid="d", time_in_force=DAY)
    s.end_of_day(20240102)
    assert briefs(s.cancel("a", order)) == [("cancel_rejected", "cancel", RejectCode.ORDER_CLOSED)]
    assert briefs(s.cancel("a", clid="d")) == [("cancel_rejected", "cancel", RejectCode.UNKNOWN_ORDER)]
    s.check()


def test_display_quantity_equal_to_the_order_quantity_rests_as_a_plain_order():
    # INVALID_DISPLAY_QUANTITY's text: "... at most the order quantity"; showing all of it is allowed.
    assert "at most the order quantity" in RejectCode.INVALID_DISPLAY_QUANTITY.text
    engine = make_engine()
    engine.handle(
        NewOrder(
            ts=1,
            account="a",
            client_order_id="i",
            instrument="EUA",
            side=Side.SELL,
            quantity=10,
            price=7000,
            display_quantity=10,
        )
    )
    assert engine.books["EUA"].depth(Side.SELL) == [(7000, 10, 1)]
    with pytest.raises(InvalidCommand) as raised:
        NewOrder(
            ts=1,
            account="a",
            client_order_id="j",
            instrument="EUA",
            side=Side.SELL,
            quantity=10,
            price=7000,
            display_quantity=11,
        )
    assert raised.value.code is RejectCode.INVALID_DISPLAY_QUANTITY
