"""The ``carbonx`` command line.

Subcommands:
  demo         run the exchange with simulated participants trading over sockets; show books and trades
  serve        run the exchange (trading gateway, engine, settlement) until Ctrl-C or SIGTERM
  order        send one order and print its execution reports
  cancel       cancel an order (by order id or client order id)
  replace      change an order's quantity and/or price
  mass-cancel  cancel all the account's orders, or those on one instrument
  status       print an order's status
  orders       list the account's open orders
  trades       list the account's trades of the day
  book         print an instrument's book
  balances     print the account's cash and units (holding, held by open orders, available)
  kill-switch  (operator) block an account and cancel its orders, or release it
  md           a live view of the market data (books, trades, statistics) from MQTT or the socket
  instruments  check instruments.toml and list the instruments it defines
  accounts     check accounts.toml and list the participants it defines
  hash-secret  hash a logon secret for accounts.toml (secrets are never stored in clear)

The trader's commands (order, cancel, replace, mass-cancel, status, orders, trades, book,
balances, kill-switch, ...) log on to a running exchange as ``--account`` (or
$CARBONX_ACCOUNT) with the secret from ``--secret-file``, else
$CARBONX_SECRET, else asked for without echo on the terminal; every demo
account's secret is "carbonx-demo". Each waits at most ``--timeout`` seconds
(10) for the connection, the logon and each answer. Every failure is one
line on stderr. Exit status: 0 done, 1 refused by the exchange, 2 bad
configuration or arguments, 3 no connection, no answer or logon refused.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import socket
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Awaitable, Callable

from exchange import CALL_PHASES, ConfigError, TradingPhase
from exchange.instruments import cents_to_eur, eur_to_cents

from gateway.client import (CONNECT_TIMEOUT, ExchangeClient, LogonRefused, NoAnswer, NotAnExchange, RequestRefused, SessionClosed,
                     connect)
from gateway.config import SETTINGS, load_accounts, load_compliance, load_instruments, load_server_config
from gateway.sessions.credentials import hash_secret
from gateway.cli.display import auction_summary, bid_summary, describe_report, eur, ladder
from gateway.logs import configure_logging

REFUSED, CONNECTION = 1, 3
SIDES = {"buy": "B", "b": "B", "sell": "S", "s": "S"}
MAX_PRICE = Decimal(10) ** 12  # a price has at most 12 digits before the point (docs/PROTOCOL.md, section 3)


class UsageError(Exception):
    """A command given wrongly (a bad price, a missing secret, ...): one line saying what and what to do; exit 2."""


# -- the exchange ---------------------------------------------------------------------------------

def _settings_overrides(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in SETTINGS if getattr(args, name, None) is not None}


def _load_exchange(args: argparse.Namespace, **forced: object):
    config = load_server_config(args.exchange_config, {**_settings_overrides(args), **forced})
    instruments = load_instruments(args.instruments)
    accounts = load_accounts(args.accounts, instruments)
    return config, instruments, accounts, load_compliance(args.compliance)


def _serve_command(args: argparse.Namespace) -> int:
    from gateway.node import serve
    config, instruments, accounts, compliance = _load_exchange(args)
    configure_logging(config.log_level, config.log_format)
    return asyncio.run(serve(config, instruments, accounts, compliance))


def _demo_command(args: argparse.Namespace) -> int:
    from gateway.cli.demo import run_demo
    port = args.port if args.port is not None else 0  # the demo takes any free port unless told one
    # The demo's day is its own: a new temporary data directory unless --data-dir names one.
    config, instruments, accounts, compliance = _load_exchange(args, port=port, data_dir=args.data_dir or "",
                                                               log_level=args.log_level or "WARNING")
    configure_logging(config.log_level, config.log_format)
    return run_demo(config, instruments, accounts, compliance, sys.stdout, orders=args.orders, seed=args.seed,
                    statements=args.statement, rate=args.rate, keep_serving=args.keep_serving,
                    live=None if args.live is None else args.live == "on")


# -- a trader at a shell ----------------------------------------------------------------------------

def _session_target(args: argparse.Namespace, config: object) -> tuple[str, int, str | None, str | None]:
    """Where and as whom to log on: the flags, else exchange.toml and the environment; the secret from
    --secret-file, $CARBONX_SECRET or the terminal (:func:`_secret`). The account is None (after saying why)
    if none is given."""
    host = args.host or config.host
    port = args.port if args.port is not None else config.port
    account = args.account or os.environ.get("CARBONX_ACCOUNT")
    if not account:
        print(f"carbonx {args.command}: give --account (or set CARBONX_ACCOUNT)", file=sys.stderr)
        return host, port, None, None
    return host, port, account, _secret(args, account)


def _secret(args: argparse.Namespace, account: str) -> str:
    """The logon secret: the first line of --secret-file ("-": standard input), else $CARBONX_SECRET, else asked
    for without echo, only when standard input is a terminal (never a hang or an EOFError without one)."""
    path = getattr(args, "secret_file", None)
    if path is not None:
        try:
            text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise UsageError(f"cannot read the secret from {path}: {getattr(error, 'strerror', None) or error}: "
                             "give a readable file with --secret-file, or set CARBONX_SECRET") from None
        secret = text.splitlines()[0] if text else ""
        if not secret:
            raise UsageError(f"{path} holds no secret (its first line is empty): write the secret there, or set "
                             "CARBONX_SECRET")
        return secret
    secret = os.environ.get("CARBONX_SECRET")
    if secret is not None:
        return secret
    hint = "set CARBONX_SECRET" + (" or pass --secret-file FILE" if hasattr(args, "secret_file") else "")
    try:
        terminal = sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # standard input closed
        terminal = False
    if not terminal:
        raise UsageError(f"no secret for {account}, and no terminal to ask for it on: {hint}")
    try:
        return getpass.getpass(f"secret for {account}: ")
    except EOFError:
        raise UsageError(f"no secret for {account} given: {hint}") from None


def _failure(error: OSError) -> str:
    """Why there is no session, and what to do: one line."""
    if isinstance(error, LogonRefused):
        code = f" (code {error.code})" if error.code else ""
        return f"logon refused: {error.text}{code}"
    if isinstance(error, NotAnExchange):
        return f"{error.text}: is that the exchange's port? check --host and --port"
    if isinstance(error, NoAnswer):
        return f"{error.text}: check --host and --port, or wait longer with --timeout"
    if isinstance(error, SessionClosed):
        return f"{error.text} (code {error.code})" if error.code else error.text
    if isinstance(error, ConnectionRefusedError):
        return "nothing listens there (connection refused): is the exchange running? check --host and --port"
    if isinstance(error, socket.gaierror):
        return f"no such host ({error.strerror}): check --host"
    return f"{error.strerror or error}: check --host and --port" if isinstance(error, OSError) else str(error)


def _trader(action: Callable[[ExchangeClient, argparse.Namespace], Awaitable[int]],
            cancel_on_disconnect: bool | None = None,
            check: Callable[[argparse.Namespace], None] | None = None) -> Callable[[argparse.Namespace], int]:
    """A one-shot command: ``check`` the arguments (before asking for a secret or connecting), log on, run
    ``action``, log out. ``--timeout`` bounds the connection, the logon and the action (beyond its ``--wait``)."""
    def run(args: argparse.Namespace) -> int:
        if check is not None:
            check(args)
        timeout = getattr(args, "timeout", CONNECT_TIMEOUT)
        if not timeout > 0:
            raise UsageError(f"--timeout must be a number of seconds above zero, not {timeout}")
        host, port, account, secret = _session_target(args, load_server_config(args.exchange_config))
        if account is None:
            return 2

        logged_on = False

        async def session() -> int:
            nonlocal logged_on
            async with connect(host, port, account, secret, cancel_on_disconnect=cancel_on_disconnect,
                               connect_timeout=timeout, logon_timeout=timeout) as client:
                logged_on = True
                try:
                    return await asyncio.wait_for(action(client, args), timeout + getattr(args, "wait", 0.0))
                except asyncio.TimeoutError:
                    raise SessionClosed(f"no answer to the {args.command} within {timeout:g} s: the exchange is "
                                        "busy or stuck; wait longer with --timeout") from None
        try:
            return asyncio.run(session())
        except (ConnectionError, OSError) as error:
            what = "the session with the exchange at" if logged_on else "no session with the exchange at"
            print(f"carbonx {args.command}: {what} {host}:{port}: {_failure(error)}", file=sys.stderr)
            return CONNECTION
    return run


def _ticks(client: ExchangeClient) -> dict[str, int]:
    """Cents per tick of each instrument, from the logon answer."""
    return {entry["symbol"]: eur_to_cents(entry["tick_size"]) for entry in client.logon["instruments"]}


async def _print_answers(client: ExchangeClient, first: dict, wait: float) -> int:
    """Print a request's first answer and any further reports for it that arrive within ``wait`` seconds."""
    ticks = _ticks(client)
    print(describe_report(first, ticks))
    request_id = first.get("request_id")
    seen = {first.get("seq")}

    async def follow() -> None:
        async for message in client.messages():
            if message.get("request_id") == request_id and message.get("seq") not in seen:
                seen.add(message.get("seq"))
                print(describe_report(message, ticks))
    try:
        await asyncio.wait_for(follow(), wait)
    except asyncio.TimeoutError:
        pass
    refused = first["type"] in ("reject", "request_rejected") or first.get("exec_type") == "rejected"
    return REFUSED if refused else 0


