"""Store a procedure, make a one-shot job that calls it, and run that job.

    python examples/job.py [--host HOST] [--port PORT] [--node NODE]

The procedure ``example.answer`` prints a line and returns 42. The job
``example.question`` belongs to node NODE (default ``example``) and is due
at once; this script then acts as that node's runner until the job is done
and prints the state the runner recorded. The same with the CLI::

    echo 'print("Forty-Two!"); return 42' | distkv client code example.answer set
    distkv client run -n example set -c example.answer -t 0 example.question
    distkv client run -n example all
"""

from __future__ import annotations

import argparse
import time

import anyio

from distkv.client import open_client
from distkv.code import CodeRoot
from distkv.runner import SingleRunnerRoot
from distkv.runner.paths import group_subpath, job_prefix, state_prefix
from distkv.util.path import P

CODE = 'print("Forty-Two!", flush=True)\nreturn 42\n'


async def main(host: str, port: int, node: str) -> None:
    async with open_client(connect={"host": host, "port": port}) as client:
        # 1. the procedure, below codes.prefix (:.distkv.code.proc)
        code = await CodeRoot.as_handler(client)
        await code.add("example.answer", CODE, info="the answer")
        print("Stored example.answer:", await code.call("example.answer"))

        # 2. a one-shot job of node NODE, below runner.prefix (:.distkv.run);
        #    its runner keeps the job's state below runner.state (:.distkv.state)
        cfg = client.config.runner
        job = ("example", "question")
        job_path = job_prefix(cfg, node, "default") + job
        async with client.watch(state_prefix(cfg, node, "default") + job, fetch=True) as states:
            now = time.time()
            await client.set(job_path, {"code": P("example.answer"), "target": now,
                                        "info": "the question"})
            print(f"Job example.question stored at {job_path}")

            # 3. be NODE's runner until the job has run (once: it doesn't repeat)
            runner = await SingleRunnerRoot.as_handler(
                client, subpath=group_subpath(cfg, node, "default"), code=code)
            with anyio.fail_after(30):
                async for rec in states:
                    state = rec.get("value") or {}
                    # done: started by this run, and stopped after that
                    if rec.get("path") == () and (state.get("started") or 0) >= now \
                            and (state.get("stopped") or 0) >= state["started"]:
                        break
            runner.cancel()
        print(f"Job done: result {state.get('result')!r}, error {state.get('error')!r}")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=27586)
    parser.add_argument("--node", default="example")
    args = parser.parse_args()
    anyio.run(main, args.host, args.port, args.node)
