"""The exceptions of distkv.

::

    DistKVError (RuntimeError)
     ├── ServerError            an error reported by the server (text = its repr)
     │    ├── ServerClosedError       the connection went away
     │    ├── ServerConnectionError   could not connect
     │    └── ACLError               access refused by an ACL
     ├── ClientError            a request was not acceptable
     │    ├── ClientChainError        a chain/"must be new" precondition failed (etype "chain")
     │    ├── ClientConnectionError   protocol misuse on a connection (etype "conn")
     │    ├── CancelledError          a request was stopped
     │    └── ClientAuthError
     │         ├── ClientAuthRequiredError   you need to log in
     │         └── ClientAuthMethodError     the server does not offer that method
     └── DistKVauthError
          ├── NoAuthError         not logged in
          ├── NoAuthModuleError   unknown auth method
          └── AuthFailedError     wrong credentials

Errors cross the wire as ``repr(exc)`` of the server-side exception (upstream's
format). The client maps an ``etype`` of ``"chain"`` / ``"conn"`` back to the
matching class; everything else becomes :class:`ServerError`. Our own client
additionally recognises ``ClientChainError(...)`` texts in single replies and
raises :class:`ClientChainError` for them, so stale chains are easy to catch.
"""

from __future__ import annotations

__all__ = [
    "DistKVError",
    "ServerError",
    "ServerClosedError",
    "ServerConnectionError",
    "ACLError",
    "ClientError",
    "ClientChainError",
    "ClientConnectionError",
    "CancelledError",
    "ClientAuthError",
    "ClientAuthRequiredError",
    "ClientAuthMethodError",
    "DistKVauthError",
    "NoAuthError",
    "NoAuthModuleError",
    "AuthFailedError",
]


class DistKVError(RuntimeError):
    """Base class of all distkv errors."""


class ServerError(DistKVError):
    """The server reported an error."""


class ServerClosedError(ServerError):
    """The connection to the server was closed."""


class ServerConnectionError(ServerError):
    """The server could not be reached."""


class ACLError(ServerError):
    """Access was refused by an ACL."""


class ClientError(DistKVError):
    """A request was not acceptable."""

    etype: str | None = None


class ClientChainError(ClientError):
    """The entry's chain did not match the request's precondition."""

    etype = "chain"


class ClientConnectionError(ClientError):
    """Protocol misuse on a connection."""

    etype = "conn"


class CancelledError(ClientError):
    """The request was cancelled."""


class ClientAuthError(ClientError):
    """Authentication problem detected on the client side."""


class ClientAuthRequiredError(ClientAuthError):
    """The server requires a login."""


class ClientAuthMethodError(ClientAuthError):
    """The server does not offer the requested auth method."""


class DistKVauthError(DistKVError):  # noqa: N801  (upstream's name)
    """Server-side authentication error."""


class NoAuthError(DistKVauthError):
    """Not logged in."""


class NoAuthModuleError(DistKVauthError):
    """Unknown auth method."""


class AuthFailedError(DistKVauthError):
    """Wrong credentials."""