def _euros(text: str | None, what: str = "price") -> str | None:
    """A price as typed, in euros ("70.25"), checked and written as the protocol reads it ("70.25"); a
    :class:`UsageError` saying what is wrong with it: not a number, negative, zero, a fraction of a cent, too
    large. (Whether it is on the instrument's tick is known after logon: :func:`_check_tick`.)"""
    if text is None:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite():
        raise UsageError(f"{what} {text!r} is not a number: write it in euros with a dot, e.g. 70.25")
    if amount < 0:
        raise UsageError(f"{what} {text} is negative: a price is above zero, in euros, e.g. 70.25")
    if amount == 0:
        raise UsageError(f"{what} {text} is zero: a price is above zero, in euros, e.g. 70.25")
    if amount >= MAX_PRICE:
        raise UsageError(f"{what} {text} is too large: at most 12 digits before the decimal point")
    if amount * 100 != (amount * 100).to_integral_value():
        raise UsageError(f"{what} {text} has too many decimals: prices are whole cents, at most 2 decimals "
                         f"(e.g. 70.25)")
    return f"{amount:.2f}"


def _check_tick(client: ExchangeClient, instrument: str, price: str | None, what: str = "price") -> None:
    """A price (checked by :func:`_euros`) must be a multiple of the instrument's tick (from the logon); an
    unknown instrument is left for the exchange to refuse."""
    tick = _ticks(client).get(instrument)
    if price is None or tick is None:
        return
    cents = eur_to_cents(price)
    if cents % tick:
        below = cents - cents % tick
        nearest = f"prices are {eur(below)} and {eur(below + tick)}" if below else f"price is {eur(below + tick)}"
        raise UsageError(f"{what} {price} is not on {instrument}'s tick of EUR {eur(tick)}: the nearest {nearest}")


