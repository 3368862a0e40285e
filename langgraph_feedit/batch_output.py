"""What every batch writes, wherever its prompts run: one output format, one summary.

A local batch (:func:`~langgraph_feedit.batch.run_batch`) and a batch on a LangGraph server
(:func:`~langgraph_feedit.server_batch.run_server_batch`) differ only in how one prompt gets
its final state. Everything around that is here, shared: reading and choosing the prompts
(``--limit``, ``--shard``, ``--on-error``), the bound on prompts in flight, one output line per
prompt (:func:`record`) written in input order as prompts finish, the traces folder, the
progress display, the summary and its exit status. So ``feedit export``, ``view``, ``verify``,
``judge``, ``score`` and ``sweep`` read either output without knowing where it ran.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

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
    retry_hint: str = "run the same command again to make only the calls that failed"
    """What the summary tells the user to do about partial answers."""

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

    def count(self, line: dict[str, Any], *, was_done: bool) -> int:
        """Count one prompt's output line; returns the tokens this run spent on it."""
        if line["status"] == "failed":
            self.failed.append((line["id"], line["error"]))
            return 0
        if line["status"] == "ok":
            self.answered += 1
            self.resumed_done += int(was_done)
        else:
            self.partial.append((line["id"], line["missing"]))
        if was_done:
            return 0
        usage, reused = line["usage"], line.get("reused") or {}
        self.calls += usage["calls"] - reused.get("calls", 0)
        self.reused_calls += reused.get("calls", 0)
        spent: int = (
            usage["prompt_tokens"]
            + usage["completion_tokens"]
            - reused.get("prompt_tokens", 0)
            - reused.get("completion_tokens", 0)
        )
        self.tokens += spent
        self.reasoning_tokens += usage.get("reasoning_tokens", 0) - reused.get(
            "reasoning_tokens", 0
        )
        self.reasoning_reported += usage.get("reasoning_reported", 0) - reused.get(
            "reasoning_reported", 0
        )
        return spent

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
            out.append(f"  {self.retry_hint}")
        out += [f"  failed {pid}: {err.splitlines()[0]}" for pid, err in self.failed]
        out += [f"  skipped {err}" for err in self.skipped]
        return out


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


class _Progress:
    """A tqdm bar on a terminal. Otherwise (a log file) a line as each tenth of the prompts is
    done, and at least every ``interval`` seconds while none is: a slow batch still shows it is
    alive, and a fast one writes a dozen lines, not one every few seconds."""

    def __init__(
        self,
        total: int,
        enabled: bool | None,
        stream: TextIO,
        interval: float = 60.0,
        *,
        in_flight: Callable[[], int] = calls_in_flight,
        unit: str = "calls",
    ) -> None:
        self.total = total
        self.in_flight = in_flight
        self.unit = unit
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
                inflight=self.in_flight(), tokens=self.tokens, failed=self.failed, refresh=False
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
            f" {self.in_flight()} {self.unit} in flight, {self.tokens} tokens,"
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
    progress = _Progress(
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
