"""The ``carbonx`` command line.

Subcommands, by the module that has them:
  gateway/cli/operations.py
    demo         run the exchange with simulated participants trading over sockets; show books and trades
    serve        run the exchange (trading gateway, engine, settlement) until Ctrl-C or SIGTERM
  gateway/cli/trading.py
    order        send one order and print its execution reports
    cancel       cancel an order (by order id or client order id)
    status       print an order's status
    replace      change an order's quantity and/or price
    mass-cancel  cancel all the account's orders, or those on one instrument
    orders       list the account's open orders
    trades       list the account's trades of the day
    book         print an instrument's book
    balances     print the account's cash and units (holding, held by open orders, available)
    positions    print the account's futures positions (net lots, settlement price, last trading day)
    margin       print the futures margin the account's positions take against its cash
    block        report one side of a futures block trade or EFP agreed with another account
    md           a live view of the market data (books, trades, statistics) from MQTT or the socket
  gateway/cli/auctions.py
    auction      EU ETS primary auctions: open (auctioneers), bid, modify, withdraw, report, admit (operators)
  gateway/cli/compliance.py
    compliance   EU ETS compliance: allocate, emissions, close (authorities); surrender; position
  gateway/cli/operations.py
    kill-switch  (operator) block an account and cancel its orders, or release it
    close-out    (operator) close out an account on a margin call: its futures positions to another account
    snapshot     (operator) have the running exchange snapshot its state now
    phase        (operator) move an instrument to another trading phase
    replay       rebuild the state from a journal offline: counts and state hash
    instruments  check instruments.toml and list the instruments it defines
    accounts     check accounts.toml and list the participants it defines
    hash-secret  hash a logon secret for accounts.toml (secrets are never stored in clear)

How this works: :func:`build_parser` takes the options every command shares (where the configuration
files are) and has each module add its subcommands, each with its ``run``; :func:`main` parses, runs, and
turns the errors a user can fix into one line on stderr and an exit status.

The trader's commands (order, cancel, replace, mass-cancel, status, orders, trades, book,
balances, kill-switch, ...) log on to a running exchange as ``--account`` (or
$CARBONX_ACCOUNT) with the secret from ``--secret-file``, else
$CARBONX_SECRET, else asked for without echo on the terminal; every demo
account's secret is "carbonx-demo" (gateway/cli/one_shot.py). Each waits at most ``--timeout`` seconds
(10) for the connection, the logon and each answer. Every failure is one
line on stderr. Exit status: 0 done, 1 refused by the exchange, 2 bad
configuration or arguments, 3 no connection, no answer or logon refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exchange import ConfigError
from gateway.cli import auctions, compliance, operations, trading
from gateway.cli.one_shot import USAGE, UsageError
from gateway.lifecycle import ExchangeStopped

CONFIG_LOOKUP = (
    "Configuration files: a file named by its flag (--instruments, --accounts, --compliance, "
    "--exchange-config) is read from there; every other one comes from the configuration folder: "
    "$CARBONX_CONFIG if set, else ./config if the working directory has one with an instruments.toml, "
    "else the defaults packaged with carbonx."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carbonx", description="carbonx: an exchange for carbon credits", epilog=CONFIG_LOOKUP
    )
    parser.add_argument(
        "--instruments",
        type=Path,
        help="instrument definitions (TOML); default: instruments.toml in the configuration folder",
    )
    parser.add_argument(
        "--accounts",
        type=Path,
        help="participants and their opening holdings (TOML); default: accounts.toml in the configuration folder",
    )
    parser.add_argument(
        "--compliance",
        type=Path,
        help="EU ETS compliance rules (TOML); default: compliance.toml in the configuration folder",
    )
    parser.add_argument(
        "--futures-file",
        type=Path,
        help="the futures series and their margin (TOML), used when futures are on; default: futures.toml in the "
        "configuration folder",
    )
    parser.add_argument(
        "--calendar",
        type=Path,
        help="the trading calendar (TOML), used when the schedule is 'calendar'; default: calendar.toml in the "
        "configuration folder",
    )
    parser.add_argument(
        "--exchange-config",
        type=Path,
        help="the exchange process's settings (TOML); default: exchange.toml in the configuration folder",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    operations.add_exchange_commands(commands)
    trading.add_commands(commands)
    auctions.add_commands(commands)
    compliance.add_commands(commands)
    operations.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"carbonx {args.command}: {exc}", file=sys.stderr)
        return USAGE
    except ConfigError as exc:
        print(f"carbonx: configuration error: {exc}", file=sys.stderr)
        return USAGE
    except ExchangeStopped as exc:  # the exchange this process ran (the demo's) failed: its log says why
        print(f"carbonx {args.command}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (``carbonx demo | head``): nothing left to say
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
