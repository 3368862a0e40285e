"""What a batch stores and spends per call: the issue's 10-prompt feedback-edit 8x2x2 batch.

10 prompts, feedback-edit 8 x 2 x 2 with its judge (96 calls a prompt, 960 in all), on the
simulated server in a process of its own (unlimited slots, 20 ms a request). Prints one JSON
line:

- ``store_over_output``: bytes the durable store holds (``checkpoints.sqlite`` with its WAL,
  i.e. checkpoints and pending writes) over the bytes of the output file, which holds every
  node's text and the whole trace. Target <= 3. The call cache (``cache.sqlite``) is reported
  beside it: it is what a rerun reads instead of calling again.
- ``cpu_ms_per_call``: the batch process's user + system CPU over the calls it made
  (``getrusage`` of the finished child, interpreter start-up included). Target <= 3 ms.
  ``startup_cpu_s`` is the same command's CPU on an empty input (imports, the graph and the
  stores opened), and ``cpu_ms_per_call_after_startup`` the rest over the calls.
- ``resume``: the same batch killed (SIGKILL) once half its calls were made, then run again:
  calls over both runs minus the calls of one whole run (``wasted``) against the calls in
  flight at the kill.

``--compare-with DIR`` runs the same figures for another checkout (``PYTHONPATH=DIR``, each
batch run from its own folder so that the working directory does not shadow it) right before,
as the baseline of this run.

    python bench/store.py [--prompts 10] [--compare-with ../old-main]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from simproc import batch_cmd, kill_after, sim_stats, start_sim

CALLS_PER_PROMPT = 96


TREE = [
    "--preset",
    "feedback-edit",
    "--drafts",
    "8",
    "--critiques",
    "2",
    "--edits",
    "2",
    "--set",
    "roles.default.max_concurrency=256",
    "--set",
    "roles.default.seed=0",  # seeded slots differ, so no two candidates share calls
    "--set",
    "roles.judge.kind=llm",
    "--set",
    "depth.skip_perfect=false",
]


def _env(pythonpath: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _bytes(folder: Path, *names: str) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith(names))


def measure(base_url: str, pythonpath: str | None, prompts: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with (work / "q.jsonl").open("w") as f:
            for i in range(prompts):
                f.write(json.dumps({"uid": f"q{i}", "prompt": f"Question {i}: explain."}) + "\n")
        env = _env(pythonpath)

        before, cpu0, wall0 = (
            sim_stats(base_url)["call_count"],
            _children_cpu(),
            time.perf_counter(),
        )
        done = subprocess.run(
            batch_cmd(base_url, work, "run", *TREE),
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        wall = time.perf_counter() - wall0
        cpu = _children_cpu() - cpu0
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        calls = sim_stats(base_url)["call_count"] - before
        # The fixed cost: the same command on an empty input (start-up, imports, the graph
        # and stores opened), so what is left is the cost per call.
        (work / "empty").mkdir()
        (work / "empty" / "q.jsonl").write_text("")
        cpu0 = _children_cpu()
        subprocess.run(
            batch_cmd(base_url, work / "empty", "run", *TREE),
            env=env,
            cwd=work,
            check=True,
            timeout=600,
        )
        startup = _children_cpu() - cpu0
        store = work / "store-run"
        stored = _bytes(store, "checkpoints.sqlite")
        cached = _bytes(store, "cache.sqlite")
        output = (work / "run.jsonl").stat().st_size

        cmd = batch_cmd(base_url, work, "killed", *TREE)
        before = sim_stats(base_url)["call_count"]
        in_flight = kill_after(base_url, cmd, calls // 2, cwd=work, env=env)
        killed_at = sim_stats(base_url)["call_count"] - before
        rerun = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, timeout=1800)
        if rerun.returncode != 0:
            raise SystemExit(rerun.stderr[-3000:])
        total = sim_stats(base_url)["call_count"] - before
    return {
        "calls": calls,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_call": round(1000 * cpu / calls, 2),
        "startup_cpu_s": round(startup, 2),
        "cpu_ms_per_call_after_startup": round(1000 * (cpu - startup) / calls, 2),
        "store_bytes": stored,
        "cache_bytes": cached,
        "output_bytes": output,
        "store_bytes_per_call": round(stored / calls),
        "output_bytes_per_call": round(output / calls),
        "store_over_output": round(stored / output, 3),
        "resume": {
            "killed_after_calls": killed_at,
            "in_flight_at_kill": in_flight,
            "calls_over_both_runs": total,
            "wasted": total - calls,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--compare-with", default=None, help="another checkout, as baseline")
    args = parser.parse_args()
    sim, base_url = start_sim("--seed", "1", "--ttft", "0.02", "--mean-tokens", "48")
    try:
        result: dict[str, Any] = {"bench": "store", "prompts": args.prompts}
        if args.compare_with:
            result["baseline"] = measure(base_url, args.compare_with, args.prompts)
            print(f"baseline: {result['baseline']}", file=sys.stderr)
        result["this"] = ours = measure(base_url, None, args.prompts)
        if ours["calls"] != CALLS_PER_PROMPT * args.prompts:
            raise SystemExit(f"{ours['calls']} calls, not {CALLS_PER_PROMPT * args.prompts}")
        if args.compare_with:
            base = result["baseline"]
            result["ratios"] = {
                key: round(ours[key] / base[key], 3)
                for key in (
                    "cpu_ms_per_call",
                    "cpu_ms_per_call_after_startup",
                    "store_bytes_per_call",
                    "wall_s",
                )
                if base[key]
            }
        result["targets"] = {
            "store_over_output": ours["store_over_output"] <= 3,
            "cpu_ms_per_call": ours["cpu_ms_per_call"] <= 3,
            "cpu_ms_per_call_after_startup": ours["cpu_ms_per_call_after_startup"] <= 3,
            "resume_wastes_at_most_in_flight": ours["resume"]["wasted"]
            <= max(ours["resume"]["in_flight_at_kill"], 1),
        }
    finally:
        sim.terminate()
        sim.wait()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
