"""Client side of logging in: :func:`login` and :func:`dh_secret`.

The client library calls ``await auth.auth(client)`` on the object that
:func:`distkv.auth.gen_auth` built from ``connect.auth``; :func:`login` does
the same for an auth string or object. :func:`dh_secret` runs the
``diffie_hellman`` exchange once per connection and caches the key.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import anyio

from .dh import DEFAULT_LENGTH, DiffieHellman

if TYPE_CHECKING:
    from distkv.client import Client

__all__ = ["dh_secret", "login"]

# client -> shared key; a server accepts only one exchange per connection
_dh_keys: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


async def dh_secret(client: Client, length: int = DEFAULT_LENGTH) -> bytes:
    """The key shared with the server (``diffie_hellman`` on first use)."""
    key = _dh_keys.get(client)
    if key is None:
        dh = await anyio.to_thread.run_sync(DiffieHellman, length)
        res = await client._request("diffie_hellman", pubkey=dh.public_bytes, length=length)
        key = await anyio.to_thread.run_sync(dh.shared_key, res["pubkey"])
        _dh_keys[client] = key
    return key


async def login(client: Client, auth: Any) -> None:
    """Log in on ``client`` with an auth string (06 §7) or an object from ``gen_auth``."""
    from . import gen_auth

    await gen_auth(auth).auth(client)
