"""Heatmap panels of a zoo's grid: values laid out as drawn, colour limits, overlays, drawing, saving.

Every panel follows the field's convention: x = load (width), y = temperature with the hottest row
(small batch, large lr) at the top, one seed-mean value per cell. An axis whose values are all
powers of two is log2-spaced (evenly, for a doubling grid); any other axis is categorical. A
sequential colormap (viridis) shows values such as accuracy or loss; a diverging one (RdBu),
centred at 0 with symmetric limits, shows signed values (gains, deltas, mc). Optional overlays:
thick lines on the cell edges where neighbouring cells have different phases, and hatching on
"tied" cells (e.g. a difference within seed noise). Missing cells are grey.

Figures are drawn on a bare ``matplotlib.figure.Figure`` (no pyplot state), saved without dates
or software versions, so the same inputs give the same bytes, and written atomically.
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from zoobench.landscape.phases import PHASES
from zoobench.landscape.registry import column
from zoobench.spec import ZooSpec
from zoobench.store import atomic

PHASE_COLOURS = {"I": "#d62728", "II": "#e377c2", "III": "#dbb40c", "IV-A": "#17becf", "IV-B": "#2ca02c",
                 "diverged": "#3b3b3b", "?": "#ffffff"}
MISSING = "0.85"  # colour of cells without a value
CELL_IN = 0.42  # inches per cell
DPI = 150
STYLE = {"font.size": 7, "axes.titlesize": 7.5, "axes.labelsize": 7, "xtick.labelsize": 6.5,
         "ytick.labelsize": 6.5, "legend.fontsize": 6.5, "hatch.linewidth": 0.6, "svg.hashsalt": "zoobench",
         "path.simplify": False}

Segment = tuple[tuple[int, int], tuple[int, int]]


def is_signed(metric: str, values: Sequence[float]) -> bool:
    """Signed quantities get a diverging colormap centred at 0: a loss-landscape column as the metric
    catalogue declares it; a method's number when it is a gain, delta or barrier, or has mixed signs."""
    declared = column(metric)
    if declared is not None:
        return declared.signed
    finite = [v for v in values if v is not None and math.isfinite(v)]
    named = any(part in metric for part in ("gain", "delta", "mc", "barrier"))
    return named or (bool(finite) and min(finite) < 0 < max(finite))


# ---------------------------------------------------------------- pure helpers (grid, positions, overlays)

def grid_axes(spec: ZooSpec) -> tuple[list[Any], list[Any]]:
    """(loads left to right, temperatures top to bottom: hottest first)."""
    from zoobench.spec.grid import hot_first

    return list(spec.grid.load.values), hot_first(spec.grid.temperature)


def cell_ids(spec: ZooSpec) -> list[list[str]]:
    """Cell ids laid out as drawn: rows = temperatures hottest first, columns = loads."""
    from zoobench.spec.grid import cell

    loads, temperatures = grid_axes(spec)
    return [[cell(spec, load, temperature).id for load in loads] for temperature in temperatures]


def value_grid(table, spec: ZooSpec, metric: str, key: str = "unit"):
    """The seed-mean values of `metric` as drawn (rows hottest first, columns by load); NaN where missing.

    `table` has one row per cell: its id in column `key` and the value in `metric`; rows whose
    "status" is not "ok" count as missing."""
    import numpy as np

    ids = cell_ids(spec)
    grid = np.full((len(ids), len(ids[0]) if ids else 0), np.nan)
    if table is None or metric not in table or key not in table:
        return grid
    rows = table[table["status"] == "ok"] if "status" in table else table
    by_cell = dict(zip(rows[key], rows[metric]))
    for i, row in enumerate(ids):
        for j, cell_id in enumerate(row):
            value = finite_number(by_cell.get(cell_id))
            if value is not None:
                grid[i, j] = value
    return grid


def label_grid(labels: Mapping[str, Any] | None, spec: ZooSpec) -> list[list[Any]] | None:
    """Per-cell labels (e.g. phases) laid out as drawn; None where a cell has none."""
    if labels is None:
        return None
    return [[labels.get(cell_id) for cell_id in row] for row in cell_ids(spec)]


