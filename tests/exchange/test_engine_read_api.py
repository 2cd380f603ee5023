"""The engine's read API (exchange/views.py): what the shell may ask the core, answered with copies.

How: one engine with pre-trade risk trades on the shipped instruments, runs a primary auction and a
compliance year; every question of the read API is then asked and its answer checked against the story
(and against the engine's own counters and accounts where the story does not fix a number, such as fees);
every answer that holds a dict or a tuple is changed by the test afterwards to show the engine is not.
"""

from __future__ import annotations

import pytest
from scenario_helpers import shipped_instruments

from exchange import (
    AccountBalances,
    BidView,
    ClearPrimaryAuction,
    ComplianceConfig,
    Deposit,
    Engine,
    EngineCounts,
    InstallationView,
    NewOrder,
    OpenAccount,
    OpenPrimaryAuction,
    RecordEmissions,
    RegisterInstallation,
    SelfTradePrevention,
    SetTradingPhase,
    Side,
    SubmitBid,
    Surrender,
    TradingPhase,
)
from exchange.compliance import compliance_report

SEED = "00112233445566778899aabbccddeeff"
CONFIG = ComplianceConfig(allowances=("EUA",), credits=("CER",))


def traded_engine() -> Engine:
    """alice sells 3 EUA lots at 70.00 and 70.50, bob buys one at 70.00; "de" opens an auction that b1 bids in;
    "mill" is an installation that surrenders 100 EUA for 2010."""
    engine = Engine(shipped_instruments(), compliance=CONFIG)
    for account in ("alice", "bob", "b1", "de", "mill"):
        engine.handle(OpenAccount(ts=1, account=account))
        engine.handle(Deposit(ts=1, account=account, asset="EUR", amount=10**9))
    engine.handle(Deposit(ts=1, account="alice", asset="EUA", amount=10_000))
    engine.handle(Deposit(ts=1, account="de", asset="EUA", amount=5_000))
    engine.handle(Deposit(ts=1, account="mill", asset="EUA", amount=1_000))
    engine.handle(
        NewOrder(ts=2, account="alice", client_order_id=1, instrument="EUA", side=Side.SELL, quantity=2, price=7_000)
    )
    engine.handle(
        NewOrder(ts=2, account="alice", client_order_id=2, instrument="EUA", side=Side.SELL, quantity=1, price=7_050)
    )
    engine.handle(
        NewOrder(ts=3, account="bob", client_order_id="b", instrument="EUA", side=Side.BUY, quantity=1, price=7_000)
    )
    engine.handle(
        OpenPrimaryAuction(
            ts=4, auction_id="A2", auctioneer="de", instrument="EUA", volume=500, closes_at=100, seed=SEED
        )
    )
    engine.handle(
        OpenPrimaryAuction(
            ts=4, auction_id="A1", auctioneer="de", instrument="EUA", volume=500, closes_at=100, seed=SEED
        )
    )
    engine.handle(SubmitBid(ts=5, account="b1", auction_id="A1", bid_id="x", price=7_050, volume=500))
    engine.handle(SubmitBid(ts=6, account="bob", auction_id="A1", bid_id=7, price=7_100, volume=500))
    engine.handle(RegisterInstallation(ts=7, account="mill", credit_limit_bps=2_200))
    engine.handle(RecordEmissions(ts=7, account="mill", year=2010, tonnes=300))
    engine.handle(Surrender(ts=8, account="mill", year=2010, instrument="EUA", units=100))
    return engine


def test_counts_and_last_seq() -> None:
    engine = traded_engine()
    assert engine.last_seq == engine.counters.seq > 0
    # alice's two asks and bob's bid were accepted; bob's bid traded with one lot of the first ask.
    assert engine.counts() == EngineCounts(
        events=engine.counters.seq, orders=3, open_orders=2, trades=1, accounts=6
    )  # the five opened and the fee account
    assert Engine(shipped_instruments()).counts() == EngineCounts(0, 0, 0, 0, 1)


def test_accounts() -> None:
    engine = traded_engine()
    assert engine.fee_account_id == "carbonx-fees"
    assert engine.account_ids() == ["alice", "b1", "bob", "carbonx-fees", "de", "mill"]
    assert engine.has_account("bob") and engine.has_account("carbonx-fees") and not engine.has_account("carol")
    assert Engine(shipped_instruments(), pre_trade_risk=False).fee_account_id is None


