"""Calendar spreads (exchange.clearing.spreads): a book for each pair of consecutive Decembers whose fills are two
leg trades, priced off the far leg; to the cent, and by hypothesis beside outright trading: positions net to
zero, margin held by the rule, variation margin and cash conserved."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from scenario_helpers import of_type, one, shipped_instruments
from test_futures import ACCOUNTS, CONFIG, FEE, PER_LOT, TERMS, Clock, next_weekday, order

from exchange import (
    CASH_ASSET,
    ContractExpired,
    ContractListed,
    Deposit,
    EndOfDay,
    Engine,
    ListFutures,
    OpenAccount,
    OrderRejected,
    RejectCode,
    Side,
    Trade,
    VariationMarginPaid,
)
from exchange.clearing import initial_margin

SPREADS = replace(CONFIG, series=(replace(CONFIG.series[0], december_spreads=True),))


SETTLED = {"EUAZ26": 70_50, "EUAZ27": 72_00, "EUAZ28": 73_50}  # 7 December's settlement (m1 and m2's trades)


def spread_engine(cash: int = 1_000_000_00) -> tuple[Engine, Clock]:
    """Three Decembers listed on 7 December 2026, traded and settled that day (SETTLED): their two spreads are
    listed at its end; 8 December is open."""
    engine, clock = Engine(shipped_instruments(), futures=SPREADS), Clock()
    for account in (*ACCOUNTS, "m1", "m2"):
        engine.handle(OpenAccount(ts=clock(), account=account))
        engine.handle(Deposit(ts=clock(), account=account, asset=CASH_ASSET, amount=cash))
    listing = engine.handle(ListFutures(ts=clock(), trading_date=20261207))
    assert [e.instrument for e in of_type(listing, ContractListed)] == ["EUAZ26", "EUAZ27", "EUAZ28"]  # no spread yet
    for symbol, price in SETTLED.items():
        engine.handle(order(clock, "m1", symbol, Side.SELL, 1, price, f"s{symbol}"))
        engine.handle(order(clock, "m2", symbol, Side.BUY, 1, price, f"b{symbol}"))
    closed = engine.handle(EndOfDay(ts=clock(), trading_date=20261207))
    listed = [e.instrument for e in of_type(closed, ContractListed)]
    assert listed == ["EUAZ26TAS", "EUAZ27TAS", "EUAZ28TAS", "EUAZ26Z27", "EUAZ27Z28"]  # (TAS books too)
    engine.handle(ListFutures(ts=clock(), trading_date=20261208))
    return engine, clock


def test_a_spread_fill_is_two_leg_trades_priced_off_the_far_leg():
    engine, clock = spread_engine()
    assert engine.futures_contracts(with_books=True)[-2:] == ["EUAZ26Z27", "EUAZ27Z28"]
    engine.handle(order(clock, "b", "EUAZ26Z27", Side.SELL, 4, -1_50, 1))  # contango: the near month EUR 1.50 under
    trade = one(engine.handle(order(clock, "a", "EUAZ26Z27", Side.BUY, 4, -1_40, 1)), Trade)
    assert (trade.instrument, trade.price, trade.quantity) == ("EUAZ26Z27", -1_50, 4)
    house = engine.futures.house
    assert (house.position("a", "EUAZ26"), house.position("a", "EUAZ27")) == (4, -4)  # bought near, sold far
    assert (house.position("b", "EUAZ26"), house.position("b", "EUAZ27")) == (-4, 4)
    assert house.day_lots["EUAZ26"] == house.day_lots["EUAZ27"] == 0  # (not the books' own trades)
    assert engine.balances("a").reserved_cash == 4 * 1_50 * 1_000  # a calendar spread: the spread charge
    # the legs: the far one at its settlement, 72.00, the near one at 72.00 - 1.50 = 70.50; the close settles
    # EUAZ26 at 70.80 and EUAZ27 at 72.10 (c's quotes)
    for symbol, bid, ask in (("EUAZ26", 70_70, 70_90), ("EUAZ27", 72_00, 72_20)):
        engine.handle(order(clock, "c", symbol, Side.BUY, 1, bid, f"{symbol}b"))
        engine.handle(order(clock, "c", symbol, Side.SELL, 1, ask, f"{symbol}s"))
    events = engine.handle(EndOfDay(ts=clock(), trading_date=20261208))
    margins = {(e.account, e.instrument): e.amount for e in of_type(events, VariationMarginPaid)}
    assert margins[("a", "EUAZ26")] == 4 * 1_000 * 30 and margins[("a", "EUAZ27")] == -4 * 1_000 * 10
    assert sum(margins.values()) == 0


def test_spread_prices_go_either_side_of_zero_within_the_near_months_highest():
    engine, clock = spread_engine()
    highest = engine.instrument("EUAZ26").max_price
    for price, refused in ((-highest, False), (0, False), (highest, False), (highest + 1, True), (-highest - 1, True)):
        events = engine.handle(order(clock, "a", "EUAZ26Z27", Side.BUY, 1, price, f"p{price}"))
        assert bool(of_type(events, OrderRejected)) is refused, price
        if refused:
            assert one(events, OrderRejected).code is RejectCode.PRICE_OUT_OF_RANGE


def test_a_spread_goes_when_its_near_month_expires():
    engine, clock = spread_engine()
    engine.handle(order(clock, "a", "EUAZ26Z27", Side.BUY, 1, -2_00, "w"))  # left working: it expires
    engine.handle(ListFutures(ts=clock(), trading_date=20261221))
    events = engine.handle(EndOfDay(ts=clock(), trading_date=20261221))  # December 2026's last trading day
    expired = {e.instrument: e.orders_expired for e in of_type(events, ContractExpired)}
    assert expired == {"EUAZ26TAS": 0, "EUAZ26Z27": 1, "EUAZ26": 0}
    assert engine.balances("a").reserved_cash == 0
    listed = engine.handle(ListFutures(ts=clock(), trading_date=20261222))
    assert [e.instrument for e in of_type(listed, ContractListed)] == ["EUAZ29"]  # its spread once it settles


action = st.one_of(
    st.tuples(
        st.just("order"),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(("EUAZ26", "EUAZ27", "EUAZ26Z27", "EUAZ27Z28")),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(1, 20),
        st.integers(-30, 30),  # cents from 71.00 outright; from -1.00 on a spread
    ),
    st.tuples(st.just("end_of_day")),
)


@settings(max_examples=60)
@given(st.lists(action, min_size=1, max_size=30), st.integers(1, 120))
def test_spreads_among_outright_trading_keep_every_clearing_invariant(actions, funding_lots):
    engine, clock = spread_engine()
    for account in ACCOUNTS:
        engine.accounts[account].cash = funding_lots * (PER_LOT + FEE)
    everyone = (*ACCOUNTS, "m1", "m2", engine.fee_account_id)
    cash_total = sum(engine.balances(account).cash for account in everyone)
    day, number = 20261208, 0
    for step in actions:
        number += 1
        if step[0] == "end_of_day":
            events = engine.handle(EndOfDay(ts=clock(), trading_date=day))
            assert sum(e.amount for e in of_type(events, VariationMarginPaid)) == 0
            day = next_weekday(day)
            engine.handle(ListFutures(ts=clock(), trading_date=day))
            continue
        _, account, symbol, side, lots, cents = step
        price = 71_00 + cents if symbol in ("EUAZ26", "EUAZ27") else -1_00 + cents
        excess = engine.balances(account).cash - engine.balances(account).reserved_cash
        engine.handle(order(clock, account, symbol, side, lots, price, number))
        for holder in ACCOUNTS:
            balances = engine.balances(holder)
            assert balances.cash - balances.reserved_cash >= min(excess if holder == account else 0, 0)
        desk = engine.futures
        for contract in desk.contracts:
            assert sum(desk.house.position(a, contract) for a in (*ACCOUNTS, "m1", "m2")) == 0
        for holder in ACCOUNTS:
            assert desk.margins_held.get((holder, "EUA"), 0) == initial_margin(
                desk.house.positions_of(holder), 1_000, TERMS
            )
        assert sum(engine.balances(a).cash for a in everyone) == cash_total
