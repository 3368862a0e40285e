"""``feedit verify``: score answers to IFEval-format prompts with IFEval's checkers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langgraph_feedit.commands.options import Subcommands

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    """Add ``feedit verify``."""
    sub.add_parser(
        "verify",
        help="score answers to instruction-following prompts with IFEval's checkers",
        description=(
            "Check each answer against its prompt's verifiable instructions (IFEval's "
            "checkers, from the if-verifiable package) and print one JSON object: "
            "prompt_strict, prompt_loose, instruction_strict, instruction_loose, the rates "
            "per instruction, and mean_tokens per prompt when the answers are feedit batch "
            "output. Answers are joined to questions by id (the question's 'key')."
        ),
        epilog=(
            "example:\n  feedit batch --input prompts.jsonl --output answers.jsonl\n"
            "  feedit verify --questions prompts.jsonl --answers answers.jsonl"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        arguments=_arguments,
    ).set_defaults(func=run)


def _arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--questions",
        type=Path,
        required=True,
        help="IFEval-format JSONL: key, prompt, instruction_id_list, kwargs",
    )
    cmd.add_argument(
        "--answers",
        type=Path,
        required=True,
        help="feedit batch output, or an arena-style answer file (uid, messages)",
    )
    cmd.add_argument(
        "--per-prompt", action="store_true", help="also list each prompt's strict/loose result"
    )


def run(args: argparse.Namespace) -> int:
    """Print the verification result as one JSON object; 0 on success."""
    from langgraph_feedit.evaluate.verify import dump, verify_files

    result = verify_files(args.questions, args.answers)
    if not args.per_prompt:
        result.pop("per_prompt", None)
    print(dump(result))
    return 0
