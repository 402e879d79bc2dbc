"""Every GPU measurement the project needs, in one run on one GPU, printed as one table.

Sized for under 8 minutes on one H200; each measurement has its own time cap (``CAPS``): an item that
would start after its measurement's cap is reported as skipped, and one still running at the cap is
stopped and reported as such, so the whole run cannot overrun by more than its start-up.

In the order they run:

    peak        training throughput of wide cells (widest first), the seeds fused and one model alone,
                in model TFLOP/s (FlopCounterMode's count of a training pass, times training images per
                second; augmentation and optimizer steps included in the time) and as a share of the
                GPU's dense bf16 peak
    channels    channels_last on vs off (bf16 autocast), training throughput per cell
    hessian     Hessian-vector products of ResNet-18 cells (fp32, random CIFAR-shaped batches): one
                vector at a time vs zoobench's default passes vs forward-over-reverse. On the CPU,
                batched passes lost for convolutions, so conv nets go one vector at a time there
                (``zoobench.landscape.hessian.BLOCK``); on GPUs they are batched, unmeasured until this row
    precision   bf16 autocast vs fp32 (convolutions in TF32, PyTorch's default): per cell the same
                seeds trained the same steps, the seeds' mean test accuracy and loss (fp32 evaluation),
                and the speed ratio
    generation  zoobench.generate vs the plain per-model PyTorch loop (the published code's loop:
                PIL transforms behind a DataLoader with 6 workers, fp32, one model after another;
                ``benchmarks/generate_resnet.py``) on small ResNet-18 cells, 3 seeds each
    units       zoobench.generate over several small cells with 1, 2 and 4 units sharing the GPU
                (``Execution.units_per_gpu``; worker start-up included, as a user pays it)

Data: nothing can be downloaded on the GPU machine, so the training measurements read synthetic
CIFAR-10-shaped images written in the real file format (``tests/fabricate.py``: one colour per class
plus noise). They are easy, so any training that works reaches a high test accuracy on them and the
precision rows also compare test losses; none of these numbers is a CIFAR-10 accuracy. Where
safetensors is missing, checkpoints are written with torch.save instead (the header says which).

Runs from the repository root without installing zoobench (the GPU machine has the repository and
torch, not the package), and on a CPU in ``--smoke`` mode: every measurement, tiny, to check the
script end to end in well under a minute.

    python3 benchmarks/gpu.py                          # the GPU run, under 8 minutes on an H200
    python3 benchmarks/gpu.py --smoke                  # on any machine, CPU
    python3 benchmarks/gpu.py --only peak,channels --json results.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
# The repository's zoobench (not necessarily installed) and the sibling benchmark generate_resnet.py.
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch  # noqa: E402


def _checkpoint_writer() -> str:
    """How checkpoints get written. zoobench writes them with safetensors, which the GPU machine may
    lack (it has torch, not zoobench's dependencies); there a stand-in writes them with torch.save:
    the files are thrown away, only the time spent writing them counts. Done when this file is
    imported, so that the worker processes of the units measurement (which import it as their main
    module) get it too."""
    import importlib
    import types

    try:
        importlib.import_module("safetensors.torch")
        return "safetensors"
    except ImportError:
        package, module = types.ModuleType("safetensors"), types.ModuleType("safetensors.torch")
        module.save_file = lambda tensors, path: torch.save(tensors, path)
        module.load_file = lambda path, device="cpu": torch.load(path, map_location=device, weights_only=True)
        package.torch, package.SafetensorError = module, RuntimeError
        sys.modules.update({"safetensors": package, "safetensors.torch": module})
        return "torch.save (safetensors is not installed here)"


CHECKPOINTS = _checkpoint_writer()

import zoobench  # noqa: E402
from generate_resnet import plain_loop, trained, training_flops  # noqa: E402  (it puts tests/ on the path)
from fabricate import fabricate_cifar10  # noqa: E402
from zoobench.data.vision import channel_stats  # noqa: E402
from zoobench.spec.grid import ModelKey, model_keys  # noqa: E402
from zoobench.train.fused import FusedTraining  # noqa: E402
from zoobench.train.loop import SeparateTraining  # noqa: E402

# Dense bf16 tensor-core peaks in TFLOP/s (without sparsity), the first name found in the device's
# name wins; --peak-tflops overrides.
PEAKS = (("H200", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4), ("A100", 312.0), ("L40S", 362.0))
# Seconds per measurement on the GPU: 6 3/4 minutes together, leaving over a minute for start-up
# (imports, the device, fabricating the data) within 8 minutes.
CAPS = {"peak": 50.0, "channels": 35.0, "hessian": 30.0, "precision": 50.0, "generation": 120.0, "units": 130.0}
MEASUREMENTS = tuple(CAPS)
DATA_NOTE = "synthetic CIFAR-10-shaped data (tests/fabricate.py)"


@dataclass(frozen=True)
class Plan:
    """What each measurement trains. `gpu()` is the real run; `smoke()` the same code in seconds on a CPU."""

    device: str
    train_images: int  # fabricated CIFAR-10 images (a multiple of every batch size: whole steps)
    test_images: int
    generation_cells: tuple[tuple[int, int], ...]  # (width, batch size), 3 seeds each
    generation_epochs: int
    loader_workers: int  # DataLoader workers of the plain loop (the published code: 6)
    peak_cells: tuple[tuple[int, int], ...]
    channels_cells: tuple[tuple[int, int], ...]
    precision_cells: tuple[tuple[int, int], ...]
    precision_epochs: int
    units: tuple[int, ...]  # units sharing the GPU
    units_cells: tuple[tuple[int, int], ...]
    units_epochs: int
    warm_steps: int  # steps before a throughput is timed (per-shape first-call costs)
    timed_steps: int
    hessian_widths: tuple[int, ...]
    hessian_batches: tuple[int, int]  # (batches, batch size) the loss averages over
    hessian_products: int  # Hessian-vector products timed per variant
    caps: dict[str, float] = field(default_factory=lambda: dict(CAPS))

    @staticmethod
    def gpu(device: str = "cuda") -> Plan:
        small = ((4, 32), (8, 64), (16, 128))
        return Plan(device, train_images=6144, test_images=1024, generation_cells=small, generation_epochs=2,
                    loader_workers=6, peak_cells=((256, 256), (128, 256), (64, 256)),
                    channels_cells=((8, 64), (64, 256)), precision_cells=((8, 64), (64, 256)), precision_epochs=2,
                    units=(1, 2, 4), units_cells=((4, 32), (4, 64), (8, 32), (8, 64)), units_epochs=3,
                    warm_steps=5, timed_steps=20, hessian_widths=(8, 64), hessian_batches=(4, 64),
                    hessian_products=32)

    @staticmethod
    def smoke() -> Plan:
        tiny = ((2, 16),)
        return Plan("cpu", train_images=32, test_images=16, generation_cells=tiny, generation_epochs=1,
                    loader_workers=0, peak_cells=tiny, channels_cells=tiny, precision_cells=tiny, precision_epochs=1,
                    units=(1, 2), units_cells=((2, 8), (2, 16)), units_epochs=1, warm_steps=1, timed_steps=1,
                    hessian_widths=(2,), hessian_batches=(1, 8), hessian_products=2, caps={name: 120.0 for name in CAPS})


@dataclass
class Row:
    measurement: str
    setting: str
    result: str
    detail: str = ""
    values: dict[str, float] = field(default_factory=dict)  # the numbers behind result and detail (--json)


class OverCap(BaseException):
    """Raised in the main thread when a measurement runs past its cap; a BaseException (as
    KeyboardInterrupt) so that no ``except Exception`` on the way swallows it, and the local
    executor stops its workers on the way out."""


@contextmanager
def hard_cap(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` (SIGALRM; a no-op where there is none)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def interrupt(signum, frame):
        raise OverCap

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Bench:
    """The shared set-up: the plan, the spec, the fabricated data and the runtimes."""

    def __init__(self, plan: Plan, folder: Path, peak_tflops: float | None) -> None:
        self.plan, self.folder, self.peak = plan, folder, peak_tflops
        self.data_root = folder / "data"
        fabricated = fabricate_cifar10(self.data_root, plan.train_images, plan.test_images)
        mean, std = channel_stats(torch.from_numpy(fabricated.x_train))  # what zoobench normalises with
        self.stats = (mean.tolist(), std.tolist())
        # By path: an uninstalled source tree has no zoobench.zoos package to find specs by name in.
        self.spec = zoobench.load_spec(ROOT / "zoos" / "cifar10_r18.toml")
        self.cuda = torch.device(plan.device).type == "cuda"
        self.bf16 = zoobench.Runtime(plan.device, "bf16", channels_last=self.cuda)
        self.fp32 = zoobench.Runtime(plan.device, "fp32", channels_last=self.cuda)

    def short(self, epochs: int):
        """The recipe with `epochs` epochs (its OneCycle schedule over them), storing only the ends."""
        return self.spec.with_overrides({"training.epochs": epochs, "training.checkpoint_epochs": [0, epochs],
                                         "evaluation.epoch": epochs})

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def trainer(self, width: int, batch: int, runtime: zoobench.Runtime, fused: bool, epochs: int = 150):
        """A cell's trainer (its seeds fused, or its first seed alone) and the images of one of its steps."""
        spec = self.short(epochs)
        cell = model_keys(spec, [width], [batch])[0].cell
        if fused:
            return FusedTraining(spec, cell, self.data_root, runtime), batch * len(spec.grid.seeds)
        return SeparateTraining(spec, ModelKey(cell, spec.grid.seeds[0]), self.data_root, runtime), batch

    def images_per_second(self, trainer, step_images: int) -> float:
        """Training images per second over `timed_steps` steps, after `warm_steps` untimed ones."""
        trainer.steps = self.plan.warm_steps
        trainer.epoch()
        self.sync()
        trainer.steps = self.plan.timed_steps
        started = time.perf_counter()
        trainer.epoch()  # reads the steps' losses at the end, so the device has finished them
        self.sync()
        return self.plan.timed_steps * step_images / (time.perf_counter() - started)

    def release(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()


def cell_name(width: int, batch: int) -> str:
    return f"w{width}-bs{batch}"


def skipped(measurement: str, setting: str) -> Row:
    return Row(measurement, setting, "skipped", "would start past its cap")


def measure_peak(bench: Bench, deadline: float) -> Iterator[Row]:
    """Wide cells in bf16: the seeds fused (what zoobench trains) and one model alone."""
    for width, batch in bench.plan.peak_cells:
        per_image = training_flops(bench.spec, width)
        for fused in (True, False):
            setting = f"{cell_name(width, batch)}, {'3 seeds fused' if fused else '1 model'}"
            if time.monotonic() > deadline:
                yield skipped("peak", setting)
                continue
            trainer, step_images = bench.trainer(width, batch, bench.bf16, fused)
            rate = bench.images_per_second(trainer, step_images)
            del trainer
            bench.release()
            tflops = rate * per_image / 1e12
            share = f"{100 * tflops / bench.peak:.1f} % of peak" if bench.peak else "n/a (peak unknown)"
            yield Row("peak", setting, share, f"{tflops:.3g} TFLOP/s, {rate:,.0f} img/s",
                      {"tflops": tflops, "images_per_second": rate, "peak_share": tflops / bench.peak if bench.peak
                       else math.nan})


def measure_channels(bench: Bench, deadline: float) -> Iterator[Row]:
    """channels_last on and off, bf16, the seeds fused."""
    for width, batch in bench.plan.channels_cells:
        setting = f"{cell_name(width, batch)}, 3 seeds fused, bf16"
        if time.monotonic() > deadline:
            yield skipped("channels_last", setting)
            continue
        rates = {}
        for on in (True, False):
            trainer, step_images = bench.trainer(width, batch, replace(bench.bf16, channels_last=on), fused=True)
            rates[on] = bench.images_per_second(trainer, step_images)
            del trainer
            bench.release()
        yield Row("channels_last", setting, f"{rates[True] / rates[False]:.2f}x",
                  f"on {rates[True]:,.0f} img/s, off {rates[False]:,.0f} img/s",
                  {"on": rates[True], "off": rates[False]})


def measure_hessian(bench: Bench, deadline: float) -> Iterator[Row]:
    """Milliseconds per Hessian-vector product: a block of products one vector at a time (each batch's
    gradient graph shared), in zoobench's default passes, and forward-over-reverse in the same passes."""
    import torch.nn.functional as F

    from zoobench.landscape.hvp import make_hvp
    from zoobench.models import build_model

    plan, device = bench.plan, bench.plan.device
    count, size = plan.hessian_batches
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(size, 3, 32, 32, generator=generator).to(device),
                torch.randint(0, 10, (size,), generator=generator).to(device)) for _ in range(count)]

    def loss(model, batch):
        return F.cross_entropy(model(batch[0]), batch[1])

    for width in plan.hessian_widths:
        setting = f"ResNet-18 w{width}, {count} x {size} images, {plan.hessian_products} products"
        if time.monotonic() > deadline:
            yield skipped("hessian", setting)
            continue
        torch.manual_seed(0)
        model = build_model(bench.spec.with_overrides({"model.width": width}).recipe()).to(device).eval()
        default = make_hvp(model, loss, batches)
        passes = f"passes of {default.block}"  # zoobench's default
        variants = {"one at a time": make_hvp(model, loss, batches, block=1), passes: default,
                    "forward-over-reverse": make_hvp(model, loss, batches, "forward_over_reverse")}
        vectors = torch.randn(default.dim, plan.hessian_products, generator=generator).to(device)
        ms = {}
        for label, hvp in variants.items():
            hvp(vectors[:, :2])  # warm-up
            bench.sync()
            started = time.perf_counter()
            hvp(vectors)
            bench.sync()
            ms[label] = 1000 * (time.perf_counter() - started) / plan.hessian_products
        del model, variants, default
        bench.release()
        fastest = min(ms, key=ms.get)
        yield Row("hessian", setting, f"{ms['one at a time'] / ms[passes]:.2f}x ({passes} vs one at a time)",
                  "ms per product: " + ", ".join(f"{label} {value:.1f}" for label, value in ms.items())
                  + f"; fastest: {fastest}", ms)


