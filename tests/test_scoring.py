"""Arena-Hard scoring (Bradley-Terry, bootstrap, style control) and the sweep plot."""

from __future__ import annotations

import csv
import io
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langgraph_feedit import InputError
from langgraph_feedit.cli import main
from langgraph_feedit.evaluate import (
    battles_from_judgments,
    elo_to_win_rate,
    fit_elo,
    metadata_from_answers,
    plot_sweep,
    read_answer_dir,
    read_judgments,
    score_judgments,
    style_features,
)
from langgraph_feedit.evaluate.baselines import BaselineChoice
from langgraph_feedit.evaluate.scoring import score_by_baseline

DATA = Path(__file__).parent / "data" / "arena" / "arena-hard-v0.1"
V2 = Path(__file__).parent / "data" / "arena" / "arena-hard-v2.0"
JUDGMENTS = DATA / "model_judgment" / "gpt-4-1106-preview" / "feedit-demo.jsonl"

# The model's result -> the label in game 1 (baseline is A) and game 2 (model is A).
_GAME1 = {"win": "B>A", "WIN": "B>>A", "tie": "A=B", "loss": "A>B", "LOSS": "A>>B"}
_GAME2 = {"win": "A>B", "WIN": "A>>B", "tie": "A=B", "loss": "B>A", "LOSS": "B>>A"}


def row(
    uid: str,
    first: str,
    second: str,
    *,
    model: str = "m",
    baseline: str = "base",
    category: str = "c",
) -> dict[str, Any]:
    """A judgment row from the model's results in the two games."""
    return {
        "uid": uid,
        "category": category,
        "judge": "judge",
        "model": model,
        "baseline": baseline,
        "games": [{"score": _GAME1[first]}, {"score": _GAME2[second]}],
    }


def rows(results: list[str], *, model: str = "m", category: str = "c") -> list[dict[str, Any]]:
    """Rows whose two games both have the given result, one row per result."""
    return [row(f"{model}{i}", r, r, model=model, category=category) for i, r in enumerate(results)]


# --- battles ---------------------------------------------------------------------------------


