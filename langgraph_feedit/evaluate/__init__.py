"""Evaluation against Arena-Hard-Auto: judge prompts and files, scores, sweep plots.

Arena-Hard's prompts and verdict parsing (``prompts``), its JSONL formats (``records``) and the
markdown counts of answers (``markdown``) need only the core install, so that judging works
without the extras. Scoring and plotting need numpy, scipy and matplotlib, the
``eval`` extra; their names are imported on first use, and a missing extra raises an
ImportError that says how to install it.

Example:
    >>> from langgraph_feedit.evaluate import judge_messages, parse_arena_verdict
    >>> parse_arena_verdict("My final verdict is tie: [[A=B]]")
    'A=B'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from langgraph_feedit.evaluate.baselines import BaselineChoice, parse_baseline_args
from langgraph_feedit.evaluate.markdown import MarkdownCounts, markdown_counts
from langgraph_feedit.evaluate.markdown_info import add_markdown_info, token_counter
from langgraph_feedit.evaluate.prompts import (
    ARENA_HARD_SYSTEM_PROMPT,
    CREATIVE_WRITING_SYSTEM_PROMPT,
    DEFAULT_BASELINES,
    JUDGE_USER_TEMPLATE,
    VERDICT_PATTERNS,
    VERDICTS,
    Verdict,
    judge_messages,
    judge_system_prompt,
    normalize_verdict,
    parse_arena_verdict,
    split_think,
    strip_think,
)
from langgraph_feedit.evaluate.records import (
    AnswerMetadata,
    ArenaAnswer,
    ArenaGame,
    ArenaJudgment,
    ArenaQuestion,
    answer_record,
    dump_record,
    game_record,
    judgment_record,
    metadata_from_answers,
    read_answer_dir,
    read_answers,
    read_judgments,
    read_questions,
)

if TYPE_CHECKING:
    from langgraph_feedit.evaluate.plot import SweepPoint, plot_sweep
    from langgraph_feedit.evaluate.scoring import (
        STYLE_FEATURES,
        Battle,
        Battles,
        ModelScore,
        Score,
        ScoreReport,
        battles_from_judgments,
        elo_to_win_rate,
        fit_elo,
        score_by_baseline,
        score_judgments,
        style_features,
    )

__all__ = [
    "ARENA_HARD_SYSTEM_PROMPT",
    "CREATIVE_WRITING_SYSTEM_PROMPT",
    "DEFAULT_BASELINES",
    "EXTRA_HINT",
    "JUDGE_USER_TEMPLATE",
    "STYLE_FEATURES",
    "VERDICTS",
    "VERDICT_PATTERNS",
    "AnswerMetadata",
    "ArenaAnswer",
    "ArenaGame",
    "ArenaJudgment",
    "ArenaQuestion",
    "BaselineChoice",
    "Battle",
    "Battles",
    "MarkdownCounts",
    "ModelScore",
    "Score",
    "ScoreReport",
    "SweepPoint",
    "Verdict",
    "add_markdown_info",
    "answer_record",
    "battles_from_judgments",
    "dump_record",
    "elo_to_win_rate",
    "fit_elo",
    "game_record",
    "judge_messages",
    "judge_system_prompt",
    "judgment_record",
    "markdown_counts",
    "metadata_from_answers",
    "normalize_verdict",
    "parse_arena_verdict",
    "parse_baseline_args",
    "plot_sweep",
    "read_answer_dir",
    "read_answers",
    "read_judgments",
    "read_questions",
    "require_extra",
    "score_by_baseline",
    "score_judgments",
    "split_think",
    "strip_think",
    "style_features",
    "token_counter",
]

EXTRA_HINT = (
    "scoring and plotting need numpy, scipy and matplotlib: pip install 'langgraph-feedit[eval]'"
)

_LAZY = {
    "STYLE_FEATURES": "scoring",
    "Battle": "scoring",
    "Battles": "scoring",
    "ModelScore": "scoring",
    "Score": "scoring",
    "ScoreReport": "scoring",
    "battles_from_judgments": "scoring",
    "elo_to_win_rate": "scoring",
    "fit_elo": "scoring",
    "score_by_baseline": "scoring",
    "score_judgments": "scoring",
    "style_features": "scoring",
    "SweepPoint": "plot",
    "plot_sweep": "plot",
}


def require_extra() -> None:
    """Raise an ImportError naming the ``eval`` extra unless numpy, scipy and matplotlib import.

    For callers (the CLI) that want to fail before doing any work.
    """
    for name in ("numpy", "scipy.optimize", "matplotlib"):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(f"{EXTRA_HINT} ({exc})") from exc


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require_extra()
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
