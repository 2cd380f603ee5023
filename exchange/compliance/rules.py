"""The compliance rules of each year, as configuration: units, phases, deadlines and the penalty.

How this works: :class:`ComplianceConfig` is fixed for the engine's life (a
replay builds the engine with the same one) and :func:`parse_compliance`
reads it from the ``[compliance]`` TOML table, converting euros to cents once,
at the edge. Nothing here names a symbol or a year: the venue's lists and the
EU ETS phases come from ``config/compliance.toml`` (sources in
docs/COMPLIANCE.md).

* ``allowances`` and ``credits`` say what kind of unit each instrument
  delivers: an allowance counts one for one, a project credit (CER, ERU) only
  within the installation's entitlement.
* ``units`` gives each instrument's units their registry attributes: the
  ``period`` they were issued for (a phase such as "2008-2012"), their ``type``
  (the symbol unless said: "CER", "ERU"), and for credits their origin
  (``host_country``, ``project_type``). Eligibility is stated over these, so a
  second CER instrument from another kind of project follows the same rules.
* ``phases`` are the trading periods (2005-07, 2008-12, 2013-20, 2021-30). Each
  says which allowance periods count for its years (banking: the 2008-12 phase
  lists only its own, so no phase-1 allowance counts from 2008), which credit
  types count directly and which project types never do, how the credit
  entitlement is set (a share of the installation's allocation over the
  phase, the Linking Directive's Art. 11a(1), or of each year's obligation)
  and the penalty per missing tonne. With no phases the rules are timeless:
  every allowance and credit counts every year, credits within a share of
  the year's obligation.
* ``deadlines`` give the surrender deadline of each year: from compliance
  year K on, the month and day in year K + 1 (30 April until the 2022
  obligation, 30 September from the 2023 one).
* The penalty of a year is its ``penalty_by_year`` entry if there is one (a
  figure the authority published); else the phase's, raised from
  ``penalty_indexed_from`` on in proportion to ``price_index`` (the European
  consumer price index, Directive 2003/87/EC Art. 16(3) as amended by
  Directive 2009/29/EC): base x I(year) / I(indexed_from - 1), rounded down
  to the cent, with I of a year past the table taken as the last year's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..commands import valid_date
from ..instruments import ConfigError, eur_to_cents

ALLOWANCE = "allowance"  # counts 1:1 against any obligation of a year its period is valid for
CREDIT = "credit"  # a project credit: counts only within the installation's entitlement
BPS = 10_000  # basis points in one whole
DEFAULT_PENALTY_ACCOUNT = "carbonx-penalties"
DEFAULT_PENALTY_PER_TONNE = 10_000  # cents: EUR 100/t, the EU ETS penalty from 2008 (Directive 2003/87/EC art. 16)
# Defensive limit on the configured penalty: EUR 10,000/t, a hundred times the EU ETS's, keeps every penalty
# within a 64-bit wire integer for any allowed obligation.
MAX_PENALTY_PER_TONNE = 1_000_000
CAP_ON_ALLOCATION = "allocation"  # credits within a share of the installation's allocation over the phase
CAP_ON_OBLIGATION = "obligation"  # credits within a share of each year's obligation
PENALTY_FROM_AUTHORITY = "authority"  # the authority levies the penalty; no cash moves on the exchange
PENALTY_FROM_CASH = "cash"  # the exchange takes it from the installation's available cash (a simulation's choice)
INDEX_SCALE = 1_000  # price index values are kept in thousandths ("126.2" -> 126_200)


@dataclass(frozen=True, slots=True)
class UnitTerms:
    """The registry attributes of the units an instrument delivers."""

    symbol: str
    period: str = ""  # the phase the units were issued for ("2008-2012"); "" none stated
    type: str = ""  # "CER", "ERU", ...; "" means the symbol itself
    host_country: str = ""  # a credit's host country (ISO 3166 alpha-2); "" not stated
    project_type: str = ""  # a credit's project type ("hydro", "HFC-23", ...); "" not stated

    def __post_init__(self) -> None:
        for name in ("symbol", "period", "type", "host_country", "project_type"):
            if type(getattr(self, name)) is not str:
                raise ConfigError(f"compliance.units.{self.symbol}.{name}", "must be a string")

    @property
    def unit_type(self) -> str:
        return self.type or self.symbol


@dataclass(frozen=True, slots=True)
class Phase:
    """One trading period's rules, for the compliance years ``first_year`` to ``last_year``."""

    name: str  # the period's name, as units carry it ("2008-2012")
    first_year: int
    last_year: int
    allowance_periods: tuple[str, ...] = ()  # allowances of these periods count (banking into this phase)
    credit_types: tuple[str, ...] = ()  # credit types that count directly
    excluded_project_types: tuple[str, ...] = ()  # credits of these project types never count
    credit_cap: str = CAP_ON_ALLOCATION  # what the installation's credit share is a share of
    penalty_per_tonne: int = DEFAULT_PENALTY_PER_TONNE  # cents, before indexation

    def __post_init__(self) -> None:
        where = f"compliance.phases.{self.name}"
        if type(self.name) is not str or not self.name:
            raise ConfigError("compliance.phases", "each phase needs a name, such as 2008-2012")
        for key in ("allowance_periods", "credit_types", "excluded_project_types"):
            names = getattr(self, key)
            if not isinstance(names, (list, tuple)) or not all(type(item) is str and item for item in names):
                raise ConfigError(f"{where}.{key}", "must be a list of names")
            object.__setattr__(self, key, tuple(names))
        for key in ("first_year", "last_year"):
            if type(getattr(self, key)) is not int:
                raise ConfigError(f"{where}.{key}", "must be a year")


