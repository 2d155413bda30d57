"""Features: every value of a hand-computed example, no leak past the cutoff, splits,
negatives, determinism, and the preprocessing's saved form."""

from __future__ import annotations

import shutil
from datetime import date

import numpy as np
import pandas as pd
import pytest

from stylehub_ray.config import FeaturesConfig, IngestConfig
from stylehub_ray.data.ingest import ingest, read_table
from stylehub_ray.data.schemas import ARTICLE_COLUMNS
from stylehub_ray.features.preprocess import Preprocessor
from stylehub_ray.features.stage import SplitError, build_features, compute_split, load_features
from stylehub_ray.run import Run

A, B, C = "a" * 64, "b" * 64, "c" * 64  # customer_idx 0, 1, 2 (rank of the sorted ids)
ART = ["0100000001", "0100000002", "0100000003", "0100000004"]  # article_idx 0..3

# Train period: before 2020-09-09 (last-week split of data ending 2020-09-22).
HAND_TX = [
    ("2020-01-10", A, ART[0], 0.010, 2),
    ("2020-01-10", A, ART[0], 0.010, 2),  # the same item twice that day: two units
    ("2020-08-20", A, ART[1], 0.040, 1),
    ("2020-09-01", B, ART[0], 0.030, 1),
    ("2020-09-10", B, ART[2], 0.500, 2),  # val period: in no train feature
    ("2020-09-20", C, ART[1], 0.020, 2),  # test period
    ("2020-09-22", A, ART[3], 0.020, 2),  # test period, last day of the data
]


def _write_source(root, tx) -> None:
    root.mkdir(parents=True)
    art = {c: "x" for c in ARTICLE_COLUMNS}
    for c in ("product_type_no", "graphical_appearance_no", "colour_group_code",
              "perceived_colour_value_id", "perceived_colour_master_id", "department_no",
              "index_group_no", "section_no", "garment_group_no"):
        art[c] = "1"
    rows = [",".join({**art, "article_id": a, "product_code": a[:7],
                      "product_type_name": ["Vest top", "Trousers", "Dress", "Sock"][i]}[c]
                     for c in ARTICLE_COLUMNS) for i, a in enumerate(ART)]
    (root / "articles.csv").write_text("\n".join([",".join(ARTICLE_COLUMNS), *rows]) + "\n")
    (root / "customers.csv").write_text(
        "customer_id,FN,Active,club_member_status,fashion_news_frequency,age,postal_code\n"
        + "".join(f"{c},1.0,,ACTIVE,NONE,{age},{'p' * 64}\n"
                  for c, age in ((A, "25.0"), (B, "40.0"), (C, ""))))
    (root / "transactions_train.csv").write_text(
        "t_dat,customer_id,article_id,price,sales_channel_id\n"
        + "".join(f"{d},{c},{a},{p},{ch}\n" for d, c, a, p, ch in tx))


@pytest.fixture(scope="module")
def hand_run(ray_head, tmp_path_factory):
    root = tmp_path_factory.mktemp("hand")
    _write_source(root / "src", HAND_TX)
    run = Run(str(root / "run"))
    ingest(str(root / "src"), run, IngestConfig())
    # Every purchase before val is a training example here (the hand counts below); the
    # label window is tested on its own.
    build_features(run, FeaturesConfig(buckets=2, label_days=0))
    return run


def _row(frame: pd.DataFrame, key: str, idx: int) -> dict:
    return frame[frame[key] == idx].iloc[0].to_dict()


def test_split_cutoffs_in_manifest(hand_run):
    entry = hand_run.entry("features")
    assert entry["cutoffs"] == {"train_start": "2020-01-10", "val_start": "2020-09-09",
                                "test_start": "2020-09-16", "test_end": "2020-09-22"}
    assert entry["counts"]["split_rows"] == {"train": 4, "val": 1, "test": 2}


