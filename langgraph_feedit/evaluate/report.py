"""The score report: per-model scores with their intervals, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from langgraph_feedit.evaluate.fit import NullPolicy

__all__ = ["ModelScore", "Score", "ScoreReport", "reports_to_csv", "reports_to_json"]

_OVERALL = "all"


@dataclass(frozen=True, slots=True)
class Score:
    """A win rate against the baseline (percent) with its bootstrap interval.

    ``rows`` counts judgment rows used, ``battles`` the battles they gave (a strong verdict
    counts three times). The style fields are None when style control was not run.
    """

    score: float
    lower: float
    upper: float
    rows: int
    battles: int
    style_score: float | None = None
    style_lower: float | None = None
    style_upper: float | None = None


@dataclass(frozen=True, slots=True)
class ModelScore:
    """One model's score over all prompts and per question category."""

    model: str
    overall: Score
    categories: dict[str, Score] = field(default_factory=dict)
    dropped_rows: int = 0
    mean_tokens: float | None = None


_CSV_COLUMNS = (
    "model",
    "category",
    "baseline",
    "score",
    "lower",
    "upper",
    "style_score",
    "style_lower",
    "style_upper",
    "rows",
    "battles",
    "dropped_rows",
    "mean_tokens",
)


@dataclass(frozen=True)
class ScoreReport:
    """Scores of every model against one baseline, best first."""

    baseline: str
    judges: list[str]
    models: list[ModelScore]
    rounds: int
    seed: int
    confidence: float
    strong_weight: int
    null_policy: NullPolicy
    style_coefficients: dict[str, float] | None = None
    warnings: list[str] = field(default_factory=list)
    """Categories scored against another baseline than arena-hard-auto's for them."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written by `to_json`."""
        return asdict(self)

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as JSON."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_csv(self) -> str:
        """One row per model and category; the category ``all`` is the overall score."""
        return reports_to_csv([self])

    def _csv_rows(self, writer: Any) -> None:
        for m in self.models:
            for category, s in [(_OVERALL, m.overall), *m.categories.items()]:
                writer.writerow(
                    [
                        m.model,
                        category,
                        self.baseline,
                        *(_csv_number(v) for v in (s.score, s.lower, s.upper)),
                        *(_csv_number(v) for v in (s.style_score, s.style_lower, s.style_upper)),
                        s.rows,
                        s.battles,
                        m.dropped_rows,
                        _csv_number(m.mean_tokens),
                    ]
                )

    def table(self) -> str:
        """A plain-text leaderboard for a terminal: overall, then each category if several."""
        categories = sorted({c for m in self.models for c in m.categories})
        sections = [("all prompts", [(m, m.overall) for m in self.models])]
        if len(categories) > 1:
            for category in categories:
                entries = [
                    (m, m.categories[category]) for m in self.models if category in m.categories
                ]
                entries.sort(key=lambda e: -e[1].score)
                sections.append((f"category {category}", entries))
        percent = round(self.confidence * 100)
        parts = [
            f"Arena-Hard win rate against {self.baseline} on {', '.join(categories) or '?'}"
            f" (judge: {', '.join(self.judges) or '?'};"
            f" {percent}% interval from {self.rounds} bootstrap rounds)"
        ]
        for title, entries in sections:
            parts.append("")
            parts.append(f"## {title}")
            parts.append(self._section(entries, percent))
        return "\n".join(parts)

    def _section(self, entries: list[tuple[ModelScore, Score]], percent: int) -> str:
        with_style = any(s.style_score is not None for _, s in entries)
        header = ["model", "score", f"{percent}% CI"]
        if with_style:
            header += ["style ctrl", f"{percent}% CI"]
        header += ["rows", "battles", "avg tokens"]
        lines = [header]
        for m, s in entries:
            line = [m.model, f"{s.score:.1f}", _interval(s.score, s.lower, s.upper)]
            if with_style:
                if s.style_score is None or s.style_lower is None or s.style_upper is None:
                    line += ["-", "-"]
                else:
                    line += [
                        f"{s.style_score:.1f}",
                        _interval(s.style_score, s.style_lower, s.style_upper),
                    ]
            tokens = "-" if m.mean_tokens is None else f"{m.mean_tokens:.0f}"
            lines.append([*line, str(s.rows), str(s.battles), tokens])
        baseline = [self.baseline, "50.0", "(-0.0, +0.0)"]
        if with_style:
            baseline += ["50.0", "(-0.0, +0.0)"]
        lines.append([*baseline, "-", "-", "-"])
        widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
        rendered = []
        for i, row in enumerate(lines):
            cells = [
                cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j])
                for j, cell in enumerate(row)
            ]
            rendered.append("  ".join(cells).rstrip())
            if i == 0:
                rendered.append("  ".join("-" * w for w in widths))
        return "\n".join(rendered)


def reports_to_csv(reports: list[ScoreReport]) -> str:
    """Several reports (one per baseline) as one CSV table."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for report in reports:
        report._csv_rows(writer)
    return buffer.getvalue()


def reports_to_json(reports: list[ScoreReport], *, indent: int | None = 2) -> str:
    """One report as a JSON object; several (one per baseline) as a list of them."""
    data: Any = reports[0].to_dict() if len(reports) == 1 else [r.to_dict() for r in reports]
    return json.dumps(data, indent=indent, ensure_ascii=False)


def _interval(score: float, lower: float, upper: float) -> str:
    return f"(-{score - lower:.1f}, +{upper - score:.1f})"


def _csv_number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
