"""``feedit sweep``: answer, judge and score a grid of settings; a table and a plot."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from langgraph_feedit.commands.options import (
    add_config_options,
    categories,
    confidence,
    overrides_from_args,
    warn,
)

if TYPE_CHECKING:
    from langgraph_feedit.commands.options import Subcommands

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    """Add ``feedit sweep``."""
    sub.add_parser(
        "sweep",
        help="answer, judge and score a grid of settings; a table and a plot",
        description=(
            "Run every point of a grid through one call cache (the curve costs what its "
            "largest point costs), judge each against the baseline, score, and write "
            "sweep.csv, sweep.png and report.md."
        ),
        epilog=(
            "example:\n  feedit sweep --questions q.jsonl --baseline gpt-4-0314.jsonl "
            '--grid "preset=feedback-edit; drafts=1,2,4,8; critiques=1,2; edits=1" '
            "--output sweep/"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        arguments=_arguments,
    ).set_defaults(func=run)


def _arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--questions", type=Path, required=True, help="question.jsonl")
    cmd.add_argument(
        "--baseline",
        action="append",
        metavar="[CATEGORY=]FILE",
        help=(
            "the baseline's answers, FILE for all or CATEGORY=FILE for one (repeatable); "
            "default: arena-hard-auto's baseline of each category in model_answer/ beside "
            "--questions. The swept questions must share one baseline (see --category)"
        ),
    )
    cmd.add_argument(
        "--category",
        action="append",
        metavar="CATEGORY[,CATEGORY...]",
        help="only questions of these categories (v2.0: one baseline's, e.g. hard_prompt)",
    )
    cmd.add_argument("--grid", required=True, help='e.g. "preset=best-of-n; drafts=1,2,4"')
    cmd.add_argument("--output", type=Path, required=True, help="the sweep's folder")
    cmd.add_argument("--limit", type=int, help="only the first N questions")
    cmd.add_argument("--bootstrap", type=int, default=100, help="bootstrap rounds")
    cmd.add_argument(
        "--scorer",
        choices=("arena", "verify"),
        default="arena",
        help="arena: judged against --baseline; verify: IFEval-format --questions, checked",
    )
    cmd.add_argument(
        "--confidence",
        type=float,
        default=0.90,
        help="the intervals' coverage, a fraction or percent (default 0.90, as arena-hard-auto)",
    )
    add_config_options(cmd)


def run(args: argparse.Namespace) -> int:
    """Run the grid and write its table, plot and report."""
    return asyncio.run(_sweep(args))


async def _sweep(args: argparse.Namespace) -> int:
    from langgraph_feedit.evaluate import require_extra

    require_extra()
    from langgraph_feedit.evaluate.baselines import parse_baseline_args
    from langgraph_feedit.evaluate.sweep import run_sweep

    coverage = confidence(args.confidence)
    baselines = parse_baseline_args(args.baseline, files=True)
    from langgraph_feedit.config import FeeditConfig

    config = FeeditConfig.load(args.config, overrides=overrides_from_args(args))
    result = await run_sweep(
        config,
        questions=args.questions,
        baseline=baselines,
        grid=args.grid,
        output=args.output,
        limit=args.limit,
        rounds=args.bootstrap,
        confidence=coverage,
        categories=categories(args.category),
        warn=warn,
        scorer=args.scorer,
    )
    for row in result["rows"]:
        score = "n/a" if row["score"] is None else f"{row['score']:.1f}"
        print(f"{row['point']}: {score} ({row['mean_tokens']:.0f} tokens/prompt)")
    print(
        f"{result['calls_made']} model call(s) made; wrote {args.output / 'sweep.csv'},"
        " sweep.png, report.md",
        file=sys.stderr,
    )
    return 0
