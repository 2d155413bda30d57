"""Batch recommendation throughput (customers/s) of the trained two-tower.

Two ways over every customer of the run: the `stylehub recommend` stage (Ray Data, an actor
pool that loads the recommender once per actor, one torch / FAISS thread each; timed without
start-up as the step's ``recommend_s``), and the in-process ``recommend_matrix`` (one process,
one thread) for reference. Needs a trained model (``stylehub train two-tower --run RUN``).

    .venv/bin/python bench/recommend.py --run runs/demo-twotower --actors 1 2

Prints a table and writes ``bench/results/recommend_two_tower.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402

from stylehub_ray.eval.recommend import RecommendConfig, recommend  # noqa: E402
from stylehub_ray.models.recommender import TwoTowerRecommender  # noqa: E402
from stylehub_ray.run import Run  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "recommend_two_tower.json"


def in_process(run: Run, k: int, batch: int) -> dict:
    import torch

    torch.set_num_threads(1)
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except (ImportError, AttributeError):
        pass
    t0 = time.perf_counter()
    rec = TwoTowerRecommender.load(run, "default", "test")
    load_s = time.perf_counter() - t0
    n = len(rec.trained)
    t0 = time.perf_counter()
    paths = []
    for lo in range(0, n, batch):
        paths += rec.recommend(np.arange(lo, min(n, lo + batch)), k)[2]
    dt = time.perf_counter() - t0
    return {"mode": "in process, 1 thread", "customers": n, "seconds": round(dt, 2),
            "customers_s": round(n / dt, 1), "load_s": round(load_s, 2),
            "model_path": paths.count("model")}


def stage(run: Run, k: int, actors: int, batch: int) -> dict:
    cfg = RecommendConfig(k=k, actors=actors, batch_size=batch, threads=1)
    t0 = time.perf_counter()
    entry = recommend(run, cfg, force=True)
    wall = time.perf_counter() - t0
    n = entry["counts"]["customers"]["total"]
    sec = entry["timings"]["recommend_s"]
    return {"mode": f"Ray Data, {actors} actor(s)", "customers": n, "seconds": sec,
            "customers_s": round(n / sec, 1), "stage_wall_s": round(wall, 1),
            "model_path": entry["counts"]["customers"]["model"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", default="runs/demo-twotower")
    p.add_argument("--k", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()

    from stylehub_ray.ray_utils import ensure_ray

    run = Run(args.run)
    load0 = os.getloadavg()
    rows = [in_process(run, args.k, args.batch_size)]
    ensure_ray(num_cpus=2)
    for a in args.actors:
        rows.append(stage(run, args.k, a, args.batch_size))
    print(f"{'mode':24s} {'customers':>10s} {'seconds':>8s} {'customers/s':>12s}")
    for r in rows:
        print(f"{r['mode']:24s} {r['customers']:10,d} {r['seconds']:8.1f} "
              f"{r['customers_s']:12,.0f}")
    out = {"run": run.uri, "config": vars(args), "cpus": os.cpu_count(),
           "loadavg_before": load0, "loadavg_after": os.getloadavg(), "results": rows}
    print(f"load average before {load0[0]:.1f}, after {out['loadavg_after'][0]:.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
