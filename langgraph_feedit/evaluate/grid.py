"""A sweep's grid: which configurations a grid string names, and how big each one's tree is.

Grid syntax: ``"preset=feedback-edit,best-of-n; drafts=1,2,4,8; critiques=1,2; edits=1"``,
the cartesian product of every key's values. A preset fixes some widths (``single``: one draft,
no critique; ``best-of-n``: no critique; ``self-refine``: one draft), so grid values for those
keys are dropped for it and duplicate points are run once. Pure parsing: no run, no file;
:mod:`langgraph_feedit.evaluate.sweep` runs the points (largest first, by
:func:`point_size`) and re-exports :class:`SweepPoint` and :func:`parse_grid`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from langgraph_feedit.config import PRESETS, FeeditConfig
from langgraph_feedit.errors import UserError

__all__ = ["SweepPoint", "parse_grid", "point_size"]

_KEYS = {
    "preset": None,
    "drafts": ("width", "drafts"),
    "critiques": ("width", "critiques"),
    "edits": ("width", "edits"),
    "rounds": ("depth", "max_rounds"),
    "beam": ("depth", "beam"),
    "judge": ("roles", "judge", "kind"),
}
_FIXED_BY_PRESET = {
    "single": {"drafts", "critiques", "edits", "rounds", "beam"},
    "best-of-n": {"critiques", "edits", "rounds", "beam"},
    "self-refine": {"drafts"},
}
_SHORT = {"drafts": "d", "critiques": "c", "edits": "e", "rounds": "r", "beam": "b", "judge": "j"}


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One configuration of the grid."""

    preset: str
    values: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        parts = [self.preset] + [f"{_SHORT[k]}{v}" for k, v in self.values]
        return "_".join(parts)

    def overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {"preset": self.preset}
        for key, value in self.values:
            path = _KEYS[key]
            assert path is not None
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value if key == "judge" else int(value)
        return out


def parse_grid(text: str) -> list[SweepPoint]:
    """The points of a grid, in order, without duplicates.

    Raises:
        UserError: an unknown key or preset, or a malformed part.
    """
    axes: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, values = part.partition("=")
        key = key.strip()
        if not sep or key not in _KEYS:
            raise UserError(
                f"grid part {part!r}: expected KEY=v1,v2 with KEY one of {', '.join(_KEYS)}"
            )
        axes[key] = [v.strip() for v in values.split(",") if v.strip()]
        if not axes[key]:
            raise UserError(f"grid part {part!r} lists no values")
        for v in axes[key]:
            if key == "preset" and v not in PRESETS:
                raise UserError(f"grid: unknown preset {v!r} (one of {', '.join(PRESETS)})")
            if key not in ("preset", "judge") and not re.fullmatch(r"\d+", v):
                raise UserError(f"grid: {key} values must be whole numbers, got {v!r}")
    presets = axes.pop("preset", ["feedback-edit"])
    keys = [k for k in _KEYS if k in axes]
    points: list[SweepPoint] = []
    for preset in presets:
        fixed = _FIXED_BY_PRESET.get(preset, set())
        free = [k for k in keys if k not in fixed]
        for combo in itertools.product(*(axes[k] for k in free)):
            point = SweepPoint(preset, tuple(zip(free, combo, strict=True)))
            if point not in points:
                points.append(point)
    return points


def point_size(point: SweepPoint) -> int:
    """Calls per prompt the point's tree makes, roughly: for ordering points by size."""
    from langgraph_feedit.config import resolve_config

    cfg = resolve_config(FeeditConfig().merged(point.overrides()))
    per_round = cfg.width.critiques * (1 + cfg.width.edits)
    return cfg.width.drafts * (1 + per_round * max(cfg.depth.max_rounds, 0) + 1)
