"""Leak check of the two-tower's training examples: does an article feature tell positives from
negatives in training the way it does on validation?

For each article feature, the AUC of the feature alone at separating the training examples'
positives from their negatives (joined with the feature set the trainer joins: ``fit`` where
the features stage built a label window, else ``train``) beside the same on the validation
examples the trainer scores each epoch (``val`` purchases of trained customers plus 4 uniform
negatives each, joined with ``train``). A feature whose AUC flips across 0.5 between the two
teaches the model the opposite of what holds on new data: with features computed after the
positives (``features.label_days=0``) a positive's own sale is in its article's
``sales_count`` and ``has_history``, and new articles, most of a real week's purchases, look
like negatives.

    .venv/bin/python bench/leak_check.py --run RUN
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from stylehub_ray.features.inputs import training_feature_set
from stylehub_ray.features.stage import load_features
from stylehub_ray.metrics import auc
from stylehub_ray.run import Run
from stylehub_ray.train.two_tower import (
    EXAMPLES,
    TrainTwoTowerConfig,
    trained_customers,
    validation_data,
)

COLUMNS = ("has_history", "sales_count", "recent_sales", "days_since_first_sale",
           "days_since_last_sale")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    args = p.parse_args()
    run = Run(args.run)
    cfg = TrainTwoTowerConfig()
    fit_set = training_feature_set(run)
    fit = load_features(run, "articles", fit_set).set_index("article_idx").sort_index()
    val_f = load_features(run, "articles", "train").set_index("article_idx").sort_index()
    n_customers = int(pd.read_parquet(run.path("raw/customer_map"),
                                      columns=["customer_idx"])["customer_idx"].max()) + 1
    val = validation_data(run, cfg, trained_customers(run, cfg, n_customers), len(val_f))
    ex = pd.read_parquet(run.path(EXAMPLES), columns=["article_idx", "label"])
    y_tr, a_tr = ex["label"].to_numpy(), ex["article_idx"].to_numpy()
    y_va, a_va = val["ex_label"], val["ex_article"]
    cut = run.entry("features")["cutoffs"]
    print(f"run {run.uri}: training examples join `{fit_set}` "
          f"(label window from {cut.get('fit_start', cut['train_start'])}); "
          f"{int(y_tr.sum()):,} positives / {int((y_tr == 0).sum()):,} negatives; "
          f"val {int(y_va.sum()):,} / {int((y_va == 0).sum()):,}")
    print(f"{'feature':<24} {'train AUC':>9} {'val AUC':>8} | mean: train pos  neg | "
          f"val pos  neg")
    for c in COLUMNS:
        tr, va = fit[c].to_numpy(np.float64), val_f[c].to_numpy(np.float64)
        print(f"{c:<24} {auc(y_tr, tr[a_tr]):>9.3f} {auc(y_va, va[a_va]):>8.3f} | "
              f"{tr[a_tr][y_tr == 1].mean():>10.3g} {tr[a_tr][y_tr == 0].mean():>5.3g} | "
              f"{va[a_va][y_va == 1].mean():>7.3g} {va[a_va][y_va == 0].mean():>5.3g}")


if __name__ == "__main__":
    main()
