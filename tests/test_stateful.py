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
"""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from exchange import (CancelOrder, CancelReason, CancelRejected, EndOfDay, Engine, InvalidCommand, LevelChanged,
                      MassCancel, MassCancelCompleted, NewOrder, OrderAccepted, OrderCanceled, OrderExpired,
                      OrderRejected, OrderReplaced, OrderType, RejectCode, ReplaceOrder, SelfTradePrevention,
                      SelfTradePreventionSet, SetSelfTradePrevention, Side, StopTriggered, TimeInForce, Trade,
                      TradingDayClosed)
from gateway.config import load_instruments

CONFIGURED_INSTRUMENTS = load_instruments()  # read once: every run of the machine starts from them
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
price_offsets = st.one_of(st.sampled_from(NEAR_OFFSETS), st.sampled_from(NEAR_OFFSETS),
                          st.sampled_from(NEAR_OFFSETS), st.sampled_from(COLLAR_EDGES))
quantities = st.integers(1, 10)
stp_choices = st.sampled_from((None,) + tuple(SelfTradePrevention))
resting_tifs = st.sampled_from((TimeInForce.GTC, TimeInForce.DAY, TimeInForce.GTD))
any_tif = st.sampled_from(tuple(TimeInForce))
accounts = st.sampled_from(ACCOUNTS)
symbols = st.sampled_from(SYMBOLS)
sides = st.sampled_from(tuple(Side))
reuse_choices = st.one_of(st.none(), st.none(), st.none(), st.integers(0, 50))  # mostly a fresh client order id


def first_difference(got: list, expected: list) -> str:
    for index, (left, right) in enumerate(zip(got, expected)):
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

    def __init__(self) -> None:
        super().__init__()
        self.instruments = {symbol: CONFIGURED_INSTRUMENTS[symbol] for symbol in SYMBOLS}
        self.engine = Engine(self.instruments, pre_trade_risk=False)
        self.commands: list[object] = []  # every command sent, for the replay
        self.events: list = []  # every event received
        self.orders: dict[int, TrackedOrder] = {}
        self.depth: dict[tuple[str, Side, int], tuple[int, int]] = {}  # from LevelChanged: (lots, orders)
        self.last_price: dict[str, int] = {}  # from Trade events
        # (account, client order id) -> order id, for ids in use: this trading day's, and open orders'.
        self.client_order_ids: dict[tuple[str, object], int] = {}
        self.next_client_order_id = {account: 1 for account in ACCOUNTS}
        self.used_client_order_ids: dict[str, list[int]] = {account: [] for account in ACCOUNTS}
        self.trading_day = FIRST_TRADING_DAY
        self.ts = 0
        self.steps = 0

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

    @rule(account=accounts, symbol=symbols, side=sides, offset=price_offsets, quantity=quantities, tif=any_tif,
          post_only=st.booleans(), stp=stp_choices, expire_in_days=st.integers(-1, 2), reuse=reuse_choices)
    def new_limit_order(self, account, symbol, side, offset, quantity, tif, post_only, stp, expire_in_days, reuse):
        self.send_new_order(account, symbol, side, quantity, tif, stp, expire_in_days, reuse,
                            price=self.price(symbol, offset, side),
                            post_only=post_only and tif not in (TimeInForce.IOC, TimeInForce.FOK))

    @rule(account=accounts, symbol=symbols, side=sides, offset=st.sampled_from(NEAR_OFFSETS), quantity=quantities,
          tif=resting_tifs, stp=stp_choices)
    def new_resting_order(self, account, symbol, side, offset, quantity, tif, stp):
        # Passive side of the book: a sell above or a buy below the reference, so the book fills up.
        distance = abs(offset) + 1
        self.send_new_order(account, symbol, side, quantity, tif, stp, 1, None,
                            price=self.price(symbol, distance if side is Side.SELL else -distance))

    @rule(account=accounts, symbol=symbols, side=sides, quantity=quantities,
          tif=st.sampled_from((TimeInForce.GTC, TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK)),
          stp=stp_choices)
    def new_market_order(self, account, symbol, side, quantity, tif, stp):
        self.send_new_order(account, symbol, side, quantity, tif, stp, 0, None, order_type=OrderType.MARKET)

    @rule(account=accounts, symbol=symbols, side=sides, offset=price_offsets, quantity=st.integers(2, 12),
          display=st.integers(1, 3), tif=resting_tifs, post_only=st.booleans(), stp=stp_choices,
          expire_in_days=st.integers(0, 2))
    def new_iceberg_order(self, account, symbol, side, offset, quantity, display, tif, post_only, stp,
                          expire_in_days):
        self.send_new_order(account, symbol, side, quantity, tif, stp, expire_in_days, None,
                            price=self.price(symbol, offset, side), display_quantity=min(display, quantity),
                            post_only=post_only)

    @rule(account=accounts, symbol=symbols, side=sides, offset=price_offsets,
          stop_offset=st.sampled_from(NEAR_OFFSETS), quantity=quantities, tif=any_tif,
          display=st.none() | st.integers(1, 3), stp=stp_choices, expire_in_days=st.integers(0, 2))
    def new_stop_limit_order(self, account, symbol, side, offset, stop_offset, quantity, tif, display, stp,
                             expire_in_days):
        if tif in (TimeInForce.IOC, TimeInForce.FOK) or display is not None and display > quantity:
            display = None  # an iceberg rests: not IOC or FOK, and never larger than the order
        self.send_new_order(account, symbol, side, quantity, tif, stp, expire_in_days, None,
                            price=self.price(symbol, offset, side), stop_price=self.price(symbol, stop_offset),
                            display_quantity=display)

    def send_new_order(self, account, symbol, side, quantity, tif, stp, expire_in_days, reuse, **fields) -> None:
        expire_date = None
        if tif is TimeInForce.GTD:
            expire_date = as_date_number(self.trading_day + datetime.timedelta(days=expire_in_days))
        self.send(NewOrder, account=account, client_order_id=self.client_order_id(account, reuse),
                  instrument=symbol, side=side, quantity=quantity, time_in_force=tif,
                  self_trade_prevention=stp, expire_date=expire_date, **fields)

    @rule(pick=st.integers(0, 10**6), open_only=st.sampled_from((True, True, False)), by_order_id=st.booleans(),
          owner=st.sampled_from((True, True, False)), unknown=st.sampled_from((False,) * 5 + (True,)))
    def cancel(self, pick, open_only, by_order_id, owner, unknown):
        target = self.pick_order(pick, open_only)
        if target is None or unknown:  # an order that never existed
            self.send(CancelOrder, account=ACCOUNTS[pick % len(ACCOUNTS)],
                      **({"order_id": 10**9} if by_order_id else {"client_order_id": "never-sent"}))
            return
        owner_account = target.terms.account
        account = owner_account if owner else ACCOUNTS[(ACCOUNTS.index(owner_account) + 1) % len(ACCOUNTS)]
        self.send(CancelOrder, account=account, **naming(target, by_order_id))

    @rule(pick=st.integers(0, 10**6), open_only=st.sampled_from((True, True, False)), by_order_id=st.booleans(),
          quantity_change=st.none() | st.integers(-4, 4),
          new_price=st.sampled_from(("same", "same", "cross", "sweep")) | st.sampled_from(NEAR_OFFSETS))
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
        self.send(ReplaceOrder, account=target.terms.account, quantity=quantity, price=price,
                  **naming(target, by_order_id))

    @rule(action=st.sampled_from(("end_of_day", "end_of_day_again", "mass_cancel", "mass_cancel_instrument",
                                  "set_self_trade_prevention")),
          account=accounts, symbol=symbols, mode=st.sampled_from(tuple(SelfTradePrevention)))
    def housekeeping(self, action, account, symbol, mode):
        if action == "end_of_day":
            self.send(EndOfDay, trading_date=as_date_number(self.trading_day))
            if self.engine.last_closed_date == as_date_number(self.trading_day):
                self.trading_day += datetime.timedelta(days=1)
        elif action == "end_of_day_again":
            # The day before the one open now: refused once any day is closed (the first close of all
            # accepts it, and today stays the next day to close).
            self.send(EndOfDay, trading_date=as_date_number(self.trading_day - datetime.timedelta(days=1)))
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
            return [o.order_id for o in sorted(self.orders.values(), key=lambda o: o.order_id)
                    if o.is_open and o.terms.account == command.account
                    and command.instrument in (None, o.terms.instrument)]
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
        if order.terms.post_only and not order.waiting and price != order.price and (
                book.best_ask() is not None and price >= book.best_ask() if order.terms.side is Side.BUY
                else book.best_bid() is not None and price <= book.best_bid()):
            return RejectCode.POST_ONLY_WOULD_TAKE
        return order.order_id

    def check_outcome(self, command: object, expected: object, events: list) -> None:
        kind = type(command)
        if kind is NewOrder:
            key = (command.account, command.client_order_id)
            duplicate = type(events[0]) is OrderRejected and events[0].code is RejectCode.DUPLICATE_CLIENT_ORDER_ID
            if duplicate or type(events[0]) is OrderAccepted:
                assert duplicate == (key in self.client_order_ids), \
                    f"client order id {key} in use: {key in self.client_order_ids}, engine: {events[0]}"
        elif kind is MassCancel:
            canceled = [e.order_id for e in events if type(e) is OrderCanceled]
            assert canceled == expected, f"{command} cancelled {canceled}, the model says {expected}"
        elif type(expected) is RejectCode:
            assert [(type(e), e.code) for e in events] == [(CancelRejected, expected)], \
                f"{command} should be refused with {expected.name}: {events}"
        elif kind is CancelOrder:
            assert (type(events[0]), events[0].order_id, events[0].reason) == (OrderCanceled, expected, "USER"), \
                f"{command} should cancel order {expected}: {events}"
        elif kind is ReplaceOrder:
            assert (type(events[0]), events[0].order_id) == (OrderReplaced, expected), \
                f"{command} should replace order {expected}: {events}"

    # -- the model, from the events -------------------------------------------------------------

    def absorb(self, command: object, events: list, first_seq: int) -> None:
        """Update the model from one command's events, checking each event as it comes."""
        assert [event.seq for event in events] == list(range(first_seq, first_seq + len(events))), \
            f"seq not gap-free after {command!r}: {events}"
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
                    event, event.price, event.quantity, self.collar_reference(event.instrument),
                    waiting=event.stop_price is not None, arrival=event.seq)
                self.client_order_ids[(event.account, event.client_order_id)] = event.order_id
            elif kind is StopTriggered:
                order = orders[event.order_id]
                assert order.waiting and order.is_open, f"trigger of an order not waiting: {event}"
                assert event.last_price == self.last_price[event.instrument]
                assert (event.last_price >= order.terms.stop_price if order.terms.side is Side.BUY
                        else event.last_price <= order.terms.stop_price), f"{event} before its stop price"
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
                self.client_order_ids = {key: order_id for key, order_id in self.client_order_ids.items()
                                         if orders[order_id].is_open}
            elif kind is MassCancelCompleted:
                mass_cancels = [e for e in events if type(e) is OrderCanceled]
                assert all(e.reason is CancelReason.MASS_CANCEL and e.account == command.account
                           for e in mass_cancels)
                assert event.canceled_orders == len(mass_cancels)
            else:
                assert kind in (OrderRejected, CancelRejected, SelfTradePreventionSet), f"unexpected {event}"

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
            assert trade.price <= taker.price if buying else trade.price >= taker.price, \
                f"trade beyond the taker's limit {taker.price}: {trade}"
        collar = self.instruments[trade.instrument].market_collar
        if taker.price is None and collar is not None:
            reference = taker.collar_reference
            assert trade.price <= reference + collar if buying else trade.price >= reference - collar, \
                f"market order traded beyond the collar around {reference}: {trade}"
        if maker.shown is None:  # it rested earlier in this same command
            maker.shown = maker.slice_size(maker.leaves)
        assert 0 < trade.quantity <= maker.shown, f"took {trade.quantity}, the maker showed {maker.shown}"
        taker.filled += trade.quantity
        maker.filled += trade.quantity
        maker.shown -= trade.quantity
        self.last_price[trade.instrument] = trade.price
        assert trade.taker_leaves == taker.leaves and trade.maker_leaves == maker.leaves, \
            f"{trade}: model has taker {taker.leaves}, maker {maker.leaves} open"
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
                        assert order.visible == expected, \
                            f"order {order.order_id} shows {order.visible}, the events say {expected}"

    @invariant()
    def quantity_is_conserved_for_every_order(self):
        open_orders = self.engine.open_orders
        for order in self.orders.values():
            assert order.is_open == (order.order_id in open_orders), f"open or not? {order}"
            open_leaves = open_orders[order.order_id].leaves if order.is_open else 0
            assert order.quantity == order.filled + order.closed_quantity + open_leaves, \
                f"quantity not conserved: {order}, engine leaves {open_leaves}"
            if order.is_open:
                engine_order = open_orders[order.order_id]
                assert engine_order.quantity == order.quantity and engine_order.price == order.price

    @invariant()
    def market_data_matches_the_books(self):
        actual = {(symbol, side, price): (quantity, count)
                  for symbol, book in self.engine.books.items() for side in Side
                  for price, quantity, count in book.depth(side)}
        assert self.depth == actual, "depth built from LevelChanged events differs from the books"

    @invariant()
    def no_waiting_stop_is_already_reached(self):
        for book in self.engine.books.values():
            for order in book.waiting_stops():
                assert not book.stop_reached(order), f"stop {order} waits though last price is {book.last_price}"

    @invariant()
    def replay_gives_the_same_state(self):
        self.steps += 1
        if self.steps % REPLAY_EVERY_STEPS == 0:
            self.check_replay()

    def check_replay(self) -> None:
        one_by_one = Engine(self.instruments, pre_trade_risk=False)
        replayed = [event for command in self.commands for event in one_by_one.handle(command)]
        assert replayed == self.events, "replay produced other events: " + first_difference(replayed, self.events)
        assert one_by_one.state_hash() == self.engine.state_hash(), "replay produced another state"
        # A batch conflates depth events: fewer events, so a lower sequence counter. Everything else
        # in the state must be the same.
        batched = Engine(self.instruments, pre_trade_risk=False)
        batched.handle_all(self.commands)
        assert state_without_seq(batched) == state_without_seq(self.engine), "replay as one batch differs"

    def teardown(self):
        self.check_replay()


TestEngineStateMachine = EngineMachine.TestCase
# A run of the machine costs milliseconds per step, so it affords more runs than the profile's default.
TestEngineStateMachine.settings = settings(max_examples=4 * settings.default.max_examples)
