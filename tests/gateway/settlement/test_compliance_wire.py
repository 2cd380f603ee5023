"""Compliance over the wire (docs/COMPLIANCE.md, PROTOCOL.md 7.27-7.31 and 8.26-8.27): the authority records an
installation's allocation and verified emissions and closes the year, the installation surrenders and reads
its position; each side is told; the ledger reconciles; a replay of the journal rebuilds it exactly.

Before this, compliance ran only as the exchange's own commands inside ``carbonx demo``: no message, no
command (a finding of issue 19). The exchange's clock is the real one here, so the year closed is two years
back (its deadline, 30 September of last year, has passed whatever today is) and this year cannot be closed.
"""

from __future__ import annotations

import datetime as dt

from gateway_helpers import Inbox, exchange_on_port, session
from test_futures_settlement import assert_ledger_reconciles, replayed

from exchange import RejectCode
from gateway.config import load_compliance

THIS_YEAR = dt.datetime.now(dt.UTC).year
YEAR = THIS_YEAR - 2  # in the phase 2021-2030 until 2032: only allowances count


async def next_report(inbox: Inbox, event: str) -> dict:
    """The next compliance_report of this event in the account's numbered messages (others passed over)."""
    while (message := await inbox.next())["type"] != "compliance_report" or message["event"] != event:
        pass
    return message


async def comply(gateway) -> None:
    """utility-north: 400,000 allocated and 300,000 emitted in YEAR; it surrenders 250,000 EUAs and is short by
    50,000 at the close, charged by the authority and carried into the next year."""
    async with (
        session(gateway, "de-authority") as authority,
        session(gateway, "utility-north") as utility,
        session(gateway, "bank") as bank,
    ):
        inbox = Inbox(utility)
        allocation = await authority.record_allocation("utility-north", YEAR, 400_000)
        assert (allocation["type"], allocation["event"], allocation["units"]) == (
            "compliance_report",
            "allocation",
            400_000,
        )
        assert allocation["credits_left"] == 0  # no credits count from 2013
        emissions = await authority.record_emissions("utility-north", YEAR, 300_000)
        assert (emissions["event"], emissions["tonnes"], emissions["obligation"]) == ("emissions", 300_000, 300_000)
        told = [await inbox.expect(type="compliance_report") for _ in range(2)]
        assert [m["event"] for m in told] == ["allocation", "emissions"] and "request_id" not in told[0]

        # Only an authority records; only an installation surrenders; a CER counts for no year since 2013.
        refused = await utility.record_emissions("utility-north", YEAR, 1)
        assert (refused["type"], refused["code"]) == ("reject", int(RejectCode.NOT_AUTHORISED))
        refused = await bank.surrender(YEAR, "EUA", 1_000)
        assert (refused["code"], refused["request"]) == (int(RejectCode.NOT_AN_INSTALLATION), "surrender")
        refused = await utility.surrender(YEAR, "CER", 1_000)
        assert refused["code"] == int(RejectCode.UNIT_NOT_ELIGIBLE_FOR_YEAR)
        surrendered = await utility.surrender(YEAR, "EUA", 250_000)
        assert (surrendered["event"], surrendered["units"], surrendered["outstanding"]) == (
            "surrender",
            250_000,
            50_000,
        )

        position = await utility.compliance_position(YEAR)
        (row,) = position["rows"]
        assert (row["account"], row["allocation"], row["obligation"], row["surrendered"], row["shortfall"]) == (
            "utility-north",
            400_000,
            300_000,
            {"EUA": 250_000},
            50_000,
        )
        refused = await utility.compliance_position(YEAR, account="paper-mill")  # another installation's: no
        assert refused["code"] == int(RejectCode.NOT_AUTHORISED)
        every = await authority.compliance_position(YEAR)
        assert "utility-north" in {row["account"] for row in every["rows"]} and every["more"] is False
        later = await authority.compliance_position(YEAR, after="utility-north")  # the next page: none after it
        assert [row["account"] for row in later["rows"] if row["account"] <= "utility-north"] == []
        unbounded = await authority.compliance_position()  # every installation, every year: one year at a time
        assert (unbounded["type"], unbounded["code"]) == ("reject", int(RejectCode.INVALID_FIELD))

        # This year's deadline has not come; YEAR's has.
        refused = await authority.close_compliance_year(THIS_YEAR)
        assert (refused["type"], refused["code"]) == ("request_rejected", int(RejectCode.DEADLINE_NOT_DUE))
        closed = await authority.close_compliance_year(YEAR)
        per_tonne = load_compliance().penalty_for(YEAR)
        assert (closed["event"], closed["year"], closed["tonnes"]) == ("year_closed", YEAR, 50_000)
        assert closed["penalty"] >= 50_000 * per_tonne  # this one's and any other installation's short
        penalty = await next_report(inbox, "penalty")
        assert (penalty["tonnes"], penalty["penalty"], penalty["owed"]) == (
            50_000,
            50_000 * per_tonne,
            50_000 * per_tonne,
        )
        carried = await next_report(inbox, "carried_over")
        assert (carried["year"], carried["tonnes"], carried["obligation"]) == (YEAR, 50_000, 50_000)
        late = await utility.surrender(YEAR, "EUA", 1)
        assert late["code"] == int(RejectCode.COMPLIANCE_YEAR_CLOSED)


async def test_compliance_over_the_wire_reconciles(tmp_path):
    ledger = tmp_path / "ledger.sqlite3"
    async with exchange_on_port(ledger=ledger) as gateway:
        before = gateway.engine.balances("utility-north")
        cash, eua = before.cash, before.units["EUA"]
        await comply(gateway)
        engine = gateway.engine
        after = engine.balances("utility-north")
        assert (after.cash, after.units["EUA"]) == (cash, eua - 250_000)  # the authority levies: no cash moved
        assert engine.compliance.retired == {"EUA": 250_000}
    assert_ledger_reconciles(engine, ledger)


async def test_a_replay_rebuilds_compliance_exactly(tmp_path):
    data_dir = tmp_path / "data"
    async with exchange_on_port(data_dir=str(data_dir)) as gateway:
        await comply(gateway)
        engine = gateway.engine
    again = replayed(data_dir, None)
    assert again.state_hash() == engine.state_hash()
    assert again.compliance_report(YEAR + 1) == engine.compliance_report(YEAR + 1)
