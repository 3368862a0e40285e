"""``feedit score``: Arena-Hard scores with bootstrap intervals from judgment files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from langgraph_feedit.commands.options import categories, confidence, warn
from langgraph_feedit.errors import UserError

if TYPE_CHECKING:
    from langgraph_feedit.commands.options import Subcommands

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    """Add ``feedit score``."""
    sub.add_parser(
        "score",
        help="Arena-Hard scores with bootstrap intervals from judgment files",
        description="Bradley-Terry win rates against the baseline, as arena-hard-auto computes.",
        arguments=_arguments,
    ).set_defaults(func=run)


def _arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "judgments",
        type=Path,
        help="a judgment file, a folder of them, or a bench folder holding model_judgment/",
    )
    cmd.add_argument(
        "--baseline",
        action="append",
        metavar="[CATEGORY=]MODEL",
        help=(
            "the baseline of judgments that name none (v0.1 files), MODEL for all or "
            "CATEGORY=MODEL for one (repeatable); judgments that name one must agree"
        ),
    )
    cmd.add_argument(
        "--category",
        action="append",
        metavar="CATEGORY[,CATEGORY...]",
        help=(
            "score only these question categories (default: all; each baseline's categories "
            "are scored apart, as arena-hard-auto v2.0 does)"
        ),
    )
    cmd.add_argument("--answers-dir", type=Path, help="model_answer folder, for style control")
    cmd.add_argument("--bootstrap", type=int, default=100, help="bootstrap rounds")
    cmd.add_argument("--seed", type=int, default=42, help="bootstrap seed")
    cmd.add_argument(
        "--confidence",
        type=float,
        default=0.90,
        help=(
            "the intervals' coverage, as a fraction or percent (default 0.90: arena-hard-auto "
            "v2.0's 5th to 95th percentile; 0.95 is v0.1's)"
        ),
    )
    cmd.add_argument("--json", type=Path, dest="json_out", help="write the scores as JSON")
    cmd.add_argument("--csv", type=Path, help="write the scores as CSV")


def run(args: argparse.Namespace) -> int:
    from langgraph_feedit.evaluate import require_extra

    require_extra()
    from langgraph_feedit.evaluate.baselines import parse_baseline_args
    from langgraph_feedit.evaluate.records import (
        metadata_from_answers,
        read_answer_dir,
        read_judgments,
    )
    from langgraph_feedit.evaluate.report import reports_to_csv, reports_to_json
    from langgraph_feedit.evaluate.scoring import score_by_baseline

    coverage = confidence(args.confidence)
    if args.bootstrap < 1:
        raise UserError(f"--bootstrap {args.bootstrap}: expected at least 1 round")
    source: Path = args.judgments
    if source.is_dir() and (source / "model_judgment").is_dir():
        source = source / "model_judgment"  # arena-hard-auto's data/<bench> folder
    files = sorted(source.rglob("*.jsonl")) if source.is_dir() else [source]
    if not files:
        raise UserError(f"no judgment files (*.jsonl) in {source}")
    judgments = [j for f in files for j in read_judgments(f)]
    metadata = (
        metadata_from_answers(read_answer_dir(args.answers_dir)) if args.answers_dir else None
    )
    reports = score_by_baseline(
        judgments,
        baseline=parse_baseline_args(args.baseline),
        categories=categories(args.category),
        metadata=metadata,
        rounds=args.bootstrap,
        seed=args.seed,
        confidence=coverage,
    )
    print("\n\n".join(report.table() for report in reports))
    for report in reports:
        for message in report.warnings:
            warn(message)
    if args.json_out:
        args.json_out.write_text(reports_to_json(reports), encoding="utf-8")
    if args.csv:
        args.csv.write_text(reports_to_csv(reports), encoding="utf-8")
    return 0
