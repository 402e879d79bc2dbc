"""The figures: heatmaps, compare rows, the zoo sheet."""

import numpy as np
import pandas as pd
import pytest

from zoobench.reports import figures, panels
from zoobench.spec.grid import cell, cells
from zoobench.reports.figures import heatmap, heatmap_row, zoo_sheet
from zoobench.reports.panels import is_signed
from zoobench.spec import load_spec


def grid_7x7():
    """A digits spec with a fixed 7 x 7 grid (widths 2..128, batch sizes 4..256) that the cells below name."""
    return load_spec("digits_mlp").with_overrides({"grid.load.values": [2, 4, 8, 16, 32, 64, 128],
                                                   "grid.temperature.values": [4, 8, 16, 32, 64, 128, 256]})


def results(values: dict[str, tuple[str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"unit": unit, "phase": phase, "status": "ok", "n_models": 3, "gain": value}
                         for unit, (phase, value) in values.items()])


@pytest.mark.parametrize("metric, values, signed", [("merged_acc", [0.1, 0.9], False), ("gain", [0.1, 0.2], True),
                                                     ("mc", [0.0, 0.3], True), ("loss_change", [-1.0, 2.0], True)])
def test_signed_metrics_get_a_diverging_colormap(metric, values, signed):
    assert is_signed(metric, values) is signed


