"""zoobench: generate, annotate and benchmark phase zoos of neural networks.

The package is laid out by pipeline stage, each importing only the stages below it::

    data, models         datasets and architectures (catalogues, loaders, builders)
    landscape            the metric catalogue and its estimators (Hessian, CKA, connectivity)
    spec                 zoo specs, strictly parsed, and their grid
    store                the model store, atomic writes, PTMZ import and export
    execution            executors (local processes, Ray), runtimes, progress
    train                the training loop (fused over seeds) and generation
    landscape.annotate   annotation of stored models, the stored annotations, phases
    method               the plugin API (all a method may import)
    bench                plugin discovery, the cells methods get, results, the runner
    wsl, data.weights    zoos as data for weight-space learning: exports, WeightDataset
    reports              tables, figures, comparisons, leaderboards, the HTML report
    cli                  parses arguments and prints; nothing else

The public API below is imported lazily, so ``import zoobench`` (and the CLI's start-up) never
imports torch until a model is actually built or trained.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zoobench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_API = {
    "ZooSpec": "zoobench.spec",
    "load_spec": "zoobench.spec",
    "list_specs": "zoobench.spec",
    "Store": "zoobench.store",
    "ZooStore": "zoobench.store",
    "Execution": "zoobench.execution",
    "Runtime": "zoobench.execution",
    "generate": "zoobench.train.generate",
    "annotate": "zoobench.landscape.annotate",
    "phase_table": "zoobench.landscape.phases",
    "run": "zoobench.bench.runner",
    "load_results": "zoobench.bench.runner",
    "Method": "zoobench.method",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'zoobench' has no attribute {name!r}")
