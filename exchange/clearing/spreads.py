"""Calendar spreads: one order buys one December and sells the next, traded on a book of its own.

How this works
--------------
With ``december_spreads`` on for a series, each pair of consecutive Decembers listed gets a spread book once
both have a settlement price (at that end of day; like a TAS book, so that every position a spread makes is
in a contract with a price to settle and deliver it at),
``<near><far month code and year>`` (``EUAZ26Z27``: December 2026 against December 2027), listed like a
contract (``ContractListed``) and following the same phases, not the settlement window. Buying the spread
buys the near month and sells the far one (the futures markets' convention); its price is the near leg's
price less the far leg's, so in contango it is negative, and the book takes prices either side of
zero, within the near contract's highest price.

A spread fill is two leg trades between the same two accounts, cleared into positions and margin like any
trade (not counted in choosing the day's benchmark month: neither leg's price is the book's). The far leg is
priced at its last settlement price and the near leg at that plus the spread price: the far leg's settlement
is published on its statistics, so the spread's own fill says what the legs cost. A working spread lot holds
the margin a working lot of a contract holds: a long near month against a short far one changes an
account's margin by one spread charge at most, less than one lot's hold. The spread goes when its near month
expires. Implied prices (a spread order matching outright orders in the two legs) are not built.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..book import OrderBook
    from ..orders import Order
    from .desk import FuturesDesk


class CalendarSpreads:
    """The spread books of the consecutive Decembers listed; see the module notes."""

    def __init__(self, desk: FuturesDesk) -> None:
        self.desk = desk
        self.books: dict[str, tuple[str, str]] = {}  # spread symbol -> (near contract, far contract)

    def list_books(self, underlying: str, trading_date: int, ts: int, events: list) -> None:
        """At the end of day, after settlement: a spread book for each pair of consecutive Decembers of
        ``underlying`` both settled, without one yet (and not on the near month's last trading day)."""
        desk = self.desk
        if not desk.series[underlying].december_spreads:
            return
        settled = desk.house.settlement_prices
        decembers = [symbol for symbol in desk.contracts_of(underlying) if desk.contracts[symbol].month == 12]
        for near, far in zip(decembers, decembers[1:], strict=False):
            symbol = near + far[len(underlying) :]
            if symbol in self.books or near not in settled or far not in settled:
                continue
            if desk.contracts[near].last_trading_day > trading_date:
                self._open(symbol, near, far, ts, events)

    def _open(self, symbol: str, near: str, far: str, ts: int, events: list) -> None:
        from .desk import list_book_beside  # (the desk imports this module: imported here, when first needed)

        desk = self.desk
        contract, later = desk.contracts[near], desk.contracts[far]
        name = f"{contract.underlying} Dec-{contract.year % 100:02d}/Dec-{later.year % 100:02d} spread"
        highest = desk.engine.books[near].instrument.max_price
        list_book_beside(desk, near, symbol, name, -highest, highest, ts, events)
        self.books[symbol] = (near, far)

    def fill(self, book: OrderBook, buy: Order, sell: Order, lots: int, price: int) -> None:
        """A spread fill: the buyer buys the near month and sells the far one, the seller the other way."""
        desk = self.desk
        near, far = self.books[book.symbol]
        far_price = desk.house.settlement_prices[far]  # (settled: the book is listed only then)
        buyer, seller = buy.account, sell.account
        desk.clear_trade(near, buyer, seller, lots, far_price + price, on_book=False)
        desk.clear_trade(far, seller, buyer, lots, far_price, on_book=False)

    def of_contract(self, contract: str) -> list[str]:
        """The spreads with ``contract`` as a leg."""
        return [symbol for symbol, legs in sorted(self.books.items()) if contract in legs]

    def forget(self, symbol: str) -> None:
        del self.books[symbol]

    def symbols(self, contracts: Iterable[str]) -> list[str]:
        """The spreads whose near leg is among ``contracts``, in their order."""
        listed = set(contracts)
        return [symbol for symbol, (near, _) in sorted(self.books.items()) if near in listed]

    def state_lines(self) -> Iterable[str]:
        for symbol, (near, far) in sorted(self.books.items()):
            yield f"spread {symbol} {near} {far}"
