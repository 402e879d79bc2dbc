"""The package is laid out by pipeline stage, and its imports say so: every import, at module level or
inside a function, points to the importing module's own stage or one below it, and no modules import
each other in a circle."""

import ast
from pathlib import Path

import zoobench

PACKAGE = Path(zoobench.__file__).parent

# Lowest first: a module may import modules of its own stage and of the stages below. A module belongs
# to the stage of the longest name below that starts its own.
STAGES = [
    ["zoobench", "zoobench.errors", "zoobench.registry"],  # the root only binds names lazily
    ["zoobench.data"],
    ["zoobench.models"],
    ["zoobench.landscape"],  # the metric catalogue and its estimators: functions of models and data
    ["zoobench.spec"],  # specs are checked against the catalogues of datasets, models and metrics
    ["zoobench.store"],
    ["zoobench.execution"],
    ["zoobench.train", "zoobench.landscape.annotate", "zoobench.landscape.annotations", "zoobench.landscape.phases",
     "zoobench.landscape.stability"],
    ["zoobench.method", "zoobench.reports.panels", "zoobench.reports.figures"],  # figures draw any table; a run draws its heatmap
    ["zoobench.bench", "zoobench.wsl", "zoobench.data.weights"],  # zoos as data for weight-space learning
    ["zoobench.reports"],
    ["zoobench.cli", "zoobench.__main__"],
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def stage(module: str) -> int:
    owners = [(len(prefix), index) for index, names in enumerate(STAGES) for prefix in names
              if module == prefix or module.startswith(prefix + ".")]
    assert owners, f"{module} belongs to no stage: add it to STAGES"
    return max(owners)[1]


def imports(module: str) -> set[str]:
    """The zoobench modules `module` imports anywhere in its code (a name imported from a package is the
    submodule when there is one, else the package)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                      for alias in node.names}
    return {name for name in found if name == "zoobench" or name.startswith("zoobench.")}


def test_every_module_is_in_a_stage_and_imports_point_down():
    upward = [f"{module} (stage {stage(module)}) imports {target} (stage {stage(target)})"
              for module in sorted(MODULES) for target in sorted(imports(module)) if stage(target) > stage(module)]
    assert upward == []


def test_no_modules_import_each_other_in_a_circle():
    graph = {module: imports(module) & set(MODULES) for module in MODULES}
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1 or module in graph[module]:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_check_sees_imports_inside_functions_and_names_from_packages():
    assert "zoobench.train.generate" in imports("zoobench.bench.runner")  # inside a function
    assert "zoobench.store.atomic" in imports("zoobench.store.ptmz")  # `from zoobench.store import atomic`
    assert stage("zoobench.landscape.phases") > stage("zoobench.store") > stage("zoobench.landscape.registry")


def test_modules_stay_small():
    files = [*PACKAGE.rglob("*.py"), *(Path(__file__).parents[1] / "methods").glob("*.py")]
    long = {str(path): n for path in files if (n := len(path.read_text().splitlines())) > 400}
    assert long == {}
