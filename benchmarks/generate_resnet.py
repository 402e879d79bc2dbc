"""Zoo generation: zoobench vs a plain per-model PyTorch loop with the same recipe, side by side, on ResNet-18.

The plain loop is what the published Phase Transition Model Zoo code does per model (its
`train_zoo_cifar10_resnet18_wide.py` and `NN_tune_trainable`): torchvision's CIFAR10 with PIL
transforms (crop, flip, rotation, ToTensor, Normalize) behind a shuffling DataLoader, SGD + OneCycle
stepped per batch, an evaluation of the train and test loaders before training and of the test
loader after each epoch, a checkpoint at the stored epochs; one model after another in one process,
in fp32. Its DataLoader has no worker processes unless --loader-workers says so (the published code
uses 6 on nodes with 12 cores per GPU; on a 2-core machine they would compete with training).
zoobench trains the same models with `zoobench.generate` (data in memory as uint8, augmentation on
tensors, a cell's seeds fused as grouped convolutions where `zoobench.train.fused.fusable` allows it,
worker processes; on CUDA its default runtime, bf16 autocast and channels_last).

Both read the same fabricated CIFAR-10 files (tests/fabricate.py, the real on-disk format) and train
a micro zoo of cifar10_r18: its recipe with a few epochs, on a part of its grid, all 3 seeds. The
script runs both cell by cell, alternating, and prints per cell the wall time and training images/s
of each and their ratio, and zoobench's achieved TFLOP/s (training passes, counted with
FlopCounterMode; on a GPU also as a share of `--peak-tflops` and nvidia-smi's mean utilisation),
then the totals; last, one `generate` call over all cells, which is what a user runs (with several
workers, a fused cell is one unit, so per-cell calls leave workers idle).

    python benchmarks/generate_resnet.py                           # w2,4,8 x bs16,64 (a few minutes on 2 cores)
    python benchmarks/generate_resnet.py --widths 2,8 --batch-sizes 64 --train-images 1000 --epochs 1   # under a minute
    python benchmarks/generate_resnet.py --device cuda --train-images 10000 --widths 2,4,8,16,32,64
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

import zoobench
from zoobench.data.vision import channel_stats
from zoobench.train.generate import GenerationReport
from zoobench.spec.grid import ModelKey, model_keys, model_spec
from zoobench.spec import ZooSpec
from zoobench.models import build_model, initialize

# tests/fabricate.py writes fake datasets in the real file formats; it is not part of the package,
# so it is imported from the repository's tests/ folder.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fabricate import fabricate_cifar10  # noqa: E402


class FabricatedCIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR10 without its md5 checks, which fabricated files fail (zoobench's loader
    skips them too); the class names of batches.meta are not needed."""

    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:
        pass


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: str) -> tuple[float, float]:
    """Mean loss and accuracy over a loader, read once at the end (the published code's test_epoch)."""
    model.eval()
    loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    count = len(loader.dataset)
    return loss.item() / count, correct.item() / count


def plain_loop(spec: ZooSpec, keys: list[ModelKey], root: Path, stats: tuple[list[float], list[float]],
               device: str, loader_workers: int, out: Path) -> float:
    """Train `keys` one after another as the published code does; returns the wall time."""
    augmentation = spec.data.augmentation
    normalize = transforms.Normalize(*stats)
    train_transform = transforms.Compose([
        transforms.RandomCrop(32, padding=augmentation.crop_padding), transforms.RandomHorizontalFlip(),
        transforms.RandomRotation(augmentation.rotation_degrees), transforms.ToTensor(), normalize])
    started = time.perf_counter()
    for key in keys:
        recipe = model_spec(spec, key)
        t = recipe.training
        train = FabricatedCIFAR10(root, train=True, transform=train_transform)
        test = FabricatedCIFAR10(root, train=False, transform=transforms.Compose([transforms.ToTensor(), normalize]))
        torch.manual_seed(key.seed)
        model = build_model(recipe.recipe())
        initialize(model, t.init)
        model = model.to(device)
        loader = DataLoader(train, batch_size=t.batch_size, shuffle=True, num_workers=loader_workers)
        test_loader = DataLoader(test, batch_size=t.batch_size,  # the published code's test batch size
                                 num_workers=loader_workers)
        optimizer = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, t.lr, epochs=t.epochs, steps_per_epoch=len(loader),
                                                       pct_start=t.pct_start)
        evaluate(model, loader, device)  # epoch 0: the published code evaluates the (augmented) train loader too
        evaluate(model, test_loader, device)
        if 0 in spec.stored_epochs:
            torch.save(model.state_dict(), out / f"{key.id}-0.pt")
        for epoch in range(1, t.epochs + 1):
            model.train()
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
            evaluate(model, test_loader, device)
            if epoch in spec.stored_epochs:
                torch.save(model.state_dict(), out / f"{key.id}-{epoch}.pt")
    return time.perf_counter() - started