@dataclass(frozen=True, slots=True)
class ComplianceConfig:
    """What counts for compliance, year by year, and what a missing tonne costs; fixed for the engine's life."""

    allowances: tuple[str, ...] = ()  # symbols whose units are allowances (the venue: the EUA)
    credits: tuple[str, ...] = ()  # project credits (the venue: CER, ERU)
    penalty_per_tonne: int = DEFAULT_PENALTY_PER_TONNE  # cents, with no phases
    penalty_by_year: tuple[tuple[int, int], ...] = ()  # (year, cents per tonne): published figures; a mapping too
    penalty_account: str = DEFAULT_PENALTY_ACCOUNT  # where penalties are paid (collected from cash) or owed
    units: tuple[UnitTerms, ...] = ()
    phases: tuple[Phase, ...] = ()
    deadlines: tuple[tuple[int, int], ...] = ()  # (first compliance year, MMDD in the year after)
    price_index: tuple[tuple[int, int], ...] = ()  # (year, index in thousandths)
    penalty_indexed_from: int | None = None  # first year whose penalty follows the index
    penalty_collection: str = PENALTY_FROM_AUTHORITY
    kinds: dict[str, str] = field(init=False, repr=False, compare=False)  # symbol -> ALLOWANCE or CREDIT
    unit_terms: dict[str, UnitTerms] = field(init=False, repr=False, compare=False)  # symbol -> its units' terms

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
        object.__setattr__(self, "penalty_by_year", _year_table(self.penalty_by_year, "compliance.penalty_by_year"))
        for year, cents in self.penalty_by_year:
            _check_penalty(cents, f"compliance.penalty_by_year.{year}")
        account = self.penalty_account
        if type(account) is not str or not 0 < len(account) <= 32:
            raise ConfigError("compliance.penalty_account", "must be an account id of 1 to 32 characters")
        if self.penalty_collection not in (PENALTY_FROM_AUTHORITY, PENALTY_FROM_CASH):
            raise ConfigError("compliance.penalty_collection", 'must be "authority" or "cash"')
        kinds = dict.fromkeys(self.allowances, ALLOWANCE)
        kinds.update(dict.fromkeys(self.credits, CREDIT))
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "units", tuple(self.units))
        terms = {}
        for unit in self.units:
            if unit.symbol not in kinds:
                raise ConfigError(f"compliance.units.{unit.symbol}", "is neither an allowance nor a credit")
            terms[unit.symbol] = unit
        object.__setattr__(self, "unit_terms", terms)
        self._check_phases()
        if self.phases:
            for unit in self.units:
                if unit.period and unit.period not in {phase.name for phase in self.phases}:
                    raise ConfigError(
                        f"compliance.units.{unit.symbol}.period", f"{unit.period} is not the name of a phase"
                    )
        object.__setattr__(self, "deadlines", _year_table(self.deadlines, "compliance.deadlines"))
        for year, month_day in self.deadlines:
            if type(month_day) is not int or not valid_date(2001_00_00 + month_day):  # (a year with no 29 Feb)
                raise ConfigError(f"compliance.deadlines.{year}", f"must be a month and day, not {month_day!r}")
        object.__setattr__(self, "price_index", _year_table(self.price_index, "compliance.price_index"))
        for year, index in self.price_index:
            if type(index) is not int or index <= 0:
                raise ConfigError(f"compliance.price_index.{year}", "must be a positive index")
        start = self.penalty_indexed_from
        if start is not None:
            years = dict(self.price_index)
            if type(start) is not int or start - 1 not in years:
                raise ConfigError("compliance.penalty_indexed_from", "the index of the year before it must be given")
            # Every indexed penalty a year can have (each index year's, from each base) within the bounds: no
            # penalty of zero, none past a 64-bit wire integer.
            for year in [y for y in years if y >= start]:
                if not 0 < self.penalty_for(year) <= MAX_PENALTY_PER_TONNE or any(
                    not 0 < phase.penalty_per_tonne * years[year] // years[start - 1] <= MAX_PENALTY_PER_TONNE
                    for phase in self.phases
                ):
                    raise ConfigError(
                        f"compliance.price_index.{year}",
                        f"gives an indexed penalty outside 1 cent to {MAX_PENALTY_PER_TONNE} cents a tonne",
                    )

    def _check_phases(self) -> None:
        object.__setattr__(self, "phases", tuple(sorted(self.phases, key=lambda phase: phase.first_year)))
        last = None
        names = {phase.name for phase in self.phases}
        for phase in self.phases:
            where = f"compliance.phases.{phase.name}"
            if not 2005 <= phase.first_year <= phase.last_year <= 9998:
                raise ConfigError(where, "years must run from first_year to last_year, from 2005")
            if last is not None and phase.first_year != last + 1:
                # (a year between phases could be neither surrendered for nor closed: tonnes carried into it
                # would be stuck)
                raise ConfigError(where, "must begin the year after the phase before it ends (no overlap, no gap)")
            unknown = sorted(set(phase.allowance_periods) - names)
            if unknown:
                raise ConfigError(f"{where}.allowance_periods", f"{unknown[0]} is not the name of a phase")
            if phase.credit_cap not in (CAP_ON_ALLOCATION, CAP_ON_OBLIGATION):
                raise ConfigError(f"{where}.credit_cap", 'must be "allocation" or "obligation"')
            _check_penalty(phase.penalty_per_tonne, f"{where}.penalty_eur")
            last = phase.last_year

    # -- the rules of a year ---------------------------------------------------------------------

    def phase_of(self, year: int) -> Phase | None:
        """The phase a compliance year belongs to (None: none configured for it)."""
        for phase in self.phases:
            if phase.first_year <= year <= phase.last_year:
                return phase
        return None

    def counts_for(self, symbol: str, year: int) -> bool:
        """Whether the symbol's units count against an obligation of the year (its kind aside)."""
        kind = self.kinds.get(symbol)
        if kind is None:
            return False
        if not self.phases:
            return True  # timeless rules: every allowance and credit counts every year
        phase = self.phase_of(year)
        if phase is None:
            return False
        unit = self.unit_terms.get(symbol) or UnitTerms(symbol)
        if kind == ALLOWANCE:
            return unit.period in phase.allowance_periods
        return unit.unit_type in phase.credit_types and unit.project_type not in phase.excluded_project_types

    def penalty_for(self, year: int) -> int:
        """Cents per missing tonne for a compliance year."""
        published = dict(self.penalty_by_year).get(year)
        if published is not None:
            return published
        phase = self.phase_of(year)
        base = self.penalty_per_tonne if phase is None else phase.penalty_per_tonne
        start = self.penalty_indexed_from
        if start is None or year < start:
            return base
        index = dict(self.price_index)
        known = [y for y in index if y <= year]
        return base * index[max(known)] // index[start - 1]

    def deadline_date(self, year: int) -> int | None:
        """The year's surrender deadline (YYYYMMDD in the year after), None when none is configured."""
        rules = [(first, month_day) for first, month_day in self.deadlines if first <= year]
        if not rules:
            return None
        return (year + 1) * 10_000 + rules[-1][1]

    # -- the journal's genesis ---------------------------------------------------------------------

    def to_value(self) -> dict:
        """Plain data for the journal's genesis; :meth:`from_value` reads it back."""
        return {
            "allowances": list(self.allowances),
            "credits": list(self.credits),
            "penalty_per_tonne": self.penalty_per_tonne,
            "penalty_by_year": [list(pair) for pair in self.penalty_by_year],
            "penalty_account": self.penalty_account,
            "units": [[u.symbol, u.period, u.type, u.host_country, u.project_type] for u in self.units],
            "phases": [
                [
                    p.name,
                    p.first_year,
                    p.last_year,
                    list(p.allowance_periods),
                    list(p.credit_types),
                    list(p.excluded_project_types),
                    p.credit_cap,
                    p.penalty_per_tonne,
                ]
                for p in self.phases
            ],
            "deadlines": [list(pair) for pair in self.deadlines],
            "price_index": [list(pair) for pair in self.price_index],
            "penalty_indexed_from": self.penalty_indexed_from,
            "penalty_collection": self.penalty_collection,
        }

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> ComplianceConfig:
        # A journal begun before the rules by year has none of the later keys: its rules were timeless, and
        # the exchange took penalties from the installation's cash, so its replay must do so too.
        return cls(
            allowances=tuple(value["allowances"]),
            credits=tuple(value["credits"]),
            penalty_per_tonne=value["penalty_per_tonne"],
            penalty_by_year=tuple((year, cents) for year, cents in value["penalty_by_year"]),
            penalty_account=value["penalty_account"],
            units=tuple(UnitTerms(*unit) for unit in value.get("units", ())),
            phases=tuple(
                Phase(name, first, last, tuple(periods), tuple(types), tuple(excluded), cap, penalty)
                for name, first, last, periods, types, excluded, cap, penalty in value.get("phases", ())
            ),
            deadlines=tuple((year, month_day) for year, month_day in value.get("deadlines", ())),
            price_index=tuple((year, index) for year, index in value.get("price_index", ())),
            penalty_indexed_from=value.get("penalty_indexed_from"),
            penalty_collection=value.get("penalty_collection", PENALTY_FROM_CASH),
        )


