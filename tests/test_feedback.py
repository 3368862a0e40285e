"""Effective feedback (a critique asking for no change is sampled again) and identical
candidates (judged and critiqued once), against the simulated server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.cache.sqlite import SqliteCache

from langgraph_feedit import Trace, create_feedit_graph
from langgraph_feedit.config import resolve_config
from langgraph_feedit.prompts import asks_no_change
from langgraph_feedit.testing import SimServer
from langgraph_feedit.testing._ledger import RecordedRequest

from .helpers import sim_config


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=3) as server:
        yield server


async def run(config: Any, cache: Any = None) -> Trace:
    graph = create_feedit_graph(config, cache=cache).compile(cache=cache)
    out = await graph.ainvoke({"messages": [("user", "Explain CRDTs.")]})
    return Trace.model_validate(out["trace"])


def last_user(request: RecordedRequest) -> str:
    users = [m for m in request.body.get("messages", []) if m.get("role") == "user"]
    return str(users[-1].get("content", "")) if users else ""


def calls(sim: SimServer, marker: str) -> int:
    return sum(marker in last_user(r) for r in sim.requests)


# The nemotron critique prompt (the server answers it with a verdict) and the principle judge.
CRITIQUE = "in terms of how helpful it is overall"
JUDGE = "satisfies this principle"


def effective_config(sim: SimServer, *, samples: int, skip: bool = True, **width: int) -> Any:
    return sim_config(
        sim.base_url,
        roles={"critique": {"template": "nemotron", "seed": 0}, "draft": {"seed": 0}},
        width={"drafts": 24, "critiques": 1, "edits": 1, **width},
        depth={"skip_perfect": skip, "max_critique_samples": samples},
    )


# -- effective feedback -------------------------------------------------------------------------


def test_no_change_forms() -> None:
    assert asks_no_change("The response is perfectly helpful. It covers everything.")
    assert asks_no_change("The response is mostly helpful.\nNo changes needed.")
    assert asks_no_change("There is nothing to improve.")
    assert not asks_no_change("The response is mostly helpful. Add an example.")
    assert not asks_no_change("Add an example; otherwise no further changes are required.")
    assert not asks_no_change("No changes are needed in the intro, but the end is weak.")


def test_feedback_edit_preset_counts_only_effective_feedback() -> None:
    cfg = resolve_config(sim_config("http://127.0.0.1:9/v1"), preset="feedback-edit")
    assert cfg.depth.skip_perfect and cfg.depth.max_critique_samples == 3


async def test_ineffective_critiques_are_sampled_again_up_to_the_cap(sim: SimServer) -> None:
    cap = 2
    trace = await run(effective_config(sim, samples=cap, drafts=48))
    critiques = [n for n in trace.nodes if n.kind == "critique"]
    assert calls(sim, CRITIQUE) == len(critiques), "every sample is in the trace"
    edited = {n.parent for n in trace.nodes if n.kind == "edit"}
    by_slot: dict[tuple[str, int], list[Any]] = {}
    for n in critiques:
        index = int(n.id.rsplit(".c", 1)[1])
        assert n.sample == index // 1  # one slot per candidate: sample s has index s
        by_slot.setdefault((n.parent or "", index % 1), []).append(n)
        assert n.effective == (n.verdict != "perfectly")
        assert (n.id in edited) == bool(n.effective), "only effective critiques are edited"
        if not n.effective:
            assert n.skipped == "perfect"
    outcomes = set()
    for samples in by_slot.values():
        samples.sort(key=lambda n: n.sample)
        assert [n.sample for n in samples] == list(range(len(samples)))
        # A slot stops at its first effective sample, or at the cap.
        assert all(not n.effective for n in samples[:-1])
        assert len(samples) <= cap
        last = samples[-1]
        outcomes.add(
            "first"
            if len(samples) == 1 and last.effective
            else "resampled"
            if last.effective
            else "capped"
        )
    # Seeded: 48 drafts give each outcome at least once.
    assert outcomes == {"first", "resampled", "capped"}
    assert len(by_slot) == 48


async def test_without_skip_perfect_every_critique_counts(sim: SimServer) -> None:
    trace = await run(effective_config(sim, samples=3, skip=False))
    critiques = [n for n in trace.nodes if n.kind == "critique"]
    assert len(critiques) == 24 and calls(sim, CRITIQUE) == 24
    assert all(n.effective and n.sample == 0 for n in critiques)
    assert any(n.verdict == "perfectly" for n in critiques)
    assert len([n for n in trace.nodes if n.kind == "edit"]) == 24


async def test_two_slots_keep_their_samples_apart(sim: SimServer) -> None:
    trace = await run(effective_config(sim, samples=3, drafts=6, critiques=2))
    critiques = [n for n in trace.nodes if n.kind == "critique"]
    for n in critiques:
        index = int(n.id.rsplit(".c", 1)[1])
        assert n.sample == index // 2
    per_parent: dict[str, set[int]] = {}
    for n in critiques:
        per_parent.setdefault(n.parent or "", set()).add(int(n.id.rsplit(".c", 1)[1]) % 2)
    assert all(slots == {0, 1} for slots in per_parent.values())
    assert any((n.sample or 0) > 0 for n in critiques), "seeded: some slot was resampled"


async def test_a_rerun_through_the_cache_pays_for_no_sample_again(
    sim: SimServer, tmp_path: Path
) -> None:
    cache = SqliteCache(path=str(tmp_path / "cache.sqlite"))
    config = effective_config(sim, samples=3, drafts=8).merged({"cache_key": "fixed"})
    first = await run(config, cache)
    made = sim.call_count
    assert any((n.sample or 0) > 0 for n in first.nodes), "seeded: some slot was resampled"
    again = await run(config, cache)
    assert sim.call_count == made, "no sample (nor anything else) is bought twice"
    assert [n.id for n in again.nodes] == [n.id for n in first.nodes]
    assert all(n.reused for n in again.nodes)


# -- identical candidates -----------------------------------------------------------------------


async def test_identical_drafts_are_judged_once(sim: SimServer) -> None:
    # Greedy: the server answers the four draft requests (each seeded) with one text.
    config = sim_config(
        sim.base_url,
        preset="best-of-n",
        width={"drafts": 4},
        roles={"draft": {"temperature": 0.0}},
    )
    trace = await run(config)
    drafts = [n for n in trace.nodes if n.kind == "draft"]
    assert len({n.text for n in drafts}) == 1
    assert drafts[0].duplicate_of is None
    assert [n.duplicate_of for n in drafts[1:]] == ["d0", "d0", "d0"]
    assert calls(sim, JUDGE) == 1
    assert drafts[0].score is not None
    assert all(n.score == drafts[0].score for n in drafts)
    assert trace.selected == "d0"
    # one candidate judged, and the probe of the judge endpoint for logprobs (the judge's)
    assert trace.usage["judge"]["calls"] == 1 + 1


async def test_identical_drafts_are_critiqued_once_and_edits_merge_too(sim: SimServer) -> None:
    config = sim_config(
        sim.base_url,
        width={"drafts": 3, "critiques": 1, "edits": 3},
        roles={"draft": {"temperature": 0.0}, "edit": {"temperature": 0.0}},
    )
    trace = await run(config)
    assert [n.duplicate_of for n in trace.nodes if n.kind == "draft"] == [None, "d0", "d0"]
    # The twins' own critiques and edits are not in the trace: they were d0's, shared.
    critiques = [n for n in trace.nodes if n.kind == "critique"]
    assert [n.parent for n in critiques] == ["d0"]
    edits = [n for n in trace.nodes if n.kind == "edit"]
    assert [n.duplicate_of for n in edits] == [None, "d0.c0.e0", "d0.c0.e0"]
    # Paid once: three drafts, one critique, three edits, and d0 and its first edit judged;
    # and the judge endpoint's logprobs probe.
    assert calls(sim, "demanding expert reviewer") == 1
    assert calls(sim, JUDGE) == 2
    assert sim.call_count == 3 + 1 + 3 + 2 + 1
    assert trace.usage["total"]["calls"] == sim.call_count
    assert trace.node("d1").score == trace.node("d0").score
    assert trace.node("d0.c0.e2").score == trace.node("d0.c0.e0").score
    assert trace.selected is not None and trace.node(trace.selected).duplicate_of is None


async def test_an_edit_request_made_twice_is_paid_and_counted_once(sim: SimServer) -> None:
    # Greedy, the two critique slots of d0 read alike, so their edits are one request.
    config = sim_config(
        sim.base_url,
        width={"drafts": 1, "critiques": 2, "edits": 1},
        roles={"critique": {"temperature": 0.0}},
    )
    trace = await run(config)
    assert trace.node("d0.c0").text == trace.node("d0.c1").text
    assert trace.node("d0.c1.e0").duplicate_of == "d0.c0.e0"
    # draft, critiques, one edit, two scores, and the judge endpoint's logprobs probe
    assert sim.call_count == 1 + 2 + 1 + 2 + 1
    assert trace.usage["total"]["calls"] == sim.call_count
    assert trace.usage["edit"]["calls"] == 1
    assert trace.node("d0.c1.e0").usage["calls"] == 0
    assert trace.node("d0.c0.e0").usage["calls"] == 1


def test_whitespace_alone_does_not_make_candidates_different() -> None:
    from langgraph_feedit.twins import normalise, twin_descendants, twin_updates

    assert normalise("  a\n\tb  c ") == "a b c"
    nodes: list[dict[str, Any]] = [
        {"id": "d1", "kind": "draft", "round": 0, "text": "Hello, world.", "score": None},
        {"id": "d0", "kind": "draft", "round": 0, "text": "Hello,\n  world.", "score": 0.5},
        {"id": "d2", "kind": "draft", "round": 0, "text": "Hello world.", "score": 0.1},
        {"id": "d1.c0", "kind": "critique", "parent": "d1", "round": 1, "text": "x"},
    ]
    assert twin_updates(nodes) == [{"id": "d1", "duplicate_of": "d0", "score": 0.5}]
    marked = [{**n, "duplicate_of": "d0"} if n["id"] == "d1" else n for n in nodes]
    assert twin_descendants(marked) == {"d1.c0"}


async def test_the_first_in_tree_order_is_the_original_whoever_answers_first() -> None:
    slow_first = {"done": False}

    def latency(body: dict[str, Any]) -> float | None:
        # The first request to arrive (a draft) answers last.
        if not slow_first["done"]:
            slow_first["done"] = True
            return 0.4
        return None

    for _ in range(3):
        slow_first["done"] = False
        with SimServer(seed=4, latency_fn=latency) as server:
            config = sim_config(
                server.base_url,
                preset="best-of-n",
                width={"drafts": 3},
                roles={"draft": {"temperature": 0.0}},  # greedy: three identical drafts
            )
            trace = await run(config)
            assert calls(server, JUDGE) == 1
        assert [n.duplicate_of for n in trace.nodes] == [None, "d0", "d0"]
        assert trace.selected == "d0"


async def test_a_failed_shared_call_is_made_again_by_the_next_asker() -> None:
    from langgraph_feedit.twins import SharedCalls

    shared = SharedCalls()
    made: list[str] = []

    async def failing() -> str:
        made.append("fail")
        await asyncio.sleep(0.01)
        raise RuntimeError("down")

    async def working() -> str:
        made.append("ok")
        return "text"

    first = asyncio.ensure_future(shared.once("k", failing))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(shared.once("k", working))
    with pytest.raises(RuntimeError):
        await first
    assert await second == ("text", False)
    assert await shared.once("k", working) == ("text", True)
    assert made == ["fail", "ok"] and shared.shared == 1
