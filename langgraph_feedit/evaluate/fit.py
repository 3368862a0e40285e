"""Fitting Arena-Hard scores: battles, style features, the Bradley-Terry fit and the bootstrap.

The method, and where it deliberately differs from Arena-Hard's code, is described in
`langgraph_feedit.evaluate.scoring`, which puts these pieces together into a report.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from langgraph_feedit.errors import InputError
from langgraph_feedit.evaluate import EXTRA_HINT
from langgraph_feedit.evaluate.baselines import BaselineChoice

try:
    import numpy as np
    import numpy.typing as npt
    from scipy.optimize import minimize  # type: ignore[import-untyped,unused-ignore]
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(f"{EXTRA_HINT} ({exc})") from exc

from langgraph_feedit.evaluate.prompts import Verdict
from langgraph_feedit.evaluate.records import AnswerMetadata, ArenaJudgment

__all__ = [
    "BASE",
    "INIT_RATING",
    "SCALE",
    "STYLE_FEATURES",
    "Battle",
    "Battles",
    "FloatArray",
    "NullPolicy",
    "as_judgment",
    "as_metadata",
    "battles_from_judgments",
    "bootstrap_win_rates",
    "elo_to_win_rate",
    "fit_elo",
    "style_features",
    "style_matrix",
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


def as_judgment(item: ArenaJudgment | Mapping[str, Any]) -> ArenaJudgment:
    """A judgment row, validated if it is still a decoded line."""
    return item if isinstance(item, ArenaJudgment) else ArenaJudgment.from_mapping(item)


def battles_from_judgments(
    judgments: Iterable[ArenaJudgment | Mapping[str, Any]],
    *,
    baseline: str | BaselineChoice | None = None,
    strong_weight: int = 3,
    null_policy: NullPolicy = "row",
) -> Battles:
    """The battles of judgment rows, in Arena-Hard's way.

    ``baseline`` names the baseline of rows that lack one (v0.1 files), one for all or per
    category (`BaselineChoice`). A game whose verdict
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
    choice = baseline if isinstance(baseline, BaselineChoice) else BaselineChoice(baseline)
    for item in judgments:
        row = as_judgment(item)
        base = row.baseline or choice.get(row.category or "unknown")
        if base is None:
            raise InputError(
                f"the judgment of {row.model!r} on {row.uid!r} names no baseline: pass the "
                "baseline's model (--baseline MODEL, or --baseline CATEGORY=MODEL)"
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


def as_metadata(value: AnswerMetadata | Mapping[str, Any]) -> AnswerMetadata:
    """Answer metadata, validated if it is still a plain mapping."""
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
    m, b = as_metadata(model), as_metadata(baseline)
    total = m.token_len + b.token_len
    length = (m.token_len - b.token_len) / total if total else 0.0
    out = [length]
    for kind in ("header_count", "list_count", "bold_count"):
        dm = sum(getattr(m, kind).values()) / (m.token_len + 1)
        db = sum(getattr(b, kind).values()) / (b.token_len + 1)
        out.append((dm - db) / (dm + db + 1))
    return out[0], out[1], out[2], out[3]


def style_matrix(
    battles: Sequence[Battle],
    metadata: Mapping[str, Mapping[str, AnswerMetadata | Mapping[str, Any]]],
) -> FloatArray:
    """The raw style features of every battle, one row each (see `style_features`).

    ``metadata`` is model -> uid -> answer metadata, for the models and the baseline.

    Raises:
        InputError: an answer of some battle has no metadata (says whose, and for how many).
    """
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
            f"answers of every battle; missing for {detail}. Add it with `feedit markdown-info` "
            "(arena-hard-auto's add_markdown_info.py)"
        )
    return np.array(rows, dtype=np.float64)


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


def _to_win_rates(elos: FloatArray) -> FloatArray:
    return 100.0 / (1.0 + BASE ** ((INIT_RATING - elos) / SCALE))


def bootstrap_win_rates(
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
    tail = (1.0 - confidence) / 2.0
    out: dict[str, tuple[float, float, float]] = {}
    for i, player in enumerate(design.players):
        if player == baseline:
            continue
        column = boot[:, i][~np.isnan(boot[:, i])]
        score = float(_to_win_rates(point[i : i + 1])[0])
        if not column.size:
            out[player] = (score, score, score)
            continue
        # Quantiles of the rounds' win rates, interpolated linearly between rounds: what
        # arena-hard-auto v2.0 takes (pandas' quantile), not quantiles of the ratings.
        low, high = np.quantile(_to_win_rates(column), [tail, 1.0 - tail])
        out[player] = (score, float(low), float(high))
    return out, coefficients
