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

import asyncio
import contextlib
import hashlib
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from langgraph.cache.base import BaseCache
from langgraph.checkpoint.base import BaseCheckpointSaver

from langgraph_feedit.config import FeeditConfig, resolve_config
from langgraph_feedit.endpoints import calls_in_flight
from langgraph_feedit.errors import FeeditError, InputError, StoreError, UserError
from langgraph_feedit.graph import create_feedit_graph
from langgraph_feedit.inputs import InputFormat, Prompt, read_prompts
from langgraph_feedit.outputs import AtomicFile, json_line, output_lock, write_atomically
from langgraph_feedit.stores import open_stores

__all__ = [
    "EXIT_FAILED",
    "EXIT_PARTIAL",
    "BatchOptions",
    "BatchSummary",
    "missing_nodes",
    "parse_shard",
    "run_batch",
]

OnError = Literal["stop", "skip"]

EXIT_FAILED = 1
"""``feedit batch``'s exit status when some prompt failed (no answer)."""
EXIT_PARTIAL = 3
"""``feedit batch``'s exit status when every prompt has an answer but some are partial (a
branch failed or a candidate went unscored on its backend): rerun the command to complete
them."""


@dataclass(slots=True)
class BatchOptions:
    """What to run and where to keep it."""

    input: Path
    output: Path
    store: Path | None = None
    """Folder of the SQLite checkpoint and cache files (default: the configuration's
    ``store.path``, ``.feedit``); Postgres and Redis URLs in ``store`` take precedence."""
    input_format: InputFormat = "auto"
    shard: tuple[int, int] | None = None
    """``(i, n)``: run only prompts whose position modulo ``n`` is ``i``."""
    limit: int | None = None
    on_error: OnError = "stop"
    traces: Path | None = None
    """Write each trace to ``DIR/<id>.json`` instead of into the output line."""
    concurrency: int | None = None
    """Prompts in flight at once (default: enough to fill the endpoints' limits)."""
    fresh: bool = False
    """Draw new samples instead of reusing cached calls and finished threads."""
    progress: bool | None = None
    """A progress bar on a terminal, lines otherwise; ``False`` for none."""
    progress_interval: float = 60.0
    """Off a terminal, a progress line at least this often (seconds), besides one as each
    tenth of the prompts is done."""
    durable: bool = True
    """Keep checkpoints and the call cache in ``store``; ``False`` runs without them (no
    resume, no reuse)."""


