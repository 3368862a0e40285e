"""``feedit markdown-info``: the metadata style control needs, added to answer files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from langgraph_feedit.commands.options import warn

if TYPE_CHECKING:
    from langgraph_feedit.commands.options import Subcommands

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    """Add ``feedit markdown-info``."""
    sub.add_parser(
        "markdown-info",
        help="add the metadata style control needs to Arena-Hard answer files",
        description=(
            "Write answers with the metadata arena-hard-auto's add_markdown_info.py adds "
            "(token_len and header, list and bold counts, fenced code left out), so that "
            "`feedit score --answers-dir` can control for style. Other fields are kept."
        ),
        epilog=(
            "token_len: arena-hard-auto counts the answer in tiktoken's gpt-4o encoding "
            "(--token-len tiktoken, read offline from tiktoken's cache or --tiktoken-file, "
            "never downloaded); `feedit export --arena-hard` writes the endpoint's completion "
            "tokens (reasoning included, the endpoint's tokenizer). Count every file scored "
            "together the same way.\n"
            "examples:\n"
            "  feedit markdown-info model_answer --in-place --token-len words\n"
            "  feedit markdown-info gpt-4-0314.jsonl --output model_answer/gpt-4-0314.jsonl"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        arguments=_arguments,
    ).set_defaults(func=run)


def _arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("source", type=Path, help="an answer file or a model_answer folder")
    where = cmd.add_mutually_exclusive_group(required=True)
    where.add_argument("--output", type=Path, help="the file (or folder) to write")
    where.add_argument("--in-place", action="store_true", help="replace the source files")
    cmd.add_argument(
        "--token-len",
        choices=("tiktoken", "words", "chars", "keep"),
        default="tiktoken",
        help=(
            "how token_len is counted: tiktoken's gpt-4o encoding as arena-hard-auto "
            "(default), whitespace words, characters, or keep the file's own"
        ),
    )
    cmd.add_argument(
        "--tiktoken-file", type=Path, help="the o200k_base.tiktoken encoding file to count with"
    )


def run(args: argparse.Namespace) -> int:
    from langgraph_feedit.evaluate.markdown_info import add_markdown_info

    output = args.source if args.in_place else args.output
    summary = add_markdown_info(
        args.source,
        output,
        token_len=args.token_len,
        tiktoken_file=args.tiktoken_file,
        warn=warn,
    )
    print(
        f"{summary.answers} answer(s) in {summary.files} file(s) written to {output}"
        f" (token_len: {args.token_len})",
        file=sys.stderr,
    )
    return 0
