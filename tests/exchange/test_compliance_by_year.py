"""Compliance by the rules of each year: the shipped phases of config/compliance.toml, scenario by scenario.

How it is checked: an engine with pre-trade risk over the shipped instruments
plus allowances of the earlier phases (EUA1 of 2005-07, EUA2 of 2008-12, EUA3
of 2013-20) and a CER from a nuclear project, under the shipped compliance
table with those instruments added to it. Each scenario asserts exact events
or codes; a property test drives random allocations, emissions and
surrenders over the 2008-12 phase and checks the entitlement and the
conservation of units. The cases that carried a finding of issue 19 say so:
each failed before the rules by year.
"""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scenario_helpers import shipped_instruments

from exchange import (
    Deposit,
    Engine,
    InvalidCommand,
    OpenAccount,
    RejectCode,
    RequestRejected,
    parse_instruments,
)
from exchange.commands import ComplianceDeadline, RecordAllocation, RecordEmissions, RegisterInstallation, Surrender
from exchange.compliance import ComplianceConfig, Phase, UnitTerms, compliance_report, parse_compliance
from exchange.events import AllocationRecorded, DeadlinePassed, PenaltyCharged
from exchange.instruments import ConfigError

SHIPPED_TOML = (Path(__file__).resolve().parents[2] / "config" / "compliance.toml").read_text()


def _instrument(symbol: str) -> dict:
    return {
        "name": symbol,
        "lot_units": 1000,
        "tick_size_eur": "0.01",
        "min_lots": 1,
        "max_lots": 100,
        "min_price_eur": "0.01",
        "max_price_eur": "1000.00",
        "reference_price_eur": "20.00",
    }


HISTORICAL = parse_instruments({"instruments": {s: _instrument(s) for s in ("EUA1", "EUA2", "EUA3", "CERNUC")}})


def shipped_with_history() -> ComplianceConfig:
    """The shipped table, with the allowances of earlier phases and a nuclear CER added as a venue would."""
    document = tomllib.loads(SHIPPED_TOML)
    table = document["compliance"]
    table["allowances"] = [*table["allowances"], "EUA1", "EUA2", "EUA3"]
    table["credits"] = [*table["credits"], "CERNUC"]
    table["units"].update(
        EUA1={"period": "2005-2007"},
        EUA2={"period": "2008-2012"},
        EUA3={"period": "2013-2020"},
        CERNUC={"period": "2008-2012", "type": "CER", "host_country": "IN", "project_type": "nuclear"},
    )
    return parse_compliance(document)


SHIPPED = parse_compliance(tomllib.loads(SHIPPED_TOML))
RULES = shipped_with_history()
EUR = 100
HOLDINGS = {"EUA": 500_000, "EUA1": 500_000, "EUA2": 500_000, "EUA3": 500_000, "CER": 500_000, "ERU": 500_000}


class Registry:
    """An engine under the rules by year, with a running clock."""

    def __init__(self, config: ComplianceConfig = RULES) -> None:
        self.engine = Engine({**shipped_instruments(), **HISTORICAL}, pre_trade_risk=True, compliance=config)
        self._ts = itertools.count(1)

    def run(self, kind: type, **fields) -> list:
        return self.engine.handle(kind(ts=next(self._ts), **fields))

    def installation(self, name: str, bps: int = 2200, eur: int = 1_000_000, **units: int) -> None:
        self.run(OpenAccount, account=name)
        self.run(Deposit, account=name, asset="EUR", amount=eur * EUR)
        for symbol, amount in (units or HOLDINGS).items():
            self.run(Deposit, account=name, asset=symbol, amount=amount)
        self.run(RegisterInstallation, account=name, credit_limit_bps=bps)

    def allocate(self, name: str, year: int, units: int) -> list:
        return self.run(RecordAllocation, account=name, year=year, units=units)

    def emit(self, name: str, year: int, tonnes: int) -> list:
        return self.run(RecordEmissions, account=name, year=year, tonnes=tonnes)

    def surrender(self, name: str, year: int, symbol: str, units: int) -> list:
        return self.run(Surrender, account=name, year=year, instrument=symbol, units=units)

    def deadline(self, year: int, date: int) -> list:
        return self.run(ComplianceDeadline, year=year, date=date)

    def accepted(self, events: list) -> None:
        assert events and type(events[0]) is not RequestRejected, events

    def refused(self, events: list) -> RejectCode:
        assert len(events) == 1 and type(events[0]) is RequestRejected, events
        assert events[0].text == events[0].code.text
        return events[0].code


