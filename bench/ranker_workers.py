"""The ranker's LightGBM fit: training rows/s with 1 and 2 Ray Train workers beside a plain
``lightgbm.train`` on the same rows, in one run.

On a run with features (and embeddings): builds the ranker's training and val rows once
(``stylehub_ray.eval.ranker.training_data``, the stage's own code), then fits the same
lambdarank model with a fixed number of rounds (no early stopping, so every fit does the same
work) three ways. Rows/s = training rows x rounds / fit seconds, and its ratio to the plain
fit's. Ray is started before the first timing. Prints the load average beside each figure;
writes ``bench/results/ranker-workers-<name>.json``.

    python bench/ranker_workers.py --run /tmp/rank-demo-run --name demo --rounds 100
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--name", default="demo")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    args = p.parse_args()

    from stylehub_ray import logs
    from stylehub_ray.eval.ranker import TrainRankerConfig, training_data
    from stylehub_ray.ray_utils import ensure_ray
    from stylehub_ray.run import Run
    from stylehub_ray.train import ranker as T

    logs.setup()
    ensure_ray()  # started before any timing: no fit pays for ray.init
    run = Run(args.run)
    cfg = TrainRankerConfig(rounds=args.rounds, patience=args.rounds + 1,
                            cpus_per_worker=args.cpus_per_worker)
    t0 = time.perf_counter()
    data = training_data(run, cfg)
    build_s = time.perf_counter() - t0
    train, features = data["train"], data["features"]
    rows = len(train["y"])
    print(f"rows: {rows:,} training, {len(data['val']['y']):,} val, {len(features)} features; "
          f"built in {build_s:.1f}s (load {os.getloadavg()[0]:.2f})")
    results = {"rows": rows, "rounds": args.rounds, "build_s": round(build_s, 1), "fits": []}
    # No early stopping: every fit runs all rounds on the same rows.
    fits = [("plain lightgbm.train", None)] + [
        (f"Ray Train, {w} worker{'s' if w > 1 else ''}", w)
        for w in map(int, args.workers.split(","))]
    for label, workers in fits:
        conf = asdict(cfg) | {"workers": workers or 1}
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        if workers is None:
            _, metrics = T.fit_plain(train, None, features, conf)
        else:
            _, metrics = T.fit_ray(train, None, features, conf,
                                   run.uri_of("_ray_train/ranker-bench"), f"bench-{workers}")
        fit_s = time.perf_counter() - t0
        rate = rows * args.rounds / fit_s
        ratio = rate / results["fits"][0]["rows_rounds_per_s"] if results["fits"] else 1.0
        print(f"{label:26s} {fit_s:7.1f} s  {rate:12,.0f} rows x rounds / s  {ratio:5.2f} of "
              f"plain  (load before {load:.2f}, after {os.getloadavg()[0]:.2f})")
        results["fits"].append({"fit": label, "workers": workers, "fit_s": round(fit_s, 2),
                                "rows_rounds_per_s": round(rate), "of_plain": round(ratio, 3),
                                "load_before": load})
    run.delete("_ray_train/ranker-bench")
    out = Path(__file__).parent / "results" / f"ranker-workers-{args.name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
