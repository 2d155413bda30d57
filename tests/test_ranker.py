"""The multi-source candidates + LightGBM ranker: point-in-time features (no Ray) and a tiny
end-to-end run (train on Ray Train, evaluate beside ALS, the submission)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stylehub_ray.features import candidates as C

CUTOFF = np.datetime64("2020-02-20")


def _log(seed: int = 0, n: int = 6000) -> C.PurchaseLog:
    rng = np.random.default_rng(seed)
    n_customers, n_articles = 200, 120
    day = np.datetime64("2020-01-01") + rng.integers(0, 70, n).astype("timedelta64[D]")
    age = rng.integers(18, 70, n_customers).astype(np.float32)
    age[::10] = np.nan
    return C.PurchaseLog(day, rng.integers(0, n_customers, n), rng.integers(0, n_articles, n),
                         rng.random(n), rng.integers(0, 40, n_articles),
                         rng.integers(0, 8, n_articles), age)


def _features(log: C.PurchaseLog, customers: np.ndarray) -> pd.DataFrame:
    hist = log.before(CUTOFF)
    sources = {"repurchase": C.repurchase(hist, CUTOFF, customers, 10),
               "copurchase": C.copurchase(hist, customers, 10,
                                          C.copurchase_neighbours(hist, CUTOFF)),
               "same_product": C.same_product(hist, CUTOFF, customers, 5),
               "popular": C.popular(hist, CUTOFF, customers, 10),
               "popular_age": C.popular_by_age(hist, CUTOFF, customers, 10)}
    vectors = {"image": np.random.default_rng(1).random((log.n_articles, 8))}
    return C.pair_features(log, CUTOFF, C.union(customers, sources), vectors)


def test_candidates_and_features_are_point_in_time():
    """Rewriting every purchase on or after the cutoff (other customers, articles, prices,
    more rows) changes no candidate and no feature; one purchase before it does."""
    log = _log()
    customers = np.arange(0, 200, 3)
    before = _features(log, customers)
    rng = np.random.default_rng(7)
    after = log.day >= CUTOFF
    n_new = int(after.sum()) + 500
    day = np.r_[log.day[~after],
                CUTOFF + rng.integers(0, 20, n_new).astype("timedelta64[D]")]
    changed = C.PurchaseLog(day, np.r_[log.customer_idx[~after], rng.integers(0, 200, n_new)],
                            np.r_[log.article_idx[~after], rng.integers(0, 120, n_new)],
                            np.r_[log.price[~after], rng.random(n_new) * 9],
                            log.product_code, log.product_type, log.age)
    pd.testing.assert_frame_equal(before, _features(changed, customers))
    # The test can fail: one more purchase the day before the cutoff shows.
    c0, a0 = int(customers[0]), 5
    earlier = C.PurchaseLog(np.r_[log.day, CUTOFF - 1], np.r_[log.customer_idx, c0],
                            np.r_[log.article_idx, a0], np.r_[log.price, 1.0],
                            log.product_code, log.product_type, log.age)
    moved = _features(earlier, customers)
    row = moved[(moved.customer_idx == c0) & (moved.article_idx == a0)]
    assert row["ua_days"].iloc[0] == 1.0 and row["repurchase_rank"].notna().iloc[0]


def test_a_customer_slice_with_the_article_stats_gives_the_whole_log_features():
    """What a served request computes (its customers' purchases only, the article stats made
    once per cutoff) equals, bit for bit, the sources and features from the whole log."""
    log = _log()
    hist = log.before(CUTOFF)
    customers = np.array([3, 4, 50, 199])
    whole = _features(log, customers)
    stats = C.ArticleStats.of(hist, CUTOFF)
    mine = C.CustomerIndex(hist).of(customers)
    assert set(mine.customer_idx) <= set(customers) and len(mine.day) < len(hist.day) / 10
    sources = {"repurchase": C.repurchase(mine, CUTOFF, customers, 10),
               "copurchase": C.copurchase(mine, customers, 10,
                                          C.copurchase_neighbours(hist, CUTOFF)),
               "same_product": C.same_product(mine, CUTOFF, customers, 5, articles=stats),
               "popular": C.popular(mine, CUTOFF, customers, 10, articles=stats),
               "popular_age": C.popular_by_age(mine, CUTOFF, customers, 10, articles=stats)}
    vectors = {"image": np.random.default_rng(1).random((log.n_articles, 8))}
    sliced = C.pair_features(mine, CUTOFF, C.union(customers, sources), vectors,
                             articles=stats)
    pd.testing.assert_frame_equal(whole, sliced, check_exact=True)
    # Without the stats the slice would see only its own customers' sales: it can fail.
    alone = C.pair_features(mine, CUTOFF, C.union(customers, sources), vectors)
    assert not np.array_equal(alone["a_sales_28"], whole["a_sales_28"])


def test_copurchase_neighbours_in_blocks_equal_one_block():
    """The co-buyer counts built a few articles at a time (bounded memory) give the same
    neighbours and similarities as the whole product at once, whatever the block size."""
    hist = _log(seed=4).before(CUTOFF)
    nbr, sim = C.copurchase_neighbours(hist, CUTOFF, budget=10**12)
    assert (nbr >= 0).sum() > 500  # enough neighbours for the comparison to mean something
    for budget in (1, 300, 5000):
        b_nbr, b_sim = C.copurchase_neighbours(hist, CUTOFF, budget=budget)
        assert np.array_equal(b_nbr, nbr)
        assert np.array_equal(b_sim, sim, equal_nan=True)


def test_rowwise_dot_in_chunks_equals_the_whole_gather():
    """The similarity features' dot products taken a chunk of rows at a time (bounded memory)
    equal the whole gather's, bit for bit, with every chunk size."""
    rng = np.random.default_rng(3)
    left, right = rng.random((50, 16), np.float32), rng.random((70, 16), np.float32)
    i, j = rng.integers(0, 50, 1001), rng.integers(0, 70, 1001)
    whole = np.einsum("nd,nd->n", left[i], right[j])
    for chunk in (1, 7, 1000, 5000):
        assert np.array_equal(C.rowwise_dot(left, i, right, j, chunk=chunk), whole)
    assert C.rowwise_dot(left, i[:0], right, j[:0]).shape == (0,)


