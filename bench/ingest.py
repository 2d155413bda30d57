"""Ingest throughput against the floor of the same cores, in one run.

For 1M and 4M generated transactions (the full 105,542-article catalogue, ~23 transactions per
customer), times:
- floor: a bare ``pyarrow.csv.read_csv`` + ``pyarrow.parquet.write_table`` of
  transactions_train.csv (all cores, pyarrow's own threads);
- ours: the transactions step of ``stylehub ingest`` (Ray Data chunked parse, validation,
  id lookups, quarantine split, week-partitioned Parquet), on a local Ray instance that is
  already up, and the whole ingest stage (articles, customers, images table included).
Prints rows/s, the ratio to the floor and the growth from 1M to 4M, and writes JSON.

    python bench/ingest.py [--sizes 1000000 4000000] [--repeats 2] [--out bench/results]
    python bench/ingest.py --sizes --source /data/hm-full --repeats 1   # the full scale
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from stylehub_ray.config import GenerateHMConfig, IngestConfig
from stylehub_ray.data.ingest import ingest
from stylehub_ray.ray_utils import ensure_ray
from stylehub_ray.run import Run
from stylehub_ray.synth.hm import generate_hm


def floor(csv_path: Path, out: Path) -> float:
    t0 = time.perf_counter()
    table = pacsv.read_csv(csv_path)
    pq.write_table(table, out)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[1_000_000, 4_000_000])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "stylehub-bench"))
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--source", action="append", default=[],
                    help="also time an existing generated source (e.g. the full scale)")
    args = ap.parse_args()
    ensure_ray()
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 0))
    rows = []
    jobs = [(Path(args.data) / f"hm-{n}", n) for n in args.sizes] + [
        (Path(s), None) for s in args.source]
    for src, n in jobs:
        if n is not None:
            generate_hm(str(src), GenerateHMConfig(scale="full", images=False, n_transactions=n,
                                                   n_customers=max(1000, n // 23)))
        else:
            n = json.loads((src / "_oracle" / "generator.json").read_text())["summary"][
                "transactions"]
        csv_path = src / "transactions_train.csv"
        floors, ours, stage = [], [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                floors.append(floor(csv_path, Path(tmp) / "t.parquet"))
                run = Run(os.path.join(tmp, "run"))
                t0 = time.perf_counter()
                entry = ingest(str(src), run, IngestConfig(), force=True)
                stage.append(time.perf_counter() - t0)
                ours.append(entry["timings"]["transactions_s"])
                assert entry["counts"]["transactions"]["kept"] == n
        best = {"floor_s": min(floors), "ours_s": min(ours), "stage_s": min(stage)}
        rows.append({"transactions": n, "csv_mb": round(csv_path.stat().st_size / 2**20, 1),
                     **{k: round(v, 2) for k, v in best.items()},
                     "floor_rows_s": round(n / best["floor_s"]),
                     "ours_rows_s": round(n / best["ours_s"]),
                     "ratio": round(best["ours_s"] / best["floor_s"], 2),
                     "stage_ratio": round(best["stage_s"] / best["floor_s"], 2)})
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Ray CPUs {cpus}, "
          f"best of {args.repeats}")
    print(f"{'transactions':>12} {'CSV MB':>7} {'floor s':>8} {'ours s':>7} {'stage s':>8} "
          f"{'floor rows/s':>13} {'ours rows/s':>12} {'ours/floor':>10} {'stage/floor':>11}")
    for r in rows:
        print(f"{r['transactions']:>12,} {r['csv_mb']:>7} {r['floor_s']:>8} {r['ours_s']:>7} "
              f"{r['stage_s']:>8} {r['floor_rows_s']:>13,} {r['ours_rows_s']:>12,} "
              f"{r['ratio']:>10} {r['stage_ratio']:>11}")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        size = b["transactions"] / a["transactions"]
        print(f"growth {a['transactions']:,} -> {b['transactions']:,} rows (x{size:g}): "
              f"floor x{b['floor_s'] / a['floor_s']:.2f}, ours x{b['ours_s'] / a['ours_s']:.2f}, "
              f"stage x{b['stage_s'] / a['stage_s']:.2f}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "ingest.json").write_text(json.dumps(
        {"machine": {"cores": os.cpu_count(), "ray_cpus": cpus}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
