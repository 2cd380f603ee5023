"""Commands: what the engine is asked to do.

Commands are imperative (``NewOrder``, ``CancelOrder``), immutable records
built with keywords. As h11's events do, each command checks itself when it
is built: types, ranges that do not depend on an instrument, and which
fields go together. A malformed command cannot exist: building one raises
:class:`InvalidCommand`, which carries a reject code from
:mod:`exchange.codes` (the gateway answers it with that code). Enum fields
accept their wire strings (``"B"``, ``"IOC"``) and are stored as members.

The engine then checks only what depends on its state: the instrument's
rules (tick, size and price limits), duplicate client order ids, orders that
are gone. It answers those with reject events, never with an exception.

Every command carries ``ts``, the gateway's timestamp in nanoseconds since
the epoch; the engine never reads a clock. Prices are integer euro cents,
quantities integer lots, dates integers written YYYYMMDD.
"""

from __future__ import annotations

import re
from datetime import date
from enum import Enum
from typing import Final, TypeGuard, TypeVar

import msgspec

from .codes import RejectCode
from .enums import OrderType, SelfTradePrevention, Side, TimeInForce, TradingPhase

MAX_CLIENT_ORDER_ID_LENGTH = 64
MAX_ACCOUNT_LENGTH = 64
MAX_INT = (1 << 63) - 1  # every integer field must fit a signed 64-bit wire integer
BID_LOT = 500  # primary auctions: volumes are whole multiples of 500 allowances (the Auctioning Regulation)
AUCTION_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
SEED = re.compile(r"[0-9a-f]{32,128}")

E = TypeVar("E", bound=Enum)


class InvalidCommand(ValueError):
    """A command could not be built; ``code`` says why, in the engine's reject vocabulary."""

    def __init__(self, code: RejectCode, field: str) -> None:
        super().__init__(f"{field}: {code.text} (code {int(code)})")
        self.code = code
        self.field = field


