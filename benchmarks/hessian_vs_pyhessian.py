"""Hessian metrics: zoobench vs PyHessian and curvlinops, side by side on the same models and batches.

All three see one model in eval mode and the same fixed 10 batches x 64 samples (the paper's setting);
PyHessian runs through its dataloader path (``dataloader_hv_product`` sums over the batches), on the
CPU, with its defaults for the top eigenvalue (power iteration, maxIter=100, tol=1e-3), and with a
fixed number of samples for the trace so that both spend the same number of Hessian-vector products
(HVPs). zoobench: Lanczos (``top_eigenvalue``, tol=1e-3) and Hutch++ (plus plain Hutchinson on the
MLPs), double-backward HVPs, up to 32 vectors per pass. PyHessian's HVPs are counted by wrapping its
``dataloader_hv_product``. curvlinops (``HessianLinearOperator``, which applies the Hessian to a block
of vectors in one vmapped pass): its ``hutchpp_trace`` and ``hutchinson_trace`` with the same number of
products (the whole block in one call), and its documented route to the top eigenvalue, scipy's
``eigsh`` (``which="LA"``, tol=1e-3, default Krylov size) on ``to_scipy()``; its products are counted
in the operator. Ratios are side by side on one machine, not timed tests.

Models, each untrained and trained (SGD on the same batches, which the trained ones fit): the digits
MLP (exact references: the trace from every column of the Hessian, the top eigenvalue by Lanczos to
tol 1e-8; several seeds, errors as RMS over them) and a BatchNorm ResNet-18 of width 8 on random
CIFAR-shaped inputs with random labels (one seed, no exact trace: compare the standard errors).
The top eigenvalue is the largest algebraic one for zoobench and the largest in magnitude for
PyHessian; here they coincide (all four are positive and agree).

    pip install pyhessian curvlinops-for-pytorch             # the two references (not zoobench's dependencies)
    python benchmarks/hessian_vs_pyhessian.py                # all four models, 10-15 minutes on 2 cores
    python benchmarks/hessian_vs_pyhessian.py --no-resnet    # the MLPs only, a few minutes

On a loaded machine, medians over 5 seeds still move by 2x between runs: compare ratios from one run,
and prefer --threads 1 when other processes share the cores (two threads then wait on each other).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from curvlinops import HessianLinearOperator
from curvlinops import hutchinson_trace as curvlinops_hutchinson
from curvlinops import hutchpp_trace as curvlinops_hutchpp
from pyhessian import hessian as PyHessian
from scipy.sparse.linalg import eigsh
from torch import nn

from zoobench.landscape.hessian import hutchinson_trace, hutchpp_trace, top_eigenvalue
from zoobench.landscape.hvp import make_hvp
from zoobench.data import load_data
from zoobench.data.catalog import DATASETS
from zoobench.models import build_model

# Data options: the catalogue's defaults (options added later keep their defaults here too).
MLP_RECIPE = {"model": {"architecture": "mlp", "options": {"width": 64, "depth": 2, "activation": "relu"}},
              "data": {"dataset": "digits", "options": {**DATASETS.get("digits").options,
                                                        "test_fraction": 0.25, "split_seed": 0}}}
RESNET_RECIPE = {"model": {"architecture": "resnet", "options": {"width": 8, "depth": 18}},
                 "data": {"dataset": "cifar10", "options": dict(DATASETS.get("cifar10").options)}}
BATCHES, BATCH_SIZE = 10, 64


def cross_entropy(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    inputs, labels = batch
    return F.cross_entropy(model(inputs), labels)


@dataclass
class Runs:
    """One estimator's results over seeds."""
    values: list[float] = field(default_factory=list)
    std_errors: list[float] = field(default_factory=list)
    hvps: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def add(self, value: float, hvps: int, seconds: float, std_error: float = math.nan) -> None:
        self.values.append(value)
        self.hvps.append(hvps)
        self.seconds.append(seconds)
        self.std_errors.append(std_error)

    def rel_error(self, exact: float | None) -> float:
        """RMS relative error over the seeds (NaN without an exact value)."""
        if exact is None:
            return math.nan
        return float(np.sqrt(np.mean((np.array(self.values) - exact) ** 2)) / abs(exact))


