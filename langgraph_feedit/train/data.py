"""Training data: HelpSteer3 rows, ``feedit batch`` traces and plain preference pairs.

Every source becomes one of two example types, rendered with the very message builders the
graph uses at inference (:func:`~langgraph_feedit.prompts.critique_messages`,
:func:`~langgraph_feedit.prompts.edit_messages`) and the role's template set, so a trained model
sees in production exactly the turns it saw in training:

- :class:`SFTExample`: ``messages`` (the prompt turns) and ``target`` (the assistant turn the
  loss is taken on): feedback and edit models;
- :class:`PairExample`: a conversation with a ``chosen`` and a ``rejected`` response: the
  select model.

Sources (files are JSONL, or parquet when the name ends in ``.parquet``):

- HelpSteer3 (``nvidia/HelpSteer3``) rows in the published schema: ``feedback`` (``context``,
  ``response1/2``, ``feedback1/2``), ``edit`` (``context``, ``original_response``, ``feedback``,
  ``edited_response``), ``edit_quality`` (``good_edited_response``, ``bad_edited_response``)
  and ``preference`` (``response1/2``, ``overall_preference``: negative means response1 is
  better);
- ``feedit batch`` output whose lines carry their ``trace`` (or a ``trace_file``): a critique
  and its edit are kept when the judge scored the edit above its parent by at least
  ``min_gain``;
- preference pairs: ``{"prompt": str or messages, "chosen": str, "rejected": str}``.

A path ``hf:NAME:SUBSET[:SPLIT]`` loads a Hugging Face dataset by name (when the user asks for
it: it needs the network or the datasets cache).

A malformed row is an :class:`~langgraph_feedit.errors.InputError` naming its file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langgraph_feedit.errors import InputError
from langgraph_feedit.inputs import ConversationError, check_conversation
from langgraph_feedit.jsonl import read_jsonl
from langgraph_feedit.prompts import (
    TemplateSet,
    critique_messages,
    edit_messages,
    load_templates,
    principle_messages,
)

__all__ = [
    "PRINCIPLE_PROMPT",
    "DataCounts",
    "PairExample",
    "SFTExample",
    "Source",
    "distill_examples",
    "load_examples",
    "read_rows",
    "select_messages",
]

Task = Literal["feedback", "edit", "select"]
Source = Literal["auto", "helpsteer3", "batch", "pairs"]

PRINCIPLE_PROMPT = (
    "Evaluate the response to the previous prompt in terms of whether it satisfies this "
    "principle: {principle}. Only answer Yes or No."
)
"""The select model's question (that of Nemotron's Reward-Principle model, the template sets'
``judge_principle``): its reward is logprob(Yes) - logprob(No) at the answer's first token,
which the ``principle`` judge reads; the default principle is the judge's
(:data:`~langgraph_feedit.config.DEFAULT_PRINCIPLE`)."""


@dataclass(frozen=True, slots=True)
class SFTExample:
    """Prompt turns and the assistant turn to learn; ``where`` is ``file:line``."""

    messages: list[dict[str, Any]]
    target: str
    where: str


@dataclass(frozen=True, slots=True)
class PairExample:
    """A conversation and two responses to it, ``chosen`` the better."""

    conversation: list[dict[str, Any]]
    chosen: str
    rejected: str
    where: str


@dataclass(slots=True)
class DataCounts:
    """What the loaders read, kept and dropped (for the run record)."""

    rows: int = 0
    examples: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1


def select_messages(
    conversation: Sequence[Mapping[str, Any]],
    response: str,
    principle: str,
    templates: TemplateSet | None = None,
) -> list[dict[str, Any]]:
    """[conversation..., assistant: response, user: the principle question]: exactly what the
    ``principle`` judge sends (:func:`~langgraph_feedit.prompts.principle_messages`)."""
    return principle_messages(conversation, response, principle, templates or load_templates(None))


# -- reading rows --------------------------------------------------------------------------------


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, row)`` for each record of a JSONL or parquet file (parquet rows count from 1).

    Raises:
        InputError: the file cannot be read, or a line is not a JSON object.
    """
    if str(path).startswith(HUB_PREFIX):
        yield from _hub_rows(str(path))
        return
    if path.suffix.lower() == ".parquet":
        try:
            path.open("rb").close()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", path=str(path)) from None
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover - pyarrow comes with datasets
            raise InputError(
                "reading parquet needs pyarrow: pip install 'langgraph-feedit[train]'",
                path=str(path),
            ) from exc
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises its own error types
            raise InputError(f"not a readable parquet file: {exc}", path=str(path)) from None
        yield from enumerate(table.to_pylist(), start=1)
        return
    yield from read_jsonl(path)