def test_battles_orient_both_games_and_weight_strong_verdicts() -> None:
    found = battles_from_judgments([row("u", "WIN", "loss")])
    outcomes = [(b.game, b.outcome) for b in found.battles]
    assert outcomes == [(1, 1.0), (1, 1.0), (1, 1.0), (2, 0.0)]
    found = battles_from_judgments([row("u", "tie", "LOSS")], strong_weight=5)
    assert [b.outcome for b in found.battles] == [0.5, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_null_games_drop_the_row_or_only_the_game() -> None:
    judgments = read_judgments(JUDGMENTS)
    by_row = battles_from_judgments(judgments)
    assert (by_row.rows["feedit-demo"], by_row.dropped["feedit-demo"]) == (4, 2)
    assert len(by_row.battles) == 12
    by_game = battles_from_judgments(judgments, null_policy="game")
    assert (by_game.rows["feedit-demo"], by_game.dropped["feedit-demo"]) == (6, 0)
    assert len(by_game.battles) == 14


def test_rows_without_a_baseline_need_one() -> None:
    old = {"uid": "u", "judge": "j", "model": "m", "games": [{"score": "A>B"}, {"score": "B>A"}]}
    with pytest.raises(InputError, match="names no baseline"):
        battles_from_judgments([old])
    (battle, *_), *_ = battles_from_judgments([old], baseline="gpt-4-0314")
    assert battle.baseline == "gpt-4-0314" and battle.outcome == 0.0


# --- Bradley-Terry ---------------------------------------------------------------------------


def test_elo_scale() -> None:
    assert elo_to_win_rate(1000.0) == 50.0
    assert elo_to_win_rate(1000.0 + 400.0 * math.log10(3.0)) == pytest.approx(75.0)
    elo = fit_elo(battles_from_judgments(rows(["win"] * 3 + ["loss"])).battles, baseline="base")
    assert elo["base"] == 1000.0
    assert elo["m"] == pytest.approx(1000.0 + 400.0 * math.log10(3.0), abs=1e-3)


def test_a_model_that_always_wins_scores_about_100() -> None:
    report = score_judgments(rows(["win"] * 30), rounds=20)
    s = report.models[0].overall
    assert s.score > 99.9 and s.lower > 99.0 and s.upper <= 100.0
    strong = score_judgments(rows(["LOSS"] * 30), rounds=20).models[0].overall
    assert strong.score < 0.1


def test_a_model_that_always_ties_scores_50() -> None:
    s = score_judgments(rows(["tie"] * 40), rounds=20).models[0].overall
    assert s.score == pytest.approx(50.0, abs=1e-6)
    assert s.lower == pytest.approx(50.0, abs=1e-6) and s.upper == pytest.approx(50.0, abs=1e-6)


def test_a_known_mixture() -> None:
    s = score_judgments(rows(["win"] * 70 + ["loss"] * 30), rounds=50).models[0].overall
    assert s.score == pytest.approx(70.0, abs=1e-3)
    assert s.lower < 70.0 < s.upper
    assert (s.rows, s.battles) == (100, 200)


def test_strong_verdicts_count_three_times() -> None:
    # Per row: game 1 a strong win (3 battles), game 2 a loss (1 battle): 3 wins in 4.
    judgments = [row(str(i), "WIN", "loss") for i in range(20)]
    assert score_judgments(judgments, rounds=5).models[0].overall.score == pytest.approx(75.0)
    one = score_judgments(judgments, rounds=5, strong_weight=1).models[0].overall
    assert one.score == pytest.approx(50.0)


def test_the_fixture_scores() -> None:
    judgments = read_judgments(JUDGMENTS)
    report = score_judgments(judgments, rounds=20)
    assert report.baseline == "gpt-4-0314" and report.judges == ["gpt-4-1106-preview"]
    (model,) = report.models
    assert model.overall.score == pytest.approx(75.0, abs=1e-3)
    assert model.dropped_rows == 2
    game = score_judgments(judgments, rounds=20, null_policy="game").models[0].overall
    assert game.score == pytest.approx(100 * 11 / 14, abs=1e-3)


@settings(max_examples=25, deadline=None)
@given(
    wins=st.integers(1, 30),
    ties=st.integers(0, 30),
    losses=st.integers(1, 30),
)
def test_plain_score_is_the_mean_outcome(wins: int, ties: int, losses: int) -> None:
    """Against one baseline, the Bradley-Terry maximum is the observed win rate."""
    results = ["win"] * wins + ["tie"] * ties + ["loss"] * losses
    score = score_judgments(rows(results), rounds=1).models[0].overall.score
    assert score == pytest.approx(100.0 * (wins + ties / 2) / len(results), abs=1e-3)


@pytest.mark.slow
def test_intervals_shrink_with_more_data() -> None:
    def width(n: int) -> float:
        s = score_judgments(rows(["win"] * (6 * n) + ["loss"] * (4 * n)), rounds=100).models[0]
        return s.overall.upper - s.overall.lower

    small, large = width(5), width(80)
    assert large < small / 2


def test_bootstrap_is_reproducible_with_a_seed() -> None:
    rng = random.Random(7)
    judgments = [row(str(i), rng.choice(list(_GAME1)), rng.choice(list(_GAME2))) for i in range(60)]
    first = score_judgments(judgments, rounds=30, seed=3)
    again = score_judgments(judgments, rounds=30, seed=3)
    other = score_judgments(judgments, rounds=30, seed=4)
    assert first == again
    a, b = first.models[0].overall, other.models[0].overall
    assert a.score == b.score and (a.lower, a.upper) != (b.lower, b.upper)


def test_several_models_and_categories() -> None:
    judgments = (
        rows(["win"] * 8 + ["loss"] * 2, model="good", category="x")
        + rows(["win"] * 2 + ["loss"] * 8, model="bad", category="x")
        + rows(["win"] * 5 + ["loss"] * 5, model="good", category="y")
    )
    report = score_judgments(judgments, rounds=20)
    assert [m.model for m in report.models] == ["good", "bad"]
    good, bad = report.models
    assert good.overall.score == pytest.approx(65.0, abs=1e-3)
    assert good.categories["x"].score == pytest.approx(80.0, abs=1e-3)
    assert good.categories["y"].score == pytest.approx(50.0, abs=1e-3)
    assert list(bad.categories) == ["x"]
    only_y = score_judgments(judgments, rounds=5, categories=["y"])
    assert [m.model for m in only_y.models] == ["good"]


def test_one_baseline_at_a_time() -> None:
    mixed = [
        row("1", "win", "win", baseline="b1", category="hard_prompt"),
        row("2", "win", "win", baseline="b2", category="creative_writing"),
    ]
    with pytest.raises(InputError, match="several baselines"):
        score_judgments(mixed, rounds=2)
    assert score_judgments(mixed, rounds=2, categories=["hard_prompt"]).baseline == "b1"
    with pytest.raises(InputError, match="not 'b2'"):
        score_judgments(mixed, rounds=2, categories=["hard_prompt"], baseline="b2")
    with pytest.raises(InputError, match="no judgment row"):
        score_judgments([], rounds=2)


# --- arena-hard-auto v2.0's intervals and per-category baselines ------------------------------

# show_result.py's label_to_score (weight 3): the model's outcomes per game label, game 1
# with the baseline as A (taken as 1 - s), game 2 with the model as A.
_LABEL_TO_SCORE = {
    "A>B": [1],
    "A>>B": [1] * 3,
    "A=B": [0.5],
    "B>A": [0],
    "B>>A": [0] * 3,
}


def _arena_outcomes(judgments: list[dict[str, Any]]) -> np.ndarray:
    """The battles' outcomes as arena-hard-auto's load_judgments explodes them, in this
    package's battle order (game 1's, then game 2's) so that the same draws can be replayed."""
    out: list[float] = []
    for r in judgments:
        first, second = (g["score"] for g in r["games"])
        out += [1 - s for s in _LABEL_TO_SCORE[first]] + _LABEL_TO_SCORE[second]
    return np.array(out, dtype=float)


def _arena_interval(outcomes: np.ndarray, rounds: int, seed: int) -> tuple[float, float]:
    """arena-hard-auto v2.0's print_leaderboard on one model: the mean outcome of each
    bootstrap round, then pandas' quantile(0.05) and quantile(0.95), on the draws this
    package makes (its seeded generator, indices drawn with replacement)."""
    rng = np.random.default_rng(seed)
    n = len(outcomes)
    means = np.array([outcomes[rng.integers(0, n, n)].mean() for _ in range(rounds)])
    low, high = np.quantile(means, [0.05, 0.95])  # pandas' default: linear interpolation
    return 100 * float(low), 100 * float(high)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 42])
