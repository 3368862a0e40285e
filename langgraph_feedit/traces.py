"""The trace of a finished run: the state's nodes made into the one validated record.

``finish`` (in ``graph``) decides whether the run has an answer; this module only writes down
what happened: which nodes count (a twin's copied critiques and edits do not), what the run
bought and what it reused (calls made by another attempt, or served from the call cache), the
tokens per role, and the chosen candidate (by the judges' ``rank_key``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from langgraph_feedit import nodeid
from langgraph_feedit.judges import rank_key
from langgraph_feedit.names import RUN_ROLE_NAMES
from langgraph_feedit.state import (
    STATE_ONLY_KEYS,
    FeeditState,
    NodeDict,
    Trace,
    TraceNode,
    is_candidate,
)
from langgraph_feedit.twins import first_of_shared, twin_descendants
from langgraph_feedit.usage import Usage

if TYPE_CHECKING:
    from langgraph_feedit.runs import ActiveRun

__all__ = ["Made", "make_trace"]


@dataclass(frozen=True, slots=True)
class Made:
    """A run's trace, its chosen state node and trace node (``None`` when no candidate is
    left), and its total usage."""

    trace: Trace
    chosen: NodeDict | None
    best: TraceNode | None
    total: Usage


def make_trace(run: ActiveRun, state: FeeditState, raw_nodes: Sequence[NodeDict]) -> Made:
    """The trace of ``run`` from its state's nodes."""
    reused = Usage()
    nodes = []
    # A twin's critiques and edits are copies of the first one's, made by shared calls.
    copies = twin_descendants(raw_nodes)
    raw_nodes = [n for n in raw_nodes if n["id"] not in copies]
    paid = first_of_shared(raw_nodes)
    for raw in raw_nodes:
        data = {k: v for k, v in raw.items() if k not in STATE_ONLY_KEYS}
        if raw.get("duplicate_of"):
            data.pop("judge_usage", None)  # its score is the first one's, bought once
        if raw.get("share") is not None and raw["id"] not in paid:
            data.pop("usage", None)  # one call made for several nodes counts once
        # A node whose call was made by another attempt came from the call cache or from
        # the checkpoint of an earlier attempt at this run.
        origin, judge_origin = raw.get("origin"), raw.get("judge_origin")
        if origin is not None and origin != run.attempt:
            data["reused"] = True
        # The one place a state node becomes a trace node: validated here, once.
        node = TraceNode.model_validate(data)
        if node.reused:
            reused += Usage.from_dict(node.usage)
        if judge_origin is not None and judge_origin != run.attempt:
            reused += Usage.from_dict(node.judge_usage)
        nodes.append(node)
    nodes.sort(key=lambda n: nodeid.order(n.id))
    chosen = min(
        (n for n in raw_nodes if is_candidate(n) and not n.get("duplicate_of")),
        key=rank_key,
        default=None,
    )
    best = next(n for n in nodes if n.id == chosen["id"]) if chosen else None
    per_role: dict[str, Usage] = {r: Usage() for r in RUN_ROLE_NAMES}
    for n in nodes:
        per_role[n.role] = per_role.get(n.role, Usage()) + Usage.from_dict(n.usage)
        per_role["judge"] += Usage.from_dict(n.judge_usage)
    for u in state.get("feedit_judge_usage", []):
        per_role["judge"] += Usage.from_dict(u)
    total = sum(per_role.values(), Usage())
    trace = Trace(
        nodes=nodes,
        selected=best.id if best else None,
        answer=best.text if best else None,
        usage={**{r: u.as_dict() for r, u in per_role.items()}, "total": total.as_dict()},
        reused=reused.as_dict(),
        wall_s=round(time.time() - run.started, 6),
        stopped=state.get("feedit_stopped"),
        judge=run.judge,
        rounds=max((n.round for n in nodes), default=0),
        conversation=run.conversation,
    )
    return Made(trace, chosen, best, total)
