"""Cancel, replace (amend) and mass cancel.

A replace names the new *total* quantity, filled part included (FIX
OrderQty). A smaller quantity at the same price keeps time priority; a new
price or a larger quantity sends the order to the back of its (new) level,
where it may trade at once. The order keeps its order id and client order id.
"""

from scenario_helpers import BUY, SELL, Scenario, briefs, of_type, shipped_instruments

from exchange import (
    CancelReason,
    Engine,
    LevelChanged,
    MassCancel,
    NewOrder,
    OrderCanceled,
    RejectCode,
    Side,
    StopTriggered,
    Trade,
)


def test_cancel_resting_order_by_order_id():
    s = Scenario()
    first = s.place("a", SELL, 5, 7000, clid="x1")
    second = s.place("b", SELL, 5, 7000)
    events = s.cancel("a", first)
    assert events == [
        OrderCanceled(
            seq=5,
            ts=1002,
            instrument="EUA",
            order_id=first,
            account="a",
            client_order_id="x1",
            canceled_quantity=5,
            reason=CancelReason.USER,
        ),
        LevelChanged(seq=6, ts=1002, instrument="EUA", side=SELL, price=7000, quantity=5, orders=1),
    ]
    assert s.queue(SELL) == [second]
    assert first not in s.engine.open_orders
    s.check()


def test_cancel_by_client_order_id_and_last_order_removes_the_level():
    s = Scenario()
    order = s.place("a", BUY, 5, 6990, clid=77)
    events = s.cancel("a", clid=77)
    assert briefs(events) == [("canceled", order, 5, CancelReason.USER), ("level", BUY, 6990, 0, 0)]
    assert s.depth(BUY) == []
    s.check()


def test_cancel_in_the_middle_keeps_the_others_priority():
    s = Scenario()
    a = s.place("a", SELL, 5, 7000)
    b = s.place("b", SELL, 5, 7000)
    c = s.place("c", SELL, 5, 7000)
    s.cancel("b", b)
    assert s.queue(SELL) == [a, c]
    events = s.buy("d", 7, 7000)
    assert [t.maker_order_id for t in of_type(events, Trade)] == [a, c]
    s.check()


def test_cancel_of_partially_filled_order_cancels_its_leaves():
    s = Scenario()
    a = s.place("a", SELL, 10, 7000)
    s.buy("b", 3, 7000)
    assert briefs(s.cancel("a", a)) == [("canceled", a, 7, CancelReason.USER), ("level", SELL, 7000, 0, 0)]
    s.check()


def test_replace_reducing_quantity_keeps_priority():
    s = Scenario()
    a = s.place("a", SELL, 10, 7000)
    b = s.place("b", SELL, 10, 7000)
    events = s.replace("a", a, quantity=6)
    assert briefs(events) == [("replaced", a, 7000, 6, 6, True), ("level", SELL, 7000, 16, 2)]
    assert s.queue(SELL) == [a, b]
    events = s.buy("c", 6, 7000)
    assert [t.maker_order_id for t in of_type(events, Trade)] == [a]
    s.check()


def test_replace_increasing_quantity_loses_priority():
    s = Scenario()
    a = s.place("a", SELL, 10, 7000)
    b = s.place("b", SELL, 10, 7000)
    events = s.replace("a", a, quantity=12)
    # The order left the level and came back to its back: one command, so the level is
    # announced once, in its final state.
    assert briefs(events) == [
        ("replaced", a, 7000, 12, 12, False),
        ("level", SELL, 7000, 22, 2),
    ]
    assert s.queue(SELL) == [b, a]
    s.check()


def test_replace_changing_price_goes_to_the_back_of_the_new_level():
    s = Scenario()
    a = s.place("a", SELL, 10, 7000)
    b = s.place("b", SELL, 10, 7000)
    c = s.place("c", SELL, 10, 7010)
    events = s.replace("a", a, price=7010)
    assert briefs(events) == [
        ("replaced", a, 7010, 10, 10, False),
        ("level", SELL, 7000, 10, 1),
        ("level", SELL, 7010, 20, 2),
    ]
    assert s.queue(SELL) == [b, c, a]
    assert s.depth(SELL) == [(7000, 10, 1), (7010, 20, 2)]
    s.check()


def test_replace_reducing_quantity_and_changing_price_loses_priority():
    s = Scenario()
    a = s.place("a", BUY, 10, 6990)
    b = s.place("b", BUY, 10, 6980)
    events = s.replace("a", a, price=6980, quantity=4)
    assert briefs(events)[0] == ("replaced", a, 6980, 4, 4, False)
    assert s.queue(BUY) == [b, a]
    s.check()


