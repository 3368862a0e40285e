"""Arena-Hard judging with the ``evaluator`` role: two games per question, positions swapped.

Writes ``DIR/<judge>/<model>.jsonl`` in arena-hard-auto's judgment schema. Judging is resumable
like a batch: lines already in the file are kept, and a rerun judges only the questions that
are missing (a judge call that failed leaves its question missing, so it is tried again). An
unparseable verdict is recorded as ``null`` and counted, never guessed.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph_feedit.calls import RoleCaller
from langgraph_feedit.config import FeeditConfig
from langgraph_feedit.errors import EmbeddedError, EndpointError, InputError
from langgraph_feedit.evaluate.arena import (
    ArenaAnswer,
    ArenaQuestion,
    dump_record,
    game_record,
    judge_messages,
    judgment_record,
    parse_verdict,
    read_answers,
    read_judgments,
    read_questions,
    split_think,
    strip_think,
)

__all__ = ["JudgeSummary", "judge_answers"]


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

    def lines(self) -> list[str]:
        out = [
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
    thought, reply = split_think(result.texts[0] if result.texts else "")
    return game_record(parse_verdict(reply), reply, messages, thought=thought)


async def judge_answers(
    config: FeeditConfig,
    *,
    questions: Path,
    answers: Path,
    baseline: Path,
    output: Path,
    judge_name: str | None = None,
    concurrency: int | None = None,
) -> JudgeSummary:
    """Judge ``answers`` against ``baseline`` on ``questions`` into ``output/<judge>/``.

    Raises:
        InputError: a malformed questions, answers or judgment file (names file and line).
    """
    qs = read_questions(questions)
    model_answers = {a.uid: a for a in read_answers(answers)}
    base_answers = {a.uid: a for a in read_answers(baseline)}
    model = answers.stem
    base_model = baseline.stem
    caller = _caller(config)
    judge = judge_name or config.role("evaluator").model or await caller.model_name("evaluator")
    path = output / judge.replace("/", "_") / f"{model}.jsonl"
    summary = JudgeSummary(path=path)
    done: dict[str, dict[str, Any]] = {}
    if path.exists():
        for j in read_judgments(path):
            if j.model != model:
                raise InputError(f"holds judgments of {j.model!r}, not {model!r}", path=str(path))
            done[j.uid] = json.loads(dump_record(j))
    summary.kept = len(done)
    todo: list[tuple[ArenaQuestion, ArenaAnswer, ArenaAnswer]] = []
    for q in qs:
        if q.uid in done:
            continue
        if q.uid not in model_answers or q.uid not in base_answers:
            summary.missing.append(q.uid)
            continue
        todo.append((q, model_answers[q.uid], base_answers[q.uid]))
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
            record = judgment_record(q.uid, q.category or "", judge, model, base_model, [g1, g2])
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
