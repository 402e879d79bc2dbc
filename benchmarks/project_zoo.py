"""Projected wall time of a whole zoo on this machine, from two short runs of its full grid.

The zoo's grid is trained for real with `zoobench.generate` (the default executor and runtime, so
on a GPU machine every GPU busy with several units each), on fabricated data (the real file
format, tests/fabricate.py) that is a fraction `f` of the dataset's size, so that every cell takes
its real number of steps per epoch times `f`. Two runs, of E1 and E2 epochs, give the grid's wall
time per epoch at that size, T(E2) - T(E1) over E2 - E1, and the fixed costs (worker start-up,
data loading, epoch-0 evaluation) as what is left; the projection is

    fixed + epochs_of_the_recipe x time_per_epoch / f.

It assumes that time per epoch scales with the number of images (true once a batch's cost is
independent of how many batches there are), and leaves out the loss-landscape annotation.

    python benchmarks/project_zoo.py --widths 2,4 --batch-sizes 256,1024 --fraction 0.02 --epochs 1,4   # CPU demo
    python benchmarks/project_zoo.py --fraction 0.1                      # the full cifar10_r18 grid, on a GPU node
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import zoobench
from zoobench.spec.grid import model_keys

# tests/fabricate.py writes fake datasets in the real file formats; it is not part of the package,
# so it is imported from the repository's tests/ folder.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fabricate import fabricate  # noqa: E402

FULL_SIZES = {"cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000), "svhn": (73_257, 26_032)}


def timed_run(spec, widths, batch_sizes, epochs: int, data_root: Path, home: Path, workers: int | None) -> float:
    """Wall time of generating the (restricted) grid from scratch with `epochs` epochs per model."""
    short = spec.with_overrides({"training.epochs": epochs, "training.checkpoint_epochs": [0, epochs],
                                 "evaluation.epoch": epochs})
    started = time.perf_counter()
    report = zoobench.generate(short, zoobench.Store(home), loads=widths, temperatures=batch_sizes,
                               execution=zoobench.Execution(workers=workers, data_root=data_root))
    if report.failed:
        raise SystemExit(f"models failed: {report.failed}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="cifar10_r18", help="a zoo whose dataset is one of " + ", ".join(FULL_SIZES))
    parser.add_argument("--widths", help="comma-separated subset of the grid's widths (default: all)")
    parser.add_argument("--batch-sizes", help="comma-separated subset of the grid's batch sizes (default: all)")
    parser.add_argument("--fraction", type=float, default=0.1, help="fabricated data size / the real dataset's")
    parser.add_argument("--epochs", default="1,3", help="the two short runs' epochs, E1,E2")
    parser.add_argument("--workers", type=int, default=None, help="zoobench worker processes (default: per GPU/core)")
    args = parser.parse_args()
    spec = zoobench.load_spec(args.zoo)
    if spec.data.dataset not in FULL_SIZES:
        raise SystemExit(f"{args.zoo} trains on {spec.data.dataset}; this script knows " + ", ".join(FULL_SIZES))
    split = lambda text: text.split(",") if text else None  # noqa: E731
    widths, batch_sizes = split(args.widths), split(args.batch_sizes)
    first, second = (int(e) for e in args.epochs.split(","))
    n_train, n_test = (max(1, round(n * args.fraction)) for n in FULL_SIZES[spec.data.dataset])
    with tempfile.TemporaryDirectory() as folder:
        data_root = Path(folder) / "data"
        fabricate(spec.data.dataset, data_root, n_train=n_train, n_test=n_test)
        times = {e: timed_run(spec, widths, batch_sizes, e, data_root, Path(folder) / f"home-{e}", args.workers)
                 for e in (first, second)}
    per_epoch = (times[second] - times[first]) / (second - first)
    if per_epoch <= 0.05 * times[first]:
        raise SystemExit(f"{first} epochs took {times[first]:.1f} s, {second} epochs {times[second]:.1f} s: the "
                         "difference is within the noise; use a larger --fraction or further apart --epochs")
    fixed = times[first] - first * per_epoch
    projected = fixed + spec.training.epochs * per_epoch / args.fraction
    models = len(model_keys(spec, widths, batch_sizes))
    print(f"{args.zoo}: {models} models, {n_train} of {FULL_SIZES[spec.data.dataset][0]} training images "
          f"(fraction {args.fraction}); {first} epochs: {times[first]:.1f} s, {second} epochs: {times[second]:.1f} s")
    print(f"per epoch of the grid at this size: {per_epoch:.1f} s; fixed costs: {fixed:.1f} s")
    print(f"projected for {spec.training.epochs} epochs on the full data: {projected / 3600:.1f} h")


if __name__ == "__main__":
    main()
