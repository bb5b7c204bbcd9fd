"""Connect to a distkv server, write a few entries, read them back and list them.

    python examples/client.py [--host HOST] [--port PORT] [PATH]

PATH (default ``example.client``) is written in distkv's path syntax.
"""

from __future__ import annotations

import argparse

import anyio

from distkv.client import open_client
from distkv.exceptions import ClientChainError
from distkv.util.path import P, Path


async def main(host: str, port: int, base: Path) -> None:
    async with open_client(connect={"host": host, "port": port}) as client:
        print(f"Connected to {client.node} (tock {client.greeting.tock})")

        await client.set(base + ("greeting",), "hello")
        await client.set(base + ("answer",), 42)
        res = await client.get(base + ("answer",), nchain=2)
        print(f"{base}.answer = {res.value}")

        # A safe update: pass the chain you read; a stale one is refused.
        new = await client.set(base + ("answer",), res.value + 1, chain=res.chain, nchain=2)
        print(f"Updated to {res.value + 1}; new chain {dict(new.chain)}")
        try:
            await client.set(base + ("answer",), 0, chain=res.chain)
        except ClientChainError as exc:
            print(f"Stale update refused: {exc}")

        print(f"Children of {base}: {', '.join(map(str, await client.list(base)))}")
        async for rec in client.get_tree(base):
            print(f"  {rec.path} = {rec.value!r}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=27586)
    parser.add_argument("path", nargs="?", default="example.client")
    args = parser.parse_args()
    anyio.run(main, args.host, args.port, P(args.path))
