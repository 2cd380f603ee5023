"""Compliance: the EU ETS registry's side of carbonx, inside the deterministic core, by the rules of each year.

Theory of operation
-------------------
An installation (a power plant, a paper mill, a cement works) must cover the
verified emissions of each year by surrendering units: allowances count one
for one, project credits (CER from the CDM, ERU from JI) only within an
entitlement. What is missing at the deadline is charged a penalty per tonne
and still owed: the missing tonnes are added to the next year's obligation
(make-good). Which units count, the entitlement, the deadline and the penalty
depend on the year: see :mod:`exchange.compliance.rules` for how the
configuration states them, docs/COMPLIANCE.md for the EU ETS rules and their
sources, and shared/DOMAIN.md, "Compliance (EU ETS registry)".

The modules: ``rules`` (the configuration: units, phases, deadlines,
penalty), ``state`` (the installations' records and the command handlers),
``report`` (the compliance report). Everything arrives as commands through
``Engine.handle``, so a replay of the command journal reproduces it:
``RegisterInstallation`` (an account becomes an installation, with its
credit share in basis points), ``RecordAllocation``, ``RecordEmissions``,
``Surrender`` and ``ComplianceDeadline``.

Refusals are ``RequestRejected`` events carrying a code from
:mod:`exchange.codes` (compliance codes are 6xx; an unknown account, an
unknown instrument and not enough available units reuse 201, 101 and 203).
A refused command changes nothing but the sequence counter. Nothing here
raises on a well-formed command.

Rules
-----
1.  Installations. ``RegisterInstallation`` makes an open account (the
    engine must keep holdings: ``pre_trade_risk``) an installation, once
    (INSTALLATION_ALREADY_REGISTERED); its credit share (0-10_000 bps,
    Germany 2008-12: 2200) is fixed from then on.
2.  Years. With phases configured, a year outside every phase takes no
    allocation, emissions, surrender or deadline (YEAR_OUTSIDE_PHASES: tonnes
    carried past the last phase wait for the next phase to be configured);
    a year whose deadline has passed takes none either
    (COMPLIANCE_YEAR_CLOSED). Phases follow each other with no gap.
3.  Allocation. ``RecordAllocation`` records an installation's free
    allocation for a year once (ALLOCATION_ALREADY_RECORDED). It is a record:
    the allowances themselves are issued in the registry and reach the
    exchange as deposits. It sets the credit entitlement (rule 6).
4.  Emissions. ``RecordEmissions`` records a year's verified emissions once
    (EMISSIONS_ALREADY_RECORDED): a verified report is final, and a corrected
    figure that could shrink the obligation after units were retired
    against it would have to un-retire them. Zero tonnes is valid.
5.  Obligation of a year = its verified emissions + the tonnes carried over
    from the year before (rule 9).
6.  Surrender is all or nothing, checked in this order: the account is open
    (UNKNOWN_ACCOUNT) and an installation (NOT_AN_INSTALLATION); the
    instrument is traded here (UNKNOWN_INSTRUMENT) and an allowance or a
    credit (INSTRUMENT_NOT_ELIGIBLE); the year takes surrenders (rule 2); the
    units count for the year (UNIT_NOT_ELIGIBLE_FOR_YEAR: an allowance of a
    period the year's phase does not accept, which is how banking is
    stated; a credit of a type or project type the phase does not accept);
    the year has an obligation (NO_EMISSIONS_RECORDED); the units fit what is
    outstanding (SURRENDER_EXCEEDS_OBLIGATION: retired units can never come
    back, so an over-surrender is taken for a mistake); credits fit the
    entitlement (CREDIT_LIMIT_EXCEEDED); the account has the units available,
    holding less what open sell orders hold back (INSUFFICIENT_UNITS).
    The entitlement, rounded down: with the phase's cap on allocation, the
    share of the installation's allocation recorded for the phase's years,
    against the credits surrendered for any of them (Linking Directive
    2004/101/EC, Art. 11a(1)); with the cap on obligation, or no phases, the
    share of the year's obligation, carried-over tonnes included.
7.  Surrendered units leave the account and are retired: they leave
    circulation for good. ``Compliance.retired`` keeps the total per
    instrument, so per instrument: units held + retired == deposited -
    withdrawn.
8.  Deadlines come in year order: ``ComplianceDeadline`` for a year must
    follow the last one closed (a later year, on a later date) and is
    refused while an earlier year with an obligation is still open
    (DEADLINE_OUT_OF_ORDER), or before the year's configured deadline date
    (DEADLINE_NOT_DUE). Years in between with no obligation close with it.
9.  At the deadline, for each installation with an obligation for the year
    (in account order): shortfall = obligation - surrendered, charged
    ``shortfall * penalty per tonne`` of the year (PenaltyCharged). The
    authority levies it (``penalty_collection`` "authority", the EU ETS):
    nothing moves on the exchange and the whole penalty is owed to it. With
    "cash" (a simulation's choice, and how journals from before the rules by
    year replay) the exchange takes what the available cash covers (cash less
    what open buy orders hold back) into the penalty account; the rest is
    owed. Either way the shortfall is added to the next year's obligation
    (ObligationCarriedOver). DeadlinePassed closes the list.

The state hash covers installations, every year record, the retired totals
and the last deadline; an engine that never saw a compliance command adds no
line to it, so its hash is as before.

Not modelled here: the exchange of CERs and ERUs for allowances in 2013-20
(Art. 11a(2)-(4)) and the cancellation of phase-1 allowances after April
2008: such units stay in accounts and simply count for no year.
"""

from __future__ import annotations

from .report import ComplianceReportRow, compliance_report, format_report
from .rules import (
    ALLOWANCE,
    CREDIT,
    DEFAULT_PENALTY_ACCOUNT,
    ComplianceConfig,
    Phase,
    UnitTerms,
    parse_compliance,
)
from .state import Compliance, Installation, YearRecord

__all__ = [
    "ALLOWANCE",
    "CREDIT",
    "DEFAULT_PENALTY_ACCOUNT",
    "Compliance",
    "ComplianceConfig",
    "ComplianceReportRow",
    "Installation",
    "Phase",
    "UnitTerms",
    "YearRecord",
    "compliance_report",
    "format_report",
    "parse_compliance",
]