def test_top_k_a_slice_of_customers_at_a_time_equals_all_at_once():
    """The ranker's top K built a few customers at a time (one heavy buyer widens every row)
    equals the whole batch at once, bought dropped or kept, rows in any order, and a
    customer without candidates gets the fallback."""
    from stylehub_ray.features.history import Purchases
    from stylehub_ray.models.ranker import top_k

    rng = np.random.default_rng(5)
    n_customers, n_articles = 60, 300
    bc = np.r_[rng.integers(0, n_customers, 800), np.full(250, 7)]  # customer 7 buys a lot
    ba = rng.integers(0, n_articles, len(bc))
    bought = Purchases.from_rows(bc, ba, n_customers, n_articles)
    customers = np.sort(rng.choice(n_customers, 40, replace=False))
    c = rng.choice(customers[:-3], 1500)  # the last three have no candidate
    rows = pd.DataFrame({"customer_idx": c, "article_idx": rng.integers(0, n_articles, 1500)})
    scores = rng.random(1500).astype(np.float32)
    scores[::50] = scores[1]  # ties
    fallback = rng.permutation(n_articles)
    for drop in (bought, None):
        whole = top_k(rows, scores, customers, 12, drop, fallback, budget=10**9)
        assert (whole[0][-3:] >= 0).all()  # topped up from the fallback
        for budget in (1, 2000, 20_000):
            part = top_k(rows, scores, customers, 12, drop, fallback, budget=budget)
            assert np.array_equal(part[0], whole[0])
            assert np.array_equal(part[1], whole[1], equal_nan=True)


def test_union_keeps_each_source_rank_and_score():
    customers = np.array([3, 7])
    sources = {"a": (np.array([[10, 11], [12, -1]]), np.array([[2.0, 1.0], [5.0, np.nan]])),
               "b": (np.array([[11, 13], [-1, -1]]), np.array([[9.0, 8.0], [np.nan] * 2]))}
    u = C.union(customers, sources)
    assert u[["customer_idx", "article_idx"]].values.tolist() == [[3, 10], [3, 11], [3, 13],
                                                                  [7, 12]]
    row = u[(u.customer_idx == 3) & (u.article_idx == 11)].iloc[0]
    assert (row.a_rank, row.a_score, row.b_rank, row.b_score, row.n_sources) == (2, 1, 1, 9, 2)
    assert np.isnan(u.loc[u.article_idx == 13, "a_rank"]).all()


