"""Arena-Hard scores from judgment records: Bradley-Terry win rates with bootstrap intervals.

The method is Arena-Hard-Auto v0.1's (``show_result.py`` and ``utils_math.py`` of
lmarena/arena-hard-auto, the method behind the published v0.1 scores):

1. Each judgment row gives a battle per game: game 1 has the baseline as A, game 2 the model.
   A strong verdict (``A>>B``, ``B>>A``) is three battles, ties are never weighted.
2. A Bradley-Terry model on the Elo scale (base 10, scale 400, start 1000) is fitted by
   logistic regression with no intercept, ties counting half a win to each side, and the
   baseline anchored at 1000.
3. The score is the predicted win rate against the baseline, in percent, from the fit on all
   battles; the interval is the 2.5th and 97.5th percentiles of 100 bootstrap fits (battles
   resampled with replacement).
4. Style control adds, per battle, the length difference and three markdown-density
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

import csv
import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

from langgraph_feedit.errors import InputError
from langgraph_feedit.evaluate import EXTRA_HINT

try:
    import numpy as np
    import numpy.typing as npt
    from scipy.optimize import minimize  # type: ignore[import-untyped,unused-ignore]
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(f"{EXTRA_HINT} ({exc})") from exc

from langgraph_feedit.evaluate.arena import AnswerMetadata, ArenaJudgment, Verdict

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
    "score_judgments",
    "style_features",
]

FloatArray = npt.NDArray[np.float64]
NullPolicy = Literal["row", "game"]

STYLE_FEATURES: tuple[str, ...] = ("length", "headers", "lists", "bold")
"""Names of the style-control features, in the order of their coefficients."""

SCALE = 400.0
BASE = 10.0
INIT_RATING = 1000.0
_LOG_BASE = math.log(BASE)
_PLAIN_L2 = 1e-6
_OVERALL = "all"

# Score of the model (1 = the model won) per verdict, in game 1 (baseline is A) and game 2
# (model is A), and whether the verdict is a strong one.
_GAME1: dict[Verdict, float] = {"A>>B": 0.0, "A>B": 0.0, "A=B": 0.5, "B>A": 1.0, "B>>A": 1.0}
_GAME2: dict[Verdict, float] = {"A>>B": 1.0, "A>B": 1.0, "A=B": 0.5, "B>A": 0.0, "B>>A": 0.0}
_STRONG = frozenset({"A>>B", "B>>A"})


@dataclass(frozen=True, slots=True)
class Battle:
    """One battle of a model against the baseline on one prompt.

    ``outcome`` is the model's result: 1 won, 0.5 tie, 0 lost. A strong verdict appears as
    several identical battles.
    """

    uid: str
    category: str
    model: str
    baseline: str
    outcome: float
    game: int


class Battles(NamedTuple):
    """Battles from judgment rows, with how many rows were used and dropped per model."""

    battles: list[Battle]
    rows: Counter[str]
    dropped: Counter[str]


def _as_judgment(item: ArenaJudgment | Mapping[str, Any]) -> ArenaJudgment:
    return item if isinstance(item, ArenaJudgment) else ArenaJudgment.from_mapping(item)


def battles_from_judgments(
    judgments: Iterable[ArenaJudgment | Mapping[str, Any]],
    *,
    baseline: str | None = None,
    strong_weight: int = 3,
    null_policy: NullPolicy = "row",
) -> Battles:
    """The battles of judgment rows, in Arena-Hard's way.

    ``baseline`` names the baseline of rows that lack one (v0.1 files). A game whose verdict
    is null or not one of the five labels is null; ``null_policy`` drops its whole row
    (``"row"``) or only that game (``"game"``). Rows of the baseline against itself are
    skipped.

    Raises:
        InputError: a row has no baseline and none was given.
    """
    if strong_weight < 1:
        raise ValueError("strong_weight must be >= 1")
    out: list[Battle] = []
    rows: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    for item in judgments:
        row = _as_judgment(item)
        base = row.baseline or baseline
        if base is None:
            raise InputError(
                f"the judgment of {row.model!r} on {row.uid!r} names no baseline; pass baseline="
            )
        if row.model == base:
            continue
        games = list(row.games) + [None] * (2 - len(row.games))
        verdicts = [g.verdict if g is not None else None for g in games]
        if null_policy == "row" and None in verdicts:
            dropped[row.model] += 1
            continue
        found: list[Battle] = []
        for number, (verdict, table) in enumerate(zip(verdicts, (_GAME1, _GAME2), strict=True), 1):
            if verdict is None:
                continue
            battle = Battle(
                uid=row.uid,
                category=row.category or "unknown",
                model=row.model,
                baseline=base,
                outcome=table[verdict],
                game=number,
            )
            found.extend([battle] * (strong_weight if verdict in _STRONG else 1))
        if not found:
            dropped[row.model] += 1
            continue
        rows[row.model] += 1
        out.extend(found)
    return Battles(out, rows, dropped)


def _meta(value: AnswerMetadata | Mapping[str, Any]) -> AnswerMetadata:
    return value if isinstance(value, AnswerMetadata) else AnswerMetadata.model_validate(value)


def style_features(
    model: AnswerMetadata | Mapping[str, Any], baseline: AnswerMetadata | Mapping[str, Any]
) -> tuple[float, float, float, float]:
    """The raw style features of one battle (before z-scoring), model against baseline.

    ``length``: ``(len_m - len_b) / (len_m + len_b)``; ``headers``, ``lists``, ``bold``: with
    density ``d = count / (token_len + 1)`` (counts summed over the kind's keys),
    ``(d_m - d_b) / (d_m + d_b + 1)``. Positive means the model has more of it.

    Example:
        >>> m = {"token_len": 300, "header_count": {"h1": 3}, "list_count": {},
        ...      "bold_count": {}}
        >>> b = {"token_len": 100, "header_count": {}, "list_count": {}, "bold_count": {}}
        >>> [round(x, 4) for x in style_features(m, b)]
        [0.5, 0.0099, 0.0, 0.0]
    """
    m, b = _meta(model), _meta(baseline)
    total = m.token_len + b.token_len
    length = (m.token_len - b.token_len) / total if total else 0.0
    out = [length]
    for kind in ("header_count", "list_count", "bold_count"):
        dm = sum(getattr(m, kind).values()) / (m.token_len + 1)
        db = sum(getattr(b, kind).values()) / (b.token_len + 1)
        out.append((dm - db) / (dm + db + 1))
    return out[0], out[1], out[2], out[3]


def elo_to_win_rate(elo: float, baseline_elo: float = INIT_RATING) -> float:
    """Predicted win rate (percent) of a rating against the baseline's (Arena-Hard's
    ``predict_win_rate``)."""
    return 100.0 / (1.0 + math.pow(BASE, (baseline_elo - elo) / SCALE))


def _logistic_fit(x: FloatArray, y: FloatArray, w: FloatArray, l2: float) -> FloatArray:
    """Coefficients minimising the weighted soft-label logistic loss plus ``l2/2 |beta|^2``."""

    def objective(beta: FloatArray) -> tuple[float, FloatArray]:
        z = x @ beta
        loss = float(np.sum(w * (np.logaddexp(0.0, z) - y * z))) + 0.5 * l2 * float(beta @ beta)
        p = np.exp(-np.logaddexp(0.0, -z))
        grad = x.T @ (w * (p - y)) + l2 * beta
        return loss, grad

    result = minimize(
        objective,
        np.zeros(x.shape[1]),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-8},
    )
    return np.asarray(result.x, dtype=np.float64)


@dataclass(frozen=True)
class _Design:
    """A fit's unique rows (identical battles merged) and how battles map onto them."""

    players: list[str]
    x: FloatArray
    y: FloatArray
    inverse: npt.NDArray[np.intp]
    sides: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]
    """Each battle's two players (model, baseline) as indices into ``players``."""


