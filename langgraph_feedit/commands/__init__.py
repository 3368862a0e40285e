"""The ``feedit`` command line: one module per subcommand, each with ``register(subparsers)``.

A command's module adds its parser (arguments added when the parser is first used, see
:class:`~langgraph_feedit.commands.options.CommandParser`) and sets ``func``, the function
that runs it and returns the exit status. Each command imports the modules that do its work
when it runs: ``feedit --help`` and ``--version`` load neither LangGraph nor the configuration
models, and no command loads the ``train``, ``serve`` or ``eval`` extras it does not use.

New subcommands go in a module of their own, its ``register`` named in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from langgraph_feedit import __version__
from langgraph_feedit.commands import (
    batch,
    export,
    judge,
    markdown_info,
    run,
    score,
    serve,
    sweep,
    train,
    verify,
    view,
)
from langgraph_feedit.commands.options import CommandParser
from langgraph_feedit.errors import FeeditError, UserError

if TYPE_CHECKING:
    from langgraph_feedit.commands.options import Subcommands

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: tuple[Callable[[Subcommands], None], ...] = (
    run.register,
    batch.register,
    export.register,
    judge.register,
    score.register,
    markdown_info.register,
    sweep.register,
    serve.register,
    view.register,
    verify.register,
    train.register,
)
"""Each subcommand's ``register``, in the order ``feedit --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The top parser, with every command of :data:`COMMANDS` registered."""
    parser = argparse.ArgumentParser(
        prog="feedit",
        description=(
            "Draft, critique, edit and judge answers with OpenAI-compatible endpoints. "
            "With no configuration every role uses the embedded endpoint "
            "(SmolLM2-135M-Instruct on llama.cpp, offline)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"feedit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for the caller's mistakes)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        status: int = args.func(args)
    except UserError as exc:
        print(f"feedit: error: {exc}", file=sys.stderr)
        return 2
    except FeeditError as exc:
        print(f"feedit: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:  # an optional extra is missing; the message says which
        print(f"feedit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return status
