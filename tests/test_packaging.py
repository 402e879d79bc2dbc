import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_in_the_distribution():
    """A package missing from pyproject works in an editable install and vanishes from a wheel."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = {name: ROOT / folder for name, folder in config["package-dir"].items()}
    found = set()
    for name, folder in mapping.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            found.add(".".join((name, *relative)))
    assert found == listed


def test_the_wheel_ships_the_reference_metrics_with_their_attribution(tmp_path):
    """Reference zoos are reachable by name (cifar10_r18@ptmz) only if their files are package data."""
    import shutil
    import subprocess
    import sys
    import zipfile

    source = tmp_path / "source"  # a copy, so that building leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "zoobench", "methods", "zoos"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copyfile
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                            if (ROOT / name).is_dir() else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(source)], check=True, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob("zoobench-*.whl"))).namelist()
    shipped = {Path(n).name for n in names if n.startswith("zoobench/zoos/reference/ptmz/")}
    assert shipped == {p.name for p in (ROOT / "zoos" / "reference" / "ptmz").iterdir()}
    assert "README.md" in shipped and "cifar10_resnet18.csv" in shipped
