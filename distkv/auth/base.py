"""The classes every auth method provides, client side and server side.

A method module (``distkv.auth.<name>``, or any dotted module for
extensions) has ``load(typ, *, make=False, server=False)`` returning, for
``typ == "user"``, its subclass of one of these:

* client, ``make=False``: :class:`BaseClientUser` — credentials; logs in;
* client, ``make=True``: :class:`BaseClientUserMaker` — a user record to
  create or change;
* server, ``make=False``: :class:`BaseServerUser` — a stored user; checks a
  login;
* server, ``make=True``: :class:`BaseServerUserMaker` — turns an
  ``auth_set`` request into the record to store.

By upstream's convention the subclasses are called ``ClientUser``,
``ClientUserMaker``, ``ServerUser`` and ``ServerUserMaker`` in each method
module.

Client classes validate their parameters with a JSON schema. Keys listed in
``secret_fields`` (passwords) never appear in an error text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import jsonschema

from distkv.exceptions import AuthFailedError, ClientAuthError

if TYPE_CHECKING:
    from distkv.client import Client

    from .server import LoginContext

__all__ = [
    "NAME_SCHEMA",
    "NO_PARAMS",
    "BaseClientUser",
    "BaseClientUserMaker",
    "BaseServerUser",
    "BaseServerUserMaker",
    "NamedUserMaker",
    "run_auth",
    "users_loader",
    "validate_params",
]

NO_PARAMS: dict = {"type": "object", "additionalProperties": False}
"""The schema of a method without parameters."""

NAME_SCHEMA: dict = {"type": "string", "minLength": 1, "pattern": "^[a-zA-Z][a-zA-Z0-9_]*$"}
"""A user name: a letter, then letters, digits and underscores."""


def validate_params(method: str, params: Mapping[str, Any], schema: dict,
                    secret: frozenset[str] = frozenset()) -> None:
    """Check ``params`` against ``schema``; raise :class:`ClientAuthError` naming the problem.

    Values of ``secret`` keys are never quoted.
    """
    err = jsonschema.exceptions.best_match(
        jsonschema.Draft7Validator(schema).iter_errors(dict(params))
    )
    if err is None:
        return
    key = err.path[0] if err.path else None
    if key in secret:
        text = f"{key}: does not satisfy {err.validator!r} {err.validator_value!r}"
    elif key is not None:
        text = f"{key}: {err.message}"
    else:
        text = err.message
    raise ClientAuthError(f"Auth method {method!r}: {text}")


async def run_auth(client: Client, **msg: Any) -> None:
    """Send an ``auth`` request and wait for its (empty) stream to end; errors raise."""
    res = await client._request("auth", iter=True, **msg)
    async for _ in res:
        pass


class BaseClientUser:
    """Credentials for logging in with one method (what ``gen_auth`` returns).

    The client library calls :meth:`auth` after the greeting.
    """

    _auth_method: ClassVar[str] = "?"
    schema: ClassVar[dict] = NO_PARAMS
    secret_fields: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: Mapping[str, Any]):
        validate_params(self._auth_method, params, self.schema, self.secret_fields)
        self.params = dict(params)

    def __repr__(self) -> str:
        return f"<{self._auth_method} login {self.ident!r}>"

    @classmethod
    def build(cls, params: Mapping[str, Any]) -> BaseClientUser:
        return cls(params)

    @property
    def ident(self) -> str:
        return "*"

    async def auth_fields(self, client: Client) -> dict:
        """Method-specific fields of the ``auth`` request."""
        return {"chroot": (), "data": {}}

    async def auth(self, client: Client) -> None:
        """Log in on ``client``'s connection."""
        fields = await self.auth_fields(client)
        await run_auth(client, typ=self._auth_method, ident=self.ident, **fields)


