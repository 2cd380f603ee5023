"""Depth as a market-data subscriber sees it: LevelChanged events, conflated per command or per batch.

A subscriber that only applies LevelChanged events to an empty map (price ->
lots and orders, deleted on 0) must see exactly the engine's depth after
every ``handle`` and after every ``handle_all`` batch. A level is announced
once per command (batch), in its final state, after the other events, and
only if something in it changed: a level merely reached (self-trade
prevention stopping the taker there before any fill) is not announced; one
that changed and changed back is.

The random streams are checked against a model of which levels a command
touched, worked out from the books before and after and from the command's
own events (trades, self-trade cancels, priority-losing replaces); a batch
must announce exactly the levels its commands announced one by one.
"""

import random

import pytest
from msgspec.structs import replace
from scenario_helpers import (
    BUY,
    SELL,
    DepthMirror,
    Scenario,
    announcement_order,
    book_levels,
    briefs,
    check_books,
    check_level_announcements,
    is_level,
    level_key,
    make_engine,
)

from exchange import (
    CancelOrder,
    CancelReason,
    EndOfDay,
    MassCancel,
    NewOrder,
    OrderAccepted,
    OrderCanceled,
    OrderReplaced,
    ReplaceOrder,
    SelfTradePrevention,
    SetSelfTradePrevention,
    StopTriggered,
    Trade,
)

TAKING = SelfTradePrevention.CANCEL_TAKING


# -- scenarios -------------------------------------------------------------------------------


def test_level_reached_by_a_taker_stopped_by_self_trade_prevention_is_not_announced():
    s = Scenario()
    other = s.place("b", SELL, 2, 7000)
    s.place("a", SELL, 5, 7010)  # the taker's own order, first at 7010
    s.place("b", SELL, 5, 7010)
    s.place("c", BUY, 3, 6990)
    events = s.buy("a", 10, 7010, self_trade_prevention=TAKING)
    taker = events[0].order_id
    assert briefs(events) == [
        ("accepted", taker),
        ("trade", 7000, 2, taker, other, 8, 0),
        ("canceled", taker, 8, CancelReason.SELF_TRADE),
        ("level", SELL, 7000, 0, 0),  # 7010 was reached, but nothing in it changed
    ]
    assert s.depth(SELL) == [(7010, 10, 2)]
    s.check()


def test_batch_announces_a_level_once_in_its_final_state_with_the_last_commands_ts():
    engine = make_engine()
    mirror = DepthMirror()
    mirror.apply(
        engine.handle(
            NewOrder(ts=1, account="a", client_order_id=1, instrument="EUA", side=SELL, quantity=5, price=7000)
        )
    )
    commands = [
        NewOrder(ts=2, account="b", client_order_id=1, instrument="CER", side=BUY, quantity=3, price=5790),
        NewOrder(ts=3, account="b", client_order_id=2, instrument="EUA", side=SELL, quantity=4, price=7000),
        NewOrder(ts=4, account="c", client_order_id=1, instrument="EUA", side=BUY, quantity=6, price=7000),
        NewOrder(ts=5, account="c", client_order_id=2, instrument="EUA", side=BUY, quantity=1, price=6900),
        CancelOrder(ts=6, account="c", client_order_id=2),  # 6900: born and gone in the batch
        CancelOrder(ts=7, account="nobody", order_id=999),  # rejected, but still the batch's last command
    ]
    events = engine.handle_all(commands)
    assert briefs(events) == [
        ("accepted", 2),
        ("accepted", 3),
        ("accepted", 4),
        ("trade", 7000, 5, 4, 1, 1, 0),
        ("trade", 7000, 1, 4, 3, 0, 3),
        ("accepted", 5),
        ("canceled", 5, 1, CancelReason.USER),
        ("cancel_rejected", "cancel", 402),
        ("level", BUY, 6900, 0, 0),
        ("level", SELL, 7000, 3, 1),  # EUA first, bids first
        ("level", BUY, 5790, 3, 1),  # then CER, though it changed first
    ]
    assert [event.seq for event in events] == list(range(3, 3 + len(events)))  # after accepted, level
    assert [event.ts for event in events if is_level(event)] == [7, 7, 7]
    assert [event.instrument for event in events if is_level(event)] == ["EUA", "EUA", "CER"]
    mirror.apply(events)
    mirror.assert_matches(engine)
    check_books(engine)


