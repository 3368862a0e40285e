"""Arena-Hard-Auto compatibility: judge prompts, verdict parsing and the JSONL file formats.

Everything here is pure (no network, no numpy), so that judging with Arena-Hard's prompts and
writing its files needs only the core install. The goal is that files written here are read
by lmarena/arena-hard-auto unchanged, and that its files are read here, including fields we
do not use.

Three record kinds, one JSON object a line:

- questions, ``question.jsonl``: ``uid, category, cluster?, subcategory?, prompt``;
- answers, ``model_answer/<model>.jsonl``: ``uid, ans_id, model, messages, tstamp, metadata``
  with the assistant turn's content ``{"answer": str, "thought"?: str}`` and ``metadata`` keys
  ``token_len, header_count, list_count, bold_count`` in that order;
- judgments, ``model_judgment/<judge>/<model>.jsonl``: ``uid, category, judge, model,
  baseline, games`` where game 1 shows the baseline as assistant A and game 2 swaps them.

Readers also accept the older v0.1 judgment lines (``question_id`` instead of ``uid``, no
``category`` or ``baseline``, ``judgment`` a plain string), since the published v0.1
judgments are in that form.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from langgraph_feedit.errors import InputError

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

# The judge prompts, template and verdict patterns below are reproduced from
# lmarena/arena-hard-auto (Apache-2.0, Copyright 2024 Tianle Li, Wei-Lin Chiang, Evan Frick,
# Lisa Dunlap, Banghua Zhu, Joseph E. Gonzalez, Ion Stoica): `src/arenahard/utils/judge_utils.py`
# (OG_ARENA_HARD_PROMPT and the creative_writing entry of JUDGE_SETTINGS; the same text as
# `system_prompt` in `config/judge_config.yaml` of v0.1) and
# `src/arenahard/config/arena-hard-v0.1.yaml` (prompt_template, regex_patterns).
# They must stay byte-identical: scores move with the judge's prompt.

ARENA_HARD_SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two "
    "AI assistants to the user prompt displayed below. You will be given assistant A's answer "
    "and assistant B's answer. Your job is to evaluate which assistant's answer is better.\n\n"
    "Begin your evaluation by generating your own answer to the prompt. You must provide your "
    "answers before judging any answers.\n\n"
    "When evaluating the assistants' answers, compare both assistants' answers with your "
    "answer. You must identify and correct any mistakes or inaccurate information.\n\n"
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
    "After providing your explanation, you must output only one of the following choices as "
    "your final verdict with a label:\n\n"
    "1. Assistant A is significantly better: [[A>>B]]\n"
    "2. Assistant A is slightly better: [[A>B]]\n"
    "3. Tie, relatively the same: [[A=B]]\n"
    "4. Assistant B is slightly better: [[B>A]]\n"
    "5. Assistant B is significantly better: [[B>>A]]\n\n"
    'Example output: "My final verdict is tie: [[A=B]]".'
)
"""Arena-Hard's judge system prompt: the judge answers the prompt itself, then compares."""

CREATIVE_WRITING_SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two "
    "AI assistants to the user prompt displayed below. You will be given assistant A's answer "
    "and assistant B's answer. Your job is to evaluate which assistant's answer is better.\n\n"
    "When evaluating the assistants' answers, compare both assistants' answers. You must "
    "identify and correct any mistakes or inaccurate information.\n\n"
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
    "After providing your explanation, you must output only one of the following choices as "
    "your final verdict with a label:\n\n"
    "1. Assistant A is significantly better: [[A>>B]]\n"
    "2. Assistant A is slightly better: [[A>B]]\n"
    "3. Tie, relatively the same: [[A=B]]\n"
    "4. Assistant B is slightly better: [[B>A]]\n"
    "5. Assistant B is significantly better: [[B>>A]]\n\n"
    'Example output: "My final verdict is tie: [[A=B]]".'
)
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
    # would read as fields, and text put in for one placeholder is never searched for another.
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


def parse_verdict(text: str | None) -> Verdict | None:
    """The verdict label of a judge's reply, or None when it gives none.

    Mirrors Arena-Hard's ``get_score``: the reply (reasoning stripped, see `strip_think`) is
    upper-cased, ``[[...]]`` is tried first and ``[...]`` only if the first finds nothing, and
    the last match of that pattern is the verdict. A last match that is not a label
    (``[[A]]``, ``[[A>>>B]]``) is None: it is not replaced by an earlier match, and a null
    verdict is recorded rather than guessed. (The v0.1 judging script differed: case
    sensitive, ``[[...]]`` only, and several different labels made the verdict null.)

    Example:
        >>> parse_verdict("A is fine [[A>B]] ... on reflection, my final verdict is [[b>>a]]")
        'B>>A'
    """
    body = strip_think(text).upper()
    for pattern in _COMPILED:
        matches = [m for m in pattern.findall(body) if m != ""]
        if matches:
            return normalize_verdict(matches[-1])
    return None


class MarkdownCounts(TypedDict):
    """Markdown element counts, as in an answer's ``metadata``."""

    header_count: dict[str, int]
    list_count: dict[str, int]
    bold_count: dict[str, int]


