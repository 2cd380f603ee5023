"""Block trades and EFPs (exchange.clearing.blocks): reported by both sides, checked like orders, cleared into
positions and margin off the book; to the cent, and by hypothesis beside the order flow: positions net to zero,
cash and units conserved, no block takes an account past what it holds."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st
from scenario_helpers import of_type, one, shipped_instruments
from test_futures import ACCOUNTS, FEE, PER_LOT, TERMS, next_weekday, order
from test_futures import futures_engine as bare_engine

from exchange import (
    CASH_ASSET,
    BlockTraded,
    BlockTradeLapsed,
    BlockTradeReported,
    Deposit,
    EndOfDay,
    Engine,
    InvalidCommand,
    ListFutures,
    OpenAccount,
    RejectCode,
    ReportBlockTrade,
    RequestRejected,
    Side,
    Trade,
    VariationMarginPaid,
)
from exchange.clearing import initial_margin

TAKER_FEE = 3_50  # the shipped EUA taker fee a lot: what each side of a block pays
MAKERS = ("maker-1", "maker-2")  # trade a lot of each contract first: a block needs the contract to have a price


def futures_engine(cash: int = 1_000_000_00, units: int = 100_000):
    """test_futures' engine with a lot of each December traded at EUR 72.00 between two other accounts."""
    engine, clock = bare_engine(cash, units)
    for maker in MAKERS:
        engine.handle(OpenAccount(ts=clock(), account=maker))
        engine.handle(Deposit(ts=clock(), account=maker, asset=CASH_ASSET, amount=1_000_000_00))
    for symbol in ("EUAZ26", "EUAZ27", "EUAZ28"):
        engine.handle(order(clock, MAKERS[0], symbol, Side.SELL, 1, 72_00, f"s-{symbol}"))
        engine.handle(order(clock, MAKERS[1], symbol, Side.BUY, 1, 72_00, f"b-{symbol}"))
        assert engine.last_price(symbol) == 72_00
    return engine, clock


def block(clock, account, counterparty, side, lots=50, price=72_00, block_id="B1", symbol="EUAZ27", **extra):
    return ReportBlockTrade(
        ts=clock(),
        account=account,
        block_id=block_id,
        counterparty=counterparty,
        instrument=symbol,
        side=side,
        quantity=lots,
        price=price,
        **extra,
    )


def test_the_first_side_waits_and_both_are_told_then_the_second_clears_the_trade():
    engine, clock = futures_engine()
    reported = one(engine.handle(block(clock, "a", "b", Side.BUY)), BlockTradeReported)
    assert (reported.account, reported.counterparty, reported.side, reported.quantity) == ("a", "b", Side.BUY, 50)
    assert engine.futures.house.position("a", "EUAZ27") == 0  # nothing traded yet
    events = engine.handle(block(clock, "b", "a", Side.SELL))
    traded = one(events, BlockTraded)
    assert (traded.buyer, traded.seller, traded.quantity, traded.price, traded.kind) == ("a", "b", 50, 72_00, "block")
    assert traded.buyer_fee == traded.seller_fee == 50 * TAKER_FEE
    assert of_type(events, Trade) == []  # off the book: no order, no fill
    house = engine.futures.house
    assert (house.position("a", "EUAZ27"), house.position("b", "EUAZ27")) == (50, -50)
    for account in ("a", "b"):  # 50 net lots at the scanning range held; the fee paid
        assert engine.balances(account).reserved_cash == 50 * 8_00 * 1_000
        assert engine.balances(account).cash == 1_000_000_00 - 50 * TAKER_FEE
    assert engine.balances(engine.fee_account_id).cash == 3 * (2_00 + 3_50) + 2 * 50 * TAKER_FEE  # (the makers')
    book = engine.books["EUAZ27"]
    assert book.last_price == 72_00 and book.window_lots == 0  # the block set no price, is not in the window
    assert engine.futures.house.day_lots["EUAZ27"] == 1  # nor in the lots that choose the benchmark month


def test_a_contract_without_a_price_takes_no_block():
    engine, clock = bare_engine()
    refused = engine.handle(block(clock, "a", "b", Side.BUY))
    assert one(refused, RequestRejected).code is RejectCode.NO_MARKET_PRICE


