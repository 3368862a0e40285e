"""The ``feedit`` command line. Thin: it builds a configuration and calls the graph."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from langgraph_feedit import __version__, verify_cli
from langgraph_feedit.defaults import CALL_TIMEOUT_S, FIRST_BYTE_TIMEOUT_S, MAX_RETRIES
from langgraph_feedit.errors import ConfigError, FeeditError, UserError, register_secret
from langgraph_feedit.presets import PRESETS

if TYPE_CHECKING:
    from langgraph_feedit.batch_output import BatchOptions, BatchSummary

# The configuration models, LangGraph and the rest are imported by the commands that use them:
# `feedit --version` and `--help` load none of them.

__all__ = ["build_parser", "main"]

_JUDGES = ("principle", "reward", "llm", "pairwise", "consensus")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedit",
        description=(
            "Draft, critique, edit and judge answers with OpenAI-compatible endpoints. "
            "With no configuration every role uses the embedded endpoint "
            "(SmolLM2-135M-Instruct on llama.cpp, offline)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"feedit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
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
    )
    run.add_argument("prompt", help="the prompt; '-' reads it from standard input")
    run.add_argument("--system", help="a system message before the prompt")
    _config_options(run)
    run.add_argument("--trace", type=Path, help="write the run's trace (JSON) to this file")
    run.add_argument("--json", action="store_true", help="print the answer and trace as JSON")
    run.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="progress on standard error: a line per call of every branch as it starts, "
        "ends, is scored or fails",
    )
    run.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the answer (no tree on standard error)",
    )

    batch = sub.add_parser(
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
    )
    batch.add_argument("--input", type=Path, required=True, help="the prompts file")
    batch.add_argument("--output", type=Path, required=True, help="answers, one JSON line each")
    batch.add_argument(
        "--format", choices=("auto", "jsonl", "text"), default="auto", help="input format"
    )
    batch.add_argument("--store", type=Path, help="checkpoint and cache folder (default .feedit)")
    batch.add_argument("--checkpoint-url", help="postgresql://... checkpointer shared by machines")
    batch.add_argument("--cache-url", help="redis://... call cache shared by machines")
    batch.add_argument("--shard", help="i/N: run a deterministic slice (0 <= i < N)")
    batch.add_argument("--limit", type=int, help="only the first N prompts")
    batch.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="bad input lines: stop before running (default), or skip and list them",
    )
    batch.add_argument("--traces", type=Path, help="write traces to DIR/<id>.json")
    batch.add_argument("--concurrency", type=int, help="prompts in flight at once")
    batch.add_argument(
        "--fresh", action="store_true", help="draw new samples; reuse no cached call"
    )
    batch.add_argument(
        "--no-progress", action="store_true", help="no progress display on standard error"
    )
    batch.add_argument(
        "--progress-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="off a terminal, a progress line at least this often (default 60), besides one "
        "as each tenth of the prompts is done",
    )
    batch.add_argument(
        "--no-store",
        action="store_true",
        help="run without checkpoints or call cache (nothing to resume from, nothing reused)",
    )
    batch.add_argument(
        "--server",
        metavar="URL",
        help="run every prompt on this LangGraph server (a deployment, or `langgraph dev` "
        "serving graphs/langgraph.json): the server's endpoints and keys answer",
    )
    batch.add_argument(
        "--assistant",
        help="with --server: the assistant or graph to run (default: the --preset, else "
        "feedback-edit)",
    )
    batch.add_argument(
        "--server-key-env",
        metavar="NAME",
        help="with --server: the variable holding the deployment's key (sent as x-api-key)",
    )
    _config_options(batch)

    export = sub.add_parser(
        "export",
        help="export a batch's answers: Arena-Hard answers, a node table, one trace",
        description="Export from a `feedit batch` output file.",
    )
    export.add_argument("answers", type=Path, help="a `feedit batch` output file")
    what = export.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--arena-hard",
        type=Path,
        metavar="FILE",
        help="an Arena-Hard answer file; its stem is the model name (model_answer/NAME.jsonl)",
    )
    what.add_argument("--nodes", type=Path, metavar="FILE", help="every node, one JSON line each")
    what.add_argument("--trace", metavar="ID", help="print one prompt's trace as JSON")

    judge = sub.add_parser(
        "judge",
        help="Arena-Hard judging of an answer file against a baseline",
        description=(
            "Judge answers against a baseline the way arena-hard-auto does (two games per "
            "question, positions swapped) with the evaluator role. Resumable: a rerun judges "
            "only what is missing."
        ),
    )
    judge.add_argument("--questions", type=Path, required=True, help="question.jsonl")
    judge.add_argument("--answers", type=Path, required=True, help="model_answer/MODEL.jsonl")
    judge.add_argument(
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
    judge.add_argument("--output", type=Path, required=True, help="model_judgment folder")
    judge.add_argument("--judge-name", help="the judge's name in the files (default: its model)")
    judge.add_argument("--concurrency", type=int, help="questions judged at once")
    _config_options(judge)

    score = sub.add_parser(
        "score",
        help="Arena-Hard scores with bootstrap intervals from judgment files",
        description="Bradley-Terry win rates against the baseline, as arena-hard-auto computes.",
    )
    score.add_argument(
        "judgments",
        type=Path,
        help="a judgment file, a folder of them, or a bench folder holding model_judgment/",
    )
    score.add_argument(
        "--baseline",
        action="append",
        metavar="[CATEGORY=]MODEL",
        help=(
            "the baseline of judgments that name none (v0.1 files), MODEL for all or "
            "CATEGORY=MODEL for one (repeatable); judgments that name one must agree"
        ),
    )
    score.add_argument(
        "--category",
        action="append",
        metavar="CATEGORY[,CATEGORY...]",
        help=(
            "score only these question categories (default: all; each baseline's categories "
            "are scored apart, as arena-hard-auto v2.0 does)"
        ),
    )
    score.add_argument("--answers-dir", type=Path, help="model_answer folder, for style control")
    score.add_argument("--bootstrap", type=int, default=100, help="bootstrap rounds")
    score.add_argument("--seed", type=int, default=42, help="bootstrap seed")
    score.add_argument(
        "--confidence",
        type=float,
        default=0.90,
        help=(
            "the intervals' coverage, as a fraction or percent (default 0.90: arena-hard-auto "
            "v2.0's 5th to 95th percentile; 0.95 is v0.1's)"
        ),
    )
    score.add_argument("--json", type=Path, dest="json_out", help="write the scores as JSON")
    score.add_argument("--csv", type=Path, help="write the scores as CSV")

    info = sub.add_parser(
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
    )
    info.add_argument("source", type=Path, help="an answer file or a model_answer folder")
    where = info.add_mutually_exclusive_group(required=True)
    where.add_argument("--output", type=Path, help="the file (or folder) to write")
    where.add_argument("--in-place", action="store_true", help="replace the source files")
    info.add_argument(
        "--token-len",
        choices=("tiktoken", "words", "chars", "keep"),
        default="tiktoken",
        help=(
            "how token_len is counted: tiktoken's gpt-4o encoding as arena-hard-auto "
            "(default), whitespace words, characters, or keep the file's own"
        ),
    )
    info.add_argument(
        "--tiktoken-file", type=Path, help="the o200k_base.tiktoken encoding file to count with"
    )

    sweep = sub.add_parser(
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
    )
    sweep.add_argument("--questions", type=Path, required=True, help="question.jsonl")
    sweep.add_argument(
        "--baseline",
        action="append",
        metavar="[CATEGORY=]FILE",
        help=(
            "the baseline's answers, FILE for all or CATEGORY=FILE for one (repeatable); "
            "default: arena-hard-auto's baseline of each category in model_answer/ beside "
            "--questions. The swept questions must share one baseline (see --category)"
        ),
    )
    sweep.add_argument(
        "--category",
        action="append",
        metavar="CATEGORY[,CATEGORY...]",
        help="only questions of these categories (v2.0: one baseline's, e.g. hard_prompt)",
    )
    sweep.add_argument("--grid", required=True, help='e.g. "preset=best-of-n; drafts=1,2,4"')
    sweep.add_argument("--output", type=Path, required=True, help="the sweep's folder")
    sweep.add_argument("--limit", type=int, help="only the first N questions")
    sweep.add_argument("--bootstrap", type=int, default=100, help="bootstrap rounds")
    sweep.add_argument(
        "--scorer",
        choices=("arena", "verify"),
        default="arena",
        help="arena: judged against --baseline; verify: IFEval-format --questions, checked",
    )
    sweep.add_argument(
        "--confidence",
        type=float,
        default=0.90,
        help="the intervals' coverage, a fraction or percent (default 0.90, as arena-hard-auto)",
    )
    _config_options(sweep)

    from langgraph_feedit.serve import add_serve_parser

    add_serve_parser(sub)
    from langgraph_feedit.view import command as view_command

    view_command.add_parser(sub)
    verify_cli.add_parser(sub)
    from langgraph_feedit.train import cli as train_cli

    train_cli.add_parser(sub)
    return parser


def _config_options(cmd: argparse.ArgumentParser) -> None:
    """The configuration flags shared by commands that run the graph."""
    cmd.add_argument("--config", type=Path, help="a TOML or YAML configuration file")
    cmd.add_argument("--preset", choices=sorted(PRESETS), help="a strategy preset")
    cmd.add_argument("--drafts", type=int, help="drafts to sample")
    cmd.add_argument("--critiques", type=int, help="critiques per candidate")
    cmd.add_argument("--edits", type=int, help="edits per critique")
    cmd.add_argument("--rounds", type=int, help="critique-edit rounds (depth.max_rounds)")
    cmd.add_argument("--beam", type=int, help="candidates carried into the next round")
    cmd.add_argument("--stop-score", type=float, help="stop deepening at this judged score")
    cmd.add_argument("--judge", choices=_JUDGES, help="judge kind")
    cmd.add_argument("--deadline", type=float, help="seconds per prompt")
    cmd.add_argument("--token-budget", type=int, help="total tokens one prompt may spend")
    cmd.add_argument("--base-url", help="endpoint for every role (roles.default.base_url)")
    cmd.add_argument("--model", help="model for every role (roles.default.model)")
    cmd.add_argument("--api-key-env", help="NAME of the variable holding the API key")
    for role in ("draft", "critique", "edit", "judge"):
        cmd.add_argument(f"--{role}-url", dest=f"{role}_url", help=f"endpoint of the {role} role")
        cmd.add_argument(f"--{role}-model", dest=f"{role}_model", help=f"model of the {role} role")
    cmd.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting by dotted key, e.g. roles.draft.temperature=0.9 (repeatable)",
    )
    cmd.add_argument("--embedded-model", help="a GGUF file for the embedded endpoint")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The explicit-argument layer of the configuration."""
    from langgraph_feedit.overrides import FLAT_KEYS, set_path

    out: dict[str, Any] = {}
    # The flags named like the flat keys (--drafts, --rounds, --token-budget...) set theirs.
    pairs = [(key, getattr(args, flat, None)) for flat, key in FLAT_KEYS.items()]
    pairs += [
        ("roles.default.base_url", args.base_url),
        ("roles.default.model", args.model),
        ("roles.default.api_key_env", args.api_key_env),
        ("embedded_model", args.embedded_model),
        ("preset", args.preset),
    ]
    for role in ("draft", "critique", "edit", "judge"):
        pairs.append((f"roles.{role}.base_url", getattr(args, f"{role}_url")))
        pairs.append((f"roles.{role}.model", getattr(args, f"{role}_model")))
    for key, value in pairs:
        if value is not None:
            set_path(out, key, value)
    for key, attr in (("store.checkpoint_url", "checkpoint_url"), ("store.cache_url", "cache_url")):
        if getattr(args, attr, None):
            set_path(out, key, getattr(args, attr))
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}", source="arguments")
        set_path(out, key.strip(), _parse_value(value))
    return out


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


