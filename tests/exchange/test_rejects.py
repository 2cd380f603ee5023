"""Every reject code the engine can produce, and garbage that must only ever produce rejects.

Where a reject comes from: a command checks its own fields when it is built
(types, ranges that need no instrument, which fields go together) and raises
:class:`InvalidCommand` with the code; the engine answers everything that
depends on an instrument's rules or on its state with a reject event. A case
marked ENGINE must be a reject event; a malformed field (EITHER) may be
refused by either layer, but always with its code. Building a command may
raise InvalidCommand and nothing else; ``Engine.handle`` raises nothing.
A case marked RISK is a reject event from an engine with pre-trade risk on
(the exchange's way) after the same setup from accounts opened and funded
first (:func:`build_risky`): unknown accounts and assets, what an account
cannot pay for or deliver, its order value limit, the price band.

How "nothing else changed" is checked: the setup is replayed into two
engines (the engine is deterministic, so they are identical); one gets the
bad command, the other does not. The rejected one must then equal its twin
in everything but the sequence counter, which moved by exactly one (the
reject event). So the twin's counter is moved by one and the two state
hashes are compared, and both engines must then answer the same probe
commands with the same events.

Two codes are in the table but cannot be produced, listed in UNREACHABLE
with the reason; a new code that no test produces fails
``test_every_reachable_code_is_covered``.
"""

from __future__ import annotations

import datetime
import string
from functools import partial
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scenario_helpers import make_engine, shipped_instruments

from exchange import (
    BlockAccount,
    CancelOrder,
    Deposit,
    EndOfDay,
    Engine,
    InvalidCommand,
    MassCancel,
    NewOrder,
    OpenAccount,
    OpenSettlementWindow,
    OrderRejected,
    OrderType,
    RejectCode,
    ReplaceOrder,
    RequestRejected,
    ScheduleReached,
    SelfTradePrevention,
    SetSelfTradePrevention,
    SetTradingPhase,
    ShiftSchedule,
    Side,
    TimeInForce,
    TradingPhase,
    UnblockAccount,
    Withdraw,
    parse_instruments,
)

# An instrument whose rules make the codes the shipped ones cannot reach reachable:
# a tick of 5 cents (PRICE_NOT_ON_TICK) and a minimum of 2 lots (QUANTITY_BELOW_MINIMUM).
# Three more, each left by the setup in a trading phase other than continuous: AUC in its opening call,
# SHUT closed, HALT halted (with alice's resting sell "halt-1" in it).
_PLAIN = {
    "lot_units": 1000,
    "tick_size_eur": "0.01",
    "min_lots": 1,
    "max_lots": 100,
    "min_price_eur": "0.01",
    "max_price_eur": "1000.00",
    "reference_price_eur": "70.00",
}
COARSE = parse_instruments(
    {
        "instruments": {
            "TST": {
                "lot_units": 1000,
                "tick_size_eur": "0.05",
                "min_lots": 2,
                "max_lots": 100,
                "min_price_eur": "0.05",
                "max_price_eur": "1000.00",
                "reference_price_eur": "70.00",
                "market_collar_eur": "3.50",
            },
            "AUC": _PLAIN,
            "SHUT": _PLAIN,
            "HALT": _PLAIN,
        }
    }
)

UNREACHABLE: set[RejectCode] = set()  # every code in the table can be produced

T = 10_000  # ts of the bad command (after the setup's)


def setup_commands() -> list:
    """The state every reject is tried against.

    Order ids: 1 "filled" (alice, filled by 2 "take" of bob), 3 "open-1" (alice, sell 10 @ 7000, 3 filled
    by 4 "fill" of bob), 5 "po" (alice, post-only bid 6900), 6 "tst-1" (alice, on TST). Day 20240105 closed.
    """
    return [
        EndOfDay(ts=1, trading_date=20240105),
        NewOrder(
            ts=2, account="alice", client_order_id="filled", instrument="EUA", side=Side.SELL, quantity=5, price=7000
        ),
        NewOrder(ts=3, account="bob", client_order_id="take", instrument="EUA", side=Side.BUY, quantity=5, price=7000),
        NewOrder(
            ts=4, account="alice", client_order_id="open-1", instrument="EUA", side=Side.SELL, quantity=10, price=7000
        ),
        NewOrder(ts=5, account="bob", client_order_id="fill", instrument="EUA", side=Side.BUY, quantity=3, price=7000),
        NewOrder(
            ts=6,
            account="alice",
            client_order_id="po",
            instrument="EUA",
            side=Side.BUY,
            quantity=5,
            price=6900,
            post_only=True,
        ),
        NewOrder(
            ts=7, account="alice", client_order_id="tst-1", instrument="TST", side=Side.SELL, quantity=4, price=7000
        ),
        NewOrder(
            ts=8, account="alice", client_order_id="halt-1", instrument="HALT", side=Side.SELL, quantity=4, price=7000
        ),
        SetTradingPhase(ts=9, instrument="AUC", phase=TradingPhase.CLOSING_CALL),
        OpenSettlementWindow(ts=9, instrument="AUC"),
        ScheduleReached(ts=9, trading_date=20240108, point="close:EUA"),
        SetTradingPhase(ts=9, instrument="SHUT", phase=TradingPhase.CLOSED),
        SetTradingPhase(ts=9, instrument="HALT", phase=TradingPhase.HALTED),
    ]


def build() -> Engine:
    engine = make_engine(COARSE)
    for command in setup_commands():
        engine.handle(command)
    return engine


# The accounts of the setup, opened and funded before it under pre-trade risk. alice may place no
# order worth more than 350_000_000 cents (50 lots at 7000).
ALICE_LIMIT = 350_000_000


def funding_commands() -> list:
    return [
        OpenAccount(ts=0, account="alice", order_value_limit=ALICE_LIMIT),
        Deposit(ts=0, account="alice", asset="EUR", amount=100_000_000),
        Deposit(ts=0, account="alice", asset="EUA", amount=20_000),
        Deposit(ts=0, account="alice", asset="TST", amount=10_000),
        Deposit(ts=0, account="alice", asset="HALT", amount=10_000),
        OpenAccount(ts=0, account="bob"),
        Deposit(ts=0, account="bob", asset="EUR", amount=100_000_000),
        OpenAccount(ts=0, account="erin"),  # blocked by the kill switch
        Deposit(ts=0, account="erin", asset="EUR", amount=100_000_000),
        BlockAccount(ts=0, account="erin"),
        OpenAccount(ts=0, account="carol"),
        Deposit(ts=0, account="carol", asset="EUR", amount=1_000_000_000),
        Deposit(ts=0, account="carol", asset="EUA", amount=50_000),
        Deposit(ts=0, account="carol", asset="TST", amount=10_000),
    ]