def _check_penalty(cents: object, where: str) -> None:
    if type(cents) is not int or not 0 < cents <= MAX_PENALTY_PER_TONNE:
        raise ConfigError(where, f"must be a whole number of cents from 1 to {MAX_PENALTY_PER_TONNE}, not {cents!r}")


def _year_table(table: object, where: str) -> tuple[tuple[int, Any], ...]:
    """(year, value) pairs from a mapping or a sequence of pairs, sorted; each year at most once, from 2005."""
    try:
        pairs = dict(table)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ConfigError(where, "must map years to values") from None
    if not isinstance(table, Mapping) and len(pairs) != len(table):  # type: ignore[arg-type]
        raise ConfigError(where, "names a year twice")
    for year in pairs:
        if type(year) is not int or not 2005 <= year <= 9999:
            raise ConfigError(where, f"year must be an integer from 2005, not {year!r}")
    return tuple(sorted(pairs.items()))


# -- parsing the [compliance] table ------------------------------------------------------------------

_CONFIG_FIELDS = {
    "allowances",
    "credits",
    "penalty_eur",
    "penalty_eur_by_year",
    "penalty_account",
    "penalty_collection",
    "units",
    "phases",
    "deadlines",
    "price_index",
    "penalty_indexed_from",
}
_UNIT_FIELDS = {"period", "type", "host_country", "project_type"}
_PHASE_FIELDS = {
    "name",
    "first_year",
    "last_year",
    "allowance_periods",
    "credit_types",
    "excluded_project_types",
    "credit_cap",
    "penalty_eur",
}


