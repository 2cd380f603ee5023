"""Instrument configuration: the shipped file, a new instrument without code changes, and every bad field;
where the configuration files are looked up; the exchange process's settings (ServerConfig), declared once
and matched by the shipped exchange.toml and by ``carbonx serve --help``.

A bad file must fail at load with a ConfigError whose message names the file
and the dotted path of the field (``instruments.EUA.tick_size_eur``), so an
operator can fix it without reading code.

The lookup (gateway/config.py): a file named by its flag, else the folder
$CARBONX_CONFIG, else ./config in the working directory (if it has an
instruments.toml), else the packaged defaults; one folder for every file.
"""

import ast
import dataclasses
import re
import tomllib
import typing
from pathlib import Path

import pytest

from exchange import ConfigError, Engine, NewOrder, OrderType, Side, Trade, parse_instruments
from gateway.cli.main import main
from gateway.config import (
    CONFIG_ENV,
    DEFAULT_INSTRUMENTS,
    PACKAGED_CONFIG,
    ServerConfig,
    config_folder,
    load_accounts,
    load_compliance,
    load_instruments,
    load_server_config,
    parse_server_config,
)

REPO = Path(__file__).resolve().parents[2]

VALID_TABLE = """\
name = "EU Allowance"
lot_units = 1000
tick_size_eur = "0.01"
min_lots = 1
max_lots = 1000
min_price_eur = "0.01"
max_price_eur = "1000.00"
reference_price_eur = "70.00"
market_collar_eur = "3.50"
price_band_bps = 500
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "instruments.toml"
    path.write_text(text)
    return path


def table_with(**changes) -> str:
    """VALID_TABLE with fields replaced (a TOML value as text) or removed (None)."""
    lines = []
    for line in VALID_TABLE.splitlines():
        key = line.split(" = ")[0]
        if key in changes:
            if changes[key] is not None:
                lines.append(f"{key} = {changes.pop(key)}")
            else:
                changes.pop(key)
        else:
            lines.append(line)
    lines += [f"{key} = {value}" for key, value in changes.items() if value is not None]
    return "\n".join(lines) + "\n"


def test_shipped_config_has_the_venue_terms():
    instruments = load_instruments()
    assert DEFAULT_INSTRUMENTS.read_bytes() == (REPO / "config" / "instruments.toml").read_bytes()
    assert sorted(instruments) == ["CER", "ERU", "EUA"]
    for symbol, instrument in instruments.items():
        assert instrument.symbol == symbol
        assert (instrument.lot_units, instrument.tick_size, instrument.min_lots) == (1000, 1, 1)
        assert instrument.min_price == 1 and instrument.max_price == 100_000 and instrument.max_lots == 1000
        assert all(
            type(value) is int
            for value in (instrument.tick_size, instrument.min_price, instrument.max_price, instrument.reference_price)
        )
    assert instruments["EUA"].reference_price == 7000 and instruments["EUA"].market_collar == 350
    # CERs and ERUs trade at a discount to EUAs (DOMAIN.md).
    assert instruments["ERU"].reference_price < instruments["CER"].reference_price < 7000


def test_a_fourth_instrument_works_end_to_end_without_code_changes(tmp_path):
    text = (
        DEFAULT_INSTRUMENTS.read_text()
        + """