def phase_boundaries(labels: Sequence[Sequence[Any]]) -> list[Segment]:
    """Cell edges between neighbouring cells with different (known) labels.

    `labels[i][j]` is the label of row i (top to bottom), column j; cell (i, j) spans x from j to
    j + 1 and y from i to i + 1 in edge coordinates. A segment is ((x0, y0), (x1, y1)) in those
    coordinates: vertical edges first (row by row), then horizontal ones. Cells without a label
    (None) have no boundary."""
    rows = len(labels)
    columns = len(labels[0]) if rows else 0
    segments: list[Segment] = []
    for i in range(rows):
        for j in range(columns - 1):
            left, right = labels[i][j], labels[i][j + 1]
            if left is not None and right is not None and left != right:
                segments.append(((j + 1, i), (j + 1, i + 1)))
    for i in range(rows - 1):
        for j in range(columns):
            top, bottom = labels[i][j], labels[i + 1][j]
            if top is not None and bottom is not None and top != bottom:
                segments.append(((j, i + 1), (j + 1, i + 1)))
    return segments


def axis_centres(values: Sequence[Any]) -> list[float]:
    """Plot positions of an axis's values in the order drawn: log2-spaced when all are powers of two
    (a doubling grid is evenly spaced), else evenly spaced categories."""
    if len(values) > 1 and all(_power_of_two(v) for v in values):
        logs = [math.log2(float(v)) for v in values]
        centres = [0.0]
        for before, after in zip(logs, logs[1:]):
            centres.append(centres[-1] + abs(after - before))
        return centres
    return [float(k) for k in range(len(values))]


def axis_edges(centres: Sequence[float]) -> list[float]:
    """Cell edges around the centres: midpoints between neighbours, half a step beyond the ends."""
    if len(centres) == 1:
        return [centres[0] - 0.5, centres[0] + 0.5]
    middles = [(a + b) / 2 for a, b in zip(centres, centres[1:])]
    return [2 * centres[0] - middles[0], *middles, 2 * centres[-1] - middles[-1]]


def colour_limits(values: Iterable[float], signed: bool, log: bool = False) -> tuple[float, float] | None:
    """Colour range of some values: symmetric around 0 when signed, positive when log; None without values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v) and (v > 0 or not log)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    if signed:
        bound = max(abs(low), abs(high)) or 1.0
        return -bound, bound
    if low == high:
        pad = abs(low) * 0.1 or 0.5
        return (low / 2, low * 2) if log else (low - pad, high + pad)
    return low, high


# ---------------------------------------------------------------- panels

@dataclass
class Panel:
    """One heatmap as drawn: its grid (rows hottest first) and how to colour and annotate it."""

    grid: Any  # numpy array; for a phase map, indices into PHASES
    metric: str
    subtitle: str = ""
    limits: tuple[float, float] | None = None
    signed: bool = False
    log: bool = False
    ties: frozenset = frozenset()  # cell ids
    phases: list[list[Any]] | None = None  # phase labels as drawn, for the boundary overlay
    counts: tuple[int, ...] = ()  # models per cell behind the values
    labels: list[list[Any]] | None = None  # a categorical panel (phase map): the label of each cell
    note: str = ""  # shown instead of values when the panel has none
    explicit: bool = False  # limits given by the caller (never shared)


def make_panel(table, spec: ZooSpec, metric: str, subtitle: str = "", limits=None, phases=None, ties=None,
               signed: bool | None = None, log: bool = False, key: str = "unit") -> Panel:
    """A metric panel from a per-cell table (signedness from `is_signed` unless given)."""
    import numpy as np

    grid = value_grid(table, spec, metric, key)
    finite = grid[np.isfinite(grid)].tolist()
    signed = is_signed(metric, finite) if signed is None else signed
    log = log and not signed and bool(finite) and min(finite) > 0
    counts: set[int] = set()
    count_column = next((c for c in ("n_models", "models") if table is not None and c in table), None)
    if count_column and key in table:
        present = {cell_id for row, ids in zip(grid, cell_ids(spec)) for v, cell_id in zip(row, ids)
                   if math.isfinite(v)}
        counts = {int(n) for cell_id, n in zip(table[key], table[count_column])
                  if cell_id in present and finite_number(n) is not None}
    note = "" if finite else (f"no {metric} values" if table is not None and metric in table else f"no {metric}")
    return Panel(grid=grid, metric=metric, subtitle=subtitle, limits=tuple(limits) if limits is not None else None,
                 signed=signed, log=log, ties=frozenset(ties or ()), phases=label_grid(phases, spec),
                 counts=tuple(sorted(counts)), note=note, explicit=limits is not None)


def phase_panel(phases: Mapping[str, str], spec: ZooSpec, subtitle: str = "phase") -> Panel:
    """A categorical panel of each cell's phase label."""
    import numpy as np

    labels = label_grid(phases, spec)
    grid = np.array([[PHASES.index(p) if p in PHASES else np.nan for p in row] for row in labels], dtype=float)
    return Panel(grid=grid, metric="phase", subtitle=subtitle, labels=labels,
                 note="" if np.isfinite(grid).any() else "no phase labels")


