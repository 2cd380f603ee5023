"""Futures contracts on the market-data feed: a contract's channels open when it is listed, in its underlying's
phase; its settlement price goes out with the day's statistics; at expiry its last status says closed and its
channels close."""

from __future__ import annotations

from scenario_helpers import shipped_instruments

from exchange import (
    CASH_ASSET,
    Deposit,
    EndOfDay,
    Engine,
    ListFutures,
    NewOrder,
    OpenAccount,
    SetTradingPhase,
    Side,
    TradingPhase,
)
from exchange.clearing import ContractSeries, FuturesConfig, MarginTerms
from gateway.marketdata.feed import MarketDataFeed

CONFIG = FuturesConfig(
    (ContractSeries("EUA", decembers=2, quarterlies=0, monthlies=0),),
    {"EUA": MarginTerms(scanning_range=8_00, spread_charge=1_50)},
)


def run(engine: Engine, feed: MarketDataFeed, *commands) -> list:
    return feed.messages(engine.handle_all(list(commands)))


def test_a_contracts_channels_open_at_listing_and_close_at_expiry():
    engine = Engine(shipped_instruments(), futures=CONFIG)
    feed = MarketDataFeed(engine, 5)
    for account in ("a", "b"):
        run(
            engine,
            feed,
            OpenAccount(ts=1, account=account),
            Deposit(ts=1, account=account, asset=CASH_ASSET, amount=10**9),
        )
    run(engine, feed, SetTradingPhase(ts=2, instrument="EUA", phase=TradingPhase.CLOSED))
    listed = run(engine, feed, ListFutures(ts=3, trading_date=20261207))
    statuses = {symbol: message for symbol, channel, message in listed if channel == "status"}
    assert set(statuses) == {"EUAZ26", "EUAZ27"}
    assert statuses["EUAZ26"].phase == "closed" and statuses["EUAZ26"].md_seq == 1  # as its underlying is
    run(engine, feed, SetTradingPhase(ts=4, instrument="EUAZ26", phase=TradingPhase.CONTINUOUS))
    traded = run(
        engine,
        feed,
        NewOrder(ts=5, account="a", client_order_id=1, instrument="EUAZ26", side=Side.SELL, quantity=2, price=70_10),
        NewOrder(ts=5, account="b", client_order_id=1, instrument="EUAZ26", side=Side.BUY, quantity=1, price=70_10),
    )
    assert [channel for symbol, channel, _ in traded if symbol == "EUAZ26"].count("trades") == 1
    closing = run(engine, feed, EndOfDay(ts=6, trading_date=20261228))  # EUAZ26's last trading day (no holidays here)
    last = [(channel, message) for symbol, channel, message in closing if symbol == "EUAZ26"]
    assert last[-1][0] == "status" and last[-1][1].phase == "closed"
    assert "EUAZ26" not in feed.instruments and "EUAZ27" in feed.instruments
    later = run(engine, feed, EndOfDay(ts=7, trading_date=20261229))
    assert all(symbol != "EUAZ26" for symbol, _, _ in later)  # nothing more for it