def test_level_that_changed_and_changed_back_in_a_batch_is_announced_unchanged():
    engine = make_engine()
    engine.handle(NewOrder(ts=1, account="a", client_order_id=1, instrument="EUA", side=BUY, quantity=5, price=6990))
    events = engine.handle_all(
        [
            NewOrder(ts=2, account="b", client_order_id=1, instrument="EUA", side=BUY, quantity=2, price=6990),
            CancelOrder(ts=3, account="b", client_order_id=1),
        ]
    )
    assert briefs(events) == [("accepted", 2), ("canceled", 2, 2, CancelReason.USER), ("level", BUY, 6990, 5, 1)]
    assert events[-1].ts == 3
    check_books(engine)


def test_empty_batch_announces_nothing():
    engine = make_engine()
    assert engine.handle_all([]) == []
    assert engine.handle_all(iter(())) == []
    assert engine.counters.seq == 0


def test_batch_after_a_batch_announces_only_its_own_changes():
    engine = make_engine()
    first = engine.handle_all(
        [
            NewOrder(ts=1, account="a", client_order_id=1, instrument="EUA", side=SELL, quantity=5, price=7000),
            NewOrder(ts=2, account="a", client_order_id=2, instrument="EUA", side=SELL, quantity=5, price=7010),
        ]
    )
    assert briefs(first)[-2:] == [("level", SELL, 7000, 5, 1), ("level", SELL, 7010, 5, 1)]
    second = engine.handle_all(
        [
            NewOrder(ts=3, account="b", client_order_id=1, instrument="EUA", side=BUY, quantity=2, price=7000),
        ]
    )
    assert briefs(second) == [("accepted", 3), ("trade", 7000, 2, 3, 1, 0, 3), ("level", SELL, 7000, 3, 1)]
    check_books(engine)


# -- random streams ---------------------------------------------------------------------------

SYMBOLS = ("EUA", "CER")
ACCOUNTS = ("a", "b", "c")
MODES = (None, None, None, "NONE", "CANCEL_RESTING", "CANCEL_TAKING", "CANCEL_BOTH")