def test_replace_that_crosses_trades_as_the_taker():
    s = Scenario()
    bid = s.place("a", BUY, 5, 6990)
    ask = s.place("b", SELL, 3, 7000)
    events = s.replace("a", bid, price=7000)
    assert briefs(events) == [
        ("replaced", bid, 7000, 5, 5, False),
        ("trade", 7000, 3, bid, ask, 2, 0),
        ("level", BUY, 6990, 0, 0),  # bids first, in the order they changed
        ("level", BUY, 7000, 2, 1),
        ("level", SELL, 7000, 0, 0),
    ]
    assert of_type(events, Trade)[0].aggressor_side is BUY
    s.check()


def test_replace_quantity_is_the_new_total_including_the_filled_part():
    s = Scenario()
    a = s.place("a", SELL, 10, 7000)
    s.buy("b", 4, 7000)  # filled 4, leaves 6
    events = s.replace("a", a, quantity=8)
    assert briefs(events) == [("replaced", a, 7000, 8, 4, True), ("level", SELL, 7000, 4, 1)]
    events = s.replace("a", a, quantity=12)
    # Left its level (emptying it) and came back in the same command: one announcement, final state.
    assert briefs(events) == [("replaced", a, 7000, 12, 8, False), ("level", SELL, 7000, 8, 1)]
    order = s.engine.open_orders[a]
    assert (order.quantity, order.leaves, order.filled) == (12, 8, 4)
    s.check()


def test_replace_price_only_keeps_the_filled_part():
    s = Scenario()
    a = s.place("a", SELL, 10, 7000)
    s.buy("b", 4, 7000)
    events = s.replace("a", a, price=7010)
    assert briefs(events)[0] == ("replaced", a, 7010, 10, 6, False)
    assert s.depth(SELL) == [(7010, 6, 1)]
    s.check()


def test_replaced_order_is_still_found_by_its_client_order_id():
    s = Scenario()
    a = s.place("a", SELL, 10, 7000, clid="keep")
    s.replace("a", clid="keep", price=7020)
    assert briefs(s.cancel("a", clid="keep")) == [("canceled", a, 10, CancelReason.USER), ("level", SELL, 7020, 0, 0)]
    s.check()


def test_replace_of_a_waiting_stop_amends_it_where_it_waits():
    s = Scenario()
    stop = s.place("a", BUY, 5, 7100, stop_price=7050)
    events = s.replace("a", stop, quantity=8, price=7200)
    assert briefs(events) == [("replaced", stop, 7200, 8, 8, True)]
    assert s.depth(BUY) == []
    s.place("b", SELL, 1, 7050)
    ask = s.place("b", SELL, 10, 7200)
    events = s.buy("c", 1, 7050)
    assert of_type(events, StopTriggered)[0].order_id == stop
    assert [(t.price, t.quantity, t.maker_order_id) for t in of_type(events, Trade)][1:] == [(7200, 8, ask)]
    s.check()


def test_replace_of_post_only_to_a_crossing_price_is_rejected():
    s = Scenario()
    s.place("a", SELL, 5, 7000)
    bid = s.place("b", BUY, 5, 6990, post_only=True)
    assert briefs(s.replace("b", bid, price=7000)) == [("cancel_rejected", "replace", RejectCode.POST_ONLY_WOULD_TAKE)]
    assert s.depth(BUY) == [(6990, 5, 1)]
    assert briefs(s.replace("b", bid, price=6995)) == [
        ("replaced", bid, 6995, 5, 5, False),
        ("level", BUY, 6990, 0, 0),
        ("level", BUY, 6995, 5, 1),
    ]
    s.check()


def test_replace_of_iceberg_below_its_shown_slice_shrinks_the_slice():
    s = Scenario()
    iceberg = s.place("a", SELL, 30, 7000, display_quantity=10)
    s.buy("b", 24, 7000)  # leaves 6, of which 6 shown
    assert s.depth(SELL) == [(7000, 6, 1)]
    events = s.replace("a", iceberg, quantity=27)  # leaves 3
    assert briefs(events) == [("replaced", iceberg, 7000, 27, 3, True), ("level", SELL, 7000, 3, 1)]
    s.check()


def test_replace_of_iceberg_above_its_slice_keeps_depth_unchanged():
    s = Scenario()
    iceberg = s.place("a", SELL, 30, 7000, display_quantity=10)
    events = s.replace("a", iceberg, quantity=20)
    assert briefs(events) == [("replaced", iceberg, 7000, 20, 20, True)]  # shown part unchanged: no level event
    assert s.depth(SELL) == [(7000, 10, 1)]
    s.check()


