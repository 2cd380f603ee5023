"""Which of the engine's modules this run imports compiled (setup.py's optional mypyc build).

The engine's tests are the same for both builds: ``.ci/run`` runs them a second time in a scratch copy built in
place with ``CARBONX_COMPILE=1``, with ``CARBONX_EXPECT_COMPILED=1`` set, where this test makes sure that the
compiled modules are the ones tested (a build that fell back to the .py files would otherwise pass as compiled).
In the ordinary run it checks the opposite: the pure-Python reference is what runs. Either way an engine with
orders in its books survives a pickle (snapshots), which a compiled class allows only when it says so.
"""

from __future__ import annotations

import ast
import importlib
import os
import pickle
from pathlib import Path

from scenario_helpers import shipped_instruments

import exchange
from exchange import CASH_ASSET, Deposit, Engine, NewOrder, OpenAccount, Side

ROOT = Path(__file__).resolve().parents[2]


def compiled_modules() -> list[str]:
    """setup.py's COMPILED_MODULES as module names, read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "COMPILED_MODULES" for target in node.targets
        ):
            return [path.removesuffix(".py").replace("/", ".") for path in ast.literal_eval(node.value)]
    raise AssertionError("setup.py has no COMPILED_MODULES")


def test_the_modules_run_as_built():
    expected = os.environ.get("CARBONX_EXPECT_COMPILED") == "1"
    assert exchange.COMPILED is expected  # (snapshots are told apart by it: the two builds pickle differently)
    names = compiled_modules()
    assert "exchange.engine" in names and "exchange.matching" in names
    for name in names:
        path = importlib.import_module(name).__file__
        assert path is not None
        assert path.endswith(".so") is expected, f"{name} runs from {path}"


def test_an_engine_with_resting_orders_survives_a_pickle():
    engine = Engine(shipped_instruments())  # pre-trade risk on: accounts, holds and fees in the state
    for account in ("alice", "bob"):
        engine.handle_all(
            [
                OpenAccount(ts=0, account=account),
                Deposit(ts=0, account=account, asset=CASH_ASSET, amount=10**9),
                Deposit(ts=0, account=account, asset="EUA", amount=10**6),
            ]
        )
    for number, (side, price) in enumerate([(Side.BUY, 6990), (Side.SELL, 7010), (Side.BUY, 6995)], 1):
        engine.handle(
            NewOrder(
                ts=number,
                account="alice" if number % 2 else "bob",
                client_order_id=number,
                instrument="EUA",
                side=side,
                quantity=number,
                price=price,
            )
        )
    copy = pickle.loads(pickle.dumps(engine))
    assert copy.state_hash() == engine.state_hash()
    assert len(copy.open_orders) == 3
    order = next(iter(copy.open_orders.values()))
    assert order.book is copy.books["EUA"] and copy.accounts[order.account.account_id] is order.account
