"""Permutation symmetries of zoobench's architectures, weight matching and MergeMany (Ainsworth et al. 2022).

Hidden units can be reordered without changing what a network computes, as long as every tensor
that reads or writes those units is reordered the same way. A `PermutationSpec` names those
permutations and, for every state-dict key, which permutation acts on each of its axes; it is
derived from the keys and shapes of a state dict, so checkpoints never need a live model.

`weight_matching` aligns one state to another, `merge_many` aligns several to each other (none is
the reference). Both are coordinate descents that end in a local optimum depending on where they
start and in which order they visit the permutations, so both run several seeded restarts and
return every restart's result with its objective: the caller keeps the best and can report how
far apart they were.

Convention: a permutation ``perm`` of size n reorders an axis as ``tensor.index_select(axis, perm)``,
i.e. unit i of the permuted network is unit ``perm[i]`` of the original.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from zoobench.errors import ZoobenchError

# BatchNorm statistics are permuted with their channels but not matched on: they are not learned
# weights, and every merged or interpolated model re-estimates them anyway.
_STATISTICS = ("running_mean", "running_var")
_NORM_TENSORS = ("weight", "bias", *_STATISTICS)

State = dict[str, Tensor]
Perms = dict[str, Tensor]  # permutation name -> permutation


@dataclass(frozen=True)
class PermutationSpec:
    """Key -> the permutation acting on each axis of that tensor (None: axis not permuted).

    Keys absent from ``axes`` (e.g. ``num_batches_tracked``) are never touched.
    """

    axes: dict[str, tuple[str | None, ...]]
    sizes: dict[str, int]  # permutation -> number of units it reorders

    @functools.cached_property
    def matched_axes(self) -> dict[str, list[tuple[str, int]]]:
        """Permutation -> the (key, axis) pairs whose weights decide it (statistics left out)."""
        found: dict[str, list[tuple[str, int]]] = {name: [] for name in self.sizes}
        for key, perms in self.axes.items():
            if key.endswith(_STATISTICS):
                continue
            for axis, name in enumerate(perms):
                if name is not None:
                    found[name].append((key, axis))
        return found

    @functools.cached_property
    def matched_keys(self) -> list[str]:
        """The keys weight matching compares: those with a permuted axis (statistics left out)."""
        return [key for key, perms in self.axes.items() if any(perms) and not key.endswith(_STATISTICS)]

    @functools.cached_property
    def readers(self) -> dict[str, set[str]]:
        """Permutation -> the permutations whose assignment reads it (another axis of a tensor they share)."""
        found: dict[str, set[str]] = {name: set() for name in self.sizes}
        for name, pairs in self.matched_axes.items():
            for key, axis in pairs:
                for other_axis, other in enumerate(self.axes[key]):
                    if other is not None and other_axis != axis:
                        found[other].add(name)
        return found


def permutation_spec(architecture: str, state: State) -> PermutationSpec:
    """The spec of a checkpoint of one of zoobench's architecture families.

    Raises ZoobenchError for families without a spec and for state dicts whose keys do not have
    the family's layout (a spec that silently missed a tensor would break the network).
    """
    builders = {"mlp": _mlp_axes, "resnet": _resnet_axes}
    if architecture not in builders:
        raise ZoobenchError(f"rebasin supports the mlp and resnet families; {architecture} has no permutation spec yet")
    axes = builders[architecture](state)
    unknown = sorted(k for k in state if k not in axes and not k.endswith("num_batches_tracked"))
    if unknown:
        raise ZoobenchError(f"{architecture} checkpoint has tensors the permutation spec does not know: {unknown[:3]}")
    sizes: dict[str, int] = {}
    for key, perms in axes.items():
        for axis, name in enumerate(perms):
            if name is not None and sizes.setdefault(name, state[key].shape[axis]) != state[key].shape[axis]:
                raise ZoobenchError(f"permutation '{name}' gets {state[key].shape[axis]} units from '{key}' "
                                    f"but {sizes[name]} elsewhere: the checkpoint is not a plain {architecture}")
    return PermutationSpec(axes, sizes)


def _mlp_axes(state: State) -> dict[str, tuple[str | None, ...]]:
    """nn.Sequential of Linear layers (keys "<index>.weight/bias"): each hidden layer's units get
    a permutation named after the layer; inputs and outputs stay fixed."""
    indices = sorted({int(key.split(".")[0]) for key in state if re.fullmatch(r"\d+\.(weight|bias)", key)})
    axes: dict[str, tuple[str | None, ...]] = {}
    previous = None
    for position, index in enumerate(indices):
        out = None if position == len(indices) - 1 else f"{index}"
        axes[f"{index}.weight"] = (out, previous)
        axes[f"{index}.bias"] = (out,)
        previous = out
    return axes


def _resnet_axes(state: State) -> dict[str, tuple[str | None, ...]]:
    """torchvision-named ResNet (BasicBlock or Bottleneck). The residual stream is added to
    itself across a stage, so all of a stage's blocks share one permutation; a stage gets a new
    one only where a projection shortcut (downsample) maps the previous stream into it, otherwise
    (ResNet-18's first stage) it continues the stem's. Channels inside a block are free."""
    axes: dict[str, tuple[str | None, ...]] = {}

    def conv(key: str, out: str | None, inp: str | None) -> None:
        axes[key] = (out, inp, None, None)

    def norm(prefix: str, perm: str) -> None:
        axes.update({f"{prefix}.{name}": (perm,) for name in _NORM_TENSORS})

    stream = "conv1"
    conv("conv1.weight", stream, None)
    norm("bn1", stream)
    blocks = sorted({(int(m[1]), int(m[2])) for key in state if (m := re.match(r"layer(\d+)\.(\d+)\.", key))})
    for stage, index in blocks:
        prefix = f"layer{stage}.{index}"
        out = stream
        if f"{prefix}.downsample.0.weight" in state:
            out = f"layer{stage}"
            conv(f"{prefix}.downsample.0.weight", out, stream)
            norm(f"{prefix}.downsample.1", out)
        convs = sorted(int(m[1]) for key in state if (m := re.fullmatch(rf"{prefix}\.conv(\d+)\.weight", key)))
        inp = stream
        for number in convs:
            perm = out if number == convs[-1] else f"{prefix}.conv{number}"
            conv(f"{prefix}.conv{number}.weight", perm, inp)
            norm(f"{prefix}.bn{number}", perm)
            inp = perm
        stream = out
    axes["fc.weight"] = (None, stream)
    axes["fc.bias"] = (None,)
    return axes


def apply_permutation(spec: PermutationSpec, perms: dict[str, Tensor], state: State) -> State:
    """A new state dict with every axis of the spec reordered; other tensors are shared as they are."""
    return {key: _permute(spec, perms, key, tensor) for key, tensor in state.items()}


def _permute(spec: PermutationSpec, perms: dict[str, Tensor], key: str, tensor: Tensor,
             skip: int | None = None) -> Tensor:
    for axis, name in enumerate(spec.axes.get(key, ())):
        if name is not None and axis != skip:
            tensor = tensor.index_select(axis, perms[name])
    return tensor


@dataclass(frozen=True, eq=False)
class Matching:
    """Where one restart of `weight_matching` ended."""

    perms: Perms  # permutations of ``other`` (on the CPU), as `apply_permutation` takes them
    objective: float  # sum over the matched tensors of <reference, permuted other>, in float64
    sweeps: int  # coordinate-descent sweeps used


def weight_matching(spec: PermutationSpec, reference: State, other: State, max_iterations: int = 100,
                    seed: int = 0, device: str = "cpu", restarts: int = 1) -> list[Matching]:
    """Permutations of ``other`` that maximise its inner product with ``reference``: one `Matching`
    per restart, in restart order (``max(found, key=lambda m: m.objective)`` is the best).

    Coordinate descent (Ainsworth et al. 2022, Algorithm 1, see `_descend`). Restart 0 starts from
    the identity with visiting orders drawn from ``seed`` (the published algorithm, and version 1
    of zoobench's); restart k >= 1 from random permutations with its own visiting orders, both drawn
    from ``(seed, k)``. The identity is no better a start than a random one: the seeds' units come
    in arbitrary orders. The similarities are computed in float64 on ``device`` (a sweep costs
    about two matrix products per weight, minutes for a wide ResNet-50 on a CPU); the assignments
    are solved on the CPU.
    """
    _check(max_iterations, restarts)
    reference, other = _float64(reference, device), _float64(other, device)
    found = []
    for restart in range(restarts):
        rng = np.random.default_rng(seed if restart == 0 else [seed, restart])
        perms = _start(spec, restart, rng, device)
        sweeps, _ = _descend(spec, reference, other, perms, rng, max_iterations)
        found.append(Matching(_cpu(perms), _objective(spec, reference, other, perms), sweeps))
    return found


@dataclass(frozen=True, eq=False)
class MergeRun:
    """Where one restart of `merge_many` ended."""

    perms: list[Perms]  # per state, in the order they were given (on the CPU)
    objective: float  # sum over pairs of states of <aligned i, aligned j> on the matched tensors, float64
    passes: int  # passes over the states used


def merge_many(spec: PermutationSpec, states: list[State], max_iterations: int = 100, seed: int = 0,
               device: str = "cpu", restarts: int = 1) -> list[MergeRun]:
    """MergeMany (Ainsworth et al. 2022, Algorithm 3): permutations that align every state to all
    the others; one `MergeRun` per restart (`aligned_average` merges one).

    No state is the reference: in a random order, each state in turn is matched to the sum of all
    the others as they are aligned so far, which raises the sum of the pairwise inner products of
    the aligned states (that sum only grows). A visit solves each of the state's permutations once,
    in a random order, instead of running a weight matching to convergence, and only those whose
    inputs changed since they were last solved (as in `_descend`): a state's permutation reads its
    own permutations that share a tensor with it and every other state's permutations of those
    tensors. Both schedules stop where no single assignment raises the sum; this one needs fewer
    assignments (572 against 964 for 8 restarts on a width-128 digits cell). It ends when none is
    left to solve, or after ``max_iterations`` passes over the states. Restart 0 starts from the
    states as they are, restart k >= 1 from random permutations; orders and starts are drawn from
    ``(seed, k)``.

    The random orders index the states ranked by their squared weight norm (`_ranking`: no
    permutation changes it), not by their position, so the runs depend on the set of states and
    the seed, never on the order they are listed in.
    """
    _check(max_iterations, restarts)
    readers = spec.readers
    names = sorted(spec.sizes)
    touched = {name: sorted({key for key, _ in spec.matched_axes[name]}) for name in names}  # tensors it moves
    order = _ranking(spec, states)
    wide = [_float64(states[i], device) for i in order]
    everything = {(i, name) for i in range(len(wide)) for name in names}
    runs = []
    for restart in range(restarts):
        rng = np.random.default_rng([seed, restart])
        perms = [_start(spec, restart, rng, device) for _ in wide]
        aligned = [{key: _permute(spec, p, key, state[key]) for key in spec.matched_keys}
                   for p, state in zip(perms, wide)]
        total = {key: sum(state[key] for state in aligned) for key in spec.matched_keys}
        stale, passes = set(everything), 0
        while stale and passes < max_iterations:
            passes += 1
            for i in rng.permutation(len(wide)):
                for name in (names[k] for k in rng.permutation(len(names))):
                    if (i, name) not in stale:
                        continue
                    stale.discard((i, name))
                    others = {key: total[key] - aligned[i][key] for key in touched[name]}
                    if _assign(spec, name, others, wide[i], perms[i]):
                        for key in touched[name]:
                            new = _permute(spec, perms[i], key, wide[i][key])
                            total[key] = total[key] - aligned[i][key] + new
                            aligned[i][key] = new
                        stale |= {(j, reader) for j in range(len(wide))
                                  for reader in (readers[name] if j == i else readers[name] | {name})}
        # sum over pairs i < j of <a_i, a_j> = (|sum of a_i|^2 - sum of |a_i|^2) / 2, the sum recomputed
        objective = 0.5 * sum((sum(a[key] for a in aligned).square().sum()
                               - sum(a[key].square().sum() for a in aligned)).item() for key in spec.matched_keys)
        listed = [_cpu(perms[order.index(i)]) for i in range(len(states))]
        runs.append(MergeRun(listed, objective, passes))
    return runs


def aligned_average(spec: PermutationSpec, states: list[State], perms: list[Perms]) -> tuple[State, list[State]]:
    """(the average of the permuted states, the permuted states in the given order). The average is
    summed in the order of `_ranking`, so listing the states differently gives the same tensors."""
    aligned = [apply_permutation(spec, p, state) for p, state in zip(perms, states)]
    return average([aligned[i] for i in _ranking(spec, states)]), aligned


def average(states: list[State]) -> State:
    """The elementwise mean of floating tensors; integer buffers (num_batches_tracked) are the first's."""
    return {key: torch.stack([s[key] for s in states]).mean(0) if tensor.is_floating_point() else tensor.clone()
            for key, tensor in states[0].items()}


def _check(max_iterations: int, restarts: int) -> None:
    if max_iterations < 1 or restarts < 1:
        raise ValueError(f"matching needs max_iterations >= 1 and restarts >= 1, got {max_iterations} and {restarts}")


def _float64(state: State, device: str) -> State:
    return {key: tensor.detach().to(device, torch.float64)
            for key, tensor in state.items() if tensor.is_floating_point()}


def _cpu(perms: Perms) -> Perms:
    return {name: perm.cpu() for name, perm in perms.items()}


def _ranking(spec: PermutationSpec, states: list[State]) -> list[int]:
    """Indices of ``states`` by their squared norm on the matched tensors (float64), which no
    permutation changes; states with bit-identical norms (copies) keep their given order."""
    norms = [sum(state[key].double().square().sum().item() for key in spec.matched_keys) for state in states]
    return sorted(range(len(states)), key=lambda i: (norms[i], i))


def _start(spec: PermutationSpec, restart: int, rng: np.random.Generator, device: str) -> Perms:
    """A restart's starting permutations: the identity for restart 0, else random ones from ``rng``."""
    if restart == 0:
        return {name: torch.arange(size, device=device) for name, size in spec.sizes.items()}
    return {name: torch.from_numpy(rng.permutation(spec.sizes[name])).to(device) for name in sorted(spec.sizes)}


def _descend(spec: PermutationSpec, reference: State, other: State, perms: Perms, rng: np.random.Generator,
             max_iterations: int) -> tuple[int, bool]:
    """Coordinate descent on ``perms`` in place: (sweeps used, whether any permutation changed).

    Each sweep visits the permutations in a random order and makes each the assignment that is
    optimal with the others held fixed (`_assign`). A permutation is solved again only after one it
    reads has changed; until then its assignment would come out the same. The descent stops when
    none is left to solve (what a sweep that changes nothing would show, without that sweep), or
    after ``max_iterations`` sweeps.
    """
    names = sorted(spec.sizes)
    stale, changed, sweeps = set(names), False, 0
    while stale and sweeps < max_iterations:
        sweeps += 1
        for name in (names[i] for i in rng.permutation(len(names))):
            if name in stale:
                stale.discard(name)
                if _assign(spec, name, reference, other, perms):
                    stale |= spec.readers[name]
                    changed = True
    return sweeps, changed


def _assign(spec: PermutationSpec, name: str, reference: State, other: State, perms: Perms) -> bool:
    """Make ``perms[name]`` the linear assignment that maximises <reference, permuted other> on the
    tensors it moves, the other permutations held fixed; whether it changed. It changes only when
    the objective strictly improves, so ties cannot make a descent cycle."""
    size = spec.sizes[name]
    similarity = 0
    for key, axis in spec.matched_axes[name]:
        a = reference[key].movedim(axis, 0).reshape(size, -1)
        b = _permute(spec, perms, key, other[key], skip=axis).movedim(axis, 0).reshape(size, -1)
        similarity = similarity + a @ b.T
    similarity = similarity.cpu().numpy()
    rows, columns = linear_sum_assignment(similarity, maximize=True)
    old = similarity[rows, perms[name].cpu().numpy()].sum()
    if similarity[rows, columns].sum() > old + 1e-12 * abs(old):
        perms[name] = torch.from_numpy(columns).to(perms[name].device)
        return True
    return False


def _objective(spec: PermutationSpec, reference: State, other: State, perms: Perms) -> float:
    """Sum over the matched tensors of <reference, permuted other>: what the descent maximises."""
    return sum((reference[key] * _permute(spec, perms, key, other[key])).sum().item() for key in spec.matched_keys)
