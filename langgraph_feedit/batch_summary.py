"""What a batch tells its user: progress as its prompts run, then a summary and an exit status.

Shared by a local batch (:mod:`langgraph_feedit.batch`) and one on a LangGraph server
(:mod:`langgraph_feedit.server_batch`), through :mod:`langgraph_feedit.batch_output`, which
counts each prompt's output line here as it is written (and re-exports these names). What is
written is there; how it went is here: the same counts for the bar, the summary and the exit
status, from the same lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from langgraph_feedit.endpoints import calls_in_flight
from langgraph_feedit.errors import InputError

__all__ = ["EXIT_FAILED", "EXIT_PARTIAL", "BatchSummary", "Progress"]

EXIT_FAILED = 1
"""``feedit batch``'s exit status when some prompt failed (no answer)."""
EXIT_PARTIAL = 3
"""``feedit batch``'s exit status when every prompt has an answer but some are partial (a
branch failed or a candidate went unscored on its backend): rerun the command to complete
them."""


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


class Progress:
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
