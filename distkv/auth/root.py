"""The ``root`` auth method: one user, ``*``, without credentials.

Logging in needs nothing but the record ``:n.auth.root.user.*``; it is meant
for single-user setups that still want auth switched on (e.g. to keep
clients without configuration out).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .base import (
    NO_PARAMS,
    BaseClientUser,
    BaseClientUserMaker,
    BaseServerUser,
    BaseServerUserMaker,
    users_loader,
)

if TYPE_CHECKING:
    from .server import LoginContext

__all__ = ["ClientUser", "ClientUserMaker", "ServerUser", "ServerUserMaker", "load"]


class ClientUser(BaseClientUser):
    _auth_method = "root"
    schema = NO_PARAMS


class ClientUserMaker(BaseClientUserMaker):
    _auth_method = "root"


class ServerUser(BaseServerUser):
    _auth_method = "root"
    schema = NO_PARAMS


class ServerUserMaker(BaseServerUserMaker):
    _auth_method = "root"

    @classmethod
    async def recv(
        cls, msg: Mapping[str, Any], old: Any, ctx: LoginContext
    ) -> BaseServerUserMaker:
        return await super().recv({**msg, "ident": "*"}, old, ctx)


load = users_loader("root", ClientUser, ClientUserMaker, ServerUser, ServerUserMaker)