def test_customer_features_by_hand(hand_run):
    f = load_features(hand_run, "customers", "train")
    a = _row(f, "customer_idx", 0)
    # Prices 0.01, 0.01, 0.04: mean 0.02; population std sqrt((2*0.01^2 + 0.02^2)/3)
    # = sqrt(0.0002) = 0.0141421; spend 0.06; two distinct articles; channel 2 used twice.
    expect = {"tx_count": 3, "price_mean": 0.02, "price_std": 0.0002 ** 0.5, "price_min": 0.01,
              "price_max": 0.04, "spend_total": 0.06, "unique_articles": 2, "main_channel": 2,
              # 2020-01-10 .. 2020-08-20 = 223 days; 3 / 223 per day; cutoff 2020-09-09 is
              # 243 days after the first purchase and 20 after the last.
              "days_active": 223, "purchase_frequency": 3 / 223, "days_since_first": 243,
              "days_since_last": 20,
              # Recent = 2020-08-10 .. 2020-09-08: only the 0.04 purchase.
              "recent_count": 1, "recent_spend": 0.04, "recent_price_mean": 0.04,
              "has_history": 1, "age": 25.0, "FN": 1.0}
    for key, value in expect.items():
        assert a[key] == pytest.approx(value, abs=1e-9), key
    b = _row(f, "customer_idx", 1)
    # One purchase 0.03 on 2020-09-01 (its 0.5 on 2020-09-10 is after the cutoff).
    expect_b = {"tx_count": 1, "price_mean": 0.03, "price_std": 0.0, "price_max": 0.03,
                "spend_total": 0.03, "main_channel": 1, "days_active": 0,
                "purchase_frequency": 1.0, "days_since_first": 8, "days_since_last": 8,
                "recent_count": 1, "recent_spend": 0.03}
    for key, value in expect_b.items():
        assert b[key] == pytest.approx(value, abs=1e-9), key
    c = _row(f, "customer_idx", 2)
    # No purchase before the cutoff: zeros, prices = medians over customers with history
    # (means 0.02, 0.03 -> 0.025; stds 0.0141421, 0 -> 0.0070711; mins 0.01, 0.03 -> 0.02;
    # maxes 0.04, 0.03 -> 0.035), "never" = 243 + 1 days, the commoner channel (1 and 2 tie:
    # the lower id).
    expect_c = {"tx_count": 0, "spend_total": 0.0, "unique_articles": 0, "recent_count": 0,
                "price_mean": 0.025, "price_std": 0.0002 ** 0.5 / 2, "price_min": 0.02,
                "price_max": 0.035, "recent_price_mean": 0.025, "days_since_first": 244,
                "days_since_last": 244, "has_history": 0, "main_channel": 1}
    for key, value in expect_c.items():
        assert c[key] == pytest.approx(value, abs=1e-9), key
    assert np.isnan(c["age"])  # a blank age stays missing here; preprocessing imputes it
    numeric = f.drop(columns=["age", "FN", "Active", "club_member_status",
                              "fashion_news_frequency"])
    assert not numeric.isna().any().any()
    assert hand_run.entry("features")["counts"]["train_features"][
        "customers_without_history"] == 1


