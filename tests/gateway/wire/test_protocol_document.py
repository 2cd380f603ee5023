"""docs/PROTOCOL.md checked against a real server by a client written from the document alone.

How it works
------------
The client below (``Wire`` and ``Session``) was written only from docs/PROTOCOL.md, with the Python
standard library and the ``msgpack`` package, as a third-party developer would: 4-byte big-endian
length-prefixed MessagePack maps, logon, heartbeats while waiting, request ids, and a check of the
per-account ``seq`` on every message it reads (section 5: consecutive within a session, starting at
``logon_accepted.next_seq``; ``logon_accepted``, ``heartbeat``, ``logout``, ``pong`` and the resend markers carry
none).

Every test talks to a real ``python3 -m gateway.cli.main serve`` process: one server for the module, and a
fresh one for tests that need other settings or a freshly started exchange (the worked example of
section 10). Expected values are those the document states; where the server differs, the test fails.
Every network wait has a timeout, so a mismatch fails instead of hanging.
"""

from __future__ import annotations

import ast
import contextlib
import itertools
import json
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import pytest

PROJECT = Path(__file__).resolve().parents[3]
SECRET = "carbonx-demo"
WAIT = 5.0  # seconds: the longest any single expected message may take

# -- what the document states ------------------------------------------------------------------

# Section 8.1 / section 10 (frame 2): the shipped instruments as logon_accepted states them.
EXPECTED_INSTRUMENTS = [
    {
        "symbol": "EUA",
        "name": "EU Allowance (EU ETS), spot",
        "lot_units": 1000,
        "tick_size": "0.01",
        "min_lots": 1,
        "max_lots": 1000,
        "min_price": 1,
        "max_price": 100000,
        "reference_price": 7000,
        "market_collar": 350,
        "price_band_bps": 500,
        "price_band_sides": "one",
        "maker_fee": 200,
        "taker_fee": 350,
        "volatility_band_bps": 300,
        "volatility_call_seconds": 120,
    },
    {
        "symbol": "CER",
        "name": "Certified Emission Reduction (CDM), spot",
        "lot_units": 1000,
        "tick_size": "0.01",
        "min_lots": 1,
        "max_lots": 1000,
        "min_price": 1,
        "max_price": 100000,
        "reference_price": 5800,
        "market_collar": 300,
        "price_band_bps": 500,
        "price_band_sides": "one",
        "maker_fee": 200,
        "taker_fee": 350,
        "volatility_band_bps": 300,
        "volatility_call_seconds": 120,
    },
    {
        "symbol": "ERU",
        "name": "Emission Reduction Unit (JI), spot",
        "lot_units": 1000,
        "tick_size": "0.01",
        "min_lots": 1,
        "max_lots": 1000,
        "min_price": 1,
        "max_price": 100000,
        "reference_price": 5500,
        "market_collar": 300,
        "price_band_bps": 500,
        "price_band_sides": "one",
        "maker_fee": 200,
        "taker_fee": 350,
        "volatility_band_bps": 300,
        "volatility_call_seconds": 120,
    },
]

# Section 9: the code's text.
TEXT = {
    101: "unknown instrument",
    102: "side must be B (buy) or S (sell)",
    103: "quantity must be a whole number of lots",
    104: "quantity is below the instrument's minimum order size",
    105: "quantity is above the instrument's maximum order size",
    106: "price must be a whole number of cents",
    107: "price is not a multiple of the instrument's tick size",
    108: "price is outside the instrument's allowed price range",
    109: "a limit order needs a price",
    110: "a market order must not carry a price",
    111: "order type must be LIMIT or MARKET",
    112: "time in force must be GTC, DAY, IOC, FOK or GTD",
    113: "display quantity must be a whole number of lots, at least the instrument's minimum and at most "
    "the order quantity",
    114: "stop price must be a positive whole number of cents on the tick",
    115: "a GTD order needs an expire date",
    116: "expire date must be a calendar date written as YYYYMMDD, and only a GTD order has one",
    118: "self-trade prevention must be NONE, CANCEL_RESTING, CANCEL_TAKING or CANCEL_BOTH",
    119: "client order id must be a non-empty string of at most 64 characters or a non-negative integer",
    120: "account must be a non-empty string",
    121: "this combination of order type, time in force and options is not offered",
    201: "no such account: accounts are opened by the exchange",
    202: "not enough available cash (cash less what open orders hold back)",
    203: "not enough available units (units less what open orders hold back)",
    204: "order value (price x quantity x lot) is over the account's limit",
    205: "price is outside the band around the reference price",
    206: "account is blocked by the exchange's kill switch: no new orders",
    301: "post-only order would trade on entry",
    401: "client order id already used by this account today",
    402: "no such order",
    403: "order is already filled, cancelled or expired (too late)",
    405: "give exactly one of order id and client order id",
    406: "new quantity must be above the quantity already filled",
    407: "replace changes neither price nor quantity",
    701: "log on first: logon is the only message accepted before it (closes)",
    702: "logon refused: unknown account or wrong secret (closes)",
    703: "the account already has a session open (closes)",
    704: "frame length is zero or above the maximum frame size (closes)",
    705: "frame body is not exactly one MessagePack map (closes)",
    706: "unknown or missing message type",
    707: "a field is missing, not known for this message type, or of the wrong type",
    708: "over the session's message rate: the message was not processed",
    709: "nothing received within the heartbeat timeout (closes)",
    710: "the session fell too far behind reading its messages (closes)",
    711: "the exchange is shutting down (closes)",
    712: "this account may not send this message (operators only; open_auction: auctioneers; compliance records: "
    "authorities)",
    713: "no logon within the logon timeout (closes)",
    714: "this connection is already logged on",
    715: "the exchange has all the sessions it takes (closes)",
    717: "too many failed logons for this account or from this address: try again after retry_after seconds (closes)",
    718: "too many connections waiting to log on, in all or from this address (closes)",
    719: "the exchange is over capacity: the message was not processed, send it again later",
    720: "a market-data session may only subscribe, unsubscribe, ask for the book, ping, send heartbeats and log out",
}

COMMON_KEYS = {
    "type",
    "exec_type",
    "order_status",
    "order_id",
    "client_order_id",
    "instrument",
    "side",
    "order_type",
    "time_in_force",
    "price",
    "stop_price",
    "display_quantity",
    "expire_date",
    "quantity",
    "cum_quantity",
    "leaves_quantity",
    "avg_price",
    "ts",
}
LOGON_ACCEPTED_KEYS = {
    "type",
    "account",
    "protocol_version",
    "session_id",
    "heartbeat_interval",
    "heartbeat_timeout",
    "max_frame",
    "throttle_rate",
    "throttle_burst",
    "cancel_on_disconnect",
    "operator",
    "next_seq",
    "instruments",
    "ts",
}
UNNUMBERED = {"logon_accepted", "heartbeat", "logout", "pong", "resend_begin", "resend_end"}  # section 5


# -- the client -------------------------------------------------------------------------------


class Closed(Exception):
    """The server closed the connection."""


def pack(message) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


class Wire:
    """One TCP connection speaking the framing of section 1."""

    def __init__(self, port: int, receive_buffer: int | None = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(WAIT)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = bytearray()
        self.closed = False
        self.max_frame = 65536
        self.interval: float | None = None  # heartbeat interval once logged on; None: send none
        self.auto_heartbeat = True
        self.last_sent = time.monotonic()
        self.heartbeats: list[tuple[float, dict]] = []  # (monotonic arrival, message)
        self.expected_seq: int | None = None

    # sending
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.last_sent = time.monotonic()

    def send(self, message: dict) -> bytes:
        body = pack(message)
        assert 0 < len(body) <= self.max_frame, "the client would send a frame the server refuses"
        self.send_raw(frame(body))
        return body

    # receiving
    def _fill(self, deadline: float) -> None:
        now = time.monotonic()
        if self.interval and self.auto_heartbeat and now - self.last_sent >= self.interval / 2:
            self.send({"type": "heartbeat"})  # section 4.4: half the interval
        if now >= deadline:
            raise TimeoutError("no complete frame from the server in time")
        wait = deadline - now
        if self.interval and self.auto_heartbeat:
            wait = min(wait, self.interval / 4)
        self.sock.settimeout(max(0.005, wait))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:  # socket.timeout
            return
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            raise Closed("the server closed the connection")
        self.buffer += data

    def read_body(self, timeout: float = WAIT) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 4:
                (length,) = struct.unpack(">I", self.buffer[:4])
                if len(self.buffer) >= 4 + length:
                    body = bytes(self.buffer[4 : 4 + length])
                    del self.buffer[: 4 + length]
                    return body
            self._fill(deadline)

    def recv(self, timeout: float = WAIT, skip_heartbeats: bool = True) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = self.read_body(max(0.0, deadline - time.monotonic()))
            message = msgpack.unpackb(body, raw=False)
            assert isinstance(message, dict), message
            self._check_seq(message)
            if message.get("type") == "heartbeat":
                self.heartbeats.append((time.monotonic(), message))
                if skip_heartbeats:
                    continue
            return message

    def _check_seq(self, message: dict) -> None:
        kind = message.get("type")
        if kind in UNNUMBERED:
            assert "seq" not in message, f"section 5: {kind} carries no seq: {message}"
            return
        assert isinstance(message.get("seq"), int), f"section 5: {kind} must carry seq: {message}"
        if self.expected_seq is not None:
            assert message["seq"] == self.expected_seq, (
                f"section 5: seq must be consecutive: expected {self.expected_seq}, got {message}"
            )
        self.expected_seq = message["seq"] + 1

    def expect_close(self, timeout: float = WAIT) -> None:
        """Nothing more arrives, and the connection is closed within `timeout`."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.buffer:
                    message = self.recv(max(0.0, deadline - time.monotonic()))
                    raise AssertionError(f"message after the end of the session: {message}")
                self._fill(deadline)
        except Closed:
            return
        except TimeoutError:
            raise AssertionError("the server did not close the connection") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Session(Wire):
    """A logged-on session (sections 4, 5, 6)."""

    def __init__(
        self, port: int, account: str, secret: str = SECRET, receive_buffer: int | None = None, **logon_fields
    ):
        super().__init__(port, receive_buffer)
        self.account = account
        self.next_request_id = 1
        self.send({"type": "logon", "account": account, "secret": secret, **logon_fields})
        reply = self.recv(WAIT)
        if reply.get("type") != "logon_accepted":
            self.close()
            raise AssertionError(f"logon of {account} refused: {reply}")
        self.accepted = reply
        self.max_frame = reply["max_frame"]
        self.interval = reply["heartbeat_interval"]
        self.expected_seq = reply["next_seq"]
        self.logged_out = False

    def request(self, message: dict, request_id=None) -> object:
        """Send a request with a request_id (a new integer unless given); return that id."""
        if request_id is None:
            request_id = self.next_request_id
            self.next_request_id += 1
        self.send({**message, "request_id": request_id})
        return request_id

    def ask(self, message: dict, request_id=None) -> dict:
        """Send a request and return the next message (it must be the answer)."""
        rid = self.request(message, request_id)
        reply = self.recv()
        assert reply.get("request_id") == rid, f"expected the answer to {message}, got {reply}"
        return reply

    def logout(self, request_id=None) -> dict:
        message = {"type": "logout"}
        if request_id is not None:
            message["request_id"] = request_id
        self.send(message)
        reply = self.recv()
        assert reply["type"] == "logout", reply
        self.logged_out = True
        self.expect_close()
        return reply


# -- the servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port: int) -> bool | None:
    """From /proc/net/tcp: whether something listens on the port (None: not Linux)."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            return True
    return False


class Server:
    def __init__(self, *flags: str, probe: bool = True):
        self.port = free_port()
        # a file, not a pipe: a full pipe would block the server (closed by running())
        self.log = tempfile.TemporaryFile()  # noqa: SIM115
        self.data_dir = tempfile.TemporaryDirectory(prefix="carbonx-doc-")  # each server its own journal
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli.main",
                "serve",
                "--port",
                str(self.port),
                "--log-level",
                "WARNING",
                "--data-dir",
                self.data_dir.name,
                *flags,
            ],
            cwd=PROJECT,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        try:
            self._wait_listening(probe)
        except BaseException:
            self.process.kill()
            self.process.wait(timeout=5)
            raise

    def _wait_listening(self, probe: bool) -> None:
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise AssertionError(f"server exited: {self.log.read()!r}")
            assert time.monotonic() < deadline, "server did not start listening"
            # Without probe, wait without connecting: session_id counts every accepted connection.
            state = None if probe else _listening(self.port)
            if state is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    return
                except OSError:
                    pass
            elif state:
                return
            time.sleep(0.02)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            raise AssertionError("the server did not stop on SIGTERM") from None
        return code


@contextlib.contextmanager
def running(*flags: str, probe: bool = True):
    server = Server(*flags, probe=probe)
    try:
        yield server
    finally:
        code = server.stop()
        server.log.close()
        server.data_dir.cleanup()
        assert code == 0, f"server exit status {code}"


@pytest.fixture(scope="module")
def server():
    with running() as running_server:
        yield running_server


@pytest.fixture
def connect(server):
    """connect(account, **logon fields) -> Session on the module's server; all ended at teardown."""
    opened: list[Wire] = []

    def open_session(account, port=None, **fields):
        session = Session(port or server.port, account, **fields)
        opened.append(session)
        return session

    def open_wire(port=None):
        wire = Wire(port or server.port)
        opened.append(wire)
        return wire

    open_session.wire = open_wire
    yield open_session
    for wire in opened:
        if isinstance(wire, Session) and not wire.logged_out and not wire.closed:
            with contextlib.suppress(Exception):
                wire.send({"type": "logout"})
                deadline = time.monotonic() + 3
                while True:
                    wire.recv(max(0.0, deadline - time.monotonic()))
        wire.close()


# -- checks -----------------------------------------------------------------------------------


def check_ts(ts) -> None:
    assert isinstance(ts, int) and not isinstance(ts, bool), ts
    assert abs(ts - time.time_ns()) < 30 * 10**9, f"ts not ns since the epoch: {ts}"


