"""The command line as a user runs it: the demo, and a served exchange driven by the one-shot commands.

``carbonx serve`` runs in its own process on a free loopback port and is
stopped with SIGTERM, as an operator would: it must log out and exit 0.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from exchange.clearing import listed_contracts
from gateway.cli.main import main
from gateway.config import load_futures, load_instruments


def test_demo_trades_closes_the_year_and_reconciles(capsys):
    assert main(["demo", "--orders", "300", "--live", "off", "--statement", "bank"]) == 0
    out = capsys.readouterr().out
    assert "300 participant actions" in out
    assert "trade #1 " in out
    assert "reconciliation OK" in out
    # compliance over the wire: the authority closes 2025; the paper mill (400,000 t emitted, 200,000 EUA held
    # when the demo begins) falls short and owes the penalty; no CER counts for 2025
    closing = out[out.index("compliance 2025, closed by de-authority over the wire") :].splitlines()
    assert "compliance year 2025 closed on 2026" in closing[0] and "t short in all" in closing[0]
    mill = next(line for line in closing if "paper-mill" in line)
    assert "250,000" in mill and "400,000" in mill and "CER" not in mill and mill.endswith("closed")
    assert "Statement of account bank" in out.split("reconciliation OK")[1]
    # the futures curve (three Decembers in contango), each day's variation margin, the November expiry
    curve = next(line for line in out.splitlines() if line.startswith("futures over spot"))
    asks = [float(part.split(" ask ")[1]) for part in curve.split(": ", 1)[1].split("; ")]
    assert len(asks) == 4 and asks == sorted(asks)  # the November month, then Decembers ever dearer
    assert out.count("    variation margin: ") == 3
    assert "block EUAZ27: utility-north buys 50 lots from bank at EUR" in out  # the second December, off the book
    assert "EUAX26 expired at its final price" in out and "delivered EUAX26: 9,000 t from bank to cdm-developer" in out


def test_demo_is_the_same_day_for_the_same_seed(capsys):
    def trades() -> list[str]:
        assert main(["demo", "--orders", "150", "--live", "off", "--seed", "7"]) == 0
        return [line for line in capsys.readouterr().out.splitlines() if line.startswith("trade #")]

    first = trades()
    assert first and first == trades()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def carbonx(*args: str, secret: str = "carbonx-demo") -> subprocess.CompletedProcess:
    env = {**os.environ, "CARBONX_SECRET": secret}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *args], capture_output=True, text=True, env=env, timeout=60
    )


def serve(port: int, data_dir, *options: str, settings: tuple[str, ...] = ()) -> subprocess.Popen:
    """``carbonx [options] serve [settings]`` on ``port``, once it takes connections (``options``: --instruments,
    ...; ``settings``: exchange.toml's, as serve's flags)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli.main",
            *options,
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            *settings,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("carbonx serve did not start listening")
    return process


