"""Mirror a subtree of a distkv server in memory and print how it changes.

    python examples/mirror.py [--host HOST] [--port PORT] [PATH]

Prints the entries that exist, then "(loaded N entries)", then every change
that anybody makes below PATH, until interrupted. PATH defaults to ``one``.
Try it while another shell runs e.g.
``distkv client data one.two.three set -e : 42``.
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from distkv.client import open_client
from distkv.obj import ClientEntry, ClientRoot
from distkv.util import NotGiven
from distkv.util.path import P


class PrintingEntry(ClientEntry):
    """An entry that reports every value it gets."""

    async def set_value(self, value: Any) -> None:
        await super().set_value(value)
        if value is NotGiven:
            print(f"{self.subpath}: deleted", flush=True)
        else:
            print(f"{self.subpath} = {value!r}", flush=True)


class PrintingRoot(ClientRoot):
    @classmethod
    def child_type(cls, name: Any) -> type[ClientEntry]:
        return PrintingEntry


async def main(host: str, port: int, path: str) -> None:
    async with open_client(connect={"host": host, "port": port}) as client:
        async with client.mirror(P(path), root_type=PrintingRoot) as root:
            # the subtree is in memory now, and kept current in the background
            n = sum(1 for _ in root.all_children)
            print(f"(loaded {n} entr{'y' if n == 1 else 'ies'})", flush=True)
            await anyio.sleep_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=27586)
    parser.add_argument("path", nargs="?", default="one")
    args = parser.parse_args()
    try:
        anyio.run(main, args.host, args.port, args.path)
    except KeyboardInterrupt:
        pass