@dataclass(slots=True)
class BatchSummary:
    """How a batch went."""

    total: int = 0
    answered: int = 0
    """Prompts answered with every call of their tree made (status ``ok``)."""
    resumed_done: int = 0
    """Prompts already finished by an earlier run (read back, no call)."""
    partial: list[tuple[str, list[str]]] = field(default_factory=list)
    """Prompts answered with some calls failed (status ``partial``), and the ids of the nodes
    whose calls failed: a rerun makes those calls (and what follows them) and no other."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[InputError] = field(default_factory=list)
    calls: int = 0
    """Calls made by this run (not read back from checkpoints or the call cache)."""
    reused_calls: int = 0
    """Calls served from the call cache."""
    tokens: int = 0
    """Tokens of the calls made by this run."""
    reasoning_tokens: int = 0
    """The part of ``tokens`` the servers counted as thinking."""
    reasoning_reported: int = 0
    """Calls made by this run whose server counted thinking apart."""
    wall_s: float = 0.0

    def _thinking(self) -> str:
        if not self.reasoning_reported:
            return "thinking tokens not reported"
        some = "" if self.reasoning_reported >= self.calls else " (counted by some servers)"
        return f"{self.reasoning_tokens} of them thinking{some}"

    @property
    def exit_code(self) -> int:
        """0 when every prompt is answered in full, :data:`EXIT_PARTIAL` when some answers are
        partial, :data:`EXIT_FAILED` when some prompt has no answer."""
        if self.failed:
            return EXIT_FAILED
        return EXIT_PARTIAL if self.partial else 0

    def lines(self) -> list[str]:
        out = [
            f"{self.total} prompt(s): {self.answered} answered"
            f" ({self.resumed_done} already done), {len(self.partial)} partial,"
            f" {len(self.failed)} failed,"
            f" {len(self.skipped)} input line(s) skipped; {self.calls} calls made"
            f" ({self.reused_calls} reused from the cache), {self.tokens} tokens spent"
            f" ({self._thinking()}), {self.wall_s:.1f} s"
        ]
        for pid, nodes in self.partial[:20]:
            shown = ", ".join(nodes[:8]) + (f" and {len(nodes) - 8} more" if len(nodes) > 8 else "")
            out.append(f"  partial {pid}: failed calls at {shown}")
        if len(self.partial) > 20:
            out.append(f"  ... and {len(self.partial) - 20} more partial")
        if self.partial:
            out.append("  run the same command again to make only the calls that failed")
        out += [f"  failed {pid}: {err.splitlines()[0]}" for pid, err in self.failed]
        out += [f"  skipped {err}" for err in self.skipped]
        return out


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` with ``0 <= i < N``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise UserError(f"--shard expects i/N with 0 <= i < N, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def select_prompts(
    prompts: list[Prompt], *, shard: tuple[int, int] | None, limit: int | None
) -> list[Prompt]:
    """``--limit`` first (the first K prompts of the file), then the shard's slice.

    Raises:
        UserError: ``limit`` is below 1 (a slice would silently drop prompts from the end).
    """
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    chosen = prompts[:limit] if limit is not None else prompts
    if shard is not None:
        i, n = shard
        chosen = [p for k, p in enumerate(chosen) if k % n == i]
    return chosen


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


def _safe_name(pid: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", pid)[:80]
    if name != pid:
        name += "-" + hashlib.sha256(pid.encode()).hexdigest()[:8]
    return name


def default_concurrency(config: FeeditConfig) -> int:
    """Enough prompts in flight to keep the draft endpoint's limit busy twice over."""
    limit = config.role("draft").max_concurrency or 16
    return max(2, -(-2 * limit // max(1, config.width.drafts)))


class _Progress:
    """A tqdm bar on a terminal. Otherwise (a log file) a line as each tenth of the prompts is
    done, and at least every ``interval`` seconds while none is: a slow batch still shows it is
    alive, and a fast one writes a dozen lines, not one every few seconds."""

    def __init__(
        self, total: int, enabled: bool | None, stream: TextIO, interval: float = 60.0
    ) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.tokens = 0
        self.interval = interval
        self.step = max(1, -(-total // 10))
        self.started = time.monotonic()
        self.stream = stream
        self.tty = stream.isatty() if enabled is None else bool(enabled and stream.isatty())
        self.enabled = enabled is not False
        self._bar: Any = None
        self._last = self.started
        if self.enabled and self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, file=stream, unit="prompt", dynamic_ncols=True)

    def update(self, *, failed: bool, tokens: int) -> None:
        """One prompt done; ``tokens`` is what this run spent on it (as the summary counts)."""
        self.done += 1
        self.failed += int(failed)
        self.tokens += tokens
        if self._bar is not None:
            self._bar.set_postfix(
                inflight=calls_in_flight(), tokens=self.tokens, failed=self.failed, refresh=False
            )
            self._bar.update(1)
        elif self.enabled and (self.done % self.step == 0 or self.done == self.total):
            self._line()

    def tick(self) -> None:
        """A line if none was written for ``interval`` seconds."""
        if self.enabled and self._bar is None and time.monotonic() - self._last >= self.interval:
            self._line()

    def _line(self) -> None:
        now = time.monotonic()
        self._last = now
        elapsed = now - self.started
        if self.done == self.total:
            eta = ""
        elif self.done:
            eta = f", ETA {(self.total - self.done) * elapsed / self.done:.0f} s"
        else:
            eta = ", ETA unknown"
        print(
            f"batch: {self.done}/{self.total} done, {self.failed} failed,"
            f" {calls_in_flight()} calls in flight, {self.tokens} tokens,"
            f" {elapsed:.0f} s elapsed{eta}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def missing_nodes(trace: dict[str, Any]) -> list[str]:
    """Ids of the nodes of a finished run whose call failed on its backend: a draft, critique
    or edit that ended its branch, or a candidate its judge could not score.

    A run's own limits (its deadline or token budget) are not failures: a rerun would stop the
    same way. Nor is a judge reply with no score in it: the call succeeded and is cached.
    """
    return [
        node["id"]
        for node in trace.get("nodes") or []
        if (node.get("error") and node.get("failure") in ("backend", "timeout", None))
        or (node.get("score") is None and _judge_failed(node.get("judge_note")))
    ]


def _judge_failed(note: str | None) -> bool:
    # The judge node's error handler records ``not scored: <why>``; ``not scored: stopped:``
    # is the run's deadline or budget (see ``calls.failure_text``).
    return bool(
        note and note.startswith("not scored: ") and not note.startswith("not scored: stopped:")
    )


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


def _record(prompt: Prompt, values: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    if values is None:
        return {"id": prompt.id, "status": "failed", "error": error}
    trace = values["trace"]
    missing = missing_nodes(trace)
    return {
        "id": prompt.id,
        "status": "partial" if missing else "ok",
        **({"missing": missing} if missing else {}),
        "answer": trace["answer"],
        "selected": trace["selected"],
        "usage": trace["usage"]["total"],
        "reused": trace.get("reused"),
        "wall_s": trace["wall_s"],
        "messages": prompt.messages,
        **({"extra": prompt.extra} if prompt.extra else {}),
        "trace": trace,
    }


def _check_options(options: BatchOptions) -> None:
    """The caller's mistakes in the options, each one line, before anything is read or run.

    Raises:
        UserError: a count below 1, a progress interval not above 0, an output that is a
            folder or is the input file itself (or whose skipped-lines file is), or a traces
            path that is a file.
    """
    if options.limit is not None and options.limit < 1:
        raise UserError(f"--limit must be at least 1, got {options.limit}")
    if options.concurrency is not None and options.concurrency < 1:
        raise UserError(f"--concurrency must be at least 1, got {options.concurrency}")
    if not options.progress_interval > 0:
        raise UserError(
            f"--progress-interval must be above 0 seconds, got {options.progress_interval}"
        )
    if options.output.is_dir():
        raise UserError(f"--output {options.output} is a folder: give the path of a file")
    if _same_file(options.input, options.output):
        raise UserError(
            f"--output {options.output} is the input file: writing the answers would overwrite "
            "the prompts"
        )
    if _same_file(options.input, sidecar_of(options.output)):
        raise UserError(
            f"--output {options.output}: its skipped-lines file {sidecar_of(options.output)} "
            "is the input file, which the batch would overwrite or remove: give another --output"
        )
    if options.traces is not None and options.traces.exists() and not options.traces.is_dir():
        raise UserError(f"--traces {options.traces} is a file: give the path of a folder")


def sidecar_of(output: Path) -> Path:
    """Where a batch lists the input lines it skipped: ``OUTPUT.skipped.jsonl``."""
    return output.with_name(output.name + ".skipped.jsonl")


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


def _check_traces(options: BatchOptions, prompts: list[Prompt]) -> None:
    """Refuse a traces folder where a prompt's trace would overwrite the input or the output."""
    if options.traces is None:
        return
    kept = [
        ("the input file", options.input),
        ("--output", options.output),
        ("--output's skipped-lines file", sidecar_of(options.output)),
    ]
    for prompt in prompts:
        path = options.traces / f"{_safe_name(prompt.id)}.json"
        for what, other in kept:
            if _same_file(path, other):
                raise UserError(
                    f"--traces {options.traces}: the trace of prompt {prompt.id!r} would "
                    f"overwrite {what} {other}: give another folder"
                )
        if path.is_dir():
            raise UserError(
                f"--traces {options.traces}: the trace of prompt {prompt.id!r} would go to "
                f"{path}, which is a folder"
            )


def _inside(path: Path, folder: Path) -> bool:
    try:
        path, folder = path.resolve(), folder.resolve()
    except OSError:
        return False
    return path == folder or folder in path.parents


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        return False
    return a.resolve() == b.resolve()


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
    _check_options(options)
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
    prompts, errors = read_prompts(options.input, fmt=options.input_format)
    chosen = select_prompts(prompts, shard=options.shard, limit=options.limit)
    _check_traces(options, chosen)
    if errors and options.on_error == "stop":
        shown = "\n".join(f"  {e}" for e in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise InputError(
            f"{len(errors)} bad input line(s); fix them or pass --on-error skip:\n{shown}{more}"
        )
    _list_skipped(sidecar, errors)
    summary = BatchSummary(total=len(chosen), skipped=list(errors))
    if options.traces is not None:
        _make_folder(options.traces, "--traces")
    async with contextlib.AsyncExitStack() as stack:
        cache: BaseCache[Any] | None = None
        saver: BaseCheckpointSaver[Any] | None = None
        if options.durable:
            saver, cache = await stack.enter_async_context(
                open_stores(run_config.store, path=options.store)
            )
        graph = create_feedit_graph(config, cache=cache).compile(checkpointer=saver, cache=cache)
        limit = asyncio.Semaphore(options.concurrency or default_concurrency(run_config))
        progress = _Progress(len(chosen), options.progress, stream, options.progress_interval)
        results: dict[int, dict[str, Any]] = {}
        next_out = 0
        target = AtomicFile(options.output)

        def flush() -> None:
            nonlocal next_out
            while next_out in results:
                record = results.pop(next_out)
                if options.traces is not None and "trace" in record:
                    path = options.traces / f"{_safe_name(record['id'])}.json"
                    write_atomically(path, [json_line(record.pop("trace"))], "--traces")
                    record["trace_file"] = str(path)
                target.write(json_line(record))
                next_out += 1
            target.flush()

        async def one(k: int, prompt: Prompt) -> None:
            thread = thread_id(prompt, _digest(run_config, prompt))
            async with limit:
                try:
                    values, was_done = await _answer(graph, prompt, thread, options.durable)
                    record = _record(prompt, values, None)
                except StoreError:
                    raise  # the store, not the prompt: every later prompt would fail the same
                except FeeditError as exc:
                    record, was_done = _record(prompt, None, str(exc)), False
            spent = 0
            if record["status"] in ("ok", "partial"):
                if record["status"] == "ok":
                    summary.answered += 1
                    summary.resumed_done += int(was_done)
                else:
                    summary.partial.append((prompt.id, record["missing"]))
                if not was_done:
                    usage, reused = record["usage"], record.get("reused") or {}
                    summary.calls += usage["calls"] - reused.get("calls", 0)
                    summary.reused_calls += reused.get("calls", 0)
                    spent = (
                        usage["prompt_tokens"]
                        + usage["completion_tokens"]
                        - reused.get("prompt_tokens", 0)
                        - reused.get("completion_tokens", 0)
                    )
                    summary.tokens += spent
                    summary.reasoning_tokens += usage.get("reasoning_tokens", 0) - reused.get(
                        "reasoning_tokens", 0
                    )
                    summary.reasoning_reported += usage.get("reasoning_reported", 0) - reused.get(
                        "reasoning_reported", 0
                    )
            else:
                summary.failed.append((prompt.id, record["error"]))
            if on_record is not None:
                on_record(record)
            progress.update(failed=record["status"] == "failed", tokens=spent)
            results[k] = record
            flush()

        async def ticker() -> None:
            while True:
                await asyncio.sleep(min(1.0, options.progress_interval))
                progress.tick()

        tick = asyncio.create_task(ticker())
        tasks = [asyncio.ensure_future(one(k, p)) for k, p in enumerate(chosen)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # The rest stop too: a full store fails them all, and a caller's exception ends
            # the batch. The previous output stays as it was; what was answered is stored.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            target.discard()
            raise
        finally:
            tick.cancel()
            progress.close()
        target.commit()
    # Listed in input order, as the output is, whatever order the prompts finished in.
    order = {p.id: k for k, p in enumerate(chosen)}
    summary.partial.sort(key=lambda item: order[item[0]])
    summary.failed.sort(key=lambda item: order[item[0]])
    return summary


def _list_skipped(sidecar: Path, errors: list[InputError]) -> None:
    """The skipped lines into ``sidecar``, or no such file when none was."""
    if errors:
        write_atomically(
            sidecar,
            [json_line({"path": e.path, "line": e.line, "error": str(e)}) for e in errors],
            "--output's skipped-lines file",
        )
    else:
        sidecar.unlink(missing_ok=True)


def _make_folder(path: Path, flag: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{flag} {path} is a file, or lies under one: give a folder") from None
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot create the folder: {exc.strerror}") from None
