"""Watch a subtree of a distkv server and print every change.

    python examples/watch.py [--host HOST] [--port PORT] [PATH]

Prints the current entries first, then "(up to date)", then each change as
it happens, until interrupted. PATH defaults to ``example``.
"""

from __future__ import annotations

import argparse

import anyio

from distkv.client import open_client
from distkv.util.path import P, Path


async def main(host: str, port: int, base: Path) -> None:
    async with open_client(connect={"host": host, "port": port}) as client:
        async with client.watch(base, fetch=True) as watcher:
            async for rec in watcher:
                if "path" not in rec:  # the marker after the initial entries
                    print("(up to date)", flush=True)
                elif "value" in rec:
                    print(f"{base + rec.path} = {rec.value!r}", flush=True)
                else:
                    print(f"{base + rec.path}: deleted", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=27586)
    parser.add_argument("path", nargs="?", default="example")
    args = parser.parse_args()
    try:
        anyio.run(main, args.host, args.port, P(args.path))
    except KeyboardInterrupt:
        pass
