"""The engine's futures desk: contracts listed as the calendar reaches them, fills cleared into positions and
margin, each day settled, each expiry delivered.

How this works
--------------
The engine owns one :class:`FuturesDesk` when futures are configured (:class:`FuturesConfig`: the series,
each underlying's margin terms, the venue's holidays). Four moments reach it:

1. :meth:`list_futures` (the :class:`~exchange.commands.ListFutures` command, at the start of each trading
   day): every contract the series list on the date that has no book yet gets one, its terms those of the
   underlying spot instrument with the series' lot and tick, and its ``margin_per_lot`` set: pre-trade risk
   then holds that much cash for each working lot of either side (``exchange.risk.reserve``).
2. :meth:`settle_fill`, from ``exchange.risk.settle_fill`` for every fill on a contract: fees are paid, what
   the filled lots held is released, the positions change in the :class:`~exchange.clearing.house.ClearingHouse`,
   and each side's initial margin is recomputed and held instead (the per-lot hold bounds the change, so the
   hold released always covers it).
3. :meth:`end_of_day`, before the spot end of day: each contract's settlement price (the benchmark, the
   underlying's most traded month, first), the variation margin paid in cash, then the expiries of the day
   (open orders expire, positions deliver at the final price, the book goes), then margin calls for accounts
   whose cash fell below maintenance.
4. :meth:`call_met`, after a deposit: a called account whose cash covers its holds again is released.

The desk's state (contracts, positions, settlement prices, margins held) is in the engine's state hash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..codes import RejectCode
from ..enums import Side
from ..events import (
    ContractExpired,
    ContractListed,
    FuturesDelivered,
    MarginCalled,
    MarginCallMet,
    OrderExpired,
    SettlementPriceFixed,
    VariationMarginPaid,
)
from ..instruments import Instrument
from ..orders import by_order_id
from ..views import MarginView, PositionView
from .blocks import BlockRegister
from .contracts import ContractSeries, FuturesContract, listed_contracts
from .default import close_out
from .house import ClearingHouse, daily_settlement_price, maintenance_margin, margin_of, most_traded
from .spreads import CalendarSpreads
from .tas import TradeAtSettlement
from .terms import FuturesConfig

if TYPE_CHECKING:
    from ..accounts import Account
    from ..book import OrderBook
    from ..commands import EndOfDay, ListFutures
    from ..engine import Engine
    from ..futures_commands import CloseOutAccount
    from ..orders import Order

MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class FuturesDesk:
    """Listing, clearing, daily settlement and delivery of the engine's futures; see the module notes."""

    def __init__(self, engine: Engine, config: FuturesConfig) -> None:
        self.engine = engine
        self.config = config
        self.contracts: dict[str, FuturesContract] = {}  # listed, by symbol
        self.house = ClearingHouse({})
        self.margins_held: dict[tuple[str, str], int] = {}  # (account, underlying) -> initial margin held in cash
        # (account, underlying) -> [long lots, short lots] summed over the underlying's months: what its margin
        # is computed from, kept as positions move so that a fill costs the same however many months are listed
        self.exposure: dict[tuple[str, str], list[int]] = {}
        self.lot_units = {series.underlying: series.lot_units for series in config.series}
        self.block_min_lots = {series.underlying: series.block_min_lots for series in config.series}
        self.blocks = BlockRegister(self)  # block trades and EFPs reported, waiting for their counterparty
        self.series = {series.underlying: series for series in config.series}
        self.tas = TradeAtSettlement(self)  # the TAS books, and the day's TAS fills waiting for their price
        self.spreads = CalendarSpreads(self)  # the calendar spread books

    # -- listing -------------------------------------------------------------------------------

    def business_day(self, yyyymmdd: int) -> bool:
        """The venue's calendar. (A method, not a closure: snapshots pickle the desk.)"""
        return self.config.business_day(yyyymmdd)

    def list_futures(self, cmd: ListFutures, events: list) -> RejectCode | None:
        engine = self.engine
        last_closed = engine.order_commands.last_closed_date
        if last_closed is not None and cmd.trading_date <= last_closed:
            return RejectCode.TRADING_DATE_NOT_AFTER_LAST
        for series in self.config.series:
            underlying = engine.instruments.get(series.underlying)
            if underlying is None:
                raise ValueError(f"futures.{series.underlying}: no such spot instrument")
            for contract in listed_contracts(series, cmd.trading_date, self.business_day):
                if contract.symbol not in self.contracts:
                    self._open_book(contract, series, underlying)
                    events.append(
                        ContractListed(
                            engine.counters.next_seq(),
                            cmd.ts,
                            contract.symbol,
                            contract.underlying,
                            contract.year,
                            contract.month,
                            contract.last_trading_day,
                            contract.delivery_day,
                            series.tick_size,
                            series.lot_units,
                            engine.books[contract.symbol].phase,
                        )
                    )
        return None

    def _open_book(self, contract: FuturesContract, series: ContractSeries, underlying: Instrument) -> None:
        from ..book import OrderBook  # (the book imports the desk's type: imported here, when first needed)

        engine = self.engine
        spot = engine.books[contract.underlying]
        # Until its first settlement price a new month has no price of its own to centre limits on (the curve
        # trades away from spot): no volatility band and no market order collar until then (:meth:`_settled`),
        # and never a static band (ICE Endex's EUA futures: "no limits").
        instrument = replace(
            underlying,
            symbol=contract.symbol,
            name=f"{contract.underlying} futures {MONTH_NAMES[contract.month - 1]}-{contract.year}",
            lot_units=series.lot_units,
            tick_size=series.tick_size,
            reference_price=spot.reference_price(),
            price_band_bps=0,
            volatility_band_bps=0,
            market_collar=None,
        )
        book = OrderBook(instrument, engine.counters, engine.open_orders, engine.fee_account)
        book.clearing = self
        book.phase = spot.phase  # a month listed overnight opens with the spot market
        book.margin_per_lot = self.config.margins[contract.underlying].per_lot(series.lot_units)
        engine.add_book(book)
        self.contracts[contract.symbol] = contract
        self.house.list_contract(contract.symbol, series.lot_units)

    def contracts_of(self, underlying: str | None = None, with_books: bool = False) -> list[str]:
        """The listed contracts (of one underlying, or all), nearest month first; ``with_books``: then the books
        beside them, TAS books and calendar spreads."""
        listed = [c for c in self.contracts.values() if underlying is None or c.underlying == underlying]
        symbols = [c.symbol for c in sorted(listed, key=lambda c: (c.year, c.month, c.underlying))]
        return symbols + self.tas.symbols(symbols) + self.spreads.symbols(symbols) if with_books else symbols

    # -- fills ---------------------------------------------------------------------------------

    def settle_fill(
        self,
        book: OrderBook,
        fee_account: Account,
        taker: Order,
        maker: Order,
        price: int,
        fill: int,
        maker_fee: int,
        taker_fee: int,
    ) -> None:
        """One fill on a contract: fees, the filled lots' holds released, positions and margins moved."""
        if taker.side is Side.BUY:
            buy, buyer_fee, sell, seller_fee = taker, taker_fee, maker, maker_fee
        else:
            buy, buyer_fee, sell, seller_fee = maker, maker_fee, taker, taker_fee
        buyer, seller = buy.account, sell.account
        buyer.cash -= buyer_fee
        seller.cash -= seller_fee
        fee_account.cash += maker_fee + taker_fee
        buyer.reserved_cash -= fill * buy.reserve_per_lot
        seller.reserved_cash -= fill * sell.reserve_per_lot
        if book.symbol in self.tas.books:  # a trade at settlement: priced at the end of day
            self.tas.fill(book, buy, sell, fill, price)
        elif book.symbol in self.spreads.books:  # a calendar spread: its two legs
            self.spreads.fill(book, buy, sell, fill, price)
        else:
            self.clear_trade(book.symbol, buyer, seller, fill, price)

    def _position_moved(self, account: Account, underlying: str, before: int, after: int) -> None:
        """An account's position in one month of ``underlying`` went from ``before`` to ``after`` lots: hold its
        initial margin in the underlying's months as they now stand."""
        key = (account.account_id, underlying)
        exposure = self.exposure.get(key)
        if exposure is None:
            exposure = self.exposure[key] = [0, 0]
        exposure[0] += max(after, 0) - max(before, 0)
        exposure[1] += max(-after, 0) - max(-before, 0)
        required = margin_of(exposure[0], exposure[1], self.lot_units[underlying], self.config.margins[underlying])
        account.reserved_cash += required - self.margins_held.get(key, 0)
        if required:
            self.margins_held[key] = required
        else:
            self.margins_held.pop(key, None)
            if not exposure[0] and not exposure[1]:
                del self.exposure[key]

    def margin_change(self, account_id: str, symbol: str, lots: int) -> int:
        """What the account's initial margin would change by (cents) if its position in ``symbol`` moved by
        ``lots`` (signed): what an off-book trade must find in its free cash (exchange.clearing.blocks)."""
        underlying = self.contracts[symbol].underlying
        key = (account_id, underlying)
        longs, shorts = self.exposure.get(key, (0, 0))
        before = self.house.position(account_id, symbol)
        after = before + lots
        longs += max(after, 0) - max(before, 0)
        shorts += max(-after, 0) - max(-before, 0)
        required = margin_of(longs, shorts, self.lot_units[underlying], self.config.margins[underlying])
        return required - self.margins_held.get(key, 0)

    def clear_trade(
        self, symbol: str, buyer: Account, seller: Account, lots: int, price: int, on_book: bool = True
    ) -> None:
        """A trade into positions and margins: a fill on the contract's book, or (not ``on_book``) a block, an EFP,
        a TAS fill or a close-out's transfer, none of which counts in choosing the day's benchmark month."""
        house = self.house
        bought_before, sold_before = house.position(buyer.account_id, symbol), house.position(seller.account_id, symbol)
        house.record_trade(symbol, buyer.account_id, seller.account_id, lots, price, on_book)
        if seller is buyer:
            return  # (a self-trade, allowed by the account's self-trade prevention: no position moved)
        underlying = self.contracts[symbol].underlying
        self._position_moved(buyer, underlying, bought_before, bought_before + lots)
        self._position_moved(seller, underlying, sold_before, sold_before - lots)

    # -- the end of a trading day --------------------------------------------------------------

    def end_of_day(self, cmd: EndOfDay, events: list) -> None:
        """Settlement prices, variation margin, the day's expiries and deliveries, margin calls."""
        ts, trading_date = cmd.ts, cmd.trading_date
        self.blocks.end_of_day(ts, events)
        prices = self._fix_prices(trading_date, ts, events)
        self.tas.price_day(prices, ts, events)  # (before the margin: the day's TAS fills count at their prices)
        engine, counters = self.engine, self.engine.counters
        touched: set[str] = set()  # accounts whose cash the day's futures moved: each is looked at for a call
        for margin in self.house.settle_day(prices):
            touched.add(margin.account)
            account = engine.accounts[margin.account]
            account.cash += margin.amount
            position = self.house.position(margin.account, margin.contract)
            events.append(
                VariationMarginPaid(
                    counters.next_seq(), ts, margin.account, margin.contract, trading_date, margin.amount, position
                )
            )
        for series in self.config.series:  # pairs of Decembers both settled now get their spread books
            self.spreads.list_books(series.underlying, trading_date, ts, events)
        for symbol in sorted(self.contracts):
            # (on or before: a last trading day whose end of day was never run, a manual schedule's, is caught up)
            if self.contracts[symbol].last_trading_day <= trading_date:
                touched.update(self._expire(symbol, prices.get(symbol), ts, events))  # (None: never priced)
        self._call_margins(touched, ts, events)

    def _fix_prices(self, trading_date: int, ts: int, events: list) -> dict[str, int]:
        """Each listed contract's settlement price, the benchmark of each underlying first."""
        books, house = self.engine.books, self.house
        prices: dict[str, int] = {}
        by_underlying: dict[str, list[str]] = {}
        for symbol in sorted(self.contracts, key=lambda s: (self.contracts[s].year, self.contracts[s].month)):
            by_underlying.setdefault(self.contracts[symbol].underlying, []).append(symbol)
        for symbols in by_underlying.values():
            benchmark = most_traded(house.day_lots, symbols)
            move = None
            for symbol in ([benchmark] if benchmark else []) + [s for s in symbols if s != benchmark]:
                book = books[symbol]
                previous = house.settlement_prices.get(symbol)
                price, method = daily_settlement_price(
                    window_value=book.window_value,
                    window_lots=book.window_lots,
                    best_bid=book.best_bid(),
                    best_ask=book.best_ask(),
                    previous=previous,
                    benchmark_move=move if symbol != benchmark else None,
                    last_trade=book.last_price,
                    tick=book.tick_size,
                )
                if symbol == benchmark and price is not None and previous is not None:
                    move = price - previous
                events.append(
                    SettlementPriceFixed(
                        self.engine.counters.next_seq(), ts, symbol, trading_date, price, method, book.window_lots
                    )
                )
                book.settlement_price = price
                book.settling = False
                book.window_value = book.window_lots = 0
                if price is not None:
                    prices[symbol] = price
                    self._settled(book, price)
                    self.tas.list_book(symbol, trading_date, ts, events)
        return prices

    def _settled(self, book: OrderBook, price: int) -> None:
        """A contract's limits centre on its settlement price from now on (the last trade's once it trades), with
        its underlying's volatility band and market order collar."""
        spot = self.engine.books[self.contracts[book.symbol].underlying].instrument
        book.adopt(
            replace(
                book.instrument,
                reference_price=price,
                volatility_band_bps=spot.volatility_band_bps,
                market_collar=spot.market_collar,
            )
        )

    def _expire(self, symbol: str, final_price: int | None, ts: int, events: list) -> list[str]:
        """The contract's last trading day has ended: orders expire, positions deliver, the book goes. Returns
        the accounts that held it."""
        engine, counters = self.engine, self.engine.counters
        tas = self.tas.of_contract(symbol)
        if tas is not None:  # its TAS book first: its fills were priced at the final price, before the margin
            self.tas.forget(tas)
            self._remove_book(tas, final_price, ts, events)
        for spread in self.spreads.of_contract(symbol):  # the spreads it is the near leg of
            self.spreads.forget(spread)
            self._remove_book(spread, None, ts, events)
        book = engine.books[symbol]
        orders_expired = self._expire_orders(symbol, ts, events)
        underlying = self.contracts[symbol].underlying
        holders = sorted(self.house.positions[symbol])
        positions = {account_id: self.house.position(account_id, symbol) for account_id in holders}
        available = {}
        for account_id in holders:
            account = engine.accounts[account_id]
            available[account_id] = account.units.get(underlying, 0) - account.reserved_units.get(underlying, 0)
        # (a contract without a final price never traded: nobody holds a position to deliver)
        deliveries = (
            []
            if final_price is None
            else self.house.deliver(symbol, final_price, available, self.config.default_premium_bps)
        )
        if final_price is None:
            self.house.forget(symbol)
        # What each long can pay for: its cash less what its orders hold (its margin on this underlying is free
        # now: the position is delivered). A long that cannot pay for every unit is in default for the rest:
        # those units stay with the short, released from delivering them (docs/FUTURES.md).
        payable = {}
        for account_id in holders:
            account = engine.accounts[account_id]
            held = self.margins_held.get((account_id, underlying), 0)
            payable[account_id] = max(0, account.cash - account.reserved_cash + held)
        for delivery in deliveries:
            long, short = engine.accounts[delivery.long], engine.accounts[delivery.short]
            units = (
                delivery.units if final_price is None else min(delivery.units, payable[delivery.long] // final_price)
            )
            cash = units * final_price if final_price is not None else 0
            payable[delivery.long] -= cash
            if units < delivery.units and not long.margin_called:  # in default: called at once
                long.margin_called = True
                events.append(MarginCalled(counters.next_seq(), ts, delivery.long, long.cash, long.reserved_cash, 0))
            long.units[underlying] += units
            short.units[underlying] -= units
            long.cash += delivery.compensation - cash
            short.cash += cash - delivery.compensation
            events.append(
                FuturesDelivered(
                    counters.next_seq(),
                    ts,
                    symbol,
                    underlying,
                    delivery.long,
                    delivery.short,
                    delivery.lots,
                    units,
                    cash,
                    delivery.failed_units,
                    delivery.compensation,
                    delivery.units - units,
                )
            )
        book.flush_level_changes(events, ts)  # the expired orders' levels, announced before the book goes
        del self.contracts[symbol]
        engine.remove_book(symbol)
        for account_id in holders:
            self._position_moved(engine.accounts[account_id], underlying, positions[account_id], 0)
        events.append(ContractExpired(counters.next_seq(), ts, symbol, final_price, orders_expired))
        return holders

    def _remove_book(self, symbol: str, final_price: int | None, ts: int, events: list) -> None:
        """A book beside a contract (TAS, spread) going with it: its orders expire, it closes."""
        expired = self._expire_orders(symbol, ts, events)
        self.engine.books[symbol].flush_level_changes(events, ts)
        self.engine.remove_book(symbol)
        events.append(ContractExpired(self.engine.counters.next_seq(), ts, symbol, final_price, expired))

    def _expire_orders(self, symbol: str, ts: int, events: list) -> int:
        """Every open order of a book going away expires; how many."""
        engine = self.engine
        book = engine.books[symbol]
        open_orders = sorted((o for o in engine.open_orders.values() if o.book is book), key=by_order_id)
        for order in open_orders:
            book.unlink(order)
            leaves = book.retire(order)
            account = order.account.account_id
            seq = engine.counters.next_seq()
            events.append(OrderExpired(seq, ts, symbol, order.order_id, account, order.client_order_id, leaves))
        return len(open_orders)

    def _call_margins(self, touched: set[str], ts: int, events: list) -> None:
        """Each account holding margin, or whose cash the day's futures moved, is called when its cash is below
        its maintenance margin plus what its orders hold (for an account holding no margin: below what its orders
        hold, a long that paid for a delivery among them); a called account whose cash covers everything it holds
        again (variation margin received) is released."""
        engine = self.engine
        held_by_account: dict[str, int] = {}
        maintenance_by_account: dict[str, int] = {}
        for (account_id, underlying), held in self.margins_held.items():
            held_by_account[account_id] = held_by_account.get(account_id, 0) + held
            maintenance = maintenance_margin(held, self.config.margins[underlying])
            maintenance_by_account[account_id] = maintenance_by_account.get(account_id, 0) + maintenance
        for account_id in sorted(touched | held_by_account.keys()):
            account = engine.accounts[account_id]
            maintenance = maintenance_by_account.get(account_id, 0)
            floor = account.reserved_cash - held_by_account.get(account_id, 0) + maintenance
            if account.cash < floor and not account.margin_called:
                account.margin_called = True
                seq = engine.counters.next_seq()
                events.append(MarginCalled(seq, ts, account_id, account.cash, account.reserved_cash, maintenance))
            else:
                self.call_met(account, ts, events)

    def call_met(self, account: Account, ts: int, events: list) -> None:
        """After a deposit: a called account whose cash covers everything it holds again is released."""
        if account.margin_called and account.cash >= account.reserved_cash and account.cash >= 0:
            account.margin_called = False
            events.append(MarginCallMet(self.engine.counters.next_seq(), ts, account.account_id, account.cash))

    def close_out(self, cmd: CloseOutAccount, events: list) -> RejectCode | None:
        """The operator's close-out of a defaulter (exchange.clearing.default)."""
        return close_out(self, cmd, events)

    def margin_view(self, account: Account) -> MarginView:
        return margin_view(self, account)

    # -- state ---------------------------------------------------------------------------------

    def state_lines(self) -> Iterable[str]:
        for symbol in sorted(self.contracts):
            contract = self.contracts[symbol]
            price = self.house.settlement_prices.get(symbol)
            yield (
                f"futures {symbol} {contract.last_trading_day} {contract.delivery_day} settled={price} "
                f"day_lots={self.house.day_lots.get(symbol, 0)}"
            )
            for account_id, position in sorted(self.house.positions[symbol].items()):
                yield f"  position {account_id} {position.lots} {position.settled_lots} {position.day_value}"
        for (account_id, underlying), held in sorted(self.margins_held.items()):
            yield f"margin {account_id} {underlying} {held}"
        yield from self.blocks.state_lines()
        yield from self.tas.state_lines()
        yield from self.spreads.state_lines()


def margin_view(desk: FuturesDesk, account: Account) -> MarginView:
    """An account's futures positions and the margin they take (Engine.margin)."""
    account_id = account.account_id
    positions = tuple(
        PositionView(
            symbol,
            lots,
            desk.house.settlement_prices.get(symbol),
            desk.contracts[symbol].last_trading_day,
            desk.contracts[symbol].delivery_day,
        )
        for symbol in desk.contracts_of()
        if (lots := desk.house.position(account_id, symbol))
    )
    held = {underlying: amount for (holder, underlying), amount in desk.margins_held.items() if holder == account_id}
    initial = sum(held.values())
    maintenance = sum(
        maintenance_margin(amount, desk.config.margins[underlying]) for underlying, amount in held.items()
    )
    return MarginView(
        positions, initial, maintenance, account.reserved_cash - initial, account.cash, account.margin_called
    )


def list_book_beside(
    desk: FuturesDesk, contract_symbol: str, symbol: str, name: str, lowest: int, highest: int, ts: int, events: list
) -> None:
    """A book beside a contract (its TAS book, a calendar spread): the contract's terms, lot, fees and the margin a
    working lot holds, prices from ``lowest`` to ``highest`` (cents; zero and below allowed), no reference of
    its own (no band, no collar), in the contract's phase; listed like a contract (``ContractListed``)."""
    from ..book import OrderBook  # (the book imports the desk's type: imported here, when first needed)

    engine = desk.engine
    outright, contract = engine.books[contract_symbol], desk.contracts[contract_symbol]
    instrument = replace(
        outright.instrument,
        symbol=symbol,
        name=name,
        min_price=lowest,
        max_price=highest,
        reference_price=0,
        price_band_bps=0,
        volatility_band_bps=0,
        market_collar=None,
    )
    book = OrderBook(instrument, engine.counters, engine.open_orders, engine.fee_account)
    book.clearing = desk
    book.phase = outright.phase
    book.margin_per_lot = outright.margin_per_lot
    engine.add_book(book)
    events.append(
        ContractListed(
            engine.counters.next_seq(),
            ts,
            symbol,
            contract.underlying,
            contract.year,
            contract.month,
            contract.last_trading_day,
            contract.delivery_day,
            outright.tick_size,
            instrument.lot_units,
            book.phase,
        )
    )