def _design(
    battles: Sequence[Battle],
    style: FloatArray | None,
    center: bool,
) -> _Design:
    players = sorted({b.model for b in battles} | {b.baseline for b in battles})
    index = {p: i for i, p in enumerate(players)}
    n = len(battles)
    x = np.zeros((n, len(players)))
    rows = np.arange(n)
    model_idx = np.array([index[b.model] for b in battles], dtype=np.intp)
    baseline_idx = np.array([index[b.baseline] for b in battles], dtype=np.intp)
    x[rows, model_idx] = _LOG_BASE
    x[rows, baseline_idx] = -_LOG_BASE
    if style is not None:
        std = style.std(axis=0)
        keep = std > 0
        scaled = style[:, keep] - (style[:, keep].mean(axis=0) if center else 0.0)
        x = np.hstack([x, scaled / std[keep]])
    y = np.array([b.outcome for b in battles])
    unique, inverse = np.unique(np.column_stack([x, y]), axis=0, return_inverse=True)
    return _Design(
        players=players,
        x=unique[:, :-1],
        y=unique[:, -1],
        inverse=inverse.reshape(-1),
        sides=(model_idx, baseline_idx),
    )


def _elo(
    design: _Design, counts: FloatArray, anchor: str, l2: float
) -> tuple[FloatArray, FloatArray]:
    """Ratings of every player (NaN for one with no battle here) and the style coefficients."""
    # Arena-Hard fits on every battle written twice (a tie as one win each way); weight 2 keeps
    # its regularisation strength.
    w = 2.0 * np.bincount(design.inverse, weights=counts, minlength=len(design.y)).astype(
        np.float64
    )
    beta = _logistic_fit(design.x, design.y, w, l2)
    p = len(design.players)
    elo = SCALE * beta[:p] + INIT_RATING
    elo += INIT_RATING - elo[design.players.index(anchor)]
    present = np.zeros(p, dtype=bool)
    for side in design.sides:
        present |= np.bincount(side, weights=counts, minlength=p) > 0
    elo[~present] = np.nan
    return elo, beta[p:]


