"""The paper's findings, tested on a zoo: a statistic over cells, its bootstrap CI, and a verdict.

Schürholt et al. 2025 ("A Model Zoo on Phase Transitions in Neural Networks") report where in the
phase diagram accuracy peaks and where downstream methods work. Each finding is one `Claim` record
in `CLAIMS` (id, paper section, the finding, the method whose results it needs, a statistic, a
threshold and the side of it the paper claims), so adding a finding is adding one entry.

A statistic is computed on one row per labelled cell (phases I..IV-B; "diverged" and "?" cells take
no part): the zoo's cell table (`landscape.annotations.cell_table`, phases from `classify`) for the
claims about the zoo itself, the method's stored per-cell results (seed means, default config) with
each cell's phase for the claims about a method. Its 95% CI is a percentile bootstrap over cells,
stratified by phase: every resample draws each phase's cells with replacement and keeps its cell
count, so a contrast between phases is defined in every resample (1000 resamples, seed 0; the same
store gives the same digits).

Verdicts: *reproduced* when the whole CI lies on the claimed side of the threshold, *not reproduced*
when it lies wholly on the other side (touching the threshold counts as the other side), else
*inconclusive*; *not applicable*, with the reason, when the data is missing: the method has no stored
results (or cannot run: a reference zoo has published metrics only, no weights), a phase the claim
compares is absent or has a single cell, or the needed number is not reported (a task without
accuracy).

    >>> from zoobench.reports.claims import check_claims
    >>> check_claims(spec, store).table  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from zoobench.errors import UsageError
from zoobench.reports import tables
from zoobench.reports.claim_statistics import IV, LABELLED, AbsMean, Contrast, Quantity, Statistic, TopShare

CI_NOTE = (f"{tables.LEVEL:.0%} CI, bootstrap over cells stratified by phase ({tables.RESAMPLES} resamples, "
           f"seed 0)")
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_APPLICABLE = ("reproduced", "not reproduced", "inconclusive",
                                                             "not applicable")
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_APPLICABLE)
FORMATS = ("table", "csv", "json", "md")
ALIASES = {"rich": "table", "markdown": "md"}  # the names other commands use for the same formats
COLUMNS = ("id", "section", "finding", "method", "statistic", "threshold", "direction", "value", "ci_low",
           "ci_high", "verdict", "cells", "groups", "reason")


@dataclass(frozen=True)
class Claim:
    """One finding of the paper, stated so that a zoo's cells can test it."""

    id: str
    section: str  # where the paper makes it
    finding: str  # the finding, paraphrased
    statistic: Statistic
    method: str | None = None  # whose per-cell results it needs; None: the zoo's own annotations
    threshold: float = 0.0
    direction: str = ">"  # the side of the threshold the paper claims: ">" or "<"
    needs_loss_threshold: bool = False  # the statistic reads the phase rule's train-loss threshold
    # the same finding on the task's error, for a zoo whose task has no accuracy (the PINN: relative L2)
    without_accuracy: Statistic | None = None


# the share of the dense accuracy above chance kept at sparsity 0.9 (prune v3): a raw drop from dense
# would credit a near-chance cell for having little to lose
KEPT = Quantity("kept_s0.9")
TEST_QUALITY = Quantity("test_rel_l2", complement=True)

