"""Scaling sweeps: every point of a grid answered, judged and scored, with a table and a plot.

Every point runs as a batch over one shared store, so the call cache makes the whole curve cost
what its largest point costs: ``drafts = 4`` reuses the first four draws of ``drafts = 8``, and
their critiques and edits. A rerun of the same sweep makes no model call at all (finished
threads are read back; finished judgments are kept).

Grid syntax: ``"preset=feedback-edit,best-of-n; drafts=1,2,4,8; critiques=1,2; edits=1"``,
the cartesian product of every key's values (:mod:`langgraph_feedit.evaluate.grid` reads it).
A preset fixes some widths (``single``: one draft, no critique; ``best-of-n``: no critique;
``self-refine``: one draft), so grid values for those keys are dropped for it and duplicate
points are run once. The table and reports are written by
:mod:`langgraph_feedit.evaluate.sweep_report`.

With ``scorer="verify"`` (``feedit sweep --scorer verify``) the questions are IFEval-format
prompts with verifiable instructions instead, and each point's answers are checked by IFEval's
checkers (:mod:`langgraph_feedit.evaluate.verify`): no judge, no baseline; the plot shows
verified accuracy (prompt-level, loose) against mean tokens per prompt, one line per preset.

Every point is scored against one baseline, so the sweep's questions must share one: a v0.1
question file does; with v2.0's, whose categories have their own baselines, pick one baseline's
categories with ``categories=`` (``--category hard_prompt``), and only those questions are run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langgraph_feedit.batch import BatchOptions, run_batch
from langgraph_feedit.config import FeeditConfig
from langgraph_feedit.errors import InputError, UserError
from langgraph_feedit.evaluate.baselines import BaselineChoice
from langgraph_feedit.evaluate.grid import SweepPoint, parse_grid, point_size
from langgraph_feedit.evaluate.sweep_report import (
    cost_row,
    wilson,
    write_csv,
    write_report,
    write_verify_report,
)
from langgraph_feedit.exports import export_arena_answers

__all__ = ["SweepPoint", "parse_grid", "run_sweep"]


async def run_sweep(
    config: FeeditConfig,
    *,
    questions: Path,
    baseline: Path | str | BaselineChoice | None,
    grid: str,
    output: Path,
    limit: int | None = None,
    rounds: int = 100,
    seed: int = 42,
    confidence: float = 0.90,
    categories: Sequence[str] | None = None,
    warn: Callable[[str], None] | None = None,
    scorer: str = "arena",
) -> dict[str, Any]:
    """Run, judge and score every point; write ``sweep.csv``, ``sweep.png`` and ``report.md``
    into ``output``, and each point's trace pages into ``output/pages/<point>/`` (linked from
    the report's rows). Returns the table's rows, the score report and ``calls_made``: the model
    calls this sweep paid for (not reused from the cache or from an earlier run).

    ``baseline``: one answer file, one per category (`BaselineChoice`), or None for
    arena-hard-auto's layout (``model_answer/`` beside ``questions``); ``categories``: run only
    questions of these categories.

    ``scorer``: ``arena`` (judged against the baseline) or ``verify`` (IFEval's checkers; the
    baseline, rounds and categories do not apply).

    Raises:
        UserError: the questions' categories have different baselines, or none.
    """
    if scorer == "verify":
        return await _verify_sweep(
            config, questions=questions, grid=grid, output=output, limit=limit
        )
    if scorer != "arena":
        raise UserError(f"unknown scorer {scorer!r}: use arena or verify")
    from langgraph_feedit.evaluate.judge import judge_answers, resolve_baseline_files
    from langgraph_feedit.evaluate.plot import plot_sweep
    from langgraph_feedit.evaluate.records import dump_record, read_judgments, read_questions
    from langgraph_feedit.evaluate.scoring import score_judgments

    points = parse_grid(grid)
    await asyncio.to_thread(output.mkdir, parents=True, exist_ok=True)
    qs = read_questions(questions)
    standard = questions.parent / "model_answer"
    if not qs:
        raise UserError(f"no question in {questions}")
    if categories:
        present = sorted({q.category for q in qs})
        qs = [q for q in qs if q.category in set(categories)]
        if not qs:
            raise UserError(
                f"no question of category {', '.join(categories)} in {questions} "
                f"(it holds: {', '.join(present)})"
            )
        # The batches read a file: the chosen questions, in their order.
        questions = output / "question.jsonl"
        questions.write_text("".join(dump_record(q) for q in qs), encoding="utf-8")
    files, warnings = resolve_baseline_files(baseline, qs, standard)
    if len({path.stem for path in files.values()}) > 1:
        detail = "; ".join(f"{c}: {p.stem}" for c, p in sorted(files.items()))
        raise UserError(
            f"the questions' categories have different baselines ({detail}); a sweep scores "
            "against one: pick its categories with --category"
        )
    for message in warnings:
        if warn is not None:
            warn(message)
    base_name = next(iter(files.values())).stem
    chosen = BaselineChoice(categories={c: str(p) for c, p in files.items()})
    rows: list[dict[str, Any]] = []
    judgment_files: list[Path] = []
    note = ""
    summaries, calls_made = await _run_points(config, points, questions, output, limit)

    async def judge(point: SweepPoint) -> Any:
        arena = output / "model_answer" / f"{point.name}.jsonl"
        export_arena_answers(output / "answers" / f"{point.name}.jsonl", arena)
        return await judge_answers(
            config,
            questions=questions,
            answers=arena,
            baseline=chosen,
            output=output / "model_judgment",
        )

    # Judging needs no cache discipline (each point's answers are its own): all at once.
    for point, judged in zip(points, await asyncio.gather(*map(judge, points)), strict=True):
        judgment_files.append(judged.path)
        calls_made += 2 * judged.judged + len(judged.failed)
        rows.append(
            cost_row(point, output / "answers" / f"{point.name}.jsonl", summaries[point].wall_s)
        )
        rows[-1]["pages"] = await asyncio.to_thread(_write_pages, output, point)
    judgments = [j for path in judgment_files for j in read_judgments(path)]
    try:
        report: Any = score_judgments(
            judgments, baseline=base_name, rounds=rounds, seed=seed, confidence=confidence
        )
        scores = {m.model: m.overall for m in report.models}
    except InputError as exc:  # no usable verdict at all (a very weak judge): no scores
        report, scores = None, {}
        note = f"no score: {exc}"
    for row in rows:
        s = scores.get(row["point"])
        row.update(
            score=None if s is None else round(s.score, 2),
            lower=None if s is None else round(s.lower, 2),
            upper=None if s is None else round(s.upper, 2),
        )
    write_csv(output / "sweep.csv", rows)
    plotted = [
        {
            "preset": r["preset"],
            "label": r["label"],
            "mean_tokens": r["mean_tokens"],
            "score": r["score"],
            "lower": r["lower"],
            "upper": r["upper"],
        }
        for r in rows
        if r["score"] is not None and r["mean_tokens"] > 0
    ]
    plot_sweep(
        plotted,
        output / "sweep.png",
        baseline=base_name,
        empty_note=None if plotted else (note if not scores else "no scored point"),
    )
    write_report(output / "report.md", rows, base_name, confidence)
    return {
        "rows": rows,
        "report": None if report is None else report.to_dict(),
        "calls_made": calls_made,
    }


def _write_pages(output: Path, point: SweepPoint) -> str:
    """The point's index and per-prompt trace pages; returns the index's path from ``output``."""
    from langgraph_feedit.view import write_batch_pages

    folder = Path("pages") / point.name
    write_batch_pages(
        output / "answers" / f"{point.name}.jsonl", output / folder, title=f"sweep: {point.name}"
    )
    return (folder / "index.html").as_posix()


async def _run_points(
    config: FeeditConfig,
    points: Sequence[SweepPoint],
    questions: Path,
    output: Path,
    limit: int | None,
) -> tuple[dict[SweepPoint, Any], int]:
    # Largest point first: every smaller point is then a prefix of it, served from the cache,
    # and no two points ever race to buy the same call.
    summaries: dict[SweepPoint, Any] = {}
    calls_made = 0
    for point in sorted(points, key=point_size, reverse=True):
        summaries[point] = await run_batch(
            config.merged(point.overrides()),
            BatchOptions(
                input=questions,
                output=output / "answers" / f"{point.name}.jsonl",
                store=output / "store",
                limit=limit,
                progress=False,
            ),
        )
        calls_made += summaries[point].calls
    return summaries, calls_made


async def _verify_sweep(
    config: FeeditConfig, *, questions: Path, grid: str, output: Path, limit: int | None
) -> dict[str, Any]:
    from langgraph_feedit.evaluate.plot import plot_sweep
    from langgraph_feedit.evaluate.verify import (
        read_ifeval_questions,
        read_verify_answers,
        verify_answers,
    )

    points = parse_grid(grid)
    qs = read_ifeval_questions(questions)[:limit] if limit else read_ifeval_questions(questions)
    await asyncio.to_thread(output.mkdir, parents=True, exist_ok=True)
    summaries, calls_made = await _run_points(config, points, questions, output, limit)
    rows: list[dict[str, Any]] = []
    for point in points:
        answers = output / "answers" / f"{point.name}.jsonl"
        got = read_verify_answers(answers)
        missing = [q.id for q in qs if q.id not in got]
        if missing:
            raise InputError(
                f"no answer to key {missing[0]} (the run of that prompt failed): rerun the "
                "sweep to resume it",
                path=str(answers),
            )
        verified = verify_answers(qs, got)
        row = cost_row(point, answers, summaries[point].wall_s)
        lower, upper = wilson(verified["prompt_loose"], verified["prompts"])
        row.update(
            score=round(100 * verified["prompt_loose"], 2),
            lower=lower,
            upper=upper,
            **{
                k: verified[k]
                for k in (
                    "prompt_strict",
                    "prompt_loose",
                    "instruction_strict",
                    "instruction_loose",
                )
            },
        )
        head = verified.get("headroom") or {}
        edits = head.get("edits") or {}
        row.update(
            any_pass=head.get("any_pass"),
            pick_accuracy=head.get("pick_accuracy"),
            random_pick=head.get("random_pick"),
            edits_beat=edits.get("beats"),
            edits_tie=edits.get("ties"),
            edits_lose=edits.get("loses"),
            not_an_answer_rate=edits.get("not_an_answer_rate"),
        )
        rows.append(row)
    write_csv(output / "sweep.csv", rows)
    plotted = [r for r in rows if r["mean_tokens"] > 0]
    # The headroom beside each point: what a perfect judge would reach with its candidates.
    plotted += [
        {
            **r,
            "preset": f"{r['preset']}: some candidate passes",
            "score": round(100 * r["any_pass"], 2),
            "lower": round(100 * r["any_pass"], 2),
            "upper": round(100 * r["any_pass"], 2),
        }
        for r in rows
        if r["mean_tokens"] > 0 and r.get("any_pass") is not None
    ]
    plot_sweep(
        plotted,
        output / "sweep.png",
        title="Verified accuracy (IFEval checkers) against compute",
        ylabel="prompts with every instruction followed, loose (%)",
        reference=None,
        empty_note=None if plotted else "no answered prompt",
    )
    write_verify_report(output / "report.md", rows)
    return {"rows": rows, "report": None, "calls_made": calls_made}
