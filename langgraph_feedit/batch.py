"""Batch runs that never lose work: one checkpointed thread per prompt, and a call cache.

A batch runs many prompts concurrently (bounded: enough to keep every endpoint's limit busy,
not a flood) through one compiled graph whose checkpointer and call cache live on SQLite files
in the store folder (``.feedit/`` by default). Running the same command again resumes:

- a prompt whose thread finished is read back from its checkpoint, with no call;
- a prompt whose run was cut off (a crash, a kill) resumes from its last checkpoint, and every
  call that had finished, even inside a superstep that did not complete, is a cache hit;
- a prompt whose every branch failed is run again on a new thread, where the calls that had
  succeeded are cache hits and only the failed ones are made again;
- a prompt that was answered with some branches failed or some candidates unscored on their
  backends (``partial``) is run again the same way: only the missing calls are made.

Output lines are written in input order as prompts finish, into a temporary file beside the
output that replaces it once the batch is done, so a run killed midway leaves the previous
output whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from langgraph.cache.base import BaseCache
from langgraph.checkpoint.base import BaseCheckpointSaver

from langgraph_feedit.batch_output import (
    EXIT_FAILED,
    EXIT_PARTIAL,
    BatchOptions,
    BatchSummary,
    Outcome,
    check_options,
    missing_nodes,
    prepare_prompts,
    select_prompts,
    sidecar_of,
    write_answers,
)
from langgraph_feedit.config import FeeditConfig, resolve_config
from langgraph_feedit.errors import FeeditError, StoreError, UserError
from langgraph_feedit.graph import create_feedit_graph
from langgraph_feedit.inputs import Prompt
from langgraph_feedit.outputs import output_lock
from langgraph_feedit.stores import open_stores

__all__ = [
    "EXIT_FAILED",
    "EXIT_PARTIAL",
    "BatchOptions",
    "BatchSummary",
    "missing_nodes",
    "parse_shard",
    "run_batch",
    "select_prompts",
    "sidecar_of",
]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` with ``0 <= i < N``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise UserError(f"--shard expects i/N with 0 <= i < N, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _digest(config: FeeditConfig, prompt: Prompt) -> str:
    payload = json.dumps(
        {"config": config.model_dump(mode="json"), "messages": prompt.messages},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def thread_id(prompt: Prompt, digest: str) -> str:
    """The prompt's LangGraph thread: ``feedit:<id>:<digest>``.

    Postgres text and ``jsonb`` hold no NUL character, and its checkpointer stores the thread
    id in both: an id with one is named by its hash instead, under a prefix no other thread
    has, so every backend takes every id and ids that ran before keep their threads.
    """
    if "\x00" in prompt.id:
        return f"feedit#{hashlib.sha256(prompt.id.encode()).hexdigest()[:32]}:{digest}"
    return f"feedit:{prompt.id}:{digest}"


def default_concurrency(config: FeeditConfig) -> int:
    """Enough prompts in flight to keep the draft endpoint's limit busy twice over."""
    limit = config.role("draft").max_concurrency or 16
    return max(2, -(-2 * limit // max(1, config.width.drafts)))


async def _answer(
    graph: Any, prompt: Prompt, thread: str, durable: bool
) -> tuple[dict[str, Any], bool]:
    """The final state of the prompt's run, and whether it was already done before.

    Checkpoints are written when a run ends (``durability="exit"``), not at every step: each
    step's checkpoint repeats the growing tree, which made the store about 30 times the output
    it protects. Nothing is lost by it, because the call cache is written as each call ends:
    a run cut off mid-way has no checkpoint, so it starts again, and every call it had finished
    comes from the cache (only the calls in flight at the cut are made again).
    """
    if not durable:
        return await graph.ainvoke({"messages": prompt.messages}), False
    attempt = 1
    while True:
        tid = thread if attempt == 1 else f"{thread}#{attempt}"
        cfg = {"configurable": {"thread_id": tid}}
        snapshot = await graph.aget_state(cfg)
        if not snapshot.values:
            return await graph.ainvoke({"messages": prompt.messages}, cfg, durability="exit"), False
        if "trace" in snapshot.values and not snapshot.next:
            if missing_nodes(snapshot.values["trace"]):
                # Answered, but some calls failed: go again on a new thread, where every call
                # that succeeded is a cache hit, so only the failed ones (and the branches
                # that hang off them) are made.
                attempt += 1
                continue
            return dict(snapshot.values), True
        if any(task.error for task in snapshot.tasks):
            # It failed before: go again on a new thread. The calls that succeeded are
            # cache hits; only the failed ones are made again.
            attempt += 1
            continue
        # Cut off mid-run by an older version's step checkpoints: resume.
        return await graph.ainvoke(None, cfg, durability="exit"), False


def _check_store(options: BatchOptions, store: Path) -> None:
    """Refuse files the batch writes inside the SQLite store's folder, where they could
    overwrite the checkpoints or the call cache (or be taken for them)."""
    written = [
        ("--output", options.output),
        ("--output's skipped-lines file", sidecar_of(options.output)),
        ("--traces", options.traces),
    ]
    for flag, path in written:
        if path is not None and _inside(path, store):
            raise UserError(
                f"{flag} {path} lies in the store folder {store} (--store, store.path), where "
                "it could overwrite the checkpoints or the call cache: write it elsewhere"
            )


def _inside(path: Path, folder: Path) -> bool:
    try:
        path, folder = path.resolve(), folder.resolve()
    except OSError:
        return False
    return path == folder or folder in path.parents


async def run_batch(
    config: FeeditConfig,
    options: BatchOptions,
    *,
    stream: TextIO | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> BatchSummary:
    """Answer every prompt of ``options.input`` into ``options.output``.

    The output is written to a temporary file beside it and renamed over it at the end, so a
    run that is killed leaves the previous output (if any) whole. One batch at a time writes
    an output.

    Raises:
        UserError: bad options (a count below 1; an output that is a folder or the input; an
            output, skipped-lines file or traces folder that would overwrite the input or lie
            in the store), or another batch writing the same output.
        ConfigError: a role's API key variable is not set (checked before any prompt runs).
        InputError: bad input lines with ``on_error="stop"`` (nothing is run), or an
            unreadable input file.
        StoreError: the store or an output file cannot be written (a full disk): the batch
            stops, the previous output whole.
    """
    stream = stream or sys.stderr
    started = time.monotonic()
    check_options(options)
    if options.fresh:
        config = config.merged({"cache_key": uuid.uuid4().hex})
    judge = config.role("judge")
    kinds = {p.kind for p in judge.combine or []} | {judge.kind}
    if "verify" in kinds and not judge.questions:
        # The verify judge's instructions are the input lines' own (IFEval's format).
        config = config.merged({"roles": {"judge": {"questions": str(options.input)}}})
    run_config = resolve_config(config)
    store = run_config.store
    if options.durable and not (store.checkpoint_url and store.cache_url):
        _check_store(options, Path(options.store or store.path))
    # A missing key variable would fail every call of every prompt the same way: say so once,
    # before anything runs, and record no prompt as failed.
    run_config.check_api_keys()
    sidecar = sidecar_of(options.output)
    with output_lock(options.output, sidecar):
        summary = await _run_locked(config, run_config, options, stream, on_record, sidecar)
    summary.wall_s = time.monotonic() - started
    return summary


async def _run_locked(
    config: FeeditConfig,
    run_config: FeeditConfig,
    options: BatchOptions,
    stream: TextIO,
    on_record: Callable[[dict[str, Any]], None] | None,
    sidecar: Path,
) -> BatchSummary:
    chosen, summary = prepare_prompts(options, sidecar)
    async with contextlib.AsyncExitStack() as stack:
        cache: BaseCache[Any] | None = None
        saver: BaseCheckpointSaver[Any] | None = None
        if options.durable:
            saver, cache = await stack.enter_async_context(
                open_stores(run_config.store, path=options.store)
            )
        graph = create_feedit_graph(config, cache=cache).compile(checkpointer=saver, cache=cache)

        async def answer(prompt: Prompt) -> Outcome:
            thread = thread_id(prompt, _digest(run_config, prompt))
            try:
                values, was_done = await _answer(graph, prompt, thread, options.durable)
            except StoreError:
                raise  # the store, not the prompt: every later prompt would fail the same
            except FeeditError as exc:
                return Outcome(None, str(exc))
            return Outcome(values, was_done=was_done)

        await write_answers(
            chosen,
            summary,
            options,
            answer,
            concurrency=options.concurrency or default_concurrency(run_config),
            stream=stream,
            on_record=on_record,
        )
    return summary