@pytest.mark.usefixtures("ray_head")
def test_ranker_trains_evaluates_and_recommends(hm_embedded, tmp_path, logged):
    from stylehub_ray.config import load_config
    from stylehub_ray.eval.ranker import (
        EvaluateRankerConfig,
        TrainRankerConfig,
        evaluate_ranker,
        train_ranker,
    )
    from stylehub_ray.eval.ranking import EvaluateBaselinesConfig, evaluate_baselines
    from stylehub_ray.eval.recommend import RecommendConfig, recommend
    from stylehub_ray.models.ranker import RankerModel
    from tests.conftest import copy_run

    run = copy_run(hm_embedded, tmp_path / "run")
    small = dict(weeks=2, train_customers=300, val_customers=200, rounds=30, patience=5,
                 n_repurchase=12, n_copurchase=12, n_same_product=6, n_popular=12,
                 n_popular_age=12, n_als=12, als_iterations=3, als_factors=8)
    entry = train_ranker(run, TrainRankerConfig(**small))
    model = RankerModel.load(run)
    meta = model.meta
    assert len(meta["weeks"]) == 2 and not meta["notes"]
    recall = meta["candidate_recall"]
    assert set(recall) >= {"repurchase", "copurchase", "same_product", "popular",
                           "popular_age", "als", "union"}
    assert max(v for k, v in recall.items() if k not in ("union", "candidates_per_customer")
               ) <= recall["union"] <= 1.0
    assert set(meta["importance"]) == set(meta["features"]) and "ua_days" in meta["features"]
    assert run.exists("models/ranker/default/importance.png")
    assert entry["counts"]["train_positives"] > 0
    assert any("candidate recall on val" in line for line in logged())
    # The fitted candidate parts at val and test are saved with the model; a recommender
    # loading them answers exactly as one fitting them again.
    from stylehub_ray.eval.ranker import RankerRecommender, load_state

    for cutoff in ("val_start", "test_start"):
        state = load_state(run, "default", cutoff)
        assert {"user_factors", "item_factors", "copurchase_neighbours"} <= set(state)
    loaded = RankerRecommender(run, "default", "test")
    run.delete("models/ranker/default/cutoffs")
    assert load_state(run, "default", "test_start") is None
    fitted = RankerRecommender(run, "default", "test")
    users = np.sort(np.unique(loaded.builder.log.customer_idx))[:60]
    for drop in (True, False):
        a, b = loaded.recommend(users, 12, drop), fitted.recommend(users, 12, drop)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1], equal_nan=True)

    # Too little history for a training week: it trains on part of val and says so.
    short = train_ranker(run, TrainRankerConfig(variant="short", min_history_days=100_000,
                                                **small))
    assert short["counts"]["weeks"] == 0 and "trained on 70% of the val buyers" in \
        short["notes"][0]

    proto = dict(bootstrap=50, plots=False)
    evaluate_baselines(run, EvaluateBaselinesConfig(baselines=("als",), als_iterations=3,
                                                    als_factors=8, **proto))
    res = evaluate_ranker(run, EvaluateRankerConfig(**proto))
    summary = res["summary"]
    assert "ranker/default" in summary["models"]
    assert "als" in summary["differences_ranker"]["intervals"]
    text = "\n".join(logged())
    assert "ranker/default minus each model" in text and "vs als" in text
    m = res["ranker"]["drop_bought"]["metrics"]["map@12"]
    assert 0 < m <= 1

    cfg = load_config(RecommendConfig, None, ["model=ranker"])
    rec = recommend(run, cfg, out=str(tmp_path / "sub.csv"))
    sub = pd.read_csv(tmp_path / "sub.csv")
    n_customers = rec["counts"]["customers"]["total"]
    assert len(sub) == n_customers == rec["counts"]["customers"]["ranker"]
    assert sub["prediction"].str.split().str.len().eq(12).all()


@pytest.mark.usefixtures("ray_head")
def test_the_ranker_with_its_defaults_on_five_days_and_one_day_of_test(tiny_hm, tmp_path,
                                                                        logged):
    """A data set as short as the maintainers' real week (five days to learn from, one day of
    test): the ranker trains with its defaults on part of the val day's buyers, says so in
    one log line, is evaluated and writes its submission."""
    import shutil

    from stylehub_ray.config import FeaturesConfig, IngestConfig, load_config
    from stylehub_ray.data.ingest import ingest
    from stylehub_ray.eval.ranker import (
        EvaluateRankerConfig,
        TrainRankerConfig,
        evaluate_ranker,
        train_ranker,
    )
    from stylehub_ray.eval.recommend import RecommendConfig, recommend
    from stylehub_ray.features.stage import build_features
    from stylehub_ray.run import Run

    src = tmp_path / "src"
    shutil.copytree(tiny_hm, src, ignore=shutil.ignore_patterns("_oracle"))
    t = pd.read_csv(src / "transactions_train.csv", dtype=str).sort_values(
        "t_dat", kind="stable").tail(3000).reset_index(drop=True)
    # The last 3,000 purchases, in their order, over six days.
    t["t_dat"] = [str(np.datetime64("2020-09-17") + i * 6 // len(t)) for i in range(len(t))]
    t.to_csv(src / "transactions_train.csv", index=False)
    run = Run(str(tmp_path / "run"))
    ingest(str(src), run, IngestConfig())
    # 70/15/15 of six even days would leave no test day; 60/20/20 gives 4 + 1 (val) + 1. The
    # two-tower's 91-day label window does not fit in six days (label_days=0: off).
    build_features(run, FeaturesConfig(split="ratio", ratios=(0.6, 0.2, 0.2), label_days=0))
    cut = run.entry("features")["cutoffs"]
    assert (cut["val_start"], cut["test_start"]) == ("2020-09-21", "2020-09-22")

    entry = train_ranker(run, TrainRankerConfig())
    assert entry["counts"]["weeks"] == 0
    said = [line for line in logged() if "trained on 70% of the val buyers" in line]
    assert len(said) == 1 and "only 4 days before val" in said[0]
    res = evaluate_ranker(run, EvaluateRankerConfig(bootstrap=50, plots=False))
    assert 0 <= res["ranker"]["drop_bought"]["metrics"]["map@12"] <= 1
    assert res["ranker"]["period"][0] == "2020-09-22"
    rec = recommend(run, load_config(RecommendConfig, None, ["model=ranker"]),
                    out=str(tmp_path / "sub.csv"))
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert len(sub) == rec["counts"]["customers"]["total"] == rec["counts"]["customers"][
        "ranker"]