def check(message: dict, expected: dict) -> dict:
    """`message` equals `expected` apart from ts (checked for form) and seq (checked by the client)."""
    check_ts(message.get("ts"))
    rest = {key: value for key, value in message.items() if key not in ("ts", "seq")}
    assert rest == expected, f"\n  got      {rest}\n  expected {expected}"
    for key, value in expected.items():  # integers must not be booleans or floats
        if isinstance(value, int):
            assert type(message[key]) is type(value), (key, message[key])
    return message


def report(
    exec_type,
    order_status,
    order_id,
    client_order_id,
    instrument,
    side,
    price,
    quantity,
    cum,
    leaves,
    avg=None,
    request_id=None,
    order_type="LIMIT",
    time_in_force="GTC",
    stop_price=None,
    display_quantity=None,
    expire_date=None,
    **extra,
) -> dict:
    """An execution_report (section 8.4) as the document describes it, without ts and seq."""
    expected = {
        "type": "execution_report",
        "exec_type": exec_type,
        "order_status": order_status,
        "order_id": order_id,
        "client_order_id": client_order_id,
        "instrument": instrument,
        "side": side,
        "order_type": order_type,
        "time_in_force": time_in_force,
        "price": price,
        "stop_price": stop_price,
        "display_quantity": display_quantity,
        "expire_date": expire_date,
        "quantity": quantity,
        "cum_quantity": cum,
        "leaves_quantity": leaves,
        "avg_price": avg,
        **extra,
    }
    if request_id is not None:
        expected["request_id"] = request_id
    return expected


def rejected_report(client_order_id, instrument, code, request_id) -> dict:
    return {
        "type": "execution_report",
        "exec_type": "rejected",
        "order_status": "rejected",
        "order_id": None,
        "client_order_id": client_order_id,
        "instrument": instrument,
        "cum_quantity": 0,
        "leaves_quantity": 0,
        "code": code,
        "text": TEXT[code],
        "request_id": request_id,
    }


def request_rejected(request, code, request_id, order_id=None, client_order_id=None) -> dict:
    return {
        "type": "request_rejected",
        "request": request,
        "order_id": order_id,
        "client_order_id": client_order_id,
        "code": code,
        "text": TEXT[code],
        "request_id": request_id,
    }


def check_reject(message, code, ref_type, field, request_id=None, client_order_id=None, exact_text=False):
    """A session-level reject (section 8.6)."""
    expected_keys = {"type", "ref_type", "field", "client_order_id", "code", "text", "ts", "seq"}
    if request_id is not None:
        expected_keys.add("request_id")
    assert set(message) == expected_keys, message
    assert message["type"] == "reject"
    assert (message["code"], message["ref_type"], message["field"]) == (code, ref_type, field), message
    assert message["client_order_id"] == client_order_id, message
    assert message.get("request_id") == request_id, message
    if exact_text:
        assert message["text"] == TEXT[code], message
    else:
        assert message["text"].startswith(TEXT[code]), message
    check_ts(message["ts"])


def check_server_logout(message, code, text=None, text_prefix=None, request_id=None):
    """A logout from the server (section 8.3)."""
    keys = {"type", "code", "text", "ts"} | ({"request_id"} if request_id is not None else set())
    assert set(message) == keys, message
    assert message["type"] == "logout" and message["code"] == code, message
    assert message.get("request_id") == request_id, message
    if text is not None:
        assert message["text"] == text, message
    if text_prefix is not None:
        assert message["text"].startswith(text_prefix), message
    check_ts(message["ts"])


def balances_of(session) -> dict:
    answer = session.ask({"type": "balances"})
    return {entry["asset"]: entry for entry in answer["balances"]}


def order_id_of(message) -> int:
    assert isinstance(message["order_id"], int) and message["order_id"] > 0, message
    return message["order_id"]


# -- logon -------------------------------------------------------------------------------------


def test_logon_accepted_states_the_session(connect):
    before = time.time_ns()
    bank = connect("bank", request_id="L-1")
    accepted = bank.accepted
    assert set(accepted) == LOGON_ACCEPTED_KEYS | {"request_id"}
    assert accepted["type"] == "logon_accepted" and accepted["account"] == "bank"
    assert accepted["protocol_version"] == 1
    assert type(accepted["session_id"]) is int and accepted["session_id"] >= 1
    assert type(accepted["heartbeat_interval"]) is float and accepted["heartbeat_interval"] == 5.0
    assert type(accepted["heartbeat_timeout"]) is float and accepted["heartbeat_timeout"] == 15.0
    assert accepted["max_frame"] == 65536
    assert type(accepted["throttle_rate"]) is float and accepted["throttle_rate"] == 5000.0
    assert accepted["throttle_burst"] == 1000
    assert accepted["cancel_on_disconnect"] is True and accepted["operator"] is False
    assert type(accepted["next_seq"]) is int and accepted["next_seq"] >= 1
    assert accepted["instruments"] == EXPECTED_INSTRUMENTS
    assert accepted["request_id"] == "L-1"
    assert before - 10**9 <= accepted["ts"] <= time.time_ns() + 10**9

    # An operator, a session choosing cancel_on_disconnect and its heartbeat interval, no request_id.
    ops = connect("market-ops")
    assert ops.accepted["operator"] is True and "request_id" not in ops.accepted
    assert set(ops.accepted) == LOGON_ACCEPTED_KEYS
    assert ops.accepted["session_id"] > accepted["session_id"]
    utility = connect("utility-north", cancel_on_disconnect=False, heartbeat_interval=7)
    assert utility.accepted["cancel_on_disconnect"] is False
    assert utility.accepted["heartbeat_interval"] == 7.0 and utility.accepted["heartbeat_timeout"] == 21.0
    # nil is allowed for both optional logon fields (section 7.1)
    fund = connect("gov-fund", cancel_on_disconnect=None, heartbeat_interval=None, request_id=None)
    assert fund.accepted["cancel_on_disconnect"] is True and fund.accepted["heartbeat_interval"] == 5.0
    assert "request_id" not in fund.accepted
    for session in (bank, ops, utility, fund):
        session.logout()


@pytest.mark.parametrize(
    "first, code, request_id, text",
    [
        ({"type": "logon", "account": "bank", "secret": "wrong", "request_id": "w"}, 702, "w", TEXT[702]),
        ({"type": "logon", "account": "nobody", "secret": SECRET, "request_id": 5}, 702, 5, TEXT[702]),
        ({"type": "balances", "request_id": 9}, 701, 9, TEXT[701]),
        ({"type": "heartbeat"}, 701, None, TEXT[701]),
        ({"type": "logout", "request_id": "out"}, 701, "out", TEXT[701]),
        (
            {"type": "logon", "account": "bank", "secret": SECRET, "heartbeat_interval": 0, "request_id": 3},
            707,
            3,
            "heartbeat_interval: whole seconds from 1 to 60",
        ),
        (
            {"type": "logon", "account": "bank", "secret": SECRET, "heartbeat_interval": 61},
            707,
            None,
            "heartbeat_interval: whole seconds from 1 to 60",
        ),
    ],
)
def test_refused_logon(connect, first, code, request_id, text):
    wire = connect.wire()
    wire.send(first)
    wire.send({"type": "balances", "request_id": "after"})  # discarded when the logon fails (4.2)
    check_server_logout(wire.recv(), code, text=text, request_id=request_id)
    wire.expect_close()


@pytest.mark.parametrize(
    "first, code, request_id, prefix",
    [
        ({"type": "foo", "request_id": "f"}, 706, "f", "unknown or missing message type (known: "),
        ({"account": "bank", "secret": SECRET}, 706, None, TEXT[706]),
        ({"type": "logon", "account": "bank", "request_id": 4}, 707, 4, TEXT[707]),
        ({"type": "logon", "account": "bank", "secret": SECRET, "heartbeat_interval": 5.0}, 707, None, TEXT[707]),
        ({"type": "logon", "account": "bank", "secret": SECRET, "extra": 1}, 707, None, TEXT[707]),
        ({"type": "balances", "x": 1, "request_id": 2}, 707, 2, TEXT[707]),  # unreadable before "not a logon"
    ],
)
def test_unreadable_first_frame_ends_the_connection(connect, first, code, request_id, prefix):
    wire = connect.wire()
    wire.send(first)
    message = wire.recv()
    check_server_logout(message, code, text_prefix=prefix, request_id=request_id)
    if first.get("type") == "logon" and "secret" not in first:
        assert "missing required field `secret`" in message["text"], message  # the example of 4.2
    wire.expect_close()


def test_one_session_per_account_and_second_logon(connect):
    bank = connect("bank")
    wire = connect.wire()
    wire.send({"type": "logon", "account": "bank", "secret": SECRET, "request_id": "dup"})
    check_server_logout(wire.recv(), 703, text=TEXT[703], request_id="dup")
    wire.expect_close()
    # the existing session is not affected; a second logon on it is a reject 714
    assert bank.ask({"type": "balances"})["type"] == "balances"
    rid = bank.request({"type": "logon", "account": "bank", "secret": SECRET})
    check_reject(bank.recv(), 714, "logon", None, request_id=rid, exact_text=True)
    bank.logout()
    # the account may log on again at once (4.3), and frames sent right behind the logon are processed
    wire = connect.wire()
    wire.send_raw(
        frame(pack({"type": "logon", "account": "bank", "secret": SECRET}))
        + frame(pack({"type": "balances", "request_id": "b"}))
    )
    accepted = wire.recv()
    assert accepted["type"] == "logon_accepted", accepted
    wire.expected_seq = accepted["next_seq"]
    answer = wire.recv()
    assert answer["type"] == "balances" and answer["request_id"] == "b", answer
    wire.send({"type": "logout"})
    check_server_logout(wire.recv(), None, text="logged out")
    wire.expect_close()


# -- orders: a resting order and a crossing order ----------------------------------------------


def test_resting_and_crossing_orders_report_both_sides(connect):
    seller = connect("paper-mill")
    seller2 = connect("speculator")
    buyer = connect("gov-fund")
    buyer_before, seller_before = balances_of(buyer), balances_of(seller)

    rid = seller.request(
        {
            "type": "new_order",
            "client_order_id": "pm-1",
            "instrument": "EUA",
            "side": "S",
            "quantity": 7,
            "price": "70.30",
        }
    )
    new = seller.recv()
    oid_a = order_id_of(new)
    check(new, report("new", "new", oid_a, "pm-1", "EUA", "S", 7030, 7, 0, 7, request_id=rid))
    rid = seller2.request(
        {"type": "new_order", "client_order_id": 5001, "instrument": "EUA", "side": "S", "quantity": 3, "price": 7031}
    )
    new_b = seller2.recv()
    oid_b = order_id_of(new_b)
    check(new_b, report("new", "new", oid_b, 5001, "EUA", "S", 7031, 3, 0, 3, request_id=rid))
    assert oid_b != oid_a

    # 8 lots bid at 70.31: 7 at 70.30 (paper-mill) then 1 at 70.31 (speculator)
    buyer.request(
        {
            "type": "new_order",
            "client_order_id": "gf-1",
            "instrument": "EUA",
            "side": "B",
            "quantity": 8,
            "price": "70.31",
        },
        request_id="x",
    )
    b_new, b_fill1, b_fill2 = buyer.recv(), buyer.recv(), buyer.recv()
    oid_c = order_id_of(b_new)
    check(b_new, report("new", "new", oid_c, "gf-1", "EUA", "B", 7031, 8, 0, 8, request_id="x"))
    trade_id = b_fill1["trade_id"]
    assert type(trade_id) is int and trade_id >= 1
    check(
        b_fill1,
        report(
            "trade",
            "partially_filled",
            oid_c,
            "gf-1",
            "EUA",
            "B",
            7031,
            8,
            7,
            1,
            "70.3000",
            request_id="x",
            trade_id=trade_id,
            last_price=7030,
            last_quantity=7,
            liquidity="taker",
            fee=7 * 350,
            aggressor_side="B",
        ),
    )
    # (7 x 70.30 + 70.31) / 8 = 70.30125: rounded half to even, "70.3012" (section 3)
    check(
        b_fill2,
        report(
            "trade",
            "filled",
            oid_c,
            "gf-1",
            "EUA",
            "B",
            7031,
            8,
            8,
            0,
            "70.3012",
            request_id="x",
            trade_id=trade_id + 1,
            last_price=7031,
            last_quantity=1,
            liquidity="taker",
            fee=350,
            aggressor_side="B",
        ),
    )
    s_fill = seller.recv()
    check(
        s_fill,
        report(
            "trade",
            "filled",
            oid_a,
            "pm-1",
            "EUA",
            "S",
            7030,
            7,
            7,
            0,
            "70.3000",
            trade_id=trade_id,
            last_price=7030,
            last_quantity=7,
            liquidity="maker",
            fee=7 * 200,
            aggressor_side="B",
        ),
    )
    s2_fill = seller2.recv()
    check(
        s2_fill,
        report(
            "trade",
            "partially_filled",
            oid_b,
            5001,
            "EUA",
            "S",
            7031,
            3,
            1,
            2,
            "70.3100",
            trade_id=trade_id + 1,
            last_price=7031,
            last_quantity=1,
            liquidity="maker",
            fee=200,
            aggressor_side="B",
        ),
    )
    # every message caused by the same request carries the same ts (section 3)
    assert len({b_new["ts"], b_fill1["ts"], b_fill2["ts"], s_fill["ts"], s2_fill["ts"]}) == 1
    assert new["ts"] < new_b["ts"] < b_new["ts"]

    book = buyer.ask({"type": "book", "instrument": "EUA", "levels": 5})
    check(
        book,
        {
            "type": "book",
            "instrument": "EUA",
            "bids": [],
            "asks": [[7031, 2, 1]],
            "last_price": 7031,
            "request_id": book["request_id"],
        },
    )

    buyer_after, seller_after = balances_of(buyer), balances_of(seller)
    cost = 7 * 7030 * 1000 + 1 * 7031 * 1000
    assert buyer_after["EUR"]["holding"] - buyer_before["EUR"]["holding"] == -(cost + 8 * 350)
    assert buyer_after["EUA"]["holding"] - buyer_before["EUA"]["holding"] == 8000
    assert buyer_after["EUR"]["held"] == 0 and buyer_after["EUA"]["held"] == 0
    assert seller_after["EUR"]["holding"] - seller_before["EUR"]["holding"] == 7 * 7030 * 1000 - 7 * 200
    assert seller_after["EUA"]["holding"] - seller_before["EUA"]["holding"] == -7000
    for session in (seller, seller2, buyer):
        session.logout()