def _check_lots(value: int | None, what: str = "quantity") -> None:
    if value is not None and value <= 0:
        raise UsageError(f"{what} {value} is not above zero: a whole number of lots (1 lot = 1,000 t)")


def _check_order(args: argparse.Namespace) -> None:
    if args.side.lower() not in SIDES:
        raise UsageError(f"side must be buy or sell, not {args.side!r}")
    _check_lots(args.quantity)
    _check_lots(args.display, "--display")
    args.price = _euros(args.price)
    args.stop = _euros(args.stop, "stop price")


async def _order(client: ExchangeClient, args: argparse.Namespace) -> int:
    _check_tick(client, args.instrument, args.price)
    _check_tick(client, args.instrument, args.stop, "stop price")
    order_type = args.type or ("LIMIT" if args.price is not None else "MARKET")
    first = await client.new_order(
        args.instrument, SIDES[args.side.lower()], args.quantity, args.price, client_order_id=args.clid,
        order_type=order_type, time_in_force=args.tif, display_quantity=args.display, stop_price=args.stop,
        post_only=args.post_only or None, expire_date=args.expire_date, self_trade_prevention=args.stp)
    return await _print_answers(client, first, args.wait)


def _check_reference(args: argparse.Namespace) -> None:
    """The order is named by its id or by its client order id: one of the two."""
    if (args.order_id is None) == (args.clid is None):
        by_id = "--order-id" if args.command == "replace" else "its order id"
        raise UsageError(f"name the order by {by_id} or by --clid: one of the two")


def _reference(args: argparse.Namespace) -> dict:
    return {"order_id": args.order_id, "client_order_id": args.clid}


async def _cancel(client: ExchangeClient, args: argparse.Namespace) -> int:
    return await _print_answers(client, await client.cancel(**_reference(args)), args.wait)


async def _status(client: ExchangeClient, args: argparse.Namespace) -> int:
    return await _print_answers(client, await client.order_status(**_reference(args)), 0)


