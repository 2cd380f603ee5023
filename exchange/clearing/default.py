"""The default process: the operator closes out an account on a margin call.

How this works
--------------
An account whose cash fell below its maintenance margin is called at the end of day (``MarginCalled``) and
may then only reduce its futures orders. If it does not pay, the operator closes it out with
:class:`~exchange.futures_commands.CloseOutAccount`, naming the account that takes its positions over (a
clearing member that bid for them in the venue's default auction, or the exchange's own default account):

1. the receiver is checked first, as a block trade's side is: an open account other than the defaulter, not
   blocked, not on a margin call if the positions add to its margin, with free cash for the margin they add;
2. the defaulter is blocked and its orders cancelled, exactly as by the kill switch (``AccountBlocked``);
3. each of its futures positions passes to the receiver at the contract's last settlement price (its last
   trade's on a contract never settled): a transfer clears like a trade between the two, so that the day's
   variation margin settles the receiver from that price on and the defaulter up to it (``AccountClosedOut``
   lists the transfers);
4. the defaulter's margin is released with its positions; its call ends if its cash now covers what it owes
   (``MarginCallMet``), and it stays blocked until the operator releases it.

ICE Clear Europe's default rules leave the defaulter's positions to the clearing house, which hedges and
auctions them to members; carbonx models the outcome (the positions pass to one named account at the last
settlement price), not the auction itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..codes import RejectCode
from ..commands import BlockAccount
from ..events import AccountClosedOut
from .house import margin_of

if TYPE_CHECKING:
    from ..accounts import Account
    from ..futures_commands import CloseOutAccount
    from .desk import FuturesDesk


def close_out(desk: FuturesDesk, cmd: CloseOutAccount, events: list) -> RejectCode | None:
    """Carry out (or refuse) the close-out; see the module notes."""
    engine = desk.engine
    account, receiver = engine.accounts.get(cmd.account), engine.accounts.get(cmd.to_account)
    if account is None:
        return RejectCode.UNKNOWN_ACCOUNT
    if receiver is None or receiver is account or receiver is engine.fee_account or account is engine.fee_account:
        return RejectCode.INVALID_COUNTERPARTY
    if not account.margin_called:
        return RejectCode.NOT_ON_MARGIN_CALL
    transfers = close_out_transfers(desk, cmd.account)
    code = check_receiver(desk, receiver, transfers)
    if code is not None:
        return code
    engine.block_account(BlockAccount(ts=cmd.ts, account=cmd.account), events)
    transfer_positions(desk, account, receiver, transfers, cmd.ts, events)
    desk.call_met(account, cmd.ts, events)
    return None


def receiver_margin_change(desk: FuturesDesk, receiver: str, transfers: list[tuple[str, int, int]]) -> int:
    """What the receiver's initial margin changes by (cents) taking the positions (contract, lots, price)."""
    moved: dict[str, dict[str, int]] = {}  # underlying -> contract -> the receiver's position after
    for symbol, lots, _ in transfers:
        underlying = desk.contracts[symbol].underlying
        moved.setdefault(underlying, {})[symbol] = desk.house.position(receiver, symbol) + lots
    change = 0
    for underlying, after in moved.items():
        longs, shorts = desk.exposure.get((receiver, underlying), (0, 0))
        for symbol, lots in after.items():
            before = desk.house.position(receiver, symbol)
            longs += max(lots, 0) - max(before, 0)
            shorts += max(-lots, 0) - max(-before, 0)
        required = margin_of(longs, shorts, desk.lot_units[underlying], desk.config.margins[underlying])
        change += required - desk.margins_held.get((receiver, underlying), 0)
    return change


def close_out_transfers(desk: FuturesDesk, account_id: str) -> list[tuple[str, int, int]]:
    """(contract, lots, price) for each of the account's futures positions, nearest month first: the lots the
    receiver takes (the defaulter's position) at the contract's last settlement price, else its last trade's."""
    transfers = []
    for symbol in desk.contracts_of():
        lots = desk.house.position(account_id, symbol)
        if lots:
            book = desk.engine.books[symbol]
            price = desk.house.settlement_prices.get(symbol, book.last_price)
            assert price is not None, f"{symbol}: a position without a settlement or a trade"
            transfers.append((symbol, lots, price))
    return transfers


def check_receiver(desk: FuturesDesk, receiver: Account, transfers: list[tuple[str, int, int]]) -> RejectCode | None:
    if receiver.blocked:
        return RejectCode.ACCOUNT_BLOCKED
    margin = receiver_margin_change(desk, receiver.account_id, transfers)
    if margin > 0 and receiver.margin_called:
        return RejectCode.MARGIN_CALL
    if margin > receiver.cash - receiver.reserved_cash:
        return RejectCode.INSUFFICIENT_CASH
    return None


def transfer_positions(
    desk: FuturesDesk,
    defaulter: Account,
    receiver: Account,
    transfers: list[tuple[str, int, int]],
    ts: int,
    events: list,
) -> None:
    """Each position to the receiver at its price, cleared like a trade between the two."""
    for symbol, lots, price in transfers:
        buyer, seller = (receiver, defaulter) if lots > 0 else (defaulter, receiver)
        desk.clear_trade(symbol, buyer, seller, abs(lots), price, on_book=False)
    seq = desk.engine.counters.next_seq()
    events.append(AccountClosedOut(seq, ts, defaulter.account_id, receiver.account_id, tuple(transfers)))
