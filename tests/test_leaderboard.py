"""Tables, comparisons and published leaderboards: deterministic, self-describing, comparable."""

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import QUIET, WIDTH_PLUGIN, zoobench_cli
from zoobench.reports import boards, leaderboard, tables
from zoobench.errors import UsageError, ZoobenchError
from zoobench.reports.compare import compare, outcomes, shared_metric, win_table
from zoobench.reports.boards import Board, from_folder
from zoobench.reports.leaderboard import publish
from zoobench.bench.runner import run

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"



def board(method: str, headline: str, values: dict[str, dict[str, float]], higher_is_better: bool = True,
          phases: dict[str, str] | None = None) -> Board:
    """A hand-made board: unit -> reported numbers (phase "I" unless given)."""
    rows = [{"unit": unit, "load": i, "temperature": 1, "phase": (phases or {}).get(unit, "I"), "status": "ok",
             "n_models": 3, **numbers} for i, (unit, numbers) in enumerate(values.items())]
    meta = {"zoo": "z", "fingerprint": "f", "method": method, "version": "1", "config": {}, "config_hash": "h",
            "epoch": 1, "headline": headline, "higher_is_better": higher_is_better, "scope": "cell"}
    return Board(meta, pd.DataFrame(rows), "hand-made")


def ensemble(spec, store):
    report = run("ensemble", spec, store, generate_missing=False, execution=QUIET)
    assert not report.failed
    return report


# ---- tables -----------------------------------------------------------------------------------------


def test_bootstrap_ci_is_seeded_and_contains_the_mean():
    values = [0.12, 0.5, 0.31, 0.93, 0.2, 0.44, 0.05]
    low, high = tables.bootstrap_ci(values)
    assert (low, high) == tables.bootstrap_ci(values)  # same inputs, same digits
    assert low < sum(values) / len(values) < high
    assert tables.bootstrap_ci(values, seed=1) != (low, high)
    assert tables.bootstrap_ci([0.4]) == (0.4, 0.4)
    assert all(math.isnan(v) for v in tables.bootstrap_ci([float("nan")]))


def test_phase_table_counts_cells_and_models_and_bootstraps_only_the_headline():
    b = board("m", "acc", {"a": {"acc": 0.2, "loss": 1.0}, "b": {"acc": 0.4, "loss": 3.0},
                           "c": {"acc": 0.9, "loss": 0.5}}, phases={"c": "IV-B"})
    b.table.loc[len(b.table)] = {"unit": "d", "load": 9, "temperature": 1, "phase": "I", "status": "failed",
                                 "n_models": 3, "acc": math.nan, "loss": math.nan}
    phases = b.phases()
    assert list(dict.fromkeys(phases["phase"])) == ["I", "IV-B", "all"]  # paper order, then all; failed left out
    first = phases[(phases["phase"] == "I") & (phases["metric"] == "acc")].iloc[0]
    assert (first["cells"], first["models"]) == (2, 6)
    assert first["mean"] == pytest.approx(0.3) and first["std"] == pytest.approx(0.1)
    assert first["ci_low"] <= 0.3 <= first["ci_high"]
    assert phases[phases["metric"] == "loss"][["ci_low", "ci_high"]].isna().all().all()
    assert phases[phases["phase"] == "all"]["cells"].iloc[0] == 3


def test_renderings_are_plain_and_rounded():
    frame = pd.DataFrame([{"phase": "I", "x": 1 / 3, "n": 2, "note": "a|b"}, {"phase": "II", "x": math.nan, "n": 1,
                                                                           "note": ""}])
    assert tables.to_csv(frame) == "phase,x,n,note\nI,0.333333,2,a|b\nII,,1,\n"
    markdown = tables.to_markdown(frame).splitlines()
    assert markdown[:3] == ["| phase | x | n | note |", "|---|---:|---:|---|", "| I | 0.3333 | 2 | a\\|b |"]
    assert markdown[3] == "| II | - | 1 |  |"
    assert json.loads(tables.to_json(frame))[0] == {"n": 2, "note": "a|b", "phase": "I", "x": 0.333333}
    assert json.loads(tables.to_json(frame))[1]["x"] is None
    with pytest.raises(UsageError, match="unknown format 'xml'"):
        tables.render(frame, "xml")