def test_article_features_by_hand(hand_run):
    f = load_features(hand_run, "articles", "train")
    a0 = _row(f, "article_idx", 0)
    # 0.01, 0.01 (customer a), 0.03 (customer b): mean 0.05/3; deviations -1/150, -1/150,
    # +2/150 -> population std sqrt(6/150^2/3) = sqrt(2)/150; median 0.01.
    expect = {"sales_count": 3, "unique_customers": 2, "price_mean": 0.05 / 3,
              "price_std": 2 ** 0.5 / 150, "price_median": 0.01, "main_channel": 2,
              "days_since_first_sale": 243, "days_since_last_sale": 8, "recent_sales": 1,
              "recent_unique_customers": 1, "has_history": 1, "product_type_name": "Vest top"}
    for key, value in expect.items():
        assert a0[key] == pytest.approx(value, abs=1e-9), key
    a1 = _row(f, "article_idx", 1)
    assert (a1["sales_count"], a1["price_median"], a1["main_channel"],
            a1["days_since_last_sale"]) == (1, 0.04, 1, 20)
    for idx in (2, 3):  # sold only after the cutoff, or never: defined defaults
        a = _row(f, "article_idx", idx)
        # medians over sold articles: means 1/60, 0.04 -> 0.0283333; stds sqrt(2)/150, 0;
        # medians 0.01, 0.04 -> 0.025
        assert a["sales_count"] == 0 and a["has_history"] == 0
        assert a["price_mean"] == pytest.approx((0.05 / 3 + 0.04) / 2)
        assert a["price_std"] == pytest.approx(2 ** 0.5 / 300)
        assert a["price_median"] == pytest.approx(0.025)
        assert a["days_since_first_sale"] == 244


def test_test_feature_set_sees_up_to_test_start(hand_run):
    f = load_features(hand_run, "customers", "test")
    b = _row(f, "customer_idx", 1)
    # As of 2020-09-16: 0.03 (channel 1) and 0.50 (channel 2): the tie goes to channel 1.
    assert (b["tx_count"], b["spend_total"], b["price_max"], b["main_channel"]) == (
        2, pytest.approx(0.53), 0.5, 1)


def test_interactions_and_examples(hand_run, tmp_path):
    it = read_table(hand_run, "features/interactions").to_pandas()
    first = it[it["t_dat"] == date(2020, 1, 10)].iloc[0]
    assert (first["day_of_week"], first["month"], first["is_weekend"]) == (4, 1, 0)  # a Friday
    sunday = it[it["t_dat"] == date(2020, 9, 20)].iloc[0]
    assert (sunday["day_of_week"], sunday["is_weekend"], sunday["split"]) == (6, 1, "test")
    assert sorted(it["split"].value_counts().items()) == [("test", 2), ("train", 4), ("val", 1)]
    ex = read_table(hand_run, "features/training_examples").to_pandas()
    # Distinct (customer, article, day) before the cutoff: (a, 0, 01-10), (a, 1, 08-20),
    # (b, 0, 09-01). Negatives come from the articles on sale that day that the customer did
    # not buy: on 01-10 only article 0 had sold, on 08-20 articles 0 and 1 (a bought both),
    # on 09-01 articles 0 and 1 (b bought 0): four draws of article 1 for b, none for a.
    # Articles 2 and 3 first sell after the cutoff, so they are never a negative.
    assert (ex["label"] == 1).sum() == 3
    neg = ex[ex["label"] == 0]
    assert list(zip(neg["customer_idx"], neg["article_idx"])) == [(1, 1)] * 4
    assert hand_run.entry("features")["counts"]["training_examples"]["negatives_short"] == 8
    # The customer's features ride along on each example.
    assert set(ex[ex["customer_idx"] == 0]["tx_count"]) == {3}
    # From the whole catalogue (the old rule): four each, articles not yet sold included.
    dst = tmp_path / "run"
    shutil.copytree(hand_run.root, dst)
    run = Run(str(dst))
    build_features(run, FeaturesConfig(buckets=2, label_days=0, negatives_on_sale=False),
                   force=True)
    ex = read_table(run, "features/training_examples").to_pandas()
    assert (ex["label"] == 1).sum() == 3 and (ex["label"] == 0).sum() == 12
    bought = {0: {0, 1}, 1: {0}}
    for row in ex[ex["label"] == 0].itertuples():
        assert row.article_idx not in bought[row.customer_idx]


