"""Call auctions, trading phases and the volatility interruption, against independent references.

How it works
------------
1. ``auction_price`` is compared, on random books (hypothesis), with a brute
   force written here: every tick price from below the lowest to above the
   highest price (reference included) is evaluated and the winner picked by
   the documented key (largest executed quantity, smallest surplus, nearest
   the reference, lower price).
2. The uncross: an instrument goes CONTINUOUS -> CLOSED -> OPENING_CALL,
   random limit orders (GTC/DAY, icebergs, cancels, replaces) from four
   accounts rest, then SetTradingPhase(CONTINUOUS) runs the auction. The test
   keeps its own model of the resting orders (price, open lots, arrival) and
   computes the price with the brute force and the allocation greedily (bids
   by price then arrival against asks by price then arrival, icebergs with
   their whole open quantity); trades, indicative events, the book after it,
   and with pre-trade risk every account's cash, units and reservations must
   agree with it.
3. Plain scenarios with exact events: the tie rules, marginal orders,
   icebergs, refusals per phase, stops across a call, calls that do not
   cross, the closing call, and the whole phase-transition table.
4. The volatility band: sweeps that stop at the band, what happens to the
   remainder of each order kind, the band following the last price, and
   the reopening auction.
5. Determinism: one random command stream (phase changes and band
   interruptions included) handled twice one by one and once in batches.
"""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from msgspec.structs import astuple, replace
from scenario_helpers import Scenario, assert_only_seq_moved, check_books, shipped_instruments, snapshot

from exchange import (
    CALL_PHASES,
    AuctionCompleted,
    AuctionIndicative,
    CancelOrder,
    CancelReason,
    Deposit,
    EndOfDay,
    Engine,
    LevelChanged,
    NewOrder,
    OpenAccount,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderReplaced,
    OrderType,
    RejectCode,
    ReplaceOrder,
    RequestRejected,
    SetTradingPhase,
    Side,
    StopTriggered,
    TimeInForce,
    Trade,
    TradingPhase,
    TradingPhaseChanged,
    auction_price,
)
from exchange.call_auction import indicative_price
from exchange.engine import PHASE_CHANGES

BUY, SELL = Side.BUY, Side.SELL
SYM = "EUA"
GTC, DAY, IOC, FOK = TimeInForce.GTC, TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK
MARKET = OrderType.MARKET
CLOSED, OPENING, CONT = TradingPhase.CLOSED, TradingPhase.OPENING_CALL, TradingPhase.CONTINUOUS
CLOSING, VOLATILE, HALTED = TradingPhase.CLOSING_CALL, TradingPhase.VOLATILITY_INTERRUPTION, TradingPhase.HALTED
FEE_ACCOUNT = "carbonx-fees"
LOT = 1000  # EUA units per lot
MAKER_FEE = 200  # EUA maker fee, cents per lot (both sides of an auction trade pay it)
MAX_FEE = 350  # the larger EUA fee: what a buy holds back per lot beyond the price


# -- references ---------------------------------------------------------------------------------------------


def brute_auction(bids, asks, reference, tick):
    """(price, quantity, demand, supply) by trying every tick price; None when nothing would execute."""
    prices = [price for price, _ in bids] + [price for price, _ in asks] + [reference]
    best = None
    for price in range(min(prices) - tick, max(prices) + tick + 1, tick):
        demand = sum(lots for bid, lots in bids if bid >= price)
        supply = sum(lots for ask, lots in asks if ask <= price)
        executed = min(demand, supply)
        key = (-executed, abs(demand - supply), abs(price - reference), price)
        if best is None or key < best[0]:
            best = (key, (price, executed, demand, supply))
    return None if best is None or best[1][1] == 0 else best[1]


def as_tuple(found):
    return None if found is None else (found.price, found.quantity, found.demand, found.supply)


def instruments(**changes):
    shipped = shipped_instruments()
    shipped[SYM] = dataclasses.replace(shipped[SYM], **changes)
    return shipped


def band_scenario(bps: int = 200, **changes) -> Scenario:
    """EUA with a volatility band of ``bps`` around the reference 7000 (2% = 140 cents), no pre-trade risk."""
    return Scenario(Engine(instruments(volatility_band_bps=bps, **changes), pre_trade_risk=False))


def phase(s: Scenario, to: TradingPhase) -> list:
    return s.send(SetTradingPhase(ts=s.ts(), instrument=SYM, phase=to))


def kinds(events) -> list[str]:
    return [type(event).__name__ for event in events]


def trades_of(events) -> list[tuple]:
    return [
        (
            t.price,
            t.quantity,
            t.aggressor_side,
            t.taker_order_id,
            t.maker_order_id,
            t.taker_leaves,
            t.maker_leaves,
            t.maker_fee,
            t.taker_fee,
        )
        for t in events
        if type(t) is Trade
    ]


def without_seq(event):
    return replace(event, seq=0)


def check_reservations(engine: Engine) -> None:
    """Every account holds back exactly what its open orders need (computed here, not read from the orders),
    and nothing is negative."""
    for account in engine.accounts.values():
        cash = sum(o.leaves * (o.price * LOT + MAX_FEE) for o in account.open_orders.values() if o.side is BUY)
        units = sum(o.leaves * LOT for o in account.open_orders.values() if o.side is SELL)
        assert account.reserved_cash == cash, account.account_id
        assert account.reserved_units[SYM] == units, account.account_id
        assert account.cash >= account.reserved_cash >= 0
        assert account.units[SYM] >= account.reserved_units[SYM] >= 0


# ============================================================================================================
# 1. auction_price against the brute force
# ============================================================================================================


def side_levels(tick):
    return st.lists(st.tuples(st.integers(-12, 12), st.integers(1, 50)), max_size=8, unique_by=lambda x: x[0]).map(
        lambda levels: [(7000 + offset * tick, lots) for offset, lots in levels]
    )


@st.composite
def auction_books(draw):
    tick = draw(st.sampled_from([1, 5]))
    bids = sorted(draw(side_levels(tick)), reverse=True)
    asks = sorted(draw(side_levels(tick)))
    reference = 7000 + tick * draw(st.integers(-20, 20))
    return bids, asks, reference, tick


@settings(max_examples=400)
@given(auction_books())
def test_auction_price_equals_brute_force(book):
    bids, asks, reference, tick = book
    expected = brute_auction(bids, asks, reference, tick)
    assert as_tuple(auction_price(bids, asks, reference, tick)) == expected
    if expected is not None:
        # Only the overlapping levels matter (call_auction.indicative_price passes no others).
        overlap_bids = [(p, q) for p, q in bids if p >= asks[0][0]]
        overlap_asks = [(p, q) for p, q in asks if p <= bids[0][0]]
        assert as_tuple(auction_price(overlap_bids, overlap_asks, reference, tick)) == expected
        price, quantity, demand, supply = expected
        assert price % tick == 0 and quantity == min(demand, supply) > 0


def test_auction_price_nothing_crosses():
    assert auction_price([], [(7000, 5)], 7000, 1) is None
    assert auction_price([(7000, 5)], [], 7000, 1) is None
    assert auction_price([(6999, 5)], [(7000, 5)], 7000, 1) is None


# ============================================================================================================
# 2. the uncross against a reference allocation
# ============================================================================================================

ACCOUNTS = ["a", "b", "c", "d"]
CALL_PRICES = [6990 + 2 * k for k in range(11)]  # every other tick: some auction prices fall between orders
CASH = 10_000_000_000
UNITS = 10_000_000


