import numpy as np

from tasks.stats import RunningStats


def test_merging_shards_is_exact():
    rng = np.random.default_rng(0)
    data = rng.gamma(2.0, 3.0, size=(1000, 7)) + 100.0  # a large offset stresses naive formulas
    shards = np.array_split(data, [1, 17, 400, 401, 999])
    merged = RunningStats.empty(7)
    for s in shards:
        merged = merged.merge(RunningStats.of(s))
    assert merged.count == 1000
    np.testing.assert_allclose(merged.mean, data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(merged.std, data.std(0), rtol=1e-10)
    np.testing.assert_array_equal(merged.max, data.max(0))
    np.testing.assert_allclose(merged.upper_bounds(3.0), data.mean(0) + 3 * data.std(0), rtol=1e-10)


def test_empty_shards_change_nothing():
    x = np.arange(12.0).reshape(4, 3)
    a = RunningStats.of(x)
    b = a.merge(RunningStats.of(np.zeros((0, 3)))).merge(RunningStats.empty(3))
    np.testing.assert_array_equal(a.mean, b.mean)
    assert b.count == 4
