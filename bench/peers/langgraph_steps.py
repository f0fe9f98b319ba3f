"""LangGraph peer of Plasma's durable workflow benchmark: N runs of a linear 10-step graph,
each step checkpointed into PostgreSQL before the next one starts.

    python langgraph_steps.py --url postgres://... [--runs 200] [--concurrency 16] [--steps 10]

Installed by scripts/install-langgraph-peer.sh (langgraph 1.2.24, langgraph-checkpoint-postgres
3.2.0, psycopg 3.3.9, psycopg-pool 3.3.3) into ~/.cache/plasma/tools/venv-langgraph.

The graph: a StateGraph over a TypedDict whose one channel, `outputs`, merges dicts; nodes
step_0 .. step_{N-1} in a line (START -> step_0 -> ... -> step_{N-1} -> END), each a no-op,
tool-like async node returning {"outputs": {"step_i": {"ok": True}}}. Compiled with an
AsyncPostgresSaver over a psycopg AsyncConnectionPool (autocommit, prepare_threshold=0,
dict_row, as the saver's documentation asks); the server keeps PostgreSQL's durable defaults
(fsync on, synchronous_commit on).

Durability: `ainvoke(..., durability="sync")`. LangGraph 1.2 has three modes
(langgraph.types.Durability = "sync" | "async" | "exit") and defaults to "async", where a
step's checkpoint is written while the next step already runs. "sync" awaits each step's
checkpoint write (Pregel loop: `if durability_ == "sync": await loop._put_checkpoint_fut`)
before the next step starts, which is the guarantee a durable workflow engine gives. The node's
pending writes (`aput_writes`) are still submitted in the background in this mode; the loop
waits for them when the run exits.

Checkpoints per run: steps + 2. LangGraph writes one checkpoint per superstep, plus:
  - step -1 ("input"): the input as written to the __start__ channel, before anything runs;
  - step 0 ("loop"): after the __start__ task applied the input to the state channels;
  - steps 1..N ("loop"): one after each of step_0 .. step_{N-1}.
So 10 steps give 12 rows in `checkpoints` per thread; the script checks the total for the
counted threads equals runs * (steps + 2) and fails otherwise.

Per-step latency: each node records its start time (perf_counter) under its run's thread_id;
a step's latency is the time from its node's start to the next node's start (for the last node:
to the return of ainvoke), so it includes the node, the superstep bookkeeping and the awaited
checkpoint write. p50/p99 are nearest-rank over all counted steps.

Note: AsyncPostgresSaver takes one asyncio.Lock around every database call
(`_cursor`: `async with self.lock, get_connection(...)`), so however large the pool, one saver
runs one statement batch at a time. --savers K (default 1, the documented setup) compiles the
graph against K savers sharing the pool, runs spread round-robin, to show what that lock costs.

Prints one JSON line on stdout; warm-up (5 runs) and checkpointer.setup() are not timed.
"""

import argparse
import asyncio
import json
import math
import sys
import time
import uuid
from importlib.metadata import version
from typing import Annotated, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

DURABILITY = "sync"
WARMUP_RUNS = 5
EXTRA_CHECKPOINTS_PER_RUN = 2  # the input checkpoint (step -1) and the one after __start__ (step 0)


def merge(left: dict, right: dict) -> dict:
    return {**left, **right}


class State(TypedDict):
    outputs: Annotated[dict, merge]


# thread_id -> node start times (perf_counter seconds), in order.
starts: dict[str, list[float]] = {}


def make_step(i: int):
    name = f"step_{i}"

    async def step(state: State, config: RunnableConfig) -> dict:
        starts[config["configurable"]["thread_id"]].append(time.perf_counter())
        return {"outputs": {name: {"ok": True}}}

    step.__name__ = name
    return step


def build(steps: int) -> StateGraph:
    graph = StateGraph(State)
    for i in range(steps):
        graph.add_node(f"step_{i}", make_step(i))
    graph.add_edge(START, "step_0")
    for i in range(steps - 1):
        graph.add_edge(f"step_{i}", f"step_{i + 1}")
    graph.add_edge(f"step_{steps - 1}", END)
    return graph


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[max(0, math.ceil(p * len(sorted_values)) - 1)]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="PostgreSQL URL")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16, help="runs in flight at once")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--savers", type=int, default=1, help="AsyncPostgresSaver instances sharing the pool")
    args = ap.parse_args()
    steps = args.steps

    async with AsyncConnectionPool(
        conninfo=args.url,
        min_size=min(args.concurrency, 4),
        max_size=args.concurrency,
        open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    ) as pool:
        await pool.open(wait=True)
        savers = [AsyncPostgresSaver(pool) for _ in range(args.savers)]
        await savers[0].setup()
        graph = build(steps)
        apps = [graph.compile(checkpointer=s) for s in savers]
        tag = uuid.uuid4().hex[:8]
        sem = asyncio.Semaphore(args.concurrency)
        latencies: list[float] = []

        async def run(i: int, thread_id: str, counted: bool) -> None:
            async with sem:
                starts[thread_id] = []
                out = await apps[i % len(apps)].ainvoke(
                    {"outputs": {}},
                    {"configurable": {"thread_id": thread_id}, "recursion_limit": steps + 10},
                    durability=DURABILITY,
                )
                end = time.perf_counter()
                assert len(out["outputs"]) == steps, out
                marks = starts.pop(thread_id) + [end]
                assert len(marks) == steps + 1, (thread_id, len(marks))
                if counted:
                    latencies.extend(b - a for a, b in zip(marks, marks[1:]))

        await asyncio.gather(*(run(i, f"warm-{tag}-{i}", False) for i in range(WARMUP_RUNS)))

        threads = [f"lg-{tag}-{i}" for i in range(args.runs)]
        t0 = time.perf_counter()
        await asyncio.gather(*(run(i, t, True) for i, t in enumerate(threads)))
        seconds = time.perf_counter() - t0

        async with pool.connection() as conn:
            row = await (
                await conn.execute("SELECT count(*) AS n FROM checkpoints WHERE thread_id = ANY(%s)", (threads,))
            ).fetchone()
            checkpoints = row["n"]

    latencies.sort()
    result = {
        "system": "langgraph",
        "runs": args.runs,
        "steps": steps,
        "seconds": round(seconds, 3),
        "steps_per_s": round(args.runs * steps / seconds, 1),
        "p50_step_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_step_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "checkpoints": checkpoints,
        "langgraph": version("langgraph"),
        "checkpoint_postgres": version("langgraph-checkpoint-postgres"),
        "concurrency": args.concurrency,
        "durability": DURABILITY,
    }
    if args.savers != 1:
        result["savers"] = args.savers
    print(json.dumps(result), flush=True)
    expected = args.runs * (steps + EXTRA_CHECKPOINTS_PER_RUN)
    if checkpoints != expected:
        print(f"langgraph_steps: {checkpoints} checkpoints, expected {expected} "
              f"(runs * (steps + {EXTRA_CHECKPOINTS_PER_RUN}))", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
