"""Arena-Hard scores from judgment records: Bradley-Terry win rates with bootstrap intervals.

The method is Arena-Hard-Auto v0.1's (``show_result.py`` and ``utils_math.py`` of
lmarena/arena-hard-auto, the method behind the published v0.1 scores):

1. Each judgment row gives a battle per game: game 1 has the baseline as A, game 2 the model.
   A strong verdict (``A>>B``, ``B>>A``) is three battles, ties are never weighted.
2. A Bradley-Terry model on the Elo scale (base 10, scale 400, start 1000) is fitted by
   logistic regression with no intercept, ties counting half a win to each side, and the
   baseline anchored at 1000.
3. The score is the predicted win rate against the baseline, in percent, from the fit on all
   battles; the interval is the 5th and 95th percentiles of 100 bootstrap fits (battles
   resampled with replacement), the 90% interval arena-hard-auto v2.0 prints
   (``quantile(0.05)``, ``quantile(0.95)``); v0.1's scorer printed the 95% interval (2.5th and
   97.5th percentiles), ``confidence=0.95``.
4. Each question category is judged against its own baseline in v2.0 (``hard_prompt`` against
   o3-mini, ``creative_writing`` against gemini-2.0-flash) and scored one baseline at a time:
   `score_by_baseline` splits the rows by baseline and scores each group.
5. Style control adds, per battle, the length difference and three markdown-density
   differences (headers, lists, bold), z-scored over the battles, as extra regression features
   fitted jointly with the models; the style-controlled score is the models' win rate with
   those effects taken out.

Deliberate differences from Arena-Hard's code:

- The fit is L-BFGS on the log-likelihood (scipy) instead of scikit-learn. The plain fit adds a
  negligible ridge (1e-6, like ``C=1e6``) where Arena-Hard has none, so that a model winning
  every game gets a finite rating (a win rate of ~100) rather than whatever an unconverged
  solver stops at. The style fit keeps Arena-Hard's ridge (scikit-learn's default ``C=1`` over
  its duplicated rows), which slightly shrinks scores on small samples.
- Ties are half-weighted soft labels instead of one duplicated win for each side: the same
  likelihood.
- v2.0's plain leaderboard reports the mean of the bootstrap rounds' win rates (its
  style-controlled one their median); the score here is the fit on all battles, which differs
  from either by a small fraction of the interval.
- The bootstrap draws from a seeded ``numpy.random.Generator`` (seed 42 by default, Arena-Hard
  seeds numpy's global state with 42), so intervals are reproducible but not the same draws.
  A model absent from a resample is left out of that round instead of becoming NaN.
- Rows with a null (or unscorable) game are dropped whole, as the current Arena-Hard does;
  ``null_policy="game"`` keeps the other game, as v0.1's scorer did.
- Style features use this project's definition: length ``(len_m - len_b) / (len_m + len_b)``;
  per markdown kind, density ``count / (token_len + 1)`` combined as
  ``(d_m - d_b) / (d_m + d_b + 1)``. (v0.1's code used raw counts and ``+1`` in every
  denominator; the current code divides counts by ``token_len``.) A feature that is constant
  over the battles is left out instead of dividing by a zero deviation.
- ``style_center=False`` scales the style features without centering them: the controlled
  score then answers "what if this model's answers had the baseline's length and markdown".
  With centering (Arena-Hard's choice) the reference is the pooled average style of all models
  scored together, so scoring a single model moves its score very little.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from langgraph_feedit.errors import InputError
from langgraph_feedit.evaluate import EXTRA_HINT
from langgraph_feedit.evaluate.baselines import BaselineChoice, standard_baseline_warning

try:
    import numpy as np
    import numpy.typing as npt
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(f"{EXTRA_HINT} ({exc})") from exc

# The rating scale's constants stay importable from here alongside the scoring names.
from langgraph_feedit.evaluate.fit import BASE as BASE
from langgraph_feedit.evaluate.fit import INIT_RATING as INIT_RATING
from langgraph_feedit.evaluate.fit import SCALE as SCALE
from langgraph_feedit.evaluate.fit import (
    STYLE_FEATURES,
    Battle,
    Battles,
    FloatArray,
    NullPolicy,
    as_judgment,
    as_metadata,
    battles_from_judgments,
    bootstrap_win_rates,
    elo_to_win_rate,
    fit_elo,
    style_features,
    style_matrix,
)
from langgraph_feedit.evaluate.records import AnswerMetadata, ArenaJudgment
from langgraph_feedit.evaluate.report import ModelScore, Score, ScoreReport

__all__ = [
    "STYLE_FEATURES",
    "Battle",
    "Battles",
    "ModelScore",
    "Score",
    "ScoreReport",
    "battles_from_judgments",
    "elo_to_win_rate",
    "fit_elo",
    "score_by_baseline",
    "score_judgments",
    "style_features",
]

DEFAULT_CONFIDENCE = 0.90
"""arena-hard-auto v2.0's interval: the 5th to the 95th percentile of the bootstrap rounds."""