class Stream:
    """A seeded stream of mixed commands; order ids come from the engine the commands first went to."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ts = 0
        self.clid = 0
        self.orders: list[tuple[str, int, str]] = []  # (account, order id, instrument) of every accepted order
        self.date = 20240101

    def learn(self, events: list) -> None:
        self.orders += [
            (event.account, event.order_id, event.instrument) for event in events if type(event) is OrderAccepted
        ]

    def next(self):
        rng = self.rng
        self.ts += 1
        ts = self.ts
        account = rng.choice(ACCOUNTS)
        roll = rng.random()
        if self.orders and roll < 0.18:
            owner, order_id, _ = rng.choice(self.orders)
            return CancelOrder(ts=ts, account=owner if rng.random() < 0.95 else account, order_id=order_id)
        if self.orders and roll < 0.33:
            owner, order_id, symbol = rng.choice(self.orders)
            change = rng.random()  # a new price, a new quantity, or both
            price = self.price(symbol) if change < 0.6 else None
            quantity = rng.randint(1, 15) if change > 0.4 else None
            return ReplaceOrder(ts=ts, account=owner, order_id=order_id, price=price, quantity=quantity)
        if roll < 0.34:
            return MassCancel(ts=ts, account=account, instrument=rng.choice((None,) + SYMBOLS))
        if roll < 0.35:
            self.date += rng.randint(1, 2)
            return EndOfDay(ts=ts, trading_date=self.date)
        if roll < 0.37:
            return SetSelfTradePrevention(ts=ts, account=account, mode=rng.choice(MODES[3:]))
        symbol = rng.choice(SYMBOLS)
        side = rng.choice((BUY, SELL))
        self.clid += 1
        fields = dict(
            ts=ts,
            account=account,
            client_order_id=self.clid,
            instrument=symbol,
            side=side,
            self_trade_prevention=rng.choice(MODES),
        )
        kind = rng.random()
        if kind < 0.12:  # market
            return NewOrder(
                quantity=rng.randint(1, 20),
                order_type="MARKET",
                time_in_force=rng.choice(("IOC", "IOC", "FOK")),
                **fields,
            )
        quantity = rng.randint(1, 15)
        price = self.price(symbol)
        if kind < 0.3:  # iceberg
            return NewOrder(quantity=quantity, price=price, display_quantity=rng.randint(1, quantity), **fields)
        if kind < 0.36:  # stop limit
            return NewOrder(quantity=quantity, price=price, stop_price=self.price(symbol), **fields)
        time_in_force = rng.choice(("GTC", "GTC", "GTC", "DAY", "IOC", "FOK"))
        return NewOrder(
            quantity=quantity,
            price=price,
            time_in_force=time_in_force,
            post_only=time_in_force in ("GTC", "DAY") and rng.random() < 0.1,
            **fields,
        )

    def price(self, symbol: str) -> int:
        return {"EUA": 7000, "CER": 5800}[symbol] + self.rng.randint(-5, 5)


def resting(engine) -> dict[int, tuple[str, object, int, int]]:
    """Every resting order: order id -> (instrument, side, price, shown lots)."""
    return {
        order.order_id: (symbol, side, order.price, order.visible)
        for symbol, book in engine.books.items()
        for side in (BUY, SELL)
        for order in book.resting_orders(side)
    }


def touched_levels(before: dict, after: dict, events: list, terms: dict) -> set:
    """The levels a command changed at any moment, from the books around it and its own events.

    An order that rests, leaves or shows a different amount changes its level
    (before and after the command); a trade changes its maker's level; a
    maker cancelled by self-trade prevention was resting at its price (it may
    have rested and died within the command); a replace that loses priority
    takes the order out of its old level even if it comes back to the same
    amount there. A self-trade cancel of the order being matched (the last one
    accepted, triggered or re-entered) is a taker's, which never rested.
    """
    touched = set()
    for order_id in before.keys() | after.keys():
        was, now = before.get(order_id), after.get(order_id)
        if was != now:
            touched.update(place[:3] for place in (was, now) if place is not None)
    taker = None
    for event in events:
        kind = type(event)
        if kind is OrderAccepted:
            terms[event.order_id] = (event.instrument, event.side, event.price)
            taker = event.order_id
        elif kind is StopTriggered:
            taker = event.order_id
        elif kind is OrderReplaced:
            instrument, side, _ = terms[event.order_id]
            terms[event.order_id] = (instrument, side, event.price)
            if not event.priority_kept:
                if event.order_id in before:
                    touched.add(before[event.order_id][:3])
                taker = event.order_id
        elif kind is Trade:
            touched.add((event.instrument, SELL if event.aggressor_side is BUY else BUY, event.price))
        elif kind is OrderCanceled and event.reason is CancelReason.SELF_TRADE and event.order_id != taker:
            touched.add(before[event.order_id][:3] if event.order_id in before else terms[event.order_id])
    return touched


@pytest.mark.parametrize("seed", range(8))
def test_depth_built_from_level_events_matches_the_books_after_every_command_and_batch(seed):
    stream = Stream(seed)
    batch_sizes = random.Random(seed + 1000)
    single = make_engine()  # handle(), one command at a time
    batched = make_engine()  # the same commands through handle_all()
    single_mirror, batched_mirror = DepthMirror(), DepthMirror()
    terms: dict = {}
    seen = {"trade": 0, "self_trade": 0, "unchanged": 0, "born_and_gone": 0}
    for _ in range(60):
        batch, single_events = [], []
        for _ in range(batch_sizes.randint(1, 12)):
            command = stream.next()
            batch.append(command)
            before, levels_before = resting(single), book_levels(single)
            seq = single.counters.seq
            events = single.handle(command)
            stream.learn(events)
            assert [event.seq for event in events] == list(range(seq + 1, seq + 1 + len(events)))
            check_level_announcements(single, events)
            announced = [level_key(event) for event in events if is_level(event)]
            assert set(announced) == touched_levels(before, resting(single), events, terms), (
                f"announced levels differ from those the command changed: {command}"
            )
            levels_after = book_levels(single)
            changed = {
                key
                for key in levels_before.keys() | levels_after.keys()
                if levels_before.get(key) != levels_after.get(key)
            }
            assert changed <= set(announced)
            seen["unchanged"] += len(set(announced) - changed)
            seen["trade"] += any(type(event) is Trade for event in events)
            seen["self_trade"] += any(
                type(event) is OrderCanceled and event.reason is CancelReason.SELF_TRADE for event in events
            )
            single_mirror.apply(events)
            single_mirror.assert_matches(single)
            check_books(single)
            single_events += events

        seq = batched.counters.seq
        events = batched.handle_all(batch)
        assert [event.seq for event in events] == list(range(seq + 1, seq + 1 + len(events)))
        check_level_announcements(batched, events)
        assert [replace(event, seq=0) for event in events if not is_level(event)] == [
            replace(event, seq=0) for event in single_events if not is_level(event)
        ]
        levels = [event for event in events if is_level(event)]
        assert [level_key(event) for event in levels] == announcement_order(
            batched, (level_key(event) for event in single_events if is_level(event))
        )
        assert all(event.ts == batch[-1].ts for event in levels)
        seen["born_and_gone"] += sum(
            event.quantity == 0 and event.price not in batched_mirror.levels.get((event.instrument, event.side), {})
            for event in levels
        )
        batched_mirror.apply(events)
        batched_mirror.assert_matches(batched)
        check_books(batched)
        assert list(batched.state_lines())[1:] == list(single.state_lines())[1:]
    assert all(seen.values()), f"the stream did not exercise everything: {seen}"
