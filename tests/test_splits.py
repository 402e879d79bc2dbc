"""The named splits: seeded and reproducible, groups never cut, sizes as documented."""

from __future__ import annotations

import numpy as np

from zoobench.data.splits import holdout_split, random_split, standard_splits


def test_random_split_is_70_15_15_by_group_and_seeded():
    groups = [f"m{i // 3}" for i in range(300)]  # 100 models, 3 rows each
    split = random_split(groups)
    sizes = [len({groups[i] for i in part}) for part in (split.train, split.val, split.test)]
    assert sizes == [70, 15, 15] and sorted(np.concatenate([split.train, split.val, split.test])) == list(range(300))
    assert np.array_equal(random_split(groups).test, split.test)
    assert not np.array_equal(random_split(groups, seed=0).test, split.test)


def test_holdout_split_tests_one_side_and_validates_on_the_other():
    groups = list(range(40))
    split = holdout_split(groups, [g < 34 for g in groups], [g >= 36 for g in groups], "x", "x")
    assert list(split.test) == [36, 37, 38, 39] and len(split.val) == round(34 * 0.15 / 0.85)
    assert set(split.train) | set(split.val) == set(range(34))  # 34 and 35 are on neither side


def test_standard_splits_cross_phases_and_the_larger_half_of_the_loads():
    loads = [1, 2, 4, 8, 16] * 4
    phases = ["II", "III", "I", "IV-B", "IV-A"] * 4
    splits = standard_splits(list(range(20)), loads, phases)
    assert {loads[i] for i in splits["cross_load"].test} == {8, 16}
    assert {loads[i] for i in [*splits["cross_load"].train, *splits["cross_load"].val]} == {1, 2, 4}
    assert {phases[i] for i in splits["cross_phase"].test} == {"IV-A", "IV-B"}
    assert "cross_phase" not in standard_splits(list(range(4)), [1, 1, 2, 2], ["II"] * 4)  # no Phase IV: no split
