"""One-shot commands: log on to a running exchange, do one thing, log out.

How this works: a trader's command (``carbonx order``, ``carbonx kill-switch``, ...) is an *action*, a
coroutine given a logged-on :class:`ExchangeClient` and the parsed arguments, that prints what it got and
returns the exit status. :func:`add_trader` gives its subcommand the session flags and a ``run`` that
checks the arguments (before asking for a secret or connecting), finds where and as whom to log on
(:func:`session_target`: the flags, else exchange.toml and the environment), logs on, runs the action
within ``--timeout`` and logs out. A one-shot command's orders must outlive its session, so its logon turns
cancel-on-disconnect off. The session flags (:func:`add_session`) also choose TLS: ``--tls``, ``--ca-file``,
``--cert``, ``--key``, ``--server-name`` (:func:`tls_options`).

Every failure is one line on stderr. Exit status: 0 done, 1 refused by the exchange (:data:`REFUSED`),
2 bad configuration or arguments (:data:`USAGE`, :class:`UsageError`), 3 no connection, no answer or logon
refused (:data:`CONNECTION`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

from exchange.instruments import ConfigError, eur_to_cents
from gateway.cli.display import describe_report
from gateway.client import (
    CONNECT_TIMEOUT,
    ExchangeClient,
    LogonRefused,
    NoAnswer,
    NotAnExchange,
    SessionClosed,
    TlsFailed,
    client_context,
    connect,
)
from gateway.config import ServerConfig, load_server_config

REFUSED, USAGE, CONNECTION = 1, 2, 3

Action = Callable[[ExchangeClient, argparse.Namespace], Awaitable[int]]
Check = Callable[[argparse.Namespace], None]


class UsageError(Exception):
    """A command given wrongly (a bad price, a missing secret, ...): one line saying what and what to do; exit 2."""


class Target(NamedTuple):
    """Where and as whom a command logs on, and its TLS context (None: plain TCP)."""

    host: str
    port: int
    account: str
    secret: str
    tls: ssl.SSLContext | None = None
    server_name: str | None = None


def session_target(args: argparse.Namespace, config: ServerConfig) -> Target | None:
    """Where and as whom to log on: the flags, else exchange.toml and the environment; the secret from
    --secret-file, $CARBONX_SECRET or the terminal (:func:`_secret`). None (after saying why) if no account is
    given."""
    host = args.host or config.host
    port = args.port if args.port is not None else config.port
    account = args.account or os.environ.get("CARBONX_ACCOUNT")
    if not account:
        print(f"carbonx {args.command}: give --account (or set CARBONX_ACCOUNT)", file=sys.stderr)
        return None
    tls = tls_options(args)
    return Target(host, port, account, _secret(args, account), tls, getattr(args, "server_name", None))


def tls_options(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context the session flags ask for: --tls, or any of --ca-file, --cert, --key; None for plain TCP. A
    file that cannot be used is a UsageError naming its flag."""
    files = {name: getattr(args, name, None) for name in ("ca_file", "cert", "key")}
    if not getattr(args, "tls", False) and all(value is None for value in files.values()):
        if getattr(args, "server_name", None) is not None:
            raise UsageError("--server-name is for TLS: add --tls (or --ca-file)")
        return None
    try:
        return client_context(files["ca_file"], files["cert"], files["key"])
    except ConfigError as error:
        flag = {"ca_file": "--ca-file", "cert_file": "--cert", "key_file": "--key"}.get(error.field, error.field)
        raise UsageError(f"{flag}: {error.problem}") from None


def _secret(args: argparse.Namespace, account: str) -> str:
    """The logon secret: the first line of --secret-file ("-": standard input), else $CARBONX_SECRET, else asked
    for without echo, only when standard input is a terminal (never a hang or an EOFError without one)."""
    path = getattr(args, "secret_file", None)
    if path is not None:
        try:
            text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise UsageError(
                f"cannot read the secret from {path}: {getattr(error, 'strerror', None) or error}: "
                "give a readable file with --secret-file, or set CARBONX_SECRET"
            ) from None
        secret = text.splitlines()[0] if text else ""
        if not secret:
            raise UsageError(
                f"{path} holds no secret (its first line is empty): write the secret there, or set CARBONX_SECRET"
            )
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


def failure(error: OSError) -> str:
    """Why there is no session, and what to do: one line."""
    if isinstance(error, TlsFailed):
        return f"{error.text}: check --tls, --ca-file, --cert, --key and --server-name"
    if isinstance(error, LogonRefused):
        if not error.code:  # closed without a logout: what a gateway that requires TLS does to a plain client
            return f"logon refused: {error.text} (if the gateway requires TLS, connect with --tls)"
        return f"logon refused: {error.text} (code {error.code})"
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
    if isinstance(error, ssl.SSLError):  # TLS to a gateway that speaks plain TCP, or a broken TLS session
        return f"TLS failed ({error.reason or error}): is the gateway's TLS on? check --tls and --port"
    return f"{error.strerror or error}: check --host and --port"


