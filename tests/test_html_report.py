"""The HTML report: one self-contained file with the zoo sheet, tables, heatmaps, comparison, provenance."""

import re

import pytest

from conftest import QUIET, zoobench_cli
from zoobench.reports.browser import find_browser, screenshot
from zoobench.reports.html_report import write_report
from zoobench.bench.runner import run


@pytest.fixture
def two_methods(zoo_copy):
    spec, store = zoo_copy
    for method in ("ensemble", "rebasin"):
        run(method, spec, store, generate_missing=False, execution=QUIET)
    return spec, store


def test_report_is_self_contained_and_states_provenance(two_methods, tmp_path):
    spec, store = two_methods
    page = write_report(spec, tmp_path / "report.html", store, comparisons=[("ensemble", "rebasin")]).read_text()
    sources = re.findall(r"src='([^']*)'", page)
    assert len(sources) == 1 + 2 + 1  # zoo sheet, one heatmap per method, the comparison
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(href|src)=['\"]?(https?:|file:|//)", page)  # nothing to fetch
    assert spec.fingerprint in page and "ensemble v2, config" in page and "rebasin v2, config" in page
    assert "95% CI, bootstrap over cells" in page and "ensemble vs rebasin on gain" in page
    assert "12 models" in page  # 4 cells x 3 seeds behind every method


@pytest.mark.skipif(find_browser() is None, reason="needs Chromium (Debian package chromium)")
def test_report_renders_in_headless_chromium_and_a_broken_image_is_caught(two_methods, tmp_path):
    spec, store = two_methods
    page = write_report(spec, tmp_path / "report.html", store)
    image = screenshot(page, tmp_path / "report.png", height=1200)
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1))
    with pytest.raises(Exception, match="image failed to load"):
        screenshot(broken, tmp_path / "broken.png", height=400)


def test_report_cli_rejects_a_malformed_comparison(tmp_path):
    result = zoobench_cli("report", "--zoo", "digits_mlp", "--out", str(tmp_path / "r.html"), "--compare", "ensemble",
                          home=tmp_path / "home")
    assert result.returncode == 2 and "--compare expects two methods as M1,M2, got 'ensemble'" in result.stderr