# Arena-Hard's `utils/add_markdown_info.py`, reproduced exactly (Apache-2.0, see above).
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


# ---------------------------------------------------------------------------------------------
# Records. Readers tolerate fields they do not know (Arena-Hard adds some over time); writers
# produce exactly Arena-Hard's field names, order and types.


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)


class ArenaQuestion(_Record):
    """One line of a ``question.jsonl``."""

    uid: str
    category: str
    cluster: str | None = None
    subcategory: str | None = None
    prompt: str


class AnswerMetadata(_Record):
    """An answer's length and markdown counts, the inputs of style control."""

    token_len: int = Field(ge=0)
    header_count: dict[str, int]
    list_count: dict[str, int]
    bold_count: dict[str, int]


class ArenaAnswer(_Record):
    """One line of a ``model_answer/<model>.jsonl``; `answer` and `thought` read its last turn."""

    uid: str
    ans_id: str
    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    tstamp: float | int
    metadata: AnswerMetadata | None = None

    @field_validator("messages")
    @classmethod
    def _ends_with_an_answer(cls, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        last = messages[-1]
        if last.get("role") != "assistant":
            raise ValueError("the last message must be the assistant's answer")
        content = last.get("content")
        if isinstance(content, dict):
            if not isinstance(content.get("answer"), str):
                raise ValueError("the assistant content must have a string 'answer'")
        elif not isinstance(content, str):
            raise ValueError("the assistant content must be {'answer': str} or a string")
        return messages

    @property
    def answer(self) -> str:
        """The answer text the judge sees."""
        content = self.messages[-1]["content"]
        return str(content["answer"] if isinstance(content, dict) else content)

    @property
    def thought(self) -> str | None:
        """The reasoning text, kept apart from the answer, if the model gave any."""
        content = self.messages[-1]["content"]
        thought = content.get("thought") if isinstance(content, dict) else None
        return thought if isinstance(thought, str) else None


class ArenaGame(_Record):
    """One judged game; ``score`` is the verdict label as written, or None."""

    score: str | None = None
    judgment: dict[str, Any] | str | None = None
    prompt: list[dict[str, Any]] | None = None

    @property
    def verdict(self) -> Verdict | None:
        """The game's verdict as one of the five labels; None for null or unscorable labels."""
        return normalize_verdict(self.score)


class ArenaJudgment(_Record):
    """One line of a ``model_judgment/<judge>/<model>.jsonl``.

    ``games[0]`` shows the baseline as assistant A and the model as B; ``games[1]`` the
    reverse. A game is None when the judge call failed. ``category`` and ``baseline`` are None
    only in v0.1 lines, which lack them.
    """

    uid: str
    category: str | None = None
    judge: str
    model: str
    baseline: str | None = None
    games: list[ArenaGame | None] = Field(min_length=1, max_length=2)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ArenaJudgment:
        """Validate one decoded line, accepting v0.1's ``question_id`` for ``uid``."""
        if "uid" not in data and "question_id" in data:
            data = {**data, "uid": data["question_id"]}
        return cls.model_validate(data)


def _iter_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=str(path)) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except UnicodeDecodeError:
                raise InputError("not UTF-8", path=str(path), line=number) from None
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"not valid JSON: {exc.msg} (column {exc.colno})", path=str(path), line=number
                ) from None
            if not isinstance(data, dict):
                raise InputError("each line must be a JSON object", path=str(path), line=number)
            yield number, data


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"field '{where}': {first['msg']}{more}" if where else f"{first['msg']}{more}"


def read_questions(path: str | Path) -> list[ArenaQuestion]:
    """The questions of an Arena-Hard ``question.jsonl``.

    Raises:
        InputError: the file cannot be read, or a line is malformed (names the file and line).
    """
    p = Path(path)
    out: list[ArenaQuestion] = []
    for number, data in _iter_lines(p):
        try:
            out.append(ArenaQuestion.model_validate(data))
        except ValidationError as exc:
            raise InputError(_describe(exc), path=str(p), line=number) from None
    return out


def read_answers(path: str | Path) -> list[ArenaAnswer]:
    """The answers of one ``model_answer/<model>.jsonl``.

    Raises:
        InputError: the file cannot be read, or a line is malformed (names the file and line).
    """
    p = Path(path)
    out: list[ArenaAnswer] = []
    for number, data in _iter_lines(p):
        try:
            out.append(ArenaAnswer.model_validate(data))
        except ValidationError as exc:
            raise InputError(_describe(exc), path=str(p), line=number) from None
    return out


def read_answer_dir(directory: str | Path) -> dict[str, dict[str, ArenaAnswer]]:
    """Every ``*.jsonl`` of a ``model_answer`` folder: model (the file stem) -> uid -> answer.

    As in Arena-Hard, a later line for the same uid replaces an earlier one.
    """
    out: dict[str, dict[str, ArenaAnswer]] = {}
    for file in sorted(Path(directory).glob("*.jsonl")):
        out[file.stem] = {a.uid: a for a in read_answers(file)}
    return out


