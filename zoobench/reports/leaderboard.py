"""Leaderboards: show and publish the stored results of methods on a zoo.

A *board* is one method's results on one zoo (one version, config and epoch): read from the store
(`from_store`) or from a published leaderboard folder (`from_folder`). Publishing writes, per zoo and
method, a folder that is a pure function of the stored results (no timestamps, no absolute paths,
numbers at 6 significant digits, deterministic PNGs), so republishing from the same store gives the
same bytes::

    <out>/README.md                       index: every zoo and method, headline per phase, how to regenerate
    <out>/<zoo>/seed_noise.csv            per cell: seeds, mean and std (ddof=1) of test accuracy
    <out>/<zoo>/<method>/provenance.json  zoo, fingerprint, method, version, config, config hash, epoch,
                                          headline, direction, scope, units, models, zoobench version
    <out>/<zoo>/<method>/cells.csv|.md    per cell: position, phase, status, models, every number
    <out>/<zoo>/<method>/phases.csv|.md   per phase and over all cells: cells, models, mean, std of every
                                          number; the headline's 95% CI (bootstrap over cells)
    <out>/<zoo>/<method>/heatmap.png      the headline over the grid
    <out>/<zoo>/claims.csv|.md            the paper's findings tested on the zoo (`zoobench.reports.claims`):
                                          statistic, bootstrap CI and verdict per claim
    (zoo-scope methods such as probe: units.csv|.md and summary.csv|.md over their splits, no heatmap)
    <out>/reference/<zoo>/phases.csv|.md  a shipped reference zoo (the paper's published metrics): every
    <out>/reference/<zoo>/sheet.png       cell's phase, reason and metrics, and its zoo sheet
Boards themselves (reading, tables, rendering) live in `zoobench.reports.boards`, comparisons in
`zoobench.reports.compare`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from zoobench.errors import ZoobenchError
from zoobench.reports import claims, tables
from zoobench.reports.boards import (NOISE, PROVENANCE, Board, board_markdown, from_folder, from_store, overview,
                                     overview_grid, phase_labels, seed_noise, stored_methods)
from zoobench.spec import ZooSpec
from zoobench.store import Store, atomic

SHEET = "sheet.png"  # the zoo sheet: loss-landscape metrics, phases and every published headline
REPORT = "report.png"  # a headless-Chromium screenshot of `zoobench report` (written by that command)
CELL_FILES = ("provenance.json", "cells.csv", "cells.md", "phases.csv", "phases.md", "heatmap.png")
ZOO_FILES = ("provenance.json", "units.csv", "units.md", "summary.csv", "summary.md")
CLAIM_FILES = (claims.CSV, claims.MD)  # <out>/<zoo>/: the paper's claims tested on the zoo
PUBLISH_COMMAND = "zoobench leaderboard publish --zoo {zoo} --out leaderboards"
REFERENCE = "reference"  # <out>/reference/<zoo>/: the published reference zoos
REFERENCE_COMMAND = "zoobench leaderboard reference --out leaderboards"
REFERENCE_COLUMNS = ("cell_id", "load", "temperature", "models", "phase", "reason", "train_loss", "test_acc", "gap",
                     "cka", "mc", "mc_test", "hessian_log_trace", "hessian_log_top_eigenvalue")


@dataclass
class Published:
    folders: list[Path] = field(default_factory=list)
    index: Path | None = None


def publish(spec: ZooSpec, store: Store | None = None, methods: Sequence[str] | None = None,
            out: str | Path = "leaderboards", plugins: Sequence[str] = (), epoch: int | None = None) -> Published:
    """Write the leaderboard of the stored default-config results of `methods` (default: every built-in
    method that has results) on the zoo into `out/<zoo>/`, and the index `out/README.md`. Runs nothing."""
    from zoobench.bench.plugins import discover

    store = store or Store()
    out = Path(out)
    report = Published()
    if methods:
        found = discover(plugins)
        for name in methods:
            found.get(name)  # unknown names fail with the valid ones listed
        names = list(dict.fromkeys(methods))
    else:
        names = stored_methods(spec, store, plugins, epoch, builtin_only=True)
        if not names:
            raise ZoobenchError(f"no built-in method has stored results on {spec.name} in {store.home}; run "
                                f"`zoobench run --method M --zoo {spec.name}` first")
    boards = [from_store(name, spec, store, None, plugins, epoch) for name in names]  # all found before writing
    noise = seed_noise(spec, store, epoch)
    zoo_folder = out / spec.name
    if not noise.empty:
        atomic.write_text(zoo_folder / NOISE, tables.to_csv(noise))
    for b in boards:
        report.folders.append(write_board(b, spec, zoo_folder / b.method))
    # the zoo's claims and sheet cover every method published for it, not only those published now
    earlier = [_published(folder.parent, spec, store, plugins, epoch)
               for folder in sorted(zoo_folder.glob(f"*/{PROVENANCE}")) if folder.parent.name not in names]
    shown = [*boards, *earlier]
    claims.write(claims.check_claims(spec, store, epoch, [b.method for b in shown], plugins), zoo_folder)
    from zoobench.reports.figures import zoo_sheet

    zoo_sheet(store.zoo(spec), zoo_folder / SHEET, [(f"{b.method}: {b.headline}", b.table, b.headline)
                                                    for b in shown if b.scope == "cell"], epoch)
    report.index = write_index(out)
    return report


def _published(folder: Path, spec: ZooSpec, store: Store, plugins: Sequence[str], epoch: int | None) -> Board:
    """A method published earlier: its stored results where the store has them (the numbers a full publish
    draws), else its folder."""
    try:
        return from_store(folder.name, spec, store, None, plugins, epoch)
    except ZoobenchError:  # UsageError included: a method no longer installed, results no longer stored
        return from_folder(folder, spec)


def publish_reference(store: Store | None = None, names: Sequence[str] | None = None,
                      out: str | Path = "leaderboards") -> Published:
    """Write, for each shipped reference zoo (default: all), its phases at the paper's epoch (CSV, and
    Markdown with the phase map and the rule) and its zoo sheet into `out/reference/<zoo>/`; then the index."""
    from zoobench.landscape.annotations import cell_table
    from zoobench.landscape.phases import classify
    from zoobench.reports.figures import zoo_sheet
    from zoobench.store.reference import CITATION, SUFFIX, shipped

    store = store or Store()
    report = Published()
    for name in names or shipped():
        spec = store.resolve(name)
        zoo = store.zoo(spec)
        labelled, rule = classify(spec, cell_table(zoo))
        folder = Path(out) / REFERENCE / name.removesuffix(SUFFIX)
        atomic.write_text(folder / "phases.csv", tables.to_csv(labelled[[c for c in REFERENCE_COLUMNS if c in labelled]]))
        grid = labelled.pivot(index="temperature", columns="load", values="phase").fillna("-")
        grid = grid.rename_axis(index=None, columns=None).reset_index(names=f"{spec.grid.temperature.short} \\ "
                                                                              f"{spec.grid.load.short}")
        counts = _phase_counts(labelled["phase"])
        found = claims.check_claims(spec, store)
        atomic.write_text(folder / "phases.md", "\n".join([
            f"# {name}: phases at epoch {spec.metric_epoch}", "",
            f"Published metrics ({CITATION}), imported by zoobench from `{zoo.spec.source.rsplit('/', 1)[-1]}`; "
            f"labelled by zoobench's phase rule. Regenerate with `{REFERENCE_COMMAND}`.", "",
            f"- rule: {rule.summary()}", f"- CKA: {labelled['cka_estimator'].iloc[0]}", f"- cells: {counts}", "",
            tables.to_markdown(grid).rstrip(), "", "## Paper claims", "",
            f"The paper's findings tested on these published metrics ({claims.CI_NOTE}); the findings about "
            f"methods need weights, which a reference zoo does not have.", "",
            tables.to_markdown(claims.grid(found)).rstrip(), ""]))
        zoo_sheet(zoo, folder / SHEET)
        report.folders.append(folder)
    report.index = write_index(out)
    return report


def _phase_counts(phases) -> str:
    """"I 9, II 22, ..." in the taxonomy's order."""
    from zoobench.landscape.phases import PHASES

    counts = phases.value_counts()
    return ", ".join(f"{phase} {counts[phase]}" for phase in PHASES if phase in counts)


