"""The metric catalogue: a metric registered in one place reaches everything that shows metrics, and the
built-in records say what the rest of the package used to guess."""

import math
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from zoobench.bench.cells import open_cells
from zoobench.cli import app
from zoobench.errors import ZoobenchError
from zoobench.landscape.phases import metric_summary, phase_table
from zoobench.landscape.registry import METRICS, Column, Metric, column, phase_columns, phase_metrics, seed_mean
from zoobench.method import Context, Zoo, make_config, landscape_targets
from zoobench.methods.probe import Probe
from zoobench.reports.figures import sheet_panels
from zoobench.spec import SpecError


@dataclass(frozen=True)
class ToySettings:
    scale: float = 1.0


def widest_weight(models, data, settings: ToySettings) -> dict[str, float]:
    """A toy per-cell metric: the largest absolute weight of the first layer, averaged over the seeds."""
    return {"toy_weight": settings.scale * sum(float(m[1].weight.detach().abs().max()) for m in models) / len(models)}


TOY = Metric("toy", "cell", widest_weight, settings=ToySettings,
             columns=(Column("toy_weight", "largest first-layer weight", sheet=True, target="toy_weight"),))


@pytest.fixture
def toy():
    METRICS.add("toy", TOY, origin="a test")
    yield TOY
    METRICS.remove("toy")


def test_a_registered_metric_reaches_annotate_the_cell_table_the_sheet_and_the_probe(toy, zoo_copy):
    spec, store = zoo_copy
    result = CliRunner().invoke(app, ["zoo", "annotate", spec.source, "--metrics", "toy", "--workers", "1",
                                      "--home", str(store.home)])
    assert result.exit_code == 0, result.output
    assert "toy: annotated 4 cells" in result.output and "toy_weight" in result.output  # the summary has it
    zoo = store.zoo(spec)
    table = phase_table(zoo).set_index("cell_id")
    cells = open_cells(zoo)
    expected = widest_weight(cells["w4-bs64"].models(), None, ToySettings())["toy_weight"]
    assert table.loc["w4-bs64", "toy_weight"] == pytest.approx(expected)
    assert "toy_weight" in set(metric_summary(phase_table(zoo))["metric"])
    titles = [panel.subtitle for panel in sheet_panels(zoo)]
    assert titles.index("largest first-layer weight") == titles.index("mode connectivity mc (< 0: barrier)") + 1
    assert ("toy_weight", "toy_weight", False) in landscape_targets()
    probe = Probe().run(Zoo("random0", spec, list(cells.values())), Context(make_config(Probe), spec))
    assert "r2_toy_weight" in probe and "alpha_toy_weight" in probe


def test_a_spec_sets_a_registered_metrics_settings_and_refuses_unknown_ones(toy, tiny_spec_path):
    from zoobench.spec import read_spec_file

    text = tiny_spec_path.read_text()
    tiny_spec_path.write_text(text + "\n[annotation.toy]\nscale = 2\n")
    spec = read_spec_file(tiny_spec_path)
    assert spec.annotation_settings("toy") == ToySettings(2.0)
    assert spec.annotation_settings("hessian").batches == 10  # defaults where the spec is silent
    tiny_spec_path.write_text(text + "\n[annotation.tyo]\nscale = 2\n")
    with pytest.raises(SpecError, match=r"\[annotation.tyo\]: unknown metric 'tyo'; did you mean 'toy'"):
        read_spec_file(tiny_spec_path)
    tiny_spec_path.write_text(text + "\n[annotation.toy]\nscael = 2\n")
    with pytest.raises(SpecError, match="unknown key 'annotation.toy.scael'; valid keys in \\[annotation.toy\\]: scale"):
        read_spec_file(tiny_spec_path)


def test_the_catalogue_says_what_feeds_the_phase_rule_and_how_columns_are_drawn():
    assert phase_columns() == {"loss": "train_loss", "connectivity": "mc", "similarity": "cka"}
    assert phase_metrics() == ("eval", "cka", "mc")
    assert column("mc").signed and not column("cka").signed and column("train_loss").log
    assert column("test_acc").higher_is_better and column("merged_acc") is None  # a method's number, not declared
    assert [name for name, _, _ in landscape_targets()] == ["test_acc", "gap", "cka", "log_hessian_trace", "mc"]


def test_a_second_metric_claiming_a_phase_input_is_refused(toy):
    METRICS.add("loss2", Metric("loss2", "model", widest_weight, columns=(Column("loss2", "x", phase="loss"),)))
    try:
        with pytest.raises(ZoobenchError, match="'train_loss' and 'loss2' both claim the phase input 'loss'"):
            phase_columns()
    finally:
        METRICS.remove("loss2")


def test_a_record_that_is_not_a_metric_is_refused_when_loaded():
    METRICS.add("broken", "zoobench.landscape.metrics.eval:evaluate")
    try:
        with pytest.raises(ZoobenchError, match="metric 'broken' is registered as .*, not a Metric named 'broken'"):
            METRICS.get("broken")
    finally:
        METRICS.remove("broken")


def test_the_seed_mean_leaves_out_missing_values_and_is_undefined_where_one_is_not_finite():
    mean = seed_mean([{"a": 1.0, "b": None, "c": 1.0}, {"a": 2.0, "b": 4.0, "c": math.inf}])
    assert mean["a"] == 1.5 and mean["b"] == 4.0 and math.isnan(mean["c"])
