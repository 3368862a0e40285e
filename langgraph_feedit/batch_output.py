"""What every batch writes, wherever its prompts run: one output format, one summary.

A local batch (:func:`~langgraph_feedit.batch.run_batch`) and a batch on a LangGraph server
(:func:`~langgraph_feedit.server_batch.run_server_batch`) differ only in how one prompt gets
its final state. Everything around that is here, shared: reading and choosing the prompts
(``--limit``, ``--shard``, ``--on-error``), the bound on prompts in flight, one output line per
prompt (:func:`record`) written in input order as prompts finish, and the traces folder. So
``feedit export``, ``view``, ``verify``, ``judge``, ``score`` and ``sweep`` read either output
without knowing where it ran. The progress display, the summary and its exit status, counted
from the same lines, are in :mod:`langgraph_feedit.batch_summary` (re-exported here).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from langgraph_feedit.batch_summary import EXIT_FAILED, EXIT_PARTIAL, BatchSummary, Progress
from langgraph_feedit.endpoints import calls_in_flight
from langgraph_feedit.errors import InputError, UserError
from langgraph_feedit.inputs import InputFormat, Prompt, read_prompts
from langgraph_feedit.outputs import AtomicFile, json_line, write_atomically
from langgraph_feedit.state import judge_failure

__all__ = [
    "EXIT_FAILED",
    "EXIT_PARTIAL",
    "BatchOptions",
    "BatchSummary",
    "Outcome",
    "check_options",
    "missing_nodes",
    "prepare_prompts",
    "record",
    "select_prompts",
    "sidecar_of",
    "write_answers",
]

OnError = Literal["stop", "skip"]


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


def safe_name(pid: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", pid)[:80]
    if name != pid:
        name += "-" + hashlib.sha256(pid.encode()).hexdigest()[:8]
    return name


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
        or (node.get("score") is None and judge_failure(node) in ("backend", "timeout"))
    ]


def record(prompt: Prompt, values: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
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


def check_options(options: BatchOptions) -> None:
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
    if same_file(options.input, options.output):
        raise UserError(
            f"--output {options.output} is the input file: writing the answers would overwrite "
            "the prompts"
        )
    if same_file(options.input, sidecar_of(options.output)):
        raise UserError(
            f"--output {options.output}: its skipped-lines file {sidecar_of(options.output)} "
            "is the input file, which the batch would overwrite or remove: give another --output"
        )
    if options.traces is not None and options.traces.exists() and not options.traces.is_dir():
        raise UserError(f"--traces {options.traces} is a file: give the path of a folder")


def sidecar_of(output: Path) -> Path:
    """Where a batch lists the input lines it skipped: ``OUTPUT.skipped.jsonl``."""
    return output.with_name(output.name + ".skipped.jsonl")


def check_traces(options: BatchOptions, prompts: list[Prompt]) -> None:
    """Refuse a traces folder where a prompt's trace would overwrite the input or the output."""
    if options.traces is None:
        return
    kept = [
        ("the input file", options.input),
        ("--output", options.output),
        ("--output's skipped-lines file", sidecar_of(options.output)),
    ]
    for prompt in prompts:
        path = options.traces / f"{safe_name(prompt.id)}.json"
        for what, other in kept:
            if same_file(path, other):
                raise UserError(
                    f"--traces {options.traces}: the trace of prompt {prompt.id!r} would "
                    f"overwrite {what} {other}: give another folder"
                )
        if path.is_dir():
            raise UserError(
                f"--traces {options.traces}: the trace of prompt {prompt.id!r} would go to "
                f"{path}, which is a folder"
            )


def same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        return False
    return a.resolve() == b.resolve()


@dataclass(slots=True)
class Outcome:
    """How one prompt ended: its run's final state, or why it has none."""

    values: dict[str, Any] | None
    """The run's final state (``trace`` in it), or ``None`` when the prompt failed."""
    error: str | None = None
    was_done: bool = False
    """Finished by an earlier run of the batch and read back: this run made no call for it."""


Answer = Callable[[Prompt], Awaitable[Outcome]]
"""How a batch answers one prompt. Exceptions it raises stop the batch (a store that cannot be
written fails every prompt the same way); a prompt's own failure is an :class:`Outcome`."""


def prepare_prompts(options: BatchOptions, sidecar: Path) -> tuple[list[Prompt], BatchSummary]:
    """The prompts to run (``--limit``, then ``--shard``) and a summary counting them.

    Bad input lines stop the batch before anything runs (``--on-error stop``) or are listed in
    ``sidecar`` (``skip``); the traces folder is checked and made.

    Raises:
        InputError: bad lines with ``on_error="stop"``, or an unreadable input file.
        UserError: a trace would overwrite the input or the output.
    """
    prompts, errors = read_prompts(options.input, fmt=options.input_format)
    chosen = select_prompts(prompts, shard=options.shard, limit=options.limit)
    check_traces(options, chosen)
    if errors and options.on_error == "stop":
        shown = "\n".join(f"  {e}" for e in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise InputError(
            f"{len(errors)} bad input line(s); fix them or pass --on-error skip:\n{shown}{more}"
        )
    _list_skipped(sidecar, errors)
    if options.traces is not None:
        _make_folder(options.traces, "--traces")
    return chosen, BatchSummary(total=len(chosen), skipped=list(errors))


async def write_answers(
    chosen: list[Prompt],
    summary: BatchSummary,
    options: BatchOptions,
    answer: Answer,
    *,
    concurrency: int,
    stream: TextIO,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    in_flight: Callable[[], int] = calls_in_flight,
    in_flight_unit: str = "calls",
) -> None:
    """Answer ``chosen`` with at most ``concurrency`` prompts in flight, and write one output
    line each, in input order, into ``options.output`` (whole or not at all: see
    :class:`~langgraph_feedit.outputs.AtomicFile`). ``summary`` counts them.

    An exception from ``answer`` (or the caller's cancellation) stops every other prompt and
    leaves the previous output whole.
    """
    limit = asyncio.Semaphore(concurrency)
    progress = Progress(
        len(chosen),
        options.progress,
        stream,
        options.progress_interval,
        in_flight=in_flight,
        unit=in_flight_unit,
    )
    results: dict[int, dict[str, Any]] = {}
    next_out = 0
    target = AtomicFile(options.output)

    def flush() -> None:
        nonlocal next_out
        while next_out in results:
            line = results.pop(next_out)
            if options.traces is not None and "trace" in line:
                path = options.traces / f"{safe_name(line['id'])}.json"
                write_atomically(path, [json_line(line.pop("trace"))], "--traces")
                line["trace_file"] = str(path)
            target.write(json_line(line))
            next_out += 1
        target.flush()

    async def one(k: int, prompt: Prompt) -> None:
        async with limit:
            outcome = await answer(prompt)
        line = record(prompt, outcome.values, outcome.error)
        spent = summary.count(line, was_done=outcome.was_done)
        if on_record is not None:
            on_record(line)
        progress.update(failed=line["status"] == "failed", tokens=spent)
        results[k] = line
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
