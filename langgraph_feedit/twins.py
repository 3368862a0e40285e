"""Identical candidates are judged once and critiqued once.

Two candidates (drafts or edits) whose texts are equal after whitespace normalisation are
*twins*. Nothing waits for a sibling to find out: a branch never waits for anything but its own
parent (the first finished draft is critiqued while a slow one is still running). Instead, the
calls that depend only on a candidate's text are made once per text and shared:

- a pointwise judge's score is keyed by the normalised text;
- a critique by the normalised text it critiques and its slot's sample index;
- an edit by the normalised candidate text, the critique's text and its index.

Whichever twin asks first makes the call (:class:`SharedCalls`); the other gets the same
result without a call. The record is then made deterministic where the tree is whole:
``select`` (the round's barrier) marks every candidate after the first with its text (in tree
order, a candidate of an earlier round first) as ``duplicate_of`` that first one
(:func:`twin_updates`), gives it that one's score and does not carry it into the next round;
``finish`` drops the twin's own critiques and edits from the trace (:func:`twin_descendants`):
copies, made by shared calls, of the first one's.

Drafts are never shared: identical draft requests are independent samples by intent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from langgraph_feedit import nodeid
from langgraph_feedit.state import NodeDict, is_candidate

__all__ = ["SharedCalls", "first_of_shared", "normalise", "twin_descendants", "twin_updates"]

T = TypeVar("T")


def normalise(text: str) -> str:
    """The text with every run of whitespace made one space, and none at either end."""
    return " ".join(text.split())


_FAILED = object()


class SharedCalls:
    """One attempt's calls by content key: a key's call is made once, and every other asker
    gets its result (waiting for it when it is still under way). A failed call is not shared:
    the next asker makes its own."""

    def __init__(self) -> None:
        self._calls: dict[str, asyncio.Future[Any]] = {}
        self.shared = 0
        """How many asks were answered without a call (for tests and benchmarks)."""

    async def once(self, key: str, make: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``make()``'s result for ``key``, and whether it came from another asker's call."""
        while (pending := self._calls.get(key)) is not None:
            result = await asyncio.shield(pending)
            if result is not _FAILED:
                self.shared += 1
                return result, True
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[key] = future
        try:
            value = await make()
        except BaseException:
            del self._calls[key]
            future.set_result(_FAILED)
            raise
        future.set_result(value)
        return value, False


def _order(node: NodeDict) -> tuple[int, tuple[tuple[str, int], ...]]:
    """Earlier rounds first, then tree order: the first of twins is the one critiqued first."""
    return node.get("round") or 0, nodeid.order(node["id"])


def twin_updates(nodes: Sequence[NodeDict]) -> list[NodeDict]:
    """Node updates marking each twin ``duplicate_of`` the first candidate with its text (in
    tree order; a candidate of an earlier round comes first), with that one's score; empty
    when nothing changes."""
    first: dict[str, NodeDict] = {}
    out: list[NodeDict] = []
    for node in sorted((n for n in nodes if is_candidate(n)), key=_order):
        text = normalise(node.get("text") or "")
        original = first.setdefault(text, node)
        if original is node:
            continue
        update: NodeDict = {
            "id": node["id"],
            "duplicate_of": original["id"],
            "score": original.get("score"),
        }
        if any(node.get(k) != v for k, v in update.items()):
            out.append(update)
    return out


def twin_descendants(nodes: Sequence[NodeDict]) -> set[str]:
    """Ids of the nodes below a twin (its critiques, their edits, and so on)."""
    parent = {n["id"]: n.get("parent") for n in nodes}
    twins = {n["id"] for n in nodes if n.get("duplicate_of")}
    out: set[str] = set()
    for node_id in parent:
        up = parent[node_id]
        while up is not None:
            if up in twins:
                out.add(node_id)
                break
            up = parent.get(up)
    return out


def first_of_shared(nodes: Sequence[NodeDict]) -> set[str]:
    """Of the nodes that shared one call (the same ``share`` mark), the first in twin order:
    the one whose usage counts (whichever of them actually made the call)."""
    first: dict[str, NodeDict] = {}
    for node in sorted((n for n in nodes if n.get("share")), key=_order):
        first.setdefault(node["share"], node)
    return {n["id"] for n in first.values()}
