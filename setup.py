"""The optional compiled build of the engine's hot modules; everything else about the package is in pyproject.toml.

By default (no ``CARBONX_COMPILE``) the package is pure Python and needs no compiler: that is the reference. With
``CARBONX_COMPILE=1`` the modules of :data:`COMPILED_MODULES` are also compiled with mypyc (from mypy, pinned in
the dev extra) into C extensions, which Python imports in place of the ``.py`` files beside them. The build needs
mypy and a C compiler in the environment doing it, hence no build isolation::

    pip install 'mypy==2.4.1' && CARBONX_COMPILE=1 pip install --no-build-isolation .

docs/PERFORMANCE.md has the figures with and without; ``.ci/run`` builds it in place in a scratch copy and runs the
engine's tests against it (``CARBONX_EXPECT_COMPILED=1``), so the compiled engine is tested equal to the pure one.
"""

import os

from setuptools import setup

# The command path, end to end (engine, new orders and cancels, books, matching, risk, accounts, stops, calls):
# each is typed throughout already (mypy runs over it); the module constants they read are Final, so compiled
# code reads them as C statics.
COMPILED_MODULES = [
    "exchange/engine.py",
    "exchange/order_commands.py",
    "exchange/book.py",
    "exchange/book_side.py",
    "exchange/matching.py",
    "exchange/risk.py",
    "exchange/orders.py",
    "exchange/accounts.py",
    "exchange/stops.py",
    "exchange/call_auction.py",
    "exchange/refusals.py",
]

if os.environ.get("CARBONX_COMPILE") == "1":
    from mypyc.build import mypycify

    setup(ext_modules=mypycify(COMPILED_MODULES, opt_level="3"))
else:
    setup()