def score_judgments(
    judgments: Iterable[ArenaJudgment | Mapping[str, Any]],
    *,
    baseline: str | BaselineChoice | None = None,
    metadata: Mapping[str, Mapping[str, AnswerMetadata | Mapping[str, Any]]] | None = None,
    style: bool | None = None,
    categories: Collection[str] | None = None,
    rounds: int = 100,
    seed: int = 42,
    confidence: float = DEFAULT_CONFIDENCE,
    strong_weight: int = 3,
    null_policy: NullPolicy = "row",
    style_center: bool = True,
    style_l2: float = 1.0,
) -> ScoreReport:
    """Arena-Hard scores of every model in ``judgments`` against their baseline.

    Args:
        judgments: judgment rows (read with `read_judgments`, or their dicts).
        baseline: the baseline of rows that name none (v0.1 files), for all or per category
            (`BaselineChoice`); rows that name one must agree with it.
        metadata: model -> uid -> answer metadata (``token_len`` and markdown counts), for the
            models and the baseline; gives the average answer length and enables style control.
        style: run style control (default: when ``metadata`` is given).
        categories: score only rows of these question categories.
        rounds: bootstrap rounds; ``confidence``: the interval's coverage (0.90 is
            arena-hard-auto v2.0's 5th to 95th percentile, 0.95 v0.1's).
        strong_weight: battles per strong verdict; ``null_policy``: see
            `battles_from_judgments`.
        style_center, style_l2: see the module's notes.

    Raises:
        InputError: no usable row, rows against several baselines (score one category at a
            time, or use `score_by_baseline`), or missing answer metadata for style control.

    Example:
        >>> rows = [{"uid": str(i), "category": "c", "judge": "j", "model": "m",
        ...          "baseline": "b", "games": [{"score": "B>A"}, {"score": "A>B"}]}
        ...         for i in range(10)]
        >>> round(score_judgments(rows, rounds=10).models[0].overall.score)
        100
    """
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be between 0 and 1")
    rows = _select(judgments, categories)
    found = battles_from_judgments(
        rows, baseline=baseline, strong_weight=strong_weight, null_policy=null_policy
    )
    battles = found.battles
    if not battles:
        raise InputError("no judgment row with a usable verdict to score")
    baselines = sorted({b.baseline for b in battles})
    if len(baselines) > 1:
        by_category: dict[str, set[str]] = defaultdict(set)
        for b in battles:
            by_category[b.baseline].add(b.category)
        detail = "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in by_category.items())
        raise InputError(
            f"judgments against several baselines ({detail}); score one baseline at a time "
            "with categories=, or all of them with score_by_baseline"
        )
    anchor = baselines[0]
    choice = baseline if isinstance(baseline, BaselineChoice) else BaselineChoice(baseline)
    for category in sorted({b.category for b in battles}):
        expected = choice.get(category)
        if expected is not None and expected != anchor:
            raise InputError(
                f"the judgments of category {category!r} are against {anchor!r}, not {expected!r}"
            )
    use_style = style if style is not None else metadata is not None
    if use_style and metadata is None:
        raise InputError("style control needs answer metadata (metadata=)")
    features = style_matrix(battles, metadata) if use_style and metadata is not None else None

    def run(selected: npt.NDArray[np.intp]) -> tuple[dict[str, Score], FloatArray]:
        chosen = [battles[i] for i in selected]
        common: dict[str, Any] = {
            "baseline": anchor,
            "style_center": style_center,
            "style_l2": style_l2,
            "rounds": rounds,
            "seed": seed,
            "confidence": confidence,
        }
        plain, _ = bootstrap_win_rates(chosen, style=None, **common)
        styled: dict[str, tuple[float, float, float]] = {}
        coefficients: FloatArray = np.empty(0)
        if features is not None:
            styled, coefficients = bootstrap_win_rates(chosen, style=features[selected], **common)
        scores = {}
        for model, (score, lower, upper) in plain.items():
            mine = [b for b in chosen if b.model == model]
            style_values = styled.get(model, (None, None, None))
            scores[model] = Score(
                score=score,
                lower=lower,
                upper=upper,
                rows=len({b.uid for b in mine}),
                battles=len(mine),
                style_score=style_values[0],
                style_lower=style_values[1],
                style_upper=style_values[2],
            )
        return scores, coefficients

    overall, coefficients = run(np.arange(len(battles), dtype=np.intp))
    per_category: dict[str, dict[str, Score]] = defaultdict(dict)
    for category in sorted({b.category for b in battles}):
        selected = np.array(
            [i for i, b in enumerate(battles) if b.category == category], dtype=np.intp
        )
        for model, score in run(selected)[0].items():
            per_category[model][category] = score

    models = [
        ModelScore(
            model=model,
            overall=score,
            categories=per_category[model],
            dropped_rows=found.dropped[model],
            mean_tokens=_mean_tokens(metadata, model),
        )
        for model, score in overall.items()
    ]
    models.sort(key=lambda m: (-m.overall.score, m.model))
    style_coefficients = None
    if features is not None:
        kept = features.std(axis=0) > 0
        names = [n for n, k in zip(STYLE_FEATURES, kept, strict=True) if k]
        style_coefficients = {n: float(c) for n, c in zip(names, coefficients, strict=True)}
    return ScoreReport(
        baseline=anchor,
        judges=sorted({r.judge for r in rows}),
        models=models,
        rounds=rounds,
        seed=seed,
        confidence=confidence,
        strong_weight=strong_weight,
        null_policy=null_policy,
        style_coefficients=style_coefficients,
        warnings=[
            w
            for c in sorted({b.category for b in battles})
            if (w := standard_baseline_warning(c, anchor)) is not None
        ],
    )


