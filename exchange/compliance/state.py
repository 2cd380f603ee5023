"""The registry's compliance state inside the engine, and the handlers of the compliance commands.

How this works: the engine builds one :class:`Compliance` and routes the
compliance commands to its handlers. Each handler appends its events
(numbered by the engine's counters) to the list it is given, or changes
nothing and returns the rule the command breaks, which the engine turns into
its refusal. It reaches accounts and instruments through the engine's public
hooks. The rules themselves are numbered in the package's notes
(:mod:`exchange.compliance`); the configuration that states them per year is
:mod:`exchange.compliance.rules`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..codes import RejectCode
from ..commands import ComplianceDeadline, RecordAllocation, RecordEmissions, RegisterInstallation, Surrender
from ..events import (
    AllocationRecorded,
    DeadlinePassed,
    EmissionsRecorded,
    InstallationRegistered,
    ObligationCarriedOver,
    PenaltyCharged,
    UnitsSurrendered,
)
from .rules import BPS, CAP_ON_OBLIGATION, CREDIT, PENALTY_FROM_CASH, ComplianceConfig

if TYPE_CHECKING:
    from ..engine import Engine


class YearRecord:
    """One installation's compliance for one year."""

    __slots__ = (
        "emissions",
        "allocation",
        "carried_in",
        "surrendered",
        "total_surrendered",
        "credits",
        "closed",
        "shortfall",
        "penalty",
        "penalty_paid",
    )

    def __init__(self) -> None:
        self.emissions: int | None = None  # verified tonnes; None until recorded
        self.allocation: int | None = None  # free allocation of the year, units; None until recorded
        self.carried_in = 0  # tonnes missing at the previous year's deadline (make-good)
        self.surrendered: dict[str, int] = {}  # units retired against this year, per instrument
        self.total_surrendered = 0  # tonnes covered so far, all instruments
        self.credits = 0  # of which project credits
        self.closed = False  # the year's deadline has passed
        self.shortfall = 0  # tonnes missing at the deadline (set when closed)
        self.penalty = 0  # cents charged at the deadline
        self.penalty_paid = 0  # of which taken from cash (penalty_collection "cash"); the rest is owed

    @property
    def obligation(self) -> int:
        return (self.emissions or 0) + self.carried_in

    @property
    def has_obligation(self) -> bool:
        """Emissions recorded or tonnes carried in (an allocation alone is not an obligation)."""
        return self.emissions is not None or self.carried_in > 0


class Installation:
    __slots__ = ("account_id", "credit_limit_bps", "years")

    def __init__(self, account_id: str, credit_limit_bps: int) -> None:
        self.account_id = account_id
        self.credit_limit_bps = credit_limit_bps
        self.years: dict[int, YearRecord] = {}

    def record(self, year: int) -> YearRecord:
        """The year's record, made when first needed."""
        record = self.years.get(year)
        if record is None:
            record = self.years[year] = YearRecord()
        return record


