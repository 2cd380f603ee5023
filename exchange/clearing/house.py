"""The clearing house: positions, daily settlement prices, variation margin, initial margin, delivery.

How this works
--------------
Every futures trade is given to :meth:`ClearingHouse.record_trade`: the buyer's net position in the
contract rises by the lots, the seller's falls, and each side's *day value* (lots x price, signed: plus
for a buy) remembers what the day's trades cost. At the end of a trading day :meth:`settle_day` takes
each contract's settlement price ``S`` and pays each account its variation margin::

    VM = (position x S - position at the last settlement x previous S - day value) x lot units

which is the day's change in the value of what the account held plus the difference between the day's
trade prices and ``S``. Positions sum to zero across accounts and every trade adds +value to one side and
-value to the other, so the day's margin sums to zero exactly: integers throughout, nothing rounded.

Initial margin (:func:`initial_margin`) follows the shape of SPAN, the clearing houses' model, for one
underlying: every month of it moves together in the scanning scenarios, so the *net* lots across its
months are charged the scanning range (cents a tonne) x lot units; the months do not move exactly together,
so each calendar spread (a long lot in one month against a short lot in another: min(long lots, short
lots)) is charged the spread charge. A lot more or less changes the requirement by at most one scanning
range plus one spread charge (:meth:`MarginTerms.per_lot`): what pre-trade risk holds for each working
lot, so that no fill can take an account past what it holds.

At expiry :meth:`deliver` turns the open positions of a contract into deliveries at the final settlement
price (ICE Endex: the settlement price of the last trading day): each long receives units and pays cash,
each short delivers units and receives cash, longs and shorts allocated to each other in account order.
A short without the units is in default for the missing part: instead of units its long receives cash,
the missing units at the final price plus the default premium, paid by the short (docs/FUTURES.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..settlement_prices import window_price

BPS = 10_000


@dataclass(frozen=True, slots=True)
class MarginTerms:
    """An underlying's margin terms. Amounts in cents a tonne."""

    scanning_range: int  # the price move the initial margin of a net position covers
    spread_charge: int  # each calendar spread: the months' prices moving apart
    maintenance_bps: int = BPS  # maintenance margin as a share of initial (10,000: the same)

    def per_lot(self, lot_units: int) -> int:
        """The most one lot more or less can add to a requirement: what a working lot holds."""
        return (self.scanning_range + self.spread_charge) * lot_units


@dataclass(frozen=True, slots=True)
class VariationMargin:
    """One account's variation margin on one contract for one day: cents, plus received, minus paid."""

    account: str
    contract: str
    amount: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one long/short allocation exchanges at expiry. Units move short -> long; cash long -> short."""

    contract: str
    long: str
    short: str
    lots: int
    units: int  # units delivered (less than lots x lot units when the short failed)
    cash: int  # cents the long pays the short for the units delivered (units x final price)
    failed_units: int  # units the short did not have
    compensation: int  # cents the short pays the long for them (final price plus the default premium)


@dataclass(slots=True)
class Position:
    """An account's position in one contract."""

    lots: int = 0  # net: long positive, short negative
    settled_lots: int = 0  # the position at the last settlement
    day_value: int = 0  # the day's trades: sum of signed lots x price (cents a tonne)