def test_label_window_joins_point_in_time_features(hand_run, tmp_path):
    """label_days=14: positives from 2020-08-26 to the val cutoff only, with a third feature
    set as of 2020-08-26 that does not count them; negatives still avoid every purchase
    before val."""
    dst = tmp_path / "run"
    shutil.copytree(hand_run.root, dst)
    run = Run(str(dst))
    build_features(run, FeaturesConfig(buckets=2, label_days=14), force=True)
    cut = run.entry("features")["cutoffs"]
    assert (cut["fit_start"], cut["val_start"]) == ("2020-08-26", "2020-09-09")
    ex = read_table(run, "features/training_examples").to_pandas()
    pos = ex[ex["label"] == 1]
    # Only (b, article 0, 09-01) falls in the window; a's purchases are older.
    assert list(zip(pos["customer_idx"], pos["article_idx"], pos["t_dat"])) == [
        (1, 0, date(2020, 9, 1))]
    neg = ex[ex["label"] == 0]
    assert len(neg) == 4 and not neg["article_idx"].isin([0]).any()
    assert set(ex["tx_count"]) == {0}  # b as of 08-26: no purchase yet (point in time)
    fit_c = load_features(run, "customers", "fit")
    assert _row(fit_c, "customer_idx", 1)["tx_count"] == 0
    assert _row(fit_c, "customer_idx", 0)["tx_count"] == 3  # a's 01-10 and 08-20 purchases
    fit_a = load_features(run, "articles", "fit")
    assert _row(fit_a, "article_idx", 0)["sales_count"] == 2  # a's two units, not b's
    pd.testing.assert_frame_equal(load_features(run, "customers", "train"),
                                  load_features(hand_run, "customers", "train"))
    with pytest.raises(SplitError, match="label_days=300"):
        build_features(run, FeaturesConfig(buckets=2, label_days=300), force=True)
    with pytest.raises(ValueError, match="label_days must be >= 0"):
        FeaturesConfig(label_days=-1).validate()


def test_no_feature_reads_past_the_cutoff(hand_run, tmp_path):
    """Replace every row from the cutoff on by others (other customers, articles, prices,
    channels; the same last day): the train feature set must not change."""
    cutoff = "2020-09-09"
    _write_source(tmp_path / "src", [t for t in HAND_TX if t[0] < cutoff] + [
        ("2020-09-12", A, ART[1], 9.99, 1), ("2020-09-13", C, ART[0], 3.0, 1),
        ("2020-09-22", B, ART[3], 7.5, 1)])
    run = Run(str(tmp_path / "run"))
    ingest(str(tmp_path / "src"), run, IngestConfig())
    build_features(run, FeaturesConfig(buckets=2))
    for kind in ("customers", "articles"):
        pd.testing.assert_frame_equal(load_features(run, kind, "train"),
                                      load_features(hand_run, kind, "train"))


def test_split_modes_and_empty_split():
    days = pd.Series({date(2020, 1, d): n for d, n in ((1, 10), (2, 60), (3, 15), (4, 15))})
    cfg = FeaturesConfig(split="ratio")
    # Share of rows before each day: 0, 0.10, 0.70, 0.85 -> val from Jan 3, test from Jan 4.
    assert compute_split(days, cfg) == {"train_start": "2020-01-01", "val_start": "2020-01-03",
                                        "test_start": "2020-01-04", "test_end": "2020-01-04"}
    # last-week on 4 days: train would end before the data starts
    with pytest.raises(SplitError, match=r"train period would end on 2019-12-21, before it "
                                         r"starts on 2020-01-01 \(data from 2020-01-01.*"
                                         r"use --set features.split=ratio"):
        compute_split(days, FeaturesConfig())
    # ratio on days whose last one holds more than val + test: no boundary fits, said so
    heavy_end = pd.Series({date(2020, 1, d): n for d, n in ((1, 10), (2, 10), (3, 80))})
    with pytest.raises(SplitError, match=r"3 day\(s\) of data from 2020-01-01 to 2020-01-03.*"
                                         r"last day alone holds 80% of the rows"):
        compute_split(heavy_end, cfg)
    gap = pd.Series({date(2020, 1, 1): 5, date(2020, 3, 1): 5, date(2020, 3, 20): 5})
    with pytest.raises(SplitError, match=r"val period 2020-03-07 \.\. 2020-03-13 has no "
                                         r"transactions"):
        compute_split(gap, FeaturesConfig())