def share_limits(panels: Sequence[Panel], shared: bool = True) -> list[Panel]:
    """Fill in each panel's colour limits. Panels with explicit limits keep them; with `shared`, the
    others share one range per metric (symmetric around 0 if any of them is signed)."""
    import numpy as np

    groups: dict[str, list[Panel]] = {}
    for index, panel in enumerate(panels):
        if panel.labels is not None or panel.explicit:
            continue
        groups.setdefault(panel.metric if shared else f"{index}", []).append(panel)
    for members in groups.values():
        signed = any(p.signed for p in members)
        log = all(p.log for p in members) and not signed
        values = [v for p in members for v in p.grid[np.isfinite(p.grid)].tolist()]
        limits = colour_limits(values, signed, log)
        for panel in members:
            panel.signed, panel.log, panel.limits = signed, log, limits
    return list(panels)


def draw_panel(figure, axes, panel: Panel, spec: ZooSpec, annotate: bool | None = None, xlabel: bool = True,
               ylabel: bool = True) -> None:
    """Draw one panel (heatmap, annotations, overlays, colour bar) on `axes`; the axis names only where asked."""
    import matplotlib
    import numpy as np
    from matplotlib import colors, patheffects
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Rectangle

    loads, temperatures = grid_axes(spec)
    xc, yc = axis_centres(loads), axis_centres(temperatures)
    xe, ye = axis_edges(xc), axis_edges(yc)
    grid = panel.grid
    annotate = grid.size <= 100 if annotate is None else annotate
    axes.set_facecolor(MISSING)
    if panel.labels is not None:
        cmap = colors.ListedColormap([PHASE_COLOURS[p] for p in PHASES]).with_extremes(bad=MISSING)
        norm = colors.BoundaryNorm(np.arange(len(PHASES) + 1) - 0.5, len(PHASES))
    else:
        cmap = matplotlib.colormaps["RdBu" if panel.signed else "viridis"].with_extremes(bad=MISSING)
        low, high = panel.limits or (0.0, 1.0)
        norm = colors.LogNorm(low, high) if panel.log and low > 0 else colors.Normalize(low, high)
    mesh = axes.pcolormesh(xe, ye, np.ma.masked_invalid(grid), cmap=cmap, norm=norm, shading="flat",
                           edgecolors="none")
    axes.set_xlim(xe[0], xe[-1])
    axes.set_ylim(ye[-1], ye[0])  # row 0 (hottest) at the top
    axes.set_xticks(xc, [_tick(v) for v in loads])
    axes.set_yticks(yc, [_tick(v) for v in temperatures])
    axes.tick_params(length=2, pad=1.5)
    if xlabel:
        axes.set_xlabel(f"{_axis_name(spec.grid.load.field)} (load)")
    if ylabel:
        axes.set_ylabel(f"{_axis_name(spec.grid.temperature.field)} (temperature, hot at the top)")
    ids = cell_ids(spec)
    fontsize = 6 if max(len(loads), len(temperatures)) <= 8 else 5
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            value = grid[i, j]
            dark = math.isfinite(value) and _dark(cmap(norm(value)))
            if annotate and math.isfinite(value):
                text = panel.labels[i][j] if panel.labels is not None else _short(value)
                axes.text(xc[j], yc[i], text, ha="center", va="center", fontsize=fontsize,
                          color="white" if dark else "black", zorder=4)
            if ids[i][j] in panel.ties:  # hatched, in a colour that shows on the cell
                axes.add_patch(Rectangle((xe[j], ye[i]), xe[j + 1] - xe[j], ye[i + 1] - ye[i], fill=False,
                                         hatch="////", edgecolor="0.85" if dark else "0.3", linewidth=0, zorder=3))
    if panel.phases is not None:
        lines = [[(xe[x0], ye[y0]), (xe[x1], ye[y1])] for (x0, y0), (x1, y1) in phase_boundaries(panel.phases)]
        if lines:
            axes.add_collection(LineCollection(
                lines, colors="black", linewidths=1.6, capstyle="projecting", zorder=5,
                path_effects=[patheffects.withStroke(linewidth=3.2, foreground="white")]))
    title = panel.subtitle or panel.metric
    axes.set_title(f"{title}\n(hatched: within seed noise)" if panel.ties else title, pad=4)
    if panel.note:
        axes.text(0.5, 0.5, panel.note, transform=axes.transAxes, ha="center", va="center", fontsize=7,
                  color="0.3", bbox={"facecolor": "white", "edgecolor": "0.6", "boxstyle": "round"}, zorder=6)
    if panel.labels is not None:  # a categorical colour bar: one slot per phase, in the paper's order
        bar = figure.colorbar(mesh, ax=axes, fraction=0.08, pad=0.03, aspect=18, ticks=range(len(PHASES)))
        bar.ax.set_yticklabels(PHASES)
        bar.ax.tick_params(labelsize=6.5, length=0)
        bar.ax.invert_yaxis()  # I at the top
        return
    bar = figure.colorbar(mesh, ax=axes, fraction=0.08, pad=0.03, aspect=18)
    bar.ax.tick_params(labelsize=6, length=2)
    label = panel.metric + (" (log scale)" if panel.log else "")
    bar.set_label(label, fontsize=6.5)