def valid_date(value: object) -> bool:
    """True for an int written YYYYMMDD that names a real calendar date."""
    if type(value) is not int or not 10000101 <= value <= 99991231:
        return False
    try:
        date(value // 10000, value // 100 % 100, value % 100)
    except ValueError:
        return False
    return True


def _whole(value: object) -> TypeGuard[int]:
    """A plain int (not a bool) that fits 64 bits."""
    return type(value) is int and -MAX_INT <= value <= MAX_INT


def _check_ts(ts: object) -> None:
    if not _whole(ts) or ts < 0:
        raise InvalidCommand(RejectCode.INVALID_TIMESTAMP, "ts")


def _check_account(account: object) -> None:
    if type(account) is not str or not 0 < len(account) <= MAX_ACCOUNT_LENGTH:
        raise InvalidCommand(RejectCode.INVALID_ACCOUNT, "account")


def _check_client_order_id(value: object) -> None:
    if type(value) is int:
        if 0 <= value <= MAX_INT:
            return
    elif type(value) is str and 0 < len(value) <= MAX_CLIENT_ORDER_ID_LENGTH:
        return
    raise InvalidCommand(RejectCode.INVALID_CLIENT_ORDER_ID, "client_order_id")


def _members(enum: type[E]) -> dict[object, E]:
    """An enum's members by wire string; a StrEnum member hashes and compares as its string, so it finds itself."""
    return {member.value: member for member in enum}


SIDES = _members(Side)
ORDER_TYPES = _members(OrderType)
TIMES_IN_FORCE = _members(TimeInForce)
SELF_TRADE_MODES = _members(SelfTradePrevention)
TRADING_PHASES = _members(TradingPhase)


def _member(members: dict[object, E], value: object, code: RejectCode, field: str) -> E:
    """The enum member for a member or its wire string; InvalidCommand for anything else.

    One dict lookup: calling the enum (``Side(value)``) costs about 0.3 us, and
    a new order converts three or four fields.
    """
    try:
        member = members.get(value)
    except TypeError:  # unhashable: not a string
        member = None
    if member is None:
        raise InvalidCommand(code, field)
    return member


def _positive(value: object, code: RejectCode, field: str) -> None:
    if not _whole(value) or value <= 0:
        raise InvalidCommand(code, field)


# The members the usual new order is tested against, as module names: a global is one look-up where
# ``OrderType.LIMIT`` is two, the second through the enum's class (measured: a third of the test's cost).
_LIMIT: Final = OrderType.LIMIT
_MARKET: Final = OrderType.MARKET
_GTD: Final = TimeInForce.GTD


def _set(command: Command, field: str, value: object) -> None:
    msgspec.structs.force_setattr(command, field, value)  # a frozen record: normalised once, while it is built


class Command(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What every command is: an immutable record, built with keywords, that checks itself in ``__post_init__``.

    A msgspec ``Struct`` rather than a dataclass: it is built in C, about a tenth of the frozen dataclass's
    time (a frozen dataclass sets each field through ``object.__setattr__``), which is most of what building a
    new order cost (2.2 us before, 0.6 us now, checks included). ``gc=False``: a command holds only strings,
    integers and enum members, so it can be in no reference cycle, and the garbage collector need not track
    the million commands of a busy day. ``msgspec.structs.replace`` and ``fields`` stand for the dataclass
    functions (a replaced command is checked again).
    """


class NewOrder(Command, frozen=True):
    """Enter an order.

    What is offered: LIMIT orders with any time in force; MARKET orders never
    rest (GTC, DAY and IOC all mean "trade what you can now, cancel the
    rest", FOK means fill in full or not at all), carry no price, stop,
    display quantity or post-only flag, and are not GTD. Post-only and
    iceberg (display quantity) orders are resting orders: GTC, DAY or GTD. A
    stop-limit order (``stop_price``) is not post-only.
    """

    ts: int
    account: str
    client_order_id: str | int  # unique per account and trading day
    instrument: str
    side: Side
    quantity: int  # lots; for an iceberg the whole quantity, shown and hidden
    price: int | None = None  # cents; required for LIMIT, absent for MARKET
    order_type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce = TimeInForce.GTC
    display_quantity: int | None = None  # iceberg: lots shown at a time
    stop_price: int | None = None  # stop-limit: waits unseen until the last trade reaches it
    expire_date: int | None = None  # GTD only: YYYYMMDD; expires at that day's end of day
    post_only: bool = False  # rejected if it would trade on entry
    self_trade_prevention: SelfTradePrevention | None = None  # None: the account's setting

    def __post_init__(self) -> None:
        # The orders nearly every caller sends (a plain limit or market order, the enums as members), accepted
        # in one expression: every test of the field-by-field checks below that such an order passes, without
        # a call per field or anything to normalise. Anything else, valid or not, takes the checks below, which
        # normalise wire strings to members and say which rule is broken.
        ts, quantity, price, order_type, tif = self.ts, self.quantity, self.price, self.order_type, self.time_in_force
        client_order_id, account, instrument = self.client_order_id, self.account, self.instrument
        if (
            type(ts) is int
            and 0 <= ts <= MAX_INT
            and type(quantity) is int
            and 0 < quantity <= MAX_INT
            and type(self.side) is Side
            and type(tif) is TimeInForce
            and tif is not _GTD
            and (
                (order_type is _LIMIT and type(price) is int and 0 < price <= MAX_INT)
                or (order_type is _MARKET and price is None)
            )
            and self.post_only is False
            and self.display_quantity is None
            and self.stop_price is None
            and self.expire_date is None
            and self.self_trade_prevention is None
            and type(account) is str
            and 0 < len(account) <= MAX_ACCOUNT_LENGTH
            and type(instrument) is str
            and instrument
            and (
                (type(client_order_id) is int and 0 <= client_order_id <= MAX_INT)
                or (type(client_order_id) is str and 0 < len(client_order_id) <= MAX_CLIENT_ORDER_ID_LENGTH)
            )
        ):
            return
        self._check_fields()

    def _check_fields(self) -> None:
        """Every field, one rule at a time: InvalidCommand naming the first rule broken; wire strings become
        enum members."""
        _check_ts(self.ts)
        _check_account(self.account)
        _check_client_order_id(self.client_order_id)
        if type(self.instrument) is not str or not self.instrument:
            raise InvalidCommand(RejectCode.UNKNOWN_INSTRUMENT, "instrument")
        _set(self, "side", _member(SIDES, self.side, RejectCode.INVALID_SIDE, "side"))
        order_type = _member(ORDER_TYPES, self.order_type, RejectCode.INVALID_ORDER_TYPE, "order_type")
        _set(self, "order_type", order_type)
        tif = _member(TIMES_IN_FORCE, self.time_in_force, RejectCode.INVALID_TIME_IN_FORCE, "time_in_force")
        _set(self, "time_in_force", tif)
        if self.self_trade_prevention is not None:
            _set(
                self,
                "self_trade_prevention",
                _member(
                    SELF_TRADE_MODES,
                    self.self_trade_prevention,
                    RejectCode.INVALID_SELF_TRADE_MODE,
                    "self_trade_prevention",
                ),
            )
        _positive(self.quantity, RejectCode.INVALID_QUANTITY, "quantity")
        if order_type is OrderType.LIMIT:
            if self.price is None:
                raise InvalidCommand(RejectCode.PRICE_REQUIRED, "price")
            if not _whole(self.price):  # (zero and below: refused by the instrument's rules, 106, but a TAS book's)
                raise InvalidCommand(RejectCode.INVALID_PRICE, "price")
        elif self.price is not None:
            raise InvalidCommand(RejectCode.PRICE_NOT_ALLOWED, "price")
        if self.post_only is not True and self.post_only is not False:
            raise InvalidCommand(RejectCode.INVALID_POST_ONLY, "post_only")
        display = self.display_quantity
        if display is not None and (not _whole(display) or not 0 < display <= self.quantity):
            raise InvalidCommand(RejectCode.INVALID_DISPLAY_QUANTITY, "display_quantity")
        if self.stop_price is not None:
            _positive(self.stop_price, RejectCode.INVALID_STOP_PRICE, "stop_price")
        if tif is TimeInForce.GTD:
            if self.expire_date is None:
                raise InvalidCommand(RejectCode.EXPIRE_DATE_REQUIRED, "expire_date")
            if not valid_date(self.expire_date):
                raise InvalidCommand(RejectCode.INVALID_EXPIRE_DATE, "expire_date")
        elif self.expire_date is not None:
            raise InvalidCommand(RejectCode.INVALID_EXPIRE_DATE, "expire_date")
        if order_type is OrderType.MARKET:
            if tif is TimeInForce.GTD or self.stop_price is not None or display is not None or self.post_only:
                raise InvalidCommand(RejectCode.INVALID_COMBINATION, "order_type")
        elif (self.post_only or display is not None) and tif in (TimeInForce.IOC, TimeInForce.FOK):
            raise InvalidCommand(RejectCode.INVALID_COMBINATION, "time_in_force")
        if self.post_only and self.stop_price is not None:
            raise InvalidCommand(RejectCode.INVALID_COMBINATION, "post_only")


def _check_order_reference(order_id: object, client_order_id: object) -> None:
    if (order_id is None) == (client_order_id is None):
        raise InvalidCommand(RejectCode.ORDER_REFERENCE_REQUIRED, "order_id")
    if order_id is not None:
        if not _whole(order_id) or order_id <= 0:
            raise InvalidCommand(RejectCode.UNKNOWN_ORDER, "order_id")
    else:
        _check_client_order_id(client_order_id)


class CancelOrder(Command, frozen=True):
    """Cancel one order, named by exactly one of its order id and its client order id."""

    ts: int
    account: str
    order_id: int | None = None
    client_order_id: str | int | None = None

    def __post_init__(self) -> None:
        ts, account, client_order_id = self.ts, self.account, self.client_order_id
        if (  # the usual cancel, by client order id, in one expression (as NewOrder's)
            type(ts) is int
            and 0 <= ts <= MAX_INT
            and type(account) is str
            and 0 < len(account) <= MAX_ACCOUNT_LENGTH
            and self.order_id is None
            and (
                (type(client_order_id) is int and 0 <= client_order_id <= MAX_INT)
                or (type(client_order_id) is str and 0 < len(client_order_id) <= MAX_CLIENT_ORDER_ID_LENGTH)
            )
        ):
            return
        _check_ts(ts)
        _check_account(account)
        _check_order_reference(self.order_id, client_order_id)


class ReplaceOrder(Command, frozen=True):
    """Amend an order's price and/or total quantity.

    ``quantity`` is the new total quantity, filled part included (FIX
    OrderQty), so a replace that races a fill still means what the trader
    meant. Lowering the quantity at the same price keeps time priority; a new
    price or a larger quantity sends the order to the back of its (new) level.
    """

    ts: int
    account: str
    order_id: int | None = None
    client_order_id: str | int | None = None
    quantity: int | None = None
    price: int | None = None

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)
        _check_order_reference(self.order_id, self.client_order_id)
        if self.quantity is None and self.price is None:
            raise InvalidCommand(RejectCode.REPLACE_CHANGES_NOTHING, "quantity")
        if self.quantity is not None:
            _positive(self.quantity, RejectCode.INVALID_QUANTITY, "quantity")
        if self.price is not None and not _whole(self.price):  # (zero and below: as a new order's)
            raise InvalidCommand(RejectCode.INVALID_PRICE, "price")


class MassCancel(Command, frozen=True):
    """Cancel every open order of an account, optionally on one instrument only."""

    ts: int
    account: str
    instrument: str | None = None
    on_disconnect: bool = False  # sent by the gateway when the account's session ends (cancel-on-disconnect)

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)
        if self.instrument is not None and (type(self.instrument) is not str or not self.instrument):
            raise InvalidCommand(RejectCode.UNKNOWN_INSTRUMENT, "instrument")
        if self.on_disconnect is not True and self.on_disconnect is not False:
            raise InvalidCommand(RejectCode.INVALID_COMBINATION, "on_disconnect")


class _AccountSwitch(Command, frozen=True):
    """An admin command that names only an account."""

    ts: int
    account: str

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)


class BlockAccount(_AccountSwitch, frozen=True):
    """The kill switch (admin): the account's open orders are cancelled and new ones refused until unblocked.

    Blocking a blocked account is not an error (the switch may be pressed twice); it cancels nothing more.
    """


class UnblockAccount(_AccountSwitch, frozen=True):
    """Release the kill switch (admin): the account may enter orders again."""


class SetSelfTradePrevention(Command, frozen=True):
    """Set an account's default self-trade prevention mode (an order may override it)."""

    ts: int
    account: str
    mode: SelfTradePrevention

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)
        _set(self, "mode", _member(SELF_TRADE_MODES, self.mode, RejectCode.INVALID_SELF_TRADE_MODE, "mode"))


class _TradingDayCommand(Command, frozen=True):
    """A command about one trading day: its timestamp and the day."""

    ts: int
    trading_date: int  # YYYYMMDD

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        if not valid_date(self.trading_date):
            raise InvalidCommand(RejectCode.INVALID_TRADING_DATE, "trading_date")


class EndOfDay(_TradingDayCommand, frozen=True):
    """Close a trading day: DAY orders, and GTD orders expiring on or before it, expire.

    Client order ids of orders no longer open may be used again after it.
    """


class ListFutures(_TradingDayCommand, frozen=True):
    """List the futures contracts that trade on ``trading_date`` (the start of each trading day): months newly
    reached get their books; contracts already listed are left as they are (exchange.clearing)."""


class ScheduleReached(Command, frozen=True):
    """The exchange's trading calendar has carried out (or its operator skipped) one schedule point of a trading
    day (``point`` names it, e.g. ``close:EUA``): journaled with the point's own commands, in their batch, so
    that a start knows exactly which points are done and catches up the rest in order."""

    ts: int
    trading_date: int  # YYYYMMDD
    point: str
    skipped: bool = False  # the operator passed over the point: its actions were not carried out

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        if not valid_date(self.trading_date):
            raise InvalidCommand(RejectCode.INVALID_TRADING_DATE, "trading_date")
        if type(self.point) is not str or not 0 < len(self.point) <= 64:
            raise InvalidCommand(RejectCode.INVALID_SCHEDULE_CHANGE, "point")
        if type(self.skipped) is not bool:
            raise InvalidCommand(RejectCode.INVALID_SCHEDULE_CHANGE, "skipped")


class ShiftSchedule(Command, frozen=True):
    """The operator extends a trading day: its closing points not yet reached (settlement window, closing
    call, close, end of day) move ``seconds`` later. Extensions of one day add up; the next day starts on
    time."""

    ts: int
    trading_date: int  # YYYYMMDD
    seconds: int

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        if not valid_date(self.trading_date):
            raise InvalidCommand(RejectCode.INVALID_TRADING_DATE, "trading_date")
        if not _whole(self.seconds) or not 0 < self.seconds <= 86_400:
            raise InvalidCommand(RejectCode.INVALID_SCHEDULE_CHANGE, "seconds")


class OpenSettlementWindow(Command, frozen=True):
    """Start counting an instrument's trades towards its settlement price (the exchange's schedule: ICE
    Endex's window is the last ten minutes of trading). The next end of day fixes the price from them."""

    ts: int
    instrument: str

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        if type(self.instrument) is not str or not self.instrument:
            raise InvalidCommand(RejectCode.UNKNOWN_INSTRUMENT, "instrument")


class SetTradingPhase(Command, frozen=True):
    """Move an instrument to another trading phase (the exchange's schedule, or its operator).

    Leaving a call phase, or a halt, for continuous trading or the close runs
    the call's auction first (``exchange.call_auction``). A volatility interruption
    is entered by the engine itself, never by this command, and ended by it
    (the gateway sends it when the interruption's time is up).
    """

    ts: int
    instrument: str
    phase: TradingPhase
    # Only from this phase (refused with 505 otherwise): the gateway's end of a volatility interruption
    # must not reopen an instrument the operator has halted meanwhile.
    from_phase: TradingPhase | None = None

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        if type(self.instrument) is not str or not self.instrument:
            raise InvalidCommand(RejectCode.UNKNOWN_INSTRUMENT, "instrument")
        _set(self, "phase", _member(TRADING_PHASES, self.phase, RejectCode.INVALID_TRADING_PHASE, "phase"))
        if self.from_phase is not None:
            _set(
                self,
                "from_phase",
                _member(TRADING_PHASES, self.from_phase, RejectCode.INVALID_TRADING_PHASE, "from_phase"),
            )


CASH_ASSET = "EUR"  # the asset name of cash in Deposit and Withdraw; any other asset is an instrument


class OpenAccount(Command, frozen=True):
    """Open a trading account (admin). Holdings start at zero: fund it with Deposit."""

    ts: int
    account: str
    order_value_limit: int | None = None  # cents: largest value (price x quantity x lot) of one order
    self_trade_prevention: SelfTradePrevention | None = None  # the account's default; None: NONE

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)
        if self.order_value_limit is not None:
            _positive(self.order_value_limit, RejectCode.INVALID_AMOUNT, "order_value_limit")
        if self.self_trade_prevention is not None:
            _set(
                self,
                "self_trade_prevention",
                _member(
                    SELF_TRADE_MODES,
                    self.self_trade_prevention,
                    RejectCode.INVALID_SELF_TRADE_MODE,
                    "self_trade_prevention",
                ),
            )


class _AssetMovement(Command, frozen=True):
    """Cash (asset "EUR", amount in cents) or units of an instrument (asset its symbol, amount in units:
    1 lot = the instrument's lot_units) moving into or out of an account."""

    ts: int
    account: str
    asset: str
    amount: int

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)
        if type(self.asset) is not str or not self.asset:
            raise InvalidCommand(RejectCode.UNKNOWN_ASSET, "asset")
        _positive(self.amount, RejectCode.INVALID_AMOUNT, "amount")


