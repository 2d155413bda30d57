"""Derive the H&M attribute vocabularies the generator draws from, from a copy of the real data.

Writes ``stylehub_ray/synth/hm_vocab.json``: category codes and names with their co-occurrence
counts (product type x department bundle, colour bundles, graphical appearances), customer
attribute vocabularies, and per-product-type log-price moments. It holds no rows of the data:
only vocabularies and counts. Run:

    python scripts/extract_hm_vocab.py ../shared/data/hm-sample
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

DEPT_COLS = [
    "department_no", "department_name", "index_code", "index_name", "index_group_no",
    "index_group_name", "section_no", "section_name", "garment_group_no", "garment_group_name",
]
TYPE_COLS = ["product_type_no", "product_type_name", "product_group_name"]
COLOUR_COLS = [
    "colour_group_code", "colour_group_name", "perceived_colour_value_id",
    "perceived_colour_value_name", "perceived_colour_master_id", "perceived_colour_master_name",
]
GRAPHIC_COLS = ["graphical_appearance_no", "graphical_appearance_name"]


def _records(df: pd.DataFrame, cols: list[str]) -> list[dict]:
    counts = df.groupby(cols, dropna=False).size().reset_index(name="count")
    counts = counts.sort_values(cols).reset_index(drop=True)
    return json.loads(counts.to_json(orient="records"))


def main(src: str) -> None:
    root = Path(src)
    articles = pd.read_csv(root / "articles.csv", dtype=str)
    customers = pd.read_csv(root / "customers.csv", dtype=str)
    tx = pd.read_csv(root / "transactions_train.csv", dtype={"article_id": str})
    num = ["product_type_no", "graphical_appearance_no", "colour_group_code",
           "perceived_colour_value_id", "perceived_colour_master_id", "department_no",
           "index_group_no", "section_no", "garment_group_no"]
    for col in num:
        articles[col] = articles[col].astype(int)
    departments = _records(articles, DEPT_COLS)
    dept_index = {d["department_no"]: i for i, d in enumerate(departments)}
    types = _records(articles, TYPE_COLS)
    type_index = {t["product_type_no"]: i for i, t in enumerate(types)}
    pairs = articles.groupby(["product_type_no", "department_no"]).size()
    type_dept = [[type_index[t], dept_index[d], int(n)] for (t, d), n in pairs.items()]
    priced = tx.merge(articles[["article_id", "product_type_no"]], on="article_id")
    logp = np.log(priced["price"].astype(float))
    by_type = logp.groupby(priced["product_type_no"]).agg(["mean", "std", "size"])
    overall = (float(logp.mean()), float(logp.std()))
    for t in types:
        row = by_type.loc[t["product_type_no"]] if t["product_type_no"] in by_type.index else None
        ok = row is not None and row["size"] >= 5
        t["log_price_mean"] = round(float(row["mean"]) if ok else overall[0], 4)
        t["log_price_std"] = round(float(row["std"]) if ok else overall[1], 4)
    vocab = {
        "source": "H&M Personalized Fashion Recommendations, vocabularies of a real slice",
        "product_types": types,
        "departments": departments,
        "type_department_counts": type_dept,
        "colours": _records(articles, COLOUR_COLS),
        "graphical_appearances": _records(articles, GRAPHIC_COLS),
        "club_member_status": sorted(customers["club_member_status"].dropna().unique().tolist()
                                     + ["LEFT CLUB"]),
        "fashion_news_frequency": sorted(
            customers["fashion_news_frequency"].dropna().unique().tolist() + ["Monthly"]),
        "log_price_overall": [round(overall[0], 4), round(overall[1], 4)],
    }
    out = Path(__file__).resolve().parents[1] / "stylehub_ray" / "synth" / "hm_vocab.json"
    out.write_text(json.dumps(vocab, indent=1) + "\n")
    print(f"wrote {out}: {len(types)} product types, {len(departments)} departments, "
          f"{len(type_dept)} type x department pairs, {len(vocab['colours'])} colours, "
          f"{len(vocab['graphical_appearances'])} graphical appearances")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/hm-sample")