def test_a_block_is_settled_at_the_end_of_day_like_any_position():
    engine, clock = futures_engine()
    engine.handle(block(clock, "a", "b", Side.BUY, price=71_00))
    engine.handle(block(clock, "b", "a", Side.SELL, price=71_00))
    engine.handle(order(clock, "c", "EUAZ27", Side.SELL, 1, 72_10, 1))  # the mid at the close: EUR 72.00
    engine.handle(order(clock, "c", "EUAZ27", Side.BUY, 1, 71_90, 2))
    events = engine.handle(EndOfDay(ts=clock(), trading_date=20261207))
    margins = {e.account: e.amount for e in of_type(events, VariationMarginPaid)}
    assert margins == {"a": 50 * 1_000 * 1_00, "b": -50 * 1_000 * 1_00}


def test_an_efp_moves_the_underlying_from_the_futures_buyer_to_the_seller():
    engine, clock = futures_engine(cash=5_000_000_00)
    engine.handle(block(clock, "a", "b", Side.BUY, kind="efp", physical_price=70_50))
    events = engine.handle(block(clock, "b", "a", Side.SELL, kind="efp", physical_price=70_50))
    traded = one(events, BlockTraded)
    assert (traded.kind, traded.physical_units, traded.physical_price, traded.underlying) == (
        "efp",
        50_000,
        70_50,
        "EUA",
    )
    a, b = engine.balances("a"), engine.balances("b")
    assert (a.units["EUA"], b.units["EUA"]) == (100_000 - 50_000, 100_000 + 50_000)
    assert a.cash == 5_000_000_00 - 50 * TAKER_FEE + 50_000 * 70_50
    assert b.cash == 5_000_000_00 - 50 * TAKER_FEE - 50_000 * 70_50


def test_reports_with_other_terms_are_refused_and_the_first_still_waits():
    engine, clock = futures_engine()
    engine.handle(block(clock, "a", "b", Side.BUY))
    for wrong in (
        block(clock, "b", "a", Side.SELL, lots=51),
        block(clock, "b", "a", Side.SELL, price=72_01),
        block(clock, "b", "a", Side.BUY),
        block(clock, "b", "a", Side.SELL, symbol="EUAZ28"),
        block(clock, "b", "a", Side.SELL, kind="efp", physical_price=70_00),
    ):
        assert one(engine.handle(wrong), RequestRejected).code is RejectCode.BLOCK_TERMS_DIFFER
    assert one(engine.handle(block(clock, "b", "a", Side.SELL)), BlockTraded).quantity == 50


def test_a_side_that_cannot_carry_the_trade_voids_both_reports():
    engine, clock = futures_engine()
    engine.handle(OpenAccount(ts=clock(), account="poor"))
    # one cent short of the margin of 50 net lots and the fee
    engine.handle(Deposit(ts=clock(), account="poor", asset=CASH_ASSET, amount=50 * 8_00 * 1_000 + 50 * TAKER_FEE - 1))
    engine.handle(block(clock, "poor", "b", Side.SELL))
    events = engine.handle(block(clock, "b", "poor", Side.BUY))
    lapsed = of_type(events, BlockTradeLapsed)
    assert [(e.account, e.code) for e in lapsed] == [
        ("poor", RejectCode.INSUFFICIENT_CASH),
        ("b", RejectCode.INSUFFICIENT_CASH),
    ]
    assert of_type(events, BlockTraded) == [] and engine.futures.house.positions_of("b") == {}
    # the block id is used: the same report again is a duplicate
    again = engine.handle(block(clock, "poor", "b", Side.SELL))
    assert one(again, RequestRejected).code is RejectCode.DUPLICATE_BLOCK_ID
    engine.handle(Deposit(ts=clock(), account="poor", asset=CASH_ASSET, amount=1))  # the cent: now it fits
    engine.handle(block(clock, "poor", "b", Side.SELL, block_id="B2"))
    assert one(engine.handle(block(clock, "b", "poor", Side.BUY, block_id="B2")), BlockTraded).seller == "poor"
    assert engine.balances("poor").cash == engine.balances("poor").reserved_cash  # not a cent free