# ---- comparing --------------------------------------------------------------------------------------


def test_wins_ties_and_losses_respect_noise_and_direction():
    first = {"a": 0.50, "b": 0.50, "c": 0.50, "d": 0.50, "e": 0.50}
    second = {"a": 0.40, "b": 0.48, "c": 0.60, "d": 0.45, "f": 0.1}
    noise = {"a": 0.05, "b": 0.05, "c": 0.05, "d": float("nan")}  # d: no estimate, so strict
    cells = outcomes(first, second, noise).set_index("unit")
    assert cells["outcome"].to_dict() == {"a": "win", "b": "tie", "c": "loss", "d": "win", "e": "missing",
                                          "f": "missing"}
    assert cells.loc["a", "difference"] == pytest.approx(0.1)
    lower = outcomes(first, second, noise, higher_is_better=False)["outcome"].tolist()
    assert lower == ["loss", "tie", "win", "loss", "missing", "missing"]
    table = win_table(cells.reset_index().assign(phase=["I", "I", "II", "II", "II", "I"]))
    assert table.set_index("phase")[["cells", "wins", "ties", "losses", "missing"]].to_dict("index") == {
        "I": {"cells": 2, "wins": 1, "ties": 1, "losses": 0, "missing": 1},
        "II": {"cells": 2, "wins": 1, "ties": 0, "losses": 1, "missing": 1},
        "all": {"cells": 4, "wins": 2, "ties": 1, "losses": 1, "missing": 2}}


def test_shared_metric_rules():
    ens = board("ensemble", "gain", {"a": {"gain": 0.1, "ensemble_acc": 0.9}})
    reb = board("rebasin", "merged_acc", {"a": {"merged_acc": 0.8, "gain": -0.1, "member_acc": 0.9}})
    other = board("other", "gain", {"a": {"gain": 0.2}})
    assert shared_metric(ens, other) == "gain"  # the same headline
    assert shared_metric(ens, reb) == "gain"  # rebasin reports ensemble's headline
    assert shared_metric(reb, ens) == "gain"  # the first reports the second's headline
    assert shared_metric(reb, reb, "member_acc") == "member_acc"
    lonely = board("width", "width", {"a": {"width": 4.0}})
    with pytest.raises(UsageError, match="share no headline metric; pick one with --metric; both report: none"):
        shared_metric(lonely, ens)
    with pytest.raises(UsageError, match="--metric ensemble_acc is not reported by both .* both report: gain"):
        shared_metric(ens, reb, "ensemble_acc")


# ---- on a real zoo ----------------------------------------------------------------------------------


def test_publish_is_byte_for_byte_stable_and_complete(zoo_copy, tmp_path):
    spec, store = zoo_copy
    ensemble(spec, store)
    folders = [tmp_path / "one", tmp_path / "two"]
    for folder in folders:
        report = publish(spec, store, ["ensemble"], folder)
        assert report.folders == [folder / spec.name / "ensemble"] and report.index == folder / "README.md"
    files = sorted(p.relative_to(folders[0]) for p in folders[0].rglob("*") if p.is_file())
    assert files == sorted([Path("README.md"), Path(spec.name, "seed_noise.csv"), Path(spec.name, leaderboard.SHEET),
                            *(Path(spec.name, name) for name in leaderboard.CLAIM_FILES),
                            *(Path(spec.name, "ensemble", name) for name in leaderboard.CELL_FILES)])
    for name in files:
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name
    published = folders[0] / spec.name / "ensemble"
    meta = json.loads((published / "provenance.json").read_text())
    assert meta["fingerprint"] == spec.fingerprint and meta["models"] == 12 and meta["units"] == 4
    assert str(tmp_path) not in "".join(p.read_text() for p in published.glob("*.[cjm]*"))  # no absolute paths
    assert (published / "heatmap.png").read_bytes()[:8] == PNG
    assert "| ensemble | gain (higher is better) |" in (folders[0] / "README.md").read_text()
    cells = pd.read_csv(published / "cells.csv")
    assert list(cells.columns[:7]) == ["unit", "load", "temperature", "phase", "status", "n_models", "gain"]
    assert len(cells) == 4


