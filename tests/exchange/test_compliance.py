"""Compliance (EU ETS registry): every rule of exchange.compliance and every reject code it adds.

How it is checked: scenarios run on an engine with pre-trade risk over the
shipped instruments (plus TST, traded but not eligible), with accounts
opened and funded through OpenAccount and Deposit. A refused command is
checked the way tests/exchange/test_rejects.py does it: the setup is replayed into
two engines, one gets the bad command; it must answer with exactly one
RequestRejected carrying the code and the code's text, and equal its twin in
everything but the sequence counter (state hash, then the same answers to
probe commands and the same compliance report). Building a command with a
bad field must raise InvalidCommand with the code and the field's name.
``test_every_compliance_code_is_produced`` fails when a 6xx code is added
that no case here produces.
"""

from __future__ import annotations

import itertools
import tomllib

import pytest
from msgspec.structs import astuple, replace
from scenario_helpers import shipped_instruments

from exchange import (
    CancelOrder,
    Deposit,
    Engine,
    InvalidCommand,
    NewOrder,
    OpenAccount,
    RejectCode,
    RequestRejected,
    Side,
    Withdraw,
    parse_instruments,
)
from exchange.commands import ComplianceDeadline, RecordEmissions, RegisterInstallation, Surrender
from exchange.compliance import (
    DEFAULT_PENALTY_ACCOUNT,
    ComplianceConfig,
    ComplianceReportRow,
    compliance_report,
    format_report,
    parse_compliance,
)
from exchange.events import (
    DeadlinePassed,
    EmissionsRecorded,
    InstallationRegistered,
    ObligationCarriedOver,
    PenaltyCharged,
    UnitsSurrendered,
)
from exchange.instruments import ConfigError

TST = parse_instruments(
    {
        "instruments": {
            "TST": {
                "lot_units": 1000,
                "tick_size_eur": "0.01",
                "min_lots": 1,
                "max_lots": 100,
                "min_price_eur": "0.01",
                "max_price_eur": "1000.00",
                "reference_price_eur": "70.00",
            }
        }
    }
)

EUR = 100  # cents in a euro
PENALTY = 100 * EUR  # default penalty per tonne, cents

# Compliance without rules by year (no phases: every allowance and credit counts every year, credits
# within a share of the year's obligation), with penalties taken from cash: the rules carbonx had before
# the rules by year, still a venue's choice. The rules of each year are tested in test_compliance_by_year.py.
VENUE_TOML = """
[compliance]
penalty_collection = "cash"           # the exchange takes penalties from available cash
allowances = ["EUA"]                  # count 1:1 against any obligation
credits = ["CER", "ERU"]              # together, up to each installation's credit_limit_bps of its obligation
penalty_eur = "100.00"                # per missing tonne, from 2008
penalty_eur_by_year = { 2005 = "40.00", 2006 = "40.00", 2007 = "40.00" }
penalty_account = "carbonx-penalties"
"""
VENUE = parse_compliance(tomllib.loads(VENUE_TOML))


def make(config: ComplianceConfig | None = None, risk: bool = True) -> Engine:
    return Engine({**shipped_instruments(), **TST}, pre_trade_risk=risk, compliance=config or VENUE)


class Registry:
    """An engine with a running clock; ``run`` checks that every command's events are numbered and stamped."""

    def __init__(self, config: ComplianceConfig | None = None, risk: bool = True) -> None:
        self.engine = make(config, risk)
        self._ts = itertools.count(1)
        self.commands: list = []

    def run(self, kind: type, **fields) -> list:
        command = kind(ts=next(self._ts), **fields)
        self.commands.append(command)
        seq = self.engine.counters.seq
        events = self.engine.handle(command)
        assert [event.seq for event in events] == list(range(seq + 1, seq + 1 + len(events)))
        assert all(event.ts == command.ts for event in events)
        return events

    def account(self, name: str, eur: int = 0, **units: int) -> None:
        """Open and fund an account: ``eur`` in euros, units per instrument."""
        self.run(OpenAccount, account=name)
        if eur:
            self.run(Deposit, account=name, asset="EUR", amount=eur * EUR)
        for symbol, amount in units.items():
            self.run(Deposit, account=name, asset=symbol, amount=amount)

    def installation(self, name: str, bps: int = 2200, eur: int = 1_000_000, **units: int) -> None:
        self.account(name, eur, **units)
        assert type(self.run(RegisterInstallation, account=name, credit_limit_bps=bps)[0]) is InstallationRegistered

    def emissions(self, name: str, year: int, tonnes: int) -> list:
        return self.run(RecordEmissions, account=name, year=year, tonnes=tonnes)

    def surrender(self, name: str, year: int, symbol: str, units: int) -> list:
        return self.run(Surrender, account=name, year=year, instrument=symbol, units=units)

    def deadline(self, year: int, date: int | None = None) -> list:
        return self.run(ComplianceDeadline, year=year, date=date or (year + 1) * 10000 + 430)

    def refused(self, events: list) -> RejectCode:
        assert len(events) == 1 and type(events[0]) is RequestRejected, events
        assert events[0].text == events[0].code.text
        return events[0].code

    def units(self, name: str, symbol: str) -> int:
        return self.engine.accounts[name].units[symbol]

    def cash(self, name: str) -> int:
        return self.engine.accounts[name].cash

    def report(self, year: int | None = None) -> dict[tuple[int, str], ComplianceReportRow]:
        return {(row.year, row.account): row for row in compliance_report(self.engine.compliance, year)}


def surrendered(events: list) -> UnitsSurrendered:
    assert len(events) == 1 and type(events[0]) is UnitsSurrendered, events
    return events[0]


