"""Random command sequences through one Engine, with the whole state checked after every step.

How it works
------------
A hypothesis ``RuleBasedStateMachine`` sends an :class:`exchange.Engine`
random commands on two instruments from three accounts: new orders of every
kind (limit, market, iceberg, post-only, stop-limit; GTC, DAY, IOC, FOK,
GTD; every self-trade prevention mode), cancels and replaces by order id or
client order id (of open, closed and unknown orders, by the owner or not),
mass cancels, default self-trade modes and ends of day. Prices sit on a few
ticks around each instrument's reference, so orders cross often, plus now
and then a resting price at the edge of the market collar (just inside, on,
just beyond), so market orders meet its boundary.

The test keeps its own model of every order, built from the events alone
(:class:`TrackedOrder`): the quantity submitted (changed by replaces), what
filled, what was cancelled or expired, whether it waits as a stop, when it
last joined the back of its level and how much of it is shown. After every
command the model must agree with the engine:

1. every book passes ``OrderBook._check()``;
2. the engine's ``open_orders`` index holds exactly the resting orders and
   the waiting stops, and each open order is under its client order id;
3. within every level the live orders stand in the arrival order the model
   saw (FIFO), and each shows what the model says it shows;
4. quantity is conserved for every order: submitted = filled + cancelled +
   expired + open leaves;
5. the sequence numbers continue without a gap, every event carries its
   command's timestamp, every trade prints at the maker's price, within the
   taker's limit (a market order's: within the collar around the last trade
   price when it arrived), for no more than the maker showed, and never with
   a post-only order as the taker;
6. market, IOC and FOK orders never rest, an FOK order fills in full or not
   at all, a stop triggers only once the last price reaches it, and no
   waiting stop is left that the last price has reached; an end of day
   expires exactly the DAY orders and the GTD orders due by it;
7. the depth built from LevelChanged events equals the books' depth;
8. cancels, replaces and mass cancels act on exactly the orders the model
   names (by order id, or by client order id within the account and the
   trading day), and are refused with the code the model predicts
   (UNKNOWN_ORDER, ORDER_CLOSED, NOT_ORDER_OWNER, the replace rules); a
   duplicate client order id is refused exactly when the model has it in use;
9. every so often, and at the end, replaying all the commands into a fresh
   engine one by one gives the same events and the same ``state_hash()``,
   and replaying them as one batch (``handle_all``, which conflates depth
   events and so numbers fewer events) the same state but for that count.

Commands that fail their own validation when built (``InvalidCommand``) are
not sent: that is the gateway's answer, tested elsewhere. Any exception out
of ``Engine.handle`` fails the test.

The machine runs twice: :class:`EngineMachine` on the matching alone
(``pre_trade_risk=False``), and :class:`RiskMachine` with pre-trade risk on,
the exchange's way: accounts opened and funded at the start, random
deposits and withdrawals, a model of every holding and reservation built
from the events, the risk rejects it predicts, and after every step
10. nothing negative, 11. reservations equal to the open orders' leaves x
reserve_per_lot, 12. every asset conserved (fee account included) and
13. nothing reserved once no order is open (see the class).
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from fractions import Fraction

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from scenario_helpers import shipped_instruments

from exchange import (
    AccountOpened,
    CancelOrder,
    CancelReason,
    Deposit,
    Deposited,
    EndOfDay,
    Engine,
    InvalidCommand,
    LevelChanged,
    MassCancel,
    MassCancelCompleted,
    NewOrder,
    OpenAccount,
    OpenSettlementWindow,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    OrderReplaced,
    OrderType,
    RejectCode,
    ReplaceOrder,
    RequestRejected,
    SelfTradePrevention,
    SelfTradePreventionSet,
    SetSelfTradePrevention,
    SettlementPriceFixed,
    SettlementWindowOpened,
    Side,
    StopTriggered,
    TimeInForce,
    Trade,
    TradingDayClosed,
    Withdraw,
    Withdrawn,
)
from exchange.stops import stop_reached

CONFIGURED_INSTRUMENTS = shipped_instruments()  # every run of the machine starts from them (continuous matching:
# no volatility band)
SYMBOLS = ("EUA", "CER")
ACCOUNTS = ("alice", "bob", "carol")
FIRST_TRADING_DAY = datetime.date(2026, 1, 5)
REPLAY_EVERY_STEPS = 15  # a replay costs the whole history so far, so not after every step

# Prices: mostly a narrow band of ticks around the instrument's reference price, where orders cross;
# sometimes one at the edge of the market collar as it stands (centred on the last trade price), on
# the order's passive side, given as ("collar", ticks past the edge): just inside, on or just beyond
# it, so that market orders sweeping the book meet the collar's boundary.
NEAR_OFFSETS = (-2, -1, 0, 1, 2)
COLLAR_EDGES = (("collar", -1), ("collar", 0), ("collar", 1))
price_offsets = st.one_of(
    st.sampled_from(NEAR_OFFSETS),
    st.sampled_from(NEAR_OFFSETS),
    st.sampled_from(NEAR_OFFSETS),
    st.sampled_from(COLLAR_EDGES),
)
quantities = st.integers(1, 10)
stp_choices = st.sampled_from((None,) + tuple(SelfTradePrevention))
resting_tifs = st.sampled_from((TimeInForce.GTC, TimeInForce.DAY, TimeInForce.GTD))
any_tif = st.sampled_from(tuple(TimeInForce))
accounts = st.sampled_from(ACCOUNTS)
symbols = st.sampled_from(SYMBOLS)
sides = st.sampled_from(tuple(Side))
reuse_choices = st.one_of(st.none(), st.none(), st.none(), st.integers(0, 50))  # mostly a fresh client order id


def first_difference(got: list, expected: list) -> str:
    for index, (left, right) in enumerate(zip(got, expected, strict=False)):
        if left != right:
            return f"first difference at #{index}: {left!r} != {right!r}"
    return f"lengths differ: {len(got)} != {len(expected)}"


def state_without_seq(engine: Engine) -> list[str]:
    """The engine's state lines with the event sequence counter blanked out."""
    return [re.sub(r"\bseq=\d+", "seq=?", line) for line in engine.state_lines()]