def _check_replace(args: argparse.Namespace) -> None:
    _check_reference(args)
    if args.quantity is None and args.price is None:
        raise UsageError("give the new --quantity, the new --price, or both")
    _check_lots(args.quantity)
    args.price = _euros(args.price)


async def _replace(client: ExchangeClient, args: argparse.Namespace) -> int:
    first = await client.replace(**_reference(args), quantity=args.quantity, price=args.price)
    return await _print_answers(client, first, args.wait)


async def _mass_cancel(client: ExchangeClient, args: argparse.Namespace) -> int:
    """Cancel the account's orders (on one instrument, or all): a line per order canceled, then the count."""
    ticks = _ticks(client)
    request_id = client.send({"type": "mass_cancel", "instrument": args.instrument})
    async for message in client.messages():
        if message.get("request_id") != request_id:
            continue
        print(describe_report(message, ticks))
        if message["type"] == "mass_cancel_report":
            return 0
        if message["type"] in ("request_rejected", "reject"):
            return REFUSED
    raise client.closed or SessionClosed("the session ended before the mass cancel was reported")


async def _orders(client: ExchangeClient, args: argparse.Namespace) -> int:
    """The account's open orders, oldest first: a line each, then the count."""
    ticks = _ticks(client)
    try:
        orders = await client.open_orders(args.instrument)
    except RequestRefused as refused:
        print(describe_report(refused.answer, ticks))
        return REFUSED
    for order in orders:
        tick = ticks[order["instrument"]]
        price = "market" if order["price"] is None else f"EUR {eur(order['price'] * tick)}"
        stop = "" if order["stop_price"] is None else f" stop EUR {eur(order['stop_price'] * tick)}"
        print(f"order {order['order_id']} ({order['client_order_id']}) {order['instrument']} {order['side']} "
              f"{order['leaves_quantity']} of {order['quantity']} lots at {price}{stop} {order['time_in_force']} "
              f"{order['order_status']}")
    print(f"{len(orders)} open order{'s' if len(orders) != 1 else ''}")
    return 0


async def _trades(client: ExchangeClient, args: argparse.Namespace) -> int:
    """The account's fills since the last end of day, oldest first, then the totals."""
    ticks = _ticks(client)
    try:
        fills, complete = await client.trades(args.instrument)
    except RequestRefused as refused:
        print(describe_report(refused.answer, ticks))
        return REFUSED
    fees = 0
    for fill in fills:
        fees += fill["fee"]
        price = fill["price"] * ticks[fill["instrument"]]
        print(f"trade {fill['trade_id']} order {fill['order_id']} ({fill['client_order_id']}) {fill['instrument']} "
              f"{'bought' if fill['side'] == 'B' else 'sold'} {fill['quantity']} lots at EUR {eur(price)} "
              f"{fill['liquidity']}, fee EUR {eur(fill['fee'])}")
    print(f"{len(fills)} trade{'s' if len(fills) != 1 else ''} today, fees EUR {eur(fees)}"
          + ("" if complete else " (only the newest are kept: the statement has them all)"))
    return 0


async def _book(client: ExchangeClient, args: argparse.Namespace) -> int:
    answer = await client.book(args.instrument, args.levels)
    if answer["type"] != "book":
        print(describe_report(answer, _ticks(client)))
        return REFUSED
    tick = _ticks(client)[args.instrument]
    last = None if answer["last_price"] is None else answer["last_price"] * tick
    print(f"{args.instrument}  last EUR {eur(last)}")
    for line in ladder(answer["bids"], answer["asks"], tick):
        print("    " + line)
    return 0


async def _balances(client: ExchangeClient, args: argparse.Namespace) -> int:
    answer = await client.balances()
    blocked = "  BLOCKED by the kill switch" if answer.get("blocked") else ""
    print(f"account {answer['account']}{blocked}")
    print(f"    {'asset':<6} {'holding':>20} {'held by orders':>20} {'available':>20}")
    for entry in answer["balances"]:
        if entry["asset"] == "EUR":
            cells = [f"EUR {cents_to_eur(entry[key], thousands=True)}" for key in ("holding", "held", "available")]
        else:
            cells = [f"{entry[key]:,} t" for key in ("holding", "held", "available")]
        print(f"    {entry['asset']:<6} {cells[0]:>20} {cells[1]:>20} {cells[2]:>20}")
    return 0


async def _kill_switch(client: ExchangeClient, args: argparse.Namespace) -> int:
    request = client.release_kill_switch if args.release else client.kill_switch
    return await _print_answers(client, await request(args.target), 0)


