"""Reading configuration files.

How this works: TOML files are read here (the only place that opens them).
Instruments are handed to the pure parser in ``exchange``; accounts are
parsed here and become the engine's own commands (OpenAccount, Deposit), so
the engine learns of them the way it learns of everything, in sequence.
Every amount is converted once into integers (cents, units). Errors surface
as :class:`exchange.ConfigError` naming the file and the field.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, TypeVar

from exchange import (CASH_ASSET, ComplianceConfig, Deposit, InvalidCommand, OpenAccount, RegisterInstallation,
                      SelfTradePrevention, parse_compliance)
from exchange.instruments import ConfigError, Instrument, eur_to_cents, parse_instruments

from .credentials import is_secret_hash

T = TypeVar("T")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
DEFAULT_INSTRUMENTS = CONFIG_DIR / "instruments.toml"


def read_toml(path: Path) -> dict:
    """Parse a TOML file; a missing file or a syntax error becomes a ConfigError naming the file."""
    try:
        with open(path, "rb") as stream:
            return tomllib.load(stream)
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None


def _parse_file(path: Path | str, parse: Callable[[dict], T]) -> T:
    """Parse a TOML file with ``parse``; a ConfigError names the file as well as the field."""
    path = Path(path)
    try:
        return parse(read_toml(path))
    except ConfigError as exc:
        if exc.field.startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {exc.field}", exc.problem) from None


def load_instruments(path: Path | str = DEFAULT_INSTRUMENTS) -> dict[str, Instrument]:
    """The instruments defined in ``path``; raises ConfigError naming the file and the bad field."""
    return _parse_file(path, parse_instruments)


# -- accounts ---------------------------------------------------------------------------------

DEFAULT_ACCOUNTS = CONFIG_DIR / "accounts.toml"
ACCOUNT_KINDS = ("installation", "broker", "project-developer", "fund", "bank", "investor")
_ACCOUNT_FIELDS = {"name", "kind", "cash_eur", "units", "order_value_limit_eur", "self_trade_prevention",
                   "secret_hash", "credit_limit_bps"}


@dataclass(frozen=True)
class AccountConfig:
    """One participant as configured: integers only (cents, units)."""

    account_id: str
    name: str
    kind: str
    cash: int  # cents
    units: dict[str, int]  # per instrument symbol
    order_value_limit: int | None  # cents
    self_trade_prevention: SelfTradePrevention | None
    secret_hash: str
    credit_limit_bps: int | None = None  # installations: share of an obligation CERs and ERUs may cover


def parse_accounts(document: dict, instruments: Mapping[str, Instrument]) -> dict[str, AccountConfig]:
    """Build the accounts from a parsed ``accounts.toml``; raise ConfigError on the first bad field."""
    tables = document.get("accounts")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError("accounts", "missing: define at least one [accounts.ID] table")
    accounts = {}
    for account_id, table in tables.items():
        where = f"accounts.{account_id}"
        if not isinstance(table, dict):
            raise ConfigError(where, "must be a table")
        unknown = sorted(set(table) - _ACCOUNT_FIELDS)
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}", f"unknown field (known: {', '.join(sorted(_ACCOUNT_FIELDS))})")
        try:
            OpenAccount(ts=0, account=account_id)  # the engine's own rules for an account id
        except InvalidCommand as exc:
            raise ConfigError(where, exc.code.text) from None
        name = table.get("name", account_id)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name", "must be a non-empty string")
        kind = table.get("kind")
        if kind not in ACCOUNT_KINDS:
            raise ConfigError(f"{where}.kind", f"must be one of {', '.join(ACCOUNT_KINDS)}")
        cash = _euros(table, where, "cash_eur", required=True)
        units = table.get("units", {})
        if not isinstance(units, dict):
            raise ConfigError(f"{where}.units", "must be a table of instrument = units")
        for symbol, amount in units.items():
            if symbol not in instruments:
                raise ConfigError(f"{where}.units.{symbol}", f"unknown instrument (known: {', '.join(instruments)})")
            if type(amount) is not int or amount < 0:
                raise ConfigError(f"{where}.units.{symbol}", "must be a whole number of units, 0 or more")
        limit = _euros(table, where, "order_value_limit_eur", required=False)
        if limit is not None and limit <= 0:
            raise ConfigError(f"{where}.order_value_limit_eur", "must be positive (leave it out for no limit)")
        stp = table.get("self_trade_prevention")
        if stp is not None:
            try:
                stp = SelfTradePrevention(stp)
            except ValueError:
                raise ConfigError(f"{where}.self_trade_prevention",
                                  f"must be one of {', '.join(mode.value for mode in SelfTradePrevention)}") from None
        secret_hash = table.get("secret_hash")
        if not isinstance(secret_hash, str) or not is_secret_hash(secret_hash):
            raise ConfigError(f"{where}.secret_hash",
                              "must be a scrypt hash, never the secret itself (make one with `carbonx hash-secret`)")
        credit_limit = table.get("credit_limit_bps")
        if kind == "installation":
            if type(credit_limit) is not int or not 0 <= credit_limit <= 10_000:
                raise ConfigError(f"{where}.credit_limit_bps",
                                  "an installation needs its credit limit: basis points from 0 to 10000")
        elif credit_limit is not None:
            raise ConfigError(f"{where}.credit_limit_bps", "only an installation has a credit limit")
        accounts[account_id] = AccountConfig(account_id, name, kind, cash, dict(units), limit, stp, secret_hash,
                                             credit_limit)
    return accounts


def _euros(table: dict, where: str, key: str, *, required: bool) -> int | None:
    if key not in table:
        if required:
            raise ConfigError(f"{where}.{key}", "missing")
        return None
    value = table[key]
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}", f'write euro amounts as quoted decimals ("1000.00"), not {value!r}')
    try:
        cents = eur_to_cents(value)
    except ValueError as exc:
        raise ConfigError(f"{where}.{key}", str(exc)) from None
    if cents < 0:
        raise ConfigError(f"{where}.{key}", "must not be negative")
    return cents


def load_accounts(path: Path | str, instruments: Mapping[str, Instrument]) -> dict[str, AccountConfig]:
    """The accounts defined in ``path``; raises ConfigError naming the file and the bad field."""
    return _parse_file(path, lambda document: parse_accounts(document, instruments))


def opening_commands(accounts: Mapping[str, AccountConfig], ts: int) -> list:
    """The engine commands that open and fund the configured accounts, in file order."""
    commands: list = []
    for account in accounts.values():
        commands.append(OpenAccount(ts=ts, account=account.account_id, order_value_limit=account.order_value_limit,
                                    self_trade_prevention=account.self_trade_prevention))
        if account.cash:
            commands.append(Deposit(ts=ts, account=account.account_id, asset=CASH_ASSET, amount=account.cash))
        for symbol, amount in account.units.items():
            if amount:
                commands.append(Deposit(ts=ts, account=account.account_id, asset=symbol, amount=amount))
        if account.credit_limit_bps is not None:
            commands.append(RegisterInstallation(ts=ts, account=account.account_id,
                                                 credit_limit_bps=account.credit_limit_bps))
    return commands


DEFAULT_COMPLIANCE = CONFIG_DIR / "compliance.toml"


def load_compliance(path: Path | str = DEFAULT_COMPLIANCE) -> ComplianceConfig:
    """The compliance rules in ``path``; raises ConfigError naming the file and the bad field."""
    return _parse_file(path, parse_compliance)