HUB_PREFIX = "hf:"
"""``hf:NAME[:SUBSET[:SPLIT]]`` names a Hugging Face dataset (``hf:nvidia/HelpSteer3:feedback``),
loaded with ``datasets.load_dataset`` (online, or from its local cache with HF_HUB_OFFLINE)."""


def _hub_rows(spec: str) -> Iterator[tuple[int, dict[str, Any]]]:
    name, _, rest = spec[len(HUB_PREFIX) :].partition(":")
    subset, _, split = rest.partition(":")
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets comes with the train extra
        raise InputError(
            "loading by name needs datasets: pip install 'langgraph-feedit[train]'"
        ) from None
    try:
        rows = datasets.load_dataset(name, subset or None, split=split or "train")
    except Exception as exc:  # datasets raises many kinds (network, missing config...)
        raise InputError(f"cannot load the dataset: {exc}", path=spec) from None
    for i, row in enumerate(rows, start=1):
        yield i, dict(row)


def _str(row: Mapping[str, Any], key: str, path: Path, line: int) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{key!r} must be a non-empty string", path=str(path), line=line)
    return value


def _conversation(value: Any, key: str, path: Path, line: int) -> list[dict[str, Any]]:
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    try:
        return check_conversation(value, label=key)
    except ConversationError as exc:
        raise InputError(str(exc), path=str(path), line=line) from None