def test_an_efp_buyer_of_futures_without_the_units_or_a_seller_without_cash_for_them_is_refused():
    engine, clock = futures_engine(units=10_000)
    engine.handle(block(clock, "a", "b", Side.BUY, kind="efp", physical_price=70_00))
    events = engine.handle(block(clock, "b", "a", Side.SELL, kind="efp", physical_price=70_00))
    assert {e.code for e in of_type(events, BlockTradeLapsed)} == {RejectCode.INSUFFICIENT_UNITS}  # a: 10,000 t
    engine.handle(Deposit(ts=clock(), account="a", asset="EUA", amount=40_000))
    engine.handle(block(clock, "a", "b", Side.BUY, kind="efp", physical_price=70_00, block_id="B2"))
    events = engine.handle(block(clock, "b", "a", Side.SELL, kind="efp", physical_price=70_00, block_id="B2"))
    assert {e.code for e in of_type(events, BlockTradeLapsed)} == {RejectCode.INSUFFICIENT_CASH}  # b: EUR 3.5m
    engine.handle(Deposit(ts=clock(), account="b", asset=CASH_ASSET, amount=3_000_000_00))
    engine.handle(block(clock, "a", "b", Side.BUY, kind="efp", physical_price=70_00, block_id="B3"))
    events = engine.handle(block(clock, "b", "a", Side.SELL, kind="efp", physical_price=70_00, block_id="B3"))
    assert one(events, BlockTraded).physical_units == 50_000


def test_refusals_say_why():
    engine, clock = futures_engine()
    cases = [
        (block(clock, "a", "b", Side.BUY, lots=49), RejectCode.BLOCK_BELOW_MINIMUM),
        (block(clock, "a", "nobody", Side.BUY), RejectCode.INVALID_COUNTERPARTY),
        (block(clock, "a", "a", Side.BUY), RejectCode.INVALID_COUNTERPARTY),
        (block(clock, "a", engine.fee_account_id, Side.BUY), RejectCode.INVALID_COUNTERPARTY),
        (block(clock, "nobody", "a", Side.BUY), RejectCode.UNKNOWN_ACCOUNT),
        (block(clock, "a", "b", Side.BUY, symbol="EUA"), RejectCode.NOT_A_FUTURES_CONTRACT),
        (block(clock, "a", "b", Side.BUY, symbol="XYZZ27"), RejectCode.UNKNOWN_INSTRUMENT),
    ]
    for command, code in cases:
        assert one(engine.handle(command), RequestRejected).code is code, command
    engine.handle(block(clock, "a", "b", Side.BUY, block_id="dup"))
    duplicate = engine.handle(block(clock, "a", "b", Side.BUY, block_id="dup"))
    assert one(duplicate, RequestRejected).code is RejectCode.DUPLICATE_BLOCK_ID
    spot_only = Engine(shipped_instruments())
    assert one(spot_only.handle(block(clock, "a", "b", Side.BUY)), RequestRejected).code is RejectCode.NO_FUTURES
    for bad, code in (
        ({"kind": "swap"}, RejectCode.INVALID_BLOCK_KIND),
        ({"kind": "efp"}, RejectCode.INVALID_BLOCK_KIND),  # an EFP without its physical price
        ({"physical_price": 70_00}, RejectCode.INVALID_BLOCK_KIND),  # a block with one
        ({"counterparty": ""}, RejectCode.INVALID_COUNTERPARTY),
        ({"quantity": 0}, RejectCode.INVALID_QUANTITY),
        ({"price": -1}, RejectCode.INVALID_PRICE),
    ):
        fields = {
            "ts": 1,
            "account": "a",
            "block_id": 1,
            "counterparty": "b",
            "instrument": "EUAZ27",
            "side": "B",
            "quantity": 50,
            "price": 1,
        }
        try:
            ReportBlockTrade(**{**fields, **bad})
        except InvalidCommand as error:
            assert error.code is code
        else:
            raise AssertionError(f"{bad} was taken")


def test_a_called_account_may_not_add_margin_by_block_but_may_reduce_it():
    engine, clock = futures_engine()
    engine.handle(block(clock, "a", "b", Side.BUY))
    engine.handle(block(clock, "b", "a", Side.SELL))
    engine.accounts["a"].margin_called = True  # (as an end of day would leave it; tested in test_futures)
    engine.handle(block(clock, "a", "c", Side.BUY, block_id="more"))
    lapsed = of_type(engine.handle(block(clock, "c", "a", Side.SELL, block_id="more")), BlockTradeLapsed)
    assert {e.code for e in lapsed} == {RejectCode.MARGIN_CALL}
    engine.handle(block(clock, "a", "c", Side.SELL, block_id="less"))
    assert one(engine.handle(block(clock, "c", "a", Side.BUY, block_id="less")), BlockTraded).seller == "a"
    assert engine.futures.house.position("a", "EUAZ27") == 0


