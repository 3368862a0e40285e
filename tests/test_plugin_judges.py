"""Judges you plug in (a function, an import path, the verifier, a weighted combination) through
the graph and ``feedit batch``, and the headroom ``feedit verify`` reports, against figures
computed by hand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langgraph_feedit import Trace, create_feedit_graph
from langgraph_feedit.batch import BatchOptions, run_batch
from langgraph_feedit.errors import ConfigError
from langgraph_feedit.evaluate.verify import verify_files
from langgraph_feedit.testing import SimServer

from .helpers import read_lines, sim_config

NO_COMMA = {"key": 1, "prompt": "Say hi. Do not use any commas.", "kwargs": [{}]}
NO_COMMA["instruction_id_list"] = ["punctuation:no_comma"]


def fewest_words(conversation: list[dict[str, Any]], candidate: str) -> float:
    """A judge of one's own: the shorter the better."""
    assert conversation[-1]["role"] == "user"
    return -float(len(candidate.split()))


async def async_longest(conversation: list[dict[str, Any]], candidate: str) -> float:
    return float(len(candidate.split()))


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=9, mean_tokens=12, sd_tokens=6.0) as server:
        yield server


async def run(config: Any, prompt: str = "Explain CRDTs.") -> Trace:
    graph = create_feedit_graph(config).compile()
    out = await graph.ainvoke({"messages": [("user", prompt)]})
    return Trace.model_validate(out["trace"])


def judged(sim: SimServer) -> int:
    return sum("satisfies this principle" in json.dumps(r.body) for r in sim.requests)


@pytest.mark.parametrize(
    ("function", "best"),
    [(fewest_words, min), (f"{__name__}:async_longest", max)],
    ids=["python", "import-path-async"],
)
async def test_a_function_judge_picks_through_the_graph(
    sim: SimServer, function: Any, best: Any
) -> None:
    config = sim_config(
        sim.base_url,
        preset="feedback-edit",
        width={"drafts": 3, "critiques": 1, "edits": 1},
        roles={"judge": {"kind": "function", "function": function}},
    )
    trace = await run(config)
    cands = trace.candidates()
    assert len(cands) == 6 and all(n.score is not None for n in cands)
    lengths = {n.id: len((n.text or "").split()) for n in cands}
    assert lengths[trace.selected or ""] == best(lengths.values())
    assert judged(sim) == 0, "no model judged anything"
    assert trace.usage["judge"]["calls"] == 0


def shorter_wins(conversation: list[dict[str, Any]], first: str, second: str) -> str:
    """A pairwise judge of one's own: the shorter of two candidates."""
    return "A" if len(first.split()) <= len(second.split()) else "B"


async def async_longer_by(conversation: list[dict[str, Any]], first: str, second: str) -> float:
    return float(len(first.split()) - len(second.split()))


@pytest.mark.parametrize(
    ("function", "best"),
    [(shorter_wins, min), (f"{__name__}:async_longer_by", max)],
    ids=["verdict", "async-preference"],
)
async def test_a_pairwise_function_judges_the_knockout(
    sim: SimServer, function: Any, best: Any
) -> None:
    config = sim_config(
        sim.base_url,
        preset="best-of-n",
        width={"drafts": 4},
        roles={"draft": {"seed": 1}, "judge": {"kind": "pairwise", "function": function}},
    )
    trace = await run(config)
    lengths = {n.id: len((n.text or "").split()) for n in trace.candidates()}
    assert len(set(lengths.values())) == 4
    assert lengths[trace.selected or ""] == best(lengths.values())
    # the winner won both its matches; no model was asked to compare anything
    assert max(n.score or 0.0 for n in trace.candidates()) == 2.0
    assert len(sim.requests) == 4 and trace.usage["judge"]["calls"] == 0


def test_a_bad_function_path_fails_when_the_graph_is_built(sim: SimServer) -> None:
    for path in ("no_colon", "tests.test_plugin_judges:missing"):
        config = sim_config(sim.base_url, roles={"judge": {"kind": "function", "function": path}})
        with pytest.raises(ConfigError, match=r"roles\.judge\.function"):
            create_feedit_graph(config)


def questions(tmp_path: Path) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(NO_COMMA) + "\n", encoding="utf-8")
    return path


async def test_the_verify_judge_scores_by_the_checkers(sim: SimServer, tmp_path: Path) -> None:
    config = sim_config(
        sim.base_url,
        preset="best-of-n",
        width={"drafts": 3},
        roles={"judge": {"kind": "verify", "questions": str(questions(tmp_path))}},
    )
    trace = await run(config, NO_COMMA["prompt"])
    for n in trace.candidates():
        assert n.score == (0.0 if "," in (n.text or "") else 1.0)
    assert judged(sim) == 0
    other = await run(config, "A prompt with no instructions.")
    assert all(n.score is None for n in other.candidates())
    assert "no instructions" in (other.candidates()[0].judge_note or "")


