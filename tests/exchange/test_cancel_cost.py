"""Cancel never scans a price level: cancelling N orders at one price costs O(N) in total, not O(N^2).

Measured without a clock. The book's module-level ``deque`` is replaced by a
subclass that counts every element it hands out (iteration, which a rebuild
or a search goes through), every element a ``remove``/``index``/``in`` or
an indexed read away from either end would walk past, and every pop. Then
30,000 orders rest at one price and are cancelled in a seeded random order.
A scan per cancel would cost about N^2 / 4 = 225 million steps; the bound
asserted is a small multiple of N. After every cancel the level's deque must
stay within ``2 * live + COMPACT_SLACK`` entries (memory proportional to live
orders), and the book is checked as it goes.
"""

import random
from collections import deque

import pytest
from scenario_helpers import check_books, make_engine

import exchange.book_side
from exchange import CancelOrder, NewOrder, Side, Trade
from exchange.book_side import COMPACT_SLACK

N = 30_000
PRICE = 7000


class CountingDeque(deque):
    """A deque that counts the elements its operations touch (in ``work``, shared by all instances)."""

    work = 0
    counting = True

    @classmethod
    def charge(cls, steps: int) -> None:
        if cls.counting:
            cls.work += steps

    def __iter__(self):
        for item in deque.__iter__(self):
            CountingDeque.charge(1)
            yield item

    def __contains__(self, item):
        CountingDeque.charge(len(self))
        return deque.__contains__(self, item)

    def __getitem__(self, index):
        size = len(self)
        position = index % size if size else 0
        CountingDeque.charge(min(position, size - 1 - position))  # deque indexing walks from the nearer end
        return deque.__getitem__(self, index)

    def __delitem__(self, index):
        CountingDeque.charge(len(self))
        deque.__delitem__(self, index)

    def remove(self, value):
        CountingDeque.charge(len(self))
        deque.remove(self, value)

    def index(self, *args):
        CountingDeque.charge(len(self))
        return deque.index(self, *args)

    def count(self, value):
        CountingDeque.charge(len(self))
        return deque.count(self, value)

    def rotate(self, n=1):
        CountingDeque.charge(abs(n))
        deque.rotate(self, n)

    def popleft(self):
        CountingDeque.charge(1)
        return deque.popleft(self)

    def pop(self):
        CountingDeque.charge(1)
        return deque.pop(self)


@pytest.fixture
def counted(monkeypatch):
    monkeypatch.setattr(exchange.book_side, "deque", CountingDeque)
    CountingDeque.work = 0
    CountingDeque.counting = True
    return CountingDeque


def checked(engine) -> None:
    """The book's full self-check, which iterates every level: not charged to the cancels."""
    CountingDeque.counting = False
    try:
        check_books(engine)
    finally:
        CountingDeque.counting = True


def fill_one_level(engine, count: int) -> list[int]:
    """``count`` one-lot asks at PRICE from 50 accounts; their order ids, in arrival order."""
    ids = []
    for n in range(count):
        events = engine.handle(
            NewOrder(
                ts=n + 1,
                account=f"acct{n % 50}",
                client_order_id=n,
                instrument="EUA",
                side=Side.SELL,
                quantity=1,
                price=PRICE,
            )
        )
        ids.append(events[0].order_id)
    return ids


def level(engine):
    return engine.books["EUA"].asks.levels.get(PRICE)


def test_the_meter_counts_a_scan():
    # The meter must be able to see the quadratic behaviour it guards against.
    queue = CountingDeque(range(1000))
    CountingDeque.work = 0
    queue.remove(999)
    assert CountingDeque.work == 1000
    CountingDeque.work = 0
    _ = queue[500]
    assert CountingDeque.work >= 400


def test_cancelling_a_deep_level_in_random_order_costs_linear_work(counted):
    engine = make_engine()
    ids = fill_one_level(engine, N)
    assert isinstance(level(engine).orders, CountingDeque)
    assert engine.books["EUA"].depth(Side.SELL) == [(PRICE, N, N)]
    order_accounts = {order_id: f"acct{n % 50}" for n, order_id in enumerate(ids)}
    random.Random(20240105).shuffle(ids)
    counted.work = 0
    for done, order_id in enumerate(ids, 1):
        events = engine.handle(CancelOrder(ts=N + done, account=order_accounts[order_id], order_id=order_id))
        assert events[0].order_id == order_id and events[0].canceled_quantity == 1
        live = N - done
        lvl = level(engine)
        if live:
            assert lvl.count == live and lvl.quantity == live
            assert len(lvl.orders) <= 2 * live + COMPACT_SLACK, "dead entries outgrow the live orders"
        else:
            assert lvl is None
        if done % 7_500 == 0:
            checked(engine)
    assert counted.work <= 4 * N, f"{counted.work} steps to cancel {N} orders"
    assert engine.books["EUA"].depth(Side.SELL) == [] and engine.open_orders == {}
    checked(engine)


def test_matching_through_dead_entries_costs_linear_work(counted):
    engine = make_engine()
    count = N // 3
    ids = fill_one_level(engine, count)
    accounts = {order_id: f"acct{n % 50}" for n, order_id in enumerate(ids)}
    doomed = ids[:]
    random.Random(7).shuffle(doomed)
    doomed = set(doomed[: 2 * count // 3])
    for n, order_id in enumerate(sorted(doomed, key=str)):  # an order unrelated to arrival
        engine.handle(CancelOrder(ts=count + n + 1, account=accounts[order_id], order_id=order_id))
    checked(engine)
    survivors = [o.order_id for o in engine.books["EUA"].resting_orders(Side.SELL)]
    assert survivors == [order_id for order_id in ids if order_id not in doomed]
    counted.work = 0
    makers = []
    for n in range(0, len(survivors), 1000):  # 1000 lots: the instrument's largest order
        events = engine.handle(
            NewOrder(
                ts=10 * N + n,
                account="taker",
                client_order_id=n,
                instrument="EUA",
                side=Side.BUY,
                quantity=min(1000, len(survivors) - n),
                price=PRICE,
            )
        )
        makers += [e.maker_order_id for e in events if isinstance(e, Trade)]
    assert makers == survivors
    assert counted.work <= 3 * count, f"{counted.work} steps to match {len(survivors)} orders"
    assert level(engine) is None
    checked(engine)