def test_reports_not_matched_by_the_end_of_day_lapse_and_ids_are_free_again():
    engine, clock = futures_engine()
    engine.handle(block(clock, "a", "b", Side.BUY))
    events = engine.handle(EndOfDay(ts=clock(), trading_date=20261207))
    lapsed = one(events, BlockTradeLapsed)
    assert (lapsed.account, lapsed.counterparty, lapsed.block_id, lapsed.code) == ("a", "b", "B1", None)
    engine.handle(ListFutures(ts=clock(), trading_date=20261208))
    assert one(engine.handle(block(clock, "a", "b", Side.BUY)), BlockTradeReported)


def test_waiting_reports_are_in_snapshots_and_the_state_hash():
    engine, clock = futures_engine()
    before = engine.state_hash()
    engine.handle(block(clock, "a", "b", Side.BUY, block_id=7))
    assert engine.state_hash() != before
    copy = pickle.loads(pickle.dumps(engine))
    assert copy.state_hash() == engine.state_hash()
    second = block(clock, "b", "a", Side.SELL, block_id=7)
    assert copy.handle(second) == engine.handle(second)
    assert copy.state_hash() == engine.state_hash()


# -- properties: blocks among the order flow ------------------------------------------------------------------

CONTRACTS = ("EUAZ26", "EUAZ27")
PAIRS = [(x, y) for x in ACCOUNTS for y in ACCOUNTS if x != y]
action = st.one_of(
    st.tuples(
        st.just("order"),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(CONTRACTS),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(1, 30),
        st.integers(68_00, 74_00),
    ),
    st.tuples(
        st.just("block"),
        st.sampled_from(PAIRS),
        st.sampled_from(CONTRACTS),
        st.integers(50, 120),
        st.integers(68_00, 74_00),
        st.one_of(st.none(), st.integers(66_00, 72_00)),  # an EFP's physical price
    ),
    st.tuples(st.just("end_of_day")),
)


@settings(max_examples=60)
@given(st.lists(action, min_size=1, max_size=30), st.integers(1, 200))
def test_blocks_among_orders_keep_every_clearing_invariant(actions, funding_lots):
    engine, clock = futures_engine(cash=funding_lots * (PER_LOT + FEE), units=60_000)
    everyone = (*ACCOUNTS, engine.fee_account_id)
    cash_total = sum(engine.balances(account).cash for account in everyone)
    units_total = sum(engine.balances(account).units["EUA"] for account in everyone)
    day, number = 20261207, 0
    for step in actions:
        number += 1
        excess = {a: engine.balances(a).cash - engine.balances(a).reserved_cash for a in ACCOUNTS}
        free_units = {a: engine.balances(a).units["EUA"] - engine.balances(a).reserved_units["EUA"] for a in ACCOUNTS}
        if step[0] == "end_of_day":
            engine.handle(EndOfDay(ts=clock(), trading_date=day))
            day = next_weekday(day)
            engine.handle(ListFutures(ts=clock(), trading_date=day))
            continue
        if step[0] == "order":
            _, account, symbol, side, lots, price = step
            engine.handle(order(clock, account, symbol, side, lots, price, number))
        else:
            _, (buyer, seller), symbol, lots, price, physical = step
            extra = {} if physical is None else {"kind": "efp", "physical_price": physical}
            if not engine.has_instrument(symbol):
                continue
            engine.handle(block(clock, buyer, seller, Side.BUY, lots, price, number, symbol, **extra))
            engine.handle(block(clock, seller, buyer, Side.SELL, lots, price, number, symbol, **extra))
        for holder in ACCOUNTS:  # no block or fill takes an account past what it holds
            balances = engine.balances(holder)
            assert balances.cash - balances.reserved_cash >= min(excess[holder], 0)
            assert balances.units["EUA"] - balances.reserved_units["EUA"] >= min(free_units[holder], 0)
        desk = engine.futures
        for symbol in desk.contracts:
            assert sum(desk.house.position(account, symbol) for account in ACCOUNTS) == 0
        for account in ACCOUNTS:
            assert desk.margins_held.get((account, "EUA"), 0) == initial_margin(
                desk.house.positions_of(account), 1_000, TERMS
            )
        assert sum(engine.balances(a).cash for a in everyone) == cash_total
        assert sum(engine.balances(a).units["EUA"] for a in everyone) == units_total
