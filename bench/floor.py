"""LangGraph's own cost per call for the shape of the feedit tree, with calls that do nothing.

The 8x2x2 feedback-edit tree makes 96 calls: 8 drafts, 8 draft judges, 16 critiques, 32 edits,
32 edit judges. Each figure runs that tree with every call replaced by a no-op (no HTTP, no
prompts, no trace), so what is measured is the framework's cost per call:

- ``subgraphs``: the package's shape: each draft, critique and edit branch a subgraph sent
  with ``Send`` (``draft -> route -> [judge, critique_branch x 2]``,
  ``critique -> route -> edit_branch x 2``, ``edit -> judge``) between a ``start`` and a
  ``select`` node: the same tasks and subgraph runs per call as the real graph.
- ``functional``: the same tree in LangGraph's functional API: one ``@entrypoint`` whose
  calls are ``@task``s, each branch an ``asyncio.gather`` of its children, so a branch still
  waits only for its parent.
- ``asyncio``: the same tree as plain coroutines: the floor of any Python scheduler.
- ``feedit``: the package's own graph (``feedback-edit`` 8x2x2, LLM judge) with
  ``Endpoint.chat`` replaced by a reply made on the spot: everything of a call but its HTTP
  request (prompts, state, trace, callbacks, cache keys, progress events). ``feedit`` less
  ``subgraphs`` is what the package's own code adds per call above LangGraph's cost for the
  shape; ``bench/endpoints.py`` measures the HTTP request it leaves out.

CPU per call is the process's CPU over ``--runs`` runs of the tree, divided by the calls made,
after a warm-up; each variant's figure is the median of ``--rounds`` rounds, taken in turn.
Prints one JSON line; the ratios to ``asyncio`` are the figures to read, and
``feedit_above_subgraphs_us``.

    python bench/floor.py [--runs 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import operator
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from typing_extensions import TypedDict

DRAFTS, CRITIQUES, EDITS = 8, 2, 2
CALLS = DRAFTS * (2 + CRITIQUES * (1 + 2 * EDITS))


class Made(TypedDict, total=False):
    made: Annotated[list[str], operator.add]


class Branch(Made, total=False):
    index: int


async def _made(kind: str, state: Branch) -> dict[str, Any]:
    return {"made": [kind]}


def subgraphs() -> Callable[[], Awaitable[int]]:
    def node(kind: str) -> Callable[[Branch], Awaitable[dict[str, Any]]]:
        async def run(state: Branch) -> dict[str, Any]:
            return await _made(kind, state)

        return run

    async def route(state: Branch) -> dict[str, Any]:
        return {}

    # Edges are async too: LangGraph runs a plain function of an async run on a worker thread.
    async def fan_edits(state: Branch) -> list[Send]:
        return [Send("edit_branch", {"index": i}) for i in range(EDITS)]

    async def after_draft(state: Branch) -> list[Send]:
        return [Send("judge", state)] + [
            Send("critique_branch", {"index": i}) for i in range(CRITIQUES)
        ]

    async def fan_drafts(state: Branch) -> list[Send]:
        return [Send("draft_branch", {"index": i}) for i in range(DRAFTS)]

    leaf = StateGraph(Branch, output_schema=Made)
    leaf.add_node("edit", node("edit"))
    leaf.add_node("judge", node("judge"))
    leaf.add_edge(START, "edit")
    leaf.add_edge("edit", "judge")
    leaf.add_edge("judge", END)
    edit_branch = leaf.compile(name="edit_branch")

    crit = StateGraph(Branch, output_schema=Made)
    crit.add_node("critique", node("critique"))
    crit.add_node("route", route)
    crit.add_node("edit_branch", edit_branch)
    crit.add_edge(START, "critique")
    crit.add_edge("critique", "route")
    crit.add_conditional_edges("route", fan_edits)
    critique_branch = crit.compile(name="critique_branch")

    drafts = StateGraph(Branch, output_schema=Made)
    drafts.add_node("draft", node("draft"))
    drafts.add_node("route", route)
    drafts.add_node("judge", node("judge"))
    drafts.add_node("critique_branch", critique_branch)
    drafts.add_edge(START, "draft")
    drafts.add_edge("draft", "route")
    drafts.add_conditional_edges("route", after_draft)
    drafts.add_edge("judge", END)
    draft_branch = drafts.compile(name="draft_branch")

    top = StateGraph(Branch)
    top.add_node("start", route)
    top.add_node("draft_branch", draft_branch)
    top.add_node("select", route)
    top.add_edge(START, "start")
    top.add_conditional_edges("start", fan_drafts)
    top.add_edge("draft_branch", "select")
    top.add_edge("select", END)
    graph = top.compile()

    async def run() -> int:
        out = await graph.ainvoke({"made": []}, {"max_concurrency": 256})
        return len(out["made"])

    return run


def functional() -> Callable[[], Awaitable[int]]:
    @task
    async def call(kind: str, index: int) -> str:
        return kind

    async def edit_chain(i: int) -> list[str]:
        return [await call("edit", i), await call("judge", i)]

    async def critique_chain(i: int) -> list[str]:
        made = [await call("critique", i)]
        for chain in await asyncio.gather(*(edit_chain(j) for j in range(EDITS))):
            made += chain
        return made

    async def draft_chain(i: int) -> list[str]:
        made = [await call("draft", i)]
        judged, *chains = await asyncio.gather(
            call("judge", i), *(critique_chain(j) for j in range(CRITIQUES))
        )
        made.append(judged)
        for chain in chains:
            made += chain
        return made

    @entrypoint()
    async def tree(question: str) -> list[str]:
        made: list[str] = []
        for chain in await asyncio.gather(*(draft_chain(i) for i in range(DRAFTS))):
            made += chain
        return made

    async def run() -> int:
        return len(await tree.ainvoke("q", {"max_concurrency": 256}))

    return run


def plain() -> Callable[[], Awaitable[int]]:
    async def call(kind: str) -> str:
        await asyncio.sleep(0)
        return kind

    async def edit_chain() -> int:
        await call("edit")
        await call("judge")
        return 2

    async def critique_chain() -> int:
        await call("critique")
        return 1 + sum(await asyncio.gather(*(edit_chain() for _ in range(EDITS))))

    async def draft_chain() -> int:
        await call("draft")
        made = await asyncio.gather(call("judge"), *(critique_chain() for _ in range(CRITIQUES)))
        return 2 + sum(m for m in made if isinstance(m, int))

    async def run() -> int:
        return sum(await asyncio.gather(*(draft_chain() for _ in range(DRAFTS))))

    return run


def feedit() -> Callable[[], Awaitable[int]]:
    # Imported here: the other variants measure LangGraph alone.
    from langgraph_feedit import FeeditConfig, create_feedit_graph
    from langgraph_feedit.chatapi import ChatResult
    from langgraph_feedit.endpoints import Endpoint
    from langgraph_feedit.usage import Usage

    made = 0

    async def chat(self: Endpoint, messages: Any, **kwargs: Any) -> ChatResult:
        nonlocal made
        made += 1
        # Distinct texts (identical candidates would share calls); a JSON rating for judges.
        text = '{"reason": "ok", "score": 7}' if kwargs.get("json_schema") else f"text {made}"
        await asyncio.sleep(0)  # a reply, as soon as the loop comes round
        return ChatResult(
            texts=[text], usage=Usage(10, 8, 0, 1), model="m", finish_reasons=["stop"]
        )

    Endpoint.chat = chat  # type: ignore[assignment,method-assign]
    roles = {"default": {"base_url": "http://127.0.0.1:9/v1", "model": "m", "seed": 0}}
    config = FeeditConfig.load(
        env={},
        overrides={
            "roles": {**roles, "judge": {"kind": "llm"}},
            "width": {"drafts": DRAFTS, "critiques": CRITIQUES, "edits": EDITS},
            "depth": {"max_rounds": 1},
        },
    )
    graph = create_feedit_graph(config, preset="feedback-edit").compile()

    async def run() -> int:
        out = await graph.ainvoke({"messages": [("user", "q")]}, {"max_concurrency": 256})
        return int(out["trace"]["usage"]["total"]["calls"])

    return run


async def cpu_per_call(run: Callable[[], Awaitable[int]], runs: int) -> float:
    gc.collect()
    start = time.process_time()
    for _ in range(runs):
        await run()
    return (time.process_time() - start) / (runs * CALLS) * 1e6


async def main(runs: int, rounds: int) -> dict[str, Any]:
    variants = {
        name: make()
        for name, make in (
            ("asyncio", plain),
            ("functional", functional),
            ("subgraphs", subgraphs),
            ("feedit", feedit),
        )
    }
    for run in variants.values():  # warm-up
        for _ in range(3):
            assert await run() == CALLS
    # Rounds of every variant in turn, so a slower spell of the machine falls on all of them;
    # each figure is the median of its rounds, and ``feedit_above_subgraphs_us`` the median of
    # the differences paired by round.
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            samples[name].append(await cpu_per_call(run, runs))
    figures = {name: statistics.median(v) for name, v in samples.items()}
    above = statistics.median(
        f - s for f, s in zip(samples["feedit"], samples["subgraphs"], strict=True)
    )
    return {
        "bench": "floor",
        "calls_per_tree": CALLS,
        "runs": runs,
        "rounds": rounds,
        "cpu_us_per_call": {k: round(v, 1) for k, v in figures.items()},
        "over_asyncio": {k: round(v / figures["asyncio"], 2) for k, v in figures.items()},
        "subgraphs_over_functional": round(figures["subgraphs"] / figures["functional"], 2),
        "feedit_above_subgraphs_us": round(above, 1),
        # What the package controls: its own code per call, above LangGraph's for the shape.
        "targets": {"feedit_above_subgraphs_us_le_500": above <= 500},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="trees per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.runs, args.rounds))), flush=True)
    sys.exit(0)
