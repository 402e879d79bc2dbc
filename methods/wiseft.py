"""WiSE-FT along one training trajectory: interpolate each model's weights between an earlier stored
checkpoint and the final ones, theta(alpha) = (1 - alpha) earlier + alpha final, and ask whether a
point short of the end generalises better.

Every interior point has its BatchNorm statistics re-estimated (the interpolated weights match
neither endpoint's); the endpoints are the stored models themselves. Alpha is chosen per seed on
``select_split``, by default train (zoos have no validation split, and choosing on test would be an
oracle): highest accuracy, then lowest loss, then the larger alpha (the final model wins ties, so a
flat curve gives gain 0). Test accuracy at the chosen alpha is what ``acc`` and the headline
``gain`` = acc - final_acc report; the test-selected best is reported apart, as ``oracle_*``.

Interpolating towards a fine-tuned model (the original WiSE-FT) is not offered: methods do not
persist models, so this method cannot see the finetune method's results.

Keys, means over the cell's seeds: ``best_alpha``, ``acc``, ``final_acc``, ``earlier_acc``,
``gain``, ``oracle_alpha``, ``oracle_acc``, ``oracle_gain``, ``acc_a<alpha>`` (test accuracy
along the path), ``loss``, ``final_loss``, ``earlier_loss``, ``start_epoch``. Tasks without accuracy (the PINN) select on the train loss and report the test metrics at the chosen
alpha (``loss``, ``rel_l2``, ``final_rel_l2``, ...) with no gain and thus no headline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from zoobench.method import Cell, Context, Method, Range, UsageError, ZoobenchError, interpolate, seed_mean

Metrics = dict[str, float]


def choose(path: dict[float, Metrics]) -> float:
    """The alpha with the highest accuracy (when there is one), then the lowest loss, then the largest."""
    return max(path, key=lambda alpha: (path[alpha].get("acc", 0.0), -path[alpha]["loss"], alpha))


class WiseFT(Method):
    name = "wiseft"
    version = "1"
    headline = "gain"
    higher_is_better = True
    key_metrics = ("final_acc", "best_alpha", "oracle_gain")

    @dataclass(frozen=True)
    class Config:
        start_epoch: int | None = None  # the earlier checkpoint (default: the last stored before the cell's epoch)
        alphas: tuple[Annotated[float, Range(0.0, 1.0)], ...] = tuple(i / 10 for i in range(11))  # must include 1.0
        select_split: Literal["train", "test"] = "train"  # where alpha is chosen; "test" makes acc the oracle

    def validate(self, config: WiseFT.Config) -> None:
        if 1.0 not in config.alphas:
            raise UsageError(f"alphas must include 1.0 (the final model), got {list(config.alphas)}")

    def run(self, cell: Cell, ctx: Context) -> dict[str, float]:
        config = ctx.config
        start = _start_epoch(cell, config.start_epoch)
        if not cell.model_ids:
            raise ZoobenchError(f"wiseft: cell {cell.id} has no healthy model ({len(cell.diverged)} diverged)")
        alphas = sorted(set(config.alphas))
        seeds = [self._path(cell, model_id, start, alphas, config.select_split) for model_id in cell.model_ids]
        return {"start_epoch": float(start), **seed_mean(seeds)}

    def _path(self, cell: Cell, model_id: str, start: int, alphas: list[float], select_split: str) -> Metrics:
        earlier, final = cell.model(model_id, start), cell.model(model_id)
        test, selection = {}, {}
        for alpha in alphas:
            point = interpolate(earlier, final, alpha)
            if 0.0 < alpha < 1.0:
                cell.recalibrate(point)
            test[alpha] = cell.evaluate(point, "test")
            selection[alpha] = test[alpha] if select_split == "test" else cell.evaluate(point, select_split)
        best = choose(selection)
        found = {"best_alpha": best, **test[best]}
        found.update({f"final_{m}": v for m, v in test[1.0].items()})
        found.update({f"earlier_{m}": v for m, v in cell.evaluate(earlier, "test").items()})
        if "acc" in test[1.0]:
            oracle = choose(test)
            found.update({"gain": test[best]["acc"] - test[1.0]["acc"], "oracle_alpha": oracle,
                          "oracle_acc": test[oracle]["acc"], "oracle_gain": test[oracle]["acc"] - test[1.0]["acc"]})
            found.update({f"acc_a{alpha:g}": test[alpha]["acc"] for alpha in alphas})
        return found


def _start_epoch(cell: Cell, wanted: int | None) -> int:
    earlier = [epoch for epoch in cell.epochs if epoch < cell.epoch]
    if wanted is None:
        if not earlier:
            raise ZoobenchError(f"wiseft: no checkpoint stored before epoch {cell.epoch} (stored: {cell.epochs})")
        return earlier[-1]
    if wanted not in earlier:
        raise ZoobenchError(f"wiseft: start_epoch {wanted} is not a stored epoch before {cell.epoch} "
                            f"(candidates: {earlier or 'none'}); set start_epoch to one of them")
    return wanted
