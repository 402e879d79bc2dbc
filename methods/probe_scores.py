"""Scoring the probe on one split: ridge and gradient-boosted trees per target, and the phase as a class.

Targets are scored three ways on the held-out models: R^2 (the PTMZ paper's Table 1), and Kendall's
tau and Spearman's rho (rank agreement, how NFN and Unterthiner et al. 2020 rank predictors: a probe
that orders models right is useful even when its scale is off). Every hyperparameter (ridge alpha,
logistic C) is chosen on the validation part, never on test; a cross split whose training side has too
few cells to spare a validation part chooses it by leaving out one training cell at a time instead.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from zoobench.method import Split

PHASES = ("I", "II", "III", "IV-A", "IV-B")  # the taxonomy's phases, in its order
MIN_PHASE_MODELS = 3  # fewer test models of a phase give no per-phase tau


def rank_scores(y: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """(Kendall's tau-b, Spearman's rho) of predictions against the truth; NaN where either is constant."""
    from scipy.stats import kendalltau, spearmanr

    if len(y) < 2 or np.ptp(y) == 0 or np.ptp(predicted) == 0:
        return math.nan, math.nan
    return float(kendalltau(y, predicted).statistic), float(spearmanr(y, predicted).statistic)


def ridge(alpha: float):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(alpha=alpha))


def logistic(c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))


def trees(leaf: int, classify: bool = False):
    """The StatNet-style baseline (Unterthiner et al. 2020 used gradient-boosted trees on the same
    statistics): scikit-learn's, seeded; only the smallest leaf is tuned, on validation like the ridge's
    alpha (the default of 20 models per leaf makes coarse trees on a zoo of about 100 models)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    return (HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor)(
        min_samples_leaf=leaf, random_state=0)


def folds(fit: np.ndarray, check: np.ndarray, groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, check) mask pairs to choose a hyperparameter on: the validation part, or, where it is empty,
    each training cell left out in turn (none with fewer than two training cells)."""
    if check.any():
        return [(fit, check)]
    cells = sorted(set(groups[fit]))
    return [(fit & (groups != c), fit & (groups == c)) for c in cells] if len(cells) >= 2 else []


def choose(candidates: Sequence[float], loss: Callable[[float, np.ndarray, np.ndarray], float],
           pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The candidate with the least loss summed over the (fit, check) pairs; the first of equals."""
    losses = [sum(loss(value, fit, check) for fit, check in pairs) for value in candidates]
    return float(candidates[int(np.argmin(losses))])


