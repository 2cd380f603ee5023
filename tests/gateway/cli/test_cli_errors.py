"""The command line when something is wrong: one line on stderr saying what and what to do, a non-zero exit,
never a traceback, and nothing left behind.

- ``carbonx serve`` and ``carbonx demo`` bind their address before they create or open anything (data
  directory, journal, ledger, settlement): a port in use or an address the machine does not have leaves
  no directory, journal or lock;
- a one-shot command against a port that answers something else (an HTTP server), or never answers, or
  takes no connection, is told so within ``--timeout``; so is :func:`gateway.client.connect`;
- a missing secret without a terminal, and a price that cannot be one, are refused before connecting.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_cli import carbonx, free_port, serve

from gateway.client import NoAnswer, NotAnExchange, connect

REPO = Path(__file__).resolve().parents[3]


def run(*args: str, cwd: Path, env: dict | None = None, **options) -> subprocess.CompletedProcess:
    """``carbonx ARGS`` in ``cwd``, with no terminal, with the repository importable from anywhere."""
    environment = {**os.environ, "CARBONX_SECRET": "carbonx-demo", **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    options.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
        **options,
    )


def one_line_error(result: subprocess.CompletedProcess, code: int, *says: str) -> str:
    """The command failed with ``code`` and said so in one line holding ``says``; no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for text in says:
        assert text in lines[0], lines[0]
    return lines[0]


@contextmanager
def port_taken():
    """A port some other program listens on."""
    with socket.create_server(("127.0.0.1", 0)) as other:
        yield other.getsockname()[1]


# -- serve and demo: the address first ------------------------------------------------------------------------


