"""The H&M generator beside the real slice: the figures its parameters were set from.

    python bench/realism.py [--real ../shared/data/hm-sample]

Generates the real catalogue size (105,542 articles) with as few customers as the slice has
per article bought (4,000 customers, 92,000 transactions), because the slice is 1,364
customers of the full catalogue; prints each statistic for both.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from stylehub_ray.config import GenerateHMConfig
from stylehub_ray.synth.hm import generate_hm


def stats(root: Path) -> dict[str, float]:
    tx = pd.read_csv(root / "transactions_train.csv", dtype={"article_id": str})
    cu = pd.read_csv(root / "customers.csv")
    ar = pd.read_csv(root / "articles.csv", dtype=str)
    per = tx.groupby("customer_id").size()
    baskets = tx.groupby(["customer_id", "t_dat"]).size()
    firsts = tx.drop_duplicates(["customer_id", "article_id", "t_dat"])
    pop = tx.article_id.value_counts()
    month = pd.to_datetime(tx.t_dat).dt.month
    by_month = tx.groupby(month).size() / len(tx)
    return {
        "transactions per customer, median": per.median(),
        "transactions per customer, mean": per.mean(),
        "transactions per customer, p90": per.quantile(0.9),
        "rows per same-day basket, median": baskets.median(),
        "rows per same-day basket, mean": baskets.mean(),
        "rows per same-day basket, p90": baskets.quantile(0.9),
        "identical rows (quantity > 1) share": tx.duplicated().mean(),
        "later-day repeat purchase share": firsts.duplicated(
            ["customer_id", "article_id"]).sum() / len(tx),
        "price p10": tx.price.quantile(0.1), "price median": tx.price.median(),
        "price p90": tx.price.quantile(0.9),
        "sales channel 2 share": (tx.sales_channel_id == 2).mean(),
        "age p10": cu.age.quantile(0.1), "age median": cu.age.median(),
        "age p90": cu.age.quantile(0.9), "age blank share": cu.age.isna().mean(),
        "sales share of top 1% of sold articles": pop.iloc[: max(1, len(pop) // 100)].sum()
        / pop.sum(),
        "sales share of June": by_month.get(6, 0.0), "sales share of February":
        by_month.get(2, 0.0),
        "articles: product types": ar.product_type_name.nunique(),
        "articles: colour groups": ar.colour_group_name.nunique(),
        "articles: blank detail_desc share": ar.detail_desc.isna().mean(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", default="../shared/data/hm-sample")
    args = ap.parse_args()
    real = stats(Path(args.real))
    with tempfile.TemporaryDirectory() as tmp:
        generate_hm(tmp, GenerateHMConfig(scale="full", images=False, n_customers=4000,
                                          n_transactions=92_000))
        ours = stats(Path(tmp))
    print("| statistic | real slice | generated |\n|---|---:|---:|")
    for key in real:
        print(f"| {key} | {real[key]:.4g} | {ours[key]:.4g} |")


if __name__ == "__main__":
    main()