def measure_precision(bench: Bench, deadline: float) -> Iterator[Row]:
    """bf16 autocast vs fp32: the same seeds, data order and steps; clean fp32 evaluation after."""
    epochs = bench.plan.precision_epochs
    for width, batch in bench.plan.precision_cells:
        setting = f"{cell_name(width, batch)}, 3 seeds, {epochs} epoch(s)"
        if time.monotonic() > deadline:
            yield skipped("bf16 vs fp32", setting)
            continue
        results = {}
        for name, runtime in (("fp32", bench.fp32), ("bf16", bench.bf16)):
            trainer, _ = bench.trainer(width, batch, runtime, fused=True, epochs=epochs)
            started = time.perf_counter()
            for _ in range(epochs):
                trainer.epoch()
            bench.sync()
            seconds = time.perf_counter() - started
            tests = [trainer.data.evaluate(trainer.model(i)) for i in range(len(trainer.keys))]
            results[name] = {"acc": sum(t["acc"] for t in tests) / len(tests),
                             "loss": sum(t["loss"] for t in tests) / len(tests), "seconds": seconds}
            del trainer
            bench.release()
        fp32, bf16 = results["fp32"], results["bf16"]
        yield Row("bf16 vs fp32", setting, f"acc {fp32['acc']:.3f} / {bf16['acc']:.3f}",
                  f"test loss {fp32['loss']:.4f} / {bf16['loss']:.4f}; bf16 {fp32['seconds'] / bf16['seconds']:.2f}x "
                  "as fast", {f"{name}_{key}": value for name, r in results.items() for key, value in r.items()})


