"""Verified accuracy against compute on the embedded model: does a tree beat one draft?

Runs the project's own instruction-following prompts (IFEval's format, instructions from
IFEval's checkers: ``tests/data/ifeval_prompts.jsonl``, 15 prompts, by default;
``bench/data/ifeval_prompts_50.jsonl``, the same 15 and 35 more, with ``--file``) through
``feedit batch`` on the default endpoint (the embedded llama.cpp model, no configuration), one
store for all configurations so the call cache is shared, then ``feedit verify`` on each answer
file. Prints one JSON object:
per configuration ``prompt_strict``, ``prompt_loose``, ``instruction_strict``,
``instruction_loose`` and ``mean_tokens`` (all roles, judge included, per prompt).

Each also reports ``headroom`` (see ``feedit verify``): the share of prompts where some
candidate passes, the judge's pick accuracy, edits against their drafts, the rate of edit
replies that were no answer, and the critiques' verdict rate.

Configurations: ``single``; ``best-of-n`` with 4 drafts, judged by the principle judge and by
the verifier (``roles.judge.kind=verify``: the checkers themselves, an upper bound on what a
judge can do with these drafts); ``feedback-edit`` 2x1x1 with
effective feedback (the preset: ``skip_perfect`` on, a critique asking for no change is sampled
again) and without it (``depth.skip_perfect=false``).

    python bench/verify.py [--file PATH] [--prompts N] [--output DIR] [--code DIR] [--configs a,b]
                           [-- extra feedit batch flags]

The call cache keys a critique, edit or judge call by the text of its template set, so a store
made before a template change answers only the drafts of "after" (which use no template).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "tests" / "data" / "ifeval_prompts.jsonl"
LARGE = ROOT / "bench" / "data" / "ifeval_prompts_50.jsonl"
CONFIGS: dict[str, list[str]] = {
    "single": ["--preset", "single"],
    "best-of-n-4": ["--preset", "best-of-n", "--drafts", "4"],
    "feedback-edit-2x1x1-effective": [
        "--preset",
        "feedback-edit",
        "--drafts",
        "2",
        "--critiques",
        "1",
        "--edits",
        "1",
    ],
    "best-of-n-4-verifier": [
        "--preset",
        "best-of-n",
        "--drafts",
        "4",
        "--set",
        "roles.judge.kind=verify",
    ],
    "feedback-edit-2x1x1-all": [
        "--preset",
        "feedback-edit",
        "--drafts",
        "2",
        "--critiques",
        "1",
        "--edits",
        "1",
        "--set",
        "depth.skip_perfect=false",
    ],
}


def feedit(*args: str, code: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``feedit`` from the package in ``code`` (a checkout of another commit, for "before")."""
    cmd = [sys.executable, "-m", "langgraph_feedit.cli", *args]
    env = {**os.environ, "PYTHONPATH": str(code)}
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=code, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--file",
        type=Path,
        default=PROMPTS,
        help=f"the prompts, IFEval's format (default: {PROMPTS.relative_to(ROOT)}; "
        f"larger: {LARGE.relative_to(ROOT)})",
    )
    parser.add_argument("--prompts", type=int, help="the first N prompts (default: all)")
    parser.add_argument("--output", type=Path, help="keep the answers here (default: temp)")
    parser.add_argument(
        "--code",
        type=Path,
        default=ROOT,
        help="run feedit batch from the package in this folder (a checkout of an earlier "
        "commit, to measure before a change); feedit verify always runs from this one",
    )
    parser.add_argument(
        "--configs", help="comma-separated names of the configurations to run (default: all)"
    )
    parser.add_argument("extra", nargs="*", help="more feedit batch flags, after --")
    args = parser.parse_args()
    out_dir = args.output or Path(tempfile.mkdtemp(prefix="feedit-verify-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    questions = out_dir / "questions.jsonl"
    lines = [ln for ln in args.file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    lines = lines[: args.prompts]
    questions.write_text("\n".join(lines) + "\n", encoding="utf-8")
    results: dict[str, object] = {
        "prompts": len(lines),
        "file": str(args.file),
        "output": str(out_dir),
    }
    chosen = args.configs.split(",") if args.configs else list(CONFIGS)
    for name in chosen:
        flags = CONFIGS[name]
        answers = out_dir / f"{name}.jsonl"
        started = time.monotonic()
        done = feedit(
            "batch",
            "--no-progress",
            "--input",
            str(questions),
            "--output",
            str(answers),
            "--store",
            str(out_dir / "store"),
            *flags,
            *args.extra,
            code=args.code,
        )
        wall = round(time.monotonic() - started, 1)
        if done.returncode != 0:
            results[name] = {"error": done.stderr.strip()[-2000:], "wall_s": wall}
            continue
        verified = feedit("verify", "--questions", str(questions), "--answers", str(answers))
        if verified.returncode != 0:
            results[name] = {"error": verified.stderr.strip()[-2000:], "wall_s": wall}
            continue
        v = json.loads(verified.stdout)
        results[name] = {
            k: v[k]
            for k in (
                "prompt_strict",
                "prompt_loose",
                "instruction_strict",
                "instruction_loose",
                "mean_tokens",
                "headroom",
            )
        } | {"wall_s": wall}
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
