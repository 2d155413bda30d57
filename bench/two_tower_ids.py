"""The two-tower's optimizer step against the size of its id tables (issue 23): dense Adam over
every id row against sparse id gradients with SparseAdam (the default since), same model, same
batches, one torch thread, in one process.

Builds the model inputs of a run's ``train`` feature set (its customer and article id tables
are as large as the run's customers and articles), takes ``--steps`` batches of
``--batch-size`` shuffled training examples and times one pass of
``stylehub_ray.train.two_tower.run_epoch`` with each optimizer, alternating, ``--repeats``
times. Prints examples/s and ms per step of each, and their ratio.

    .venv/bin/python bench/two_tower_ids.py --run bench/results/full-scale/1-4/run --steps 40
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "two_tower_ids.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    import pyarrow.dataset as pads
    import torch

    from stylehub_ray.models.two_tower import TwoStageRecommender, split_id_parameters
    from stylehub_ray.run import Run
    from stylehub_ray.train.two_tower import (
        EXAMPLES,
        TrainTwoTowerConfig,
        make_optimizer,
        model_inputs,
        run_epoch,
    )

    torch.set_num_threads(1)
    run = Run(args.run)
    cfg = TrainTwoTowerConfig(batch_size=args.batch_size)
    _layout, customers, articles, spec = model_inputs(run, cfg)
    n = args.steps * args.batch_size
    ds = pads.dataset(run.path(EXAMPLES), filesystem=run.fs, format="parquet",
                      ignore_prefixes=["_", "."])
    t = ds.head(3 * n, columns=["customer_idx", "article_idx", "label"])
    order = np.random.default_rng(0).permutation(t.num_rows)[:n]
    cols = {k: t[k].to_numpy()[order] for k in t.column_names}
    c_tab, a_tab = customers.tensors(), articles.tensors()

    def batches():
        for lo in range(0, n, args.batch_size):
            yield {k: v[lo:lo + args.batch_size] for k, v in cols.items()}

    load0 = os.getloadavg()[0]
    rates: dict[str, list[float]] = {"dense": [], "sparse": []}
    for _ in range(args.repeats):
        for mode in ("dense", "sparse"):
            torch.manual_seed(0)
            model = TwoStageRecommender(spec)
            sparse = mode == "sparse"
            opt = make_optimizer(split_id_parameters(model, sparse), sparse, cfg.lr)
            t0 = time.perf_counter()
            _sums, steps, samples = run_epoch(model, batches(), c_tab, a_tab, opt, cfg, "cpu")
            rates[mode].append(samples / (time.perf_counter() - t0))
    best = {m: max(r) for m, r in rates.items()}
    out = {"run": args.run, "customer_ids": spec.customer_ids, "article_ids": spec.article_ids,
           "steps": args.steps, "batch_size": args.batch_size, "examples_per_s": rates,
           "ratio_sparse_to_dense": best["sparse"] / best["dense"],
           "load": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    print(f"id tables: {spec.customer_ids:,} customers x {spec.id_dim}, "
          f"{spec.article_ids:,} articles x {spec.id_dim}; {args.steps} steps of "
          f"{args.batch_size}, 1 thread, load {out['load'][0]} -> {out['load'][1]}")
    for mode in ("dense", "sparse"):
        print(f"  {mode:6s}: {best[mode]:>9,.0f} examples/s "
              f"({1000 * args.batch_size / best[mode]:.0f} ms/step; runs "
              f"{', '.join(f'{r:,.0f}' for r in rates[mode])})")
    print(f"  sparse / dense: {out['ratio_sparse_to_dense']:.2f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
