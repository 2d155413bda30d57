"""Baselines (stylehub_ray.eval.baselines): hand-computed popularity, adjusted cosine and
weighted-sum predictions, the exclusion / fallback logic (its core: tests/test_history.py),
and planted structure for ALS."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from stylehub_ray.eval.baselines import (
    ALSBaseline,
    Interactions,
    ItemCFBaseline,
    PopularityBaseline,
    adjusted_cosine,
    make_baseline,
    popularity_ranking,
    popularity_scores,
    top_per_row,
)

CUTOFF = np.datetime64("2020-09-16", "D")


def interactions(rows, n_customers, n_articles, cutoff=CUTOFF) -> Interactions:
    """rows: (customer, article, days before the cutoff; 1 = the last day)."""
    c, a, d = (np.array(x) for x in zip(*rows))
    return Interactions(c.astype(np.int64), a.astype(np.int64),
                        cutoff - d.astype("timedelta64[D]"), n_customers, n_articles, cutoff)


def test_interactions_reject_bad_input_naming_field_and_value():
    with pytest.raises(ValueError, match="article_idx 7 outside 0..4"):
        interactions([(0, 7, 1)], 2, 5)
    with pytest.raises(ValueError, match="customer_idx -1"):
        interactions([(-1, 0, 1)], 2, 5)
    with pytest.raises(ValueError, match="not before the cutoff"):
        interactions([(0, 1, 0)], 2, 5)  # 0 days before: on the cutoff day itself


def test_popularity_scores_decay_and_window_by_hand():
    # window 3 days, half-life 1 day: the last day weighs 1, the one before 0.5, then 0.25;
    # a sale 4 days before the cutoff is outside the window.
    data = interactions([(0, 0, 1), (1, 0, 3), (0, 1, 2), (1, 1, 2), (2, 2, 4), (2, 3, 1)],
                        3, 5)
    got = popularity_scores(data, window_days=3, half_life_days=1.0)
    assert got == pytest.approx([1 + 0.25, 0.5 + 0.5, 0.0, 1.0, 0.0])
    # Ties broken by all-time sales (article 2 sold once, article 4 never), then by index.
    assert popularity_ranking(data, 3, 1.0).tolist() == [0, 1, 3, 2, 4]


def test_popularity_recommend_excludes_what_each_customer_bought():
    data = interactions([(0, 0, 1), (1, 0, 1), (2, 0, 1), (0, 1, 1), (1, 1, 1), (2, 2, 1)],
                        4, 5)
    model = PopularityBaseline(window_days=7, half_life_days=3.0).fit(data)
    customers = np.array([0, 2, 3])
    assert model.recommend(customers, 3, exclude_bought=False).tolist() == [
        [0, 1, 2], [0, 1, 2], [0, 1, 2]]
    # Customer 0 bought 0 and 1, customer 2 bought 0 and 2, customer 3 nothing.
    assert model.recommend(customers, 3, exclude_bought=True).tolist() == [
        [2, 3, 4], [1, 3, 4], [0, 1, 2]]
    # Five articles, customer 0 bought two: only three are left, the rest is padding.
    assert model.recommend(np.array([0]), 5, exclude_bought=True).tolist() == [
        [2, 3, 4, -1, -1]]


def test_top_per_row_orders_by_value_then_column_and_pads():
    scores = sp.csr_matrix(np.array([[0.0, 0.5, 0.9, 0.5], [0.0, 0.0, 0.0, 0.2],
                                     [0.0, 0.0, 0.0, 0.0]]))
    cols, values = top_per_row(scores, 3)
    assert cols.tolist() == [[2, 1, 3], [3, -1, -1], [-1, -1, -1]]
    assert values.tolist() == [[0.9, 0.5, 0.5], [0.2, 0.0, 0.0], [0.0, 0.0, 0.0]]


def _adjusted_cosine_dense(r: np.ndarray) -> np.ndarray:
    """Section 2.1 literally: the sums over every customer, unbought = rating 0."""
    centred = r - r.mean(axis=1, keepdims=True)
    num = centred.T @ centred
    norm = np.sqrt(np.diag(num))
    return num / np.outer(norm, norm)


def test_adjusted_cosine_matches_the_formula_on_co_bought_pairs():
    r = np.array([[2, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 3],
                  [1, 0, 0, 0, 1]], dtype=float)
    got = adjusted_cosine(sp.csr_matrix(r), neighbors=4).toarray()
    want = _adjusted_cosine_dense(r)
    co_bought = (r.T @ r > 0) & ~np.eye(5, dtype=bool)
    kept = got != 0
    # Every kept similarity is the formula's value; every positive co-bought one is kept.
    assert got[kept] == pytest.approx(want[kept])
    assert (kept == (co_bought & (want > 0))).all()
    # A hand-checked value: articles 0 and 1. Customer means 0.6, 0.6, 0.4, 0.8, 0.4.
    m = np.array([0.6, 0.6, 0.4, 0.8, 0.4])
    a0, a1 = np.array([2, 1, 0, 0, 1]) - m, np.array([1, 1, 0, 0, 0]) - m
    assert got[0, 1] == pytest.approx(a0 @ a1 / math.sqrt((a0 @ a0) * (a1 @ a1)))


def test_adjusted_cosine_keeps_the_top_neighbours_per_article():
    r = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=float)
    want = _adjusted_cosine_dense(r)
    got = adjusted_cosine(sp.csr_matrix(r), neighbors=1).toarray()
    for i in range(4):
        others = [j for j in range(4) if j != i and want[i, j] > 0]
        best = max(others, key=lambda j: (want[i, j], -j))
        assert np.flatnonzero(got[i]).tolist() == [best]


def test_adjusted_cosine_in_blocks_equals_one_block():
    """Building R^T R a few articles at a time (bounded memory) changes nothing: the same
    neighbours, the same values, bit for bit, whatever the block size."""
    rng = np.random.default_rng(3)
    r = sp.random(60, 40, density=0.15, random_state=rng, format="csr",
                  data_rvs=lambda n: rng.integers(1, 4, n)).astype(np.float64)
    whole = adjusted_cosine(r, neighbors=5, block_products=10**12)
    for budget in (1, 50, 400):
        blocked = adjusted_cosine(r, neighbors=5, block_products=budget)
        assert (blocked != whole).nnz == 0
        assert np.array_equal(blocked.indptr, whole.indptr)
        assert np.array_equal(blocked.indices, whole.indices)
    assert whole.nnz > 100  # enough neighbours for the comparison to mean something


def test_item_cf_weighted_sum_prediction_by_hand():
    rows = [(0, 0, 5), (0, 1, 5), (1, 0, 4), (1, 1, 4), (1, 2, 4), (2, 2, 3), (2, 3, 3),
            (3, 3, 2), (3, 4, 2), (4, 0, 1), (4, 0, 2)]
    data = interactions(rows, 6, 5)
    model = ItemCFBaseline(neighbors=2).fit(data)
    s = model.sim.toarray()
    r = data.counts().toarray()
    # P_ui = sum_N S_iN R_uN / sum_N |S_iN|, N the neighbourhood of i (R_uN = 0 if unbought).
    want = (r @ s.T) / np.abs(s).sum(axis=1)
    got = model.predict(np.arange(6)).toarray()
    assert got == pytest.approx(np.nan_to_num(want))
    # Customer 4 (bought article 0 twice) is scored on 0's neighbours; customer 5 bought
    # nothing and gets the popularity fallback.
    recs = model.recommend(np.array([4, 5]), 2, exclude_bought=True)
    ranked = [int(a) for a in np.argsort(-got[4], kind="stable") if got[4, a] > 0 and a != 0]
    assert len(ranked) == 1  # only article 1 has a neighbour customer 4 bought
    fill = [int(a) for a in model.fallback if a not in (0, *ranked)]
    assert recs[0].tolist() == (ranked + fill)[:2]
    assert recs[1].tolist() == model.fallback[:2].tolist()
    assert model.filled == 2  # both rows needed the popularity fallback


def _planted(n_per_group=40, seed=0) -> Interactions:
    """Two taste groups: customers 0..39 buy articles 0..9, customers 40..79 buy 10..19,
    plus customer 80 without any purchase."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(2 * n_per_group):
        group = c // n_per_group
        for a in rng.choice(10, size=4, replace=False):
            rows.append((c, group * 10 + int(a), int(rng.integers(1, 30))))
    return interactions(rows, 2 * n_per_group + 1, 25)


