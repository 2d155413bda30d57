"""Pair mining: FAISS neighbours, kNN and co-purchase pairs, the split, and the stage."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from stylehub_ray.embed import index as I
from stylehub_ray.embed import pair_math as P
from stylehub_ray.embed.index import read_index
from stylehub_ray.embed.pairs import PairsConfig, mine_pairs, read_pairs
from stylehub_ray.embed.text_model import l2_normalize
from stylehub_ray.run import Run


def _clusters(n_clusters=20, per=12, dim=16, seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    label = np.repeat(np.arange(n_clusters), per)
    x = centres[label] + 0.05 * rng.normal(size=(len(label), dim))
    return l2_normalize(x.astype(np.float32)), label


def _brute_force(x: np.ndarray, k: int) -> np.ndarray:
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


# ------------------------------------------------------------------------------------------
# Index and neighbours
# ------------------------------------------------------------------------------------------
def test_flat_neighbours_exact_and_never_self():
    x, _ = _clusters()
    ids, scores = I.nearest_others(I.build_index(x, I.IndexParams("flat")), x, 5)
    assert ids.shape == (240, 5) and not (ids == np.arange(240)[:, None]).any()
    expected = _brute_force(x, 5)
    np.testing.assert_array_equal(np.sort(ids, 1), np.sort(expected, 1))
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_duplicates_do_not_leak_self():
    x, _ = _clusters(n_clusters=3, per=4)
    x = np.vstack([x, x[:2]])  # rows 12, 13 duplicate rows 0, 1: they tie with themselves
    ids, _ = I.nearest_others(I.build_index(x, I.IndexParams("flat")), x, 5)
    assert not (ids == np.arange(len(x))[:, None]).any()
    assert 12 in ids[0] and 0 in ids[12]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_find_the_clusters(kind):
    x, label = _clusters(n_clusters=30, per=20, dim=24)
    ids, _ = I.nearest_others(I.build_index(x, I.IndexParams(kind, ivf_nprobe=8)), x, 5)
    assert (label[ids] == label[:, None]).mean() > 0.95
    back = I.deserialize(I.serialize(I.build_index(x, I.IndexParams(kind))))
    assert back.ntotal == len(x)


def test_search_maps_rows_pads_and_leaves_out_the_query():
    x, _ = _clusters(n_clusters=3, per=4)
    rows = np.array([5, 9, 2, 7, 11, 0, 3, 8, 1, 6, 10, 4]) + 100  # FAISS row -> item id
    index = I.build_index(x, I.IndexParams("flat"))
    expected = _brute_force(x, 4)  # nearest other rows, best first
    ids, scores = I.search(index, x, 4, rows=rows, exclude=rows, batch=5)
    np.testing.assert_array_equal(ids, rows[expected])
    np.testing.assert_allclose(scores, np.take_along_axis(x @ x.T, expected, 1), atol=1e-5)
    # More than the index holds: padded with -1 and the fill value.
    ids, scores = I.search(index, x[:2], 20, rows=rows, exclude=rows[:2], fill=np.nan)
    assert (ids[:, :11] >= 0).all() and (ids[:, 11:] == -1).all()
    assert np.isnan(scores[:, 11:]).all() and not (ids[0] == rows[0]).any()
    ids, scores = I.search(index, x[:0], 3)
    assert ids.shape == scores.shape == (0, 3)


def test_index_folder_round_trip(tmp_path):
    from stylehub_ray.run import Run

    run = Run(str(tmp_path / "run"))
    x, _ = _clusters(n_clusters=3, per=4)
    index = I.build_index(x, I.IndexParams("flat"))
    article_idx = np.arange(12)[::-1]
    I.write_index(run, run.path("index/test"), index, article_idx, article_idx + 1000,
                  {"kind": "test", "n": 12})
    back, rows = I.read_index(run, "index/test")
    np.testing.assert_array_equal(rows, article_idx)
    np.testing.assert_allclose(back.reconstruct_n(0, 12), x, atol=1e-6)
    assert run.read_json("index/test/index.json") == {"kind": "test", "n": 12}
    with pytest.raises(ValueError, match="12 index rows but 3 article_idx"):
        I.write_index(run, run.path("index/bad"), index, article_idx[:3], article_idx, {})


# ------------------------------------------------------------------------------------------
# kNN pairs
# ------------------------------------------------------------------------------------------
def test_knn_pairs_properties():
    x, _ = _clusters()
    n, k = len(x), 5
    ids, scores = I.nearest_others(I.build_index(x, I.IndexParams("flat")), x, k)
    p = P.knn_pairs(ids, scores, seed=3, test_share=0.2)
    a, b, label = p["anchor"], p["other"], p["label"]
    assert not (a == b).any()  # no self pairs
    # k positives (the neighbours, ranks 1..k) and k negatives per anchor.
    assert np.array_equal(np.bincount(a[label == 1], minlength=n), np.full(n, k))
    assert np.array_equal(np.bincount(a[label == 0], minlength=n), np.full(n, k))
    assert np.array_equal(np.sort(p["rank"][label == 1].reshape(n, k), 1),
                          np.tile(np.arange(1, k + 1), (n, 1)))
    # Negatives are never among the anchor's neighbours, nor has the negative the anchor
    # among its own: no unordered pair is labelled both ways.
    neg = label == 0
    assert not (ids[a[neg]] == b[neg][:, None]).any()
    assert not (ids[b[neg]] == a[neg][:, None]).any()
    keys = P.pair_keys(a, b, n)
    assert not np.intersect1d(keys[label == 1], keys[neg]).size
    # No negative repeats for an anchor.
    assert len(np.unique(a[neg] * n + b[neg])) == neg.sum()
    # Split by canonical anchor: (a, b) and (b, a) always together; every anchor's pairs
    # with the same canonical item on one side; about 20% of the items are test anchors.
    split = p["split"]
    canonical = np.minimum(a, b)
    for c in np.unique(canonical):
        assert len(set(split[canonical == c])) == 1
    by_key = {}
    for key, s in zip(keys, split):
        assert by_key.setdefault(key, s) == s
    test_items = np.unique(canonical[split == "test"])
    assert len(test_items) <= round(0.2 * n)
    assert 0.08 < (split == "test").mean() < 0.32


def test_knn_pairs_deterministic():
    x, _ = _clusters()
    ids, scores = I.nearest_others(I.build_index(x, I.IndexParams("flat")), x, 5)
    one, two = P.knn_pairs(ids, scores, seed=1), P.knn_pairs(ids, scores, seed=1)
    other = P.knn_pairs(ids, scores, seed=2)
    for key in one:
        np.testing.assert_array_equal(one[key], two[key])
    assert not np.array_equal(one["other"], other["other"])
    np.testing.assert_array_equal(one["other"][one["label"] == 1],
                                  other["other"][other["label"] == 1])


# ------------------------------------------------------------------------------------------
# Transaction pairs
# ------------------------------------------------------------------------------------------
def test_transaction_pairs_same_day_and_window():
    #             customer, day, article
    rows = np.array([[0, 0, 1], [0, 0, 2], [0, 2, 3], [0, 0, 1],   # repeat row: same item
                     [1, 5, 1], [1, 5, 2], [1, 9, 4]])
    c, d, a = rows.T
    same_day = P.transaction_pairs(c, d, a, n_items=50, window_days=0, seed=0)
    pos = same_day["label"] == 1
    assert list(zip(same_day["anchor"][pos], same_day["other"][pos])) == [(1, 2)]
    assert same_day["support"][pos].tolist() == [2]  # both customers bought 1 and 2 together
    window = P.transaction_pairs(c, d, a, n_items=50, window_days=2, seed=0)
    pos = window["label"] == 1
    assert sorted(zip(window["anchor"][pos], window["other"][pos])) == [(1, 2), (1, 3), (2, 3)]
    # Negatives: one per positive, with the anchor of the positive, and an item the supporting
    # customer (customer 0 for all three) never bought.
    neg = window["label"] == 0
    assert neg.sum() == 3 and sorted(window["anchor"][neg]) == [1, 1, 2]
    assert not np.isin(window["other"][neg], [1, 2, 3]).any()


def test_transaction_negatives_never_bought_by_that_customer():
    rng = np.random.default_rng(0)
    c, d, a = rng.integers(0, 40, 2000), rng.integers(0, 30, 2000), rng.integers(0, 300, 2000)
    p = P.transaction_pairs(c, d, a, n_items=300, window_days=1, seed=4)
    pos, neg = p["label"] == 1, p["label"] == 0
    assert neg.sum() == pos.sum() > 100  # one negative per positive, in the same order
    # Brute force: the lowest customer who bought each pair within a day of each other.
    first_buyer: dict[tuple[int, int], int] = {}
    for ci in sorted(set(c.tolist())):
        rows = [(int(di), int(ai)) for cj, di, ai in zip(c, d, a) if cj == ci]
        for d1, a1 in rows:
            for d2, a2 in rows:
                if a1 < a2 and abs(d1 - d2) <= 1:
                    first_buyer.setdefault((a1, a2), ci)
    bought = {(int(ci), int(ai)) for ci, ai in zip(c, a)}
    pos_keys = set(P.pair_keys(p["anchor"][pos], p["other"][pos], 300).tolist())
    assert len(first_buyer) == pos.sum()
    for lo, hi, x, y in zip(p["anchor"][pos], p["other"][pos], p["anchor"][neg],
                            p["other"][neg]):
        customer = first_buyer[(int(lo), int(hi))]  # every positive was really co-bought
        assert x == lo and x != y
        assert (customer, int(y)) not in bought  # never bought by that customer
        assert int(P.pair_keys(x, y, 300)) not in pos_keys


# ------------------------------------------------------------------------------------------
# The stage
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_run(tiny_run, tmp_path_factory, ray_head):
    """A copy of tiny_run with TF-IDF text embeddings (fast; no transformer)."""
    from stylehub_ray.embed.text import EmbedTextConfig, embed_text

    root = tmp_path_factory.mktemp("pairs_run") / "run"
    shutil.copytree(tiny_run.root, root)
    run = Run(str(root))
    embed_text(run, EmbedTextConfig(encoder="tfidf"))
    return run


def test_text_pairs_stage(text_run):
    entry = mine_pairs(text_run, PairsConfig(), "text")
    pairs = read_pairs(text_run, "text")
    n = entry["counts"]["index"]["items"]
    assert n == 600
    assert entry["counts"]["pairs"]["positive"] == entry["counts"]["pairs"]["negative"] == 5 * n
    assert set(pairs.column_names) >= {"anchor_idx", "other_idx", "anchor_id", "other_id",
                                       "label", "rank", "similarity", "split"}
    df = pairs.to_pandas()
    assert (df.anchor_idx != df.other_idx).all()
    assert set(df.split) == {"train", "test"}
    # Positives are closer than negatives, by a margin (the paper's measure).
    d = entry["cosine_distance"]
    assert d["positive"] + 0.2 < d["negative"]
    # Neighbours share the product type far more often than random pairs.
    agree = entry["attribute_agreement"]["product_type_name"]
    assert agree["positive"] > agree["negative"] + 0.3
    # The stored index reproduces the positives.
    index, rows = read_index(text_run, "index/text")
    assert index.ntotal == n
    from stylehub_ray.embed.vectors import from_fixed_list, read_embeddings

    x = l2_normalize(from_fixed_list(read_embeddings(text_run, "embeddings/text")
                                     .column("embedding")))
    ids, _ = I.nearest_others(index, x, 5)
    first = df[(df.anchor_idx == rows[0]) & (df.label == 1)].sort_values("rank")
    assert first.other_idx.tolist() == rows[ids[0]].tolist()
    assert mine_pairs(text_run, PairsConfig(), "text")["skipped"] is True
    hnsw = mine_pairs(text_run, PairsConfig(index="hnsw"), "text")
    assert "skipped" not in hnsw and hnsw["config"]["index"] == "hnsw"


def test_transaction_pairs_stage(text_run):
    from stylehub_ray.config import FeaturesConfig
    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.features.stage import build_features

    # Mined before the test period: without the features stage, before the last 7 days.
    last_week = mine_pairs(text_run, PairsConfig(window_days=1), "transactions")
    assert last_week["mined_before"] == "2020-09-16"  # the tiny data ends on 2020-09-22
    # With it, before its split's test period.
    build_features(text_run, FeaturesConfig())
    entry = mine_pairs(text_run, PairsConfig(window_days=1), "transactions")
    df = read_pairs(text_run, "transactions").to_pandas()
    tx = read_table(text_run, "raw/transactions", ["customer_idx", "t_dat", "article_idx"])
    tx = tx.to_pandas()
    pos = df[df.label == 1]
    test_start = text_run.entry("features")["cutoffs"]["test_start"]
    assert entry["mined_before"] == test_start
    tx["day"] = pd.to_datetime(tx.t_dat)
    before = tx[tx.day < pd.Timestamp(test_start)]
    assert entry["counts"]["transactions"]["before_test"] == len(before) < len(tx)

    def co_bought(t: pd.DataFrame, window: int) -> set:
        m = t.merge(t, on="customer_idx")
        m = m[(m.article_idx_x < m.article_idx_y) & ((m.day_x - m.day_y).dt.days.abs()
                                                      <= window)]
        return set(zip(m.article_idx_x, m.article_idx_y))

    # Pairs co-bought only in the test period: none is a positive.
    test_only = co_bought(tx[tx.day >= pd.Timestamp(test_start)], 0) - co_bought(before, 1)
    assert test_only
    assert not test_only & set(zip(pos.anchor_idx, pos.other_idx))
    assert len(pos) == entry["counts"]["pairs"]["positive"] > 1000
    assert (pos.anchor_idx < pos.other_idx).all() and (pos.support >= 1).all()
    # A positive really was bought by one customer within a day.
    row = pos.iloc[0]
    a = tx[tx.article_idx == row.anchor_idx][["customer_idx", "t_dat"]]
    b = tx[tx.article_idx == row.other_idx][["customer_idx", "t_dat"]]
    m = a.merge(b, on="customer_idx")
    gap = (pd.to_datetime(m.t_dat_x) - pd.to_datetime(m.t_dat_y)).dt.days.abs()
    assert (gap <= 1).any()
    assert not text_run.exists("index/transactions")


def test_pairs_need_their_embeddings(tiny_run):
    with pytest.raises(FileNotFoundError, match="embed images"):
        mine_pairs(tiny_run, PairsConfig(), "image")
    with pytest.raises(ValueError, match="pairs.index must be one of"):
        mine_pairs(tiny_run, PairsConfig(index="annoy"), "text")