def panel_figure(panels: Sequence[Panel], spec: ZooSpec, title: str, columns: int | None = None,
                 annotate: bool | None = None):
    """A figure of panels on a grid (`columns` per row, default all in one row), titled `title`."""
    from matplotlib.figure import Figure

    loads, temperatures = grid_axes(spec)
    if any(panel.phases is not None and phase_boundaries(panel.phases) for panel in panels):
        title = f"{title}; black lines: phase boundaries"
    columns = columns or len(panels)
    rows = math.ceil(len(panels) / columns)
    width = columns * (CELL_IN * len(loads) + 1.45) + 0.45
    height = rows * (CELL_IN * len(temperatures) + 1.15)
    wrapped = _wrap(title, width, 8.5)
    height += 0.16 * (wrapped.count("\n") + 1) + 0.15
    figure = Figure(figsize=(width, height), layout="constrained")
    figure.get_layout_engine().set(w_pad=0.04, h_pad=0.06, wspace=0.05, hspace=0.06)
    for index, panel in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1)
        draw_panel(figure, axes, panel, spec, annotate, xlabel=index + columns >= len(panels),
                   ylabel=index % columns == 0)
    figure.suptitle(wrapped, fontsize=8.5)
    return figure


def save(figure, path: Path) -> Path:
    """Write the figure (format by suffix, PNG by default) without dates or versions, atomically."""
    path = Path(path)
    form = path.suffix.lstrip(".").lower() or "png"
    metadata = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
                "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}}.get(form)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=form, dpi=DPI, metadata=metadata)
    atomic.write_bytes(path, buffer.getvalue())
    return path


# ---------------------------------------------------------------- small helpers

def figure_style():
    import matplotlib

    return matplotlib.rc_context(STYLE)


def _dark(rgba) -> bool:
    """Whether white text reads better than black on this colour (perceived luminance)."""
    red, green, blue, _ = rgba
    return 0.299 * red + 0.587 * green + 0.114 * blue < 0.5


def finite_number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _power_of_two(value: Any) -> bool:
    number = finite_number(value)
    return number is not None and number > 0 and math.log2(number).is_integer()


def _tick(value: Any) -> str:
    number = finite_number(value)
    return f"{number:g}" if number is not None else str(value)


def _short(value: float) -> str:
    """A cell's value in at most about 5 characters."""
    if value == 0:
        return "0"
    if abs(value) < 1e-3 or abs(value) >= 1e4:
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:.2g}" if abs(value) < 1 else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _axis_name(field_name: str) -> str:
    return field_name.rsplit(".", 1)[-1].replace("_", " ")


def _wrap(title: str, width_in: float, fontsize: float) -> str:
    characters = max(20, int(width_in * 72 / (0.52 * fontsize)))
    return "\n".join(textwrap.fill(line, width=characters) for line in title.splitlines())