def new_action(side):
    """A limit order; the price index 0-7 means the upper eight prices for a bid, the lower eight for an ask,
    so most books cross. The last field is an iceberg's display quantity (ignored unless below the quantity)."""
    return st.tuples(
        st.just("new"),
        st.sampled_from(ACCOUNTS),
        st.just(side),
        st.integers(0, 7),
        st.integers(1, 30),
        st.sampled_from([GTC, DAY]),
        st.one_of(st.none(), st.integers(1, 6)),
    )


cancel_action = st.tuples(st.just("cancel"), st.integers(0, 40))
replace_action = st.tuples(
    st.just("replace"),
    st.integers(0, 40),
    st.one_of(st.none(), st.sampled_from(CALL_PRICES)),
    st.one_of(st.none(), st.integers(1, 30)),
)
# At least one bid and one ask, cancels and replaces among them, in any order.
call_actions = st.tuples(
    st.lists(new_action(BUY), min_size=1, max_size=12),
    st.lists(new_action(SELL), min_size=1, max_size=12),
    st.lists(st.one_of(cancel_action, replace_action), max_size=12),
).flatmap(lambda parts: st.permutations(parts[0] + parts[1] + parts[2]))


class Resting:
    """The test's own record of an order resting in the call."""

    def __init__(self, order_id, account, clid, side, price, leaves, display, arrival):
        self.order_id, self.account, self.clid, self.side = order_id, account, clid, side
        self.price, self.leaves, self.display, self.arrival = price, leaves, display, arrival

    def shown(self):
        return self.leaves if self.display is None else min(self.display, self.leaves)


def model_book(model: dict, reference: int):
    """The model's auction: the brute-force price and the greedy allocation at it."""
    open_orders = [o for o in model.values() if o.leaves]
    bids = sorted((o for o in open_orders if o.side is BUY), key=lambda o: (-o.price, o.arrival))
    asks = sorted((o for o in open_orders if o.side is SELL), key=lambda o: (o.price, o.arrival))
    levels = {}
    for o in open_orders:
        levels[o.side, o.price] = levels.get((o.side, o.price), 0) + o.leaves
    bid_levels = sorted(((p, q) for (side, p), q in levels.items() if side is BUY), reverse=True)
    ask_levels = sorted((p, q) for (side, p), q in levels.items() if side is SELL)
    return bids, asks, brute_auction(bid_levels, ask_levels, reference, 1)


def allocate(bids, asks, found):
    """Pair bids at or above the price with asks at or below it, in priority, until the quantity is done."""
    if found is None:
        return []
    price, remaining = found[0], found[1]
    buys = [[o, o.leaves] for o in bids if o.price >= price]
    sells = [[o, o.leaves] for o in asks if o.price <= price]
    out = []
    i = j = 0
    while remaining:
        fill = min(buys[i][1], sells[j][1], remaining)
        buys[i][1] -= fill
        sells[j][1] -= fill
        remaining -= fill
        out.append((buys[i][0].order_id, sells[j][0].order_id, fill, buys[i][1], sells[j][1]))
        if not buys[i][1]:
            i += 1
        if not sells[j][1]:
            j += 1
    return out