def score_by_baseline(
    judgments: Iterable[ArenaJudgment | Mapping[str, Any]],
    *,
    baseline: str | BaselineChoice | None = None,
    categories: Collection[str] | None = None,
    **options: Any,
) -> list[ScoreReport]:
    """One `score_judgments` report per baseline, as arena-hard-auto v2.0 scores each category
    against its own baseline: the largest group first.

    ``options`` are `score_judgments`'s (metadata, rounds, seed, confidence...).

    Raises:
        InputError: as `score_judgments`; a row naming no baseline that ``baseline`` does not
            give one for; no row of the wanted ``categories`` (names those the files hold).

    Example:
        >>> rows = [{"uid": str(i), "category": c, "judge": "j", "model": "m",
        ...          "baseline": b, "games": [{"score": "B>A"}, {"score": "B>A"}]}
        ...         for i, (c, b) in enumerate([("hard_prompt", "o3"), ("creative", "gem")])]
        >>> [r.baseline for r in score_by_baseline(rows, rounds=5)]
        ['gem', 'o3']
    """
    rows = [as_judgment(j) for j in judgments]
    present = sorted({r.category or "unknown" for r in rows})
    rows = _select(rows, categories)
    if not rows:
        raise InputError(
            f"no judgment row of category {', '.join(sorted(categories or ()))} "
            f"(the judgments hold: {', '.join(present) or 'none'})"
        )
    choice = baseline if isinstance(baseline, BaselineChoice) else BaselineChoice(baseline)
    groups: dict[str, list[ArenaJudgment]] = defaultdict(list)
    for r in rows:
        base = r.baseline or choice.get(r.category or "unknown")
        # A row naming no baseline at all is reported by score_judgments, with its uid.
        groups[base or ""].append(r)
    order = sorted(groups, key=lambda b: (-len(groups[b]), b))
    return [score_judgments(groups[b], baseline=choice, **options) for b in order]


def _select(
    judgments: Iterable[ArenaJudgment | Mapping[str, Any]], categories: Collection[str] | None
) -> list[ArenaJudgment]:
    rows = [as_judgment(j) for j in judgments]
    if categories is None:
        return rows
    wanted = set(categories)
    return [r for r in rows if (r.category or "unknown") in wanted]


def _mean_tokens(
    metadata: Mapping[str, Mapping[str, AnswerMetadata | Mapping[str, Any]]] | None, model: str
) -> float | None:
    answers = (metadata or {}).get(model)
    if not answers:
        return None
    return float(np.mean([as_metadata(m).token_len for m in answers.values()]))