def test_self_trade_prevention(connect):
    bank = connect("bank")  # account default CANCEL_TAKING
    order = {"type": "new_order", "instrument": "EUA", "quantity": 1, "price": 7080}
    rest = bank.ask({**order, "client_order_id": "stp-r", "side": "S"})
    rid = bank.request({**order, "client_order_id": "stp-t", "side": "B"})
    take = bank.recv()
    check(
        bank.recv(),
        report(
            "canceled",
            "canceled",
            take["order_id"],
            "stp-t",
            "EUA",
            "B",
            7080,
            1,
            0,
            0,
            request_id=rid,
            reason="SELF_TRADE",
        ),
    )
    assert bank.ask({"type": "book", "instrument": "EUA"})["asks"] == [[7080, 1, 1]]  # the resting order stays
    # NONE for this order: the trade happens, taker's report first, then the maker's, both to bank
    rid = bank.request({**order, "client_order_id": "stp-n", "side": "B", "self_trade_prevention": "NONE"})
    new, taker, maker = bank.recv(), bank.recv(), bank.recv()
    check(
        taker,
        report(
            "trade",
            "filled",
            new["order_id"],
            "stp-n",
            "EUA",
            "B",
            7080,
            1,
            1,
            0,
            "70.8000",
            request_id=rid,
            trade_id=taker["trade_id"],
            last_price=7080,
            last_quantity=1,
            liquidity="taker",
            fee=350,
            aggressor_side="B",
        ),
    )
    check(
        maker,
        report(
            "trade",
            "filled",
            rest["order_id"],
            "stp-r",
            "EUA",
            "S",
            7080,
            1,
            1,
            0,
            "70.8000",
            request_id=rid,
            trade_id=taker["trade_id"],
            last_price=7080,
            last_quantity=1,
            liquidity="maker",
            fee=200,
            aggressor_side="B",
        ),
    )
    # CANCEL_BOTH: both orders cancelled
    rest = bank.ask({**order, "client_order_id": "stp-r2", "side": "S"})
    rid = bank.request({**order, "client_order_id": "stp-b", "side": "B", "self_trade_prevention": "CANCEL_BOTH"})
    new = bank.recv()
    cancels = {message["client_order_id"]: message for message in (bank.recv(), bank.recv())}
    assert set(cancels) == {"stp-r2", "stp-b"}
    check(
        cancels["stp-r2"],
        report(
            "canceled",
            "canceled",
            rest["order_id"],
            "stp-r2",
            "EUA",
            "S",
            7080,
            1,
            0,
            0,
            request_id=rid,
            reason="SELF_TRADE",
        ),
    )
    check(
        cancels["stp-b"],
        report(
            "canceled",
            "canceled",
            new["order_id"],
            "stp-b",
            "EUA",
            "B",
            7080,
            1,
            0,
            0,
            request_id=rid,
            reason="SELF_TRADE",
        ),
    )
    bank.logout()


# -- cancel and replace ---------------------------------------------------------------------


def test_cancel_and_replace_reports(connect):
    cdm = connect("cdm-developer")
    fund = connect("carbon-fund")

    rid = cdm.request(
        {
            "type": "new_order",
            "client_order_id": "c-1",
            "instrument": "CER",
            "side": "S",
            "quantity": 10,
            "price": "58.50",
        }
    )
    new = cdm.recv()
    oid = order_id_of(new)
    check(new, report("new", "new", oid, "c-1", "CER", "S", 5850, 10, 0, 10, request_id=rid))

    def replaced(order_status, price, quantity, cum, leaves, avg, kept, request_id):
        return report(
            "replaced",
            order_status,
            oid,
            "c-1",
            "CER",
            "S",
            price,
            quantity,
            cum,
            leaves,
            avg,
            request_id=request_id,
            priority_kept=kept,
        )

    rid = cdm.request({"type": "replace_order", "order_id": oid, "quantity": 6})
    check(cdm.recv(), replaced("new", 5850, 6, 0, 6, None, True, rid))
    rid = cdm.request({"type": "replace_order", "client_order_id": "c-1", "price": "58.40"})
    check(cdm.recv(), replaced("new", 5840, 6, 0, 6, None, False, rid))

    rid_f = fund.request(
        {"type": "new_order", "client_order_id": "cf-1", "instrument": "CER", "side": "B", "quantity": 2, "price": 5840}
    )
    f_new, f_fill = fund.recv(), fund.recv()
    oid_f = order_id_of(f_new)
    check(f_new, report("new", "new", oid_f, "cf-1", "CER", "B", 5840, 2, 0, 2, request_id=rid_f))
    trade_id = f_fill["trade_id"]
    check(
        f_fill,
        report(
            "trade",
            "filled",
            oid_f,
            "cf-1",
            "CER",
            "B",
            5840,
            2,
            2,
            0,
            "58.4000",
            request_id=rid_f,
            trade_id=trade_id,
            last_price=5840,
            last_quantity=2,
            liquidity="taker",
            fee=700,
            aggressor_side="B",
        ),
    )
    check(
        cdm.recv(),
        report(
            "trade",
            "partially_filled",
            oid,
            "c-1",
            "CER",
            "S",
            5840,
            6,
            2,
            4,
            "58.4000",
            trade_id=trade_id,
            last_price=5840,
            last_quantity=2,
            liquidity="maker",
            fee=400,
            aggressor_side="B",
        ),
    )

    rid = cdm.request({"type": "replace_order", "order_id": oid, "quantity": 2})
    check(cdm.recv(), request_rejected("replace_order", 406, rid, order_id=oid))
    # quantity is the new total including what is filled: 5 total, 2 filled, 3 open; kept (lowered)
    rid = cdm.request({"type": "replace_order", "order_id": oid, "quantity": 5})
    check(cdm.recv(), replaced("partially_filled", 5840, 5, 2, 3, "58.4000", True, rid))
    rid = cdm.request({"type": "replace_order", "order_id": oid, "quantity": 5, "price": 5840})
    check(cdm.recv(), request_rejected("replace_order", 407, rid, order_id=oid))
    rid = cdm.request({"type": "replace_order", "order_id": oid})
    check(cdm.recv(), request_rejected("replace_order", 407, rid, order_id=oid))
    rid = cdm.request({"type": "replace_order", "order_id": oid, "price": "58.405"})
    check(cdm.recv(), request_rejected("replace_order", 106, rid, order_id=oid))

    # a replace to a crossing price trades at once: trade reports follow the replaced report
    rid_f = fund.request(
        {"type": "new_order", "client_order_id": "cf-2", "instrument": "CER", "side": "B", "quantity": 1, "price": 5830}
    )
    f_new2 = fund.recv()
    oid_f2 = order_id_of(f_new2)
    check(f_new2, report("new", "new", oid_f2, "cf-2", "CER", "B", 5830, 1, 0, 1, request_id=rid_f))
    rid = cdm.request({"type": "replace_order", "order_id": oid, "price": "58.30"})
    check(cdm.recv(), replaced("partially_filled", 5830, 5, 2, 3, "58.4000", False, rid))
    fill = cdm.recv()
    trade_id2 = fill["trade_id"]
    assert trade_id2 == trade_id + 1
    # (2 x 58.40 + 58.30) / 3 = 58.3666...: "58.3667"
    check(
        fill,
        report(
            "trade",
            "partially_filled",
            oid,
            "c-1",
            "CER",
            "S",
            5830,
            5,
            3,
            2,
            "58.3667",
            request_id=rid,
            trade_id=trade_id2,
            last_price=5830,
            last_quantity=1,
            liquidity="taker",
            fee=350,
            aggressor_side="S",
        ),
    )
    check(
        fund.recv(),
        report(
            "trade",
            "filled",
            oid_f2,
            "cf-2",
            "CER",
            "B",
            5830,
            1,
            1,
            0,
            "58.3000",
            trade_id=trade_id2,
            last_price=5830,
            last_quantity=1,
            liquidity="maker",
            fee=200,
            aggressor_side="S",
        ),
    )

    rid = cdm.request({"type": "order_status", "order_id": oid})
    check(
        cdm.recv(),
        report("status", "partially_filled", oid, "c-1", "CER", "S", 5830, 5, 3, 2, "58.3667", request_id=rid),
    )
    for change, code in (({"price": 5000}, 205), ({"quantity": 1001}, 105), ({"price": 100001}, 108)):
        rid = cdm.request({"type": "replace_order", "order_id": oid, **change})
        check(cdm.recv(), request_rejected("replace_order", code, rid, order_id=oid))
    rid = cdm.request({"type": "cancel_order", "client_order_id": "c-1"})
    check(
        cdm.recv(),
        report("canceled", "canceled", oid, "c-1", "CER", "S", 5830, 5, 3, 0, "58.3667", request_id=rid, reason="USER"),
    )
    # the first rule broken, in the documented order (7.6)
    for change, code in (
        ({"client_order_id": "c-1", "quantity": 4}, 405),
        ({"price": "abc"}, 106),
        ({"quantity": 0}, 103),
        ({"price": 0}, 106),
    ):
        rid = cdm.request({"type": "replace_order", "order_id": oid, **change})
        client_order_id = change.get("client_order_id")
        check(cdm.recv(), request_rejected("replace_order", code, rid, order_id=oid, client_order_id=client_order_id))
    rid = cdm.request({"type": "cancel_order", "order_id": oid})
    check(cdm.recv(), request_rejected("cancel_order", 403, rid, order_id=oid))
    rid = cdm.request({"type": "replace_order", "order_id": oid, "quantity": 4})
    check(cdm.recv(), request_rejected("replace_order", 403, rid, order_id=oid))
    rid = cdm.request({"type": "order_status", "client_order_id": "c-1"})
    check(cdm.recv(), report("status", "canceled", oid, "c-1", "CER", "S", 5830, 5, 3, 0, "58.3667", request_id=rid))
    cdm.logout()
    fund.logout()


# -- refusals ---------------------------------------------------------------------------------

REFUSED_ORDERS = [
    ({"price": "70.255"}, 106),
    ({"price": "+70"}, 106),
    ({"price": "70."}, 106),
    ({"price": ".5"}, 106),
    ({"price": "7e1"}, 106),
    ({"price": " 70"}, 106),
    ({"price": 0}, 106),
    ({"price": "0.00"}, 106),
    ({"price": -7000}, 106),
    ({"stop_price": 0}, 114),
    ({"stop_price": "70.255"}, 114),
    ({"display_quantity": 0}, 113),
    ({"client_order_id": -1}, 119),
    ({"client_order_id": 2**63}, 119),
    ({"quantity": 2**63}, 103),
    ({"time_in_force": "GTD", "expire_date": 2027}, 116),
    ({"order_type": "MARKET", "price": None, "time_in_force": "GTD", "expire_date": 20991231}, 121),
    ({"order_type": "MARKET", "price": None, "display_quantity": 1}, 121),
    ({"order_type": "MARKET", "price": None, "stop_price": 7000}, 121),
    ({"order_type": "MARKET", "price": None, "post_only": True}, 121),
    ({"time_in_force": "IOC", "post_only": True}, 121),
    ({"time_in_force": "FOK", "display_quantity": 1}, 121),
    ({"post_only": True, "stop_price": 7000}, 121),
    ({"price": "0000000000070"}, 106),  # 13 digits
    ({"price": "70.0000000000001"}, 106),  # 13 decimals
    ({"price": "70,25"}, 106),
    ({"price": "7_0"}, 106),
    ({"price": 100001}, 108),
    ({"instrument": "XYZ", "price": "abc"}, 106),  # order of the checks: the price first
    ({"instrument": "XYZ", "side": "X"}, 102),  # the fields on their own before the instrument
    ({"quantity": 1001, "price": 8000}, 105),  # the instrument's rules before risk
    ({"instrument": "XYZ"}, 101),
    ({"instrument": ""}, 101),
    ({"side": "X"}, 102),
    ({"quantity": 0}, 103),
    ({"quantity": 1001}, 105),
    ({"price": None}, 109),
    ({"order_type": "MARKET"}, 110),
    ({"order_type": "STOP"}, 111),
    ({"time_in_force": "GTX"}, 112),
    ({"display_quantity": 6}, 113),
    ({"stop_price": "1e2"}, 114),
    ({"time_in_force": "GTD"}, 115),
    ({"expire_date": 20270101}, 116),
    ({"time_in_force": "GTD", "expire_date": 20270231}, 116),
    ({"time_in_force": "IOC", "display_quantity": 1}, 121),
    ({"self_trade_prevention": "SOMETIMES"}, 118),
    ({"client_order_id": ""}, 119),
    ({"price": 6000}, 205),  # a sell below the band (one-sided: 7.4)
    ({"side": "B", "quantity": 200}, 204),
]


