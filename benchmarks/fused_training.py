"""Fused multi-seed training vs the same seeds trained one after another, side by side, per cell.

Both write the same models to a store (zoobench's own trainer, one thread); the script prints the
wall time of each and their ratio for a few digits_mlp cells, from the hot (batch 4) to the cold
(batch 256) end, where per-step overhead matters most and least.

    python benchmarks/fused_training.py
    python benchmarks/fused_training.py --cells 64x8,128x32 --epochs 5
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

import zoobench
from zoobench.fused import train_fused
from zoobench.grid import model_keys
from zoobench.training import train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="16x4,64x16,128x64,32x256", help="width x batch size, comma-separated")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per model (the recipe's schedule, shortened)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = zoobench.load_spec("digits_mlp").with_overrides({"training.epochs": args.epochs,
                                                            "training.checkpoint_epochs": [0],
                                                            "evaluation.epoch": args.epochs})
    print(f"digits_mlp cells, {len(spec.grid.seeds)} seeds, {args.epochs} epochs, 1 thread")
    for text in args.cells.split(","):
        width, batch = text.split("x")
        keys = model_keys(spec, [width], [batch])
        with tempfile.TemporaryDirectory() as folder:
            zoo = zoobench.Store(folder).zoo(spec)
            with zoo.writing():
                train_fused(spec, keys, zoo)  # warm-up: first-call costs stay out of both timings
            timings = {}
            for name in ("one at a time", "fused"):
                zoo = zoobench.Store(f"{folder}/{name}").zoo(spec)
                with zoo.writing():
                    started = time.perf_counter()
                    if name == "fused":
                        train_fused(spec, keys, zoo)
                    else:
                        for key in keys:
                            train_model(spec, key, zoo)
                    timings[name] = time.perf_counter() - started
        alone, fused = timings["one at a time"], timings["fused"]
        print(f"w{width:>4} bs{batch:>4}: one at a time {alone:6.2f} s, fused {fused:6.2f} s, {alone / fused:.2f}x")


if __name__ == "__main__":
    main()
