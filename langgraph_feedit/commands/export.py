"""``feedit export``: Arena-Hard answers, a node table or one trace from a batch's output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langgraph_feedit.commands.options import Subcommands

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    """Add ``feedit export``."""
    sub.add_parser(
        "export",
        help="export a batch's answers: Arena-Hard answers, a node table, one trace",
        description="Export from a `feedit batch` output file.",
        arguments=_arguments,
    ).set_defaults(func=run)


def _arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("answers", type=Path, help="a `feedit batch` output file")
    what = cmd.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--arena-hard",
        type=Path,
        metavar="FILE",
        help="an Arena-Hard answer file; its stem is the model name (model_answer/NAME.jsonl)",
    )
    what.add_argument("--nodes", type=Path, metavar="FILE", help="every node, one JSON line each")
    what.add_argument("--trace", metavar="ID", help="print one prompt's trace as JSON")


def run(args: argparse.Namespace) -> int:
    """Write or print what was asked; 1 when failed prompts were left out."""
    from langgraph_feedit import exports

    if args.trace is not None:
        print(json.dumps(exports.find_trace(args.answers, args.trace), ensure_ascii=False))
    elif args.nodes is not None:
        count = exports.export_nodes(args.answers, args.nodes)
        print(f"{count} node(s) written to {args.nodes}", file=sys.stderr)
    else:
        written, missing = exports.export_arena_answers(args.answers, args.arena_hard)
        print(f"{written} answer(s) written to {args.arena_hard}", file=sys.stderr)
        partial = [
            str(r["id"])
            for _, r in exports.read_answers_file(args.answers)
            if r["status"] == "partial"
        ]
        if partial:
            print(
                f"{len(partial)} of them partial (some branch failed or went unscored; rerun "
                f"the batch to complete them): {', '.join(partial[:20])}"
                + (" ..." if len(partial) > 20 else ""),
                file=sys.stderr,
            )
        if missing:
            print(
                f"left out {len(missing)} failed prompt(s): {', '.join(missing)}", file=sys.stderr
            )
            return 1
    return 0