def measure_generation(bench: Bench, deadline: float) -> Iterator[Row]:
    """zoobench.generate (its default runtime) vs the published code's plain loop, cell by cell."""
    plan = bench.plan
    spec = bench.short(plan.generation_epochs)
    execution = zoobench.Execution(runtime=zoobench.Runtime(plan.device), data_root=bench.data_root, progress=False)
    out = bench.folder / "plain"
    out.mkdir(exist_ok=True)
    for width, batch in plan.generation_cells:
        keys = model_keys(spec, [width], [batch])
        setting = f"{cell_name(width, batch)}, {len(keys)} seeds, {plan.generation_epochs} epoch(s)"
        if time.monotonic() > deadline:
            yield skipped("generation", setting)
            continue
        plain = plain_loop(spec, keys, bench.data_root, bench.stats, plan.device, plan.loader_workers, out)
        report = trained(zoobench.generate(spec, zoobench.Store(bench.folder / "generation"), loads=[width],
                                           temperatures=[batch], execution=execution))
        images = len(keys) * plan.generation_epochs * plan.train_images
        yield Row("generation", setting, f"{plain / report.seconds:.2f}x",
                  f"plain loop {plain:.1f} s ({images / plain:,.0f} img/s), zoobench {report.seconds:.1f} s "
                  f"({images / report.seconds:,.0f} img/s)", {"plain_seconds": plain, "zoobench_seconds": report.seconds})