# -- installations and emissions ---------------------------------------------------------------


def test_register_installation_and_record_emissions():
    r = Registry()
    r.account("mill", 1000)
    assert r.run(RegisterInstallation, account="mill", credit_limit_bps=2200) == [
        InstallationRegistered(3, 3, "mill", 2200)
    ]
    assert r.emissions("mill", 2008, 10_000) == [EmissionsRecorded(4, 4, "mill", 2008, 10_000, 0, 10_000)]
    row = r.report(2008)[2008, "mill"]
    assert (row.emissions, row.obligation, row.credit_cap, row.shortfall, row.closed) == (
        10_000,
        10_000,
        2200,
        10_000,
        False,
    )


def test_zero_emissions_is_an_obligation_of_nothing():
    r = Registry()
    r.installation("mill", EUA=10)
    r.emissions("mill", 2008, 0)
    assert r.refused(r.surrender("mill", 2008, "EUA", 1)) is RejectCode.SURRENDER_EXCEEDS_OBLIGATION
    assert r.deadline(2008)[-1] == DeadlinePassed(r.engine.counters.seq, r.commands[-1].ts, 2008, 20090430, 1, 0, 0, 0)


# -- surrender: allowances 1:1, units retired ----------------------------------------------------


def test_allowances_count_one_for_one_and_leave_circulation():
    r = Registry()
    r.installation("mill", EUA=12_000)
    r.emissions("mill", 2008, 10_000)
    event = surrendered(r.surrender("mill", 2008, "EUA", 7_000))
    assert replace(event, seq=0, ts=0) == UnitsSurrendered(
        0, 0, "mill", 2008, "EUA", 7_000, "allowance", 7_000, 0, 3_000, 5_000, 7_000
    )
    event = surrendered(r.surrender("mill", 2008, "EUA", 3_000))
    assert (event.surrendered, event.outstanding, event.balance, event.retired) == (10_000, 0, 2_000, 10_000)
    assert r.units("mill", "EUA") == 2_000
    assert r.engine.compliance.retired == {"EUA": 10_000}
    row = r.report(2008)[2008, "mill"]
    assert (row.allowances, row.credits, row.shortfall) == (10_000, 0, 0)
    assert dict(row.surrendered) == {"EUA": 10_000, "CER": 0, "ERU": 0}


def test_surrender_exactly_the_outstanding_obligation_then_one_more_is_refused():
    r = Registry()
    r.installation("mill", EUA=20_000)
    r.emissions("mill", 2008, 10_000)
    surrendered(r.surrender("mill", 2008, "EUA", 9_999))
    assert r.refused(r.surrender("mill", 2008, "EUA", 2)) is RejectCode.SURRENDER_EXCEEDS_OBLIGATION
    assert surrendered(r.surrender("mill", 2008, "EUA", 1)).outstanding == 0
    assert r.refused(r.surrender("mill", 2008, "EUA", 1)) is RejectCode.SURRENDER_EXCEEDS_OBLIGATION
    assert r.units("mill", "EUA") == 10_000


def test_units_held_by_open_sell_orders_cannot_be_surrendered():
    r = Registry()
    r.installation("mill", EUA=5_000)
    r.emissions("mill", 2008, 10_000)
    r.run(NewOrder, account="mill", client_order_id="s", instrument="EUA", side=Side.SELL, quantity=2, price=7000)
    assert r.engine.accounts["mill"].reserved_units["EUA"] == 2_000
    assert r.refused(r.surrender("mill", 2008, "EUA", 3_001)) is RejectCode.INSUFFICIENT_UNITS
    surrendered(r.surrender("mill", 2008, "EUA", 3_000))  # exactly the available units
    assert r.refused(r.surrender("mill", 2008, "EUA", 1)) is RejectCode.INSUFFICIENT_UNITS
    r.run(CancelOrder, account="mill", client_order_id="s")
    assert surrendered(r.surrender("mill", 2008, "EUA", 2_000)).balance == 0


def test_units_bought_on_the_exchange_can_be_surrendered():
    r = Registry()
    r.installation("mill", eur=1_000_000)
    r.account("broker", 1_000, EUA=5_000)
    r.emissions("mill", 2008, 3_000)
    r.run(NewOrder, account="broker", client_order_id="s", instrument="EUA", side=Side.SELL, quantity=3, price=7000)
    r.run(NewOrder, account="mill", client_order_id="b", instrument="EUA", side=Side.BUY, quantity=3, price=7000)
    assert r.units("mill", "EUA") == 3_000
    assert surrendered(r.surrender("mill", 2008, "EUA", 3_000)).outstanding == 0
    assert r.deadline(2008)[-1].short == 0


# -- the CER/ERU share ---------------------------------------------------------------------------


def test_credits_up_to_the_share_exactly_then_one_unit_over_is_refused():
    r = Registry()
    r.installation("mill", bps=2200, EUA=10_000, CER=5_000, ERU=5_000)
    r.emissions("mill", 2008, 10_000)  # share: 2,200 t
    event = surrendered(r.surrender("mill", 2008, "CER", 1_500))
    assert (event.counted_as, event.credits_surrendered) == ("credit", 1_500)
    events = r.surrender("mill", 2008, "ERU", 701)  # CERs and ERUs share one cap
    assert r.refused(events) is RejectCode.CREDIT_LIMIT_EXCEEDED
    assert "share" in events[0].text
    assert surrendered(r.surrender("mill", 2008, "ERU", 700)).credits_surrendered == 2_200  # exactly at the share
    assert r.refused(r.surrender("mill", 2008, "CER", 1)) is RejectCode.CREDIT_LIMIT_EXCEEDED
    assert surrendered(r.surrender("mill", 2008, "EUA", 7_800)).outstanding == 0  # allowances are not capped
    row = r.report(2008)[2008, "mill"]
    assert (row.allowances, row.credits, row.credit_cap, dict(row.surrendered)) == (
        7_800,
        2_200,
        2_200,
        {"EUA": 7_800, "CER": 1_500, "ERU": 700},
    )
    assert (r.units("mill", "CER"), r.units("mill", "ERU")) == (3_500, 4_300)