def _export(args: argparse.Namespace) -> int:
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
        warn=lambda message: print(f"feedit: warning: {message}", file=sys.stderr, flush=True),
    )
    for line in summary.lines():
        print(line, file=sys.stderr)
    return 1 if summary.failed else 0


def _confidence(value: float) -> float:
    coverage = value / 100.0 if value > 1.0 else value
    if not 0.0 < coverage < 1.0:
        raise UserError(f"--confidence {value:g}: expected a fraction (0.9) or a percent (90)")
    return coverage


def _categories(values: list[str] | None) -> list[str] | None:
    """``--category`` values, repeatable and comma-separated."""
    if not values:
        return None
    return [c.strip() for v in values for c in v.split(",") if c.strip()]


def _score(args: argparse.Namespace) -> int:
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

    confidence = _confidence(args.confidence)
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
        categories=_categories(args.category),
        metadata=metadata,
        rounds=args.bootstrap,
        seed=args.seed,
        confidence=confidence,
    )
    print("\n\n".join(report.table() for report in reports))
    for report in reports:
        for message in report.warnings:
            print(f"feedit: warning: {message}", file=sys.stderr)
    if args.json_out:
        args.json_out.write_text(reports_to_json(reports), encoding="utf-8")
    if args.csv:
        args.csv.write_text(reports_to_csv(reports), encoding="utf-8")
    return 0


