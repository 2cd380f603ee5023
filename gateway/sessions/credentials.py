"""Logon secrets, kept only as salted scrypt hashes.

How this works: a secret is hashed with ``hashlib.scrypt`` (memory-hard, in
the standard library) and a random salt, and stored as one string,
``scrypt$N$r$p$salt_hex$hash_hex``, so the cost parameters travel with the
hash and can be raised later without breaking stored ones. Verification
recomputes the hash and compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os

SCHEME = "scrypt"
COST_N = 2**14  # CPU/memory cost: about 16 MiB and some tens of milliseconds per check
BLOCK_R = 8
PARALLEL_P = 1
KEY_BYTES = 32
SALT_BYTES = 16


DEMO_SECRET = "carbonx-demo"  # the logon secret of every demo account in config/accounts.toml (hashed there)


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """The stored form of a secret; a fresh random salt unless one is given."""
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    key = hashlib.scrypt(secret.encode(), salt=salt, n=COST_N, r=BLOCK_R, p=PARALLEL_P, dklen=KEY_BYTES)
    return f"{SCHEME}${COST_N}${BLOCK_R}${PARALLEL_P}${salt.hex()}${key.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    """True if ``secret`` hashes to ``stored``; False for a wrong secret or a malformed stored hash."""
    try:
        scheme, n, r, p, salt_hex, key_hex = stored.split("$")
        if scheme != SCHEME:
            return False
        expected = bytes.fromhex(key_hex)
        key = hashlib.scrypt(
            secret.encode(), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return hmac.compare_digest(key, expected)


def is_secret_hash(text: str) -> bool:
    """True if ``text`` has the shape of a stored hash (used to refuse clear-text secrets in config)."""
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return False
    try:
        int(parts[1]), int(parts[2]), int(parts[3]), bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
    except ValueError:
        return False
    return True
