"""FND-CL's figure sweeps with Ray Tune on the generated outfits (issue 19; paper Figs. 4-6).

On one demo outfits run (set 630, seed 0): ingest, item features and the N-pair teacher
(frozen pretrained EfficientNet-Lite2 with its 1024-wide head), then four `stylehub tune fndcl`
sweeps over students trained end to end, FIFO (every trial trains every epoch), two trials at
a time:

- ``fig4-alpha`` / ``fig4-alpha-wide``: FND's alpha (Eq. 12) on a grid;
  ``fig4-references``: the N-pair and BPR students, the figure's reference lines;
- ``fig5-augmentations``: FND-CL with each of the paper's eight augmentation pairs (I / E / R:
  identity / erase / replace);
- ``fig6-sizes``: N-pair, FND and FND-CL students at three sizes (``tiny``, ``tiny-s``,
  ``tiny-m``: 0.39M, 0.87M, 1.55M trunk parameters), the teacher as the ceiling.

Every trial reports the students' half of val (AUC and NDCG, the best epoch); the paper's
figures show test AUC. The teacher check is off in the sweeps (each FND trial would train its
own N-pair student first); the N-pair students are trials of their own. Prints one table per
figure and writes ``bench/results/fndcl_sweeps.json``.

    .venv/bin/python bench/fndcl_sweeps.py [--epochs 2] [--work DIR] [--only fig4-alpha ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

RESULTS = Path(__file__).resolve().parent / "results" / "fndcl_sweeps.json"
PAIRS = ("identity+erase", "identity+replace", "erase+identity", "erase+erase",
         "erase+replace", "replace+identity", "replace+erase", "replace+replace")
SWEEPS = {
    "fig4-alpha": ["space.alpha=grid:0.25,0.5,1.0,1.25,1.5,2.0,3.0", "train_fndcl.loss=fnd"],
    # Larger alphas: with the teacher's cosine scores the gap r^_i - r^_ijk averages about 0.3
    # (bench/fndcl_distillation_weights.py), so alpha near 3 first gives d near N-pair's 1.
    "fig4-alpha-wide": ["space.alpha=grid:4.0,6.0,8.0", "train_fndcl.loss=fnd"],
    "fig4-references": ["space.loss=grid:bpr,npair"],
    "fig5-augmentations": ["space.augmentations=grid:" + ",".join(PAIRS),
                           "train_fndcl.loss=fndcl"],
    "fig6-sizes": ["space.backbone=grid:tiny,tiny-s,tiny-m", "space.loss=grid:npair,fnd,fndcl"],
}


def prepare(work: str, args: argparse.Namespace) -> str:
    """The run every sweep reads: ingested outfits, item features, the teacher."""
    from stylehub_ray.config import IngestConfig
    from stylehub_ray.data.ingest import ingest
    from stylehub_ray.run import Run
    from stylehub_ray.synth.outfits import generate_outfits
    from stylehub_ray.train.fndcl import (
        FNDCLItemsConfig,
        TrainFNDCLConfig,
        prepare_fndcl_items,
        train_fndcl,
    )

    src, run_dir = os.path.join(work, "src"), os.path.join(work, "run")
    generate_outfits(src, scale="demo", seed=args.seed)
    run = Run(run_dir)
    ingest(src, run, IngestConfig())
    prepare_fndcl_items(run, FNDCLItemsConfig(sets=("630", "53"), image_size=64,
                                              ae_epochs=2, seed=args.seed))
    teacher = TrainFNDCLConfig(stage="teacher", loss="npair", epochs=args.epochs,
                               seed=args.seed)
    train_fndcl(run, teacher)
    return run_dir


def sweep(run_dir: str, name: str, args: argparse.Namespace) -> dict:
    stylehub = str(Path(sys.executable).parent / "stylehub")
    cmd = [stylehub, "tune", "fndcl", "--run", run_dir, "--set", f"sweep={name}",
           "--set", "search=grid", "--set", "scheduler=fifo", "--set", "max_concurrent=2",
           "--set", f"train_fndcl.epochs={args.epochs}", "--set", f"train_fndcl.seed={args.seed}",
           "--set", "train_fndcl.cpus_per_worker=0.5", "--set", "train_fndcl.teacher_check=false"]
    for item in SWEEPS[name]:
        cmd += ["--set", item]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    wall = time.perf_counter() - t0
    trials = Path(run_dir) / "tune" / "fndcl" / name / "trials.parquet"
    if rc != 0 or not trials.exists():
        return {"rc": rc, "wall_s": round(wall, 1), "trials": []}
    import pandas as pd

    df = pd.read_parquet(trials)
    swept = [item.split("=")[0].removeprefix("space.") for item in SWEEPS[name]
             if item.startswith("space.")]
    keep = [c for c in df.columns if c in swept or c.startswith("val_")
            or c in ("best_epoch", "status", "error", "train_s")]
    return {"rc": rc, "wall_s": round(wall, 1),
            "trials": json.loads(df[keep].to_json(orient="records"))}


def teacher_val(run_dir: str) -> dict:
    from stylehub_ray.run import Run

    for key, entry in Run(run_dir).manifest()["steps"].items():
        if key.startswith("train_fndcl/teacher"):
            return entry.get("best_metrics", {})
    return {}


def table(results: dict, teacher: dict) -> list[str]:
    lines = []
    t_auc = teacher.get("val_auc")
    head = (f"teacher (N-pair, Lite2, frozen): val AUC {100 * t_auc:.2f} on the teacher's own "
            f"half of val" if t_auc else "")
    for name, res in results.items():
        lines += ["", f"{name} ({res['wall_s']} s, rc {res['rc']}); val AUC / NDCG on the "
                      f"students' half of val, percent" + (f"; {head}" if head else "")]
        swept = [item.split("=")[0].removeprefix("space.") for item in SWEEPS[name]
                 if item.startswith("space.")]
        for t in res["trials"]:
            label = ", ".join(f"{k}={t[k]}" for k in swept if k in t)
            auc, ndcg = t.get("val_auc"), t.get("val_ndcg")
            cells = (f"{100 * auc:6.2f} {100 * ndcg:6.2f}" if auc == auc and auc is not None
                     else f"failed: {t.get('error')}")
            lines.append(f"  {label:40s} {cells}  epoch {t.get('best_epoch')}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="")
    p.add_argument("--only", nargs="+", choices=list(SWEEPS), default=list(SWEEPS))
    args = p.parse_args(argv)
    from stylehub_ray import logs

    logs.setup()
    work = args.work or tempfile.mkdtemp(prefix="fndcl-sweeps-")
    t0 = time.perf_counter()
    run_dir = prepare(work, args)
    print(f"prepared {run_dir} in {time.perf_counter() - t0:.0f} s", flush=True)
    results = {}
    for name in args.only:
        results[name] = sweep(run_dir, name, args)
        lines = table(results, teacher_val(run_dir))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({
            "command": "python bench/fndcl_sweeps.py " + " ".join(sys.argv[1:]),
            "args": vars(args), "work": work, "wall_s": round(time.perf_counter() - t0, 1),
            "teacher_val": teacher_val(run_dir), "sweeps": results, "table": lines},
            indent=2, default=str) + "\n")
    print("\n".join(table(results, teacher_val(run_dir))))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