def training_flops(spec: ZooSpec, width: int) -> float:
    """FLOPs of one training image (forward and backward) of the cell's ResNet, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_model(spec.with_overrides({"model.width": width}).recipe())
        images = torch.randn(2, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        model(images).sum().backward()
    return counter.get_total_flops() / 2


class GpuUtilisation:
    """Mean GPU utilisation (nvidia-smi's, sampled every 200 ms) over a `with` block; None without nvidia-smi."""

    def __enter__(self) -> GpuUtilisation:
        self.process = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) if shutil.which("nvidia-smi") else None
        self.mean: float | None = None
        return self

    def __exit__(self, *exc) -> None:
        if self.process is None:
            return
        self.process.terminate()
        samples = [float(line) for line in self.process.communicate()[0].split() if line.strip()]
        self.mean = sum(samples) / len(samples) if samples else None


def trained(report: GenerationReport) -> GenerationReport:
    """The report of a generate call that trained every model it was asked for (else its timing means nothing)."""
    if report.failed or report.diverged or report.skipped:
        raise SystemExit(f"zoobench did not train every model: failed {report.failed}, diverged {report.diverged}, "
                         f"skipped {report.skipped}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="2,4,8", help="comma-separated widths of the cifar10_r18 grid")
    parser.add_argument("--batch-sizes", default="16,64", help="comma-separated batch sizes of the grid")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per model (the recipe's schedule, shortened)")
    parser.add_argument("--train-images", type=int, default=2000, help="fabricated CIFAR-10 training images")
    parser.add_argument("--test-images", type=int, default=500, help="fabricated CIFAR-10 test images")
    parser.add_argument("--workers", type=int, default=None, help="zoobench worker processes (default: one per core)")
    parser.add_argument("--device", default="cpu", help="torch device for both sides, e.g. cuda")
    parser.add_argument("--loader-workers", type=int, default=0, help="DataLoader worker processes of the plain loop")
    parser.add_argument("--peak-tflops", type=float, default=989.4,
                        help="the GPU's dense bf16 peak, for --device cuda (default: H100 SXM)")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    spec = zoobench.load_spec("cifar10_r18").with_overrides({
        "training.epochs": args.epochs, "training.checkpoint_epochs": [0, args.epochs],
        "evaluation.epoch": args.epochs})
    seeds = len(spec.grid.seeds)
    print(f"cifar10_r18, {len(widths)} widths x {len(batch_sizes)} batch sizes x {seeds} seeds, {args.epochs} epochs, "
          f"{args.train_images} train / {args.test_images} test images (fabricated)")
    print(f"device {args.device}, {torch.get_num_threads()} torch threads, "
          f"zoobench workers: {args.workers or 'one per core'}; load average {os.getloadavg()[0]:.2f} at the start")
    cuda = args.device.startswith("cuda")
    print(f"{'cell':<10} {'plain s':>8} {'zoobench s':>10} {'ratio':>6} {'plain img/s':>11} {'zoobench img/s':>14} "
          f"{'zoobench TFLOP/s':>16}" + (f" {'% of peak':>9} {'GPU util %':>10}" if cuda else ""))
    images = seeds * args.epochs * args.train_images  # training images per cell
    plain_total = zoobench_total = 0.0
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "data"
        execution = zoobench.Execution(workers=args.workers, runtime=zoobench.Runtime(args.device), data_root=root,
                                       progress=False)
        fabricated = fabricate_cifar10(root, args.train_images, args.test_images)
        mean, std = channel_stats(torch.from_numpy(fabricated.x_train))  # the statistics zoobench normalises with
        stats = (mean.tolist(), std.tolist())
        (Path(folder) / "plain").mkdir()
        for batch in batch_sizes:
            for width in widths:
                keys = model_keys(spec, [width], [batch])
                plain = plain_loop(spec, keys, root, stats, args.device, args.loader_workers, Path(folder) / "plain")
                with GpuUtilisation() as utilisation:
                    report = trained(zoobench.generate(spec, zoobench.Store(Path(folder) / "cells"), loads=[width],
                                                       temperatures=[batch], execution=execution))
                plain_total += plain
                zoobench_total += report.seconds
                tflops = training_flops(spec, width) * images / report.seconds / 1e12  # training passes only
                gpu = (f" {100 * tflops / args.peak_tflops:9.1f} "
                       f"{utilisation.mean if utilisation.mean is not None else float('nan'):10.0f}") if cuda else ""
                print(f"{keys[0].cell.id:<10} {plain:8.1f} {report.seconds:10.1f} {plain / report.seconds:5.2f}x "
                      f"{images / plain:11.0f} {images / report.seconds:14.0f} {tflops:16.4f}{gpu}")
        total_images = images * len(widths) * len(batch_sizes)
        print(f"{'total':<10} {plain_total:8.1f} {zoobench_total:10.1f} {plain_total / zoobench_total:5.2f}x "
              f"{total_images / plain_total:11.0f} {total_images / zoobench_total:14.0f}")
        grid = trained(zoobench.generate(spec, zoobench.Store(Path(folder) / "grid"), loads=widths,
                                         temperatures=batch_sizes, execution=execution))
    print(f"zoobench, whole grid in one generate call: {grid.seconds:.1f} s, {total_images / grid.seconds:.0f} img/s; "
          f"speed-up over the plain loop: {plain_total / grid.seconds:.2f}x")
    print(f"load average {os.getloadavg()[0]:.2f} at the end (other work on the machine makes timings noisy)")


if __name__ == "__main__":
    main()
