"""A real mosquitto broker for the tests: started on a free port of 127.0.0.1, always stopped.

How it works
------------
:class:`MosquittoBroker` runs ``mosquitto -c <config>`` as a child process with a configuration
written into its own temporary folder, in one of two modes:

- ``"open"``: anonymous clients allowed, no password file, no ACL; for plain publish/subscribe
  tests. Persistence is off unless asked for (``persistence=True``).
- ``"production"``: the project's own ``config/mosquitto/mosquitto.conf``, with its ``passwd`` and
  ``acl`` copied into the temporary folder. The file is used as it stands except for what cannot
  be shared with a test run: the one ``listener`` line gets the free port (on 127.0.0.1),
  ``password_file``, ``acl_file`` and ``persistence_location`` point into the temporary folder,
  ``log_dest``, ``user`` and ``pid_file`` are replaced (see below), and ``include_dir`` reads a
  ``conf.d`` of the temporary folder. Everything else - ``allow_anonymous``, persistence, limits -
  is tested as shipped. With ``tls=(certificate, key)`` that ``conf.d`` holds the shipped TLS
  listener, ``config/mosquitto/tls.conf``, with its port moved to a second free one
  (:attr:`MosquittoBroker.tls_port`, :meth:`MosquittoBroker.tls_url`) and its ``certfile`` and
  ``keyfile`` pointed at the test's; as shipped it is empty, as the repository's ``conf.d`` is.

In both modes the broker logs everything (``log_type all``, so refused publishes show as "Denied
PUBLISH" lines) to standard error, which goes to ``mosquitto.log`` in the temporary folder:
:meth:`MosquittoBroker.log_text` reads it and a failed start quotes its end. Run as root, mosquitto
2.0 would switch to the user ``mosquitto`` before reading the password file, which cannot enter the
temporary folder; the helper then sets ``user root`` (mosquitto warns, and keeps running as root).

The broker is ready when its log says "running" for this start (every listener is bound) and the
port accepts a TCP connection; a start that fails quotes the log. ``stop()`` sends SIGTERM (a clean
shutdown: persistence is saved) and waits, ``kill()`` sends SIGKILL (a crash: nothing saved),
``start()`` again reuses the same port, so clients can reconnect; ``pause()``/``resume()`` send
SIGSTOP/SIGCONT, for a broker that still holds its connections but answers nothing. Every signal
goes to the broker's own PID. ``close()`` stops it and removes the folder; brokers left running at
interpreter exit are killed by an ``atexit`` hook, and on Linux the child also gets SIGKILL from the
kernel if the test process dies without running it (``PR_SET_PDEATHSIG``).

``start()``/``stop()`` block (a start takes some milliseconds); ``astart()``/``astop()``/
``arestart()`` wait with ``asyncio.sleep`` so that clients on the same event loop keep running, as
a test of reconnection needs. Use it as ``with`` / ``async with`` or through :func:`running_broker`
in a fixture::

    @pytest.fixture
    def broker():
        with running_broker("production") as broker:
            yield broker

:func:`running_broker` skips the test when mosquitto is not installed; :data:`requires_mosquitto`
is the same as a marker.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Self
from urllib.parse import quote

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "config" / "mosquitto"
HOST = "127.0.0.1"
FALLBACK_BINARY = "/usr/sbin/mosquitto"  # Debian and Ubuntu put it here, often not on a user's PATH
START_TIMEOUT = 10.0  # seconds a start may take before it is a failure
STOP_TIMEOUT = 5.0  # seconds a SIGTERM may take before SIGKILL

SKIP_REASON = (
    f"the mosquitto broker is not installed (not on PATH, not at {FALLBACK_BINARY}): "
    "install it (apt-get install mosquitto) to run the MQTT tests"
)

Mode = Literal["open", "production"]
_RUNNING = re.compile(rb"mosquitto version \S+ running")  # logged once every listener is bound


def mosquitto_binary() -> str | None:
    """The mosquitto executable: the one on PATH, else /usr/sbin/mosquitto, else None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    if os.path.isfile(FALLBACK_BINARY) and os.access(FALLBACK_BINARY, os.X_OK):
        return FALLBACK_BINARY
    return None


