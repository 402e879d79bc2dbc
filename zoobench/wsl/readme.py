"""The README each export carries: how to read it without zoobench, written for the zoo it describes."""

from __future__ import annotations

import textwrap

from zoobench.data.splits import SEED


def wsl(spec, rows, epochs: list[int]) -> str:
    return _head(spec, rows, epochs, "wsl") + f"""
## Each group folder

- `weights.npy`: float32, one row per weight row (model x epoch), `np.load(path, mmap_mode="r")`
  (no pickle needed);
- `layout.csv`: `name,shape,offset,numel,dtype`, one line per tensor of the PyTorch state dict, in
  the order of the row: tensor `name` is `row[offset:offset + numel].reshape(shape)` (`shape` a JSON
  list), cast to `dtype` (e.g. BatchNorm's `num_batches_tracked` is int64, stored exactly);
- `metrics.csv`: one line per weight row, same order: `model_id, epoch, cell, load, temperature,
  seed, phase`, then train/test loss and accuracy, the generalisation gap (train - test accuracy),
  every other number logged at that epoch, the model's own annotations (e.g. `hessian_trace`) and
  its cell's (`cell_cka`, `cell_mc`, ...; seed means). `phase` is the cell's phase at the zoo's
  metric epoch, {spec.metric_epoch}, whatever the row's epoch; annotations are those of the row's epoch
  (empty where the zoo was not annotated then);
- `splits.json`: the export's splits restricted to this group, in the group's row numbering;
- `manifest.json`: the checkpoints the matrix was made from (zoobench's resume bookkeeping).

```python
import json, numpy as np, pandas as pd, torch
weights = np.load("{rows.groups[0].name}/weights.npy", mmap_mode="r")
layout = pd.read_csv("{rows.groups[0].name}/layout.csv")
row = weights[0]
state = {{r.name: torch.from_numpy(np.array(row[r.offset:r.offset + r.numel]))
            .reshape(json.loads(r.shape)).to(getattr(torch, r.dtype)) for r in layout.itertuples()}}
```
"""


def unterthiner(spec, rows, epochs: list[int]) -> str:
    return _head(spec, rows, epochs, "unterthiner") + f"""
## Each group folder: the Small CNN Zoo layout

As Unterthiner et al. 2020 (`google-research/dnn_predict_accuracy`) publish it and NFN's `ZooDataset`
reads it:

- `weights.npy`: float32, one row per weight row (model x epoch);
- `layout.csv`: `varname,start_idx,end_idx,shape`; kernels are `<layer>/kernel:0` in TensorFlow's
  order (dense: in x out; convolution: h x w x in x out), biases `<layer>/bias:0`; `shape` is a
  Python tuple literal; layers in forward order, each kernel before its bias;
- `metrics.csv.gz`: one line per weight row: `step` (the epoch), `test_accuracy`, `train_accuracy`,
  `test_loss`, `train_loss`, `config.{spec.grid.load.field}`, `config.{spec.grid.temperature.field}`,
  `config.seed`, `model_id`, the phase and every annotation (as in the `wsl` format);
- `idcs.csv`: a shuffle of the rows (seed {SEED}), one integer per line: NFN's `idcs_file`;
- `splits.json`: the export's splits restricted to this group, in the group's row numbering.

NFN's `ZooDataset(data_path="<group folder>", mode="train", idcs_file="<group folder>/idcs.csv")`
reads a group as is, once its hard-coded `metrics["step"] == 86` names the exported epoch
({', '.join(map(str, epochs))}).
"""


def _head(spec, rows, epochs: list[int], format: str) -> str:
    groups = textwrap.fill("Models of different shapes cannot share a matrix: one folder per shape group, "
                           + ", ".join(f"`{g.name}` ({len(g.rows)} rows)" for g in rows.groups) + ".", 100)
    splits = "\n".join(f"- `{name}`: {split.description} ({len(split.train)}/{len(split.val)}/{len(split.test)} "
                       f"rows)" for name, split in rows.splits.items())
    left = f" {len(rows.left_out)} models have no rows (diverged, or no checkpoint at these epochs)." \
        if rows.left_out else ""
    return f"""# {spec.name} ({spec.fingerprint}): weights for weight-space learning, format `{format}`

Written by `zoobench zoo export {spec.name} DIR --format {format}`; {len(rows.table)} rows (model x
epoch) at epochs {', '.join(map(str, epochs))}.{left} Grid: load = `{spec.grid.load.field}`, temperature =
`{spec.grid.temperature.field}`.

{groups}
`export.json` says what was exported and whether the export is complete (an interrupted one says
`"complete": false`; re-running the command completes it). `index.csv` lists the groups (`group,
folder, first_row, rows, models, loads, columns`): the export's global row numbering runs through
the groups in that order, group `g`'s row `i` being global row `first_row + i`. `splits.json` maps
each split name to `{{"description", "train", "val", "test"}}` lists of global rows; a model's epochs
are always on one side:

{splits}
"""