def fit_elo(
    battles: Sequence[Battle],
    *,
    baseline: str,
    style: FloatArray | None = None,
    style_center: bool = True,
    l2: float | None = None,
) -> dict[str, float]:
    """Bradley-Terry ratings on the Elo scale, the baseline anchored at 1000.

    ``style`` is an ``(n_battles, k)`` array of raw style features (see `style_features`), to
    fit jointly; ``l2`` defaults to the plain fit's negligible ridge, or Arena-Hard's ``C=1``
    ridge with style features.
    """
    if not battles:
        raise ValueError("no battles to fit")
    design = _design(battles, style, style_center)
    ridge = l2 if l2 is not None else (1.0 if style is not None else _PLAIN_L2)
    elo, _ = _elo(design, np.ones(len(battles)), baseline, ridge)
    return {p: float(e) for p, e in zip(design.players, elo, strict=True)}


@dataclass(frozen=True, slots=True)
class Score:
    """A win rate against the baseline (percent) with its bootstrap interval.

    ``rows`` counts judgment rows used, ``battles`` the battles they gave (a strong verdict
    counts three times). The style fields are None when style control was not run.
    """

    score: float
    lower: float
    upper: float
    rows: int
    battles: int
    style_score: float | None = None
    style_lower: float | None = None
    style_upper: float | None = None


@dataclass(frozen=True, slots=True)
class ModelScore:
    """One model's score over all prompts and per question category."""

    model: str
    overall: Score
    categories: dict[str, Score] = field(default_factory=dict)
    dropped_rows: int = 0
    mean_tokens: float | None = None


_CSV_COLUMNS = (
    "model",
    "category",
    "score",
    "lower",
    "upper",
    "style_score",
    "style_lower",
    "style_upper",
    "rows",
    "battles",
    "dropped_rows",
    "mean_tokens",
)