class CountedPyHessian:
    """PyHessian on a list of batches, with its HVPs counted."""

    def __init__(self, model: nn.Module, batches: list) -> None:
        self.hessian = PyHessian(model, nn.CrossEntropyLoss(), dataloader=batches, cuda=False)
        self.hvps = 0
        product = self.hessian.dataloader_hv_product

        def counted(v):
            self.hvps += 1
            return product(v)

        self.hessian.dataloader_hv_product = counted  # the instance attribute shadows the method
        self.model = model

    def top_eigenvalue(self, seed: int) -> tuple[float, int]:
        torch.manual_seed(seed)  # PyHessian draws its start vector from the global generator
        before = self.hvps
        eigenvalues, _ = self.hessian.eigenvalues(maxIter=100, tol=1e-3)
        self.model.zero_grad(set_to_none=True)  # PyHessian leaves graph-carrying .grad behind
        return eigenvalues[0], self.hvps - before

    def trace(self, samples: int, seed: int, tol: float = 0.0) -> tuple[float, float, int]:
        """Mean and standard error of PyHessian's samples; tol=0 never stops early on a positive trace."""
        torch.manual_seed(seed)
        before = self.hvps
        values = np.array(self.hessian.trace(maxIter=samples, tol=tol))  # the samples, not their mean
        self.model.zero_grad(set_to_none=True)
        return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values))), self.hvps - before


class CountedHessian(HessianLinearOperator):
    """curvlinops' Hessian operator, counting the vectors it is applied to."""
    hvps = 0

    def _matmat(self, M: list[torch.Tensor]) -> list[torch.Tensor]:
        self.hvps += M[0].shape[-1]  # list format: one tensor per parameter, columns last
        return super()._matmat(M)


class CountedCurvlinops:
    """curvlinops on a list of batches: the mean cross-entropy over all their samples, which for equal
    batch sizes is zoobench's mean of batch means."""

    def __init__(self, model: nn.Module, batches: list) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        # check_deterministic=False: its check spends products before any estimate; the batches are fixed.
        self.operator = CountedHessian(model, nn.CrossEntropyLoss(), params, batches, check_deterministic=False)
        self.dim = sum(p.numel() for p in params)

    def top_eigenvalue(self, seed: int) -> tuple[float, int]:
        before = self.operator.hvps
        v0 = np.random.default_rng(seed).standard_normal(self.dim)
        value = eigsh(self.operator.to_scipy(), k=1, which="LA", tol=1e-3, v0=v0, return_eigenvectors=False)[0]
        return float(value), self.operator.hvps - before

    def trace(self, estimator, hvps: int, seed: int) -> tuple[float, int]:
        torch.manual_seed(seed)  # curvlinops draws its probes from the global generator
        before = self.operator.hvps
        value = estimator(self.operator, hvps).item()
        return value, self.operator.hvps - before


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def exact_trace(model: nn.Module, batches: list, chunk: int = 500) -> float:
    """The trace from every diagonal entry: Hessian columns in chunks, vmapped jvp of the gradient."""
    named = [(name, p.detach()) for name, p in model.named_parameters()]
    sizes = [p.numel() for _, p in named]
    theta = torch.cat([p.reshape(-1) for _, p in named])
    dim = theta.numel()

    def batch_loss(flat: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        params = {name: piece.view_as(p) for (name, p), piece in zip(named, flat.split(sizes))}
        return F.cross_entropy(torch.func.functional_call(model, params, (inputs,)), labels)

    total = 0.0
    gradient = torch.func.grad(batch_loss)
    for inputs, labels in batches:
        def column(e: torch.Tensor) -> torch.Tensor:
            return torch.func.jvp(lambda flat: gradient(flat, inputs, labels), (theta,), (e,))[1]

        for start in range(0, dim, chunk):
            index = torch.arange(start, min(start + chunk, dim))
            basis = torch.zeros(len(index), dim)
            basis[torch.arange(len(index)), index] = 1
            total += torch.func.vmap(column)(basis)[torch.arange(len(index)), index].double().sum().item()
    return total / len(batches)


def digits_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    data = load_data(MLP_RECIPE)
    inputs, labels = data.normalize(data.x_train), data.y_train  # the first 640 training images
    return [(inputs[i * BATCH_SIZE:(i + 1) * BATCH_SIZE], labels[i * BATCH_SIZE:(i + 1) * BATCH_SIZE])
            for i in range(BATCHES)]


def random_cifar_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(BATCH_SIZE, 3, 32, 32, generator=generator),
             torch.randint(0, 10, (BATCH_SIZE,), generator=generator)) for _ in range(BATCHES)]


