"""Permutation symmetries of zoobench's architectures and weight matching (Ainsworth et al. 2022).

Hidden units can be reordered without changing what a network computes, as long as every tensor
that reads or writes those units is reordered the same way. A `PermutationSpec` names those
permutations and, for every state-dict key, which permutation acts on each of its axes; it is
derived from the keys and shapes of a state dict, so checkpoints never need a live model.

Convention: a permutation ``perm`` of size n reorders an axis as ``tensor.index_select(axis, perm)``,
i.e. unit i of the permuted network is unit ``perm[i]`` of the original.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from zoobench.method import ZoobenchError

# BatchNorm statistics are permuted with their channels but not matched on: they are not learned
# weights, and every merged or interpolated model re-estimates them anyway.
_STATISTICS = ("running_mean", "running_var")
_NORM_TENSORS = ("weight", "bias", *_STATISTICS)

State = dict[str, Tensor]


@dataclass(frozen=True)
class PermutationSpec:
    """Key -> the permutation acting on each axis of that tensor (None: axis not permuted).

    Keys absent from ``axes`` (e.g. ``num_batches_tracked``) are never touched.
    """

    axes: dict[str, tuple[str | None, ...]]
    sizes: dict[str, int]  # permutation -> number of units it reorders

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


def weight_matching(spec: PermutationSpec, reference: State, other: State, max_iterations: int = 100,
                    seed: int = 0, device: str = "cpu") -> tuple[dict[str, Tensor], int]:
    """Permutations of ``other`` that maximise its inner product with ``reference``, and the sweeps used.

    Coordinate descent (Ainsworth et al. 2022, Algorithm 1): starting from the identity, each
    permutation in turn, in a random order per sweep (seeded), is the linear assignment that is
    optimal with the others held fixed. A permutation is replaced only when its objective strictly
    improves, so ties cannot make it cycle; the descent stops after a sweep that changes nothing,
    or after ``max_iterations`` sweeps. The similarities are computed in float64 on ``device``
    (a sweep costs about two matrix products per weight, minutes for a wide ResNet-50 on a CPU);
    the assignments are solved on the CPU. The permutations come back on the CPU.
    """
    if max_iterations < 1:
        raise ValueError(f"weight matching needs max_iterations >= 1, got {max_iterations}")
    reference = {key: tensor.detach().to(device, torch.float64) for key, tensor in reference.items()}
    other = {key: tensor.detach().to(device, torch.float64) for key, tensor in other.items()}
    perms = {name: torch.arange(size, device=device) for name, size in spec.sizes.items()}
    matched = spec.matched_axes()
    names = sorted(spec.sizes)
    rng = np.random.default_rng(seed)
    for sweep in range(1, max_iterations + 1):
        changed = False
        for name in (names[i] for i in rng.permutation(len(names))):
            size = spec.sizes[name]
            similarity = torch.zeros(size, size, dtype=torch.float64, device=device)
            for key, axis in matched[name]:
                a = reference[key].movedim(axis, 0).reshape(size, -1)
                b = _permute(spec, perms, key, other[key], skip=axis).movedim(axis, 0).reshape(size, -1)
                similarity += a @ b.T
            _, columns = linear_sum_assignment(similarity.cpu().numpy(), maximize=True)
            candidate = torch.from_numpy(columns).long().to(device)
            rows = torch.arange(size, device=device)
            old = similarity[rows, perms[name]].sum().item()
            if similarity[rows, candidate].sum().item() > old + 1e-12 * abs(old):
                perms[name] = candidate
                changed = True
        if not changed:
            break
    return {name: perm.cpu() for name, perm in perms.items()}, sweep


def average(states: list[State]) -> State:
    """The elementwise mean of floating tensors; integer buffers (num_batches_tracked) are the first's."""
    return {key: torch.stack([s[key] for s in states]).mean(0) if tensor.is_floating_point() else tensor.clone()
            for key, tensor in states[0].items()}


def merge(spec: PermutationSpec, states: list[State], max_iterations: int = 100, seed: int = 0,
          device: str = "cpu") -> tuple[State, list[State], list[int]]:
    """Align every state to the first by weight matching and average them all.

    Returns (merged, aligned states with the first unchanged, sweeps per aligned state).
    """
    aligned, sweeps = [states[0]], []
    for state in states[1:]:
        perms, used = weight_matching(spec, states[0], state, max_iterations, seed, device)
        aligned.append(apply_permutation(spec, perms, state))
        sweeps.append(used)
    return average(aligned), aligned, sweeps