def test_credit_cap_rounds_down():
    r = Registry()
    r.installation("mill", bps=2200, CER=5_000)
    r.emissions("mill", 2008, 10_004)  # 22% is 2,200.88 t: 2,200 may count
    assert r.refused(r.surrender("mill", 2008, "CER", 2_201)) is RejectCode.CREDIT_LIMIT_EXCEEDED
    surrendered(r.surrender("mill", 2008, "CER", 2_200))


def test_credit_limit_zero_admits_no_credits_and_full_limit_admits_only_credits():
    r = Registry()
    r.installation("no-credits", bps=0, CER=10)
    r.installation("all-credits", bps=10_000, CER=1_000)
    r.emissions("no-credits", 2008, 100)
    r.emissions("all-credits", 2008, 100)
    assert r.refused(r.surrender("no-credits", 2008, "CER", 1)) is RejectCode.CREDIT_LIMIT_EXCEEDED
    assert surrendered(r.surrender("all-credits", 2008, "CER", 100)).outstanding == 0


def test_credit_cap_is_per_installation():
    r = Registry()
    r.installation("mill", bps=2200, CER=10_000)
    r.installation("works", bps=1000, CER=10_000)
    r.emissions("mill", 2008, 1_000)
    r.emissions("works", 2008, 1_000)
    surrendered(r.surrender("mill", 2008, "CER", 220))
    assert r.refused(r.surrender("works", 2008, "CER", 101)) is RejectCode.CREDIT_LIMIT_EXCEEDED
    surrendered(r.surrender("works", 2008, "CER", 100))


def test_an_instrument_listed_as_neither_allowance_nor_credit_is_not_eligible():
    config = ComplianceConfig(allowances=("EUA",), credits=("CER",))  # ERUs not eligible here
    r = Registry(config)
    r.installation("mill", ERU=100, TST=100)
    r.emissions("mill", 2008, 100)
    assert r.refused(r.surrender("mill", 2008, "ERU", 1)) is RejectCode.INSTRUMENT_NOT_ELIGIBLE
    assert r.refused(r.surrender("mill", 2008, "TST", 1)) is RejectCode.INSTRUMENT_NOT_ELIGIBLE


# -- deadline: penalty and make-good ----------------------------------------------------------


def test_shortfall_is_charged_exactly_and_carried_over():
    r = Registry()
    r.installation("mill", eur=1_000_000, EUA=7_000, CER=2_200)
    r.emissions("mill", 2008, 10_000)
    r.surrender("mill", 2008, "CER", 2_200)
    r.surrender("mill", 2008, "EUA", 5_000)
    cash = r.cash("mill")
    events = r.deadline(2008, 20090430)
    ts, seq = r.commands[-1].ts, events[0].seq
    assert events == [
        PenaltyCharged(
            seq, ts, "mill", 2008, 2_800, 10_000, 28_000_000, 28_000_000, 0, DEFAULT_PENALTY_ACCOUNT, cash - 28_000_000
        ),
        ObligationCarriedOver(seq + 1, ts, "mill", 2008, 2009, 2_800, 2_800),
        DeadlinePassed(seq + 2, ts, 2008, 20090430, 1, 1, 28_000_000, 2_800),
    ]
    assert r.cash("mill") == cash - 28_000_000  # EUR 280,000.00: 2,800 t x EUR 100
    assert r.cash(DEFAULT_PENALTY_ACCOUNT) == 28_000_000
    row = r.report(2008)[2008, "mill"]
    assert (row.shortfall, row.penalty, row.penalty_paid, row.penalty_owed, row.closed) == (
        2_800,
        28_000_000,
        28_000_000,
        0,
        True,
    )


def test_make_good_across_two_years():
    r = Registry()
    r.installation("mill", bps=2200, eur=1_000_000, EUA=30_000, CER=10_000)
    r.emissions("mill", 2008, 10_000)
    r.surrender("mill", 2008, "EUA", 9_000)
    r.deadline(2008)  # 1,000 t short: charged, and owed again in 2009
    assert r.emissions("mill", 2009, 5_000)[0].obligation == 6_000
    # The cap is a share of the whole obligation, carried-over tonnes included: 22% of 6,000.
    assert r.refused(r.surrender("mill", 2009, "CER", 1_321)) is RejectCode.CREDIT_LIMIT_EXCEEDED
    surrendered(r.surrender("mill", 2009, "CER", 1_320))
    assert r.refused(r.surrender("mill", 2009, "EUA", 4_681)) is RejectCode.SURRENDER_EXCEEDS_OBLIGATION
    surrendered(r.surrender("mill", 2009, "EUA", 4_680))
    cash = r.cash("mill")
    events = r.deadline(2009)
    assert [type(event) for event in events] == [DeadlinePassed] and events[0].short == 0
    assert r.cash("mill") == cash
    rows = r.report()
    assert [(row.year, row.carried_in, row.obligation, row.shortfall, row.penalty) for row in rows.values()] == [
        (2008, 0, 10_000, 1_000, 1_000 * PENALTY),
        (2009, 1_000, 6_000, 0, 0),
    ]