def trained(model: nn.Module, batches: list, epochs: int, lr: float) -> nn.Module:
    """SGD with momentum over ``batches`` in train mode (BatchNorm statistics too), then eval mode.

    The Hessians of a zoo are those of trained models, whose spectra decay faster than at init.
    """
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for _ in range(epochs):
        for batch in batches:
            optimizer.zero_grad()
            cross_entropy(model, batch).backward()
            optimizer.step()
    return model.eval()


def compare(name: str, model: nn.Module, batches: list, seeds: int, trace_hvps: int, exact: bool) -> dict:
    """Every estimator on one model, PyHessian and zoobench interleaved seed by seed."""
    model.eval()
    hvp = make_hvp(model, cross_entropy, batches)
    reference_eigenvalue = reference_trace = None
    if exact:
        reference_eigenvalue, _ = top_eigenvalue(hvp, hvp.dim, tol=1e-8, max_iter=2000)
        reference_trace = exact_trace(model, batches)
    pyhessian = CountedPyHessian(model, batches)
    curvlinops = CountedCurvlinops(model, batches)
    runs = {key: Runs() for key in ["py_eig", "cl_eig", "zoo_eig", "py_trace", "cl_hutchpp", "zoo_hutchpp",
                                    "cl_hutchinson", "zoo_hutchinson"]}
    default_samples = []
    for seed in range(seeds):
        (value, hvps), seconds = timed(pyhessian.top_eigenvalue, seed)
        runs["py_eig"].add(value, hvps, seconds)
        (value, hvps), seconds = timed(curvlinops.top_eigenvalue, seed)
        runs["cl_eig"].add(value, hvps, seconds)
        (value, hvps), seconds = timed(top_eigenvalue, hvp, hvp.dim, tol=1e-3, max_iter=100, seed=seed)
        runs["zoo_eig"].add(value, hvps, seconds)
        (value, error, hvps), seconds = timed(pyhessian.trace, trace_hvps, seed)
        runs["py_trace"].add(value, hvps, seconds, error)
        (value, hvps), seconds = timed(curvlinops.trace, curvlinops_hutchpp, trace_hvps, seed)
        runs["cl_hutchpp"].add(value, hvps, seconds)
        estimate, seconds = timed(hutchpp_trace, hvp, hvp.dim, hvps=trace_hvps, seed=seed)
        runs["zoo_hutchpp"].add(estimate.value, estimate.hvps, seconds, estimate.std_error)
        if exact:  # cheap models only: plain Hutchinson, and PyHessian's own stopping rule
            (value, hvps), seconds = timed(curvlinops.trace, curvlinops_hutchinson, trace_hvps, seed)
            runs["cl_hutchinson"].add(value, hvps, seconds)
            estimate, seconds = timed(hutchinson_trace, hvp, hvp.dim, max_samples=trace_hvps, tol=0.0, seed=seed)
            runs["zoo_hutchinson"].add(estimate.value, estimate.hvps, seconds, estimate.std_error)
            default_samples.append(pyhessian.trace(100, seed, tol=1e-3)[2])
    print_model(name, hvp.dim, seeds, runs, reference_eigenvalue, reference_trace, default_samples)
    return {"name": name, "runs": runs, "eig": reference_eigenvalue, "trace": reference_trace}


