"""The strategy presets: width and depth settings of the same graph.

Plain data, kept apart from the pydantic models so that the command line can list the presets
without loading them.
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["PRESETS", "PresetName"]

PresetName = Literal["single", "best-of-n", "feedback-edit", "self-refine", "beam"]
PRESETS: dict[str, dict[str, Any]] = {
    # One draft, nothing else: the baseline every other preset is compared with.
    "single": {"width": {"drafts": 1, "critiques": 0}, "depth": {"max_rounds": 0}},
    # n drafts, judged; no critique or edit.
    "best-of-n": {"width": {"critiques": 0}, "depth": {"max_rounds": 0}},
    # The paper: n drafts, m critiques each, k edits per critique, one round, judge all.
    # Only effective feedback counts: a critique that finds nothing to change is sampled again.
    "feedback-edit": {"depth": {"max_rounds": 1, "skip_perfect": True}},
    # One draft, critiqued and edited for r rounds, the best edit carried on each time.
    "self-refine": {
        "width": {"drafts": 1, "critiques": 1, "edits": 1},
        "depth": {"max_rounds": 3, "beam": 1},
    },
    # Wide and deep: a beam search over edits.
    "beam": {
        "width": {"drafts": 4, "critiques": 2, "edits": 1},
        "depth": {"max_rounds": 3, "beam": 2},
    },
}