class Deposit(_AssetMovement, frozen=True):
    """Cash paid in, or units transferred in from the registry."""


class Withdraw(_AssetMovement, frozen=True):
    """Cash paid out, or units transferred out to the registry: only what is available (not held back)."""


# -- compliance (EU ETS registry; the rules are in exchange.compliance) -------------------------

MIN_COMPLIANCE_YEAR = 2005  # the EU ETS began on 1 January 2005
MAX_COMPLIANCE_YEAR = 9998  # its deadline must fall in a later year that is still a valid date
# Defensive limit: a thousand times the yearly emissions of the whole EU ETS (about 1.5 billion t in
# 2005-12, DOMAIN.md), so one command's tonnage, and the penalty on it, fits a 64-bit wire integer.
# Running totals (tonnes carried over year after year, the sum of a deadline's penalties) are not
# bounded by it: Python integers hold them, and a wire format must not assume 64 bits for them.
MAX_TONNES = 10**12


def _check_year(year: object) -> None:
    if type(year) is not int or not MIN_COMPLIANCE_YEAR <= year <= MAX_COMPLIANCE_YEAR:
        raise InvalidCommand(RejectCode.INVALID_YEAR, "year")


class RegisterInstallation(Command, frozen=True):
    """Make an open account an installation that must cover its emissions (admin); once per account.

    ``credit_limit_bps``: the installation's share for project credits (CER,
    ERU), in basis points (2200 = 22%, Germany 2008-12): of its allocation over
    the phase, or of each year's obligation, as the phase's rules say.
    """

    ts: int
    account: str
    credit_limit_bps: int

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)
        if type(self.credit_limit_bps) is not int or not 0 <= self.credit_limit_bps <= 10_000:
            raise InvalidCommand(RejectCode.INVALID_CREDIT_LIMIT, "credit_limit_bps")


