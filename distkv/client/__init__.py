"""The Python client library of distkv.

::

    from distkv.client import open_client
    from distkv.util.path import P

    async with open_client(connect={"host": "localhost", "port": 27586}) as client:
        await client.set(P("one.two"), value=42)
        print((await client.get(P("one.two"))).value)

:func:`open_client` yields a :class:`Client`; streamed replies are
:class:`StreamedRequest` objects. The implementation is split into
:mod:`.client` (the API), :mod:`.connection` (requests over one connection)
and :mod:`.dynconfig` (the in-tree configuration mirror).
"""

from __future__ import annotations

from .client import Client, ManyData, NoData, open_client
from .connection import StreamedRequest

__all__ = ["Client", "ManyData", "NoData", "StreamedRequest", "open_client"]
