"""Fused evaluation of many models vs one at a time, side by side: what a method unit does per cell.

The models are the ones a method evaluates on one digits_mlp cell: its 3 seeds at 11 sparsities
(prune) or at 25 points of an interpolation path (rebasin). `Cell.evaluate_many` runs them
as one stacked forward pass; the baseline calls `Cell.evaluate` per model. Trains the cell's seeds
first (a few seconds), then prints both timings and their ratio.

    python benchmarks/fused_evaluation.py
    python benchmarks/fused_evaluation.py --width 128 --batch-size 32 --models 75
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import torch

import zoobench
from zoobench.bench.cells import open_cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", default="64")
    parser.add_argument("--batch-size", default="32")
    parser.add_argument("--models", type=int, default=33, help="models per evaluation (33 = 3 seeds x 11 sparsities)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = zoobench.load_spec("digits_mlp").with_overrides({"training.epochs": 2, "training.checkpoint_epochs": [],
                                                            "evaluation.epoch": 2})
    with tempfile.TemporaryDirectory() as folder:
        store = zoobench.Store(folder)
        zoobench.generate(spec, store, loads=[args.width], temperatures=[args.batch_size],
                          execution=zoobench.Execution(workers=1, progress=False))
        cell = next(iter(open_cells(store.zoo(spec)).values()))
        seeds = cell.models()
        models = [copy.deepcopy(seeds[i % len(seeds)]) for i in range(args.models)]
        timings = {}
        for name, evaluate in (("one at a time", lambda split: [cell.evaluate(m, split) for m in models]),
                               ("fused", lambda split: cell.evaluate_many(models, split, stacked=True))):
            evaluate("test")  # warm-up
            started = time.perf_counter()
            for _ in range(args.repeats):
                evaluate("train")
                evaluate("test")
            timings[name] = (time.perf_counter() - started) / args.repeats
    alone, fused = timings["one at a time"], timings["fused"]
    print(f"{args.models} models of w{args.width}-bs{args.batch_size}, train + test split, 1 thread")
    print(f"one at a time: {alone * 1000:7.1f} ms   fused: {fused * 1000:7.1f} ms   {alone / fused:.2f}x")


if __name__ == "__main__":
    main()
