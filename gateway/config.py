"""Reading configuration files.

How this works: TOML files are read here (the only place that opens them).
Instruments are handed to the pure parser in ``exchange``; accounts are
parsed here and become the engine's own commands (OpenAccount, Deposit), so
the engine learns of them the way it learns of everything, in sequence.
Every amount is converted once into integers (cents, units). Errors surface
as :class:`exchange.ConfigError` naming the file and the field.

Where the files are found, the first that applies:

1. the file a command-line flag names (``--instruments``, ``--accounts``,
   ``--compliance``, ``--exchange-config``): the ``path`` given to a loader;
2. the folder in the environment variable ``CARBONX_CONFIG``;
3. ``./config`` in the working directory, if it holds an ``instruments.toml``
   (a folder of that common name that is not a carbonx configuration is
   passed over);
4. the packaged defaults (:data:`PACKAGED_CONFIG`): the repository's
   top-level ``config/``, shipped in the wheel as the package
   ``gateway.defaults`` (pyproject.toml maps it), so git holds one copy.

Steps 2-4 choose a folder, not a file: every file not named by a flag comes
from that one folder, never a mix of two, and a file missing there is an
error naming the folder and why it was chosen.

The exchange process's settings (exchange.toml) are the fields of the frozen
dataclass :class:`ServerConfig`, each declared once with its type, default,
section, bounds and help; the parser and the command line's flags are
derived from those fields (:data:`SETTINGS`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from exchange import (
    ComplianceConfig,
    InvalidCommand,
    OpenAccount,
    SelfTradePrevention,
    parse_compliance,
)
from exchange.clearing import FuturesConfig, parse_futures
from exchange.instruments import ConfigError, Instrument, eur_to_cents, parse_instruments
from gateway.schedule.calendar import TradingCalendar, parse_calendar
from gateway.sessions.credentials import is_secret_hash
from gateway.tls import TLS_MODES
from gateway.wire.protocol import DEFAULT_MAX_FRAME

T = TypeVar("T")


# -- where the files are ------------------------------------------------------------------------

CONFIG_ENV = "CARBONX_CONFIG"  # a folder holding instruments.toml, accounts.toml, compliance.toml, exchange.toml


def _packaged_config() -> Path:
    """The default configuration: ``gateway/defaults`` in an installed wheel, else (a source checkout or an
    editable install) the repository's ``config/`` beside this package."""
    here = Path(__file__).resolve().parent
    installed = here / "defaults"
    return installed if installed.is_dir() else here.parent / "config"


PACKAGED_CONFIG = _packaged_config()


