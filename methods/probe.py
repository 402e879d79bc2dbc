"""probe: how much of a model's quality and loss landscape can be read off its weights alone.

Each model is described by per-layer weight statistics (for every parameter tensor: mean,
variance and the 1/25/50/75/99% quantiles, as in Unterthiner et al. 2020 and the PTMZ paper's
Table 1); ridge regressions on them predict test accuracy, generalization gap, CKA, log Hessian
trace and mode connectivity (every target the metric catalogue declares), and the score is R^2 on
held-out models. Models are split by cell,
so the seeds of one cell never sit on both sides (they are near-copies of each other and would
make the test set easy), and each target's regularisation is chosen on the validation cells only,
never on the test cells. The method works on the whole zoo; its units are random splits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Mapping, Sequence

import numpy as np

from zoobench.method import Context, Method, Range, UsageError, Zoo, ZoobenchError, landscape_targets

if TYPE_CHECKING:
    import torch

QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.99)
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # BatchNorm state, not weights


class Probe(Method):
    name = "probe"
    version = "1"
    headline = "r2_mean"
    higher_is_better = True
    key_metrics = ("r2_test_acc", "r2_gap", "r2_cka", "r2_log_hessian_trace", "r2_mc")
    needs = ("hessian",)
    scope = "zoo"

    @dataclass(frozen=True)
    class Config:
        splits: Annotated[int, Range(1)] = 5  # units: independent random splits of the cells
        val_fraction: float = 0.2  # of the cells, at least one; chooses each target's alpha
        test_fraction: float = 0.2  # of the cells, at least one; R^2 is measured here
        alphas: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)  # ridge penalties tried
        seed: int = 0  # with the split's index, draws the split

    def validate(self, config: Probe.Config) -> None:
        if not config.alphas or min(config.alphas) <= 0:
            raise UsageError(f"alphas must be positive ridge penalties, got {list(config.alphas)}")
        if not (0 < config.val_fraction < 1 and 0 < config.test_fraction < 1):
            raise UsageError(f"val_fraction and test_fraction must lie in (0, 1), got {config.val_fraction} and "
                             f"{config.test_fraction}")

    def units(self, config: Probe.Config) -> list[str]:
        return [f"split{i}" for i in range(config.splits)]

    def run(self, zoo: Zoo, ctx: Context) -> dict[str, float]:
        config = ctx.config
        units = self.units(config)
        if zoo.id not in units:
            raise ZoobenchError(f"probe: unknown split '{zoo.id}'; with splits={config.splits} the splits "
                                f"are {', '.join(units) or 'none'}")
        features, targets, groups = zoo_table(zoo)
        return fit_and_score(features, targets, groups, units.index(zoo.id), config)


def layer_statistics(state: Mapping[str, torch.Tensor]) -> np.ndarray:
    """A model's features: mean, variance and quantiles of each parameter tensor, in state-dict order."""
    rows = []
    for name, tensor in state.items():
        if name.rsplit(".", 1)[-1] in BUFFERS or not tensor.is_floating_point():
            continue
        values = tensor.detach().double().flatten().cpu().numpy()
        rows.append([values.mean(), values.var(), *np.quantile(values, QUANTILES)])
    return np.asarray(rows, dtype=np.float64).reshape(-1)


def zoo_table(zoo: Zoo) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """Features (models x statistics), each target per model (NaN where missing) and each model's cell.

    A per-model target (test accuracy, gap, log Hessian trace) is the model's own value; a per-cell
    one (CKA, mc) is its cell's, the same for every seed."""
    declared = landscape_targets()
    rows, targets, groups, names = [], {target: [] for target, _, _ in declared}, [], None
    for cell in zoo.cells:
        for model_id in cell.model_ids:
            state = cell.state(model_id)
            names = names or list(state)
            if list(state) != names:
                raise ZoobenchError(f"probe: model {model_id} has parameters {sorted(state)}, other models of the "
                                    f"zoo have {sorted(names)}; the probe needs one architecture family")
            rows.append(layer_statistics(state))
            per_model = cell.model_annotations.get(model_id, {})
            for target, column, model_level in declared:
                targets[target].append(_number((per_model if model_level else cell.annotations).get(column)))
            groups.append(cell.id)
    if not rows:
        raise ZoobenchError("probe: the zoo has no healthy models")
    return np.stack(rows), {t: np.asarray(v) for t, v in targets.items()}, groups


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def split_cells(groups: Sequence[str], split: int, config: Probe.Config) -> tuple[np.ndarray, ...]:
    """Boolean masks (train, validation, test) over the models; every cell lies in exactly one part."""
    cells = sorted(set(groups))
    test = max(1, round(config.test_fraction * len(cells)))
    val = max(1, round(config.val_fraction * len(cells)))
    if len(cells) - test - val < 1:
        raise ZoobenchError(f"probe: {len(cells)} cells with models are too few for a train, validation and "
                            f"test part (test_fraction={config.test_fraction}, val_fraction={config.val_fraction})")
    order = np.random.default_rng([config.seed, split]).permutation(len(cells))
    part = {cells[i]: 2 if rank < test else 1 if rank < test + val else 0 for rank, i in enumerate(order)}
    assigned = np.array([part[g] for g in groups])
    return assigned == 0, assigned == 1, assigned == 2


def choose_alpha(x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, alphas: Sequence[float]) -> float:
    """The penalty whose fit on the train part has the least squared error on the validation part."""
    errors = [np.mean((_model(alpha).fit(x[train], y[train]).predict(x[val]) - y[val]) ** 2) for alpha in alphas]
    return float(alphas[int(np.argmin(errors))])


def _model(alpha: float):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(alpha=alpha))


def fit_and_score(features: np.ndarray, targets: Mapping[str, np.ndarray], groups: Sequence[str], split: int,
                  config: Probe.Config) -> dict[str, float]:
    """Per target: alpha chosen on validation, refit on train + validation, R^2 on test.

    A target with too few finite values in a part (or a constant one on test, where R^2 is
    undefined) scores NaN; ``r2_mean`` averages the targets that have a score.
    """
    from sklearn.metrics import r2_score

    train, val, test = split_cells(groups, split, config)
    usable = np.isfinite(features).all(axis=1)
    result: dict[str, float] = {}
    for name, y in targets.items():
        known = usable & np.isfinite(y)
        fit, check, held = train & known, val & known, test & known
        if fit.sum() < 2 or not check.any() or held.sum() < 2 or np.ptp(y[held]) == 0:
            result[f"r2_{name}"] = result[f"alpha_{name}"] = math.nan
            continue
        alpha = choose_alpha(features, y, fit, check, config.alphas)
        model = _model(alpha).fit(features[fit | check], y[fit | check])
        result[f"r2_{name}"] = float(r2_score(y[held], model.predict(features[held])))
        result[f"alpha_{name}"] = alpha
    scores = [result[f"r2_{name}"] for name in targets if math.isfinite(result[f"r2_{name}"])]
    result["r2_mean"] = math.fsum(scores) / len(scores) if scores else math.nan
    for part, mask in (("train", train), ("val", val), ("test", test)):
        result[f"models_{part}"] = float((mask & usable).sum())
    result["features"] = float(features.shape[1])
    return result