@pytest.mark.parametrize("name", ["item-cf", "als"])
def test_collaborative_baselines_recover_planted_groups(name):
    data = _planted()
    params = {"factors": 4, "iterations": 10, "threads": 1} if name == "als" else {}
    model = make_baseline(name, **params).fit(data)
    recs = model.recommend(np.array([0, 1, 40, 41, 80]), 3, exclude_bought=True)
    bought = data.counts().toarray() > 0
    assert ((recs[:2] >= 0) & (recs[:2] < 10)).all()
    assert ((recs[2:4] >= 10) & (recs[2:4] < 20)).all()
    for row, c in zip(recs, [0, 1, 40, 41]):
        assert not bought[c, row].any()
    assert recs[4].tolist() == model.fallback[:3].tolist()  # no purchase: popularity


def test_als_is_deterministic_under_a_seed():
    data = _planted()
    a = ALSBaseline(factors=4, iterations=5, seed=3, threads=1).fit(data)
    b = ALSBaseline(factors=4, iterations=5, seed=3, threads=1).fit(data)
    c = np.arange(81)
    assert (a.recommend(c, 5) == b.recommend(c, 5)).all()


def test_bad_names_and_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="unknown baseline 'knn'"):
        make_baseline("knn")
    with pytest.raises(ValueError, match="rating must be count or binary, got 'stars'"):
        ItemCFBaseline(rating="stars")
    with pytest.raises(ValueError, match="half_life_days"):
        PopularityBaseline(half_life_days=0)
    with pytest.raises(RuntimeError, match="fit"):
        PopularityBaseline().recommend(np.array([0]), 3)
