"""Wilson interval and summaries: pure functions, known values."""

from __future__ import annotations

import math

import pytest

from visuomotor.eval.metrics import EpisodeResult, format_table, summarize, wilson_interval


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (5, 10, 0.2366, 0.7634),  # the textbook example
        (0, 10, 0.0, 0.2775),  # hi = z²/(n+z²)
        (10, 10, 0.7225, 1.0),
        (1, 1, 0.2065, 1.0),
        (0, 1, 0.0, 0.7935),
        (81, 263, 0.2553, 0.3662),
        (45, 50, 0.7864, 0.9565),
    ],
)
def test_wilson_known_values(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_edges_are_exact_and_inside_unit_interval():
    assert wilson_interval(0, 50)[0] == 0.0
    assert wilson_interval(50, 50)[1] == 1.0
    for n in (1, 2, 7, 50, 1000):
        for k in range(0, n + 1, max(1, n // 7)):
            lo, hi = wilson_interval(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_is_symmetric_and_narrows_with_n():
    lo, hi = wilson_interval(3, 20)
    lo2, hi2 = wilson_interval(17, 20)
    assert lo == pytest.approx(1 - hi2) and hi == pytest.approx(1 - lo2)
    assert wilson_interval(50, 100)[1] - wilson_interval(50, 100)[0] < hi - lo
    # A larger z gives a wider interval.
    assert wilson_interval(5, 10, z=2.576)[0] < wilson_interval(5, 10)[0]


@pytest.mark.parametrize(("k", "n"), [(0, 0), (1, 0), (-1, 5), (6, 5)])
def test_wilson_rejects_bad_counts(k, n):
    with pytest.raises(ValueError, match="wilson_interval"):
        wilson_interval(k, n)


def _ep(env_id, i, success, ret=1.0, length=10, ms=2.0):
    return EpisodeResult(env_id, i, 1_000_000 + i, success, ret, length, ms)


def test_summarize_pools_and_splits_by_task():
    results = [_ep("a", 0, True, 3.0, 10), _ep("a", 1, False, 1.0, 20), _ep("b", 0, True, 5.0, 4, ms=4.0)]
    overall, per_task = summarize(results)
    assert list(per_task) == ["a", "b"]
    assert (per_task["a"].episodes, per_task["a"].successes) == (2, 1)
    assert per_task["a"].success_rate == 0.5
    assert per_task["a"].ci95 == wilson_interval(1, 2)
    assert per_task["a"].mean_return == 2.0 and per_task["a"].mean_length == 15.0
    assert overall.episodes == 3 and overall.successes == 2
    assert math.isclose(overall.mean_inference_ms, 8.0 / 3)
    table = format_table(per_task, overall)
    assert "a" in table and "b" in table and "all" in table and "50.0%" in table
    j = per_task["b"].to_json()
    assert set(j) >= {"success_rate", "ci95", "episodes", "mean_return", "mean_length"}


def test_summarize_rejects_no_episodes():
    with pytest.raises(ValueError):
        summarize([])