def test_refused_new_orders_get_rejected_reports(connect):
    spec = connect("speculator")
    for number, (fields, code) in enumerate(REFUSED_ORDERS):
        order = {
            "type": "new_order",
            "client_order_id": f"r-{number}",
            "instrument": "EUA",
            "side": "S",
            "quantity": 5,
            "price": 7000,
            **fields,
        }
        if order["price"] is None:
            del order["price"]
        rid = spec.request(order)
        instrument = order["instrument"] if order["instrument"] == "EUA" else None
        check(spec.recv(), rejected_report(order["client_order_id"], instrument, code, rid))

    # 203 and 202: an account without units, an account without the cash
    fund = connect("carbon-fund")
    rid = fund.request(
        {"type": "new_order", "client_order_id": "u", "instrument": "EUA", "side": "S", "quantity": 1, "price": 7000}
    )
    check(fund.recv(), rejected_report("u", "EUA", 203, rid))
    cdm = connect("cdm-developer")
    rid = cdm.request(
        {"type": "new_order", "client_order_id": "c", "instrument": "EUA", "side": "B", "quantity": 30, "price": 7000}
    )
    check(cdm.recv(), rejected_report("c", "EUA", 202, rid))

    # a client_order_id of a rejected order may be used again; one of an accepted order may not (401)
    rid = spec.request(
        {"type": "new_order", "client_order_id": "r-0", "instrument": "EUA", "side": "S", "quantity": 1, "price": 7200}
    )
    oid = order_id_of(spec.recv())
    rid = spec.request(
        {"type": "new_order", "client_order_id": "r-0", "instrument": "EUA", "side": "S", "quantity": 1, "price": 7200}
    )
    check(spec.recv(), rejected_report("r-0", "EUA", 401, rid))
    # the integer 1 and the string "1" are different ids
    for coid in (1, "1"):
        rid = spec.request(
            {
                "type": "new_order",
                "client_order_id": coid,
                "instrument": "EUA",
                "side": "S",
                "quantity": 1,
                "price": 7200,
            }
        )
        assert spec.recv()["exec_type"] == "new"
    # euro strings read strictly but accepted in every documented form (section 3)
    for text, ticks in (
        ("70.2", 7020),
        ("70", 7000),
        ("070.250", 7025),
        ("70.2500", 7025),
        ("000000000070.000000000000", 7000),
    ):
        rid = spec.request(
            {
                "type": "new_order",
                "client_order_id": f"ok-{text}",
                "instrument": "EUA",
                "side": "S",
                "quantity": 1,
                "price": text,
            }
        )
        accepted = spec.recv()
        assert (accepted["exec_type"], accepted["price"], accepted["request_id"]) == ("new", ticks, rid), accepted
    # 301: a post-only bid at the best ask of another account
    utility = connect("utility-north")
    utility.ask(
        {
            "type": "new_order",
            "client_order_id": "u-ask",
            "instrument": "EUA",
            "side": "S",
            "quantity": 1,
            "price": 7150,
        }
    )
    rid = spec.request(
        {
            "type": "new_order",
            "client_order_id": "po",
            "instrument": "EUA",
            "side": "B",
            "quantity": 1,
            "price": "71.50",
            "post_only": True,
        }
    )
    check(spec.recv(), rejected_report("po", "EUA", 301, rid))
    assert oid > 0
    for session in (spec, fund, cdm, utility):
        session.logout()


def test_unsigned_64_bit_price_is_out_of_range(connect):
    """Sections 2 and 3: a positive price above max_price is 108; an integer that does not fit a signed
    64-bit integer is refused with the field's own invalid code (106 for price)."""
    spec = connect("speculator")
    for number, (price, code) in enumerate(((2**63 - 1, 108), (2**63, 106), (2**64 - 1, 106))):
        rid = spec.request(
            {
                "type": "new_order",
                "client_order_id": f"big-{number}",
                "instrument": "EUA",
                "side": "S",
                "quantity": 1,
                "price": price,
            }
        )
        check(spec.recv(), rejected_report(f"big-{number}", "EUA", code, rid))
    spec.logout()


def test_request_rejected_for_unknown_orders(connect):
    broker = connect("broker")
    other = connect("ji-developer")
    rid = other.request(
        {
            "type": "new_order",
            "client_order_id": "theirs",
            "instrument": "ERU",
            "side": "S",
            "quantity": 1,
            "price": 5600,
        }
    )
    other_oid = order_id_of(other.recv())

    rid = broker.request({"type": "cancel_order", "order_id": 987654321})
    check(broker.recv(), request_rejected("cancel_order", 402, rid, order_id=987654321))
    rid = broker.request({"type": "cancel_order", "client_order_id": "never-used"})
    check(broker.recv(), request_rejected("cancel_order", 402, rid, client_order_id="never-used"))
    rid = broker.request({"type": "cancel_order", "order_id": other_oid})  # another account's order: 402
    check(broker.recv(), request_rejected("cancel_order", 402, rid, order_id=other_oid))
    rid = broker.request({"type": "cancel_order", "order_id": 1, "client_order_id": 1})
    check(broker.recv(), request_rejected("cancel_order", 405, rid, order_id=1, client_order_id=1))
    rid = broker.request({"type": "cancel_order"})
    check(broker.recv(), request_rejected("cancel_order", 405, rid))
    rid = broker.request({"type": "order_status", "client_order_id": "never-used"})
    check(broker.recv(), request_rejected("order_status", 402, rid, client_order_id="never-used"))
    rid = broker.request({"type": "replace_order", "order_id": 987654321, "quantity": 2})
    check(broker.recv(), request_rejected("replace_order", 402, rid, order_id=987654321))
    rid = broker.request({"type": "book", "instrument": "XYZ"})
    check(broker.recv(), request_rejected("book", 101, rid))
    rid = broker.request({"type": "book", "instrument": "XYZ", "levels": 0})  # instrument checked first
    check(broker.recv(), request_rejected("book", 101, rid))
    for instrument in ("XYZ", ""):
        rid = broker.request({"type": "mass_cancel", "instrument": instrument})
        check(broker.recv(), request_rejected("mass_cancel", 101, rid))
    broker.logout()
    other.logout()


def test_session_level_rejects(connect):
    mill = connect("paper-mill")
    order = {
        "type": "new_order",
        "client_order_id": "q",
        "instrument": "EUA",
        "side": "B",
        "quantity": 1,
        "price": 7000,
    }

    def send_and_check(message, code, ref_type, field, client_order_id=None, echo=True):
        rid = mill.request(message) if echo else None
        if not echo:
            mill.send(message)
        check_reject(mill.recv(), code, ref_type, field, request_id=rid, client_order_id=client_order_id)

    send_and_check({"type": "foo"}, 706, "foo", "type")
    send_and_check({}, 706, None, "type")
    send_and_check({"type": 5}, 706, None, "type")
    send_and_check({"type": b"balances"}, 706, None, "type")
    send_and_check({**order, "quantity": 5.0}, 707, "new_order", "quantity", "q")
    send_and_check({**order, "quantity": True}, 707, "new_order", "quantity", "q")
    send_and_check({**order, "price": 70.0}, 707, "new_order", "price", "q")
    send_and_check({**order, "post_only": 1}, 707, "new_order", "post_only", "q")
    send_and_check({key: value for key, value in order.items() if key != "side"}, 707, "new_order", "side", "q")
    send_and_check({**order, "x-y z": 1}, 707, "new_order", "x-y z", "q")
    send_and_check({**order, "order_type": None}, 707, "new_order", "order_type", "q")
    send_and_check({**order, "instrument": b"EUA"}, 707, "new_order", "instrument", "q")
    send_and_check({**order, "price": msgpack.ExtType(1, b"a")}, 707, "new_order", "price", "q")
    # an ext value (section 2): 707 naming the field, also in an array; 706 as the type; 707 under an unknown key
    send_and_check({"type": "subscribe", "channels": [msgpack.ExtType(5, b"")]}, 707, "subscribe", "channels")
    send_and_check(
        {"type": "balances", "request_id": msgpack.ExtType(1, b"a")}, 707, "balances", "request_id", echo=False
    )
    send_and_check({"type": msgpack.ExtType(1, b"a")}, 706, None, "type")
    send_and_check({"type": "balances", "zz": msgpack.ExtType(127, b"abcd")}, 707, "balances", "zz")
    send_and_check({**order, "client_order_id": "c" * 65}, 707, "new_order", "client_order_id", None)
    send_and_check({"type": "balances", "": 1}, 707, "balances", "")
    send_and_check({"type": "balances", "k" * 65: 1}, 707, "balances", None)
    send_and_check({"type": "balances", 1: 2}, 707, "balances", None)
    send_and_check({"type": "t" * 65}, 706, None, "type")  # a type longer than 64 is not echoed (section 2)
    send_and_check({"type": "balances", "request_id": 1.5}, 707, "balances", "request_id", echo=False)
    send_and_check({"type": "book", "instrument": "EUA", "levels": None}, 707, "book", "levels")
    send_and_check({"type": "kill_switch", "account": "bank"}, 712, "kill_switch", None)
    # a request_id longer than 64 characters is refused and not echoed
    send_and_check({"type": "balances", "request_id": "r" * 65}, 707, "balances", "request_id", echo=False)
    for levels in (0, 101):
        rid = mill.request({"type": "book", "instrument": "EUA", "levels": levels})
        message = mill.recv()
        check_reject(message, 707, "book", "levels", request_id=rid)
        assert message["text"].endswith("levels from 1 to 100"), message
    # `type` may be anywhere in the map (section 2)
    mill.send({"request_id": "last", "type": "balances"})
    assert mill.recv()["request_id"] == "last"
    # the session goes on: a readable request is answered, with the next seq
    assert mill.ask({"type": "balances"})["type"] == "balances"
    # an unknown field is named in field, and in the text as the example of 8.6 shows it
    rid = mill.request({"type": "balances", "x-y": 1})
    message = mill.recv()
    check_reject(message, 707, "balances", "x-y", request_id=rid)
    assert "x-y" in message["text"], message
    mill.logout()


# -- sequence numbers and request ids ---------------------------------------------------------


def test_sequence_numbers_per_account_and_next_seq(connect):
    utility = connect("utility-north")
    first = utility.accepted["next_seq"]
    answer = utility.ask({"type": "balances"})
    assert answer["seq"] == first
    for number in range(2):
        utility.ask(
            {
                "type": "new_order",
                "client_order_id": f"seq-{number}",
                "instrument": "EUA",
                "side": "S",
                "quantity": 1,
                "price": 7300 + number,
            }
        )
    last = utility.expected_seq - 1
    assert last == first + 2
    utility.logout()  # cancel-on-disconnect: 2 canceled reports numbered, not delivered

    utility = connect("utility-north", cancel_on_disconnect=False)
    assert utility.accepted["next_seq"] == last + 3
    rid = utility.request(
        {
            "type": "new_order",
            "client_order_id": "seq-keep",
            "instrument": "EUA",
            "side": "S",
            "quantity": 1,
            "price": 7050,
        }
    )
    kept = utility.recv()
    assert kept["seq"] == last + 3 and kept["request_id"] == rid
    utility.logout()  # cancel_on_disconnect false: the order stays; nothing is numbered

    buyer = connect("gov-fund")
    buyer.ask(
        {
            "type": "new_order",
            "client_order_id": "seq-hit",
            "instrument": "EUA",
            "side": "B",
            "quantity": 1,
            "price": 7050,
        }
    )
    assert buyer.recv()["exec_type"] == "trade"
    buyer.logout()

    utility = connect("utility-north")
    # the fill while nobody was logged on used up seq last + 4
    assert utility.accepted["next_seq"] == last + 5
    status = utility.ask({"type": "order_status", "client_order_id": "seq-keep"})
    assert (status["order_status"], status["cum_quantity"], status["seq"]) == ("filled", 1, last + 5)
    utility.logout()


def test_request_id_echo_rules(connect):
    broker = connect("broker", request_id=77)
    assert broker.accepted["request_id"] == 77
    fund = connect("carbon-fund")

    # absent or nil request_id: no request_id key in the answer
    broker.send({"type": "balances"})
    assert "request_id" not in broker.recv()
    broker.send({"type": "balances", "request_id": None})
    assert "request_id" not in broker.recv()
    long_id = "i" * 64
    assert broker.ask({"type": "balances"}, request_id=long_id)["request_id"] == long_id
    assert broker.ask({"type": "balances"}, request_id=0)["request_id"] == 0

    # self-trade prevention (broker: CANCEL_RESTING): the cancelled resting order carries the request_id
    rest = broker.ask(
        {
            "type": "new_order",
            "client_order_id": "rest",
            "instrument": "CER",
            "side": "S",
            "quantity": 1,
            "price": 5820,
        },
        request_id="r1",
    )
    broker.request(
        {
            "type": "new_order",
            "client_order_id": "take",
            "instrument": "CER",
            "side": "B",
            "quantity": 1,
            "price": 5820,
        },
        request_id="stp",
    )
    take = broker.recv()
    check(take, report("new", "new", order_id_of(take), "take", "CER", "B", 5820, 1, 0, 1, request_id="stp"))
    check(
        broker.recv(),
        report(
            "canceled",
            "canceled",
            rest["order_id"],
            "rest",
            "CER",
            "S",
            5820,
            1,
            0,
            0,
            request_id="stp",
            reason="SELF_TRADE",
        ),
    )
    # mass cancel: canceled reports then the report, all with the request_id
    broker.request({"type": "mass_cancel", "instrument": "CER"}, request_id=9)
    check(
        broker.recv(),
        report(
            "canceled",
            "canceled",
            take["order_id"],
            "take",
            "CER",
            "B",
            5820,
            1,
            0,
            0,
            request_id=9,
            reason="MASS_CANCEL",
        ),
    )
    check(broker.recv(), {"type": "mass_cancel_report", "instrument": "CER", "canceled_orders": 1, "request_id": 9})
    broker.request({"type": "mass_cancel"}, request_id=10)
    check(broker.recv(), {"type": "mass_cancel_report", "instrument": None, "canceled_orders": 0, "request_id": 10})

    # the resting side of another account's trade carries no request_id
    maker = broker.ask(
        {
            "type": "new_order",
            "client_order_id": "maker",
            "instrument": "CER",
            "side": "S",
            "quantity": 1,
            "price": 5820,
        },
        request_id="m",
    )
    fund.request(
        {"type": "new_order", "client_order_id": "hit", "instrument": "CER", "side": "B", "quantity": 1, "price": 5820},
        request_id="h",
    )
    assert fund.recv()["request_id"] == "h"
    assert fund.recv()["request_id"] == "h"
    fill = broker.recv()
    assert fill["exec_type"] == "trade" and fill["order_id"] == maker["order_id"]
    assert "request_id" not in fill

    # a reject echoes an integer or string request_id; logout echoes the logout's
    rid = broker.request({"type": "nonsense"}, request_id="n")
    check_reject(broker.recv(), 706, "nonsense", "type", request_id=rid)
    reply = broker.logout(request_id="bye")
    check_server_logout(reply, None, text="logged out", request_id="bye")
    fund.logout()


