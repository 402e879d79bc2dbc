"""One self-contained HTML report of a zoo: its sheet, every method's tables and heatmap, comparisons.

Images are embedded as base64 PNGs and the page has no external links, so it opens offline and can
be mailed around as one file. Every number carries its provenance: the zoo's fingerprint, each
method's version, config and model count, zoobench's version and the date the report was made. A
few lines of inline script report any image that fails to decode to the browser console, so a
headless render (`zoobench.reports.browser.screenshot`) catches a broken report.
"""

from __future__ import annotations

import base64
import datetime
import html
import tempfile
from pathlib import Path
from typing import Sequence

from zoobench import __version__
from zoobench.reports import tables
from zoobench.spec import ZooSpec
from zoobench.store import Store, atomic

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1500px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; } .meta { color: #555; font-size: 0.9em; } code { background: #f4f4f4; }
"""
CHECK_IMAGES = """
window.addEventListener("load", () => {
  for (const image of document.images) {
    if (!image.complete || image.naturalWidth === 0) console.error("image failed to load: " + image.alt);
  }
});
"""


def write_report(spec: ZooSpec, path: str | Path, store: Store | None = None, methods: Sequence[str] | None = None,
                 comparisons: Sequence[tuple[str, str]] = (), plugins: Sequence[str] = (),
                 epoch: int | None = None) -> Path:
    """Write the report of `spec`'s zoo to `path`: `methods` (default: every method with stored results of
    its default config) and the given method pairs compared; nothing is computed but figures."""
    from zoobench.landscape.phases import phase_table
    from zoobench.reports.boards import from_store, overview, overview_grid, stored_methods
    from zoobench.reports.claims import check_claims, grid as claims_grid, provenance as claims_provenance
    from zoobench.reports.compare import compare
    from zoobench.reports.figures import heatmap, zoo_sheet

    store = store or Store()
    zoo = store.zoo(spec)
    names = list(methods) if methods is not None else stored_methods(spec, store, plugins, epoch)
    boards = [from_store(name, spec, store, None, plugins, epoch) for name in names]
    per_cell = [b for b in boards if b.scope == "cell"]
    parts = [f"<h1>{_text(spec.name)}</h1>", _meta(spec, zoo.path.name)]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        sheet = zoo_sheet(zoo, folder / "sheet.png", [(f"{b.method}: {b.headline}", b.table, b.headline)
                                                      for b in per_cell], epoch)
        parts += ["<h2>Zoo sheet</h2>", _image(sheet, f"{spec.name} zoo sheet")]
        phases = phase_table(zoo, epoch)
        if not phases.empty:
            counts = phases["phase"].value_counts()
            parts.append(_html_table(counts.rename_axis("phase").reset_index(name="cells")))
        if boards:
            parts += ["<h2>Headlines by phase</h2>", f"<p class=meta>mean [{tables.CI_NOTE}] n=cells</p>",
                      _html_table(overview_grid(overview(boards)))]
        found = check_claims(spec, store, epoch, names, plugins)
        parts += ["<h2 id=claims>Paper claims</h2>", f"<p class=meta>{_text(claims_provenance(found))}</p>",
                  _html_table(claims_grid(found))]
        for b in boards:
            parts += [f"<h2 id='{_text(b.method)}'>{_text(b.method)}</h2>", _provenance(b)]
            if b.scope == "cell":
                labels = dict(zip(b.table["unit"], b.table["phase"])) if "phase" in b.table else None
                figure = heatmap(b.table, spec, b.headline, folder / f"{b.method}.png", b.title, phases=labels)
                parts.append(_image(figure, f"{b.method} heatmap"))
            unit = "cells" if b.scope == "cell" else "splits"
            parts += [_html_table(tables.phase_grid(b.phases(), b.headline, unit=unit)),
                      f"<details><summary>per {unit[:-1]}</summary>{_html_table(b.cells())}</details>"]
        for first, second in comparisons:
            result = compare(first, second, spec, store, out=folder, plugins=plugins, epoch=epoch)
            parts += [f"<h2>{_text(result.first.label)} vs {_text(result.second.label)} on {_text(result.metric)}</h2>",
                      f"<p class=meta>ties: |difference| within seed noise, the {_text(result.noise_source)}</p>",
                      _image(result.files["figure"], f"{first} vs {second}"), _html_table(result.phases)]
    page = (f"<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>zoobench: {_text(spec.name)}</title>"
            f"<style>{STYLE}</style><script>{CHECK_IMAGES}</script></head><body>\n" + "\n".join(parts)
            + "\n</body></html>\n")
    atomic.write_text(Path(path), page)
    return Path(path)


def _meta(spec: ZooSpec, folder: str) -> str:
    made = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<p class=meta>{_text(spec.description)}<br>fingerprint <code>{spec.fingerprint}</code> "
            f"(store folder <code>{_text(folder)}</code>), metrics at epoch {spec.metric_epoch}, "
            f"{len(spec.grid.seeds)} seeds per cell; made by zoobench {_text(__version__)} on {made}</p>")


def _provenance(board) -> str:
    p = board.provenance
    config = ", ".join(f"{k}={v}" for k, v in p["config"].items()) or "no options"
    better = "higher" if p["higher_is_better"] else "lower"
    return (f"<p class=meta>{_text(p['method'])} v{_text(p['version'])}, config <code>{_text(p['config_hash'])}"
            f"</code>: {_text(config)}; epoch {p['epoch']}; headline <b>{_text(p['headline'])}</b> ({better} is "
            f"better); {p['ok_units']} of {p['units']} units ok, {p['models']} models; zoo fingerprint "
            f"<code>{_text(p['fingerprint'])}</code>; results from <code>{_text(board.source)}</code></p>")


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"<img alt='{_text(alt)}' src='data:image/png;base64,{data}'>"


def _html_table(frame) -> str:
    rows = ["<tr>" + "".join(f"<th>{_text(c)}</th>" for c in frame.columns) + "</tr>"]
    for record in frame.itertuples(index=False):
        rows.append("<tr>" + "".join(f"<td>{_text(_cell(v))}</td>" for v in record) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _cell(value) -> str:
    return tables.number(value) if isinstance(value, float) else str(value)


def _text(value) -> str:
    return html.escape(str(value), quote=True)
