"""Epoch averaging, the paper's protocol (its "Wise-FT" experiment, PTMZ ``average_model_epochs.py``):
average each model's checkpoints of the last K epochs up to the evaluation epoch, uniformly, re-estimate
BatchNorm statistics, and report the change in test accuracy against the model at the evaluation
epoch.

Averaging along one trajectory needs no alignment (the checkpoints of one run share their units).
At the paper's mid-annealing epoch (115 of 150 for CIFAR ResNet-18, averaging 111-115) the hot cells
still bounce around their basin, and the average of their last epochs lands nearer its centre: the
paper finds gains up to +0.12 there and about 0 in Phase IV. A zoo must store those K checkpoints
(the paper zoo specs do; ``[training] checkpoint_epochs``). BatchNorm statistics are re-estimated
on `bn_batches` fixed training batches (the published code: 100 iterations), since an average of
running statistics matches no network.

Keys, means over the cell's seeds: ``averaged_<m>`` and ``final_<m>`` for each metric the cell's
evaluation reports (loss and acc; loss and rel_l2 for the PINN), ``gain`` (the headline) =
`improvement` of the average over the final model, averaged_acc - final_acc for classification and
final_rel_l2 - averaged_rel_l2 for the PINN (positive: the average is better), ``loss_gain`` =
final_loss - averaged_loss, ``first_epoch`` (the earliest checkpoint averaged) and
``epochs_averaged``. A task that reports neither accuracy nor rel_l2 has ``loss_gain`` but no
``gain`` (a loss's scale differs per task, so it never stands in for the headline).

The headline compares against the model as stored, as the paper does, so on a network with
BatchNorm it includes what re-estimating the statistics alone gives: the running statistics of a
hot model lag behind its weights, which still move fast mid-annealing (on digits_resnet, re-estimation
alone gives Phase II +0.09 of the average's +0.11). ``recalibrated_<m>`` is therefore the final model
with its statistics re-estimated on the same batches, ``recalibration_gain`` its `improvement` over
the stored one and ``averaging_gain`` the average's over it: gain = recalibration_gain +
averaging_gain for accuracy. Without BatchNorm, recalibration changes nothing and both are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from zoobench.method import Cell, Context, Method, Range, ZoobenchError, improvement, seed_mean


class EpochAverage(Method):
    name = "epochavg"
    version = "3"
    headline = "gain"
    higher_is_better = True
    key_metrics = ("final_acc", "averaged_acc", "recalibration_gain", "final_rel_l2", "averaged_rel_l2", "loss_gain")

    @dataclass(frozen=True)
    class Config:
        last: Annotated[int, Range(2)] = 5  # checkpoints averaged, ending at the evaluation epoch (paper: 5)
        bn_batches: Annotated[int, Range(1)] = 100  # fixed training batches for BatchNorm (paper: 100)
        batch_size: Annotated[int, Range(1)] = 128

    def run(self, cell: Cell, ctx: Context) -> dict[str, float]:
        from zoobench.method import average

        config = ctx.config
        epochs = averaged_epochs(cell, config.last)
        if not cell.model_ids:
            raise ZoobenchError(f"epochavg: cell {cell.id} has no healthy model ({len(cell.diverged)} diverged)")
        seeds = []
        for model_id in cell.model_ids:
            model = cell.model(model_id)
            final = cell.evaluate(model)
            changed = cell.recalibrate(model, batches=config.bn_batches, batch_size=config.batch_size)
            recalibrated = cell.evaluate(model) if changed else final
            model.load_state_dict(average([cell.state(model_id, epoch) for epoch in epochs]))
            cell.recalibrate(model, batches=config.bn_batches, batch_size=config.batch_size)
            averaged = cell.evaluate(model)
            found = {**{f"final_{m}": v for m, v in final.items()}, **{f"averaged_{m}": v for m, v in averaged.items()},
                     **{f"recalibrated_{m}": v for m, v in recalibrated.items()},
                     "loss_gain": final["loss"] - averaged["loss"]}
            for key, (before, after) in {"gain": (final, averaged), "recalibration_gain": (final, recalibrated),
                                         "averaging_gain": (recalibrated, averaged)}.items():
                if (value := improvement(before, after)) is not None:
                    found[key] = value
            seeds.append(found)
        return {**seed_mean(seeds), "first_epoch": float(epochs[0]), "epochs_averaged": float(len(epochs))}


def averaged_epochs(cell: Cell, last: int) -> list[int]:
    """The `last` consecutive epochs ending at the cell's evaluation epoch (each must be stored)."""
    if last > cell.epoch + 1:
        raise ZoobenchError(f"epochavg: cannot average {last} epochs up to epoch {cell.epoch}: there are only "
                            f"{cell.epoch + 1} epochs (0-{cell.epoch}); lower `last`")
    wanted = list(range(cell.epoch - last + 1, cell.epoch + 1))
    missing = [epoch for epoch in wanted if epoch not in cell.epochs]
    if missing:
        raise ZoobenchError(f"epochavg: averaging epochs {wanted[0]}-{cell.epoch} needs their checkpoints, but the "
                            f"zoo stores {list(cell.epochs)}; add {missing} to [training] checkpoint_epochs "
                            f"or lower `last`")
    return wanted
