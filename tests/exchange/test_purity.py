"""The matching core is pure: no I/O, no clock, no randomness, no asyncio; same commands, same events.

Checked three ways: importing ``exchange`` in a fresh interpreter pulls in
none of the shell's libraries; the source of ``exchange/`` neither imports
nor calls anything that reads a clock, draws a random number or touches a
file or socket (an AST scan, so comments and docstrings do not count); and a
replay under two different string-hash seeds gives the same events and state
hash (nothing depends on set or hash order).
"""

import ast
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from msgspec.structs import replace
from scenario_helpers import (
    BUY,
    SELL,
    announcement_order,
    book_levels,
    brief,
    check_books,
    is_level,
    level_key,
    make_engine,
)

from exchange import CancelOrder, EndOfDay, MassCancel, NewOrder, ReplaceOrder, SetSelfTradePrevention

REPO = Path(__file__).resolve().parents[2]
CORE_FILES = sorted((REPO / "exchange").rglob("*.py"))

FORBIDDEN_MODULES = {
    "time",
    "random",
    "secrets",
    "uuid",
    "socket",
    "ssl",
    "select",
    "selectors",
    "asyncio",
    "threading",
    "multiprocessing",
    "subprocess",
    "os",
    "io",
    "pathlib",
    "shutil",
    "tempfile",
    "logging",
    "sqlite3",
    "urllib",
    "http",
    "msgpack",
    "aiomqtt",
    "gateway",
    "tomllib",
}
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval", "__import__", "breakpoint"}
FORBIDDEN_ATTRIBUTE_CALLS = {  # clocks and random draws reached through an object
    "now",
    "today",
    "utcnow",
    "time",
    "time_ns",
    "monotonic",
    "monotonic_ns",
    "perf_counter",
    "perf_counter_ns",
    "random",
    "randint",
    "randrange",
    "choice",
    "shuffle",
    "urandom",
    "getrandbits",
}


def test_core_files_are_found():
    assert {path.name for path in CORE_FILES} >= {
        "engine.py",
        "book.py",
        "commands.py",
        "events.py",
        "enums.py",
        "codes.py",
        "instruments.py",
        "__init__.py",
    }