# -- which units count in which year -----------------------------------------------------------------


def test_a_cer_counts_for_no_year_from_2013_and_the_eua_does_for_2026():
    # Finding: the demo surrendered CERs for 2026 (they have not counted since 2021; from 2013 only by
    # exchange for allowances).
    r = Registry()
    r.installation("mill")
    for year in (2013, 2020, 2021, 2026):
        r.emit("mill", year, 1_000)
        assert r.refused(r.surrender("mill", year, "CER", 1)) is RejectCode.UNIT_NOT_ELIGIBLE_FOR_YEAR
        assert r.refused(r.surrender("mill", year, "ERU", 1)) is RejectCode.UNIT_NOT_ELIGIBLE_FOR_YEAR
    r.accepted(r.surrender("mill", 2026, "EUA", 1_000))


def test_an_eru_counts_only_from_2008_and_a_cer_from_2005():
    # Finding: ERUs were accepted for 2005 (the Linking Directive admits them from 2008).
    r = Registry()
    r.installation("mill")
    r.allocate("mill", 2005, 100_000)
    r.emit("mill", 2005, 10_000)
    assert r.refused(r.surrender("mill", 2005, "ERU", 100)) is RejectCode.UNIT_NOT_ELIGIBLE_FOR_YEAR
    r.accepted(r.surrender("mill", 2005, "CER", 100))
    r.accepted(r.surrender("mill", 2005, "EUA1", 9_900))
    r.allocate("mill", 2008, 100_000)
    r.emit("mill", 2008, 10_000)
    r.accepted(r.surrender("mill", 2008, "ERU", 100))


def test_no_banking_from_phase_one_into_2008_and_free_banking_since():
    r = Registry()
    r.installation("mill")
    for year in (2007, 2008, 2013, 2020, 2021):
        r.emit("mill", year, 1_000)
    r.accepted(r.surrender("mill", 2007, "EUA1", 1_000))
    assert r.refused(r.surrender("mill", 2008, "EUA1", 1)) is RejectCode.UNIT_NOT_ELIGIBLE_FOR_YEAR
    r.accepted(r.surrender("mill", 2008, "EUA2", 1_000))
    r.accepted(r.surrender("mill", 2013, "EUA2", 500))  # phase-2 allowances banked into phase 3
    r.accepted(r.surrender("mill", 2013, "EUA3", 500))
    assert r.refused(r.surrender("mill", 2020, "EUA", 1)) is RejectCode.UNIT_NOT_ELIGIBLE_FOR_YEAR  # no borrowing back
    r.accepted(r.surrender("mill", 2021, "EUA3", 1_000))  # allowances from 2013 on are valid indefinitely
    assert r.refused(r.surrender("mill", 2007, "EUA2", 1)) is RejectCode.UNIT_NOT_ELIGIBLE_FOR_YEAR  # none backwards


def test_credits_of_excluded_project_types_never_count():
    r = Registry()
    r.installation("mill", CERNUC=1_000)
    r.allocate("mill", 2008, 100_000)
    r.emit("mill", 2008, 10_000)
    assert r.refused(r.surrender("mill", 2008, "CERNUC", 100)) is RejectCode.UNIT_NOT_ELIGIBLE_FOR_YEAR