@pytest.mark.parametrize("risk", [False, True], ids=["matching-only", "pre-trade-risk"])
@settings(max_examples=250)
@given(opening=st.one_of(st.none(), st.sampled_from([6950, 6991, 7000, 7004, 7050])), actions=call_actions)
def test_uncross_matches_reference_allocation(risk, opening, actions):
    engine = Engine(shipped_instruments(), pre_trade_risk=risk)
    ts = itertools.count(1)
    if risk:
        for account in ACCOUNTS:
            engine.handle(OpenAccount(ts=next(ts), account=account))
            engine.handle(Deposit(ts=next(ts), account=account, asset="EUR", amount=CASH))
            engine.handle(Deposit(ts=next(ts), account=account, asset=SYM, amount=UNITS))
    if opening is not None:  # one continuous trade first, so the reference is the last price
        engine.handle(
            NewOrder(
                ts=next(ts), account="a", client_order_id="open-s", instrument=SYM, side=SELL, quantity=1, price=opening
            )
        )
        assert any(
            type(e) is Trade
            for e in engine.handle(
                NewOrder(
                    ts=next(ts),
                    account="b",
                    client_order_id="open-b",
                    instrument=SYM,
                    side=BUY,
                    quantity=1,
                    price=opening,
                )
            )
        )
    reference = 7000 if opening is None else opening
    cash_before = {a: acc.cash for a, acc in engine.accounts.items()}
    units_before = {a: acc.units[SYM] for a, acc in engine.accounts.items()} if risk else {}
    engine.handle(SetTradingPhase(ts=next(ts), instrument=SYM, phase=CLOSED))
    engine.handle(SetTradingPhase(ts=next(ts), instrument=SYM, phase=OPENING))
    book = engine.books[SYM]
    assert book.phase is OPENING

    model: dict[int, Resting] = {}
    placed: list[int] = []  # order ids, in order placed (cancel and replace pick from them)
    arrival = itertools.count()
    last_indicative = None
    for n, action in enumerate(actions):
        kind = action[0]
        if kind == "new":
            _, account, side, level, quantity, tif, display = action
            price = CALL_PRICES[level + 3] if side is BUY else CALL_PRICES[level]
            if display is not None and display >= quantity:
                display = None
            events = engine.handle(
                NewOrder(
                    ts=next(ts),
                    account=account,
                    client_order_id=f"o{n}",
                    instrument=SYM,
                    side=side,
                    quantity=quantity,
                    price=price,
                    time_in_force=tif,
                    display_quantity=display,
                )
            )
            accepted = [e for e in events if type(e) is OrderAccepted]
            assert len(accepted) == 1, events
            order_id = accepted[0].order_id
            model[order_id] = Resting(order_id, account, f"o{n}", side, price, quantity, display, next(arrival))
            placed.append(order_id)
        elif not placed:
            continue
        elif kind == "cancel":
            order = model[placed[action[1] % len(placed)]]
            events = engine.handle(CancelOrder(ts=next(ts), account=order.account, order_id=order.order_id))
            if order.leaves:
                assert [(e.order_id, e.canceled_quantity, e.reason) for e in events if type(e) is OrderCanceled] == [
                    (order.order_id, order.leaves, CancelReason.USER)
                ]
                order.leaves = 0
            else:
                assert [e.code for e in events if type(e) is RequestRejected] == [RejectCode.ORDER_CLOSED]
        else:
            _, pick, new_price, new_quantity = action
            order = model[placed[pick % len(placed)]]
            price = order.price if new_price is None else new_price
            quantity = (order.leaves or 1) if new_quantity is None else new_quantity
            if order.leaves and order.display is not None and price == order.price and quantity < order.leaves:
                # A smaller iceberg at the same price: see test_indicative_follows_hidden_iceberg_reduction
                # (the engine does not re-announce the indicative price); move it a tick instead.
                price = order.price + 2 if order.price < CALL_PRICES[-1] else order.price - 2
            events = engine.handle(
                ReplaceOrder(
                    ts=next(ts), account=order.account, order_id=order.order_id, price=price, quantity=quantity
                )
            )
            if not order.leaves:
                assert [e.code for e in events if type(e) is RequestRejected] == [RejectCode.ORDER_CLOSED]
            elif price == order.price and quantity == order.leaves:
                assert [e.code for e in events if type(e) is RequestRejected] == [RejectCode.REPLACE_CHANGES_NOTHING]
            else:
                keeps = price == order.price and quantity < order.leaves
                replaced = [e for e in events if type(e) is OrderReplaced]
                assert [(e.order_id, e.price, e.quantity, e.leaves, e.priority_kept) for e in replaced] == [
                    (order.order_id, price, quantity, quantity, keeps)
                ]
                order.price, order.leaves = price, quantity
                if not keeps:
                    order.arrival = next(arrival)
        assert not any(type(e) is Trade for e in events), "a trade during a call"
        bids, asks, found = model_book(model, reference)
        assert as_tuple(indicative_price(book)) == found
        indicative = [e for e in events if type(e) is AuctionIndicative]
        assert len(indicative) <= 1
        if indicative:
            last_indicative = indicative[0]
            assert last_indicative.phase is OPENING
            assert (
                last_indicative.price,
                last_indicative.quantity,
                last_indicative.demand,
                last_indicative.supply,
            ) == (found or (None, 0, 0, 0))
            levels = [i for i, e in enumerate(events) if type(e) is LevelChanged]
            assert levels and events.index(last_indicative) < levels[0]
        if risk:
            check_reservations(engine)
        book._check()

    # The book in the call, in priority, as the model has it.
    bids, asks, found = model_book(model, reference)
    assert [(o.order_id, o.leaves, o.visible) for o in book.resting_orders(BUY)] == [
        (o.order_id, o.leaves, o.shown()) for o in bids
    ]
    assert [(o.order_id, o.leaves, o.visible) for o in book.resting_orders(SELL)] == [
        (o.order_id, o.leaves, o.shown()) for o in asks
    ]

    events = engine.handle(SetTradingPhase(ts=next(ts), instrument=SYM, phase=CONT))
    expected = allocate(bids, asks, found)
    event(f"auction trades: {min(len(expected), 5)}{'+' if len(expected) >= 5 else ''}")
    event(f"icebergs trading: {any(model[b].display or model[a].display for b, a, *_ in expected)}")
    trades = [e for e in events if type(e) is Trade]
    completed = [e for e in events if type(e) is AuctionCompleted]
    assert len(completed) == 1
    done = completed[0]
    assert (done.phase, done.price, done.quantity, done.trades) == (
        OPENING,
        found and found[0],
        found[1] if found else 0,
        len(expected),
    )
    assert [
        (t.taker_order_id, t.maker_order_id, t.quantity, t.taker_leaves, t.maker_leaves) for t in trades
    ] == expected
    if found is not None:
        assert last_indicative is not None
        assert all(t.price == found[0] == last_indicative.price for t in trades)
        assert sum(t.quantity for t in trades) == last_indicative.quantity == done.quantity
        assert book.last_price == found[0]
    else:
        assert last_indicative is None or last_indicative.price is None
        assert book.last_price == (None if opening is None else opening)
    for t in trades:
        assert t.aggressor_side is None and t.instrument == SYM
        assert model[t.taker_order_id].side is BUY and model[t.maker_order_id].side is SELL
        assert t.taker_account == model[t.taker_order_id].account
        assert t.maker_account == model[t.maker_order_id].account
        assert t.maker_fee == t.taker_fee == MAKER_FEE * t.quantity
    # Order of events: trades, the completion, then the phase change; depth last.
    assert kinds(events)[: len(trades) + 2] == ["Trade"] * len(trades) + ["AuctionCompleted", "TradingPhaseChanged"]
    assert all(type(e) is LevelChanged for e in events[len(trades) + 2 :])
    if trades:
        first_id = trades[0].trade_id
        assert [t.trade_id for t in trades] == list(range(first_id, first_id + len(trades)))

    # The model after the auction equals the book; the book is no longer crossed.
    for buy_id, sell_id, fill, _, _ in expected:
        model[buy_id].leaves -= fill
        model[sell_id].leaves -= fill
    bids, asks, _ = model_book(model, reference)
    assert [(o.order_id, o.leaves, o.visible) for o in book.resting_orders(BUY)] == [
        (o.order_id, o.leaves, o.shown()) for o in bids
    ]
    assert [(o.order_id, o.leaves, o.visible) for o in book.resting_orders(SELL)] == [
        (o.order_id, o.leaves, o.shown()) for o in asks
    ]
    assert book.phase is CONT
    assert book.best_bid() is None or book.best_ask() is None or book.best_bid() < book.best_ask()
    check_books(engine)

    if risk:
        check_reservations(engine)
        paid = dict.fromkeys(engine.accounts, 0)
        bought = dict.fromkeys(engine.accounts, 0)
        for t in trades:
            value = t.price * t.quantity * LOT
            paid[t.taker_account] += value + t.taker_fee
            paid[t.maker_account] -= value - t.maker_fee
            paid[FEE_ACCOUNT] -= t.maker_fee + t.taker_fee
            bought[t.taker_account] += t.quantity * LOT
            bought[t.maker_account] -= t.quantity * LOT
        for account_id, account in engine.accounts.items():
            assert account.cash == cash_before[account_id] - paid[account_id]
            assert account.units[SYM] == units_before[account_id] + bought[account_id]
        assert sum(a.cash for a in engine.accounts.values()) == CASH * len(ACCOUNTS)
        assert sum(a.units[SYM] for a in engine.accounts.values()) == UNITS * len(ACCOUNTS)


# ============================================================================================================
# 3. scenarios
# ============================================================================================================


def opening_call(s: Scenario) -> None:
    """From continuous trading into the opening call, the only way the table allows: via the close."""
    assert phase(s, CLOSED)[-1].phase is CLOSED
    assert phase(s, OPENING)[-1].phase is OPENING


def test_tie_rule_2_smallest_surplus_beats_the_reference():
    # 7000: demand 10, supply 10 (surplus 0); 7001: demand 10, supply 15 (surplus 5). The reference 7001 would
    # favour 7001 but rule 2 comes first.
    assert auction_price([(7001, 10)], [(7000, 10), (7001, 5)], 7001, 1) == (7000, 10, 10, 10)
    s = Scenario(Engine(instruments(reference_price=7001), pre_trade_risk=False))
    opening_call(s)
    bid = s.place("b", BUY, 10, 7001)
    ask1 = s.place("s", SELL, 10, 7000)
    s.place("t", SELL, 5, 7001)
    events = phase(s, CONT)
    assert trades_of(events) == [(7000, 10, None, bid, ask1, 0, 0, 2000, 2000)]
    done = events[1]
    assert (type(done), done.price, done.quantity, done.trades) == (AuctionCompleted, 7000, 10, 1)
    assert s.depth(SELL) == [(7001, 5, 1)] and s.depth(BUY) == []


def test_tie_rule_3_reference_inside_a_stretch_is_the_price():
    # Every price from 6950 to 7050 executes 10 with no surplus: the reference 7000 itself wins.
    assert auction_price([(7050, 10)], [(6950, 10)], 7000, 1) == (7000, 10, 10, 10)
    # Reference outside the stretch: the end nearest it.
    assert auction_price([(6990, 10)], [(6950, 10)], 7000, 1) == (6990, 10, 10, 10)
    assert auction_price([(7050, 10)], [(7020, 10)], 7000, 1) == (7020, 10, 10, 10)
    s = Scenario()
    opening_call(s)
    s.place("b", BUY, 10, 7050)
    accepted = s.sell("s", 10, 6950)
    # The crossed call book, no trade; its indicative price is the reference.
    assert kinds(accepted) == ["OrderAccepted", "AuctionIndicative", "LevelChanged"]
    indicative = accepted[1]
    assert (indicative.phase, indicative.price, indicative.quantity, indicative.demand, indicative.supply) == (
        OPENING,
        7000,
        10,
        10,
        10,
    )
    events = phase(s, CONT)
    assert [(t.price, t.quantity) for t in events if type(t) is Trade] == [(7000, 10)]
    assert s.book.last_price == 7000


