"""`WeightDataset`: a zoo, or a `wsl` export of one, as a torch dataset of weights and targets.

Weight-space learners (NFN, SANE, hyper-representations) train on (weights, property) pairs. This
dataset yields them from a zoobench store or from an export folder alike, for one shape group and
one part of a named split (`zoobench.data.splits`), with the weights flat (one float32 vector, the
export's row) or as a state dict.

Hidden units come in arbitrary orders, so the same function has many weight vectors; SANE
canonicalises by git re-basin before learning. ``canonicalise=seed`` does that within each cell:
every model is weight-matched (`zoobench.models.permutation`) onto the model of that seed in its
own cell at the same epoch, which leaves what each model computes unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from zoobench.errors import UsageError
from zoobench.store import ZooStore
from zoobench.wsl.export import local_splits
from zoobench.wsl.rows import zoo_rows

PARTS = ("train", "val", "test")


class WeightDataset(Dataset):
    """(weights, targets) per weight row of one shape group; targets a float32 vector in `targets` order.

    `source`: a `ZooStore` (weights read from its checkpoints) or the folder of a ``wsl`` export.
    `split`/`part`: which rows (default: all of the group). `group`: needed when the zoo has several
    shape groups (e.g. widths). Rows whose targets are missing are left out (`left_out` counts them).
    """

    def __init__(self, source: ZooStore | str | Path, targets: Sequence[str] = ("test_acc",),
                 split: str | None = None, part: str = "train", group: str | None = None,
                 epochs: Sequence[int] | None = None, flat: bool = True, canonicalise: int | None = None,
                 matching_restarts: int = 4) -> None:
        self.source = _ZooSource(source, epochs) if isinstance(source, ZooStore) else _ExportSource(Path(source))
        self.group = self.source.choose(group)
        table = self.source.table(self.group)
        rows = np.arange(len(table)) if split is None else _part(self.source.splits(self.group), split, part)
        missing = [t for t in targets if t not in table.columns]
        if missing:
            numbers = [c for c in table.columns if table[c].dtype.kind in "fi"]
            raise UsageError(f"unknown targets {missing}; this zoo's rows have {', '.join(numbers)}")
        values = table[list(targets)].to_numpy(dtype=np.float64)[rows]
        known = np.isfinite(values).all(axis=1)
        self.rows, self.targets = rows[known], torch.as_tensor(values[known], dtype=torch.float32)
        self.target_names, self.left_out = list(targets), int((~known).sum())
        self.metrics = table.iloc[self.rows].reset_index(drop=True)
        self.flat, self.canonicalise, self.restarts = flat, canonicalise, matching_restarts
        self._table, self._references = table, {}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | dict[str, torch.Tensor], torch.Tensor]:
        row = int(self.rows[index])
        state = self.source.state(self.group, row)
        if self.canonicalise is not None:
            state = self._canonical(row, state)
        weights = torch.cat([t.reshape(-1).float() for t in state.values()]) if self.flat else state
        return weights, self.targets[index]

    def _canonical(self, row: int, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        from zoobench.models.permutation import apply_permutation, permutation_spec, weight_matching

        me = self._table.iloc[row]
        key = (me["cell"], int(me["epoch"]))
        if key not in self._references:
            same = self._table[(self._table["cell"] == key[0]) & (self._table["epoch"] == key[1])
                               & (self._table["seed"] == self.canonicalise)]
            if same.empty:
                raise UsageError(f"canonicalise={self.canonicalise}: cell {key[0]} has no model of that seed at "
                                 f"epoch {key[1]}; seeds there: {sorted(set(self._cell_seeds(key)))}")
            self._references[key] = self.source.state(self.group, int(same.index[0]))
        reference = self._references[key]
        spec = permutation_spec(self.source.architecture, reference)
        found = weight_matching(spec, reference, state, restarts=self.restarts)
        best = max(found, key=lambda m: m.objective)
        return apply_permutation(spec, best.perms, state)

    def _cell_seeds(self, key: tuple[str, int]) -> list[int]:
        return self._table.loc[self._table["cell"] == key[0], "seed"].tolist()


def _part(splits: dict[str, dict], split: str, part: str) -> np.ndarray:
    if split not in splits:
        raise UsageError(f"unknown split '{split}'; this zoo has {', '.join(splits) or 'none'}")
    if part not in PARTS:
        raise UsageError(f"unknown part '{part}'; valid: {', '.join(PARTS)}")
    return np.asarray(splits[split][part], dtype=int)


class _ZooSource:
    """Rows straight from a store: nothing to export first."""

    def __init__(self, zoo: ZooStore, epochs: Sequence[int] | None) -> None:
        self.zoo, self.rows = zoo, zoo_rows(zoo, epochs)
        self.architecture = zoo.spec.model.architecture
        self.groups = {g.name: g for g in self.rows.groups}

    def choose(self, group: str | None) -> str:
        return _choose(list(self.groups), group)

    def table(self, group: str):
        return self.rows.table.iloc[self.groups[group].rows].reset_index(drop=True)

    def splits(self, group: str) -> dict[str, dict]:
        return local_splits(self.rows, self.groups[group])

    def state(self, group: str, row: int) -> dict[str, torch.Tensor]:
        found = self.rows.table.iloc[self.groups[group].rows[row]]
        state = self.zoo.load_state(found["model_id"], int(found["epoch"]))
        return {key: state[key] for key in self.groups[group].shapes}  # module order, as exported


class _ExportSource:
    """Rows of a `wsl` export folder, its matrices memory-mapped."""

    def __init__(self, root: Path) -> None:
        import pandas as pd

        try:
            meta = json.loads((root / "export.json").read_text())
            self.index = pd.read_csv(root / "index.csv")
        except (OSError, ValueError) as error:
            raise UsageError(f"{root} is not a complete zoobench export ({error}); write one with `zoobench zoo "
                             f"export ZOO {root} --format wsl`") from None
        if meta.get("format") != "wsl" or not meta.get("complete"):
            raise UsageError(f"{root} holds a {meta.get('format')} export (complete: {meta.get('complete')}); "
                             f"WeightDataset reads complete wsl exports")
        self.root, self.architecture = root, meta.get("architecture")
        self.groups = list(self.index["group"])
        self._open: dict[str, Any] = {}

    def choose(self, group: str | None) -> str:
        return _choose(self.groups, group)

    def _files(self, group: str):
        import pandas as pd

        if group not in self._open:
            folder = self.root / self.index.set_index("group").loc[group, "folder"]
            self._open[group] = (np.load(folder / "weights.npy", mmap_mode="r", allow_pickle=False),
                                 pd.read_csv(folder / "layout.csv"), pd.read_csv(folder / "metrics.csv"),
                                 json.loads((folder / "splits.json").read_text()))
        return self._open[group]

    def table(self, group: str):
        return self._files(group)[2]

    def splits(self, group: str) -> dict[str, dict]:
        return self._files(group)[3]

    def state(self, group: str, row: int) -> dict[str, torch.Tensor]:
        weights, layout = self._files(group)[:2]
        values = np.asarray(weights[row])
        return {t.name: torch.from_numpy(values[t.offset:t.offset + t.numel].copy()).reshape(json.loads(t.shape))
                .to(getattr(torch, t.dtype)) for t in layout.itertuples()}


def _choose(groups: list[str], group: str | None) -> str:
    if group is None and len(groups) == 1:
        return groups[0]
    if group not in groups:
        what = "several shape groups (models of different shapes cannot share a batch)" if group is None \
            else f"no shape group {group!r}"
        raise UsageError(f"the zoo has {what}; choose one with group=: {', '.join(groups)}")
    return group