def write_board(b: Board, spec: ZooSpec, folder: Path) -> Path:
    """One method's leaderboard folder (files not part of the format are removed)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = json.dumps(b.provenance, sort_keys=True, indent=2) + "\n"
    cells, phases = b.cells(), b.phases()
    if b.scope == "zoo":
        files = {"units": cells, "summary": phases}
        expected = ZOO_FILES
    else:
        files = {"cells": cells, "phases": phases}
        expected = CELL_FILES
    atomic.write_text(folder / PROVENANCE, meta)
    for stem, frame in files.items():
        atomic.write_text(folder / f"{stem}.csv", tables.to_csv(frame))
        atomic.write_text(folder / f"{stem}.md", board_markdown(b, stem, frame))
    if b.scope != "zoo":
        from zoobench.reports.figures import heatmap

        heatmap(b.table, spec, b.headline, folder / "heatmap.png", b.title, phases=phase_labels(b))
    for stale in folder.iterdir():
        if stale.is_file() and stale.name not in expected:
            stale.unlink()
    return folder


def write_index(out: str | Path) -> Path:
    """`out/README.md`: how to regenerate, the folder format, and every published zoo and method with its
    headline per phase (read back from the published folders, so it is a function of them alone)."""
    out = Path(out)
    zoos = sorted(p.parent.parent for p in out.glob(f"*/*/{PROVENANCE}"))
    lines = [INDEX_HEAD.strip(), ""]
    for zoo in dict.fromkeys(zoos):
        folders = sorted(p.parent for p in zoo.glob(f"*/{PROVENANCE}"))
        boards = [from_folder(f) for f in folders]
        first = boards[0].provenance
        lines += [f"## {first['zoo']}", "",
                  f"Fingerprint `{first['fingerprint']}`, epoch {first['epoch']}; regenerate with "
                  f"`{PUBLISH_COMMAND.format(zoo=first['zoo'])}`. Headline per phase: mean "
                  f"[{tables.CI_NOTE}] n=cells (probe: over its random splits).", "",
                  tables.to_markdown(overview_grid(overview(boards))).rstrip(), ""]
        lines += [f"![{first['zoo']} {what}]({(zoo / name).relative_to(out).as_posix()})"
                  for name, what in ((SHEET, "zoo sheet"), (REPORT, "HTML report")) if (zoo / name).exists()] + [""]
        for b, f in zip(boards, folders):
            p = b.provenance
            config = ", ".join(f"{k}={v}" for k, v in p["config"].items()) or "no options"
            files = ", ".join(f"[{n}]({f.relative_to(out).as_posix()}/{n})"
                              for n in (ZOO_FILES if b.scope == "zoo" else CELL_FILES))
            lines.append(f"- `{p['method']}` v{p['version']}, config `{p['config_hash']}` ({config}); "
                         f"{p['ok_units']}/{p['units']} units ok, {p['models']} models: {files}")
        lines.append("")
        lines += claims.index_lines(zoo, zoo.relative_to(out).as_posix())
    references = sorted((out / REFERENCE).glob("*/phases.csv"))
    if references:
        lines += ["## Reference zoos: the paper's published metrics", "",
                  f"Phases of the published metrics of the Phase Transition Model Zoo (Schürholt et al. 2025, CC BY "
                  f"4.0) at the paper's epoch, by zoobench's rule; regenerate with `{REFERENCE_COMMAND}`.", "",
                  "| zoo | cells per phase | files |", "|---|---|---|"]
        import pandas as pd

        for path in references:
            folder = path.parent.relative_to(out).as_posix()
            lines.append(f"| {path.parent.name} | {_phase_counts(pd.read_csv(path)['phase'])} | "
                         f"[phases.md]({folder}/phases.md), [phases.csv]({folder}/phases.csv), "
                         f"[sheet.png]({folder}/{SHEET}) |")
        lines.append("")
    atomic.write_text(out / "README.md", "\n".join(lines).rstrip() + "\n")
    return out / "README.md"


INDEX_HEAD = """
# leaderboards