def _feedback_text(value: Any, key: str, path: Path, line: int) -> list[str]:
    """HelpSteer3 feedback: a list of up to three annotators' strings (or one string)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{key!r} must be a list of strings", path=str(path), line=line)
    return [v for v in value if v.strip()]


def detect_source(row: Mapping[str, Any]) -> str:
    """Which schema a row is in: a HelpSteer3 subset, a batch record, or a pair."""
    if "trace" in row or "trace_file" in row:
        return "batch"
    if "chosen" in row and "rejected" in row:
        return "pairs"
    if "good_edited_response" in row:
        return "edit_quality"
    if "edited_response" in row:
        return "edit"
    if "feedback1" in row:
        return "feedback"
    if "overall_preference" in row:
        return "preference"
    return "unknown"


# -- per-task conversion ---------------------------------------------------------------------


def _helpsteer_sft(
    task: Task, kind: str, row: Mapping[str, Any], path: Path, line: int, t: TemplateSet
) -> list[SFTExample]:
    where = f"{path}:{line}"
    context = _conversation(row.get("context"), "context", path, line)
    if task == "feedback":
        if kind != "feedback":
            return []
        out = []
        for n in ("1", "2"):
            response = _str(row, f"response{n}", path, line)
            for fb in _feedback_text(row.get(f"feedback{n}"), f"feedback{n}", path, line):
                out.append(SFTExample(critique_messages(context, response, t), fb.strip(), where))
        return out
    if kind != "edit":
        return []
    original = _str(row, "original_response", path, line)
    edited = _str(row, "edited_response", path, line)
    feedback = _feedback_text(row.get("feedback"), "feedback", path, line)
    if not feedback:
        raise InputError("'feedback' has no text", path=str(path), line=line)
    # One example with all the annotators' feedback, as the edit model sees one critique.
    msgs = edit_messages(context, original, "\n\n".join(f.strip() for f in feedback), t)
    return [SFTExample(msgs, edited, where)]


def _helpsteer_pairs(kind: str, row: Mapping[str, Any], path: Path, line: int) -> list[PairExample]:
    where = f"{path}:{line}"
    context = _conversation(row.get("context"), "context", path, line)
    if kind == "preference":
        pref = row.get("overall_preference")
        if not isinstance(pref, int) or isinstance(pref, bool) or not -3 <= pref <= 3:
            raise InputError(
                "'overall_preference' must be an integer from -3 to 3", path=str(path), line=line
            )
        if pref == 0:
            return []
        r1, r2 = _str(row, "response1", path, line), _str(row, "response2", path, line)
        chosen, rejected = (r1, r2) if pref < 0 else (r2, r1)
        return [PairExample(context, chosen, rejected, where)]
    if kind == "edit_quality":
        good = _str(row, "good_edited_response", path, line)
        bad = _str(row, "bad_edited_response", path, line)
        return [PairExample(context, good, bad, where)]
    return []


def _pair_row(row: Mapping[str, Any], path: Path, line: int) -> PairExample:
    conversation = _conversation(row.get("prompt"), "prompt", path, line)
    chosen, rejected = _str(row, "chosen", path, line), _str(row, "rejected", path, line)
    return PairExample(conversation, chosen, rejected, f"{path}:{line}")


def _trace_of(row: Mapping[str, Any], path: Path, line: int) -> dict[str, Any]:
    trace = row.get("trace")
    if trace is None and isinstance(row.get("trace_file"), str):
        tpath = Path(row["trace_file"])
        if not tpath.is_absolute() and not tpath.is_file():
            tpath = path.parent / tpath
        try:
            trace = json.loads(tpath.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(
                f"cannot read its trace_file: {exc}", path=str(path), line=line
            ) from None
    if not isinstance(trace, dict) or not isinstance(trace.get("nodes"), list):
        raise InputError(
            "a batch record needs its 'trace' (run feedit batch without --traces, or keep "
            "the trace files)",
            path=str(path),
            line=line,
        )
    return trace


def distill_examples(
    task: Task,
    row: Mapping[str, Any],
    path: Path,
    line: int,
    t: TemplateSet,
    *,
    min_gain: float,
    counts: DataCounts,
) -> list[SFTExample] | list[PairExample]:
    """Examples from one ``feedit batch`` record: the teacher's critiques and edits whose edit
    the judge scored at least ``min_gain`` above its parent (feedback, edit), or the pair of
    each such edit and its parent (select)."""
    if row.get("status") == "failed":
        counts.drop("failed prompt")
        return []
    conversation = _conversation(row.get("messages"), "messages", path, line)
    trace = _trace_of(row, path, line)
    nodes = {n["id"]: n for n in trace["nodes"] if isinstance(n, dict) and "id" in n}
    where = f"{path}:{line}"
    sft: list[SFTExample] = []
    pairs: list[PairExample] = []
    for node in nodes.values():
        if node.get("kind") != "edit" or node.get("error") or node.get("text") is None:
            continue
        crit = nodes.get(node.get("parent") or "")
        cand = nodes.get((crit or {}).get("parent") or "")
        if crit is None or cand is None or crit.get("text") is None or cand.get("text") is None:
            counts.drop("edit without its critique or parent")
            continue
        gain_of = node.get("score"), cand.get("score")
        if gain_of[0] is None or gain_of[1] is None:
            counts.drop("unscored")
            continue
        if float(gain_of[0]) - float(gain_of[1]) < min_gain:
            counts.drop("below min_gain")
            continue
        if task == "feedback":
            msgs = critique_messages(conversation, cand["text"], t)
            sft.append(SFTExample(msgs, crit["text"], f"{where} {crit['id']}"))
        elif task == "edit":
            msgs = edit_messages(conversation, cand["text"], crit["text"], t)
            sft.append(SFTExample(msgs, node["text"], f"{where} {node['id']}"))
        else:
            pairs.append(PairExample(conversation, node["text"], cand["text"], where))
    return pairs if task == "select" else sft


def load_examples(
    task: Task,
    paths: Sequence[Path],
    templates: TemplateSet,
    *,
    source: Source = "auto",
    min_gain: float = 0.0,
    counts: DataCounts | None = None,
) -> list[Any]:
    """Every example of ``task`` in ``paths``; rows of other subsets are skipped and counted.

    Raises:
        InputError: a row is malformed, or a file holds no example for ``task``.
    """
    counts = counts if counts is not None else DataCounts()
    out: list[Any] = []
    for path in paths:
        before = len(out)
        for line, row in read_rows(path):
            counts.rows += 1
            kind = detect_source(row) if source == "auto" else source
            if kind == "helpsteer3":
                kind = detect_source(row)
            if kind == "batch":
                got: list[Any] = list(
                    distill_examples(
                        task, row, path, line, templates, min_gain=min_gain, counts=counts
                    )
                )
            elif kind == "pairs":
                got = [_pair_row(row, path, line)] if task == "select" else []
            elif kind in ("feedback", "edit") and task != "select":
                got = list(_helpsteer_sft(task, kind, row, path, line, templates))
            elif kind in ("preference", "edit_quality") and task == "select":
                got = list(_helpsteer_pairs(kind, row, path, line))
            elif kind == "unknown":
                raise InputError(
                    "unrecognised row: expected a HelpSteer3 row (feedback, edit, edit_quality "
                    "or preference), a feedit batch record with its trace, or a "
                    "prompt/chosen/rejected pair",
                    path=str(path),
                    line=line,
                )
            else:
                got = []
            if not got and kind not in ("batch",):
                counts.drop(f"{kind} row (not {task} data)")
            out.extend(got)
        if len(out) == before:
            raise InputError(f"no {task} examples in this file", path=str(path))
    counts.examples = len(out)
    return out
