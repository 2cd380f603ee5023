"""The futures desk's commands beyond listing (exchange.clearing): block trades and EFPs reported by their two
sides, and the operator's close-out of a defaulter. Each checks its own fields when built, as every command
does (exchange.commands), and the engine's futures desk carries it out."""

from __future__ import annotations

from .codes import RejectCode
from .commands import (
    MAX_ACCOUNT_LENGTH,
    SIDES,
    Command,
    InvalidCommand,
    _check_account,
    _check_client_order_id,
    _check_ts,
    _member,
    _positive,
    _set,
)
from .enums import Side

BLOCK_KINDS = ("block", "efp")  # an off-book futures trade, and one exchanged for the underlying


def _check_counterparty(value: object) -> None:
    if type(value) is not str or not 0 < len(value) <= MAX_ACCOUNT_LENGTH:
        raise InvalidCommand(RejectCode.INVALID_COUNTERPARTY, "counterparty")


class ReportBlockTrade(Command, frozen=True):
    """One side of a block trade or EFP agreed off the book (exchange.clearing.blocks): it trades when the
    counterparty reports the same ``block_id`` with the same terms from the other side. An EFP (exchange for
    physical) also moves the underlying at ``physical_price``: the futures buyer delivers it to the seller."""

    ts: int
    account: str
    block_id: str | int  # the two sides' shared reference, unique per pair of accounts and day
    counterparty: str
    instrument: str  # a listed futures contract
    side: Side
    quantity: int  # lots
    price: int  # cents a tonne
    kind: str = "block"  # or "efp"
    physical_price: int | None = None  # an EFP's price of the underlying, cents a tonne

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)
        _check_client_order_id(self.block_id)
        _check_counterparty(self.counterparty)
        if type(self.instrument) is not str or not self.instrument:
            raise InvalidCommand(RejectCode.UNKNOWN_INSTRUMENT, "instrument")
        _set(self, "side", _member(SIDES, self.side, RejectCode.INVALID_SIDE, "side"))
        _positive(self.quantity, RejectCode.INVALID_QUANTITY, "quantity")
        _positive(self.price, RejectCode.INVALID_PRICE, "price")
        if self.kind not in BLOCK_KINDS or (self.physical_price is None) is (self.kind == "efp"):
            raise InvalidCommand(RejectCode.INVALID_BLOCK_KIND, "kind")
        if self.physical_price is not None:
            _positive(self.physical_price, RejectCode.INVALID_PRICE, "physical_price")


class CloseOutAccount(Command, frozen=True):
    """The operator closes out an account on a margin call (exchange.clearing.default): it is blocked and its
    orders cancelled as by the kill switch, and its futures positions pass to ``to_account`` at their last
    settlement prices."""

    ts: int
    account: str
    to_account: str  # the receiver: a member that took the positions in the default auction, or the exchange's

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)
        _check_counterparty(self.to_account)
