"""A sweep's table and reports: each point's cost row, ``sweep.csv`` and ``report.md``.

Per point, the mean tokens per prompt (all roles, and each role of a run apart) and calls, read
from its answers file; the CSV's columns; the Arena-Hard report (win rate with its bootstrap
interval) and the verified one (IFEval's rates with a Wilson interval, and where quality is
lost). :mod:`langgraph_feedit.evaluate.sweep` runs and scores the points, then writes them
here; nothing here runs a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langgraph_feedit.evaluate.grid import SweepPoint
from langgraph_feedit.exports import read_answers_file
from langgraph_feedit.overrides import RUN_ROLES

__all__ = ["COLUMNS", "cost_row", "wilson", "write_csv", "write_report", "write_verify_report"]

_ROLES = tuple(r for r in RUN_ROLES if r != "default")
"""The roles a run calls, each with its own mean-tokens column (``default`` is no role)."""


def wilson(passed: float, n: int, z: float = 1.645) -> tuple[float, float]:
    """The 90% Wilson interval of a proportion ``passed`` of ``n`` (in percent)."""
    if n == 0:
        return 0.0, 0.0
    centre = (passed + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((passed * (1 - passed) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return round(100 * max(0.0, centre - half), 2), round(100 * min(1.0, centre + half), 2)


def cost_row(point: SweepPoint, answers: Path, wall_s: float) -> dict[str, Any]:
    """The point's row of the table: mean tokens per prompt (in all and per role) and calls,
    over its answered prompts."""
    totals = dict.fromkeys(_ROLES, 0)
    calls = prompts = 0
    for _, record in read_answers_file(answers):
        if record["status"] != "ok":
            continue
        prompts += 1
        usage = record["trace"]["usage"]
        for role in _ROLES:
            u = usage.get(role, {})
            totals[role] += u.get("prompt_tokens", 0) + u.get("completion_tokens", 0)
        calls += usage["total"]["calls"]
    n = max(prompts, 1)
    return {
        "point": point.name,
        "preset": point.preset,
        "label": "x".join(v for _, v in point.values) or point.preset,
        **{k: v for k, v in point.values},
        "prompts": prompts,
        "mean_tokens": round(sum(totals.values()) / n, 1),
        **{f"mean_tokens_{role}": round(totals[role] / n, 1) for role in _ROLES},
        "mean_calls": round(calls / n, 2),
        "wall_s": round(wall_s, 2),
    }


COLUMNS = (
    "point",
    "preset",
    "drafts",
    "critiques",
    "edits",
    "rounds",
    "beam",
    "judge",
    "score",
    "lower",
    "upper",
    "prompt_strict",
    "prompt_loose",
    "instruction_strict",
    "instruction_loose",
    "mean_tokens",
    *(f"mean_tokens_{role}" for role in _ROLES),
    "mean_calls",
    "prompts",
    "wall_s",
)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in COLUMNS})


def write_report(path: Path, rows: list[dict[str, Any]], baseline: str, confidence: float) -> None:
    lines = [
        "# Sweep report",
        "",
        f"Win rate (%) against `{baseline}` with {round(confidence * 100)}% bootstrap intervals,"
        " and the mean tokens "
        "spent per prompt (all roles; calls reused from the cache count at full cost, so "
        "points compare at matched compute).",
        "",
        "| point | score | interval | mean tokens | calls / prompt | wall s | traces |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for r in sorted(rows, key=lambda r: (r["preset"], r["mean_tokens"])):
        score = "n/a" if r["score"] is None else f"{r['score']:.1f}"
        interval = "" if r["score"] is None else f"{r['lower']:.1f} to {r['upper']:.1f}"
        lines.append(
            f"| {r['point']} | {score} | {interval} | {r['mean_tokens']:.0f} |"
            f" {r['mean_calls']:.1f} | {r['wall_s']:.1f} |"
            + (f" [pages]({r['pages']}) |" if r.get("pages") else " |")
        )
    lines += [
        "",
        "![score against mean tokens per prompt](sweep.png)",
        "",
        "Each row's *pages* link opens its prompts' trace pages (an index sortable by score, "
        "tokens and time, and one page per prompt's tree).",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    (path.with_suffix(".json")).write_text(json.dumps(rows, indent=2), encoding="utf-8")


def write_verify_report(path: Path, rows: list[dict[str, Any]]) -> None:
    lines = [
        "# Sweep report (verified)",
        "",
        "Prompts whose every instruction IFEval's checkers found followed (strict: the answer "
        "as given; loose: also with its first or last line or markdown asterisks removed), "
        "with the 90% Wilson interval of the loose rate, and the mean tokens spent per prompt "
        "(all roles; calls reused from the cache count at full cost).",
        "",
        "| point | prompt loose | interval | prompt strict | instruction loose |"
        " mean tokens | calls / prompt |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in sorted(rows, key=lambda r: (r["preset"], r["mean_tokens"])):
        lines.append(
            f"| {r['point']} | {r['score']:.1f} | {r['lower']:.1f} to {r['upper']:.1f} |"
            f" {100 * r['prompt_strict']:.1f} | {100 * r['instruction_loose']:.1f} |"
            f" {r['mean_tokens']:.0f} | {r['mean_calls']:.1f} |"
        )
    heads = [r for r in rows if r.get("any_pass") is not None]
    if heads:
        lines += [
            "",
            "Where quality is lost (prompt loose): some candidate passes (what a perfect judge "
            "would reach), the judge's pick accuracy where one does (against a random pick), "
            "edits against the candidate they revised, and edit replies that were no answer.",
            "",
            "| point | some candidate passes | pick accuracy | random pick |"
            " edits beat / tie / lose | not an answer |",
            "| --- | ---: | ---: | ---: | --- | ---: |",
        ]
        for r in sorted(heads, key=lambda r: (r["preset"], r["mean_tokens"])):
            lines.append(
                f"| {r['point']} | {100 * r['any_pass']:.1f} | {100 * r['pick_accuracy']:.1f} |"
                f" {100 * r['random_pick']:.1f} |"
                f" {r['edits_beat']} / {r['edits_tie']} / {r['edits_lose']} |"
                f" {100 * (r['not_an_answer_rate'] or 0):.1f} |"
            )
    lines += ["", "![verified accuracy against mean tokens per prompt](sweep.png)", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    (path.with_suffix(".json")).write_text(json.dumps(rows, indent=2), encoding="utf-8")
