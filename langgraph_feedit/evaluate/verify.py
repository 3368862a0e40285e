"""Verifiable evaluation: answers to instruction-following prompts, checked by IFEval's checkers.

The questions are in IFEval's file format, one JSON object a line: ``key``, ``prompt``,
``instruction_id_list`` and ``kwargs`` (one argument object per instruction). The checkers are
the ``if-verifiable`` package's copy of IFEval's (``if_verifiable.ifeval``), scored strict (the
answer as given) and loose (also with the first or last line, or markdown asterisks, removed),
per prompt (every instruction followed) and per instruction.

The answers are ``feedit batch`` output (``id``, ``status``, ``answer``, ``usage``) or
arena-style answer files (``uid``, ``messages``); both are joined to the questions by id (the
question's ``key`` as a string).

Offline sentence counts: IFEval's ``length_constraints:number_sentences`` checker loads NLTK's
trained ``punkt`` model, and ``change_case:capital_word_frequency`` calls ``nltk.word_tokenize``,
which loads ``punkt_tab``; neither can be downloaded without the network (and NLTK 3.9 and later
no longer load the pickled model at all). When the data cannot be loaded, both are replaced, in
the checkers' module only, by what NLTK computes without data: an untrained
``PunktSentenceTokenizer`` (the same algorithm with no learned abbreviation list) and
``word_tokenize(..., preserve_line=True)``. The untrained tokenizer is given a short list of
common English abbreviations (``Dr.``, ``e.g.``, ``Inc.``...) so that it does not end a
sentence after them. The result says which was used
(``sentence_splitter``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langgraph_feedit.errors import InputError, UserError

__all__ = [
    "IFEvalQuestion",
    "VerifiedAnswer",
    "instruction_ids",
    "read_ifeval_questions",
    "read_verify_answers",
    "verify_answers",
    "verify_files",
]


class IFEvalQuestion(BaseModel):
    """One line of an IFEval prompt file."""

    model_config = ConfigDict(extra="allow")

    key: int | str
    prompt: str = Field(min_length=1)
    instruction_id_list: list[str] = Field(min_length=1)
    kwargs: list[dict[str, Any]]

    @property
    def id(self) -> str:
        return str(self.key)


@dataclass(frozen=True, slots=True)
class VerifiedAnswer:
    """An answer to one question, and the tokens its run spent (when the file says)."""

    id: str
    text: str
    tokens: int | None
    line: int


def _registry() -> dict[str, Any]:
    try:
        from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT
    except ImportError:  # pragma: no cover - the eval extra is installed in tests
        raise UserError(
            "feedit verify needs the 'if-verifiable' package: pip install 'langgraph-feedit[eval]'"
        ) from None
    _offline_nltk()
    return dict(INSTRUCTION_DICT)


def instruction_ids() -> list[str]:
    """The instruction ids the checkers know (``keywords:existence``, ...)."""
    return sorted(_registry())


class _OfflineNltk(ModuleType):
    """``nltk`` as the checkers see it when punkt_tab is absent: ``word_tokenize`` keeps each
    line whole instead of splitting sentences with punkt first."""

    def __init__(self, nltk: ModuleType) -> None:
        super().__init__("nltk")
        self._nltk = nltk
        self.word_tokenize = functools.partial(nltk.word_tokenize, preserve_line=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nltk, name)


_SPLITTER: str | None = None
# What the trained English model knows best and an untrained one would cut after: titles,
# Latin shorthand and company suffixes (the abbreviations IFEval's own splitter protects too).
_ABBREVIATIONS = [
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "st",
    "jr",
    "sr",
    "inc",
    "ltd",
    "co",
    "corp",
    "vs",
    "etc",
    "e.g",
    "i.e",
    "a.m",
    "p.m",
    "u.s",
    "fig",
    "approx",
]


def _offline_nltk() -> str:
    """Make the checkers' sentence and word tokenizers work without NLTK data (once)."""
    global _SPLITTER
    if _SPLITTER is not None:
        return _SPLITTER
    import nltk
    from if_verifiable.ifeval import instructions_util as util

    try:
        util._get_sentence_tokenizer()
        _SPLITTER = "punkt"
    except (LookupError, ValueError, OSError):
        from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

        params = PunktParameters()
        params.abbrev_types = set(_ABBREVIATIONS)
        untrained = PunktSentenceTokenizer(params)
        util._get_sentence_tokenizer = lambda: untrained
        _SPLITTER = "punkt-untrained"
    try:
        nltk.word_tokenize("Two words.")
    except LookupError:
        util.nltk = _OfflineNltk(nltk)
    return _SPLITTER


# -- reading ------------------------------------------------------------------------------------


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    from langgraph_feedit.evaluate.records import _iter_lines

    yield from _iter_lines(path)


def read_ifeval_questions(path: str | Path) -> list[IFEvalQuestion]:
    """The questions of an IFEval-format file.

    Raises:
        InputError: the file cannot be read, a line is malformed, names an instruction the
            checkers do not know, or repeats a key (each names the file and line).
    """
    from langgraph_feedit.evaluate.records import _describe

    p = Path(path)
    known = _registry()
    out: list[IFEvalQuestion] = []
    seen: dict[str, int] = {}
    for number, data in _lines(p):
        try:
            q = IFEvalQuestion.model_validate(data)
        except ValidationError as exc:
            raise InputError(_describe(exc), path=str(p), line=number) from None
        if len(q.kwargs) != len(q.instruction_id_list):
            raise InputError(
                f"'kwargs' has {len(q.kwargs)} item(s) for {len(q.instruction_id_list)} "
                "instruction(s): give one object per instruction",
                path=str(p),
                line=number,
            )
        unknown = [i for i in q.instruction_id_list if i not in known]
        if unknown:
            raise InputError(
                f"unknown instruction {unknown[0]!r} (the IFEval checkers know: "
                f"{', '.join(sorted(known))})",
                path=str(p),
                line=number,
            )
        if q.id in seen:
            raise InputError(
                f"key {q.id} repeats line {seen[q.id]}", path=str(p), line=number
            ) from None
        seen[q.id] = number
        out.append(q)
    if not out:
        raise InputError("no question in the file", path=str(p))
    return out


