import itertools
import math

import pytest

from conftest import QUIET, write_spec
from zoobench.landscape import stability
from zoobench.landscape.annotate import annotate
from zoobench.landscape.annotations import Annotations, cell_table
from zoobench.landscape.phases import Rule, classify
from zoobench.spec import read_spec_file
from zoobench.store import Store
from zoobench.train.generate import generate

RULE = Rule(train_loss=0.5, mc=0.05, cka=0.6)


def cell(losses: dict[str, float], mc: dict[tuple, float], cka: dict[tuple, float]) -> dict:
    return {"train_loss": {"c": losses}, "mc": {"c": mc}, "cka": {"c": cka}}


def test_a_label_that_one_seed_decides_is_two_thirds_stable():
    """CKA pairs 0.9, 0.9, 0.2: the mean 0.67 reads IV-B; without seed a, only the 0.2 pair is left (IV-A)."""
    values = cell({"a": 0.1, "b": 0.1, "c": 0.1}, {("a", "b"): 0.0, ("a", "c"): 0.0, ("b", "c"): 0.0},
                  {("a", "b"): 0.9, ("a", "c"): 0.9, ("b", "c"): 0.2})
    row = {"cell_id": "c", "phase": "IV-B"}
    assert stability._share(row, values, RULE) == pytest.approx(2 / 3)
    clear = cell({"a": 0.1, "b": 0.1, "c": 0.1}, {("a", "b"): 0.0, ("a", "c"): 0.0, ("b", "c"): 0.0},
                 {("a", "b"): 0.9, ("a", "c"): 0.8, ("b", "c"): 0.85})
    assert stability._share(row, clear, RULE) == 1
    # one seed's high loss (mean 0.6 > 0.5) makes the cell II; without that seed it is IV-B
    lossy = cell({"a": 0.1, "b": 0.1, "c": 1.6}, {("a", "b"): 0.0, ("a", "c"): 0.0, ("b", "c"): 0.0},
                 {("a", "b"): 0.9, ("a", "c"): 0.8, ("b", "c"): 0.85})
    assert stability._share({"cell_id": "c", "phase": "II"}, lossy, RULE) == pytest.approx(2 / 3)


def test_no_stability_without_three_seeds_pairs_or_a_label():
    two = cell({"a": 0.1, "b": 0.1}, {("a", "b"): 0.0}, {("a", "b"): 0.9})
    assert math.isnan(stability._share({"cell_id": "c", "phase": "IV-B"}, two, RULE))
    no_pairs = cell({"a": 0.1, "b": 0.1, "c": 0.1}, {}, {})
    assert math.isnan(stability._share({"cell_id": "c", "phase": "IV-B"}, no_pairs, RULE))
    full = cell({"a": 0.1, "b": 0.1, "c": 0.1}, {("a", "b"): 0.0, ("a", "c"): 0.0, ("b", "c"): 0.0},
                {("a", "b"): 0.9, ("a", "c"): 0.8, ("b", "c"): 0.85})
    assert math.isnan(stability._share({"cell_id": "c", "phase": "?"}, full, RULE))


def test_annotations_keep_each_pair_and_the_cell_value_is_their_mean(tmp_path):
    spec = read_spec_file(write_spec(tmp_path, widths=(4, 16), batch_sizes=(32,), seeds=(0, 1, 2), epochs=2))
    spec = spec.with_overrides({"annotation.mc.epochs": 1})
    store = Store(tmp_path / "home")
    generate(spec, store, execution=QUIET)
    annotate(spec, store, metrics=["eval", "cka", "mc"], execution=QUIET)
    zoo = store.zoo(spec)
    ids = {r.cell_id: sorted(m.id for m in zoo.models() if m.cell_id == r.cell_id) for r in zoo.models()}
    for metric, columns in (("cka", ("cka",)), ("mc", ("mc", "linear_mc"))):
        annotations = Annotations(zoo, metric, spec.metric_epoch)
        cells = annotations.cells().set_index("cell_id")
        for cell_id, pairs in annotations.pairs().items():
            assert sorted(pairs) == list(itertools.combinations(ids[cell_id], 2))
            for column in columns:
                values = [v[column] for v in pairs.values()]
                assert cells.loc[cell_id, column] == pytest.approx(sum(values) / len(values), rel=1e-12)
    labelled, rule = classify(spec, cell_table(zoo))
    shares = stability.seed_stability(zoo, labelled, rule)
    assert set(shares) == set(labelled["cell_id"])
    assert all(share in (0, 1 / 3, 2 / 3, 1) for share in shares.values() if not math.isnan(share))
