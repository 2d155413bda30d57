"""H&M generator: the Kaggle layout, exact sizes, determinism, and realism bands.

The bands are around figures measured on the real slice (../shared/data/hm-sample, printed side
by side with the generator's by bench/realism.py); the test itself never reads the slice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from stylehub_ray.config import GenerateHMConfig
from stylehub_ray.data import schemas
from stylehub_ray.synth import hm as gen

# Real slice: transactions per customer median 9 / mean 23.2; rows per same-day basket median
# 2 / mean 3.6; identical rows 9.1%; later-day repeats 3.4%; channel 2 share 70.9%; price median
# 0.0254; age median 31.
REAL = {"tx_median": 9, "tx_mean": 23.2, "basket_median": 2, "basket_mean": 3.6,
        "dup_share": 0.091, "repeat_share": 0.034, "channel2": 0.709, "price_median": 0.0254,
        "age_median": 31}


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "generator.json"}


def test_layout_columns_and_exact_sizes(tiny_hm):
    arts = pd.read_csv(tiny_hm / "articles.csv", dtype=str)
    custs = pd.read_csv(tiny_hm / "customers.csv", dtype=str)
    tx = pd.read_csv(tiny_hm / "transactions_train.csv", dtype=str)
    assert list(arts.columns) == schemas.ARTICLE_COLUMNS and len(arts.columns) == 25
    assert list(custs.columns) == schemas.CUSTOMER_COLUMNS
    assert list(tx.columns) == schemas.TRANSACTION_COLUMNS
    s = gen.SCALES["tiny"]
    assert (len(arts), len(custs), len(tx)) == (s.articles, s.customers, s.transactions)
    assert arts.article_id.str.fullmatch(r"\d{10}").all() and arts.article_id.is_unique
    assert (arts.article_id.str[:7] == arts.product_code).all()
    assert (arts.article_id.str[0] == "0").all()  # leading zeros kept, as in the real ids
    assert custs.customer_id.str.fullmatch(r"[0-9a-f]{64}").all()
    assert tx.t_dat.min() >= "2018-09-20" and tx.t_dat.max() <= "2020-09-22"
    assert (tx.t_dat.to_numpy()[:-1] <= tx.t_dat.to_numpy()[1:]).all()  # sorted by date
    assert set(tx.sales_channel_id) == {"1", "2"}
    vocab = gen.vocab()
    assert set(arts.product_type_name) <= {t["product_type_name"] for t in vocab["product_types"]}
    assert set(arts.colour_group_name) <= {c["colour_group_name"] for c in vocab["colours"]}


def test_images_rendered_for_all_but_a_few(tiny_hm):
    arts = pd.read_csv(tiny_hm / "articles.csv", dtype=str)
    files = {p.stem: p for p in (tiny_hm / "images").rglob("*.jpg")}
    assert all(p.parent.name == p.stem[:3] for p in files.values())
    missing = set(arts.article_id) - set(files)
    oracle = pd.read_parquet(tiny_hm / "_oracle" / "articles.parquet")
    assert len(missing) == int((~oracle.has_image).sum())
    assert len(missing) < 0.03 * len(arts)


def test_full_scale_sizes_are_the_real_ones():
    full = gen.SCALES["full"]
    assert (full.customers, full.articles, full.transactions) == (1_371_980, 105_542, 31_788_324)
    assert gen.N_DAYS == 734  # 2018-09-20 .. 2020-09-22


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    cfg = GenerateHMConfig(scale="tiny", images=True, n_articles=150, n_customers=200,
                           n_transactions=3000)
    gen.generate_hm(str(tmp_path / "a"), cfg)
    gen.generate_hm(str(tmp_path / "b"), cfg)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    other = GenerateHMConfig(**{**cfg.__dict__, "seed": 1})
    gen.generate_hm(str(tmp_path / "c"), other)
    assert _digest(tmp_path / "a")["transactions_train.csv"] != _digest(
        tmp_path / "c")["transactions_train.csv"]


def test_rerun_skips_unless_params_change(tmp_path):
    cfg = GenerateHMConfig(scale="tiny", images=False)
    gen.generate_hm(str(tmp_path), cfg)
    assert gen.generate_hm(str(tmp_path), cfg).get("skipped") is True
    assert "skipped" not in gen.generate_hm(str(tmp_path), GenerateHMConfig(
        scale="tiny", images=False, seed=3))


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    """The real catalogue size with few customers: the real slice's situation (1,364
    customers of the whole 105k-article catalogue)."""
    out = tmp_path_factory.mktemp("realism")
    cfg = GenerateHMConfig(scale="full", images=False, n_customers=4000, n_transactions=92_000)
    gen.generate_hm(str(out), cfg)
    tx = pd.read_csv(out / "transactions_train.csv", dtype={"article_id": str})
    custs = pd.read_csv(out / "customers.csv")
    return tx, custs


def test_realism_against_the_real_slice(realistic):
    tx, custs = realistic
    per = tx.groupby("customer_id").size()
    baskets = tx.groupby(["customer_id", "t_dat"]).size()
    firsts = tx.drop_duplicates(["customer_id", "article_id", "t_dat"])
    got = {
        "tx_median": per.median(), "tx_mean": per.mean(),
        "basket_median": baskets.median(), "basket_mean": baskets.mean(),
        "dup_share": tx.duplicated().mean(),
        "repeat_share": firsts.duplicated(["customer_id", "article_id"]).sum() / len(tx),
        "channel2": (tx.sales_channel_id == 2).mean(), "price_median": tx.price.median(),
        "age_median": custs.age.median(),
    }
    rel = {"tx_median": 0.25, "tx_mean": 0.25, "basket_median": 0.01, "basket_mean": 0.25,
           "dup_share": 0.35, "repeat_share": 0.5, "channel2": 0.06, "price_median": 0.2,
           "age_median": 0.15}
    for key, real in REAL.items():
        assert abs(got[key] - real) <= rel[key] * real + 1e-9, (key, got[key], real)


def test_popularity_is_heavy_tailed_and_seasonal(realistic):
    tx, _ = realistic
    pop = tx.article_id.value_counts().to_numpy()
    top1 = pop[: max(1, len(pop) // 100)].sum() / pop.sum()
    assert top1 > 0.05  # the top 1% of sold articles carry far more than 1% of sales
    month = pd.to_datetime(tx.t_dat).dt.month
    by_month = tx.groupby(month).size()
    assert by_month[6] > by_month[2]  # the real slice: June is the peak month, February low