class RecordAllocation(Command, frozen=True):
    """Record an installation's free allocation for a year (admin); once per installation and year."""

    ts: int
    account: str
    year: int
    units: int  # allowances allocated free of charge, zero or more

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)
        _check_year(self.year)
        if type(self.units) is not int or not 0 <= self.units <= MAX_TONNES:
            raise InvalidCommand(RejectCode.INVALID_ALLOCATION, "units")


class RecordEmissions(Command, frozen=True):
    """Record an installation's verified emissions for a year (admin); once per installation and year."""

    ts: int
    account: str
    year: int
    tonnes: int  # tCO2e, zero or more

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)
        _check_year(self.year)
        if type(self.tonnes) is not int or not 0 <= self.tonnes <= MAX_TONNES:
            raise InvalidCommand(RejectCode.INVALID_EMISSIONS, "tonnes")


class Surrender(Command, frozen=True):
    """Surrender (retire) units of an instrument against an installation's obligation for a year."""

    ts: int
    account: str
    year: int
    instrument: str
    units: int  # units (tonnes), not lots

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)
        _check_year(self.year)
        if type(self.instrument) is not str or not self.instrument:
            raise InvalidCommand(RejectCode.UNKNOWN_INSTRUMENT, "instrument")
        if type(self.units) is not int or not 0 < self.units <= MAX_TONNES:
            raise InvalidCommand(RejectCode.INVALID_AMOUNT, "units")


