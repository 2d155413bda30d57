"""The two-tower's defects (issue 15), one fix at a time, as fractions of the oracle over seeds.

For each generated seed: the data as ``bench/oracle_seeds.py`` builds it (demo scale, images
embedded as `make demo` does), then the two-tower trained under each rung of :data:`LADDER`
(each adds one fix to the rung before; rung 0 switches every fix off, which is how training
behaved before issue 15), each scored with the shared protocol (``eval/ranking.py``) beside
ALS and popularity. Prints, per rung and seed, MAP@12 with bought articles dropped and kept,
the fraction of the oracle's, and the paired 95% bootstrap interval of two-tower minus ALS;
writes ``bench/results/two_tower_fixes.json``.

    .venv/bin/python bench/two_tower_fixes.py                       # seeds 0 1 2, every rung
    .venv/bin/python bench/two_tower_fixes.py --seeds 0 --rungs 0 6

Rung 0 is the old behaviour switched back on by configuration: the in-batch log-q estimate
(``logq=batch``), the files' order, no id dropout (every article and customer keeps its own id
row), negatives from the whole catalogue, no hard negatives, no choices on val, dense Adam on
the id tables. Rungs 0 to 6 train the id tables with dense Adam (as when issue 15 measured
them); rung 7 is rung 5 with sparse id gradients and SparseAdam, today's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

from stylehub_ray import logs  # noqa: E402
from stylehub_ray.config import (  # noqa: E402
    FeaturesConfig,
    GenerateHMConfig,
    IngestConfig,
    load_config,
    stage_config,
)
from stylehub_ray.data.ingest import ingest  # noqa: E402
from stylehub_ray.run import Run  # noqa: E402
from stylehub_ray.synth.hm import generate_hm  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "two_tower_fixes.json"
EMBED_SETS = ["model=random", "arch=resnet18", "image_size=64"]
DEMO_TRAIN = ["epochs=2"]  # as `make demo`
OFF = ["logq=batch", "shuffle=false", "id_dropout=0", "hard_negatives=0", "choose=",
       "context=false", "sparse_ids=false"]
DEFAULTS = ["logq=sampling", "shuffle=true", "id_dropout=0.1", "hard_negatives=1",
            "choose=cold,drop_bought,retrieval_weight"]

# (label, negatives on sale, train_two_tower settings): cumulative.
LADDER = [
    ("0 before (every fix off)", False, OFF),
    ("1 + log-q by sampling probability", False,
     OFF + ["logq=sampling"]),
    ("2 + shuffled epochs", False,
     OFF + ["logq=sampling", "shuffle=true"]),
    ("3 + id dropout, cold path by val", False,
     OFF + ["logq=sampling", "shuffle=true", "id_dropout=0.1", "choose=cold,drop_bought"]),
    ("4 + negatives on sale", True,
     OFF + ["logq=sampling", "shuffle=true", "id_dropout=0.1", "choose=cold,drop_bought"]),
    ("5 + hard negatives, score by val", True,
     OFF + ["logq=sampling", "shuffle=true", "id_dropout=0.1", "hard_negatives=1",
            "choose=cold,drop_bought,retrieval_weight"]),
    ("6 + day context", True,
     OFF + ["logq=sampling", "shuffle=true", "id_dropout=0.1", "hard_negatives=1",
            "choose=cold,drop_bought,retrieval_weight", "context=true"]),
    # Not a fix of issue 15: rung 5 with the id tables trained by sparse gradients and
    # SparseAdam (issue 23: dense Adam's step cost grew with the customers), the default since.
    ("7 rung 5 + sparse id gradients (the defaults)", True,
     OFF + DEFAULTS + ["sparse_ids=true"]),
]


def prepare(seed: int, args) -> dict[bool, Run]:
    """The seed's two runs: negatives from the whole catalogue / on sale only."""
    from stylehub_ray.embed.images import embed_images
    from stylehub_ray.features.stage import build_features

    src = os.path.join(args.work, f"source-{seed}")
    base = Run(os.path.join(args.work, f"run-{seed}-catalogue"))
    generate_hm(src, GenerateHMConfig(scale=args.scale, seed=seed, images=True))
    ingest(src, base, IngestConfig())
    build_features(base, FeaturesConfig(negatives_on_sale=False))
    embed_images(base, load_config(stage_config("embed_images"), None, EMBED_SETS))
    on_sale = os.path.join(args.work, f"run-{seed}-on-sale")
    if not os.path.exists(on_sale):
        shutil.copytree(base.root, on_sale, ignore=shutil.ignore_patterns(
            "models", "index", "eval", "_ray_train", "recommendations"))
    run = Run(on_sale)
    build_features(run, FeaturesConfig(negatives_on_sale=True))
    return {False: base, True: run}