def build_risky() -> Engine:
    """The setup on an engine with pre-trade risk: the same books, orders and ids as :func:`build`.

    After it alice holds 155_998_400 cents (100_000_000 + 8 lots sold at 7000 less 8 maker fees of
    200) of which her post-only bid holds back 5 x 6_900_350 = 34_501_750, so 121_496_650 are
    available; 12_000 EUA units of which "open-1" holds 7_000 (5_000 available); 10_000 TST units,
    4_000 held.
    """
    instruments = shipped_instruments()
    instruments.update(COARSE)
    engine = Engine(instruments, pre_trade_risk=True)
    for command in funding_commands() + setup_commands():
        engine.handle(command)
    return engine


# Cases hold how to build the command, not the command: building may itself be the reject.


def new(**fields) -> partial:
    """A valid new order from alice (a bid that rests), with some fields changed."""
    base = dict(ts=T, account="alice", client_order_id="fresh", instrument="EUA", side=Side.BUY, quantity=5, price=6950)
    return partial(NewOrder, **{**base, **fields})


def cancel(**fields) -> partial:
    return partial(CancelOrder, **{"ts": T, "account": "alice", "order_id": 3, **fields})


def replace(**fields) -> partial:
    return partial(ReplaceOrder, **{"ts": T, "account": "alice", "order_id": 3, "quantity": 8, **fields})


def command(kind: type, **fields) -> partial:
    return partial(kind, **fields)


class Unknown:
    """A command the engine has never heard of."""

    ts = T
    account = "alice"


MARKET = OrderType.MARKET
GTD = TimeInForce.GTD
ENGINE = "engine"  # depends on an instrument or on state: must be a reject event
EITHER = "either"  # a malformed field: InvalidCommand when built, or a reject event
RISK = "risk"  # depends on holdings, accounts or the band: a reject event from the engine with pre-trade risk


def deposit(**fields) -> partial:
    return partial(Deposit, **{"ts": T, "account": "alice", "asset": "EUR", "amount": 1, **fields})


def withdraw(**fields) -> partial:
    return partial(Withdraw, **{"ts": T, "account": "alice", "asset": "EUR", "amount": 1, **fields})