def choose_fit(make: Callable[[float], Any], candidates: Sequence[float], x: np.ndarray, y: np.ndarray,
               pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The candidate whose model (``make(candidate)``) has the least squared error on the checked models."""
    return choose(candidates, lambda value, fit, check: float(np.sum(
        (make(value).fit(x[fit], y[fit]).predict(x[check]) - y[check]) ** 2)), pairs)


def score_targets(x: np.ndarray, targets: Mapping[str, np.ndarray], phases: np.ndarray, groups: np.ndarray,
                  parts: tuple[np.ndarray, np.ndarray, np.ndarray], alphas: Sequence[float],
                  leaves: Sequence[int]) -> dict[str, float]:
    """Per target: ridge and trees (alpha and leaf size chosen on validation, refit on train + validation),
    each scored by R^2, tau and rho on test; the ridge also per phase of the test
    models. NaN where a target has too few finite values in a part or is constant on test."""
    from sklearn.metrics import r2_score

    train, val, test = parts
    result: dict[str, float] = {}
    for name, y in targets.items():
        known = np.isfinite(y)
        fit, check, held = train & known, val & known, test & known
        pairs = folds(fit, check, groups)
        keys = [f"{p}{k}_{name}" for p in ("", "gbt_") for k in ("r2", "tau", "rho")]
        result.update({key: math.nan for key in [*keys, f"alpha_{name}", f"gbt_leaf_{name}"]})
        result.update({f"tau_{name}_{phase}": math.nan for phase in PHASES})
        if fit.sum() < 2 or not pairs or held.sum() < 2 or np.ptp(y[held]) == 0:
            continue
        alpha, leaf = choose_fit(ridge, alphas, x, y, pairs), int(choose_fit(trees, leaves, x, y, pairs))
        result[f"alpha_{name}"], result[f"gbt_leaf_{name}"] = alpha, float(leaf)
        both = fit | check
        for prefix, model in (("", ridge(alpha)), ("gbt_", trees(leaf))):
            predicted = model.fit(x[both], y[both]).predict(x[held])
            result[f"{prefix}r2_{name}"] = float(r2_score(y[held], predicted))
            result[f"{prefix}tau_{name}"], result[f"{prefix}rho_{name}"] = rank_scores(y[held], predicted)
            if not prefix:
                for phase in PHASES:
                    mine = phases[held] == phase
                    if mine.sum() >= MIN_PHASE_MODELS:
                        result[f"tau_{name}_{phase}"] = rank_scores(y[held][mine], predicted[mine])[0]
    for key in ("r2", "tau", "gbt_r2", "gbt_tau"):
        scores = [result[f"{key}_{name}"] for name in targets if math.isfinite(result[f"{key}_{name}"])]
        result[f"{key}_mean"] = math.fsum(scores) / len(scores) if scores else math.nan
    return result


def score_phase(x: np.ndarray, phases: np.ndarray, groups: np.ndarray,
                parts: tuple[np.ndarray, np.ndarray, np.ndarray], cs: Sequence[float],
                leaves: Sequence[int]) -> dict[str, float]:
    """The phase as a class: balanced accuracy on test of a standardised logistic regression and of
    gradient-boosted trees (C and leaf size chosen on validation by balanced accuracy), both refit on
    train + validation.

    NaN when the test models carry a phase no train or validation model has (the cross_phase split:
    training never sees Phase IV, so no classifier can name it), or training sees a single phase."""
    from sklearn.metrics import balanced_accuracy_score

    labelled = np.isin(phases, PHASES)
    train, val, test = (part & labelled for part in parts)
    result = {"phase_bacc": math.nan, "gbt_phase_bacc": math.nan, "phase_c": math.nan, "gbt_phase_leaf": math.nan}
    both = train | val
    seen = set(phases[both])
    pairs = [(fit, check) for fit, check in folds(train, val, groups) if len(set(phases[fit])) >= 2]
    if not test.any() or len(seen) < 2 or not set(phases[test]) <= seen or not pairs:
        return result

    def loss(make: Callable[[float], Any]) -> Callable[[float, np.ndarray, np.ndarray], float]:
        return lambda value, fit, check: -balanced_accuracy_score(
            phases[check], make(value).fit(x[fit], phases[fit]).predict(x[check]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes seen in one part only, slow convergence on tiny zoos
        c = choose(cs, loss(logistic), pairs)
        leaf = int(choose(leaves, loss(lambda value: trees(int(value), classify=True)), pairs))
        for key, model in (("phase_bacc", logistic(c)), ("gbt_phase_bacc", trees(leaf, classify=True))):
            predicted = model.fit(x[both], phases[both]).predict(x[test])
            result[key] = float(balanced_accuracy_score(phases[test], predicted))
    result["phase_c"], result["gbt_phase_leaf"] = c, float(leaf)
    return result


def score_split(features: np.ndarray, targets: Mapping[str, np.ndarray], phases: Sequence[Any],
                groups: Sequence[str], split: Split, alphas: Sequence[float], cs: Sequence[float],
                leaves: Sequence[int]) -> dict[str, float]:
    """Every score of one split: the targets' (`score_targets`), the phase's (`score_phase`), and how many
    models each part used. Models whose statistics are not all finite are left out."""
    rows = len(features)
    usable = np.isfinite(features).all(axis=1)
    parts = tuple(np.isin(np.arange(rows), indices) & usable for indices in (split.train, split.val, split.test))
    phases = np.array([p if isinstance(p, str) else "" for p in phases], dtype=object)
    groups = np.asarray(groups, dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's constant-input warnings: those scores are NaN
        result = score_targets(features, targets, phases, groups, parts, alphas, leaves)
    result.update(score_phase(features, phases, groups, parts, cs, leaves))
    for part, mask in zip(("train", "val", "test"), parts):
        result[f"models_{part}"] = float(mask.sum())
    result["features"] = float(features.shape[1])
    return result
