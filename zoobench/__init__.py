"""zoobench: generate, annotate and benchmark phase zoos of neural networks.

The public API is imported lazily so that ``import zoobench`` (and the CLI's start-up) stays fast and
never imports torch until a model is actually built or trained.
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
    "generate": "zoobench.generate",
    "annotate": "zoobench.annotate",
    "phase_table": "zoobench.phases",
    "run": "zoobench.runner",
    "load_results": "zoobench.runner",
    "Method": "zoobench.method",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'zoobench' has no attribute {name!r}")