[instruments.UKA]
name = "UK Allowance (UK ETS), spot"
lot_units = 1000
tick_size_eur = "0.05"
min_lots = 2
max_lots = 500
min_price_eur = "1.00"
max_price_eur = "500.00"
reference_price_eur = "40.00"
market_collar_eur = "2.00"
price_band_bps = 300
"""
    )
    instruments = load_instruments(write(tmp_path, text))
    assert sorted(instruments) == ["CER", "ERU", "EUA", "UKA"]
    uka = instruments["UKA"]
    assert (uka.tick_size, uka.min_lots, uka.max_lots, uka.min_price, uka.reference_price, uka.market_collar) == (
        5,
        2,
        500,
        100,
        4000,
        200,
    )
    engine = Engine(instruments, pre_trade_risk=False)
    engine.handle(
        NewOrder(ts=1, account="a", client_order_id=1, instrument="UKA", side=Side.SELL, quantity=3, price=4005)
    )
    engine.handle(
        NewOrder(ts=2, account="a", client_order_id=2, instrument="UKA", side=Side.SELL, quantity=3, price=4205)
    )  # beyond the collar of 4000 + 200
    events = engine.handle(
        NewOrder(
            ts=3,
            account="b",
            client_order_id=1,
            instrument="UKA",
            side=Side.BUY,
            quantity=5,
            order_type=OrderType.MARKET,
        )
    )
    trades = [event for event in events if isinstance(event, Trade)]
    assert [(t.instrument, t.price, t.quantity) for t in trades] == [("UKA", 4005, 3)]
    # Its own rules apply: the 5-cent tick and the 2-lot minimum.
    off_tick = engine.handle(
        NewOrder(ts=4, account="b", client_order_id=2, instrument="UKA", side=Side.BUY, quantity=2, price=4001)
    )
    too_small = engine.handle(
        NewOrder(ts=5, account="b", client_order_id=3, instrument="UKA", side=Side.BUY, quantity=1, price=4000)
    )
    assert [off_tick[0].code.name, too_small[0].code.name] == ["PRICE_NOT_ON_TICK", "QUANTITY_BELOW_MINIMUM"]
    for book in engine.books.values():
        book._check()


def test_core_code_names_no_instrument():
    """No string in the code of exchange/ (docstrings aside) is one of the configured symbols."""
    symbols = {"EUA", "CER", "ERU"}
    for path in sorted((REPO / "exchange").glob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        named = {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and id(node) not in docstrings and node.value in symbols
        }
        assert not named, f"{path.name} names {named}"


BAD_FIELDS = [
    # (case, field named in the error, table text)
    ("missing lot_units", "lot_units", table_with(lot_units=None)),
    ("missing tick", "tick_size_eur", table_with(tick_size_eur=None)),
    ("missing min_lots", "min_lots", table_with(min_lots=None)),
    ("missing max_lots", "max_lots", table_with(max_lots=None)),
    ("missing max price", "max_price_eur", table_with(max_price_eur=None)),
    ("missing reference", "reference_price_eur", table_with(reference_price_eur=None)),
    ("lot_units as string", "lot_units", table_with(lot_units='"1000"')),
    ("lot_units zero", "lot_units", table_with(lot_units="0")),
    ("min_lots as float", "min_lots", table_with(min_lots="1.5")),
    ("max_lots as bool", "max_lots", table_with(max_lots="true")),
    ("name not a string", "name", table_with(name="5")),
    ("tick as float", "tick_size_eur", table_with(tick_size_eur="0.01")),
    ("tick not a number", "tick_size_eur", table_with(tick_size_eur='"one cent"')),
    ("tick below a cent", "tick_size_eur", table_with(tick_size_eur='"0.001"')),
    ("tick zero", "tick_size_eur", table_with(tick_size_eur='"0.00"')),
    ("price as float", "max_price_eur", table_with(max_price_eur="1000.0")),
    ("price infinite", "max_price_eur", table_with(max_price_eur='"Infinity"')),
    ("band as string", "price_band_bps", table_with(price_band_bps='"500"')),
    ("band above 100%", "price_band_bps", table_with(price_band_bps="10001")),
    ("band sides unknown", "price_band_sides", table_with(price_band_sides='"buy"')),
    ("min price not on tick", "min_price_eur", table_with(tick_size_eur='"0.05"', min_price_eur='"0.07"')),
    (
        "max price not on tick",
        "max_price_eur",
        table_with(tick_size_eur='"0.05"', min_price_eur='"0.05"', max_price_eur='"1000.03"'),
    ),
    (
        "reference not on tick",
        "reference_price_eur",
        table_with(tick_size_eur='"0.05"', min_price_eur='"0.05"', reference_price_eur='"70.01"'),
    ),
    (
        "collar not on tick",
        "market_collar_eur",
        table_with(tick_size_eur='"0.05"', min_price_eur='"0.05"', market_collar_eur='"3.52"'),
    ),
    ("collar zero", "market_collar_eur", table_with(market_collar_eur='"0.00"')),
    ("max_lots below min_lots", "max_lots", table_with(min_lots="10", max_lots="5")),
    (
        "max price below min price",
        "max_price_eur",
        table_with(min_price_eur='"50.00"', max_price_eur='"40.00"', reference_price_eur='"45.00"'),
    ),
    ("min price zero", "min_price_eur", table_with(min_price_eur='"0.00"')),
    ("reference outside the range", "reference_price_eur", table_with(reference_price_eur='"1000.01"')),
    ("unknown field", "colour", table_with(colour='"green"')),
]


@pytest.mark.parametrize("field, table", [case[1:] for case in BAD_FIELDS], ids=[case[0] for case in BAD_FIELDS])
def test_bad_field_is_a_config_error_naming_file_and_field(tmp_path, field, table):
    path = write(tmp_path, "[instruments.EUA]\n" + table)
    with pytest.raises(ConfigError) as caught:
        load_instruments(path)
    message = str(caught.value)
    assert f"instruments.EUA.{field}" in message
    assert str(path) in message
    # The pure parser names the field exactly.
    with pytest.raises(ConfigError) as parsed:
        parse_instruments(tomllib.loads("[instruments.EUA]\n" + table))
    assert parsed.value.field == f"instruments.EUA.{field}"


def test_the_valid_table_used_above_is_valid(tmp_path):
    assert load_instruments(write(tmp_path, "[instruments.EUA]\n" + VALID_TABLE))["EUA"].tick_size == 1


@pytest.mark.parametrize(
    "text, field",
    [
        ("[instruments.eua]\n" + VALID_TABLE, "instruments.eua"),  # symbols are capitals
        ("[instruments.E]\n" + VALID_TABLE, "instruments.E"),  # too short
        ("[other]\nx = 1\n", "instruments"),  # no instruments at all
        ("instruments = 5\n", "instruments"),
        ("[instruments]\nEUA = 5\n", "instruments.EUA"),  # not a table
    ],
)
def test_bad_structure_names_the_table(tmp_path, text, field):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_instruments(path)
    assert f"{path}: {field}" in str(caught.value)


def test_bad_toml_names_the_file(tmp_path):
    path = write(tmp_path, "[instruments.EUA\nlot_units = \n")
    with pytest.raises(ConfigError) as caught:
        load_instruments(path)
    assert str(path) in str(caught.value) and "TOML" in str(caught.value)


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as caught:
        load_instruments(path)
    assert str(path) in str(caught.value) and "not found" in str(caught.value)


def test_config_error_is_a_value_error_with_field_and_problem():
    with pytest.raises(ValueError) as caught:
        parse_instruments({"instruments": {"EUA": {"lot_units": 1000}}})
    assert isinstance(caught.value, ConfigError)
    assert caught.value.field == "instruments.EUA.tick_size_eur" and caught.value.problem


# -- where the files are looked up --------------------------------------------------------------------

ONE_TABLE = VALID_TABLE.replace("EU Allowance", "UK Allowance")


def config_with(folder: Path, symbol: str) -> Path:
    """A configuration folder whose instruments.toml defines only ``symbol`` (the other files copied)."""
    folder.mkdir(parents=True)
    (folder / "instruments.toml").write_text(f"[instruments.{symbol}]\n{ONE_TABLE}")
    for name in ("compliance.toml", "exchange.toml"):
        (folder / name).write_bytes((REPO / "config" / name).read_bytes())
    return folder


@pytest.fixture
def lookup(tmp_path, monkeypatch):
    """A working directory of its own, with no $CARBONX_CONFIG."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def test_the_packaged_defaults_when_nothing_else_is_there(lookup):
    assert config_folder() == (PACKAGED_CONFIG, "the packaged defaults")
    assert sorted(load_instruments()) == ["CER", "ERU", "EUA"]
    assert (PACKAGED_CONFIG / "instruments.toml").read_bytes() == (REPO / "config" / "instruments.toml").read_bytes()