def test_an_unpaid_make_good_is_short_and_charged_again_the_next_year():
    r = Registry()
    r.installation("mill", eur=10_000_000, EUA=10_000)
    r.emissions("mill", 2008, 1_000)
    r.deadline(2008)  # nothing surrendered: 1,000 t short
    r.emissions("mill", 2009, 2_000)
    r.surrender("mill", 2009, "EUA", 2_500)
    events = r.deadline(2009)
    penalty = events[0]
    assert (penalty.shortfall, penalty.penalty) == (500, 500 * PENALTY)
    assert events[1].tonnes == 500 and events[1].to_year == 2010
    assert r.cash(DEFAULT_PENALTY_ACCOUNT) == 1_500 * PENALTY


def test_make_good_may_be_surrendered_before_next_years_emissions_are_recorded():
    r = Registry()
    r.installation("mill", EUA=2_000)
    r.emissions("mill", 2008, 1_000)
    r.deadline(2008)
    event = surrendered(r.surrender("mill", 2009, "EUA", 1_000))
    assert event.outstanding == 0
    assert astuple(r.emissions("mill", 2009, 800)[0])[4:] == (800, 1_000, 1_800)


def test_penalty_takes_only_available_cash_and_records_the_rest_as_owed():
    r = Registry()
    r.installation("mill", eur=100_000)  # EUR 100,000.00 in cash
    r.run(NewOrder, account="mill", client_order_id="b", instrument="EUA", side=Side.BUY, quantity=1, price=7000)
    account = r.engine.accounts["mill"]
    reserved = account.reserved_cash
    assert reserved == 7000 * 1000 + 350  # price x lot + taker fee, cents
    available = account.cash - reserved
    r.emissions("mill", 2008, 1_000)
    charged = r.deadline(2008)[0]
    assert (charged.penalty, charged.paid, charged.owed) == (100_000 * EUR, available, 100_000 * EUR - available)
    assert account.cash == reserved and account.reserved_cash == reserved  # the open buy keeps its money
    assert r.cash(DEFAULT_PENALTY_ACCOUNT) == available
    assert r.report(2008)[2008, "mill"].penalty_owed == charged.owed
    # The buy order can still be paid for in full.
    r.account("seller", 0, EUA=1_000)
    r.run(NewOrder, account="seller", client_order_id="s", instrument="EUA", side=Side.SELL, quantity=1, price=7000)
    assert account.units["EUA"] == 1_000 and account.cash >= 0 and account.reserved_cash == 0


def test_penalty_with_no_cash_is_all_owed_and_opens_no_penalty_account():
    r = Registry()
    r.installation("mill", eur=0)
    r.emissions("mill", 2008, 3)
    charged = r.deadline(2008)[0]
    assert (charged.penalty, charged.paid, charged.owed, charged.cash) == (3 * PENALTY, 0, 3 * PENALTY, 0)
    assert DEFAULT_PENALTY_ACCOUNT not in r.engine.accounts


def test_penalty_per_year_and_penalty_account_come_from_the_config():
    config = ComplianceConfig(
        allowances=("EUA",),
        penalty_per_tonne=12_345,
        penalty_by_year={2007: 40 * EUR},
        penalty_account="fines",
        penalty_collection="cash",
    )
    r = Registry(config)
    r.installation("mill", eur=1_000_000)
    r.emissions("mill", 2007, 10)
    assert astuple(r.deadline(2007)[0])[5:8] == (40 * EUR, 400 * EUR, 400 * EUR)
    r.emissions("mill", 2008, 10)
    assert astuple(r.deadline(2008)[0])[5:8] == (12_345, 20 * 12_345, 20 * 12_345)  # 10 carried over + 10 new
    assert r.cash("fines") == 400 * EUR + 20 * 12_345


def test_deadline_charges_installations_in_account_order_and_skips_the_compliant():
    r = Registry()
    for name in ("works", "mill", "plant"):
        r.installation(name, EUA=100)
    r.emissions("works", 2008, 50)
    r.emissions("plant", 2008, 100)
    r.emissions("mill", 2008, 30)
    r.surrender("plant", 2008, "EUA", 100)
    events = r.deadline(2008)
    assert [(type(e).__name__, getattr(e, "account", None)) for e in events] == [
        ("PenaltyCharged", "mill"),
        ("ObligationCarriedOver", "mill"),
        ("PenaltyCharged", "works"),
        ("ObligationCarriedOver", "works"),
        ("DeadlinePassed", None),
    ]
    assert astuple(events[-1])[4:] == (3, 2, 80 * PENALTY, 80)


def test_after_the_deadline_the_year_takes_no_surrender_and_no_emissions():
    r = Registry()
    r.installation("mill", EUA=100)
    r.emissions("mill", 2008, 100)
    r.deadline(2008)
    assert r.refused(r.surrender("mill", 2008, "EUA", 1)) is RejectCode.COMPLIANCE_YEAR_CLOSED
    assert r.refused(r.emissions("mill", 2007, 1)) is RejectCode.COMPLIANCE_YEAR_CLOSED
    surrendered(r.surrender("mill", 2009, "EUA", 100))  # the make-good year is open


def test_deadlines_come_in_year_order_and_years_without_obligations_may_be_skipped():
    r = Registry()
    r.installation("mill", EUA=100)
    assert r.deadline(2005)[-1].installations == 0  # nobody had anything to cover
    r.emissions("mill", 2008, 10)
    r.emissions("mill", 2009, 10)
    assert r.refused(r.deadline(2009)) is RejectCode.DEADLINE_OUT_OF_ORDER  # 2008 is still open
    r.deadline(2008, 20100430)  # late, but in order
    assert r.refused(r.run(ComplianceDeadline, year=2009, date=20100301)) is RejectCode.DEADLINE_OUT_OF_ORDER
    assert r.refused(r.deadline(2008)) is RejectCode.DEADLINE_OUT_OF_ORDER
    r.deadline(2009, 20100930)


