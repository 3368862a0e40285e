"""Judging and sweeps end to end: on the simulated server, and on the embedded model."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import pytest

from langgraph_feedit.config import FeeditConfig
from langgraph_feedit.errors import UserError
from langgraph_feedit.evaluate.judge import judge_answers
from langgraph_feedit.evaluate.records import read_judgments
from langgraph_feedit.evaluate.sweep import parse_grid, run_sweep
from langgraph_feedit.testing import Fault, SimServer

from .helpers import is_probe, sim_config

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


@pytest.mark.slow
async def test_sweep_costs_its_largest_point_and_reruns_for_free(tmp_path: Path) -> None:
    qs = questions(tmp_path, 5)
    with SimServer(seed=101) as sim:
        # Seeded critiques differ, so their edits are not identical calls made once.
        config = sim_config(sim.base_url, roles={"draft": {"seed": 1}, "critique": {"seed": 1}})
        grid = "preset=feedback-edit; drafts=1,2,4; critiques=1,2"
        result = await run_sweep(
            config,
            questions=qs,
            baseline=BASELINE,
            grid=grid,
            output=tmp_path / "sweep",
            rounds=20,
        )
        probes = [r for r in sim.requests if is_probe(r.body)]
        graph_calls = [
            r
            for r in sim.requests
            if "<|User Prompt|>" not in json.dumps(r.body) and not is_probe(r.body)
        ]
        # the largest point (4 drafts x 2 critiques) alone: 4 x (draft, judge, 2 x (c, e, judge))
        assert len(graph_calls) == 5 * 4 * (2 + 2 * 3)
        assert len(probes) == 1  # the judge endpoint's logprobs probe, once for the whole sweep
        judge_calls = sim.call_count - len(graph_calls) - len(probes)
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
    # Each report row links its point's trace pages, written next to the report.
    report = (tmp_path / "sweep" / "report.md").read_text(encoding="utf-8")
    for point in parse_grid(grid):
        link = f"pages/{point.name}/index.html"
        assert f"| {point.name} |" in report and f"[pages]({link})" in report
        index = (tmp_path / "sweep" / link).read_text(encoding="utf-8")
        pages = sorted((tmp_path / "sweep" / "pages" / point.name / "p").glob("*.html"))
        assert len(pages) == 5 and all(f'href="p/{p.name}"' in index for p in pages)
    assert {r["point"]: r["pages"] for r in again["rows"]} == {
        p.name: f"pages/{p.name}/index.html" for p in parse_grid(grid)
    }


async def test_judge_resumes_and_records_null_verdicts(tmp_path: Path) -> None:
    from langgraph_feedit.evaluate.records import answer_record, dump_record

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


# --- per-category baselines (arena-hard-auto v2.0) --------------------------------------------

V2 = Path(__file__).resolve().parent / "data" / "arena" / "arena-hard-v2.0"
V2_MINE = V2 / "model_answer" / "feedit-demo.jsonl"


async def test_judge_takes_each_categorys_baseline_from_the_v2_layout(tmp_path: Path) -> None:
    with SimServer(seed=103) as sim:
        summary = await judge_answers(
            sim_config(sim.base_url),
            questions=V2 / "question.jsonl",
            answers=V2_MINE,
            output=tmp_path / "j",
            judge_name="gpt-4.1",
        )
    assert (summary.judged, summary.missing, summary.warnings) == (6, [], [])
    assert summary.baselines == {
        "hard_prompt": "o3-mini-2025-01-31",
        "creative_writing": "gemini-2.0-flash-001",
    }
    # The fixture's judgments were written with arena-hard-auto's own JUDGE_SETTINGS and
    # template: every game must have been shown the same baseline answer, in the same prompt.
    reference = {r.uid: r for r in read_judgments(V2 / "model_judgment" / "gpt-4.1" / V2_MINE.name)}
    rows = read_judgments(summary.path)
    assert [r.uid for r in rows] == list(reference)
    for r in rows:
        want = reference[r.uid]
        assert (r.category, r.baseline) == (want.category, want.baseline)
        for game, wanted in zip(r.games, want.games, strict=True):
            assert game is not None and wanted is not None
            assert game.prompt == wanted.prompt


def _judge_cli(
    sim: SimServer, out: Path, *baselines: str, questions: Path = V2 / "question.jsonl"
) -> list[str]:
    args = ["judge", "--questions", str(questions), "--answers", str(V2_MINE)]
    for b in baselines:
        args += ["--baseline", b]
    return [*args, "--output", str(out), "--base-url", sim.base_url, "--model", "sim-model"]


def test_judge_command_warns_and_takes_baselines_per_category(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from langgraph_feedit.cli import main

    o3 = str(V2 / "model_answer" / "o3-mini-2025-01-31.jsonl")
    gemini = str(V2 / "model_answer" / "gemini-2.0-flash-001.jsonl")
    out = tmp_path / "j"
    with SimServer(seed=104) as sim:
        # One file for every category: creative writing is judged against o3-mini, with a
        # warning before any call, and its questions (not in o3-mini's file) are left out.
        assert main(_judge_cli(sim, out, o3)) == 0
        err = capsys.readouterr().err
        assert "warning: category 'creative_writing' is against 'o3-mini-2025-01-31'" in err
        assert "'gemini-2.0-flash-001'" in err and "3 without both answers" in err
        assert sim.call_count == 3 * 2
        # The default, and one category's own: the rest is judged against gemini.
        assert main(_judge_cli(sim, out, o3, f"creative_writing={gemini}")) == 0
        err = capsys.readouterr().err
        assert "warning" not in err and "3 question(s) judged, 3 kept" in err
        (path,) = out.rglob("*.jsonl")
        by_category = {(r.category, r.baseline) for r in read_judgments(path)}
        assert by_category == {
            ("hard_prompt", "o3-mini-2025-01-31"),
            ("creative_writing", "gemini-2.0-flash-001"),
        }
        # Kept rows against another baseline than this run's are refused, not mixed in.
        calls = sim.call_count
        assert main(_judge_cli(sim, out, o3)) == 2
        assert "use another --output folder" in capsys.readouterr().err
        # A category arena-hard-auto does not know, and no baseline for it: stop before calling.
        odd = tmp_path / "question.jsonl"
        odd.write_text(
            (V2 / "question.jsonl").read_text().replace('"creative_writing"', '"poetry"', 1)
        )
        assert main(_judge_cli(sim, tmp_path / "k", questions=odd)) == 2
        err = capsys.readouterr().err
        assert "no baseline for question category 'poetry' (1 question(s)" in err
        assert "--baseline CATEGORY=FILE" in err and "Traceback" not in err
        assert sim.call_count == calls


async def test_sweep_scores_one_baselines_categories(tmp_path: Path) -> None:
    with SimServer(seed=105) as sim:
        config = sim_config(sim.base_url)
        kw = {"questions": V2 / "question.jsonl", "baseline": None, "grid": "preset=single"}
        with pytest.raises(UserError, match=r"different baselines .*--category"):
            await run_sweep(config, output=tmp_path / "all", **kw)  # type: ignore[arg-type]
        assert sim.call_count == 0
        result = await run_sweep(
            config,
            output=tmp_path / "cw",
            categories=["creative_writing"],
            rounds=20,
            **kw,  # type: ignore[arg-type]
        )
    assert result["report"]["baseline"] == "gemini-2.0-flash-001"
    assert result["report"]["confidence"] == 0.90
    (row,) = result["rows"]
    assert row["prompts"] == 3 and row["score"] is not None
    (path,) = (tmp_path / "cw" / "model_judgment").rglob("*.jsonl")
    rows = read_judgments(path)
    assert {(r.category, r.baseline) for r in rows} == {
        ("creative_writing", "gemini-2.0-flash-001")
    }
    assert "with 90% bootstrap intervals" in (tmp_path / "cw" / "report.md").read_text()