def print_model(name: str, dim: int, seeds: int, runs: dict[str, Runs], eigenvalue: float | None,
                trace: float | None, default_samples: list[int]) -> None:
    print(f"\n== {name}: {dim} parameters, {BATCHES} x {BATCH_SIZE} samples, {seeds} seed(s); "
          f"load average {os.getloadavg()[0]:.2f} ==")
    if eigenvalue is not None:
        print(f"exact: top eigenvalue {eigenvalue:.6g}, trace {trace:.6g}")
    print(f"{'estimator (means over seeds)':<34}{'HVPs':>7}{'estimate':>13}{'rel. error':>12}{'std error':>12}"
          f"{'median s':>10}")
    rows = [("top eig  PyHessian power iteration", "py_eig", eigenvalue),
            ("top eig  curvlinops + eigsh", "cl_eig", eigenvalue),
            ("top eig  zoobench Lanczos", "zoo_eig", eigenvalue),
            ("trace    PyHessian Hutchinson", "py_trace", trace),
            ("trace    curvlinops Hutch++", "cl_hutchpp", trace),
            ("trace    zoobench Hutch++", "zoo_hutchpp", trace),
            ("trace    curvlinops Hutchinson", "cl_hutchinson", trace),
            ("trace    zoobench Hutchinson", "zoo_hutchinson", trace)]
    for label, key, exact in rows:
        run = runs[key]
        if not run.values:
            continue
        std_error = f"{np.mean(run.std_errors):>12.3g}" if not np.isnan(run.std_errors).all() else " " * 12
        print(f"{label:<34}{np.mean(run.hvps):>7.1f}{np.mean(run.values):>13.6g}{run.rel_error(exact):>12.1e}"
              f"{std_error}{np.median(run.seconds):>10.2f}")
    if runs["zoo_hutchinson"].values and np.allclose(runs["zoo_hutchinson"].values, runs["py_trace"].values, rtol=1e-5):
        print("(zoobench's Hutchinson drew the same probes as PyHessian's (same seeded generator stream) and got the\n"
              " same estimates: both compute the same HVPs)")
    if default_samples:
        print(f"(PyHessian's own trace stopping rule, tol=1e-3, maxIter=100, stopped after "
              f"{min(default_samples)}-{max(default_samples)} samples)")


