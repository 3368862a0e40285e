"""``feedit judge``: Arena-Hard judging of an answer file against a baseline."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from langgraph_feedit.commands.options import add_config_options, overrides_from_args, warn

if TYPE_CHECKING:
    from langgraph_feedit.commands.options import Subcommands

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    """Add ``feedit judge``."""
    sub.add_parser(
        "judge",
        help="Arena-Hard judging of an answer file against a baseline",
        description=(
            "Judge answers against a baseline the way arena-hard-auto does (two games per "
            "question, positions swapped) with the evaluator role. Resumable: a rerun judges "
            "only what is missing."
        ),
        arguments=_arguments,
    ).set_defaults(func=run)


def _arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--questions", type=Path, required=True, help="question.jsonl")
    cmd.add_argument("--answers", type=Path, required=True, help="model_answer/MODEL.jsonl")
    cmd.add_argument(
        "--baseline",
        action="append",
        metavar="[CATEGORY=]FILE",
        help=(
            "the baseline's answers: FILE for every category, CATEGORY=FILE for one "
            "(repeatable); default: arena-hard-auto's baseline of each category beside "
            "--answers (v2.0: o3-mini-2025-01-31.jsonl for hard_prompt, "
            "gemini-2.0-flash-001.jsonl for creative_writing; v0.1: gpt-4-0314.jsonl)"
        ),
    )
    cmd.add_argument("--output", type=Path, required=True, help="model_judgment folder")
    cmd.add_argument("--judge-name", help="the judge's name in the files (default: its model)")
    cmd.add_argument("--concurrency", type=int, help="questions judged at once")
    add_config_options(cmd)


def run(args: argparse.Namespace) -> int:
    """Judge what is missing; 1 when some judge call failed."""
    return asyncio.run(_judge(args))


async def _judge(args: argparse.Namespace) -> int:
    from langgraph_feedit.evaluate.baselines import parse_baseline_args
    from langgraph_feedit.evaluate.judge import judge_answers

    baselines = parse_baseline_args(args.baseline, files=True)
    from langgraph_feedit.config import FeeditConfig

    config = FeeditConfig.load(args.config, overrides=overrides_from_args(args))
    summary = await judge_answers(
        config,
        questions=args.questions,
        answers=args.answers,
        baseline=baselines,
        output=args.output,
        judge_name=args.judge_name,
        concurrency=args.concurrency,
        warn=warn,
    )
    for line in summary.lines():
        print(line, file=sys.stderr)
    return 1 if summary.failed else 0
