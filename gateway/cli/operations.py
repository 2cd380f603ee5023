"""The operator's commands: run the exchange (serve, demo), act on the running exchange (kill-switch, snapshot,
phase), read its journal offline (replay), and check the configuration (instruments, accounts, hash-secret).

How this works: serve and demo load every configuration file (:mod:`gateway.config`), with a flag for each
exchange.toml setting (derived from :class:`gateway.config.ServerConfig`'s fields: a flag wins over the file),
and run the exchange in this process; the exchange itself (and the demo's participants) are imported only for
these commands. kill-switch, snapshot and phase are one-shot commands (:mod:`gateway.cli.one_shot`) that the
exchange answers only for an operator account. replay rebuilds the state from a journal without an exchange.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

from exchange import CALL_PHASES, ComplianceConfig, TradingPhase
from exchange.instruments import Instrument
from gateway.cli.display import describe_report, eur
from gateway.cli.one_shot import REFUSED, USAGE, add_trader, print_answers, tick_sizes
from gateway.client import ExchangeClient
from gateway.config import (
    SETTINGS,
    AccountConfig,
    ServerConfig,
    load_accounts,
    load_calendar,
    load_compliance,
    load_futures,
    load_instruments,
    load_server_config,
)
from gateway.logs import configure_logging
from gateway.schedule.calendar import TradingCalendar
from gateway.sessions.credentials import hash_secret

# -- the exchange ---------------------------------------------------------------------------------


def _settings_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {name: getattr(args, name) for name in SETTINGS if getattr(args, name, None) is not None}


def _load_exchange(
    args: argparse.Namespace, **forced: object
) -> tuple[ServerConfig, dict[str, Instrument], dict[str, AccountConfig], ComplianceConfig]:
    """Every configuration file, the exchange.toml settings overridden by their flags and by ``forced``."""
    config = load_server_config(args.exchange_config, {**_settings_overrides(args), **forced})
    instruments = load_instruments(args.instruments)
    accounts = load_accounts(args.accounts, instruments)
    return config, instruments, accounts, load_compliance(args.compliance)


def _calendar(
    args: argparse.Namespace, config: ServerConfig, instruments: dict[str, Instrument]
) -> TradingCalendar | None:
    """The trading calendar when the exchange runs on it (else None: it is not even read)."""
    return load_calendar(instruments, args.calendar) if config.schedule == "calendar" else None


def _serve_command(args: argparse.Namespace) -> int:
    from gateway.node import serve

    config, instruments, accounts, compliance = _load_exchange(args)
    calendar = _calendar(args, config, instruments)
    futures = load_futures(instruments, args.futures_file, args.calendar) if config.futures == "on" else None
    configure_logging(config.log_level, config.log_format)
    return asyncio.run(serve(config, instruments, accounts, compliance, calendar=calendar, futures=futures))


def _demo_command(args: argparse.Namespace) -> int:
    from gateway.cli.demo import run_demo

    port = args.port if args.port is not None else 0  # the demo takes any free port unless told one
    # The demo's days are its own: a new temporary data directory unless --data-dir names one.
    # The demo's participants connect over loopback with plain TCP: its gateway does too, whatever exchange.toml says.
    config, instruments, accounts, compliance = _load_exchange(
        args,
        port=port,
        data_dir=args.data_dir or "",
        log_level=args.log_level or "WARNING",
        tls_mode="off",
        tls_cert_file="",
        tls_key_file="",
        tls_ca_file="",
        schedule="calendar",
    )
    calendar = load_calendar(instruments, args.calendar)
    configure_logging(config.log_level, config.log_format)
    return run_demo(
        config,
        instruments,
        accounts,
        compliance,
        calendar,
        sys.stdout,
        orders=args.orders,
        seed=args.seed,
        statements=args.statement,
        rate=args.rate,
        keep_serving=args.keep_serving,
        live=None if args.live is None else args.live == "on",
        futures=load_futures(instruments, args.futures_file, args.calendar),  # the demo trades a futures curve too
    )


def _add_settings(parser: argparse.ArgumentParser) -> None:
    """One flag per exchange.toml setting; a flag wins over the file."""
    group = parser.add_argument_group("exchange settings (override exchange.toml)")
    for name, setting in SETTINGS.items():
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=setting.kind,
            default=None,
            help=f"{setting.help} [{setting.section}.{name}, default {setting.default!r}]",
        )


def add_exchange_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """demo and serve."""
    demo = commands.add_parser("demo", help="run the exchange with simulated participants and show the market")
    demo.add_argument("--orders", type=int, default=2000, help="participant actions to simulate")
    demo.add_argument("--seed", type=int, default=2005, help="the same seed gives the same day")
    demo.add_argument(
        "--rate",
        type=float,
        help="participant actions a second (default: 400 on a terminal, as fast as the exchange answers otherwise)",
    )
    demo.add_argument("--live", choices=("on", "off"), help="redraw the books in place (default: on a terminal)")
    demo.add_argument(
        "--statement",
        action="append",
        default=[],
        metavar="ACCOUNT",
        help="print this account's statement after the day (repeatable)",
    )
    demo.add_argument(
        "--keep-serving",
        action="store_true",
        help="keep the exchange running after the day, for carbonx order/book/balances",
    )
    _add_settings(demo)
    demo.set_defaults(run=_demo_command)

    serve = commands.add_parser("serve", help="run the exchange until Ctrl-C or SIGTERM")
    _add_settings(serve)
    serve.set_defaults(run=_serve_command)


# -- on the running exchange ------------------------------------------------------------------


async def _kill_switch(client: ExchangeClient, args: argparse.Namespace) -> int:
    request = client.release_kill_switch if args.release else client.kill_switch
    return await print_answers(client, await request(args.target), 0)


async def _close_out(client: ExchangeClient, args: argparse.Namespace) -> int:
    return await print_answers(client, await client.close_out(args.target, args.to), 0)


async def _snapshot(client: ExchangeClient, args: argparse.Namespace) -> int:
    answer = await client.snapshot()
    if answer["type"] != "snapshot_taken":
        print(describe_report(answer, tick_sizes(client)))
        return REFUSED
    print(
        f"snapshot written: {answer['path']} (journal record {answer['record_seq']:,}, event {answer['event_seq']:,})"
    )
    return 0


async def _phase(client: ExchangeClient, args: argparse.Namespace) -> int:
    answer = await client.set_trading_phase(args.instrument, args.phase, args.from_phase)
    if answer["type"] != "trading_phase_report":
        print(describe_report(answer, tick_sizes(client)))
        return REFUSED
    auction = ""
    if answer["auction_quantity"]:
        tick = tick_sizes(client)[answer["instrument"]]
        auction = (
            f"; auction: {answer['auction_quantity']:,} lots at EUR {eur(answer['auction_price'] * tick)} "
            f"in {answer['auction_trades']:,} trades"
        )
    elif answer["previous"] in CALL_PHASES:
        auction = "; auction: nothing crossed"
    print(f"{answer['instrument']}: {answer['previous']} -> {answer['phase']}{auction}")
    return 0


async def _calendar_change(client: ExchangeClient, args: argparse.Namespace) -> int:
    if args.action == "extend":
        answer = await client.extend_trading_day(args.minutes)
    else:
        answer = await client.skip_schedule_point(args.point)
    if answer["type"] != "schedule_report":
        print(describe_report(answer, tick_sizes(client)))
        return REFUSED
    if answer["skipped"] is not None:
        print(f"trading day {answer['trading_date']}: passed over {answer['skipped']}")
    else:
        print(f"trading day {answer['trading_date']}: closing points {answer['extension_seconds'] // 60} minutes later")
    return 0


# -- the journal, offline --------------------------------------------------------------------------------


def _replay_command(args: argparse.Namespace) -> int:
    """Rebuild the state from a journal (its segments and archives), reading only; print what it holds and
    the state hash."""
    from gateway.persistence.errors import JournalError
    from gateway.persistence.recovery import journal_genesis_and_id, newest_snapshot, replay_journal
    from gateway.persistence.segments import segments_at

    given = Path(args.journal)
    try:
        segments = segments_at(given)
    except JournalError as error:
        print(f"carbonx replay: {error}", file=sys.stderr)
        return USAGE
    data_dir = segments[-1].data_dir  # where the snapshots are
    try:
        genesis, journal_id = journal_genesis_and_id(segments)
        if genesis is None:
            print(f"carbonx replay: {segments[0].path} holds no committed record", file=sys.stderr)
            return REFUSED
        start = None
        if segments[0].first_seq > 1:  # the first segments' archives removed: a replay starts from a snapshot
            passed: list[str] = []
            start = newest_snapshot(data_dir, segments, journal_id, None, passed)
            if start is None:
                print(
                    f"carbonx replay: the journal begins with record {segments[0].first_seq} (the archives before "
                    f"it removed after their retention) and no snapshot in {data_dir / 'snapshots'} can start a "
                    f"replay ({'; '.join(passed) or 'none there'})",
                    file=sys.stderr,
                )
                return REFUSED
        core, report, _ = replay_journal(segments, genesis, start, journal_id=journal_id)
        size = sum(segment.path.stat().st_size for segment in segments)
    except (JournalError, OSError) as error:  # (OSError: a segment archived by the running exchange meanwhile)
        print(f"carbonx replay: {error}", file=sys.stderr)
        return REFUSED
    engine = core.engine
    commands = ", ".join(f"{name} {count:,}" for name, count in sorted(report.command_counts.items()))
    tail = (
        "clean"
        if not report.torn_bytes
        else f"{report.torn_bytes:,} bytes after the last commit ({report.torn_reason}); a start cuts them off"
    )
    archived = sum(segment.archived for segment in segments)
    print(
        f"journal    {segments[-1].path.parent if len(segments) > 1 else segments[0].path}: {len(segments)} "
        f"segment{'s' if len(segments) > 1 else ''} ({archived} archived), {size:,} bytes on disk"
    )
    if start is not None:
        print(f"from       {start[0].path.name} (record {start[0].record_seq:,}): the records before it are gone")
    print(f"records    {report.records:,} in {report.batches:,} batches, last seq {report.last_seq:,}")
    print(f"commands   {report.commands:,}: {commands or 'none'}")
    counts = engine.counts()
    print(
        f"state      {counts.events:,} events, {counts.orders:,} orders of which {counts.open_orders:,} open, "
        f"{counts.trades:,} trades, {counts.accounts:,} accounts"
    )
    print(f"tail       {tail}")
    print(f"replayed   in {report.seconds:.2f} s")
    print(f"state hash {engine.state_hash()}")
    if args.check_snapshot:
        passed_over: list[str] = []
        snapshot = newest_snapshot(data_dir, segments, journal_id, None, passed_over)
        for line in passed_over:
            print(f"passed over {line}")
        if snapshot is None:
            print("snapshot   none usable beside the journal")
            return 0
        try:
            from_snapshot, snapshot_report, _ = replay_journal(segments, genesis, snapshot, journal_id=journal_id)
        except (JournalError, OSError) as error:
            print(f"carbonx replay: from {snapshot[0].path.name}: {error}", file=sys.stderr)
            return REFUSED
        same = from_snapshot.engine.state_hash() == engine.state_hash() and from_snapshot.counters() == core.counters()
        print(
            f"snapshot   {snapshot[0].path.name} + {snapshot_report.records:,} records in "
            f"{snapshot_report.seconds:.2f} s: {'the same state' if same else 'A DIFFERENT STATE'}"
        )
        if not same:
            return REFUSED
    return 0


# -- configuration -------------------------------------------------------------------------------------


def _instruments_command(args: argparse.Namespace) -> int:
    instruments = load_instruments(args.instruments)
    for symbol, instrument in instruments.items():
        collar = "none" if instrument.market_collar is None else f"EUR {eur(instrument.market_collar)}"
        print(
            f"{symbol:<6} {instrument.name}: lot {instrument.lot_units:,} units, "
            f"tick EUR {eur(instrument.tick_size)}, "
            f"{instrument.min_lots}-{instrument.max_lots} lots, prices EUR {eur(instrument.min_price)}-"
            f"{eur(instrument.max_price)}, reference EUR {eur(instrument.reference_price)}, "
            f"market collar {collar}, band {instrument.price_band_bps} bp"
        )
    return 0


def _accounts_command(args: argparse.Namespace) -> int:
    instruments = load_instruments(args.instruments)
    for account in load_accounts(args.accounts, instruments).values():
        units = ", ".join(f"{symbol} {amount:,} t" for symbol, amount in account.units.items() if amount) or "no units"
        limit = "no limit" if account.order_value_limit is None else f"EUR {eur(account.order_value_limit)}"
        print(
            f"{account.account_id:<14} {account.kind:<18} EUR {eur(account.cash):>14}  {units}; "
            f"order value limit {limit}  ({account.name})"
        )
    return 0


def _hash_secret_command(args: argparse.Namespace) -> int:
    secret = getpass.getpass("secret: ") if args.secret is None else args.secret
    print(hash_secret(secret))
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """kill-switch, close-out, snapshot, phase, calendar, replay, instruments, accounts and hash-secret."""
    kill = commands.add_parser("kill-switch", help="(operator) block an account and cancel its orders")
    kill.add_argument("target", help="the account to block")
    kill.add_argument("--release", action="store_true", help="release the kill switch instead")
    add_trader(kill, _kill_switch)

    close_out = commands.add_parser(
        "close-out", help="(operator) close out an account on a margin call: its futures positions to another"
    )
    close_out.add_argument("target", help="the account on a margin call")
    close_out.add_argument("--to", required=True, help="the account that takes its positions over")
    add_trader(close_out, _close_out)

    snapshot = commands.add_parser("snapshot", help="(operator) have the running exchange snapshot its state now")
    add_trader(snapshot, _snapshot)

    phase = commands.add_parser(
        "phase",
        help="(operator) move an instrument to another trading phase; leaving "
        "a call for continuous trading or the close runs its auction",
    )
    phase.add_argument("instrument")
    phase.add_argument("phase", choices=[str(member) for member in TradingPhase])
    phase.add_argument(
        "--from-phase",
        choices=[str(member) for member in TradingPhase],
        help="only if the instrument is in this phase now",
    )
    add_trader(phase, _phase)

    calendar = commands.add_parser(
        "calendar", help="(operator) extend the open trading day, or pass over the calendar's next point"
    )
    calendar_actions = calendar.add_subparsers(dest="action", required=True)
    extend = calendar_actions.add_parser(
        "extend", help="move the day's settlement window, closing call and close later"
    )
    extend.add_argument("minutes", type=int)
    add_trader(extend, _calendar_change)
    skip = calendar_actions.add_parser("skip", help="pass over a point of the open day (never the end of day)")
    skip.add_argument("point", nargs="?", help="e.g. opening_call:CER; default: the next point")
    add_trader(skip, _calendar_change)

    replay = commands.add_parser("replay", help="rebuild the state from a journal offline: counts and state hash")
    replay.add_argument(
        "journal", help="a data directory, its journal/ folder, or one journal file (a segment, or a journal.cxj)"
    )
    replay.add_argument(
        "--check-snapshot",
        action="store_true",
        help="also rebuild from the newest snapshot beside it and compare (exit 1 if they differ)",
    )
    replay.set_defaults(run=_replay_command)

    listing = commands.add_parser("instruments", help="check and list the configured instruments")
    listing.set_defaults(run=_instruments_command)
    accounts = commands.add_parser("accounts", help="check and list the configured participants")
    accounts.set_defaults(run=_accounts_command)
    hashing = commands.add_parser("hash-secret", help="print the hash of a logon secret for accounts.toml")
    hashing.add_argument("secret", nargs="?", help="the secret (asked for without echo if left out)")
    hashing.set_defaults(run=_hash_secret_command)