# -- balances and book -------------------------------------------------------------------------


def test_balances_and_book_answers(connect):
    ji = connect("ji-developer")
    cement = connect("cement-works")
    answer = ji.ask({"type": "balances"})
    check(
        answer,
        {
            "type": "balances",
            "account": "ji-developer",
            "blocked": False,
            "request_id": answer["request_id"],
            "balances": [
                {"asset": "EUR", "holding": 100_000_000, "held": 0, "available": 100_000_000},
                {"asset": "EUA", "holding": 0, "held": 0, "available": 0},
                {"asset": "CER", "holding": 0, "held": 0, "available": 0},
                {"asset": "ERU", "holding": 1_500_000, "held": 0, "available": 1_500_000},
            ],
        },
    )
    answer = cement.ask({"type": "balances"})
    assert answer["balances"] == [
        {"asset": "EUR", "holding": 2_500_000_000, "held": 0, "available": 2_500_000_000},
        {"asset": "EUA", "holding": 150_000, "held": 0, "available": 150_000},
        {"asset": "CER", "holding": 10_000, "held": 0, "available": 10_000},
        {"asset": "ERU", "holding": 0, "held": 0, "available": 0},
    ]

    for price, quantity in (("55.10", 3), (5520, 2)):
        ji.ask(
            {
                "type": "new_order",
                "client_order_id": f"ask-{price}",
                "instrument": "ERU",
                "side": "S",
                "quantity": quantity,
                "price": price,
            }
        )
    for number, (price, quantity) in enumerate(((5490, 2), (5490, 1), ("54.80", 4))):
        cement.ask(
            {
                "type": "new_order",
                "client_order_id": f"bid-{number}",
                "instrument": "ERU",
                "side": "B",
                "quantity": quantity,
                "price": price,
            }
        )

    book = cement.ask({"type": "book", "instrument": "ERU"})
    check(
        book,
        {
            "type": "book",
            "instrument": "ERU",
            "bids": [[5490, 3, 2], [5480, 4, 1]],
            "asks": [[5510, 3, 1], [5520, 2, 1]],
            "last_price": None,
            "request_id": book["request_id"],
        },
    )
    book = ji.ask({"type": "book", "instrument": "ERU", "levels": 1})
    check(
        book,
        {
            "type": "book",
            "instrument": "ERU",
            "bids": [[5490, 3, 2]],
            "asks": [[5510, 3, 1]],
            "last_price": None,
            "request_id": book["request_id"],
        },
    )

    ji_balances, cement_balances = balances_of(ji), balances_of(cement)
    assert ji_balances["ERU"] == {"asset": "ERU", "holding": 1_500_000, "held": 5000, "available": 1_495_000}
    held = 3 * (5490 * 1000 + 350) + 4 * (5480 * 1000 + 350)  # price x lot + the larger fee, per lot
    assert cement_balances["EUR"] == {
        "asset": "EUR",
        "holding": 2_500_000_000,
        "held": held,
        "available": 2_500_000_000 - held,
    }
    # levels defaults to 10
    for tick in range(5511, 5520):
        ji.ask(
            {
                "type": "new_order",
                "client_order_id": f"lvl-{tick}",
                "instrument": "ERU",
                "side": "S",
                "quantity": 1,
                "price": tick,
            }
        )
    asks = ji.ask({"type": "book", "instrument": "ERU"})["asks"]
    assert asks == [[5510, 3, 1]] + [[tick, 1, 1] for tick in range(5511, 5520)]
    asks = ji.ask({"type": "book", "instrument": "ERU", "levels": 100})["asks"]
    assert asks == [[5510, 3, 1]] + [[tick, 1, 1] for tick in range(5511, 5520)] + [[5520, 2, 1]]
    ji.logout()
    cement.logout()


def test_kill_switch(connect):
    ops = connect("market-ops")
    spec = connect("speculator")
    resting = spec.ask(
        {"type": "new_order", "client_order_id": "ks-1", "instrument": "EUA", "side": "S", "quantity": 1, "price": 7250}
    )
    resting2 = spec.ask(
        {"type": "new_order", "client_order_id": "ks-0", "instrument": "EUA", "side": "S", "quantity": 2, "price": 7240}
    )
    ops.request({"type": "kill_switch", "account": "speculator"}, request_id="k")
    check(
        ops.recv(),
        {
            "type": "kill_switch_report",
            "account": "speculator",
            "blocked": True,
            "canceled_orders": 2,
            "request_id": "k",
        },
    )
    # oldest first
    check(
        spec.recv(),
        report("canceled", "canceled", resting["order_id"], "ks-1", "EUA", "S", 7250, 1, 0, 0, reason="KILL_SWITCH"),
    )
    check(
        spec.recv(),
        report("canceled", "canceled", resting2["order_id"], "ks-0", "EUA", "S", 7240, 2, 0, 0, reason="KILL_SWITCH"),
    )
    check(spec.recv(), {"type": "kill_switch_report", "account": "speculator", "blocked": True, "canceled_orders": 2})
    ops.request({"type": "kill_switch", "account": "speculator"}, request_id="k2")  # already blocked
    check(
        ops.recv(),
        {
            "type": "kill_switch_report",
            "account": "speculator",
            "blocked": True,
            "canceled_orders": 0,
            "request_id": "k2",
        },
    )
    check(spec.recv(), {"type": "kill_switch_report", "account": "speculator", "blocked": True, "canceled_orders": 0})
    rid = ops.request({"type": "kill_switch", "account": "a" * 65})
    check(
        ops.recv(),
        {
            "type": "request_rejected",
            "request": "kill_switch",
            "order_id": None,
            "client_order_id": None,
            "code": 120,
            "text": TEXT[120],
            "request_id": rid,
        },
    )
    rid = spec.request(
        {"type": "new_order", "client_order_id": "ks-2", "instrument": "EUA", "side": "S", "quantity": 1, "price": 7250}
    )
    check(spec.recv(), rejected_report("ks-2", "EUA", 206, rid))
    assert spec.ask({"type": "balances"})["blocked"] is True
    rid = ops.request({"type": "kill_switch", "account": "nobody"})
    check(
        ops.recv(),
        {
            "type": "request_rejected",
            "request": "kill_switch",
            "order_id": None,
            "client_order_id": None,
            "code": 201,
            "text": TEXT[201],
            "request_id": rid,
        },
    )
    rid = ops.request({"type": "release_kill_switch", "account": ""})
    check(
        ops.recv(),
        {
            "type": "request_rejected",
            "request": "release_kill_switch",
            "order_id": None,
            "client_order_id": None,
            "code": 120,
            "text": TEXT[120],
            "request_id": rid,
        },
    )
    ops.request({"type": "release_kill_switch", "account": "speculator"}, request_id="r")
    check(
        ops.recv(),
        {
            "type": "kill_switch_report",
            "account": "speculator",
            "blocked": False,
            "canceled_orders": 0,
            "request_id": "r",
        },
    )
    check(spec.recv(), {"type": "kill_switch_report", "account": "speculator", "blocked": False, "canceled_orders": 0})
    assert spec.ask({"type": "balances"})["blocked"] is False
    ops.request({"type": "release_kill_switch", "account": "speculator"}, request_id="r2")  # not blocked
    check(
        ops.recv(),
        {
            "type": "kill_switch_report",
            "account": "speculator",
            "blocked": False,
            "canceled_orders": 0,
            "request_id": "r2",
        },
    )
    check(spec.recv(), {"type": "kill_switch_report", "account": "speculator", "blocked": False, "canceled_orders": 0})
    assert (
        spec.ask(
            {
                "type": "new_order",
                "client_order_id": "ks-3",
                "instrument": "EUA",
                "side": "S",
                "quantity": 1,
                "price": 7250,
            }
        )["exec_type"]
        == "new"
    )
    ops.logout()
    spec.logout()


def test_order_types_and_cancel_reasons(connect):
    fund = connect("carbon-fund")
    cdm = connect("cdm-developer")
    gov = connect("gov-fund")

    # stop-limit orders wait outside the book; the band does not apply to them
    rid = fund.request(
        {
            "type": "new_order",
            "client_order_id": "stop",
            "instrument": "CER",
            "side": "B",
            "quantity": 1,
            "price": "58.50",
            "stop_price": "58.40",
        }
    )
    stop = fund.recv()
    oid_stop = order_id_of(stop)
    check(
        stop,
        report("new", "waiting_trigger", oid_stop, "stop", "CER", "B", 5850, 1, 0, 1, request_id=rid, stop_price=5840),
    )
    rid = fund.request(
        {
            "type": "new_order",
            "client_order_id": "far",
            "instrument": "CER",
            "side": "B",
            "quantity": 1,
            "price": 9000,
            "stop_price": 9000,
        }
    )
    far = fund.recv()
    check(
        far,
        report(
            "new",
            "waiting_trigger",
            order_id_of(far),
            "far",
            "CER",
            "B",
            9000,
            1,
            0,
            1,
            request_id=rid,
            stop_price=9000,
        ),
    )
    book = fund.ask({"type": "book", "instrument": "CER"})
    assert (book["bids"], book["asks"]) == ([], []), book

    rid = cdm.request(
        {
            "type": "new_order",
            "client_order_id": "s1",
            "instrument": "CER",
            "side": "S",
            "quantity": 2,
            "price": "58.40",
        }
    )
    oid_s1 = order_id_of(cdm.recv())
    rid = gov.request(
        {"type": "new_order", "client_order_id": "g1", "instrument": "CER", "side": "B", "quantity": 1, "price": 5840}
    )
    g_new, g_fill = gov.recv(), gov.recv()
    trade_id = g_fill["trade_id"]
    check(
        g_fill,
        report(
            "trade",
            "filled",
            order_id_of(g_new),
            "g1",
            "CER",
            "B",
            5840,
            1,
            1,
            0,
            "58.4000",
            request_id=rid,
            trade_id=trade_id,
            last_price=5840,
            last_quantity=1,
            liquidity="taker",
            fee=350,
            aggressor_side="B",
        ),
    )
    # the trade at 58.40 triggers the stop, which then trades: no request_id (gov-fund's request)
    triggered, s_fill = fund.recv(), fund.recv()
    check(
        triggered,
        report("triggered", "new", oid_stop, "stop", "CER", "B", 5850, 1, 0, 1, stop_price=5840, trigger_price=5840),
    )
    check(
        s_fill,
        report(
            "trade",
            "filled",
            oid_stop,
            "stop",
            "CER",
            "B",
            5850,
            1,
            1,
            0,
            "58.4000",
            stop_price=5840,
            trade_id=trade_id + 1,
            last_price=5840,
            last_quantity=1,
            liquidity="taker",
            fee=350,
            aggressor_side="B",
        ),
    )
    check(
        cdm.recv(),
        report(
            "trade",
            "partially_filled",
            oid_s1,
            "s1",
            "CER",
            "S",
            5840,
            2,
            1,
            1,
            "58.4000",
            trade_id=trade_id,
            last_price=5840,
            last_quantity=1,
            liquidity="maker",
            fee=200,
            aggressor_side="B",
        ),
    )
    check(
        cdm.recv(),
        report(
            "trade",
            "filled",
            oid_s1,
            "s1",
            "CER",
            "S",
            5840,
            2,
            2,
            0,
            "58.4000",
            trade_id=trade_id + 1,
            last_price=5840,
            last_quantity=1,
            liquidity="maker",
            fee=200,
            aggressor_side="B",
        ),
    )
    assert g_new["ts"] == g_fill["ts"] == triggered["ts"] == s_fill["ts"]

    # a market order with nothing to trade against: its rest is cancelled, it never rests
    rid = fund.request(
        {
            "type": "new_order",
            "client_order_id": "mkt",
            "instrument": "CER",
            "side": "B",
            "quantity": 1,
            "order_type": "MARKET",
        }
    )
    new = fund.recv()
    check(
        new,
        report("new", "new", order_id_of(new), "mkt", "CER", "B", None, 1, 0, 1, request_id=rid, order_type="MARKET"),
    )
    check(
        fund.recv(),
        report(
            "canceled",
            "canceled",
            new["order_id"],
            "mkt",
            "CER",
            "B",
            None,
            1,
            0,
            0,
            request_id=rid,
            order_type="MARKET",
            reason="MARKET_REMAINDER",
        ),
    )

    # an iceberg shows its slice only
    rid = cdm.request(
        {
            "type": "new_order",
            "client_order_id": "ice",
            "instrument": "CER",
            "side": "S",
            "quantity": 10,
            "price": "58.60",
            "display_quantity": 2,
        }
    )
    ice = cdm.recv()
    check(
        ice,
        report("new", "new", order_id_of(ice), "ice", "CER", "S", 5860, 10, 0, 10, request_id=rid, display_quantity=2),
    )
    assert fund.ask({"type": "book", "instrument": "CER"})["asks"] == [[5860, 2, 1]]
    rid = fund.request(
        {
            "type": "new_order",
            "client_order_id": "ioc",
            "instrument": "CER",
            "side": "B",
            "quantity": 2,
            "price": 5860,
            "time_in_force": "IOC",
        }
    )
    new, fill = fund.recv(), fund.recv()
    check(
        fill,
        report(
            "trade",
            "filled",
            order_id_of(new),
            "ioc",
            "CER",
            "B",
            5860,
            2,
            2,
            0,
            "58.6000",
            request_id=rid,
            time_in_force="IOC",
            trade_id=fill["trade_id"],
            last_price=5860,
            last_quantity=2,
            liquidity="taker",
            fee=700,
            aggressor_side="B",
        ),
    )
    check(
        cdm.recv(),
        report(
            "trade",
            "partially_filled",
            ice["order_id"],
            "ice",
            "CER",
            "S",
            5860,
            10,
            2,
            8,
            "58.6000",
            display_quantity=2,
            trade_id=fill["trade_id"],
            last_price=5860,
            last_quantity=2,
            liquidity="maker",
            fee=400,
            aggressor_side="B",
        ),
    )
    assert fund.ask({"type": "book", "instrument": "CER"})["asks"] == [[5860, 2, 1]]

    # IOC and FOK remainders
    rid = fund.request(
        {
            "type": "new_order",
            "client_order_id": "ioc-2",
            "instrument": "CER",
            "side": "B",
            "quantity": 1,
            "price": 5850,
            "time_in_force": "IOC",
        }
    )
    new = fund.recv()
    check(
        fund.recv(),
        report(
            "canceled",
            "canceled",
            order_id_of(new),
            "ioc-2",
            "CER",
            "B",
            5850,
            1,
            0,
            0,
            request_id=rid,
            time_in_force="IOC",
            reason="IOC_REMAINDER",
        ),
    )
    rid = fund.request(
        {
            "type": "new_order",
            "client_order_id": "fok",
            "instrument": "CER",
            "side": "B",
            "quantity": 20,
            "price": 5860,
            "time_in_force": "FOK",
        }
    )
    new = fund.recv()
    check(
        fund.recv(),
        report(
            "canceled",
            "canceled",
            order_id_of(new),
            "fok",
            "CER",
            "B",
            5860,
            20,
            0,
            0,
            request_id=rid,
            time_in_force="FOK",
            reason="FOK_UNFILLED",
        ),
    )

    # a waiting stop order can be cancelled
    rid = fund.request({"type": "cancel_order", "client_order_id": "far"})
    check(
        fund.recv(),
        report(
            "canceled",
            "canceled",
            far["order_id"],
            "far",
            "CER",
            "B",
            9000,
            1,
            0,
            0,
            request_id=rid,
            stop_price=9000,
            reason="USER",
        ),
    )
    for session in (fund, cdm, gov):
        session.logout()


