"""Finding method plugins: installed packages, local modules and single files.

Three sources, one registry: the entry-point group ``zoobench.methods`` of every installed
distribution (zoobench's own methods are registered there too, exactly as a third-party package's
would be), and ``--plugin MODULE_OR_FILE`` / ``ZOOBENCH_PLUGINS`` (os.pathsep-separated) for code
that is not installed. Entry points are only read, not imported: a method's module is imported when
it is first used, so finding the methods (and running one) never imports the others. Local plugins
are imported at once, since their method names are only known from their classes. A plugin that
fails to import or breaks the contract is reported and skipped; two plugins claiming one name is an
error that names both.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Sequence

from zoobench.errors import UsageError, ZoobenchError
from zoobench.method import Method, contract_problems
from zoobench.registry import Registry

GROUP = "zoobench.methods"
ENVIRONMENT = "ZOOBENCH_PLUGINS"


@dataclass(frozen=True)
class BrokenPlugin:
    origin: str  # where it came from: an entry point, a module or a file
    error: str  # one line


def _check(name: str, method: type) -> None:
    """A loaded entry must be a method following the contract, under its own name."""
    problems = contract_problems(method)
    if not problems and method.name != name:
        problems = [f"entry point name '{name}' differs from the method's name {method.name!r}"]
    if problems:
        raise ZoobenchError(f"method '{name}' breaks the plugin contract: {'; '.join(problems)}")


@dataclass
class Methods:
    """The methods found, and the plugins that could not be used."""

    registry: Registry[type[Method]]
    broken: list[BrokenPlugin] = field(default_factory=list)
    plugins: tuple[str, ...] = ()  # the local plugins loaded, as absolute paths or module names

    def names(self) -> list[str]:
        return self.registry.names()

    def get(self, name: str) -> type[Method]:
        """The method class (its module imported now, if it was not yet)."""
        if name not in self.registry:
            error = self.registry.unknown(name)
            if self.broken:
                error = UsageError(f"{error}; plugins that failed to load: "
                                   + "; ".join(f"{b.origin}: {b.error}" for b in self.broken))
            raise error
        return self.registry.get(name)

    def origin(self, name: str) -> str:
        return self.registry.origin(name)



def discover(plugins: Sequence[str] = ()) -> Methods:
    """Every method from entry points, then from `plugins` and ``$ZOOBENCH_PLUGINS`` (files or modules)."""
    local = [*plugins, *[p for p in os.environ.get(ENVIRONMENT, "").split(os.pathsep) if p]]
    found = Methods(Registry("method", check=_check), plugins=tuple(dict.fromkeys(_canonical(p) for p in local)))
    for point in sorted(entry_points(group=GROUP), key=lambda p: (p.name, p.value)):
        dist = f"{point.dist.name} {point.dist.version}" if point.dist else "an unknown distribution"
        found.registry.add(point.name, point.value, f"{dist}: {point.value}")
    for plugin in found.plugins:
        try:
            module = _import(plugin)
        except Exception as error:
            found.broken.append(BrokenPlugin(plugin, _one_line(error)))
            continue
        methods = [obj for obj in vars(module).values() if isinstance(obj, type) and issubclass(obj, Method)
                   and obj is not Method and obj.__module__ == module.__name__]
        if not methods:
            found.broken.append(BrokenPlugin(plugin, "defines no subclass of zoobench.method.Method"))
        for method in methods:
            _add(found, method, plugin)
    return found


def describe(found: Methods, name: str) -> list[tuple[str, str]]:
    """What a person needs to know about one method, in words: what it does, what it reports, its
    options (type and default) and where it comes from."""
    import dataclasses
    import inspect

    from zoobench.spec.strict import hints, type_name

    method = found.get(name)
    doc = inspect.getdoc(inspect.getmodule(method)) or inspect.getdoc(method) or ""
    types = hints(method.Config)
    options = [(f"--set {f.name}", f"{type_name(types[f.name])}; default {f.default!r}")
               for f in dataclasses.fields(method.Config) if f.default is not dataclasses.MISSING]
    return [("method", f"{method.name} v{method.version} ({method.scope} scope)"),
            ("what", doc.split("\n\n")[0].replace("\n", " ") or "-"),
            ("headline", f"{method.headline} ({'higher' if method.higher_is_better else 'lower'} is better)"),
            ("key metrics", ", ".join(method.key_metrics) or "-"),
            ("needs", ", ".join(method.needs) or "the phase annotations only"),
            *([("reads", f"{', '.join(method.spec_fields)} of the zoo's spec (part of its results' key)")]
              if method.spec_fields else []),
            *(options or [("options", "none")]), ("origin", found.origin(name))]


def _add(found: Methods, method: type, origin: str) -> None:
    problems = contract_problems(method)
    if problems:
        found.broken.append(BrokenPlugin(origin, "; ".join(problems)))
    elif not (method.name in found.registry and found.registry.get(method.name) is method):  # same class twice
        found.registry.add(method.name, method, origin)


def _canonical(plugin: str) -> str:
    """Files by absolute path (so worker processes find them too), modules by name."""
    path = Path(plugin).expanduser()
    if plugin.endswith(".py") or os.sep in plugin:
        if not path.is_file():
            raise UsageError(f"plugin file {plugin} does not exist; pass a .py file or an importable module name")
        return str(path.resolve())
    return plugin


def _import(plugin: str):
    if not plugin.endswith(".py"):
        return importlib.import_module(plugin)
    digest = hashlib.sha256(plugin.encode()).hexdigest()[:8]
    name = f"zoobench_plugin_{Path(plugin).stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, plugin)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up by module name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _one_line(error: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith("<")]
    at = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{at}".replace("\n", " ")
