"""Trade at settlement (exchange.clearing.tas): a TAS book beside each settled contract, prices as ticks either side
of the coming settlement, fills priced at the end of day and settled by its variation margin; to the cent, and by
hypothesis beside outright trading: positions net to zero, margin held by the rule, cash conserved."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st
from scenario_helpers import of_type, one
from test_futures import ACCOUNTS, FEE, PER_LOT, TERMS, futures_engine, next_weekday, order

from exchange import (
    CancelOrder,
    ContractExpired,
    ContractListed,
    EndOfDay,
    FuturesDelivered,
    ListFutures,
    OrderRejected,
    RejectCode,
    Side,
    TASPriced,
    Trade,
    VariationMarginPaid,
)
from exchange.clearing import initial_margin


def settled_engine():
    """EUAZ26 settled on 7 December at EUR 70.50 (the mid of c's quotes), its quotes cancelled: a TAS book is listed."""
    engine, clock = futures_engine()
    engine.handle(order(clock, "c", "EUAZ26", Side.SELL, 1, 70_60, "q1"))
    engine.handle(order(clock, "c", "EUAZ26", Side.BUY, 1, 70_40, "q2"))
    events = engine.handle(EndOfDay(ts=clock(), trading_date=20261207))
    listed = [e.instrument for e in of_type(events, ContractListed)]
    assert listed == ["EUAZ26TAS"]  # only the month that settled has one
    for clid in ("q1", "q2"):
        engine.handle(CancelOrder(ts=clock(), account="c", client_order_id=clid))
    engine.handle(ListFutures(ts=clock(), trading_date=20261208))
    return engine, clock


def test_no_tas_before_a_first_settlement():
    engine, _ = futures_engine()
    assert engine.futures_contracts(with_books=True) == ["EUAZ26", "EUAZ27", "EUAZ28"]
    assert not engine.has_instrument("EUAZ26TAS")


def test_a_tas_fill_moves_the_position_now_and_is_priced_at_the_settlement_plus_its_offset():
    engine, clock = settled_engine()
    assert engine.futures_contracts("EUA", with_books=True)[-1] == "EUAZ26TAS"
    engine.handle(order(clock, "a", "EUAZ26TAS", Side.SELL, 3, -2, "t1"))  # two ticks under the settlement
    events = engine.handle(order(clock, "b", "EUAZ26TAS", Side.BUY, 3, 0, "t2"))
    trade = one(events, Trade)
    assert (trade.instrument, trade.price, trade.quantity) == ("EUAZ26TAS", -2, 3)
    house = engine.futures.house
    assert (house.position("a", "EUAZ26"), house.position("b", "EUAZ26")) == (-3, 3)  # at once
    assert engine.balances("b").reserved_cash == 3 * 8_00 * 1_000  # margin as for any position
    # the close: c's quotes at 71.90-72.10 settle EUAZ26 at 72.00
    engine.handle(order(clock, "c", "EUAZ26", Side.SELL, 1, 72_10, "q3"))
    engine.handle(order(clock, "c", "EUAZ26", Side.BUY, 1, 71_90, "q4"))
    events = engine.handle(EndOfDay(ts=clock(), trading_date=20261208))
    priced = one(events, TASPriced)
    assert (priced.contract, priced.buy_order_id, priced.sell_order_id, priced.buyer, priced.seller) == (
        "EUAZ26",
        trade.taker_order_id,
        trade.maker_order_id,
        "b",
        "a",
    )
    assert (priced.quantity, priced.price) == (3, 72_00 - 2)
    margins = {e.account: e.amount for e in of_type(events, VariationMarginPaid)}
    assert margins == {"b": 3 * 1_000 * 2, "a": -3 * 1_000 * 2}  # bought at 71.98, settled at 72.00


def test_tas_prices_are_ticks_either_side_and_only_a_tas_book_takes_zero_or_less():
    engine, clock = settled_engine()
    for symbol, price, code in (
        ("EUAZ26TAS", 11, RejectCode.PRICE_OUT_OF_RANGE),  # over the shipped 10 ticks
        ("EUAZ26TAS", -11, RejectCode.PRICE_OUT_OF_RANGE),
        ("EUAZ26", 0, RejectCode.INVALID_PRICE),
        ("EUAZ26", -5, RejectCode.INVALID_PRICE),
        ("EUA", 0, RejectCode.INVALID_PRICE),
    ):
        refused = engine.handle(order(clock, "a", symbol, Side.BUY, 1, price, f"{symbol}{price}"))
        assert one(refused, OrderRejected).code is code, (symbol, price)
    for price in (-10, 0, 10):
        assert (
            of_type(engine.handle(order(clock, "a", "EUAZ26TAS", Side.BUY, 1, price, f"ok{price}")), OrderRejected)
            == []
        )


def test_the_tas_book_goes_with_its_contract_and_its_last_fills_are_delivered():
    engine, clock = settled_engine()
    engine.handle(order(clock, "a", "EUAZ26TAS", Side.SELL, 2, 1, "t1"))
    engine.handle(order(clock, "b", "EUAZ26TAS", Side.BUY, 2, 1, "t2"))
    engine.handle(order(clock, "c", "EUAZ26TAS", Side.BUY, 1, -3, "t3"))  # left working: it expires
    engine.handle(ListFutures(ts=clock(), trading_date=20261221))
    events = engine.handle(EndOfDay(ts=clock(), trading_date=20261221))  # EUAZ26's last trading day
    priced = one(events, TASPriced)
    assert priced.price == 70_50 + 1  # no trade nor quote: the previous settlement
    expired = {e.instrument: e for e in of_type(events, ContractExpired)}
    assert expired["EUAZ26TAS"].orders_expired == 1 and not engine.has_instrument("EUAZ26TAS")
    delivered = one(events, FuturesDelivered)
    assert (delivered.long_account, delivered.short_account, delivered.units, delivered.cash) == (
        "b",
        "a",
        2_000,
        2_000 * 70_50,
    )


def test_waiting_tas_fills_are_in_snapshots_and_the_state_hash():
    engine, clock = settled_engine()
    engine.handle(order(clock, "a", "EUAZ26TAS", Side.SELL, 2, 0, "t1"))
    before = engine.state_hash()
    engine.handle(order(clock, "b", "EUAZ26TAS", Side.BUY, 2, 0, "t2"))
    assert engine.state_hash() != before
    assert any(line.strip().startswith("tas waiting") for line in engine.state_lines())
    copy = pickle.loads(pickle.dumps(engine))
    assert copy.state_hash() == engine.state_hash()
    close = EndOfDay(ts=clock(), trading_date=20261208)
    assert copy.handle(close) == engine.handle(close)
    assert copy.state_hash() == engine.state_hash()


action = st.one_of(
    st.tuples(
        st.just("order"),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(("EUAZ26", "EUAZ26TAS", "EUAZ27")),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(1, 20),
        st.integers(-10, 10),  # ticks from 71.00 outright; the offset itself on a TAS book
    ),
    st.tuples(st.just("end_of_day")),
)


@settings(max_examples=60)
@given(st.lists(action, min_size=1, max_size=30), st.integers(1, 120))
def test_tas_among_outright_trading_keeps_every_clearing_invariant(actions, funding_lots):
    engine, clock = settled_engine()
    for account in ACCOUNTS:  # (each account funded alike: what it has is what the draw says)
        engine.accounts[account].cash = funding_lots * (PER_LOT + FEE)
    everyone = (*ACCOUNTS, engine.fee_account_id)
    cash_total = sum(engine.balances(account).cash for account in everyone)
    day, number = 20261208, 0
    for step in actions:
        number += 1
        if step[0] == "end_of_day":
            events = engine.handle(EndOfDay(ts=clock(), trading_date=day))
            assert sum(e.amount for e in of_type(events, VariationMarginPaid)) == 0
            assert not engine.futures.tas.waiting  # every TAS fill priced
            day = next_weekday(day)
            engine.handle(ListFutures(ts=clock(), trading_date=day))
            continue
        _, account, symbol, side, lots, ticks = step
        if not engine.has_instrument(symbol):
            continue
        price = ticks if symbol.endswith("TAS") else 71_00 + ticks
        excess = engine.balances(account).cash - engine.balances(account).reserved_cash
        engine.handle(order(clock, account, symbol, side, lots, price, number))
        for holder in ACCOUNTS:
            balances = engine.balances(holder)
            assert balances.cash - balances.reserved_cash >= min(excess if holder == account else 0, 0)
        desk = engine.futures
        for contract in desk.contracts:
            assert sum(desk.house.position(a, contract) for a in ACCOUNTS) == 0
        for holder in ACCOUNTS:
            assert desk.margins_held.get((holder, "EUA"), 0) == initial_margin(
                desk.house.positions_of(holder), 1_000, TERMS
            )
        assert sum(engine.balances(a).cash for a in everyone) == cash_total
