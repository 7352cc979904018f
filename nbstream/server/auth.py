"""HTTP Basic authentication against a file of users and salted password hashes.

The file (``nbstream serve --auth FILE``) has one user per line, ``name:hash``; blank lines and
lines starting with ``#`` are skipped. A hash is ``scrypt$n$r$p$salt$key`` (hex salt and key, from
:func:`hashlib.scrypt`); ``nbstream serve --hash-password NAME`` prints such a line for a password
read from the terminal or standard input.

Checking a password costs scrypt's deliberate tens of milliseconds, so a request's
``Authorization`` header that was accepted once is remembered (in memory, as its SHA-256 digest)
and later requests with the same header pass at once; a header that failed is checked again every
time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
from dataclasses import dataclass
from pathlib import Path

#: scrypt's cost parameters for new hashes (n=2**14, r=8: 16 MiB and tens of ms per check).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
KEY_BYTES = 32
REMEMBERED = 10_000  # accepted headers kept


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A salted scrypt hash of ``password``, as the users file holds it."""
    salt = salt if salt is not None else os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=KEY_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${key.hex()}"


def verify(password: str, stored: str) -> bool:
    """Whether ``password`` matches the hash ``stored`` (False for a malformed hash)."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = bytes.fromhex(key)
        actual = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


class AuthFileError(ValueError):
    """The users file cannot be read or has a malformed line."""


@dataclass
class Users:
    """The users allowed in, by name, with their password hashes."""

    hashes: dict[str, str]

    def __post_init__(self) -> None:
        self._accepted: dict[bytes, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path) -> Users:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise AuthFileError(f"cannot read the users file {path}: {error}") from None
        hashes = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, stored = line.partition(":")
            if not sep or not name or not stored.startswith("scrypt$") or stored.count("$") != 5:
                raise AuthFileError(f"{path}, line {number}: expected name:scrypt$n$r$p$salt$key "
                                    "(make one with: nbstream serve --hash-password NAME)")
            hashes[name] = stored
        if not hashes:
            raise AuthFileError(f"{path} names no user")
        return cls(hashes)

    def check(self, authorization: str | None) -> str | None:
        """The user a request's ``Authorization`` header names, if its password is right."""
        if not authorization:
            return None
        digest = hashlib.sha256(authorization.encode("latin-1", "replace")).digest()
        with self._lock:
            known = self._accepted.get(digest)
        if known is not None:
            return known
        user = self._verify(authorization)
        if user is not None:
            with self._lock:
                if len(self._accepted) >= REMEMBERED:
                    self._accepted.clear()
                self._accepted[digest] = user
        return user

    def _verify(self, authorization: str) -> str | None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, password = decoded.partition(":")
        stored = self.hashes.get(name)
        if not sep or stored is None:
            return None
        return name if verify(password, stored) else None
