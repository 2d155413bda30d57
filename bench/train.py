"""Two-tower training throughput: Ray Train with 1 and 2 workers against a plain
single-process torch loop over the same examples of the same run.

Every process runs one torch thread, so the comparison measures Ray's overhead and scaling,
not thread contention. The plain loop and the Ray Train workers run the same epoch function
(``stylehub_ray.train.two_tower.run_epoch``) on the same model and inputs; samples/s counts
the training pass only (not the per-epoch validation, not start-up). Goals: 1 worker at least
0.9 of the plain loop; 2 workers at least 1.6x of 1 worker (on a machine with 2 free cores).

    .venv/bin/python bench/train.py --run runs/demo-twotower --epochs 1 --train-days 120

Prints a table and writes ``bench/results/train_two_tower.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402

from stylehub_ray.run import Run  # noqa: E402
from stylehub_ray.train.two_tower import (  # noqa: E402
    EXAMPLES,
    TrainTwoTowerConfig,
    build_trainer,
    make_optimizer,
    model_inputs,
    run_epoch,
    sparse_ids_apply,
)

RESULTS = Path(__file__).resolve().parent / "results" / "train_two_tower.json"


def plain_loop(run: Run, cfg: TrainTwoTowerConfig) -> dict:
    """The same epochs in this process, no Ray: examples read with pyarrow, in file order."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import torch

    from stylehub_ray.features.inputs import feature_cutoff
    from stylehub_ray.models.two_tower import TwoStageRecommender, split_id_parameters

    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    ds = pads.dataset(run.path(EXAMPLES), filesystem=run.fs, format="parquet",
                      ignore_prefixes=["_", "."])
    flt = None
    if cfg.train_days:
        import pyarrow as pa

        start = np.datetime64(feature_cutoff(run, "train")) - np.timedelta64(cfg.train_days, "D")
        flt = pc.field("t_dat") >= pa.scalar(start.astype("datetime64[D]").item(), pa.date32())
    t = ds.to_table(columns=["customer_idx", "article_idx", "label"], filter=flt)
    cols = {k: t[k].to_numpy() for k in ("customer_idx", "article_idx", "label")}
    _layout, customers, articles, spec = model_inputs(run, cfg)
    model = TwoStageRecommender(spec)
    sparse = sparse_ids_apply(cfg, "cpu", 1)
    opt = make_optimizer(split_id_parameters(model, sparse), sparse, cfg.lr)
    c_tab, a_tab = customers.tensors(), articles.tensors()
    n, b = len(cols["label"]), cfg.batch_size

    def batches():
        for lo in range(0, n - b + 1, b):  # drop_last, as the workers
            yield {k: v[lo:lo + b] for k, v in cols.items()}

    epochs = []
    for _ in range(cfg.epochs):
        t0 = time.perf_counter()
        sums, steps, samples = run_epoch(model, batches(), c_tab, a_tab, opt, cfg, "cpu")
        dt = time.perf_counter() - t0
        epochs.append({"samples": samples, "train_s": round(dt, 3),
                       "samples_s": round(samples / dt, 1), "loss": sums[0] / max(steps, 1)})
    return {"mode": "plain torch loop", "epochs": epochs}


def ray_train(run: Run, cfg: TrainTwoTowerConfig, workers: int, storage: str) -> dict:
    trainer, name = build_trainer(run, replace(cfg, workers=workers, cpus_per_worker=1.0),
                                  storage_path=storage, name=f"bench-{workers}w")
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0
    df = result.metrics_dataframe
    epochs = [{"samples": int(r["samples"]), "train_s": float(r["train_s"]),
               "samples_s": float(r["samples_s"]), "loss": float(r["loss"]),
               "val_map12": float(r["val_map12"])} for _, r in df.iterrows()]
    return {"mode": f"Ray Train, {workers} worker(s)", "epochs": epochs,
            "fit_wall_s": round(wall, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", default="runs/demo-twotower")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--train-days", type=int, default=120)
    p.add_argument("--val-customers", type=int, default=200)
    args = p.parse_args()

    from stylehub_ray.ray_utils import ensure_ray

    run = Run(args.run)
    cfg = TrainTwoTowerConfig(epochs=args.epochs, batch_size=args.batch_size,
                              train_days=args.train_days, val_customers=args.val_customers)
    load0 = os.getloadavg()
    rows = [plain_loop(run, cfg)]
    ensure_ray(num_cpus=2)
    with tempfile.TemporaryDirectory(prefix="bench-tt-") as storage:
        rows.append(ray_train(run, cfg, 1, storage))
        rows.append(ray_train(run, cfg, 2, storage))

    def rate(r: dict) -> float:  # the last epoch (the first of a Ray run pays warm-up)
        return r["epochs"][-1]["samples_s"]

    plain, one, two = (rate(r) for r in rows)
    out = {"run": run.uri, "config": vars(args), "torch_threads_per_process": 1,
           "cpus": os.cpu_count(), "loadavg_before": load0, "loadavg_after": os.getloadavg(),
           "results": rows,
           "ratios": {"ray1_over_plain": round(one / plain, 3),
                      "ray2_over_ray1": round(two / one, 3)},
           "goals": {"ray1_over_plain": 0.9, "ray2_over_ray1": 1.6}}
    print(f"{'mode':28s} {'samples':>9s} {'train s':>8s} {'samples/s':>10s}")
    for r in rows:
        e = r["epochs"][-1]
        print(f"{r['mode']:28s} {e['samples']:9,d} {e['train_s']:8.1f} {e['samples_s']:10,.0f}")
    print(f"Ray 1 worker / plain loop: {out['ratios']['ray1_over_plain']:.2f} (goal >= 0.9)")
    print(f"Ray 2 workers / 1 worker:  {out['ratios']['ray2_over_ray1']:.2f} (goal >= 1.6)")
    print(f"load average before {load0[0]:.1f}, after {out['loadavg_after'][0]:.1f} "
          f"on {os.cpu_count()} cores")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