def parse_compliance(document: Mapping[str, Any]) -> ComplianceConfig:
    """Build the config from a parsed TOML document's ``[compliance]`` table (absent: the defaults).

    Fields: ``allowances`` and ``credits`` (lists of symbols); ``penalty_eur``
    (quoted decimal, "100.00") and ``penalty_eur_by_year`` (``{ 2005 = "40.00" }``;
    TOML keys are strings); ``penalty_account``; ``penalty_collection``
    ("authority" or "cash"); ``units`` (a table per symbol: ``period``,
    ``type``, ``host_country``, ``project_type``); ``phases`` (an array of
    tables: ``name``, ``first_year``, ``last_year``, ``allowance_periods``,
    ``credit_types``, ``excluded_project_types``, ``credit_cap``,
    ``penalty_eur``); ``deadlines`` (``{ 2005 = "04-30" }``: from that
    compliance year on, the month and day of the year after); ``price_index``
    (``{ 2012 = "98.1" }``) and ``penalty_indexed_from`` (a year). Raises
    ConfigError naming the first bad field.
    """
    table = document.get("compliance", {})
    if not isinstance(table, Mapping):
        raise ConfigError("compliance", "must be a table")
    _known(table, _CONFIG_FIELDS, "compliance")
    fields: dict[str, Any] = {}
    for name in ("allowances", "credits", "penalty_account", "penalty_collection"):
        if name in table:
            fields[name] = table[name]
    if "penalty_eur" in table:
        fields["penalty_per_tonne"] = _eur(table["penalty_eur"], "compliance.penalty_eur")
    fields["penalty_by_year"] = tuple(
        (year, _eur(value, where)) for year, value, where in _by_year(table, "penalty_eur_by_year")
    )
    fields["units"] = tuple(_parse_unit(symbol, terms) for symbol, terms in _table(table, "units").items())
    phases = table.get("phases", [])
    if not isinstance(phases, list):
        raise ConfigError("compliance.phases", "must be an array of tables ([[compliance.phases]])")
    fields["phases"] = tuple(_parse_phase(number, phase) for number, phase in enumerate(phases))
    fields["deadlines"] = tuple((year, _month_day(value, where)) for year, value, where in _by_year(table, "deadlines"))
    fields["price_index"] = tuple((year, _index(value, where)) for year, value, where in _by_year(table, "price_index"))
    if "penalty_indexed_from" in table:
        fields["penalty_indexed_from"] = table["penalty_indexed_from"]
    return ComplianceConfig(**fields)