class ClearingHouse:
    """Positions by contract and account, the last settlement prices, and the day's trading; see the module
    notes."""

    def __init__(self, lot_units: Mapping[str, int]) -> None:
        self.lot_units = dict(lot_units)  # contract -> tonnes a lot
        self.positions: dict[str, dict[str, Position]] = {symbol: {} for symbol in lot_units}
        self.settlement_prices: dict[str, int] = {}  # contract -> its last settlement price, cents a tonne
        self.day_lots: dict[str, int] = dict.fromkeys(lot_units, 0)  # contract -> lots traded today

    def list_contract(self, symbol: str, lot_units: int) -> None:
        """A contract newly listed (the calendar reached its month)."""
        if symbol not in self.lot_units:
            self.lot_units[symbol] = lot_units
            self.positions[symbol] = {}
            self.day_lots[symbol] = 0

    def position(self, account: str, symbol: str) -> int:
        held = self.positions[symbol].get(account)
        return 0 if held is None else held.lots

    def positions_of(self, account: str) -> dict[str, int]:
        """The account's non-zero net positions by contract."""
        out = {}
        for symbol, held in self.positions.items():
            position = held.get(account)
            if position is not None and position.lots:
                out[symbol] = position.lots
        return out

    def record_trade(self, symbol: str, buyer: str, seller: str, lots: int, price: int, on_book: bool = True) -> None:
        """Lots from the seller's position to the buyer's at ``price``; ``on_book``: a trade of the contract's own
        book, counted in the day's lots that choose the benchmark month (a block, a TAS fill, a close-out's
        transfer are not: none is the book's price)."""
        held = self.positions[symbol]
        for account, signed in ((buyer, lots), (seller, -lots)):
            position = held.get(account)
            if position is None:
                position = held[account] = Position()
            position.lots += signed
            position.day_value += signed * price
        if on_book:
            self.day_lots[symbol] += lots

    def price_trade(self, symbol: str, buyer: str, seller: str, lots: int, price: int) -> None:
        """A trade recorded at a price of zero (a trade at settlement) priced now: its value joins the day's."""
        held = self.positions[symbol]
        held[buyer].day_value += lots * price
        held[seller].day_value -= lots * price

    def settle_day(self, prices: Mapping[str, int]) -> list[VariationMargin]:
        """Pay the day's variation margin at ``prices`` (contract -> settlement price, cents a tonne), in
        contract then account order; the prices become the last settlement prices."""
        margins = []
        for symbol in sorted(prices):
            price = prices[symbol]
            previous = self.settlement_prices.get(symbol, 0)
            units = self.lot_units[symbol]
            held = self.positions[symbol]
            for account in sorted(held):
                position = held[account]
                amount = (position.lots * price - position.settled_lots * previous - position.day_value) * units
                position.settled_lots, position.day_value = position.lots, 0
                if amount:
                    margins.append(VariationMargin(account, symbol, amount))
                if not position.lots:
                    del held[account]  # flat and settled: nothing left to carry
            self.settlement_prices[symbol] = price
            self.day_lots[symbol] = 0
        return margins

    def forget(self, symbol: str) -> None:
        """An expired contract that nobody holds: gone without delivery."""
        assert not any(position.lots for position in self.positions[symbol].values()), f"{symbol} has positions"
        for table in (self.positions, self.lot_units, self.day_lots, self.settlement_prices):
            table.pop(symbol, None)

    def deliver(
        self, symbol: str, final_price: int, units_held: Mapping[str, int], default_premium_bps: int
    ) -> list[Delivery]:
        """Close out an expired contract: its settled positions become deliveries at ``final_price`` (the day
        must be settled first). ``units_held``: each short's units of the underlying available to deliver."""
        held = self.positions.pop(symbol)
        units_a_lot = self.lot_units.pop(symbol)
        self.day_lots.pop(symbol, None)
        self.settlement_prices.pop(symbol, None)
        if any(position.day_value for position in held.values()):
            raise ValueError(f"{symbol}: the last trading day is not settled")
        longs = [(account, position.lots) for account, position in sorted(held.items()) if position.lots > 0]
        shorts = [(account, -position.lots) for account, position in sorted(held.items()) if position.lots < 0]
        available = {account: max(0, units_held.get(account, 0)) for account, _ in shorts}
        deliveries = []
        pairs, unpaired = pair_off(longs, shorts)
        assert not unpaired, "positions of an expired contract do not net to zero"
        for long, short, lots in pairs:
            due = lots * units_a_lot
            units = min(due, available[short])
            available[short] -= units
            failed = due - units
            compensation = failed * final_price + failed * final_price * default_premium_bps // BPS
            deliveries.append(Delivery(symbol, long, short, lots, units, units * final_price, failed, compensation))
        return deliveries