def test_a_year_outside_every_phase_takes_nothing():
    r = Registry()
    r.installation("mill")
    assert r.refused(r.emit("mill", 2031, 1)) is RejectCode.YEAR_OUTSIDE_PHASES
    assert r.refused(r.allocate("mill", 2031, 1)) is RejectCode.YEAR_OUTSIDE_PHASES
    assert r.refused(r.surrender("mill", 2031, "EUA", 1)) is RejectCode.YEAR_OUTSIDE_PHASES


# -- the credit entitlement: a share of the allocation over the phase ----------------------------------


def test_the_credit_cap_is_a_share_of_the_allocation_over_the_phase_to_the_unit():
    # Finding: the cap was a share of each year's obligation; the Linking Directive (Art. 11a(1)) makes it
    # a share of the installation's allocation for the period. 22% of 2 x 100,000 allocated = 44,000.
    r = Registry()
    r.installation("mill", bps=2200)
    (event,) = r.allocate("mill", 2008, 100_000)
    assert event == AllocationRecorded(event.seq, event.ts, "mill", 2008, 100_000, 22_000, 22_000)
    event = r.allocate("mill", 2009, 100_000)[0]
    assert (event.credit_entitlement, event.credits_left) == (44_000, 44_000)
    r.emit("mill", 2008, 30_000)
    r.emit("mill", 2009, 30_000)
    # More credits in 2008 than 22% of its obligation (6,600): the entitlement is the phase's.
    r.accepted(r.surrender("mill", 2008, "CER", 30_000))
    r.accepted(r.surrender("mill", 2009, "ERU", 13_999))
    r.accepted(r.surrender("mill", 2009, "CER", 1))  # exactly 44,000: at the boundary
    assert r.refused(r.surrender("mill", 2009, "CER", 1)) is RejectCode.CREDIT_LIMIT_EXCEEDED
    r.accepted(r.surrender("mill", 2009, "EUA2", 1))  # allowances are not capped
    rows = {row.year: row for row in compliance_report(r.engine.compliance)}
    assert (rows[2008].allocation, rows[2008].credit_cap, rows[2008].credits_left) == (100_000, 44_000, 0)
    # A later year's allocation raises the entitlement again, within the same phase only.
    r.allocate("mill", 2010, 50_000)
    r.emit("mill", 2010, 20_000)
    r.accepted(r.surrender("mill", 2010, "CER", 11_000))
    assert r.refused(r.surrender("mill", 2010, "CER", 1)) is RejectCode.CREDIT_LIMIT_EXCEEDED


def test_no_allocation_recorded_means_no_credit_entitlement():
    r = Registry()
    r.installation("mill")
    r.emit("mill", 2008, 10_000)
    assert r.refused(r.surrender("mill", 2008, "CER", 1)) is RejectCode.CREDIT_LIMIT_EXCEEDED
    r.allocate("mill", 2008, 10_000)
    r.accepted(r.surrender("mill", 2008, "CER", 2_200))
    assert r.refused(r.allocate("mill", 2008, 1)) is RejectCode.ALLOCATION_ALREADY_RECORDED


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["alloc", "emit", "surrender"]),
            st.sampled_from(["mill", "works"]),
            st.integers(2008, 2012),
            st.sampled_from(["EUA2", "CER", "ERU", "EUA1", "CERNUC"]),
            st.integers(0, 60_000),
        ),
        max_size=40,
    )
)
def test_credits_never_exceed_the_entitlement_and_units_are_conserved(steps):
    r = Registry()
    for name in ("mill", "works"):
        r.installation(name, bps=1500)
    for action, name, year, symbol, amount in steps:
        if action == "alloc":
            r.allocate(name, year, amount)
        elif action == "emit":
            r.emit(name, year, amount)
        elif amount:
            r.surrender(name, year, symbol, amount)
    compliance = r.engine.compliance
    for installation in compliance.installations.values():
        allocation = sum(record.allocation or 0 for record in installation.years.values())
        credits = sum(record.credits for record in installation.years.values())
        assert credits <= allocation * 1500 // 10_000
        assert sum(record.surrendered.get("EUA1", 0) for record in installation.years.values()) == 0
        assert sum(record.surrendered.get("CERNUC", 0) for record in installation.years.values()) == 0
        for record in installation.years.values():
            assert record.total_surrendered <= record.obligation
    for symbol, deposited in HOLDINGS.items():
        held = sum(account.units.get(symbol, 0) for account in r.engine.accounts.values())
        assert held + compliance.retired.get(symbol, 0) == 2 * deposited


