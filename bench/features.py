"""Feature building against DuckDB computing the same aggregates from the same Parquet.

For 1M, 4M and 16M generated transactions (full 105,542-article catalogue), ingests a run, then
in one process times:
- ours: the customer and article aggregates of ``stylehub features`` for both feature sets
  (the bucketing shuffle through storage + the per-bucket pandas aggregation), read from the
  stage's manifest timings, and the whole stage (split, interactions, negatives, preprocessing);
- DuckDB: the same customer and article aggregates for the same two cutoffs, with SQL over
  raw/transactions (all cores), fetched as Arrow.
Checks that both agree on a sample of values, prints rows/s, the ratio and the growth.

    python bench/features.py [--sizes 1000000 4000000 16000000] [--source DIR ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from stylehub_ray.config import FeaturesConfig, GenerateHMConfig, IngestConfig
from stylehub_ray.data.ingest import ingest
from stylehub_ray.features.stage import build_features, load_features
from stylehub_ray.ray_utils import ensure_ray
from stylehub_ray.run import Run
from stylehub_ray.synth.hm import generate_hm

CUSTOMER_SQL = """
SELECT customer_idx, count(*) AS tx_count, avg(price) AS price_mean,
       stddev_pop(price) AS price_std, min(price) AS price_min, max(price) AS price_max,
       sum(price) AS spend_total, count(DISTINCT article_idx) AS unique_articles,
       min(t_dat) AS first_day, max(t_dat) AS last_day,
       count(*) FILTER (WHERE sales_channel_id = 1) AS ch1,
       count(*) FILTER (WHERE sales_channel_id = 2) AS ch2,
       count(*) FILTER (WHERE t_dat >= DATE '{cut}' - INTERVAL {recent} DAY) AS recent_count,
       sum(price) FILTER (WHERE t_dat >= DATE '{cut}' - INTERVAL {recent} DAY) AS recent_spend,
       avg(price) FILTER (WHERE t_dat >= DATE '{cut}' - INTERVAL {recent} DAY)
         AS recent_price_mean
FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true)
WHERE t_dat < DATE '{cut}' GROUP BY customer_idx
"""
ARTICLE_SQL = """
SELECT article_idx, count(*) AS sales_count, count(DISTINCT customer_idx) AS unique_customers,
       avg(price) AS price_mean, stddev_pop(price) AS price_std, median(price) AS price_median,
       min(t_dat) AS first_day, max(t_dat) AS last_day,
       count(*) FILTER (WHERE sales_channel_id = 1) AS ch1,
       count(*) FILTER (WHERE sales_channel_id = 2) AS ch2,
       count(*) FILTER (WHERE t_dat >= DATE '{cut}' - INTERVAL {recent} DAY) AS recent_sales,
       count(DISTINCT customer_idx) FILTER (WHERE t_dat >= DATE '{cut}' - INTERVAL {recent} DAY)
         AS recent_unique_customers
FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true)
WHERE t_dat < DATE '{cut}' GROUP BY article_idx
"""


def duckdb_aggregates(run: Run, cutoffs: dict[str, str], recent: int) -> tuple[float, dict]:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count()}")  # the same cores as ours
    root = run.path("raw/transactions")
    out = {}
    t0 = time.perf_counter()
    for name, cut in cutoffs.items():
        for kind, sql in (("customer", CUSTOMER_SQL), ("article", ARTICLE_SQL)):
            out[(name, kind)] = con.sql(sql.format(root=root, cut=cut, recent=recent)
                                            ).to_arrow_table()
    return time.perf_counter() - t0, out


def check_agree(run: Run, duck: dict) -> None:
    """Our features and DuckDB's agree on every customer/article with history."""
    for kind, key, cols in (("customer", "customer_idx", ["tx_count", "price_mean",
                                                          "unique_articles", "recent_count"]),
                            ("article", "article_idx", ["sales_count", "price_median",
                                                        "unique_customers"])):
        ours = load_features(run, f"{kind}s", "train").set_index(key)
        theirs = duck[("train", kind)].to_pandas().set_index(key).sort_index()
        mine = ours.loc[theirs.index]
        for col in cols:
            np.testing.assert_allclose(mine[col].to_numpy(np.float64),
                                       theirs[col].fillna(0).to_numpy(np.float64),
                                       rtol=1e-9, err_msg=f"{kind}.{col}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[1_000_000, 4_000_000, 16_000_000])
    ap.add_argument("--source", action="append", default=[])
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "stylehub-bench"))
    ap.add_argument("--buckets", type=int, default=16)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    ensure_ray()
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 0))
    quiet = {"log": lambda *a: None}
    jobs = [(Path(args.data) / f"hm-{n}", n) for n in args.sizes] + [
        (Path(s), None) for s in args.source]
    rows = []
    for src, n in jobs:
        if n is not None:
            generate_hm(str(src), GenerateHMConfig(scale="full", images=False, n_transactions=n,
                                                   n_customers=max(1000, n // 23)), **quiet)
        run = Run(str(src) + "-run")
        ingest(str(src), run, IngestConfig(verify_images=False), **quiet)
        n = run.entry("ingest")["counts"]["transactions"]["kept"]
        cfg = FeaturesConfig(buckets=args.buckets)
        t0 = time.perf_counter()
        entry = build_features(run, cfg, force=True, **quiet)
        stage_s = time.perf_counter() - t0
        ours_s = entry["timings"]["bucketize_s"] + entry["timings"]["aggregates_s"]
        cut = entry["cutoffs"]
        duck_s, duck = duckdb_aggregates(run, {"train": cut["val_start"],
                                               "test": cut["test_start"]}, cfg.recent_days)
        check_agree(run, duck)
        rows.append({"transactions": n, "duckdb_s": round(duck_s, 2), "ours_s": round(ours_s, 2),
                     "stage_s": round(stage_s, 2), "duckdb_rows_s": round(n / duck_s),
                     "ours_rows_s": round(n / ours_s), "ratio": round(ours_s / duck_s, 2),
                     "timings": entry["timings"],
                     "examples": entry["counts"]["training_examples"]})
        print(json.dumps(rows[-1]), flush=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Ray CPUs {cpus}; "
          f"aggregates = customer + article features for 2 cutoffs")
    print(f"{'transactions':>12} {'DuckDB s':>9} {'ours s':>7} {'stage s':>8} "
          f"{'DuckDB rows/s':>14} {'ours rows/s':>12} {'ours/DuckDB':>11}")
    for r in rows:
        print(f"{r['transactions']:>12,} {r['duckdb_s']:>9} {r['ours_s']:>7} {r['stage_s']:>8} "
              f"{r['duckdb_rows_s']:>14,} {r['ours_rows_s']:>12,} {r['ratio']:>11}")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"growth {a['transactions']:,} -> {b['transactions']:,} rows "
              f"(x{b['transactions'] / a['transactions']:.1f}): DuckDB "
              f"x{b['duckdb_s'] / a['duckdb_s']:.2f}, ours x{b['ours_s'] / a['ours_s']:.2f}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "features.json").write_text(json.dumps(
        {"machine": {"cores": os.cpu_count(), "ray_cpus": cpus}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
