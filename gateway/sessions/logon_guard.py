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

Guesses sent in parallel are counted before they are checked: once a key
is past its free failures, only one logon for it is checked at a time (the
others are refused with a short ``retry_after``), so a burst of connections
gets no more secrets checked than the same guesses one after the other.

An account's lockout would let anyone lock its owner out with a few wrong
secrets. So an address from which the account logged on successfully in the
last ``TRUST_SECONDS``, and that has not failed for it since, is not held
back by the account's count (only by its own, the address's): the owner's
usual machine still logs on while a guesser elsewhere is locked out, and a
guesser at the owner's address loses that trust with its first failure.

Keys are forgotten once quiet for ``FORGET_AFTER`` lockouts after their last
wait ended (waiting to be forgotten is slower than waiting as told), at most
``MAX_KEYS`` of each kind are kept (the longest quiet dropped first), and
names that are no account are counted in a table of their own, so a flood of
invented names or addresses neither grows the exchange's memory nor pushes a
real account's count out. The clock is a parameter: the guard does no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_KEYS = 100_000  # accounts, unknown names, addresses and trusted pairs each: about 10 MB each at the most
PEER_ALLOWANCE = 5  # an address's free failures and lockout threshold, as a multiple of an account's
FORGET_AFTER = 24  # a key is forgotten once quiet for this many lockouts after its last wait ended
TRUST_SECONDS = 86_400.0  # an address the account logged on from this recently is not held back by its count
IN_FLIGHT_RETRY = 0.1  # seconds a logon waits while another check of the same key is under way (past the free ones)


@dataclass(slots=True)
class _Failures:
    count: int = 0  # failed logons in a row
    until: float = 0.0  # no logon before this moment (the clock's seconds)
    in_flight: int = 0  # logons admitted and being checked


@dataclass(frozen=True, slots=True)
class Wait:
    """A logon that must wait: whose count it met, and for how long."""

    key: str  # "account" or "peer"
    seconds: float


class LogonGuard:
    """Counts failed logons per account and per peer; says whether a logon may be checked now.

    ``admit`` a logon before checking its secret; then exactly one of
    ``failed``, ``succeeded`` or ``abandoned`` with the same arguments.
    """

    def __init__(self, free_failures: int, backoff: float, lockout_failures: int, lockout_seconds: float) -> None:
        self.free_failures = free_failures
        self.backoff = backoff
        self.lockout_failures = max(lockout_failures, free_failures + 1)
        self.lockout_seconds = lockout_seconds
        self._allowance = {"account": 1, "peer": PEER_ALLOWANCE}
        self._accounts: OrderedDict[str, _Failures] = OrderedDict()
        self._unknown: OrderedDict[str, _Failures] = OrderedDict()  # names that are no account
        self._peers: OrderedDict[str, _Failures] = OrderedDict()
        self._trusted: OrderedDict[tuple[str, str], float] = OrderedDict()  # (account, peer) -> last logon

    def _keys(self, account: str, known: bool, peer: str) -> tuple:
        return (("account", self._accounts if known else self._unknown, account), ("peer", self._peers, peer))

    def admit(self, account: str, known: bool, peer: str, now: float) -> Wait | None:
        """Whether a logon for ``account`` (an account of the exchange's, or not: ``known``) from ``peer`` may
        have its secret checked now: None, and it is counted as in flight; else how long it must wait."""
        trusted = self._trusted.get((account, peer))
        trusted = trusted is not None and now - trusted < TRUST_SECONDS
        longest: Wait | None = None
        for key, table, name in self._keys(account, known, peer):
            if key == "account" and trusted:
                continue
            failures = table.get(name)
            if failures is None:
                continue
            seconds = failures.until - now
            if failures.in_flight and failures.count + failures.in_flight >= self.free_failures * self._allowance[key]:
                seconds = max(seconds, IN_FLIGHT_RETRY)  # past the free failures: one check at a time
            if seconds > 0 and (longest is None or seconds > longest.seconds):
                longest = Wait(key, seconds)
        if longest is None:
            for _, table, name in self._keys(account, known, peer):
                failures = table.get(name)
                if failures is None:
                    failures = table[name] = _Failures(until=now)
                    self._bound(table)
                failures.in_flight += 1
        return longest

    def failed(self, account: str, known: bool, peer: str, now: float) -> list[tuple[str, int, float]]:
        """Count a failed logon; returns the (key, failures, seconds) of each key now made to wait."""
        waits = []
        self._trusted.pop((account, peer), None)  # a failure from it: no longer trusted for the account
        for key, table, name in self._keys(account, known, peer):
            self._forget_quiet(table, now)
            failures = table.pop(name, None) or _Failures(in_flight=1)
            failures.in_flight = max(0, failures.in_flight - 1)
            failures.count += 1
            seconds = self._delay(failures.count, self._allowance[key])
            failures.until = now + seconds
            table[name] = failures  # now the most recent
            if seconds > 0:
                waits.append((key, failures.count, seconds))
            self._bound(table)
        return waits

    def succeeded(self, account: str, known: bool, peer: str, now: float) -> None:
        """The secret was right: the account's count is cleared and the address trusted for it; the address's
        own count stays (it decays with time only)."""
        self._accounts.pop(account, None)
        self._trusted.pop((account, peer), None)
        self._trusted[(account, peer)] = now
        self._bound(self._trusted)
        self._release(self._peers, peer)

    def abandoned(self, account: str, known: bool, peer: str) -> None:
        """The check did not finish (the exchange stopped, say): no longer in flight, nothing counted."""
        for _, table, name in self._keys(account, known, peer):
            self._release(table, name)

    def locked_out(self, key: str, count: int) -> bool:
        """Whether the ``count``-th failure in a row locks a key of this kind out (rather than backs it off)."""
        return count >= self.lockout_failures * self._allowance[key]

    @staticmethod
    def _release(table: OrderedDict[str, _Failures], name: str) -> None:
        failures = table.get(name)
        if failures is not None:
            failures.in_flight = max(0, failures.in_flight - 1)

    @staticmethod
    def _bound(table: OrderedDict) -> None:
        while len(table) > MAX_KEYS:
            table.popitem(last=False)

    def _delay(self, count: int, allowance: int) -> float:
        """Seconds the ``count``-th failure in a row makes a key wait."""
        if count >= self.lockout_failures * allowance:
            return self.lockout_seconds
        free = self.free_failures * allowance
        if count <= free:
            return 0.0
        return min(self.backoff * 2 ** (count - free - 1), self.lockout_seconds)

    def _forget_quiet(self, table: OrderedDict[str, _Failures], now: float) -> None:
        """Drop keys quiet for ``FORGET_AFTER`` lockouts after their last wait ended, oldest first (the table is
        in order of last failure, and each failure's wait is at most ``lockout_seconds`` long); a key with a
        check in flight stays."""
        horizon = FORGET_AFTER * self.lockout_seconds
        while table:
            name, failures = next(iter(table.items()))
            if failures.until + horizon > now or failures.in_flight:
                break
            del table[name]
