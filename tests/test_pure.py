"""The pure parts, tested directly (node ids: test_nodeid.py): node merging, consensus scores,
the run budget, and knockout brackets of any size (against the simulated server)."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from langgraph_feedit.calls import BudgetExhausted, RoleCaller, RunBudget
from langgraph_feedit.judges import consensus_scores, rank_round
from langgraph_feedit.prompts import load_templates
from langgraph_feedit.state import merge_nodes
from langgraph_feedit.testing import SimServer
from langgraph_feedit.usage import Usage, empty_usage

from .helpers import sim_config

# -- merging nodes ------------------------------------------------------------------------------

fields = st.fixed_dictionaries(
    {},
    optional={
        "text": st.text(max_size=5),
        "score": st.floats(allow_nan=False, allow_infinity=False),
        "error": st.none() | st.text(max_size=5),
    },
)
updates = st.lists(st.tuples(st.sampled_from(["d0", "d1", "d0.c0", "d2"]), fields), max_size=12)


@given(updates, updates)
def test_merge_nodes_is_last_write_per_field_and_keeps_first_seen_order(
    left: list[tuple[str, dict[str, object]]], right: list[tuple[str, dict[str, object]]]
) -> None:
    a = merge_nodes(None, [{"id": i, **f} for i, f in left])  # type: ignore[typeddict-item]
    merged = merge_nodes(a, [{"id": i, **f} for i, f in right])  # type: ignore[typeddict-item]
    order: list[str] = []
    expected: dict[str, dict[str, object]] = {}
    for node_id, f in [*left, *right]:
        if node_id not in expected:
            order.append(node_id)
            expected[node_id] = {"id": node_id}
        expected[node_id].update(f)
    assert [n["id"] for n in merged] == order
    assert [dict(n) for n in merged] == [expected[i] for i in order]
    # merging the same update again changes nothing (a resumed run writing a node twice)
    assert merge_nodes(merged, [{"id": i, **f} for i, f in right]) == merged  # type: ignore[typeddict-item]


# -- consensus ----------------------------------------------------------------------------------

texts = st.lists(st.text(alphabet="abc ", max_size=30), min_size=1, max_size=6)


@given(texts)
def test_consensus_scores_are_mean_similarities_in_unit_range(candidates: list[str]) -> None:
    pairs = [(f"d{i}", t) for i, t in enumerate(candidates)]
    scores = consensus_scores(pairs)
    assert set(scores) == {cid for cid, _ in pairs}
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    if len(pairs) == 1:
        assert scores == {"d0": 1.0}
    # identical candidates agree completely
    same = consensus_scores([(f"d{i}", "the same words here") for i in range(len(pairs) + 1)])
    assert all(s == 1.0 for s in same.values())


# -- the run budget -----------------------------------------------------------------------------


usages = st.builds(
    Usage,
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 100),
)


@given(st.lists(usages, max_size=10))
def test_usage_adds_itself_up_and_round_trips_as_stored(parts: list[Usage]) -> None:
    """One Usage type, in its own module, is what endpoints return and the trace stores."""
    import langgraph_feedit
    from langgraph_feedit import endpoints

    assert Usage.__module__ == "langgraph_feedit.usage"
    assert langgraph_feedit.Usage is Usage
    assert "Usage" not in endpoints.__all__
    total = sum(parts, Usage())
    assert total.calls == sum(p.calls for p in parts)
    assert total.total_tokens == sum(p.prompt_tokens + p.completion_tokens for p in parts)
    assert Usage.from_dict(total.as_dict()) == total
    assert Usage.from_dict(empty_usage()) == Usage() == Usage.from_dict(None)


@given(st.lists(st.integers(0, 50), max_size=20), st.integers(1, 300))
def test_budget_is_spent_when_the_charges_reach_it(charges: list[int], limit: int) -> None:
    budget = RunBudget(deadline_s=None, max_tokens=limit)
    spent = 0
    for c in charges:
        budget.charge(Usage(prompt_tokens=c, calls=1))
        spent += c
        assert budget.exhausted == (spent >= limit)
        assert budget.reason == ("budget" if spent >= limit else None)


async def test_budget_cancels_a_call_in_flight_at_the_deadline() -> None:
    budget = RunBudget(deadline_s=0.05, max_tokens=None)
    cancelled = asyncio.Event()

    async def slow() -> int:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    with pytest.raises(BudgetExhausted) as info:
        await budget.run(slow())
    assert info.value.reason == "deadline" and cancelled.is_set()
    with pytest.raises(BudgetExhausted):  # refused at once afterwards
        await budget.run(slow())


async def test_budget_spent_elsewhere_stops_calls_in_flight() -> None:
    budget = RunBudget(deadline_s=None, max_tokens=10)

    async def slow() -> int:
        await asyncio.sleep(5)
        return 1

    async def spend() -> None:
        await asyncio.sleep(0.02)
        budget.charge(Usage(completion_tokens=10))

    results = await asyncio.gather(budget.run(slow()), spend(), return_exceptions=True)
    assert isinstance(results[0], BudgetExhausted) and results[0].reason == "budget"


# -- knockout brackets --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=3, mean_tokens=6) as server:
        yield server


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 7, 8, 9])
async def test_knockout_of_any_size(sim: SimServer, n: int) -> None:
    """n - 1 matches, each judged in both orders; every candidate scored; byes earn nothing;
    the simulated judge's replies hold no verdict, so ties go to the earlier candidate."""
    caller = RoleCaller.for_config(sim_config(sim.base_url))
    ids = [f"d{i}" for i in range(n)]
    shuffled = random.Random(n).sample(ids, n)
    before = sim.call_count
    result = await rank_round(
        "pairwise",
        caller,
        [{"role": "user", "content": "q"}],
        [(cid, f"answer {cid}") for cid in shuffled],
        load_templates("generic"),
    )
    assert sim.call_count - before == 2 * (n - 1)
    assert set(result.scores) == set(ids)
    assert sum(result.scores.values()) == n - 1
    assert result.scores["d0"] == math.ceil(math.log2(n)) if n > 1 else result.scores["d0"] == 0
    assert result.usage.calls == 2 * (n - 1)


def test_each_helper_has_one_home_and_the_two_verdicts_two_names() -> None:
    """Node-id order lives with the ids (nodeid), the candidate test with the nodes (state),
    call failures with the calls, progress events with the other reports (tracing); markdown
    counts in their own module; the ``evaluate.arena`` re-export is gone."""
    import importlib.util

    from langgraph_feedit import branches, calls, evaluate, judges, nodeid, prompts, state, tracing
    from langgraph_feedit.evaluate import markdown, records

    assert state.is_candidate.__module__ == state.__name__
    assert state.tree_order is nodeid.order and nodeid.order.__module__ == nodeid.__name__
    assert calls.failure_text.__module__ == calls.failure_kind.__module__ == calls.__name__
    assert tracing.emit.__module__ == tracing.__name__
    assert not hasattr(branches, "emit") or branches.emit is tracing.emit
    assert "tree_order" not in judges.__all__
    assert evaluate.markdown_counts is markdown.markdown_counts
    assert "markdown_counts" not in records.__all__
    assert importlib.util.find_spec("langgraph_feedit.evaluate.arena") is None
    assert not hasattr(prompts, "parse_verdict") and not hasattr(evaluate, "parse_verdict")
    assert prompts.parse_critique_verdict("The response is mostly helpful.") == "mostly"
    assert evaluate.parse_arena_verdict("My final verdict is [[A>B]]") == "A>B"