def test_a_config_folder_in_the_working_directory_wins_over_the_defaults(lookup):
    local = config_with(lookup / "work" / "config", "LOCAL")
    assert config_folder() == (local.resolve(), "./config in the working directory")
    assert sorted(load_instruments()) == ["LOCAL"]


def test_a_config_folder_without_instruments_is_passed_over(lookup):
    (lookup / "work" / "config").mkdir()
    (lookup / "work" / "config" / "settings.yaml").write_text("not ours\n")
    assert config_folder()[1] == "the packaged defaults"
    assert sorted(load_instruments()) == ["CER", "ERU", "EUA"]


def test_the_environment_variable_wins_over_the_working_directory(lookup, monkeypatch):
    config_with(lookup / "work" / "config", "LOCAL")
    chosen = config_with(lookup / "chosen", "CHOSEN")
    monkeypatch.setenv(CONFIG_ENV, str(chosen))
    assert config_folder() == (chosen, f"${CONFIG_ENV}")
    assert sorted(load_instruments()) == ["CHOSEN"]
    assert load_compliance() and load_server_config().port == 7001


def test_the_flag_wins_over_everything(lookup, monkeypatch):
    config_with(lookup / "work" / "config", "LOCAL")
    monkeypatch.setenv(CONFIG_ENV, str(config_with(lookup / "chosen", "CHOSEN")))
    named = config_with(lookup / "named", "NAMED") / "instruments.toml"
    assert sorted(load_instruments(named)) == ["NAMED"]
    assert sorted(load_instruments(str(named))) == ["NAMED"]