# -- deadlines and penalties ---------------------------------------------------------------------------


def test_the_deadline_is_30_april_until_the_2022_obligation_and_30_september_from_2023():
    r = Registry()
    r.installation("mill")
    for year in (2021, 2022, 2023):
        r.emit("mill", year, 0)
    assert r.refused(r.deadline(2021, 20220429)) is RejectCode.DEADLINE_NOT_DUE
    assert type(r.deadline(2021, 20220430)[-1]) is DeadlinePassed
    assert type(r.deadline(2022, 20230430)[-1]) is DeadlinePassed
    assert r.refused(r.deadline(2023, 20240430)) is RejectCode.DEADLINE_NOT_DUE
    assert type(r.deadline(2023, 20240930)[-1]) is DeadlinePassed


def test_the_penalty_is_40_then_100_then_indexed_from_2013():
    # Finding: EUR 100 was charged for every year from 2008; from 2013 it rises with the European consumer
    # price index (Directive 2003/87/EC Art. 16(4)): 100 x I(year) / I(2012), rounded down to the cent.
    assert [SHIPPED.penalty_for(year) for year in (2005, 2007, 2008, 2012)] == [4_000, 4_000, 10_000, 10_000]
    index = dict(SHIPPED.price_index)
    for year in (2013, 2020, 2022, 2024):
        assert SHIPPED.penalty_for(year) == 10_000 * index[year] // index[2012]
    assert (SHIPPED.penalty_for(2013), SHIPPED.penalty_for(2024)) == (10_132, 12_864)  # EUR 101.32, 128.64
    assert SHIPPED.penalty_for(2026) == SHIPPED.penalty_for(2024)  # past the table: the last index known
    published = ComplianceConfig(penalty_by_year={2024: 12_500}, price_index=SHIPPED.price_index)
    assert published.penalty_for(2024) == 12_500  # a figure the authority published prevails


def test_the_authority_levies_the_penalty_and_no_cash_moves_on_the_exchange():
    # Finding: the exchange took the penalty from the installation's trading cash; in the EU ETS the member
    # state's authority levies it.
    r = Registry()
    r.installation("mill", eur=1_000_000)
    r.emit("mill", 2024, 1_000)
    r.surrender("mill", 2024, "EUA", 900)
    cash = r.engine.accounts["mill"].cash
    events = r.deadline(2024, 20250930)
    charged = events[0]
    assert type(charged) is PenaltyCharged
    assert (charged.shortfall, charged.penalty_per_tonne, charged.penalty) == (100, 12_864, 1_286_400)
    assert (charged.paid, charged.owed, charged.cash) == (0, 1_286_400, cash)
    assert r.engine.accounts["mill"].cash == cash and "carbonx-penalties" not in r.engine.accounts
    row = compliance_report(r.engine.compliance, 2024)[0]
    assert (row.penalty, row.penalty_paid, row.penalty_owed) == (1_286_400, 0, 1_286_400)
    assert compliance_report(r.engine.compliance, 2025)[0].obligation == 100  # make-good all the same


# -- refusals and configuration ------------------------------------------------------------------------

T = 10**9

