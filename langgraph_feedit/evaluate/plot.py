"""The scaling plot: Arena-Hard score against the tokens spent per prompt, one line per preset.

Drawn with matplotlib's object API on the Agg canvas (no pyplot), so it needs no display and
leaves no global figure state behind in a long-running process.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from langgraph_feedit.evaluate import EXTRA_HINT

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(f"{EXTRA_HINT} ({exc})") from exc

__all__ = ["SweepPoint", "plot_sweep"]

_SIZE_INCHES = (8.0, 5.0)
_DPI = 120
# A light backing keeps a point's label legible where it crosses another line.
_LABEL_BOX = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}


class SweepPoint(TypedDict):
    """One configuration of a sweep: its preset (the line), a label, cost and score."""

    preset: str
    mean_tokens: float
    """Mean tokens spent per prompt, all roles together (the x axis, log scale)."""
    score: float
    """Win rate against the baseline, percent."""
    lower: float
    upper: float
    label: NotRequired[str]
    """Written next to the point (for example ``4x2``); optional."""


def _number(point: Mapping[str, Any], key: str, index: int) -> float:
    if key not in point:
        raise ValueError(f"sweep point {index} has no {key!r}")
    value = point[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"sweep point {index}: {key!r} must be a finite number, not {value!r}")
    return float(value)


def plot_sweep(
    points: Sequence[SweepPoint | Mapping[str, Any]],
    path: str | Path,
    *,
    title: str = "Arena-Hard score against compute",
    baseline: str | None = None,
    empty_note: str | None = None,
    ylabel: str = "win rate against the baseline (%)",
    reference: float | None = 50.0,
) -> Path:
    """Write a PNG (8x5 in, 120 dpi) of score against mean tokens per prompt.

    Each preset is one line through its points in order of cost, with the bootstrap interval
    as error bars and each point's label beside it; a dashed line marks the baseline's 50%.

    ``ylabel`` names the score axis and ``reference`` is where the dashed line goes (``None``:
    no line; verified accuracy has no baseline to compare with).

    With no points and an ``empty_note``, the chart says that note instead (a sweep whose judge
    gave no usable verdict still gets its picture).

    Raises:
        ValueError: no points (and no ``empty_note``), or a point lacks a field or has a
            non-positive ``mean_tokens`` (the axis is logarithmic).

    Example:
        >>> plot_sweep([{"preset": "feedit", "label": "4x2", "mean_tokens": 5200,
        ...              "score": 71.0, "lower": 68.2, "upper": 73.9}], "sweep.png")
        ... # doctest: +SKIP
    """
    if not points and not empty_note:
        raise ValueError("no sweep points to plot")
    lines: dict[str, list[tuple[float, float, float, float, str]]] = defaultdict(list)
    for i, point in enumerate(points):
        preset = point.get("preset")
        if not isinstance(preset, str) or not preset:
            raise ValueError(f"sweep point {i} has no 'preset' name")
        x = _number(point, "mean_tokens", i)
        if x <= 0:
            raise ValueError(f"sweep point {i}: 'mean_tokens' must be > 0 for a log axis")
        label = point.get("label")
        lines[preset].append(
            (
                x,
                _number(point, "score", i),
                _number(point, "lower", i),
                _number(point, "upper", i),
                str(label) if label is not None else "",
            )
        )

    figure = Figure(figsize=_SIZE_INCHES, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if reference is not None:
        axes.axhline(
            reference,
            color="0.5",
            linestyle="--",
            linewidth=1,
            label=f"baseline ({baseline})" if baseline else "baseline",
        )
    for preset in sorted(lines):
        run = sorted(lines[preset])
        xs = [p[0] for p in run]
        ys = [p[1] for p in run]
        # The point estimate is the fit on all battles, which can sit just outside the
        # bootstrap percentiles; an error bar cannot be negative.
        below = [max(0.0, p[1] - p[2]) for p in run]
        above = [max(0.0, p[3] - p[1]) for p in run]
        drawn = axes.errorbar(
            xs, ys, yerr=[below, above], marker="o", markersize=5, capsize=3, label=preset
        )
        colour = drawn.lines[0].get_color()
        for x, y, *_, label in run:
            if label:
                axes.annotate(
                    label,
                    (x, y),
                    textcoords="offset points",
                    xytext=(6, 6),
                    fontsize=8,
                    color=colour,
                    bbox=_LABEL_BOX,
                )
    if not points:
        axes.text(
            0.5,
            0.5,
            empty_note or "",
            ha="center",
            va="center",
            wrap=True,
            transform=axes.transAxes,
        )
    else:
        axes.set_xscale("log")
    # Token counts read better as plain numbers than as powers of ten.
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("mean tokens per prompt (log scale)")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    axes.grid(True, which="minor", axis="x", alpha=0.1)
    if points:
        axes.legend(title="preset", loc="best", fontsize=9)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png", dpi=_DPI)
    return target
