"""Diffie-Hellman for password logins (06 §3): groups, keys, validation, interop.

The primes are recomputed here from RFC 3526's defining formula (with pi
computed by Machin's formula), and shared keys from the exponent product, so
the module is checked against an independent computation; the last test
checks the same numbers with upstream's own DH library.
"""

from __future__ import annotations

import json

import pytest
from upstream import RefVenv, ref_python, upstream_venv_fixture  # noqa: F401 - fixture

from distkv.auth import dh as dh_mod
from distkv.auth.dh import (
    GENERATOR,
    KEY_SIZE,
    MODP_PRIMES,
    DiffieHellman,
    bytes_to_int,
    group_for_length,
    int_to_bytes,
)


def pi_times_2_to(bits: int) -> int:
    """floor(pi * 2**bits), by Machin's formula in fixed point."""
    guard = 64
    one = 1 << (bits + guard)

    def arctan_inv(x: int) -> int:
        total = term = one // x
        n, sign = 1, -1
        while term:
            term //= x * x
            total += sign * (term // (2 * n + 1))
            sign, n = -sign, n + 1
        return total

    return (16 * arctan_inv(5) - 4 * arctan_inv(239)) >> guard


def rfc3526_prime(bits: int, offset: int) -> int:
    return 2**bits - 2 ** (bits - 64) - 1 + 2**64 * (pi_times_2_to(bits - 130) + offset)


def is_probable_prime(n: int) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def test_primes_are_the_rfc3526_groups():
    assert MODP_PRIMES[5] == rfc3526_prime(1536, 741804)
    assert MODP_PRIMES[14] == rfc3526_prime(2048, 124476)
    for p in MODP_PRIMES.values():
        assert is_probable_prime(p) and is_probable_prime((p - 1) // 2)  # safe primes
    assert GENERATOR == 2


@pytest.mark.parametrize(
    ("length", "group", "bits"), [(16, 5, 1536), (31, 5, 1536), (32, 14, 2048), (1024, 14, 2048)]
)
def test_length_selects_the_group(length: int, group: int, bits: int):
    assert group_for_length(length) == group
    k = DiffieHellman(length)
    assert (k.group, k.prime.bit_length()) == (group, bits)
    assert bytes_to_int(k.public_bytes) == k.public < k.prime
    assert len(k.public_bytes) <= bits // 8


@pytest.mark.parametrize(("length", "nbytes"), [(1024, 136), (16, 33), (200, 33), (2048, 264)])
def test_private_key_size(monkeypatch: pytest.MonkeyPatch, length: int, nbytes: int):
    asked = []

    def token_bytes(n: int) -> bytes:
        asked.append(n)
        return b"\x5a" * n

    monkeypatch.setattr(dh_mod.secrets, "token_bytes", token_bytes)
    k = DiffieHellman(length)
    assert asked == [nbytes]
    assert k.public == pow(2, bytes_to_int(b"\x5a" * nbytes), k.prime)


def test_known_answer_shared_key():
    a = 0x1D2C3B4A59687786958473625140FEDCBA98765432100123456789ABCDEF
    b = 0x7766554433221100FFEEDDCCBBAA99887766554433221100AABBCCDDEEFF
    p = MODP_PRIMES[14]
    alice, bob = DiffieHellman(1024, private=a), DiffieHellman(1024, private=b)
    assert alice.public == pow(2, a, p)
    assert alice.public_bytes == alice.public.to_bytes(256, "big").lstrip(b"\0")
    key = alice.shared_key(bob.public_bytes)
    assert key == bob.shared_key(alice.public_bytes)
    assert key == int_to_bytes(pow(2, a * b, p))[:KEY_SIZE]
    assert len(key) == KEY_SIZE
    assert "private" not in repr(alice) and hex(a)[2:] not in repr(alice)


def test_key_is_a_prefix_of_the_minimal_secret():
    p = MODP_PRIMES[14]
    one = DiffieHellman(1024, private=1)
    # secret = peer^1 = 2^2000 (a square, so a valid key): 251 bytes, no padding
    peer = pow(2, 2000, p)
    assert one.shared_key(int_to_bytes(peer)) == b"\x01" + b"\0" * 31
    assert one.shared_key(4) == b"\x04"


@pytest.mark.parametrize("bad", ["zero", "one", "two", "p-1", "p", "non-residue"])
def test_bad_peer_keys_are_refused(bad: str):
    k = DiffieHellman(1024)
    p = k.prime
    peer = {"zero": 0, "one": 1, "two": 2, "p-1": p - 1, "p": p, "non-residue": p - 4}[bad]
    with pytest.raises(ValueError, match="public key is not valid"):
        k.shared_key(int_to_bytes(peer))


def test_int_bytes_helpers():
    assert int_to_bytes(0) == b""
    assert int_to_bytes(255) == b"\xff"
    assert int_to_bytes(256) == b"\x01\x00"
    assert bytes_to_int(b"\x00\x01\x00") == 256
    with pytest.raises(ValueError, match="positive integer"):
        DiffieHellman(0)


UPSTREAM_DH = """
import json, sys
from moat.lib.diffiehellman import DiffieHellman
from moat.util import num2byte, byte2num
args = json.loads(sys.argv[1])
out = []
for length, priv, peer in args:
    k = DiffieHellman(key_length=length, group=(5 if length < 32 else 14))
    k._DiffieHellman__private_key = priv
    k.generate_public_key()
    k.generate_shared_secret(byte2num(bytes.fromhex(peer)))
    out.append([num2byte(k.public_key).hex(), num2byte(k.shared_secret)[0:32].hex()])
print(json.dumps(out))
"""


@pytest.mark.upstream
def test_matches_upstream_dh(upstream_venv: RefVenv):
    cases = []
    ours = []
    for length in (1024, 16):
        a, b = DiffieHellman(length), DiffieHellman(length)
        cases.append([length, a._private, b.public_bytes.hex()])
        ours.append([a.public_bytes.hex(), a.shared_key(b.public_bytes).hex()])
        assert a.shared_key(b.public_bytes) == b.shared_key(a.public_bytes)
    res = ref_python(upstream_venv, UPSTREAM_DH, json.dumps(cases))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == ours
