"""``feedit batch``: answer every prompt of a file, in process or on a LangGraph server."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from langgraph_feedit.commands.options import add_config_options, overrides_from_args
from langgraph_feedit.errors import UserError

if TYPE_CHECKING:
    from langgraph_feedit.batch_output import BatchOptions, BatchSummary
    from langgraph_feedit.commands.options import Subcommands

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    """Add ``feedit batch``."""
    sub.add_parser(
        "batch",
        help="answer every prompt of a file, resumably",
        description=(
            "Answer every prompt of a file. Checkpoints and a call cache live in the store "
            "folder, so running the same command again resumes where it stopped and never "
            "pays twice for a call."
        ),
        epilog=(
            'input lines: Arena-Hard questions ({"uid", "prompt"}), '
            '{"id", "messages": [...]}, or plain text, one prompt a line.\n'
            "examples:\n"
            "  feedit batch --input question.jsonl --output answers.jsonl --drafts 4\n"
            "  feedit batch --input q.jsonl --output part0.jsonl --shard 0/4 "
            "--store /shared/feedit\n"
            "  feedit batch --input q.jsonl --output answers.jsonl --server "
            "http://127.0.0.1:2024 --preset best-of-n --drafts 8\n"
            "exit status: 0 every prompt answered in full; 3 every prompt answered, some "
            "partially (a branch failed or a candidate went unscored: run the same command "
            "again to make only the missing calls); 1 some prompt failed; 2 a usage or "
            "configuration error (nothing run)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        arguments=_arguments,
    ).set_defaults(func=run)


def _arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--input", type=Path, required=True, help="the prompts file")
    cmd.add_argument("--output", type=Path, required=True, help="answers, one JSON line each")
    cmd.add_argument(
        "--format", choices=("auto", "jsonl", "text"), default="auto", help="input format"
    )
    cmd.add_argument("--store", type=Path, help="checkpoint and cache folder (default .feedit)")
    cmd.add_argument("--checkpoint-url", help="postgresql://... checkpointer shared by machines")
    cmd.add_argument("--cache-url", help="redis://... call cache shared by machines")
    cmd.add_argument("--shard", help="i/N: run a deterministic slice (0 <= i < N)")
    cmd.add_argument("--limit", type=int, help="only the first N prompts")
    cmd.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="bad input lines: stop before running (default), or skip and list them",
    )
    cmd.add_argument("--traces", type=Path, help="write traces to DIR/<id>.json")
    cmd.add_argument("--concurrency", type=int, help="prompts in flight at once")
    cmd.add_argument("--fresh", action="store_true", help="draw new samples; reuse no cached call")
    cmd.add_argument(
        "--no-progress", action="store_true", help="no progress display on standard error"
    )
    cmd.add_argument(
        "--progress-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="off a terminal, a progress line at least this often (default 60), besides one "
        "as each tenth of the prompts is done",
    )
    cmd.add_argument(
        "--no-store",
        action="store_true",
        help="run without checkpoints or call cache (nothing to resume from, nothing reused)",
    )
    cmd.add_argument(
        "--server",
        metavar="URL",
        help="run every prompt on this LangGraph server (a deployment, or `langgraph dev` "
        "serving graphs/langgraph.json): the server's endpoints and keys answer",
    )
    cmd.add_argument(
        "--assistant",
        help="with --server: the assistant or graph to run (default: the --preset, else "
        "feedback-edit)",
    )
    cmd.add_argument(
        "--server-key-env",
        metavar="NAME",
        help="with --server: the variable holding the deployment's key (sent as x-api-key)",
    )
    add_config_options(cmd)


def run(args: argparse.Namespace) -> int:
    """Answer the file's prompts; returns the exit status the summary gives."""
    return asyncio.run(_batch(args))


async def _batch(args: argparse.Namespace) -> int:
    from langgraph_feedit.batch import BatchOptions, parse_shard, run_batch
    from langgraph_feedit.config import FeeditConfig

    if args.server is None:
        for flag, attr in (("--assistant", "assistant"), ("--server-key-env", "server_key_env")):
            if getattr(args, attr) is not None:
                raise UserError(f"{flag} goes with --server URL")
    options = BatchOptions(
        input=args.input,
        output=args.output,
        store=args.store,
        input_format=args.format,
        shard=parse_shard(args.shard) if args.shard else None,
        limit=args.limit,
        on_error=args.on_error,
        traces=args.traces,
        concurrency=args.concurrency,
        fresh=args.fresh,
        progress=False if args.no_progress else None,
        progress_interval=args.progress_interval,
        durable=not args.no_store,
    )
    if args.server is not None:
        summary = await _server_batch(args, options)
    else:
        config = FeeditConfig.load(args.config, overrides=overrides_from_args(args))
        summary = await run_batch(config, options)
    for line in summary.lines():
        print(line, file=sys.stderr)
    return summary.exit_code


async def _server_batch(args: argparse.Namespace, options: BatchOptions) -> BatchSummary:
    """``feedit batch --server``: the flags that tune a run become each run's context; what
    only the server may decide (endpoints, keys, its store) is refused in one line."""
    from langgraph_feedit.server_batch import ServerOptions, run_server_batch

    given = [
        flag
        for flag, value in (
            ("--config", args.config),
            ("--store", args.store),
            ("--no-store", args.no_store),
            ("--embedded-model", args.embedded_model),
        )
        if value
    ]
    if given:
        raise UserError(
            f"{given[0]} does not go with --server: the server's own configuration decides "
            "its endpoints, keys and store; per-run settings go in flags or --set"
        )
    context = overrides_from_args(args)
    preset = context.pop("preset", None)
    server = ServerOptions(
        url=args.server,
        assistant=args.assistant or preset or "feedback-edit",
        context=context,
        key_env=args.server_key_env,
    )
    return await run_server_batch(options, server)