def test_one_folder_for_every_file_never_a_mix(lookup, monkeypatch):
    """$CARBONX_CONFIG without an accounts.toml: an error naming the folder and why, not the defaults' file."""
    chosen = config_with(lookup / "chosen", "EUA")
    monkeypatch.setenv(CONFIG_ENV, str(chosen))
    with pytest.raises(ConfigError) as caught:
        load_accounts(None, load_instruments())
    assert str(chosen / "accounts.toml") in str(caught.value)
    assert f"${CONFIG_ENV}" in str(caught.value) and "not found" in str(caught.value)


def test_an_environment_variable_that_is_not_a_folder_is_an_error(lookup, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(lookup / "nowhere"))
    with pytest.raises(ConfigError) as caught:
        load_instruments()
    assert str(lookup / "nowhere") in str(caught.value) and "not a folder" in str(caught.value)


def test_the_command_line_follows_the_lookup(lookup, monkeypatch, capsys):
    monkeypatch.setenv(CONFIG_ENV, str(config_with(lookup / "chosen", "CHOSEN")))
    assert main(["instruments"]) == 0
    assert capsys.readouterr().out.startswith("CHOSEN ")
    named = config_with(lookup / "named", "NAMED") / "instruments.toml"
    assert main(["--instruments", str(named), "instruments"]) == 0
    assert capsys.readouterr().out.startswith("NAMED ")
    monkeypatch.delenv(CONFIG_ENV)
    assert main(["instruments"]) == 0
    assert capsys.readouterr().out.startswith("EUA ")