BY_YEAR_CASES = [  # (name, command, code, request): each refused under the shipped rules by year
    (
        "a CER for 2021",
        Surrender(ts=T, account="mill", year=2021, instrument="CER", units=1),
        RejectCode.UNIT_NOT_ELIGIBLE_FOR_YEAR,
        "surrender",
    ),
    (
        "emissions for 2031",
        RecordEmissions(ts=T, account="mill", year=2031, tonnes=1),
        RejectCode.YEAR_OUTSIDE_PHASES,
        "record_emissions",
    ),
    ("2023 closed on 30 April", ComplianceDeadline(ts=T, year=2023, date=20240430), RejectCode.DEADLINE_NOT_DUE, None),
    (
        "allocation twice",
        RecordAllocation(ts=T, account="mill", year=2021, units=1),
        RejectCode.ALLOCATION_ALREADY_RECORDED,
        "record_allocation",
    ),
    (
        "allocation of a non-installation",
        RecordAllocation(ts=T, account="broker", year=2021, units=1),
        RejectCode.NOT_AN_INSTALLATION,
        "record_allocation",
    ),
    (
        "allocation for a closed year",
        RecordAllocation(ts=T, account="mill", year=2020, units=1),
        RejectCode.COMPLIANCE_YEAR_CLOSED,
        "record_allocation",
    ),
]
BY_YEAR_BUILD_CASES = [  # (name, build, code, field)
    (
        "allocation negative",
        lambda: RecordAllocation(ts=T, account="mill", year=2021, units=-1),
        RejectCode.INVALID_ALLOCATION,
        "units",
    ),
    (
        "allocation fractional",
        lambda: RecordAllocation(ts=T, account="mill", year=2021, units=1.5),
        RejectCode.INVALID_ALLOCATION,
        "units",
    ),
    (
        "allocation absurd",
        lambda: RecordAllocation(ts=T, account="mill", year=2021, units=10**12 + 1),
        RejectCode.INVALID_ALLOCATION,
        "units",
    ),
    (
        "allocation year",
        lambda: RecordAllocation(ts=T, account="mill", year=2004, units=1),
        RejectCode.INVALID_YEAR,
        "year",
    ),
]


def refusal_setup() -> Engine:
    r = Registry()
    r.installation("mill")
    r.run(OpenAccount, account="broker")
    r.emit("mill", 2020, 0)
    r.deadline(2020, 20210430)
    r.allocate("mill", 2021, 1_000)
    for year in (2021, 2022, 2023):
        r.emit("mill", year, 1_000)
    return r.engine


@pytest.mark.parametrize(
    "command, code, request_name", [c[1:] for c in BY_YEAR_CASES], ids=[c[0] for c in BY_YEAR_CASES]
)
def test_a_refusal_by_year_changes_nothing_but_the_sequence(command, code, request_name):
    engine, twin = refusal_setup(), refusal_setup()
    if command.__class__ is ComplianceDeadline:  # 2023's deadline: the years before it closed first
        for each in (engine, twin):
            each.handle(ComplianceDeadline(ts=T, year=2021, date=20220430))
            each.handle(ComplianceDeadline(ts=T, year=2022, date=20230430))
    seq = engine.counters.seq
    events = engine.handle(command)
    assert events == [
        RequestRejected(
            seq + 1,
            T,
            getattr(command, "account", None),
            request_name or "compliance_deadline",
            None,
            None,
            code,
            code.text,
        )
    ]
    twin.counters.seq += 1
    assert engine.state_hash() == twin.state_hash()
    assert compliance_report(engine.compliance) == compliance_report(twin.compliance)


@pytest.mark.parametrize(
    "build, code, field", [c[1:] for c in BY_YEAR_BUILD_CASES], ids=[c[0] for c in BY_YEAR_BUILD_CASES]
)
def test_a_malformed_allocation_cannot_be_built(build, code, field):
    with pytest.raises(InvalidCommand) as raised:
        build()
    assert (raised.value.code, raised.value.field) == (code, field)


