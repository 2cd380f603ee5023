"""Compliance: the EU ETS registry's side of carbonx, inside the deterministic core.

Theory of operation
-------------------
An installation (a power plant, a paper mill, a cement works) must cover the
verified emissions of each year by surrendering units: allowances (EUA)
count one for one, project credits (CER from the CDM, ERU from JI) only up
to a share of the obligation set per installation (Germany 2008-12: 22%).
What is missing at the deadline is charged a penalty per tonne and still
owed: the missing tonnes are added to the next year's obligation
(make-good). See shared/DOMAIN.md, "Compliance (EU ETS registry)".

How the configuration reaches the engine, deterministically:

* :class:`ComplianceConfig`, the ``compliance`` argument of ``Engine``
  (default ``ComplianceConfig()``, so existing constructor calls keep
  working): which instrument symbols are allowances and which are project
  credits, the penalty per tonne in cents (EUR 100 = 10_000 by default, with
  optional per-year values such as EUR 40 for 2005-07) and the account
  penalties are paid into. Like the instruments it is fixed for the
  engine's life, so a replay builds the engine with the same config;
  :func:`parse_compliance` reads it from plain data (a ``[compliance]``
  TOML table), converting euros to cents once, at the edge. As everywhere in
  the core, no code names a symbol: the venue's lists (allowances EUA;
  credits CER and ERU) come from the configuration, and the default config
  lists none, so nothing counts for compliance until it is configured.
* Everything else arrives as commands through ``Engine.handle``, so a replay
  of the command journal reproduces it: ``RegisterInstallation`` (which
  account is an installation and its credit limit in basis points),
  ``RecordEmissions``, ``Surrender`` and ``ComplianceDeadline``.

Refusals are ``RequestRejected`` events (request ``register_installation``,
``record_emissions``, ``surrender``, ``compliance_deadline``) carrying a code
from :mod:`exchange.codes` (compliance codes are 6xx; an unknown account,
an unknown instrument and not enough available units reuse 201, 101 and
203, which mean the same thing everywhere). A refused command changes
nothing but the sequence counter. Nothing here raises on a well-formed
command.

Rules
-----
1.  Installations. ``RegisterInstallation`` makes an open account (the
    engine must keep holdings: ``pre_trade_risk``) an installation, once;
    its credit limit (0-10_000 bps) is fixed from then on (a second
    registration is refused: INSTALLATION_ALREADY_REGISTERED).
2.  Emissions. ``RecordEmissions`` records an installation's verified
    emissions for a year once; there is no correction (refused:
    EMISSIONS_ALREADY_RECORDED): a verified report is final, and a
    corrected figure that could shrink the obligation after units were
    retired against it would have to un-retire them. Zero tonnes is a valid
    report (an installation that did not run). A year whose deadline has
    passed takes no emissions (COMPLIANCE_YEAR_CLOSED).
3.  Obligation of a year = its verified emissions + the tonnes carried over
    from the year before (rule 9). A year has an obligation once either is
    recorded.
4.  Surrender is all or nothing, checked in this order: the account is open
    (UNKNOWN_ACCOUNT) and an installation (NOT_AN_INSTALLATION); the
    instrument is traded here (UNKNOWN_INSTRUMENT) and eligible: an
    allowance or a project credit of the config (INSTRUMENT_NOT_ELIGIBLE);
    the year is still open (COMPLIANCE_YEAR_CLOSED) and has an obligation
    (NO_EMISSIONS_RECORDED); the units fit the outstanding obligation
    (SURRENDER_EXCEEDS_OBLIGATION); credits fit the credit cap
    (CREDIT_LIMIT_EXCEEDED); the account has the units available, holding
    less what open sell orders hold back (INSUFFICIENT_UNITS).
5.  Allowances count 1:1 against any obligation. Project credits (all
    credit symbols together, cumulative over the year) count only up to the
    cap ``obligation * credit_limit_bps // 10_000``: rounded down, so the
    share is never exceeded. The cap is taken on the whole obligation,
    carried-over tonnes included.
6.  Surrendering more than the outstanding obligation is refused, not
    banked: retired units can never come back, so an over-surrender is
    taken for a mistake (a fat finger) rather than a gift to the climate.
7.  Surrendered units leave the account and are retired: they leave
    circulation for good. ``Compliance.retired`` keeps the total per
    instrument, so a conservation check counts, per instrument,
    sum over accounts of units + retired == units deposited - withdrawn.
8.  Deadlines come in year order: ``ComplianceDeadline`` for a year must
    follow the last one closed (a later year, on a later date) and is
    refused while an earlier year with an obligation is still open
    (DEADLINE_OUT_OF_ORDER). Years in between with no obligation close with
    it. After it, the year and every year before take no emissions and no
    surrenders.
9.  At the deadline, for each installation with an obligation for the year
    (in account order): shortfall = obligation - surrendered. A shortfall is
    charged ``shortfall * penalty per tonne`` (PenaltyCharged), paid from the
    account's available cash (cash less what open buy orders hold back, so
    cash never goes negative and reservations stay held) into the penalty
    account (opened by the engine when it is first paid); what the cash
    cannot cover is recorded as owed (a debt for the competent authority to
    enforce, outside the exchange; later deposits do not pay it). Paying
    does not cancel the debt: the shortfall is added to the next year's
    obligation (ObligationCarriedOver), and if that is not surrendered by the
    next deadline it is short, and charged, again. DeadlinePassed closes the
    list.
10. Cash paid as penalties stays in an account (the penalty account), so
    the EUR total over accounts is unchanged by compliance; units
    surrendered leave all accounts (rule 7).

The report (:func:`compliance_report`, text by :func:`format_report`) reads
the state and changes nothing: per year and installation the obligation
(carried-over tonnes included), units surrendered per eligible instrument,
the credit cap, the shortfall (still to surrender while the year is open;
missing at the deadline once closed) and the penalty charged, paid and owed.
The state hash covers installations, every year record, the retired totals
and the last deadline; an engine that never saw a compliance command adds
no line to it (and opens no penalty account), so its hash is as before.

Not modelled: unit vintages, and so the ban on banking phase-1 allowances
into phase 2; ineligible credit types within CER/ERU (nuclear, forestry,
HFC-23): list an instrument under neither ``allowances`` nor ``credits`` to
make it ineligible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from .codes import RejectCode
from .commands import MAX_ACCOUNT_LENGTH, ComplianceDeadline, RecordEmissions, RegisterInstallation, Surrender
from .events import (
    DeadlinePassed,
    EmissionsRecorded,
    InstallationRegistered,
    ObligationCarriedOver,
    PenaltyCharged,
    UnitsSurrendered,
)
from .instruments import ConfigError, cents_to_eur, eur_to_cents

if TYPE_CHECKING:
    from .engine import Engine

ALLOWANCE = "allowance"  # counts 1:1 against any obligation
CREDIT = "credit"  # a project credit: counts only up to the installation's share of the obligation
BPS = 10_000  # basis points in one whole
DEFAULT_PENALTY_ACCOUNT = "carbonx-penalties"
DEFAULT_PENALTY_PER_TONNE = 10_000  # cents: EUR 100/t, the EU ETS penalty from 2008 (Directive 2003/87/EC art. 16)
# Defensive limit on the configured penalty: EUR 10,000/t, a hundred times the EU ETS's (indexed since 2013,
# still about EUR 125 in 2024), keeps every penalty within a 64-bit wire integer for any allowed obligation.
MAX_PENALTY_PER_TONNE = 1_000_000


@dataclass(frozen=True, slots=True)
class ComplianceConfig:
    """What counts for compliance and what a missing tonne costs; fixed for the engine's life.

    ``penalty_by_year`` gives the penalty of particular years (EUR 40 = 4_000
    cents for 2005-07); every other year costs ``penalty_per_tonne``. A symbol
    that is neither an allowance nor a credit is not eligible.
    """

    allowances: tuple[str, ...] = ()  # symbols that count 1:1 (the venue: the EUA)
    credits: tuple[str, ...] = ()  # project credits, capped per installation (the venue: CER, ERU)
    penalty_per_tonne: int = DEFAULT_PENALTY_PER_TONNE  # cents
    penalty_by_year: tuple[tuple[int, int], ...] = ()  # (year, cents per tonne); a mapping is accepted too
    penalty_account: str = DEFAULT_PENALTY_ACCOUNT
    kinds: dict[str, str] = field(init=False, repr=False, compare=False)  # symbol -> ALLOWANCE or CREDIT

    def __post_init__(self) -> None:
        for name in ("allowances", "credits"):
            symbols = getattr(self, name)
            if isinstance(symbols, str) or not all(type(symbol) is str and symbol for symbol in symbols):
                raise ConfigError(f"compliance.{name}", "must be a list of instrument symbols")
            object.__setattr__(self, name, tuple(symbols))
        both = sorted(set(self.allowances) & set(self.credits))
        if both:
            raise ConfigError("compliance.credits", f"{both[0]} is listed as an allowance too")
        _check_penalty(self.penalty_per_tonne, "compliance.penalty_per_tonne")
        by_year = self.penalty_by_year
        try:
            penalties = dict(by_year)  # a mapping or (year, cents) pairs
            pairs = sorted(penalties.items())
        except (TypeError, ValueError):
            raise ConfigError("compliance.penalty_by_year", "must map years to cents per tonne") from None
        if not isinstance(by_year, Mapping) and len(penalties) != len(by_year):
            raise ConfigError("compliance.penalty_by_year", "names a year twice")
        for year, cents in pairs:
            if type(year) is not int or not 2005 <= year <= 9999:
                raise ConfigError("compliance.penalty_by_year", f"year must be an integer from 2005, not {year!r}")
            _check_penalty(cents, f"compliance.penalty_by_year.{year}")
        object.__setattr__(self, "penalty_by_year", tuple(pairs))
        account = self.penalty_account
        if type(account) is not str or not 0 < len(account) <= MAX_ACCOUNT_LENGTH:
            raise ConfigError("compliance.penalty_account", "must be a non-empty account id")
        kinds = dict.fromkeys(self.allowances, ALLOWANCE)
        kinds.update(dict.fromkeys(self.credits, CREDIT))
        object.__setattr__(self, "kinds", kinds)

    def penalty_for(self, year: int) -> int:
        """Cents per missing tonne for a compliance year."""
        for penalty_year, cents in self.penalty_by_year:
            if penalty_year == year:
                return cents
        return self.penalty_per_tonne


def _check_penalty(cents: object, where: str) -> None:
    if type(cents) is not int or not 0 < cents <= MAX_PENALTY_PER_TONNE:
        raise ConfigError(where, f"must be a whole number of cents from 1 to {MAX_PENALTY_PER_TONNE}, not {cents!r}")


_CONFIG_FIELDS = {"allowances", "credits", "penalty_eur", "penalty_eur_by_year", "penalty_account"}


def parse_compliance(document: Mapping[str, Any]) -> ComplianceConfig:
    """Build the config from a parsed TOML document's ``[compliance]`` table (absent: the defaults).

    Fields: ``allowances`` and ``credits`` (lists of symbols), ``penalty_eur``
    (quoted decimal, "100.00"), ``penalty_eur_by_year`` (a table such as
    ``{ 2005 = "40.00" }``; TOML keys are strings) and ``penalty_account``.
    Raises ConfigError naming the first bad field.
    """
    table = document.get("compliance", {})
    if not isinstance(table, Mapping):
        raise ConfigError("compliance", "must be a table")
    unknown = sorted(set(table) - _CONFIG_FIELDS)
    if unknown:
        raise ConfigError(f"compliance.{unknown[0]}", f"unknown field (known: {', '.join(sorted(_CONFIG_FIELDS))})")
    fields: dict[str, Any] = {}
    for name in ("allowances", "credits", "penalty_account"):
        if name in table:
            fields[name] = table[name]
    if "penalty_eur" in table:
        fields["penalty_per_tonne"] = _eur(table["penalty_eur"], "compliance.penalty_eur")
    by_year = table.get("penalty_eur_by_year", {})
    if not isinstance(by_year, Mapping):
        raise ConfigError("compliance.penalty_eur_by_year", 'must be a table of year = "EUR"')
    pairs = []
    for key, value in by_year.items():
        where = f"compliance.penalty_eur_by_year.{key}"
        if not str(key).isdigit():
            raise ConfigError(where, "the key must be a year")
        pairs.append((int(key), _eur(value, where)))
    fields["penalty_by_year"] = tuple(pairs)
    return ComplianceConfig(**fields)


def _eur(value: object, where: str) -> int:
    if not isinstance(value, str):
        raise ConfigError(where, f'write euro amounts as quoted decimals ("100.00"), not {value!r}')
    try:
        return eur_to_cents(value)
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None


class YearRecord:
    """One installation's compliance for one year."""

    __slots__ = (
        "emissions",
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
        self.carried_in = 0  # tonnes missing at the previous year's deadline (make-good)
        self.surrendered: dict[str, int] = {}  # units retired against this year, per instrument
        self.total_surrendered = 0  # tonnes covered so far, all instruments
        self.credits = 0  # of which project credits (rule 5)
        self.closed = False  # the year's deadline has passed
        self.shortfall = 0  # tonnes missing at the deadline (set when closed)
        self.penalty = 0  # cents charged at the deadline
        self.penalty_paid = 0  # of which paid from cash; the rest is owed

    @property
    def obligation(self) -> int:
        return (self.emissions or 0) + self.carried_in


class Installation:
    __slots__ = ("account_id", "credit_limit_bps", "years")

    def __init__(self, account_id: str, credit_limit_bps: int) -> None:
        self.account_id = account_id
        self.credit_limit_bps = credit_limit_bps
        self.years: dict[int, YearRecord] = {}

    def credit_cap(self, record: YearRecord) -> int:
        """Most tonnes of project credits that may count against the record's obligation (rule 5)."""
        return record.obligation * self.credit_limit_bps // BPS


class Compliance:
    """The engine's compliance state and the handlers of the compliance commands.

    The engine builds one in its constructor and routes the four commands to
    its handlers; each handler appends its events (numbered by the engine's
    counters) to the list it is given, or changes nothing and returns the
    rule the command breaks, which the engine turns into its refusal. It
    reaches accounts and instruments through the engine's public hooks.
    """

    def __init__(self, engine: Engine, config: ComplianceConfig | None = None) -> None:
        self._engine = engine
        self._counters = engine.counters  # numbers the events
        self.config = ComplianceConfig() if config is None else config
        self.installations: dict[str, Installation] = {}
        self.retired: dict[str, int] = {}  # units retired (surrendered) per instrument, all years
        self.last_closed_year: int | None = None  # year of the last deadline passed
        self.last_deadline_date: int | None = None  # its date, YYYYMMDD

    def is_closed(self, year: int) -> bool:
        return self.last_closed_year is not None and year <= self.last_closed_year

    # -- handlers ------------------------------------------------------------------------

    def register_installation(self, cmd: RegisterInstallation, events: list) -> RejectCode | None:
        if self._engine.holding_account(cmd.account) is None:
            return RejectCode.UNKNOWN_ACCOUNT
        if cmd.account in self.installations:
            return RejectCode.INSTALLATION_ALREADY_REGISTERED
        self.installations[cmd.account] = Installation(cmd.account, cmd.credit_limit_bps)
        events.append(InstallationRegistered(self._counters.next_seq(), cmd.ts, cmd.account, cmd.credit_limit_bps))
        return None

    def record_emissions(self, cmd: RecordEmissions, events: list) -> RejectCode | None:
        installation = self._installation(cmd.account)
        if isinstance(installation, RejectCode):
            return installation
        if self.is_closed(cmd.year):
            return RejectCode.COMPLIANCE_YEAR_CLOSED
        if cmd.year in installation.years and installation.years[cmd.year].emissions is not None:
            return RejectCode.EMISSIONS_ALREADY_RECORDED
        record = installation.years.get(cmd.year)
        if record is None:
            record = installation.years[cmd.year] = YearRecord()
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
        """The first rule a surrender breaks (rule 4 gives the order), or None."""
        installation = self._installation(cmd.account)
        if isinstance(installation, RejectCode):
            return installation
        symbol = cmd.instrument
        if not self._engine.has_instrument(symbol):
            return RejectCode.UNKNOWN_INSTRUMENT
        kind = self.config.kinds.get(symbol)
        if kind is None:
            return RejectCode.INSTRUMENT_NOT_ELIGIBLE
        if self.is_closed(cmd.year):
            return RejectCode.COMPLIANCE_YEAR_CLOSED
        record = installation.years.get(cmd.year)
        if record is None or (record.emissions is None and not record.carried_in):
            return RejectCode.NO_EMISSIONS_RECORDED
        units = cmd.units
        if record.total_surrendered + units > record.obligation:
            return RejectCode.SURRENDER_EXCEEDS_OBLIGATION
        if kind == CREDIT and record.credits + units > installation.credit_cap(record):
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
            if any(earlier < year for earlier in installation.years if not installation.years[earlier].closed):
                return RejectCode.DEADLINE_OUT_OF_ORDER
            record = installation.years.get(year)
            if record is not None:
                due.append((installation, record))
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
            following = installation.years.get(year + 1)
            if following is None:
                following = installation.years[year + 1] = YearRecord()
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
        """Pay what available cash covers of a penalty into the penalty account; return the cents paid."""
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
        compliance existed.) The config is not here: like the instruments it
        is fixed when the engine is built.
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
                yield (
                    f"obligation {account_id} {year} emissions={r.emissions} carried_in={r.carried_in} "
                    f"surrendered={surrendered} credits={r.credits} closed={r.closed} shortfall={r.shortfall} "
                    f"penalty={r.penalty} paid={r.penalty_paid}"
                )