# -- logout -----------------------------------------------------------------------------------


def test_logout_by_the_client(connect):
    bank = connect("bank")
    # a request before the logout is answered first; a frame after it, in the same write, is never processed
    stop = bank.ask(
        {
            "type": "new_order",
            "client_order_id": "stop-before",
            "instrument": "EUA",
            "side": "S",
            "quantity": 1,
            "price": 6900,
            "stop_price": 6000,
        }
    )
    assert stop["order_status"] == "waiting_trigger"
    bank.send_raw(
        frame(
            pack(
                {
                    "type": "new_order",
                    "client_order_id": "before",
                    "instrument": "EUA",
                    "side": "S",
                    "quantity": 1,
                    "price": 7260,
                    "request_id": 1,
                }
            )
        )
        + frame(pack({"type": "logout", "request_id": 2}))
        + frame(
            pack(
                {
                    "type": "new_order",
                    "client_order_id": "after",
                    "instrument": "EUA",
                    "side": "S",
                    "quantity": 1,
                    "price": 7260,
                    "request_id": 3,
                }
            )
        )
    )
    new = bank.recv()
    assert (new["exec_type"], new["client_order_id"], new["request_id"]) == ("new", "before", 1)
    check_server_logout(bank.recv(), None, text="logged out", request_id=2)
    bank.expect_close()
    last = bank.expected_seq - 1

    bank = connect("bank")
    # the DISCONNECT cancels of "stop-before" and "before" used one number each, nothing else (4.7)
    assert bank.accepted["next_seq"] == last + 3
    rid = bank.request({"type": "order_status", "client_order_id": "after"})
    check(bank.recv(), request_rejected("order_status", 402, rid, client_order_id="after"))
    rid = bank.request({"type": "order_status", "client_order_id": "before"})
    check(
        bank.recv(), report("status", "canceled", new["order_id"], "before", "EUA", "S", 7260, 1, 0, 0, request_id=rid)
    )
    rid = bank.request({"type": "order_status", "order_id": stop["order_id"]})
    check(
        bank.recv(),
        report(
            "status",
            "canceled",
            stop["order_id"],
            "stop-before",
            "EUA",
            "S",
            6900,
            1,
            0,
            0,
            request_id=rid,
            stop_price=6000,
        ),
    )
    bank.logout()


FATAL_FRAMES = [
    ("zero length", struct.pack(">I", 0), 704, None),
    ("above max_frame, no body", struct.pack(">I", 65537), 704, None),
    ("not MessagePack", frame(b"\xc1"), 705, None),
    ("truncated", frame(pack({"type": "balances"})[:-3]), 705, None),
    ("an array", frame(pack([1, 2])), 705, None),
    ("an integer", frame(pack(7)), 705, None),
    ("trailing bytes", frame(pack({"type": "balances"}) + b"\x01"), 705, None),
    ("str not UTF-8", frame(b"\x82\xa4type\xa8balances\xa1x\xa2\xff\xfe"), 705, "a string that is not UTF-8"),
    ("nested too deeply", frame(b"\x82\xa4type\xa8balances\xa1x" + b"\x91" * 3000 + b"\xc0"), 705, "nested too deeply"),
    ("an ext value as a key", frame(b"\x82\xa4type\xa8balances\xd4\x01\x00\x01"), 705, None),  # section 2
]


@pytest.mark.parametrize("name, data, code, detail", FATAL_FRAMES, ids=[case[0] for case in FATAL_FRAMES])
def test_fatal_frame_after_logon(connect, name, data, code, detail):
    spec = connect("speculator")
    ghost = frame(
        pack(
            {
                "type": "new_order",
                "client_order_id": f"ghost-{name}",
                "instrument": "EUA",
                "side": "S",
                "quantity": 1,
                "price": 7270,
                "request_id": "g",
            }
        )
    )
    before = frame(
        pack(
            {
                "type": "new_order",
                "client_order_id": f"pre-{name}",
                "instrument": "EUA",
                "side": "S",
                "quantity": 1,
                "price": 7270,
                "request_id": "p",
            }
        )
    )
    started = time.monotonic()
    # requests before the bad frame are answered, then the logout; frames after it are never processed
    # (after a length above max_frame nothing is sent: the server must not wait for the body)
    spec.send_raw(before + data + (b"" if name == "above max_frame, no body" else ghost))
    new = spec.recv()
    assert (new["exec_type"], new["request_id"]) == ("new", "p"), new
    message = spec.recv()
    check_server_logout(message, code, text_prefix=TEXT[code])
    if detail:
        assert detail in message["text"], message
    spec.expect_close()
    assert time.monotonic() - started < 3, "the server must not wait for the body of a bad length"
    last = spec.expected_seq - 1

    spec = connect("speculator")
    assert spec.accepted["next_seq"] == last + 2  # the DISCONNECT cancel of the order sent before
    rid = spec.request({"type": "order_status", "client_order_id": f"ghost-{name}"})
    check(spec.recv(), request_rejected("order_status", 402, rid, client_order_id=f"ghost-{name}"))
    spec.logout()


def test_fatal_frame_before_logon(connect):
    wire = connect.wire()
    wire.send_raw(struct.pack(">I", 0))
    check_server_logout(wire.recv(), 704, text_prefix=TEXT[704])
    wire.expect_close()
    wire = connect.wire()
    wire.send_raw(frame(b"\x93\x01\x02\x03"))
    check_server_logout(wire.recv(), 705, text_prefix=TEXT[705])
    wire.expect_close()


# -- heartbeats ---------------------------------------------------------------------------------


def test_server_heartbeats_and_heartbeat_timeout(connect):
    idle = connect("cement-works", heartbeat_interval=1)
    assert idle.accepted["heartbeat_interval"] == 1.0 and idle.accepted["heartbeat_timeout"] == 3.0
    idle.auto_heartbeat = False  # this client says nothing at all
    logged_on = time.monotonic()
    alive = connect("ji-developer", heartbeat_interval=1)
    alive.auto_heartbeat = False
    # `alive` sends nothing but the pieces of one frame, 0.45 s apart: any bytes received are a sign of
    # life (4.4), and the server reassembles a frame split over several reads (section 1)
    data = frame(pack({"type": "balances", "request_id": "split"}))
    pieces = [data[at : at + 4] for at in range(0, len(data), 4)]
    assert len(pieces) * 0.45 > 3.5

    received, answer, timeout_at, sent = [], None, None, 0
    deadline = logged_on + len(pieces) * 0.45 + 2.0
    while time.monotonic() < deadline and (timeout_at is None or answer is None):
        if sent < len(pieces) and time.monotonic() - logged_on >= 0.45 * (sent + 1):
            alive.send_raw(pieces[sent])
            sent += 1
        if timeout_at is None:
            with contextlib.suppress(TimeoutError):
                message = idle.recv(0.02, skip_heartbeats=False)
                received.append((time.monotonic() - logged_on, message))
                if message["type"] == "logout":
                    timeout_at = time.monotonic() - logged_on
        with contextlib.suppress(TimeoutError):
            message = alive.recv(0.02)
            assert answer is None, message
            answer = message
    assert timeout_at is not None, f"no logout 709: {received}"
    beats = [(at, message) for at, message in received if message["type"] == "heartbeat"]
    assert len(beats) >= 2, received
    for _, message in beats:
        assert set(message) == {"type", "ts"}, message
        check_ts(message["ts"])
    # a heartbeat after each interval in which nothing was sent (up to one check period late)
    assert 0.9 <= beats[0][0] <= 2.1, beats
    assert all(0.9 <= later[0] - earlier[0] <= 1.6 for earlier, later in itertools.pairwise(beats)), beats
    # the timeout: more than 3 s with nothing received (up to one check period late)
    assert 2.8 <= timeout_at <= 4.3, timeout_at
    check_server_logout(received[-1][1], 709, text=TEXT[709])
    idle.expect_close()

    # the other session is alive: its split frame was answered, and it got heartbeats too
    assert answer is not None and answer["type"] == "balances" and answer["request_id"] == "split", answer
    assert answer["seq"] == alive.accepted["next_seq"]
    assert len(alive.heartbeats) >= 2
    alive.logout()


# -- a trader's own queries, ping and resend (sections 4.9, 7.7, 7.15, 7.19 to 7.21) -----------------------


def raw_messages(wire, until: str, timeout: float = WAIT) -> list[dict]:
    """Messages as they come, without the seq check (resent and market-data messages are outside its rule), up
    to and including the first of type ``until``; heartbeats left out."""
    deadline = time.monotonic() + timeout
    messages: list[dict] = []
    while not messages or messages[-1]["type"] != until:
        message = msgpack.unpackb(wire.read_body(max(0.0, deadline - time.monotonic())), raw=False)
        if message["type"] != "heartbeat":
            messages.append(message)
    return messages


def test_pong_comes_after_everything_sent_before_the_ping(connect):
    seller = connect("cement-works")
    buyer = connect("carbon-fund")
    seller.ask(
        {"type": "new_order", "client_order_id": "pp-s", "instrument": "EUA", "side": "S", "quantity": 2, "price": 7095}
    )
    # two requests in one write, then a ping: the pong follows every message they caused (4.9)
    buyer.send_raw(
        b"".join(
            frame(pack(message))
            for message in (
                {
                    "type": "new_order",
                    "client_order_id": "pp-b",
                    "instrument": "EUA",
                    "side": "B",
                    "quantity": 3,
                    "price": 7095,
                    "time_in_force": "IOC",
                    "request_id": 1,
                },
                {"type": "mass_cancel", "request_id": 2},
                {"type": "ping", "request_id": "end"},
            )
        )
    )
    messages = []
    while not messages or messages[-1]["type"] != "pong":
        messages.append(buyer.recv())
    assert [message.get("exec_type", message["type"]) for message in messages] == [
        "new",
        "trade",
        "canceled",
        "mass_cancel_report",
        "pong",
    ], messages
    pong = messages[-1]
    assert set(pong) == {"type", "ts", "request_id"} and pong["request_id"] == "end", pong  # 8.20: no seq
    check_ts(pong["ts"])
    assert seller.recv()["exec_type"] == "trade"
    # the pong used up no sequence number: the next answer carries the next seq
    assert buyer.ask({"type": "balances"})["seq"] == messages[-2]["seq"] + 1
    buyer.send({"type": "ping"})  # no request_id: none in the pong
    assert set(buyer.recv()) == {"type", "ts"}
    # a market-data session may ping too (4.3), and gets the same unnumbered pong
    watcher = connect("carbon-fund", market_data_only=True)
    rid = watcher.request({"type": "ping"})
    pong = watcher.recv()
    assert (pong["type"], pong["request_id"], "seq" in pong) == ("pong", rid, False), pong
    for session in (seller, buyer, watcher):
        session.logout()