CLAIMS: tuple[Claim, ...] = (
    Claim("a1", "4.1", "the best test accuracy lies in phase IV-B: above the other phases",
          Contrast(Quantity("test_acc"), ("IV-B",), ("I", "II", "III", "IV-A")),
          without_accuracy=Contrast(TEST_QUALITY, ("IV-B",), ("I", "II", "III", "IV-A"))),
    Claim("a2", "4.1", "the best test accuracy lies in phase IV-B: above the best other phase",
          Contrast(Quantity("test_acc"), ("IV-B",), ("I", "II", "III", "IV-A"), best=True),
          without_accuracy=Contrast(TEST_QUALITY, ("IV-B",), ("I", "II", "III", "IV-A"), best=True)),
    Claim("a3", "4.1", "high test accuracy lies inside the low-train-loss region",
          TopShare(), threshold=0.9, needs_loss_threshold=True,
          without_accuracy=TopShare(accuracy="test_rel_l2", error=True)),
    Claim("b", "applications", "phase IV models fine-tune (transfer) best",
          Contrast(Quantity("target_acc"), IV, ("I", "II", "III")), method="finetune",
          without_accuracy=Contrast(Quantity("target_rel_l2", complement=True), IV, ("I", "II", "III"))),
    Claim("c1", "applications", "phase IV keeps its accuracy best under high sparsity",
          Contrast(KEPT, IV, ("I", "II", "III")), method="prune"),
    Claim("c2", "applications", "under-fitted phases (I, II) lose accuracy fastest under high sparsity",
          Contrast(KEPT, ("I", "II"), ("III", "IV-A", "IV-B")), method="prune", direction="<"),
    Claim("c3", "applications", "phase IV can be pruned furthest (prune's headline)",
          Contrast(Quantity("max_sparsity"), IV, ("I", "II", "III")), method="prune"),
    Claim("d", "applications", "ensembling helps more where mc ~ 0 (IV) than where mc < 0 (I, III)",
          Contrast(Quantity("gain"), IV, ("I", "III")), method="ensemble"),
    Claim("e1", "applications", "epoch averaging helps most at high temperature (I, II)",
          Contrast(Quantity("gain"), ("I", "II"), IV), method="epochavg"),
    Claim("e2", "applications", "epoch averaging changes little in phase IV (within 1 point of accuracy)",
          AbsMean(Quantity("gain"), IV), method="epochavg", threshold=0.01, direction="<"),
    Claim("f", "applications", "re-basin merging loses most where mc < 0 (I, III)",
          Contrast(Quantity("gain"), ("I", "III"), ("II", "IV-A", "IV-B")), method="rebasin", direction="<"),
)


# ---- testing one claim ----------------------------------------------------------------------------------


def verdict(low: float, high: float, threshold: float, direction: str) -> str:
    """Reproduced when [low, high] lies wholly on the claimed side of the threshold, not reproduced when
    wholly on the other side (the threshold itself included), inconclusive when it crosses."""
    if math.isnan(low) or math.isnan(high):
        return NOT_APPLICABLE
    if direction == ">":
        return REPRODUCED if low > threshold else NOT_REPRODUCED if high <= threshold else INCONCLUSIVE
    if direction == "<":
        return REPRODUCED if high < threshold else NOT_REPRODUCED if low >= threshold else INCONCLUSIVE
    raise UsageError(f"unknown claim direction '{direction}'; valid: >, <")


def resample(phase, resamples: int = tables.RESAMPLES, seed: int = 0):
    """(resamples, cells) indices: each row draws every phase's cells with replacement from that phase."""
    import numpy as np

    rng = np.random.default_rng(seed)
    index = np.empty((resamples, len(phase)), dtype=np.intp)
    for name in LABELLED:  # a fixed order: the same cells give the same draws
        where = np.flatnonzero(phase == name)
        if where.size:
            index[:, where] = where[rng.integers(0, where.size, size=(resamples, where.size))]
    return index