def initial_margin(positions: Mapping[str, int], lot_units: int, terms: MarginTerms) -> int:
    """The initial margin in cents of net ``positions`` (contract -> lots) in the months of one underlying:
    the net lots at the scanning range, plus the spread charge for each long lot set against a short one."""
    longs = sum(lots for lots in positions.values() if lots > 0)
    shorts = -sum(lots for lots in positions.values() if lots < 0)
    return margin_of(longs, shorts, lot_units, terms)


def margin_of(longs: int, shorts: int, lot_units: int, terms: MarginTerms) -> int:
    """:func:`initial_margin` from the long and short lots summed over an underlying's months."""
    return (abs(longs - shorts) * terms.scanning_range + min(longs, shorts) * terms.spread_charge) * lot_units


def pair_off(
    longs: list[tuple[str, int]], shorts: list[tuple[str, int]]
) -> tuple[list[tuple[str, str, int]], list[tuple[str, int]]]:
    """Longs matched with shorts in the order given, the first of each side taken until one runs out:
    the pairs (long, short, lots) and what is left unpaired on the longer side."""
    pairs = []
    long_at = short_at = 0
    long_left = longs[0][1] if longs else 0
    short_left = shorts[0][1] if shorts else 0
    while long_at < len(longs) and short_at < len(shorts):
        lots = min(long_left, short_left)
        pairs.append((longs[long_at][0], shorts[short_at][0], lots))
        long_left -= lots
        short_left -= lots
        if not long_left:
            long_at += 1
            long_left = longs[long_at][1] if long_at < len(longs) else 0
        if not short_left:
            short_at += 1
            short_left = shorts[short_at][1] if short_at < len(shorts) else 0
    if long_at < len(longs):
        return pairs, [(longs[long_at][0], long_left), *longs[long_at + 1 :]]
    if short_at < len(shorts):
        return pairs, [(shorts[short_at][0], short_left), *shorts[short_at + 1 :]]
    return pairs, []


def maintenance_margin(initial: int, terms: MarginTerms) -> int:
    """The maintenance level in cents below which an account is called (rounded up: never below the share)."""
    return -(-initial * terms.maintenance_bps // BPS)


def daily_settlement_price(
    *,
    window_value: int,
    window_lots: int,
    best_bid: int | None,
    best_ask: int | None,
    previous: int | None,
    benchmark_move: int | None,
    last_trade: int | None,
    tick: int,
) -> tuple[int | None, str]:
    """A contract's settlement price for the day and the method that fixed it, the first that applies:

    1. ``window``: the volume-weighted average of the closing window's trades (half to even to the cent,
       down onto the tick), as ICE Endex's "trade weighted average during the daily closing period";
    2. ``quotes``: no trade in the window, a bid and an offer standing: their mid, down onto the tick;
    3. ``benchmark``: the previous settlement moved by the day's change of the underlying's most traded
       contract (settled first; ``benchmark_move`` is None for that contract itself);
    4. ``last_trade``: never settled before, traded earlier in the day: the last trade's price;
    5. ``previous``: the previous settlement unchanged; ``none``: no price at all.
    """
    if window_lots:
        return window_price(window_value, window_lots, tick), "window"
    if best_bid is not None and best_ask is not None and best_bid < best_ask:
        mid = (best_bid + best_ask) // 2
        return mid - mid % tick, "quotes"
    if previous is not None and benchmark_move is not None:
        return max(tick, previous + benchmark_move), "benchmark"
    if previous is None and last_trade is not None:
        return last_trade, "last_trade"
    if previous is not None:
        return previous, "previous"
    return None, "none"


def most_traded(day_lots: Mapping[str, int], symbols: Iterable[str]) -> str | None:
    """The benchmark of a day: the contract with the most lots traded among ``symbols`` (given nearest first;
    the nearest wins a tie), or None when none traded."""
    best, best_lots = None, 0
    for symbol in symbols:
        lots = day_lots.get(symbol, 0)
        if lots > best_lots:
            best, best_lots = symbol, lots
    return best