@dataclass(frozen=True)
class ScoreReport:
    """Scores of every model against one baseline, best first."""

    baseline: str
    judges: list[str]
    models: list[ModelScore]
    rounds: int
    seed: int
    confidence: float
    strong_weight: int
    null_policy: NullPolicy
    style_coefficients: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as written by `to_json`."""
        return asdict(self)

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as JSON."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_csv(self) -> str:
        """One row per model and category; the category ``all`` is the overall score."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        for m in self.models:
            for category, s in [(_OVERALL, m.overall), *m.categories.items()]:
                writer.writerow(
                    [
                        m.model,
                        category,
                        *(_csv_number(v) for v in (s.score, s.lower, s.upper)),
                        *(_csv_number(v) for v in (s.style_score, s.style_lower, s.style_upper)),
                        s.rows,
                        s.battles,
                        m.dropped_rows,
                        _csv_number(m.mean_tokens),
                    ]
                )
        return buffer.getvalue()

    def table(self) -> str:
        """A plain-text leaderboard for a terminal: overall, then each category if several."""
        categories = sorted({c for m in self.models for c in m.categories})
        sections = [("all prompts", [(m, m.overall) for m in self.models])]
        if len(categories) > 1:
            for category in categories:
                entries = [
                    (m, m.categories[category]) for m in self.models if category in m.categories
                ]
                entries.sort(key=lambda e: -e[1].score)
                sections.append((f"category {category}", entries))
        percent = round(self.confidence * 100)
        parts = [
            f"Arena-Hard win rate against {self.baseline} (judge: {', '.join(self.judges) or '?'};"
            f" {percent}% interval from {self.rounds} bootstrap rounds)"
        ]
        for title, entries in sections:
            parts.append("")
            parts.append(f"## {title}")
            parts.append(self._section(entries, percent))
        return "\n".join(parts)

    def _section(self, entries: list[tuple[ModelScore, Score]], percent: int) -> str:
        with_style = any(s.style_score is not None for _, s in entries)
        header = ["model", "score", f"{percent}% CI"]
        if with_style:
            header += ["style ctrl", f"{percent}% CI"]
        header += ["rows", "battles", "avg tokens"]
        lines = [header]
        for m, s in entries:
            line = [m.model, f"{s.score:.1f}", _interval(s.score, s.lower, s.upper)]
            if with_style:
                if s.style_score is None or s.style_lower is None or s.style_upper is None:
                    line += ["-", "-"]
                else:
                    line += [
                        f"{s.style_score:.1f}",
                        _interval(s.style_score, s.style_lower, s.style_upper),
                    ]
            tokens = "-" if m.mean_tokens is None else f"{m.mean_tokens:.0f}"
            lines.append([*line, str(s.rows), str(s.battles), tokens])
        baseline = [self.baseline, "50.0", "(-0.0, +0.0)"]
        if with_style:
            baseline += ["50.0", "(-0.0, +0.0)"]
        lines.append([*baseline, "-", "-", "-"])
        widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
        rendered = []
        for i, row in enumerate(lines):
            cells = [
                cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j])
                for j, cell in enumerate(row)
            ]
            rendered.append("  ".join(cells).rstrip())
            if i == 0:
                rendered.append("  ".join("-" * w for w in widths))
        return "\n".join(rendered)


def _interval(score: float, lower: float, upper: float) -> str:
    return f"(-{score - lower:.1f}, +{upper - score:.1f})"


def _csv_number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _to_win_rates(elos: FloatArray) -> FloatArray:
    return 100.0 / (1.0 + BASE ** ((INIT_RATING - elos) / SCALE))


def _score_block(
    battles: Sequence[Battle],
    *,
    baseline: str,
    style: FloatArray | None,
    style_center: bool,
    style_l2: float,
    rounds: int,
    seed: int,
    confidence: float,
) -> tuple[dict[str, tuple[float, float, float]], FloatArray]:
    """Score, lower and upper (percent) per model of one set of battles, and the style
    coefficients (empty without style)."""
    design = _design(battles, style, style_center)
    l2 = style_l2 if style is not None else _PLAIN_L2
    n = len(battles)
    point, coefficients = _elo(design, np.ones(n), baseline, l2)
    rng = np.random.default_rng(seed)
    boot = np.empty((rounds, len(design.players)))
    for r in range(rounds):
        counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        boot[r], _ = _elo(design, counts, baseline, l2)
    tail = (1.0 - confidence) / 2.0 * 100.0
    out: dict[str, tuple[float, float, float]] = {}
    for i, player in enumerate(design.players):
        if player == baseline:
            continue
        column = boot[:, i][~np.isnan(boot[:, i])]
        low, high = (
            np.percentile(column, [tail, 100.0 - tail]) if column.size else (point[i], point[i])
        )
        rates = _to_win_rates(np.array([point[i], low, high]))
        out[player] = (float(rates[0]), float(rates[1]), float(rates[2]))
    return out, coefficients


