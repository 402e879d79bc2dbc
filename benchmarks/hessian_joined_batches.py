"""Hessian metrics with the fixed batches joined vs one batch at a time, side by side.

The `hessian` metric joins its 10 fixed batches of 64 into larger batches where the dataset's loss is a
mean over examples (`zoobench.landscape.hvp`); one batch at a time is what PyHessian and curvlinops do
with a data loader. Both compute the same Hessian: the script prints the time of the whole metric
(Lanczos top eigenvalue and Hutch++ trace, 100 products each) both ways, their ratio, and the relative
difference of the two results. Models: digits_resnet's ResNet-18 (CIFAR stem, BatchNorm) at the given
widths, freshly initialized and in eval mode, on the digits training batches. Ratios from one run on one
machine, not timed tests.

    python benchmarks/hessian_joined_batches.py                    # widths 4 and 16, about 3 minutes on 2 cores
    python benchmarks/hessian_joined_batches.py --widths 8 --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

import zoobench
from zoobench.data import load_data
from zoobench.landscape.metrics.hessian import HessianSettings, curvature
from zoobench.models import build_model, initialize


class OneBatchAtATime:
    """The dataset as it is, except that it does not let the Hessian join its batches."""

    examplewise_loss = False

    def __init__(self, data) -> None:
        self.data = data

    def __getattr__(self, name: str):
        return getattr(self.data, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="4,16", help="comma-separated ResNet-18 widths")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, the same for both")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = zoobench.load_spec("digits_resnet")
    data = load_data(spec.recipe())
    settings = HessianSettings()
    print(f"{'width':>5}  {'one at a time':>13}  {'joined':>7}  {'ratio':>5}  {'eigenvalue diff':>15}  {'trace diff':>10}")
    for width in (int(w) for w in args.widths.split(",")):
        recipe = spec.recipe()
        recipe["model"]["options"]["width"] = width
        torch.manual_seed(0)
        model = build_model(recipe)
        initialize(model, recipe["training"]["init"])
        model.eval()
        seconds, results = [], []
        for dataset in (OneBatchAtATime(data), data):
            started = time.perf_counter()
            results.append(curvature(model, dataset, settings))
            seconds.append(time.perf_counter() - started)
        (one_at_a_time, joined), (seconds_one, seconds_joined) = results, seconds

        def difference(key: str) -> float:
            return abs(joined[key] - one_at_a_time[key]) / abs(one_at_a_time[key])

        print(f"{width:>5}  {seconds_one:>12.1f}s  {seconds_joined:>6.1f}s  {seconds_one / seconds_joined:>5.2f}  "
              f"{difference('hessian_top_eigenvalue'):>15.1e}  {difference('hessian_trace'):>10.1e}")


if __name__ == "__main__":
    main()