def _parse_unit(symbol: str, terms: object) -> UnitTerms:
    where = f"compliance.units.{symbol}"
    if not isinstance(terms, Mapping):
        raise ConfigError(where, "must be a table")
    _known(terms, _UNIT_FIELDS, where)
    for name, value in terms.items():
        if not isinstance(value, str):
            raise ConfigError(f"{where}.{name}", "must be a string")
    return UnitTerms(symbol, **terms)


def _parse_phase(number: int, phase: object) -> Phase:
    where = f"compliance.phases[{number}]"
    if not isinstance(phase, Mapping):
        raise ConfigError(where, "must be a table")
    _known(phase, _PHASE_FIELDS, where)
    name = phase.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name", "must be the period's name, such as 2008-2012")
    where = f"compliance.phases.{name}"
    penalty = (
        _eur(phase["penalty_eur"], f"{where}.penalty_eur") if "penalty_eur" in phase else DEFAULT_PENALTY_PER_TONNE
    )
    # (Phase checks the years and the lists itself, for a phase built in Python as for one read here)
    return Phase(
        name,
        phase.get("first_year"),  # type: ignore[arg-type]
        phase.get("last_year"),  # type: ignore[arg-type]
        phase.get("allowance_periods", ()),
        phase.get("credit_types", ()),
        phase.get("excluded_project_types", ()),
        phase.get("credit_cap", CAP_ON_ALLOCATION),
        penalty,
    )


def _known(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", f"unknown field (known: {', '.join(sorted(known))})")


def _table(table: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = table.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"compliance.{name}", "must be a table")
    return value


def _by_year(table: Mapping[str, Any], name: str) -> list[tuple[int, Any, str]]:
    """A table keyed by year (TOML keys are strings): (year, value, where) for each entry."""
    out = []
    for key, value in _table(table, name).items():
        where = f"compliance.{name}.{key}"
        if not (str(key).isascii() and str(key).isdigit()):
            raise ConfigError(where, "the key must be a year")
        out.append((int(key), value, where))
    return out


def _eur(value: object, where: str) -> int:
    if not isinstance(value, str):
        raise ConfigError(where, f'write euro amounts as quoted decimals ("100.00"), not {value!r}')
    try:
        return eur_to_cents(value)
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None


def _month_day(value: object, where: str) -> int:
    digits = value[:2] + value[3:] if isinstance(value, str) else ""
    if not isinstance(value, str) or len(value) != 5 or value[2] != "-" or not (digits.isascii() and digits.isdigit()):
        raise ConfigError(where, f'must be a month and day written "MM-DD", not {value!r}')
    return int(value[:2]) * 100 + int(value[3:])


def _index(value: object, where: str) -> int:
    """An index level written as a quoted decimal with at most three places ("126.2"), in thousandths."""
    if not isinstance(value, str):
        raise ConfigError(where, f'write index levels as quoted decimals ("126.2"), not {value!r}')
    whole, _, part = value.partition(".")
    if not (value.isascii() and whole.isdigit()) or (part and not part.isdigit()) or len(part) > 3:
        raise ConfigError(where, f"must be a decimal number with at most three places, not {value!r}")
    return int(whole) * INDEX_SCALE + int(part.ljust(3, "0") or 0)