def test_tie_rule_3_reference_is_the_last_trade_price():
    s = Scenario()
    s.sell("x", 1, 7013)
    assert trades_of(s.buy("y", 1, 7013))[0][0] == 7013
    opening_call(s)
    s.buy("b", 10, 7050)
    s.sell("s", 10, 6950)
    events = phase(s, CONT)
    assert [e.price for e in events if type(e) is AuctionCompleted] == [7013]


def test_tie_rule_4_equidistant_prices_give_the_lower():
    # With a reference on the tick, the reference itself always ties or beats two prices equally far on either
    # side of it (demand falls and supply rises with the price), so rule 4 shows only with a reference between
    # two ticks: 7000 and 7010 both execute 10 with no surplus and lie 5 from 7005.
    assert auction_price([(7010, 10)], [(7000, 10)], 7005, 10) == (7000, 10, 10, 10)
    # Rule 4 is the last: both 7000 (13 bid, 10 offered) and 7010 (10 bid, 13 offered) have surplus 3.
    assert auction_price([(7010, 10), (7000, 3)], [(7000, 10), (7010, 3)], 7005, 10) == (7000, 10, 13, 10)


def test_marginal_order_partly_filled_keeps_its_rest_and_time_priority_counts():
    s = Scenario()
    opening_call(s)
    high = s.place("a", BUY, 10, 7010)
    first = s.place("b", BUY, 10, 7000)
    second = s.place("c", BUY, 10, 7000)
    ask = s.place("s", SELL, 25, 6990)
    # 6990..7000: demand 30, supply 25 -> 25 (surplus 5); the reference 7000 is in that stretch.
    events = phase(s, CONT)
    assert trades_of(events) == [
        (7000, 10, None, high, ask, 0, 15, 2000, 2000),
        (7000, 10, None, first, ask, 0, 5, 2000, 2000),
        (7000, 5, None, second, ask, 5, 0, 1000, 1000),
    ]
    assert kinds(events)[3:5] == ["AuctionCompleted", "TradingPhaseChanged"]
    assert (events[3].phase, events[3].price, events[3].quantity, events[3].trades) == (OPENING, 7000, 25, 3)
    changed = events[4]
    assert (changed.phase, changed.previous, changed.reason, changed.trigger_price, changed.reference_price) == (
        CONT,
        OPENING,
        "operator",
        None,
        None,
    )
    assert s.queue(BUY) == [second] and s.depth(BUY) == [(7000, 5, 1)] and s.depth(SELL) == []
    assert s.book.open_orders[second].leaves == 5
    s.check()
    # Continuous trading resumes: the rest of the marginal order is hit at once.
    events = s.sell("d", 2, 7000, time_in_force=IOC)
    assert trades_of(events) == [(7000, 2, SELL, events[0].order_id, second, 0, 3, 400, 700)]
    assert s.book.open_orders[second].leaves == 3


def test_iceberg_takes_part_with_its_whole_quantity():
    s = Scenario()
    opening_call(s)
    iceberg = s.place("a", BUY, 20, 7000, display_quantity=5)
    events = s.sell("s", 17, 7000)
    indicative = events[1]
    assert (type(indicative), indicative.price, indicative.quantity, indicative.demand, indicative.supply) == (
        AuctionIndicative,
        7000,
        17,
        20,
        17,
    )
    ask = events[0].order_id
    events = phase(s, CONT)
    assert trades_of(events) == [(7000, 17, None, iceberg, ask, 3, 0, 3400, 3400)]
    assert [(o.order_id, o.leaves, o.visible) for o in s.book.resting_orders(BUY)] == [(iceberg, 3, 3)]
    assert s.depth(BUY) == [(7000, 3, 1)]
    s.check()


def test_iceberg_after_auction_shows_one_slice_of_what_is_left():
    s = Scenario()
    opening_call(s)
    iceberg = s.place("a", SELL, 30, 7000, display_quantity=4)
    s.place("b", BUY, 10, 7000)
    phase(s, CONT)
    assert [(o.order_id, o.leaves, o.visible) for o in s.book.resting_orders(SELL)] == [(iceberg, 20, 4)]
    assert s.depth(SELL) == [(7000, 4, 1)]
    s.check()


@pytest.mark.parametrize("call", [OPENING, CLOSING, VOLATILE])
def test_orders_refused_in_a_call(call):
    s = band_scenario()
    if call is OPENING:
        opening_call(s)
    elif call is CLOSING:
        phase(s, CLOSING)
    else:
        s.sell("x", 1, 7200)
        s.buy("y", 1, 7200)
    assert s.book.phase is call
    s.place("z", SELL, 1, 7000)
    for fields in (
        dict(order_type=MARKET),
        dict(time_in_force=IOC, price=7000),
        dict(time_in_force=FOK, price=7000),
        dict(post_only=True, price=6000),
    ):
        before = snapshot(s.engine)
        fields.setdefault("price", None)
        events = s.order("a", BUY, 1, **fields)
        assert [(type(e), e.code) for e in events] == [(OrderRejected, RejectCode.NOT_TAKEN_IN_CALL)]
        assert_only_seq_moved(s.engine, before)
    # Limit GTC, DAY, GTD and stop-limit orders are taken and rest without matching.
    for fields in (
        dict(),
        dict(time_in_force=DAY),
        dict(time_in_force=TimeInForce.GTD, expire_date=20990101),
        dict(stop_price=7100),
    ):
        events = s.order("a", BUY, 1, 7300, **fields)
        assert type(events[0]) is OrderAccepted and not any(type(e) is Trade for e in events)
    assert s.book.best_bid() == 7300 and s.book.best_ask() <= 7300  # crossed, no trade
    s.check()


@pytest.mark.parametrize("where, code", [(CLOSED, RejectCode.INSTRUMENT_CLOSED), (HALTED, RejectCode.TRADING_HALTED)])
def test_closed_and_halted_refuse_orders_and_replaces_but_take_cancels(where, code):
    s = Scenario()
    resting = s.place("a", BUY, 5, 6900)
    other = s.place("a", SELL, 5, 7100)
    phase(s, where)
    for fields in (dict(price=7000), dict(price=None, order_type=MARKET), dict(price=7000, time_in_force=IOC)):
        before = snapshot(s.engine)
        events = s.order("b", SELL, 1, **fields)
        assert [(type(e), e.code) for e in events] == [(OrderRejected, code)]
        assert_only_seq_moved(s.engine, before)
    before = snapshot(s.engine)
    events = s.replace("a", resting, price=6950)
    assert [(type(e), e.request, e.code) for e in events] == [(RequestRejected, "replace", code)]
    assert_only_seq_moved(s.engine, before)
    events = s.cancel("a", resting)
    assert [(type(e), getattr(e, "reason", None)) for e in events] == [
        (OrderCanceled, CancelReason.USER),
        (LevelChanged, None),
    ]
    assert not any(type(e) is AuctionIndicative for e in events)
    assert s.queue(SELL) == [other]
    s.check()


@pytest.mark.parametrize("where", [CONT, CLOSED, OPENING, CLOSING, VOLATILE, HALTED])
def test_cancel_taken_in_every_phase(where):
    s = band_scenario()
    resting = s.place("a", BUY, 5, 6900)
    reach(s, where)
    assert s.book.phase is where
    events = s.cancel("a", resting)
    assert [(e.order_id, e.canceled_quantity, e.reason) for e in events if type(e) is OrderCanceled] == [
        (resting, 5, CancelReason.USER)
    ]
    assert resting not in s.engine.open_orders
    assert s.book.phase is where
    s.check()