async def test_a_weighted_combination_adds_the_parts(sim: SimServer, tmp_path: Path) -> None:
    config = sim_config(
        sim.base_url,
        preset="best-of-n",
        width={"drafts": 3},
        roles={
            "judge": {
                "kind": "combined",
                "questions": str(questions(tmp_path)),
                "combine": [
                    {"kind": "verify", "weight": 2.0},
                    {"kind": "principle", "weight": 0.5},
                ],
            }
        },
    )
    trace = await run(config, NO_COMMA["prompt"])
    for n in trace.candidates():
        parts = n.judge_parts or {}
        assert set(parts) == {"verify", "principle"}
        assert n.score == pytest.approx(2.0 * parts["verify"] + 0.5 * parts["principle"])
        assert n.judge_path == "logprobs" and n.principle_scores
    assert judged(sim) == 3
    # The principle part's three questions, and the probe of its endpoint for logprobs that
    # the run made beside its drafts (charged to the judge).
    assert trace.usage["judge"]["calls"] == 3 + 1


async def test_batch_gives_the_verify_judge_its_input(sim: SimServer, tmp_path: Path) -> None:
    inp = questions(tmp_path)
    options = BatchOptions(
        input=inp, output=tmp_path / "out.jsonl", store=tmp_path / "store", progress=False
    )
    config = sim_config(
        sim.base_url, preset="best-of-n", width={"drafts": 3}, roles={"judge": {"kind": "verify"}}
    )
    summary = await run_batch(config, options)
    assert summary.exit_code == 0
    (record,) = read_lines(options.output)
    scores = [n["score"] for n in record["trace"]["nodes"]]
    assert scores and None not in scores


# -- headroom -------------------------------------------------------------------------------------


def node(nid: str, kind: str, text: str | None, **extra: Any) -> dict[str, Any]:
    parent = nid.rsplit(".", 1)[0] if "." in nid else None
    return {"id": nid, "kind": kind, "parent": parent, "role": kind, "text": text, **extra}


def tree(selected: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"nodes": nodes, "selected": selected, "answer": None}


def test_headroom_against_figures_computed_by_hand(tmp_path: Path) -> None:
    qs = [
        {**NO_COMMA, "key": k, "prompt": f"Prompt {k}. Do not use any commas."} for k in (1, 2, 3)
    ]
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(q) for q in qs) + "\n")
    ok, bad = "Hi there.", "Hi, there."
    trees = {
        # 1: the draft fails, its edit passes and is selected: a win for the edit, a good pick.
        "1": tree(
            "d0.c0.e0",
            [
                node("d0", "draft", bad),
                node("d0.c0", "critique", "The response is mostly helpful. Drop the comma."),
                node("d0.c0.e0", "edit", ok),
                node("d1", "draft", bad),
                node("d1.c0", "critique", "Looks fine to me."),
                node(
                    "d1.c0.e0",
                    "edit",
                    "I'm ready to assist.",
                    error="not an answer: x",
                    failure="not_an_answer",
                ),
            ],
        ),
        # 2: one draft passes but the failing edit of the other is selected; its edit loses.
        "2": tree(
            "d0.c0.e0",
            [
                node("d0", "draft", ok),
                node("d0.c0", "critique", "The response is slightly helpful."),
                node("d0.c0.e0", "edit", bad),
                node("d1", "draft", ok),
            ],
        ),
        # 3: nothing passes (an edit that ties its failing draft).
        "3": tree(
            "d0",
            [
                node("d0", "draft", bad),
                node("d0.c0", "critique", "Add more."),
                node("d0.c0.e0", "edit", bad),
            ],
        ),
    }
    lines = []
    for pid, t in trees.items():
        answer = next(n["text"] for n in t["nodes"] if n["id"] == t["selected"])
        usage = {"prompt_tokens": 1, "completion_tokens": 1}
        lines.append(
            json.dumps({"id": pid, "status": "ok", "answer": answer, "usage": usage, "trace": t})
        )
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    result = verify_files(tmp_path / "q.jsonl", tmp_path / "a.jsonl")
    head = result["headroom"]
    assert head["prompts"] == 3
    assert head["any_pass"] == round(2 / 3, 4)
    assert head["selected_pass"] == round(1 / 3, 4)
    assert head["pick_accuracy"] == 0.5
    # Prompt 1: 1 passing of 3 candidates; prompt 2: 2 of 3.
    assert head["random_pick"] == round((1 / 3 + 2 / 3) / 2, 4)
    assert head["edits"] == {
        "count": 4,
        "beats": 1,
        "ties": 1,
        "loses": 1,
        "not_an_answer": 1,
        "not_an_answer_rate": 0.25,
    }
    assert head["critiques"] == {"count": 4, "with_verdict": 2, "verdict_rate": 0.5}
    assert result["prompt_loose"] == round(1 / 3, 4)


def test_no_headroom_without_trees(tmp_path: Path) -> None:
    (tmp_path / "q.jsonl").write_text(json.dumps(NO_COMMA) + "\n")
    line = {"id": "1", "status": "ok", "answer": "Hi.", "usage": {}}
    (tmp_path / "a.jsonl").write_text(json.dumps(line) + "\n")
    assert verify_files(tmp_path / "q.jsonl", tmp_path / "a.jsonl")["headroom"] is None