def metadata_from_answers(
    answers: Mapping[str, Mapping[str, ArenaAnswer]],
) -> dict[str, dict[str, AnswerMetadata]]:
    """model -> uid -> metadata of answers that have it (the input of style control).

    Example:
        >>> metadata = metadata_from_answers(read_answer_dir("model_answer"))  # doctest: +SKIP
    """
    return {
        model: {uid: a.metadata for uid, a in by_uid.items() if a.metadata is not None}
        for model, by_uid in answers.items()
    }


def read_judgments(path: str | Path) -> list[ArenaJudgment]:
    """The judgments of one ``model_judgment/<judge>/<model>.jsonl``.

    Raises:
        InputError: the file cannot be read, or a line is malformed (names the file and line).
    """
    p = Path(path)
    out: list[ArenaJudgment] = []
    for number, data in _iter_lines(p):
        try:
            out.append(ArenaJudgment.from_mapping(data))
        except ValidationError as exc:
            raise InputError(_describe(exc), path=str(p), line=number) from None
    return out


def answer_record(
    uid: str,
    model: str,
    answer: str,
    token_len: int,
    *,
    prompt: str | None = None,
    messages: Sequence[Mapping[str, Any]] | None = None,
    thought: str | None = None,
    ans_id: str | None = None,
    tstamp: float | None = None,
) -> dict[str, Any]:
    """One answer line in Arena-Hard's schema, with its metadata computed from ``answer``.

    ``token_len`` is the answer's length in tokens (Arena-Hard counts with tiktoken's ``gpt-4o``
    encoding); ``prompt`` is the question, or ``messages`` the whole conversation the answer
    replies to. ``model`` should equal the file stem. Reasoning text goes in ``thought``, never
    in ``answer``; nothing else goes in ``metadata``, whose four keys Arena-Hard reads in order.

    Example:
        >>> rec = answer_record("q1", "m", "# Hi", 3, prompt="Say hi", ans_id="x", tstamp=0.0)
        >>> list(rec["metadata"])
        ['token_len', 'header_count', 'list_count', 'bold_count']
    """
    if (prompt is None) == (messages is None):
        raise ValueError("give exactly one of 'prompt' and 'messages'")
    if token_len < 0:
        raise ValueError("token_len must be >= 0")
    turns: list[dict[str, Any]] = (
        [{"role": "user", "content": prompt}]
        if prompt is not None
        else [{"role": m["role"], "content": m["content"]} for m in messages or ()]
    )
    content: dict[str, str] = {"answer": answer}
    if thought is not None:
        content["thought"] = thought
    turns.append({"role": "assistant", "content": content})
    counts = markdown_counts(answer)
    return {
        "uid": uid,
        # Arena-Hard uses 22-character shortuuids; any unique string is accepted.
        "ans_id": ans_id if ans_id is not None else uuid.uuid4().hex[:22],
        "model": model,
        "messages": turns,
        "tstamp": tstamp if tstamp is not None else time.time(),
        "metadata": {
            "token_len": token_len,
            "header_count": counts["header_count"],
            "list_count": counts["list_count"],
            "bold_count": counts["bold_count"],
        },
    }


def game_record(
    score: Verdict | None,
    judgment: str,
    prompt: Sequence[Mapping[str, Any]],
    *,
    thought: str | None = None,
) -> dict[str, Any]:
    """One game of a judgment line: the verdict (None if the judge gave none), the judge's
    reply as ``{"answer": ...}`` (and ``thought`` for a reasoning judge), and the messages sent.
    """
    if score is not None and score not in VERDICTS:
        raise ValueError(f"unknown verdict {score!r}; expected one of {', '.join(VERDICTS)}")
    reply: dict[str, str] = {"answer": judgment}
    if thought is not None:
        reply["thought"] = thought
    return {
        "score": score,
        "judgment": reply,
        "prompt": [{"role": m["role"], "content": m["content"]} for m in prompt],
    }


def judgment_record(
    uid: str,
    category: str,
    judge: str,
    model: str,
    baseline: str,
    games: Sequence[Mapping[str, Any] | None],
) -> dict[str, Any]:
    """One judgment line: game 1 with the baseline as A, game 2 swapped (see `game_record`).

    A game is None when the judge call failed; Arena-Hard's scorer then drops the line.
    """
    if len(games) != 2:
        raise ValueError(f"a judgment has two games (baseline as A, then as B), not {len(games)}")
    return {
        "uid": uid,
        "category": category,
        "judge": judge,
        "model": model,
        "baseline": baseline,
        "games": [dict(g) if g is not None else None for g in games],
    }


def dump_record(record: Mapping[str, Any] | BaseModel) -> str:
    """One JSONL line (with its newline) serialised as Arena-Hard writes it.

    A model read from a file is written with its fields in Arena-Hard's order, its unknown
    fields after them.
    """
    # exclude_unset: a field absent from the file stays absent, a null stays null.
    data = (
        record.model_dump(mode="json", exclude_unset=True)
        if isinstance(record, BaseModel)
        else record
    )
    return json.dumps(data, ensure_ascii=False) + "\n"