def test_the_shipped_table_parses_into_the_four_phases():
    names = [phase.name for phase in SHIPPED.phases]
    assert names == ["2005-2007", "2008-2012", "2013-2020", "2021-2030"]
    assert SHIPPED.phase_of(2010) == Phase(
        "2008-2012", 2008, 2012, ("2008-2012",), ("CER", "ERU"), ("nuclear", "LULUCF"), "allocation", 10_000
    )
    assert SHIPPED.unit_terms["CER"] == UnitTerms("CER", period="2008-2012")
    assert (SHIPPED.deadline_date(2022), SHIPPED.deadline_date(2023)) == (20230430, 20240930)
    assert SHIPPED.penalty_collection == "authority"


def test_the_config_survives_the_journal_genesis_and_an_old_genesis_takes_penalties_from_cash():
    assert ComplianceConfig.from_value(RULES.to_value()) == RULES
    old = {  # a genesis written before the rules by year
        "allowances": ["EUA"],
        "credits": ["CER", "ERU"],
        "penalty_per_tonne": 10_000,
        "penalty_by_year": [[2005, 4_000]],
        "penalty_account": "carbonx-penalties",
    }
    config = ComplianceConfig.from_value(old)
    assert (config.phases, config.penalty_collection, config.penalty_for(2005)) == ((), "cash", 4_000)


@pytest.mark.parametrize(
    "change, where",
    [
        ({"units": {"XYZ": {"period": "2008-2012"}}}, "compliance.units.XYZ"),
        ({"units": {"EUA": {"vintage": "2008"}}}, "compliance.units.EUA.vintage"),
        ({"units": {"EUA": {"period": 2008}}}, "compliance.units.EUA.period"),
        ({"phases": {"name": "x"}}, "compliance.phases"),
        ({"phases": [{"name": "2008-2012", "first_year": 2008}]}, "compliance.phases.2008-2012.last_year"),
        ({"phases": [{"name": "a", "first_year": 2009, "last_year": 2008}]}, "compliance.phases.a"),
        (
            {
                "phases": [
                    {"name": "a", "first_year": 2008, "last_year": 2012},
                    {"name": "b", "first_year": 2012, "last_year": 2013},
                ]
            },
            "compliance.phases.b",
        ),
        (
            {"phases": [{"name": "a", "first_year": 2008, "last_year": 2012, "credit_cap": "x"}]},
            "compliance.phases.a.credit_cap",
        ),
        (
            {"phases": [{"name": "a", "first_year": 2008, "last_year": 2012, "credit_types": "CER"}]},
            "compliance.phases.a.credit_types",
        ),
        ({"deadlines": {"2005": "4-30"}}, "compliance.deadlines.2005"),
        ({"deadlines": {"2005": "02-30"}}, "compliance.deadlines.2005"),
        ({"price_index": {"2012": 98.1}}, "compliance.price_index.2012"),
        ({"price_index": {"2012": "98.1234"}}, "compliance.price_index.2012"),
        ({"penalty_indexed_from": 2014, "price_index": {"2012": "98.1"}}, "compliance.penalty_indexed_from"),
        ({"penalty_collection": "bank"}, "compliance.penalty_collection"),
    ],
)
def test_a_bad_rule_by_year_names_its_field(change, where):
    document = {"compliance": {"allowances": ["EUA"], "credits": ["CER"], **change}}
    with pytest.raises(ConfigError) as raised:
        parse_compliance(document)
    assert raised.value.field == where


def test_the_penalty_table_of_docs_compliance_is_what_the_shipped_rules_charge():
    text = (Path(__file__).resolve().parents[2] / "docs" / "COMPLIANCE.md").read_text()
    years, index, penalty = (
        [cell.strip() for cell in line.strip("|").split("|")[1:]]
        for line in text.splitlines()
        if line.startswith(("| year | 2012", "| I (2015 = 100)", "| penalty, EUR/t"))
    )
    levels = dict(SHIPPED.price_index)
    for year, level, euros in zip(years, index, penalty, strict=True):
        assert levels[int(year)] == round(float(level) * 1000)
        assert SHIPPED.penalty_for(int(year)) == round(float(euros) * 100)


