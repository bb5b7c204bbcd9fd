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
    subscribing). Like an MQTT broker, a medium delivers a backend's own
    publications to its subscriptions too, unless the subscriber passed
    ``echo=False``: then the medium may leave them out (MQTT v5 "no local"),
    but need not — such a subscriber still has to recognise and skip its own
    messages. ``flush`` waits until what was published so far has left;
    ``push`` sends it at once if it can.
    """

    name: str = "?"
    standalone: bool = False

    @abstractmethod
    async def publish(self, topic: Topic, payload: bytes) -> None:
        """Send ``payload`` to everyone subscribed to ``topic``."""

    @abstractmethod
    def subscribe(
        self, topic: Topic, *, echo: bool = True
    ) -> AbstractAsyncContextManager[AsyncIterator[tuple[tuple[str, ...], bytes]]]:
        """Receive everything published on ``topic`` while the context is open.

        ``echo=False``: our own publications need not be delivered (see above).
        """

    def publish_nowait(self, topic: Topic, payload: bytes) -> bool:
        """Publish without waiting if the medium can take it now; False: use :meth:`publish`."""
        return False

    def push(self) -> bool:
        """Hand what was published so far to the medium now, if that needs no waiting.

        The synchronous, best-effort sibling of :meth:`flush`, for callers
        that can't wait (a server about to acknowledge writes). True: nothing
        published is left in this process's buffers.
        """
        return True

    async def flush(self) -> None:  # noqa: B027  (a medium that sends at once has nothing to do)
        """Wait until everything published so far has been handed to the medium.

        For MQTT that is the broker's socket, for Serf the agent's; messages
        queued while disconnected stay queued (they go out after the next
        connection). It does not wait for delivery to other servers.
        """

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

    def subscribe(self, topic: Topic, *, echo: bool = True):
        raise NoBackendError(self.reason)
