"""What a branch is sent, and the state it keeps: typed ``Send`` payloads, one helper each.

Every ``Send`` of the graph carries one of these payloads (in ``graph`` and ``subgraphs``), so
a branch's input has one shape wherever it is sent from. The keys are the branch state's
(:class:`BranchState`), and stay as they are: a checkpoint holds pending sends by these keys,
and a run resumed from an older checkpoint reads them back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from typing_extensions import TypedDict

from langgraph_feedit import nodeid
from langgraph_feedit.state import (
    NodeDict,
    RunSpec,
    Target,
    keep_first,
    merge_nodes,
)

if TYPE_CHECKING:
    from langgraph_feedit.runs import ActiveRun

__all__ = [
    "BranchState",
    "CritiqueTask",
    "DraftTask",
    "EditTask",
    "ProbeTask",
    "critique_slot",
    "critique_task",
    "draft_task",
    "edit_task",
    "head",
    "probe_task",
    "target_of",
]


class DraftTask(TypedDict):
    """A draft branch's input: sample draft ``index``."""

    spec: RunSpec
    index: int
    round: int


class CritiqueTask(TypedDict):
    """A critique branch's input: critique ``index`` of ``parent`` in round ``round``."""

    spec: RunSpec
    parent: Target
    round: int
    index: int


class EditTask(TypedDict):
    """An edit branch's input: edit ``index`` of ``parent`` by ``critique``."""

    spec: RunSpec
    parent: Target
    critique: Target
    round: int
    index: int


class ProbeTask(TypedDict):
    """The ``discover`` node's input: the run whose judge endpoint is probed for logprobs."""

    spec: RunSpec


def probe_task(spec: RunSpec) -> ProbeTask:
    return {"spec": spec}


def draft_task(spec: RunSpec, index: int) -> DraftTask:
    return {"spec": spec, "index": index, "round": 0}


def critique_task(spec: RunSpec, parent: Target, rnd: int, index: int) -> CritiqueTask:
    return {"spec": spec, "parent": parent, "round": rnd, "index": index}


def edit_task(spec: RunSpec, parent: Target, critique: Target, rnd: int, index: int) -> EditTask:
    return {"spec": spec, "parent": parent, "critique": critique, "round": rnd, "index": index}


class BranchState(TypedDict, total=False):
    """A branch's private state: what it was sent, and what it has made so far.

    Every key has a reducer that keeps the first value: the values are set once per branch,
    and under ``astream_events`` LangGraph hands each child branch's whole state back to its
    parent, so parallel children write these keys in one step (see ``keep_first``).
    """

    feedit_nodes: Annotated[list[NodeDict], merge_nodes]
    # ``X | None`` (not ``X``): LangGraph starts a reducer channel at ``X()`` when it can,
    # which would be a first value of ``{}`` or ``0``; for a union it starts empty.
    spec: Annotated[RunSpec | None, keep_first]
    index: Annotated[int | None, keep_first]
    round: Annotated[int | None, keep_first]
    parent: Annotated[Target | None, keep_first]
    critique: Annotated[Target | None, keep_first]
    candidate: Annotated[Target | None, keep_first]


def critique_slot(run: ActiveRun, index: int) -> tuple[int, int]:
    """The slot and sample of critique ``index``: sample ``s`` of slot ``j`` has index
    ``j + s * critiques``, so every sample has its own node id, seed and cache entry, and
    the first sample of each slot keeps the id it had before resampling existed."""
    per = max(1, run.config.width.critiques)
    return index % per, index // per


def target_of(state: BranchState, key: Literal["parent", "critique"]) -> Target:
    """The candidate or critique a branch was sent with."""
    target = state.get(key)
    if target is None:  # pragma: no cover - every critique and edit task carries them
        raise RuntimeError(f"a branch was sent without its {key}")
    return target


def head(kind: nodeid.NodeKind, state: BranchState) -> NodeDict:
    """The fixed part of a node: id, kind, parent, round and role, from the branch's input."""
    i = state.get("index") or 0
    if kind == "draft":
        return {
            "id": nodeid.make("draft", i),
            "kind": kind,
            "parent": None,
            "round": 0,
            "role": kind,
        }
    parent = target_of(state, "parent" if kind == "critique" else "critique")["id"]
    return {
        "id": nodeid.make(kind, i, parent),
        "kind": kind,
        "parent": parent,
        "round": state.get("round") or 0,
        "role": kind,
    }
