"""Reading configuration files.

How this works: TOML files are read here (the only place that opens them)
and their tables handed to the pure parsers in ``exchange``, which convert
and validate every field. Errors surface as :class:`exchange.ConfigError`
naming the file and the field.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

from exchange.instruments import ConfigError, Instrument, parse_instruments

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


def load_instruments(path: Path | str = DEFAULT_INSTRUMENTS) -> dict[str, Instrument]:
    """The instruments defined in ``path``; raises ConfigError naming the file and the bad field."""
    path = Path(path)
    try:
        return parse_instruments(read_toml(path))
    except ConfigError as exc:
        if exc.field.startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {exc.field}", exc.problem) from None