@pytest.fixture
def served(tmp_path):
    port = free_port()
    process = serve(port, tmp_path)
    yield port, process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_one_shot_commands_against_a_served_exchange_and_sigterm_stops_it_cleanly(served):
    port, process = served
    at = ["--port", str(port)]
    sold = carbonx("order", *at, "--account", "bank", "sell", "5", "EUA", "70.50", "--clid", "s1")
    assert sold.returncode == 0, sold.stderr
    assert "new: sell 5 lots EUA @ EUR 70.50 GTC" in sold.stdout
    bought = carbonx("order", *at, "--account", "broker", "buy", "3", "EUA", "70.50", "--tif", "IOC")
    assert bought.returncode == 0
    assert "trade #1: 3 lots @ EUR 70.50 as taker" in bought.stdout
    book = carbonx("book", "EUA", *at, "--account", "bank")
    assert "last EUR 70.50" in book.stdout and "70.50     2        1" in book.stdout
    status = carbonx("status", "--clid", "s1", *at, "--account", "bank")
    assert "status partially_filled, filled 3/5 at avg EUR 70.5000, open 2" in status.stdout
    balances = carbonx("balances", *at, "--account", "bank")
    assert "EUA" in balances.stdout and "2,000 t" in balances.stdout  # the rest of the sell holds 2 lots
    unknown = carbonx("cancel", "999", *at, "--account", "bank")
    assert unknown.returncode == 1 and "402 no such order" in unknown.stdout
    canceled = carbonx("cancel", "--clid", "s1", *at, "--account", "bank")
    assert canceled.returncode == 0 and "canceled (USER)" in canceled.stdout
    refused = carbonx("balances", *at, "--account", "bank", secret="wrong")
    assert refused.returncode == 3 and "702" in refused.stderr
    not_operator = carbonx("kill-switch", "bank", *at, "--account", "bank")
    assert not_operator.returncode == 1 and "712" in not_operator.stdout
    killed = carbonx("kill-switch", "bank", *at, "--account", "market-ops")
    assert killed.returncode == 0 and "blocked" in killed.stdout
    blocked = carbonx("order", *at, "--account", "bank", "sell", "1", "EUA", "70.50")
    assert blocked.returncode == 1 and "206" in blocked.stdout

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    log = [json.loads(line) for line in process.stderr.read().splitlines() if line.startswith("{")]
    events = [entry["event"] for entry in log]
    assert events[:2] == ["recovered", "listening"] and events[-1] == "stopped" and "snapshot" in events
    assert "logon_failed" in events


def test_no_exchange_listening_is_a_clear_error():
    result = carbonx("balances", "--port", str(free_port()), "--account", "bank")
    assert result.returncode == 3 and "no session with the exchange" in result.stderr
    assert "Traceback" not in result.stderr


def test_replace_changes_quantity_and_price_by_order_id_or_client_order_id(served):
    port, _ = served
    at = ["--port", str(port), "--account", "bank"]
    assert carbonx("order", *at, "sell", "5", "EUA", "70.50", "--clid", "r1").returncode == 0
    assert carbonx("order", *at, "sell", "2", "EUA", "71.00", "--clid", "r2").returncode == 0
    smaller = carbonx("replace", "--clid", "r1", "--quantity", "4", *at)
    assert smaller.returncode == 0, smaller.stderr
    assert smaller.stdout.strip() == (
        "order 1 (r1) replaced (priority kept): sell 4 lots EUA @ EUR 70.50 GTC; status new, filled 0/4, open 4"
    )
    moved = carbonx("replace", "--order-id", "1", "--price", "70.40", "--quantity", "3", *at)
    assert moved.returncode == 0 and "replaced (priority lost): sell 3 lots EUA @ EUR 70.40" in moved.stdout
    # a new price that crosses trades at once: the fills follow the replaced report
    assert carbonx("order", "--port", str(port), "--account", "broker", "buy", "1", "EUA", "70.30").returncode == 0
    crossing = carbonx("replace", "--clid", "r1", "--price", "70.30", *at)
    assert crossing.returncode == 0
    assert crossing.stdout.splitlines()[0].startswith(
        "order 1 (r1) replaced (priority lost): sell 3 lots EUA @ EUR 70.30"
    )
    assert "trade #1: 1 lots @ EUR 70.30 as taker" in crossing.stdout
    unknown = carbonx("replace", "--order-id", "99", "--price", "70.10", *at)
    assert unknown.returncode == 1 and "replace_order refused: 402 no such order" in unknown.stdout
    for wrong, says in (
        (["--clid", "r1"], "give the new --quantity, the new --price, or both"),
        (["--price", "70.10"], "name the order by --order-id or by --clid: one of the two"),
        (["--order-id", "1", "--clid", "r1", "--quantity", "2"], "one of the two"),
        (["--clid", "r1", "--quantity", "0"], "quantity 0 is not above zero"),
    ):
        refused = carbonx("replace", *wrong, *at)
        assert refused.returncode == 2 and says in refused.stderr and len(refused.stderr.splitlines()) == 1, wrong