def _one_shot(action: Action, check: Check | None) -> Callable[[argparse.Namespace], int]:
    """A one-shot command: ``check`` the arguments (before asking for a secret or connecting), log on, run
    ``action``, log out. ``--timeout`` bounds the connection, the logon and the action (beyond its ``--wait``)."""

    def run(args: argparse.Namespace) -> int:
        if check is not None:
            check(args)
        timeout = getattr(args, "timeout", CONNECT_TIMEOUT)
        if not timeout > 0:
            raise UsageError(f"--timeout must be a number of seconds above zero, not {timeout}")
        target = session_target(args, load_server_config(args.exchange_config))
        if target is None:
            return USAGE

        logged_on = False

        async def session() -> int:
            nonlocal logged_on
            async with connect(
                target.host,
                target.port,
                target.account,
                target.secret,
                cancel_on_disconnect=False,
                connect_timeout=timeout,
                logon_timeout=timeout,
                tls=target.tls or False,
                server_hostname=target.server_name,
            ) as client:
                logged_on = True
                try:
                    return await asyncio.wait_for(action(client, args), timeout + getattr(args, "wait", 0.0))
                except TimeoutError:
                    raise SessionClosed(
                        f"no answer to the {args.command} within {timeout:g} s: the exchange is "
                        "busy or stuck; wait longer with --timeout"
                    ) from None

        try:
            return asyncio.run(session())
        except (ConnectionError, OSError) as error:
            what = "the session with the exchange at" if logged_on else "no session with the exchange at"
            print(f"carbonx {args.command}: {what} {target.host}:{target.port}: {failure(error)}", file=sys.stderr)
            return CONNECTION

    return run


def add_session(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The flags that say where and as whom to log on."""
    group = parser.add_argument_group("session")
    group.add_argument("--account", help="account to log on as (default: $CARBONX_ACCOUNT)")
    group.add_argument("--host", help="exchange address (default: exchange.toml's host)")
    group.add_argument("--port", type=int, help="exchange port (default: exchange.toml's port)")
    group.add_argument("--tls", action="store_true", help="connect over TLS (implied by --ca-file, --cert and --key)")
    group.add_argument(
        "--ca-file",
        metavar="FILE",
        help="TLS: the CA certificate (PEM) the gateway's certificate is checked against (default: the system's)",
    )
    group.add_argument("--cert", metavar="FILE", help="mutual TLS: this account's client certificate (PEM)")
    group.add_argument("--key", metavar="FILE", help="mutual TLS: the client certificate's key (PEM), if not in --cert")
    group.add_argument(
        "--server-name", metavar="NAME", help="TLS: the name the gateway's certificate carries (default: --host)"
    )
    return group


def add_trader(parser: argparse.ArgumentParser, action: Action, check: Check | None = None) -> None:
    """A one-shot command: its session flags, and its run (check the arguments, log on, ``action``, log out)."""
    group = add_session(parser)
    group.add_argument(
        "--secret-file",
        metavar="FILE",
        help="read the secret from the first line of FILE ('-': "
        "standard input); default: $CARBONX_SECRET, else asked for on the terminal",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=CONNECT_TIMEOUT,
        metavar="SECONDS",
        help=f"wait at most this long for the connection, the logon and each answer (default {CONNECT_TIMEOUT:g})",
    )
    parser.set_defaults(run=_one_shot(action, check))


def tick_sizes(client: ExchangeClient) -> dict[str, int]:
    """Cents per tick of each instrument, from the logon answer."""
    return {entry["symbol"]: eur_to_cents(entry["tick_size"]) for entry in client.logon["instruments"]}


async def print_answers(client: ExchangeClient, first: dict, wait: float) -> int:
    """Print a request's first answer and any further reports for it that arrive within ``wait`` seconds."""
    cents_per_tick = tick_sizes(client)
    print(describe_report(first, cents_per_tick))
    request_id = first.get("request_id")
    seen = {first.get("seq")}

    async def follow() -> None:
        async for message in client.messages():
            if message.get("request_id") == request_id and message.get("seq") not in seen:
                seen.add(message.get("seq"))
                print(describe_report(message, cents_per_tick))

    try:
        await asyncio.wait_for(follow(), wait)
    except TimeoutError:
        pass
    refused = first["type"] in ("reject", "request_rejected") or first.get("exec_type") == "rejected"
    return REFUSED if refused else 0