def test_the_default_interval_is_arena_hard_v2s_5th_to_95th_percentile(seed: int) -> None:
    rng = random.Random(seed)
    judgments = [row(str(i), rng.choice(list(_GAME1)), rng.choice(list(_GAME2))) for i in range(80)]
    report = score_judgments(judgments, rounds=100, seed=seed)
    assert report.confidence == 0.90
    s = report.models[0].overall
    low, high = _arena_interval(_arena_outcomes(judgments), 100, seed)
    # Against one baseline each round's Bradley-Terry win rate is its mean outcome.
    assert s.lower == pytest.approx(low, abs=1e-3)
    assert s.upper == pytest.approx(high, abs=1e-3)
    assert 100 * _arena_outcomes(judgments).mean() == pytest.approx(s.score, abs=1e-3)
    wider = score_judgments(judgments, rounds=100, seed=seed, confidence=0.95).models[0].overall
    assert wider.lower < s.lower and wider.upper > s.upper


@pytest.mark.slow
def test_per_category_baselines_are_scored_apart_as_arena_hard_v2_does() -> None:
    judgments = [
        row(str(i), r, r, baseline="o3-mini-2025-01-31", category="hard_prompt")
        for i, r in enumerate(["win"] * 6 + ["loss"] * 2)
    ] + [
        row(f"c{i}", r, r, baseline="gemini-2.0-flash-001", category="creative_writing")
        for i, r in enumerate(["win"] * 1 + ["tie"] * 2 + ["loss"] * 2)
    ]
    reports = score_by_baseline(judgments, rounds=20)
    assert [r.baseline for r in reports] == ["o3-mini-2025-01-31", "gemini-2.0-flash-001"]
    hard, creative = (r.models[0] for r in reports)
    # arena-hard-auto: one category at a time, each against its own baseline (the mean
    # outcome of that category's battles).
    for model, rows_ in ((hard, judgments[:8]), (creative, judgments[8:])):
        assert model.overall.score == pytest.approx(100 * _arena_outcomes(rows_).mean(), abs=1e-3)
    assert list(hard.categories) == ["hard_prompt"]
    assert list(creative.categories) == ["creative_writing"]
    assert all(not r.warnings for r in reports)
    only = score_by_baseline(judgments, rounds=5, categories=["creative_writing"])
    assert [r.baseline for r in only] == ["gemini-2.0-flash-001"]
    with pytest.raises(InputError, match=r"hold: creative_writing, hard_prompt"):
        score_by_baseline(judgments, rounds=5, categories=["coding"])


