"""Judging and sweeps end to end: on the simulated server, and on the embedded model."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import pytest

from langgraph_feedit.config import FeeditConfig
from langgraph_feedit.errors import UserError
from langgraph_feedit.evaluate.arena import read_judgments
from langgraph_feedit.evaluate.judge import judge_answers
from langgraph_feedit.evaluate.sweep import parse_grid, run_sweep
from langgraph_feedit.testing import Fault, SimServer

from .helpers import sim_config

pytest.importorskip("matplotlib", reason="needs the 'eval' extra")

# six v0.1 questions and short baseline answers written for the tests (see tests/data/arena)
V01 = Path(__file__).resolve().parent / "data" / "arena" / "arena-hard-v0.1"
BASELINE = V01 / "model_answer" / "gpt-4-0314.jsonl"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def questions(tmp_path: Path, n: int) -> Path:
    lines = (V01 / "question.jsonl").read_text().splitlines()[:n]
    path = tmp_path / "question.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_grid_parsing() -> None:
    points = parse_grid("preset=feedback-edit,best-of-n,single; drafts=1,2; critiques=1,2")
    names = [p.name for p in points]
    assert names == [
        "feedback-edit_d1_c1",
        "feedback-edit_d1_c2",
        "feedback-edit_d2_c1",
        "feedback-edit_d2_c2",
        "best-of-n_d1",
        "best-of-n_d2",
        "single",
    ]
    assert points[2].overrides() == {
        "preset": "feedback-edit",
        "width": {"drafts": 2, "critiques": 1},
    }
    for bad in ("drafts=x", "widht=2", "preset=wide", "drafts="):
        with pytest.raises(UserError):
            parse_grid(bad)


async def test_sweep_costs_its_largest_point_and_reruns_for_free(tmp_path: Path) -> None:
    qs = questions(tmp_path, 5)
    with SimServer(seed=101) as sim:
        config = sim_config(sim.base_url, roles={"draft": {"seed": 1}})
        grid = "preset=feedback-edit; drafts=1,2,4; critiques=1,2"
        result = await run_sweep(
            config,
            questions=qs,
            baseline=BASELINE,
            grid=grid,
            output=tmp_path / "sweep",
            rounds=20,
        )
        graph_calls = [r for r in sim.requests if "<|User Prompt|>" not in json.dumps(r.body)]
        # the largest point (4 drafts x 2 critiques) alone: 4 x (draft, judge, 2 x (c, e, judge))
        assert len(graph_calls) == 5 * 4 * (2 + 2 * 3)
        judge_calls = sim.call_count - len(graph_calls)
        assert judge_calls == 6 * 5 * 2  # six points, two games per question
        assert result["calls_made"] == sim.call_count
        before = sim.call_count
        again = await run_sweep(
            config,
            questions=qs,
            baseline=BASELINE,
            grid=grid,
            output=tmp_path / "sweep",
            rounds=20,
        )
        assert sim.call_count == before and again["calls_made"] == 0
    rows = list(csv.DictReader((tmp_path / "sweep" / "sweep.csv").open()))
    assert [r["point"] for r in rows] == [p.name for p in parse_grid(grid)]
    tokens = {r["point"]: float(r["mean_tokens"]) for r in rows}
    assert tokens["feedback-edit_d4_c2"] > tokens["feedback-edit_d1_c1"]
    assert all(r["score"] for r in rows)


async def test_judge_resumes_and_records_null_verdicts(tmp_path: Path) -> None:
    from langgraph_feedit.evaluate.arena import answer_record, dump_record

    qs = questions(tmp_path, 4)
    answers = tmp_path / "mine.jsonl"
    with answers.open("w") as f:
        for line in qs.read_text().splitlines():
            q = json.loads(line)
            f.write(
                dump_record(
                    answer_record(q["uid"], "mine", "A short answer.", 3, prompt=q["prompt"])
                )
            )
    with SimServer(seed=102) as sim:
        config = sim_config(sim.base_url)
        first_uid = json.loads(qs.read_text().splitlines()[0])["prompt"][:40]
        sim.set_faults([Fault("500", rate=1.0, match=json.dumps(first_uid)[1:-1])])
        summary = await judge_answers(
            config.merged({"roles": {"default": {"max_retries": 0}}}),
            questions=qs,
            answers=answers,
            baseline=BASELINE,
            output=tmp_path / "j",
        )
        assert summary.judged == 3 and len(summary.failed) == 1
        sim.set_faults([])
        calls = sim.call_count
        summary = await judge_answers(
            config,
            questions=qs,
            answers=answers,
            baseline=BASELINE,
            output=tmp_path / "j",
        )
        assert summary.kept == 3 and summary.judged == 1
        assert sim.call_count - calls == 2
    rows = read_judgments(summary.path)
    assert [r.uid for r in rows] == [json.loads(x)["uid"] for x in qs.read_text().splitlines()]
    for r in rows:
        assert r.model == "mine" and r.baseline == "gpt-4-0314" and r.judge == "sim-model"
        first, second = r.games
        assert first is not None and second is not None
        # the simulated judge prefers the longer answer: the baseline, in both positions
        assert first.score in ("A>B", "A>>B") and second.score in ("B>A", "B>>A")
        assert "<|The Start of Assistant A's Answer|>" in first.prompt[1]["content"]


@pytest.mark.embedded
async def test_sweep_end_to_end_on_the_embedded_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="needs the 'embedded' extra")
    qs = questions(tmp_path, 3)
    config = FeeditConfig.load(
        env={},
        overrides={"roles": {"default": {"max_tokens": 48}, "evaluator": {"max_tokens": 48}}},
    )
    kw = {
        "questions": qs,
        "baseline": BASELINE,
        "grid": "preset=single,best-of-n; drafts=2",
        "output": tmp_path / "sweep",
        "rounds": 20,
    }
    result = await run_sweep(config, **kw)  # type: ignore[arg-type]
    assert result["calls_made"] > 0
    out = tmp_path / "sweep"
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [r["point"] for r in rows] == ["single", "best-of-n_d2"]
    assert float(rows[1]["mean_tokens"]) > float(rows[0]["mean_tokens"]) > 0
    width, height = png_size(out / "sweep.png")
    assert 600 <= width <= 2000 and 400 <= height <= 1500
    report = (out / "report.md").read_text()
    assert "| single |" in report and "sweep.png" in report
    judged = list((out / "model_judgment").rglob("*.jsonl"))
    assert len(judged) == 2
    again = await run_sweep(config, **kw)  # type: ignore[arg-type]
    assert again["calls_made"] == 0