def per_hvp_seconds(model: nn.Module, batches: list, repeats: int = 2,
                    blocks: tuple[int, ...] = (16, 32, 99)) -> dict[str, float]:
    """Seconds per HVP (best of ``repeats``): one vector at a time (PyHessian's dataloader product,
    zoobench's two modes, curvlinops), and blocks of vectors in one call (zoobench's two modes,
    curvlinops). The estimators of both send a third of the budget (Hutch++) or all of it (Hutchinson)
    in one call; zoobench's HVP runs it in passes of at most 32 vectors (BLOCK), curvlinops in one."""
    pyhessian = CountedPyHessian(model, batches)
    curvlinops = CountedCurvlinops(model, batches).operator
    reverse = make_hvp(model, cross_entropy, batches, "reverse_over_reverse")
    forward = make_hvp(model, cross_entropy, batches, "forward_over_reverse")
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(reverse.dim, max(blocks), generator=generator)  # (dim, max block)
    params = [p for p in model.parameters()]
    pieces = [piece.view_as(p) for piece, p in zip(vectors[:, 0].split([p.numel() for p in params]), params)]
    cases = [("PyHessian, 1 vector", lambda: pyhessian.hessian.dataloader_hv_product(pieces), 1),
             ("zoobench double backward, 1 vector", lambda: reverse(vectors[:, 0]), 1),
             ("zoobench forward-over-reverse, 1 vector", lambda: forward(vectors[:, 0]), 1),
             ("curvlinops, 1 vector", lambda: curvlinops @ vectors[:, 0], 1)]
    for block in blocks:
        cases += [(f"zoobench double backward, block of {block}", lambda b=block: reverse(vectors[:, :b]), block),
                  (f"zoobench forward-over-reverse, block of {block}", lambda b=block: forward(vectors[:, :b]), block),
                  (f"curvlinops, block of {block}", lambda b=block: curvlinops @ vectors[:, :b], block)]
    for _, run, _ in cases:  # warm-up: functorch's first calls, curvlinops' lazily built product
        run()
    best = {label: math.inf for label, _, _ in cases}
    for _ in range(repeats):  # interleaved, so that a burst of load on shared cores hits every case alike
        for label, run, count in cases:
            _, seconds = timed(run)
            best[label] = min(best[label], seconds / count)
    model.zero_grad(set_to_none=True)
    return best


def print_summary(results: list[dict]) -> None:
    print("\n== summary: PyHessian time / zoobench time, and relative errors (P: PyHessian, Z: zoobench) ==")
    print(f"{'model':<52}{'top eig':>9}{'err P':>9}{'err Z':>9}{'trace':>8}{'err P':>9}{'err Z':>9}"
          f"{'equal SE':>10}")
    for result in results:
        runs = result["runs"]
        eig_ratio = np.median(runs["py_eig"].seconds) / np.median(runs["zoo_eig"].seconds)
        trace_ratio = np.median(runs["py_trace"].seconds) / np.median(runs["zoo_hutchpp"].seconds)
        if result["trace"] is None:  # no exact values: PyHessian's difference from zoobench, and std errors
            eig_p = abs(runs["py_eig"].values[0] - runs["zoo_eig"].values[0]) / abs(runs["zoo_eig"].values[0])
            eig_z = math.nan  # zoobench is the reference here
            trace_p, trace_z = (np.mean(runs[key].std_errors) / abs(np.mean(runs[key].values))
                                for key in ["py_trace", "zoo_hutchpp"])
        else:
            eig_p, eig_z = (runs[key].rel_error(result["eig"]) for key in ["py_eig", "zoo_eig"])
            trace_p, trace_z = (runs[key].rel_error(result["trace"]) for key in ["py_trace", "zoo_hutchpp"])
        # PyHessian's Hutchinson needs (SE_P / SE_Z)^2 times its samples to reach zoobench's std error.
        samples_factor = (np.mean(runs["py_trace"].std_errors) / np.mean(runs["zoo_hutchpp"].std_errors)) ** 2
        print(f"{result['name']:<52}{eig_ratio:>8.2f}x{eig_p:>9.1e}{eig_z:>9.1e}{trace_ratio:>7.2f}x"
              f"{trace_p:>9.1e}{trace_z:>9.1e}{trace_ratio * samples_factor:>9.2f}x")
    print("(time ratios of median seconds, > 1: zoobench is faster; trace at equal HVPs, zoobench = Hutch++.\n"
          " Errors: RMS relative errors against the exact values or, without them (ResNet), the top eigenvalue's\n"
          " difference from zoobench's and the trace's std error / |trace|. equal SE: the trace time ratio\n"
          " projected to equal std errors, PyHessian running (SE_P / SE_Z)^2 times as many samples)")


