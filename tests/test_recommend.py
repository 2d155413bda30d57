"""Two-tower recommendation: the serving object's pieces against brute force (retrieve, drop
bought, retrieve more, rank, popularity fallback), and `stylehub recommend` on Ray Data."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from conftest import copy_run

from stylehub_ray.features.history import History
from stylehub_ray.features.inputs import SideTable
from stylehub_ray.models import two_tower as M
from stylehub_ray.models.recommender import TwoTowerRecommender

N_C, N_A = 30, 40


def small_recommender(n_candidates: int = 10, bought: dict | None = None,
                      trained: np.ndarray | None = None) -> TwoTowerRecommender:
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    spec = M.TwoTowerSpec(customer_numeric=2, customer_categories=(3,), article_numeric=2,
                          article_categories=(4,), article_extra=3, customer_ids=N_C + 1,
                          article_ids=N_A + 1)
    model = M.TwoStageRecommender(spec)
    customers = SideTable(num=rng.normal(size=(N_C, 2)).astype(np.float32),
                          cat=rng.integers(0, 3, (N_C, 1)), extra=np.zeros((N_C, 0), np.float32))
    articles = SideTable(num=rng.normal(size=(N_A, 2)).astype(np.float32),
                         cat=rng.integers(0, 4, (N_A, 1)),
                         extra=rng.normal(size=(N_A, 3)).astype(np.float32))
    bought = bought or {}
    c = np.array([k for k, v in bought.items() for _ in v], np.int64)
    a = np.array([x for v in bought.values() for x in v], np.int64)
    # Recent sales: article 7 three times, 2 twice, 5 once (by customer 29, never scored).
    rc = np.r_[c, [29] * 6]
    ra = np.r_[a, [7, 7, 7, 2, 2, 5]]
    recent = np.r_[np.zeros(len(c), bool), np.ones(6, bool)]
    history = History.from_pairs(rc, ra, recent, N_C, N_A)
    if trained is None:
        trained = np.ones(N_C, bool)
    return TwoTowerRecommender(model, customers, articles, history, trained,
                               n_candidates=n_candidates)


def brute_force(rec: TwoTowerRecommender, c: int, n: int, k: int, drop: set[int]) -> list[int]:
    """Retrieve the top n by dot product, drop ``drop``, rank by the ranking model, top k."""
    model = rec.model
    with torch.no_grad():
        u = model.customer_vectors(rec.customers.take(np.array([c])))[0].numpy()
        v = model.article_vectors(rec.articles.tensors()).numpy()
        cand = [a for a in np.argsort(-(v @ u), kind="stable")[:n] if a not in drop]
        cb = model.customer_branch(rec.customers.take(np.array([c])))
        ab = model.article_branch(rec.articles.take(np.array(cand)))
        p = model.head_probability(cb, ab[None])[0].numpy()
    return [cand[i] for i in np.argsort(-p, kind="stable")[:k]]


def test_pieces_match_brute_force():
    rec = small_recommender()
    cust = np.array([0, 5, 9])
    vec = rec.encode_customers(cust)
    assert vec.shape == (3, 32) and vec.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1, atol=1e-5)
    arts, scores = rec.retrieve(vec, 6)
    assert arts.shape == (3, 6) and arts.dtype == np.int64 and scores.dtype == np.float32
    exact = vec @ rec.article_vectors.T
    np.testing.assert_allclose(scores, np.sort(exact, axis=1)[:, ::-1][:, :6], atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(exact, arts, 1), scores, atol=1e-5)
    r = rec.rank(cust, np.c_[arts[:, :3], [-1, -1, -1]])
    assert r.shape == (3, 4) and np.isneginf(r[:, 3]).all()
    assert ((r[:, :3] > 0) & (r[:, :3] < 1)).all()
    assert rec.n_articles == N_A and rec.article_vectors.shape == (N_A, 32)


def test_recommend_drops_bought_and_ranks():
    bought = {0: [1, 2, 3], 4: list(range(0, N_A, 2))}
    rec = small_recommender(n_candidates=10, bought=bought)
    cust = np.array([0, 4, 8])
    arts, scores, path = rec.recommend(cust, 5)
    assert path == ["model"] * 3 and arts.shape == (3, 5)
    for row, c in zip(arts, cust):
        assert not set(row.tolist()) & set(bought.get(int(c), []))
        assert row.tolist() == brute_force(rec, int(c), 10, 5, set(bought.get(int(c), [])))
    assert (np.diff(scores, axis=1) <= 0).all()  # best first
    assert [sorted(b.tolist()) for b in rec.bought(cust)] == [[1, 2, 3], bought[4], []]
    # Without the filter the bought articles may come back.
    keep, _, _ = rec.recommend(cust, 5, drop_bought=False)
    assert keep[2].tolist() == arts[2].tolist()
    assert keep[0].tolist() == brute_force(rec, 0, 10, 5, set())


def test_retrieves_more_when_too_many_were_dropped():
    """Customer 3 bought the whole top 10 but 2: recommend widens N (10 -> 40) and still
    returns k unbought articles, those the brute force finds with N = 40."""
    rec = small_recommender(n_candidates=10)
    vec = rec.encode_customers(np.array([3]))
    top10 = rec.retrieve(vec, 10)[0][0]
    rec = small_recommender(n_candidates=10, bought={3: top10[:8].tolist()})
    arts, scores, path = rec.recommend(np.array([3]), 5)
    assert path == ["model"] and (arts >= 0).all()
    assert not set(arts[0].tolist()) & set(top10[:8].tolist())
    assert arts[0].tolist() == brute_force(rec, 3, 40, 5, set(top10[:8].tolist()))


def test_unknown_customers_get_popularity():
    trained = np.ones(N_C, bool)
    trained[[1, 2]] = False
    rec = small_recommender(trained=trained)
    assert rec.known(np.array([0, 1, 2, 99, -1])).tolist() == [True, False, False, False, False]
    with pytest.raises(KeyError, match=r"\[1, 99\]"):
        rec.encode_customers(np.array([0, 1, 99]))
    arts, scores, path = rec.recommend(np.array([0, 1, 99]), 4)
    assert path == ["model", "popularity", "popularity"]
    # Last week's sales: 7 (3), 2 (2), 5 (1), then ties by all sales and index: 0.
    assert rec.popular(4).tolist() == [7, 2, 5, 0]
    assert arts[1].tolist() == arts[2].tolist() == [7, 2, 5, 0]
    np.testing.assert_allclose(scores[1, :3], [0.5, 1 / 3, 1 / 6], atol=1e-6)


# ------------------------------------------------------------------------------------------
# The stage on Ray Data
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rec_run(hm_trained, tmp_path_factory):
    """The shared run with a one-epoch two-tower (conftest), copied: recommended into here."""
    return copy_run(hm_trained, tmp_path_factory.mktemp("rec") / "run")


def test_recommend_stage_submission_and_scores(rec_run, tmp_path):
    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.eval.recommend import RecommendConfig, read_scores, recommend
    from stylehub_ray.models.recommender import recommend_matrix

    run = rec_run
    out = tmp_path / "out" / "submission.csv"
    entry = recommend(run, RecommendConfig(k=12, batch_size=128, actors=2, cpus_per_actor=0.5),
                      out=str(out))
    customers = read_table(run, "raw/customers", ["customer_id", "customer_idx"]).to_pandas()
    amap = read_table(run, "raw/article_map").to_pandas()
    with open(out) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["customer_id", "prediction"]
    assert len(rows) - 1 == len(customers) == 1000
    assert sorted(r[0] for r in rows[1:]) == sorted(customers["customer_id"])
    valid_ids = {f"{a:010d}" for a in amap["article_id"]}
    for _, pred in rows[1:]:
        ids = pred.split(" ")
        assert len(ids) == 12 and len(set(ids)) == 12
        assert all(len(i) == 10 and i in valid_ids for i in ids)
    counts = entry["counts"]["customers"]
    from stylehub_ray.models.artifacts import load_meta

    meta = load_meta(run, "two-tower", "default")
    unseen = int((~meta["trained_customers"]).sum())
    cold = "model-cold" if meta["choices"]["cold"] == "model" else "popularity"
    other = "popularity" if cold == "model-cold" else "model-cold"
    assert counts == {"total": 1000, "model": 1000 - unseen, cold: unseen, other: 0}
    assert entry["counts"]["recommendations"]["drop_bought"] == meta["choices"]["drop_bought"]

    # The Parquet of scores agrees with the in-process recommend_matrix (same model).
    scores = read_scores(run).to_pandas().sort_values("customer_idx")
    assert len(scores) == 1000
    sample = np.array([0, 17, 500, 999])
    mat = recommend_matrix(run, sample, 12)
    got = np.stack(scores.set_index("customer_idx").loc[sample, "article_idx"].to_numpy())
    assert np.array_equal(got, mat)
    trained = meta["trained_customers"]
    assert (scores["path"] == np.where(trained, "model", cold)).all()
    # Bought articles are dropped with the switch on and come back with it off.
    from stylehub_ray.features.history import load_history

    hist = load_history(run, "test", 1000, 600)
    every = np.arange(1000)[trained]
    on = recommend_matrix(run, every, 12, drop_bought=True)
    assert not hist.contains(every, on).any()
    off = recommend_matrix(run, every, 12, drop_bought=False)
    assert hist.contains(every, off).any()

    again = recommend(run, RecommendConfig(k=12, batch_size=128, actors=2, cpus_per_actor=0.5))
    assert again.get("skipped")


def test_recommend_cli_k(rec_run, tmp_path):
    from stylehub_ray.cli import main

    out = tmp_path / "sub.csv"
    assert main(["recommend", "--run", rec_run.uri, "--out", str(out), "--k", "5",
                 "--set", "actors=1", "--set", "batch_size=500"]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 1001 and all(len(x.split(",")[1].split()) == 5 for x in lines[1:])
    assert main(["recommend", "--run", rec_run.uri, "--set", "feature_set=nope"]) == 2


def test_serving_parts_load_only_what_they_use(rec_run):
    """history=False / index=False leave the purchase history and the FAISS index out (the
    serving deployments that never use them); what remains answers as the full recommender;
    the history alone is the full recommender's."""
    from stylehub_ray.models.recommender import load_model_history

    full = TwoTowerRecommender.load(rec_run)
    bare = TwoTowerRecommender.load(rec_run, history=False, index=False)
    assert bare.history is None and bare.index is None
    c = np.flatnonzero(full.known(np.arange(50)))[:5]
    np.testing.assert_allclose(bare.encode_customers(c), full.encode_customers(c), atol=1e-6)
    cand = full.retrieve(full.encode_customers(c), 20)[0]
    np.testing.assert_allclose(bare.rank(c, cand), full.rank(c, cand), atol=1e-6)
    with pytest.raises(RuntimeError, match="without its index"):
        bare.retrieve(bare.encode_customers(c), 5)
    with pytest.raises(RuntimeError, match="without its purchase history"):
        bare.bought(c)
    h = load_model_history(rec_run)
    assert [b.tolist() for b in h.bought(c)] == [b.tolist() for b in full.bought(c)]
    assert h.popular.tolist() == full.history.popular.tolist()
