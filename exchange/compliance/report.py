"""The compliance report: per year and installation, what was owed, surrendered and charged.

How this works: :func:`compliance_report` reads the engine's compliance
state and changes nothing; :func:`format_report` lays the rows out for a
terminal (tonnes as integers, euros with two decimals).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from ..instruments import cents_to_eur
from .state import Compliance, YearRecord


class ComplianceReportRow(NamedTuple):
    """One installation's compliance for one year."""

    year: int
    account: str
    credit_limit_bps: int
    allocation: int | None  # free allocation of the year, units; None: not recorded
    emissions: int | None  # verified tonnes; None: not recorded
    carried_in: int  # tonnes carried over from the year before (make-good)
    obligation: int  # emissions + carried_in
    surrendered: tuple[tuple[str, int], ...]  # (symbol, units) for every eligible symbol: allowances, then credits
    allowances: int  # units of allowances surrendered
    credits: int  # units of project credits surrendered
    credit_cap: int  # most project credits that may count (over the phase when the cap is on allocation)
    credits_left: int  # of which not yet used
    shortfall: int  # open year: tonnes still to surrender; closed: tonnes missing at the deadline
    penalty: int  # cents charged at the deadline (0 while the year is open)
    penalty_paid: int  # cents taken from cash (penalty_collection "cash")
    penalty_owed: int  # cents owed to the authority
    closed: bool  # the year's deadline has passed


def compliance_report(
    compliance: Compliance,
    year: int | None = None,
    account: str | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> list[ComplianceReportRow]:
    """Per year, per registered installation: obligation, surrendered by unit type, shortfall, penalty.

    ``year`` None: every year any installation has an obligation for. Every
    registered installation has a row in each year reported (zeros where it
    has no obligation). Rows by year, then account. ``account``: that
    installation's rows alone (its own years when ``year`` is None); ``after``
    and ``limit``: a page of installations, those whose id sorts after
    ``after``, at most ``limit`` rows. Pure: reads, never changes.
    """
    installations = compliance.installations
    if account is not None:
        one = installations.get(account)
        installations = {} if one is None else {account: one}
    if after is not None:
        installations = {a: i for a, i in installations.items() if a > after}
    if year is None:
        years = sorted({y for installation in installations.values() for y in installation.years})
    else:
        years = [year]
    symbols = compliance.config.allowances + compliance.config.credits
    rows: list[ComplianceReportRow] = []
    for y in years:
        closed = compliance.is_closed(y)
        for account_id in sorted(installations):
            installation = installations[account_id]
            record = installation.years.get(y) or YearRecord()
            surrendered = tuple((symbol, record.surrendered.get(symbol, 0)) for symbol in symbols)
            entitlement, used = compliance.credit_entitlement(installation, y)
            if record.closed:
                shortfall = record.shortfall
            else:
                shortfall = record.obligation - record.total_surrendered
            if limit is not None and len(rows) == limit:
                return rows
            rows.append(
                ComplianceReportRow(
                    y,
                    account_id,
                    installation.credit_limit_bps,
                    record.allocation,
                    record.emissions,
                    record.carried_in,
                    record.obligation,
                    surrendered,
                    record.total_surrendered - record.credits,
                    record.credits,
                    entitlement,
                    entitlement - used,
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
        ["year", "account", "allocation", "emissions", "carried", "obligation"]
        + symbols
        + ["shortfall", "penalty EUR", "paid EUR", "owed EUR", "status"]
    )
    table = [header]
    for row in rows:
        table.append(
            [
                str(row.year),
                row.account,
                "-" if row.allocation is None else str(row.allocation),
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
