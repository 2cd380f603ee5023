"""Engine.state_hash: equal for equal logical state, whatever the layout; different for any change of terms.

Logical state is what the engine would do next: resting orders in priority
with all their terms, waiting stops, last prices, accounts' settings and
client order ids, and the counters (so two histories that gave out a
different number of ids or events never hash alike). Layout is how the
structures happen to hold it: dead entries left in a level's deque by
cancels, whether a deque was compacted, the order in which levels or
accounts were created.
"""

from collections import deque

import pytest
from scenario_helpers import BUY, SELL, make_engine, shipped_instruments

from exchange import CancelOrder, EndOfDay, Engine, NewOrder, SelfTradePrevention, SetSelfTradePrevention, Side


def order(ts, clid, side, quantity, price, account="a", **fields):
    return NewOrder(
        ts=ts,
        account=account,
        client_order_id=clid,
        instrument="EUA",
        side=side,
        quantity=quantity,
        price=price,
        **fields,
    )


def replay(commands, engine=None):
    engine = engine or make_engine()
    for command in commands:
        engine.handle(command)
    for book in engine.books.values():
        book._check()
    return engine


def test_hash_is_a_sha256_hex_digest_and_replay_is_deterministic():
    commands = [order(1, "x", SELL, 5, 7000), order(2, "y", BUY, 3, 7000, account="b"), order(3, "z", BUY, 1, 6990)]
    first, second = replay(commands), replay(commands)
    assert len(first.state_hash()) == 64 and int(first.state_hash(), 16) >= 0
    assert first.state_hash() == second.state_hash()
    second.handle(order(4, "w", BUY, 1, 6980))
    assert first.state_hash() != second.state_hash()


def test_dead_entries_do_not_change_the_hash():
    # Same ids, clids, counters and survivors; only A leaves a dead entry (behind a live one) at 7000.
    a = replay([order(1, "y", SELL, 5, 7000), order(2, "x", SELL, 5, 7000), CancelOrder(ts=3, account="a", order_id=2)])
    b = replay([order(1, "y", SELL, 5, 7000), order(2, "x", SELL, 5, 7050), CancelOrder(ts=3, account="a", order_id=2)])
    assert len(a.books["EUA"].asks.levels[7000].orders) == 2
    assert len(b.books["EUA"].asks.levels[7000].orders) == 1
    assert a.state_hash() == b.state_hash()


def test_level_creation_order_does_not_change_the_hash():
    a = replay(
        [
            order(1, "x", BUY, 1, 6980),
            order(2, "p", BUY, 5, 7000),
            order(3, "q", BUY, 5, 6990),
            CancelOrder(ts=4, account="a", order_id=1),
        ]
    )
    b = replay(
        [
            order(1, "x", BUY, 1, 6990),
            order(2, "p", BUY, 5, 7000),
            order(3, "q", BUY, 5, 6990),
            CancelOrder(ts=4, account="a", order_id=1),
        ]
    )
    assert list(a.books["EUA"].bids.levels) != list(b.books["EUA"].bids.levels)
    assert a.state_hash() == b.state_hash()


def test_compaction_and_rebuilt_containers_do_not_change_the_hash():
    commands = [order(ts, f"c{ts}", SELL, 1, 7000) for ts in range(1, 41)]
    commands += [CancelOrder(ts=100 + n, account="a", order_id=n) for n in range(1, 41, 3)]
    engine = replay(commands)
    before = engine.state_hash()
    book = engine.books["EUA"]
    for side in (book.bids, book.asks):
        for level in side.levels.values():
            level.orders = deque(level.live_orders())  # compact by hand
        side.levels = dict(reversed(side.levels.items()))
    engine.accounts = dict(reversed(engine.accounts.items()))
    book._check()
    assert engine.state_hash() == before


def test_account_creation_order_and_instrument_order_do_not_change_the_hash():
    modes = [
        SetSelfTradePrevention(ts=1, account="b", mode="NONE"),
        SetSelfTradePrevention(ts=2, account="a", mode="CANCEL_BOTH"),
    ]
    swapped = [
        SetSelfTradePrevention(ts=1, account="a", mode="CANCEL_BOTH"),
        SetSelfTradePrevention(ts=2, account="b", mode="NONE"),
    ]
    reversed_instruments = Engine(dict(reversed(list(shipped_instruments().items()))), pre_trade_risk=False)
    assert list(reversed_instruments.books) != list(make_engine().books)
    assert replay(modes).state_hash() == replay(swapped, reversed_instruments).state_hash()