def _markdown_info(args: argparse.Namespace) -> int:
    from langgraph_feedit.evaluate.markdown_info import add_markdown_info

    output = args.source if args.in_place else args.output
    summary = add_markdown_info(
        args.source,
        output,
        token_len=args.token_len,
        tiktoken_file=args.tiktoken_file,
        warn=lambda message: print(f"feedit: warning: {message}", file=sys.stderr),
    )
    print(
        f"{summary.answers} answer(s) in {summary.files} file(s) written to {output}"
        f" (token_len: {args.token_len})",
        file=sys.stderr,
    )
    return 0


async def _sweep(args: argparse.Namespace) -> int:
    from langgraph_feedit.evaluate import require_extra

    require_extra()
    from langgraph_feedit.evaluate.baselines import parse_baseline_args
    from langgraph_feedit.evaluate.sweep import run_sweep

    confidence = _confidence(args.confidence)
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
        confidence=confidence,
        categories=_categories(args.category),
        warn=lambda message: print(f"feedit: warning: {message}", file=sys.stderr, flush=True),
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


def _client_key(name: str | None) -> None:
    """Check the variable ``--client-key-env`` names, and register its value as a secret (the
    door keeps only a digest of it, but a backend or a log may still quote it)."""
    if name is None:
        return
    value = os.environ.get(name)
    if not value:
        raise UserError(
            f"--client-key-env names the environment variable {name!r}, which is not set"
        )
    register_secret(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for the caller's mistakes)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "run":
            return asyncio.run(_run(args))
        if args.command == "batch":
            return asyncio.run(_batch(args))
        if args.command == "export":
            return _export(args)
        if args.command == "judge":
            return asyncio.run(_judge(args))
        if args.command == "score":
            return _score(args)
        if args.command == "markdown-info":
            return _markdown_info(args)
        if args.command == "sweep":
            return asyncio.run(_sweep(args))
        if args.command == "view":
            from langgraph_feedit.view import command as view_command

            return view_command.run(args)
        if args.command == "verify":
            return verify_cli.run(args)
        if args.command == "serve":
            from langgraph_feedit.serve import run_serve

            _client_key(args.client_key_env)
            return run_serve(args)
        if args.command == "train":
            from langgraph_feedit.train import cli as train_cli

            return train_cli.run(args)
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
    parser.error(f"unknown command {args.command!r}")
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