def assess(claim: Claim, cells, loss_threshold: float | None = None, resamples: int = tables.RESAMPLES,
           seed: int = 0) -> dict[str, Any]:
    """Test one claim on a per-cell table (a `phase` column and the statistic's columns): its row of the
    claims table."""
    import numpy as np

    claim = for_task(claim, cells)
    row = _row(claim)
    source = f"{claim.method}'s results" if claim.method else "the zoo's annotations"
    missing = [c for c in claim.statistic.columns if c not in cells or cells[c].isna().all()]
    if missing:
        return {**row, "reason": f"{source} report no {', '.join(missing)}"}
    if claim.needs_loss_threshold and (loss_threshold is None or math.isnan(loss_threshold)):
        return {**row, "reason": "no train-loss threshold (no train loss annotated)"}
    usable = cells[cells["phase"].isin(claim.statistic.phases)].dropna(subset=list(claim.statistic.columns))
    phase = usable["phase"].to_numpy(dtype=object)
    row["groups"] = ", ".join(f"{name} {count}" for name, count in claim.statistic.groups(phase))
    row["cells"] = len(usable)
    problem = claim.statistic.problem(phase)
    if problem:
        return {**row, "reason": f"{problem}; phases: {_counts(phase) or 'none labelled'}"}
    columns = {c: usable[c].astype(float).to_numpy() for c in claim.statistic.columns}
    value = float(claim.statistic({c: v[None, :] for c, v in columns.items()}, phase, loss_threshold)[0])
    index = resample(phase, resamples, seed)
    draws = claim.statistic({c: v[index] for c, v in columns.items()}, phase, loss_threshold)
    tail = (1 - tables.LEVEL) / 2 * 100
    low, high = (float(v) for v in np.percentile(draws, [tail, 100 - tail]))
    return {**row, "value": value, "ci_low": low, "ci_high": high,
            "verdict": verdict(low, high, claim.threshold, claim.direction), "reason": ""}


def for_task(claim: Claim, cells) -> Claim:
    """The claim as its cells can test it: on the task's error where they report no accuracy at all but
    the error (the PINN), else as stated."""
    import dataclasses

    def reported(statistic: Statistic) -> bool:
        return all(c in cells and cells[c].notna().any() for c in statistic.columns)

    form = claim.without_accuracy
    if form is None or reported(claim.statistic) or not reported(form):
        return claim
    return dataclasses.replace(claim, statistic=form, without_accuracy=None)


def _row(claim: Claim) -> dict[str, Any]:
    return {"id": claim.id, "section": claim.section, "finding": claim.finding, "method": claim.method or "",
            "statistic": claim.statistic.describe(), "threshold": claim.threshold, "direction": claim.direction,
            "value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "verdict": NOT_APPLICABLE, "cells": 0,
            "groups": "", "reason": ""}


def _counts(phase) -> str:
    return ", ".join(f"{p} {int((phase == p).sum())}" for p in LABELLED if (phase == p).any())


def evaluate(cells, results: Mapping[str, Any], loss_threshold: float | None = None,
             claims: Sequence[Claim] = CLAIMS, resamples: int = tables.RESAMPLES, seed: int = 0):
    """The claims table (pandas, `COLUMNS`) for a labelled cell table (`cell_id`, `phase`, the zoo's
    metrics) and `results`: method name -> its per-cell results table (`unit`, `status`, numbers) or a
    one-line reason why there are none. A method missing from `results` has no stored results."""
    import pandas as pd

    phases = dict(zip(cells["cell_id"], cells["phase"])) if "cell_id" in cells else {}
    rows = []
    for claim in claims:
        if claim.method is None:
            rows.append(assess(claim, cells, loss_threshold, resamples, seed))
            continue
        found = results.get(claim.method, f"no stored results of {claim.method}")
        if isinstance(found, str):
            rows.append({**_row(claim), "reason": found})
            continue
        ok = found[found["status"] == "ok"] if "status" in found else found
        if ok.empty:
            rows.append({**_row(claim), "reason": f"every stored unit of {claim.method} failed"})
            continue
        table = ok.assign(phase=[phases.get(unit, "?") for unit in ok["unit"]])
        rows.append(assess(claim, table, loss_threshold, resamples, seed))
    return pd.DataFrame(rows, columns=list(COLUMNS))


# ---- on a stored zoo -------------------------------------------------------------------------------------


