"""``feedit run``: answer one prompt with the graph, the tree on standard error."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from langgraph_feedit.commands.options import add_config_options, overrides_from_args
from langgraph_feedit.defaults import CALL_TIMEOUT_S, FIRST_BYTE_TIMEOUT_S, MAX_RETRIES
from langgraph_feedit.errors import UserError

if TYPE_CHECKING:
    from langgraph_feedit.commands.options import Subcommands

__all__ = ["progress_line", "register", "run"]


def register(sub: Subcommands) -> None:
    """Add ``feedit run``."""
    sub.add_parser(
        "run",
        help="answer one prompt",
        description="Answer one prompt with the draft-critique-edit-judge graph.",
        epilog=(
            "examples:\n"
            '  feedit run "Explain CRDTs in three sentences."\n'
            '  feedit run --preset best-of-n --drafts 8 "Name a prime above 100."\n'
            "  feedit run --base-url http://127.0.0.1:8000/v1 --model my-model "
            '--critique-model my-critic "..."\n'
            '  feedit run --set roles.judge.kind=reward --set depth.stop_score=0.9 "..."\n'
            "\n"
            "time:\n"
            f"  each call waits up to {CALL_TIMEOUT_S:g} s in all (roles.*.timeout), a streamed "
            f"one {FIRST_BYTE_TIMEOUT_S:g} s for its\n"
            "  first token (roles.*.first_byte_timeout); a timeout, a lost connection, a 429 "
            f"or a 5xx is\n  retried up to {MAX_RETRIES} times (roles.*.max_retries), each "
            "retry said on standard error.\n"
            "  --deadline S answers with the best candidate so far after S seconds."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        arguments=_arguments,
    ).set_defaults(func=run)


def _arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("prompt", help="the prompt; '-' reads it from standard input")
    cmd.add_argument("--system", help="a system message before the prompt")
    add_config_options(cmd)
    cmd.add_argument("--trace", type=Path, help="write the run's trace (JSON) to this file")
    cmd.add_argument("--json", action="store_true", help="print the answer and trace as JSON")
    cmd.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="progress on standard error: a line per call of every branch as it starts, "
        "ends, is scored or fails",
    )
    cmd.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the answer (no tree on standard error)",
    )


def run(args: argparse.Namespace) -> int:
    """Answer the prompt; returns the exit status."""
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from langgraph_feedit.graph import create_feedit_graph
    from langgraph_feedit.inputs import decode_text
    from langgraph_feedit.state import Trace

    # Bytes, decoded here: an undecodable stdin is the user's input error, named by line.
    prompt = (
        decode_text(sys.stdin.buffer.read(), path="<stdin>") if args.prompt == "-" else args.prompt
    )
    if not prompt.strip():
        raise UserError("the prompt is empty")
    from langgraph_feedit.config import FeeditConfig

    config = FeeditConfig.load(args.config, overrides=overrides_from_args(args))
    graph = create_feedit_graph(config).compile()
    messages: list[Any] = []
    if args.system:
        messages.append(("system", args.system))
    messages.append(("user", prompt))
    out: dict[str, Any] | None = None
    started = time.monotonic()
    # With -v, the branches' own events too: they run in subgraphs, whose events LangGraph
    # streams only with ``subgraphs=True`` (the top level's values come with an empty ns).
    async for item in graph.astream(
        {"messages": messages}, stream_mode=["custom", "values"], subgraphs=args.verbose
    ):
        ns, mode, chunk = item if args.verbose else ((), *item)
        if mode == "custom" and args.verbose and isinstance(chunk, dict) and "feedit" in chunk:
            line = progress_line(chunk["feedit"], time.monotonic() - started)
            print(line, file=sys.stderr, flush=True)
        elif mode == "values" and not ns:
            out = cast(dict[str, Any], chunk)
    assert out is not None and "trace" in out
    trace = Trace.model_validate(out["trace"])
    if args.trace:
        args.trace.write_text(trace.model_dump_json(indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(trace.model_dump(mode="json"), ensure_ascii=False))
    else:
        print(trace.answer, flush=True)
    if not args.quiet:
        _print_tree(trace, args.trace)
    return 0


def progress_line(event: dict[str, Any], elapsed: float) -> str:
    """One progress event as a line for a terminal or a log: the time since the start, the
    tree node, what happened, and what came with it (tokens, a score, an error)."""
    what = event.get("event", "?")
    node = event.get("id") or "-"
    kind = event.get("kind") or ""
    details = []
    for key in ("tokens", "score", "best_score", "stopped", "calls", "error", "wall_s"):
        value = event.get(key)
        if value is None:
            continue
        if isinstance(value, float):
            value = f"{value:.3f}"
        details.append(f"{key}={value}")
    head = f"{elapsed:7.2f}s  {node:<14} {kind:<9} {what}"
    return f"{head}  {' '.join(details)}".rstrip()


def _print_tree(trace: Any, written: Path | None) -> None:
    """Why this answer: the tree, one line per node, on standard error (see ``view.text``)."""
    from langgraph_feedit.view.text import tree_lines

    width = max(60, shutil.get_terminal_size((100, 20)).columns)
    lines = ["", f"tree ({trace.judge} judge; > marks the selected answer):"]
    lines += tree_lines(trace, width=width)
    if written is not None:
        lines.append(f"trace: {written}; its page: feedit view {written}")
    else:
        lines.append(
            "the whole tree as a page: add --trace trace.json, then feedit view trace.json"
        )
    print("\n".join(lines), file=sys.stderr, flush=True)
