"""Operator passwords for the ops console: argon2id hashes made and checked here, the only
module that imports argon2. Config holds hashes only (`hub operator hash-password` makes one);
nothing here logs a password or a hash."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# The encoded form argon2-cffi writes: $argon2id$v=19$m=…,t=…,p=…$salt$hash. Settings check a
# configured hash against this without importing argon2.
ARGON2_HASH = r"^\$argon2(id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$"
_HASH_RE = re.compile(ARGON2_HASH)


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("an empty password cannot be hashed")
    return PasswordHasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True only for the right password; a malformed hash is a wrong password, never a crash."""
    if not password or not _HASH_RE.match(password_hash):
        return False
    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Checked against when the operator name is unknown, so a wrong name takes as long as a wrong
# password (no user enumeration by timing).
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$"
    "Xm1iZ6m7cQ3eLr0C9qfGvVb6XyQbm3b0O0J8hD8a0rE"
)


def burn_time(password: str) -> None:
    verify_password(_DUMMY_HASH, password or "x")