def test_replace_in_a_call_rests_at_the_new_place_without_matching():
    s = Scenario()
    opening_call(s)
    first = s.place("a", BUY, 5, 6990)
    second = s.place("b", BUY, 5, 7000)
    ask = s.place("s", SELL, 5, 7000)
    events = s.replace("a", first, price=7010)
    assert kinds(events) == ["OrderReplaced", "AuctionIndicative", "LevelChanged", "LevelChanged"]
    assert not any(type(e) is Trade for e in events)
    assert s.queue(BUY) == [first, second]
    # A smaller quantity at the same price keeps the place; a larger one goes to the back.
    s.replace("b", second, quantity=4)
    assert s.queue(BUY) == [first, second]
    s.replace("a", first, price=7000)
    assert s.queue(BUY) == [second, first]
    events = phase(s, CONT)
    assert trades_of(events) == [
        (7000, 4, None, second, ask, 0, 1, 800, 800),
        (7000, 1, None, first, ask, 4, 0, 200, 200),
    ]
    s.check()


def test_book_crosses_in_a_call_without_trades_and_indicative_follows():
    s = Scenario()
    opening_call(s)
    events = s.buy("a", 10, 7100)
    assert kinds(events) == ["OrderAccepted", "AuctionIndicative", "LevelChanged"]
    assert astuple(events[1])[3:] == (OPENING, None, 0, 0, 0)
    events = s.sell("b", 4, 6900)
    assert (events[1].price, events[1].quantity, events[1].demand, events[1].supply) == (7000, 4, 10, 4)
    # A batch: one indicative for the whole batch, before the level changes.
    events = s.engine.handle_all(
        [
            NewOrder(ts=s.ts(), account="c", client_order_id="x1", instrument=SYM, side=SELL, quantity=3, price=7050),
            NewOrder(ts=s.ts(), account="c", client_order_id="x2", instrument=SYM, side=SELL, quantity=3, price=7100),
        ]
    )
    assert kinds(events) == ["OrderAccepted", "OrderAccepted", "AuctionIndicative", "LevelChanged", "LevelChanged"]
    # 7050: demand 10, supply 7; 7100: demand 10, supply 10.
    assert (events[2].price, events[2].quantity, events[2].demand, events[2].supply) == (7100, 10, 10, 10)
    assert s.book.best_bid() == 7100 and s.book.best_ask() == 6900
    assert s.book.last_price is None
    s.check()


def test_call_without_crossing_completes_with_no_price():
    s = Scenario()
    opening_call(s)
    events = phase(s, CONT)
    assert [(type(e), e.price, e.quantity, e.trades) for e in events[:1]] == [(AuctionCompleted, None, 0, 0)]
    assert kinds(events) == ["AuctionCompleted", "TradingPhaseChanged"]
    opening_call(s)
    bid = s.place("a", BUY, 10, 6900)
    ask = s.place("b", SELL, 10, 7100)
    events = phase(s, CONT)
    assert kinds(events) == ["AuctionCompleted", "TradingPhaseChanged"]
    assert (events[0].phase, events[0].price, events[0].quantity, events[0].trades) == (OPENING, None, 0, 0)
    assert s.queue(BUY) == [bid] and s.queue(SELL) == [ask] and s.book.last_price is None
    s.check()


def test_closing_call_to_closed_uncrosses():
    s = Scenario()
    phase(s, CLOSING)
    ask = s.place("s", SELL, 6, 6980)
    bid = s.place("b", BUY, 10, 7020)
    events = phase(s, CLOSED)
    assert trades_of(events) == [(7000, 6, None, bid, ask, 4, 0, 1200, 1200)]
    assert kinds(events)[1:3] == ["AuctionCompleted", "TradingPhaseChanged"]
    assert (events[1].phase, events[1].price, events[1].quantity, events[1].trades) == (CLOSING, 7000, 6, 1)
    assert (events[2].phase, events[2].previous) == (CLOSED, CLOSING)
    assert s.book.phase is CLOSED and s.book.last_price == 7000
    assert [(type(e), e.code) for e in s.buy("x", 1, 7100)] == [(OrderRejected, RejectCode.INSTRUMENT_CLOSED)]
    s.check()


def test_stops_wait_in_a_call_and_are_released_by_the_auction_price():
    s = Scenario()
    s.sell("x", 1, 7000)
    s.buy("y", 1, 7000)
    assert s.book.last_price == 7000
    opening_call(s)
    # Already reached by the last price, but a call releases nothing.
    reached = s.place("a", BUY, 2, 7100, stop_price=6990)
    events = s.order("a", BUY, 3, 7100, stop_price=7050)
    assert kinds(events) == ["OrderAccepted"]
    stop = events[0].order_id
    sell_stop = s.place("a", SELL, 1, 6000, stop_price=6500)
    assert {o.order_id for o in s.book.waiting_stops()} == {reached, stop, sell_stop}
    bid = s.place("b", BUY, 10, 7060)
    ask = s.place("c", SELL, 14, 7060)
    events = phase(s, CONT)
    assert kinds(events)[:4] == ["Trade", "AuctionCompleted", "TradingPhaseChanged", "StopTriggered"]
    assert trades_of(events[:1]) == [(7060, 10, None, bid, ask, 0, 4, 2000, 2000)]
    triggered = [(e.order_id, e.stop_price, e.last_price) for e in events if type(e) is StopTriggered]
    assert triggered == [(reached, 6990, 7060), (stop, 7050, 7060)]
    assert [
        (t.price, t.quantity, t.aggressor_side, t.taker_order_id, t.maker_order_id) for t in events if type(t) is Trade
    ][1:] == [(7060, 2, BUY, reached, ask), (7060, 2, BUY, stop, ask)]
    assert [o.order_id for o in s.book.waiting_stops()] == [sell_stop]
    assert s.queue(BUY) == [stop] and s.book.open_orders[stop].leaves == 1
    s.check()


def test_stop_not_reached_by_the_auction_keeps_waiting():
    s = Scenario()
    opening_call(s)
    stop = s.place("a", BUY, 3, 7100, stop_price=7050)
    s.buy("b", 10, 7040)
    s.sell("c", 10, 7040)
    events = phase(s, CONT)
    assert not any(type(e) is StopTriggered for e in events)
    assert [o.order_id for o in s.book.waiting_stops()] == [stop]


# -- the phase-transition table ---------------------------------------------------------------------------

ALLOWED = {
    CLOSED: {OPENING, CONT, HALTED},
    OPENING: {CONT, CLOSED, HALTED},
    CONT: {CLOSING, CLOSED, HALTED},
    CLOSING: {CLOSED, HALTED},
    VOLATILE: {CONT, CLOSING, CLOSED, HALTED},
    HALTED: {CLOSED, OPENING, CONT},
}


def reach(s: Scenario, where: TradingPhase) -> None:
    """Bring a band scenario's EUA from continuous trading into a phase (a volatility interruption by a trade
    beyond the band)."""
    if where is VOLATILE:
        s.sell("x", 1, 7200)
        s.buy("y", 1, 7200)
    elif where is OPENING:
        phase(s, CLOSED)
        phase(s, OPENING)
    elif where is not CONT:
        phase(s, where)
    assert s.book.phase is where


def test_phase_changes_table_is_the_documented_one():
    assert PHASE_CHANGES == ALLOWED


