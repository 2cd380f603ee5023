"""What the engine keeps per account, the commands that open, fund and set accounts, and the counters.

An :class:`Account` is the engine's view of one participant: holdings moved at
every fill, what open orders hold back, the client order ids of the day and
the account's settings (self-trade prevention, order value limit, the kill
switch). :class:`AccountCommands` carries out the commands that open an
account, move cash or units in or out and change its settings; blocking an
account (the kill switch) also cancels its orders and bids, so the engine
does that itself. :class:`Counters` hands out the gap-free numbers every book
shares: event sequence numbers, trade ids and order ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from mypy_extensions import mypyc_attr

from .codes import RejectCode
from .commands import CASH_ASSET, Deposit, OpenAccount, SetSelfTradePrevention, UnblockAccount, Withdraw
from .enums import SelfTradePrevention
from .events import AccountOpened, AccountUnblocked, Deposited, SelfTradePreventionSet, Withdrawn

if TYPE_CHECKING:
    from .orders import Order

STP_NONE: Final = SelfTradePrevention.NONE


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled in snapshots (docs/PERFORMANCE.md)
class Counters:
    """The engine-wide sequence numbers, shared by all books: the one place numbers are given out.

    Every event takes its ``seq`` from :meth:`next_seq` and every trade its id
    from :meth:`next_trade_id`. The hot path writes them out where the call
    shows in the benchmark, and says so where it does: two loops number many
    events in a local and write the last number back (``matching._match``,
    ``OrderBook.flush_level_changes``), and a new order (the one place an order
    id is given out) and a cancel count inline (``OrderCommands``, ``OrderBook.cancel``).
    """

    __slots__ = ("seq", "trade_id", "order_id")

    def __init__(self) -> None:
        self.seq = 0  # number of the last event emitted
        self.trade_id = 0  # id of the last trade
        self.order_id = 0  # id of the last order accepted

    def next_seq(self) -> int:
        seq = self.seq = self.seq + 1
        return seq

    def next_trade_id(self) -> int:
        trade_id = self.trade_id = self.trade_id + 1
        return trade_id


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled in snapshots (docs/PERFORMANCE.md)
class Account:
    """What the engine knows of an account: holdings, reservations, settings and client order ids.

    ``orders`` maps each client order id used this trading day to the open
    :class:`Order`, or to ``CLOSED`` once the order is filled, cancelled or
    expired, so a duplicate id is refused and a late cancel is told "too late".

    Holdings are the engine's view, moved at every fill: ``cash`` in euro
    cents and ``units`` per instrument. ``reserved_cash`` and
    ``reserved_units`` are what open orders hold back (available = holding -
    reserved); each equals the sum of ``leaves * reserve_per_lot`` over the
    account's open buy (cash) or sell (units) orders.
    """

    __slots__ = (
        "account_id",
        "self_trade_prevention",
        "orders",
        "open_orders",
        "cash",
        "reserved_cash",
        "units",
        "reserved_units",
        "order_value_limit",
        "blocked",
        "margin_called",
    )

    def __init__(self, account_id: str, symbols: Iterable[str] = (), order_value_limit: int | None = None) -> None:
        self.account_id = account_id
        self.self_trade_prevention = STP_NONE
        self.orders: dict[str | int, Order | None] = {}
        # The account's open orders (resting or waiting stops) by order id: the engine's ``open_orders``
        # for this account alone, so a mass cancel costs what the account has open, not its history.
        self.open_orders: dict[int, Order] = {}
        self.cash = 0
        self.reserved_cash = 0
        self.units = dict.fromkeys(symbols, 0)
        self.reserved_units = dict.fromkeys(symbols, 0)
        self.order_value_limit = order_value_limit  # cents; None: no limit
        self.blocked = False  # the kill switch: new orders are refused while it is on
        self.margin_called = False  # cash below its futures maintenance margin: new futures orders are refused


CLOSED: Final = None  # value in ``Account.orders`` for a client order id whose order is no longer open


def account_on_first_use(accounts: dict[str, Account], account_id: str) -> Account:
    """The account, opened on first use: only without pre-trade risk, where accounts hold nothing."""
    account = accounts.get(account_id)
    if account is None:
        account = accounts[account_id] = Account(account_id)
    return account


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled in snapshots (docs/PERFORMANCE.md)
class AccountCommands:
    """Opening accounts, deposits and withdrawals, self-trade prevention settings and the kill switch's end.

    Each handler appends its event, or changes nothing and returns the rule
    the command breaks (the engine refuses it).
    """

    def __init__(
        self, accounts: dict[str, Account], symbols: Iterable[str], counters: Counters, pre_trade_risk: bool
    ) -> None:
        self.accounts = accounts  # the engine's accounts by id (shared)
        self.symbols = tuple(symbols)  # the instruments: the assets besides cash
        self.counters = counters
        self.pre_trade_risk = pre_trade_risk  # accounts are opened and funded by command, never implied

    def open_account(self, cmd: OpenAccount, events: list) -> RejectCode | None:
        if cmd.account in self.accounts:
            return RejectCode.ACCOUNT_ALREADY_OPEN
        account = self.accounts[cmd.account] = Account(cmd.account, self.symbols, cmd.order_value_limit)
        if cmd.self_trade_prevention is not None:
            account.self_trade_prevention = cmd.self_trade_prevention
        events.append(
            AccountOpened(
                self.counters.next_seq(), cmd.ts, cmd.account, cmd.order_value_limit, account.self_trade_prevention
            )
        )
        return None

    def deposit(self, cmd: Deposit, events: list) -> RejectCode | None:
        return self._move_assets(cmd, events, cmd.amount)

    def withdraw(self, cmd: Withdraw, events: list) -> RejectCode | None:
        return self._move_assets(cmd, events, -cmd.amount)

    def _move_assets(self, cmd: Deposit | Withdraw, events: list, change: int) -> RejectCode | None:
        """Cash (asset EUR, in cents) or units of an instrument into (+) or out of (-) an account."""
        account = self.accounts.get(cmd.account)
        if account is None or not self.pre_trade_risk:
            return RejectCode.UNKNOWN_ACCOUNT
        asset = cmd.asset
        if asset == CASH_ASSET:
            if account.cash - account.reserved_cash + change < 0:
                return RejectCode.INSUFFICIENT_CASH
            account.cash += change
            balance = account.cash
        elif asset not in self.symbols:
            return RejectCode.UNKNOWN_ASSET
        elif account.units[asset] - account.reserved_units[asset] + change < 0:
            return RejectCode.INSUFFICIENT_UNITS
        else:
            account.units[asset] += change
            balance = account.units[asset]
        event = Deposited if change > 0 else Withdrawn
        events.append(event(self.counters.next_seq(), cmd.ts, cmd.account, asset, abs(change), balance))
        return None

    def unblock_account(self, cmd: UnblockAccount, events: list) -> RejectCode | None:
        account = self.accounts.get(cmd.account)
        if account is None:
            return RejectCode.UNKNOWN_ACCOUNT
        account.blocked = False
        events.append(AccountUnblocked(self.counters.next_seq(), cmd.ts, cmd.account))
        return None

    def set_self_trade_prevention(self, cmd: SetSelfTradePrevention, events: list) -> RejectCode | None:
        if self.pre_trade_risk and cmd.account not in self.accounts:  # accounts are opened, never implied
            return RejectCode.UNKNOWN_ACCOUNT
        account_on_first_use(self.accounts, cmd.account).self_trade_prevention = cmd.mode
        events.append(SelfTradePreventionSet(self.counters.next_seq(), cmd.ts, cmd.account, cmd.mode))
        return None