def test_open_orders_trades_and_mass_cancel_follow_order_ids(connect):
    cdm = connect("cdm-developer")
    gov = connect("gov-fund")
    order = {"type": "new_order", "instrument": "CER", "side": "S", "quantity": 1, "price": 5850}
    cdm.send_raw(
        b"".join(
            frame(pack({**order, "client_order_id": f"oo-{number}", "request_id": number})) for number in range(101)
        )
        + frame(pack({"type": "ping"}))
    )
    news = raw_messages(cdm, "pong")[:-1]
    assert [message["exec_type"] for message in news] == ["new"] * 101
    cdm.expected_seq = news[-1]["seq"] + 1
    ids = [message["order_id"] for message in news]
    assert ids == sorted(ids)
    # the first order goes to the back of the 58.50 level (7.6): a new price, then the old one again
    for price in (5851, 5850):
        replaced = cdm.ask({"type": "replace_order", "order_id": ids[0], "price": price})
        assert replaced["priority_kept"] is False, replaced

    # open_orders: order_id order (not time priority), 100 a page, then the rest after the last order_id
    page = cdm.ask({"type": "open_orders"}, request_id="o1")
    assert set(page) == {"type", "orders", "more", "ts", "request_id", "seq"} and page["more"] is True, page
    mine = [entry for entry in page["orders"] if entry["order_id"] in ids]
    assert len(page["orders"]) == 100 and [entry["order_id"] for entry in page["orders"]] == sorted(
        entry["order_id"] for entry in page["orders"]
    )
    assert mine[0]["order_id"] == ids[0]
    status = cdm.ask({"type": "order_status", "order_id": ids[0]})
    assert mine[0] == {
        key: value for key, value in status.items() if key in COMMON_KEYS - {"type", "exec_type", "ts"}
    }  # 8.18
    rest = cdm.ask({"type": "open_orders", "after": page["orders"][-1]["order_id"]})
    assert (
        rest["more"] is False
        and [entry["order_id"] for entry in page["orders"] + rest["orders"] if entry["order_id"] in ids] == ids
    )
    assert cdm.ask({"type": "open_orders", "instrument": "EUA"})["orders"] == []
    rid = cdm.request({"type": "open_orders", "instrument": "XYZ"})
    check(cdm.recv(), request_rejected("open_orders", 101, rid))

    # three lots bought: time priority takes the 2nd, 3rd and 4th orders, the replaced first one now last
    gov.request(
        {
            "type": "new_order",
            "client_order_id": "oo-buy",
            "instrument": "CER",
            "side": "B",
            "quantity": 3,
            "price": 5850,
            "time_in_force": "IOC",
        }
    )
    taken = [gov.recv() for _ in range(4)][1:]
    fills = [cdm.recv() for _ in range(3)]
    assert [fill["order_id"] for fill in fills] == ids[1:4]
    trades = cdm.ask({"type": "trades", "instrument": "CER"})
    assert set(trades) == {"type", "trades", "more", "complete", "ts", "request_id", "seq"}, trades
    assert (trades["more"], trades["complete"]) == (False, True)
    assert trades["trades"][-3:] == [  # 8.19: the fills the execution reports announced, oldest first
        {
            "trade_id": fill["trade_id"],
            "order_id": fill["order_id"],
            "client_order_id": fill["client_order_id"],
            "instrument": "CER",
            "side": "S",
            "price": 5850,
            "quantity": 1,
            "liquidity": "maker",
            "fee": 200,
            "ts": fill["ts"],
        }
        for fill in fills
    ]
    later = cdm.ask({"type": "trades", "after": fills[0]["trade_id"]})
    assert [entry["trade_id"] for entry in later["trades"]] == [fill["trade_id"] for fill in fills[1:]]
    bought = gov.ask({"type": "trades"})["trades"][-3:]
    assert [(entry["trade_id"], entry["liquidity"], entry["fee"], entry["side"]) for entry in bought] == [
        (fill["trade_id"], "taker", 350, "B") for fill in taken
    ]
    rid = gov.request({"type": "trades", "instrument": ""})
    check(gov.recv(), request_rejected("trades", 101, rid))

    # mass cancel: in order_id order, the replaced order first although it lost its time priority (7.7)
    cdm.request({"type": "mass_cancel", "instrument": "CER"}, request_id="mc")
    cancels = raw_messages(cdm, "mass_cancel_report")
    cdm.expected_seq = cancels[-1]["seq"] + 1
    canceled = [message["order_id"] for message in cancels[:-1]]
    assert canceled == sorted(canceled) and canceled[0] == ids[0], canceled
    assert [order_id for order_id in canceled if order_id in ids] == [ids[0]] + ids[4:]
    assert cancels[-1]["canceled_orders"] == len(canceled)
    cdm.logout()
    gov.logout()


def test_resend_gives_back_numbered_messages_as_first_sent(connect):
    bank = connect("bank")
    sent = [
        bank.ask(
            {
                "type": "new_order",
                "client_order_id": "rs-1",
                "instrument": "EUA",
                "side": "S",
                "quantity": 1,
                "price": 7380,
            }
        )
    ]
    sent.append(bank.ask({"type": "cancel_order", "client_order_id": "rs-1"}))
    sent.append(bank.ask({"type": "balances"}))
    first, last = sent[0]["seq"], sent[-1]["seq"]
    bank.logout()
    bank = connect("bank")  # nothing happened meanwhile: no gap
    assert bank.accepted["next_seq"] == last + 1
    rid = bank.request({"type": "resend", "from_seq": first})
    messages = raw_messages(bank, "resend_end")
    begin, resent, end = messages[0], messages[1:-1], messages[-1]
    check_ts(begin["ts"])
    check_ts(end["ts"])
    assert {key: value for key, value in begin.items() if key != "ts"} == {
        "type": "resend_begin",
        "from_seq": first,
        "to_seq": last,
        "messages": 3,
        "unavailable": [],
        "request_id": rid,
    }
    assert resent == sent  # 7.15: exactly as first sent, ts, seq and request_id included
    assert {key: value for key, value in end.items() if key != "ts"} == {
        "type": "resend_end",
        "from_seq": first,
        "to_seq": last,
        "request_id": rid,
    }
    # the resend used up no seq; an empty one and one out of range (7.15)
    assert bank.ask({"type": "balances"})["seq"] == last + 1
    bank.request({"type": "resend", "from_seq": last + 2})
    empty = raw_messages(bank, "resend_end")
    assert [message["type"] for message in empty] == ["resend_begin", "resend_end"], empty
    assert (empty[0]["messages"], empty[0]["to_seq"]) == (0, last + 1)
    rid = bank.request({"type": "resend", "from_seq": last + 3})
    message = bank.recv()
    check_reject(message, 707, "resend", "from_seq", request_id=rid)
    assert message["text"].endswith(f"from_seq from 1 to {last + 2} (next_seq)"), message
    bank.logout()


def test_volatility_band_is_centred_on_the_reference_price_before_the_first_trade():
    """Section 7.4: before an instrument's first trade the band is centred on its configured reference_price
    and reaches reference x volatility_band_bps / 10000 (CER: 58.00 +- 1.74; ERU: 55.00 +- 1.65)."""
    with running() as srv:
        cdm, ji, broker = (Session(srv.port, account) for account in ("cdm-developer", "ji-developer", "broker"))
        try:
            # CER at the edge of the band: trades
            cdm.ask(
                {
                    "type": "new_order",
                    "client_order_id": "v-1",
                    "instrument": "CER",
                    "side": "S",
                    "quantity": 1,
                    "price": 5974,
                }
            )
            broker.request(
                {
                    "type": "new_order",
                    "client_order_id": "v-2",
                    "instrument": "CER",
                    "side": "B",
                    "quantity": 1,
                    "price": 5974,
                }
            )
            assert [broker.recv()["exec_type"] for _ in range(2)] == ["new", "trade"]
            assert cdm.recv()["exec_type"] == "trade"
            # ERU one cent beyond it: no trade, a volatility interruption around 55.00; the GTC buy rests
            ji.ask(
                {
                    "type": "new_order",
                    "client_order_id": "v-3",
                    "instrument": "ERU",
                    "side": "S",
                    "quantity": 1,
                    "price": 5666,
                }
            )
            broker.request(
                {
                    "type": "new_order",
                    "client_order_id": "v-4",
                    "instrument": "ERU",
                    "side": "B",
                    "quantity": 1,
                    "price": 5666,
                }
            )
            assert broker.recv()["exec_type"] == "new"
            book = broker.ask({"type": "book", "instrument": "ERU"})
            assert (book["bids"], book["asks"], book["last_price"]) == ([[5666, 1, 1]], [[5666, 1, 1]], None)
            broker.send({"type": "subscribe", "instruments": ["ERU"], "channels": ["status"], "request_id": "s"})
            status = raw_messages(broker, "status")[-1]
            assert (status["phase"], status["reason"], status["reference_price"], status["trigger_price"]) == (
                "volatility_interruption",
                "volatility",
                5500,
                5666,
            ), status
        finally:
            for session in (cdm, ji, broker):
                session.close()


# -- the document agrees with itself and with the server on its lists ------------------------------------


def _protocol_section(start: str, end: str) -> str:
    text = (PROJECT / "docs" / "PROTOCOL.md").read_text()
    return text[text.index(start) : text.index(end, text.index(start))]


def _ticked(text: str) -> list[str]:
    return re.findall(r"`([a-z_]+)`", text)


def test_section_7_covers_every_message_the_server_takes(connect):
    mill = connect("paper-mill")
    rid = mill.request({"type": "no_such_message"})
    known = set(re.search(r"\(known: ([a-z_, ]+)\)", mill.recv()["text"]).group(1).split(", "))
    assert {"ping", "open_orders", "trades", "resend"} <= known and rid
    table = _protocol_section("| `type` | Purpose | Answered with | Its last message |", "\n\n")
    listed = [row.split("|")[1].strip().strip("`") for row in table.splitlines()[2:]]
    assert sorted(listed) == sorted(known), set(listed) ^ known
    headings = re.findall(
        r"^### 7\.\d+ (.*)$", _protocol_section("## 7. Client messages", "## 8. Server messages"), re.MULTILINE
    )
    assert known <= set(re.findall(r"[a-z_]+", " ".join(headings)))  # each has its subsection
    mill.logout()


def test_numbered_and_unnumbered_messages_agree_between_sections_5_and_8():
    section_5 = _protocol_section("## 5. Sequence numbers", "- `seq` is counted")
    unnumbered = set(_ticked(section_5[section_5.index("**except**") : section_5.index("That is:")]))
    numbered = set(_ticked(section_5[section_5.index("That is:") : section_5.index("(A market-data")]))
    table = _protocol_section("| `type` | Numbered (`seq`) | Sent |", "\n\n")
    rows = [row.split("|") for row in table.splitlines()[2:] if not row.startswith("| market data")]
    in_table = {kind: cells[2].strip() for cells in rows for kind in _ticked(cells[1])}
    assert numbered == {kind for kind, flag in in_table.items() if flag == "yes"}
    assert unnumbered == {kind for kind, flag in in_table.items() if flag == "no"}
    assert {"pong", "resend_begin", "resend_end"} <= unnumbered
    assert {
        "trading_phase_report",
        "auction_report",
        "bid_report",
        "auction_status",
        "open_orders",
        "trades",
    } <= numbered


def test_refusal_lists_agree_between_sections_8_and_9():
    codes = _protocol_section("| Code | Name | Text | Seen as |", "\n\n")
    rows = [row.split("|") for row in codes.splitlines()[2:]]
    as_reject = {int(cells[1]) for cells in rows if re.match(r"\s*`reject`", cells[4])}
    reject_row = _protocol_section("| `code` | int | 706", "\n")
    assert as_reject == {int(code) for code in re.findall(r"\b(7\d\d)\b", reject_row)}, reject_row
    request_row = _protocol_section("| `request` | str | the `type` of the refused message", "\n")
    requests = set(re.findall(r'`"([a-z_]+)"`', request_row))
    seen = {
        name
        for cells in rows
        for part in re.findall(r"`request_rejected` of ([^;|]*)", cells[4])
        for name in _ticked(part)
    }
    assert seen <= requests, seen - requests
    where = _protocol_section("| any other request that was read but cannot be carried out", "\n")
    assert set(_ticked(where.split("|")[1])) == requests


def test_default_channels_are_the_documented_ones(connect):
    row = _protocol_section(
        "| `channels` | array of str, nil allowed | optional, default: every channel | some of", "\n"
    )
    documented = re.findall(r'`"([a-z]+)"`', row)
    watcher = connect("carbon-fund")
    rid = watcher.request({"type": "subscribe", "instruments": ["CER"]})
    subscribed = raw_messages(watcher, "subscribed")[-1]
    assert (subscribed["request_id"], subscribed["channels"]) == (rid, sorted(documented)), subscribed
    watcher.send({"type": "unsubscribe", "request_id": "u"})
    raw_messages(watcher, "unsubscribed")
    watcher.send({"type": "subscribe", "channels": ["depth"], "request_id": "bad"})
    refused = raw_messages(watcher, "reject")[-1]
    assert refused["text"].endswith(f"channels are {', '.join(documented)}"), refused
    assert f"channels are {', '.join(documented)}" in _protocol_section("### 7.13 subscribe", "### 7.14")
    watcher.send({"type": "logout"})
    raw_messages(watcher, "logout")
    watcher.logged_out = True
    watcher.expect_close()


# -- servers with other settings ---------------------------------------------------------------


def test_throttle_rejects_with_708():
    with running("--throttle-rate", "1", "--throttle-burst", "4") as srv:
        session = Session(srv.port, "bank")
        try:
            assert session.accepted["throttle_rate"] == 1.0 and session.accepted["throttle_burst"] == 4
            burst = b"".join(
                frame(pack(message))
                for message in [
                    {"type": "balances", "request_id": 1},
                    {"type": "heartbeat"},  # not counted
                    {"type": "foo", "request_id": 2},  # refused (706), but takes a token
                    {"type": "logon", "account": "bank", "secret": SECRET, "request_id": 3},  # 714 takes one too
                    {"type": "kill_switch", "account": "broker", "request_id": 4},  # 712 takes one too
                    {"type": "balances", "request_id": 5},  # no token left
                    {
                        "type": "new_order",
                        "client_order_id": "t",
                        "instrument": "EUA",
                        "side": "S",
                        "quantity": 1,
                        "price": 7000,
                        "request_id": 6,
                    },
                    {"type": "zzz", "request_id": "seven"},
                    {"type": 8},
                    {"type": "ping", "request_id": "pg"},  # counted too: a 708 in the pong's place (7.21)
                    {"type": "heartbeat"},  # not counted
                    {"type": "logout", "request_id": 9},  # not counted
                ]
            )
            session.send_raw(burst)
            assert session.recv()["request_id"] == 1
            check_reject(session.recv(), 706, "foo", "type", request_id=2)
            check_reject(session.recv(), 714, "logon", None, request_id=3, exact_text=True)
            check_reject(session.recv(), 712, "kill_switch", None, request_id=4, exact_text=True)
            check_reject(session.recv(), 708, "balances", None, request_id=5, exact_text=True)
            check_reject(session.recv(), 708, "new_order", None, request_id=6, client_order_id="t", exact_text=True)
            check_reject(session.recv(), 708, "zzz", None, request_id="seven", exact_text=True)
            check_reject(session.recv(), 708, None, None, exact_text=True)
            check_reject(session.recv(), 708, "ping", None, request_id="pg", exact_text=True)
            check_server_logout(session.recv(), None, text="logged out", request_id=9)
            session.expect_close()
        finally:
            session.close()


