"""What a sweep costs: its calls against the points run separately, its wall time against its
largest point alone.

drafts = 1, 2, 4, 8 x critiques = 1, 2 (feedback-edit, one edit) on 50 prompts against the
simulated server (in its own process), judged against the gpt-4-0314 baseline. Prints one JSON
line:

- ``graph_calls``: draft, critique, edit and in-graph judge calls the sweep made, against the
  sum of the same points each run on a fresh store (``separate_graph_calls``) and against the
  largest point alone (``largest_graph_calls``; the target is equality).
- ``wall_over_largest``: the sweep's wall time (run, judge and score every point) over the
  largest point's alone (run, judge and score it on a fresh store).

    python bench/sweep.py [--prompts 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from simproc import sim_stats, start_sim

from langgraph_feedit.config import FeeditConfig
from langgraph_feedit.evaluate.sweep import parse_grid, run_sweep

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "arena-hard-v0.1"
GRID = "preset=feedback-edit; drafts=1,2,4,8; critiques=1,2; edits=1"
LARGEST = "preset=feedback-edit; drafts=8; critiques=2; edits=1"


def per_prompt_calls(drafts: int, critiques: int) -> int:
    """Calls of one prompt: per draft, the draft and its score, then per critique the
    critique, its edit and the edit's score."""
    return drafts * (2 + critiques * 3)


async def sweep(config: FeeditConfig, questions: Path, grid: str, out: Path) -> float:
    started = time.monotonic()
    await run_sweep(
        config,
        questions=questions,
        baseline=DATA / "gpt-4-0314.jsonl",
        grid=grid,
        output=out,
        rounds=20,
    )
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=50)
    args = parser.parse_args()
    sim, base_url = start_sim(
        "--seed",
        "1",
        "--ttft",
        "0.02",
        "--rate",
        "2000",
        "--jitter",
        "0.3",
        "--mean-tokens",
        "48",
        "--sd-tokens",
        "16",
    )
    try:
        asyncio.run(measure(args, base_url))
    finally:
        sim.terminate()
        sim.wait()


async def measure(args: argparse.Namespace, base_url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        questions = work / "question.jsonl"
        lines = (DATA / "question.jsonl").read_text().splitlines()[: args.prompts]
        questions.write_text("\n".join(lines) + "\n")
        config = FeeditConfig.load(
            env={},
            overrides={
                "roles": {
                    "default": {"base_url": base_url, "model": "sim", "max_concurrency": 64},
                    "draft": {"seed": 1},
                }
            },
        )
        points = parse_grid(GRID)
        judge_calls = 2 * args.prompts * len(points)

        before = sim_stats(base_url)["call_count"]
        sweep_wall = await sweep(config, questions, GRID, work / "sweep")
        sweep_calls = sim_stats(base_url)["call_count"] - before
        print(f"sweep: {sweep_wall:.1f} s, {sweep_calls} calls", file=sys.stderr)

        before = sim_stats(base_url)["call_count"]
        largest_wall = await sweep(config, questions, LARGEST, work / "largest")
        largest_calls = sim_stats(base_url)["call_count"] - before - 2 * args.prompts
        print(f"largest point: {largest_wall:.1f} s", file=sys.stderr)
    separate = (
        sum(
            per_prompt_calls(int(dict(p.values)["drafts"]), int(dict(p.values)["critiques"]))
            for p in points
        )
        * args.prompts
    )
    graph_calls = sweep_calls - judge_calls
    print(
        json.dumps(
            {
                "bench": "sweep",
                "grid": GRID,
                "prompts": args.prompts,
                "graph_calls": graph_calls,
                "largest_graph_calls": largest_calls,
                "separate_graph_calls": separate,
                "graph_calls_over_largest": round(graph_calls / largest_calls, 3),
                "graph_calls_over_separate": round(graph_calls / separate, 3),
                "judge_calls": judge_calls,
                "sweep_wall_s": round(sweep_wall, 2),
                "largest_wall_s": round(largest_wall, 2),
                "wall_over_largest": round(sweep_wall / largest_wall, 3),
                "target_only_largest_calls_met": graph_calls == largest_calls,
            }
        )
    )


if __name__ == "__main__":
    main()
