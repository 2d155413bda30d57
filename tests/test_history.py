"""Purchase history (stylehub_ray.features.history): the key lookup, the popularity fallback,
and the one drop-bought + top-up the baselines and the two-tower share, by hand and against a
per-row loop."""

from __future__ import annotations

import numpy as np
import pytest

from stylehub_ray.features.history import History, Purchases, top_up


def test_history_keys_and_lookup():
    h = History.from_pairs(np.array([2, 0, 2, 2]), np.array([4, 1, 4, 0]),
                           np.array([True, False, False, True]), 3, 5)
    assert h.keys.tolist() == [1, 10, 14]  # distinct pairs, customer * 5 + article
    assert [b.tolist() for b in h.bought(np.array([0, 1, 2]))] == [[1], [], [0, 4]]
    got = h.contains(np.array([2, 1]), np.array([[4, 1, -1], [1, 0, 4]]))
    assert got.tolist() == [[True, False, False], [False, False, False]]
    # One recent sale each for 4 and 0; the tie goes to 4 (two sales in all), then 1.
    assert h.popular[:3].tolist() == [4, 0, 1]
    np.testing.assert_allclose(h.popular_score[:3], [0.5, 0.5, 0.0])
    assert h.count(np.array([0, 1, 2, 3, -1])).tolist() == [1, 0, 2, 0, 0]


def test_purchases_lookup_and_top_up_by_hand():
    # Customer 0 bought 1 and 3 (3 twice), customer 1 nothing.
    bought = Purchases.from_rows(np.array([0, 0, 0]), np.array([3, 1, 3]), 2, 5)
    assert bought.contains(np.array([0, 1]), np.array([[1, 2, -1], [1, 2, 3]])).tolist() == [
        [True, False, False], [False, False, False]]
    assert bought.count(np.array([0, 1])).tolist() == [2, 0]
    candidates = np.array([[3, 2, 2, -1], [4, -1, -1, -1]])
    fallback = np.array([1, 0, 2, 3, 4])
    recs, column = top_up(candidates, np.array([0, 1]), 3, bought, fallback)
    # Row 0: 3 is bought, 2 then its repeat; fallback 1 (bought), 0. Row 1: 4 then 1, 0.
    assert recs.tolist() == [[2, 0, 4], [4, 1, 0]]
    assert column.tolist() == [[1, -1, -1], [0, -1, -1]]
    assert ((column >= 0).sum(1) < 3).tolist() == [True, True]  # both needed the fallback
    recs, column = top_up(candidates, np.array([0, 1]), 2, None, fallback)
    assert recs.tolist() == [[3, 2], [4, 1]]
    assert ((column >= 0).sum(1) < 2).tolist() == [False, True]
    # Fewer usable articles than k: padded with -1.
    recs, column = top_up(np.array([[0, 1]]), np.array([0]), 6, bought, np.array([2]))
    assert recs.tolist() == [[0, 2, -1, -1, -1, -1]] and column[0, 0] == 0


def _loop_top_up(candidates, customer_idx, k, bought, fallback):
    """The per-row Python loop the two-tower used before (drop bought, fill the -1 slots)."""
    out = np.full((len(candidates), k), -1, np.int64)
    for r, (row, c) in enumerate(zip(candidates, customer_idx)):
        have = set(bought.bought([c])[0].tolist()) if bought is not None else set()
        keep = []
        for a in row.tolist():
            if a >= 0 and a not in have and a not in keep:
                keep.append(a)
        keep += [a for a in fallback.tolist() if a not in have and a not in keep]
        out[r, :min(k, len(keep))] = keep[:k]
    return out


@pytest.mark.parametrize("drop", [True, False])
def test_top_up_matches_a_loop_per_row(drop):
    rng = np.random.default_rng(0)
    n_c, n_a, k = 20, 30, 8
    c = rng.integers(0, n_c, 200)
    a = rng.integers(0, n_a, 200)
    bought = Purchases.from_rows(c, a, n_c, n_a)
    fallback = rng.permutation(n_a)
    customers = np.arange(n_c)
    cand = rng.integers(-1, n_a, (n_c, 12))
    recs, column = top_up(cand, customers, k, bought if drop else None, fallback)
    assert recs.tolist() == _loop_top_up(cand, customers, k, bought if drop else None,
                                         fallback).tolist()
    # column points back into the candidates wherever a recommendation came from them.
    r, j = np.nonzero(column >= 0)
    assert (cand[r, column[r, j]] == recs[r, j]).all()