def test_rows_naming_no_baseline_take_their_categorys() -> None:
    def old(uid: str, category: str, label: str) -> dict[str, Any]:
        return {
            "uid": uid,
            "category": category,
            "judge": "j",
            "model": "m",
            "games": [{"score": label}, {"score": "A=B"}],
        }

    judgments = [old("1", "x", "B>A"), old("2", "y", "A>B")]
    choice = BaselineChoice(default="bx", categories={"y": "by"})
    reports = score_by_baseline(judgments, baseline=choice, rounds=5)
    assert sorted(r.baseline for r in reports) == ["bx", "by"]
    with pytest.raises(InputError, match=r"--baseline CATEGORY=MODEL"):
        score_by_baseline(judgments, baseline=BaselineChoice(categories={"y": "by"}), rounds=5)
    # A row naming its baseline must agree with the one given for its category.
    named = [row("1", "win", "win", baseline="o3", category="hard_prompt")]
    with pytest.raises(InputError, match=r"'hard_prompt' are against 'o3', not 'gpt'"):
        score_by_baseline(named, baseline=BaselineChoice(categories={"hard_prompt": "gpt"}))


def test_a_category_scored_against_another_baseline_warns() -> None:
    judgments = [
        row(str(i), "win", "tie", baseline="o3-mini-2025-01-31", category="creative_writing")
        for i in range(4)
    ]
    (report,) = score_by_baseline(judgments, rounds=5)
    (warning,) = report.warnings
    assert "'creative_writing'" in warning and "gemini-2.0-flash-001" in warning


