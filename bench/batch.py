"""Batch throughput, durability overhead and resume waste on the simulated server.

500 prompts, feedback-edit 4 x 1 x 1, a simulated server with 64 slots and jittered latencies,
run in its own process (so it does not share our interpreter's lock). Prints one JSON line:

- ``utilisation``: slot-seconds the server spent serving / (64 x batch wall time), for the
  durable run (checkpoints and call cache on SQLite). Target >= 0.9.
- ``durability_overhead``: (durable wall - wall without checkpoints or cache) / durable wall,
  both runs measured here, and the same per call in milliseconds. Target < 5 %.
- ``resume``: a durable run killed (SIGKILL) once half the reference run's calls were made,
  then run again: calls made over both runs minus the reference run's calls (``wasted``), and
  the calls that were cut off in flight by the kill.

    python bench/batch.py [--prompts 500] [--slots 64]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simproc import batch_cmd, sim_stats, start_sim


def start(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    return start_sim(
        "--seed",
        "1",
        "--capacity",
        str(args.slots),
        "--ttft",
        str(args.ttft),
        "--rate",
        str(args.rate),
        "--jitter",
        "0.3",
        "--mean-tokens",
        "48",
        "--sd-tokens",
        "16",
        "--min-tokens",
        "8",
    )


def tree(args: argparse.Namespace) -> list[str]:
    return [
        "--drafts",
        "4",
        "--critiques",
        "1",
        "--edits",
        "1",
        "--set",
        f"roles.default.max_concurrency={args.slots}",
    ]


def run(cmd: list[str]) -> float:
    """The batch's own wall time (from its summary line), excluding interpreter start-up."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    m = re.search(r"tokens spent, ([0-9.]+) s", done.stderr)
    assert m, done.stderr
    return float(m.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--ttft", type=float, default=0.15)
    parser.add_argument("--rate", type=float, default=150.0)
    args = parser.parse_args()
    sim, base_url = start(args)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            with (work / "q.jsonl").open("w") as f:
                for i in range(args.prompts):
                    f.write(
                        json.dumps({"uid": f"q{i}", "prompt": f"Question {i}: explain."}) + "\n"
                    )

            before = sim_stats(base_url)
            durable_wall = run(batch_cmd(base_url, work, "durable", *tree(args)))
            after = sim_stats(base_url)
            calls = after["call_count"] - before["call_count"]
            busy = after["busy_s"] - before["busy_s"]
            print(f"durable: {durable_wall:.1f} s, {calls} calls", file=sys.stderr)

            plain_wall = run([*batch_cmd(base_url, work, "plain", *tree(args)), "--no-store"])
            print(f"no store: {plain_wall:.1f} s", file=sys.stderr)

            before = sim_stats(base_url)
            cmd = batch_cmd(base_url, work, "killed", *tree(args))
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while sim_stats(base_url)["call_count"] - before["call_count"] < calls // 2:
                time.sleep(0.05)
            in_flight = sim_stats(base_url)["in_flight"]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            time.sleep(0.5)
            killed_at = sim_stats(base_url)["call_count"] - before["call_count"]
            run(cmd)
            total = sim_stats(base_url)["call_count"] - before["call_count"]
            print(f"resume: {killed_at} calls before the kill, {total} in all", file=sys.stderr)
    finally:
        sim.terminate()
        sim.wait()
    overhead = (durable_wall - plain_wall) / durable_wall
    print(
        json.dumps(
            {
                "bench": "batch",
                "prompts": args.prompts,
                "slots": args.slots,
                "calls": calls,
                "durable_wall_s": round(durable_wall, 2),
                "no_store_wall_s": round(plain_wall, 2),
                "utilisation": round(busy / (args.slots * durable_wall), 3),
                "utilisation_target_met": busy / (args.slots * durable_wall) >= 0.9,
                "durability_overhead": round(overhead, 4),
                "durability_overhead_ms_per_call": round(
                    1000 * (durable_wall - plain_wall) / calls, 3
                ),
                "durability_overhead_target_met": overhead < 0.05,
                "resume": {
                    "killed_after_calls": killed_at,
                    "in_flight_at_kill": in_flight,
                    "calls_over_both_runs": total,
                    "wasted": total - calls,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
