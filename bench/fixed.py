"""Wall time of the 8x2x2 feedback-edit tree on a fixed-latency server, and the CLI's start-up.

(e) ``fixed_0_5s``: every request takes exactly 0.5 s (no jitter, unlimited slots,
    ``max_concurrency`` above the widest stage), so the critical path (draft -> critique ->
    edit -> judge of the edit) is 2.0 s; what the run takes beyond it is the graph's own cost
    (CPU per call, the time before the first request leaves). Wall from ``ainvoke`` to its
    return over 2.0 s; target <= 1.10. Median of ``--repeats`` runs after a warm-up.
(f) ``cli``: wall of ``feedit --version`` and ``feedit --help`` in a fresh interpreter, median of
    5; target <= 0.3 s each.

Uses only the public API, so the same script measures any checkout (``PYTHONPATH=...``).
Prints one JSON line.

Usage: ``python bench/fixed.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from langgraph_feedit import FeeditConfig, create_feedit_graph
from langgraph_feedit.testing import SimServer

LATENCY = 0.5
CRITICAL_PATH = 4 * LATENCY


def _config(base_url: str) -> FeeditConfig:
    data: dict[str, Any] = {
        "roles": {
            "default": {
                "base_url": base_url,
                "model": "sim-model",
                "max_concurrency": 256,
                "max_retries": 0,
                "timeout": 60.0,
                # Seeded calls differ per slot, so no two candidates share calls (twins.py).
                "seed": 0,
            },
            "judge": {"kind": "llm"},
        },
        "width": {"drafts": 8, "critiques": 2, "edits": 2},
        "depth": {"max_rounds": 1},
    }
    return FeeditConfig.load(env={}, overrides=data)


async def fixed_runs(repeats: int) -> dict[str, Any]:
    with SimServer(seed=7, latency_fn=lambda body: LATENCY) as sim:
        graph = create_feedit_graph(_config(sim.base_url), preset="feedback-edit").compile()
        question = {"messages": [("user", "Explain CRDTs briefly.")]}
        await graph.ainvoke(question, {"max_concurrency": 256})  # warm-up
        walls = []
        for i in range(repeats):
            gc.collect()
            start = time.perf_counter()
            out = await graph.ainvoke(
                {"messages": [("user", f"Explain CRDTs briefly ({i}).")]},
                {"max_concurrency": 256},
            )
            walls.append(time.perf_counter() - start)
            calls = out["trace"]["usage"]["total"]["calls"]
            if calls != 96:
                raise RuntimeError(f"the tree made {calls} calls, not its 96")
    wall = statistics.median(walls)
    return {
        "wall_s": round(wall, 3),
        "critical_path_s": CRITICAL_PATH,
        "wall_over_critical_path": round(wall / CRITICAL_PATH, 3),
        "runs_wall_s": [round(w, 3) for w in walls],
    }


JUDGE_CASES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("llm", "llm", {}),
    ("llm_no_json_schema", "llm", {"response_formats": ("text",)}),
    ("principle", "principle", {}),
    ("principle_no_logprobs", "principle", {"logprobs": False}),
)


async def judge_runs(repeats: int) -> dict[str, Any]:
    """(g) ``judging``: best-of-n 8 with distinct drafts (seeded) on a fresh server and
    endpoint per run, so each run is a first contact (what the endpoint supports unknown):
    wall over one call latency; the critical path is 2 (draft, judge); target <= 2.2. The
    principle judge learns whether logprobs come from the probe made beside the drafts."""
    out: dict[str, Any] = {}
    for name, kind, server in JUDGE_CASES:
        walls = []
        for i in range(repeats):
            with SimServer(seed=11 + i, latency_fn=lambda body: LATENCY, **server) as sim:
                data = _config(sim.base_url).model_dump(exclude_none=True)
                config = FeeditConfig.load(
                    env={},
                    overrides={
                        "roles": {"default": data["roles"]["default"], "judge": {"kind": kind}},
                        "width": {"drafts": 8},
                    },
                )
                graph = create_feedit_graph(config, preset="best-of-n").compile()
                gc.collect()
                start = time.perf_counter()
                got = await graph.ainvoke(
                    {"messages": [("user", f"Explain CRDTs briefly ({i}).")]},
                    {"max_concurrency": 256},
                )
                walls.append(time.perf_counter() - start)
                texts = {n["text"] for n in got["trace"]["nodes"] if n.get("kind") == "draft"}
                if len(texts) != 8:
                    raise RuntimeError(f"{len(texts)} distinct drafts, not 8")
                asked = sum("satisfies this principle" in json.dumps(r.body) for r in sim.requests)
                if not server.get("logprobs", True) and asked:
                    # The probe beside the drafts should have told the judge: no question.
                    raise RuntimeError(f"{asked} principle questions to a server without logprobs")
        wall = statistics.median(walls)
        out[name] = {"latencies": round(wall / LATENCY, 2), "runs_s": [round(w, 3) for w in walls]}
    return out


def cli_wall(flag: str) -> float:
    walls = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "langgraph_feedit.cli", flag],
            check=True,
            capture_output=True,
            cwd=tempfile.gettempdir(),  # the working directory would shadow ``PYTHONPATH``
        )
        walls.append(time.perf_counter() - start)
    return round(statistics.median(walls), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    fixed = asyncio.run(fixed_runs(args.repeats))
    judging = asyncio.run(judge_runs(args.repeats))
    cli = {"version_s": cli_wall("--version"), "help_s": cli_wall("--help")}
    print(
        json.dumps(
            {
                "bench": "fixed",
                "fixed_0_5s": fixed,
                "cli": cli,
                "judging": judging,
                "targets": {
                    "wall_over_critical_path": fixed["wall_over_critical_path"] <= 1.10,
                    "judging": all(j["latencies"] <= 2.2 for j in judging.values()),
                    "cli_version": cli["version_s"] <= 0.3,
                    "cli_help": cli["help_s"] <= 0.3,
                },
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