class ComplianceDeadline(Command, frozen=True):
    """The surrender deadline of a compliance year has come (admin): shortfalls are charged and carried over.

    ``date`` (YYYYMMDD) is when it falls: after the compliance year (30 April
    of the next year in the EU ETS; 30 September from 2024).
    """

    ts: int
    year: int
    date: int

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_year(self.year)
        if not valid_date(self.date) or self.date // 10000 <= self.year:
            raise InvalidCommand(RejectCode.INVALID_DEADLINE_DATE, "date")


# -- EU ETS primary auctions (exchange.primary_auction) -------------------------------------------------------

# Defensive limit: EUR 1,000 per lot of 500 (EEX's fee was EUR 1.41 in 2021), so a fee always fits the wire.
MAX_AUCTION_FEE = 100_000


def _check_auction_id(value: object) -> None:
    if type(value) is not str or AUCTION_ID.fullmatch(value) is None:
        raise InvalidCommand(RejectCode.INVALID_AUCTION_ID, "auction_id")


def _check_volume(value: object) -> None:
    if not _whole(value) or value <= 0 or value % BID_LOT:
        raise InvalidCommand(RejectCode.INVALID_AUCTION_VOLUME, "volume")


class OpenPrimaryAuction(Command, frozen=True):
    """An auctioneer (a member state's account) offers ``volume`` allowances of an instrument, sealed bids
    taken until ``closes_at``.

    ``seed`` orders bids at equal prices at the clearing; it is fixed now and only its SHA-256 is
    published until the results. The reserve price is set at the clearing: ``reserve_discount_bps``
    under the instrument's secondary-market reference (its last trade, else its configured reference).
    """

    ts: int
    auction_id: str
    auctioneer: str
    instrument: str
    volume: int  # allowances (units), a multiple of 500; volume carried over from cancelled auctions is added
    closes_at: int  # ns since the epoch: bids with a later ts are refused; the clearing comes after it
    seed: str  # hexadecimal
    reserve_discount_bps: int = 0
    # Only admitted bidders may bid (AdmitBidder; the Auctioning Regulation Arts. 18-19): False in auctions opened
    # before admission existed, so their journals replay as they ran.
    admitted_only: bool = False
    fee_per_lot: int = 0  # cents per lot of 500 allowances won, paid by the winner to the exchange

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_auction_id(self.auction_id)
        if type(self.auctioneer) is not str or not 0 < len(self.auctioneer) <= MAX_ACCOUNT_LENGTH:
            raise InvalidCommand(RejectCode.INVALID_ACCOUNT, "auctioneer")
        if type(self.instrument) is not str or not self.instrument:
            raise InvalidCommand(RejectCode.UNKNOWN_INSTRUMENT, "instrument")
        _check_volume(self.volume)
        if not _whole(self.closes_at) or self.closes_at < 0:
            raise InvalidCommand(RejectCode.INVALID_TIMESTAMP, "closes_at")
        if type(self.seed) is not str or SEED.fullmatch(self.seed) is None:
            raise InvalidCommand(RejectCode.INVALID_SEED, "seed")
        if not _whole(self.reserve_discount_bps) or not 0 <= self.reserve_discount_bps <= 10_000:
            raise InvalidCommand(RejectCode.INVALID_RESERVE_DISCOUNT, "reserve_discount_bps")
        if type(self.admitted_only) is not bool:
            raise InvalidCommand(RejectCode.INVALID_FIELD, "admitted_only")
        if not _whole(self.fee_per_lot) or not 0 <= self.fee_per_lot <= MAX_AUCTION_FEE:
            raise InvalidCommand(RejectCode.INVALID_AUCTION_FEE, "fee_per_lot")


