"""``feedit view``: trace pages from a trace file or a batch's answers file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langgraph_feedit.commands.options import Subcommands

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    """Add ``feedit view``."""
    sub.add_parser(
        "view",
        help="draw a trace, or a whole batch, as self-contained HTML pages",
        description=(
            "Write the page of one run's tree (conversation, answer, usage per role, a "
            "timeline of the calls, the tree with the selected path, each edit as a word diff "
            "beside its critique), or, for a batch's answers file, an index with one sortable "
            "row per prompt and a page per prompt. The pages load nothing from the network."
        ),
        epilog=(
            "examples:\n"
            '  feedit run --trace trace.json "..." && feedit view trace.json -o trace.html\n'
            "  feedit view answers.jsonl -o pages/   # then open pages/index.html"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        arguments=_arguments,
    ).set_defaults(func=run)


def _arguments(view: argparse.ArgumentParser) -> None:
    view.add_argument(
        "input",
        type=Path,
        help="a trace (feedit run --trace) or an answers file (feedit batch --output)",
    )
    view.add_argument(
        "-o",
        "--output",
        type=Path,
        help="the page to write (a trace; default: INPUT with .html) or the folder (a batch; "
        "default: INPUT-pages/)",
    )
    view.add_argument("--title", help="the page's title")


def run(args: argparse.Namespace) -> int:
    """Write the pages; returns the exit status.

    Raises:
        InputError: the input cannot be read or is not a trace or answers file.
    """
    from langgraph_feedit.errors import InputError
    from langgraph_feedit.view import (
        default_output,
        is_single_trace,
        write_batch_pages,
        write_trace_page,
    )

    source: Path = args.input
    if not source.is_file():
        raise InputError("no such file", path=str(source))
    if is_single_trace(source):
        out = args.output or default_output(source, batch=False)
        if out.is_dir():
            out = out / (source.stem + ".html")
        write_trace_page(source, out, title=args.title)
        print(out)
        return 0
    out = args.output or default_output(source, batch=True)
    if out.exists() and not out.is_dir():
        raise InputError(
            "an answers file makes a folder of pages: -o must name a folder", path=str(out)
        )
    rows = write_batch_pages(source, out, title=args.title)
    pages = sum(1 for r in rows if r.get("href"))
    print(f"{out / 'index.html'} ({pages} page(s), {len(rows)} prompt(s))", file=sys.stdout)
    return 0