def one_rung(run: Run, rung: int, args) -> dict:
    from stylehub_ray.eval.ranking import (
        evaluate_baselines,
        evaluate_two_tower,
        paired_differences,
    )
    from stylehub_ray.models.artifacts import load_meta
    from stylehub_ray.train.two_tower import train_two_tower

    label, _on_sale, sets = LADDER[rung]
    variant = f"rung{rung}"
    t0 = time.perf_counter()
    train_two_tower(run, load_config(stage_config("train_two_tower"), None,
                                     [*DEMO_TRAIN, *sets, f"variant={variant}"]))
    train_s = time.perf_counter() - t0
    protocol = [f"bootstrap={args.bootstrap}"]
    evaluate_baselines(run, load_config(stage_config("baselines"), None,
                                        protocol + ["baselines=popularity,als"]))
    cfg = load_config(stage_config("evaluate_two_tower"), None,
                      protocol + [f"variant={variant}", "plots=false"])
    out = evaluate_two_tower(run, cfg)
    res = out["two_tower"]
    oracle = out["summary"]["oracle"]
    row = {"rung": rung, "label": label, "train_s": round(train_s, 1),
           "oracle_map12": oracle["realized"]["metrics"]["map@12"]}
    meta = load_meta(run, "two-tower", variant)
    row["choices"] = meta.get("choices")
    row["best"] = meta.get("best")
    for drop, setting in ((True, "drop"), (False, "keep")):
        scored = res[f"{setting}_bought"]
        diff = paired_differences(run, cfg, f"two-tower/{variant}", "map@12", drop)
        als = out["summary"]["models"]["als"][f"{setting}_bought"]["metrics"]["map@12"]
        row[setting] = {"map@12": scored["metrics"]["map@12"],
                        "fraction": scored["fraction_of_oracle"]["map@12"],
                        "als": als, "minus_als": diff.get("als"),
                        "minus_popularity": diff.get("popularity")}
    return row


def print_table(results: dict[int, list[dict]]) -> None:
    seeds = sorted(results)
    print("\nTwo-tower MAP@12 as a fraction of the oracle's, bought dropped / kept, and the "
          "paired 95% interval of two-tower minus ALS (drop; keep)")
    for rung in sorted({r["rung"] for rows in results.values() for r in rows}):
        label = LADDER[rung][0]
        print(f"\n{label}")
        fd, fk = [], []
        for seed in seeds:
            r = next((x for x in results[seed] if x["rung"] == rung), None)
            if r is None:
                continue
            d, k = r["drop"], r["keep"]
            fd.append(d["fraction"])
            fk.append(k["fraction"])
            iv = lambda x: (f"[{x[0]:+.4f}, {x[1]:+.4f}]" if x else "n/a")  # noqa: E731
            print(f"  seed {seed}: {d['map@12']:.4f} / {k['map@12']:.4f} = {d['fraction']:.3f} / "
                  f"{k['fraction']:.3f} of oracle; ALS {d['als']:.4f} / {k['als']:.4f}; "
                  f"minus ALS {iv(d['minus_als'])}; {iv(k['minus_als'])}; "
                  f"choices {r['choices']}")
        if fd:
            print(f"  mean fraction: {np.mean(fd):.3f} / {np.mean(fk):.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", default="demo", choices=["tiny", "demo"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rungs", type=int, nargs="+", default=list(range(len(LADDER))))
    p.add_argument("--work", default="/tmp/stylehub-two-tower-fixes")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--fresh", action="store_true", help="delete the work folder first")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    if args.verbose:
        logs.setup()
    if args.fresh:
        shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work, exist_ok=True)
    from stylehub_ray.ray_utils import ensure_ray

    ensure_ray()
    results: dict[int, list[dict]] = {}
    if RESULTS.exists() and not args.fresh:  # resume: keep the rungs already measured
        old = json.loads(RESULTS.read_text()).get("results", {})
        results = {int(k): v for k, v in old.items()}
    for seed in args.seeds:
        t0 = time.perf_counter()
        runs = prepare(seed, args)
        rows = [r for r in results.get(seed, []) if r["rung"] not in args.rungs]
        for rung in args.rungs:
            rows.append(one_rung(runs[LADDER[rung][1]], rung, args))
            results[seed] = sorted(rows, key=lambda r: r["rung"])
            print(f"seed {seed} rung {rung}: drop {rows[-1]['drop']['map@12']:.4f} keep "
                  f"{rows[-1]['keep']['map@12']:.4f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps({"args": vars(args), "results": results},
                                          indent=2, default=str) + "\n")
    print_table(results)
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
