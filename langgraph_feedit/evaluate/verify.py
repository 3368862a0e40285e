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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langgraph_feedit.errors import InputError, UserError
from langgraph_feedit.jsonl import read_jsonl, validation_message

__all__ = [
    "IFEvalQuestion",
    "VerifiedAnswer",
    "check_instructions",
    "headroom",
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
    """An answer to one question, the tokens its run spent and its tree (when the file says)."""

    id: str
    text: str
    tokens: int | None
    line: int
    trace: Mapping[str, Any] | None = None
    """The run's trace (``feedit batch`` output, inline or in its ``trace_file``): every
    candidate, for the headroom figures."""


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


def read_ifeval_questions(path: str | Path) -> list[IFEvalQuestion]:
    """The questions of an IFEval-format file.

    Raises:
        InputError: the file cannot be read, a line is malformed, names an instruction the
            checkers do not know, or repeats a key (each names the file and line).
    """
    p = Path(path)
    known = _registry()
    out: list[IFEvalQuestion] = []
    seen: dict[str, int] = {}
    for number, data in read_jsonl(p):
        try:
            q = IFEvalQuestion.model_validate(data)
        except ValidationError as exc:
            raise InputError(validation_message(exc), path=str(p), line=number) from None
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
    from langgraph_feedit.evaluate.records import ArenaAnswer

    p = Path(path)
    out: dict[str, VerifiedAnswer] = {}
    for number, data in read_jsonl(p):
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
            item = VerifiedAnswer(
                str(data["id"]), answer, _tokens(data.get("usage")), number, _trace(data, p)
            )
        elif "uid" in data and "messages" in data:
            try:
                arena = ArenaAnswer.model_validate(data)
            except ValidationError as exc:
                raise InputError(validation_message(exc), path=str(p), line=number) from None
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


def _trace(record: Mapping[str, Any], path: Path) -> Mapping[str, Any] | None:
    """A batch record's trace: inline, or in its ``trace_file`` (relative to the answers file
    when not found as given); ``None`` when neither can be read."""
    trace = record.get("trace")
    if isinstance(trace, Mapping):
        return trace
    name = record.get("trace_file")
    if not isinstance(name, str):
        return None
    for candidate in (Path(name), path.parent / Path(name).name):
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return data if isinstance(data, Mapping) else None
    return None


# -- scoring ------------------------------------------------------------------------------------


def _rate(passed: int, total: int) -> float:
    return round(passed / total, 4) if total else 0.0


def verify_answers(
    questions: Sequence[IFEvalQuestion], answers: Mapping[str, VerifiedAnswer]
) -> dict[str, Any]:
    """Score ``answers`` (by question id) with IFEval's checkers.

    Every question needs an answer; call :func:`verify_files` for errors that name files.
    """
    registry = _registry()
    prompts = {"strict": 0, "loose": 0}
    instructions = {"strict": 0, "loose": 0, "count": 0}
    per: dict[str, dict[str, int]] = {}
    per_prompt: list[dict[str, Any]] = []
    tokens = [a.tokens for q in questions if (a := answers[q.id]).tokens is not None]
    for q in questions:
        strict_all = loose_all = True
        for iid, (strict, loose) in check_instructions(q, answers[q.id].text, registry).items():
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
        "headroom": headroom(questions, answers),
        "per_prompt": per_prompt,
    }


def check_instructions(
    question: IFEvalQuestion, text: str, registry: Mapping[str, Any] | None = None
) -> dict[str, tuple[bool, bool]]:
    """Each instruction of ``question``: whether ``text`` follows it, strict and loose."""
    from if_verifiable.common import evaluate_instructions

    results, _ = evaluate_instructions(
        response=text,
        instruction_id_list=question.instruction_id_list,
        kwargs_list=question.kwargs,
        prompt=question.prompt,
        instruction_registry=dict(registry) if registry is not None else _registry(),
    )
    # An empty answer follows nothing: the checkers return no result for it.
    by_id = {r.instruction_id: r for r in results}
    out: dict[str, tuple[bool, bool]] = {}
    for iid in question.instruction_id_list:
        r = by_id.get(iid)
        out[iid] = (bool(r.strict_pass), bool(r.loose_pass)) if r else (False, False)
    return out


def _passes(question: IFEvalQuestion, text: str, registry: Mapping[str, Any]) -> bool:
    return all(loose for _, loose in check_instructions(question, text, registry).values())