def test_score_command_on_a_v2_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json, out_csv = tmp_path / "s.json", tmp_path / "s.csv"
    code = main(
        ["score", str(V2), "--bootstrap", "20", "--json", str(out_json), "--csv", str(out_csv)]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "win rate against o3-mini-2025-01-31" in captured.out
    assert "win rate against gemini-2.0-flash-001" in captured.out
    assert "90% interval" in captured.out and "warning" not in captured.err
    # the expected scores of tests/data/arena/README.md
    data = json.loads(out_json.read_text())
    scores = {r["baseline"]: r["models"][0]["overall"]["score"] for r in data}
    assert scores == pytest.approx(
        {"o3-mini-2025-01-31": 68.75, "gemini-2.0-flash-001": 37.5}, abs=1e-3
    )
    table = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert {(r["category"], r["baseline"]) for r in table} == {
        ("all", "o3-mini-2025-01-31"),
        ("hard_prompt", "o3-mini-2025-01-31"),
        ("all", "gemini-2.0-flash-001"),
        ("creative_writing", "gemini-2.0-flash-001"),
    }

    code = main(
        [
            "score",
            str(V2 / "model_judgment"),
            "--category",
            "creative_writing",
            "--bootstrap",
            "20",
            "--confidence",
            "95",
            "--answers-dir",
            str(V2 / "model_answer"),
            "--json",
            str(out_json),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "o3-mini" not in captured.out and "95% interval" in captured.out
    assert "style ctrl" in captured.out
    single = json.loads(out_json.read_text())
    assert single["baseline"] == "gemini-2.0-flash-001" and single["confidence"] == 0.95

    assert main(["score", str(V2), "--category", "coding,math"]) == 2
    assert "hold: creative_writing, hard_prompt" in capsys.readouterr().err
    assert main(["score", str(V2), "--confidence", "100"]) == 2
    assert "--confidence" in capsys.readouterr().err


# --- style control ---------------------------------------------------------------------------


def meta(tokens: int, headers: int = 0, lists: int = 0, bold: int = 0) -> dict[str, Any]:
    return {
        "token_len": tokens,
        "header_count": {"h1": headers, "h2": 0, "h3": 0, "h4": 0, "h5": 0, "h6": 0},
        "list_count": {"ordered": lists, "unordered": 0},
        "bold_count": {"**": bold, "__": 0},
    }


def test_style_features_by_hand() -> None:
    # length: (300 - 100) / (300 + 100) = 0.5
    # headers: d_m = 3 / 301, d_b = 1 / 101, (d_m - d_b) / (d_m + d_b + 1)
    # lists: d_m = 0, d_b = 2 / 101; bold: both 0
    length, headers, lists, bold = style_features(meta(300, 3), meta(100, 1, 2))
    d_m, d_b = 3 / 301, 1 / 101
    assert length == pytest.approx(0.5)
    assert headers == pytest.approx((d_m - d_b) / (d_m + d_b + 1))
    assert lists == pytest.approx(-(2 / 101) / (2 / 101 + 1))
    assert bold == 0.0
    assert style_features(meta(0), meta(0)) == (0.0, 0.0, 0.0, 0.0)


def _length_driven(seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Two models whose wins depend only on answer length; "long" writes longer answers."""
    rng = random.Random(seed)
    judgments: list[dict[str, Any]] = []
    metadata: dict[str, dict[str, Any]] = {"base": {}, "long": {}, "short": {}}
    for i in range(150):
        uid = str(i)
        metadata["base"][uid] = meta(200)
        for model, scale in (("long", 1.8), ("short", 0.9)):
            tokens = int(200 * scale * rng.uniform(0.5, 1.5))
            metadata[model][uid] = meta(tokens)
            x = (tokens - 200) / (tokens + 200)
            results = [
                "win" if rng.random() < 1 / (1 + math.exp(-6 * x)) else "loss" for _ in range(2)
            ]
            judgments.append(row(uid, results[0], results[1], model=model))
    return judgments, metadata


def test_style_control_takes_out_a_length_advantage() -> None:
    judgments, metadata = _length_driven()
    report = score_judgments(judgments, metadata=metadata, rounds=20)
    by_model = {m.model: m.overall for m in report.models}
    raw_gap = by_model["long"].score - by_model["short"].score
    assert by_model["long"].style_score is not None and by_model["short"].style_score is not None
    styled_gap = by_model["long"].style_score - by_model["short"].style_score
    assert raw_gap > 20
    assert abs(styled_gap) < raw_gap / 3
    assert report.style_coefficients is not None and report.style_coefficients["length"] > 0
    # Markdown counts are all zero here: constant features are left out of the fit.
    assert list(report.style_coefficients) == ["length"]
    # Without centering the reference is the baseline's own style: both near 50.
    uncentered = score_judgments(judgments, metadata=metadata, rounds=5, style_center=False)
    for m in uncentered.models:
        assert m.overall.style_score is not None
        assert abs(m.overall.style_score - 50) < 12


def test_style_control_needs_metadata_for_every_answer() -> None:
    judgments, metadata = _length_driven()
    del metadata["base"]["3"]
    with pytest.raises(InputError, match=r"base: 1 prompt\(s\), e\.g\. '3'"):
        score_judgments(judgments, metadata=metadata, rounds=2)
    with pytest.raises(InputError, match="needs answer metadata"):
        score_judgments(judgments, style=True, rounds=2)
    plain = score_judgments(judgments, metadata=metadata, style=False, rounds=2)
    assert plain.models[0].overall.style_score is None


def test_the_fixture_with_style_control() -> None:
    metadata = metadata_from_answers(read_answer_dir(DATA / "model_answer"))
    report = score_judgments(read_judgments(JUDGMENTS), metadata=metadata, rounds=20)
    (model,) = report.models
    s = model.overall
    assert s.style_score is not None and s.style_lower is not None and s.style_upper is not None
    assert 0.0 <= s.style_lower <= s.style_upper <= 100.0
    tokens = [m.token_len for m in metadata["feedit-demo"].values()]
    assert model.mean_tokens == pytest.approx(np.mean(tokens))


# --- the report ------------------------------------------------------------------------------


def test_report_outputs() -> None:
    judgments = rows(["win"] * 7 + ["loss"] * 3, model="a", category="x") + rows(
        ["tie"] * 4, model="b", category="y"
    )
    report = score_judgments(judgments, rounds=10)
    data = json.loads(report.to_json())
    assert data["baseline"] == "base" and data["rounds"] == 10
    assert data["models"][0]["model"] == "a"
    assert data["models"][0]["overall"]["score"] == pytest.approx(70.0, abs=1e-3)
    table = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert [(r["model"], r["category"]) for r in table] == [
        ("a", "all"),
        ("a", "x"),
        ("b", "all"),
        ("b", "y"),
    ]
    assert float(table[2]["score"]) == pytest.approx(50.0)
    assert table[0]["style_score"] == "" and table[0]["battles"] == "20"
    text = report.table()
    assert "win rate against base" in text and "90% interval from 10 bootstrap rounds" in text
    lines = text.splitlines()
    assert any(line.startswith("a ") and "70.0" in line for line in lines)
    assert any(line.startswith("base") and "50.0" in line for line in lines)
    assert "## category x" in text and "## category y" in text


# --- the sweep plot --------------------------------------------------------------------------


def test_plot_sweep_writes_a_png(tmp_path: Path) -> None:
    from matplotlib import image

    points = [
        {"preset": "best-of-n", "label": f"n={n}", "mean_tokens": 600.0 * n, "score": s}
        | {"lower": s - 3, "upper": s + 2.5}
        for n, s in ((1, 55.0), (4, 63.0), (16, 68.0))
    ] + [
        {"preset": "feedit", "label": f"{d}x{f}", "mean_tokens": t, "score": s}
        | {"lower": s - 2, "upper": s + 2}
        for d, f, t, s in ((2, 2, 3000.0, 66.0), (4, 4, 12000.0, 74.0), (8, 16, 90000.0, 81.0))
    ]
    path = plot_sweep(points, tmp_path / "plots" / "sweep.png", baseline="gpt-4-0314")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(path)
    assert pixels.shape[:2] == (600, 960)
    assert 20_000 < path.stat().st_size < 1_000_000


def test_plot_sweep_rejects_bad_points(tmp_path: Path) -> None:
    good = {"preset": "p", "mean_tokens": 10.0, "score": 50.0, "lower": 45.0, "upper": 55.0}
    with pytest.raises(ValueError, match="no sweep points"):
        plot_sweep([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="log axis"):
        plot_sweep([good | {"mean_tokens": 0}], tmp_path / "x.png")
    with pytest.raises(ValueError, match="no 'upper'"):
        plot_sweep([{k: v for k, v in good.items() if k != "upper"}], tmp_path / "x.png")
    with pytest.raises(ValueError, match="'preset'"):
        plot_sweep([good | {"preset": ""}], tmp_path / "x.png")
    with pytest.raises(ValueError, match="finite number"):
        plot_sweep([good | {"score": float("nan")}], tmp_path / "x.png")
