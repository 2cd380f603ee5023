"""The ``carbonx`` command line.

Subcommands:
  demo         simulate a trading day of the carbon market's participants and show the books
  instruments  check config/instruments.toml and list the instruments it defines
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exchange import ConfigError, Engine

from .config import DEFAULT_INSTRUMENTS, load_instruments
from .demo import run_demo
from .display import eur


def _instruments_command(args: argparse.Namespace) -> int:
    instruments = load_instruments(args.instruments)
    for symbol, instrument in instruments.items():
        collar = "none" if instrument.market_collar is None else f"EUR {eur(instrument.market_collar)}"
        print(f"{symbol:<6} {instrument.name}: lot {instrument.lot_units:,} units, tick EUR {eur(instrument.tick_size)}, "
              f"{instrument.min_lots}-{instrument.max_lots} lots, prices EUR {eur(instrument.min_price)}-"
              f"{eur(instrument.max_price)}, reference EUR {eur(instrument.reference_price)}, "
              f"market collar {collar}, band {instrument.price_band_bps} bp")
    return 0


def _demo_command(args: argparse.Namespace) -> int:
    engine = Engine(load_instruments(args.instruments))
    run_demo(engine, sys.stdout, orders=args.orders, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carbonx", description="carbonx: an exchange for carbon credits")
    parser.add_argument("--instruments", type=Path, default=DEFAULT_INSTRUMENTS,
                        help="instrument definitions (TOML); default: %(default)s")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="simulate a trading day and show the books")
    demo.add_argument("--orders", type=int, default=2000, help="participant actions to simulate")
    demo.add_argument("--seed", type=int, default=2005, help="the same seed gives the same day")
    demo.set_defaults(run=_demo_command)
    listing = commands.add_parser("instruments", help="check and list the configured instruments")
    listing.set_defaults(run=_instruments_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"carbonx: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
