"""Faults and kills: does a batch lose, duplicate or change an answer, and what does a kill waste?

200 prompts, feedback-edit 2 x 1 x 1 with an `llm` judge (10 calls a prompt, seeded so the
tree is the same in every run), on the simulated server in a process of its own. Runs:

1. ``reference``: no fault, no kill; its answers are what every other run must give.
2. one run per fault kind (``500``, ``429``, ``drop``, ``malformed``, ``slow``), the server
   giving that fault to 10 % of requests; the client retries (4 retries, 1 s timeout for the
   ``slow`` kind);
3. one run per kill point (20 %, 50 %, 80 % of the reference's calls): the batch is killed
   with SIGKILL there, then the same command is run again to the end.

For each it counts answers lost (a prompt with no ``ok`` line), duplicated (a prompt on more
than one line) and changed (an answer other than the reference's); for the kills also the
calls bought twice (calls over both runs minus the reference's) against the calls in flight
at the kill (requests the kill cut off, and replies sent in the second before it). Prints one
JSON line; exits 1 when any answer is lost, duplicated or changed, or a kill wasted more
calls than were in flight.

    python bench/faults.py [--prompts 200]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from simproc import batch_cmd, kill_after, sim_stats, start_sim

TREE = [
    "--preset",
    "feedback-edit",
    "--drafts",
    "2",
    "--critiques",
    "1",
    "--edits",
    "1",
    "--set",
    "roles.default.seed=0",
    "--set",
    "roles.default.max_concurrency=64",
    "--set",
    "roles.default.max_retries=4",
    "--set",
    "roles.default.backoff=0.01",
    "--set",
    "roles.judge.kind=llm",
    "--set",
    "depth.skip_perfect=false",
]
FAULT_KINDS = ("500", "429", "drop", "malformed", "slow")
KILL_AT = (0.2, 0.5, 0.8)


def _answers(path: Path) -> tuple[dict[str, str], int, int]:
    """The ok answers by prompt id, the number of prompts on more than one line, and the
    number of lines that are not strict JSON."""
    answers: dict[str, str] = {}
    counts: dict[str, int] = {}
    bad = 0
    if not path.exists():
        return answers, 0, 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line, parse_constant=_refuse)
        except ValueError:
            bad += 1
            continue
        counts[record["id"]] = counts.get(record["id"], 0) + 1
        if record.get("status") == "ok":
            answers[record["id"]] = record["answer"]
    return answers, sum(1 for n in counts.values() if n > 1), bad


def _refuse(name: str) -> Any:
    raise ValueError(f"not strict JSON: {name}")


def _compare(reference: dict[str, str], path: Path) -> dict[str, int]:
    answers, duplicated, bad = _answers(path)
    return {
        "lost": sum(1 for k in reference if k not in answers),
        "duplicated": duplicated,
        "changed": sum(1 for k, v in answers.items() if reference.get(k) != v),
        "not_json": bad,
    }


def _run(cmd: list[str], work: Path) -> None:
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=1800)
    if done.returncode not in (0, 1):  # 1: some prompt failed for good, counted as lost
        raise SystemExit(f"{' '.join(cmd[:4])}: exit {done.returncode}\n{done.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    args = parser.parse_args()
    result: dict[str, Any] = {"bench": "faults", "prompts": args.prompts}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with (work / "q.jsonl").open("w") as f:
            for i in range(args.prompts):
                f.write(json.dumps({"uid": f"q{i}", "prompt": f"Question {i}: explain."}) + "\n")
        sim, base_url = start_sim("--seed", "3", "--ttft", "0.01", "--mean-tokens", "32")
        try:
            before = sim_stats(base_url)["call_count"]
            _run(batch_cmd(base_url, work, "reference", *TREE), work)
            calls = sim_stats(base_url)["call_count"] - before
            reference, _, _ = _answers(work / "reference.jsonl")
            result["reference"] = {"calls": calls, "answers": len(reference)}
        finally:
            sim.terminate()
            sim.wait()

        faults: dict[str, Any] = {}
        for kind in FAULT_KINDS:
            fault = {"kind": kind, "rate": 0.1, "slow_s": 3.0}
            sim, url = start_sim(
                "--seed", "3", "--ttft", "0.01", "--mean-tokens", "32", "--fault", json.dumps(fault)
            )
            try:
                tree = [*TREE, "--set", "roles.default.timeout=1.0"] if kind == "slow" else TREE
                _run(batch_cmd(url, work, f"fault-{kind}", *tree), work)
                faults[kind] = {
                    **_compare(reference, work / f"fault-{kind}.jsonl"),
                    "calls": sim_stats(url)["call_count"],
                }
            finally:
                sim.terminate()
                sim.wait()
        result["faults"] = faults

        kills: dict[str, Any] = {}
        sim, url = start_sim("--seed", "3", "--ttft", "0.01", "--mean-tokens", "32")
        try:
            for at in KILL_AT:
                name = f"kill-{int(at * 100)}"
                cmd = batch_cmd(url, work, name, *TREE)
                before = sim_stats(url)["call_count"]
                in_flight = kill_after(url, cmd, int(calls * at), cwd=work)
                _run(cmd, work)
                total = sim_stats(url)["call_count"] - before
                kills[name] = {
                    **_compare(reference, work / f"{name}.jsonl"),
                    "calls_over_both_runs": total,
                    "bought_twice": total - calls,
                    "in_flight_at_kill": in_flight,
                }
        finally:
            sim.terminate()
            sim.wait()
        result["kills"] = kills

    runs = [*faults.values(), *kills.values()]
    result["totals"] = {
        key: sum(r[key] for r in runs) for key in ("lost", "duplicated", "changed", "not_json")
    }
    result["ok"] = not any(result["totals"].values()) and all(
        k["bought_twice"] <= max(k["in_flight_at_kill"], 1) for k in kills.values()
    )
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
