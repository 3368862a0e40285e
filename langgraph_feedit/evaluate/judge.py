"""Arena-Hard judging with the ``evaluator`` role: two games per question, positions swapped.

Writes ``DIR/<judge>/<model>.jsonl`` in arena-hard-auto's judgment schema. Judging is resumable
like a batch: lines already in the file are kept, and a rerun judges only the questions that
are missing (a judge call that failed leaves its question missing, so it is tried again). An
unparseable verdict is recorded as ``null`` and counted, never guessed.

Each question is judged against the baseline of its category (see
`langgraph_feedit.evaluate.baselines`): one file for all, one per category, or arena-hard-auto's
own layout, where ``model_answer/`` holds ``o3-mini-2025-01-31.jsonl`` for the v2.0
``hard_prompt`` questions and ``gemini-2.0-flash-001.jsonl`` for ``creative_writing``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph_feedit.calls import RoleCaller
from langgraph_feedit.config import FeeditConfig
from langgraph_feedit.errors import EmbeddedError, EndpointError, InputError
from langgraph_feedit.evaluate.baselines import (
    BaselineChoice,
    missing_baselines_error,
    standard_baseline_warning,
)
from langgraph_feedit.evaluate.prompts import (
    DEFAULT_BASELINES,
    judge_messages,
    parse_arena_verdict,
    strip_think,
)
from langgraph_feedit.evaluate.records import (
    ArenaAnswer,
    ArenaQuestion,
    dump_record,
    game_record,
    judgment_record,
    read_answers,
    read_judgments,
    read_questions,
)

__all__ = ["JudgeSummary", "judge_answers", "resolve_baseline_files"]


@dataclass(slots=True)
class JudgeSummary:
    """How a judging run went."""

    path: Path
    judged: int = 0
    kept: int = 0
    """Questions already judged by an earlier run."""
    null_games: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """Questions without an answer from the model or the baseline."""
    baselines: dict[str, str] = field(default_factory=dict)
    """Question category -> the baseline model its questions were judged against."""
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"category {c!r}: against {b}" for c, b in sorted(self.baselines.items())]
        out += [
            f"{self.judged} question(s) judged, {self.kept} kept from before,"
            f" {self.null_games} game(s) without a verdict, {len(self.failed)} failed,"
            f" {len(self.missing)} without both answers -> {self.path}"
        ]
        out += [f"  failed {uid}: {err.splitlines()[0]}" for uid, err in self.failed]
        return out


def _caller(config: FeeditConfig) -> RoleCaller:
    return RoleCaller.for_config(config)


async def _game(
    caller: RoleCaller, question: ArenaQuestion, a: str, b: str, index: int
) -> dict[str, Any]:
    messages = judge_messages(question.prompt, a, b, category=question.category)
    result = await caller.complete("evaluator", messages, index=index)
    # The endpoint split the judge's thinking off its reply (chatapi.split_reply): the verdict
    # is read from the answer alone, and the thinking kept beside it.
    reply = result.texts[0] if result.texts else ""
    thought = result.reasonings[0] if result.reasonings else None
    return game_record(parse_arena_verdict(reply), reply, messages, thought=thought)


_HINT = " (--baseline {}=FILE chooses its baseline)"


def resolve_baseline_files(
    baseline: Path | str | BaselineChoice | None,
    questions: Sequence[ArenaQuestion],
    folder: Path,
) -> tuple[dict[str, Path], list[str]]:
    """The baseline answer file of every question category, and warnings about the choice.

    ``baseline`` is one file for every category, a `BaselineChoice` of files, or None; a
    category it gives none for takes arena-hard-auto's baseline of that category, as
    ``folder/<model>.jsonl`` (its ``model_answer`` layout).

    Raises:
        UserError: a category is left without a baseline (names it, and what to pass).
    """
    choice = (
        baseline
        if isinstance(baseline, BaselineChoice)
        else BaselineChoice(default=None if baseline is None else str(baseline))
    )
    files: dict[str, Path] = {}
    missing: dict[str, list[str]] = {}
    hints: list[str] = []
    for q in questions:
        category = q.category
        if category in files or category in missing:
            if category in missing:
                missing[category].append(q.uid)
            continue
        chosen = choice.get(category)
        if chosen is not None:
            files[category] = Path(chosen)
            continue
        standard = DEFAULT_BASELINES.get(category)
        candidate = folder / f"{standard}.jsonl" if standard else None
        if candidate is not None and candidate.exists():
            files[category] = candidate
            continue
        missing[category] = [q.uid]
        if candidate is not None:
            hints.append(f"arena-hard-auto's baseline for {category!r} would be {candidate}")
    if missing:
        hint = "pass --baseline CATEGORY=FILE for it, or a plain --baseline FILE for all"
        raise missing_baselines_error(missing, hint="; ".join([hint, *hints]))
    warnings = [
        w
        for category, path in sorted(files.items())
        if (w := standard_baseline_warning(category, path.stem, hint=_HINT.format(category)))
        is not None
    ]
    return files, warnings


async def judge_answers(
    config: FeeditConfig,
    *,
    questions: Path,
    answers: Path,
    baseline: Path | str | BaselineChoice | None = None,
    output: Path,
    judge_name: str | None = None,
    concurrency: int | None = None,
    warn: Callable[[str], None] | None = None,
) -> JudgeSummary:
    """Judge ``answers`` against the baselines on ``questions`` into ``output/<judge>/``.

    ``baseline``: see `resolve_baseline_files`; each question is judged against its
    category's. ``warn`` is told, before any call, about categories judged against another
    baseline than arena-hard-auto's.

    Raises:
        InputError: a malformed questions, answers or judgment file (names file and line), or
            a judgment file holding rows against another baseline than this run's.
        UserError: a question category without a baseline.
    """
    qs = read_questions(questions)
    model_answers = {a.uid: a for a in read_answers(answers)}
    files, warnings = resolve_baseline_files(baseline, qs, answers.parent)
    for message in warnings:
        if warn is not None:
            warn(message)
    by_file = {path: {a.uid: a for a in read_answers(path)} for path in set(files.values())}
    base_answers = {category: by_file[path] for category, path in files.items()}
    base_models = {category: path.stem for category, path in files.items()}
    model = answers.stem
    caller = _caller(config)
    judge = judge_name or config.role("evaluator").model or await caller.model_name("evaluator")
    path = output / judge.replace("/", "_") / f"{model}.jsonl"
    summary = JudgeSummary(path=path, baselines=base_models, warnings=warnings)
    done: dict[str, dict[str, Any]] = {}
    if path.exists():
        for j in read_judgments(path):
            if j.model != model:
                raise InputError(f"holds judgments of {j.model!r}, not {model!r}", path=str(path))
            wanted = base_models.get(j.category or "")
            if j.baseline is not None and wanted is not None and j.baseline != wanted:
                # Judged against another baseline by an earlier run: mixing them in one file
                # would score half the rows against the wrong model.
                raise InputError(
                    f"holds {j.uid!r} ({j.category}) judged against {j.baseline!r}, but this run "
                    f"judges {j.category!r} against {wanted!r}: use another --output folder",
                    path=str(path),
                )
            done[j.uid] = json.loads(dump_record(j))
    summary.kept = len(done)
    todo: list[tuple[ArenaQuestion, ArenaAnswer, ArenaAnswer]] = []
    for q in qs:
        if q.uid in done:
            continue
        theirs = base_answers[q.category].get(q.uid)
        if q.uid not in model_answers or theirs is None:
            summary.missing.append(q.uid)
            continue
        todo.append((q, model_answers[q.uid], theirs))
    limit = asyncio.Semaphore(concurrency or 2 * (config.role("evaluator").max_concurrency or 16))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:

        async def one(k: int, q: ArenaQuestion, mine: ArenaAnswer, base: ArenaAnswer) -> None:
            ours, theirs = strip_think(mine.answer), strip_think(base.answer)
            async with limit:
                try:
                    g1, g2 = await asyncio.gather(
                        _game(caller, q, theirs, ours, 2 * k),  # game 1: the baseline is A
                        _game(caller, q, ours, theirs, 2 * k + 1),
                    )
                except (EndpointError, EmbeddedError) as exc:
                    summary.failed.append((q.uid, str(exc)))
                    return
            record = judgment_record(
                q.uid, q.category, judge, model, base_models[q.category], [g1, g2]
            )
            summary.judged += 1
            summary.null_games += sum(g["score"] is None for g in (g1, g2))
            done[q.uid] = record
            out.write(dump_record(record))  # appended at once: a crash keeps what is done
            out.flush()

        await asyncio.gather(*(one(k, *item) for k, item in enumerate(todo)))
    # Rewrite in question order, now that everything is in.
    order = {q.uid: i for i, q in enumerate(qs)}
    with path.open("w", encoding="utf-8") as out:
        for uid in sorted(done, key=lambda u: order.get(u, len(order))):
            out.write(dump_record(done[uid]))
    return summary
