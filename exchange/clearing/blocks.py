"""Block trades and EFPs: futures trades agreed off the book, reported by both sides, checked and cleared.

How this works
--------------
Two accounts agree a large trade away from the book (ICE Endex's EUA futures take blocks of 50 lots and up)
and each reports its side with :class:`~exchange.futures_commands.ReportBlockTrade`, naming the other and a
``block_id`` they share. The first report waits (``BlockTradeReported``, told to both: the counterparty sees
what is alleged against it). The second, from the other side with the same terms, registers the trade:

1. each side is checked as pre-trade risk checks an order: not blocked, not on a margin call if the trade adds
   to its margin, and enough free cash for the margin the new position needs and the fee (the contract's taker
   fee a lot: nobody made the liquidity); for an EFP the futures buyer must have the units to deliver and the
   seller the cash to pay for them;
2. both pass: the trade clears into positions and margins (:meth:`FuturesDesk.clear_trade`), fees are paid,
   an EFP's units and cash move, and ``BlockTraded`` is published on the contract's trades channel flagged
   with its kind. A block sets no last price, is not in the settlement window and does not count in choosing
   the day's benchmark month (ICE: block trades are not part of the settlement calculation); a contract that has
   neither traded nor settled takes none (513), since nothing would price it at the end of day;
3. a check fails: both reports are void, each side told by ``BlockTradeLapsed`` with the code of the first
   failed check (the buyer's checks first).

A second report with other terms is refused (409) and the first still waits; a report not matched by the end
of the day lapses (``BlockTradeLapsed`` without a code, told to both sides). A block id is used once a day by
each pair.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..codes import RejectCode
from ..enums import Side, TradingPhase
from ..events import BlockTraded, BlockTradeLapsed, BlockTradeReported

if TYPE_CHECKING:
    from ..accounts import Account
    from ..futures_commands import ReportBlockTrade
    from .desk import FuturesDesk

ReportKey = tuple[str, str, "str | int"]  # (reporter, counterparty, block id)


class BlockRegister:
    """The day's block reports waiting for their counterparty, and the block ids used; see the module notes."""

    def __init__(self, desk: FuturesDesk) -> None:
        self.desk = desk
        self.waiting: dict[ReportKey, ReportBlockTrade] = {}
        self.used: set[ReportKey] = set()  # block ids reported today, traded or lapsed

    def report(self, cmd: ReportBlockTrade, events: list) -> RejectCode | None:
        desk = self.desk
        engine = desk.engine
        account = engine.accounts.get(cmd.account)
        if account is None:
            return RejectCode.UNKNOWN_ACCOUNT
        fees = engine.fee_account
        assert fees is not None  # (futures need pre-trade risk, which opens the fee account)
        counterparty = engine.accounts.get(cmd.counterparty)
        if counterparty is None or counterparty is account or counterparty is fees or account is fees:
            return RejectCode.INVALID_COUNTERPARTY
        if account.blocked:
            return RejectCode.ACCOUNT_BLOCKED
        contract = desk.contracts.get(cmd.instrument)
        if contract is None:
            return (
                RejectCode.NOT_A_FUTURES_CONTRACT if cmd.instrument in engine.books else RejectCode.UNKNOWN_INSTRUMENT
            )
        book = engine.books[cmd.instrument]
        if book.phase is TradingPhase.CLOSED:
            return RejectCode.INSTRUMENT_CLOSED
        if book.phase is TradingPhase.HALTED:
            return RejectCode.TRADING_HALTED
        if cmd.price % book.tick_size:
            return RejectCode.PRICE_NOT_ON_TICK
        if cmd.physical_price is not None and cmd.physical_price % engine.books[contract.underlying].tick_size:
            return RejectCode.PRICE_NOT_ON_TICK
        if cmd.quantity < desk.block_min_lots[contract.underlying]:
            return RejectCode.BLOCK_BELOW_MINIMUM
        if book.last_price is None and cmd.instrument not in desk.house.settlement_prices:
            return RejectCode.NO_MARKET_PRICE  # (nothing would price its positions at the end of day)
        key = (cmd.account, cmd.counterparty, cmd.block_id)
        if key in self.waiting or key in self.used:
            return RejectCode.DUPLICATE_BLOCK_ID
        other = self.waiting.get((cmd.counterparty, cmd.account, cmd.block_id))
        counters = engine.counters
        if other is None:
            self.waiting[key] = cmd
            events.append(
                BlockTradeReported(
                    counters.next_seq(),
                    cmd.ts,
                    cmd.account,
                    cmd.counterparty,
                    cmd.block_id,
                    cmd.instrument,
                    contract.underlying,
                    cmd.side,
                    cmd.quantity,
                    cmd.price,
                    cmd.kind,
                    cmd.physical_price,
                )
            )
            return None
        if (other.instrument, other.quantity, other.price, other.kind, other.physical_price) != (
            cmd.instrument,
            cmd.quantity,
            cmd.price,
            cmd.kind,
            cmd.physical_price,
        ) or other.side is cmd.side:
            return RejectCode.BLOCK_TERMS_DIFFER
        del self.waiting[(cmd.counterparty, cmd.account, cmd.block_id)]
        self.used.add(key)
        self.used.add((cmd.counterparty, cmd.account, cmd.block_id))
        buyer, seller = (account, counterparty) if cmd.side is Side.BUY else (counterparty, account)
        fee = book.instrument.taker_fee * cmd.quantity
        units = cmd.quantity * desk.lot_units[contract.underlying] if cmd.physical_price is not None else 0
        physical_cash = units * (cmd.physical_price or 0)
        code = self._check(buyer, cmd, cmd.quantity, fee, -physical_cash, units) or self._check(
            seller, cmd, -cmd.quantity, fee, physical_cash, 0
        )
        if code is not None:
            for reporter, named in ((other.account, other.counterparty), (cmd.account, cmd.counterparty)):
                events.append(
                    BlockTradeLapsed(counters.next_seq(), cmd.ts, reporter, named, cmd.block_id, cmd.instrument, code)
                )
            return None
        buyer.cash -= fee
        seller.cash -= fee
        fees.cash += 2 * fee  # (a reporter is never the fee account: checked above)
        desk.clear_trade(cmd.instrument, buyer, seller, cmd.quantity, cmd.price, on_book=False)
        if units:  # an EFP: the futures buyer delivers the underlying to the seller, who pays for it
            buyer.units[contract.underlying] -= units
            seller.units[contract.underlying] += units
            buyer.cash += physical_cash
            seller.cash -= physical_cash
        events.append(
            BlockTraded(
                counters.next_seq(),
                cmd.ts,
                cmd.instrument,
                counters.next_trade_id(),
                cmd.block_id,
                cmd.kind,
                cmd.price,
                cmd.quantity,
                buyer.account_id,
                seller.account_id,
                fee,
                fee,
                contract.underlying,
                cmd.physical_price,
                units,
            )
        )
        return None

    def _check(
        self, account: Account, cmd: ReportBlockTrade, lots: int, fee: int, cash_out: int, units_out: int
    ) -> RejectCode | None:
        """The first of the account's checks the trade fails (``lots`` signed, ``cash_out`` and ``units_out`` what
        an EFP takes from it), or None."""
        if account.blocked:
            return RejectCode.ACCOUNT_BLOCKED
        margin = self.desk.margin_change(account.account_id, cmd.instrument, lots)
        if margin > 0 and account.margin_called:
            return RejectCode.MARGIN_CALL
        if margin + fee + cash_out > account.cash - account.reserved_cash:
            return RejectCode.INSUFFICIENT_CASH
        underlying = self.desk.contracts[cmd.instrument].underlying
        if units_out > account.units.get(underlying, 0) - account.reserved_units.get(underlying, 0):
            return RejectCode.INSUFFICIENT_UNITS
        return None

    def end_of_day(self, ts: int, events: list) -> None:
        """Reports still waiting lapse; block ids may be used again."""
        counters = self.desk.engine.counters
        for (reporter, named, block_id), cmd in sorted(self.waiting.items(), key=lambda item: _sort_key(item[0])):
            events.append(BlockTradeLapsed(counters.next_seq(), ts, reporter, named, block_id, cmd.instrument, None))
        self.waiting.clear()
        self.used.clear()

    def state_lines(self) -> Iterable[str]:
        for key in sorted(self.waiting, key=_sort_key):
            cmd = self.waiting[key]
            yield (
                f"block waiting {key[0]} {key[1]} {key[2]!r} {cmd.instrument} {cmd.side} {cmd.quantity} {cmd.price} "
                f"{cmd.kind} {cmd.physical_price}"
            )
        for key in sorted(self.used, key=_sort_key):
            yield f"block used {key[0]} {key[1]} {key[2]!r}"


def _sort_key(key: ReportKey) -> tuple[str, str, int, str]:
    """Report keys in a fixed order (a block id is an int or a str: ints first)."""
    reporter, named, block_id = key
    return (reporter, named, 0, f"{block_id:020d}") if isinstance(block_id, int) else (reporter, named, 1, block_id)
