"""Git re-basin (Ainsworth et al. 2022): merge a cell's seeds after aligning them by weight matching.

Seeds of one cell are trained from different initialisations, so their hidden units come in
arbitrary orders and a plain weight average mixes unrelated units. Weight matching permutes the
seeds' units onto each other (`zoobench.models.permutation`), after which the average can behave
like its members, and the linear path between two seeds can lose its loss barrier. How much
alignment helps is a property of the cell's phase, which is what this benchmark compares.

Nothing in the result hinges on an arbitrary choice that the method could avoid:

- Weight matching is a coordinate descent that finds a local optimum, and which one depends on
  where it starts and in which order it visits the permutations (on digits_mlp the visiting order
  alone moved a cell's aligned loss barrier from 0.21 to 0.50). Every matching and every merge
  runs ``restarts`` times (the paper's identity start, then random starts, all seeded by ``seed``)
  and keeps the restart with the largest objective: the sum of the inner products of the matched
  weights, which is what the descent maximises. How far the restarts disagree is reported.
- The seeds are merged with MergeMany (each seed aligned to all the others), not onto the first
  seed, and its random orders do not follow the listed order: listing the seeds differently gives
  the same merge.

What remains: the objective only loosely predicts the merge's accuracy or the barrier (the
restarts' optima are close in objective and far apart in function), so the kept restart's numbers
still move with ``seed``. On six digits_mlp cells (widths 8-128) the kept merge's test accuracy had
a standard deviation over seeds of 0.014-0.070 with 8 restarts, no less than with 1; the mean over
the 8 restarts' merges 0.005-0.023. The ``*_min``/``*_max``/``*_mean`` keys show that spread per
cell. The default is 4 restarts: more cost time (MergeMany solves ~70 assignments per restart at
width 128) without making the kept merge steadier.

Per cell it reports (all floats):

- ``merged_loss``/``merged_acc``: the kept merge of all seeds, BatchNorm re-estimated, on the test
  split; ``naive_merged_*``: the plain average; ``member_*``: the members' mean. Tasks without
  accuracy (the convection PINN) report ``*_rel_l2``, the relative L2 test error, instead of
  ``*_acc`` where they have it.
- ``gain`` (the headline, the paper's quantity: the merge against its members, not member quality):
  `zoobench.method.improvement` of the merge over the mean member, i.e. merged_acc - member_acc, or
  member_rel_l2 - merged_rel_l2; missing (not invented) when the task reports neither.
  ``gain_min``/``gain_max``/``gain_mean``: the same over the merges of all restarts (one test
  evaluation per different merge). ``loss_gain`` = member_loss - merged_loss (positive: the merge
  beats its members).
- ``barrier_naive``/``barrier_aligned``: the error barrier between the first two seeds along the
  linear path (``alphas`` points), without and with the second aligned to the first by the kept
  restart: max over alpha of error(alpha) - ((1 - alpha) error(0) + alpha error(1)), on
  ``error_split`` (default train, as in Ainsworth et al. and Entezari et al.), error = 1 - accuracy,
  or the loss for tasks without accuracy; ``loss_barrier_*``: the same for the loss. Every interior
  point is BatchNorm-recalibrated.
- How far the restarts of that alignment disagree: ``match_optima``, how many different alignments
  they found; ``match_cosine_max``/``match_cosine_min``, the best and the worst objective divided by
  the two seeds' weight norms (the cosine similarity of the aligned weights); ``objective_spread``
  = (max - min) / max of the objective; ``midpoint_barrier_min``/``_max``/``_mean`` and
  ``midpoint_loss_barrier_*``: the excess over the chord at alpha = 1/2 over the restarts' alignments
  (one evaluation per different alignment instead of a path; the kept one's is its path's middle
  point when ``alphas`` is odd).
- ``match_iterations``: coordinate-descent sweeps of the kept alignment; ``merge_passes``: passes
  over the seeds of the kept merge; ``merge_objective_spread``: (max - min) / max of the merge
  objective (the sum of the pairwise inner products) over the restarts; ``models``: seeds merged.

Supported families: mlp and resnet; vit and gpt2 raise a ZoobenchError, which the runner records
as the cell's failure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from zoobench.method import Cell, Context, Method, Range, ZoobenchError, barrier, improvement, seed_mean

State = dict[str, Any]  # a state dict: name -> tensor
_QUALITY = ("loss", "acc", "rel_l2")  # test metrics reported for the merges and the members


class Rebasin(Method):
    name = "rebasin"
    version = "2"
    headline = "gain"  # the paper's map (PTMZ gitrebasin_acc_test_delta): the merge against its members
    higher_is_better = True
    key_metrics = ("merged_acc", "member_acc", "barrier_aligned")

    @dataclass(frozen=True)
    class Config:
        alphas: Annotated[int, Range(3)] = 25  # points on each linear path, endpoints included (one between)
        max_iterations: Annotated[int, Range(1)] = 100  # cap on coordinate-descent sweeps (and merge passes)
        restarts: Annotated[int, Range(1)] = 4  # coordinate descents per matching and per merge; the best is kept
        seed: int = 0  # the restarts' starting permutations and visiting orders
        error_split: Literal["train", "test"] = "train"  # split of the barriers: "train" (the papers') or "test"

    def run(self, cell: Cell, ctx: Context) -> dict[str, float]:
        from zoobench.method import aligned_average, average, merge_many, permutation_spec

        config = ctx.config
        if len(cell.model_ids) < 2:
            raise ZoobenchError(f"rebasin needs at least 2 healthy seeds, cell has {len(cell.model_ids)}")
        states = [cell.state(model_id) for model_id in cell.model_ids]
        spec = permutation_spec(cell.recipe["model"]["architecture"], states[0])
        model = cell.model(cell.model_ids[0])  # every state is evaluated in this one model

        runs = merge_many(spec, states, config.max_iterations, config.seed, ctx.device, config.restarts)
        kept = max(range(len(runs)), key=lambda i: runs[i].objective)  # the first restart among equals
        found = [tuple(_fingerprint(perms) for perms in run.perms) for run in runs]
        merges = {}  # every different merge the restarts found -> its test metrics
        for run, key in zip(runs, found):
            if key not in merges:
                merges[key] = _score(cell, model, aligned_average(spec, states, run.perms)[0], recalibrate=True)
        scores = {
            "merged": merges[found[kept]],
            "naive_merged": _score(cell, model, average(states), recalibrate=True),
            "member": seed_mean(_score(cell, model, state) for state in states),
        }
        result = {f"{name}_{key}": score[key] for name, score in scores.items() for key in _QUALITY if key in score}
        result["loss_gain"] = result["member_loss"] - result["merged_loss"]
        gain = improvement(scores["member"], scores["merged"])
        if gain is not None:
            gains = [improvement(scores["member"], merges[key]) for key in found]  # per restart
            result.update(gain=gain, gain_min=min(gains), gain_max=max(gains), gain_mean=sum(gains) / len(gains))
        result.update(_pair(cell, model, spec, states[0], states[1], config, ctx.device))
        result["merge_passes"] = float(runs[kept].passes)
        result["merge_objective_spread"] = _spread([run.objective for run in runs])
        result["models"] = float(len(states))
        return result


def _pair(cell: Cell, model: Any, spec: Any, first: State, second: State, config: Any,
          device: str) -> dict[str, float]:
    """The barriers between two seeds without and with aligning the second to the first, and how
    much the restarts of that alignment disagree (see the module docstring for the keys)."""
    from zoobench.method import apply_permutation, weight_matching

    found = weight_matching(spec, first, second, config.max_iterations, config.seed, device, config.restarts)
    best = found[max(range(len(found)), key=lambda i: found[i].objective)]  # the first restart among equals
    keys = [_fingerprint(matching.perms) for matching in found]
    kept = _fingerprint(best.perms)

    result: dict[str, float] = {}
    alphas = [i / (config.alphas - 1) for i in range(config.alphas)]  # exact 0.0 and 1.0 at the ends
    for kind, state in (("naive", second), ("aligned", apply_permutation(spec, best.perms, second))):
        errors, losses = _path(cell, model, first, state, alphas, config.error_split)
        result[f"barrier_{kind}"], result[f"loss_barrier_{kind}"] = barrier(errors), barrier(losses)
    chord = (errors[0] + errors[-1]) / 2, (losses[0] + losses[-1]) / 2  # no permutation changes the ends

    # (error, loss) at alpha = 1/2 of every different alignment; the kept one's is on its path if alphas is odd
    middle = {kept: (errors[config.alphas // 2], losses[config.alphas // 2])} if config.alphas % 2 else {}
    for key, matching in zip(keys, found):
        if key not in middle:
            aligned = apply_permutation(spec, matching.perms, second)
            middle[key] = tuple(values[0] for values in _path(cell, model, first, aligned, [0.5], config.error_split))
    for index, name in enumerate(("midpoint_barrier", "midpoint_loss_barrier")):
        excess = [middle[key][index] - chord[index] for key in keys]  # per restart
        result.update({f"{name}_min": min(excess), f"{name}_max": max(excess),
                       f"{name}_mean": sum(excess) / len(excess)})

    norms = [math.sqrt(sum(state[key].double().square().sum().item() for key in spec.matched_keys))
             for state in (first, second)]
    objectives = [matching.objective for matching in found]
    scale = norms[0] * norms[1] or 1.0
    result["match_cosine_max"], result["match_cosine_min"] = max(objectives) / scale, min(objectives) / scale
    result["objective_spread"] = _spread(objectives)
    result["match_optima"] = float(len(set(keys)))
    result["match_iterations"] = float(best.sweeps)
    return result


def _score(cell: Cell, model: Any, state: State, split: str = "test", recalibrate: bool = False) -> dict[str, float]:
    """Metrics of ``state`` on a split, loaded into ``model``; ``recalibrate`` re-estimates the
    BatchNorm statistics first, which any average or interpolation of weights gets wrong."""
    model.load_state_dict(state)
    if recalibrate:
        cell.recalibrate(model)
    return cell.evaluate(model.eval(), split)


def _path(cell: Cell, model: Any, first: State, second: State, alphas: list[float],
          split: str) -> tuple[list[float], list[float]]:
    """(errors, losses) on ``split`` at (1 - alpha) first + alpha second for each alpha, as
    `zoobench.method.linear_path` computes them (torch.lerp, exact at the ends; integer buffers
    are first's; every interior point BatchNorm-recalibrated), without copying a model per point.
    The error is 1 - accuracy, or the loss for tasks without accuracy."""
    import torch

    errors, losses = [], []
    for alpha in alphas:
        point = {key: torch.lerp(tensor, second[key], alpha) if tensor.is_floating_point() else tensor
                 for key, tensor in first.items()}
        metrics = _score(cell, model, point, split, recalibrate=0.0 < alpha < 1.0)
        losses.append(metrics["loss"])
        errors.append(1.0 - metrics["acc"] if "acc" in metrics else metrics["loss"])
    return errors, losses


def _fingerprint(perms: dict[str, Any]) -> tuple:
    return tuple((name, tuple(perms[name].tolist())) for name in sorted(perms))


def _spread(objectives: list[float]) -> float:
    """(max - min) / |max|: how far apart the restarts' objectives are, relative to the best."""
    top = max(objectives)
    return (top - min(objectives)) / abs(top) if top else 0.0