async def _snapshot(client: ExchangeClient, args: argparse.Namespace) -> int:
    answer = await client.snapshot()
    if answer["type"] != "snapshot_taken":
        print(describe_report(answer, _ticks(client)))
        return REFUSED
    print(f"snapshot written: {answer['path']} (journal record {answer['record_seq']:,}, "
          f"event {answer['event_seq']:,})")
    return 0


async def _phase(client: ExchangeClient, args: argparse.Namespace) -> int:
    answer = await client.set_trading_phase(args.instrument, args.phase, args.from_phase)
    if answer["type"] != "trading_phase_report":
        print(describe_report(answer, _ticks(client)))
        return REFUSED
    auction = ""
    if answer["auction_quantity"]:
        tick = _ticks(client)[answer["instrument"]]
        auction = (f"; auction: {answer['auction_quantity']:,} lots at EUR {eur(answer['auction_price'] * tick)} "
                   f"in {answer['auction_trades']:,} trades")
    elif answer["previous"] in CALL_PHASES:
        auction = "; auction: nothing crossed"
    print(f"{answer['instrument']}: {answer['previous']} -> {answer['phase']}{auction}")
    return 0


def _check_auction(args: argparse.Namespace) -> None:
    if getattr(args, "price", None) is not None:
        args.price = _euros(args.price, "bid price")


async def _auction(client: ExchangeClient, args: argparse.Namespace) -> int:
    """The primary-auction subcommands: open (auctioneers), bid, modify, withdraw, report."""
    if args.auction_command == "open":
        answer = await client.open_auction(args.auction_id, args.instrument, args.volume, args.window,
                                           args.reserve_discount)
    elif args.auction_command == "bid":
        answer = await client.submit_bid(args.auction_id, args.bid_id, args.price, args.volume)
    elif args.auction_command == "modify":
        answer = await client.modify_bid(args.auction_id, args.bid_id, price=args.price, volume=args.volume)
    elif args.auction_command == "withdraw":
        answer = await client.withdraw_bid(args.auction_id, args.bid_id)
    else:
        answer = await client.auction_status(args.auction_id)
    if answer["type"] in ("request_rejected", "reject"):
        print(describe_report(answer, _ticks(client)))
        return REFUSED
    tick = _ticks(client)
    if answer["type"] == "auction_status":
        print(auction_summary(answer, tick))
    elif answer["type"] == "auction_report":
        print(auction_summary({**answer, "result": None}, tick))
    else:
        print(bid_summary(answer, tick[answer["instrument"]]))
    return 0


# -- the journal, offline --------------------------------------------------------------------------------

def _replay_command(args: argparse.Namespace) -> int:
    """Rebuild the state from a journal, reading only; print what it holds and the state hash."""
    from gateway.persistence.journal import JournalError
    from gateway.persistence.recovery import JOURNAL_NAME, journal_genesis_and_id, newest_snapshot, replay_journal
    given = Path(args.journal)
    journal = given / JOURNAL_NAME if given.is_dir() else given
    if not journal.is_file():
        print(f"carbonx replay: no journal at {journal}", file=sys.stderr)
        return 2
    try:
        genesis, journal_id = journal_genesis_and_id(journal)
        if genesis is None:
            print(f"carbonx replay: {journal} holds no committed record", file=sys.stderr)
            return REFUSED
        core, report, _ = replay_journal(journal, genesis)
    except JournalError as error:
        print(f"carbonx replay: {error}", file=sys.stderr)
        return REFUSED
    engine = core.engine
    commands = ", ".join(f"{name} {count:,}" for name, count in sorted(report.command_counts.items()))
    tail = ("clean" if not report.torn_bytes else
            f"{report.torn_bytes:,} bytes after the last commit ({report.torn_reason}); a start cuts them off")
    print(f"journal    {journal} ({journal.stat().st_size:,} bytes)")
    print(f"records    {report.records:,} in {report.batches:,} batches, last seq {report.last_seq:,}")
    print(f"commands   {report.commands:,}: {commands or 'none'}")
    print(f"state      {engine.counters.seq:,} events, {engine.counters.order_id:,} orders of which "
          f"{len(engine.open_orders):,} open, {engine.counters.trade_id:,} trades, "
          f"{len(engine.accounts):,} accounts")
    print(f"tail       {tail}")
    print(f"replayed   in {report.seconds:.2f} s")
    print(f"state hash {engine.state_hash()}")
    if args.check_snapshot:
        passed_over: list[str] = []
        snapshot = newest_snapshot(journal, journal_id, None, passed_over)
        for line in passed_over:
            print(f"passed over {line}")
        if snapshot is None:
            print("snapshot   none usable beside the journal")
            return 0
        from_snapshot, snapshot_report, _ = replay_journal(journal, genesis, snapshot)
        same = (from_snapshot.engine.state_hash() == engine.state_hash()
                and from_snapshot.counters() == core.counters())
        print(f"snapshot   {snapshot[0].path.name} + {snapshot_report.records:,} records in "
              f"{snapshot_report.seconds:.2f} s: {'the same state' if same else 'A DIFFERENT STATE'}")
        if not same:
            return REFUSED
    return 0