# -- conservation, report, determinism ----------------------------------------------------------


def scenario() -> Registry:
    """Two installations over two years, a trade, a withdrawal, penalties paid and owed."""
    r = Registry()
    r.installation("mill", bps=2200, eur=1_000_000, EUA=8_000, CER=3_000)
    r.installation("works", bps=1000, eur=50, EUA=500, ERU=1_000)
    r.account("broker", 1_000_000, EUA=10_000, CER=10_000, ERU=10_000)
    r.emissions("mill", 2008, 10_000)
    r.emissions("works", 2008, 2_000)
    r.run(NewOrder, account="broker", client_order_id="s", instrument="EUA", side=Side.SELL, quantity=1, price=7000)
    r.run(NewOrder, account="mill", client_order_id="b", instrument="EUA", side=Side.BUY, quantity=1, price=7000)
    r.surrender("mill", 2008, "CER", 2_200)
    r.surrender("mill", 2008, "EUA", 7_000)
    r.surrender("works", 2008, "ERU", 200)
    r.surrender("works", 2008, "EUA", 500)
    r.run(Withdraw, account="broker", asset="CER", amount=1_000)
    r.deadline(2008)
    r.emissions("mill", 2009, 4_000)
    r.surrender("mill", 2009, "EUA", 2_000)
    r.deadline(2009)
    return r


DEPOSITED = {"EUR": 2_000_050 * EUR, "EUA": 18_500, "CER": 13_000, "ERU": 11_000, "TST": 0}
WITHDRAWN = {"CER": 1_000}


def test_holdings_plus_retired_units_equal_what_came_in_and_cash_is_conserved():
    r = scenario()
    engine = r.engine
    retired = engine.compliance.retired
    assert retired == {"CER": 2_200, "EUA": 9_500, "ERU": 200}
    for symbol in engine.instruments:
        held = sum(account.units[symbol] for account in engine.accounts.values())
        assert held + retired.get(symbol, 0) == DEPOSITED[symbol] - WITHDRAWN.get(symbol, 0), symbol
    assert sum(account.cash for account in engine.accounts.values()) == DEPOSITED["EUR"]
    for account in engine.accounts.values():
        assert account.cash >= account.reserved_cash >= 0
        assert all(units >= account.reserved_units[symbol] >= 0 for symbol, units in account.units.items())


def test_report_per_year_and_installation():
    r = scenario()
    rows = compliance_report(r.engine.compliance)
    brief = [
        (
            row.year,
            row.account,
            row.emissions,
            row.carried_in,
            row.obligation,
            row.allowances,
            row.credits,
            row.shortfall,
            row.penalty,
            row.penalty_paid,
            row.penalty_owed,
            row.closed,
        )
        for row in rows
    ]
    works_penalty = 1_300 * PENALTY
    assert brief == [
        (2008, "mill", 10_000, 0, 10_000, 7_000, 2_200, 800, 800 * PENALTY, 800 * PENALTY, 0, True),
        (2008, "works", 2_000, 0, 2_000, 500, 200, 1_300, works_penalty, 50 * EUR, works_penalty - 50 * EUR, True),
        (2009, "mill", 4_000, 800, 4_800, 2_000, 0, 2_800, 2_800 * PENALTY, 2_800 * PENALTY, 0, True),
        (2009, "works", None, 1_300, 1_300, 0, 0, 1_300, works_penalty, 0, works_penalty, True),
        (2010, "mill", None, 2_800, 2_800, 0, 0, 2_800, 0, 0, 0, False),
        (2010, "works", None, 1_300, 1_300, 0, 0, 1_300, 0, 0, 0, False),
    ]
    assert compliance_report(r.engine.compliance, 2009) == rows[2:4]
    assert [row.account for row in compliance_report(r.engine.compliance, 2030)] == ["mill", "works"]
    lines = format_report(rows)
    assert len(lines) == 7
    assert lines[0].split()[:6] == ["year", "account", "allocation", "emissions", "carried", "obligation"]
    assert "280000.00" in lines[3] and lines[-1].endswith("open")


def test_replay_gives_the_same_events_and_state_hash():
    first, second = scenario(), scenario()
    one, other = Registry(), Registry()
    assert [one.engine.handle(command) for command in first.commands] == [
        other.engine.handle(command) for command in second.commands
    ]
    assert first.engine.state_hash() == second.engine.state_hash() == one.engine.state_hash()
    batched = Registry()  # one batch: the depth announcements are conflated, so only the event count differs
    batched.engine.handle_all(first.commands)
    assert list(batched.engine.state_lines())[1:] == list(first.engine.state_lines())[1:]


def test_state_hash_covers_compliance_facts():
    def hashed(*commands) -> str:
        r = Registry()
        r.installation("mill", bps=2200, EUA=100)
        for kind, fields in commands:
            r.run(kind, **fields)
        return r.engine.state_hash(), r.engine.counters.seq

    base = hashed((RecordEmissions, dict(account="mill", year=2008, tonnes=50)))
    other_tonnes = hashed((RecordEmissions, dict(account="mill", year=2008, tonnes=51)))
    other_year = hashed((RecordEmissions, dict(account="mill", year=2009, tonnes=50)))
    assert base[1] == other_tonnes[1] == other_year[1]
    assert len({base[0], other_tonnes[0], other_year[0]}) == 3
    a, b = Registry(), Registry()
    a.installation("mill", bps=2200)
    b.installation("mill", bps=2100)
    assert a.engine.state_hash() != b.engine.state_hash()