def _tokens(usage: Any) -> int | None:
    if not isinstance(usage, Mapping):
        return None
    return int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))


def read_verify_answers(path: str | Path) -> dict[str, VerifiedAnswer]:
    """Answers by id, from ``feedit batch`` output or an arena-style answer file.

    Raises:
        InputError: the file cannot be read, a line is neither kind of record, a batch record
            has no answer (it failed), or an id repeats (each names the file and line).
    """
    from langgraph_feedit.evaluate.records import ArenaAnswer, _describe

    p = Path(path)
    out: dict[str, VerifiedAnswer] = {}
    for number, data in _lines(p):
        if "status" in data and "id" in data:
            answer = data.get("answer")
            if data["status"] == "failed" or not isinstance(answer, str):
                why = data.get("error") or "no answer"
                raise InputError(
                    f"the run of {data['id']!r} has no answer ({why}): resume the batch, or "
                    "leave the prompt out of --questions",
                    path=str(p),
                    line=number,
                )
            item = VerifiedAnswer(str(data["id"]), answer, _tokens(data.get("usage")), number)
        elif "uid" in data and "messages" in data:
            try:
                arena = ArenaAnswer.model_validate(data)
            except ValidationError as exc:
                raise InputError(_describe(exc), path=str(p), line=number) from None
            item = VerifiedAnswer(arena.uid, arena.answer, None, number)
        else:
            raise InputError(
                "not an answer: expected a feedit batch record ('id', 'status', 'answer') or "
                "an arena answer ('uid', 'messages')",
                path=str(p),
                line=number,
            )
        if item.id in out:
            raise InputError(
                f"id {item.id!r} repeats line {out[item.id].line}", path=str(p), line=number
            )
        out[item.id] = item
    return out


# -- scoring ------------------------------------------------------------------------------------


def _rate(passed: int, total: int) -> float:
    return round(passed / total, 4) if total else 0.0


def verify_answers(
    questions: Sequence[IFEvalQuestion], answers: Mapping[str, VerifiedAnswer]
) -> dict[str, Any]:
    """Score ``answers`` (by question id) with IFEval's checkers.

    Every question needs an answer; call :func:`verify_files` for errors that name files.
    """
    from if_verifiable.common import evaluate_instructions

    registry = _registry()
    prompts = {"strict": 0, "loose": 0}
    instructions = {"strict": 0, "loose": 0, "count": 0}
    per: dict[str, dict[str, int]] = {}
    per_prompt: list[dict[str, Any]] = []
    tokens = [a.tokens for q in questions if (a := answers[q.id]).tokens is not None]
    for q in questions:
        text = answers[q.id].text
        results, _ = evaluate_instructions(
            response=text,
            instruction_id_list=q.instruction_id_list,
            kwargs_list=q.kwargs,
            prompt=q.prompt,
            instruction_registry=registry,
        )
        # An empty answer follows nothing: the checkers return no result for it.
        by_id = {r.instruction_id: r for r in results}
        strict_all = loose_all = True
        for iid in q.instruction_id_list:
            r = by_id.get(iid)
            strict, loose = (r.strict_pass, r.loose_pass) if r else (False, False)
            counts = per.setdefault(iid, {"strict": 0, "loose": 0, "count": 0})
            counts["count"] += 1
            counts["strict"] += strict
            counts["loose"] += loose
            instructions["count"] += 1
            instructions["strict"] += strict
            instructions["loose"] += loose
            strict_all &= strict
            loose_all &= loose
        prompts["strict"] += strict_all
        prompts["loose"] += loose_all
        per_prompt.append({"id": q.id, "strict": strict_all, "loose": loose_all})
    n = len(questions)
    return {
        "prompts": n,
        "instructions": instructions["count"],
        "prompt_strict": _rate(prompts["strict"], n),
        "prompt_loose": _rate(prompts["loose"], n),
        "instruction_strict": _rate(instructions["strict"], instructions["count"]),
        "instruction_loose": _rate(instructions["loose"], instructions["count"]),
        "per_instruction": {
            iid: {
                "count": c["count"],
                "strict": _rate(c["strict"], c["count"]),
                "loose": _rate(c["loose"], c["count"]),
            }
            for iid, c in sorted(per.items())
        },
        "mean_tokens": round(sum(tokens) / len(tokens), 1) if len(tokens) == n and n else None,
        "sentence_splitter": _offline_nltk(),
        "per_prompt": per_prompt,
    }


def verify_files(questions: str | Path, answers: str | Path) -> dict[str, Any]:
    """Score the answers file against the questions file (see the module docstring).

    Raises:
        InputError: a malformed line, or a question with no answer (names the file and line).
    """
    qs = read_ifeval_questions(questions)
    got = read_verify_answers(answers)
    qpath = Path(questions)
    lines = _question_lines(qpath)
    for q in qs:
        if q.id not in got:
            raise InputError(
                f"no answer to key {q.id} in {answers}", path=str(qpath), line=lines.get(q.id)
            )
    return verify_answers(qs, got)


def _question_lines(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for number, data in _lines(path):
        out.setdefault(str(data.get("key")), number)
    return out


def dump(result: Mapping[str, Any]) -> str:
    """The result as one JSON line (``per_prompt`` is kept: it is what a reader checks)."""
    return json.dumps(result, ensure_ascii=False)