CASES = [
    # -- validation
    ("unknown instrument", new(instrument="XXX"), RejectCode.UNKNOWN_INSTRUMENT, ENGINE),
    ("instrument not a string", new(instrument=["EUA"]), RejectCode.UNKNOWN_INSTRUMENT, EITHER),
    (
        "mass cancel unknown instrument",
        command(MassCancel, ts=T, account="alice", instrument="XXX"),
        RejectCode.UNKNOWN_INSTRUMENT,
        ENGINE,
    ),
    ("side", new(side="BUY"), RejectCode.INVALID_SIDE, EITHER),
    ("quantity zero", new(quantity=0), RejectCode.INVALID_QUANTITY, EITHER),
    ("quantity float", new(quantity=5.0), RejectCode.INVALID_QUANTITY, EITHER),
    ("replace quantity negative", replace(quantity=-2), RejectCode.INVALID_QUANTITY, EITHER),
    (
        "quantity below minimum",
        new(instrument="TST", quantity=1, price=7000),
        RejectCode.QUANTITY_BELOW_MINIMUM,
        ENGINE,
    ),
    ("replace below minimum", replace(order_id=6, quantity=1), RejectCode.QUANTITY_BELOW_MINIMUM, ENGINE),
    ("quantity above maximum", new(quantity=1001), RejectCode.QUANTITY_ABOVE_MAXIMUM, ENGINE),
    ("replace above maximum", replace(quantity=1001), RejectCode.QUANTITY_ABOVE_MAXIMUM, ENGINE),
    ("price float", new(price=69.5), RejectCode.INVALID_PRICE, EITHER),
    ("replace price string", replace(quantity=None, price="7000"), RejectCode.INVALID_PRICE, EITHER),
    ("price not on tick", new(instrument="TST", price=7001), RejectCode.PRICE_NOT_ON_TICK, ENGINE),
    ("replace price not on tick", replace(order_id=6, quantity=None, price=7003), RejectCode.PRICE_NOT_ON_TICK, ENGINE),
    ("price above range", new(price=100_001), RejectCode.PRICE_OUT_OF_RANGE, ENGINE),
    ("replace price above range", replace(quantity=None, price=100_001), RejectCode.PRICE_OUT_OF_RANGE, ENGINE),
    ("limit without price", new(price=None), RejectCode.PRICE_REQUIRED, EITHER),
    ("market with price", new(order_type=MARKET, price=7000), RejectCode.PRICE_NOT_ALLOWED, EITHER),
    ("order type", new(order_type="STOP"), RejectCode.INVALID_ORDER_TYPE, EITHER),
    ("time in force", new(time_in_force="GTX"), RejectCode.INVALID_TIME_IN_FORCE, EITHER),
    ("display above quantity", new(display_quantity=6), RejectCode.INVALID_DISPLAY_QUANTITY, EITHER),
    ("display zero", new(display_quantity=0), RejectCode.INVALID_DISPLAY_QUANTITY, EITHER),
    (
        "display below the minimum",
        new(instrument="TST", quantity=4, price=7000, display_quantity=1),
        RejectCode.INVALID_DISPLAY_QUANTITY,
        ENGINE,
    ),
    ("stop price float", new(stop_price=7000.5), RejectCode.INVALID_STOP_PRICE, EITHER),
    ("stop price zero", new(stop_price=0), RejectCode.INVALID_STOP_PRICE, EITHER),
    (
        "stop price not on tick",
        new(instrument="TST", price=7000, stop_price=7001),
        RejectCode.INVALID_STOP_PRICE,
        ENGINE,
    ),
    ("gtd without date", new(time_in_force=GTD), RejectCode.EXPIRE_DATE_REQUIRED, EITHER),
    ("gtd impossible date", new(time_in_force=GTD, expire_date=20250230), RejectCode.INVALID_EXPIRE_DATE, EITHER),
    ("gtd date as string", new(time_in_force=GTD, expire_date="20250101"), RejectCode.INVALID_EXPIRE_DATE, EITHER),
    ("date on a gtc order", new(expire_date=20250101), RejectCode.INVALID_EXPIRE_DATE, EITHER),
    ("gtd date already closed", new(time_in_force=GTD, expire_date=20240105), RejectCode.EXPIRE_DATE_PASSED, ENGINE),
    ("order stp mode", new(self_trade_prevention="SOMETIMES"), RejectCode.INVALID_SELF_TRADE_MODE, EITHER),
    (
        "account stp mode",
        command(SetSelfTradePrevention, ts=T, account="alice", mode="cancel_both"),
        RejectCode.INVALID_SELF_TRADE_MODE,
        EITHER,
    ),
    ("empty client order id", new(client_order_id=""), RejectCode.INVALID_CLIENT_ORDER_ID, EITHER),
    ("negative client order id", new(client_order_id=-1), RejectCode.INVALID_CLIENT_ORDER_ID, EITHER),
    ("long client order id", new(client_order_id="x" * 65), RejectCode.INVALID_CLIENT_ORDER_ID, EITHER),
    (
        "cancel by float client order id",
        cancel(order_id=None, client_order_id=1.5),
        RejectCode.INVALID_CLIENT_ORDER_ID,
        EITHER,
    ),
    ("empty account", new(account=""), RejectCode.INVALID_ACCOUNT, EITHER),
    ("cancel without account", cancel(account=None), RejectCode.INVALID_ACCOUNT, EITHER),
    ("mass cancel account not a string", command(MassCancel, ts=T, account=5), RejectCode.INVALID_ACCOUNT, EITHER),
    (
        "set stp empty account",
        command(SetSelfTradePrevention, ts=T, account="", mode="NONE"),
        RejectCode.INVALID_ACCOUNT,
        EITHER,
    ),
    ("market post-only", new(order_type=MARKET, price=None, post_only=True), RejectCode.INVALID_COMBINATION, EITHER),
    ("market stop", new(order_type=MARKET, price=None, stop_price=7100), RejectCode.INVALID_COMBINATION, EITHER),
    (
        "market gtd",
        new(order_type=MARKET, price=None, time_in_force=GTD, expire_date=20250101),
        RejectCode.INVALID_COMBINATION,
        EITHER,
    ),
    ("market iceberg", new(order_type=MARKET, price=None, display_quantity=1), RejectCode.INVALID_COMBINATION, EITHER),
    ("ioc iceberg", new(time_in_force="IOC", display_quantity=1), RejectCode.INVALID_COMBINATION, EITHER),
    ("fok post-only", new(time_in_force="FOK", post_only=True), RejectCode.INVALID_COMBINATION, EITHER),
    ("post-only stop", new(post_only=True, stop_price=7100), RejectCode.INVALID_COMBINATION, EITHER),
    ("negative ts", new(ts=-1), RejectCode.INVALID_TIMESTAMP, EITHER),
    ("cancel float ts", cancel(ts=1.0), RejectCode.INVALID_TIMESTAMP, EITHER),
    ("replace ts none", replace(ts=None), RejectCode.INVALID_TIMESTAMP, EITHER),
    ("mass cancel bool ts", command(MassCancel, ts=True, account="alice"), RejectCode.INVALID_TIMESTAMP, EITHER),
    (
        "set stp string ts",
        command(SetSelfTradePrevention, ts="now", account="alice", mode="NONE"),
        RejectCode.INVALID_TIMESTAMP,
        EITHER,
    ),
    ("end of day negative ts", command(EndOfDay, ts=-5, trading_date=20240106), RejectCode.INVALID_TIMESTAMP, EITHER),
    ("post-only as int", new(post_only=1), RejectCode.INVALID_POST_ONLY, EITHER),
    ("post-only as string", new(post_only="yes"), RejectCode.INVALID_POST_ONLY, EITHER),
    ("deposit zero", deposit(amount=0), RejectCode.INVALID_AMOUNT, EITHER),
    ("withdraw negative", withdraw(amount=-100), RejectCode.INVALID_AMOUNT, EITHER),
    ("deposit float", deposit(amount=100.0), RejectCode.INVALID_AMOUNT, EITHER),
    ("deposit beyond 64 bits", deposit(amount=1 << 63), RejectCode.INVALID_AMOUNT, EITHER),
    (
        "order value limit zero",
        command(OpenAccount, ts=T, account="dave", order_value_limit=0),
        RejectCode.INVALID_AMOUNT,
        EITHER,
    ),
    ("deposit empty asset", deposit(asset=""), RejectCode.UNKNOWN_ASSET, EITHER),
    ("withdraw asset not a string", withdraw(asset=978), RejectCode.UNKNOWN_ASSET, EITHER),
    ("deposit unknown asset", deposit(asset="USD"), RejectCode.UNKNOWN_ASSET, RISK),
    ("deposit lower-case cash", deposit(asset="eur"), RejectCode.UNKNOWN_ASSET, RISK),
    ("withdraw unknown instrument", withdraw(asset="UKA"), RejectCode.UNKNOWN_ASSET, RISK),
    ("open account empty id", command(OpenAccount, ts=T, account=""), RejectCode.INVALID_ACCOUNT, EITHER),
    (
        "open account stp mode",
        command(OpenAccount, ts=T, account="dave", self_trade_prevention="ALWAYS"),
        RejectCode.INVALID_SELF_TRADE_MODE,
        EITHER,
    ),
    # -- risk
    ("order from an unopened account", new(account="zed"), RejectCode.UNKNOWN_ACCOUNT, RISK),
    (
        "market order from an unopened account",
        new(account="zed", order_type=MARKET, price=None),
        RejectCode.UNKNOWN_ACCOUNT,
        RISK,
    ),
    ("deposit to an unopened account", deposit(account="zed"), RejectCode.UNKNOWN_ACCOUNT, RISK),
    ("withdraw from an unopened account", withdraw(account="zed"), RejectCode.UNKNOWN_ACCOUNT, RISK),
    ("deposit without pre-trade risk", deposit(), RejectCode.UNKNOWN_ACCOUNT, ENGINE),
    (
        "set stp for an unopened account",
        command(SetSelfTradePrevention, ts=T, account="zed", mode="NONE"),
        RejectCode.UNKNOWN_ACCOUNT,
        RISK,
    ),
    ("order from a blocked account", new(account="erin"), RejectCode.ACCOUNT_BLOCKED, RISK),
    ("block an unopened account", command(BlockAccount, ts=T, account="zed"), RejectCode.UNKNOWN_ACCOUNT, RISK),
    ("unblock an unopened account", command(UnblockAccount, ts=T, account="zed"), RejectCode.UNKNOWN_ACCOUNT, RISK),
    # 18 x 6_950_350 = 125_106_300 > 121_496_650 available
    ("buy beyond available cash", new(quantity=18), RejectCode.INSUFFICIENT_CASH, RISK),
    ("withdraw cash an order holds", withdraw(amount=121_496_651), RejectCode.INSUFFICIENT_CASH, RISK),
    (
        "withdraw cash never deposited",
        withdraw(account="carol", amount=1_000_000_001),
        RejectCode.INSUFFICIENT_CASH,
        RISK,
    ),
    # 23 x 6_900_350 = 158_708_050 > 121_496_650 + the 34_501_750 the order holds already
    ("replace beyond available cash", replace(order_id=5, quantity=23), RejectCode.INSUFFICIENT_CASH, RISK),
    ("sell beyond available units", new(side=Side.SELL, price=7100, quantity=6), RejectCode.INSUFFICIENT_UNITS, RISK),
    (
        "sell units of another instrument",
        new(side=Side.SELL, instrument="CER", price=5800, quantity=1),
        RejectCode.INSUFFICIENT_UNITS,
        RISK,
    ),
    (
        "stop sell beyond available units",
        new(side=Side.SELL, price=6900, stop_price=6950, quantity=6),
        RejectCode.INSUFFICIENT_UNITS,
        RISK,
    ),
    ("withdraw units an order holds", withdraw(asset="EUA", amount=5001), RejectCode.INSUFFICIENT_UNITS, RISK),
    # open-1: 10 lots, 3 filled, 7 held; 16 leaves 13 open: 6_000 more units than the 5_000 available
    ("replace sell beyond available units", replace(quantity=16), RejectCode.INSUFFICIENT_UNITS, RISK),
    ("order value over the limit", new(quantity=51), RejectCode.ORDER_VALUE_OVER_LIMIT, RISK),
    (
        "sell value over the limit",
        new(side=Side.SELL, price=7100, quantity=50),
        RejectCode.ORDER_VALUE_OVER_LIMIT,
        RISK,
    ),
    # valued at the collar: 48 x 7350 x 1000 = 352_800_000
    (
        "market value over the limit",
        new(order_type=MARKET, price=None, quantity=48),
        RejectCode.ORDER_VALUE_OVER_LIMIT,
        RISK,
    ),
    ("replace value over the limit", replace(order_id=5, quantity=51), RejectCode.ORDER_VALUE_OVER_LIMIT, RISK),
    ("price above the band", new(price=7351), RejectCode.PRICE_OUTSIDE_BAND, RISK),
    ("sell price below the band", new(side=Side.SELL, price=6649, quantity=1), RejectCode.PRICE_OUTSIDE_BAND, RISK),
    ("replace sell below the band", replace(quantity=None, price=6649), RejectCode.PRICE_OUTSIDE_BAND, RISK),
    # -- matching
    ("post-only would take", new(price=7000, post_only=True), RejectCode.POST_ONLY_WOULD_TAKE, ENGINE),
    (
        "replace post-only to take",
        replace(order_id=5, quantity=None, price=7000),
        RejectCode.POST_ONLY_WOULD_TAKE,
        ENGINE,
    ),
    # -- trading phases
    ("order on a closed instrument", new(instrument="SHUT"), RejectCode.INSTRUMENT_CLOSED, ENGINE),
    ("order on a halted instrument", new(instrument="HALT"), RejectCode.TRADING_HALTED, ENGINE),
    ("replace on a halted instrument", replace(order_id=7, quantity=2), RejectCode.TRADING_HALTED, ENGINE),
    (
        "market order in a call",
        new(instrument="AUC", order_type=MARKET, price=None),
        RejectCode.NOT_TAKEN_IN_CALL,
        ENGINE,
    ),
    ("IOC order in a call", new(instrument="AUC", time_in_force=TimeInForce.IOC), RejectCode.NOT_TAKEN_IN_CALL, ENGINE),
    ("post-only order in a call", new(instrument="AUC", post_only=True), RejectCode.NOT_TAKEN_IN_CALL, ENGINE),
    (
        "phase change not allowed",
        command(SetTradingPhase, ts=T, instrument="AUC", phase=TradingPhase.CONTINUOUS),
        RejectCode.PHASE_CHANGE_NOT_ALLOWED,
        ENGINE,
    ),
    (
        "phase change to the same phase",
        command(SetTradingPhase, ts=T, instrument="EUA", phase=TradingPhase.CONTINUOUS),
        RejectCode.PHASE_CHANGE_NOT_ALLOWED,
        ENGINE,
    ),
    (
        "unknown trading phase",
        command(SetTradingPhase, ts=T, instrument="EUA", phase="lunch"),
        RejectCode.INVALID_TRADING_PHASE,
        EITHER,
    ),
    (
        "settlement window opened twice",
        command(OpenSettlementWindow, ts=T, instrument="AUC"),
        RejectCode.SETTLEMENT_WINDOW_OPEN,
        ENGINE,
    ),
    (
        "schedule point done twice",
        command(ScheduleReached, ts=T, trading_date=20240108, point="close:EUA"),
        RejectCode.SCHEDULE_POINT_PASSED,
        ENGINE,
    ),
    (
        "schedule point of a day already closed",
        command(ScheduleReached, ts=T, trading_date=20240105, point="close:EUA"),
        RejectCode.TRADING_DATE_NOT_AFTER_LAST,
        ENGINE,
    ),
    (
        "trading day extended by nothing",
        command(ShiftSchedule, ts=T, trading_date=20240102, seconds=0),
        RejectCode.INVALID_SCHEDULE_CHANGE,
        EITHER,
    ),
    (
        "settlement window of an unknown instrument",
        command(OpenSettlementWindow, ts=T, instrument="XYZ"),
        RejectCode.UNKNOWN_INSTRUMENT,
        ENGINE,
    ),
    (
        "phase of an unknown instrument",
        command(SetTradingPhase, ts=T, instrument="XYZ", phase=TradingPhase.HALTED),
        RejectCode.UNKNOWN_INSTRUMENT,
        ENGINE,
    ),
    # -- order state
    ("duplicate of open order", new(client_order_id="open-1"), RejectCode.DUPLICATE_CLIENT_ORDER_ID, ENGINE),
    ("duplicate of filled order", new(client_order_id="filled"), RejectCode.DUPLICATE_CLIENT_ORDER_ID, ENGINE),
    ("cancel unknown id", cancel(order_id=999), RejectCode.UNKNOWN_ORDER, ENGINE),
    ("cancel id zero", cancel(order_id=0), RejectCode.UNKNOWN_ORDER, EITHER),
    ("cancel unknown client id", cancel(order_id=None, client_order_id="never"), RejectCode.UNKNOWN_ORDER, ENGINE),
    (
        "cancel another's client id",
        cancel(account="bob", order_id=None, client_order_id="open-1"),
        RejectCode.UNKNOWN_ORDER,
        ENGINE,
    ),
    ("replace unknown id", replace(order_id=999), RejectCode.UNKNOWN_ORDER, ENGINE),
    ("cancel filled by id", cancel(order_id=1), RejectCode.ORDER_CLOSED, ENGINE),
    ("cancel filled by client id", cancel(order_id=None, client_order_id="filled"), RejectCode.ORDER_CLOSED, ENGINE),
    ("cancel filled taker", cancel(account="bob", order_id=2), RejectCode.ORDER_CLOSED, ENGINE),
    ("replace filled", replace(order_id=1), RejectCode.ORDER_CLOSED, ENGINE),
    ("cancel another's order", cancel(account="bob"), RejectCode.NOT_ORDER_OWNER, ENGINE),
    ("replace another's order", replace(account="bob"), RejectCode.NOT_ORDER_OWNER, ENGINE),
    ("cancel naming nothing", cancel(order_id=None), RejectCode.ORDER_REFERENCE_REQUIRED, EITHER),
    ("cancel naming both", cancel(client_order_id="open-1"), RejectCode.ORDER_REFERENCE_REQUIRED, EITHER),
    ("replace naming nothing", replace(order_id=None), RejectCode.ORDER_REFERENCE_REQUIRED, EITHER),
    ("replace to the filled quantity", replace(quantity=3), RejectCode.REPLACE_QUANTITY_NOT_ABOVE_FILLED, ENGINE),
    ("replace below the filled quantity", replace(quantity=2), RejectCode.REPLACE_QUANTITY_NOT_ABOVE_FILLED, ENGINE),
    ("replace same terms", replace(quantity=10, price=7000), RejectCode.REPLACE_CHANGES_NOTHING, ENGINE),
    ("replace naming no terms", replace(quantity=None), RejectCode.REPLACE_CHANGES_NOTHING, EITHER),
    # -- admin
    ("unknown command object", Unknown, RejectCode.UNKNOWN_COMMAND, ENGINE),
    ("none as command", lambda: None, RejectCode.UNKNOWN_COMMAND, ENGINE),
    ("dict as command", lambda: {"ts": T, "account": "alice"}, RejectCode.UNKNOWN_COMMAND, ENGINE),
    (
        "impossible trading date",
        command(EndOfDay, ts=T, trading_date=20241301),
        RejectCode.INVALID_TRADING_DATE,
        EITHER,
    ),
    (
        "trading date as string",
        command(EndOfDay, ts=T, trading_date="20240106"),
        RejectCode.INVALID_TRADING_DATE,
        EITHER,
    ),
    (
        "same trading date again",
        command(EndOfDay, ts=T, trading_date=20240105),
        RejectCode.TRADING_DATE_NOT_AFTER_LAST,
        ENGINE,
    ),
    (
        "earlier trading date",
        command(EndOfDay, ts=T, trading_date=20240101),
        RejectCode.TRADING_DATE_NOT_AFTER_LAST,
        ENGINE,
    ),
    (
        "open an account already open",
        command(OpenAccount, ts=T, account="alice", order_value_limit=1),
        RejectCode.ACCOUNT_ALREADY_OPEN,
        RISK,
    ),
    ("open the fee account", command(OpenAccount, ts=T, account="carbonx-fees"), RejectCode.ACCOUNT_ALREADY_OPEN, RISK),
    (
        "open an account seen without pre-trade risk",
        command(OpenAccount, ts=T, account="bob"),
        RejectCode.ACCOUNT_ALREADY_OPEN,
        ENGINE,
    ),
]