# -- report ----------------------------------------------------------------------------------


class ComplianceReportRow(NamedTuple):
    """One installation's compliance for one year."""

    year: int
    account: str
    credit_limit_bps: int
    emissions: int | None  # verified tonnes; None: not recorded
    carried_in: int  # tonnes carried over from the year before (make-good)
    obligation: int  # emissions + carried_in
    surrendered: tuple[tuple[str, int], ...]  # (symbol, units) for every eligible symbol: allowances, then credits
    allowances: int  # units of allowances surrendered
    credits: int  # units of project credits surrendered
    credit_cap: int  # most project credits that may count
    shortfall: int  # open year: tonnes still to surrender; closed: tonnes missing at the deadline
    penalty: int  # cents charged at the deadline (0 while the year is open)
    penalty_paid: int  # cents paid from cash
    penalty_owed: int  # cents the cash could not cover
    closed: bool  # the year's deadline has passed


def compliance_report(compliance: Compliance, year: int | None = None) -> list[ComplianceReportRow]:
    """Per year, per registered installation: obligation, surrendered by unit type, shortfall, penalty.

    ``year`` None: every year any installation has an obligation for. Every
    registered installation has a row in each year reported (zeros where it
    has no obligation). Rows by year, then account. Pure: reads, never changes.
    """
    installations = compliance.installations
    if year is None:
        years = sorted({y for installation in installations.values() for y in installation.years})
    else:
        years = [year]
    symbols = compliance.config.allowances + compliance.config.credits
    rows = []
    for y in years:
        closed = compliance.is_closed(y)
        for account_id in sorted(installations):
            installation = installations[account_id]
            record = installation.years.get(y) or YearRecord()
            surrendered = tuple((symbol, record.surrendered.get(symbol, 0)) for symbol in symbols)
            if record.closed:
                shortfall = record.shortfall
            else:
                shortfall = record.obligation - record.total_surrendered
            rows.append(
                ComplianceReportRow(
                    y,
                    account_id,
                    installation.credit_limit_bps,
                    record.emissions,
                    record.carried_in,
                    record.obligation,
                    surrendered,
                    record.total_surrendered - record.credits,
                    record.credits,
                    installation.credit_cap(record),
                    shortfall,
                    record.penalty,
                    record.penalty_paid,
                    record.penalty - record.penalty_paid,
                    closed,
                )
            )
    return rows


def format_report(rows: Iterable[ComplianceReportRow]) -> list[str]:
    """The report as text lines for a terminal: tonnes as integers, euros with two decimals."""
    rows = list(rows)
    symbols = [symbol for symbol, _ in rows[0].surrendered] if rows else []
    header = (
        ["year", "account", "emissions", "carried", "obligation"]
        + symbols
        + ["shortfall", "penalty EUR", "paid EUR", "owed EUR", "status"]
    )
    table = [header]
    for row in rows:
        table.append(
            [
                str(row.year),
                row.account,
                "-" if row.emissions is None else str(row.emissions),
                str(row.carried_in),
                str(row.obligation),
            ]
            + [str(units) for _, units in row.surrendered]
            + [
                str(row.shortfall),
                cents_to_eur(row.penalty),
                cents_to_eur(row.penalty_paid),
                cents_to_eur(row.penalty_owed),
                "closed" if row.closed else "open",
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return [
        "  ".join(
            cell.ljust(width) if i == 1 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in table
    ]
