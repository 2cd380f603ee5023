"""How the engine refuses a command: one event, built here and nowhere else.

How this works
--------------
A handler that finds a rule broken changes nothing and says which rule, as a
:class:`~exchange.codes.RejectCode`; the engine numbers the refusal and builds
its event with one of the two functions below. A new order is answered with
``OrderRejected`` (no order id was given out); every other command with
``RequestRejected``, whose ``request`` names the kind of command (the table
:data:`REQUESTS`) and whose account and order reference are taken from the
command itself:

* a cancel or replace carries the order id and client order id it named;
* a primary-auction bid command carries its ``bid_id`` in ``client_order_id``;
* an auction opening is refused to its auctioneer; a clearing, a compliance
  deadline or an end of day to nobody (the exchange's own commands);
* anything else that reaches the engine (an object of no command class) is
  request ``"unknown"``, with whatever ``ts`` and ``account`` it carries if
  they have the right types.
"""

from __future__ import annotations

from typing import Final

from .codes import RejectCode
from .commands import (
    AdmitBidder,
    BlockAccount,
    CancelOrder,
    ClearPrimaryAuction,
    ComplianceDeadline,
    Deposit,
    EndOfDay,
    ListFutures,
    MassCancel,
    ModifyBid,
    NewOrder,
    OpenAccount,
    OpenPrimaryAuction,
    OpenSettlementWindow,
    RecordAllocation,
    RecordEmissions,
    RegisterInstallation,
    ReplaceOrder,
    ScheduleReached,
    SetSelfTradePrevention,
    SetTradingPhase,
    ShiftSchedule,
    SubmitBid,
    Surrender,
    UnblockAccount,
    Withdraw,
    WithdrawBid,
)
from .events import OrderRejected, RequestRejected
from .futures_commands import CloseOutAccount, ReportBlockTrade

UNKNOWN_REQUEST: Final = "unknown"
# The ``request`` of a refusal, by command class: the names clients see, never to be changed.
REQUESTS: dict[type, str] = {
    CancelOrder: "cancel",
    ReplaceOrder: "replace",
    MassCancel: "mass_cancel",
    BlockAccount: "block_account",
    UnblockAccount: "unblock_account",
    SetSelfTradePrevention: "set_stp",
    SetTradingPhase: "set_trading_phase",
    EndOfDay: "end_of_day",
    OpenSettlementWindow: "open_settlement_window",
    ScheduleReached: "schedule_reached",
    ShiftSchedule: "shift_schedule",
    OpenAccount: "open_account",
    Deposit: "deposit",
    Withdraw: "withdraw",
    RegisterInstallation: "register_installation",
    RecordAllocation: "record_allocation",
    AdmitBidder: "admit_bidder",
    RecordEmissions: "record_emissions",
    Surrender: "surrender",
    ComplianceDeadline: "compliance_deadline",
    OpenPrimaryAuction: "open_auction",
    SubmitBid: "submit_bid",
    ModifyBid: "modify_bid",
    WithdrawBid: "withdraw_bid",
    ClearPrimaryAuction: "clear_auction",
    ListFutures: "list_futures",
    ReportBlockTrade: "report_block",
    CloseOutAccount: "close_out",
}


def order_rejected(seq: int, cmd: NewOrder, instrument: str | None, code: RejectCode) -> OrderRejected:
    """The refusal of a new order; ``instrument`` is the order's if the engine trades it, else None."""
    return OrderRejected(seq, cmd.ts, cmd.account, cmd.client_order_id, instrument, code, code.text)


def order_request_rejected(seq: int, cmd: CancelOrder | ReplaceOrder, code: RejectCode) -> RequestRejected:
    """The refusal of a cancel or replace, naming the order as the command did (the cancel path's own)."""
    return RequestRejected(
        seq, cmd.ts, cmd.account, REQUESTS[type(cmd)], cmd.order_id, cmd.client_order_id, code, code.text
    )


def request_rejected(seq: int, cmd: object, code: RejectCode) -> RequestRejected:
    """The refusal of any command but a new order (see the module notes for what it carries).

    Commands are told apart by their exact class, as the engine dispatches them: an object of a subclass is
    an unknown command."""
    kind = type(cmd)
    if type(cmd) is CancelOrder or type(cmd) is ReplaceOrder:
        return order_request_rejected(seq, cmd, code)
    ts = getattr(cmd, "ts", 0)  # any object may arrive here as an unknown command
    account = cmd.auctioneer if type(cmd) is OpenPrimaryAuction else getattr(cmd, "account", None)
    reference = (
        cmd.bid_id
        if type(cmd) is SubmitBid or type(cmd) is ModifyBid or type(cmd) is WithdrawBid
        else cmd.block_id
        if type(cmd) is ReportBlockTrade
        else None
    )
    return RequestRejected(
        seq,
        ts if type(ts) is int else 0,
        account if type(account) is str else None,
        REQUESTS.get(kind, UNKNOWN_REQUEST),
        None,
        reference,
        code,
        code.text,
    )
