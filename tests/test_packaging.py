"""A fresh machine installs carbonx and gets the same exchange: the wheel carries the default
configuration, and what the exchange says does not depend on its libraries' versions.

- The wheel (``pip wheel --no-deps``, the way ``pip install .`` builds it) holds ``config/`` as the
  package ``gateway.defaults``, file for file the same bytes as the repository's, and an installed
  carbonx run from a folder with no ``config/`` loads them; it holds none of the benchmarks.
- Refusal texts are the project's own (gateway/wire/protocol.py): pinned here for one frame of each kind, so
  a newer msgspec within the bounds of pyproject.toml that words its errors otherwise cannot change them.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import msgpack
import pytest
from conftest import REPO_ROOT

from gateway.wire.protocol import DictReader, MessageReader, ProtocolError, Refusal

CONFIG_FILES = sorted(
    path.relative_to(REPO_ROOT / "config").as_posix() for path in (REPO_ROOT / "config").rglob("*") if path.is_file()
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """carbonx's wheel, built by pip (build dependencies from the package index) from a copy of this checkout,
    so that the build's own folders (build/, *.egg-info) are left in the copy, not in the checkout."""
    source = tmp_path_factory.mktemp("source") / "carbonx"
    shutil.copytree(
        REPO_ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", ".pytest_cache", "var", "results"
        ),
    )
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    [built] = out.glob("carbonx-*.whl")
    return built


def test_the_wheel_carries_the_default_configuration(wheel):
    assert {"instruments.toml", "accounts.toml", "compliance.toml", "exchange.toml"} <= set(CONFIG_FILES)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        packaged = sorted(
            name.removeprefix("gateway/defaults/") for name in names if name.startswith("gateway/defaults/")
        )
        assert packaged == CONFIG_FILES
        for name in CONFIG_FILES:
            assert archive.read(f"gateway/defaults/{name}") == (REPO_ROOT / "config" / name).read_bytes(), name
    assert not any(name.startswith("config/") for name in names), "config/ ships inside gateway, not beside it"


