"""The futures calendar and the clearing house (exchange.clearing): the contract dates by the venue's rule,
variation margin to the cent and conserved, initial margin with calendar spreads, delivery and default;
against a deliberately simple reference clearing that marks every trade to every day's price."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.clearing import (
    ClearingHouse,
    ContractSeries,
    FuturesConfig,
    MarginTerms,
    VariationMargin,
    daily_settlement_price,
    delivery_day,
    initial_margin,
    last_trading_day,
    listed_contracts,
    maintenance_margin,
    most_traded,
)
from exchange.instruments import ConfigError

UK_2023_2027 = frozenset(
    {20231225, 20231226, 20240101, 20241225, 20241226, 20250101, 20251225, 20251226, 20260101}
    | {20261225, 20261228, 20270101, 20270329, 20271227, 20271228}
)
BUSINESS = FuturesConfig((), {}, holidays=UK_2023_2027).business_day  # weekdays less the UK's bank holidays
EUR = 100  # cents


# -- the calendar ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "month", "expected", "why"),
    [
        (2026, 11, 20261130, "the last Monday, nothing in the way"),
        (2023, 12, 20231218, "the last Monday (25 December) is a holiday: the penultimate"),
        (2025, 12, 20251222, "1 January falls in the four days after the last Monday (29 December)"),
        (2026, 12, 20261221, "the last Monday (28 December) is the Christmas holiday moved from the Saturday"),
        (2027, 3, 20270322, "the last Monday (29 March) is Easter Monday"),
        (2027, 6, 20270628, "30 June is a Wednesday: the four days after the Monday trade"),
    ],
)
def test_the_last_trading_day_follows_the_ice_endex_rule(year, month, expected, why):
    assert last_trading_day(year, month, BUSINESS) == expected, why


def test_delivery_completes_on_the_third_business_day_after_the_last_trading_day():
    assert delivery_day(20261130, BUSINESS) == 20261203  # Tuesday to Thursday
    assert delivery_day(20261221, BUSINESS) == 20261224  # before the holidays
    assert delivery_day(20251222, BUSINESS) == 20251229  # 25 and 26 December and the weekend skipped
    assert delivery_day(20270322, BUSINESS) == 20270325


def test_the_listing_rolls_with_the_calendar():
    series = ContractSeries("EUA", decembers=3, quarterlies=4, monthlies=2)
    on = {day: [c.symbol for c in listed_contracts(series, day, BUSINESS)] for day in (20261207, 20261221, 20261222)}
    assert on[20261207] == ["EUAZ26", "EUAF27", "EUAH27", "EUAM27", "EUAU27", "EUAZ27", "EUAZ28"]
    assert on[20261221] == on[20261207]  # December's last trading day: it still trades
    # The day after, December 2026 is gone: February 2027 comes in as the second monthly, December 2029 as the
    # third December
    assert on[20261222] == ["EUAF27", "EUAG27", "EUAH27", "EUAM27", "EUAU27", "EUAZ27", "EUAZ28", "EUAZ29"]
    contracts = listed_contracts(series, 20261207, BUSINESS)
    assert [(c.last_trading_day, c.delivery_day) for c in contracts[:1]] == [(20261221, 20261224)]
    assert all(c.underlying == "EUA" for c in contracts)


def test_nothing_is_listed_beyond_the_last_month():
    series = ContractSeries("EUA", decembers=7, quarterlies=0, monthlies=0, last_month=202812)
    assert [c.symbol for c in listed_contracts(series, 20261207, BUSINESS)] == ["EUAZ26", "EUAZ27", "EUAZ28"]
    assert listed_contracts(series, 20290102, BUSINESS) == []


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"decembers": 0, "quarterlies": 0, "monthlies": 0}, "futures.EUA"),
        ({"monthlies": -1}, "futures.EUA.monthlies"),
        ({"last_month": 203013}, "futures.EUA.last_month"),
        ({"lot_units": 0}, "futures.EUA"),
    ],
)
def test_a_bad_series_is_refused_naming_the_field(fields, named):
    with pytest.raises(ConfigError) as refused:
        ContractSeries("EUA", **fields)
    assert refused.value.field == named


# -- variation margin -----------------------------------------------------------------------------------


def test_variation_margin_to_the_cent():
    house = ClearingHouse({"EUAZ26": 1_000})
    house.record_trade("EUAZ26", "buyer", "seller", 2, 70_00)
    assert house.settle_day({"EUAZ26": 70_50}) == [
        VariationMargin("buyer", "EUAZ26", 2 * 1_000 * 50),  # EUR 1,000.00 received
        VariationMargin("seller", "EUAZ26", -2 * 1_000 * 50),
    ]
    house.record_trade("EUAZ26", "seller", "third", 1, 70_80)  # the seller buys one back at 70.80
    margins = {(m.account, m.amount) for m in house.settle_day({"EUAZ26": 69_90})}
    # buyer: 2 lots held from 70.50 to 69.90; seller: -2 from 70.50 to 69.90, plus one bought at 70.80;
    # third: sold one at 70.80, marked at 69.90
    assert margins == {
        ("buyer", 2 * 1_000 * (69_90 - 70_50)),
        ("seller", -2 * 1_000 * (69_90 - 70_50) + 1_000 * (69_90 - 70_80)),
        ("third", -1_000 * (69_90 - 70_80)),
    }
    assert house.positions_of("seller") == {"EUAZ26": -1}
    assert house.settlement_prices == {"EUAZ26": 69_90}


def test_a_position_closed_in_the_day_pays_only_its_trading_difference():
    house = ClearingHouse({"EUAZ26": 1_000})
    house.record_trade("EUAZ26", "a", "b", 5, 80_00)
    house.record_trade("EUAZ26", "b", "a", 5, 80_25)
    assert {(m.account, m.amount) for m in house.settle_day({"EUAZ26": 81_00})} == {
        ("a", 5 * 1_000 * 25),  # bought at 80.00, sold at 80.25
        ("b", -5 * 1_000 * 25),
    }
    assert house.positions_of("a") == {} and house.positions["EUAZ26"] == {}


def reference_margins(trades_by_day, prices_by_day, lot_units):
    """The simple reference: each day, every account's margin is its whole position history marked afresh:
    sum over its trades of signed lots x (today's price - trade price), minus the same for yesterday."""
    owed_before: dict[tuple[str, str], int] = {}
    history: list = []
    days = []
    for trades, prices in zip(trades_by_day, prices_by_day, strict=True):
        history += trades
        owed: dict[tuple[str, str], int] = {}
        for symbol, buyer, seller, lots, price in history:
            for account, signed in ((buyer, lots), (seller, -lots)):
                key = (account, symbol)
                owed[key] = owed.get(key, 0) + signed * (prices[symbol] - price) * lot_units
        day = {key: owed.get(key, 0) - owed_before.get(key, 0) for key in owed.keys() | owed_before.keys()}
        days.append({key: amount for key, amount in day.items() if amount})
        owed_before = owed
    return days


trade = st.tuples(
    st.sampled_from(["EUAZ26", "EUAZ27"]),
    st.sampled_from(["a", "b", "c", "d"]),
    st.sampled_from(["a", "b", "c", "d"]),
    st.integers(1, 50),
    st.integers(50_00, 90_00),
).filter(lambda t: t[1] != t[2])
day_prices = st.fixed_dictionaries({"EUAZ26": st.integers(40_00, 100_00), "EUAZ27": st.integers(40_00, 100_00)})


@given(st.lists(st.tuples(st.lists(trade, max_size=12), day_prices), min_size=1, max_size=6))
def test_variation_margin_is_conserved_and_equals_the_reference(days):
    house = ClearingHouse({"EUAZ26": 1_000, "EUAZ27": 1_000})
    trades_by_day, prices_by_day = [trades for trades, _ in days], [prices for _, prices in days]
    expected = reference_margins(trades_by_day, prices_by_day, 1_000)
    for (trades, prices), wanted in zip(days, expected, strict=True):
        for symbol, buyer, seller, lots, price in trades:
            house.record_trade(symbol, buyer, seller, lots, price)
        margins = house.settle_day(prices)
        assert sum(m.amount for m in margins) == 0
        assert {(m.account, m.contract): m.amount for m in margins} == wanted
        for symbol in prices:
            assert sum(house.position(account, symbol) for account in "abcd") == 0


# -- initial margin -------------------------------------------------------------------------------------

TERMS = MarginTerms(scanning_range=8_00, spread_charge=1_50, maintenance_bps=8_000)


def test_net_lots_are_charged_the_scanning_range():
    assert initial_margin({"EUAZ26": 3}, 1_000, TERMS) == 3 * 1_000 * 8_00  # EUR 24,000
    assert initial_margin({"EUAZ26": -3, "EUAZ28": -1}, 1_000, TERMS) == 4 * 1_000 * 8_00
    assert initial_margin({}, 1_000, TERMS) == 0


def test_a_calendar_spread_is_charged_the_spread_charge():
    # long 5 Dec-26, short 3 Dec-27: net 2 lots long at EUR 8.00, 3 spreads at EUR 1.50
    assert initial_margin({"EUAZ26": 5, "EUAZ27": -3}, 1_000, TERMS) == 1_000 * (2 * 8_00 + 3 * 1_50)
    assert initial_margin({"EUAZ26": -4, "EUAZ27": 1, "EUAZ28": 5}, 1_000, TERMS) == 1_000 * (2 * 8_00 + 4 * 1_50)
    assert maintenance_margin(100_001, TERMS) == 80_001  # 80%, rounded up


positions = st.dictionaries(st.sampled_from(["EUAZ26", "EUAZ27", "EUAZ28"]), st.integers(-100, 100))


@given(positions)
def test_a_spread_never_costs_more_than_its_legs_outright(held):
    outright = sum(abs(lots) for lots in held.values()) * 1_000 * 8_00
    assert 0 <= initial_margin(held, 1_000, TERMS) <= outright


@given(positions, st.sampled_from(["EUAZ26", "EUAZ27", "EUAZ28"]), st.sampled_from([1, -1]))
def test_one_lot_changes_the_requirement_by_at_most_what_a_working_lot_holds(held, symbol, lot):
    moved = {**held, symbol: held.get(symbol, 0) + lot}
    change = initial_margin(moved, 1_000, TERMS) - initial_margin(held, 1_000, TERMS)
    assert abs(change) <= TERMS.per_lot(1_000)


# -- settlement price -----------------------------------------------------------------------------------


def price(**given_fields):
    fields = dict(
        window_value=0, window_lots=0, best_bid=None, best_ask=None, previous=None, benchmark_move=None,
        last_trade=None, tick=1,
    )  # fmt: skip
    return daily_settlement_price(**{**fields, **given_fields})


def test_the_settlement_price_methods_in_order():
    assert price(window_value=3 * 70_00 + 1 * 70_10, window_lots=4, best_bid=1, best_ask=2) == (70_02, "window")
    assert price(best_bid=70_00, best_ask=70_05, previous=69_00, benchmark_move=10) == (70_02, "quotes")
    assert price(best_bid=70_00, best_ask=70_05, tick=5) == (70_00, "quotes")
    assert price(best_bid=70_00, previous=69_00, benchmark_move=-35) == (68_65, "benchmark")
    assert price(last_trade=71_00) == (71_00, "last_trade")
    assert price(previous=69_00, last_trade=71_00) == (69_00, "previous")
    assert price() == (None, "none")


def test_the_benchmark_is_the_most_traded_contract():
    assert most_traded({"EUAZ26": 10, "EUAZ27": 40, "EUAZ28": 40}, ["EUAZ26", "EUAZ27", "EUAZ28"]) == "EUAZ27"
    assert most_traded({"EUAZ26": 0}, ["EUAZ26"]) is None


# -- delivery -------------------------------------------------------------------------------------------


def settled_house(trades, final_price):
    house = ClearingHouse({"EUAZ26": 1_000})
    for buyer, seller, lots in trades:
        house.record_trade("EUAZ26", buyer, seller, lots, 70_00)
    house.settle_day({"EUAZ26": final_price})
    return house


def test_expiry_delivers_units_against_cash_at_the_final_price():
    house = settled_house([("l1", "s1", 3), ("l2", "s1", 2), ("l2", "s2", 1)], 72_00)
    deliveries = house.deliver("EUAZ26", 72_00, {"s1": 10_000, "s2": 1_000}, default_premium_bps=1_000)
    assert [(d.long, d.short, d.lots, d.units, d.cash, d.failed_units) for d in deliveries] == [
        ("l1", "s1", 3, 3_000, 3_000 * 72_00, 0),
        ("l2", "s1", 2, 2_000, 2_000 * 72_00, 0),
        ("l2", "s2", 1, 1_000, 1_000 * 72_00, 0),
    ]
    assert "EUAZ26" not in house.positions and "EUAZ26" not in house.settlement_prices


def test_a_short_without_the_units_is_in_default_and_compensates_the_long():
    house = settled_house([("long", "short", 2)], 72_00)
    (delivery,) = house.deliver("EUAZ26", 72_00, {"short": 1_500}, default_premium_bps=1_000)
    assert (delivery.units, delivery.cash, delivery.failed_units) == (1_500, 1_500 * 72_00, 500)
    assert delivery.compensation == 500 * 72_00 * 11 // 10  # the final price plus 10%: EUR 39,600.00


def test_an_unsettled_last_day_cannot_deliver():
    house = ClearingHouse({"EUAZ26": 1_000})
    house.record_trade("EUAZ26", "a", "b", 1, 70_00)
    with pytest.raises(ValueError, match="not settled"):
        house.deliver("EUAZ26", 70_00, {"b": 1_000}, default_premium_bps=0)


@given(
    st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from("abcd"), st.integers(1, 20)), max_size=15),
    st.dictionaries(st.sampled_from("abcd"), st.integers(0, 30_000)),
)
def test_delivery_conserves_units_and_cash(trades, holdings):
    house = settled_house([t for t in trades if t[0] != t[1]], 65_00)
    positions = {account: house.position(account, "EUAZ26") for account in "abcd"}
    deliveries = house.deliver("EUAZ26", 65_00, holdings, default_premium_bps=500)
    for account, lots in positions.items():
        received = sum(d.lots for d in deliveries if d.long == account)
        delivered = sum(d.lots for d in deliveries if d.short == account)
        assert received - delivered == lots  # every open lot is delivered or failed, once
        units_out = sum(d.units for d in deliveries if d.short == account)
        if lots < 0:
            assert units_out == min(-lots * 1_000, holdings.get(account, 0))
    for d in deliveries:
        assert d.units + d.failed_units == d.lots * 1_000
        assert d.cash == d.units * 65_00
        assert d.compensation == d.failed_units * 65_00 * 105 // 100