@dataclass
class ClaimsReport:
    """The claims tested on one zoo: what was read, and the claims table."""

    zoo: str
    fingerprint: str
    epoch: int
    rule: str  # the phase rule in force, as `Rule.summary()` says it
    source: str  # where the cell metrics come from: computed by zoobench, or published
    methods: dict[str, str] = field(default_factory=dict)  # method -> "v<version>, config <hash>" read
    table: Any = None  # pandas, `COLUMNS`

    def counts(self) -> str:
        """"2 reproduced, 1 inconclusive, ..." in the order of `VERDICTS`."""
        verdicts = self.table["verdict"]
        return ", ".join(f"{int((verdicts == v).sum())} {v}" for v in VERDICTS if (verdicts == v).any())


def check_claims(spec, store=None, epoch: int | None = None, methods: Sequence[str] | None = None,
                 plugins: Sequence[str] = (), claims: Sequence[Claim] = CLAIMS, resamples: int = tables.RESAMPLES,
                 seed: int = 0) -> ClaimsReport:
    """Test `claims` on the zoo of `spec`: its annotations at `epoch` (default: the spec's metric epoch)
    and each method's stored default-config results; with `methods`, only those methods' results are
    used (the others' claims are not applicable). Nothing is run."""
    from zoobench.landscape.annotations import cell_table
    from zoobench.landscape.phases import classify
    from zoobench.store import Store

    store = store or Store()
    zoo = store.zoo(spec)
    epoch = spec.metric_epoch if epoch is None else epoch
    labelled, rule = classify(spec, cell_table(zoo, epoch))
    source = str(labelled["source"].iloc[0]) if "source" in labelled and len(labelled) else "none"
    report = ClaimsReport(spec.name, spec.fingerprint, epoch, rule.summary(), source)
    if labelled.empty:
        import pandas as pd

        why = f"no annotated cells at epoch {epoch}: run `zoobench zoo annotate {spec.name}` first"
        report.table = pd.DataFrame([{**_row(c), "reason": why} for c in claims], columns=list(COLUMNS))
        return report
    results: dict[str, Any] = {}
    weights = zoo.has_weights()
    found = None  # the method registry, read when a method's results are first needed
    for name in dict.fromkeys(c.method for c in claims if c.method):
        if not weights:
            results[name] = f"{spec.name} holds published metrics only (no weights): {name} cannot run on it"
        elif methods is not None and name not in methods:
            results[name] = f"{name} is not among the methods reported here"
        else:
            if found is None:
                from zoobench.bench.plugins import discover

                found = discover(plugins)
            results[name] = _stored(name, spec, zoo, epoch, found, report)
    report.table = evaluate(labelled, results, rule.train_loss, claims, resamples, seed)
    return report


def _stored(name: str, spec, zoo, epoch: int, found, report: ClaimsReport):
    """A method's stored default-config results on the zoo (`found`: the method registry), or why there are
    none; what was read goes into `report.methods`."""
    from zoobench.bench.results import MethodResults
    from zoobench.errors import ZoobenchError
    from zoobench.method import make_config

    try:
        method = found.get(name)
    except ZoobenchError as error:
        return f"method {name} is not available: {error}"
    results = MethodResults(zoo, method, make_config(method), epoch)
    table = results.table()
    if table.empty:
        return (f"no stored results of {name} (config {results.config_hash}) on {spec.name}; run `zoobench run "
                f"--method {name} --zoo {spec.name}` first")
    report.methods[name] = f"v{method.version}, config {results.config_hash}"
    return table


# ---- showing the claims -------------------------------------------------------------------------------


def provenance(report: ClaimsReport) -> str:
    """Where the numbers come from, in one line."""
    methods = "; ".join(f"{m} {text}" for m, text in report.methods.items()) or "no method results"
    return (f"{report.zoo} ({report.fingerprint}), epoch {report.epoch}, cell metrics {report.source}; "
            f"phase rule: {report.rule}; methods (default configs): {methods}; {CI_NOTE}")


