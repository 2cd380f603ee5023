"""What the exchange tells of compliance (docs/COMPLIANCE.md, PROTOCOL 8.26-8.27): reports and positions.

How this works: the order tracker turns each compliance event that names an
installation into a ``compliance_report`` for it (:func:`compliance_report`);
the sequencer gives the authority that asked a copy of each, and the closing
``year_closed`` report, which names no installation. A
``compliance_position`` query is answered from the engine's compliance
report (:func:`position_rows`), read and never changed.
"""

from __future__ import annotations

from exchange import Engine
from exchange.events import (
    AllocationRecorded,
    DeadlinePassed,
    EmissionsRecorded,
    ObligationCarriedOver,
    PenaltyCharged,
    UnitsSurrendered,
)
from gateway.wire.messages import ComplianceReport, ComplianceRow

# The engine's compliance events that concern one installation, told to it as a compliance_report.
INSTALLATION_EVENTS = (AllocationRecorded, EmissionsRecorded, UnitsSurrendered, PenaltyCharged, ObligationCarriedOver)


def compliance_report(
    event: AllocationRecorded | EmissionsRecorded | UnitsSurrendered | PenaltyCharged | ObligationCarriedOver,
) -> ComplianceReport:
    """The report of one installation's compliance event."""
    if isinstance(event, AllocationRecorded):
        return _report(
            "allocation", event.year, event.account, event.ts, units=event.units, credits_left=event.credits_left
        )
    if isinstance(event, EmissionsRecorded):
        return _report(
            "emissions", event.year, event.account, event.ts, tonnes=event.tonnes, obligation=event.obligation
        )
    if isinstance(event, UnitsSurrendered):
        return _report(
            "surrender",
            event.year,
            event.account,
            event.ts,
            instrument=event.instrument,
            units=event.units,
            outstanding=event.outstanding,
        )
    if isinstance(event, PenaltyCharged):
        return _report(
            "penalty",
            event.year,
            event.account,
            event.ts,
            tonnes=event.shortfall,
            penalty=event.penalty,
            owed=event.owed,
        )
    return _report(
        "carried_over", event.from_year, event.account, event.ts, tonnes=event.tonnes, obligation=event.obligation
    )


def year_closed_report(event: DeadlinePassed) -> ComplianceReport:
    """The close of a year, to the authority that closed it: installations short, penalties and tonnes in all."""
    return _report(
        "year_closed", event.year, None, event.ts, tonnes=event.carried_over, penalty=event.penalties, date=event.date
    )


def _report(event: str, year: int, account: str | None, ts: int, **fields: object) -> ComplianceReport:
    values: dict = dict.fromkeys(
        ("instrument", "units", "tonnes", "obligation", "outstanding", "credits_left", "penalty", "owed", "date")
    )
    values.update(fields)
    return ComplianceReport(event=event, year=year, account=account, ts=ts, **values)


def position_rows(
    engine: Engine, account: str | None, year: int | None, after: str | None = None, limit: int | None = None
) -> list[ComplianceRow]:
    """Rows of the compliance report: one installation's (``account``) or every one's (None) after ``after``, at
    most ``limit``; one year or all."""
    return [
        ComplianceRow(
            year=row.year,
            account=row.account,
            allocation=row.allocation,
            emissions=row.emissions,
            carried_in=row.carried_in,
            obligation=row.obligation,
            surrendered={symbol: units for symbol, units in row.surrendered if units},
            credit_entitlement=row.credit_cap,
            credits_left=row.credits_left,
            shortfall=row.shortfall,
            penalty=row.penalty,
            penalty_owed=row.penalty_owed,
            closed=row.closed,
        )
        for row in engine.compliance_report(year, account=account, after=after, limit=limit)
    ]
