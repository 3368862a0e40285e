"""Arena-Hard's JSONL files: record models, readers and writers.

The goal is that files written here are read by lmarena/arena-hard-auto unchanged, and that
its files are read here, including fields we do not use.

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
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from langgraph_feedit.errors import InputError
from langgraph_feedit.evaluate.markdown import markdown_counts
from langgraph_feedit.evaluate.prompts import VERDICTS, Verdict, normalize_verdict
from langgraph_feedit.jsonl import read_jsonl, validation_message

__all__ = [
    "AnswerMetadata",
    "ArenaAnswer",
    "ArenaGame",
    "ArenaJudgment",
    "ArenaQuestion",
    "answer_record",
    "dump_record",
    "game_record",
    "judgment_record",
    "metadata_from_answers",
    "read_answer_dir",
    "read_answers",
    "read_judgments",
    "read_questions",
]


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


_R = TypeVar("_R", bound=BaseModel)


def _read(path: Path, parse: Callable[[dict[str, Any]], _R]) -> list[_R]:
    out: list[_R] = []
    for number, data in read_jsonl(path):
        try:
            out.append(parse(data))
        except ValidationError as exc:
            raise InputError(validation_message(exc), path=str(path), line=number) from None
    return out


def read_questions(path: str | Path) -> list[ArenaQuestion]:
    """The questions of an Arena-Hard ``question.jsonl``.

    Raises:
        InputError: the file cannot be read, or a line is malformed (names the file and line).
    """
    return _read(Path(path), ArenaQuestion.model_validate)


def read_answers(path: str | Path) -> list[ArenaAnswer]:
    """The answers of one ``model_answer/<model>.jsonl``.

    Raises:
        InputError: the file cannot be read, or a line is malformed (names the file and line).
    """
    return _read(Path(path), ArenaAnswer.model_validate)


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
    return _read(Path(path), ArenaJudgment.from_mapping)


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