# Commands after which both engines must still behave the same (they touch every part of the setup).
PROBES = [
    NewOrder(ts=T + 1, account="carol", client_order_id="p1", instrument="EUA", side=Side.BUY, quantity=20, price=7200),
    NewOrder(
        ts=T + 2, account="carol", client_order_id="p2", instrument="EUA", side=Side.SELL, quantity=20, price=6800
    ),
    NewOrder(ts=T + 3, account="carol", client_order_id="p3", instrument="TST", side=Side.BUY, quantity=4, price=7000),
    ReplaceOrder(ts=T + 4, account="alice", client_order_id="po", quantity=7),
    EndOfDay(ts=T + 5, trading_date=20240108),
    NewOrder(
        ts=T + 6, account="alice", client_order_id="fresh", instrument="EUA", side=Side.BUY, quantity=1, price=6000
    ),
    NewOrder(
        ts=T + 7, account="alice", client_order_id="fresh-2", instrument="EUA", side=Side.BUY, quantity=1, price=6900
    ),
    Withdraw(ts=T + 8, account="alice", asset="EUR", amount=100_000),
    Deposit(ts=T + 9, account="carol", asset="EUA", amount=1000),
    Withdraw(ts=T + 10, account="alice", asset="EUA", amount=5000),
]


def assert_only_seq_moved(rejected: Engine, twin: Engine) -> None:
    twin.counters.seq += 1
    assert rejected.state_hash() == twin.state_hash(), "the reject changed more than the sequence counter"
    assert rejected.handle_all(PROBES) == twin.handle_all(PROBES)


