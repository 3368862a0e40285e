"""Markdown counts of an answer (headers, list items, bold spans), the style-control features.

Arena-Hard's ``utils/add_markdown_info.py`` counting, reproduced exactly. ``records.py`` puts
them in the answers it writes, ``markdown_info.py`` adds them to answer files without them, and
``fit.py`` and ``scoring.py`` read them back from ``AnswerMetadata``.
"""

from __future__ import annotations

import re
from typing import TypedDict

__all__ = ["MarkdownCounts", "markdown_counts"]


class MarkdownCounts(TypedDict):
    """Markdown element counts, as in an answer's ``metadata``."""

    header_count: dict[str, int]
    list_count: dict[str, int]
    bold_count: dict[str, int]


# Arena-Hard's `utils/add_markdown_info.py`, reproduced exactly (lmarena/arena-hard-auto,
# Apache-2.0; see the attribution in `prompts.py`).
_CODE_BLOCK = re.compile("```([^`]*)```")
_HEADERS = tuple(re.compile(rf"^#{{{n}}}\s", re.MULTILINE) for n in range(1, 7))
_ORDERED = re.compile(r"^\s*\d+\.\s", re.MULTILINE)
_UNORDERED = re.compile(r"^\s*[-*+]\s", re.MULTILINE)
_BOLD_STARS = re.compile(r"\*\*[^*\n]+\*\*")
_BOLD_UNDERSCORES = re.compile(r"__[^_\n]+__")


def markdown_counts(text: str) -> MarkdownCounts:
    """Headers, list items and bold spans of an answer, with fenced code blocks removed.

    Arena-Hard's exact regexes and removal, quirks included, so that style-control features
    agree with metadata it computed: removal deletes each block's inner text (the fences stay)
    wherever that text occurs in the answer, and a block containing a backtick is not removed.

    Example:
        >>> markdown_counts("# T\\n- a\\n```\\n# not a header\\n```\\n**b**")["header_count"]["h1"]
        1
    """
    for block in _CODE_BLOCK.findall(text):
        text = text.replace(block, "")
    headers = [len(p.findall(text)) for p in _HEADERS]
    return {
        "header_count": {f"h{n}": headers[n - 1] for n in range(1, 7)},
        "list_count": {
            "ordered": len(_ORDERED.findall(text)),
            "unordered": len(_UNORDERED.findall(text)),
        },
        "bold_count": {
            "**": len(_BOLD_STARS.findall(text)),
            "__": len(_BOLD_UNDERSCORES.findall(text)),
        },
    }
