"""Arena-Hard-Auto compatibility: judge prompts, verdict parsing and the JSONL file formats.

Everything here is pure (no network, no numpy), so that judging with Arena-Hard's prompts and
writing its files needs only the core install. The names live in two modules and are gathered
here, the import path the rest of the package and its users rely on:

- `langgraph_feedit.evaluate.prompts`: the judge's system prompts and user template, the
  verdict labels and parsing, and the handling of ``<think>`` reasoning;
- `langgraph_feedit.evaluate.records`: the question, answer and judgment records, their
  readers and writers, and the markdown counts of an answer's metadata.

Example:
    >>> from langgraph_feedit.evaluate.arena import judge_messages, parse_verdict
    >>> parse_verdict("My final verdict is tie: [[A=B]]")
    'A=B'
"""

from __future__ import annotations

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
    parse_verdict,
    split_think,
    strip_think,
)
from langgraph_feedit.evaluate.records import (
    AnswerMetadata,
    ArenaAnswer,
    ArenaGame,
    ArenaJudgment,
    ArenaQuestion,
    MarkdownCounts,
    answer_record,
    dump_record,
    game_record,
    judgment_record,
    markdown_counts,
    metadata_from_answers,
    read_answer_dir,
    read_answers,
    read_judgments,
    read_questions,
)

__all__ = [
    "ARENA_HARD_SYSTEM_PROMPT",
    "CREATIVE_WRITING_SYSTEM_PROMPT",
    "DEFAULT_BASELINES",
    "JUDGE_USER_TEMPLATE",
    "VERDICTS",
    "VERDICT_PATTERNS",
    "AnswerMetadata",
    "ArenaAnswer",
    "ArenaGame",
    "ArenaJudgment",
    "ArenaQuestion",
    "MarkdownCounts",
    "Verdict",
    "answer_record",
    "dump_record",
    "game_record",
    "judge_messages",
    "judge_system_prompt",
    "judgment_record",
    "markdown_counts",
    "metadata_from_answers",
    "normalize_verdict",
    "parse_verdict",
    "read_answer_dir",
    "read_answers",
    "read_judgments",
    "read_questions",
    "split_think",
    "strip_think",
]