class BaseClientUserMaker:
    """A user record to create or change (``auth user add|mod|get``).

    ``initial`` selects the schema: ``gen_schema`` for a new user,
    ``mod_schema`` for a change. ``chain`` is the record's chain when it was
    read with :meth:`recv` (the write's precondition).
    """

    _auth_method: ClassVar[str] = "?"
    gen_schema: ClassVar[dict] = NO_PARAMS
    mod_schema: ClassVar[dict] = NO_PARAMS
    secret_fields: ClassVar[frozenset[str]] = frozenset()
    length: int = 1024  # Diffie-Hellman length, if the method needs one

    def __init__(self, params: Mapping[str, Any], *, initial: bool = True):
        schema = self.gen_schema if initial else self.mod_schema
        validate_params(self._auth_method, params, schema, self.secret_fields)
        self.params = dict(params)
        self.chain: Any = None

    @classmethod
    def build(cls, params: Mapping[str, Any], initial: bool = True) -> BaseClientUserMaker:
        return cls(params, initial=initial)

    @property
    def ident(self) -> str:
        return "*"

    def export(self) -> dict:
        """The parameters that re-create this user with :meth:`build` (no secrets)."""
        return {}

    @classmethod
    async def recv(
        cls, client: Client, ident: str, *, kind: str = "user"
    ) -> BaseClientUserMaker:
        """Read user ``ident`` from the server (for ``get``/``mod``)."""
        res = await client._request(
            "auth_get", typ=cls._auth_method, kind=kind, ident=ident, nchain=2
        )
        self = cls(cls.params_from_info(ident, res), initial=False)
        self.chain = res.get("chain")
        return self

    @classmethod
    def params_from_info(cls, ident: str, info: Mapping[str, Any]) -> dict:
        """Parameters for :meth:`build` from an ``auth_get`` reply."""
        return {}

    async def send_fields(self, client: Client) -> dict:
        """Method-specific fields of the ``auth_set`` request."""
        return {"data": {}}

    async def send(self, client: Client, *, kind: str = "user") -> Any:
        """Store this user on the server; returns the ``auth_set`` reply."""
        fields = await self.send_fields(client)
        return await client._request(
            "auth_set", typ=self._auth_method, kind=kind, ident=self.ident, chain=self.chain,
            **fields,
        )


class NamedUserMaker(BaseClientUserMaker):
    """A user record identified by its ``name`` parameter."""

    @property
    def ident(self) -> str:
        return self.params["name"]

    def export(self) -> dict:
        return {"name": self.params["name"]}

    @classmethod
    def params_from_info(cls, ident: str, info: Mapping[str, Any]) -> dict:
        return {"name": ident}


def users_loader(method: str, client_user: type, client_maker: type, server_user: type,
                 server_maker: type) -> Callable[..., type]:
    """The ``load(typ, make=, server=)`` of a method module that only has users."""

    def load(typ: str, *, make: bool = False, server: bool = False) -> type:
        if typ != "user":
            raise NotImplementedError(f"The {method} method only has users")
        if server:
            return server_maker if make else server_user
        return client_maker if make else client_user

    return load


class BaseServerUser:
    """A stored user record, able to check a login request.

    Users of the built-in methods are "super root": unless their ``acl``
    restricts them, they may manage users and switch methods (07 §5).
    """

    _auth_method: ClassVar[str] = "?"
    schema: ClassVar[dict] = {"type": "object"}  # the login request's ``data``
    can_auth_read: ClassVar[bool] = True
    can_auth_write: ClassVar[bool] = True

    def __init__(self, ident: str, record: Any):
        self.ident = ident
        self.record = record if isinstance(record, dict) else {}

    def __repr__(self) -> str:
        return f"<{self._auth_method} user {self.ident!r}>"

    async def check(self, msg: Mapping[str, Any], ctx: LoginContext) -> None:
        """Raise :class:`AuthFailedError` unless ``msg`` (the ``auth`` request)
        authenticates this user."""
        data = msg.get("data")
        if data is None:
            data = {}
        if not jsonschema.Draft7Validator(self.schema).is_valid(data):
            raise AuthFailedError("Unexpected login data", self.ident)

    @classmethod
    async def unknown_user(cls, ident: str, msg: Mapping[str, Any], ctx: LoginContext) -> None:
        """Refuse a login for a user without a record.

        Methods with secrets answer exactly as for a wrong secret, and take
        as long, so that logins cannot probe for user names.
        """
        raise AuthFailedError("Unknown user", ident)

    def info(self) -> dict:
        """Public information about this user (never anything usable for logging in)."""
        return {}


class BaseServerUserMaker:
    """Builds the record to store from an ``auth_set`` request and the old record."""

    _auth_method: ClassVar[str] = "?"
    schema: ClassVar[dict] = NO_PARAMS  # the request's ``data``

    def __init__(self, ident: str, record: dict):
        self.ident = ident
        self.record = record

    @classmethod
    async def recv(
        cls, msg: Mapping[str, Any], old: Any, ctx: LoginContext
    ) -> BaseServerUserMaker:
        """Build from the request ``msg`` and the old record ``old`` (``NotGiven`` if new)."""
        data = msg.get("data")
        if data is None:
            data = {}
        if not jsonschema.Draft7Validator(cls.schema).is_valid(data):
            raise ClientAuthError(f"Auth method {cls._auth_method!r}: unexpected data {data!r}")
        ident = msg.get("ident")
        if not isinstance(ident, str) or not ident:
            raise ClientAuthError(f"Auth method {cls._auth_method!r}: the request needs an 'ident'")
        return cls(ident, {})

    def save(self) -> dict:
        """The record to store."""
        return dict(self.record)