# -- market data ----------------------------------------------------------------------------------------

def _md_command(args: argparse.Namespace) -> int:
    from gateway.cli.md_view import MarketView, mqtt_feed, run_view, socket_feed
    config = load_server_config(args.exchange_config)
    instruments = load_instruments(args.instruments)
    unknown = [symbol for symbol in args.symbols if symbol not in instruments]
    if unknown:
        print(f"carbonx md: unknown instrument {unknown[0]} (known: {', '.join(instruments)})", file=sys.stderr)
        return 2
    mqtt_url = args.mqtt_url if args.mqtt_url is not None else config.mqtt_url
    if mqtt_url:
        feed = mqtt_feed(mqtt_url, args.symbols)
        where = "the MQTT broker"
    else:  # no broker: the feed on the gateway socket
        host, port, account, secret = _session_target(args, config)
        if account is None:
            return 2
        feed = socket_feed(host, port, account, secret, args.symbols)
        where = "the gateway"
    view = MarketView(args.symbols, {symbol: instruments[symbol].tick_size for symbol in args.symbols})
    try:
        asyncio.run(run_view(feed, view, sys.stdout, seconds=args.seconds, interval=args.interval))
    except (ConnectionError, OSError, ValueError) as error:  # aiomqtt.MqttError is an Exception: see below
        print(f"carbonx md: no feed from {where}: {error}", file=sys.stderr)
        return CONNECTION
    except Exception as error:  # noqa: BLE001 - aiomqtt reports a refused or lost broker as MqttError
        if type(error).__module__.startswith("aiomqtt"):
            print(f"carbonx md: no feed from {where}: {error}", file=sys.stderr)
            return CONNECTION
        raise
    return 0


# -- configuration -------------------------------------------------------------------------------------

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


# -- the parser ------------------------------------------------------------------------------------------

