"""The operator's close-out of a defaulter (exchange.clearing.default): blocked and its orders cancelled as by the
kill switch, its futures positions passed to a receiver at the last settlement price; to the cent."""

from __future__ import annotations

import pickle

from scenario_helpers import of_type, one, shipped_instruments
from test_futures import ACCOUNTS, FEE, PER_LOT, futures_engine, order

from exchange import (
    CASH_ASSET,
    AccountBlocked,
    AccountClosedOut,
    BlockAccount,
    CancelOrder,
    CloseOutAccount,
    Deposit,
    EndOfDay,
    Engine,
    InvalidCommand,
    ListFutures,
    MarginCalled,
    MarginCallMet,
    OpenAccount,
    OrderCanceled,
    OrderRejected,
    RejectCode,
    RequestRejected,
    Side,
    VariationMarginPaid,
)


def called_engine():
    """a, funded for 10 lots, sold 10 EUAZ26 to b at EUR 70.00 and leaves a working order; the close at EUR 73.40
    (the mid of c's quotes) calls it: EUR 61,015.00 of cash under a maintenance margin of EUR 64,000.00."""
    engine, clock = futures_engine(cash=11 * (PER_LOT + FEE))
    engine.handle(order(clock, "a", "EUAZ26", Side.SELL, 10, 70_00, 1))
    engine.handle(order(clock, "b", "EUAZ26", Side.BUY, 10, 70_00, 1))
    engine.handle(order(clock, "a", "EUAZ27", Side.BUY, 1, 60_00, 2))  # still working at the close-out
    engine.handle(order(clock, "c", "EUAZ26", Side.SELL, 1, 73_50, 1))
    engine.handle(order(clock, "c", "EUAZ26", Side.BUY, 1, 73_30, 2))
    events = engine.handle(EndOfDay(ts=clock(), trading_date=20261207))
    assert one(events, MarginCalled).account == "a"
    engine.handle(ListFutures(ts=clock(), trading_date=20261208))
    return engine, clock


def test_a_called_account_is_blocked_and_its_positions_pass_to_the_receiver_at_the_settlement_price():
    engine, clock = called_engine()
    cash = {account: engine.balances(account).cash for account in ACCOUNTS}
    events = engine.handle(CloseOutAccount(ts=clock(), account="a", to_account="c"))
    blocked = one(events, AccountBlocked)
    assert (blocked.account, blocked.canceled_orders) == ("a", 1)
    assert one(events, OrderCanceled).client_order_id == 2
    moved = one(events, AccountClosedOut)
    assert (moved.account, moved.to_account, moved.transfers) == ("a", "c", (("EUAZ26", -10, 73_40),))
    assert one(events, MarginCallMet).account == "a"  # nothing held any more: its cash covers it
    house = engine.futures.house
    assert (house.position("a", "EUAZ26"), house.position("c", "EUAZ26")) == (0, -10)
    assert engine.balances("a").reserved_cash == 0
    # c takes the short's margin, beside what its two working quotes hold
    assert engine.balances("c").reserved_cash == 10 * 8_00 * 1_000 + 2 * (PER_LOT + FEE)
    assert {account: engine.balances(account).cash for account in ACCOUNTS} == cash  # no cash moves at the transfer
    refused = engine.handle(order(clock, "a", "EUAZ27", Side.SELL, 1, 75_00, 3))
    assert one(refused, OrderRejected).code is RejectCode.ACCOUNT_BLOCKED
    # the next close (c's quotes gone, b's at 72.30-72.50) settles c from EUR 73.40 and a not at all
    for clid in (1, 2):
        engine.handle(CancelOrder(ts=clock(), account="c", client_order_id=clid))
    engine.handle(order(clock, "b", "EUAZ26", Side.SELL, 1, 72_50, 2))
    engine.handle(order(clock, "b", "EUAZ26", Side.BUY, 1, 72_30, 3))
    margins = {
        e.account: e.amount
        for e in of_type(engine.handle(EndOfDay(ts=clock(), trading_date=20261208)), VariationMarginPaid)
    }
    assert margins == {"b": -10 * 1_000 * 1_00, "c": 10 * 1_000 * 1_00}  # 73.40 -> 72.40: the short gains


def test_a_transfer_is_not_traded_volume():
    engine, clock = called_engine()
    engine.handle(CloseOutAccount(ts=clock(), account="a", to_account="c"))
    assert engine.futures.house.day_lots["EUAZ26"] == 0


def test_refusals_say_why_and_change_nothing():
    engine, clock = called_engine()
    engine.handle(OpenAccount(ts=clock(), account="poor"))
    engine.handle(Deposit(ts=clock(), account="poor", asset=CASH_ASSET, amount=10 * 8_00 * 1_000 - 1))
    for command, code in (
        (CloseOutAccount(ts=clock(), account="b", to_account="c"), RejectCode.NOT_ON_MARGIN_CALL),
        (CloseOutAccount(ts=clock(), account="a", to_account="nobody"), RejectCode.INVALID_COUNTERPARTY),
        (CloseOutAccount(ts=clock(), account="a", to_account="a"), RejectCode.INVALID_COUNTERPARTY),
        (CloseOutAccount(ts=clock(), account="a", to_account=engine.fee_account_id), RejectCode.INVALID_COUNTERPARTY),
        (CloseOutAccount(ts=clock(), account="nobody", to_account="c"), RejectCode.UNKNOWN_ACCOUNT),
        (CloseOutAccount(ts=clock(), account="a", to_account="poor"), RejectCode.INSUFFICIENT_CASH),
    ):
        events = engine.handle(command)
        assert one(events, RequestRejected).code is code, command
    assert engine.futures.house.position("a", "EUAZ26") == -10
    engine.handle(Deposit(ts=clock(), account="poor", asset=CASH_ASSET, amount=1))  # the cent: now it fits
    assert one(engine.handle(CloseOutAccount(ts=clock(), account="a", to_account="poor")), AccountClosedOut)
    spot_only = Engine(shipped_instruments())
    refused = spot_only.handle(CloseOutAccount(ts=1, account="a", to_account="c"))
    assert one(refused, RequestRejected).code is RejectCode.NO_FUTURES
    try:
        CloseOutAccount(ts=1, account="a", to_account="")
    except InvalidCommand as error:
        assert error.code is RejectCode.INVALID_COUNTERPARTY
    else:
        raise AssertionError("an empty receiver was taken")


def test_a_blocked_receiver_takes_nothing():
    engine, clock = called_engine()
    engine.handle(BlockAccount(ts=clock(), account="c"))
    refused = engine.handle(CloseOutAccount(ts=clock(), account="a", to_account="c"))
    assert one(refused, RequestRejected).code is RejectCode.ACCOUNT_BLOCKED
    assert engine.futures.house.position("a", "EUAZ26") == -10


def test_a_called_receiver_may_not_take_positions_that_add_margin():
    engine, clock = called_engine()
    engine.accounts["c"].margin_called = True  # (as an end of day would leave it)
    refused = engine.handle(CloseOutAccount(ts=clock(), account="a", to_account="c"))
    assert one(refused, RequestRejected).code is RejectCode.MARGIN_CALL


def test_a_closed_out_engine_pickles_and_hashes_alike():
    engine, clock = called_engine()
    engine.handle(CloseOutAccount(ts=clock(), account="a", to_account="c"))
    copy = pickle.loads(pickle.dumps(engine))
    assert copy.state_hash() == engine.state_hash()