class AdmitBidder(Command, frozen=True):
    """Admit an account to bid in primary auctions, or withdraw its admission (``admitted`` False); operators."""

    ts: int
    account: str
    admitted: bool = True

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)
        if type(self.admitted) is not bool:
            raise InvalidCommand(RejectCode.INVALID_FIELD, "admitted")


class SubmitBid(Command, frozen=True):
    """A sealed bid: ``volume`` allowances at up to ``price`` cents each. Its cost is held back from the
    bidder's available cash until the clearing."""

    ts: int
    account: str
    auction_id: str
    bid_id: str | int  # the bidder's own id, unique per account and auction
    price: int  # cents per allowance
    volume: int  # allowances, a multiple of 500

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)
        _check_auction_id(self.auction_id)
        _check_client_order_id(self.bid_id)
        _positive(self.price, RejectCode.INVALID_BID_PRICE, "price")
        _check_volume(self.volume)


class ModifyBid(Command, frozen=True):
    """Change an open bid's price and/or volume (until the window closes)."""

    ts: int
    account: str
    auction_id: str
    bid_id: str | int
    price: int | None = None
    volume: int | None = None

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)
        _check_auction_id(self.auction_id)
        _check_client_order_id(self.bid_id)
        if self.price is not None:
            _positive(self.price, RejectCode.INVALID_BID_PRICE, "price")
        if self.volume is not None:
            _check_volume(self.volume)


class WithdrawBid(Command, frozen=True):
    """Withdraw an open bid (until the window closes); its hold is released."""

    ts: int
    account: str
    auction_id: str
    bid_id: str | int

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_account(self.account)
        _check_auction_id(self.auction_id)
        _check_client_order_id(self.bid_id)


class ClearPrimaryAuction(Command, frozen=True):
    """After the window: clear the auction (or cancel it) and deliver, as ``exchange.primary_auction`` describes."""

    ts: int
    auction_id: str

    def __post_init__(self) -> None:
        _check_ts(self.ts)
        _check_auction_id(self.auction_id)