def test_publishing_one_method_keeps_the_zoos_claims_and_sheet_for_the_others(zoo_copy, tmp_path):
    spec, store = zoo_copy
    ensemble(spec, store)
    run("rebasin", spec, store, generate_missing=False, execution=QUIET)
    publish(spec, store, ["ensemble", "rebasin"], tmp_path / "all")
    publish(spec, store, ["ensemble", "rebasin"], tmp_path / "some")
    publish(spec, store, ["ensemble"], tmp_path / "some")  # a later update of one method
    for name in (*leaderboard.CLAIM_FILES, leaderboard.SHEET):
        assert (tmp_path / "all" / spec.name / name).read_bytes() == (tmp_path / "some" / spec.name / name).read_bytes()


def test_compare_against_a_published_leaderboard(zoo_copy, tmp_path):
    spec, store = zoo_copy
    ensemble(spec, store)
    publish(spec, store, ["ensemble"], tmp_path / "boards")
    published = tmp_path / "boards" / spec.name / "ensemble"
    result = compare("ensemble", published, spec, store, out=tmp_path / "cmp")
    assert result.metric == "gain" and result.second.published and result.second.label == "ensemble (published)"
    assert set(result.cells["outcome"]) == {"tie"}  # the same numbers, up to the published rounding
    assert result.phases.iloc[-1][["phase", "cells", "ties"]].tolist() == ["all", 4, 4]
    assert result.files["figure"].read_bytes()[:8] == PNG
    assert "wins" in result.files["phases_md"].read_text()
    assert pd.read_csv(result.files["phases_csv"]).equals(pd.read_csv(result.files["phases_csv"]))
    folder = from_folder(published)
    assert folder.headline == "gain" and len(folder.table) == 4


def test_cli_show_compare_and_their_errors(zoo_copy, tmp_path):
    spec, store = zoo_copy
    home = store.home
    missing = zoobench_cli("leaderboard", "show", "--zoo", spec.name, "--method", "rebasin", home=home)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no stored results of rebasin (config ")
    assert lines[0].endswith(f"on {spec.name} in {home}; run `zoobench run --method rebasin --zoo {spec.name}` first")
    ensemble(spec, store)
    plugin = tmp_path / "width.py"
    plugin.write_text(WIDTH_PLUGIN)
    assert not run("width", spec, store, plugins=[str(plugin)], generate_missing=False, execution=QUIET).failed
    refused = zoobench_cli("leaderboard", "compare", "--zoo", spec.name, "width", "ensemble", "--plugin", str(plugin),
                           "--out", str(tmp_path / "cmp"), home=home)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "error: width (headline width) and ensemble (headline gain) share no headline metric; pick one with "
        "--metric; both report: none"]
    shown = zoobench_cli("leaderboard", "show", "--zoo", spec.name, "--method", "ensemble", "--format", "csv",
                         "--table", "phases", home=home)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == "phase,cells,models,metric,mean,std,ci_low,ci_high"
    names = boards.stored_methods(spec, store, [str(plugin)])
    assert names == ["ensemble", "width"]
    assert boards.stored_methods(spec, store, [str(plugin)], builtin_only=True) == ["ensemble"]
    overview = json.loads(boards.render_overview([boards.from_store(n, spec, store, plugins=[str(plugin)])
                                                       for n in names], "json"))
    assert [(row["method"], row["phase"]) for row in overview["headlines"]][-1] == ("width", "all")
    compared = zoobench_cli("leaderboard", "compare", "--zoo", spec.name, "ensemble", "ensemble", "--out",
                            str(tmp_path / "cmp"), home=home)
    assert compared.returncode == 0, compared.stderr
    assert "gain: wins, ties and losses of ensemble against ensemble per phase" in compared.stdout
    assert (tmp_path / "cmp" / "ensemble-vs-ensemble-gain.png").exists()