def score_judgments(
    judgments: Iterable[ArenaJudgment | Mapping[str, Any]],
    *,
    baseline: str | None = None,
    metadata: Mapping[str, Mapping[str, AnswerMetadata | Mapping[str, Any]]] | None = None,
    style: bool | None = None,
    categories: Collection[str] | None = None,
    rounds: int = 100,
    seed: int = 42,
    confidence: float = 0.95,
    strong_weight: int = 3,
    null_policy: NullPolicy = "row",
    style_center: bool = True,
    style_l2: float = 1.0,
) -> ScoreReport:
    """Arena-Hard scores of every model in ``judgments`` against their baseline.

    Args:
        judgments: judgment rows (read with `read_judgments`, or their dicts).
        baseline: the baseline of rows that name none (v0.1 files); otherwise it must match.
        metadata: model -> uid -> answer metadata (``token_len`` and markdown counts), for the
            models and the baseline; gives the average answer length and enables style control.
        style: run style control (default: when ``metadata`` is given).
        categories: score only rows of these question categories.
        rounds: bootstrap rounds; ``confidence``: the interval's coverage.
        strong_weight: battles per strong verdict; ``null_policy``: see
            `battles_from_judgments`.
        style_center, style_l2: see the module's notes.

    Raises:
        InputError: no usable row, rows against several baselines (score one category at a
            time), or missing answer metadata for style control.

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
    rows = [_as_judgment(j) for j in judgments]
    if categories is not None:
        wanted = set(categories)
        rows = [r for r in rows if (r.category or "unknown") in wanted]
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
            "with categories="
        )
    anchor = baselines[0]
    if baseline is not None and anchor != baseline:
        raise InputError(f"the judgments are against {anchor!r}, not {baseline!r}")
    use_style = style if style is not None else metadata is not None
    if use_style and metadata is None:
        raise InputError("style control needs answer metadata (metadata=)")
    features = _style_matrix(battles, metadata) if use_style and metadata is not None else None

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
        plain, _ = _score_block(chosen, style=None, **common)
        styled: dict[str, tuple[float, float, float]] = {}
        coefficients: FloatArray = np.empty(0)
        if features is not None:
            styled, coefficients = _score_block(chosen, style=features[selected], **common)
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
    )


def _style_matrix(
    battles: Sequence[Battle],
    metadata: Mapping[str, Mapping[str, AnswerMetadata | Mapping[str, Any]]],
) -> FloatArray:
    missing: dict[str, set[str]] = defaultdict(set)
    cache: dict[tuple[str, str], tuple[float, float, float, float]] = {}
    rows: list[tuple[float, float, float, float]] = []
    for b in battles:
        key = (b.model, b.uid)
        if key not in cache:
            lacking = [who for who in (b.model, b.baseline) if b.uid not in metadata.get(who, {})]
            if lacking:
                for who in lacking:
                    missing[who].add(b.uid)
                cache[key] = (0.0, 0.0, 0.0, 0.0)
            else:
                cache[key] = style_features(metadata[b.model][b.uid], metadata[b.baseline][b.uid])
        rows.append(cache[key])
    if missing:
        detail = "; ".join(
            f"{who}: {len(uids)} prompt(s), e.g. {min(uids)!r}" for who, uids in missing.items()
        )
        raise InputError(
            f"style control needs answer metadata (token_len and markdown counts) for both "
            f"answers of every battle; missing for {detail}"
        )
    return np.array(rows, dtype=np.float64)


def _mean_tokens(
    metadata: Mapping[str, Mapping[str, AnswerMetadata | Mapping[str, Any]]] | None, model: str
) -> float | None:
    answers = (metadata or {}).get(model)
    if not answers:
        return None
    return float(np.mean([_meta(m).token_len for m in answers.values()]))