def measure_units(bench: Bench, deadline: float) -> Iterator[Row]:
    """One generate call over the same cells with 1, 2, 4 units at a time on the GPU (on a CPU: workers)."""
    plan = bench.plan
    spec = bench.short(plan.units_epochs)
    widths = sorted({w for w, _ in plan.units_cells})
    batches = sorted({b for _, b in plan.units_cells})
    cells = len(widths) * len(batches)
    images = cells * len(spec.grid.seeds) * plan.units_epochs * plan.train_images
    what = f"{cells} cells ({'/'.join(map(str, widths))} x bs{'/'.join(map(str, batches))}) x 3 seeds"
    base = None
    for units in plan.units:
        setting = f"{units} unit(s) at a time"
        if time.monotonic() > deadline:
            yield skipped("units per GPU", setting)
            continue
        execution = zoobench.Execution(workers=units, units_per_gpu=units, runtime=zoobench.Runtime(plan.device),
                                       data_root=bench.data_root, progress=False)
        report = trained(zoobench.generate(spec, zoobench.Store(bench.folder / f"units-{units}"), loads=widths,
                                           temperatures=batches, execution=execution))
        rate = images / report.seconds
        base = base or rate
        yield Row("units per GPU", setting, f"{rate / base:.2f}x",
                  f"{rate:,.0f} img/s, {report.seconds:.1f} s for {what} x {plan.units_epochs} epoch(s)",
                  {"images_per_second": rate, "seconds": report.seconds})


