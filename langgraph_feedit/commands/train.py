"""``feedit train feedback|edit|select``: the command line of :mod:`langgraph_feedit.train`."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph_feedit.errors import ConfigError

if TYPE_CHECKING:
    from langgraph_feedit.commands.options import Subcommands

__all__ = ["register", "run"]

# Flags that map one to one onto TrainSettings fields (flag -> field).
_FLAGS: dict[str, tuple[type, str]] = {
    "source": (str, "the files' schema: auto, helpsteer3, batch or pairs (default auto)"),
    "base_model": (Path, "GGUF file or Hugging Face folder (default SmolLM2-135M-Instruct)"),
    "template": (str, "template set the role will use: generic, nemotron or a .toml path"),
    "principle": (str, "select: the principle of the Yes/No question"),
    "min_gain": (float, "batch traces: least judged gain of an edit over its parent to keep"),
    "max_examples": (int, "use at most this many examples"),
    "max_steps": (int, "optimizer steps (default: one epoch)"),
    "epochs": (float, "epochs (default 1)"),
    "batch_size": (int, "examples (select: pairs) per device and step (default 4)"),
    "grad_accum": (int, "gradient accumulation steps (default 1)"),
    "learning_rate": (float, "peak learning rate (default 2e-5)"),
    "max_length": (int, "tokens per example (default 1024)"),
    "lora_r": (int, "LoRA rank (with --lora)"),
    "save_steps": (int, "checkpoint every N steps (default 50)"),
    "seed": (int, "random seed"),
    "cache_dir": (Path, "where the trainable copy of a GGUF base is kept"),
}


def register(sub: Subcommands) -> None:
    """Add ``feedit train``."""
    sub.add_parser(
        "train",
        help="train a dedicated feedback, edit or select model",
        description=(
            "Fine-tune a feedback (critique), edit or select (judge) model on HelpSteer3 rows, "
            "feedit batch traces or preference pairs, rendered with the template set the role "
            "uses at inference; export it to GGUF for the embedded server "
            "(roles.<role>.embedded_model = OUTPUT/model.gguf). Needs the 'train' extra. "
            "For many GPUs or machines run it under `accelerate launch -m langgraph_feedit.cli`."
        ),
        arguments=_arguments,
    ).set_defaults(func=run)


def _arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("task", choices=("feedback", "edit", "select"))
    cmd.add_argument("data", nargs="+", type=Path, help="JSONL or parquet files")
    cmd.add_argument("--output", "-o", type=Path, required=True, help="the run's folder")
    cmd.add_argument("--settings", type=Path, help="a TOML file of settings (flags win)")
    for name, (kind, text) in _FLAGS.items():
        cmd.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, help=text)
    cmd.add_argument("--lora", action="store_true", default=None, help="train LoRA adapters")
    cmd.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    cmd.add_argument("--no-export", action="store_true", help="do not write model.gguf")
    cmd.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` say; prints the run record's path and figures."""
    from langgraph_feedit.train import require_extra

    require_extra()
    from langgraph_feedit.train.settings import settings_from
    from langgraph_feedit.train.trainers import train

    data: dict[str, Any] = {}
    if args.settings is not None:
        try:
            data = tomllib.loads(args.settings.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"cannot read {args.settings}: {exc}", source=str(args.settings)
            ) from None
    data.update({"task": args.task, "data": list(args.data), "output": args.output})
    for name in (*_FLAGS, "lora"):
        value = getattr(args, name, None)
        if value is not None:
            data[name] = value
    if args.resume:
        data["resume"] = True
    if args.no_export:
        data["export_gguf"] = False
    if args.no_progress:
        data["progress"] = False
    settings = settings_from(data, str(args.settings) if args.settings else "arguments")
    record = train(settings)
    out = {
        "record": str(settings.output / "run.json"),
        "gguf": record.get("gguf"),
        **record.get("figures", {}),
    }
    print(json.dumps(out), file=sys.stdout)
    return 0
