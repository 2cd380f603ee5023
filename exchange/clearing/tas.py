"""Trade at settlement (TAS): futures bought and sold during the day at the day's settlement price, plus or minus a
few ticks agreed now, priced when the settlement is known.

How this works
--------------
Each contract, once it has a first settlement price, gets a TAS book beside its own, ``<contract>TAS``
(``EUAZ27TAS``), listed like a contract (``ContractListed``) and following the same phases. Its prices are
offsets from the coming settlement price: ``-tas_ticks`` to ``+tas_ticks`` ticks, zero the settlement price
itself (hence orders at zero and below, which no other book takes). A TAS order holds margin as an order on the
contract does; it matches in its book by price and time like any order.

A TAS fill is a trade in the contract whose price is not known yet: the position moves at once (and the margin
with it), recorded at a price of zero, and the fill waits in :attr:`TradeAtSettlement.waiting`. At the end of
day, once the contract's settlement price ``S`` is fixed and before variation margin is paid, each waiting fill
is priced at ``S + offset`` (``TASPriced``, told to both sides) and its value added to the day's, so the
variation margin of the day settles it like a trade made at that price. A contract whose first settlement is
yet to come has no TAS book: its settlement price is always known (at worst the previous one) when a TAS fill
is priced. At the contract's expiry its TAS book goes with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..events import TASPriced

if TYPE_CHECKING:
    from ..book import OrderBook
    from ..orders import Order
    from .desk import FuturesDesk

TAS_SUFFIX = "TAS"


class TradeAtSettlement:
    """The TAS books and the day's TAS fills waiting for their price; see the module notes."""

    def __init__(self, desk: FuturesDesk) -> None:
        self.desk = desk
        self.books: dict[str, str] = {}  # TAS book symbol -> its contract
        # the day's fills in trade order: (TAS book, buy order id, sell order id, buyer, seller, lots, offset in cents)
        self.waiting: list[tuple[str, int, int, str, str, int, int]] = []

    def list_book(self, contract_symbol: str, trading_date: int, ts: int, events: list) -> None:
        """The contract's TAS book, listed after its first settlement (not on its last trading day's)."""
        from .desk import list_book_beside  # (the desk imports this module: imported here, when first needed)

        desk = self.desk
        contract = desk.contracts[contract_symbol]
        ticks = desk.series[contract.underlying].tas_ticks
        symbol = contract_symbol + TAS_SUFFIX
        if not ticks or symbol in self.books or contract.last_trading_day <= trading_date:
            return
        tick = desk.engine.books[contract_symbol].tick_size
        name = f"{desk.engine.books[contract_symbol].instrument.name} TAS"
        list_book_beside(desk, contract_symbol, symbol, name, -ticks * tick, ticks * tick, ts, events)
        self.books[symbol] = contract_symbol

    def fill(self, book: OrderBook, buy: Order, sell: Order, lots: int, offset: int) -> None:
        """A TAS fill: the contract's positions move now at a price of zero; the price comes at the end of day."""
        buyer, seller = buy.account, sell.account
        self.desk.clear_trade(self.books[book.symbol], buyer, seller, lots, 0, on_book=False)
        if buyer is not seller:
            fill = (book.symbol, buy.order_id, sell.order_id, buyer.account_id, seller.account_id, lots, offset)
            self.waiting.append(fill)

    def price_day(self, prices: dict[str, int], ts: int, events: list) -> None:
        """Each waiting fill at its contract's settlement price plus its offset, its value added to the day's."""
        house, counters = self.desk.house, self.desk.engine.counters
        for symbol, buy_id, sell_id, buyer, seller, lots, offset in self.waiting:
            contract = self.books[symbol]
            price = prices[contract] + offset
            house.price_trade(contract, buyer, seller, lots, price)
            seq = counters.next_seq()
            events.append(TASPriced(seq, ts, symbol, contract, buy_id, sell_id, buyer, seller, lots, price))
        self.waiting.clear()

    def of_contract(self, contract_symbol: str) -> str | None:
        symbol = contract_symbol + TAS_SUFFIX
        return symbol if symbol in self.books else None

    def forget(self, symbol: str) -> None:
        del self.books[symbol]

    def symbols(self, contracts: Iterable[str]) -> list[str]:
        """The TAS books of ``contracts``, in their order."""
        return [symbol for contract in contracts if (symbol := self.of_contract(contract)) is not None]

    def state_lines(self) -> Iterable[str]:
        for symbol in sorted(self.books):
            yield f"tas {symbol} {self.books[symbol]}"
        for symbol, buy_id, sell_id, buyer, seller, lots, offset in self.waiting:
            yield f"  tas waiting {symbol} {buy_id} {sell_id} {buyer} {seller} {lots} {offset}"