@pytest.mark.parametrize("start", list(TradingPhase))
@pytest.mark.parametrize("target", list(TradingPhase))
def test_phase_transition(start, target):
    s = band_scenario()
    reach(s, start)
    before = snapshot(s.engine)
    events = phase(s, target)
    if target not in ALLOWED[start]:
        assert [(type(e), e.request, e.code) for e in events] == [
            (RequestRejected, "set_trading_phase", RejectCode.PHASE_CHANGE_NOT_ALLOWED)
        ]
        assert_only_seq_moved(s.engine, before)
        assert s.book.phase is start
        return
    # Leaving a halt runs the auction too, but a halt entered from continuous trading holds no crossed book:
    # nothing trades and no AuctionCompleted is announced.
    auction = target in (CONT, CLOSED) and start in CALL_PHASES
    changed = [e for e in events if type(e) is TradingPhaseChanged]
    assert [(e.phase, e.previous, e.reason, e.trigger_price, e.reference_price) for e in changed] == [
        (target, start, "operator", None, None)
    ]
    completed = [e for e in events if type(e) is AuctionCompleted]
    assert len(completed) == (1 if auction else 0)
    if start is VOLATILE and auction:  # the crossed bid 7200 / ask 7200 of the interruption
        assert (completed[0].phase, completed[0].price, completed[0].quantity) == (VOLATILE, 7200, 1)
    assert s.book.phase is target
    s.check()


# ============================================================================================================
# 4. the volatility interruption
# ============================================================================================================


def three_asks(s: Scenario) -> list[int]:
    return [s.place("s", SELL, 5, price) for price in (7100, 7150, 7200)]


def test_buy_sweep_stops_at_the_band_and_the_limit_remainder_rests():
    s = band_scenario()
    a1, a2, a3 = three_asks(s)
    events = s.buy("b", 12, 7200)
    buy = events[0].order_id
    assert kinds(events) == [
        "OrderAccepted",
        "Trade",
        "TradingPhaseChanged",
        "AuctionIndicative",
        "LevelChanged",
        "LevelChanged",
    ]
    assert trades_of(events) == [(7100, 5, BUY, buy, a1, 7, 0, 1000, 1750)]
    changed = events[2]
    assert (changed.phase, changed.previous, changed.reason, changed.trigger_price) == (
        VOLATILE,
        CONT,
        "volatility",
        7150,
    )
    # 7150: demand 7, supply 5; 7200: demand 7, supply 10 -> 7200 executes 7.
    assert astuple(events[3])[3:] == (VOLATILE, 7200, 7, 7, 10)
    assert s.book.phase is VOLATILE
    assert s.queue(BUY) == [buy] and s.book.open_orders[buy].leaves == 7
    assert s.book.best_bid() == 7200 > s.book.best_ask() == 7150  # crossed in the call
    s.check()
    # The interruption is a call: market orders are refused, limit orders rest without matching.
    assert [e.code for e in s.market("m", BUY, 1)] == [RejectCode.NOT_TAKEN_IN_CALL]
    late = s.buy("q", 1, 7150)
    assert not any(type(e) is Trade for e in late)
    late_id = late[0].order_id
    # Its end: the auction. 7150: demand 8, supply 5; 7200: demand 7, supply 10 -> 7 at 7200 (rule 1); the late
    # bid at 7150 does not trade and rests.
    events = phase(s, CONT)
    assert trades_of(events) == [(7200, 5, None, buy, a2, 2, 0, 1000, 1000), (7200, 2, None, buy, a3, 0, 3, 400, 400)]
    assert s.queue(BUY) == [late_id] and s.depth(SELL) == [(7200, 3, 1)]
    s.check()


def test_reopening_auction_after_an_interruption():
    s = band_scenario()
    a1, a2, a3 = three_asks(s)
    buy = s.buy("b", 12, 7200)[0].order_id
    events = phase(s, CONT)
    assert trades_of(events) == [(7200, 5, None, buy, a2, 2, 0, 1000, 1000), (7200, 2, None, buy, a3, 0, 3, 400, 400)]
    assert kinds(events)[2:4] == ["AuctionCompleted", "TradingPhaseChanged"]
    assert (events[2].phase, events[2].price, events[2].quantity, events[2].trades) == (VOLATILE, 7200, 7, 2)
    assert (events[3].phase, events[3].previous, events[3].reason) == (CONT, VOLATILE, "operator")
    assert s.book.phase is CONT and s.book.last_price == 7200
    assert s.depth(SELL) == [(7200, 3, 1)] and s.depth(BUY) == []
    s.check()
    # Continuous again: an order trades on arrival.
    events = s.buy("c", 1, 7200, time_in_force=IOC)
    assert [(t.price, t.quantity, t.aggressor_side) for t in events if type(t) is Trade] == [(7200, 1, BUY)]
    # The band is now centred on the auction price: 7200 +- 144.
    s.sell("s", 1, 7344)
    assert [t.price for t in s.buy("c", 3, 7344) if type(t) is Trade] == [7200, 7344]
    assert s.book.phase is CONT
    s.sell("s", 1, 7489)  # 7344 + 146 = 7490 is the edge now; 7491 is beyond
    s.sell("s", 1, 7491)
    events = s.buy("c", 2, 7491)
    changed = [e for e in events if type(e) is TradingPhaseChanged]
    assert [t.price for t in events if type(t) is Trade] == [7489]
    assert [(e.phase, e.reason, e.trigger_price) for e in changed] == [(VOLATILE, "volatility", 7491)]


def test_interruption_reports_the_band_centre_after_fills_inside_the_band():
    s = band_scenario()
    three_asks(s)
    changed = [e for e in s.buy("b", 12, 7200) if type(e) is TradingPhaseChanged]
    assert [(e.trigger_price, e.reference_price) for e in changed] == [(7150, 7000)]


def test_interruption_without_a_fill_reports_trigger_and_reference():
    s = band_scenario()
    s.place("s", SELL, 5, 7141)
    events = s.buy("b", 5, 7141)
    assert kinds(events) == ["OrderAccepted", "TradingPhaseChanged", "AuctionIndicative", "LevelChanged"]
    assert astuple(events[1])[3:] == (VOLATILE, CONT, "volatility", 7141, 7000)
    # Exactly on the edge of the band trades.
    s2 = band_scenario()
    s2.sell("s", 5, 7140)
    assert [t.price for t in s2.buy("b", 5, 7140) if type(t) is Trade] == [7140] and s2.book.phase is CONT


def test_ioc_remainder_is_canceled_by_the_interruption():
    s = band_scenario()
    a1, a2 = s.place("s", SELL, 5, 7100), s.place("s", SELL, 5, 7150)
    events = s.buy("b", 8, 7150, time_in_force=IOC)
    buy = events[0].order_id
    assert kinds(events)[:4] == ["OrderAccepted", "Trade", "TradingPhaseChanged", "OrderCanceled"]
    assert trades_of(events) == [(7100, 5, BUY, buy, a1, 3, 0, 1000, 1750)]
    assert events[2].trigger_price == 7150
    assert (events[3].order_id, events[3].canceled_quantity, events[3].reason) == (
        buy,
        3,
        CancelReason.VOLATILITY_INTERRUPTION,
    )
    assert s.book.phase is VOLATILE and s.queue(BUY) == [] and s.queue(SELL) == [a2]
    s.check()