def test_negatives_and_determinism_on_generated_data(tiny_run, tmp_path):
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        dst = tmp_path / name
        shutil.copytree(tiny_run.root, dst)
        run = Run(str(dst))
        build_features(run, FeaturesConfig(seed=seed, negative_sampling="popularity"))
        runs.append(run)
    ex = [read_table(r, "features/training_examples").to_pandas()
          .sort_values(["customer_idx", "article_idx", "t_dat", "label"]).reset_index(drop=True)
          for r in runs]
    pd.testing.assert_frame_equal(ex[0], ex[1])  # same seed, same examples
    assert not ex[0][["customer_idx", "article_idx"]].equals(ex[2][["customer_idx",
                                                                    "article_idx"]])
    tx = read_table(tiny_run, "raw/transactions").to_pandas()
    cut = runs[0].entry("features")["cutoffs"]["val_start"]
    train = tx[tx["t_dat"] < date.fromisoformat(cut)]
    bought = set(zip(train["customer_idx"], train["article_idx"]))
    neg = ex[0][ex[0]["label"] == 0]
    assert not any((c, a) in bought for c, a in zip(neg["customer_idx"], neg["article_idx"]))
    counts = runs[0].entry("features")["counts"]["training_examples"]
    assert counts["negatives"] == 4 * counts["positives"] and counts["negatives_short"] == 0
    # Every negative was on sale on its positive's day (first sold on or before it).
    first_sale = tx.groupby("article_idx")["t_dat"].min()
    assert (first_sale.reindex(neg["article_idx"]).to_numpy() <= neg["t_dat"].to_numpy()).all()
    # Popularity sampling favours articles that sold in the training period.
    sold = train["article_idx"].value_counts()
    top = set(sold.index[: len(sold) // 10])
    assert neg["article_idx"].isin(top).mean() > 0.3


def test_preprocessing_round_trips_and_matches_sklearn():
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder, StandardScaler

    df = pd.DataFrame({"x": [1.0, 2.0, np.nan, 10.0], "y": [0.5, 0.5, 1.5, 2.5],
                       "k": ["a", "b", "b", None]})
    pre = Preprocessor.fit({"customer": df}, {"customer": ["x", "y"]}, {"customer": ["k"]})
    back = Preprocessor.from_json(pre.to_json())
    out = back.transform("customer", df)
    ref = make_pipeline(SimpleImputer(strategy="median"), StandardScaler()).fit(df[["x", "y"]])
    np.testing.assert_allclose(out[["x", "y"]].to_numpy(), ref.transform(df[["x", "y"]]),
                               rtol=1e-6)
    cat = make_pipeline(SimpleImputer(strategy="most_frequent"), OrdinalEncoder()).fit(
        df[["k"]].astype(object).fillna(np.nan))
    np.testing.assert_array_equal(out["k"].to_numpy(),
                                  cat.transform(df[["k"]].astype(object)).ravel() + 1)
    unseen = back.transform("customer", pd.DataFrame({"x": [np.nan], "y": [1.0], "k": ["zz"]}))
    assert unseen["k"].iloc[0] == 0  # an unseen category gets the reserved index
    assert unseen["x"].iloc[0] == pytest.approx((2.0 - ref[1].mean_[0]) / ref[1].scale_[0])
    assert back.cardinality("customer.k") == 3


def test_features_saved_preprocessor_loads(hand_run):
    pre = Preprocessor.load(hand_run)
    assert "customer.tx_count" in pre.numeric and "article.product_type_name" in pre.categorical
    out = pre.transform("customer", load_features(hand_run, "customers", "train"))
    assert not out[["tx_count", "age", "price_mean"]].isna().any().any()
