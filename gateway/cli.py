"""The ``carbonx`` command line.

Subcommands:
  demo         simulate a trading day of the carbon market's participants and show the books
  instruments  check config/instruments.toml and list the instruments it defines
  accounts     check config/accounts.toml and list the participants it defines
  hash-secret  hash a logon secret for accounts.toml (secrets are never stored in clear)
"""
from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from exchange import ConfigError, Engine

from .config import (DEFAULT_ACCOUNTS, DEFAULT_COMPLIANCE, DEFAULT_INSTRUMENTS, load_accounts, load_compliance,
                     load_instruments)
from .credentials import hash_secret
from .demo import run_demo
from .display import eur


def _instruments_command(args: argparse.Namespace) -> int:
    instruments = load_instruments(args.instruments)
    for symbol, instrument in instruments.items():
        collar = "none" if instrument.market_collar is None else f"EUR {eur(instrument.market_collar)}"
        print(f"{symbol:<6} {instrument.name}: lot {instrument.lot_units:,} units, "
              f"tick EUR {eur(instrument.tick_size)}, "
              f"{instrument.min_lots}-{instrument.max_lots} lots, prices EUR {eur(instrument.min_price)}-"
              f"{eur(instrument.max_price)}, reference EUR {eur(instrument.reference_price)}, "
              f"market collar {collar}, band {instrument.price_band_bps} bp")
    return 0


def _demo_command(args: argparse.Namespace) -> int:
    instruments = load_instruments(args.instruments)
    accounts = load_accounts(args.accounts, instruments)
    engine = Engine(instruments, compliance=load_compliance(args.compliance))
    run_demo(engine, accounts, sys.stdout, orders=args.orders, seed=args.seed, ledger_path=args.ledger,
             statements=args.statement)
    return 0


def _accounts_command(args: argparse.Namespace) -> int:
    instruments = load_instruments(args.instruments)
    for account in load_accounts(args.accounts, instruments).values():
        units = ", ".join(f"{symbol} {amount:,} t" for symbol, amount in account.units.items() if amount) or "no units"
        limit = "no limit" if account.order_value_limit is None else f"EUR {eur(account.order_value_limit)}"
        print(f"{account.account_id:<14} {account.kind:<18} EUR {eur(account.cash):>14}  {units}; "
              f"order value limit {limit}  ({account.name})")
    return 0


def _hash_secret_command(args: argparse.Namespace) -> int:
    secret = getpass.getpass("secret: ") if args.secret is None else args.secret
    print(hash_secret(secret))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carbonx", description="carbonx: an exchange for carbon credits")
    parser.add_argument("--instruments", type=Path, default=DEFAULT_INSTRUMENTS,
                        help="instrument definitions (TOML); default: %(default)s")
    parser.add_argument("--accounts", type=Path, default=DEFAULT_ACCOUNTS,
                        help="participants and their opening holdings (TOML); default: %(default)s")
    parser.add_argument("--compliance", type=Path, default=DEFAULT_COMPLIANCE,
                        help="EU ETS compliance rules (TOML); default: %(default)s")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="simulate a trading day and show the books")
    demo.add_argument("--orders", type=int, default=2000, help="participant actions to simulate")
    demo.add_argument("--seed", type=int, default=2005, help="the same seed gives the same day")
    demo.add_argument("--ledger", type=Path, help="keep the settlement ledger (SQLite) in this file "
                      "(default: a temporary file); a file from an earlier run is resumed, not repeated")
    demo.add_argument("--statement", action="append", default=[], metavar="ACCOUNT",
                      help="print this account's statement after the day (repeatable)")
    demo.set_defaults(run=_demo_command)
    listing = commands.add_parser("instruments", help="check and list the configured instruments")
    listing.set_defaults(run=_instruments_command)
    accounts = commands.add_parser("accounts", help="check and list the configured participants")
    accounts.set_defaults(run=_accounts_command)
    hashing = commands.add_parser("hash-secret", help="print the hash of a logon secret for accounts.toml")
    hashing.add_argument("secret", nargs="?", help="the secret (asked for without echo if left out)")
    hashing.set_defaults(run=_hash_secret_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"carbonx: configuration error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (``carbonx demo | head``): nothing left to say
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
