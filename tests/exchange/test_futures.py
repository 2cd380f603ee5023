"""Futures through the engine: listing by date, margin held by pre-trade risk, fills cleared into positions,
the end of day's settlement and variation margin, margin calls, expiry with delivery; to the cent, and by
hypothesis: positions net to zero, each day's margin conserved, no fill takes an account past what it holds."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from scenario_helpers import of_type, one, shipped_instruments

from exchange import (
    CASH_ASSET,
    CancelOrder,
    ContractExpired,
    ContractListed,
    Deposit,
    EndOfDay,
    Engine,
    FuturesDelivered,
    ListFutures,
    MarginCalled,
    MarginCallMet,
    NewOrder,
    OpenAccount,
    OrderRejected,
    RejectCode,
    ReplaceOrder,
    RequestRejected,
    SettlementPriceFixed,
    Side,
    Trade,
    VariationMarginPaid,
    Withdraw,
)
from exchange.clearing import ContractSeries, FuturesConfig, MarginTerms, initial_margin

HOLIDAYS = frozenset({20261225, 20261228, 20270101})
TERMS = MarginTerms(scanning_range=8_00, spread_charge=1_50, maintenance_bps=8_000)
PER_LOT = (8_00 + 1_50) * 1_000  # what a working lot holds: EUR 9,500.00
FEE = 3_50  # the larger of the shipped EUA fees, per lot, held with each working lot
CONFIG = FuturesConfig(
    series=(ContractSeries("EUA", decembers=3, quarterlies=0, monthlies=0),),
    margins={"EUA": TERMS},
    holidays=HOLIDAYS,
    default_premium_bps=1_000,
)
ACCOUNTS = ("a", "b", "c")


class Clock:
    def __init__(self) -> None:
        self.ts = 0

    def __call__(self) -> int:
        self.ts += 1
        return self.ts


def futures_engine(cash: int = 1_000_000_00, units: int = 100_000) -> tuple[Engine, Clock]:
    engine, clock = Engine(shipped_instruments(), futures=CONFIG), Clock()
    for account in ACCOUNTS:
        engine.handle(OpenAccount(ts=clock(), account=account))
        engine.handle(Deposit(ts=clock(), account=account, asset=CASH_ASSET, amount=cash))
        if units:
            engine.handle(Deposit(ts=clock(), account=account, asset="EUA", amount=units))
    assert of_type(engine.handle(ListFutures(ts=clock(), trading_date=20261207)), ContractListed)
    return engine, clock


def order(clock, account, symbol, side, lots, price, clid):
    return NewOrder(
        ts=clock(), account=account, client_order_id=clid, instrument=symbol, side=side, quantity=lots, price=price
    )


def test_the_contracts_of_the_day_are_listed_with_their_books_and_dates():
    engine, clock = futures_engine()
    assert [s for s in ("EUAZ26", "EUAZ27", "EUAZ28") if engine.has_instrument(s)] == ["EUAZ26", "EUAZ27", "EUAZ28"]
    again = engine.handle(ListFutures(ts=clock(), trading_date=20261208))
    assert of_type(again, ContractListed) == []  # already listed: nothing new
    spot_only = Engine(shipped_instruments())
    refused = spot_only.handle(ListFutures(ts=1, trading_date=20261207))
    assert refused[0].code is RejectCode.NO_FUTURES


def test_a_working_futures_order_holds_margin_on_either_side_and_gives_it_back():
    engine, clock = futures_engine()
    engine.handle(order(clock, "a", "EUAZ27", Side.SELL, 10, 72_00, 1))  # a sell holds cash, not units
    assert engine.balances("a").reserved_cash == 10 * (PER_LOT + FEE)
    assert engine.balances("a").reserved_units["EUA"] == 0
    engine.handle(CancelOrder(ts=clock(), account="a", client_order_id=1))
    assert engine.balances("a").reserved_cash == 0


def test_an_order_beyond_the_cash_for_its_margin_is_refused():
    engine, clock = futures_engine(cash=10 * (PER_LOT + FEE))
    events = engine.handle(order(clock, "a", "EUAZ26", Side.BUY, 11, 70_00, 1))
    assert one(events, OrderRejected).code is RejectCode.INSUFFICIENT_CASH
    assert of_type(engine.handle(order(clock, "a", "EUAZ26", Side.BUY, 10, 70_00, 2)), OrderRejected) == []


def test_a_fill_holds_the_position_margin_and_pays_fees():
    engine, clock = futures_engine()
    engine.handle(order(clock, "a", "EUAZ26", Side.SELL, 4, 70_00, 1))
    events = engine.handle(order(clock, "b", "EUAZ26", Side.BUY, 4, 70_00, 1))
    assert one(events, Trade).quantity == 4
    # each holds 4 net lots at the scanning range (EUR 32,000) and nothing else; fees paid from cash
    assert engine.balances("a").reserved_cash == 4 * 8_00 * 1_000
    assert engine.balances("b").reserved_cash == 4 * 8_00 * 1_000
    assert engine.balances("a").cash == 1_000_000_00 - 4 * 2_00  # the maker fee
    assert engine.balances("b").cash == 1_000_000_00 - 4 * 3_50  # the taker fee
    assert engine.balances("a").units["EUA"] == 100_000  # nothing delivered before expiry


def test_a_calendar_spread_position_holds_the_spread_charge():
    engine, clock = futures_engine()
    engine.handle(order(clock, "a", "EUAZ26", Side.SELL, 3, 70_00, 1))
    engine.handle(order(clock, "b", "EUAZ26", Side.BUY, 3, 70_00, 1))
    engine.handle(order(clock, "c", "EUAZ27", Side.BUY, 3, 72_00, 1))
    engine.handle(order(clock, "b", "EUAZ27", Side.SELL, 3, 72_00, 2))
    assert engine.balances("b").reserved_cash == 3 * 1_50 * 1_000  # long Dec-26, short Dec-27: three spreads


def test_the_end_of_day_settles_and_pays_variation_margin_to_the_cent():
    engine, clock = futures_engine()
    engine.handle(order(clock, "a", "EUAZ26", Side.SELL, 2, 70_00, 1))
    engine.handle(order(clock, "b", "EUAZ26", Side.BUY, 2, 70_00, 1))
    engine.handle(order(clock, "a", "EUAZ26", Side.SELL, 1, 70_60, 2))  # quotes standing at the close:
    engine.handle(order(clock, "c", "EUAZ26", Side.BUY, 1, 70_40, 1))  # mid 70.50
    cash_before = {account: engine.balances(account).cash for account in ACCOUNTS}
    events = engine.handle(EndOfDay(ts=clock(), trading_date=20261207))
    fixed = {e.instrument: (e.price, e.method) for e in of_type(events, SettlementPriceFixed)}
    assert fixed["EUAZ26"] == (70_50, "quotes")
    margins = {(e.account, e.instrument): e.amount for e in of_type(events, VariationMarginPaid)}
    assert margins == {("a", "EUAZ26"): -2 * 1_000 * 50, ("b", "EUAZ26"): 2 * 1_000 * 50}
    for account in ACCOUNTS:
        assert engine.balances(account).cash == cash_before[account] + margins.get((account, "EUAZ26"), 0)
    # the other months never traded and have no quotes: no price, no margin
    assert fixed["EUAZ27"] == (None, "none")


def test_an_account_below_maintenance_is_called_and_released_by_a_deposit():
    engine, clock = futures_engine(cash=10 * (PER_LOT + FEE))
    engine.handle(order(clock, "a", "EUAZ26", Side.SELL, 10, 70_00, 1))
    engine.handle(order(clock, "b", "EUAZ26", Side.BUY, 10, 70_00, 1))
    engine.handle(order(clock, "c", "EUAZ26", Side.SELL, 1, 73_50, 1))  # the mid goes to EUR 73.40
    engine.handle(order(clock, "c", "EUAZ26", Side.BUY, 1, 73_30, 2))
    events = engine.handle(EndOfDay(ts=clock(), trading_date=20261207))
    called = one(events, MarginCalled)
    # short 10 lots: EUR 34,000 of variation margin paid leaves EUR 61,015 of cash, under the maintenance
    # margin (80% of the EUR 80,000 initial margin held)
    assert (called.account, called.cash, called.maintenance) == ("a", 6_101_500, 6_400_000)
    refused = engine.handle(order(clock, "a", "EUAZ27", Side.BUY, 1, 72_00, 3))
    assert one(refused, OrderRejected).code is RejectCode.MARGIN_CALL
    met = engine.handle(Deposit(ts=clock(), account="a", asset=CASH_ASSET, amount=1_000_000_00))
    assert one(met, MarginCallMet).account == "a"
    assert of_type(engine.handle(order(clock, "a", "EUAZ27", Side.BUY, 1, 72_00, 4)), OrderRejected) == []


def test_expiry_delivers_units_against_cash_and_a_short_without_units_pays_compensation():
    engine, clock = futures_engine(units=0)
    engine.handle(Deposit(ts=clock(), account="a", asset="EUA", amount=1_500))
    engine.handle(order(clock, "a", "EUAZ26", Side.SELL, 2, 71_00, 1))
    engine.handle(order(clock, "b", "EUAZ26", Side.BUY, 2, 71_00, 1))
    engine.handle(order(clock, "c", "EUAZ26", Side.BUY, 1, 70_00, 1))  # stays open: it expires
    before = {account: engine.balances(account) for account in ACCOUNTS}
    engine.handle(ListFutures(ts=clock(), trading_date=20261221))
    events = engine.handle(EndOfDay(ts=clock(), trading_date=20261221))  # December 2026's last trading day
    delivered = one(events, FuturesDelivered)
    assert (delivered.long_account, delivered.short_account, delivered.units, delivered.failed_units) == (
        "b",
        "a",
        1_500,
        500,
    )
    # the final price: no trade in the window, the bid only: the last trade, EUR 71.00 (never settled before)
    assert delivered.cash == 1_500 * 71_00 and delivered.compensation == 500 * 71_00 * 11 // 10
    assert one(events, ContractExpired).orders_expired == 1 and not engine.has_instrument("EUAZ26")
    after = {account: engine.balances(account) for account in ACCOUNTS}
    assert after["b"].units["EUA"] == 1_500 and after["a"].units["EUA"] == 0
    assert after["b"].cash - before["b"].cash == -1_500 * 71_00 + 500 * 71_00 * 11 // 10
    assert after["a"].cash - before["a"].cash == 1_500 * 71_00 - 500 * 71_00 * 11 // 10
    assert all(after[account].reserved_cash == 0 for account in ACCOUNTS)  # positions gone, margin released
    assert sum(b.cash for b in after.values()) == sum(b.cash for b in before.values())


# -- properties -----------------------------------------------------------------------------------------

CONTRACTS = ("EUAZ26", "EUAZ27")
action = st.one_of(
    st.tuples(
        st.just("order"),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(CONTRACTS),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(1, 30),
        st.integers(68_00, 74_00),
    ),
    st.tuples(st.just("end_of_day")),
)


def next_weekday(day: int) -> int:
    moved = date(day // 10_000, day // 100 % 100, day % 100) + timedelta(days=1)
    while moved.weekday() >= 5:
        moved += timedelta(days=1)
    return moved.year * 10_000 + moved.month * 100 + moved.day


@settings(max_examples=60)
@given(st.lists(action, min_size=1, max_size=40), st.integers(1, 120))
def test_clearing_invariants_hold_whatever_the_order_flow(actions, funding_lots):
    engine, clock = futures_engine(cash=funding_lots * (PER_LOT + FEE))
    everyone = (*ACCOUNTS, engine.fee_account_id)
    day = 20261207
    cash_total = sum(engine.balances(account).cash for account in everyone)
    units_total = sum(engine.balances(account).units["EUA"] for account in everyone)
    clid = 0
    for step in actions:
        excess = {a: engine.balances(a).cash - engine.balances(a).reserved_cash for a in ACCOUNTS}
        if step[0] == "end_of_day":
            events = engine.handle(EndOfDay(ts=clock(), trading_date=day))
            assert sum(e.amount for e in of_type(events, VariationMarginPaid)) == 0  # margin conserved
            day = next_weekday(day)
            engine.handle(ListFutures(ts=clock(), trading_date=day))
        else:
            _, account, symbol, side, lots, price = step
            clid += 1
            engine.handle(order(clock, account, symbol, side, lots, price, clid))
            for holder in ACCOUNTS:  # no order or fill takes an account past what it holds
                now = engine.balances(holder).cash - engine.balances(holder).reserved_cash
                assert now >= min(excess[holder], 0)
        desk = engine.futures
        for symbol in desk.contracts:
            assert sum(desk.house.position(account, symbol) for account in ACCOUNTS) == 0  # positions net to zero
        for account in ACCOUNTS:  # the margin held, kept as positions move, is the rule's on the positions
            assert desk.margins_held.get((account, "EUA"), 0) == initial_margin(
                desk.house.positions_of(account), 1_000, TERMS
            )
        assert sum(engine.balances(a).cash for a in everyone) == cash_total  # cash conserved, delivery included
        assert sum(engine.balances(a).units["EUA"] for a in everyone) == units_total


def test_a_futures_engine_pickles_for_snapshots_and_hashes_alike():
    import pickle

    engine, clock = futures_engine()
    engine.handle(order(clock, "a", "EUAZ26", Side.SELL, 4, 70_00, 1))
    engine.handle(order(clock, "b", "EUAZ26", Side.BUY, 3, 70_00, 1))
    engine.handle(EndOfDay(ts=clock(), trading_date=20261207))
    copy = pickle.loads(pickle.dumps(engine))
    assert copy.state_hash() == engine.state_hash()
    follow = order(clock, "c", "EUAZ26", Side.BUY, 1, 70_00, 9)
    assert copy.handle(follow) == engine.handle(follow)
    assert copy.state_hash() == engine.state_hash()
    assert any(line.startswith("futures EUAZ26") for line in engine.state_lines())


def test_an_account_that_lost_and_went_flat_in_the_day_is_called_too():
    engine, clock = futures_engine(cash=2 * (PER_LOT + FEE))
    engine.handle(order(clock, "b", "EUAZ26", Side.SELL, 1, 73_00, 1))
    engine.handle(order(clock, "a", "EUAZ26", Side.BUY, 1, 73_00, 1))  # a buys at 73.00 ...
    engine.handle(order(clock, "c", "EUAZ26", Side.BUY, 1, 68_00, 1))
    engine.handle(order(clock, "a", "EUAZ26", Side.SELL, 1, 68_00, 2))  # ... and sells at 68.00: flat, EUR 5,000 lost
    assert engine.futures.house.positions_of("a") == {} and engine.balances("a").reserved_cash == 0
    cash = 2 * (PER_LOT + FEE) - 3_50 - 3_50  # two taker fees
    events = engine.handle(EndOfDay(ts=clock(), trading_date=20261207))
    paid = {e.account: e.amount for e in of_type(events, VariationMarginPaid)}
    assert paid["a"] == -5 * 1_000 * 1_00 and engine.balances("a").cash == cash - 500_000
    assert not of_type(events, MarginCalled)  # still in credit: nothing to call
    engine2, clock2 = futures_engine()
    engine2.handle(order(clock2, "b", "EUAZ26", Side.SELL, 1, 73_00, 1))
    engine2.handle(order(clock2, "a", "EUAZ26", Side.BUY, 1, 73_00, 1))
    engine2.handle(order(clock2, "c", "EUAZ26", Side.BUY, 1, 68_00, 1))
    engine2.handle(order(clock2, "a", "EUAZ26", Side.SELL, 1, 68_00, 2))
    left = 4_000_00  # EUR 4,000 cannot pay the EUR 5,000 loss
    engine2.handle(Withdraw(ts=clock2(), account="a", asset=CASH_ASSET, amount=engine2.balances("a").cash - left))
    called = one(engine2.handle(EndOfDay(ts=clock2(), trading_date=20261207)), MarginCalled)
    assert called.account == "a" and called.cash < 0


def test_a_contract_whose_last_trading_day_was_not_closed_expires_at_the_next_end_of_day():
    engine, clock = futures_engine()
    engine.handle(order(clock, "a", "EUAZ26", Side.SELL, 1, 70_00, 1))
    engine.handle(order(clock, "b", "EUAZ26", Side.BUY, 1, 70_00, 1))
    events = engine.handle(EndOfDay(ts=clock(), trading_date=20261222))  # the day after EUAZ26's last
    assert one(events, ContractExpired).instrument == "EUAZ26" and one(events, FuturesDelivered).units == 1_000


def test_a_new_month_has_no_volatility_band_until_its_first_settlement_then_centres_on_it():
    engine, clock = futures_engine()
    terms = engine.instrument("EUAZ28")
    assert (terms.volatility_band_bps, terms.market_collar, terms.price_band_bps) == (0, None, 0)
    engine.handle(order(clock, "a", "EUAZ28", Side.SELL, 1, 76_00, 1))  # far above spot's 70.00: trades
    assert one(engine.handle(order(clock, "b", "EUAZ28", Side.BUY, 1, 76_00, 1)), Trade).price == 76_00
    engine.handle(EndOfDay(ts=clock(), trading_date=20261207))
    settled = engine.instrument("EUAZ28")
    spot = engine.instrument("EUA")
    assert settled.reference_price == 76_00 and settled.volatility_band_bps == spot.volatility_band_bps


def test_a_called_account_may_still_reduce_its_orders():
    engine, clock = futures_engine(cash=10 * (PER_LOT + FEE))
    engine.handle(order(clock, "a", "EUAZ26", Side.SELL, 10, 70_00, 1))
    engine.handle(order(clock, "b", "EUAZ26", Side.BUY, 10, 70_00, 1))
    engine.handle(order(clock, "c", "EUAZ26", Side.SELL, 1, 73_50, 1))
    engine.handle(order(clock, "c", "EUAZ26", Side.BUY, 1, 73_30, 2))
    engine.handle(order(clock, "a", "EUAZ27", Side.BUY, 1, 72_00, 2))  # working before the call
    one(engine.handle(EndOfDay(ts=clock(), trading_date=20261207)), MarginCalled)
    reduced = engine.handle(ReplaceOrder(ts=clock(), account="a", client_order_id=2, quantity=1, price=71_00))
    assert not of_type(reduced, RequestRejected)  # same lots, a lower price: holds no more
    grown = engine.handle(ReplaceOrder(ts=clock(), account="a", client_order_id=2, quantity=3, price=71_00))
    assert one(grown, RequestRejected).code is RejectCode.MARGIN_CALL


def test_a_long_that_cannot_pay_for_delivery_gets_only_what_it_pays_for_and_is_called():
    engine, clock = futures_engine()
    engine.handle(order(clock, "a", "EUAZ26", Side.SELL, 2, 71_00, 1))
    engine.handle(order(clock, "b", "EUAZ26", Side.BUY, 2, 71_00, 1))
    spare = engine.balances("b").cash - engine.balances("b").reserved_cash
    # b keeps its margin and EUR 100,000 of cash it may use: enough for 1,408 t at 71.00 of the 2,000 due
    engine.handle(Withdraw(ts=clock(), account="b", asset=CASH_ASSET, amount=spare - 100_000_00))
    before = {account: engine.balances(account) for account in ACCOUNTS}
    events = engine.handle(EndOfDay(ts=clock(), trading_date=20261221))
    delivered = one(events, FuturesDelivered)
    held = 2 * 1_000 * 8_00  # b's margin, free at delivery
    payable_units = (100_000_00 + held) // 71_00
    assert (delivered.units, delivered.unpaid_units) == (payable_units, 2_000 - payable_units)
    assert one(events, MarginCalled).account == "b"
    after = {account: engine.balances(account) for account in ACCOUNTS}
    assert after["b"].cash >= 0 and after["b"].units["EUA"] - before["b"].units["EUA"] == payable_units
    assert after["a"].units["EUA"] == before["a"].units["EUA"] - payable_units  # the rest stays with the short
    assert sum(b.cash for b in after.values()) == sum(b.cash for b in before.values())
