"""The matching core is pure: no I/O, no clock, no randomness, no asyncio; same commands, same events.

Checked three ways: importing ``exchange`` in a fresh interpreter pulls in
none of the shell's libraries; the source of ``exchange/`` neither imports
nor calls anything that reads a clock, draws a random number or touches a
file or socket (an AST scan, so comments and docstrings do not count); and a
replay under two different string-hash seeds gives the same events and state
hash (nothing depends on set or hash order).
"""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from exchange import CancelOrder, EndOfDay, MassCancel, NewOrder, ReplaceOrder, SetSelfTradePrevention
from scenario_helpers import make_engine

REPO = Path(__file__).resolve().parents[1]
CORE_FILES = sorted((REPO / "exchange").glob("*.py"))

FORBIDDEN_MODULES = {
    "time", "random", "secrets", "uuid", "socket", "ssl", "select", "selectors", "asyncio", "threading",
    "multiprocessing", "subprocess", "os", "io", "pathlib", "shutil", "tempfile", "logging", "sqlite3",
    "urllib", "http", "msgpack", "aiomqtt", "gateway", "tomllib",
}
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval", "__import__", "breakpoint"}
FORBIDDEN_ATTRIBUTE_CALLS = {  # clocks and random draws reached through an object
    "now", "today", "utcnow", "time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns",
    "random", "randint", "randrange", "choice", "shuffle", "urandom", "getrandbits",
}


def test_core_files_are_found():
    assert {path.name for path in CORE_FILES} >= {"engine.py", "book.py", "commands.py", "events.py", "enums.py",
                                                  "codes.py", "instruments.py", "__init__.py"}


def test_importing_the_core_pulls_in_no_shell_library():
    code = ("import sys, json; import exchange; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'asyncio', 'msgpack', 'aiomqtt', 'socket', 'gateway'})))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize("path", CORE_FILES, ids=[path.name for path in CORE_FILES])
def test_core_source_imports_no_io_clock_or_randomness(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN_MODULES, f"{path.name} imports {sorted(imported & FORBIDDEN_MODULES)}"


@pytest.mark.parametrize("path", CORE_FILES, ids=[path.name for path in CORE_FILES])
def test_core_source_calls_no_io_clock_or_randomness(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                calls.append(f"{func.id}() at line {node.lineno}")
            elif isinstance(func, ast.Attribute) and func.attr in FORBIDDEN_ATTRIBUTE_CALLS:
                calls.append(f".{func.attr}() at line {node.lineno}")
    assert calls == [], f"{path.name} calls {calls}"


def test_the_scan_would_catch_a_clock():
    # The two scans above must be able to fail: run them on a snippet that breaks the rules.
    tree = ast.parse("import time\nfrom datetime import datetime\nx = datetime.now()\nopen('f')\n")
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    attrs = {node.func.attr for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
    calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert names & FORBIDDEN_MODULES and attrs & FORBIDDEN_ATTRIBUTE_CALLS and calls & FORBIDDEN_CALLS


REPLAY_SCRIPT = r"""
import json, sys
sys.path.insert(0, ".")
from exchange import CancelOrder, EndOfDay, Engine, MassCancel, NewOrder, ReplaceOrder, SetSelfTradePrevention
from gateway.config import load_instruments

engine = Engine(load_instruments())
commands = []
ts = 0
for n in range(300):
    ts += 1
    account = f"acct{n % 7}"
    side = "B" if n % 3 else "S"
    price = 6950 + (n * 37) % 100
    kind = n % 11
    if kind == 9:
        commands.append(CancelOrder(ts=ts, account=account, client_order_id=f"o{n - 14}"))
    elif kind == 10:
        commands.append(ReplaceOrder(ts=ts, account=account, client_order_id=f"o{n - 7}", price=price))
    else:
        extra = {"display_quantity": 1} if kind and n % 13 == 0 else {}
        if kind and n % 17 == 0:
            extra = {"stop_price": price}
        commands.append(NewOrder(ts=ts, account=account, client_order_id=f"o{n}",
                                 instrument=("EUA", "CER")[n % 2], side=side, quantity=1 + n % 9,
                                 price=price if kind else None, order_type="LIMIT" if kind else "MARKET",
                                 **extra))
    if n % 50 == 49:
        commands.append(SetSelfTradePrevention(ts=ts, account=account, mode="CANCEL_RESTING"))
        commands.append(MassCancel(ts=ts, account=f"acct{n % 5}"))
commands.append(EndOfDay(ts=ts + 1, trading_date=20240102))
events = engine.handle_all(commands)
print(json.dumps({"events": [repr(e) for e in events], "hash": engine.state_hash()}))
"""


def test_replay_is_identical_under_different_hash_seeds():
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", REPLAY_SCRIPT], cwd=REPO, env=env, capture_output=True,
                                text=True, check=True)
        outputs.append(json.loads(result.stdout))
    assert len(outputs[0]["events"]) > 300
    assert any("Trade(" in event for event in outputs[0]["events"])
    assert outputs[0] == outputs[1]


def test_handle_all_gives_the_same_events_and_state_as_handle_on_each():
    def order(ts, account, clid, side, quantity, price=None, **fields):
        return NewOrder(ts=ts, account=account, client_order_id=clid, instrument="EUA", side=side,
                        quantity=quantity, price=price, **fields)

    commands = [
        order(1, "a", 1, "S", 5, 7000), order(2, "a", 2, "S", 30, 7010, display_quantity=10),
        order(3, "b", 1, "B", 2, 7100, stop_price=7005), order(4, "b", 2, "B", 12, 7010),
        CancelOrder(ts=5, account="a", order_id=99), ReplaceOrder(ts=6, account="a", client_order_id=2, quantity=25),
        SetSelfTradePrevention(ts=7, account="a", mode="CANCEL_BOTH"), order(8, "a", 3, "B", 40, 7010),
        order(9, "c", 1, "B", 3, order_type="MARKET"), MassCancel(ts=10, account="b"), object(),
        order(11, "c", 2, "S", 1, 6000, time_in_force="DAY"), EndOfDay(ts=12, trading_date=20240102),
    ]
    one_by_one = make_engine()
    events = [event for command in commands for event in one_by_one.handle(command)]
    batched = make_engine()
    assert batched.handle_all(commands) == events
    assert batched.state_hash() == one_by_one.state_hash()
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