def test_an_engine_without_compliance_activity_hashes_as_before():
    r = Registry()
    r.account("broker", 100, EUA=10)
    assert not [
        line for line in r.engine.state_lines() if line.startswith(("compliance", "installation", "obligation"))
    ]
    assert Engine(shipped_instruments()).compliance.config == ComplianceConfig(penalty_collection="cash")
    assert Engine(shipped_instruments(), compliance=VENUE).compliance.config is VENUE


# -- refusals: one reject event, nothing else changed -------------------------------------------

T = 10_000


def setup() -> Engine:
    """mill (22%) and works (10%) are installations, broker is not.

    mill: 2007 covered and closed; 2008 emitted 10,000 t, 2,000 CER surrendered (200 t of credit share
    left); 2009 emitted 8,000 t; holds 19,000 EUA of which an open sell order holds back 1,000.
    works: 2008 emitted 5,000 t, holds 3,000 EUA of which 1,000 are held back, 1,000 ERU.
    """
    r = Registry()
    r.installation("mill", bps=2200, EUA=20_000, CER=5_000, ERU=5_000, TST=1_000)
    r.installation("works", bps=1000, EUA=3_000, ERU=1_000)
    r.account("broker", 1_000_000, EUA=10_000)
    r.emissions("mill", 2007, 1_000)
    r.surrender("mill", 2007, "EUA", 1_000)
    r.deadline(2007, 20090630)  # late, so that a 2008 deadline on 30 April 2009 comes too early
    r.emissions("mill", 2008, 10_000)
    r.emissions("works", 2008, 5_000)
    r.emissions("mill", 2009, 8_000)
    r.surrender("mill", 2008, "CER", 2_000)
    for name in ("mill", "works"):
        r.run(NewOrder, account=name, client_order_id="s", instrument="EUA", side=Side.SELL, quantity=1, price=7100)
    return r.engine


def reg(**fields):
    return lambda: RegisterInstallation(**{"ts": T, "account": "broker", "credit_limit_bps": 2200, **fields})


def emit(**fields):
    return lambda: RecordEmissions(**{"ts": T, "account": "mill", "year": 2010, "tonnes": 100, **fields})


def give(**fields):
    return lambda: Surrender(**{"ts": T, "account": "mill", "year": 2008, "instrument": "EUA", "units": 100, **fields})


def due(**fields):
    return lambda: ComplianceDeadline(**{"ts": T, "year": 2008, "date": 20090430, **fields})


ENGINE_CASES = [
    ("register unknown account", reg(account="nobody"), RejectCode.UNKNOWN_ACCOUNT, "register_installation"),
    ("register twice", reg(account="mill"), RejectCode.INSTALLATION_ALREADY_REGISTERED, "register_installation"),
    ("emissions of unknown account", emit(account="nobody"), RejectCode.UNKNOWN_ACCOUNT, "record_emissions"),
    ("emissions of a non-installation", emit(account="broker"), RejectCode.NOT_AN_INSTALLATION, "record_emissions"),
    ("emissions recorded twice", emit(year=2008), RejectCode.EMISSIONS_ALREADY_RECORDED, "record_emissions"),
    ("emissions for a closed year", emit(year=2007), RejectCode.COMPLIANCE_YEAR_CLOSED, "record_emissions"),
    (
        "emissions for a year before the closed one",
        emit(year=2006),
        RejectCode.COMPLIANCE_YEAR_CLOSED,
        "record_emissions",
    ),
    ("surrender by unknown account", give(account="nobody"), RejectCode.UNKNOWN_ACCOUNT, "surrender"),
    ("surrender by a non-installation", give(account="broker"), RejectCode.NOT_AN_INSTALLATION, "surrender"),
    ("surrender unknown instrument", give(instrument="UKA"), RejectCode.UNKNOWN_INSTRUMENT, "surrender"),
    ("surrender ineligible instrument", give(instrument="TST"), RejectCode.INSTRUMENT_NOT_ELIGIBLE, "surrender"),
    ("surrender for a closed year", give(year=2007), RejectCode.COMPLIANCE_YEAR_CLOSED, "surrender"),
    ("surrender with no emissions recorded", give(year=2010), RejectCode.NO_EMISSIONS_RECORDED, "surrender"),
    (
        "surrender by installation without that year",
        give(account="works", year=2009),
        RejectCode.NO_EMISSIONS_RECORDED,
        "surrender",
    ),
    (
        "surrender over the outstanding obligation",
        give(units=8_001),
        RejectCode.SURRENDER_EXCEEDS_OBLIGATION,
        "surrender",
    ),
    ("credits over the share", give(instrument="CER", units=201), RejectCode.CREDIT_LIMIT_EXCEEDED, "surrender"),
    (
        "other credit type over the share",
        give(instrument="ERU", units=201),
        RejectCode.CREDIT_LIMIT_EXCEEDED,
        "surrender",
    ),
    ("more units than held", give(account="works", units=3_001), RejectCode.INSUFFICIENT_UNITS, "surrender"),
    ("units held back by an open sell", give(account="works", units=2_001), RejectCode.INSUFFICIENT_UNITS, "surrender"),
    ("credits not held", give(account="works", instrument="CER", units=1), RejectCode.INSUFFICIENT_UNITS, "surrender"),
    (
        "deadline for the closed year again",
        due(year=2007, date=20090701),
        RejectCode.DEADLINE_OUT_OF_ORDER,
        "compliance_deadline",
    ),
    ("deadline on an earlier date", due(date=20090430), RejectCode.DEADLINE_OUT_OF_ORDER, "compliance_deadline"),
    ("deadline on the same date", due(date=20090630), RejectCode.DEADLINE_OUT_OF_ORDER, "compliance_deadline"),
    (
        "deadline skipping an open year",
        due(year=2009, date=20100430),
        RejectCode.DEADLINE_OUT_OF_ORDER,
        "compliance_deadline",
    ),
]