def test_help_states_the_lookup(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "$CARBONX_CONFIG if set, else ./config" in text and "packaged" in text


# -- the exchange process's settings (exchange.toml, ServerConfig) ------------------------------------


def test_every_shipped_setting_is_a_field_of_server_config_and_every_field_is_shipped():
    """config/exchange.toml writes out every field of ServerConfig, each in the section its field declares,
    with a value of the field's type."""
    shipped = tomllib.loads((REPO / "config" / "exchange.toml").read_text())
    written = {(section, key) for section, table in shipped.items() for key in table}
    declared = {(field.metadata["section"], field.name) for field in dataclasses.fields(ServerConfig)}
    assert written == declared
    kinds = typing.get_type_hints(ServerConfig)
    for section, table in shipped.items():
        for key, value in table.items():
            assert isinstance(value, kinds[key]), f"{section}.{key}"
    assert load_server_config(REPO / "config" / "exchange.toml") == ServerConfig(
        **{
            key: float(value) if kinds[key] is float else value
            for table in shipped.values()
            for key, value in table.items()
        }
    )


def test_serve_help_offers_a_flag_for_every_field_and_no_other(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    settings = text[text.index("exchange settings") :]
    flags = set(re.findall(r"^  (--[a-z-]+)", settings, re.MULTILINE))
    assert flags == {"--" + field.name.replace("_", "-") for field in dataclasses.fields(ServerConfig)}
    words = " ".join(settings.split())
    for field in dataclasses.fields(ServerConfig):
        assert f"[{field.metadata['section']}.{field.name}, default {field.default!r}]" in words, field.name


def test_server_config_is_typed_and_frozen():
    kinds = typing.get_type_hints(ServerConfig)
    assert set(kinds.values()) == {str, int, float}
    for field in dataclasses.fields(ServerConfig):
        assert type(field.default) is kinds[field.name], field.name
        assert field.metadata["help"], field.name
    config = ServerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 7002  # setattr: a type checker refuses the assignment before the class can
    assert not hasattr(config, "__dict__")  # slots


@pytest.mark.parametrize(
    "document, field, says",
    [
        ({"server": {"port": 70000}}, "server.port", "must be from 0 to 65535"),
        ({"server": {"port": "7001"}}, "server.port", "must be a int"),
        ({"session": {"port": 7001}}, "session.port", "unknown setting"),
        ({"sessions": {}}, "sessions", "unknown section"),
        ({"log": {"log_level": "LOUD"}}, "log.log_level", "must be one of DEBUG, INFO, WARNING, ERROR"),
        ({"journal": {"journal_fsync": "never"}}, "journal.journal_fsync", "must be one of batch, off"),
    ],
)
def test_a_bad_setting_names_its_section_and_key(document, field, says):
    with pytest.raises(ConfigError) as caught:
        parse_server_config(document)
    assert caught.value.field == field and says in caught.value.problem


def test_a_float_setting_takes_a_whole_number_and_an_override_wins():
    config = parse_server_config({"session": {"throttle_rate": 100}}, {"port": 7005, "host": None})
    assert config.throttle_rate == 100.0 and type(config.throttle_rate) is float
    assert config.port == 7005 and config.host == "127.0.0.1"


def test_a_restart_says_which_configured_auction_bidders_are_not_admitted():
    # A data directory whose accounts were opened before admission existed (or whose bidder an operator
    # withdrew) is not re-admitted at a restart; the start-up says so instead of leaving every bid refused.
    from exchange import AdmitBidder, Engine, OpenAccount
    from gateway.config import DEFAULT_ACCOUNTS, load_accounts, load_instruments
    from gateway.opening import opening_commands, start_up_commands

    instruments = load_instruments()
    accounts = load_accounts(DEFAULT_ACCOUNTS, instruments)
    engine = Engine(instruments, pre_trade_risk=True)
    engine.handle_all([c for c in opening_commands(accounts, 1) if c.__class__ is not AdmitBidder])
    commands, unapplied = start_up_commands(accounts, engine, 2)
    assert not [c for c in commands if c.__class__ in (OpenAccount, AdmitBidder)]
    bidders = sorted(a for a in accounts if accounts[a].auction_bidder)
    assert bidders and sorted(line.split(".")[0] for line in unapplied if "auction_bidder" in line) == bidders