def config_folder() -> tuple[Path, str]:
    """The folder the configuration files come from when no flag names them, and why that one
    ($CARBONX_CONFIG, else ./config in the working directory if it has an instruments.toml, else the packaged
    defaults)."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override), f"${CONFIG_ENV}"
    local = Path("config")
    if (local / "instruments.toml").is_file():
        return local.resolve(), "./config in the working directory"
    return PACKAGED_CONFIG, "the packaged defaults"


def _located(name: str, path: Path | str | None, parse: Callable[[dict], T]) -> T:
    """Parse the file ``path`` (a flag's), else ``name`` in :func:`config_folder`; a file missing from that
    folder is an error saying which folder and why."""
    if path is not None:
        return _parse_file(path, parse)
    folder, why = config_folder()
    if not folder.is_dir():
        raise ConfigError(str(folder), f"not a folder (the configuration folder is {why})")
    file = folder / name
    if not file.is_file():
        raise ConfigError(
            str(file),
            f"file not found (the configuration folder is {why}; name the file with "
            f"its flag, or set ${CONFIG_ENV} to a folder that has it)",
        )
    return _parse_file(file, parse)


DEFAULT_INSTRUMENTS = PACKAGED_CONFIG / "instruments.toml"


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


def load_instruments(path: Path | str | None = None) -> dict[str, Instrument]:
    """The instruments defined in ``path`` (None: instruments.toml in :func:`config_folder`); raises
    ConfigError naming the file and the bad field."""
    return _located("instruments.toml", path, parse_instruments)


# -- accounts ---------------------------------------------------------------------------------

DEFAULT_ACCOUNTS = PACKAGED_CONFIG / "accounts.toml"
ACCOUNT_KINDS = tuple("installation broker project-developer fund bank investor operator auctioneer authority".split())
OPERATOR = "operator"  # the exchange's own staff: may use the kill switch; trades nothing
AUTHORITY = "authority"  # a competent authority: records allocations and emissions, closes compliance years
_ACCOUNT_FIELDS = {
    "name",
    "kind",
    "cash_eur",
    "units",
    "order_value_limit_eur",
    "self_trade_prevention",
    "secret_hash",
    "credit_limit_bps",
    "cancel_on_disconnect",
    "auction_bidder",
}


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
    cancel_on_disconnect: bool = True  # the gateway cancels the account's orders when its session ends
    auction_bidder: bool = False  # admitted to bid in primary auctions when the account is opened

    @property
    def is_operator(self) -> bool:
        return self.kind == OPERATOR


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
        cash = _euros(table, where, "cash_eur")
        if cash is None:
            raise ConfigError(f"{where}.cash_eur", "missing")
        units = table.get("units", {})
        if not isinstance(units, dict):
            raise ConfigError(f"{where}.units", "must be a table of instrument = units")
        for symbol, amount in units.items():
            if symbol not in instruments:
                raise ConfigError(f"{where}.units.{symbol}", f"unknown instrument (known: {', '.join(instruments)})")
            if type(amount) is not int or amount < 0:
                raise ConfigError(f"{where}.units.{symbol}", "must be a whole number of units, 0 or more")
        limit = _euros(table, where, "order_value_limit_eur")
        if limit is not None and limit <= 0:
            raise ConfigError(f"{where}.order_value_limit_eur", "must be positive (leave it out for no limit)")
        stp = table.get("self_trade_prevention")
        if stp is not None:
            try:
                stp = SelfTradePrevention(stp)
            except ValueError:
                raise ConfigError(
                    f"{where}.self_trade_prevention",
                    f"must be one of {', '.join(mode.value for mode in SelfTradePrevention)}",
                ) from None
        secret_hash = table.get("secret_hash")
        if not isinstance(secret_hash, str) or not is_secret_hash(secret_hash):
            raise ConfigError(
                f"{where}.secret_hash",
                "must be a scrypt hash, never the secret itself (make one with `carbonx hash-secret`)",
            )
        credit_limit = table.get("credit_limit_bps")
        if kind == "installation":
            if type(credit_limit) is not int or not 0 <= credit_limit <= 10_000:
                raise ConfigError(
                    f"{where}.credit_limit_bps", "an installation needs its credit limit: basis points from 0 to 10000"
                )
        elif credit_limit is not None:
            raise ConfigError(f"{where}.credit_limit_bps", "only an installation has a credit limit")
        flags = [table.get(flag, flag == "cancel_on_disconnect") for flag in ("cancel_on_disconnect", "auction_bidder")]
        for flag, value in zip(("cancel_on_disconnect", "auction_bidder"), flags, strict=True):
            if type(value) is not bool:
                raise ConfigError(f"{where}.{flag}", "must be true or false")
        accounts[account_id] = AccountConfig(
            account_id, name, kind, cash, dict(units), limit, stp, secret_hash, credit_limit, *flags
        )
    return accounts


def _euros(table: dict, where: str, key: str) -> int | None:
    """The euro amount ``table[key]`` in cents; None if the table leaves it out."""
    if key not in table:
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


def load_accounts(path: Path | str | None, instruments: Mapping[str, Instrument]) -> dict[str, AccountConfig]:
    """The accounts defined in ``path`` (None: accounts.toml in :func:`config_folder`); raises
    ConfigError naming the file and the bad field."""
    return _located("accounts.toml", path, lambda document: parse_accounts(document, instruments))


DEFAULT_COMPLIANCE = PACKAGED_CONFIG / "compliance.toml"


def load_compliance(path: Path | str | None = None) -> ComplianceConfig:
    """The compliance rules in ``path`` (None: compliance.toml in :func:`config_folder`); raises
    ConfigError naming the file and the bad field."""
    return _located("compliance.toml", path, parse_compliance)


def load_futures(
    instruments: Mapping[str, Instrument], path: Path | str | None = None, calendar_path: Path | str | None = None
) -> FuturesConfig:
    """The futures in ``path`` (None: futures.toml in :func:`config_folder`) on the spot ``instruments``, their
    business days those of the trading calendar (calendar.toml's weekend and holidays); ConfigError naming the
    file and the bad field."""
    calendar = load_calendar(instruments, calendar_path)
    holidays = [day.year * 10_000 + day.month * 100 + day.day for day in calendar.holidays]
    return _located("futures.toml", path, lambda data: parse_futures(data, instruments, holidays, calendar.weekend))


def load_calendar(instruments: Mapping[str, Instrument], path: Path | str | None = None) -> TradingCalendar:
    """The trading calendar in ``path`` (None: calendar.toml in :func:`config_folder`), with a schedule for each
    of ``instruments``; raises ConfigError naming the file and the bad field."""
    return _located("calendar.toml", path, lambda data: parse_calendar(data, instruments))


# -- the exchange process (config/exchange.toml) ------------------------------------------------

DEFAULT_EXCHANGE = PACKAGED_CONFIG / "exchange.toml"


def _about(
    section: str, help_text: str, low: float | None = None, high: float | None = None, choices: tuple[str, ...] = ()
) -> dict[str, object]:
    """What a field of :class:`ServerConfig` tells the file's parser and the command line: its exchange.toml
    section, its meaning (the CLI help), its allowed range or its allowed values."""
    return {"section": section, "help": help_text, "low": low, "high": high, "choices": choices}


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("json", "text")
FSYNC_POLICIES = ("batch", "off")
SCHEDULES = ("manual", "calendar")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The settings of the exchange process as one frozen record (``config.port``), every one present and checked.

    Each field is declared once, here: its type, its default, and in its metadata (:func:`_about`) its
    exchange.toml section, help text and bounds. The parser (:func:`parse_server_config`) and the command line's
    flags (``carbonx serve --port``) are derived from these fields (:data:`SETTINGS`); a flag wins over the file,
    the file over the default.
    """

    # -- [server]
    host: str = field(default="127.0.0.1", metadata=_about("server", "address the trading gateway listens on"))
    port: int = field(
        default=7001, metadata=_about("server", "TCP port of the trading gateway (0: any free port)", 0, 65535)
    )
    max_sessions: int = field(
        default=1000, metadata=_about("server", "sessions logged on at once; more logons are refused (715)", 1, 100_000)
    )
    max_pending_logons: int = field(
        default=256,
        metadata=_about(
            "server",
            "connections not logged on yet, in all; more are closed at once (718), so that a flood of idle "
            "connections cannot take the logged-on sessions' place",
            1,
            100_000,
        ),
    )
    max_pending_logons_per_peer: int = field(
        default=16,
        metadata=_about(
            "server", "connections not logged on yet from one address; more are closed at once (718)", 1, 100_000
        ),
    )
    # -- [tls]
    tls_mode: str = field(
        default="off",
        metadata=_about(
            "tls",
            "off: plain TCP (loopback, tests); on: TLS required, a plain connection is refused; mutual: a client "
            "certificate is required too, verified against tls_ca_file, and its subject's CN must be the account "
            "that logs on (otherwise 721)",
            choices=TLS_MODES,
        ),
    )
    tls_cert_file: str = field(
        default="", metadata=_about("tls", "the gateway's certificate (PEM; with its chain) when tls_mode is not off")
    )
    tls_key_file: str = field(default="", metadata=_about("tls", "the certificate's private key (PEM, not encrypted)"))
    tls_ca_file: str = field(
        default="",
        metadata=_about("tls", "mutual: the CA certificate(s) (PEM) client certificates must be issued by"),
    )
    tls_handshake_timeout: float = field(
        default=5.0,
        metadata=_about(
            "tls",
            "seconds a new connection has for its TLS handshake; a client that stalls in it is closed "
            "(the logon timeout starts after it)",
            0.1,
            60.0,
        ),
    )
    # -- [session]
    heartbeat_interval: float = field(
        default=5.0,
        metadata=_about("session", "seconds between heartbeats when a client asks for none in its logon", 0.1, 60.0),
    )
    heartbeat_timeout_factor: float = field(
        default=3.0,
        metadata=_about(
            "session", "a session is closed after this many heartbeat intervals with nothing received", 1.5, 10.0
        ),
    )
    logon_timeout: float = field(
        default=5.0, metadata=_about("session", "seconds a new connection has to log on", 0.1, 60.0)
    )
    logon_free_failures: int = field(
        default=3,
        metadata=_about(
            "session",
            "failed logons in a row for one account (or from one address) before each further one brings "
            "a back-off (717)",
            1,
            1000,
        ),
    )
    logon_backoff: float = field(
        default=1.0,
        metadata=_about(
            "session",
            "seconds of the first back-off after failed logons; it doubles with each further failure, up "
            "to the lockout",
            0.0,
            3600.0,
        ),
    )
    logon_lockout_failures: int = field(
        default=10,
        metadata=_about(
            "session",
            "failed logons in a row for one account (or from one address) that lock it out for "
            "logon_lockout_seconds (717)",
            1,
            1000,
        ),
    )
    logon_lockout_seconds: float = field(
        default=300.0, metadata=_about("session", "seconds a lockout lasts", 0.0, 86_400.0)
    )
    throttle_rate: float = field(
        default=5000.0,
        metadata=_about(
            "session",
            "messages a second a session may send, on average (token bucket); heartbeats and logout are not counted",
            1.0,
            1e7,
        ),
    )
    throttle_burst: int = field(
        default=1000,
        metadata=_about(
            "session", "messages a session may send at once above the rate (the bucket's size)", 1, 10_000_000
        ),
    )
    max_frame: int = field(
        default=DEFAULT_MAX_FRAME,
        metadata=_about(
            "session",
            "largest frame body in bytes a client may send (larger: logout 704); the server's own frames "
            "are not bound by it",
            64,
            16_777_216,
        ),
    )
    max_outbound_bytes: int = field(
        default=4_194_304,
        metadata=_about(
            "session",
            "bytes queued to a client that is not reading; past this it is disconnected (a slow consumer)",
            65_536,
            1 << 30,
        ),
    )
    # -- [engine]
    queue_size: int = field(
        default=10_000,
        metadata=_about(
            "engine",
            "requests waiting for the engine; past it what sessions send is refused at once (719), never dropped",
            1,
            10_000_000,
        ),
    )
    max_queue_delay: float = field(
        default=0.25,
        metadata=_about(
            "engine",
            "seconds a request may wait for the engine; one that waited longer is refused (719) rather than run late",
            0.001,
            3600.0,
        ),
    )
    max_batch: int = field(
        default=512, metadata=_about("engine", "requests the engine takes in one batch", 1, 1_000_000)
    )
    futures: str = field(
        default="off",
        metadata=_about(
            "engine",
            "on: futures are listed and cleared as futures.toml says (docs/FUTURES.md), each trading day's contracts "
            "listed at its start; off: spot only",
            choices=("off", "on"),
        ),
    )
    # -- [market_data]
    mqtt_url: str = field(
        default="",
        metadata=_about(
            "market_data",
            "MQTT broker to publish market data to, mqtt://user:password@host:port (mqtts:// for TLS, port "
            "8883 by default); empty: none (the feed is still served on the socket)",
        ),
    )
    mqtt_ca_file: str = field(
        default="",
        metadata=_about(
            "market_data",
            "for an mqtts:// broker: the CA certificate (PEM) its certificate is checked against; empty: the "
            "system's trusted CAs",
        ),
    )
    md_levels: int = field(default=10, metadata=_about("market_data", "price levels a side in the book feed", 1, 100))
    snapshot_interval: float = field(
        default=1.0,
        metadata=_about(
            "market_data",
            "seconds between book snapshots to the broker (for instruments whose book changed)",
            0.05,
            3600.0,
        ),
    )
    mqtt_queue: int = field(
        default=1_000_000,
        metadata=_about(
            "market_data",
            "trades and fills kept for the broker while it is slow or away; past this they are "
            "dropped (counted and logged)",
            1000,
            100_000_000,
        ),
    )
    # -- [journal]
    data_dir: str = field(
        default="",
        metadata=_about(
            "journal",
            "directory of the journal, snapshots and ledger; empty (the built-in default, below): a new "
            "temporary directory, deleted at exit (nothing survives); the shipped config/exchange.toml sets "
            "var/carbonx, which carbonx serve uses unless told otherwise (carbonx demo ignores the file's value)",
        ),
    )
    journal_fsync: str = field(
        default="batch",
        metadata=_about(
            "journal",
            "batch: every answer waits until its batch is fdatasynced (survives power loss); off: "
            "written, not synced (survives a crash of the process only)",
            choices=FSYNC_POLICIES,
        ),
    )
    snapshot_every: int = field(
        default=250_000,
        metadata=_about(
            "journal",
            "commands journaled between snapshots of the state, written by a forked process while the "
            "market goes on (0: only at a graceful stop and on request)",
            0,
            1 << 40,
        ),
    )
    resend_window: int = field(
        default=2_000,
        metadata=_about("journal", "numbered messages kept per account for resend requests", 1, 1_000_000),
    )
    journal_segment_mb: int = field(
        default=256,
        metadata=_about(
            "journal",
            "a journal segment is closed and the next begun at the end of every trading day and once it holds "
            "this many MiB; a closed segment a snapshot covers is archived (compressed)",
            1,
            1 << 20,
        ),
    )
    journal_archive_days: int = field(
        default=30,
        metadata=_about(
            "journal",
            "days an archived journal segment is kept, from when it was archived (0: for ever); a replay from "
            "before the oldest kept then starts from a snapshot. Copy archives elsewhere to keep them longer",
            0,
            36_500,
        ),
    )
    # -- [calendar]
    schedule: str = field(
        default="manual",
        metadata=_about(
            "calendar",
            "calendar: the exchange runs its trading days by itself from calendar.toml (phases, settlement, end of "
            "day, primary auctions); manual: continuous trading until an operator changes a phase",
            choices=SCHEDULES,
        ),
    )
    clock_start: str = field(
        default="",
        metadata=_about(
            "calendar",
            "a simulated clock starting at this local time of the venue (YYYY-MM-DDTHH:MM); empty: the host's clock",
        ),
    )
    clock_speed: float = field(
        default=1.0,
        metadata=_about("calendar", "how many times as fast as the host's the simulated clock runs", 1.0, 1_000_000.0),
    )
    # -- [auctions]
    auction_reserve_discount_bps: int = field(
        default=2000,
        metadata=_about(
            "auctions",
            "a primary auction is cancelled if it would clear this far (basis points) under the "
            "secondary-market price (unless the auctioneer sets its own)",
            0,
            10_000,
        ),
    )
    max_auction_window: int = field(
        default=86_400,
        metadata=_about("auctions", "longest bidding window of a primary auction, seconds", 1, 30 * 86_400),
    )
    auction_admission: str = field(
        default="on",
        metadata=_about(
            "auctions",
            "on: only accounts admitted by an operator bid (Auctioning Regulation Arts. 18-19)",
            choices=("off", "on"),
        ),
    )
    auction_fee_cents: int = field(
        default=141,
        metadata=_about("auctions", "fee per lot of 500 allowances won, euro cents (EEX 2021: EUR 1.41)", 0, 100_000),
    )
    # -- [settlement]
    ledger: str = field(
        default="",
        metadata=_about("settlement", "settlement ledger (SQLite) file; empty: ledger.sqlite3 in the data directory"),
    )
    settlement_queue: int = field(
        default=16_384, metadata=_about("settlement", "engine batches waiting for the ledger", 1, 10_000_000)
    )
    # -- [metrics]
    metrics_host: str = field(
        default="127.0.0.1",
        metadata=_about("metrics", "address of the HTTP endpoint for /metrics (Prometheus), /healthz and /readyz"),
    )
    metrics_port: int = field(
        default=0,
        metadata=_about(
            "metrics",
            "TCP port of the HTTP endpoint for /metrics, /healthz and /readyz (0: no endpoint; 9464 is the "
            "usual choice; docs/OPERATIONS.md)",
            0,
            65535,
        ),
    )
    # -- [log]
    log_level: str = field(default="INFO", metadata=_about("log", "DEBUG, INFO, WARNING or ERROR", choices=LOG_LEVELS))
    log_format: str = field(
        default="json", metadata=_about("log", "json (one object a line) or text", choices=LOG_FORMATS)
    )


@dataclass(frozen=True)
class Setting:
    """One field of :class:`ServerConfig` as the parser and the command line read it (derived, never declared)."""

    name: str
    section: str
    kind: type
    default: object
    help: str
    low: float | None
    high: float | None
    choices: tuple[str, ...]


def _settings() -> dict[str, Setting]:
    kinds = get_type_hints(ServerConfig)  # the annotations are strings (``from __future__ import annotations``)
    return {
        setting.name: Setting(
            setting.name,
            setting.metadata["section"],
            kinds[setting.name],
            setting.default,
            setting.metadata["help"],
            setting.metadata["low"],
            setting.metadata["high"],
            setting.metadata["choices"],
        )
        for setting in fields(ServerConfig)
    }


# Every setting of the exchange process, in exchange.toml's order; the CLI offers each as a flag
# (``--heartbeat-interval``).
SETTINGS: dict[str, Setting] = _settings()


def parse_server_config(document: dict, overrides: Mapping[str, object] | None = None) -> ServerConfig:
    """Check a parsed exchange.toml (sections of SETTINGS) and apply ``overrides`` (None values ignored)."""
    sections = {setting.section for setting in SETTINGS.values()}
    for section, table in document.items():
        if section not in sections:
            raise ConfigError(section, f"unknown section (known: {', '.join(sorted(sections))})")
        if not isinstance(table, dict):
            raise ConfigError(section, "must be a table")
        for key in table:
            if key not in SETTINGS or SETTINGS[key].section != section:
                known = ", ".join(name for name, setting in SETTINGS.items() if setting.section == section)
                raise ConfigError(f"{section}.{key}", f"unknown setting (known: {known})")
    values: dict[str, Any] = {}  # each value of its field's type: _checked_setting saw to it
    for name, setting in SETTINGS.items():
        value = document.get(setting.section, {}).get(name, setting.default)
        if overrides and overrides.get(name) is not None:
            value = overrides[name]
        values[name] = _checked_setting(setting, value)
    for name, setting in SETTINGS.items():  # the words checked once every type and range is known good
        if setting.choices and values[name] not in setting.choices:
            raise ConfigError(f"{setting.section}.{name}", f"must be one of {', '.join(setting.choices)}")
    return ServerConfig(**values)


def _checked_setting(setting: Setting, value: object) -> object:
    where = f"{setting.section}.{setting.name}"
    if setting.kind is float and type(value) is int:
        value = float(value)
    if type(value) is not setting.kind:
        raise ConfigError(where, f"must be a {setting.kind.__name__}, not {value!r}")
    if (
        setting.low is not None
        and setting.high is not None
        and isinstance(value, (int, float))
        and not setting.low <= value <= setting.high
    ):
        raise ConfigError(where, f"must be from {setting.low:g} to {setting.high:g}, not {value!r}")
    return value


def load_server_config(path: Path | str | None = None, overrides: Mapping[str, object] | None = None) -> ServerConfig:
    """The settings in ``path`` (None: exchange.toml in :func:`config_folder`) with ``overrides``
    applied; raises ConfigError naming the file and the setting."""
    return _located("exchange.toml", path, lambda document: parse_server_config(document, overrides))