Committed results of zoobench's built-in methods on the zoos that train on a laptop, per zoo and per
method, at each method's default config. Every file here is regenerated, from the repository root,
from a store that holds the results (`--home` or `ZOOBENCH_HOME`; publishing runs no method, `zoobench
run --method M --zoo Z` computes them first):

```bash
zoobench leaderboard publish --zoo digits_mlp --out leaderboards
```

Republishing from the same store gives the same bytes (no timestamps or paths; numbers at 6
significant digits). Compare your method, run on your machine, with a published one:

```bash
zoobench leaderboard compare --zoo digits_mlp mymethod leaderboards/digits_mlp/rebasin --plugin ./mymethod.py
```

Folder format, per zoo `<zoo>/`: `seed_noise.csv` (per cell: seeds, mean and std of test accuracy,
the noise scale `compare` uses) and per method `<zoo>/<method>/`: `provenance.json` (zoo, fingerprint,
method, version, config and its hash, epoch, headline and direction, units, models, zoobench
version), `cells.csv`/`cells.md` (per cell: load, temperature, phase, status, models, every number
the method reports, seed means), `phases.csv`/`phases.md` (per phase and over all cells: cells,
models, mean and std over cells of every number, and the headline's 95% CI from a bootstrap over
cells, 1000 resamples, seed 0) and `heatmap.png` (the headline over the grid). Zoo-scope methods
(probe, whose units are data splits) have `units.csv|.md` and `summary.csv|.md` instead, and no
heatmap. The zoo's `sheet.png` shows its loss-landscape metrics, phases and every published headline
side by side; `report.png` is a headless-Chromium screenshot of the HTML report, made with

```bash
zoobench report --zoo digits_mlp --out report.html --compare ensemble,rebasin --screenshot leaderboards/digits_mlp/report.png
```
"""
