"""Exports: Arena-Hard answers (on the embedded model), the node table, one trace by id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langgraph_feedit import UserError
from langgraph_feedit.batch import BatchOptions, run_batch
from langgraph_feedit.cli import main
from langgraph_feedit.config import FeeditConfig
from langgraph_feedit.evaluate.markdown import markdown_counts
from langgraph_feedit.evaluate.records import ArenaAnswer
from langgraph_feedit.exports import export_arena_answers, export_nodes, find_trace
from langgraph_feedit.testing import SimServer

from .helpers import sim_config

ROOT = Path(__file__).resolve().parent.parent
V01 = ROOT / "tests" / "data" / "arena" / "arena-hard-v0.1" / "question.jsonl"


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=81) as server:
        yield server


async def sim_batch(sim: SimServer, tmp_path: Path) -> Path:
    inp = tmp_path / "q.jsonl"
    inp.write_text(
        "\n".join(json.dumps({"uid": f"u{i}", "prompt": f"P{i}"}) for i in range(3)) + "\n"
    )
    options = BatchOptions(
        input=inp, output=tmp_path / "a.jsonl", store=tmp_path / "s", progress=False
    )
    config = sim_config(
        sim.base_url,
        width={"drafts": 2, "critiques": 1, "edits": 1},
        roles={"draft": {"seed": 0}},  # distinct drafts: twins would share their subtrees
    )
    await run_batch(config, options)
    return options.output


@pytest.mark.embedded
async def test_arena_hard_export_on_the_embedded_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="needs the 'embedded' extra")
    questions = [json.loads(line) for line in V01.read_text().splitlines()[:3]]
    inp = tmp_path / "q.jsonl"
    inp.write_text("".join(json.dumps(q) + "\n" for q in questions))
    config = FeeditConfig.load(
        env={},
        overrides={
            "preset": "best-of-n",
            "width": {"drafts": 2},
            "roles": {"default": {"max_tokens": 64}},
        },
    )
    options = BatchOptions(
        input=inp, output=tmp_path / "out.jsonl", store=tmp_path / "s", progress=False
    )
    summary = await run_batch(config, options)
    assert summary.answered == 3
    target = tmp_path / "model_answer" / "feedit-smollm2.jsonl"
    written, missing = export_arena_answers(options.output, target)
    assert (written, missing) == (3, [])
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    records = [json.loads(line) for line in options.output.read_text().splitlines()]
    for q, row, rec in zip(questions, rows, records, strict=True):
        assert list(row) == ["uid", "ans_id", "model", "messages", "tstamp", "metadata"]
        assert row["uid"] == q["uid"] and row["model"] == "feedit-smollm2"
        assert isinstance(row["ans_id"], str) and row["ans_id"]
        assert isinstance(row["tstamp"], float)
        assert row["messages"][0] == {"role": "user", "content": q["prompt"]}
        assistant = row["messages"][-1]
        assert assistant["role"] == "assistant" and list(assistant["content"]) == ["answer"]
        assert assistant["content"]["answer"] == rec["answer"]
        meta = row["metadata"]
        assert list(meta) == ["token_len", "header_count", "list_count", "bold_count"]
        assert list(meta["header_count"]) == ["h1", "h2", "h3", "h4", "h5", "h6"]
        assert list(meta["list_count"]) == ["ordered", "unordered"]
        assert list(meta["bold_count"]) == ["**", "__"]
        selected = next(n for n in rec["trace"]["nodes"] if n["id"] == rec["selected"])
        assert meta["token_len"] == selected["usage"]["completion_tokens"] > 0
        counts = markdown_counts(rec["answer"])
        assert meta["header_count"] == counts["header_count"]
        ArenaAnswer.model_validate(row)


async def test_node_table_and_trace_by_id(sim: SimServer, tmp_path: Path) -> None:
    answers = await sim_batch(sim, tmp_path)
    count = export_nodes(answers, tmp_path / "nodes.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "nodes.jsonl").read_text().splitlines()]
    assert count == len(rows) == 3 * 6
    assert {r["prompt_id"] for r in rows} == {"u0", "u1", "u2"}
    assert sum(r["selected"] for r in rows) == 3
    assert all("usage_completion_tokens" in r for r in rows)
    trace = find_trace(answers, "u1")
    assert trace["selected"] and len(trace["nodes"]) == 6
    with pytest.raises(UserError, match="no prompt with id 'zz'"):
        find_trace(answers, "zz")


async def test_export_command(sim: SimServer, tmp_path: Path, capsys: Any) -> None:
    answers = await sim_batch(sim, tmp_path)
    assert main(["export", str(answers), "--trace", "u2"]) == 0
    assert json.loads(capsys.readouterr().out)["selected"]
    assert main(["export", str(answers), "--arena-hard", str(tmp_path / "m.jsonl")]) == 0
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "status": "ok"}\nnot json\n')
    assert main(["export", str(bad), "--nodes", str(tmp_path / "n.jsonl")]) == 2
    assert "bad.jsonl:1: the record has no trace" in capsys.readouterr().err