def print_curvlinops_summary(results: list[dict]) -> None:
    print("\n== summary: curvlinops time / zoobench time, and relative errors (C: curvlinops, Z: zoobench) ==")
    print(f"{'model':<52}{'top eig':>9}{'err C':>9}{'err Z':>9}{'Hutch++':>9}{'err C':>9}{'err Z':>9}"
          f"{'Hutchinson':>11}{'err C':>9}{'err Z':>9}")
    for result in results:
        runs = result["runs"]
        cells = []
        for c_key, z_key, exact in [("cl_eig", "zoo_eig", result["eig"]), ("cl_hutchpp", "zoo_hutchpp", result["trace"]),
                                    ("cl_hutchinson", "zoo_hutchinson", result["trace"])]:
            if not runs[z_key].values:
                cells.append(f"{'-':>9}{'':>18}")
                continue
            ratio = np.median(runs[c_key].seconds) / np.median(runs[z_key].seconds)
            if exact is None:  # no exact values: curvlinops' difference from zoobench
                err_c = abs(np.mean(runs[c_key].values) - np.mean(runs[z_key].values)) / abs(np.mean(runs[z_key].values))
                err_z = math.nan
            else:
                err_c, err_z = runs[c_key].rel_error(exact), runs[z_key].rel_error(exact)
            cells.append(f"{ratio:>8.2f}x{err_c:>9.1e}{err_z:>9.1e}")
        print(f"{result['name']:<52}{cells[0]}{cells[1]} {cells[2]}")
    print("(time ratios of median seconds, > 1: zoobench is faster; traces at equal HVPs. Errors: RMS relative\n"
          " errors against the exact values or, without them (ResNet, one seed), curvlinops' relative difference\n"
          " from zoobench's estimate)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads, the same for both")
    parser.add_argument("--mlp-seeds", type=int, default=5)
    parser.add_argument("--mlp-trace-hvps", type=int, default=99)
    parser.add_argument("--resnet-trace-hvps", type=int, default=30)
    parser.add_argument("--no-resnet", action="store_true")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when piped
    # PyHessian's dataloader path calls loss.backward(create_graph=True), warned about on every call.
    warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f} "
          "at start (other processes share these cores: times are noisy)")

    batches = digits_batches()
    torch.manual_seed(0)
    results = [compare("digits MLP, untrained", build_model(MLP_RECIPE), batches, args.mlp_seeds,
                       args.mlp_trace_hvps, exact=True)]
    torch.manual_seed(0)
    results.append(compare("digits MLP, trained 30 epochs on these batches",
                           trained(build_model(MLP_RECIPE), batches, epochs=30, lr=0.1), batches, args.mlp_seeds,
                           args.mlp_trace_hvps, exact=True))
    torch.manual_seed(0)
    timings = {"digits MLP": per_hvp_seconds(build_model(MLP_RECIPE).eval(), batches, repeats=5)}
    if not args.no_resnet:
        resnet_batches = random_cifar_batches()
        torch.manual_seed(0)
        resnet = build_model(RESNET_RECIPE).eval()
        results.append(compare("ResNet-18 w8 (BatchNorm), untrained, random data", resnet, resnet_batches,
                               1, args.resnet_trace_hvps, exact=False))
        timings["ResNet-18 w8"] = per_hvp_seconds(resnet, resnet_batches, repeats=1, blocks=(32,))
        results.append(compare("ResNet-18 w8, trained 15 epochs on these batches",
                               trained(resnet, resnet_batches, epochs=15, lr=0.05), resnet_batches,
                               1, args.resnet_trace_hvps, exact=False))

    print("\n== seconds per HVP (best of repeats) ==")
    labels = list(dict.fromkeys(label for model in timings.values() for label in model))
    print(f"{'':<50}" + "".join(f"{model:>16}" for model in timings))
    for label in labels:
        print(f"{label:<50}" + "".join(f"{timings[model][label]:>16.4f}" if label in timings[model] else f"{'-':>16}"
                                       for model in timings))

    print_summary(results)
    print_curvlinops_summary(results)
    print(f"\ntotal {time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