def test_the_wheel_carries_every_module_of_the_product(wheel):
    """pyproject.toml lists the packages by name: a new subpackage left out of the list would install without
    its modules (an editable install hides that)."""
    modules = {
        path.relative_to(REPO_ROOT).as_posix()
        for package in ("exchange", "gateway")
        for path in (REPO_ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert sorted(modules - names) == []


def test_the_wheel_carries_no_benchmarks(wheel):
    """The benchmarks are programs of the checkout (python3 benchmarks/suite.py), never part of the product."""
    scripts = {path.name for path in (REPO_ROOT / "benchmarks").glob("*.py")}
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert not [name for name in names if name.startswith("benchmarks/") or name.split("/")[-1] in scripts]


def test_the_installed_package_loads_its_defaults_from_any_folder(wheel, tmp_path):
    """The wheel's code, unpacked as pip installs it, run where there is no config/ and no $CARBONX_CONFIG."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment = {key: value for key, value in os.environ.items() if key != "CARBONX_CONFIG"}
    environment["PYTHONPATH"] = str(site)  # ahead of any installed or editable carbonx
    check = """
import gateway.config as config
from pathlib import Path
assert Path(config.__file__).parent == Path.cwd().parent / "site" / "gateway", config.__file__
assert config.config_folder() == (config.PACKAGED_CONFIG, "the packaged defaults"), config.config_folder()
instruments = config.load_instruments()
accounts = config.load_accounts(None, instruments)
config.load_compliance()
settings = config.load_server_config()
print(sorted(instruments), len(accounts), settings.port)
"""
    run = subprocess.run(
        [sys.executable, "-c", check],
        cwd=elsewhere,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[:3] == ["['CER',", "'ERU',", "'EUA']"]
    for command, shown in (("instruments", "EUA"), ("accounts", "market-ops")):
        program = f"import sys; from gateway.cli.main import main; sys.exit(main([{command!r}]))"
        listed = subprocess.run(
            [sys.executable, "-c", program],
            cwd=elsewhere,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert shown in listed.stdout


# -- refusal texts are the project's own ------------------------------------------------------------------


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


ORDER = {"type": "new_order", "client_order_id": "c1", "instrument": "EUA", "side": "B", "quantity": 5, "price": 7000}
MALFORMED = "frame body is not exactly one MessagePack map (closes): "
INVALID = "a field is missing, not known for this message type, or of the wrong type: "
TEXTS = [
    ("not UTF-8", b"\x82\xa4type\xa8balances\xa1x\xa2\xff\xfe", MALFORMED + "a string that is not UTF-8"),
    ("a key not UTF-8", b"\x81\xa2\xff\xfe\xc0", MALFORMED + "a string that is not UTF-8"),
    (
        "nested 3000 deep",
        b"\x82\xa4type\xa8balances\xa1x" + b"\x91" * 3000 + b"\xc0",
        MALFORMED + "nested too deeply (more than 1000 levels of arrays and maps)",
    ),
    ("never used byte", b"\xc1", MALFORMED + "not valid MessagePack: byte 0xc1 at offset 0"),
    ("truncated", msgpack.packb({"type": "balances"})[:-3], MALFORMED + "truncated: the body ends inside an object"),
    (
        "trailing",
        msgpack.packb({"type": "balances"}) + b"\x01",
        MALFORMED + "bytes after the first object (a body is exactly one map)",
    ),
    ("a map as a key", b"\x82\xa4type\xa9heartbeat\x80\xc0", MALFORMED + "a map key that is a map or an ext value"),
    ("an array", msgpack.packb([1, 2]), MALFORMED + "an array, not a map"),
    ("missing field", msgpack.packb({"type": "logon", "account": "bank"}), INVALID + "missing required field `secret`"),
    (
        "string for an integer",
        msgpack.packb(ORDER | {"quantity": "5"}),
        INVALID + "`quantity` must be an integer, not a string",
    ),
    (
        "float for an integer",
        msgpack.packb(ORDER | {"quantity": 5.0}),
        INVALID + "`quantity` must be an integer, not a float",
    ),
    (
        "integer for a boolean",
        msgpack.packb(ORDER | {"post_only": 1}),
        INVALID + "`post_only` must be true or false, not an integer",
    ),
    (
        "nil not allowed",
        msgpack.packb({"type": "book", "instrument": "EUA", "levels": None}),
        INVALID + "`levels` must be an integer, not nil",
    ),
    (
        "request id too long",
        msgpack.packb({"type": "heartbeat", "request_id": "r" * 65}),
        INVALID + "`request_id` must be a signed 64-bit integer, a string of at most 64 characters or nil, "
        "not a string of 65 characters",
    ),
    (
        "an array's item",
        msgpack.packb({"type": "subscribe", "instruments": ["EUA", 5]}),
        INVALID + "`instruments` must be an array of strings or nil, not an array holding an integer",
    ),
    (
        "bin for a string",
        msgpack.packb({"type": "logon", "account": b"bank", "secret": "s"}),
        INVALID + "`account` must be a string, not bin",
    ),
    (
        "ext for a string",
        msgpack.packb({"type": "logon", "account": msgpack.ExtType(1, b"x"), "secret": "s"}),
        INVALID + "`account` must be a string, not an ext value",
    ),
]


@pytest.mark.parametrize("body, text", [case[1:] for case in TEXTS], ids=[case[0] for case in TEXTS])
def test_refusal_texts_are_the_projects_own(body, text):
    [refusal] = MessageReader().feed(frame(body))
    assert type(refusal) is Refusal
    assert refusal.text == text


@pytest.mark.parametrize(
    "body, text",
    [
        (b"\xa2\xff\xfe", "the server sent an unreadable frame: a string that is not UTF-8"),
        (b"\x92\x01\x02", "the server sent an array, not a map"),
    ],
)
def test_the_clients_errors_are_the_projects_own(body, text):
    with pytest.raises(ProtocolError) as raised:
        DictReader().feed(frame(body))
    assert str(raised.value) == text