def _add_settings(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per exchange.toml setting; a flag wins over the file."""
    group = parser.add_argument_group("exchange settings (override exchange.toml)")
    for name, setting in SETTINGS.items():
        if name not in skip:
            group.add_argument(f"--{name.replace('_', '-')}", dest=name, type=setting.kind, default=None,
                               help=f"{setting.help} [{setting.section}.{name}, default {setting.default!r}]")


def _add_session(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("session")
    group.add_argument("--account", help="account to log on as (default: $CARBONX_ACCOUNT)")
    group.add_argument("--host", help="exchange address (default: exchange.toml's host)")
    group.add_argument("--port", type=int, help="exchange port (default: exchange.toml's port)")
    return group


def _add_trader(parser: argparse.ArgumentParser, action: Callable[[ExchangeClient, argparse.Namespace], Awaitable[int]],
                check: Callable[[argparse.Namespace], None] | None = None) -> None:
    """A one-shot command: its session flags, and its run (check the arguments, log on, ``action``, log out)."""
    group = _add_session(parser)
    group.add_argument("--secret-file", metavar="FILE", help="read the secret from the first line of FILE ('-': "
                       "standard input); default: $CARBONX_SECRET, else asked for on the terminal")
    group.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT, metavar="SECONDS",
                       help=f"wait at most this long for the connection, the logon and each answer "
                       f"(default {CONNECT_TIMEOUT:g})")
    # A one-shot command's orders must outlive its session: cancel-on-disconnect is off for its logon.
    parser.set_defaults(run=_trader(action, cancel_on_disconnect=False, check=check))


CONFIG_LOOKUP = ("Configuration files: a file named by its flag (--instruments, --accounts, --compliance, "
                 "--exchange-config) is read from there; every other one comes from the configuration folder: "
                 "$CARBONX_CONFIG if set, else ./config if the working directory has one with an instruments.toml, "
                 "else the defaults packaged with carbonx.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carbonx", description="carbonx: an exchange for carbon credits",
                                     epilog=CONFIG_LOOKUP)
    parser.add_argument("--instruments", type=Path,
                        help="instrument definitions (TOML); default: instruments.toml in the configuration folder")
    parser.add_argument("--accounts", type=Path,
                        help="participants and their opening holdings (TOML); default: accounts.toml in the "
                        "configuration folder")
    parser.add_argument("--compliance", type=Path,
                        help="EU ETS compliance rules (TOML); default: compliance.toml in the configuration folder")
    parser.add_argument("--exchange-config", type=Path,
                        help="the exchange process's settings (TOML); default: exchange.toml in the configuration "
                        "folder")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the exchange with simulated participants and show the market")
    demo.add_argument("--orders", type=int, default=2000, help="participant actions to simulate")
    demo.add_argument("--seed", type=int, default=2005, help="the same seed gives the same day")
    demo.add_argument("--rate", type=float, help="participant actions a second (default: 400 on a terminal, "
                      "as fast as the exchange answers otherwise)")
    demo.add_argument("--live", choices=("on", "off"), help="redraw the books in place (default: on a terminal)")
    demo.add_argument("--statement", action="append", default=[], metavar="ACCOUNT",
                      help="print this account's statement after the day (repeatable)")
    demo.add_argument("--keep-serving", action="store_true",
                      help="keep the exchange running after the day, for carbonx order/book/balances")
    _add_settings(demo)
    demo.set_defaults(run=_demo_command)

    serve = commands.add_parser("serve", help="run the exchange until Ctrl-C or SIGTERM")
    _add_settings(serve)
    serve.set_defaults(run=_serve_command)

    order = commands.add_parser("order", help="send one order; it stays in the book after the command ends")
    order.add_argument("side", help="buy or sell")
    order.add_argument("quantity", type=int, help="lots (1 lot = 1,000 t)")
    order.add_argument("instrument", help="EUA, CER, ERU, ...")
    order.add_argument("price", nargs="?", help="limit price in euros (70.25); leave out for a market order")
    order.add_argument("--type", choices=("LIMIT", "MARKET"), help="default: LIMIT with a price, else MARKET")
    order.add_argument("--tif", choices=("GTC", "DAY", "IOC", "FOK", "GTD"), help="time in force (default GTC)")
    order.add_argument("--display", type=int, help="iceberg: lots shown at a time")
    order.add_argument("--stop", help="stop price in euros: the order waits until the last trade reaches it")
    order.add_argument("--post-only", action="store_true", help="refuse the order if it would trade on entry")
    order.add_argument("--expire-date", type=int, help="GTD: YYYYMMDD")
    order.add_argument("--stp", choices=("NONE", "CANCEL_RESTING", "CANCEL_TAKING", "CANCEL_BOTH"),
                       help="self-trade prevention (default: the account's)")
    order.add_argument("--clid", help="client order id (default: a new one)")
    order.add_argument("--wait", type=float, default=0.3, help="seconds to wait for fills (default 0.3)")
    _add_trader(order, _order, _check_order)

    for name, action, text in (("cancel", _cancel, "cancel an order"), ("status", _status, "an order's status")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("order_id", type=int, nargs="?", help="the exchange's order id")
        sub.add_argument("--clid", help="the client order id instead")
        sub.add_argument("--wait", type=float, default=0.2, help=argparse.SUPPRESS)
        _add_trader(sub, action, _check_reference)

    replace = commands.add_parser("replace", help="change an order's quantity and/or price (a new price, or a "
                                  "larger quantity, loses its time priority)")
    replace.add_argument("--order-id", type=int, help="the exchange's order id")
    replace.add_argument("--clid", help="the client order id instead")
    replace.add_argument("--quantity", type=int, help="the new total quantity in lots, what is filled included")
    replace.add_argument("--price", help="the new limit price in euros (70.25)")
    replace.add_argument("--wait", type=float, default=0.3, help="seconds to wait for fills (default 0.3)")
    _add_trader(replace, _replace, _check_replace)

    mass_cancel = commands.add_parser("mass-cancel", help="cancel all the account's orders (resting and stops), "
                                      "or those on one instrument")
    mass_cancel.add_argument("instrument", nargs="?", help="only this instrument's orders (default: all)")
    _add_trader(mass_cancel, _mass_cancel)

    orders = commands.add_parser("orders", help="the account's open orders (resting, and stops waiting)")
    orders.add_argument("instrument", nargs="?", help="only this instrument's orders (default: all)")
    _add_trader(orders, _orders)

    trades = commands.add_parser("trades", help="the account's trades since the last end of day")
    trades.add_argument("instrument", nargs="?", help="only this instrument's trades (default: all)")
    _add_trader(trades, _trades)

    book = commands.add_parser("book", help="an instrument's book")
    book.add_argument("instrument")
    book.add_argument("--levels", type=int, default=10, help="price levels a side (1-100)")
    _add_trader(book, _book)

    balances = commands.add_parser("balances", help="the account's cash and units")
    _add_trader(balances, _balances)

    kill = commands.add_parser("kill-switch", help="(operator) block an account and cancel its orders")
    kill.add_argument("target", help="the account to block")
    kill.add_argument("--release", action="store_true", help="release the kill switch instead")
    _add_trader(kill, _kill_switch)

    snapshot = commands.add_parser("snapshot", help="(operator) have the running exchange snapshot its state now")
    _add_trader(snapshot, _snapshot)

    phase = commands.add_parser("phase", help="(operator) move an instrument to another trading phase; leaving "
                                "a call for continuous trading or the close runs its auction")
    phase.add_argument("instrument")
    phase.add_argument("phase", choices=[str(member) for member in TradingPhase])
    phase.add_argument("--from-phase", choices=[str(member) for member in TradingPhase],
                       help="only if the instrument is in this phase now")
    _add_trader(phase, _phase)

    auction = commands.add_parser("auction", help="EU ETS primary auctions: open one (auctioneers), bid, modify "
                                  "or withdraw a bid, and report an auction's results")
    auction_commands = auction.add_subparsers(dest="auction_command", required=True)
    opening = auction_commands.add_parser("open", help="(auctioneer) offer allowances; bids are taken for --window "
                                          "seconds, then the auction clears by itself")
    opening.add_argument("auction_id")
    opening.add_argument("instrument")
    opening.add_argument("volume", type=int, help="allowances, a multiple of 500")
    opening.add_argument("--window", type=int, default=7200, help="seconds bids are taken (default: two hours, "
                         "as EEX's 09:00-11:00)")
    opening.add_argument("--reserve-discount", type=int, help="basis points under the secondary-market price "
                         "below which the auction is cancelled (default: the exchange's setting)")
    bidding = auction_commands.add_parser("bid", help="a sealed bid")
    bidding.add_argument("auction_id")
    bidding.add_argument("bid_id")
    bidding.add_argument("price", help="euros, e.g. 70.25")
    bidding.add_argument("volume", type=int, help="allowances, a multiple of 500")
    modifying = auction_commands.add_parser("modify", help="change a bid's price and/or volume")
    modifying.add_argument("auction_id")
    modifying.add_argument("bid_id")
    modifying.add_argument("--price", help="euros")
    modifying.add_argument("--volume", type=int)
    withdrawing = auction_commands.add_parser("withdraw", help="withdraw a bid")
    withdrawing.add_argument("auction_id")
    withdrawing.add_argument("bid_id")
    reporting = auction_commands.add_parser("report", help="an auction's terms, your bids, and once it is decided its "
                                            "results")
    reporting.add_argument("auction_id")
    for sub in (opening, bidding, modifying, withdrawing, reporting):
        _add_trader(sub, _auction, _check_auction)

    replay = commands.add_parser("replay", help="rebuild the state from a journal offline: counts and state hash")
    replay.add_argument("journal", help="a journal file, or a data directory holding journal.cxj")
    replay.add_argument("--check-snapshot", action="store_true",
                        help="also rebuild from the newest snapshot beside it and compare (exit 1 if they differ)")
    replay.set_defaults(run=_replay_command)

    md = commands.add_parser("md", help="a live view of the market data: books, trades, statistics")
    md.add_argument("symbols", nargs="+", metavar="INSTRUMENT")
    md.add_argument("--mqtt-url", help="follow the feed on this broker (mqtt://user:password@host:port); "
                    "default: exchange.toml's mqtt_url, or the gateway socket if that is empty")
    md.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    md.add_argument("--interval", type=float, default=0.5, help="seconds between redraws")
    _add_session(md)
    md.set_defaults(run=_md_command)

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
    except UsageError as exc:
        print(f"carbonx {args.command}: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"carbonx: configuration error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (``carbonx demo | head``): nothing left to say
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
