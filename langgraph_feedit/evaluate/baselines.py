"""Which baseline each question category is judged and scored against.

Arena-Hard v2.0 judges each category against its own baseline (``o3-mini-2025-01-31`` for
``hard_prompt``, ``gemini-2.0-flash-001`` for ``creative_writing``: its ``JUDGE_SETTINGS``,
`DEFAULT_BASELINES` here) and scores one category at a time; v0.1 has one category and one
baseline. The command line gives baselines as repeated ``--baseline`` values:

- ``CATEGORY=FILE`` (judge) or ``CATEGORY=MODEL`` (score): that category's baseline;
- a plain ``FILE`` or ``MODEL``: every other category's;
- none at all (judge): arena-hard-auto's layout, ``<answers folder>/<its baseline>.jsonl`` per
  category.

A category left without a baseline is an error before any call is made, and a category judged
against another baseline than arena-hard-auto's draws a warning (its scores are then not
comparable with the published ones).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from langgraph_feedit.errors import UserError
from langgraph_feedit.evaluate.prompts import DEFAULT_BASELINES

__all__ = [
    "BaselineChoice",
    "missing_baselines_error",
    "parse_baseline_args",
    "standard_baseline_warning",
]

_CATEGORY = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class BaselineChoice:
    """Baselines by question category, with a default for the others.

    The values are answer files (for judging) or model names (for scoring).
    """

    default: str | None = None
    categories: Mapping[str, str] = field(default_factory=dict)

    def get(self, category: str) -> str | None:
        """The baseline of ``category``: its own, else the default, else None."""
        return self.categories.get(category, self.default)

    @property
    def empty(self) -> bool:
        return self.default is None and not self.categories


def parse_baseline_args(
    values: Sequence[str] | None, *, flag: str = "--baseline", files: bool = False
) -> BaselineChoice:
    """``--baseline`` values: ``CATEGORY=VALUE`` for one category, a plain ``VALUE`` for the
    rest. With ``files``, a value naming an existing file is always a plain one (a file name
    may hold an ``=``).

    Raises:
        UserError: two defaults, a category given twice, or an empty part.

    Example:
        >>> choice = parse_baseline_args(["gpt-4-0314", "creative_writing=gemini-2.0-flash"])
        >>> choice.get("creative_writing"), choice.get("hard_prompt")
        ('gemini-2.0-flash', 'gpt-4-0314')
    """
    default: str | None = None
    categories: dict[str, str] = {}
    for value in values or ():
        category, sep, rest = value.partition("=")
        as_file = files and Path(value).exists()
        if sep and not as_file and _CATEGORY.fullmatch(category):
            if not rest:
                raise UserError(f"{flag} {value!r}: expected CATEGORY=VALUE with a value")
            if category in categories:
                raise UserError(f"{flag}: category {category!r} is given twice")
            categories[category] = rest
        else:
            if not value:
                raise UserError(f"{flag} needs a value")
            if default is not None:
                raise UserError(
                    f"{flag}: two default baselines ({default!r} and {value!r}); give one, and "
                    "CATEGORY=VALUE for the categories that differ"
                )
            default = value
    return BaselineChoice(default, categories)


def standard_baseline_warning(category: str, baseline: str, *, hint: str = "") -> str | None:
    """A warning when ``category`` is judged or scored against another baseline than
    arena-hard-auto's for it; None when it agrees or the category is not one of its own.
    ``hint`` (what the user can do about it) ends the message."""
    standard = DEFAULT_BASELINES.get(category)
    if standard is None or standard == baseline:
        return None
    return (
        f"category {category!r} is against {baseline!r}, but arena-hard-auto uses "
        f"{standard!r} for it: its scores will not compare with the published ones{hint}"
    )


def missing_baselines_error(missing: Mapping[str, Collection[str]], *, hint: str) -> UserError:
    """The error for categories left without a baseline: which, with one question each."""
    detail = "; ".join(
        f"{category!r} ({len(uids)} question(s), e.g. {min(uids)!r})"
        for category, uids in sorted(missing.items())
    )
    return UserError(f"no baseline for question category {detail}: {hint}")