def test_extra_add_and_cancel_leaves_the_same_book_but_not_the_same_counters():
    plain = replay([order(1, "x", SELL, 5, 7000)])
    detour = replay(
        [order(1, "x", SELL, 5, 7000), order(2, "tmp", BUY, 1, 6000), CancelOrder(ts=3, account="a", order_id=2)]
    )

    def book_lines(engine):
        return [line for line in engine.state_lines() if line.startswith(("rest", "stop", "book"))]

    # The books agree order for order, ...
    assert book_lines(plain) == book_lines(detour)
    # ... but the detour gave out an order id and events, and used a client order id: not the same state.
    assert plain.state_hash() != detour.state_hash()


# -- any change of terms changes the hash ------------------------------------------------------

SETUP = [
    EndOfDay(ts=1, trading_date=20240102),
    order(2, "plain", SELL, 5, 7000),
    order(3, "ice", SELL, 30, 7010, display_quantity=10),
    order(4, "gtd", BUY, 4, 6990, time_in_force="GTD", expire_date=20240110),
    order(5, "stop", BUY, 2, 7100, stop_price=7050, self_trade_prevention="CANCEL_RESTING"),
    order(6, "po", BUY, 1, 6980, post_only=True),
    order(7, "take", BUY, 1, 7000, account="b"),  # fills 1 of "plain" and is closed
]


def mutations():
    """(name, function changing one fact of the engine in place)."""

    def on(clid, **changes):
        def apply(engine):
            target = next(o for o in engine.open_orders.values() if o.client_order_id == clid)
            for attribute, value in changes.items():
                setattr(target, attribute, value)

        return apply

    def other_account(engine):
        target = next(o for o in engine.open_orders.values() if o.client_order_id == "plain")
        target.account = engine.accounts["b"]

    def counter(name):
        def apply(engine):
            setattr(engine.counters, name, getattr(engine.counters, name) + 1)

        return apply

    def set_attr(path, value):
        def apply(engine):
            obj = engine
            *parents, last = path
            for part in parents:
                obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
            setattr(obj, last, value)

        return apply

    def close_clid(engine):
        engine.accounts["a"].orders["plain"] = None

    def forget_clid(engine):
        del engine.accounts["b"].orders["take"]

    return [
        ("order id", on("plain", order_id=99)),
        ("account", other_account),
        ("client order id", on("plain", client_order_id="other")),
        ("side", on("gtd", side=Side.SELL)),
        ("order type", on("plain", order_type="MARKET")),
        ("time in force", on("plain", time_in_force="DAY")),
        ("price", on("plain", price=7001)),
        ("quantity", on("plain", quantity=6)),
        ("leaves", on("plain", leaves=3)),
        ("shown", on("ice", visible=9)),
        ("display", on("ice", display_quantity=11)),
        ("stop price", on("stop", stop_price=7060)),
        ("stop limit", on("stop", price=7110)),
        ("stop quantity", on("stop", quantity=3, leaves=3)),
        ("expire date", on("gtd", expire_date=20240111)),
        ("post-only", on("po", post_only=False)),
        ("order self-trade mode", on("stop", self_trade_prevention=SelfTradePrevention.CANCEL_BOTH)),
        ("order ts", on("plain", ts=123)),
        ("last price", set_attr(("books", "EUA", "last_price"), 7001)),
        (
            "account self-trade mode",
            set_attr(("accounts", "a", "self_trade_prevention"), SelfTradePrevention.CANCEL_TAKING),
        ),
        ("client order id closed", close_clid),
        ("client order id forgotten", forget_clid),
        ("last closed date", set_attr(("order_commands", "last_closed_date"), 20240103)),
        ("seq", counter("seq")),
        ("order id counter", counter("order_id")),
        ("trade id counter", counter("trade_id")),
    ]


def test_setup_has_every_kind_of_order():
    engine = replay(SETUP)
    assert {o.client_order_id: o.leaves for o in engine.open_orders.values()} == {
        "plain": 4,
        "ice": 30,
        "gtd": 4,
        "stop": 2,
        "po": 1,
    }
    assert engine.accounts["b"].orders == {"take": None}
    assert engine.books["EUA"].last_price == 7000 and engine.last_closed_date == 20240102


@pytest.mark.parametrize("mutate", [m[1] for m in mutations()], ids=[m[0] for m in mutations()])
def test_any_change_of_state_changes_the_hash(mutate):
    engine = replay(SETUP)
    before = engine.state_hash()
    mutate(engine)
    assert engine.state_hash() != before