def test_market_remainder_is_canceled_by_the_interruption():
    s = band_scenario()
    a1 = s.place("s", SELL, 5, 7100)
    s.place("s", SELL, 5, 7150)
    events = s.market("b", BUY, 8)
    buy = events[0].order_id
    assert kinds(events)[:4] == ["OrderAccepted", "Trade", "TradingPhaseChanged", "OrderCanceled"]
    assert trades_of(events) == [(7100, 5, BUY, buy, a1, 3, 0, 1000, 1750)]
    assert (events[3].order_id, events[3].canceled_quantity, events[3].reason) == (
        buy,
        3,
        CancelReason.VOLATILITY_INTERRUPTION,
    )
    assert s.book.phase is VOLATILE and s.queue(BUY) == []
    s.check()


def test_fok_fillable_only_beyond_the_band_is_canceled_without_trade():
    s = band_scenario()
    asks = [s.place("s", SELL, 5, 7100), s.place("s", SELL, 5, 7150)]
    events = s.buy("b", 8, 7150, time_in_force=FOK)
    buy = events[0].order_id
    assert kinds(events) == ["OrderAccepted", "TradingPhaseChanged", "OrderCanceled"]
    assert (events[1].phase, events[1].reason, events[1].reference_price) == (VOLATILE, "volatility", 7000)
    assert (events[2].order_id, events[2].canceled_quantity, events[2].reason) == (
        buy,
        8,
        CancelReason.VOLATILITY_INTERRUPTION,
    )
    assert s.book.phase is VOLATILE and s.queue(SELL) == asks
    s.check()


def test_fok_interruption_reports_the_first_price_outside_the_band():
    s = band_scenario()
    s.place("s", SELL, 5, 7100)
    s.place("s", SELL, 5, 7150)
    changed = [e for e in s.buy("b", 8, 7150, time_in_force=FOK) if type(e) is TradingPhaseChanged]
    assert [e.trigger_price for e in changed] == [7150]


def test_fok_that_cannot_fill_at_all_is_unfilled_without_interruption():
    s = band_scenario()
    s.place("s", SELL, 5, 7100)
    s.place("s", SELL, 5, 7150)
    events = s.buy("b", 20, 7150, time_in_force=FOK)
    assert kinds(events) == ["OrderAccepted", "OrderCanceled"]
    assert (events[1].canceled_quantity, events[1].reason) == (20, CancelReason.FOK_UNFILLED)
    assert s.book.phase is CONT
    s.check()


def test_fok_that_cannot_fill_at_all_beyond_the_band_is_unfilled_without_interruption():
    s = band_scenario()
    s.place("s", SELL, 5, 7150)
    events = s.buy("b", 20, 7150, time_in_force=FOK)
    assert kinds(events) == ["OrderAccepted", "OrderCanceled"]
    assert events[1].reason is CancelReason.FOK_UNFILLED
    assert s.book.phase is CONT


def test_band_follows_the_last_trade_price():
    s = band_scenario()
    s.sell("s", 1, 7100)
    assert [t.price for t in s.buy("b", 1, 7100) if type(t) is Trade] == [7100]
    # 7100 * 2% = 142: 7242 is inside now (it was beyond the band around 7000), 7243 is beyond.
    s.sell("s", 1, 7242)
    assert [t.price for t in s.buy("b", 1, 7242) if type(t) is Trade] == [7242]
    assert s.book.phase is CONT
    s.sell("s", 1, 7387)  # 7242 + 144 = 7386
    events = s.buy("b", 1, 7387)
    assert not any(type(e) is Trade for e in events)
    assert [astuple(e)[3:] for e in events if type(e) is TradingPhaseChanged] == [
        (VOLATILE, CONT, "volatility", 7387, 7242)
    ]
    # Downwards too: after a fresh band scenario trades at 6900, 6900 - 138 = 6762 is the edge.
    d = band_scenario()
    d.buy("b", 1, 6900)
    d.sell("s", 1, 6900)
    d.buy("b", 1, 6762)
    assert [t.price for t in d.sell("s", 1, 6762) if type(t) is Trade] == [6762] and d.book.phase is CONT
    d.buy("b", 1, 6626)  # 6762 - 135 = 6627
    events = d.sell("s", 1, 6626)
    assert [astuple(e)[3:] for e in events if type(e) is TradingPhaseChanged] == [
        (VOLATILE, CONT, "volatility", 6626, 6762)
    ]


def test_the_band_is_never_narrower_than_one_tick():
    # At 0.30 EUR, 3% is 0.9 cents: rounded down it would be 0, and every move of a tick would interrupt.
    s = band_scenario(300, reference_price=30, min_price=1)
    s.sell("s", 1, 31)
    assert [t.price for t in s.buy("b", 1, 31) if type(t) is Trade] == [31] and s.book.phase is CONT
    s.sell("s", 1, 33)
    events = s.buy("b", 1, 33)
    assert [astuple(e)[3:] for e in events if type(e) is TradingPhaseChanged] == [
        (VOLATILE, CONT, "volatility", 33, 31)
    ]


def test_sell_sweep_is_symmetric():
    s = band_scenario()
    b1, b2, b3 = [s.place("b", BUY, 5, price) for price in (6900, 6850, 6800)]
    events = s.sell("s", 12, 6800)
    sell = events[0].order_id
    assert kinds(events)[:3] == ["OrderAccepted", "Trade", "TradingPhaseChanged"]
    assert trades_of(events) == [(6900, 5, SELL, sell, b1, 7, 0, 1000, 1750)]
    assert (events[2].phase, events[2].reason, events[2].trigger_price) == (VOLATILE, "volatility", 6850)
    assert s.queue(SELL) == [sell] and s.book.best_ask() == 6800 < s.book.best_bid() == 6850
    # IOC and market sells in the same situation are cancelled (fresh books).
    for fields in (dict(time_in_force=IOC, price=6800), dict(order_type=MARKET, price=None)):
        t = band_scenario()
        first = t.place("b", BUY, 5, 6900)
        t.place("b", BUY, 5, 6850)
        got = t.order("s", SELL, 8, **fields)
        assert trades_of(got)[0][:5] == (6900, 5, SELL, got[0].order_id, first)
        cancel = [e for e in got if type(e) is OrderCanceled]
        assert [(e.canceled_quantity, e.reason) for e in cancel] == [(3, CancelReason.VOLATILITY_INTERRUPTION)]
        assert t.book.phase is VOLATILE
    # The reopening auction: 6800 executes 7 (demand 10, supply 7), 6801..6850 only 5.
    events = phase(s, CONT)
    assert trades_of(events) == [(6800, 5, None, b2, sell, 0, 2, 1000, 1000), (6800, 2, None, b3, sell, 3, 0, 400, 400)]
    assert s.book.last_price == 6800 and s.depth(BUY) == [(6800, 3, 1)] and s.depth(SELL) == []
    s.check()


def test_interruption_with_pre_trade_risk_keeps_holdings_consistent():
    engine = Engine(instruments(volatility_band_bps=200), pre_trade_risk=True)
    s = Scenario(engine)
    for account in ("s", "b"):
        s.send(OpenAccount(ts=s.ts(), account=account))
        s.send(Deposit(ts=s.ts(), account=account, asset="EUR", amount=10**10))
        s.send(Deposit(ts=s.ts(), account=account, asset=SYM, amount=10**6))
    three_asks(s)
    s.buy("b", 12, 7200)
    assert s.book.phase is VOLATILE
    check_reservations(engine)
    phase(s, CONT)
    check_reservations(engine)
    assert sum(a.cash for a in engine.accounts.values()) == 2 * 10**10
    assert sum(a.units[SYM] for a in engine.accounts.values()) == 2 * 10**6
    # 5 at 7100 (taker fee 350, maker 200) then 7 at 7200 in the auction (200 each side).
    assert engine.accounts[FEE_ACCOUNT].cash == 5 * (350 + 200) + 7 * 400
    s.check()


