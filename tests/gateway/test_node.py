"""The process tuning of ``carbonx serve`` (gateway/node.py): the C allocator's arenas.

The effect (resident memory flat from day to day) is measured by benchmarks/soak_days.py; here, that the cap
is set on glibc, that an operator's ``MALLOC_ARENA_MAX`` wins, and that the call is harmless elsewhere.
"""

from __future__ import annotations

import ctypes
import platform

import pytest

from gateway import node


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_malloc_arenas_are_capped_on_glibc(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert node.limit_malloc_arenas() is True


def test_an_operators_malloc_arena_max_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    called = []
    monkeypatch.setattr(ctypes, "CDLL", lambda *args: called.append(args))
    assert node.limit_malloc_arenas() is False and called == []


def test_without_mallopt_nothing_happens(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)

    class NoMallopt:
        def __init__(self, *args: object) -> None:
            pass

    monkeypatch.setattr(ctypes, "CDLL", NoMallopt)
    assert node.limit_malloc_arenas() is False
