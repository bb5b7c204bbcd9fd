"""A storage-less msgpack request/reply server: the speed limit for Python here.

It greets like a distkv server (``seq`` 0 with ``qlen``), then answers every
request map that has an ``action`` at once with ``{seq, tock}`` — no tree,
no chains, no tasks per request. Whatever our server reaches is measured
against what this reaches on the same machine with the same load generator.

    python benchmarks/bound_server.py --port PORT [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import msgpack

__all__ = ["BoundProtocol", "serve"]

GREETING = {"seq": 0, "version": [0, 65, 0], "node": "bound", "tick": 0, "tock": 0, "qlen": 10}


class BoundProtocol(asyncio.Protocol):
    """One connection: decode maps, reply to each request immediately."""

    __slots__ = ("transport", "unpacker", "tock")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.unpacker = msgpack.Unpacker(raw=False, use_list=False, strict_map_key=False,
                                         max_buffer_size=16 << 20)
        self.tock = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(msgpack.packb(GREETING))  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        up = self.unpacker
        up.feed(data)
        out = []
        packb = msgpack.packb
        try:
            for msg in up:
                # Hello ({seq: 0, qlen}) and acks carry no action and get no reply.
                if type(msg) is dict and "action" in msg:
                    self.tock += 1
                    out.append(packb({"seq": msg.get("seq"), "tock": self.tock}))
        except (ValueError, msgpack.UnpackException):
            self.transport.close()
            return
        if out:
            self.transport.write(b"".join(out))


async def serve(host: str, port: int) -> None:
    """Listen until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BoundProtocol, host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