def as_date_number(day: datetime.date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


@dataclass
class TrackedOrder:
    """One order as the events tell it."""

    terms: OrderAccepted  # the order as accepted; price and quantity below follow the replaces
    price: int | None  # None for a market order
    quantity: int  # submitted total: from OrderAccepted, then from each OrderReplaced
    collar_reference: int  # the last trade price (else the instrument's reference) when it arrived
    filled: int = 0
    closed_quantity: int = 0  # cancelled or expired
    is_open: bool = True
    waiting: bool = False  # a stop-limit order not yet triggered
    arrival: int = 0  # seq of the event at which it last joined the back of its level
    shown: int | None = None  # lots shown in the book; None until the model sees it rest

    @property
    def order_id(self) -> int:
        return self.terms.order_id

    @property
    def leaves(self) -> int:
        return self.quantity - self.filled - self.closed_quantity

    def slice_size(self, leaves: int) -> int:
        display = self.terms.display_quantity
        return leaves if display is None else min(display, leaves)


def naming(order: TrackedOrder, by_order_id: bool) -> dict:
    """The fields of a cancel or replace that name this order."""
    return {"order_id": order.order_id} if by_order_id else {"client_order_id": order.terms.client_order_id}


def expires_by(order: TrackedOrder, trading_date: int) -> bool:
    """True if the order must have expired by the close of this trading date."""
    tif = order.terms.time_in_force
    return tif is TimeInForce.DAY or (tif is TimeInForce.GTD and order.terms.expire_date <= trading_date)


class EngineMachine(RuleBasedStateMachine):
    """One engine: the rules send it commands, :meth:`absorb` and the invariants hold it to the model."""

    PRE_TRADE_RISK = False  # the matching alone; RiskMachine below runs the same rules with risk on

    def __init__(self) -> None:
        super().__init__()
        self.instruments = {symbol: CONFIGURED_INSTRUMENTS[symbol] for symbol in SYMBOLS}
        self.engine = self.new_engine()
        self.commands: list[object] = []  # every command sent, for the replay
        self.events: list = []  # every event received
        self.orders: dict[int, TrackedOrder] = {}
        self.depth: dict[tuple[str, Side, int], tuple[int, int]] = {}  # from LevelChanged: (lots, orders)
        self.last_price: dict[str, int] = {}  # from Trade events
        self.window: dict[str, list[int]] = {}  # instruments in their settlement window -> [value, lots] traded in it
        self.settlement: dict[str, int | None] = {}  # the last settlement price fixed
        # (account, client order id) -> order id, for ids in use: this trading day's, and open orders'.
        self.client_order_ids: dict[tuple[str, object], int] = {}
        self.next_client_order_id = {account: 1 for account in ACCOUNTS}
        self.used_client_order_ids: dict[str, list[int]] = {account: [] for account in ACCOUNTS}
        self.trading_day = FIRST_TRADING_DAY
        self.ts = 0
        self.steps = 0

    def new_engine(self) -> Engine:
        return Engine(self.instruments, pre_trade_risk=self.PRE_TRADE_RISK)

    # -- sending -------------------------------------------------------------------------------

    def send(self, build, **fields) -> None:
        """Build a command (skipped if it fails its own validation), hand it to the engine, check the events."""
        self.ts += 1_000
        try:
            command = build(ts=self.ts, **fields)
        except InvalidCommand:
            return
        expected = self.expected_outcome(command)
        try:
            events = self.engine.handle(command)
        except Exception as exc:  # noqa: BLE001 - any exception out of handle is the bug being looked for
            raise AssertionError(f"Engine.handle raised on {command!r}") from exc
        first_seq = self.events[-1].seq + 1 if self.events else 1
        # Recorded before the checks, so that the teardown's replay after a failed check still compares
        # like with like.
        self.commands.append(command)
        self.events += events
        self.check_outcome(command, expected, events)
        self.absorb(command, events, first_seq)

    def price(self, symbol: str, offset: int | tuple[str, int], side: Side = Side.BUY) -> int:
        """The price ``offset`` ticks from the reference, or at the collar's edge on ``side``'s passive side."""
        instrument = self.instruments[symbol]
        if isinstance(offset, tuple):
            _, past = offset
            distance = instrument.market_collar + past * instrument.tick_size
            return self.collar_reference(symbol) + (distance if side is Side.SELL else -distance)
        return instrument.reference_price + offset * instrument.tick_size

    def client_order_id(self, account: str, reuse: int | None) -> int:
        """A fresh client order id, or (reuse given) one this account used before."""
        used = self.used_client_order_ids[account]
        if reuse is not None and used:
            return used[reuse % len(used)]
        clid = self.next_client_order_id[account]
        self.next_client_order_id[account] += 1
        used.append(clid)
        return clid

    def pick_order(self, pick: int, open_only: bool) -> TrackedOrder | None:
        """One of the orders accepted so far; an open one if asked and there is one."""
        candidates = sorted(o.order_id for o in self.orders.values() if o.is_open or not open_only)
        if not candidates:
            candidates = sorted(self.orders)
        return self.orders[candidates[pick % len(candidates)]] if candidates else None

    # -- rules ---------------------------------------------------------------------------------

    # Hypothesis picks rules about evenly, so orders get five rules and housekeeping (which empties
    # books) one: enough crossing and resting for the matching to have work to do.

    @rule(
        account=accounts,
        symbol=symbols,
        side=sides,
        offset=price_offsets,
        quantity=quantities,
        tif=any_tif,
        post_only=st.booleans(),
        stp=stp_choices,
        expire_in_days=st.integers(-1, 2),
        reuse=reuse_choices,
    )
    def new_limit_order(self, account, symbol, side, offset, quantity, tif, post_only, stp, expire_in_days, reuse):
        self.send_new_order(
            account,
            symbol,
            side,
            quantity,
            tif,
            stp,
            expire_in_days,
            reuse,
            price=self.price(symbol, offset, side),
            post_only=post_only and tif not in (TimeInForce.IOC, TimeInForce.FOK),
        )

    @rule(
        account=accounts,
        symbol=symbols,
        side=sides,
        offset=st.sampled_from(NEAR_OFFSETS),
        quantity=quantities,
        tif=resting_tifs,
        stp=stp_choices,
    )
    def new_resting_order(self, account, symbol, side, offset, quantity, tif, stp):
        # Passive side of the book: a sell above or a buy below the reference, so the book fills up.
        distance = abs(offset) + 1
        self.send_new_order(
            account,
            symbol,
            side,
            quantity,
            tif,
            stp,
            1,
            None,
            price=self.price(symbol, distance if side is Side.SELL else -distance),
        )

    @rule(
        account=accounts,
        symbol=symbols,
        side=sides,
        quantity=quantities,
        tif=st.sampled_from((TimeInForce.GTC, TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK)),
        stp=stp_choices,
    )
    def new_market_order(self, account, symbol, side, quantity, tif, stp):
        self.send_new_order(account, symbol, side, quantity, tif, stp, 0, None, order_type=OrderType.MARKET)

    @rule(
        account=accounts,
        symbol=symbols,
        side=sides,
        offset=price_offsets,
        quantity=st.integers(2, 12),
        display=st.integers(1, 3),
        tif=resting_tifs,
        post_only=st.booleans(),
        stp=stp_choices,
        expire_in_days=st.integers(0, 2),
    )
    def new_iceberg_order(self, account, symbol, side, offset, quantity, display, tif, post_only, stp, expire_in_days):
        self.send_new_order(
            account,
            symbol,
            side,
            quantity,
            tif,
            stp,
            expire_in_days,
            None,
            price=self.price(symbol, offset, side),
            display_quantity=min(display, quantity),
            post_only=post_only,
        )

    @rule(
        account=accounts,
        symbol=symbols,
        side=sides,
        offset=price_offsets,
        stop_offset=st.sampled_from(NEAR_OFFSETS),
        quantity=quantities,
        tif=any_tif,
        display=st.none() | st.integers(1, 3),
        stp=stp_choices,
        expire_in_days=st.integers(0, 2),
    )
    def new_stop_limit_order(
        self, account, symbol, side, offset, stop_offset, quantity, tif, display, stp, expire_in_days
    ):
        if tif in (TimeInForce.IOC, TimeInForce.FOK) or display is not None and display > quantity:
            display = None  # an iceberg rests: not IOC or FOK, and never larger than the order
        self.send_new_order(
            account,
            symbol,
            side,
            quantity,
            tif,
            stp,
            expire_in_days,
            None,
            price=self.price(symbol, offset, side),
            stop_price=self.price(symbol, stop_offset),
            display_quantity=display,
        )

    def send_new_order(self, account, symbol, side, quantity, tif, stp, expire_in_days, reuse, **fields) -> None:
        expire_date = None
        if tif is TimeInForce.GTD:
            expire_date = as_date_number(self.trading_day + datetime.timedelta(days=expire_in_days))
        self.send(
            NewOrder,
            account=account,
            client_order_id=self.client_order_id(account, reuse),
            instrument=symbol,
            side=side,
            quantity=quantity,
            time_in_force=tif,
            self_trade_prevention=stp,
            expire_date=expire_date,
            **fields,
        )

    @rule(
        pick=st.integers(0, 10**6),
        open_only=st.sampled_from((True, True, False)),
        by_order_id=st.booleans(),
        owner=st.sampled_from((True, True, False)),
        unknown=st.sampled_from((False,) * 5 + (True,)),
    )
    def cancel(self, pick, open_only, by_order_id, owner, unknown):
        target = self.pick_order(pick, open_only)
        if target is None or unknown:  # an order that never existed
            self.send(
                CancelOrder,
                account=ACCOUNTS[pick % len(ACCOUNTS)],
                **({"order_id": 10**9} if by_order_id else {"client_order_id": "never-sent"}),
            )
            return
        owner_account = target.terms.account
        account = owner_account if owner else ACCOUNTS[(ACCOUNTS.index(owner_account) + 1) % len(ACCOUNTS)]
        self.send(CancelOrder, account=account, **naming(target, by_order_id))

    @rule(
        pick=st.integers(0, 10**6),
        open_only=st.sampled_from((True, True, False)),
        by_order_id=st.booleans(),
        quantity_change=st.none() | st.integers(-4, 4),
        new_price=st.sampled_from(("same", "same", "cross", "sweep")) | st.sampled_from(NEAR_OFFSETS),
    )
    def replace(self, pick, open_only, by_order_id, quantity_change, new_price):
        target = self.pick_order(pick, open_only)
        if target is None:
            return
        quantity = None if quantity_change is None else max(1, target.quantity + quantity_change)
        if new_price in ("cross", "sweep"):
            # To the best (or the deepest) opposite price, so the moved order trades, moves the last
            # price and may trigger stops.
            book = self.engine.books[target.terms.instrument]
            opposite = book.depth(Side.SELL if target.terms.side is Side.BUY else Side.BUY)
            price = None if not opposite else opposite[0 if new_price == "cross" else -1][0]
        else:
            price = None if new_price == "same" else self.price(target.terms.instrument, new_price)
        self.send(
            ReplaceOrder, account=target.terms.account, quantity=quantity, price=price, **naming(target, by_order_id)
        )

    @rule(
        action=st.sampled_from(
            (
                "end_of_day",
                "end_of_day_again",
                "settlement_window",
                "mass_cancel",
                "mass_cancel_instrument",
                "set_self_trade_prevention",
            )
        ),
        account=accounts,
        symbol=symbols,
        mode=st.sampled_from(tuple(SelfTradePrevention)),
    )
    def housekeeping(self, action, account, symbol, mode):
        if action == "end_of_day":
            self.send(EndOfDay, trading_date=as_date_number(self.trading_day))
            if self.engine.last_closed_date == as_date_number(self.trading_day):
                self.trading_day += datetime.timedelta(days=1)
        elif action == "end_of_day_again":
            # The day before the one open now: refused once any day is closed (the first close of all
            # accepts it, and today stays the next day to close).
            self.send(EndOfDay, trading_date=as_date_number(self.trading_day - datetime.timedelta(days=1)))
        elif action == "settlement_window":
            self.send(OpenSettlementWindow, instrument=symbol)
        elif action == "mass_cancel":
            self.send(MassCancel, account=account)
        elif action == "mass_cancel_instrument":
            self.send(MassCancel, account=account, instrument=symbol)
        else:
            self.send(SetSelfTradePrevention, account=account, mode=mode)

    # -- what a command should do, from the model -----------------------------------------------

    def named_order(self, command: CancelOrder | ReplaceOrder) -> TrackedOrder | RejectCode:
        """The open order a cancel or replace names, or the code the engine must refuse it with."""
        if command.order_id is not None:
            order = self.orders.get(command.order_id)
            if order is None:
                return RejectCode.UNKNOWN_ORDER
            if not order.is_open:
                return RejectCode.ORDER_CLOSED
            return order if order.terms.account == command.account else RejectCode.NOT_ORDER_OWNER
        order_id = self.client_order_ids.get((command.account, command.client_order_id))
        if order_id is None:
            return RejectCode.UNKNOWN_ORDER
        return self.orders[order_id] if self.orders[order_id].is_open else RejectCode.ORDER_CLOSED

    def expected_outcome(self, command: object) -> object:
        """For a cancel or replace: the order id it must act on, or its reject code.

        For a mass cancel: the order ids it must cancel, in order. None: no prediction.
        """
        kind = type(command)
        if kind is MassCancel:
            return [
                o.order_id
                for o in sorted(self.orders.values(), key=lambda o: o.order_id)
                if o.is_open and o.terms.account == command.account and command.instrument in (None, o.terms.instrument)
            ]
        if kind is OpenSettlementWindow:
            return RejectCode.SETTLEMENT_WINDOW_OPEN if command.instrument in self.window else None
        if kind is not CancelOrder and kind is not ReplaceOrder:
            return None
        order = self.named_order(command)
        if kind is CancelOrder or type(order) is RejectCode:
            return order.order_id if type(order) is TrackedOrder else order
        quantity = order.quantity if command.quantity is None else command.quantity
        price = order.price if command.price is None else command.price
        if quantity <= order.filled:
            return RejectCode.REPLACE_QUANTITY_NOT_ABOVE_FILLED
        if quantity == order.quantity and price == order.price:
            return RejectCode.REPLACE_CHANGES_NOTHING
        book = self.engine.books[order.terms.instrument]
        if (
            order.terms.post_only
            and not order.waiting
            and price != order.price
            and (
                book.best_ask() is not None and price >= book.best_ask()
                if order.terms.side is Side.BUY
                else book.best_bid() is not None and price <= book.best_bid()
            )
        ):
            return RejectCode.POST_ONLY_WOULD_TAKE
        return order.order_id

    def check_outcome(self, command: object, expected: object, events: list) -> None:
        kind = type(command)
        if kind is NewOrder:
            key = (command.account, command.client_order_id)
            duplicate = type(events[0]) is OrderRejected and events[0].code is RejectCode.DUPLICATE_CLIENT_ORDER_ID
            if duplicate or type(events[0]) is OrderAccepted:
                assert duplicate == (key in self.client_order_ids), (
                    f"client order id {key} in use: {key in self.client_order_ids}, engine: {events[0]}"
                )
        elif kind is MassCancel:
            canceled = [e.order_id for e in events if type(e) is OrderCanceled]
            assert canceled == expected, f"{command} cancelled {canceled}, the model says {expected}"
        elif type(expected) is RejectCode:
            assert [(type(e), e.code) for e in events] == [(RequestRejected, expected)], (
                f"{command} should be refused with {expected.name}: {events}"
            )
        elif kind is CancelOrder:
            assert (type(events[0]), events[0].order_id, events[0].reason) == (OrderCanceled, expected, "USER"), (
                f"{command} should cancel order {expected}: {events}"
            )
        elif kind is ReplaceOrder:
            assert (type(events[0]), events[0].order_id) == (OrderReplaced, expected), (
                f"{command} should replace order {expected}: {events}"
            )

    # -- the model, from the events -------------------------------------------------------------

    def absorb(self, command: object, events: list, first_seq: int) -> None:
        """Update the model from one command's events, checking each event as it comes."""
        assert [event.seq for event in events] == list(range(first_seq, first_seq + len(events))), (
            f"seq not gap-free after {command!r}: {events}"
        )
        assert all(event.ts == command.ts for event in events), f"an event carries another ts: {events}"
        assert events, f"no event for {command!r}"
        if type(command) is not NewOrder:
            assert not any(type(event) is OrderRejected for event in events)

        orders = self.orders
        for event in events:
            kind = type(event)
            if kind is OrderAccepted:
                assert event.order_id not in orders, "order id given out twice"
                assert event.order_id == max(orders, default=0) + 1, "order ids are not consecutive"
                orders[event.order_id] = TrackedOrder(
                    event,
                    event.price,
                    event.quantity,
                    self.collar_reference(event.instrument),
                    waiting=event.stop_price is not None,
                    arrival=event.seq,
                )
                self.client_order_ids[(event.account, event.client_order_id)] = event.order_id
            elif kind is StopTriggered:
                order = orders[event.order_id]
                assert order.waiting and order.is_open, f"trigger of an order not waiting: {event}"
                assert event.last_price == self.last_price[event.instrument]
                assert (
                    event.last_price >= order.terms.stop_price
                    if order.terms.side is Side.BUY
                    else event.last_price <= order.terms.stop_price
                ), f"{event} before its stop price"
                order.waiting = False
                order.arrival = event.seq
            elif kind is Trade:
                self.absorb_trade(event)
            elif kind is OrderCanceled or kind is OrderExpired:
                order = orders[event.order_id]
                if kind is OrderExpired:
                    assert expires_by(order, command.trading_date), f"{event} expires an order that should stay"
                quantity = event.canceled_quantity if kind is OrderCanceled else event.expired_quantity
                assert order.is_open, f"{event} closes an order already closed"
                assert quantity == order.leaves, f"{event} closes {quantity} lots, {order.leaves} were open"
                order.closed_quantity += quantity
                order.is_open = False
            elif kind is OrderReplaced:
                order = orders[event.order_id]
                assert order.is_open
                order.quantity = event.quantity
                order.price = event.price
                assert event.leaves == order.leaves, f"{event}: model has {order.leaves} open"
                if event.priority_kept:
                    if order.shown is not None:
                        order.shown = min(order.shown, order.leaves)
                else:
                    assert not order.waiting
                    order.arrival = event.seq
                    order.shown = None
            elif kind is LevelChanged:
                assert (event.quantity == 0) == (event.orders == 0), f"level half gone: {event}"
                key = (event.instrument, event.side, event.price)
                if event.orders:
                    self.depth[key] = (event.quantity, event.orders)
                else:
                    self.depth.pop(key, None)
            elif kind is TradingDayClosed:
                assert event.expired_orders == sum(type(e) is OrderExpired for e in events)
                survivors = [o for o in orders.values() if o.is_open and expires_by(o, event.trading_date)]
                assert not survivors, f"still open after the close of {event.trading_date}: {survivors}"
                # A new trading day: client order ids of orders no longer open may be used again.
                self.client_order_ids = {
                    key: order_id for key, order_id in self.client_order_ids.items() if orders[order_id].is_open
                }
            elif kind is SettlementWindowOpened:
                assert event.instrument not in self.window, f"a window opened twice: {event}"
                self.window[event.instrument] = [0, 0]
            elif kind is SettlementPriceFixed:
                value, lots = self.window.pop(event.instrument, (0, 0))
                tick = self.instruments[event.instrument].tick_size
                if lots:
                    expected = round(Fraction(value, lots))  # half to even, as Python rounds
                    expected, method = expected - expected % tick, "window"
                elif event.instrument in self.last_price:
                    expected, method = self.last_price[event.instrument], "last_trade"
                else:
                    expected = self.settlement.get(event.instrument)
                    method = "none" if expected is None else "previous"
                assert (event.price, event.method, event.window_lots) == (expected, method, lots), event
                self.settlement[event.instrument] = expected
            elif kind is MassCancelCompleted:
                mass_cancels = [e for e in events if type(e) is OrderCanceled]
                assert all(e.reason is CancelReason.MASS_CANCEL and e.account == command.account for e in mass_cancels)
                assert event.canceled_orders == len(mass_cancels)
            else:
                assert kind in (
                    OrderRejected,
                    RequestRejected,
                    SelfTradePreventionSet,
                    AccountOpened,
                    Deposited,
                    Withdrawn,
                ), f"unexpected {event}"

        for order in orders.values():
            if order.is_open and not order.waiting and order.shown is None:
                # Rested during this command: it shows its first slice (a maker fill would have set it).
                order.shown = order.slice_size(order.leaves)
            terms = order.terms
            if order.is_open and not order.waiting:
                assert order.price is not None, f"a market order rests: {order}"
                assert terms.time_in_force not in (TimeInForce.IOC, TimeInForce.FOK), f"IOC/FOK rests: {order}"
            if terms.time_in_force is TimeInForce.FOK and not order.is_open:
                assert order.filled in (0, order.quantity), f"FOK order filled in part: {order}"

    def collar_reference(self, symbol: str) -> int:
        last = self.last_price.get(symbol)
        return self.instruments[symbol].reference_price if last is None else last

    def absorb_trade(self, trade: Trade) -> None:
        taker = self.orders[trade.taker_order_id]
        maker = self.orders[trade.maker_order_id]
        assert taker.is_open and maker.is_open, f"trade with a closed order: {trade}"
        assert not maker.waiting and not taker.waiting, f"a waiting stop traded: {trade}"
        assert taker.terms.instrument == maker.terms.instrument == trade.instrument
        assert trade.aggressor_side is taker.terms.side and maker.terms.side is not taker.terms.side
        assert not taker.terms.post_only, f"a post-only order took liquidity: {trade}"
        assert trade.price == maker.price, f"trade not at the maker's price {maker.price}: {trade}"
        buying = taker.terms.side is Side.BUY
        if taker.price is not None:
            assert trade.price <= taker.price if buying else trade.price >= taker.price, (
                f"trade beyond the taker's limit {taker.price}: {trade}"
            )
        collar = self.instruments[trade.instrument].market_collar
        if taker.price is None and collar is not None:
            reference = taker.collar_reference
            assert trade.price <= reference + collar if buying else trade.price >= reference - collar, (
                f"market order traded beyond the collar around {reference}: {trade}"
            )
        if maker.shown is None:  # it rested earlier in this same command
            maker.shown = maker.slice_size(maker.leaves)
        assert 0 < trade.quantity <= maker.shown, f"took {trade.quantity}, the maker showed {maker.shown}"
        taker.filled += trade.quantity
        maker.filled += trade.quantity
        maker.shown -= trade.quantity
        self.last_price[trade.instrument] = trade.price
        window = self.window.get(trade.instrument)
        if window is not None:
            window[0] += trade.price * trade.quantity
            window[1] += trade.quantity
        assert trade.taker_leaves == taker.leaves and trade.maker_leaves == maker.leaves, (
            f"{trade}: model has taker {taker.leaves}, maker {maker.leaves} open"
        )
        if taker.leaves == 0:
            taker.is_open = False
        if maker.leaves == 0:
            maker.is_open = False
        elif maker.shown == 0:  # iceberg: the next slice joins the back of the level
            maker.shown = maker.slice_size(maker.leaves)
            maker.arrival = trade.seq

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def books_pass_their_self_check(self):
        for book in self.engine.books.values():
            book._check()

    @invariant()
    def open_order_index_agrees_with_levels_and_stops(self):
        engine = self.engine
        resting = [order for book in engine.books.values() for side in Side for order in book.resting_orders(side)]
        waiting = [order for book in engine.books.values() for order in book.waiting_stops()]
        listed = {order.order_id: order for order in resting + waiting}
        assert len(listed) == len(resting) + len(waiting), "an order is both resting and waiting, or twice"
        assert listed.keys() == engine.open_orders.keys(), "open_orders index disagrees with the books"
        for order_id, order in listed.items():
            assert engine.open_orders[order_id] is order
            assert engine.accounts[order.account.account_id].orders.get(order.client_order_id) is order
        assert {o.order_id for o in waiting} == {o.order_id for o in self.orders.values() if o.is_open and o.waiting}

    @invariant()
    def levels_keep_arrival_order_and_shown_quantities(self):
        for book in self.engine.books.values():
            for book_side in (book.bids, book.asks):
                for level in book_side.levels_in_priority():
                    arrivals = [self.orders[order.order_id].arrival for order in level.live_orders()]
                    assert arrivals == sorted(arrivals), f"FIFO broken at {book.symbol} {level.price}: {arrivals}"
                    for order in level.live_orders():
                        expected = self.orders[order.order_id].shown
                        assert order.visible == expected, (
                            f"order {order.order_id} shows {order.visible}, the events say {expected}"
                        )

    @invariant()
    def quantity_is_conserved_for_every_order(self):
        open_orders = self.engine.open_orders
        for order in self.orders.values():
            assert order.is_open == (order.order_id in open_orders), f"open or not? {order}"
            open_leaves = open_orders[order.order_id].leaves if order.is_open else 0
            assert order.quantity == order.filled + order.closed_quantity + open_leaves, (
                f"quantity not conserved: {order}, engine leaves {open_leaves}"
            )
            if order.is_open:
                engine_order = open_orders[order.order_id]
                assert engine_order.quantity == order.quantity and engine_order.price == order.price

    @invariant()
    def market_data_matches_the_books(self):
        actual = {
            (symbol, side, price): (quantity, count)
            for symbol, book in self.engine.books.items()
            for side in Side
            for price, quantity, count in book.depth(side)
        }
        assert self.depth == actual, "depth built from LevelChanged events differs from the books"

    @invariant()
    def no_waiting_stop_is_already_reached(self):
        for book in self.engine.books.values():
            for order in book.waiting_stops():
                assert not stop_reached(order, book.last_price), (
                    f"stop {order} waits though last price is {book.last_price}"
                )

    @invariant()
    def replay_gives_the_same_state(self):
        self.steps += 1
        if self.steps % REPLAY_EVERY_STEPS == 0:
            self.check_replay()

    def check_replay(self) -> None:
        one_by_one = self.new_engine()
        replayed = [event for command in self.commands for event in one_by_one.handle(command)]
        assert replayed == self.events, "replay produced other events: " + first_difference(replayed, self.events)
        assert one_by_one.state_hash() == self.engine.state_hash(), "replay produced another state"
        # A batch conflates depth events: fewer events, so a lower sequence counter. Everything else
        # in the state must be the same.
        batched = self.new_engine()
        batched.handle_all(self.commands)
        assert state_without_seq(batched) == state_without_seq(self.engine), "replay as one batch differs"

    def teardown(self):
        self.check_replay()


TestEngineStateMachine = EngineMachine.TestCase
# A run of the machine costs milliseconds per step, so it affords more runs than the profile's default.
TestEngineStateMachine.settings = settings(max_examples=4 * settings.default.max_examples)


# -- the same machine with pre-trade risk: accounts, holdings, reservations, fees -------------------------

FEE_ACCOUNT = "carbonx-fees"
CASH = "EUR"
OPENING_CASH = 300_000_000  # cents: EUR 3 million an account, about 40 lots at the reference
OPENING_LOTS = 30  # lots of each instrument an account starts with
CAROL_LIMIT = 56_000_000  # carol's order value limit: 8 lots of EUA at 7000, not 9
RISK_CODES = frozenset(code for code in RejectCode if 200 <= code < 300)


class RiskMachine(EngineMachine):
    """The rules above on an engine with pre-trade risk, plus deposits and withdrawals.

    The accounts are opened and funded when the machine starts (carol with an
    order value limit). Besides everything the matching model checks, a
    second model follows the holdings from the events alone (deposits,
    withdrawals, and each trade's price, lots and fees) and keeps for every
    order the reservation per lot the rules give it (price x lot + the larger
    fee for a buy, at the collar for a market buy; the lot's units for a
    sell). From it the machine predicts which new orders, replaces,
    deposits and withdrawals are refused, and with which risk code, and after
    every step checks:

    10. no holding or reservation is ever negative, nor a reservation above its holding;
    11. each account's reserved cash is the sum of leaves x reserve_per_lot over its open
        buys, and its reserved units per instrument the same over its open sells, both by
        the engine's own orders and by the model's reservation per lot;
    12. each account's cash and units are the model's, and per asset (EUR and each
        instrument) the total over all accounts, fee account included, is what was
        deposited less what was withdrawn; the fee account holds every trade's fees;
    13. once no order is open, nothing is reserved; a mass cancel of everyone (a rule, and
        the teardown) must get there.
    """

    PRE_TRADE_RISK = True

    def __init__(self) -> None:
        super().__init__()
        holders = ACCOUNTS + (FEE_ACCOUNT,)
        self.cash = dict.fromkeys(holders, 0)
        self.units = {account: dict.fromkeys(SYMBOLS, 0) for account in holders}
        self.net_in = dict.fromkeys((CASH,) + SYMBOLS, 0)  # deposited less withdrawn, per asset
        self.fees_paid = 0
        self.fee_account_net_in = 0  # cash paid into the fee account (less out) other than fees
        self.limits = {"carol": CAROL_LIMIT}
        self.reserve: dict[int, int] = {}  # order id -> what each open lot holds back, by the rules
        for account in ACCOUNTS:
            self.send(OpenAccount, account=account, order_value_limit=self.limits.get(account))
            self.send(Deposit, account=account, asset=CASH, amount=OPENING_CASH)
            for symbol in SYMBOLS:
                self.send(
                    Deposit, account=account, asset=symbol, amount=OPENING_LOTS * self.instruments[symbol].lot_units
                )

    # -- rules ---------------------------------------------------------------------------------

    @rule(
        account=st.sampled_from(ACCOUNTS * 3 + (FEE_ACCOUNT, "zed")),
        asset=st.sampled_from((CASH, CASH) + SYMBOLS + ("ERU",)),
        how=st.sampled_from(("deposit", "deposit", "withdraw", "withdraw_all", "withdraw_one_more")),
        size=st.integers(1, 10),
    )
    def move_assets(self, account, asset, how, size):
        """Pay in or out: some, all that is available, or one more than that (refused)."""
        if how == "deposit" or how == "withdraw":
            amount = size * (5_000_000 if asset == CASH else 1000)
        else:
            amount = max(1, self.available(account, asset) + (how == "withdraw_one_more"))
        self.send(Deposit if how == "deposit" else Withdraw, account=account, asset=asset, amount=amount)

    @rule(
        account=accounts,
        symbol=symbols,
        side=sides,
        market=st.booleans(),
        offset=st.sampled_from(NEAR_OFFSETS),
        one_more=st.booleans(),
    )
    def order_at_the_edge_of_available(self, account, symbol, side, market, offset, one_more):
        """An order for all the lots the account can pay for or deliver, or one lot more (refused)."""
        instrument = self.instruments[symbol]
        price = None if market else self.price(symbol, offset)
        asset = CASH if side is Side.BUY else symbol
        per_lot = self.per_lot(symbol, side, self.valuation_price(symbol, side, price, self.collar_reference(symbol)))
        lots = self.available(account, asset) // per_lot + one_more
        if not instrument.min_lots <= lots <= instrument.max_lots:
            return
        self.send_new_order(
            account,
            symbol,
            side,
            lots,
            TimeInForce.IOC if market else TimeInForce.GTC,
            None,
            0,
            None,
            price=price,
            order_type=OrderType.MARKET if market else OrderType.LIMIT,
        )

    @precondition(lambda self: self.steps % 7 == 3)  # now and then is enough
    @rule(symbol=symbols, side=sides, quantity=quantities, market=st.booleans())
    def order_from_an_unopened_account(self, symbol, side, quantity, market):
        self.send(
            NewOrder,
            account="zed",
            client_order_id=1,
            instrument=symbol,
            side=side,
            quantity=quantity,
            price=None if market else self.price(symbol, 0),
            order_type=OrderType.MARKET if market else OrderType.LIMIT,
        )

    @precondition(lambda self: len(self.engine.open_orders) >= 8)  # not so often that the books stay thin
    @rule()
    def mass_cancel_everyone(self):
        for account in ACCOUNTS + (FEE_ACCOUNT,):
            self.send(MassCancel, account=account)
        assert not self.engine.open_orders, f"open after everyone's mass cancel: {self.engine.open_orders}"
        self.nothing_reserved()

    # -- the model of holdings ------------------------------------------------------------------

    def available(self, account: str, asset: str) -> int:
        """What the model says the account may use: holding less what its open orders hold back."""
        if account not in self.cash or asset not in (CASH,) + SYMBOLS:
            return 0
        if asset == CASH:
            return self.cash[account] - self.reserved(account, Side.BUY)
        return self.units[account][asset] - self.reserved(account, Side.SELL, asset)

    def reserved(self, account: str, side: Side, symbol: str | None = None) -> int:
        return sum(
            order.leaves * self.reserve[order.order_id]
            for order in self.orders.values()
            if order.is_open
            and order.terms.account == account
            and order.terms.side is side
            and symbol in (None, order.terms.instrument)
        )

    def per_lot(self, symbol: str, side: Side, price: int) -> int:
        instrument = self.instruments[symbol]
        if side is Side.SELL:
            return instrument.lot_units
        return price * instrument.lot_units + max(instrument.maker_fee, instrument.taker_fee)

    def valuation_price(self, symbol: str, side: Side, price: int | None, reference: int) -> int:
        """The price an order is valued and held at: its limit, or for a market order its collar edge."""
        if price is not None:
            return price
        instrument = self.instruments[symbol]
        collar = instrument.market_collar
        if side is Side.BUY:
            return instrument.max_price if collar is None else reference + collar
        return instrument.min_price if collar is None else max(reference - collar, instrument.min_price)

    def risk_verdict(
        self, account: str, symbol: str, side: Side, price: int | None, banded: bool, lots: int, held: int
    ) -> RejectCode | None:
        """The risk rule an order (or a replace, holding ``held`` already) breaks, if any.

        ``banded``: the limit price is held to the band (a price sent, not a stop's, not one kept).
        """
        instrument = self.instruments[symbol]
        reference = self.collar_reference(symbol)
        if price is not None and banded and instrument.price_band_bps:
            through = price - reference if side is Side.BUY else reference - price  # reaching into the market
            if instrument.price_band_one_sided:  # ICE: only the side that would trade through is refused
                outside = through * 10_000 > reference * instrument.price_band_bps
            else:
                outside = abs(through) * 10_000 > reference * instrument.price_band_bps
            if outside:
                return RejectCode.PRICE_OUTSIDE_BAND
        value_price = self.valuation_price(symbol, side, price, reference)
        limit = self.limits.get(account)
        if limit is not None and value_price * lots * instrument.lot_units > limit:
            return RejectCode.ORDER_VALUE_OVER_LIMIT
        need = lots * self.per_lot(symbol, side, value_price) - held
        if side is Side.BUY:
            return RejectCode.INSUFFICIENT_CASH if need > self.available(account, CASH) else None
        return RejectCode.INSUFFICIENT_UNITS if need > self.available(account, symbol) else None

    def expected_outcome(self, command: object) -> object:
        kind = type(command)
        if kind is NewOrder:
            if command.account not in self.cash:
                return RejectCode.UNKNOWN_ACCOUNT
            return self.risk_verdict(
                command.account,
                command.instrument,
                command.side,
                command.price,
                command.stop_price is None,
                command.quantity,
                0,
            )
        if kind is Deposit or kind is Withdraw:
            if command.account not in self.cash:
                return RejectCode.UNKNOWN_ACCOUNT
            if command.asset not in (CASH,) + SYMBOLS:
                return RejectCode.UNKNOWN_ASSET
            if kind is Withdraw and command.amount > self.available(command.account, command.asset):
                return RejectCode.INSUFFICIENT_CASH if command.asset == CASH else RejectCode.INSUFFICIENT_UNITS
            return None
        expected = super().expected_outcome(command)
        if kind is ReplaceOrder and type(expected) is int:
            order = self.orders[expected]
            quantity = order.quantity if command.quantity is None else command.quantity
            price = order.price if command.price is None else command.price
            # The band applies to a price sent: not to a replace that keeps its price, nor to a waiting stop.
            code = self.risk_verdict(
                order.terms.account,
                order.terms.instrument,
                order.terms.side,
                price,
                not order.waiting and price != order.price,
                quantity - order.filled,
                order.leaves * self.reserve[order.order_id],
            )
            if code is not None:
                return code
        return expected

    def check_outcome(self, command: object, expected: object, events: list) -> None:
        kind = type(command)
        if kind is NewOrder:
            super().check_outcome(command, None, events)
            first = events[0]
            if type(first) is OrderAccepted:
                assert expected is None, f"{command} accepted, the model says {expected.name}"
            elif first.code in RISK_CODES:
                assert first.code is expected, f"{command} refused {first.code.name}, the model says {expected}"
            return
        if kind is Deposit or kind is Withdraw:
            if expected is not None:
                assert [(type(e), e.code) for e in events] == [(RequestRejected, expected)], (
                    f"{command} should be refused with {expected.name}: {events}"
                )
                return
            sign = 1 if kind is Deposit else -1
            before = self.cash[command.account] if command.asset == CASH else self.units[command.account][command.asset]
            assert [(type(e), e.account, e.asset, e.amount, e.balance) for e in events] == [
                (
                    Deposited if kind is Deposit else Withdrawn,
                    command.account,
                    command.asset,
                    command.amount,
                    before + sign * command.amount,
                )
            ], f"{command}: {events}"
            return
        super().check_outcome(command, expected, events)

    def absorb(self, command: object, events: list, first_seq: int) -> None:
        super().absorb(command, events, first_seq)
        for event in events:
            kind = type(event)
            if kind is OrderAccepted or kind is OrderReplaced:
                order = self.orders[event.order_id]
                price = self.valuation_price(event.instrument, order.terms.side, order.price, order.collar_reference)
                self.reserve[event.order_id] = self.per_lot(event.instrument, order.terms.side, price)
            elif kind is Trade:
                self.absorb_settlement(event)
            elif kind is Deposited or kind is Withdrawn:
                amount = event.amount if kind is Deposited else -event.amount
                if event.asset == CASH:
                    self.cash[event.account] += amount
                    if event.account == FEE_ACCOUNT:
                        self.fee_account_net_in += amount
                else:
                    self.units[event.account][event.asset] += amount
                self.net_in[event.asset] += amount

    def absorb_settlement(self, trade: Trade) -> None:
        """Delivery versus payment for one fill, with the fees, as the model sees it."""
        instrument = self.instruments[trade.instrument]
        assert (trade.maker_fee, trade.taker_fee) == (
            trade.quantity * instrument.maker_fee,
            trade.quantity * instrument.taker_fee,
        ), f"fees of {trade}"
        if trade.aggressor_side is Side.BUY:
            buyer, buyer_fee, seller, seller_fee = (
                trade.taker_account,
                trade.taker_fee,
                trade.maker_account,
                trade.maker_fee,
            )
        else:
            buyer, buyer_fee, seller, seller_fee = (
                trade.maker_account,
                trade.maker_fee,
                trade.taker_account,
                trade.taker_fee,
            )
        units = trade.quantity * instrument.lot_units
        notional = trade.price * units
        self.cash[buyer] -= notional + buyer_fee
        self.units[buyer][trade.instrument] += units
        self.cash[seller] += notional - seller_fee
        self.units[seller][trade.instrument] -= units
        self.cash[FEE_ACCOUNT] += buyer_fee + seller_fee
        self.fees_paid += buyer_fee + seller_fee

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def nothing_negative_and_reservations_are_the_open_orders(self):
        engine = self.engine
        cash = dict.fromkeys(engine.accounts, 0)
        units = {account: dict.fromkeys(SYMBOLS, 0) for account in engine.accounts}
        for order in engine.open_orders.values():
            model_per_lot = self.reserve[order.order_id]
            assert order.reserve_per_lot == model_per_lot, (
                f"order {order.order_id} holds {order.reserve_per_lot} a lot, the rules say {model_per_lot}"
            )
            if order.side is Side.BUY:
                cash[order.account.account_id] += order.leaves * order.reserve_per_lot
            else:
                units[order.account.account_id][order.book.symbol] += order.leaves * order.reserve_per_lot
        for account_id, account in engine.accounts.items():
            assert 0 <= account.reserved_cash <= account.cash, (
                f"{account_id}: cash {account.cash}, reserved {account.reserved_cash}"
            )
            assert account.reserved_cash == cash[account_id], (
                f"{account_id}: reserved cash {account.reserved_cash}, its open buys hold {cash[account_id]}"
            )
            for symbol in SYMBOLS:
                held = account.reserved_units[symbol]
                assert 0 <= held <= account.units[symbol], (
                    f"{account_id}: {symbol} units {account.units[symbol]}, reserved {held}"
                )
                assert held == units[account_id][symbol], (
                    f"{account_id}: reserved {symbol} {held}, its open sells hold {units[account_id][symbol]}"
                )
            if account_id in self.cash:
                assert account.reserved_cash == self.reserved(account_id, Side.BUY)
        if not engine.open_orders:
            self.nothing_reserved()

    @invariant()
    def holdings_are_the_models_and_every_asset_is_conserved(self):
        accounts = self.engine.accounts
        assert set(accounts) == set(self.cash), f"accounts {sorted(accounts)}"
        for account_id, account in accounts.items():
            assert account.cash == self.cash[account_id], (
                f"{account_id}: cash {account.cash}, the events say {self.cash[account_id]}"
            )
            assert account.units == self.units[account_id], (
                f"{account_id}: units {account.units}, the events say {self.units[account_id]}"
            )
        assert sum(account.cash for account in accounts.values()) == self.net_in[CASH], "cash created or destroyed"
        for symbol in SYMBOLS:
            assert sum(account.units[symbol] for account in accounts.values()) == self.net_in[symbol], (
                f"{symbol} units created or destroyed"
            )
        assert self.engine.fee_account.cash == self.fees_paid + self.fee_account_net_in, "fees went astray"

    def nothing_reserved(self) -> None:
        for account_id, account in self.engine.accounts.items():
            assert account.reserved_cash == 0 and not any(account.reserved_units.values()), (
                f"{account_id} still holds back {account.reserved_cash} cents, {account.reserved_units}"
            )

    def teardown(self):
        self.mass_cancel_everyone()
        super().teardown()


TestRiskStateMachine = RiskMachine.TestCase
TestRiskStateMachine.settings = settings(max_examples=3 * settings.default.max_examples)