@pytest.mark.parametrize("builder", [build, build_risky])
def test_setup_is_what_the_cases_assume(builder):
    engine = builder()
    book = engine.books["EUA"]
    assert book.depth(Side.SELL) == [(7000, 7, 1)] and book.depth(Side.BUY) == [(6900, 5, 1)]
    assert engine.open_orders[3].filled == 3 and not {1, 2, 4} & set(engine.open_orders)
    assert engine.open_orders[6].book.symbol == "TST" and engine.last_closed_date == 20240105
    assert book.last_price == 7000


def test_risky_setup_holds_what_the_risk_cases_assume():
    alice = build_risky().accounts["alice"]
    assert (alice.cash, alice.reserved_cash) == (155_998_400, 34_501_750)
    assert (alice.units["EUA"], alice.reserved_units["EUA"]) == (12_000, 7_000)
    assert (alice.units["TST"], alice.reserved_units["TST"]) == (10_000, 4_000)
    assert (alice.units["CER"], alice.order_value_limit) == (0, ALICE_LIMIT)


@pytest.mark.parametrize("make, code, layer", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_reject(make, code, layer):
    builder = build_risky if layer == RISK else build
    rejected, twin = builder(), builder()
    try:
        command = make()
    except InvalidCommand as exc:
        assert layer == EITHER, f"{code.name} depends on the engine's state, yet building the command refused it"
        assert (exc.code, exc.field) == (code, exc.field) and exc.code is code
        assert exc.field in make.func.__struct_fields__, exc.field
        return
    seq = rejected.counters.seq
    events = rejected.handle(command)
    assert len(events) == 1
    event = events[0]
    assert type(event) is (OrderRejected if type(command) is NewOrder else RequestRejected)
    assert (event.code, event.text) == (code, code.text)
    assert event.seq == seq + 1
    ts = getattr(command, "ts", None)
    assert event.ts == (ts if type(ts) is int and ts >= 0 else 0)
    assert_only_seq_moved(rejected, twin)
    for book in rejected.books.values():
        book._check()


COMPLIANCE_CODES = {code for code in RejectCode if 600 <= code < 700}  # one case each in test_compliance.py
SESSION_CODES = {code for code in RejectCode if 700 <= code < 800}  # the gateway's: test_gateway_protocol.py
# The trading calendar's refusals of the operator's requests, made by the gateway (it knows the calendar):
# tests/gateway/schedule/test_trading_days.py
CALENDAR_CODES = {RejectCode.NO_TRADING_CALENDAR, RejectCode.END_OF_DAY_NOT_SKIPPED}
PRIMARY_AUCTION_CODES = {code for code in RejectCode if 800 <= code < 900}  # test_primary_auction.py
FUTURES_CODES = {RejectCode.MARGIN_CALL, RejectCode.NO_FUTURES}  # test_futures.py (they need a futures engine)
BLOCK_CODES = {  # test_blocks.py (block trades need a futures engine)
    RejectCode.INVALID_BLOCK_KIND,
    RejectCode.BLOCK_BELOW_MINIMUM,
    RejectCode.INVALID_COUNTERPARTY,
    RejectCode.DUPLICATE_BLOCK_ID,
    RejectCode.BLOCK_TERMS_DIFFER,
    RejectCode.NOT_A_FUTURES_CONTRACT,
    RejectCode.NO_MARKET_PRICE,
}
CLOSE_OUT_CODES = {RejectCode.NOT_ON_MARGIN_CALL}  # test_close_out.py


def test_every_reachable_code_is_covered():
    assert {case[2] for case in CASES} == (
        set(RejectCode)
        - UNREACHABLE
        - COMPLIANCE_CODES
        - SESSION_CODES
        - PRIMARY_AUCTION_CODES
        - CALENDAR_CODES
        - FUTURES_CODES
        - BLOCK_CODES
        - CLOSE_OUT_CODES
    )


def test_every_futures_code_has_its_own_test():
    source = (Path(__file__).parent / "test_futures.py").read_text()
    assert all(f"RejectCode.{code.name}" in source for code in FUTURES_CODES)
    blocks = (Path(__file__).parent / "test_blocks.py").read_text()
    assert all(f"RejectCode.{code.name}" in blocks for code in BLOCK_CODES)
    close_out = (Path(__file__).parent / "test_close_out.py").read_text()
    assert all(f"RejectCode.{code.name}" in close_out for code in CLOSE_OUT_CODES)


def test_every_primary_auction_code_has_its_own_test():
    source = (Path(__file__).parent / "test_primary_auction.py").read_text()
    assert PRIMARY_AUCTION_CODES and all(f"RejectCode.{code.name}" in source for code in PRIMARY_AUCTION_CODES)


def test_every_compliance_code_has_its_own_test():
    source = "".join(
        (Path(__file__).parent / name).read_text() for name in ("test_compliance.py", "test_compliance_by_year.py")
    )
    assert COMPLIANCE_CODES and all(f"RejectCode.{code.name}" in source for code in COMPLIANCE_CODES)


def test_risk_cases_need_pre_trade_risk():
    # Without pre-trade risk each RISK case is accepted or refused for another reason (an unknown
    # account or asset aside, which that engine refuses too): the risk engine is what refuses them.
    for name, make, code, layer in CASES:
        if (
            layer != RISK
            or code in (RejectCode.UNKNOWN_ACCOUNT, RejectCode.ACCOUNT_ALREADY_OPEN, RejectCode.UNKNOWN_ASSET)
            or type(make()) in (Deposit, Withdraw)
        ):
            continue
        events = build().handle(make())
        assert not (len(events) == 1 and getattr(events[0], "code", None) is code), name


def test_codes_are_grouped_by_stage_and_have_text():
    for code in RejectCode:
        assert 100 <= code < 900 and code.text
    assert len({code.value for code in RejectCode}) == len(RejectCode)


@pytest.mark.parametrize(
    "make, request_name",
    [
        (cancel(order_id=999), "cancel"),
        (replace(order_id=999), "replace"),
        (command(MassCancel, ts=T, account="alice", instrument="XXX"), "mass_cancel"),
        (command(EndOfDay, ts=T, trading_date=20240101), "end_of_day"),
        (Unknown, "unknown"),
        (deposit(), "deposit"),
        (withdraw(), "withdraw"),
        (command(OpenAccount, ts=T, account="alice"), "open_account"),
    ],
)
def test_cancel_reject_names_its_request(make, request_name):
    assert build().handle(make())[0].request == request_name


def test_order_reject_echoes_its_fields():
    event = build().handle(new(quantity=1001, client_order_id="q0")())[0]
    assert (event.account, event.client_order_id, event.instrument) == ("alice", "q0", "EUA")
    assert event.code is RejectCode.QUANTITY_ABOVE_MAXIMUM


def test_cancel_reject_echoes_its_references():
    event = build().handle(cancel(order_id=999)())[0]
    assert (event.account, event.order_id, event.client_order_id) == ("alice", 999, None)


def test_non_positive_price_is_refused():
    for price in (0, -100):
        try:
            events = build().handle(new(price=price)())
        except InvalidCommand as exc:
            code = exc.code
        else:
            assert len(events) == 1
            code = events[0].code
        assert code in (RejectCode.INVALID_PRICE, RejectCode.PRICE_OUT_OF_RANGE)


def test_rejected_post_only_from_a_new_account_leaves_no_trace():
    # An account first seen in a refused order should not enter the engine's state: the reject
    # "changes nothing", so the engine must hash as if the command had never come but for the counter.
    rejected, twin = build(), build()
    events = rejected.handle(new(account="newcomer", price=7000, post_only=True)())
    assert events[0].code is RejectCode.POST_ONLY_WOULD_TAKE
    assert_only_seq_moved(rejected, twin)


# -- garbage ---------------------------------------------------------------------------------

ANY_GARBAGE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.text(string.printable, max_size=70),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.tuples(st.integers()),
    st.sampled_from([float("nan"), "B ", "buy", "limit", "gtc", "NONE ", Side, object()]),
)

