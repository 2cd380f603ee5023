"""``carbonx compliance``: the EU ETS registry's side on the exchange, as an authority or an installation.

How this works: one subcommand a request (allocate, emissions, close as the authority; surrender as an
installation; position for either), each a one-shot command (:mod:`gateway.cli.one_shot`). A compliance
report prints as one line (:func:`report_line`), a position as a table of years (:func:`position_lines`);
euros with two decimals, units and tonnes as whole numbers.
"""

from __future__ import annotations

import argparse

from gateway.cli.display import describe_report, eur
from gateway.cli.one_shot import REFUSED, add_trader, tick_sizes
from gateway.client import ExchangeClient


def report_line(report: dict) -> str:
    """One line for a compliance_report."""
    event, year, account = report["event"], report["year"], report["account"]
    if event == "allocation":
        return f"{account} {year}: allocation {report['units']:,} recorded; credits that may still count {report['credits_left']:,}"
    if event == "emissions":
        return f"{account} {year}: verified emissions {report['tonnes']:,} t; obligation {report['obligation']:,} t"
    if event == "surrender":
        return f"{account} {year}: {report['units']:,} {report['instrument']} surrendered; {report['outstanding']:,} t outstanding"
    if event == "penalty":
        return (
            f"{account} {year}: {report['tonnes']:,} t short, penalty EUR {eur(report['penalty'])}, "
            f"EUR {eur(report['owed'])} of it owed to the authority"
        )
    if event == "carried_over":
        return f"{account}: {report['tonnes']:,} t carried from {year} into {year + 1} (obligation {report['obligation']:,} t)"
    return (
        f"compliance year {year} closed on {report['date']}: {report['tonnes']:,} t short in all, "
        f"penalties EUR {eur(report['penalty'])}"
    )


def position_lines(answer: dict) -> list[str]:
    """The compliance_position answer as a table: a row per installation and year."""
    header = [
        "year",
        "account",
        "allocation",
        "emissions",
        "obligation",
        "surrendered",
        "credits left",
        "shortfall",
        "penalty EUR",
        "status",
    ]
    table = [header]
    for row in answer["rows"]:
        surrendered = ", ".join(f"{units:,} {symbol}" for symbol, units in sorted(row["surrendered"].items())) or "-"
        table.append(
            [
                str(row["year"]),
                row["account"],
                "-" if row["allocation"] is None else f"{row['allocation']:,}",
                "-" if row["emissions"] is None else f"{row['emissions']:,}",
                f"{row['obligation']:,}",
                surrendered,
                f"{row['credits_left']:,}",
                f"{row['shortfall']:,}",
                eur(row["penalty"]),
                "closed" if row["closed"] else "open",
            ]
        )
    if len(table) == 1:
        return ["no compliance records"]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in table]


async def _compliance(client: ExchangeClient, args: argparse.Namespace) -> int:
    command = args.compliance_command
    if command == "allocate":
        answer = await client.record_allocation(args.installation, args.year, args.units)
    elif command == "emissions":
        answer = await client.record_emissions(args.installation, args.year, args.tonnes)
    elif command == "close":
        answer = await client.close_compliance_year(args.year)
    elif command == "surrender":
        answer = await client.surrender(args.year, args.instrument, args.units)
    else:
        answer = await client.compliance_position(args.year, args.installation)
        while answer.get("more"):  # every installation's rows of the year, page after page
            page = await client.compliance_position(args.year, args.installation, answer["rows"][-1]["account"])
            if page["type"] != "compliance_position":
                answer = page
                break
            answer = {**page, "rows": answer["rows"] + page["rows"]}
    if answer["type"] in ("request_rejected", "reject"):
        print(describe_report(answer, tick_sizes(client)))
        return REFUSED
    for line in position_lines(answer) if answer["type"] == "compliance_position" else [report_line(answer)]:
        print(line)
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """compliance allocate|emissions|close|surrender|position."""
    compliance = commands.add_parser(
        "compliance",
        help="EU ETS compliance: allocations, verified emissions and the year's close (authorities); "
        "surrenders (installations); positions",
    )
    sub = compliance.add_subparsers(dest="compliance_command", required=True)
    allocate = sub.add_parser("allocate", help="(authority) an installation's free allocation for a year")
    allocate.add_argument("installation")
    allocate.add_argument("year", type=int)
    allocate.add_argument("units", type=int)
    emissions = sub.add_parser("emissions", help="(authority) an installation's verified emissions for a year")
    emissions.add_argument("installation")
    emissions.add_argument("year", type=int)
    emissions.add_argument("tonnes", type=int)
    close = sub.add_parser("close", help="(authority) the year's surrender deadline, today: shortfalls are charged")
    close.add_argument("year", type=int)
    surrender = sub.add_parser("surrender", help="(installation) surrender units against a year's obligation")
    surrender.add_argument("year", type=int)
    surrender.add_argument("instrument")
    surrender.add_argument("units", type=int, help="units (tonnes), not lots")
    position = sub.add_parser("position", help="the account's compliance, year by year (authority: any or all)")
    position.add_argument("--year", type=int)
    position.add_argument("--installation", help="(authority) one installation; default: every one")
    for each in (allocate, emissions, close, surrender, position):
        add_trader(each, _compliance)