RUNS: dict[str, Callable[[Bench, float], Iterator[Row]]] = {
    "peak": measure_peak, "channels": measure_channels, "hessian": measure_hessian, "precision": measure_precision,
    "generation": measure_generation, "units": measure_units}


def run(name: str, bench: Bench, rows: list[Row]) -> None:
    """One measurement within its cap; its rows so far survive a stop at the cap or a failure."""
    cap = bench.plan.caps[name]
    started = time.monotonic()
    try:
        with hard_cap(cap):
            for row in RUNS[name](bench, started + cap):
                rows.append(row)
                print(f"  {row.measurement}: {row.setting}: {row.result} ({row.detail})", flush=True)
    except OverCap:
        rows.append(Row(name, "-", "stopped", f"at its cap of {cap:.0f} s; rows above are complete"))
    except (Exception, SystemExit) as error:  # generate_resnet.trained exits when a model did not train
        traceback.print_exc()
        rows.append(Row(name, "-", "failed", f"{type(error).__name__}: {error}"))
    finally:
        bench.release()
    print(f"{name}: {time.monotonic() - started:.0f} s", flush=True)


def print_table(rows: list[Row], header: str) -> None:
    columns = [("measurement", [r.measurement for r in rows]), ("setting", [r.setting for r in rows]),
               ("result", [r.result for r in rows]), ("detail", [r.detail for r in rows])]
    widths = [max(len(title), *(len(v) for v in values)) for title, values in columns]
    print("\n" + header)
    print("  ".join(title.ljust(w) for (title, _), w in zip(columns, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for i in range(len(rows)):
        print("  ".join(values[i].ljust(w) for (_, values), w in zip(columns, widths)).rstrip())


def warm_up(device: str) -> None:
    """Start the device (context, cuBLAS and cuDNN handles) before anything is timed."""
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 10)).to(device)
    images = torch.randn(16, 3, 32, 32, device=device)
    for memory_format, dtype in ((torch.contiguous_format, torch.float32), (torch.channels_last, torch.bfloat16)):
        model.to(memory_format=memory_format)
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype != torch.float32):
            model(images.to(memory_format=memory_format)).float().sum().backward()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def device_peak(device: str, given: float | None) -> tuple[str, float | None]:
    if torch.device(device).type != "cuda":
        return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)", given
    name = torch.cuda.get_device_name(torch.device(device))
    return name, given or next((peak for key, peak in PEAKS if key in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every measurement, tiny, on the CPU (seconds)")
    parser.add_argument("--device", default="cuda", help="the GPU to measure (ignored with --smoke)")
    parser.add_argument("--only", default=",".join(MEASUREMENTS), help=f"comma-separated subset of {MEASUREMENTS}")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense bf16 peak (default: by device name, e.g. 989.4 for an H200)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and the set-up here")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := [name for name in chosen if name not in RUNS]:
        parser.error(f"unknown measurement(s) {unknown}; valid: {', '.join(MEASUREMENTS)}")
    if not args.smoke and not torch.cuda.is_available():
        parser.error("torch sees no CUDA GPU here; use --smoke to check the script on the CPU")
    plan = Plan.smoke() if args.smoke else Plan.gpu(args.device)
    started = time.monotonic()
    device, peak = device_peak(plan.device, args.peak_tflops)
    header = (f"zoobench GPU measurements{' (smoke: tiny, CPU)' if args.smoke else ''} on {device}; torch "
              f"{torch.__version__}; bf16 peak {f'{peak:g} TFLOP/s' if peak else 'unknown'}; {DATA_NOTE}, "
              f"{plan.train_images} train / {plan.test_images} test images; ResNet-18 (cifar10_r18 recipe); "
              f"checkpoints by {CHECKPOINTS}")
    print(header, flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        warm_up(plan.device)
        bench = Bench(plan, Path(folder), peak)
        for name in chosen:
            run(name, bench, rows)
    print_table(rows, f"{header}; {time.monotonic() - started:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps({"header": header, "seconds": time.monotonic() - started,
                                         "plan": {k: v for k, v in vars(plan).items()},
                                         "rows": [vars(row) for row in rows]}, indent=1, default=str))


if __name__ == "__main__":
    main()
