"""Git re-basin (Ainsworth et al. 2022): merge a cell's seeds after aligning them by weight matching.

Seeds of one cell are trained from different initialisations, so their hidden units come in
arbitrary orders and a plain weight average mixes unrelated units. Weight matching permutes each
seed's units to the first seed's (`zoobench.methods.permutation`), after which the average can
behave like its members, and the linear path between two seeds can lose its loss barrier. How
much alignment helps is a property of the cell's phase, which is what this benchmark compares.

Per cell it reports (all floats):

- ``merged_acc``/``merged_loss``: the aligned average of all seeds, BatchNorm re-estimated, on the
  test split; ``naive_merged_acc``/``naive_merged_loss``: the same without alignment;
  ``member_acc``/``member_loss``: the members' mean; ``gain`` = merged_acc - member_acc (the
  headline, the paper's quantity: the merge against its members, not member quality) and
  ``loss_gain`` = member_loss - merged_loss (positive: the merge beats its members).
- ``barrier_naive``/``barrier_aligned``: the error barrier between the first two seeds along the
  linear path, without and with aligning the second to the first: max over alpha of
  error(alpha) - ((1 - alpha) error(0) + alpha error(1)), on ``error_split`` (default train, as
  in Ainsworth et al. and Entezari et al.), error = 1 - accuracy; ``loss_barrier_naive``/
  ``loss_barrier_aligned``: the same for the loss. Every interior point is BatchNorm-recalibrated.
- ``match_iterations``: mean coordinate-descent sweeps per aligned seed; ``models``: seeds merged.

Tasks whose evaluation reports no accuracy (the convection PINN) get only the loss keys: the
``*_acc`` keys and ``gain`` are left out (the headline is then missing, not invented), and
``barrier_*`` are loss barriers, equal to ``loss_barrier_*``. Supported families: mlp and resnet;
vit and gpt2 raise a ZoobenchError, which the runner records as the cell's failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from zoobench.method import Cell, Context, Method, Range, ZoobenchError, barrier, linear_path, seed_mean

State = dict[str, Any]  # a state dict: name -> tensor


class Rebasin(Method):
    name = "rebasin"
    version = "1"
    headline = "gain"  # the paper's map (PTMZ gitrebasin_acc_test_delta): the merge against its members
    higher_is_better = True
    key_metrics = ("merged_acc", "member_acc", "barrier_aligned")

    @dataclass(frozen=True)
    class Config:
        alphas: Annotated[int, Range(3)] = 25  # points on each linear path, endpoints included (one between)
        max_iterations: Annotated[int, Range(1)] = 100  # cap on coordinate-descent sweeps per matched pair
        seed: int = 0  # order in which the permutations are visited
        error_split: Literal["train", "test"] = "train"  # split of the barriers: "train" (the papers') or "test"

    def run(self, cell: Cell, ctx: Context) -> dict[str, float]:
        from zoobench.methods.permutation import average, merge, permutation_spec

        config = ctx.config
        if len(cell.model_ids) < 2:
            raise ZoobenchError(f"rebasin needs at least 2 healthy seeds, cell has {len(cell.model_ids)}")
        states = [cell.state(model_id) for model_id in cell.model_ids]
        spec = permutation_spec(cell.recipe["model"]["architecture"], states[0])
        merged, aligned, sweeps = merge(spec, states, config.max_iterations, config.seed, ctx.device)

        members = [cell.evaluate(_load(cell, state)) for state in states]
        scores = {
            "merged": _merged_score(cell, merged),
            "naive_merged": _merged_score(cell, average(states)),
            "member": seed_mean(members),
        }
        result = {f"{name}_{key}": score[key] for name, score in scores.items() for key in ("loss", "acc")
                  if key in score}
        result["loss_gain"] = result["member_loss"] - result["merged_loss"]
        if "merged_acc" in result:
            result["gain"] = result["merged_acc"] - result["member_acc"]
        for kind, second in (("naive", states[1]), ("aligned", aligned[1])):
            error, loss = _barriers(cell, states[0], second, config)
            result[f"barrier_{kind}"] = error
            result[f"loss_barrier_{kind}"] = loss
        result["match_iterations"] = sum(sweeps) / len(sweeps)
        result["models"] = float(len(states))
        return result


def _load(cell: Cell, state: State) -> Any:
    """A model of the cell's architecture on its device, carrying ``state``."""
    model = cell.model(cell.model_ids[0])
    model.load_state_dict(state)
    return model.eval()


def _merged_score(cell: Cell, state: State) -> dict[str, float]:
    """Test metrics of averaged weights, after re-estimating the BatchNorm statistics that an
    average of running statistics gets wrong."""
    model = _load(cell, state)
    cell.recalibrate(model)
    return cell.evaluate(model)


def _barriers(cell: Cell, first: State, second: State, config: Any) -> tuple[float, float]:
    """(error barrier, loss barrier) along the linear path from ``first`` to ``second``.

    One evaluation per point serves both: error_fn hands linear_path the error and keeps the loss.
    """
    losses: list[float] = []

    def error(model: Any) -> float:
        metrics = cell.evaluate(model, config.error_split)
        losses.append(metrics["loss"])
        return 1.0 - metrics["acc"] if "acc" in metrics else metrics["loss"]

    path = linear_path(_load(cell, first), _load(cell, second), error, cell.recalibrate, config.alphas)
    return barrier(path["linear_errors"]), barrier(losses)