def test_max_frame_and_heartbeat_settings():
    with running("--max-frame", "1024", "--heartbeat-interval", "1", "--heartbeat-timeout-factor", "2") as srv:
        session = Session(srv.port, "bank")
        try:
            assert session.accepted["max_frame"] == 1024
            assert session.accepted["heartbeat_interval"] == 1.0 and session.accepted["heartbeat_timeout"] == 2.0
            # a body of exactly max_frame bytes is read (here refused as 707 for its unknown field)
            message = {"type": "balances", "request_id": 1, "pad": ""}
            message["pad"] = "p" * (1024 - len(pack(message)) - 2)  # str8 header grows by 2 bytes
            body = pack(message)
            assert len(body) == 1024
            session.send_raw(frame(body))
            check_reject(session.recv(), 707, "balances", "pad", request_id=1)
            session.send_raw(frame(body + b"\x00")[:4])  # 1025: fatal at once, body never sent
            check_server_logout(session.recv(), 704, text_prefix=TEXT[704])
            session.expect_close()
        finally:
            session.close()


def test_server_frames_are_small_whatever_max_frame_says():
    """Section 1: max_frame limits what the client sends only; the server's frames are not checked against it
    (sent whole above a small max_frame, 64 to 16777216 allowed) and stay under 1 MiB. `carbonx serve --help`
    says the same."""
    usage = " ".join(
        subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", "serve", "--help"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()
    )
    assert (
        "--max-frame MAX_FRAME largest frame body in bytes a client may send (larger: logout 704); the "
        "server's own frames are not bound by it"
    ) in usage, usage
    with running("--max-frame", "512") as srv:
        wire = Wire(srv.port)
        try:
            wire.send({"type": "logon", "account": "bank", "secret": SECRET})
            body = wire.read_body()
            accepted = msgpack.unpackb(body, raw=False)
            assert accepted["type"] == "logon_accepted" and accepted["max_frame"] == 512
            assert 512 < len(body) <= 1_048_576
            wire.send({"type": "book", "instrument": "EUA", "levels": 100, "request_id": 1})
            book = msgpack.unpackb(wire.read_body(), raw=False)
            assert book["type"] == "book" and book["request_id"] == 1
        finally:
            wire.close()


def test_serve_help_states_both_data_directory_defaults():
    """Section 12: the built-in default of journal.data_dir is empty (a temporary directory: nothing survives);
    the shipped exchange.toml sets var/carbonx. `carbonx serve --help` says both."""
    usage = " ".join(
        subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", "serve", "--help"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()
    )
    assert (
        "empty (the built-in default, below): a new temporary directory, deleted at exit (nothing survives); "
        "the shipped config/exchange.toml sets var/carbonx"
    ) in usage, usage
    assert "[journal.data_dir, default '']" in usage
    assert re.search(r'^data_dir = "var/carbonx"', (PROJECT / "config" / "exchange.toml").read_text(), re.MULTILINE)
    limits = (PROJECT / "docs" / "PROTOCOL.md").read_text().split("## 12. Limits of this version")[1]
    assert "`journal.data_dir` (`var/carbonx` in the shipped `exchange.toml`)" in limits
    assert "With an empty\n  `data_dir`" in limits


def test_logon_timeout_and_too_many_sessions():
    flags = ("--logon-timeout", "1", "--max-sessions", "2", "--max-pending-logons", "2")
    with running(*flags, probe=False) as srv:
        bank = Session(srv.port, "bank")  # session_id 1
        silent = Wire(srv.port)  # 2: sends nothing
        started = time.monotonic()
        partial = Wire(srv.port)  # 3: sends part of a frame only
        partial.send_raw(frame(pack({"type": "logon", "account": "broker", "secret": SECRET}))[:10])
        refused = Wire(srv.port)  # 4: a third connection waiting to log on
        try:
            check_server_logout(refused.recv(), 718, text=TEXT[718])
            refused.expect_close()
            for wire in (silent, partial):
                check_server_logout(wire.recv(3.0), 713, text=TEXT[713])
                wire.expect_close()
            assert 0.9 <= time.monotonic() - started <= 2.5
            # session_id counts every accepted connection, refused ones included (8.1)
            assert bank.accepted["session_id"] == 1
            broker = Session(srv.port, "broker")
            assert broker.accepted["session_id"] == 5
            third = Wire(srv.port)  # 6: a right secret, but two sessions are logged on already
            third.send({"type": "logon", "account": "utility-north", "secret": SECRET})
            check_server_logout(third.recv(), 715, text=TEXT[715])
            third.expect_close()
            broker.logout()
            bank.logout()
        finally:
            for wire in (silent, partial, bank, refused):
                wire.close()


def test_slow_consumer_gets_710_behind_unread_messages():
    flags = ("--max-outbound-bytes", "65536", "--throttle-rate", "1000000", "--throttle-burst", "1000000")
    with running(*flags) as srv:
        session = Session(srv.port, "bank", receive_buffer=4096)
        try:
            count = 20000  # about 4 MB of answers: far more than the socket buffers and 64 KiB hold
            session.send_raw(
                b"".join(frame(pack({"type": "balances", "request_id": number})) for number in range(count))
            )
            time.sleep(0.3)  # not reading; then reading again within the second of grace
            answered = 0
            while True:
                message = session.recv()
                if message["type"] == "logout":
                    break
                # each answered in its place: balances, or 719 past the session's share of the queue (4.8.1)
                assert message["request_id"] == answered, message
                assert message["type"] == "balances" or (message["type"], message["code"]) == ("reject", 719), message
                answered += 1
            check_server_logout(message, 710, text=TEXT[710])
            assert 0 < answered < count
            session.expect_close()
            last = session.expected_seq - 1
            again = Session(srv.port, "bank")
            assert again.accepted["next_seq"] >= last + 1
            again.logout()
        finally:
            session.close()


def test_shutdown_logs_sessions_out_with_711():
    srv = Server()
    session = Session(srv.port, "bank")
    try:
        session.ask(
            {
                "type": "new_order",
                "client_order_id": "s",
                "instrument": "EUA",
                "side": "S",
                "quantity": 1,
                "price": 7000,
            }
        )
        srv.process.send_signal(signal.SIGTERM)
        check_server_logout(session.recv(), 711, text=TEXT[711])
        session.expect_close()
    finally:
        session.close()
        code = srv.stop()
        srv.log.close()
        assert code == 0


# -- section 10, byte for byte -------------------------------------------------------------------


def _doc_frames() -> dict[int, bytes]:
    """The frames of section 10 as the document prints them (length prefix included)."""
    text = (PROJECT / "docs" / "PROTOCOL.md").read_text()
    section = text[text.index("## 10. A worked example") : text.index("## 11. Writing a client")]
    frames = {}
    for number, length, body in re.findall(
        r"Frame (\d), [^:]+:\n\n```\nlength  ([0-9a-f ]+?)\s+\(\d+ bytes follow\)\nbody\n(.*?)```", section, re.DOTALL
    ):
        frames[int(number)] = bytes.fromhex(length) + bytes.fromhex("".join(body.split()))
    assert sorted(frames) == [1, 2, 3, 4, 5, 6, 7]
    return frames


def _mask_ts(data: bytes) -> bytes:
    marker = b"\xa2ts\xcf"
    assert data.count(marker) == 1, data
    at = data.index(marker) + len(marker)
    return data[:at] + b"\x00" * 8 + data[at + 8 :]


def test_worked_example_of_section_10():
    frames = _doc_frames()
    with running(probe=False) as srv:  # a freshly started server, no connection before bank's
        bank = Wire(srv.port)
        try:
            bank.send_raw(frames[1])
            body = bank.read_body()
            assert _mask_ts(frame(body)) == _mask_ts(frames[2])
            assert len(body) == 1089  # section 1
            bank.send_raw(frames[3])
            body = bank.read_body()
            assert _mask_ts(frame(body)) == _mask_ts(frames[4])
            bank_new = msgpack.unpackb(body, raw=False)

            broker = Session(srv.port, "broker")
            assert broker.accepted["session_id"] == 2
            broker.send(
                {
                    "type": "new_order",
                    "request_id": 7,
                    "client_order_id": 1001,
                    "instrument": "EUA",
                    "side": "B",
                    "quantity": 2,
                    "price": 7025,
                }
            )
            b_new, b_fill = broker.recv(), broker.recv()
            expected_new = {
                "type": "execution_report",
                "exec_type": "new",
                "order_status": "new",
                "order_id": 2,
                "client_order_id": 1001,
                "instrument": "EUA",
                "side": "B",
                "order_type": "LIMIT",
                "time_in_force": "GTC",
                "price": 7025,
                "stop_price": None,
                "display_quantity": None,
                "expire_date": None,
                "quantity": 2,
                "cum_quantity": 0,
                "leaves_quantity": 2,
                "avg_price": None,
                "ts": b_new["ts"],
                "request_id": 7,
                "seq": 1,
            }
            assert b_new == expected_new and list(b_new) == list(expected_new)
            expected_fill = {
                "type": "execution_report",
                "exec_type": "trade",
                "order_status": "filled",
                "order_id": 2,
                "client_order_id": 1001,
                "instrument": "EUA",
                "side": "B",
                "order_type": "LIMIT",
                "time_in_force": "GTC",
                "price": 7025,
                "stop_price": None,
                "display_quantity": None,
                "expire_date": None,
                "quantity": 2,
                "cum_quantity": 2,
                "leaves_quantity": 0,
                "avg_price": "70.2500",
                "ts": b_new["ts"],
                "trade_id": 1,
                "last_price": 7025,
                "last_quantity": 2,
                "liquidity": "taker",
                "fee": 700,
                "aggressor_side": "B",
                "request_id": 7,
                "seq": 2,
            }
            assert b_fill == expected_fill and list(b_fill) == list(expected_fill)

            body = bank.read_body()
            assert _mask_ts(frame(body)) == _mask_ts(frames[5])
            bank_fill = msgpack.unpackb(body, raw=False)
            assert bank_fill["ts"] == b_new["ts"] > bank_new["ts"]

            bank.send_raw(frames[6])
            body = bank.read_body()
            assert _mask_ts(frame(body)) == _mask_ts(frames[7])
            bank.expect_close()

            # cancel-on-disconnect cancelled bank's remaining 3 lots as seq 3
            again = Session(srv.port, "bank")
            assert again.accepted["next_seq"] == 4 and again.accepted["session_id"] == 3
            rid = again.request({"type": "order_status", "order_id": 1})
            status = again.recv()
            check(status, report("status", "canceled", 1, "b-1", "EUA", "S", 7025, 5, 2, 0, "70.2500", request_id=rid))
            assert status["seq"] == 4
            again.logout()
            broker.logout()
        finally:
            bank.close()


def test_section_10_is_one_run_and_its_json_is_its_bytes():
    """Section 10 shows one run: each decoded map is exactly its frame's bytes, and the timestamps follow the
    story in order, within seconds of each other (not stitched together from several runs)."""
    text = (PROJECT / "docs" / "PROTOCOL.md").read_text()
    section = text[text.index("## 10. A worked example") : text.index("## 11. Writing a client")]
    frames = _doc_frames()
    decoded = {
        int(number): json.loads(shown)
        for number, shown in re.findall(
            r"Frame (\d), [^:]+:\n\n```\n.*?```\n\nDecoded:\n\n```json\n(.*?)\n```", section, re.DOTALL
        )
    }
    assert sorted(decoded) == [1, 2, 3, 4, 5, 6, 7]
    for number, data in frames.items():
        assert msgpack.unpackb(data[4:], raw=False) == decoded[number], f"frame {number}"
        (length,) = struct.unpack(">I", data[:4])
        assert length == len(data) - 4 and f"({length} bytes follow)" in section
    broker_new, broker_fill = (
        json.loads(line)
        for line in re.search(r"its fill as the taker:\n\n```json\n(.*?)\n```", section, re.DOTALL)
        .group(1)
        .splitlines()
    )
    stamps = [decoded[2]["ts"], decoded[4]["ts"], broker_new["ts"], decoded[7]["ts"]]
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] < 60 * 10**9, stamps
    assert broker_fill["ts"] == decoded[5]["ts"] == broker_new["ts"]  # one request, one ts (section 3)
    # the walkthrough's reading of the bytes
    assert frames[2][4] == 0x8F and len(decoded[2]) == 15
    assert all(len(entry) == 16 for entry in decoded[2]["instruments"])
    assert frames[2].count(bytes([0xDE, 0x00, 0x10, 0xA6]) + b"symbol") == 3
    assert frames[4][4:7] == b"\xde\x00\x14" and len(decoded[4]) == 20
    assert frames[5][4:7] == b"\xde\x00\x19" and len(decoded[5]) == 25


def test_sample_client_of_section_11(tmp_path):
    """The minimal client of section 11, run as printed, gives the output the document shows."""
    text = (PROJECT / "docs" / "PROTOCOL.md").read_text()
    section = text[text.index("## 11. Writing a client") : text.index("## 12. Limits")]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    documented = re.search(r"Its output in that run[^`]*```\n(.*?)```", section, re.DOTALL).group(1).splitlines()
    script = tmp_path / "client.py"
    script.write_text(code)

    def masked(line):
        message = ast.literal_eval(line)
        message["ts"] = 0
        if isinstance(message.get("client_order_id"), str):
            message["client_order_id"] = message["client_order_id"].split("-")[0]
        return message

    with running() as srv:
        result = subprocess.run(
            [sys.executable, str(script), str(srv.port)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    assert len(printed) == len(documented), result.stdout
    for got, expected in zip(printed, documented, strict=True):
        assert masked(got) == masked(expected)
