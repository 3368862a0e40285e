"""Arena-Hard's judge prompts, and reading a verdict from the judge's reply.

What the judge is sent (`judge_messages`: the system prompt for the question's category, then
the filled template) and how its reply is read (`parse_arena_verdict`, with reasoning removed by
`strip_think`). `split_think` separates a reasoning model's thought from its answer the way
Arena-Hard stores answers. Pure text handling: no network, no numpy.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

__all__ = [
    "ARENA_HARD_SYSTEM_PROMPT",
    "CREATIVE_WRITING_SYSTEM_PROMPT",
    "DEFAULT_BASELINES",
    "JUDGE_USER_TEMPLATE",
    "VERDICTS",
    "VERDICT_PATTERNS",
    "Verdict",
    "judge_messages",
    "judge_system_prompt",
    "normalize_verdict",
    "parse_arena_verdict",
    "split_think",
    "strip_think",
]

# The judge prompts, template and verdict patterns below are reproduced from
# lmarena/arena-hard-auto (Apache-2.0, Copyright 2024 Tianle Li, Wei-Lin Chiang, Evan Frick,
# Lisa Dunlap, Banghua Zhu, Joseph E. Gonzalez, Ion Stoica): `src/arenahard/utils/judge_utils.py`
# (OG_ARENA_HARD_PROMPT and the creative_writing entry of JUDGE_SETTINGS; the same text as
# `system_prompt` in `config/judge_config.yaml` of v0.1) and
# `src/arenahard/config/arena-hard-v0.1.yaml` (prompt_template, regex_patterns).
# They must stay byte-identical: scores move with the judge's prompt.
#
# The two system prompts differ only in whether the judge answers the prompt itself before
# comparing, so they are assembled from the paragraphs they share; the results equal the
# upstream strings byte for byte.

_OPENING = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two "
    "AI assistants to the user prompt displayed below. You will be given assistant A's answer "
    "and assistant B's answer. Your job is to evaluate which assistant's answer is better.\n\n"
)
_ANSWER_FIRST = (
    "Begin your evaluation by generating your own answer to the prompt. You must provide your "
    "answers before judging any answers.\n\n"
)
_COMPARE_WITH_OWN_ANSWER = (
    "When evaluating the assistants' answers, compare both assistants' answers with your "
    "answer. You must identify and correct any mistakes or inaccurate information.\n\n"
)
_COMPARE = (
    "When evaluating the assistants' answers, compare both assistants' answers. You must "
    "identify and correct any mistakes or inaccurate information.\n\n"
)
_CRITERIA = (
    "Then consider if the assistant's answers are helpful, relevant, and concise. Helpful means "
    "the answer correctly responds to the prompt or follows the instructions. Note when user "
    "prompt has any ambiguity or more than one interpretation, it is more helpful and "
    "appropriate to ask for clarifications or more information from the user than providing an "
    "answer based on assumptions. Relevant means all parts of the response closely connect or "
    "are appropriate to what is being asked. Concise means the response is clear and not "
    "verbose or excessive.\n\n"
    "Then consider the creativity and novelty of the assistant's answers when needed. Finally, "
    "identify any missing important information in the assistants' answers that would be "
    "beneficial to include when responding to the user prompt.\n\n"
)
_VERDICT_CHOICES = (
    "After providing your explanation, you must output only one of the following choices as "
    "your final verdict with a label:\n\n"
    "1. Assistant A is significantly better: [[A>>B]]\n"
    "2. Assistant A is slightly better: [[A>B]]\n"
    "3. Tie, relatively the same: [[A=B]]\n"
    "4. Assistant B is slightly better: [[B>A]]\n"
    "5. Assistant B is significantly better: [[B>>A]]\n\n"
    'Example output: "My final verdict is tie: [[A=B]]".'
)

ARENA_HARD_SYSTEM_PROMPT = (
    _OPENING + _ANSWER_FIRST + _COMPARE_WITH_OWN_ANSWER + _CRITERIA + _VERDICT_CHOICES
)
"""Arena-Hard's judge system prompt: the judge answers the prompt itself, then compares."""

CREATIVE_WRITING_SYSTEM_PROMPT = _OPENING + _COMPARE + _CRITERIA + _VERDICT_CHOICES
"""The v2.0 ``creative_writing`` variant: the same, without answering the prompt first."""

JUDGE_USER_TEMPLATE = (
    "<|User Prompt|>\n{QUESTION}\n\n"
    "<|The Start of Assistant A's Answer|>\n{ANSWER_A}\n<|The End of Assistant A's Answer|>\n\n"
    "<|The Start of Assistant B's Answer|>\n{ANSWER_B}\n<|The End of Assistant B's Answer|>"
)
"""The judge's user turn (``prompt_template`` of both v0.1 and v2.0)."""

VERDICT_PATTERNS: tuple[str, ...] = (r"\[\[([AB<>=]+)\]\]", r"\[([AB<>=]+)\]")
"""Tried in order on the upper-cased judgment; the first with any match decides."""

