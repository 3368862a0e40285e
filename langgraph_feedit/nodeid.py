"""Trace node ids: made, read and ordered here, and nowhere else.

An id spells a node's path from its draft: ``d0`` is draft 0, ``d0.c1`` its critique 1,
``d0.c1.e0`` that critique's edit 0, ``d0.c1.e0.c0`` a critique of that edit in the next round.
Each step is a kind's letter and an index; a critique follows a draft or an edit, an edit
follows a critique. Ids stay plain strings (in state, in the trace JSON); these functions are
the one place their grammar is written.

Example:
    >>> make("edit", 0, make("critique", 1, make("draft", 0)))
    'd0.c1.e0'
    >>> parse("d0.c1.e0")
    (Step(kind='draft', number=0), Step(kind='critique', number=1), Step(kind='edit', number=0))
    >>> sorted(["d10", "d2", "d2.c10", "d2.c9"], key=order)
    ['d2', 'd2.c9', 'd2.c10', 'd10']
"""

from __future__ import annotations

import functools
import re
from typing import Literal, NamedTuple, get_args

__all__ = ["NodeKind", "Step", "index", "kind", "make", "order", "parent", "parse", "round_of"]

NodeKind = Literal["draft", "critique", "edit"]

# Each kind is written by its initial letter.
_LETTER: dict[NodeKind, str] = {k: k[0] for k in get_args(NodeKind)}
_KIND: dict[str, NodeKind] = {letter: k for k, letter in _LETTER.items()}

# A draft, then critiques each followed (or not) by an edit, and so on; numbers are written
# without leading zeros, so each node has one id.
_N = r"(?:0|[1-9][0-9]*)"
_GRAMMAR = re.compile(rf"d{_N}(?:\.c{_N}\.e{_N})*(?:\.c{_N})?")


class Step(NamedTuple):
    """One step of an id: a node's kind and its number among its siblings."""

    kind: NodeKind
    number: int


def make(kind: NodeKind, index: int, parent: str | None = None) -> str:
    """The id of the ``index``-th ``kind`` node under ``parent`` (``None`` for a draft).

    Raises:
        ValueError: the index is negative, or the kind cannot follow the parent (a draft has
            no parent, a critique follows a draft or an edit, an edit follows a critique).
    """
    if index < 0:
        raise ValueError(f"a node index is never negative, got {index}")
    node_id = f"{_LETTER[kind]}{index}" if parent is None else f"{parent}.{_LETTER[kind]}{index}"
    parse(node_id)
    return node_id


# A run reads the same few hundred ids many times (ranking, sorting, the trace): parsed
# once each. The results are immutable, so sharing them is safe.
@functools.lru_cache(maxsize=4096)
def parse(node_id: str) -> tuple[Step, ...]:
    """The steps of ``node_id``, from its draft down.

    Raises:
        ValueError: the id does not follow the grammar above.
    """
    if not _GRAMMAR.fullmatch(node_id):
        raise ValueError(f"not a trace node id: {node_id!r} (expected d0, d0.c1, d0.c1.e0, ...)")
    return tuple(Step(_KIND[part[0]], int(part[1:])) for part in node_id.split("."))


@functools.lru_cache(maxsize=4096)
def order(node_id: str) -> tuple[tuple[str, int], ...]:
    """Sort key following the tree: ``d2`` < ``d10``, ``d0.c1`` < ``d0.c1.e0`` < ``d0.c2``.

    A parent sorts before its children, and siblings by index as numbers.
    """
    return tuple((_LETTER[s.kind], s.number) for s in parse(node_id))


def parent(node_id: str) -> str | None:
    """The id of the node ``node_id`` answers (``None`` for a draft)."""
    parse(node_id)
    head, _, _ = node_id.rpartition(".")
    return head or None


def index(node_id: str) -> int:
    """The node's index among its siblings (the draft's, critique's or edit's number)."""
    return parse(node_id)[-1].number


def kind(node_id: str) -> NodeKind:
    """Whether the node is a draft, a critique or an edit."""
    return parse(node_id)[-1].kind


def round_of(node_id: str) -> int:
    """The round the node belongs to: 0 for drafts, r for the critiques and edits of round r
    (the number of critiques on its path)."""
    return sum(1 for s in parse(node_id) if s.kind == "critique")
