"""Identical candidates are judged once and critiqued once.

A candidate (draft or edit) whose text, after whitespace normalisation, equals an earlier one
is a *twin*: it is not judged and not critiqued, its trace node says ``duplicate_of`` the
earlier one, and it takes that one's score when the round is ranked.

"Earlier" is tree order, and the choice must not depend on which call answered first. So a
candidate compares itself with the candidate it is an edit of (always finished before it), and
with its lower-indexed siblings of the same fan-out (the drafts of the run, or the edits of one
critique), waiting for those siblings to settle (finish or fail) first. Siblings wait only for
siblings the same attempt sent (:meth:`Twins.expect`, called where the fan-out is made): a
branch sent again on resume, or one resumed from a checkpoint whose siblings finished in an
earlier process, waits for nobody, so a resumed run never hangs on a branch that will not run.

Candidates of different fan-outs (the edits of two different critiques) are not compared:
that would make one branch wait on another's whole subtree.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

__all__ = ["Twins", "normalise"]


def normalise(text: str) -> str:
    """The text with every run of whitespace made one space, and none at either end."""
    return " ".join(text.split())


@dataclass
class _Group:
    expected: int = 0
    settled: dict[int, str | None] = field(default_factory=dict)
    """index -> normalised text (``None``: the branch failed, so it has no text)."""
    owners: dict[int, str] = field(default_factory=dict)
    """index -> node id of a settled candidate."""
    changed: asyncio.Event | None = None


class Twins:
    """One attempt's registry of finished candidates, per fan-out group.

    ``expect`` may be called from a worker thread (sync runs route on threads); everything
    else runs on the run's event loop.
    """

    def __init__(self) -> None:
        self._groups: dict[str, _Group] = {}
        self._lock = threading.Lock()

    def expect(self, group: str, count: int) -> None:
        """``count`` siblings (indices ``0..count-1``) of ``group`` were sent by this attempt."""
        with self._lock:
            g = self._groups.setdefault(group, _Group())
            g.expected = max(g.expected, count)

    def _group(self, group: str) -> _Group:
        with self._lock:
            return self._groups.setdefault(group, _Group())

    def settle(self, group: str, index: int, node_id: str, text: str | None) -> None:
        """Record that sibling ``index`` finished with ``text`` (``None``: it failed)."""
        g = self._group(group)
        g.settled[index] = None if text is None else normalise(text)
        g.owners[index] = node_id
        if g.changed is not None:
            g.changed.set()

    async def earlier_twin(self, group: str, index: int, text: str, *, wait: bool) -> str | None:
        """The id of the first lower-indexed sibling with the same normalised text, if any.

        With ``wait``, first waits until every lower-indexed sibling this attempt sent has
        settled, so the answer does not depend on timing.
        """
        g = self._group(group)
        if wait:
            while any(j not in g.settled for j in range(min(index, g.expected))):
                if g.changed is None or g.changed.is_set():
                    g.changed = asyncio.Event()
                await g.changed.wait()
        norm = normalise(text)
        for j in range(index):
            if g.settled.get(j) == norm:
                return g.owners[j]
        return None