SIDES = {"B", "S"}
ORDER_TYPES = {"LIMIT", "MARKET"}
TIFS = {"GTC", "DAY", "IOC", "FOK", "GTD"}
STPS = {"NONE", "CANCEL_RESTING", "CANCEL_TAKING", "CANCEL_BOTH"}
SYMBOLS = {"EUA", "CER", "ERU", "TST"}


def _is(value, kind) -> bool:
    return type(value) is kind


def _in(value, values) -> bool:
    try:
        return value in values
    except TypeError:  # unhashable
        return False


def _price_ok(value) -> bool:
    return _is(value, int) and 1 <= value <= 100_000


def _date_ok(value) -> bool:
    if not _is(value, int) or not 10000101 <= value <= 99991231:
        return False
    try:
        datetime.date(value // 10000, value // 100 % 100, value % 100)
    except ValueError:
        return False
    return True


# What each field may hold and still be valid for some command (None where None is allowed).
# A value outside these is refused whatever the other fields say.
VALID = {
    "ts": lambda v: _is(v, int) and v >= 0,
    "account": lambda v: _is(v, str) and v != "",
    "client_order_id": lambda v: (_is(v, int) and v >= 0) or (_is(v, str) and 0 < len(v) <= 64),
    "instrument": lambda v: _in(v, SYMBOLS),
    "side": lambda v: _in(v, SIDES),
    "order_type": lambda v: _in(v, ORDER_TYPES),
    "time_in_force": lambda v: _in(v, TIFS),
    "self_trade_prevention": lambda v: v is None or _in(v, STPS),
    "quantity": lambda v: _is(v, int) and 1 <= v <= 1000,
    "price": lambda v: v is None or _price_ok(v),
    "display_quantity": lambda v: v is None or (_is(v, int) and 1 <= v <= 1000),
    "stop_price": lambda v: v is None or _price_ok(v),
    "expire_date": lambda v: v is None or _date_ok(v),
    "post_only": lambda v: v is True or v is False,
    "order_id": lambda v: v is None or (_is(v, int) and v > 0),
    "mode": lambda v: _in(v, STPS),
    "trading_date": _date_ok,
    "asset": lambda v: _is(v, str) and v != "",
    "amount": lambda v: _is(v, int) and 1 <= v < 2**63,
    "order_value_limit": lambda v: v is None or (_is(v, int) and 1 <= v < 2**63),
}

GOOD = {
    "ts": st.integers(min_value=0, max_value=2**62),
    "account": st.sampled_from(["alice", "bob", "zed"]),
    "client_order_id": st.sampled_from(["n1", 7, "open-1", 2**62]),
    "instrument": st.sampled_from(sorted(SYMBOLS)),
    "side": st.sampled_from(["B", "S", Side.BUY, Side.SELL]),
    "order_type": st.sampled_from(list(OrderType)),
    "time_in_force": st.sampled_from(list(TimeInForce)),
    "self_trade_prevention": st.sampled_from([None, *SelfTradePrevention]),
    "quantity": st.integers(min_value=1, max_value=1000),
    "price": st.one_of(st.none(), st.integers(min_value=1, max_value=100_000)),
    "display_quantity": st.one_of(st.none(), st.integers(min_value=1, max_value=1000)),
    "stop_price": st.one_of(st.none(), st.integers(min_value=1, max_value=100_000)),
    "expire_date": st.sampled_from([None, 20240106, 20991231]),
    "post_only": st.booleans(),
    "order_id": st.sampled_from([None, 3, 5, 6]),
    "mode": st.sampled_from(list(SelfTradePrevention)),
    "trading_date": st.sampled_from([20240106, 20240110]),
    "asset": st.sampled_from(["EUR", "EUA", "TST", "USD"]),
    "amount": st.integers(min_value=1, max_value=10**12),
    "order_value_limit": st.one_of(st.none(), st.integers(min_value=1, max_value=10**12)),
}


def bad(field: str):
    """Values that are invalid for ``field`` whatever the other fields say."""
    return ANY_GARBAGE.filter(lambda v: not VALID[field](v))


@st.composite
def garbage_fields(draw, fields, breakable=None):
    """Field values with at least one that cannot be valid; the others good or garbage.

    The broken field is one of ``breakable`` (default: any of ``fields``).
    """
    broken = draw(st.sampled_from(breakable or fields))
    return {field: draw(bad(field) if field == broken else st.one_of(GOOD[field], ANY_GARBAGE)) for field in fields}


NEW_FIELDS = [
    "ts",
    "account",
    "client_order_id",
    "instrument",
    "side",
    "order_type",
    "time_in_force",
    "self_trade_prevention",
    "quantity",
    "price",
    "display_quantity",
    "stop_price",
    "expire_date",
    "post_only",
]


def assert_refused_and_nothing_changed(
    kind: type, fields: dict, reject_type: type, codes: range | None = None, builder=build
):
    """Building ``kind(**fields)`` raises InvalidCommand, or the engine answers one reject and changes nothing."""
    rejected, twin = builder(), builder()
    try:
        command = kind(**fields)
    except InvalidCommand as exc:
        code = exc.code
        assert isinstance(code, RejectCode) and exc.field in fields, exc
    else:
        events = rejected.handle(command)
        assert len(events) == 1 and type(events[0]) is reject_type, events
        code = events[0].code
        assert isinstance(code, RejectCode)
        twin.counters.seq += 1
        assert rejected.state_hash() == twin.state_hash()
    if codes is not None:
        assert code in codes, code


@settings(max_examples=300)
@given(garbage_fields(NEW_FIELDS))
def test_garbage_new_order_is_refused_in_validation(fields):
    assert_refused_and_nothing_changed(NewOrder, fields, OrderRejected, codes=range(100, 200))


@settings(max_examples=200)
@given(garbage_fields(["ts", "account", "order_id", "client_order_id"]))
def test_garbage_cancel_is_refused(fields):
    assert_refused_and_nothing_changed(CancelOrder, fields, RequestRejected)


@settings(max_examples=200)
@given(garbage_fields(["ts", "account", "order_id", "client_order_id", "quantity", "price"]))
def test_garbage_replace_is_refused(fields):
    assert_refused_and_nothing_changed(ReplaceOrder, fields, RequestRejected)


@settings(max_examples=100)
@given(
    st.one_of(
        st.tuples(st.just(MassCancel), garbage_fields(["ts", "account", "instrument"], breakable=["ts", "account"])),
        st.tuples(st.just(SetSelfTradePrevention), garbage_fields(["ts", "account", "mode"])),
        st.tuples(st.just(EndOfDay), garbage_fields(["ts", "trading_date"])),
    )
)
def test_garbage_admin_commands_are_refused(kind_and_fields):
    kind, fields = kind_and_fields
    assert_refused_and_nothing_changed(kind, fields, RequestRejected)


@settings(max_examples=100)
@given(
    st.one_of(
        st.tuples(st.just(Deposit), garbage_fields(["ts", "account", "asset", "amount"])),
        st.tuples(st.just(Withdraw), garbage_fields(["ts", "account", "asset", "amount"])),
        st.tuples(
            st.just(OpenAccount), garbage_fields(["ts", "account", "order_value_limit", "self_trade_prevention"])
        ),
    )
)
def test_garbage_account_commands_are_refused_under_risk(kind_and_fields):
    kind, fields = kind_and_fields
    assert_refused_and_nothing_changed(kind, fields, RequestRejected, builder=build_risky)


@settings(max_examples=100)
@given(ANY_GARBAGE)
def test_anything_that_is_not_a_command_is_an_unknown_command(value):
    events = build().handle(value)
    assert len(events) == 1 and events[0].code is RejectCode.UNKNOWN_COMMAND


# -- well-formed commands the engine refuses -----------------------------------------------------
# Built without error, these reach the engine; they aim at its state-dependent rules (unknown
# instruments, sizes and prices outside the instrument's rules, duplicate ids, orders that are gone
# or not one's own). Whatever the engine does, it must not raise; when it refuses, nothing but the
# sequence counter may change.

ACCOUNTS = st.sampled_from(["alice", "bob", "carol"])
CLIDS = st.sampled_from(["open-1", "filled", "po", "tst-1", "take", "fill", "fresh", 0, 7])
PRICES = st.one_of(st.integers(min_value=1, max_value=200_000), st.sampled_from([6900, 6950, 7000, 7001, 7003]))
QUANTITIES = st.one_of(st.integers(min_value=1, max_value=2_000), st.sampled_from([1, 2, 3, 10, 1000, 1001]))


@st.composite
def new_order_aimed_at_the_rules(draw):
    time_in_force = draw(st.sampled_from([TimeInForce.GTC, TimeInForce.DAY, TimeInForce.GTD]))
    post_only = draw(st.booleans())
    quantity = draw(QUANTITIES)
    return NewOrder(
        ts=T,
        account=draw(ACCOUNTS),
        client_order_id=draw(CLIDS),
        instrument=draw(st.sampled_from(["EUA", "TST", "XXX", "CER"])),
        side=draw(st.sampled_from(list(Side))),
        quantity=quantity,
        price=draw(PRICES),
        time_in_force=time_in_force,
        expire_date=draw(st.sampled_from([20240104, 20240105, 20240106])) if time_in_force is GTD else None,
        post_only=post_only,
        stop_price=None if post_only else draw(st.one_of(st.none(), PRICES)),
        display_quantity=draw(st.one_of(st.none(), st.integers(1, min(3, quantity)))),
    )


WELL_FORMED = st.one_of(
    new_order_aimed_at_the_rules(),
    st.builds(CancelOrder, ts=st.just(T), account=ACCOUNTS, order_id=st.integers(1, 9)),
    st.builds(CancelOrder, ts=st.just(T), account=ACCOUNTS, client_order_id=CLIDS),
    st.builds(
        ReplaceOrder,
        ts=st.just(T),
        account=ACCOUNTS,
        order_id=st.integers(1, 9),
        quantity=st.one_of(st.none(), QUANTITIES),
        price=PRICES,
    ),
    st.builds(
        ReplaceOrder,
        ts=st.just(T),
        account=ACCOUNTS,
        client_order_id=CLIDS,
        quantity=QUANTITIES,
        price=st.one_of(st.none(), PRICES),
    ),
    st.builds(MassCancel, ts=st.just(T), account=ACCOUNTS, instrument=st.sampled_from([None, "EUA", "XXX"])),
    st.builds(EndOfDay, ts=st.just(T), trading_date=st.sampled_from([20240101, 20240105, 20240106])),
)


WELL_FORMED_UNDER_RISK = st.one_of(
    WELL_FORMED,
    st.builds(
        NewOrder,
        ts=st.just(T),
        account=st.sampled_from(["alice", "bob", "carol", "zed"]),
        client_order_id=st.just("fresh"),
        instrument=st.sampled_from(["EUA", "CER", "TST"]),
        side=st.sampled_from(list(Side)),
        quantity=st.integers(1, 60),
        price=st.integers(6500, 7500),
        stop_price=st.sampled_from([None, None, 6950, 7050]),
    ),
    st.builds(
        NewOrder,
        ts=st.just(T),
        account=ACCOUNTS,
        client_order_id=st.just("mkt"),
        instrument=st.sampled_from(["EUA", "TST"]),
        side=st.sampled_from(list(Side)),
        quantity=st.integers(1, 60),
        order_type=st.just(MARKET),
    ),
    st.builds(
        Deposit,
        ts=st.just(T),
        account=st.sampled_from(["alice", "zed", "carbonx-fees"]),
        asset=st.sampled_from(["EUR", "EUA", "TST", "CER", "USD"]),
        amount=st.integers(1, 10**9),
    ),
    st.builds(
        Withdraw,
        ts=st.just(T),
        account=st.sampled_from(["alice", "bob", "zed", "carbonx-fees"]),
        asset=st.sampled_from(["EUR", "EUA", "TST", "CER", "USD"]),
        amount=st.one_of(st.integers(1, 10**9), st.sampled_from([5000, 5001, 6000, 6001, 121_496_650, 121_496_651])),
    ),
    st.builds(
        OpenAccount,
        ts=st.just(T),
        account=st.sampled_from(["alice", "dave", "carbonx-fees"]),
        order_value_limit=st.one_of(st.none(), st.integers(1, 10**9)),
    ),
)


def check_refusal_changes_nothing(build_engine, command) -> Engine:
    """Send ``command`` to a fresh engine; if it is refused, its state must equal a twin's but for seq."""
    rejected, twin = build_engine(), build_engine()
    events = rejected.handle(command)
    if len(events) == 1 and type(events[0]) in (OrderRejected, RequestRejected):
        assert events[0].text == events[0].code.text
        twin.counters.seq += 1
        assert rejected.state_hash() == twin.state_hash()
    for book in rejected.books.values():
        book._check()
    return rejected


@settings(max_examples=300)
@given(WELL_FORMED_UNDER_RISK)
def test_a_refused_well_formed_command_changes_nothing_under_risk(command):
    rejected = check_refusal_changes_nothing(build_risky, command)
    for account in rejected.accounts.values():
        assert 0 <= account.reserved_cash <= account.cash
        assert all(0 <= account.reserved_units[s] <= account.units[s] for s in rejected.books)


@settings(max_examples=300)
@given(WELL_FORMED)
def test_a_refused_well_formed_command_changes_nothing(command):
    check_refusal_changes_nothing(build, command)
