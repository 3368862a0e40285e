"""Judges one plugs in: a Python function (``function``, and the pairwise form), given in
Python or as an import path ``module:function`` in the operator's configuration, and
``feedit verify``'s checkers (``verify``). See :mod:`.judges`."""

from __future__ import annotations

import functools
import importlib
import inspect
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

from langgraph_feedit._model_judges import JudgeResult
from langgraph_feedit.config import RoleConfig
from langgraph_feedit.errors import ConfigError
from langgraph_feedit.usage import Usage

PairwiseFunction = Callable[[list[dict[str, Any]], str, str], "Any | Awaitable[Any]"]
"""A pairwise function judge (``kind = "pairwise"`` with ``function``): the conversation and
two candidates in; out, which is better (``"A"``, ``"B"``, or ``"C"`` for a tie) or a
preference score (above 0: the first is better, below 0: the second; 0: a tie)."""


def _preference(value: Any) -> float | None:
    """A pairwise function's verdict as points for its first candidate (None: unreadable)."""
    if isinstance(value, str):
        return {"A": 1.0, "B": -1.0, "C": 0.0, "TIE": 0.0}.get(value.strip().upper())
    if isinstance(value, bool):
        return None
    try:
        points = float(value)
    except (TypeError, ValueError):
        return None
    return math.copysign(1.0, points) if points else 0.0 if math.isfinite(points) else None


async def _function_match(
    path: str,
    conversation: Sequence[Mapping[str, Any]],
    a: tuple[str, str],
    b: tuple[str, str],
) -> tuple[tuple[str, str], Usage, str | None]:
    """A match judged by a pairwise function, in both orders as a model's is (so a function
    with a position bias cancels it too); ``a`` wins ties."""
    fn = resolve_function(path)
    said = []
    for first, second in ((a[1], b[1]), (b[1], a[1])):
        value = fn([dict(m) for m in conversation], first, second)
        if inspect.isawaitable(value):
            value = await value
        said.append(_preference(value))
    points = (said[0] or 0.0) - (said[1] or 0.0)
    note = None
    if None in said:
        note = f"{a[0]} vs {b[0]}: the judge function's verdict is unreadable, counted as a tie"
    return (b if points < 0 else a), Usage(), note


JudgeFunction = Callable[[list[dict[str, Any]], str], "float | Awaitable[float]"]
"""A function judge: the conversation (OpenAI-style messages) and a candidate's text in, a
score out (higher is better); a coroutine function is awaited."""


_FUNCTIONS: dict[str, Callable[..., Any]] = {}


def register_function(fn: Callable[..., Any]) -> str:
    """Keep ``fn`` for the ``function`` judge under its import path (``module:qualname``),
    which is what the run's settings carry (they stay plain data for checkpoints); returns it.
    """
    path = (
        f"{getattr(fn, '__module__', None) or '__main__'}:{getattr(fn, '__qualname__', repr(fn))}"
    )
    _FUNCTIONS[path] = fn
    return path


def resolve_function(path: str) -> Callable[..., Any]:
    """The function an import path ``module:function`` names (a registered one first).

    Raises:
        ConfigError: the path is malformed, the module cannot be imported, or it has no such
            callable.
    """
    found = _FUNCTIONS.get(path)
    if found is not None:
        return found
    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise ConfigError(
            f"roles.judge.function {path!r} must be an import path 'module:function'",
            key="roles.judge.function",
        )
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"roles.judge.function {path!r} cannot be imported: {exc}",
            key="roles.judge.function",
        ) from None
    if not callable(obj):
        raise ConfigError(
            f"roles.judge.function {path!r} is not callable", key="roles.judge.function"
        )
    _FUNCTIONS[path] = obj
    return cast(Callable[..., Any], obj)


def check_judge(settings: RoleConfig) -> None:
    """Fail now, not mid-run, on a plug-in judge that lacks what it needs.

    Raises:
        ConfigError: ``function`` without an importable ``function``, ``verify`` without a
            readable ``questions`` file, ``combined`` without ``combine`` parts.
    """
    kinds = [settings.kind]
    if settings.kind == "combined":
        if not settings.combine:
            raise ConfigError(
                "roles.judge.kind 'combined' needs roles.judge.combine: a list of "
                "{kind, weight} parts",
                key="roles.judge.combine",
            )
        kinds = [p.kind for p in settings.combine_parts()]
    if settings.kind == "pairwise" and settings.function:
        resolve_function(settings.function)  # the pairwise form (see PairwiseFunction)
    if "function" in kinds:
        if not settings.function:
            raise ConfigError(
                "the function judge needs roles.judge.function ('module:function')",
                key="roles.judge.function",
            )
        resolve_function(settings.function)
    if "verify" in kinds:
        if not settings.questions:
            raise ConfigError(
                "the verify judge needs roles.judge.questions: an IFEval-format JSONL file",
                key="roles.judge.questions",
            )
        _questions(settings.questions)


async def _function(
    settings: RoleConfig, conversation: Sequence[Mapping[str, Any]], text: str
) -> JudgeResult:
    fn = resolve_function(settings.function or "")
    value = fn([dict(m) for m in conversation], text)
    if inspect.isawaitable(value):
        value = await value
    try:
        score = float(value)
    except (TypeError, ValueError):
        return JudgeResult(
            None, Usage(), note=f"the judge function returned {type(value).__name__}, not a number"
        )
    if not math.isfinite(score):
        return JudgeResult(None, Usage(), note=f"the judge function returned {score}")
    return JudgeResult(score, Usage())


@functools.lru_cache(maxsize=8)
def _questions(path: str) -> dict[str, Any]:
    from langgraph_feedit.evaluate.verify import read_ifeval_questions

    return {" ".join(q.prompt.split()): q for q in read_ifeval_questions(path)}


def _last_user(conversation: Sequence[Mapping[str, Any]]) -> str:
    from langgraph_feedit.prompts import _content_text

    for m in reversed(conversation):
        if m.get("role") == "user":
            return " ".join(_content_text(m.get("content")).split())
    return ""


async def _verify(
    settings: RoleConfig, conversation: Sequence[Mapping[str, Any]], text: str
) -> JudgeResult:
    """The share of the prompt's instructions the candidate follows (strict and loose
    averaged, in [0, 1]), by ``feedit verify``'s checkers; unscored for a prompt that is not
    in the questions file."""
    from langgraph_feedit.evaluate.verify import check_instructions

    question = _questions(settings.questions or "").get(_last_user(conversation))
    if question is None:
        return JudgeResult(None, Usage(), note="the prompt carries no instructions to verify")
    # The checkers are plain CPU work, milliseconds each: not worth a thread hop.
    checks = check_instructions(question, text)
    passed = sum(strict + loose for strict, loose in checks.values())
    return JudgeResult(passed / (2 * len(checks)), Usage())