def test_serve_on_a_port_in_use_says_so_and_creates_nothing(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    with port_taken() as port:
        default = run("serve", "--port", str(port), cwd=tmp_path)  # the default data_dir: ./var/carbonx
        named = run("serve", "--port", str(port), "--data-dir", str(existing), cwd=tmp_path)
    line = one_line_error(default, 2, f"127.0.0.1:{port} is already in use", "--port")
    assert "Settlement" not in line
    one_line_error(named, 2, "already in use")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["existing"]  # no var/carbonx
    assert list(existing.iterdir()) == []  # no journal, ledger or lock in a directory that was there


def test_demo_on_a_port_in_use_says_so_and_creates_nothing(tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    with port_taken() as port:
        result = run(
            "demo", "--port", str(port), "--orders", "10", "--live", "off", cwd=tmp_path, env={"TMPDIR": str(temporary)}
        )
    one_line_error(result, 2, "already in use", "--port")
    assert result.stdout == ""
    assert list(temporary.iterdir()) == []  # not even the demo's temporary data directory


def test_serve_on_an_address_the_machine_lacks(tmp_path):
    lacking = run("serve", "--host", "192.0.2.1", "--port", str(free_port()), cwd=tmp_path)  # TEST-NET-1
    one_line_error(lacking, 2, "192.0.2.1 is not an address of this machine", "--host")
    unknown = run("serve", "--host", "no-such-host.invalid", "--port", str(free_port()), cwd=tmp_path)
    one_line_error(unknown, 2, "no-such-host.invalid", "--host")
    assert list(tmp_path.iterdir()) == []


def test_serve_still_runs_after_a_refused_start(tmp_path):
    """The data directory a refused start did not touch serves as usual once the port is free."""
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        one_line_error(run("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"), cwd=tmp_path), 2)
    process = serve(port, tmp_path / "data")
    try:
        balances = carbonx("balances", "--port", str(port), "--account", "bank")
        assert balances.returncode == 0 and "account bank" in balances.stdout
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0


# -- one-shot commands against the wrong peer ----------------------------------------------------------------


class StrictHttp(http.server.BaseHTTPRequestHandler):
    """An HTTP server that, like nginx, refuses a request that cannot be HTTP as soon as it arrives (without
    waiting for a line end, as http.server's own handlers do)."""

    default_request_version = "HTTP/1.1"  # (not 0.9, which has no status line) the refusal starts "HTTP/1.0 400"

    def handle(self) -> None:
        self.raw_requestline = self.request.recv(65536)
        if self.parse_request():  # (never: a logon frame is no request line) answer anything else with 400
            self.send_error(400)

    def log_message(self, *args) -> None:
        pass


class QuietHttp(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextmanager
def http_server(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_port():
    """A port that takes connections and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    taken: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                taken.append(listener.accept()[0])
            except (TimeoutError, OSError):
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for connection in taken:
            connection.close()
        listener.close()


def test_a_one_shot_command_against_an_http_server_says_it_is_not_the_exchange(tmp_path):
    with http_server(StrictHttp) as port:
        for command in (["balances"], ["book", "EUA"], ["order", "sell", "1", "EUA", "70.50"]):
            result = run(*command, "--port", str(port), "--account", "bank", cwd=tmp_path)
            one_line_error(result, 3, f"127.0.0.1:{port}", "not the carbonx protocol", "HTTP/1.0 400", "--port")
    # http.server's own handlers wait for a line end that never comes: no answer within --timeout
    with http_server(QuietHttp) as port:
        started = time.monotonic()
        result = run("balances", "--port", str(port), "--account", "bank", "--timeout", "1", cwd=tmp_path)
        one_line_error(result, 3, "did not answer the logon within 1 s", "--timeout")
        assert time.monotonic() - started < 8


def test_a_one_shot_command_against_a_silent_port_gives_up_after_its_timeout(tmp_path):
    with silent_port() as port:
        started = time.monotonic()
        result = run(
            "order",
            "--port",
            str(port),
            "--account",
            "bank",
            "buy",
            "1",
            "EUA",
            "70.00",
            "--timeout",
            "0.5",
            cwd=tmp_path,
        )
        one_line_error(
            result, 3, f"127.0.0.1:{port} took the connection but did not answer the logon within 0.5 s", "--timeout"
        )
        assert time.monotonic() - started < 8
    refused = run("balances", "--port", str(free_port()), "--account", "bank", cwd=tmp_path)
    one_line_error(refused, 3, "nothing listens there", "is the exchange running")
    bad = run("balances", "--port", str(free_port()), "--account", "bank", "--timeout", "0", cwd=tmp_path)
    one_line_error(bad, 2, "--timeout must be a number of seconds above zero")


async def test_connect_times_out_on_a_silent_port_and_refuses_a_foreign_answer():
    with silent_port() as port:
        started = time.monotonic()
        with pytest.raises(NoAnswer, match="did not answer the logon within 0.3 s"):
            async with connect("127.0.0.1", port, "bank", "carbonx-demo", logon_timeout=0.3):
                pass
        assert time.monotonic() - started < 3
    with http_server(StrictHttp) as port:
        with pytest.raises(NotAnExchange, match="HTTP/1.0 400"):
            async with connect("127.0.0.1", port, "bank", "carbonx-demo"):
                pass


async def test_connect_times_out_when_no_connection_is_taken():
    """A listener whose backlog is full takes no connection: the SYN goes unanswered (Linux drops it)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    filling = []
    try:
        for _ in range(8):
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
            filling.append(client)
        started = time.monotonic()
        try:
            async with connect("127.0.0.1", port, "bank", "carbonx-demo", connect_timeout=0.3, logon_timeout=0.3):
                pass
        except NoAnswer as error:
            if "no connection" not in str(error):
                pytest.skip("this system takes connections beyond the backlog")
            assert str(error) == f"no connection to 127.0.0.1:{port} within 0.3 s"
            assert time.monotonic() - started < 3
    finally:
        for client in filling:
            client.close()
        listener.close()


# -- the secret ----------------------------------------------------------------------------------------------


def test_a_missing_secret_without_a_terminal_says_how_to_give_one(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "CARBONX_SECRET"}
    port = str(free_port())  # nothing is connected to: the secret is missing before that
    for stdin in (subprocess.DEVNULL, "closed"):
        options = {"preexec_fn": lambda: os.close(0), "stdin": None} if stdin == "closed" else {"stdin": stdin}
        result = subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", "balances", "--port", port, "--account", "bank"],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
            start_new_session=True,
            **options,
        )
        one_line_error(result, 2, "no secret for bank", "CARBONX_SECRET", "--secret-file")
    secret = tmp_path / "secret"
    secret.write_text("wrong\n")
    refused = run("balances", "--port", port, "--account", "bank", "--secret-file", str(secret), cwd=tmp_path)
    one_line_error(refused, 3, "nothing listens there")  # the file's secret was taken: on to the connection
    missing = run(
        "balances", "--port", port, "--account", "bank", "--secret-file", str(tmp_path / "none"), cwd=tmp_path
    )
    one_line_error(missing, 2, "cannot read the secret from", "--secret-file")


# -- prices --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "says"),
    [
        ("abc", "price 'abc' is not a number: write it in euros with a dot, e.g. 70.25"),
        ("70,25", "price '70,25' is not a number"),
        ("-1", "price -1 is negative"),
        ("0", "price 0 is zero"),
        ("0.00", "price 0.00 is zero"),
        ("70.255", "price 70.255 has too many decimals: prices are whole cents, at most 2 decimals"),
        ("1234567890123", "price 1234567890123 is too large: at most 12 digits before the decimal point"),
    ],
)
def test_a_price_that_cannot_be_one_says_what_is_wrong(tmp_path, price, says):
    port = str(free_port())  # refused before connecting
    order = run("order", "--port", port, "--account", "bank", "buy", "1", "EUA", price, cwd=tmp_path)
    one_line_error(order, 2, "carbonx order: " + says)
    stop = run("order", "--port", port, "--account", "bank", "buy", "1", "EUA", "70.00", "--stop", price, cwd=tmp_path)
    one_line_error(stop, 2, "stop " + says)
    replace = run("replace", "--clid", "x", "--price", price, "--port", port, "--account", "bank", cwd=tmp_path)
    one_line_error(replace, 2, "carbonx replace: " + says)
    bid = run("auction", "bid", "DE-1", "b1", price, "500", "--port", port, "--account", "bank", cwd=tmp_path)
    one_line_error(bid, 2, "bid " + says)


def test_a_price_off_the_tick_names_the_nearest_ones(tmp_path):
    """An exchange whose EUA tick is EUR 0.05: the tick comes from its logon answer."""
    instruments = tmp_path / "instruments.toml"
    shipped = (REPO / "config" / "instruments.toml").read_text()
    eua_on_a_larger_tick = shipped.replace('tick_size_eur = "0.01"', 'tick_size_eur = "0.05"', 1).replace(
        'min_price_eur = "0.01"', 'min_price_eur = "0.05"', 1
    )
    instruments.write_text(eua_on_a_larger_tick)
    port = free_port()
    process = serve(port, tmp_path / "data", "--instruments", str(instruments))
    try:
        at = ["--port", str(port), "--account", "bank"]
        off = carbonx("order", *at, "sell", "1", "EUA", "70.01")
        one_line_error(off, 2, "price 70.01 is not on EUA's tick of EUR 0.05: the nearest prices are 70.00 and 70.05")
        stop = carbonx("order", *at, "sell", "1", "EUA", "70.00", "--stop", "69.99")
        one_line_error(stop, 2, "stop price 69.99 is not on EUA's tick")
        on = carbonx("order", *at, "sell", "1", "EUA", "70.05")
        assert on.returncode == 0 and "new: sell 1 lots EUA @ EUR 70.05" in on.stdout
        cer = carbonx("order", *at, "buy", "1", "CER", "57.51")  # CER keeps its EUR 0.01 tick
        assert cer.returncode == 0, cer.stdout
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0


# -- a full disk ------------------------------------------------------------------------------------------------


@contextmanager
def full_disk(tmp_path: Path):
    """A 1 MiB tmpfs filled to the last byte (needs root: skipped otherwise)."""
    mount = tmp_path / "full"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode(errors='replace').strip()}")
    try:
        with open(mount / "filler", "wb") as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_serve_on_a_full_disk_says_so_and_leaves_nothing(tmp_path):
    with full_disk(tmp_path) as disk:
        before = sorted(path.name for path in disk.iterdir())
        result = run("serve", "--port", "0", "--data-dir", str(disk / "data"), cwd=tmp_path)
        one_line_error(result, 2, "disk")
        assert sorted(path.name for path in disk.iterdir()) == before  # no data directory, ledger or lock
