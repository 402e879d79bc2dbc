"""Phase-resolved summaries and heatmaps of method results."""

import math

import pandas as pd
import pytest

from zoobench.report import heatmap, is_signed, phase_summary
from zoobench.spec import load_spec


def results(values: dict[str, tuple[str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"unit": unit, "phase": phase, "status": "ok", "n_models": 3, "gain": value}
                         for unit, (phase, value) in values.items()])


def test_phase_summary_counts_cells_and_models_and_averages_each_phase():
    table = results({"a": ("I", 1.0), "b": ("I", 3.0), "c": ("IV-B", -2.0)})
    table.loc[len(table)] = {"unit": "d", "phase": "I", "status": "failed", "n_models": 3, "gain": math.nan}
    summary = phase_summary(table, ["gain"]).set_index("phase")
    assert list(summary.index) == ["I", "IV-B"]  # paper order, failed units left out
    assert summary.loc["I", "cells"] == 2 and summary.loc["I", "models"] == 6
    assert summary.loc["I", "gain mean"] == 2.0 and summary.loc["I", "gain std"] == 1.0
    assert summary.loc["IV-B", "gain mean"] == -2.0 and summary.loc["IV-B", "gain std"] == 0.0


@pytest.mark.parametrize("metric, values, signed", [("merged_acc", [0.1, 0.9], False), ("gain", [0.1, 0.2], True),
                                                     ("mc", [0.0, 0.3], True), ("loss_change", [-1.0, 2.0], True)])
def test_signed_metrics_get_a_diverging_colormap(metric, values, signed):
    assert is_signed(metric, values) is signed


def test_heatmap_is_a_png_with_missing_cells_allowed(tmp_path):
    spec = load_spec("digits_mlp")
    table = results({"w2-bs4": ("I", 0.5), "w128-bs256": ("IV-B", -0.25)})
    path = heatmap(table, spec, "gain", tmp_path / "gain.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".tmp-*"))