class Compliance:
    """The engine's compliance state and the handlers of the compliance commands."""

    def __init__(self, engine: Engine, config: ComplianceConfig | None = None) -> None:
        self._engine = engine
        self._counters = engine.counters  # numbers the events
        # (No configuration: nothing counts, and penalties come from cash as they did before the rules by year,
        # so an engine built without one, and a journal that began without one, behave as they always have.)
        self.config = ComplianceConfig(penalty_collection=PENALTY_FROM_CASH) if config is None else config
        self.installations: dict[str, Installation] = {}
        self.retired: dict[str, int] = {}  # units retired (surrendered) per instrument, all years
        self.last_closed_year: int | None = None  # year of the last deadline passed
        self.last_deadline_date: int | None = None  # its date, YYYYMMDD

    def is_closed(self, year: int) -> bool:
        return self.last_closed_year is not None and year <= self.last_closed_year

    def credit_entitlement(self, installation: Installation, year: int) -> tuple[int, int]:
        """(most project credits that may count, credits counted already) for an obligation of the year.

        With phases whose cap is on allocation, both run over the phase: a share of the
        installation's allocation recorded for the phase's years, against the credits surrendered for
        any of them (Linking Directive, Art. 11a(1)). Otherwise a share of the year's own obligation. A phase
        in which no credit counts gives none.
        """
        phase = self.config.phase_of(year)
        record = installation.years.get(year)
        if phase is not None and not phase.credit_types:  # no credit counts in this phase: no entitlement
            return 0, 0
        if phase is None or phase.credit_cap == CAP_ON_OBLIGATION:
            obligation = 0 if record is None else record.obligation
            return obligation * installation.credit_limit_bps // BPS, 0 if record is None else record.credits
        allocation = used = 0
        for each, other in installation.years.items():
            if phase.first_year <= each <= phase.last_year:
                allocation += other.allocation or 0
                used += other.credits
        return allocation * installation.credit_limit_bps // BPS, used

    def _year_refusal(self, year: int) -> RejectCode | None:
        """Why a year takes no emissions, allocation or surrender: closed, or in no configured phase."""
        if self.is_closed(year):
            return RejectCode.COMPLIANCE_YEAR_CLOSED
        if self.config.phases and self.config.phase_of(year) is None:
            return RejectCode.YEAR_OUTSIDE_PHASES
        return None

    # -- handlers ------------------------------------------------------------------------

    def register_installation(self, cmd: RegisterInstallation, events: list) -> RejectCode | None:
        if self._engine.holding_account(cmd.account) is None:
            return RejectCode.UNKNOWN_ACCOUNT
        if cmd.account in self.installations:
            return RejectCode.INSTALLATION_ALREADY_REGISTERED
        self.installations[cmd.account] = Installation(cmd.account, cmd.credit_limit_bps)
        events.append(InstallationRegistered(self._counters.next_seq(), cmd.ts, cmd.account, cmd.credit_limit_bps))
        return None

    def _recordable(self, account_id: str, year: int) -> Installation | RejectCode:
        """The installation whose year an authority's record is for, if the year takes records."""
        installation = self._installation(account_id)
        if isinstance(installation, RejectCode):
            return installation
        code = self._year_refusal(year)
        return installation if code is None else code

    def record_emissions(self, cmd: RecordEmissions, events: list) -> RejectCode | None:
        installation = self._recordable(cmd.account, cmd.year)
        if isinstance(installation, RejectCode):
            return installation
        if cmd.year in installation.years and installation.years[cmd.year].emissions is not None:
            return RejectCode.EMISSIONS_ALREADY_RECORDED
        record = installation.record(cmd.year)
        record.emissions = cmd.tonnes
        events.append(
            EmissionsRecorded(
                self._counters.next_seq(),
                cmd.ts,
                cmd.account,
                cmd.year,
                cmd.tonnes,
                record.carried_in,
                record.obligation,
            )
        )
        return None

    def record_allocation(self, cmd: RecordAllocation, events: list) -> RejectCode | None:
        installation = self._recordable(cmd.account, cmd.year)
        if isinstance(installation, RejectCode):
            return installation
        if cmd.year in installation.years and installation.years[cmd.year].allocation is not None:
            return RejectCode.ALLOCATION_ALREADY_RECORDED
        installation.record(cmd.year).allocation = cmd.units
        entitlement, used = self.credit_entitlement(installation, cmd.year)
        events.append(
            AllocationRecorded(
                self._counters.next_seq(), cmd.ts, cmd.account, cmd.year, cmd.units, entitlement, entitlement - used
            )
        )
        return None

    def surrender(self, cmd: Surrender, events: list) -> RejectCode | None:
        code = self._surrender_refusal(cmd)
        if code is not None:
            return code
        account = self._engine.account(cmd.account)
        record = self.installations[cmd.account].years[cmd.year]
        symbol, units = cmd.instrument, cmd.units
        kind = self.config.kinds[symbol]
        account.units[symbol] -= units
        self.retired[symbol] = self.retired.get(symbol, 0) + units
        record.surrendered[symbol] = record.surrendered.get(symbol, 0) + units
        record.total_surrendered += units
        if kind == CREDIT:
            record.credits += units
        events.append(
            UnitsSurrendered(
                self._counters.next_seq(),
                cmd.ts,
                cmd.account,
                cmd.year,
                symbol,
                units,
                kind,
                record.total_surrendered,
                record.credits,
                record.obligation - record.total_surrendered,
                account.units[symbol],
                self.retired[symbol],
            )
        )
        return None

    def _surrender_refusal(self, cmd: Surrender) -> RejectCode | None:
        """The first rule a surrender breaks (the package notes give the order), or None."""
        installation = self._installation(cmd.account)
        if isinstance(installation, RejectCode):
            return installation
        symbol = cmd.instrument
        if not self._engine.has_instrument(symbol):
            return RejectCode.UNKNOWN_INSTRUMENT
        kind = self.config.kinds.get(symbol)
        if kind is None:
            return RejectCode.INSTRUMENT_NOT_ELIGIBLE
        code = self._year_refusal(cmd.year)
        if code is not None:
            return code
        if not self.config.counts_for(symbol, cmd.year):
            return RejectCode.UNIT_NOT_ELIGIBLE_FOR_YEAR
        record = installation.years.get(cmd.year)
        if record is None or (record.emissions is None and not record.carried_in):
            return RejectCode.NO_EMISSIONS_RECORDED
        units = cmd.units
        if record.total_surrendered + units > record.obligation:
            return RejectCode.SURRENDER_EXCEEDS_OBLIGATION
        if kind == CREDIT:
            entitlement, used = self.credit_entitlement(installation, cmd.year)
            if used + units > entitlement:
                return RejectCode.CREDIT_LIMIT_EXCEEDED
        account = self._engine.account(cmd.account)
        if units > account.units.get(symbol, 0) - account.reserved_units.get(symbol, 0):
            return RejectCode.INSUFFICIENT_UNITS
        return None

    def deadline(self, cmd: ComplianceDeadline, events: list) -> RejectCode | None:
        year = cmd.year
        last_year, last_date = self.last_closed_year, self.last_deadline_date  # set together, at a deadline
        if last_year is not None and last_date is not None and (year <= last_year or cmd.date <= last_date):
            return RejectCode.DEADLINE_OUT_OF_ORDER
        due = []  # (installation, record) with an obligation for the year, in account order
        for account_id in sorted(self.installations):
            installation = self.installations[account_id]
            years = installation.years
            if any(earlier < year and years[earlier].has_obligation and not years[earlier].closed for earlier in years):
                return RejectCode.DEADLINE_OUT_OF_ORDER
            record = years.get(year)
            if record is not None and record.has_obligation:
                due.append((installation, record))
        if self.config.phases and self.config.phase_of(year) is None:
            return RejectCode.YEAR_OUTSIDE_PHASES  # (tonnes carried past the last phase wait for the next one)
        deadline = self.config.deadline_date(year)
        if deadline is not None and cmd.date < deadline:
            return RejectCode.DEADLINE_NOT_DUE
        ts = cmd.ts
        per_tonne = self.config.penalty_for(year)
        short = penalties = carried = 0
        for installation, record in due:
            record.closed = True
            shortfall = record.shortfall = record.obligation - record.total_surrendered
            if shortfall <= 0:
                continue
            short += 1
            carried += shortfall
            penalty = record.penalty = shortfall * per_tonne
            penalties += penalty
            paid = record.penalty_paid = self._collect(installation.account_id, penalty)
            account = self._engine.account(installation.account_id)
            events.append(
                PenaltyCharged(
                    self._counters.next_seq(),
                    ts,
                    installation.account_id,
                    year,
                    shortfall,
                    per_tonne,
                    penalty,
                    paid,
                    penalty - paid,
                    self.config.penalty_account,
                    account.cash,
                )
            )
            following = installation.record(year + 1)
            following.carried_in += shortfall
            events.append(
                ObligationCarriedOver(
                    self._counters.next_seq(),
                    ts,
                    installation.account_id,
                    year,
                    year + 1,
                    shortfall,
                    following.obligation,
                )
            )
        self.last_closed_year = year
        self.last_deadline_date = cmd.date
        events.append(
            DeadlinePassed(self._counters.next_seq(), ts, year, cmd.date, len(due), short, penalties, carried)
        )
        return None

    # -- helpers -------------------------------------------------------------------------

    def _installation(self, account_id: str) -> Installation | RejectCode:
        if self._engine.holding_account(account_id) is None:
            return RejectCode.UNKNOWN_ACCOUNT
        installation = self.installations.get(account_id)
        return RejectCode.NOT_AN_INSTALLATION if installation is None else installation

    def _collect(self, account_id: str, penalty: int) -> int:
        """Cents of a penalty taken from the account's available cash into the penalty account: none when the
        authority levies it (the EU ETS: the member state's authority, not the exchange); with collection
        "cash", what the available cash covers."""
        if self.config.penalty_collection != PENALTY_FROM_CASH:
            return 0
        engine = self._engine
        account = engine.account(account_id)
        paid = min(penalty, max(account.cash - account.reserved_cash, 0))
        if paid:
            payee = engine.system_account(self.config.penalty_account)
            account.cash -= paid
            payee.cash += paid
        return paid

    # -- state -------------------------------------------------------------------------------

    def state_lines(self) -> Iterable[str]:
        """Compliance facts for the engine's state hash, one a line; none while nothing happened.

        (An engine that never saw a compliance command hashes as it did before
        compliance existed, and a year without an allocation as it did before allocations.) The config is
        not here: like the instruments it is fixed when the engine is built.
        """
        if not self.installations and not self.retired and self.last_closed_year is None:
            return
        retired = ",".join(f"{symbol}={units}" for symbol, units in sorted(self.retired.items()))
        yield f"compliance closed={self.last_closed_year} date={self.last_deadline_date} retired={retired}"
        for account_id in sorted(self.installations):
            installation = self.installations[account_id]
            yield f"installation {account_id} credit_limit_bps={installation.credit_limit_bps}"
            for year in sorted(installation.years):
                r = installation.years[year]
                surrendered = ",".join(f"{symbol}={units}" for symbol, units in sorted(r.surrendered.items()))
                allocation = "" if r.allocation is None else f" allocation={r.allocation}"
                yield (
                    f"obligation {account_id} {year} emissions={r.emissions} carried_in={r.carried_in} "
                    f"surrendered={surrendered} credits={r.credits} closed={r.closed} shortfall={r.shortfall} "
                    f"penalty={r.penalty} paid={r.penalty_paid}{allocation}"
                )
