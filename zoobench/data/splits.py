"""Named train/validation/test splits of a zoo's models, for learning from weights.

A random split measures how well a predictor interpolates within the zoo; the splits across phases
and loads measure what no weight-space benchmark has measured so far: whether it extrapolates to a
phase or a model size it never saw. Rows are assigned by group (every row of one model, or of one
cell, lands on the same side), so near-copies never sit on both sides of a split.

Conventions (the `ModelZooDataset` ones where they exist): 70/15/15 after a seeded shuffle (seed 42);
the validation part of a cross split is drawn from its training side in the same 70:15 ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

SEED = 42
FRACTIONS = (0.7, 0.15, 0.15)  # train, validation, test
UNDER_FITTED = ("I", "II", "III")
PHASE_IV = ("IV-A", "IV-B")


@dataclass(frozen=True)
class Split:
    """Row indices of each part (sorted), and what the split tests, in one line."""

    name: str
    description: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def to_json(self) -> dict:
        return {"description": self.description, "train": self.train.tolist(), "val": self.val.tolist(),
                "test": self.test.tolist()}


def random_split(groups: Sequence[Hashable], seed: int | Sequence[int] = SEED,
                 fractions: tuple[float, float, float] = FRACTIONS, name: str = "random", of: str = "group") -> Split:
    """Groups shuffled with `seed`, then cut into train, validation and test by `fractions` (test and
    validation get at least one group each when there are three or more groups)."""
    labels = _unique(groups)
    order = np.random.default_rng(seed).permutation(len(labels))
    test = max(1, round(fractions[2] * len(labels))) if len(labels) >= 3 else 0
    val = max(1, round(fractions[1] * len(labels))) if len(labels) >= 3 else 0
    part = {labels[i]: 2 if rank < test else 1 if rank < test + val else 0 for rank, i in enumerate(order)}
    return _split(name, f"random {fractions[0]:.0%}/{fractions[1]:.0%}/{fractions[2]:.0%} by {of}, seed {seed}",
                  groups, part)


def holdout_split(groups: Sequence[Hashable], train_side: Sequence[bool], test_side: Sequence[bool], name: str,
                  description: str, seed: int | Sequence[int] = SEED,
                  fractions: tuple[float, float, float] = FRACTIONS) -> Split:
    """Test on the rows of `test_side`; train on `train_side`, whose groups lose a seeded validation part
    in the train:validation ratio of `fractions`. Rows on neither side are in no part."""
    train_side, test_side = np.asarray(train_side, bool), np.asarray(test_side, bool)
    if (train_side & test_side).any():
        raise ValueError(f"split {name}: a row is on both sides")
    labels = _unique([g for g, side in zip(groups, train_side) if side])
    order = np.random.default_rng(seed).permutation(len(labels))
    val = round(fractions[1] / (fractions[0] + fractions[1]) * len(labels)) if len(labels) >= 2 else 0
    part = {labels[i]: 1 if rank < val else 0 for rank, i in enumerate(order)}
    part.update({g: 2 for g, side in zip(groups, test_side) if side})
    return _split(name, description, groups, part, train_side | test_side)


def standard_splits(groups: Sequence[Hashable], loads: Sequence[float], phases: Sequence[str | None],
                    seed: int | Sequence[int] = SEED, of: str = "model") -> dict[str, Split]:
    """The splits every export and probe offers, over rows described by their group (the model, or the
    cell where seeds must stay together), load and phase:

    - ``random``: 70/15/15 by group;
    - ``cross_phase``: train on the under-fitted phases (I, II, III), test on Phase IV (IV-A, IV-B);
    - ``cross_load``: train on the smaller loads, test on the larger half (the ``len // 2`` largest
      load values; with 5 widths: train on the 3 smallest, test on the 2 largest).

    Rows without a phase are in no part of ``cross_phase``; a split with an empty side is left out.
    """
    phases = [p if isinstance(p, str) else None for p in phases]
    found = {"random": random_split(groups, seed, of=of)}
    found["cross_phase"] = holdout_split(
        groups, [p in UNDER_FITTED for p in phases], [p in PHASE_IV for p in phases], "cross_phase",
        "train on phases I-III, test on phase IV (IV-A, IV-B)", seed)
    values = sorted(set(loads))
    large = values[len(values) - len(values) // 2:]
    if large:
        found["cross_load"] = holdout_split(
            groups, [v not in large for v in loads], [v in large for v in loads], "cross_load",
            f"train on loads {_listing(values[:len(values) - len(large)])}, test on loads {_listing(large)}", seed)
    return {name: split for name, split in found.items() if len(split.train) and len(split.test)}


def _split(name: str, description: str, groups: Sequence[Hashable], part: dict, member=None) -> Split:
    assigned = np.array([part.get(g, -1) for g in groups], dtype=int)
    if member is not None:
        assigned[~np.asarray(member, bool)] = -1
    train, val, test = (np.flatnonzero(assigned == k) for k in range(3))
    return Split(name, description, train, val, test)


def _unique(groups: Sequence[Hashable]) -> list:
    """The distinct groups in first-seen order (the shuffle then depends on the seed alone)."""
    return list(dict.fromkeys(groups))


def _listing(values: Sequence[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)
