"""The engine against the reference book (tests/reference_book.py): same commands, same results.

How it works
------------
Each test feeds one stream of orders to an :class:`exchange.Engine` and to
the :class:`ReferenceBook`, then compares what they did: the trade tape,
every cancellation (with its quantity and reason), the answer to each cancel
and replace, and the final book listed order by order in priority. Orders are
named by client order id on both sides, so the two tapes line up without any
translation of ids.

1. The standard workload (benchmarks/workload.py), fed to the engine
   exactly as benchmarks/engine_bench.py does: every order on EUA with the
   market collar off, account = workload id modulo 100, client order id =
   workload id, market orders as MARKET/IOC, cancels by client order id,
   in batches of 256 commands through ``Engine.handle_all`` (one run goes
   command by command through ``Engine.handle`` instead).
2. Hypothesis-generated streams on a five-tick price range (so most orders
   cross) with three accounts (so self-trade prevention keeps firing): limit,
   market, IOC, FOK, iceberg, post-only, cancel and replace, each order with
   its own self-trade prevention mode. These are compared command by command.

Beyond agreement with the reference, the engine's own events are checked
where it is cheap: sequence numbers gap-free from 1, trade ids gap-free, every
trade at the maker's current price and within the taker's limit, every
event stamped with its command's timestamp, and ``OrderBook._check()`` at the
end.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_book import Cancel, Fill, ReferenceBook

from exchange import (
    CancelOrder,
    Engine,
    NewOrder,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderReplaced,
    OrderType,
    RejectCode,
    ReplaceOrder,
    RequestRejected,
    SelfTradePrevention,
    Side,
    TimeInForce,
    Trade,
)
from gateway.config import load_instruments

SYMBOL = "EUA"


def engine_without_collar() -> Engine:
    """All configured instruments, EUA with no market collar: market orders sweep, as in the workload."""
    instruments = load_instruments()
    instruments[SYMBOL] = dataclasses.replace(
        instruments[SYMBOL], market_collar=None, price_band_bps=0, volatility_band_bps=0
    )
    return Engine(instruments, pre_trade_risk=False)


def engine_listing(engine: Engine) -> list[tuple[str, int, object, int]]:
    """The engine's book in the reference's listing format, named by client order id."""
    book = engine.books[SYMBOL]
    return [
        (order.side, order.price, order.client_order_id, order.leaves)
        for side in (Side.BUY, Side.SELL)
        for order in book.resting_orders(side)
    ]


def engine_shown(engine: Engine) -> dict[object, int]:
    book = engine.books[SYMBOL]
    return {
        order.client_order_id: order.visible for side in (Side.BUY, Side.SELL) for order in book.resting_orders(side)
    }


def as_reference_log(events: list) -> list[Fill | Cancel]:
    """The engine's trades and cancellations in the reference's terms."""
    log: list[Fill | Cancel] = []
    for event in events:
        if type(event) is Trade:
            log.append(
                Fill(
                    event.taker_client_order_id,
                    event.maker_client_order_id,
                    event.price,
                    event.quantity,
                    event.taker_leaves,
                    event.maker_leaves,
                )
            )
        elif type(event) is OrderCanceled:
            log.append(Cancel(event.client_order_id, event.canceled_quantity, str(event.reason)))
    return log


def first_difference(got: list, expected: list) -> str:
    """Where two lists part, for a failure message that points at the spot instead of dumping both."""
    for index, (left, right) in enumerate(zip(got, expected, strict=False)):
        if left != right:
            return f"first difference at #{index}: engine {left!r}, reference {right!r}"
    return f"lengths differ: engine {len(got)}, reference {len(expected)}"


def assert_sequence_numbers_gap_free(events: list) -> None:
    seqs = [event.seq for event in events]
    assert seqs == list(range(1, len(events) + 1)), "event seq numbers are not 1..N without gaps"
    trade_ids = [event.trade_id for event in events if type(event) is Trade]
    assert trade_ids == list(range(1, len(trade_ids) + 1)), "trade ids are not 1..N without gaps"


# -- 1. the standard workload ----------------------------------------------------------------

WORKLOAD_ACCOUNTS = 100

# (orders, seed, depth, batch): depth bounds the resting book; small depths keep the reference's
# linear scans cheap, and the spread of depths varies how far market orders sweep and how often
# cancels find their order already filled. batch is the number of commands per Engine.handle_all
# call, 256 as the benchmark feeds them, or 1 for Engine.handle on each command.
WORKLOAD_RUNS = [
    (20_000, 1, 30, 256),
    (20_000, 7, 120, 1),
    (30_000, 42, 300, 256),
    (30_000, 2024, 60, 256),
    (50_000, 99, 200, 256),
]


def workload_commands(rows) -> list[object]:
    """Engine commands for workload rows, built as benchmarks/engine_bench.py builds them."""
    accounts = [f"acct{n:02d}" for n in range(WORKLOAD_ACCOUNTS)]
    commands: list[object] = []
    for ts, row in enumerate(rows, 1):
        account = accounts[row.order_id % WORKLOAD_ACCOUNTS]
        if row.kind == "C":
            commands.append(CancelOrder(ts=ts, account=account, client_order_id=row.order_id))
        elif row.kind == "A":
            commands.append(
                NewOrder(
                    ts=ts,
                    account=account,
                    client_order_id=row.order_id,
                    instrument=SYMBOL,
                    side=Side(row.side),
                    quantity=row.quantity,
                    price=row.price,
                )
            )
        else:
            commands.append(
                NewOrder(
                    ts=ts,
                    account=account,
                    client_order_id=row.order_id,
                    instrument=SYMBOL,
                    side=Side(row.side),
                    quantity=row.quantity,
                    order_type=OrderType.MARKET,
                    time_in_force=TimeInForce.IOC,
                )
            )
    return commands


@pytest.mark.parametrize("orders, seed, depth, batch", WORKLOAD_RUNS)
def test_standard_workload_matches_reference(workload, orders, seed, depth, batch):
    rows = workload(orders, seed, depth)
    assert len(rows) == orders

    engine = engine_without_collar()
    commands = workload_commands(rows)
    events: list = []
    if batch == 1:
        for command in commands:
            events += engine.handle(command)
    else:
        for first in range(0, len(commands), batch):
            events += engine.handle_all(commands[first : first + batch])
    # Each workload id is cancelled at most once, so its cancel succeeded if a user cancel names it.
    canceled_by_user = {
        event.client_order_id for event in events if type(event) is OrderCanceled and event.reason == "USER"
    }
    cancel_answers = [row.order_id in canceled_by_user for row in rows if row.kind == "C"]

    reference = ReferenceBook()
    reference_cancel_answers: list[bool] = []
    for row in rows:
        account = f"acct{row.order_id % WORKLOAD_ACCOUNTS:02d}"
        if row.kind == "C":
            reference_cancel_answers.append(reference.cancel(row.order_id))
        elif row.kind == "A":
            reference.submit(row.order_id, account, row.side, row.quantity, row.price)
        else:
            reference.submit(row.order_id, account, row.side, row.quantity, None, tif="IOC")

    engine_log = as_reference_log(events)
    engine_tape = [(f.taker, f.maker, f.price, f.quantity) for f in engine_log if type(f) is Fill]
    reference_tape = reference.trades()
    # A comparison that passes because nothing happened proves nothing.
    assert len(reference_tape) > orders // 20, "workload produced too few trades to compare"
    assert engine_tape == reference_tape, "trade tape: " + first_difference(engine_tape, reference_tape)
    assert engine_log == reference.log, "fills and cancellations: " + first_difference(engine_log, reference.log)
    assert cancel_answers == reference_cancel_answers, "cancel accepted/refused: " + first_difference(
        cancel_answers, reference_cancel_answers
    )
    assert engine_listing(engine) == reference.listing(), "final book: " + first_difference(
        engine_listing(engine), reference.listing()
    )

    limit_price = {row.order_id: row.price for row in rows if row.kind == "A"}
    for trade in (event for event in events if type(event) is Trade):
        assert trade.price == limit_price[trade.maker_client_order_id], f"trade not at the maker's price: {trade}"
    assert_sequence_numbers_gap_free(events)
    engine.books[SYMBOL]._check()


# -- 2. generated command streams --------------------------------------------------------------

ACCOUNTS = ("alice", "bob", "carol")
PRICES = (6998, 6999, 7000, 7001, 7002)
ORDER_KINDS = ("limit", "market", "ioc", "fok", "market_fok", "iceberg", "post_only")
STP_MODES = tuple(SelfTradePrevention)


class NewOp(NamedTuple):
    account: str
    side: str
    kind: str
    price: int
    quantity: int
    display: int
    stp: SelfTradePrevention


class CancelOp(NamedTuple):
    target: int  # picks one of the orders sent so far (modulo their number), open or not
    by_order_id: bool


class ReplaceOp(NamedTuple):
    target: int
    quantity: int
    price: int
    by_order_id: bool


new_ops = st.builds(
    NewOp,
    account=st.sampled_from(ACCOUNTS),
    side=st.sampled_from(("B", "S")),
    kind=st.sampled_from(ORDER_KINDS),
    price=st.sampled_from(PRICES),
    quantity=st.integers(1, 12),
    display=st.integers(1, 4),
    stp=st.sampled_from(STP_MODES),
)
cancel_ops = st.builds(CancelOp, target=st.integers(0, 200), by_order_id=st.booleans())
replace_ops = st.builds(
    ReplaceOp,
    target=st.integers(0, 200),
    quantity=st.integers(1, 15),
    price=st.sampled_from(PRICES),
    by_order_id=st.booleans(),
)
operation_streams = st.lists(st.one_of(new_ops, new_ops, new_ops, cancel_ops, replace_ops), min_size=5, max_size=120)


class SentOrder(NamedTuple):
    client_order_id: int
    account: str
    order_id: int | None  # the engine's id, from OrderAccepted


def new_order_command(ts: int, clid: int, op: NewOp) -> NewOrder:
    fields = dict(
        ts=ts,
        account=op.account,
        client_order_id=clid,
        instrument=SYMBOL,
        side=Side(op.side),
        quantity=op.quantity,
        self_trade_prevention=op.stp,
    )
    if op.kind == "market":
        return NewOrder(order_type=OrderType.MARKET, time_in_force=TimeInForce.IOC, **fields)
    if op.kind == "market_fok":
        return NewOrder(order_type=OrderType.MARKET, time_in_force=TimeInForce.FOK, **fields)
    if op.kind == "ioc":
        return NewOrder(price=op.price, time_in_force=TimeInForce.IOC, **fields)
    if op.kind == "fok":
        return NewOrder(price=op.price, time_in_force=TimeInForce.FOK, **fields)
    if op.kind == "iceberg":
        return NewOrder(price=op.price, display_quantity=min(op.display, op.quantity), **fields)
    return NewOrder(price=op.price, post_only=op.kind == "post_only", **fields)


def submit_to_reference(reference: ReferenceBook, clid: int, op: NewOp) -> bool:
    if op.kind in ("market", "market_fok"):
        tif = "FOK" if op.kind == "market_fok" else "IOC"
        return reference.submit(clid, op.account, op.side, op.quantity, None, tif=tif, stp=op.stp)
    if op.kind == "iceberg":
        return reference.submit(
            clid, op.account, op.side, op.quantity, op.price, display=min(op.display, op.quantity), stp=op.stp
        )
    tif = {"ioc": "IOC", "fok": "FOK"}.get(op.kind, "GTC")
    return reference.submit(
        clid, op.account, op.side, op.quantity, op.price, tif=tif, stp=op.stp, post_only=op.kind == "post_only"
    )


# Each example takes a few milliseconds, so this test affords many more than the profile's default.
@settings(max_examples=15 * settings.default.max_examples)
@given(operation_streams)
def test_generated_streams_match_reference(operations):
    engine = engine_without_collar()
    reference = ReferenceBook()
    sent: list[SentOrder] = []
    side_of: dict[int, str] = {}
    limit_of: dict[int, int | None] = {}  # the order's current limit price; None for market orders
    all_events: list = []

    for ts, op in enumerate(operations, 1):
        log_mark = len(reference.log)
        if type(op) is NewOp:
            clid = ts  # unique: one command per ts
            events = engine.handle(new_order_command(ts, clid, op))
            accepted = type(events[0]) is OrderAccepted
            post_only_refused = type(events[0]) is OrderRejected and events[0].code is RejectCode.POST_ONLY_WOULD_TAKE
            assert accepted or post_only_refused, f"valid order refused: {op} -> {events[0]}"
            assert accepted == submit_to_reference(reference, clid, op), f"accepted by one book only: {op}"
            if accepted:
                sent.append(SentOrder(clid, op.account, events[0].order_id))
                side_of[clid] = op.side
                limit_of[clid] = None if op.kind.startswith("market") else op.price
        elif not sent:
            # Nothing sent yet: the command names an order that never existed; both must refuse it.
            events = engine.handle(CancelOrder(ts=ts, account="alice", client_order_id=10**6))
            assert type(events[0]) is RequestRejected and not reference.cancel(10**6)
        else:
            target = sent[op.target % len(sent)]
            order_reference = (
                dict(order_id=target.order_id) if op.by_order_id else dict(client_order_id=target.client_order_id)
            )
            if type(op) is CancelOp:
                events = engine.handle(CancelOrder(ts=ts, account=target.account, **order_reference))
                engine_done = any(type(event) is OrderCanceled for event in events)
                assert engine_done == reference.cancel(target.client_order_id), f"cancel answers differ: {op}"
            else:
                events = engine.handle(
                    ReplaceOrder(ts=ts, account=target.account, quantity=op.quantity, price=op.price, **order_reference)
                )
                engine_done = any(type(event) is OrderReplaced for event in events)
                reference_done = reference.replace(target.client_order_id, op.quantity, op.price)
                assert engine_done == reference_done, f"replace answers differ: {op}"
                if engine_done:
                    limit_of[target.client_order_id] = op.price

        assert all(event.ts == ts for event in events), "an event carries another command's timestamp"
        for trade in (event for event in events if type(event) is Trade):
            assert trade.price == limit_of[trade.maker_client_order_id], f"trade not at the maker's price: {trade}"
            assert trade.aggressor_side == side_of[trade.taker_client_order_id]
            assert side_of[trade.maker_client_order_id] != trade.aggressor_side
            taker_limit = limit_of[trade.taker_client_order_id]
            if taker_limit is not None:
                assert trade.price <= taker_limit if trade.aggressor_side == "B" else trade.price >= taker_limit, (
                    f"trade beyond the taker's limit: {trade}"
                )
        engine_log = as_reference_log(events)
        reference_log = reference.log[log_mark:]
        assert engine_log == reference_log, f"command #{ts} {op}: " + first_difference(engine_log, reference_log)
        all_events += events

    assert engine_listing(engine) == reference.listing()
    assert engine_shown(engine) == reference.shown()
    assert_sequence_numbers_gap_free(all_events)
    engine.books[SYMBOL]._check()


# -- fill-or-kill against iceberg refills under self-trade prevention ---------------------------------


@pytest.mark.parametrize("mode", [SelfTradePrevention.CANCEL_TAKING, SelfTradePrevention.CANCEL_BOTH])
def test_fill_or_kill_never_fills_in_part_when_self_trade_prevention_stops_it(mode):
    """FOK is all or nothing, even when an iceberg's refill queues behind one of the taker's own orders.

    The iceberg shows 1 of its 10 lots; after that lot trades, its next slice
    goes to the back of the level, behind the taker's own order, where
    self-trade prevention stops the taker. A check that counted the whole
    reserve as reachable let one lot of this five-lot FOK trade and cancelled
    the rest (and, under CANCEL_BOTH, the own resting order too).
    """
    engine = engine_without_collar()
    engine.handle(
        NewOrder(
            ts=1,
            account="other",
            client_order_id="iceberg",
            instrument=SYMBOL,
            side=Side.SELL,
            quantity=10,
            price=7000,
            display_quantity=1,
        )
    )
    engine.handle(
        NewOrder(ts=2, account="me", client_order_id="own", instrument=SYMBOL, side=Side.SELL, quantity=5, price=7000)
    )
    events = engine.handle(
        NewOrder(
            ts=3,
            account="me",
            client_order_id="fok",
            instrument=SYMBOL,
            side=Side.BUY,
            quantity=5,
            price=7000,
            time_in_force=TimeInForce.FOK,
            self_trade_prevention=mode,
        )
    )

    traded = sum(event.quantity for event in events if type(event) is Trade)
    assert traded in (0, 5), f"FOK order for 5 lots traded {traded}: {events}"
    assert [(e.client_order_id, e.reason) for e in events if type(e) is OrderCanceled] == [("fok", "FOK_UNFILLED")]