DEFAULT_BASELINES: dict[str, str] = {
    "arena-hard-v0.1": "gpt-4-0314",
    "hard_prompt": "o3-mini-2025-01-31",
    "coding": "o3-mini-2025-01-31",
    "math": "o3-mini-2025-01-31",
    "creative_writing": "gemini-2.0-flash-001",
}
"""Arena-Hard's baseline model per question category (its ``JUDGE_SETTINGS``)."""

Verdict = Literal["A>>B", "A>B", "A=B", "B>A", "B>>A"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)

# Arena-Hard's scorer also reads these spellings (its label_to_score table); everything else
# it cannot score, so it is a null verdict here.
_SYNONYMS: dict[str, Verdict] = {
    **{v: v for v in VERDICTS},
    "B=A": "A=B",
    "A<B": "B>A",
    "A<<B": "B>>A",
    "B<A": "A>B",
    "B<<A": "A>>B",
}

_COMPILED = tuple(re.compile(p) for p in VERDICT_PATTERNS)
_PLACEHOLDER = re.compile(r"\{(QUESTION|ANSWER_A|ANSWER_B)\}")
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"


def judge_system_prompt(category: str | None) -> str:
    """The system prompt Arena-Hard uses for a question category.

    Only ``creative_writing`` has its own prompt; every other category (``arena-hard-v0.1``,
    ``hard_prompt``, ``coding``, ``math`` and unknown ones) uses the default.
    """
    if category == "creative_writing":
        return CREATIVE_WRITING_SYSTEM_PROMPT
    return ARENA_HARD_SYSTEM_PROMPT


def judge_messages(
    question: str, answer_a: str, answer_b: str, *, category: str | None = None
) -> list[dict[str, str]]:
    """The two messages of one Arena-Hard game: the system prompt, then the filled template.

    Game 1 puts the baseline's answer in ``answer_a``; game 2 swaps the two.

    Example:
        >>> msgs = judge_messages("Hi?", "Hello.", "Hey!", category="hard_prompt")
        >>> [m["role"] for m in msgs]
        ['system', 'user']
    """
    # One regex pass rather than str.format: answers often hold braces (code), which format
    # would read as fields, and text put in for one field is never searched for another.
    values = {"QUESTION": question, "ANSWER_A": answer_a, "ANSWER_B": answer_b}
    user = _PLACEHOLDER.sub(lambda m: values[m.group(1)], JUDGE_USER_TEMPLATE)
    return [
        {"role": "system", "content": judge_system_prompt(category)},
        {"role": "user", "content": user},
    ]


def strip_think(text: str | None) -> str:
    """A judge's or model's reply without its reasoning.

    Removes every closed ``<think>...</think>`` block; when a ``</think>`` has no opening tag
    (chat templates often put ``<think>`` in the prompt) everything before it goes; an opening
    ``<think>`` that is never closed drops the rest of the text, since a reply cut off while
    thinking has not given its verdict. The result is stripped of outer whitespace.

    Example:
        >>> strip_think("<think>A>B? no</think>\\nMy final verdict: [[B>A]]")
        'My final verdict: [[B>A]]'
    """
    if not text:
        return ""
    out = _THINK_BLOCK.sub("", text)
    close = out.rfind(_THINK_CLOSE)
    if close != -1:
        out = out[close + len(_THINK_CLOSE) :]
    start = out.find(_THINK_OPEN)
    if start != -1:
        out = out[:start]
    return out.strip()


def split_think(text: str) -> tuple[str | None, str]:
    """``(thought, answer)`` of a reasoning model's reply, the way Arena-Hard stores answers.

    Arena-Hard partitions a reply on the closing ``</think>``: what precedes is the thought,
    what follows the answer; with no closing tag the whole reply is the answer, so an
    unfinished reasoning model is judged on what it wrote. The thought goes in the answer
    record's ``thought`` field and never into ``answer``.
    """
    close = text.rfind(_THINK_CLOSE)
    if close == -1:
        return None, text
    thought = text[:close].replace(_THINK_OPEN, "").strip()
    return thought, text[close + len(_THINK_CLOSE) :].strip()


def normalize_verdict(label: str | None) -> Verdict | None:
    """One of the five labels for a label Arena-Hard can score (``B=A`` is ``A=B``), else None."""
    if label is None:
        return None
    return _SYNONYMS.get(label.strip())


def parse_arena_verdict(text: str | None) -> Verdict | None:
    """The verdict label of a judge's reply, or None when it gives none.

    Mirrors Arena-Hard's ``get_score``: the reply (reasoning stripped, see `strip_think`) is
    upper-cased, ``[[...]]`` is tried first and ``[...]`` only if the first finds nothing, and
    the last match of that pattern is the verdict. A last match that is not a label
    (``[[A]]``, ``[[A>>>B]]``) is None: it is not replaced by an earlier match, and a null
    verdict is recorded rather than guessed. (The v0.1 judging script differed: case
    sensitive, ``[[...]]`` only, and several different labels made the verdict null.)

    Example:
        >>> parse_arena_verdict("A is fine [[A>B]] ... on reflection, my final verdict is [[b>>a]]")
        'B>>A'
    """
    body = strip_think(text).upper()
    for pattern in _COMPILED:
        matches = [m for m in pattern.findall(body) if m != ""]
        if matches:
            return normalize_verdict(matches[-1])
    return None
