"""Fused multi-seed training vs the same seeds trained one after another, side by side, per cell.

Both write the same models to a store (zoobench's own trainer, one thread); the script prints the
wall time of each and their ratio for a few cells, from the hot (small batch) to the cold end, where
per-step overhead matters most and least. `--zoo cifar10_r18` trains ResNet-18 cells on fabricated
CIFAR-10 (the real file format, from tests/fabricate.py) with the recipe's augmentation: the
measurement behind `zoobench.train.fused.CPU_CONV_LIMIT`.

    python benchmarks/fused_training.py
    python benchmarks/fused_training.py --cells 64x8,128x32 --epochs 5
    python benchmarks/fused_training.py --zoo cifar10_r18 --cells 2x8,4x32,8x64,16x128 --epochs 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

import zoobench
from zoobench.spec.grid import model_keys
from zoobench.train.loop import train_models

# tests/fabricate.py writes fake datasets in the real file formats; it is not part of the package,
# so it is imported from the repository's tests/ folder.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fabricate import fabricate_cifar10  # noqa: E402


CPU = zoobench.Runtime("cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="digits_mlp", choices=["digits_mlp", "cifar10_r18"])
    parser.add_argument("--cells", default="16x4,64x16,128x64,32x256", help="width x batch size, comma-separated")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per model (the recipe's schedule, shortened)")
    parser.add_argument("--train-images", type=int, default=1024, help="fabricated CIFAR-10 images (cifar10_r18)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = zoobench.load_spec(args.zoo).with_overrides({"training.epochs": args.epochs,
                                                        "training.checkpoint_epochs": [0],
                                                        "evaluation.epoch": args.epochs})
    print(f"{args.zoo} cells, {len(spec.grid.seeds)} seeds, {args.epochs} epochs, 1 thread")
    with tempfile.TemporaryDirectory() as folder:
        data_root = None
        if args.zoo == "cifar10_r18":
            data_root = Path(folder) / "data"
            fabricate_cifar10(data_root, args.train_images, 256)
        for text in args.cells.split(","):
            width, batch = text.split("x")
            keys = model_keys(spec, [width], [batch])
            zoo = zoobench.Store(f"{folder}/warm-up-{text}").zoo(spec)
            with zoo.writing():
                train_models(spec, keys, zoo, data_root, CPU)  # warm-up: first-call costs stay out of both timings
            timings = {}
            for name in ("one at a time", "fused"):
                zoo = zoobench.Store(f"{folder}/{name}-{text}").zoo(spec)
                with zoo.writing():
                    started = time.perf_counter()
                    train_models(spec, keys, zoo, data_root, CPU, fused=name == "fused")
                    timings[name] = time.perf_counter() - started
            alone, fused = timings["one at a time"], timings["fused"]
            print(f"w{width:>4} bs{batch:>4}: one at a time {alone:6.2f} s, fused {fused:6.2f} s, {alone / fused:.2f}x")


if __name__ == "__main__":
    main()