def test_mass_cancel_by_account_cancels_all_its_orders_in_order_id_order():
    s = Scenario()
    a1 = s.place("a", SELL, 5, 7000)
    b1 = s.place("b", SELL, 5, 7000)
    a2 = s.place("a", BUY, 3, 6990)
    a3 = s.place("a", BUY, 2, 7100, stop_price=7050)
    a4 = s.place("a", BUY, 4, 5000, instrument="CER")
    events = s.mass_cancel("a")
    assert briefs(events) == [
        ("canceled", a1, 5, CancelReason.MASS_CANCEL),
        ("canceled", a2, 3, CancelReason.MASS_CANCEL),
        ("canceled", a3, 2, CancelReason.MASS_CANCEL),  # a waiting stop: no level changes
        ("canceled", a4, 4, CancelReason.MASS_CANCEL),
        ("mass_canceled", "a", None, 4),
        # then the levels: book by book in config order (EUA, then CER), bids before asks
        ("level", BUY, 6990, 0, 0),
        ("level", SELL, 7000, 5, 1),
        ("level", BUY, 5000, 0, 0),
    ]
    assert of_type(events, OrderCanceled)[-1].instrument == "CER"
    assert [event.instrument for event in of_type(events, LevelChanged)] == ["EUA", "EUA", "CER"]
    assert set(s.engine.open_orders) == {b1}
    s.check()


def test_mass_cancel_by_instrument_leaves_other_instruments_alone():
    s = Scenario()
    eua = s.place("a", SELL, 5, 7000)
    cer = s.place("a", SELL, 5, 6000, instrument="CER")
    events = s.mass_cancel("a", "CER")
    assert briefs(events) == [
        ("canceled", cer, 5, CancelReason.MASS_CANCEL),
        ("mass_canceled", "a", "CER", 1),
        ("level", SELL, 6000, 0, 0),
    ]
    assert of_type(events, LevelChanged)[0].instrument == "CER"
    assert set(s.engine.open_orders) == {eua}
    s.check()


def test_mass_cancel_with_nothing_open_reports_that_it_cancelled_nothing():
    s = Scenario()
    order = s.place("a", SELL, 5, 7000)
    s.buy("b", 5, 7000)
    assert briefs(s.mass_cancel("a")) == [("mass_canceled", "a", None, 0)]
    assert briefs(s.mass_cancel("nobody", "ERU")) == [("mass_canceled", "nobody", "ERU", 0)]
    assert order not in s.engine.open_orders
    s.check()


def test_kill_switch_cancels_everything_and_refuses_new_orders_until_released():
    from exchange import AccountBlocked, AccountUnblocked, BlockAccount, Deposit, OpenAccount, UnblockAccount

    engine = Engine(shipped_instruments())
    engine.handle_all(
        [
            OpenAccount(ts=0, account="a"),
            Deposit(ts=0, account="a", asset="EUR", amount=10**12),
            Deposit(ts=0, account="a", asset="CER", amount=10**6),
        ]
    )
    for n, (symbol, side) in enumerate((("EUA", Side.BUY), ("CER", Side.SELL), ("EUA", Side.BUY))):
        engine.handle(
            NewOrder(
                ts=1,
                account="a",
                client_order_id=n,
                instrument=symbol,
                side=side,
                quantity=2,
                price=6900 if symbol == "EUA" else 5800,
            )
        )
    events = engine.handle(BlockAccount(ts=2, account="a"))
    canceled = [e for e in events if type(e) is OrderCanceled]
    assert [(e.order_id, e.reason) for e in canceled] == [
        (1, CancelReason.KILL_SWITCH),
        (2, CancelReason.KILL_SWITCH),
        (3, CancelReason.KILL_SWITCH),
    ]
    assert [e for e in events if type(e) is AccountBlocked] == [AccountBlocked(events[3].seq, 2, "a", 3)]
    account = engine.accounts["a"]
    assert account.reserved_cash == 0 and account.reserved_units["CER"] == 0 and not engine.open_orders
    refused = engine.handle(
        NewOrder(ts=3, account="a", client_order_id="x", instrument="EUA", side=Side.BUY, quantity=1, price=6900)
    )
    assert [e.code for e in refused] == [RejectCode.ACCOUNT_BLOCKED]
    assert [type(e) for e in engine.handle(BlockAccount(ts=4, account="a"))] == [AccountBlocked]  # pressed twice
    assert [type(e) for e in engine.handle(UnblockAccount(ts=5, account="a"))] == [AccountUnblocked]
    accepted = engine.handle(
        NewOrder(ts=6, account="a", client_order_id="x", instrument="EUA", side=Side.BUY, quantity=1, price=6900)
    )
    assert type(accepted[0]).__name__ == "OrderAccepted"


def test_cancel_on_disconnect_is_a_mass_cancel_with_its_own_reason():
    s = Scenario()
    s.buy("a", 5, 6900)
    s.sell("a", 5, 7100, instrument="CER")
    events = s.send(MassCancel(ts=s.ts(), account="a", on_disconnect=True))
    assert [e.reason for e in events if type(e) is OrderCanceled] == [CancelReason.DISCONNECT] * 2