def test_importing_the_core_pulls_in_no_shell_library():
    code = (
        "import sys, json; import exchange; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'asyncio', 'msgpack', 'aiomqtt', 'socket', 'gateway'})))"
    )
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
    attrs = {
        node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert names & FORBIDDEN_MODULES and attrs & FORBIDDEN_ATTRIBUTE_CALLS and calls & FORBIDDEN_CALLS


REPLAY_SCRIPT = r"""
import json, sys
sys.path.insert(0, ".")
from exchange import CancelOrder, EndOfDay, Engine, MassCancel, NewOrder, ReplaceOrder, SetSelfTradePrevention
from gateway.config import load_instruments

engine = Engine(load_instruments(), pre_trade_risk=False)
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
        result = subprocess.run(
            [sys.executable, "-c", REPLAY_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, check=True
        )
        outputs.append(json.loads(result.stdout))
    assert len(outputs[0]["events"]) > 300
    assert any("Trade(" in event for event in outputs[0]["events"])
    assert outputs[0] == outputs[1]


def assert_batch_agrees_with_one_by_one(commands: list) -> list:
    """Run ``commands`` through ``handle_all`` on one engine and ``handle`` one by one on another; compare.

    What must hold: the commands' own events (everything but LevelChanged)
    are the same, in the same order, with the same content but their seq; the
    books, stops, accounts and id counters end the same, and only the event
    counter differs, since the batch announces fewer levels; the batch's seq
    numbers are gap free; and its LevelChanged events, after all the others,
    are the net level changes of the batch: one per level that any command
    changed (exactly the levels ``handle`` announced at least once), in the
    order ``handle`` first announced them, grouped by book in instrument order
    and bids before asks, each in its final state in the books (0/0 when
    gone, which is also the last state ``handle`` announced for it), stamped
    with the ts of the batch's last command. Returns the batch's events.
    """
    one_by_one = make_engine()
    events = [event for command in commands for event in one_by_one.handle(command)]
    batched = make_engine()
    batch = batched.handle_all(commands)
    check_books(one_by_one)
    check_books(batched)

    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    assert [event.seq for event in batch] == list(range(1, len(batch) + 1)), "batch seq numbers have a gap"
    assert batched.counters.seq == len(batch)

    own = [event for event in batch if not is_level(event)]
    levels = [event for event in batch if is_level(event)]
    assert batch == own + levels, "a LevelChanged comes before the end of the batch"
    assert [replace(event, seq=0) for event in own] == [
        replace(event, seq=0) for event in events if not is_level(event)
    ]

    # Same state but for the event counter (state_lines()[0] is the counters line).
    batched_lines, one_by_one_lines = list(batched.state_lines()), list(one_by_one.state_lines())
    assert batched_lines[1:] == one_by_one_lines[1:]
    counters = one_by_one.counters
    assert batched_lines[0] == (
        f"counters seq={len(batch)} order_id={counters.order_id} "
        f"trade_id={counters.trade_id} closed={one_by_one.last_closed_date}"
    )
    same_but_seq = hashlib.sha256()
    for line in [batched_lines[0]] + one_by_one_lines[1:]:
        same_but_seq.update(line.encode() + b"\n")
    assert batched.state_hash() == same_but_seq.hexdigest()

    touched = announcement_order(batched, (level_key(event) for event in events if is_level(event)))
    assert [level_key(event) for event in levels] == touched
    final = book_levels(batched)
    assert [(event.quantity, event.orders) for event in levels] == [final.get(key, (0, 0)) for key in touched]
    last_announced = {level_key(event): (event.quantity, event.orders) for event in events if is_level(event)}
    assert [(event.quantity, event.orders) for event in levels] == [last_announced[key] for key in touched]
    last_ts = getattr(commands[-1], "ts", 0)
    assert all(event.ts == last_ts for event in levels)
    return batch


def test_handle_all_gives_the_same_events_and_state_as_handle_on_each():
    def order(ts, account, clid, side, quantity, price=None, instrument="EUA", **fields):
        return NewOrder(
            ts=ts,
            account=account,
            client_order_id=clid,
            instrument=instrument,
            side=side,
            quantity=quantity,
            price=price,
            **fields,
        )

    commands = [
        order(1, "d", 1, "B", 4, 5790, instrument="CER"),  # CER changes first, but EUA is announced first
        order(2, "a", 1, "S", 5, 7000),
        order(3, "a", 2, "S", 30, 7010, display_quantity=10),
        order(4, "b", 1, "B", 2, 7100, stop_price=7005),
        order(5, "b", 2, "B", 12, 7010),
        CancelOrder(ts=6, account="a", order_id=99),
        ReplaceOrder(ts=7, account="a", client_order_id=2, quantity=25),
        order(8, "e", 1, "S", 2, 5790, instrument="CER"),
        SetSelfTradePrevention(ts=9, account="a", mode="CANCEL_BOTH"),
        order(10, "a", 3, "B", 40, 7010),
        order(11, "c", 1, "B", 3, order_type="MARKET"),
        MassCancel(ts=12, account="b"),
        object(),
        order(13, "c", 2, "S", 1, 6000, time_in_force="DAY"),  # rests, expires: born and gone in the batch
        order(14, "c", 3, "B", 2, 5990),  # a bid: announced before the asks that changed earlier
        EndOfDay(ts=15, trading_date=20240102),
    ]
    batch = assert_batch_agrees_with_one_by_one(commands)
    levels = [event for event in batch if is_level(event)]
    assert [(event.instrument, *brief(event)[1:]) for event in levels] == [
        ("EUA", BUY, 5990, 2, 1),
        ("EUA", SELL, 7000, 0, 0),
        ("EUA", SELL, 7010, 0, 0),
        ("EUA", SELL, 6000, 0, 0),
        ("CER", BUY, 5790, 2, 1),
    ]
    assert {event.ts for event in levels} == {15}
    # Cut into smaller batches, each batch keeps the same promises.
    for cut in (1, 4, 9, 13):
        assert_batch_agrees_with_one_by_one(commands[:cut])