def test_heatmap_is_a_png_with_missing_cells_allowed(tmp_path):
    spec = grid_7x7()
    table = results({"w2-bs4": ("I", 0.5), "w128-bs256": ("IV-B", -0.25)})
    path = heatmap(table, spec, "gain", tmp_path / "gain.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".tmp-*"))


# ---------------------------------------------------------------- figures

@pytest.fixture
def drawn(monkeypatch):
    """The figures the public functions would save, instead of saving them."""
    captured = []
    monkeypatch.setattr(figures, "save", lambda figure, path: captured.append(figure) or path)
    return captured


def heatmaps(figure):
    """(axes, mesh) of each heatmap panel, left to right (colour bars left out)."""
    return [(a, a.collections[0]) for a in figure.axes if a.collections and a.get_label() != "<colorbar>"]


def test_the_hottest_temperature_is_the_top_row_and_values_land_in_their_cells(drawn, tmp_path):
    spec = grid_7x7()  # batch sizes 4..256: batch 4 is the hottest
    table = results({"w2-bs4": ("I", 1.0), "w128-bs256": ("IV-B", 2.0), "w8-bs16": ("I", 3.0)})
    grid = panels.value_grid(table, spec, "gain")
    assert grid.shape == (7, 7)
    assert grid[0, 0] == 1.0 and grid[6, 6] == 2.0 and grid[2, 2] == 3.0
    assert np.isnan(grid).sum() == 46
    heatmap(table, spec, "gain", tmp_path / "g.png", "t")
    (axes, mesh), = heatmaps(drawn[0])
    np.testing.assert_array_equal(np.ma.filled(mesh.get_array(), np.nan).reshape(7, 7), grid)
    low, high = sorted(axes.get_ylim())
    assert axes.get_ylim() == (high, low)  # y grows downwards: the smallest y is drawn at the top
    ticks = dict(zip([t.get_text() for t in axes.get_yticklabels()], axes.get_yticks()))
    assert ticks["4"] == min(ticks.values()) == low + 0.5  # the hot row's centre is the topmost
    xticks = dict(zip([t.get_text() for t in axes.get_xticklabels()], axes.get_xticks()))
    assert xticks["2"] < xticks["128"]


def test_an_lr_temperature_puts_the_largest_lr_on_top():
    spec = load_spec("convection_pinn")  # lr 0.01 .. 1.0: a large lr is hot
    hot = cell(spec, spec.grid.load.values[0], max(spec.grid.temperature.values)).id
    grid = panels.value_grid(pd.DataFrame({"unit": [hot], "gain": [5.0]}), spec, "gain")
    assert grid[0, 0] == 5.0 and np.isfinite(grid).sum() == 1


def test_power_of_two_axes_are_log2_spaced_and_others_categorical():
    assert panels.axis_centres([2, 4, 16]) == [0.0, 1.0, 3.0]
    assert panels.axis_centres([256, 128, 64]) == [0.0, 1.0, 2.0]
    assert panels.axis_centres([0.01, 0.1, 0.5, 1.0]) == [0.0, 1.0, 2.0, 3.0]
    assert panels.axis_centres([6, 12, 24, 48, 60]) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert panels.axis_edges([0.0, 1.0, 3.0]) == [-0.5, 0.5, 2.0, 4.0]


def test_signed_metrics_get_symmetric_limits_around_zero(drawn, tmp_path):
    spec = grid_7x7()
    table = results({"w2-bs4": ("I", 0.1), "w4-bs4": ("I", 0.3), "w8-bs4": ("I", -0.05)})
    table["merged_acc"] = [0.2, 0.9, 0.5]
    heatmap(table, spec, "gain", tmp_path / "g.png", "t")
    heatmap(table, spec, "merged_acc", tmp_path / "a.png", "t")
    heatmap(table, spec, "merged_acc", tmp_path / "l.png", "t", limits=(0.0, 1.0))
    (_, gain), = heatmaps(drawn[0])
    (_, accuracy), = heatmaps(drawn[1])
    (_, fixed), = heatmaps(drawn[2])
    assert gain.get_clim() == pytest.approx((-0.3, 0.3)) and gain.get_cmap().name.startswith("RdBu")
    assert accuracy.get_clim() == pytest.approx((0.2, 0.9)) and accuracy.get_cmap().name.startswith("viridis")
    assert fixed.get_clim() == (0.0, 1.0)


def compare_panels():
    first = results({"w2-bs4": ("I", 0.1), "w4-bs4": ("I", 0.4)})
    second = results({"w2-bs4": ("I", -0.2), "w4-bs4": ("I", 0.05)})
    difference = first[["unit", "status", "n_models"]].assign(**{"gain difference": [0.3, 0.35]})
    return [{"table": first, "metric": "gain", "subtitle": "ensemble"},
            {"table": second, "metric": "gain", "subtitle": "rebasin"},
            {"table": difference, "metric": "gain difference", "subtitle": "ensemble - rebasin",
             "ties": {"w2-bs4"}}]


def test_a_compare_row_shares_limits_between_methods_and_not_with_the_difference(drawn, tmp_path):
    spec = grid_7x7()
    heatmap_row(compare_panels(), spec, tmp_path / "row.png", "compare")
    meshes = [mesh for _, mesh in heatmaps(drawn[0])]
    assert [m.get_clim() for m in meshes] == [pytest.approx((-0.4, 0.4)), pytest.approx((-0.4, 0.4)),
                                              pytest.approx((-0.35, 0.35))]
    titles = [a.get_title() for a, _ in heatmaps(drawn[0])]
    assert titles[0] == "ensemble (3 models/cell)"  # how many models are behind each number
    assert titles[2] == "ensemble - rebasin (3 models/cell)\n(hatched: within seed noise)"
    hatched = [p for p in heatmaps(drawn[0])[2][0].patches if p.get_hatch()]
    assert len(hatched) == 1  # the tied cell

    panels = compare_panels()
    panels[1]["limits"] = (-1.0, 1.0)  # an explicit range wins over sharing
    heatmap_row(panels, spec, tmp_path / "row.png", "compare")
    heatmap_row(compare_panels(), spec, tmp_path / "row.png", "compare", shared_limits=False)
    assert [m.get_clim() for _, m in heatmaps(drawn[1])][:2] == [pytest.approx((-0.4, 0.4)), (-1.0, 1.0)]
    assert [m.get_clim() for _, m in heatmaps(drawn[2])][:2] == [pytest.approx((-0.4, 0.4)),
                                                                 pytest.approx((-0.2, 0.2))]


def test_the_same_inputs_give_byte_identical_pngs(tmp_path):
    spec = grid_7x7()
    phases = {"w2-bs4": "I", "w4-bs4": "II"}
    paths = []
    for attempt in ("a", "b"):
        paths.append(heatmap_row(compare_panels(), spec, tmp_path / attempt / "row.png", "compare"))
        paths.append(heatmap(compare_panels()[0]["table"], spec, "gain", tmp_path / attempt / "one.png", "t",
                             phases=phases, ties={"w2-bs4"}))
    assert paths[0].read_bytes() == paths[2].read_bytes() and paths[1].read_bytes() == paths[3].read_bytes()
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"Software" not in paths[0].read_bytes() and not list(tmp_path.rglob(".tmp-*"))


def test_phase_boundaries_are_the_edges_between_different_phases():
    layout = [["I", "I", "II"],
              ["III", "I", "II"],
              ["III", None, "II"]]
    assert sorted(panels.phase_boundaries(layout)) == sorted([
        ((2, 0), (2, 1)),  # I | II in row 0
        ((1, 1), (1, 2)), ((2, 1), (2, 2)),  # III | I | II in row 1
        ((0, 1), (1, 1)),  # I over III in column 0
    ])  # a cell without a label has no boundary
    assert panels.phase_boundaries([["I", "I"], ["I", "I"]]) == []


def test_the_phase_overlay_is_drawn_on_the_cell_edges(drawn, tmp_path):
    spec = grid_7x7()
    phases = {c.id: ("I" if c.load < 16 else "IV-B") for c in cells(spec)}
    heatmap(results({"w2-bs4": ("I", 1.0)}), spec, "gain", tmp_path / "g.png", "t", phases=phases)
    (axes, _), = heatmaps(drawn[0])
    lines = [c for c in axes.collections[1:] if c.get_segments()]
    segments = np.concatenate([np.asarray(s) for s in lines[0].get_segments()])
    assert len(lines) == 1 and len(lines[0].get_segments()) == 7
    assert set(segments[:, 0]) == {2.5}  # between width 8 (x = 2) and width 16 (x = 3)
    assert segments[:, 1].min() == -0.5 and segments[:, 1].max() == 6.5


def test_zoo_sheet_of_a_fully_annotated_zoo(tiny_zoo, tmp_path):
    from zoobench.landscape.phases import phase_table

    table = phase_table(tiny_zoo).rename(columns={"cell_id": "unit", "models": "n_models"})
    method = ("a method", table.assign(status="ok", gain=table["test_acc"] - 0.5), "gain")
    panels = figures.sheet_panels(tiny_zoo, [method])
    assert [p.metric for p in panels] == ["train_loss", "test_acc", "gap", "cka", "hessian_log_trace", "mc",
                                          "phase", "gain"]
    assert not [p.metric for p in panels if p.note]  # every metric is annotated
    assert next(p for p in panels if p.metric == "mc").signed
    assert np.isfinite(panels[-2].grid).all() and panels[-1].phases is not None
    path = zoo_sheet(tiny_zoo, tmp_path / "sheet.png", methods=[method])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_sheet_shows_the_numbers_the_task_has_and_says_which_metrics_are_not_annotated(tiny_zoo):
    from zoobench.landscape.phases import phase_table

    table = phase_table(tiny_zoo)
    pde = table.drop(columns=["test_acc", "train_acc", "gap"]).assign(test_rel_l2=0.1)  # a task without classes
    pde = pde.drop(columns=[c for c in pde if c.startswith("hessian")])  # and no Hessian annotated yet
    panels = figures.sheet_panels(tiny_zoo, table=pde)
    assert [p.metric for p in panels] == ["train_loss", "test_rel_l2", "cka", "hessian_log_trace", "mc", "phase"]
    assert [p.metric for p in panels if p.note] == ["hessian_log_trace"]
    assert "test_rel_l2" not in [p.metric for p in figures.sheet_panels(tiny_zoo, table=table)]
