"""Diffie-Hellman key agreement for the ``password`` auth method (06 §3).

Both sides use an RFC 3526 MODP group with generator 2: group 14 (2048 bits)
for a requested ``length`` of 32 or more — always, normally — and group 5
(1536 bits) below that (the CLI's ``-D`` debug mode asks for 16). The private
exponent is ``max(200, length) // 8 + 8`` random bytes. Public keys travel as
minimal big-endian byte strings. The shared key is the first
:data:`KEY_SIZE` bytes of the minimal big-endian form of the raw shared
secret, without hashing: that is what upstream clients and servers compute, so
we must too (15 #30 lists the weaknesses).

Everything here is pure and synchronous; a modular exponentiation takes a few
milliseconds, so async callers run :meth:`DiffieHellman.shared_key` in a
worker thread.
"""

from __future__ import annotations

import secrets

__all__ = [
    "DEFAULT_LENGTH",
    "GENERATOR",
    "KEY_SIZE",
    "MODP_PRIMES",
    "DiffieHellman",
    "bytes_to_int",
    "group_for_length",
    "int_to_bytes",
]

KEY_SIZE = 32
DEFAULT_LENGTH = 1024
GENERATOR = 2


def _hex(*lines: str) -> int:
    return int("".join(lines), 16)


# RFC 3526 section 2 (1536-bit, group 5) and section 3 (2048-bit, group 14):
# p = 2^n - 2^(n-64) - 1 + 2^64 * (floor(2^(n-130) * pi) + offset).
MODP_PRIMES: dict[int, int] = {
    5: _hex(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
        "9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF",
    ),
    14: _hex(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
        "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    ),
}


def group_for_length(length: int) -> int:
    """The MODP group a requested ``length`` selects (5 below 32, else 14)."""
    return 5 if length < 32 else 14


def int_to_bytes(n: int) -> bytes:
    """The minimal big-endian bytes of a non-negative integer (``0`` -> ``b""``)."""
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def bytes_to_int(data: bytes) -> int:
    """A big-endian unsigned integer."""
    return int.from_bytes(data, "big")


class DiffieHellman:
    """One side of a key exchange.

    ``length`` is the protocol's ``length`` field; ``private`` fixes the
    secret exponent (known-answer tests only).
    """

    __slots__ = ("length", "group", "prime", "_private", "public")

    def __init__(self, length: int = DEFAULT_LENGTH, *, private: int | None = None):
        if not isinstance(length, int) or isinstance(length, bool) or length <= 0:
            raise ValueError(f"The DH length must be a positive integer, not {length!r}")
        self.length = length
        self.group = group_for_length(length)
        self.prime = MODP_PRIMES[self.group]
        if private is None:
            private = bytes_to_int(secrets.token_bytes(max(200, length) // 8 + 8))
        self._private = private
        #: Our public key, ``2^x mod p``.
        self.public = pow(GENERATOR, private, self.prime)

    def __repr__(self) -> str:
        return f"<DiffieHellman group {self.group}>"  # never show the secret

    @property
    def public_bytes(self) -> bytes:
        """Our public key as sent on the wire."""
        return int_to_bytes(self.public)

    def check_public(self, peer: int) -> None:
        """Refuse a peer key outside ``(2, p-1)`` or outside the prime-order subgroup."""
        p = self.prime
        if not 2 < peer < p - 1 or pow(peer, (p - 1) // 2, p) != 1:
            raise ValueError("The peer's Diffie-Hellman public key is not valid")

    def shared_key(self, peer: bytes | int) -> bytes:
        """The :data:`KEY_SIZE`-byte key shared with the owner of public key ``peer``."""
        y = bytes_to_int(peer) if isinstance(peer, (bytes, bytearray)) else peer
        if not isinstance(y, int):
            raise ValueError("The peer's Diffie-Hellman public key must be bytes")
        self.check_public(y)
        secret = int_to_bytes(pow(y, self._private, self.prime))
        return secret[:KEY_SIZE]