# -- found by review: bounds, gaps, allocation-only years, the engine without a configuration ------------------


def test_a_year_with_only_an_allocation_does_not_hold_up_later_deadlines():
    r = Registry()
    r.installation("mill")
    r.allocate("mill", 2021, 1_000)  # no emissions recorded for 2021: no obligation
    r.emit("mill", 2022, 100)
    closed = r.deadline(2022, 20230430)
    assert type(closed[-1]) is DeadlinePassed and closed[-1].installations == 1


def test_tonnes_carried_past_the_last_phase_wait_for_the_next_one():
    r = Registry()
    r.installation("mill")
    r.emit("mill", 2030, 100)
    events = r.deadline(2030, 20310930)
    assert [type(e).__name__ for e in events] == ["PenaltyCharged", "ObligationCarriedOver", "DeadlinePassed"]
    assert r.refused(r.deadline(2031, 20320930)) is RejectCode.YEAR_OUTSIDE_PHASES  # not charged again and again


def test_an_engine_without_a_compliance_configuration_takes_penalties_from_cash_as_before():
    engine = Engine(shipped_instruments(), pre_trade_risk=True)
    assert engine.compliance.config.penalty_collection == "cash" and not engine.compliance.config.phases


def test_phases_and_units_built_in_python_are_checked_and_survive_the_journal_genesis():
    phase = Phase("2008-2012", 2008, 2012, ["2008-2012"], ["CER"], [], "allocation", 10_000)  # lists, as a caller may
    config = ComplianceConfig(
        allowances=("EUA2",), credits=("CER",), units=(UnitTerms("EUA2", period="2008-2012"),), phases=(phase,)
    )
    assert config.phases[0].allowance_periods == ("2008-2012",)
    assert ComplianceConfig.from_value(config.to_value()) == config
    for periods in ("2008-2012", 5):  # a string, a number: not a list of periods
        with pytest.raises(ConfigError) as raised:
            Phase("2008-2012", 2008, 2012, periods)  # type: ignore[arg-type]
        assert raised.value.field == "compliance.phases.2008-2012.allowance_periods"


@pytest.mark.parametrize(
    "change, where",
    [
        (
            {"price_index": {"2012": "0.001", "2013": "1000000000"}, "penalty_indexed_from": 2013},
            "compliance.price_index.2013",
        ),
        (
            {"price_index": {"2012": "1000000", "2013": "1"}, "penalty_indexed_from": 2013},
            "compliance.price_index.2013",
        ),
        ({"deadlines": {"²005": "04-30"}}, "compliance.deadlines.²005"),
        ({"deadlines": {"2005": "0²-30"}}, "compliance.deadlines.2005"),
        ({"price_index": {"2012": "²"}}, "compliance.price_index.2012"),
        (
            {
                "phases": [
                    {"name": "a", "first_year": 2008, "last_year": 2012},
                    {"name": "b", "first_year": 2014, "last_year": 2020},
                ]
            },
            "compliance.phases.b",
        ),
        (
            {"phases": [{"name": "a", "first_year": 2008, "last_year": 2012, "allowance_periods": ["2008"]}]},
            "compliance.phases.a.allowance_periods",
        ),
        (
            {"units": {"EUA": {"period": "2008"}}, "phases": [{"name": "a", "first_year": 2008, "last_year": 2012}]},
            "compliance.units.EUA.period",
        ),
    ],
)
def test_a_rule_that_would_break_the_engine_is_refused_when_read(change, where):
    document = {"compliance": {"allowances": ["EUA"], "credits": ["CER"], **change}}
    with pytest.raises(ConfigError) as raised:
        parse_compliance(document)
    assert raised.value.field == where
