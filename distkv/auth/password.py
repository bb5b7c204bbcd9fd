"""The ``password`` auth method: user name and password.

On the wire (06 §4, unchanged for interoperability): after a Diffie-Hellman
exchange the client sends ``SecretBox(dh_key).encrypt(sha256(password))``.

On the server the record stores ``{"password": <argon2id hash of that
SHA-256 digest>}`` (salted and slow, PyNaCl's ``pwhash.argon2id``) instead
of upstream's raw digest. Records holding a raw 32-byte digest (written by
upstream servers) are still accepted for logging in. Hashing and verifying
run in worker threads (see :class:`~distkv.auth.server.LoginContext`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret

from distkv.exceptions import AuthFailedError, ClientAuthError
from distkv.util import NotGiven

from .base import (
    NAME_SCHEMA,
    BaseClientUser,
    BaseServerUser,
    BaseServerUserMaker,
    NamedUserMaker,
    users_loader,
)
from .client import dh_secret

if TYPE_CHECKING:
    from distkv.client import Client

    from .server import LoginContext

__all__ = [
    "ClientUser",
    "ClientUserMaker",
    "PasswordHasher",
    "ServerUser",
    "ServerUserMaker",
    "load",
    "pack_password",
    "unpack_password",
]

MIN_LENGTH = 5
_PASSWORD = {"type": "string", "minLength": MIN_LENGTH}
FAILED = "Password hashes do not match"


def pack_password(key: bytes, password: str) -> bytes:
    """Client side: the 72-byte box holding the SHA-256 of ``password``."""
    digest = hashlib.sha256(password.encode("utf-8")).digest()
    return bytes(nacl.secret.SecretBox(key).encrypt(digest))


def unpack_password(key: bytes | None, blob: Any) -> bytes:
    """Server side: the digest inside ``blob``; :class:`ValueError` if it can't be opened."""
    if key is None:
        raise ValueError("The client has not executed the Diffie-Hellman key exchange")
    if not isinstance(blob, (bytes, bytearray)):
        raise ValueError("The password must be sent as bytes")
    try:
        return nacl.secret.SecretBox(key).decrypt(bytes(blob))
    except nacl.exceptions.CryptoError:
        raise ValueError("The password box cannot be opened") from None


class PasswordHasher:
    """Salted slow hashes of password digests (argon2id).

    The defaults (2 passes over 19 MiB) follow current OWASP advice and take
    some tens of milliseconds; tests use the minimum.
    """

    __slots__ = ("opslimit", "memlimit")

    def __init__(self, opslimit: int = 2, memlimit: int = 19 * 1024 * 1024):
        self.opslimit = opslimit
        self.memlimit = memlimit

    def __repr__(self) -> str:
        return f"<PasswordHasher ops={self.opslimit} mem={self.memlimit}>"

    def hash(self, digest: bytes) -> bytes:
        return nacl.pwhash.argon2id.str(digest, opslimit=self.opslimit, memlimit=self.memlimit)

    def verify(self, stored: Any, digest: bytes) -> bool:
        """Does ``digest`` match the stored hash (or legacy raw digest)?"""
        if not isinstance(stored, (bytes, bytearray)):
            return False
        stored = bytes(stored)
        if len(stored) == len(digest) and not stored.startswith(b"$"):
            return hmac.compare_digest(stored, digest)  # an upstream record
        try:
            return nacl.pwhash.verify(stored, digest)
        except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError):
            return False


# --- client side ---------------------------------------------------------------------


class ClientUser(BaseClientUser):
    """Log in with ``name`` and ``password``."""

    _auth_method = "password"
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"name": NAME_SCHEMA, "password": _PASSWORD},
        "required": ["name", "password"],
    }
    secret_fields = frozenset({"password"})
    length = 1024

    @property
    def ident(self) -> str:
        return self.params["name"]

    async def auth_fields(self, client: Client) -> dict:
        key = await dh_secret(client, self.length)
        return {"password": pack_password(key, self.params["password"])}


class ClientUserMaker(NamedUserMaker):
    """A password user: ``name`` and (required for new users) ``password``."""

    _auth_method = "password"
    gen_schema = ClientUser.schema
    mod_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"name": NAME_SCHEMA, "password": _PASSWORD},
        "required": ["name"],
    }
    secret_fields = frozenset({"password"})

    async def send_fields(self, client: Client) -> dict:
        pw = self.params.get("password")
        if pw is None:
            return {}
        key = await dh_secret(client, self.length)
        return {"password": pack_password(key, pw)}


# --- server side ---------------------------------------------------------------------


class ServerUser(BaseServerUser):
    _auth_method = "password"

    async def check(self, msg: Mapping[str, Any], ctx: LoginContext) -> None:
        await super().check(msg, ctx)
        try:
            digest = unpack_password(ctx.dh_key, msg.get("password"))
        except ValueError:
            raise AuthFailedError(FAILED, self.ident) from None
        ok = await ctx.run_crypto(ctx.hasher.verify, self.record.get("password"), digest)
        if not ok:
            raise AuthFailedError(FAILED, self.ident)

    @classmethod
    async def unknown_user(cls, ident: str, msg: Mapping[str, Any], ctx: LoginContext) -> None:
        # as long as checking a wrong password, and the same answer
        await ctx.run_crypto(ctx.hasher.hash, b"\0" * 32)
        raise AuthFailedError(FAILED, ident)

    def info(self) -> dict:
        return {"name": self.ident}


class ServerUserMaker(BaseServerUserMaker):
    _auth_method = "password"

    @classmethod
    async def recv(
        cls, msg: Mapping[str, Any], old: Any, ctx: LoginContext
    ) -> BaseServerUserMaker:
        ident = msg.get("ident")
        if not isinstance(ident, str) or not ident:
            raise ClientAuthError("A password user needs an 'ident'")
        record = dict(old) if isinstance(old, dict) else {}
        blob = msg.get("password")
        if blob is not None:
            try:
                digest = unpack_password(ctx.dh_key, blob)
            except ValueError as exc:
                raise ClientAuthError(str(exc)) from None
            record["password"] = await ctx.run_crypto(ctx.hasher.hash, digest)
        elif old is NotGiven or "password" not in record:
            raise ClientAuthError(f"The new user {ident!r} needs a password")
        return cls(ident, record)


load = users_loader("password", ClientUser, ClientUserMaker, ServerUser, ServerUserMaker)