def test_mass_cancel_one_instrument_or_all(served):
    port, _ = served
    at = ["--port", str(port), "--account", "bank"]
    for order in (["sell", "5", "EUA", "71.00"], ["buy", "2", "CER", "57.50"], ["sell", "1", "EUA", "72.00"]):
        assert carbonx("order", *at, *order).returncode == 0
    cer = carbonx("mass-cancel", "CER", *at)
    assert cer.returncode == 0, cer.stderr
    lines = cer.stdout.splitlines()
    assert len(lines) == 2 and "canceled (MASS_CANCEL): buy 2 lots CER @ EUR 57.50" in lines[0]
    assert lines[1] == "mass cancel (CER): 1 orders canceled"
    unknown = carbonx("mass-cancel", "UKA", *at)
    assert unknown.returncode == 1 and "mass_cancel refused: 101 unknown instrument" in unknown.stdout
    everything = carbonx("mass-cancel", *at)
    assert everything.returncode == 0
    assert everything.stdout.count("canceled (MASS_CANCEL): sell") == 2
    assert everything.stdout.splitlines()[-1] == "mass cancel (all instruments): 2 orders canceled"
    nothing = carbonx("mass-cancel", *at)
    assert nothing.returncode == 0 and nothing.stdout.strip() == "mass cancel (all instruments): 0 orders canceled"
    book = carbonx("book", "EUA", *at)
    assert "(empty book)" in book.stdout


def test_md_follows_the_feed_on_the_gateway_socket(served):
    port, _ = served
    at = ["--port", str(port)]
    assert carbonx("order", *at, "--account", "bank", "sell", "5", "EUA", "70.50").returncode == 0
    assert carbonx("order", *at, "--account", "broker", "buy", "3", "EUA", "70.50").returncode == 0
    assert carbonx("order", *at, "--account", "broker", "buy", "2", "EUA", "70.40").returncode == 0
    view = carbonx("md", "EUA", "CER", *at, "--account", "speculator", "--seconds", "1")
    assert view.returncode == 0, view.stderr
    lines = view.stdout.splitlines()
    assert lines[0].startswith("EUA  continuous  last EUR 70.50  volume 3 lots in 1 trades  VWAP EUR 70.5000")
    assert any("| 70.50     2        1" in line for line in lines)
    assert any("1        2     70.40 |" in line for line in lines)
    assert any(line.startswith("CER  continuous  last EUR -") for line in lines)
    unknown = carbonx("md", "UKA", *at, "--account", "bank", "--seconds", "1")
    assert unknown.returncode == 2 and "unknown instrument UKA" in unknown.stderr


def test_phase_and_auction_commands(served):
    port, _ = served
    at = ["--port", str(port)]
    halted = carbonx("phase", "EUA", "halted", *at, "--account", "market-ops")
    assert halted.returncode == 0 and halted.stdout.strip() == "EUA: continuous -> halted", halted.stdout
    refused = carbonx("phase", "EUA", "closing_call", *at, "--account", "market-ops")
    assert refused.returncode != 0 and "505" in refused.stdout
    assert carbonx("phase", "EUA", "continuous", *at, "--account", "bank").returncode != 0  # not an operator
    reopened = carbonx("phase", "EUA", "continuous", "--from-phase", "halted", *at, "--account", "market-ops")
    assert reopened.stdout.strip() == "EUA: halted -> continuous", reopened.stdout

    opened = carbonx("auction", "open", "DE-T", "EUA", "1000", "--window", "2", *at, "--account", "de-auctioneer")
    assert opened.returncode == 0 and "auction DE-T: 1,000 EUA offered by de-auctioneer, open" in opened.stdout
    bid = carbonx("auction", "bid", "DE-T", "b1", "70.25", "1000", *at, "--account", "bank")
    # (held: the price and the auction fee, EUR 1.41 on each lot of 500: config/exchange.toml)
    assert bid.stdout.strip() == "bid b1 in auction DE-T: placed, 1,000 at EUR 70.25 (EUR 70252.82 held)"
    not_admitted = carbonx("auction", "bid", "DE-T", "p1", "70.25", "500", *at, "--account", "paper-mill")
    assert not_admitted.returncode != 0 and "814" in not_admitted.stdout
    admitted = carbonx("auction", "admit", "paper-mill", *at, "--account", "market-ops")
    assert admitted.stdout.strip() == "paper-mill: admitted to bid in primary auctions", admitted.stdout
    withdrawn = carbonx("auction", "admit", "paper-mill", "--withdraw", *at, "--account", "market-ops")
    assert withdrawn.stdout.strip() == "paper-mill: no longer admitted to bid", withdrawn.stdout
    odd = carbonx("auction", "bid", "DE-T", "b2", "70.25", "700", *at, "--account", "bank")
    assert odd.returncode != 0 and "803" in odd.stdout
    time.sleep(2.5)
    report = carbonx("auction", "report", "DE-T", *at, "--account", "bank")
    assert "cleared at EUR 70.25: 1,000 sold for EUR 70250.00" in report.stdout, report.stdout
    assert "total bids 1,000 (cover ratio 1.00), bidders 1, successful 1" in report.stdout