# ---- the committed leaderboards ---------------------------------------------------------------------


# every committed zoo folder: True where every built-in method is published (the embedded digits zoos)
COMMITTED = {"digits_mlp": True, "digits_resnet": True, "convection_pinn": False}


@pytest.mark.parametrize("zoo", sorted(COMMITTED))
def test_committed_leaderboards_match_the_current_methods(tmp_path, zoo):
    """Regenerating the committed tables needs the zoo's full store (minutes of training), so this checks
    what can be checked without it: the methods are published for the current spec fingerprint, method
    version and default config; every folder is complete; the per-phase tables follow from the per-cell
    ones."""
    from zoobench.method import make_config
    from zoobench.bench.plugins import discover
    from zoobench.bench.results import MethodResults
    from zoobench.spec import load_spec
    from zoobench.store import Store

    folder = ROOT / "leaderboards" / zoo
    spec = load_spec(zoo)
    found = discover()
    builtin = [n for n in found.names() if found.get(n).__module__.startswith("zoobench.methods")]
    published = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert set(published) <= set(builtin) and published
    if COMMITTED[zoo]:  # seed noise is the spread of test accuracy, which the PINN has not
        assert published == sorted(builtin) and (folder / boards.NOISE).exists()
    for name in published:
        b = from_folder(folder / name, spec)  # the current fingerprint, or a UsageError
        method = found.get(name)
        expected = MethodResults(Store(tmp_path).zoo(spec), method, make_config(method), spec.metric_epoch)
        command = leaderboard.PUBLISH_COMMAND.format(zoo=zoo)
        assert (b.provenance["version"], b.provenance["config_hash"]) == (method.version, expected.config_hash), (
            f"{name} changed since it was published: rerun it and `{command}`")
        files = leaderboard.ZOO_FILES if method.scope == "zoo" else leaderboard.CELL_FILES
        assert sorted(p.name for p in (folder / name).iterdir()) == sorted(files)
        summary = pd.read_csv(folder / name / ("summary.csv" if method.scope == "zoo" else "phases.csv"))
        again = b.phases()
        assert summary[["phase", "cells", "models", "metric"]].equals(again[["phase", "cells", "models", "metric"]])
        for column in ("mean", "std", "ci_low", "ci_high"):
            assert summary[column].to_numpy() == pytest.approx(again[column].to_numpy(), rel=1e-3, abs=1e-5,
                                                               nan_ok=True)


def test_the_committed_index_regenerates_byte_for_byte_from_its_folders(tmp_path):
    published = ROOT / "leaderboards"
    assert {p.name for p in published.iterdir() if p.is_dir()} == set(COMMITTED) | {"reference"}
    copy = tmp_path / "leaderboards"
    shutil.copytree(published, copy)
    leaderboard.write_index(copy)
    assert (copy / "README.md").read_bytes() == (published / "README.md").read_bytes()


def test_unknown_or_wrong_leaderboard_folders_are_usage_errors(tmp_path):
    from zoobench.spec import load_spec

    with pytest.raises(UsageError, match="is not a published leaderboard folder"):
        from_folder(tmp_path)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "provenance.json").write_text(json.dumps({"zoo": "other", "fingerprint": "x", "scope": "cell",
                                                        "headline": "h"}))
    (folder / "cells.csv").write_text("unit,status,n_models,h\na,ok,3,1\n")
    with pytest.raises(UsageError, match="holds results on other \\(x\\), not on digits_mlp"):
        from_folder(folder, load_spec("digits_mlp"))
    assert isinstance(UsageError("x"), ZoobenchError)