PROBES = [
    Surrender(ts=T + 1, account="mill", year=2008, instrument="CER", units=200),
    Surrender(ts=T + 2, account="mill", year=2008, instrument="EUA", units=7_000),
    Surrender(ts=T + 3, account="works", year=2008, instrument="EUA", units=2_000),
    RegisterInstallation(ts=T + 4, account="broker", credit_limit_bps=500),
    ComplianceDeadline(ts=T + 5, year=2008, date=20090930),
    RecordEmissions(ts=T + 6, account="works", year=2009, tonnes=10),
]


@pytest.mark.parametrize(
    "make_command, code, request_name", [case[1:] for case in ENGINE_CASES], ids=[case[0] for case in ENGINE_CASES]
)
def test_engine_refusal_changes_nothing_but_the_sequence(make_command, code, request_name):
    rejected, twin = setup(), setup()
    command = make_command()
    seq = rejected.counters.seq
    events = rejected.handle(command)
    assert events == [
        RequestRejected(seq + 1, T, getattr(command, "account", None), request_name, None, None, code, code.text)
    ]
    twin.counters.seq += 1
    assert rejected.state_hash() == twin.state_hash(), "the refusal changed more than the sequence counter"
    assert compliance_report(rejected.compliance) == compliance_report(twin.compliance)
    assert rejected.handle_all(PROBES) == twin.handle_all(PROBES)


def test_setup_is_what_the_cases_assume():
    engine = setup()
    rows = {(row.year, row.account): row for row in compliance_report(engine.compliance)}
    assert rows[2007, "mill"].closed and rows[2007, "mill"].shortfall == 0
    mill = rows[2008, "mill"]
    assert (mill.obligation, mill.credits, mill.credit_cap, mill.shortfall) == (10_000, 2_000, 2_200, 8_000)
    assert rows[2008, "works"].credit_cap == 500 and rows[2009, "works"].obligation == 0
    for name, available in (("mill", 18_000), ("works", 2_000)):
        account = engine.accounts[name]
        assert account.units["EUA"] - account.reserved_units["EUA"] == available
    # Each case is refused for its own reason only: without the broken rule it would go through.
    for command in (give(units=8_000)(), give(instrument="CER", units=200)(), give(account="works", units=2_000)()):
        assert type(setup().handle(command)[0]) is UnitsSurrendered


def test_without_pre_trade_risk_the_engine_keeps_no_installations():
    r = Registry(risk=False)
    r.run(NewOrder, account="mill", client_order_id="b", instrument="EUA", side=Side.BUY, quantity=1, price=7000)
    assert r.refused(r.run(RegisterInstallation, account="mill", credit_limit_bps=0)) is RejectCode.UNKNOWN_ACCOUNT
    assert r.refused(r.emissions("mill", 2008, 1)) is RejectCode.UNKNOWN_ACCOUNT
    assert r.refused(r.surrender("mill", 2008, "EUA", 1)) is RejectCode.UNKNOWN_ACCOUNT
    assert type(r.deadline(2008)[0]) is DeadlinePassed


# -- commands that cannot be built -----------------------------------------------------------

BUILD_CASES = [
    ("register bps negative", reg(credit_limit_bps=-1), RejectCode.INVALID_CREDIT_LIMIT, "credit_limit_bps"),
    ("register bps over a whole", reg(credit_limit_bps=10_001), RejectCode.INVALID_CREDIT_LIMIT, "credit_limit_bps"),
    ("register bps as a fraction", reg(credit_limit_bps=0.22), RejectCode.INVALID_CREDIT_LIMIT, "credit_limit_bps"),
    ("register bps as bool", reg(credit_limit_bps=True), RejectCode.INVALID_CREDIT_LIMIT, "credit_limit_bps"),
    ("register empty account", reg(account=""), RejectCode.INVALID_ACCOUNT, "account"),
    ("register negative ts", reg(ts=-1), RejectCode.INVALID_TIMESTAMP, "ts"),
    ("emissions before the EU ETS", emit(year=2004), RejectCode.INVALID_YEAR, "year"),
    ("emissions year too late", emit(year=9999), RejectCode.INVALID_YEAR, "year"),
    ("emissions year as string", emit(year="2008"), RejectCode.INVALID_YEAR, "year"),
    ("emissions negative", emit(tonnes=-1), RejectCode.INVALID_EMISSIONS, "tonnes"),
    ("emissions fractional", emit(tonnes=10.5), RejectCode.INVALID_EMISSIONS, "tonnes"),
    ("emissions absurd", emit(tonnes=10**12 + 1), RejectCode.INVALID_EMISSIONS, "tonnes"),
    ("emissions account not a string", emit(account=7), RejectCode.INVALID_ACCOUNT, "account"),
    ("surrender zero units", give(units=0), RejectCode.INVALID_AMOUNT, "units"),
    ("surrender negative units", give(units=-5), RejectCode.INVALID_AMOUNT, "units"),
    ("surrender float units", give(units=100.0), RejectCode.INVALID_AMOUNT, "units"),
    ("surrender empty instrument", give(instrument=""), RejectCode.UNKNOWN_INSTRUMENT, "instrument"),
    ("surrender bad year", give(year=None), RejectCode.INVALID_YEAR, "year"),
    ("surrender ts float", give(ts=1.0), RejectCode.INVALID_TIMESTAMP, "ts"),
    ("deadline in its own year", due(date=20081231), RejectCode.INVALID_DEADLINE_DATE, "date"),
    ("deadline impossible date", due(date=20090230), RejectCode.INVALID_DEADLINE_DATE, "date"),
    ("deadline date as string", due(date="20090430"), RejectCode.INVALID_DEADLINE_DATE, "date"),
    ("deadline bad year", due(year=1990), RejectCode.INVALID_YEAR, "year"),
]


