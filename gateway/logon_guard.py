"""Failed logons: back-off and lockout, per account and per peer address.

How this works
--------------
Online guessing of a secret is limited twice: by the account named and by
the address the connection comes from, each counted on its own (an attacker
spreading guesses over accounts meets the address's count; one spreading
them over addresses meets the account's). For each key the guard keeps the
number of failed logons in a row and when the key may try again:

- the first ``free_failures`` failures in a row cost nothing more than the
  answer;
- each further failure brings a back-off: ``backoff`` seconds, doubling with
  every failure after it;
- ``lockout_failures`` failures in a row lock the key out for
  ``lockout_seconds``, and so does every failure after that.

An address may carry many accounts' users (an office behind one NAT), so its
counts are ``PEER_ALLOWANCE`` times the account's: one user's typos lock out
that user's account, not the office. A successful logon clears the account's
count only: the address's decays with time alone, so an attacker who owns one
account cannot wipe the address's count by logging on to it between guesses.

A logon for a key that must wait is refused at once (717, with the seconds
left), without checking its secret: the right secret too waits until the
back-off or lockout ends, and the refusal costs the exchange no scrypt. A
refused attempt is not a further failure (it proves nothing about the
secret).

Keys are forgotten once quiet for ``lockout_seconds`` after their last wait,
and at most ``MAX_KEYS`` of each kind are kept (the longest quiet dropped
first), so a flood of invented account names or addresses cannot grow the
exchange's memory. The clock is a parameter: the guard does no I/O.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_KEYS = 100_000  # accounts and addresses each: about 10 MB at the most
PEER_ALLOWANCE = 5  # an address's free failures and lockout threshold, as a multiple of an account's


@dataclass(slots=True)
class _Failures:
    count: int  # failed logons in a row
    until: float  # no logon before this moment (the clock's seconds)


@dataclass(frozen=True, slots=True)
class Wait:
    """A logon that must wait: whose count it met, and for how long."""

    key: str  # "account" or "peer"
    seconds: float


class LogonGuard:
    """Counts failed logons per account and per peer; says whether a logon may be checked now."""

    def __init__(self, free_failures: int, backoff: float, lockout_failures: int, lockout_seconds: float) -> None:
        self.free_failures = free_failures
        self.backoff = backoff
        self.lockout_failures = max(lockout_failures, free_failures)
        self.lockout_seconds = lockout_seconds
        self._allowance = {"account": 1, "peer": PEER_ALLOWANCE}
        self._accounts: OrderedDict[str, _Failures] = OrderedDict()
        self._peers: OrderedDict[str, _Failures] = OrderedDict()

    def wait(self, account: str, peer: str, now: float) -> Wait | None:
        """How long a logon for ``account`` from ``peer`` must still wait; None: check it now."""
        longest: Wait | None = None
        for key, table, name in (("account", self._accounts, account), ("peer", self._peers, peer)):
            failures = table.get(name)
            if failures is not None and failures.until > now:
                seconds = failures.until - now
                if longest is None or seconds > longest.seconds:
                    longest = Wait(key, seconds)
        return longest

    def failed(self, account: str, peer: str, now: float) -> list[tuple[str, int, float]]:
        """Count a failed logon; returns the (key, failures, seconds) of each key now made to wait."""
        waits = []
        for key, table, name in (("account", self._accounts, account), ("peer", self._peers, peer)):
            self._forget_quiet(table, now)
            failures = table.pop(name, None)
            if failures is None:
                failures = _Failures(0, now)
            failures.count += 1
            seconds = self._delay(failures.count, self._allowance[key])
            failures.until = now + seconds
            table[name] = failures  # now the most recent
            if seconds > 0:
                waits.append((key, failures.count, seconds))
            while len(table) > MAX_KEYS:
                table.popitem(last=False)
        return waits

    def succeeded(self, account: str) -> None:
        self._accounts.pop(account, None)

    def locked_out(self, key: str, count: int) -> bool:
        """Whether the ``count``-th failure in a row locks a key of this kind out (rather than backs it off)."""
        return count >= self.lockout_failures * self._allowance[key]

    def _delay(self, count: int, allowance: int) -> float:
        """Seconds the ``count``-th failure in a row makes a key wait."""
        if count >= self.lockout_failures * allowance:
            return self.lockout_seconds
        free = self.free_failures * allowance
        if count <= free:
            return 0.0
        return min(self.backoff * 2 ** (count - free - 1), self.lockout_seconds)

    def _forget_quiet(self, table: OrderedDict[str, _Failures], now: float) -> None:
        """Drop keys whose last wait ended at least ``lockout_seconds`` ago (oldest first: the table is in
        order of last failure, and each failure's wait is at most ``lockout_seconds`` long)."""
        while table:
            name, failures = next(iter(table.items()))
            if failures.until + self.lockout_seconds > now:
                break
            del table[name]
