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
    "phase_table": "zoobench.phases",
    "run": "zoobench.runner",
    "load_results": "zoobench.runner",
    "Method": "zoobench.method",
}

# `generate` and `annotate` share their names with their modules: bound here (neither imports torch),
# or the first import of the module (as zoobench's own code does) would replace the function on the
# package with the module.
from zoobench.annotate import annotate  # noqa: E402
from zoobench.generate import generate  # noqa: E402

__all__ = sorted([*_API, "annotate", "generate"])


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'zoobench' has no attribute {name!r}")