def test_stop_triggered_into_the_band_edge_leaves_the_other_stops_waiting():
    s = band_scenario()
    s.sell("x", 1, 7000)
    s.buy("y", 1, 7000)
    first = s.place("a", BUY, 2, 7300, stop_price=7010)
    second = s.place("a", BUY, 2, 7300, stop_price=7020)
    s.sell("s", 1, 7020)
    s.sell("s", 5, 7200)
    events = s.buy("b", 1, 7020)  # last 7020: both stops reached; the first sweeps into 7200 -> interruption
    assert [e.order_id for e in events if type(e) is StopTriggered] == [first]
    assert [e.trigger_price for e in events if type(e) is TradingPhaseChanged] == [7200]
    assert s.book.phase is VOLATILE and [o.order_id for o in s.book.waiting_stops()] == [second]
    events = phase(s, CONT)  # auction at 7200 (first rests 2 @ 7300), then the second stop is released
    assert [e.order_id for e in events if type(e) is StopTriggered] == [second]
    s.check()


def test_indicative_follows_hidden_iceberg_reduction():
    s = Scenario()
    opening_call(s)
    iceberg = s.place("a", BUY, 20, 7000, display_quantity=5)
    s.sell("b", 20, 7000)
    events = s.replace("a", iceberg, quantity=10)
    assert [(e.price, e.quantity) for e in events if type(e) is AuctionIndicative] == [(7000, 10)]


# ============================================================================================================
# 5. determinism
# ============================================================================================================

PHASE_PICKS = [CONT, CONT, CONT, OPENING, CLOSING, CLOSED, HALTED, VOLATILE]


def random_commands(seed: int, count: int) -> list:
    """A command stream from a seeded generator: orders of every kind on prices around the last one (so the
    1% band trips now and then), cancels and replaces by client order id, phase changes (many refused by the
    table, which is part of the point) and ends of day."""
    rng = random.Random(seed)
    commands = []
    owners = []
    date = 20240101
    centre = 7000
    for n in range(count):
        ts = 1000 + n
        roll = rng.random()
        if roll < 0.70:
            account = rng.choice(["a", "b", "c"])
            side = rng.choice([BUY, SELL])
            price = centre + 10 * rng.randint(-12, 12)
            quantity = rng.randint(1, 12)
            fields = dict(
                ts=ts,
                account=account,
                client_order_id=f"k{n}",
                instrument=SYM,
                side=side,
                quantity=quantity,
                price=price,
            )
            how = rng.choice(["gtc", "gtc", "gtc", "day", "ioc", "fok", "market", "iceberg", "stop"])
            if how == "day":
                fields["time_in_force"] = DAY
            elif how == "ioc":
                fields["time_in_force"] = IOC
            elif how == "fok":
                fields["time_in_force"] = FOK
            elif how == "market":
                fields.update(order_type=MARKET, price=None)
            elif how == "iceberg" and quantity > 1:
                fields["display_quantity"] = rng.randint(1, quantity - 1)
            elif how == "stop":
                fields["stop_price"] = centre + 10 * rng.randint(-8, 8)
            commands.append(NewOrder(**fields))
            owners.append((account, f"k{n}"))
        elif roll < 0.80 and owners:
            account, clid = rng.choice(owners)
            commands.append(CancelOrder(ts=ts, account=account, client_order_id=clid))
        elif roll < 0.88 and owners:
            account, clid = rng.choice(owners)
            commands.append(
                ReplaceOrder(
                    ts=ts,
                    account=account,
                    client_order_id=clid,
                    price=centre + 10 * rng.randint(-12, 12),
                    quantity=rng.randint(1, 12),
                )
            )
        elif roll < 0.98:
            commands.append(SetTradingPhase(ts=ts, instrument=SYM, phase=rng.choice(PHASE_PICKS)))
        else:
            date += 1
            commands.append(EndOfDay(ts=ts, trading_date=date))
        if rng.random() < 0.05:  # the market drifts, so the band's centre is not always 7000
            centre += 10 * rng.randint(-5, 5)
    return commands


def open_levels(book):
    """(bids, asks) of a book as (price, open lots with iceberg reserves), read order by order."""
    out = []
    for side in (BUY, SELL):
        lots = {}
        for order in book.resting_orders(side):
            lots[order.price] = lots.get(order.price, 0) + order.leaves
        out.append(sorted(lots.items(), reverse=side is BUY))
    return out


def events_of(log):
    return [e for events in log for e in events]


def comparable(events) -> list:
    """Events other than depth and indicative announcements (which batching conflates), without seq."""
    return [without_seq(e) for e in events if type(e) not in (LevelChanged, AuctionIndicative)]


@pytest.mark.parametrize("risk", [False, True], ids=["matching-only", "pre-trade-risk"])
@settings(max_examples=150)
@given(seed=st.integers(0, 2**32), cuts=st.lists(st.integers(1, 8), min_size=1))
def test_same_commands_same_results(risk, seed, cuts):
    setup = []
    if risk:
        for n, account in enumerate(("a", "b", "c")):
            setup += [
                OpenAccount(ts=3 * n + 1, account=account),
                Deposit(ts=3 * n + 2, account=account, asset="EUR", amount=10**11),
                Deposit(ts=3 * n + 3, account=account, asset=SYM, amount=10**7),
            ]
    commands = setup + random_commands(seed, 150)

    def fresh():
        return Engine(instruments(volatility_band_bps=100, price_band_bps=0), pre_trade_risk=risk)

    first, second = fresh(), fresh()
    log_first, log_second = [], []
    phases = set()
    book = first.books[SYM]
    for command in commands:
        if type(command) is SetTradingPhase:
            expected = brute_auction(*open_levels(book), book.reference_price(), 1)
        events = first.handle(command)
        log_first.append(events)
        book._check()
        if risk:
            check_reservations(first)
        phases.add(book.phase)
        completed = [e for e in events if type(e) is AuctionCompleted]
        if completed:  # every auction on the way: the brute-force price, one price, the whole quantity
            trades = [e for e in events[: events.index(completed[0])] if type(e) is Trade]
            assert all(t.aggressor_side is None and t.price == expected[0] for t in trades)
            assert sum(t.quantity for t in trades) == completed[0].quantity == (expected[1] if expected else 0)
            assert completed[0].price == (expected and expected[0])
    for command in commands:
        log_second.append(second.handle(command))
    tape = events_of(log_first)
    event(f"phases visited: {len(phases)}")
    event(f"interruption: {any(type(e) is TradingPhaseChanged and e.reason == 'volatility' for e in tape)}")
    event(f"auction trade: {any(type(e) is Trade and e.aggressor_side is None for e in tape)}")
    assert log_first == log_second
    assert first.state_hash() == second.state_hash()
    check_books(first)

    batched = fresh()
    batch_events = []
    rest = list(commands)
    for cut in itertools.cycle(cuts):
        if not rest:
            break
        batch_events += batched.handle_all(rest[:cut])
        rest = rest[cut:]
    flat = [e for events in log_first for e in events]
    assert [without_seq(t) for t in batch_events if type(t) is Trade] == [
        without_seq(t) for t in flat if type(t) is Trade
    ]
    assert comparable(batch_events) == comparable(flat)
    assert list(batched.state_lines())[1:] == list(first.state_lines())[1:]
    assert (batched.counters.order_id, batched.counters.trade_id) == (first.counters.order_id, first.counters.trade_id)
