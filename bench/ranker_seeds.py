"""The LightGBM ranker beside the two-tower, ALS, popularity and the oracle over generated seeds.

For each seed: ``stylehub generate hm --scale demo --seed S``, then the default pipeline with
`make demo`'s settings (:data:`DEMO_SETS`), each in its own process (as `make demo` runs
them). Then, from the run's ``eval/summary/table.json``, MAP@12 with bought articles dropped
and kept of the ranker, the two-tower, ALS, popularity and the realized oracle, each model's
fraction of the oracle's, and the paired 95% bootstrap interval of ranker minus ALS (and minus
the two-tower). Metrics only: the timings of a pipeline run beside other work mean nothing.
Writes ``bench/results/ranker_seeds.json``; a seed whose run is complete is read, not redone.

    .venv/bin/python bench/ranker_seeds.py                      # seeds 0 1 2
    .venv/bin/python bench/ranker_seeds.py --seeds 1 --work /tmp/ranker-seeds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "ranker_seeds.json"
# The Makefile's DEMO_SETS.
DEMO_SETS = ["embed_images.image_size=128", "train_contrastive.epochs=3",
             "evaluate_contrastive.simclr=false", "train_two_tower.epochs=2"]
MODELS = (("ranker", "ranker/default"), ("two-tower", "two-tower/default"), ("ALS", "als"),
          ("popularity", "popularity"))


def stylehub(*args: str) -> None:
    cmd = [sys.executable, "-m", "stylehub_ray", *args]
    print("$ stylehub " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def one_seed(seed: int, args) -> dict:
    src = os.path.join(args.work, f"source-{seed}")
    run = os.path.join(args.work, f"run-{seed}")
    t0 = time.perf_counter()
    stylehub("generate", "hm", src, "--scale", args.scale, "--seed", str(seed))
    sets = [x for s in DEMO_SETS + args.set for x in ("--set", s)]
    stylehub("pipeline", src, "--run", run, *sets)
    summary = json.loads(Path(run, "eval", "summary", "table.json").read_text())
    return row_of(seed, summary, time.perf_counter() - t0, os.getloadavg()[0])


def row_of(seed: int, summary: dict, wall_s: float, load: float) -> dict:
    """The seed's numbers from a run's summary table."""
    models = summary["models"]
    oracle = summary["oracle"]["realized"]["metrics"]["map@12"]
    row = {"seed": seed, "oracle": oracle, "wall_s": round(wall_s), "load_end": load,
           "customers": models["ranker/default"]["customers"]}
    for label, key in MODELS:
        res = models[key]
        row[label] = {s.split("_")[0]: {
            "map@12": res[s]["metrics"]["map@12"],
            "fraction": res[s]["metrics"]["map@12"] / oracle} for s in ("drop_bought",
                                                                         "keep_bought")}
    d = summary["differences_ranker"]
    row["minus"] = {other: {"drop": d["intervals"].get(key), "keep": d["intervals_keep"].get(key)}
                    for other, key in (("ALS", "als"), ("two-tower", "two-tower/default"))}
    ranker = models["ranker/default"]
    row["ranker_info"] = ranker.get("ranker", {})
    return row


def iv(x) -> str:
    return f"[{x[0]:+.4f}, {x[1]:+.4f}]" if x else "n/a"


def print_table(rows: list[dict]) -> None:
    print("\nMAP@12 bought dropped / kept (fraction of the oracle's)")
    print(f"{'seed':>4s} {'oracle':>7s} " + " ".join(f"{label:>28s}" for label, _ in MODELS))
    for r in rows:
        cells = [f"{r[label]['drop']['map@12']:.4f} / {r[label]['keep']['map@12']:.4f} "
                 f"({r[label]['drop']['fraction']:.2f}/{r[label]['keep']['fraction']:.2f})"
                 for label, _ in MODELS]
        print(f"{r['seed']:>4d} {r['oracle']:7.4f} " + " ".join(f"{c:>28s}" for c in cells))
    print("\nRanker minus ALS / minus two-tower, paired 95% bootstrap interval, dropped; kept")
    for r in rows:
        m = r["minus"]
        print(f"  seed {r['seed']}: ALS {iv(m['ALS']['drop'])}; {iv(m['ALS']['keep'])}   "
              f"two-tower {iv(m['two-tower']['drop'])}; {iv(m['two-tower']['keep'])}   "
              f"({r['customers']:,} buyers; choices {r['ranker_info'].get('choices')})")
    above = [r["minus"]["ALS"]["drop"][0] > 0 and r["minus"]["ALS"]["keep"][0] > 0
             for r in rows]
    half = [r["ranker"]["keep"]["fraction"] >= 0.5 for r in rows]
    print(f"\nranker above ALS (interval above 0, dropped and kept): {sum(above)} of "
          f"{len(rows)} seeds; ranker >= 0.5 of the oracle kept: {sum(half)} of {len(rows)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", default="demo", choices=["tiny", "demo"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--work", default="/tmp/stylehub-ranker-seeds")
    p.add_argument("--set", action="append", default=[], help="more pipeline settings")
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    results = {}
    if RESULTS.exists():
        results = {int(k): v for k, v in json.loads(RESULTS.read_text())["results"].items()}
    for seed in args.seeds:
        results[seed] = one_seed(seed, args)
        print(f"seed {seed}: ranker {results[seed]['ranker']['drop']['map@12']:.4f} / "
              f"{results[seed]['ranker']['keep']['map@12']:.4f} "
              f"({results[seed]['wall_s']} s, load {results[seed]['load_end']:.2f})",
              flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"args": vars(args), "results": results}, indent=2,
                                      default=str) + "\n")
    print_table([results[s] for s in sorted(results)])
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