def test_a_trader_lists_open_orders_and_trades_and_watches_the_market_while_trading(served):
    port, process = served
    at = ["--port", str(port)]
    assert carbonx("order", *at, "--account", "bank", "sell", "5", "EUA", "70.50", "--clid", "s1").returncode == 0
    assert carbonx("order", *at, "--account", "bank", "sell", "2", "EUA", "71.00", "--clid", "s2").returncode == 0
    assert carbonx("order", *at, "--account", "broker", "buy", "3", "EUA", "70.50", "--tif", "IOC").returncode == 0
    # carbonx md watches with a market-data session: the account trades meanwhile, and its end cancels nothing.
    env = {**os.environ, "CARBONX_SECRET": "carbonx-demo"}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "md", "EUA", *at, "--account", "bank", "--seconds", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(1.5)
        during = carbonx("order", *at, "--account", "bank", "sell", "1", "EUA", "72.00", "--clid", "s3")
        assert during.returncode == 0, during.stdout + during.stderr
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 0, err
    orders = carbonx("orders", *at, "--account", "bank")
    assert orders.returncode == 0, orders.stderr
    lines = orders.stdout.splitlines()
    assert [line.split()[2] for line in lines[:-1]] == ["(s1)", "(s2)", "(s3)"]  # all still open, oldest first
    assert "EUA S 2 of 5 lots at EUR 70.50 GTC partially_filled" in lines[0]
    assert lines[-1] == "3 open orders"
    trades = carbonx("trades", *at, "--account", "bank")
    assert trades.returncode == 0
    assert "(s1) EUA sold 3 lots at EUR 70.50 maker, fee EUR 6.00" in trades.stdout
    assert trades.stdout.splitlines()[-1] == "1 trade today, fees EUR 6.00"
    none = carbonx("trades", "CER", *at, "--account", "bank")
    assert none.stdout.splitlines()[-1] == "0 trades today, fees EUR 0.00"
    unknown = carbonx("orders", "XYZ", *at, "--account", "bank")
    assert unknown.returncode == 1 and "101" in unknown.stdout