def test_balances_after_trading() -> None:
    engine = traded_engine()
    alice = engine.balances("alice")
    assert isinstance(alice, AccountBalances)
    account = engine.accounts["alice"]
    assert alice == (account.cash, account.reserved_cash, account.units, account.reserved_units, False)
    assert alice.units["EUA"] == 9_000  # one lot of 1,000 units sold
    assert alice.reserved_units["EUA"] == 2_000  # two lots still offered
    bob = engine.balances("bob")
    assert bob is not None and bob.units["EUA"] == 1_000
    assert bob.reserved_cash == 7_100 * 500  # his open bid in auction A1
    assert bob.cash < 10**9  # paid for the lot and its fee
    assert engine.balances("carol") is None


def test_balances_are_copies() -> None:
    engine = traded_engine()
    before = engine.state_hash()
    balances = engine.balances("alice")
    assert balances is not None
    balances.units["EUA"] = 0
    balances.reserved_units.clear()
    assert engine.accounts["alice"].units["EUA"] == 9_000
    assert engine.balances("alice") != balances
    assert engine.state_hash() == before


def test_account_settings() -> None:
    engine = Engine(shipped_instruments())
    engine.handle(
        OpenAccount(
            ts=1, account="alice", order_value_limit=50_000, self_trade_prevention=SelfTradePrevention.CANCEL_TAKING
        )
    )
    settings = engine.account_settings("alice")
    assert settings == (SelfTradePrevention.CANCEL_TAKING, 50_000, False, False)
    assert engine.account_settings("bob") is None


def test_instruments_phase_price_depth() -> None:
    engine = traded_engine()
    assert engine.has_instrument("EUA") and not engine.has_instrument("XYZ")
    assert engine.phase("EUA") is TradingPhase.CONTINUOUS
    assert engine.last_price("EUA") == 7_000
    assert engine.last_price("CER") is None
    assert engine.depth("EUA", Side.SELL, 5) == [(7_000, 1, 1), (7_050, 1, 1)]
    assert engine.depth("EUA", Side.SELL, 1) == [(7_000, 1, 1)]
    assert engine.depth("EUA", Side.BUY, 5) == []
    assert engine.depth("EUA", Side.SELL, 5) == engine.books["EUA"].depth(Side.SELL, 5)
    engine.depth("EUA", Side.SELL, 5).clear()
    assert engine.depth("EUA", Side.SELL, 5) == [(7_000, 1, 1), (7_050, 1, 1)]
    engine.handle(SetTradingPhase(ts=9, instrument="EUA", phase=TradingPhase.HALTED))
    assert engine.phase("EUA") is TradingPhase.HALTED
    with pytest.raises(KeyError):
        engine.phase("XYZ")


def test_primary_auctions() -> None:
    engine = traded_engine()
    auction = engine.primary_auction("A1")
    assert auction is not None
    assert auction[:7] == ("A1", "EUA", "de", 500, 100, SEED, None)
    # in the order they came (their numbers), whatever their prices
    assert auction.bids == (
        BidView("x", "b1", 7_050, 500, 7_050 * 500, 1),
        BidView(7, "bob", 7_100, 500, 7_100 * 500, 2),
    )
    assert engine.primary_auction("nope") is None
    assert (engine.primary_auction_instrument("A1"), engine.primary_auction_instrument("nope")) == ("EUA", None)
    assert [view.auction_id for view in engine.primary_auctions()] == ["A1", "A2"]
    engine.handle(ClearPrimaryAuction(ts=100, auction_id="A1"))
    cleared = engine.primary_auction("A1")
    assert cleared is not None and cleared.outcome == "cleared"
    assert auction.outcome is None  # a view taken before is not changed


def test_compliance_views() -> None:
    engine = traded_engine()
    assert engine.installation("mill") == InstallationView("mill", 2_200, (2010,))
    assert engine.installation("alice") is None
    assert engine.compliance_config is CONFIG
    report = engine.compliance_report(2010)
    assert report == compliance_report(engine.compliance, year=2010)
    assert [(row.account, row.obligation, row.allowances, row.shortfall) for row in report] == [("mill", 300, 100, 200)]
    assert engine.compliance_report() == report
