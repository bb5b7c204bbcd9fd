"""The broadcast-medium interface servers use to talk to each other.

A backend publishes opaque payloads on topics (paths) and delivers what others
published. Concrete media (MQTT, Serf, an in-process bus) implement
:class:`Backend`; :class:`StandaloneBackend` is what a server uses when no
medium is reachable: it refuses every operation with :class:`NoBackendError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager

from distkv.exceptions import ServerError

__all__ = ["Backend", "NoBackendError", "StandaloneBackend", "Topic"]

Topic = Sequence[object]


class NoBackendError(ServerError):
    """There is no broadcast medium: the server runs standalone."""


class Backend(ABC):
    """A publish/subscribe medium.

    ``publish`` sends one payload; ``subscribe`` is an async context manager
    that yields an async iterator of ``(topic, payload)`` pairs, ``topic``
    being a tuple of strings (wildcards ``+``/``#`` may be used when
    subscribing).
    """

    name: str = "?"
    standalone: bool = False

    @abstractmethod
    async def publish(self, topic: Topic, payload: bytes) -> None:
        """Send ``payload`` to everyone subscribed to ``topic``."""

    @abstractmethod
    def subscribe(
        self, topic: Topic
    ) -> AbstractAsyncContextManager[AsyncIterator[tuple[tuple[str, ...], bytes]]]:
        """Receive everything published on ``topic`` while the context is open."""

    def publish_nowait(self, topic: Topic, payload: bytes) -> bool:
        """Publish without waiting if the medium can take it now; False: use :meth:`publish`."""
        return False

    async def aclose(self) -> None:  # noqa: B027  (most media have nothing to release)
        """Release the medium."""


class StandaloneBackend(Backend):
    """No medium at all: a single-node network without replication."""

    name = "standalone"
    standalone = True

    def __init__(self, reason: str = "no backend: this server runs standalone"):
        self.reason = reason

    async def publish(self, topic: Topic, payload: bytes) -> None:
        raise NoBackendError(self.reason)

    def subscribe(self, topic: Topic):
        raise NoBackendError(self.reason)
