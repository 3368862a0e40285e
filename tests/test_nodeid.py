"""Node ids: made, parsed and ordered by one module (``langgraph_feedit.nodeid``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from langgraph_feedit import nodeid
from langgraph_feedit.state import Trace

index = st.integers(0, 30)
# Candidates: a draft, or an edit of a critique of a candidate; any id is a candidate or a
# critique of one.
candidates = st.recursive(
    index.map(lambda i: f"d{i}"),
    lambda parent: st.tuples(parent, index, index).map(lambda t: f"{t[0]}.c{t[1]}.e{t[2]}"),
    max_leaves=4,
)
node_ids = candidates | st.tuples(candidates, index).map(lambda t: f"{t[0]}.c{t[1]}")


@given(st.lists(node_ids, min_size=1, max_size=30, unique=True))
def test_order_puts_parents_first_and_numbers_numerically(ids: list[str]) -> None:
    ordered = sorted(ids, key=nodeid.order)
    for node in ordered:
        up = nodeid.parent(node)
        while up is not None:
            if up in ordered:
                assert ordered.index(up) < ordered.index(node)
            up = nodeid.parent(up)


def test_d10_sorts_after_d2() -> None:
    assert sorted(["d10", "d2", "d2.c10", "d2.c9", "d2.c9.e0"], key=nodeid.order) == [
        "d2",
        "d2.c9",
        "d2.c9.e0",
        "d2.c10",
        "d10",
    ]


@given(node_ids)
def test_make_rebuilds_what_parse_reads(node_id: str) -> None:
    rebuilt: str | None = None
    for step in nodeid.parse(node_id):
        rebuilt = nodeid.make(step.kind, step.number, rebuilt)
    assert rebuilt == node_id
    assert nodeid.index(node_id) == nodeid.parse(node_id)[-1].number
    assert nodeid.kind(node_id) == (
        "critique" if node_id.split(".")[-1][0] == "c" else "edit" if "." in node_id else "draft"
    )


def test_parent_round_index_and_kind() -> None:
    edit = nodeid.make("edit", 2, nodeid.make("critique", 1, nodeid.make("draft", 10)))
    assert edit == "d10.c1.e2"
    assert nodeid.parent(edit) == "d10.c1" and nodeid.parent("d10") is None
    assert (nodeid.index(edit), nodeid.kind(edit), nodeid.round_of(edit)) == (2, "edit", 1)
    assert nodeid.round_of("d0.c0.e1.c3") == 2 and nodeid.round_of("d3") == 0


BAD = ["", "d", "x0", "d-1", "c0", "d0.e0", "d0.c0.c0", "d0..c1", "d01", "d0.c1x"]


@pytest.mark.parametrize("bad", BAD)
def test_a_malformed_id_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match="not a trace node id"):
        nodeid.parse(bad)


def test_make_refuses_a_kind_that_cannot_follow_its_parent() -> None:
    with pytest.raises(ValueError):
        nodeid.make("edit", 0, "d0")
    with pytest.raises(ValueError):
        nodeid.make("critique", 0, "d0.c1")
    with pytest.raises(ValueError, match="negative"):
        nodeid.make("draft", -1)


def test_a_trace_with_a_malformed_node_id_is_refused_naming_where() -> None:
    with pytest.raises(ValidationError, match=r"nodes\.1\.id[\s\S]*not a trace node id: 'd0\.e1'"):
        Trace.model_validate(
            {
                "nodes": [
                    {"id": "d0", "kind": "draft", "role": "draft"},
                    {"id": "d0.e1", "kind": "edit", "role": "edit"},
                ]
            }
        )