@pytest.mark.parametrize(
    "make_command, code, field", [case[1:] for case in BUILD_CASES], ids=[case[0] for case in BUILD_CASES]
)
def test_malformed_command_cannot_be_built(make_command, code, field):
    with pytest.raises(InvalidCommand) as raised:
        make_command()
    assert (raised.value.code, raised.value.field) == (code, field)


def test_boundary_values_can_be_built():
    reg(credit_limit_bps=0)()
    reg(credit_limit_bps=10_000)()
    emit(year=2005, tonnes=0)()
    emit(year=9998, tonnes=10**12)()
    due(year=2008, date=20090101)()


def test_every_compliance_code_is_produced():
    from test_compliance_by_year import BY_YEAR_BUILD_CASES, BY_YEAR_CASES  # the codes of the rules by year

    produced = {case[2] for case in (*ENGINE_CASES, *BUILD_CASES, *BY_YEAR_CASES, *BY_YEAR_BUILD_CASES)}
    assert {code for code in RejectCode if 600 <= code < 700} <= produced
    for code in RejectCode:
        if 600 <= code < 700:
            assert code.text


# -- configuration -----------------------------------------------------------------------------


def test_config_default_counts_nothing_and_charges_eur_100():
    config = ComplianceConfig()  # the core names no symbol: eligibility comes from the configuration
    assert (config.allowances, config.credits, config.penalty_per_tonne) == ((), (), 10_000)
    engine = Engine(shipped_instruments())
    for command in (
        OpenAccount(ts=1, account="mill"),
        Deposit(ts=2, account="mill", asset="EUA", amount=10),
        RegisterInstallation(ts=3, account="mill", credit_limit_bps=2200),
        RecordEmissions(ts=4, account="mill", year=2008, tonnes=10),
    ):
        engine.handle(command)
    assert (
        engine.handle(Surrender(ts=5, account="mill", year=2008, instrument="EUA", units=10))[0].code
        is RejectCode.INSTRUMENT_NOT_ELIGIBLE
    )


def test_venue_config_follows_the_domain_facts():
    assert (VENUE.allowances, VENUE.credits, VENUE.penalty_account) == (("EUA",), ("CER", "ERU"), "carbonx-penalties")
    assert [VENUE.penalty_for(year) for year in (2005, 2007, 2008, 2013)] == [4_000, 4_000, 10_000, 10_000]


def test_parse_compliance_converts_euros_once():
    config = parse_compliance(
        {
            "compliance": {
                "penalty_eur": "100.00",
                "penalty_eur_by_year": {"2005": "40.00", "2006": "40", "2007": "40.00"},
                "penalty_account": "fines",
                "credits": ["CER"],
            }
        }
    )
    assert (config.penalty_per_tonne, config.penalty_for(2006), config.penalty_for(2013)) == (10_000, 4_000, 10_000)
    assert (config.credits, config.penalty_account) == (("CER",), "fines")
    assert parse_compliance({}) == ComplianceConfig()
    assert parse_compliance({"compliance": {}}) == ComplianceConfig()


@pytest.mark.parametrize(
    "document, where",
    [
        ({"compliance": {"penalty_eur": 100}}, "compliance.penalty_eur"),
        ({"compliance": {"penalty_eur": "100.001"}}, "compliance.penalty_eur"),
        ({"compliance": {"penalty_eur": "0"}}, "compliance.penalty_per_tonne"),
        ({"compliance": {"penalty_eur_by_year": {"y2005": "40.00"}}}, "compliance.penalty_eur_by_year.y2005"),
        ({"compliance": {"fine": "1.00"}}, "compliance.fine"),
        ({"compliance": {"allowances": ["EUA"], "credits": ["CER", "EUA"]}}, "compliance.credits"),
        ({"compliance": {"allowances": "EUA"}}, "compliance.allowances"),
        ({"compliance": {"penalty_account": ""}}, "compliance.penalty_account"),
        ({"compliance": []}, "compliance"),
    ],
)
def test_bad_config_names_its_field(document, where):
    with pytest.raises(ConfigError) as raised:
        parse_compliance(document)
    assert raised.value.field == where


@pytest.mark.parametrize(
    "fields, where",
    [
        (dict(penalty_by_year=[(2005, 4_000), (2005, 5_000)]), "compliance.penalty_by_year"),
        (dict(penalty_by_year={2004: 4_000}), "compliance.penalty_by_year"),
        (dict(penalty_by_year={2005: 0}), "compliance.penalty_by_year.2005"),
        (dict(penalty_by_year=5), "compliance.penalty_by_year"),
        (dict(penalty_per_tonne=1_000_001), "compliance.penalty_per_tonne"),
        (dict(penalty_per_tonne=100.0), "compliance.penalty_per_tonne"),
        (dict(credits=("CER", "")), "compliance.credits"),
    ],
)
def test_bad_config_values_are_refused(fields, where):
    with pytest.raises(ConfigError) as raised:
        ComplianceConfig(**fields)
    assert raised.value.field == where
