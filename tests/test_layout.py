"""The layout holds: sizes within bounds, the packages' boundaries kept.

docs/ARCHITECTURE.md promises that the gateway reads the engine only through
its public read API, that ``exchange/`` never imports the gateway, and that
no class, function or module grows past what a reader can hold (a class
400 lines, a function 120, a module 800). These tests read the source with
``ast`` and fail naming the place that broke a rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
PACKAGES = ("exchange", "gateway")
MAX_CLASS, MAX_FUNCTION, MAX_MODULE = 400, 120, 800
# What the engine keeps inside: the gateway asks Engine's read API instead (balances, depth, phase, ...).
ENGINE_INTERNALS = {"books", "accounts", "counters", "open_orders", "compliance", "primary", "fee_account"}


def modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (PROJECT / package).rglob("*.py"))


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def lines(node: ast.AST) -> int:
    return node.end_lineno - node.lineno + 1  # type: ignore[attr-defined,operator]


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(PROJECT)))
def test_no_class_function_or_module_is_too_long(path: Path) -> None:
    tree = parsed(path)
    where = path.relative_to(PROJECT)
    assert len(path.read_text().splitlines()) <= MAX_MODULE, f"{where}: more than {MAX_MODULE} lines"
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            assert lines(node) <= MAX_CLASS, f"{where}:{node.lineno}: class {node.name} is {lines(node)} lines"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert lines(node) <= MAX_FUNCTION, f"{where}:{node.lineno}: {node.name} is {lines(node)} lines"


def imported(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_core_never_imports_the_shell() -> None:
    for path in (PROJECT / "exchange").rglob("*.py"):
        shell = sorted(name for name in imported(parsed(path)) if name.split(".")[0] == "gateway")
        assert not shell, f"{path.relative_to(PROJECT)} imports {shell}"


def test_the_gateway_reads_the_engine_through_its_read_api() -> None:
    """No ``<something>.engine.books`` (or accounts, counters, ...), and no engine attribute starting with ``_``."""
    found = []
    for path in (PROJECT / "gateway").rglob("*.py"):
        for node in ast.walk(parsed(path)):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            named_engine = (isinstance(owner, ast.Name) and owner.id == "engine") or (
                isinstance(owner, ast.Attribute) and owner.attr == "engine"
            )
            if named_engine and (node.attr in ENGINE_INTERNALS or node.attr.startswith("_")):
                found.append(f"{path.relative_to(PROJECT)}:{node.lineno}: engine.{node.attr}")
    assert not found, "\n".join(found)


def test_the_layout_test_sees_a_violation() -> None:
    """The checks above can fail: a long function and an engine internal are caught in a sample."""
    body = "\n".join(f"    x{number} = {number}" for number in range(MAX_FUNCTION + 1))
    sample = ast.parse(f"def long():\n{body}\n\nengine.books\n")
    function = sample.body[0]
    assert lines(function) > MAX_FUNCTION
    attribute = sample.body[1].value  # type: ignore[attr-defined]
    assert attribute.attr in ENGINE_INTERNALS and attribute.value.id == "engine"