requires_mosquitto = pytest.mark.skipif(mosquitto_binary() is None, reason=SKIP_REASON)


def skip_without_mosquitto() -> str:
    """The mosquitto executable, or skip the calling test (or fixture) with a clear reason."""
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip(SKIP_REASON)
    return binary


def free_port(host: str = HOST) -> int:
    """A TCP port of ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


# -- cleanup at exit ---------------------------------------------------------------------------------

_LIVE: set[MosquittoBroker] = set()  # brokers not yet closed


@atexit.register
def _close_leftovers() -> None:
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.close(timeout=1.0)


def _parent_death_signal():
    """A preexec_fn that has the kernel SIGKILL the broker when the test process dies (Linux only)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        # The signal follows the thread that forked: from a worker thread it would fire when that
        # thread ends, killing a broker the test still uses.
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


# -- the broker --------------------------------------------------------------------------------------


class MosquittoBroker:
    """One mosquitto process on ``127.0.0.1:port``, in ``"open"`` or ``"production"`` mode."""

    def __init__(
        self,
        mode: Mode = "open",
        *,
        persistence: bool = False,
        port: int | None = None,
        config_dir: Path = CONFIG_DIR,
        binary: str | None = None,
        extra_config: str = "",
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """``persistence`` and ``extra_config`` (lines appended to the configuration) are for the
        open mode; the production mode takes both from ``config_dir/mosquitto.conf``. ``tls`` (the
        server's certificate and key files) is for the production mode: it adds the shipped TLS
        listener, ``config_dir/tls.conf``, on a second free port (:attr:`tls_port`)."""
        if mode not in ("open", "production"):
            raise ValueError(f"mode must be 'open' or 'production', not {mode!r}")
        self.binary = binary or mosquitto_binary()
        if self.binary is None:
            raise RuntimeError(SKIP_REASON)
        self.mode: Mode = mode
        self.host = HOST
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        if tls is not None and mode != "production":
            raise ValueError("tls is for the production mode (the shipped tls.conf)")
        self.tls = tls
        self.tls_port = free_port() if tls is not None else None
        self.config_dir = Path(config_dir)
        self.persistence = persistence
        self.extra_config = extra_config
        self.workdir = Path(tempfile.mkdtemp(prefix="carbonx-mosquitto-"))
        if any(character.isspace() for character in str(self.workdir)):
            # mosquitto's configuration reader ends a path at the first space
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise RuntimeError(f"temporary folder {self.workdir} has a space; set TMPDIR to a path without")
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir()
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self._process: subprocess.Popen | None = None
        self._paused = False
        self._started_once = False
        self._closed = False
        self._write_config()
        _LIVE.add(self)

    @classmethod
    def open(cls, **options) -> MosquittoBroker:
        """Anonymous clients allowed, no ACL (not started yet)."""
        return cls("open", **options)

    @classmethod
    def production(cls, **options) -> MosquittoBroker:
        """The project's config/mosquitto files on a free port (not started yet)."""
        return cls("production", **options)

    # -- configuration --------------------------------------------------------------------------

    def _write_config(self) -> None:
        text = self._production_config() if self.mode == "production" else self._open_config()
        self.config_path.write_text(text)

    def _common_lines(self) -> list[str]:
        lines = [
            "# -- set by tests/mosquitto_broker.py --",
            "log_dest stderr",  # the process's standard error is the file mosquitto.log
            "log_type all",
            "log_timestamp true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # as root mosquitto would become `mosquitto`, locked out of workdir
        return lines

    def _open_config(self) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.data_dir}/",
            *self._common_lines(),
            self.extra_config,
        ]
        return "\n".join(lines) + "\n"

    def _production_config(self) -> str:
        source = self.config_dir / "mosquitto.conf"
        for name in ("passwd", "acl"):
            shutil.copyfile(self.config_dir / name, self.workdir / name)
        replaced = {
            "password_file": f"password_file {self.workdir / 'passwd'}",
            "acl_file": f"acl_file {self.workdir / 'acl'}",
            "persistence_location": f"persistence_location {self.data_dir}/",
        }
        dropped = {"log_dest", "user", "pid_file"}
        lines: list[str] = []
        listeners = 0
        for line in source.read_text().splitlines():
            words = line.split()
            if not words or words[0].startswith("#"):
                lines.append(line)
            elif words[0] == "include_dir":
                # mosquitto takes the rest of an include_dir line as the path: no comment after it
                lines.extend([f"# was: {line.strip()}", f"include_dir {self._included_listeners()}"])
            elif words[0] == "listener":
                listeners += 1
                lines.append(f"listener {self.port} {self.host}  # was: {line.strip()}")
            elif words[0] in replaced:
                lines.append(replaced[words[0]])
            elif words[0] in dropped:
                lines.append(f"# (dropped by the test helper) {line.strip()}")
            else:
                lines.append(line)
        if listeners != 1:
            raise ValueError(
                f"{source} has {listeners} listener lines; the test helper knows how to move exactly one to a free port"
            )
        return "\n".join([*lines, *self._common_lines()]) + "\n"

    def _included_listeners(self) -> Path:
        """The folder the configuration's include_dir reads: empty, as shipped, or with the shipped TLS
        listener (``tls.conf``) moved to :attr:`tls_port` and given the test's certificate."""
        folder = self.workdir / "conf.d"
        folder.mkdir(exist_ok=True)
        for stale in folder.glob("*.conf"):
            stale.unlink()
        if self.tls is None:
            return folder
        cert, key = self.tls
        replaced = {
            "listener": f"listener {self.tls_port} {self.host}",
            "certfile": f"certfile {cert}",
            "keyfile": f"keyfile {key}",
        }
        lines = []
        for line in (self.config_dir / "tls.conf").read_text().splitlines():
            words = line.split()
            if words and words[0] in replaced:
                lines.extend([f"# was: {line.strip()}", replaced[words[0]]])
            else:
                lines.append(line)
        (folder / "tls.conf").write_text("\n".join(lines) + "\n")
        return folder

    # -- state ----------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """The process exists (it may be paused)."""
        return self._process is not None and self._process.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """``mqtt://user:password@127.0.0.1:port`` (user and password percent-encoded; both optional)."""
        return f"mqtt://{_credentials(user, password)}{self.host}:{self.port}"

    def tls_url(self, user: str | None = None, password: str | None = None) -> str:
        """``mqtts://user:password@127.0.0.1:tls_port``: the TLS listener (``tls`` given)."""
        assert self.tls_port is not None, "this broker has no TLS listener"
        return f"mqtts://{_credentials(user, password)}{self.host}:{self.tls_port}"

    def log_text(self) -> str:
        """Everything the broker has logged, over all its starts."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- start ----------------------------------------------------------------------------------

    def _spawn(self) -> int:
        """Start the process; return the log offset where this start's lines begin."""
        if self._closed:
            raise RuntimeError("this broker is closed")
        if self.running:
            raise RuntimeError(f"mosquitto is already running (pid {self.pid})")
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_parent_death_signal(),
            )  # noqa: PLW1509 (only prctl, resolved before fork)
        self._paused = False
        return offset

    def _ready(self, offset: int) -> bool:
        """True once this start's log says running and the port answers; raises if the process died."""
        if self._process.poll() is not None:
            raise _StartFailed(self._process.returncode)
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            started = _RUNNING.search(log.read()) is not None
        if not started:
            return False
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _start_failed(self, error: _StartFailed | None) -> bool:
        """Handle a failed start: True to try again on another port, else raise."""
        tail = self._log_tail()
        if error is not None and not self._started_once and not self._fixed_port and "Address already in use" in tail:
            self.port = free_port()  # another process took the port between probe and bind
            if self.tls_port is not None:
                self.tls_port = free_port()
            self._write_config()
            return True
        if error is None:
            self._force_stop()
            raise TimeoutError(
                f"mosquitto did not accept connections on {self.host}:{self.port} "
                f"within {START_TIMEOUT} s; its log ends:\n{tail}"
            )
        raise RuntimeError(
            f"mosquitto exited with code {error.returncode} at start ({self.host}:{self.port}); its log ends:\n{tail}"
        )

    def start(self, timeout: float = START_TIMEOUT) -> MosquittoBroker:
        """Start the broker (again: on the same port) and wait until it accepts connections."""
        for _attempt in range(3):
            offset = self._spawn()
            deadline = time.monotonic() + timeout
            try:
                while not self._ready(offset):
                    if time.monotonic() > deadline:
                        self._start_failed(None)
                    time.sleep(0.005)
            except _StartFailed as error:
                if self._start_failed(error):
                    continue
            self._started_once = True
            return self
        raise RuntimeError(f"mosquitto could not bind a free port; its log ends:\n{self._log_tail()}")

    async def astart(self, timeout: float = START_TIMEOUT) -> MosquittoBroker:
        """:meth:`start`, waiting with asyncio.sleep so the event loop keeps running."""
        for _attempt in range(3):
            offset = self._spawn()
            deadline = time.monotonic() + timeout
            try:
                while not self._ready(offset):
                    if time.monotonic() > deadline:
                        self._start_failed(None)
                    await asyncio.sleep(0.005)
            except _StartFailed as error:
                if self._start_failed(error):
                    continue
            self._started_once = True
            return self
        raise RuntimeError(f"mosquitto could not bind a free port; its log ends:\n{self._log_tail()}")

    # -- stop, pause ----------------------------------------------------------------------------

    def _signal(self, signum: int) -> None:
        if self.running:
            os.kill(self._process.pid, signum)

    def _begin_stop(self) -> bool:
        """Send SIGTERM (after SIGCONT if paused); False if there was nothing to stop."""
        if not self.running:
            self._paused = False
            return False
        if self._paused:
            self._signal(signal.SIGCONT)  # a stopped process would not act on SIGTERM
            self._paused = False
        self._signal(signal.SIGTERM)
        return True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Clean shutdown (SIGTERM: mosquitto saves persistence), then wait; SIGKILL after ``timeout``."""
        if not self._begin_stop():
            return
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._force_stop()

    async def astop(self, timeout: float = STOP_TIMEOUT) -> None:
        """:meth:`stop`, waiting with asyncio.sleep."""
        if not self._begin_stop():
            return
        deadline = time.monotonic() + timeout
        while self._process.poll() is None:
            if time.monotonic() > deadline:
                self._force_stop()
                return
            await asyncio.sleep(0.005)

    def kill(self) -> None:
        """A crash: SIGKILL, nothing saved."""
        self._force_stop()

    def _force_stop(self) -> None:
        if self.running:
            self._process.kill()  # SIGKILL works on a stopped (paused) process too
            self._process.wait(STOP_TIMEOUT)
        self._paused = False

    def restart(self) -> MosquittoBroker:
        self.stop()
        return self.start()

    async def arestart(self) -> MosquittoBroker:
        await self.astop()
        return await self.astart()

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered (a stalled broker)."""
        if not self.running:
            raise RuntimeError("mosquitto is not running")
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.running:
            self._signal(signal.SIGCONT)
        self._paused = False

    def close(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the broker (SIGKILL after ``timeout``) and remove its temporary folder."""
        try:
            self.stop(timeout)
        finally:
            self._closed = True
            _LIVE.discard(self)
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- context managers -----------------------------------------------------------------------

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        if not self.running:
            await self.astart()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.astop()
        self.close()

    def __repr__(self) -> str:
        state = "paused" if self._paused else "running" if self.running else "stopped"
        return f"<MosquittoBroker {self.mode} {self.host}:{self.port} pid={self.pid} {state}>"


def _credentials(user: str | None, password: str | None) -> str:
    """``user:password@`` of a URL, percent-encoded (empty without a user)."""
    if user is None:
        return ""
    credentials = quote(user, safe="")
    if password is not None:
        credentials += ":" + quote(password, safe="")
    return credentials + "@"


class _StartFailed(Exception):
    def __init__(self, returncode: int) -> None:
        super().__init__(returncode)
        self.returncode = returncode


@contextlib.contextmanager
def running_broker(mode: Mode = "open", **options) -> Iterator[MosquittoBroker]:
    """A started broker for a fixture; skips the test when mosquitto is not installed."""
    binary = skip_without_mosquitto()
    broker = MosquittoBroker(mode, binary=binary, **options)
    try:
        broker.start()
        yield broker
    finally:
        broker.close()
