"""Settlement prices fixed at the end of day (exchange.settlement_prices): the window's volume-weighted
average, rounded half to even to the cent and then down onto the tick, else the last trade, else the previous
settlement; against a reference computed with fractions."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st
from scenario_helpers import shipped_instruments

from exchange import (
    Deposit,
    EndOfDay,
    Engine,
    NewOrder,
    OpenAccount,
    OpenSettlementWindow,
    SettlementPriceFixed,
    Side,
)
from exchange.settlement_prices import window_price


def reference_price(value: int, lots: int, tick: int) -> int:
    cents = round(Fraction(value, lots))  # Python rounds half to even
    return cents - cents % tick


@given(
    trades=st.lists(st.tuples(st.integers(1, 20_000), st.integers(1, 500)), min_size=1, max_size=30),
    tick=st.sampled_from((1, 5, 10)),
)
def test_window_price_is_the_rounded_vwap_on_the_tick(trades, tick):
    value = sum(price * lots for price, lots in trades)
    lots = sum(lots for _, lots in trades)
    assert window_price(value, lots, tick) == reference_price(value, lots, tick)


def test_half_a_cent_rounds_to_even():
    assert window_price(7001 * 1 + 7002 * 1, 2, 1) == 7002  # 7001.5 -> 7002 (even)
    assert window_price(7002 * 1 + 7003 * 1, 2, 1) == 7002  # 7002.5 -> 7002 (even)
    assert window_price(4003 + 4004, 2, 5) == 4000  # 4003.5 -> 4004 -> on the 5-cent tick, down


def _engine() -> Engine:
    engine = Engine(shipped_instruments())
    for account in ("a", "b"):
        engine.handle(OpenAccount(ts=1, account=account))
        engine.handle(Deposit(ts=1, account=account, asset="EUR", amount=10**12))
        engine.handle(Deposit(ts=1, account=account, asset="EUA", amount=10**9))
    return engine


def _trade(engine: Engine, ts: int, price: int, lots: int) -> None:
    for account, side in (("a", Side.SELL), ("b", Side.BUY)):
        engine.handle(
            NewOrder(
                ts=ts,
                account=account,
                client_order_id=f"{account}-{ts}",
                instrument="EUA",
                side=side,
                quantity=lots,
                price=price,
            )
        )


def _fixed(events: list, symbol: str) -> SettlementPriceFixed:
    (event,) = [event for event in events if type(event) is SettlementPriceFixed and event.instrument == symbol]
    return event


def test_each_way_to_a_price_in_turn_and_the_price_is_kept():
    engine = _engine()
    day = _fixed(engine.handle(EndOfDay(ts=10, trading_date=20260105)), "EUA")
    assert (day.price, day.method) == (None, "none")  # nothing ever traded
    _trade(engine, 20, 7000, 4)  # before the window
    engine.handle(OpenSettlementWindow(ts=30, instrument="EUA"))
    _trade(engine, 40, 7010, 1)
    _trade(engine, 50, 7020, 2)
    day = _fixed(engine.handle(EndOfDay(ts=60, trading_date=20260106)), "EUA")
    # (7010 + 2 x 7020) / 3 = 7016.67 -> 7017; the trade before the window does not count
    assert (day.price, day.method, day.window_lots) == (7017, "window", 3)
    assert engine.settlement_price("EUA") == 7017
    day = _fixed(engine.handle(EndOfDay(ts=70, trading_date=20260107)), "EUA")  # no window: the last trade
    assert (day.price, day.method, day.window_lots) == (7020, "last_trade", 0)
    cer = _fixed(engine.handle(EndOfDay(ts=80, trading_date=20260108)), "CER")
    assert (cer.price, cer.method) == (None, "none")


def test_the_settlement_enters_the_state_hash_only_once_there_is_one():
    engine, twin = _engine(), _engine()
    assert engine.state_hash() == twin.state_hash()
    engine.handle(OpenSettlementWindow(ts=5, instrument="EUA"))
    assert engine.state_hash() != twin.state_hash()  # an open window is state: a replay must reopen it
