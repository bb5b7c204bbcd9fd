"""The ``_test`` auth method: users that only have a name (for experiments and tests).

Creating a user is a client stream (06 §6.1), kept for upstream clients:
the server asks ``{step: GiveName}``, the client answers ``{step: HasName,
name, chain}``, the server replies with the write's result. A single
``auth_set`` request naming the user in ``ident`` works too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from distkv.exceptions import ClientAuthError

from .base import (
    NAME_SCHEMA,
    BaseClientUser,
    BaseServerUser,
    BaseServerUserMaker,
    NamedUserMaker,
    users_loader,
)

if TYPE_CHECKING:
    from distkv.client import Client

    from .server import LoginContext

__all__ = ["ClientUser", "ClientUserMaker", "ServerUser", "ServerUserMaker", "load"]

_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"name": NAME_SCHEMA},
    "required": ["name"],
}


class ClientUser(BaseClientUser):
    """Log in as ``name``."""

    _auth_method = "_test"
    schema = _SCHEMA

    @property
    def ident(self) -> str:
        return self.params["name"]


class ClientUserMaker(NamedUserMaker):
    """A ``_test`` user: just a ``name``."""

    _auth_method = "_test"
    gen_schema = _SCHEMA
    mod_schema = _SCHEMA

    async def send(self, client: Client, *, kind: str = "user") -> Any:
        async with client._stream(
            "auth_set", stream=True, typ=self._auth_method, kind=kind, ident=self.ident
        ) as req:
            msg = await req.recv()
            if msg.get("step") != "GiveName":
                raise ClientAuthError(f"Unexpected reply to auth_set: {msg!r}")
            await req.send(step="HasName", name=self.ident, chain=self.chain)
            return await req.recv()


class ServerUser(BaseServerUser):
    _auth_method = "_test"

    def info(self) -> dict:
        return {"name": self.ident}


class ServerUserMaker(BaseServerUserMaker):
    _auth_method = "_test"
    schema = {"type": "object"}

    @classmethod
    async def recv(
        cls, msg: Mapping[str, Any], old: Any, ctx: LoginContext
    ) -> BaseServerUserMaker:
        ident = msg.get("ident")
        if ctx.stream is not None:
            await ctx.stream.send({"step": "GiveName"})
            reply = await ctx.stream.recv()
            if reply.get("step") != "HasName":
                raise ClientAuthError(f"Expected the step 'HasName', got {reply.get('step')!r}")
            ident = reply.get("name")
            if "chain" in reply:
                ctx.chain = reply["chain"]
        if not isinstance(ident, str) or not ident:
            raise ClientAuthError("A _test user needs a name")
        return cls(ident, {})


load = users_loader("_test", ClientUser, ClientUserMaker, ServerUser, ServerUserMaker)