def _no_answer(
    edit: Mapping[str, Any], critique: Mapping[str, Any] | None, question: IFEvalQuestion
) -> bool:
    """Whether the edit rule rejects an edit the tree kept (a tree made before the rule)."""
    if edit.get("error") or edit.get("text") is None:
        return False
    from langgraph_feedit.prompts.answers import clean_edit

    feedback = str((critique or {}).get("text") or "")
    return (
        clean_edit(str(edit["text"]), feedback=feedback, prompt=question.prompt).rejected
        is not None
    )


def headroom(
    questions: Sequence[IFEvalQuestion], answers: Mapping[str, VerifiedAnswer]
) -> dict[str, Any] | None:
    """Where quality is lost, from the trees of the answers (``None`` when none has one).

    Each candidate of a tree (every draft and edit with text) is checked, prompt-level loose:

    - ``any_pass``: the share of prompts where at least one candidate passes (what a perfect
      judge would reach with these candidates);
    - ``selected_pass``: the share where the selected candidate passes;
    - ``pick_accuracy``: among the prompts where one passes, the share where the selected one
      does; ``random_pick``: what a uniform random pick among the candidates would get there;
    - ``edits``: each edit against the candidate it revised (``beats``: the edit passes and
      its parent does not; ``loses``: the reverse; ``ties`` otherwise), and ``not_an_answer``:
      edit replies that are no answer by the edit rule (see
      :mod:`langgraph_feedit.prompts.answers`; applied here too to a tree made without it),
      with ``not_an_answer_rate`` over every edit reply;
    - ``critiques``: how many, and ``with_verdict``: how many state a verdict the parser reads.

    Low ``any_pass``: buy more (or better) drafts; low ``pick_accuracy``: a better judge;
    edits that lose more than they beat: better edits.
    """
    from langgraph_feedit.prompts import parse_critique_verdict

    registry = _registry()
    trees = [(q, answers[q.id].trace) for q in questions if answers[q.id].trace is not None]
    if not trees:
        return None
    any_pass = selected_pass = picked = random_pick = 0.0
    with_pass = 0
    edits = {"count": 0, "beats": 0, "ties": 0, "loses": 0, "not_an_answer": 0}
    critiques = {"count": 0, "with_verdict": 0}
    for q, trace in trees:
        assert trace is not None
        nodes = {str(n.get("id")): n for n in trace.get("nodes") or []}
        passed: dict[str, bool] = {}
        for nid, n in nodes.items():
            if n.get("kind") == "critique":
                if n.get("text") is not None and not n.get("error"):
                    critiques["count"] += 1
                    critiques["with_verdict"] += parse_critique_verdict(n["text"]) is not None
                continue
            if n.get("error") or n.get("text") is None:
                continue
            passed[nid] = _passes(q, str(n["text"]), registry)
        selected = trace.get("selected")
        chosen = bool(selected is not None and passed.get(str(selected)))
        selected_pass += chosen
        if any(passed.values()):
            any_pass += 1
            with_pass += 1
            picked += chosen
            random_pick += sum(passed.values()) / len(passed)
        for nid, n in nodes.items():
            if n.get("kind") != "edit":
                continue
            crit = nodes.get(str(n.get("parent")))
            if n.get("failure") == "not_an_answer" or _no_answer(n, crit, q):
                edits["count"] += 1
                edits["not_an_answer"] += 1
                continue
            base = str(crit.get("parent")) if crit else None
            if nid not in passed or base not in passed:
                continue
            edits["count"] += 1
            mine, theirs = passed[nid], passed[base]
            edits["beats" if mine > theirs else "loses" if mine < theirs else "ties"] += 1
    n = len(trees)
    return {
        "mode": "prompt_loose",
        "prompts": n,
        "any_pass": _rate(int(any_pass), n),
        "selected_pass": _rate(int(selected_pass), n),
        "pick_accuracy": _rate(int(picked), with_pass),
        "random_pick": round(random_pick / with_pass, 4) if with_pass else 0.0,
        "edits": {
            **edits,
            "not_an_answer_rate": _rate(edits["not_an_answer"], edits["count"]),
        },
        "critiques": {
            **critiques,
            "verdict_rate": _rate(critiques["with_verdict"], critiques["count"]),
        },
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
    for number, data in read_jsonl(path):
        out.setdefault(str(data.get("key")), number)
    return out


def dump(result: Mapping[str, Any]) -> str:
    """The result as one JSON line (``per_prompt`` is kept: it is what a reader checks)."""
    return json.dumps(result, ensure_ascii=False)