def test_futures_served_traded_and_shown_by_positions_and_margin(tmp_path):
    """``carbonx serve --futures on``: the day's EUA contracts trade like spot; ``carbonx positions`` and
    ``carbonx margin`` show what the trade left (docs/FUTURES.md)."""
    port = free_port()
    process = serve(port, tmp_path, settings=("--futures", "on"))
    try:
        at = ["--port", str(port)]
        book = carbonx("book", "EUA", *at, "--account", "bank")
        assert book.returncode == 0, book.stderr
        futures = load_futures(load_instruments())
        (series,) = futures.series
        today = int(dt.datetime.now(dt.UTC).strftime("%Y%m%d"))
        listed = listed_contracts(series, today, futures.business_day)
        symbol = [c.symbol for c in listed if c.month == 12][-1]  # the farthest December, listed at start
        sold = carbonx("order", *at, "--account", "bank", "sell", "4", symbol, "72.00")
        assert sold.returncode == 0 and f"new: sell 4 lots {symbol} @ EUR 72.00" in sold.stdout, sold.stdout
        bought = carbonx("order", *at, "--account", "broker", "buy", "4", symbol, "72.00", "--tif", "IOC")
        assert "trade #1: 4 lots @ EUR 72.00 as taker" in bought.stdout, bought.stdout
        positions = carbonx("positions", *at, "--account", "broker")
        assert positions.returncode == 0 and f"{symbol}" in positions.stdout and "+4 lots" in positions.stdout
        margin = carbonx("margin", *at, "--account", "broker")
        lines = {line.split("EUR")[0].strip(): line.split("EUR")[1].strip() for line in margin.stdout.splitlines()[1:]}
        assert lines["initial margin"] == "32,000.00"  # 4 lots x 1,000 t x EUR 8.00
        assert lines["maintenance margin"] == "25,600.00"  # 80% of it
        flat = carbonx("positions", *at, "--account", "cement-works")
        assert "no futures positions" in flat.stdout
        # a block trade: each side reports it; the second report trades it
        terms = ("50", symbol, "72.10", "--id", "B1")
        first = carbonx("block", *at, "--account", "bank", "sell", *terms, "--counterparty", "broker")
        assert first.returncode == 0 and "reported (waiting for the other side)" in first.stdout, first.stdout
        second = carbonx("block", *at, "--account", "broker", "buy", *terms, "--counterparty", "bank")
        assert second.returncode == 0, second.stdout
        assert f"block B1 with bank: traded #2, buy 50 lots {symbol} @ EUR 72.10, fee EUR 175.00" in second.stdout
        assert "+54 lots" in carbonx("positions", *at, "--account", "broker").stdout
        small = carbonx(
            "block", *at, "--account", "bank", "sell", "10", symbol, "72.10", "--id", "B2", "--counterparty", "broker"
        )
        assert small.returncode != 0 and "130" in small.stdout, small.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_compliance_commands_for_the_authority_and_an_installation(served):
    port, _ = served
    at = ["--port", str(port)]
    authority = [*at, "--account", "de-authority"]
    allocated = carbonx("compliance", "allocate", "paper-mill", "2025", "120000", *authority)
    assert allocated.returncode == 0, allocated.stderr
    assert "paper-mill 2025: allocation 120,000 recorded" in allocated.stdout
    emitted = carbonx("compliance", "emissions", "paper-mill", "2025", "100000", *authority)
    assert "verified emissions 100,000 t; obligation 100,000 t" in emitted.stdout
    given = carbonx("compliance", "surrender", "2025", "EUA", "60000", *at, "--account", "paper-mill")
    assert "60,000 EUA surrendered; 40,000 t outstanding" in given.stdout, given.stdout + given.stderr
    refused = carbonx("compliance", "surrender", "2025", "CER", "1000", *at, "--account", "paper-mill")
    assert refused.returncode == 1 and "614" in refused.stdout
    not_yours = carbonx("compliance", "allocate", "paper-mill", "2025", "1", *at, "--account", "paper-mill")
    assert not_yours.returncode == 1 and "712" in not_yours.stdout
    position = carbonx("compliance", "position", "--year", "2025", *at, "--account", "paper-mill")
    lines = position.stdout.splitlines()
    assert lines[0].split()[:3] == ["year", "account", "allocation"]
    assert "120,000" in lines[1] and "60,000 EUA" in lines[1] and "40,000" in lines[1] and lines[1].endswith("open")
    closed = carbonx("compliance", "close", "2025", *authority)
    assert closed.returncode == 0 and "compliance year 2025 closed" in closed.stdout, closed.stdout + closed.stderr
    after = carbonx("compliance", "position", "--year", "2025", "--installation", "paper-mill", *authority)
    assert after.stdout.splitlines()[1].endswith("closed")
