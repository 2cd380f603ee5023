"""A command's checks when it is built: the one-expression acceptance of the usual new order and cancel
(exchange/commands.py) against the field-by-field checks, which are the reference.

(hypothesis) For fields drawn from valid values, wire strings, near misses and wrong types alike, building a
``NewOrder`` or a ``CancelOrder`` gives the same outcome as the field-by-field checks alone: the same
InvalidCommand (code and field), or the same command with the same fields, enums as members.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from exchange import CancelOrder, NewOrder, OrderType, SelfTradePrevention, Side, TimeInForce
from exchange.commands import MAX_INT, InvalidCommand, _check_account, _check_order_reference, _check_ts

INTS = st.one_of(
    st.integers(-3, 3),
    st.integers(1, 10**6),
    st.sampled_from([MAX_INT, MAX_INT + 1, -MAX_INT - 1]),
    st.booleans(),
    st.floats(0, 10, allow_nan=False),
    st.none(),
)
TEXTS = st.one_of(
    st.text(max_size=3), st.sampled_from(["bank", "x" * 64, "x" * 65, "EUA"]), st.none(), st.integers(0, 9)
)
IDS = st.one_of(
    st.integers(-2, 10**6), st.text(max_size=3), st.sampled_from(["c" * 64, "c" * 65, MAX_INT + 1]), st.none()
)


def enum_values(enum):
    return st.one_of(
        st.sampled_from(list(enum)), st.sampled_from([member.value for member in enum]), st.just("BAD"), st.none()
    )


# Every field's strategy: valid values, wire strings, near misses (0, one past a bound), wrong types.
NEW_ORDER_FIELD_VALUES = {
    "ts": INTS,
    "account": TEXTS,
    "client_order_id": IDS,
    "instrument": TEXTS,
    "side": enum_values(Side),
    "quantity": INTS,
    "price": INTS,
    "order_type": enum_values(OrderType),
    "time_in_force": enum_values(TimeInForce),
    "display_quantity": INTS,
    "stop_price": INTS,
    "expire_date": st.one_of(st.none(), st.sampled_from([20260105, 20260231, 7])),
    "post_only": st.one_of(st.booleans(), st.just(0), st.none()),
    "self_trade_prevention": st.one_of(st.none(), enum_values(SelfTradePrevention)),
}
USUAL_ORDERS = st.sampled_from(
    [
        {
            "ts": 5,
            "account": "bank",
            "client_order_id": 7,
            "instrument": "EUA",
            "side": Side.BUY,
            "quantity": 3,
            "price": 7000,
        },
        {
            "ts": 0,
            "account": "b",
            "client_order_id": "c-1",
            "instrument": "CER",
            "side": Side.SELL,
            "quantity": 1,
            "order_type": OrderType.MARKET,
            "time_in_force": TimeInForce.IOC,
        },
        {
            "ts": 5,
            "account": "bank",
            "client_order_id": 0,
            "instrument": "EUA",
            "side": Side.SELL,
            "quantity": 3,
            "price": 1,
            "time_in_force": TimeInForce.DAY,
        },
    ]
)


@st.composite
def new_order_fields(draw):
    """A usual order with up to three fields changed to anything their strategies give (so that the
    one-expression acceptance is met often, and each of its tests is missed by one field at a time)."""
    fields = dict(draw(USUAL_ORDERS))
    for name in draw(st.lists(st.sampled_from(sorted(NEW_ORDER_FIELD_VALUES)), max_size=3, unique=True)):
        fields[name] = draw(NEW_ORDER_FIELD_VALUES[name])
    return fields


def outcome(build):
    try:
        command = build()
    except InvalidCommand as refused:
        return ("refused", refused.code, refused.field)
    return ("built", {name: getattr(command, name) for name in command.__struct_fields__})


class _UncheckedNewOrder(NewOrder, frozen=True):
    def __post_init__(self) -> None:
        pass


class _UncheckedCancel(CancelOrder, frozen=True):
    def __post_init__(self) -> None:
        pass


def field_by_field(cls, fields):
    """The command built with the one-expression acceptance left out: the reference checks alone."""
    command = (_UncheckedNewOrder if cls is NewOrder else _UncheckedCancel)(**fields)
    if cls is NewOrder:
        command._check_fields()
    else:
        _check_ts(command.ts)
        _check_account(command.account)
        _check_order_reference(command.order_id, command.client_order_id)
    return command


@settings(max_examples=600)
@given(new_order_fields())
def test_a_new_order_is_accepted_or_refused_as_the_field_by_field_checks_say(fields):
    assert outcome(lambda: NewOrder(**fields)) == outcome(lambda: field_by_field(NewOrder, fields))


@given(
    st.fixed_dictionaries(
        {"ts": st.one_of(st.just(5), INTS), "account": st.one_of(st.just("bank"), TEXTS)},
        optional={"order_id": st.one_of(INTS, st.integers(1, 10**6)), "client_order_id": st.one_of(st.just(9), IDS)},
    )
)
def test_a_cancel_is_accepted_or_refused_as_the_field_by_field_checks_say(fields):
    assert outcome(lambda: CancelOrder(**fields)) == outcome(lambda: field_by_field(CancelOrder, fields))


def test_the_usual_orders_are_built_with_members():
    order = NewOrder(ts=1, account="bank", client_order_id=7, instrument="EUA", side="B", quantity=2, price=7000)
    assert order.side is Side.BUY and order.order_type is OrderType.LIMIT and order.time_in_force is TimeInForce.GTC
    market = NewOrder(
        ts=1, account="bank", client_order_id="m", instrument="EUA", side=Side.SELL, quantity=2, order_type="MARKET"
    )
    assert market.order_type is OrderType.MARKET and market.price is None