def interval(row: Mapping[str, Any], digits: int = 3) -> str:
    if row["verdict"] == NOT_APPLICABLE:
        return "-"
    return f"[{tables.number(row['ci_low'], digits)}, {tables.number(row['ci_high'], digits)}]"


def grid(report: ClaimsReport):
    """The claims table for reading: claim, finding, method, hypothesis, value, CI, verdict, why."""
    import pandas as pd

    rows = []
    for row in report.table.to_dict("records"):
        rows.append({"claim": row["id"], "section": row["section"], "finding": row["finding"],
                     "method": row["method"] or "-",
                     "hypothesis": f"{row['statistic']} {row['direction']} {tables.number(row['threshold'])}",
                     "value": tables.number(row["value"]), f"{tables.LEVEL:.0%} CI": interval(row, 4),
                     "verdict": row["verdict"], "cells": row["groups"] or "-", "reason": row["reason"] or "-"})
    return pd.DataFrame(rows, columns=["claim", "section", "finding", "method", "hypothesis", "value",
                                       f"{tables.LEVEL:.0%} CI", "verdict", "cells", "reason"])


def check_format(format: str) -> str:
    """The canonical format name ("rich" and "markdown" are accepted as aliases); a one-line error else."""
    format = ALIASES.get(format, format)
    if format not in FORMATS:
        raise UsageError(f"unknown format '{format}'; valid: {', '.join(FORMATS)}")
    return format


def markdown(report: ClaimsReport) -> str:
    """A Markdown page: what was tested on which data, then the claims table."""
    return (f"# Paper claims on {report.zoo}\n\nThe findings of Schürholt et al. 2025 tested on this zoo's cells: "
            f"reproduced when the {tables.LEVEL:.0%} CI lies wholly on the claimed side of the threshold, not "
            f"reproduced when wholly on the other, inconclusive when it crosses. {report.counts()}.\n\n"
            f"{provenance(report)}.\n\n{tables.to_markdown(grid(report))}")


def render(report: ClaimsReport, format: str) -> str:
    """The claims as csv, json or md text (the rich table is the CLI's)."""
    format = check_format(format)
    if format == "csv":
        return tables.to_csv(report.table)
    if format == "json":
        return tables.to_json({"zoo": report.zoo, "fingerprint": report.fingerprint, "epoch": report.epoch,
                               "rule": report.rule, "source": report.source, "methods": report.methods,
                               "ci": CI_NOTE, "claims": report.table})
    if format == "md":
        return markdown(report)
    raise UsageError("format 'table' is for terminals; valid for text: csv, json, md")


# ---- in a published leaderboard ---------------------------------------------------------------------------

CSV, MD = "claims.csv", "claims.md"


def write(report: ClaimsReport, folder: str | Path) -> list[Path]:
    """`folder/claims.csv` (the tidy table) and `folder/claims.md` (the page), stable bytes."""
    from zoobench.store import atomic

    folder = Path(folder)
    atomic.write_text(folder / CSV, tables.to_csv(report.table))
    atomic.write_text(folder / MD, markdown(report))
    return [folder / CSV, folder / MD]


def index_lines(folder, link: str) -> list[str]:
    """The claims section of a leaderboard index for a zoo folder that holds `claims.csv` (read back from
    it, so the index stays a function of the published files); `link` is the folder relative to the index."""
    import pandas as pd

    path = folder / CSV
    if not path.exists():
        return []
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    shown = pd.DataFrame([{"claim": row["id"], "finding": row["finding"], "value": tables.number(row["value"], 3),
                           f"{tables.LEVEL:.0%} CI": interval(row), "verdict": row["verdict"]}
                          for row in table.to_dict("records")])
    return [f"Paper claims ({CI_NOTE}; statistics, thresholds and reasons in [{MD}]({link}/{MD})):", "",
            tables.to_markdown(shown).rstrip(), ""]

