"""Two-tower and baselines as a fraction of the oracle's MAP@12, over generated seeds.

For each seed: generate H&M-layout data (the demo scale by default) under a work folder in
/tmp, ingest, build the features (split=last-week), embed the images (random-init ResNet18 at
64 px, as `make demo`), train the two-tower, evaluate the baselines and the two-tower with the
shared protocol (stylehub_ray.eval.ranking). Prints, per seed and as the mean over seeds, each
model's MAP@12 and its fraction of the oracle's (realized: the generator's true top-12 scored
on the same purchases), and writes ``bench/results/oracle_seeds.json``.

    .venv/bin/python bench/oracle_seeds.py                      # demo scale, seeds 0 1 2
    .venv/bin/python bench/oracle_seeds.py --scale tiny --seeds 0 1 2
    .venv/bin/python bench/oracle_seeds.py --set train_two_tower.epochs=4
    .venv/bin/python bench/oracle_seeds.py --set features.label_days=91

The generator is never changed to move these numbers; its parameters are fixed by realism.
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

RESULTS = Path(__file__).resolve().parent / "results" / "oracle_seeds.json"
EMBED_SETS = ["model=random", "arch=resnet18", "image_size=64"]


def _sets(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        stage, _, rest = item.partition(".")
        if not rest or "=" not in rest:
            raise SystemExit(f"--set needs stage.key=value, got {item!r}")
        out.setdefault(stage, []).append(rest)
    return out


def one_seed(seed: int, args: argparse.Namespace, sets: dict[str, list[str]]) -> dict:
    from stylehub_ray.embed.images import embed_images
    from stylehub_ray.eval.ranking import evaluate_baselines, evaluate_two_tower
    from stylehub_ray.features.stage import build_features
    from stylehub_ray.train.two_tower import train_two_tower

    src = os.path.join(args.work, f"source-{args.scale}-{seed}")
    run = Run(os.path.join(args.work, f"run-{args.scale}-{seed}"))
    times = {}
    t0 = time.perf_counter()
    # Every step below skips when its outputs are up to date: a rerun only redoes what changed.
    generate_hm(src, GenerateHMConfig(scale=args.scale, seed=seed, images=True))
    ingest(src, run, IngestConfig())
    build_features(run, load_config(FeaturesConfig, None, sets.get("features", [])))
    embed_images(run, load_config(stage_config("embed_images"), None, EMBED_SETS))
    times["data_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_two_tower(run, load_config(stage_config("train_two_tower"), None,
                                     sets.get("train_two_tower", [])))
    times["train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    protocol = [f"bootstrap={args.bootstrap}"]
    evaluate_baselines(run, load_config(stage_config("baselines"), None,
                                        protocol + sets.get("baselines", [])))
    out = evaluate_two_tower(run, load_config(stage_config("evaluate_ranking"), None,
                                              protocol + sets.get("evaluate_ranking", [])))
    times["evaluate_s"] = time.perf_counter() - t0
    summary = out["summary"]
    oracle = summary["oracle"]
    rows = {}
    for label, res in summary["models"].items():
        for setting in ("drop_bought", "keep_bought"):
            if setting in res:
                rows[f"{label} {setting.split('_')[0]}"] = {
                    "map@12": res[setting]["metrics"]["map@12"],
                    "ci": res[setting]["ci"].get("map@12"),
                    "fraction": res[setting]["fraction_of_oracle"]["map@12"]}
    return {"seed": seed, "scale": args.scale, "customers": oracle["customers"],
            "oracle_map12": oracle["realized"]["metrics"]["map@12"],
            "oracle_expected_map12": oracle["expected"]["map@12"], "models": rows,
            "differences": summary.get("differences"), "times_s": times}


def print_table(results: list[dict]) -> None:
    labels = sorted({m for r in results for m in r["models"]},
                    key=lambda m: (not m.startswith("two-tower"), m))
    seeds = " ".join(f"{'seed ' + str(r['seed']):>15s}" for r in results)
    print(f"\nMAP@12 and fraction of the oracle's, scale {results[0]['scale']}")
    print(f"{'model':28s} {seeds} {'mean fraction':>14s}")
    print(f"{'oracle (realized)':28s} " + " ".join(
        f"{r['oracle_map12']:8.4f} {1.0:6.3f}" for r in results))
    print(f"{'oracle (expected)':28s} " + " ".join(
        f"{r['oracle_expected_map12']:8.4f} {r['oracle_expected_map12'] / r['oracle_map12']:6.3f}"
        for r in results))
    for label in labels:
        cells, fracs = [], []
        for r in results:
            m = r["models"].get(label)
            cells.append(f"{m['map@12']:8.4f} {m['fraction']:6.3f}" if m else " " * 15)
            if m:
                fracs.append(m["fraction"])
        print(f"{label:28s} {' '.join(cells)} {np.mean(fracs):14.3f}")
    for r in results:
        d = r.get("differences") or {}
        for other, (lo, hi) in (d.get("intervals") or {}).items():
            print(f"seed {r['seed']}: {d['reference']} - {other} MAP@12 (drop bought) "
                  f"[{lo:+.4f}, {hi:+.4f}]")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", default="demo", choices=["tiny", "demo"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--work", default="/tmp/stylehub-oracle-seeds")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--set", dest="sets", action="append", default=[],
                   metavar="STAGE.KEY=VALUE",
                   help="features.*, train_two_tower.*, baselines.* or evaluate_ranking.* "
                        "overrides")
    p.add_argument("--fresh", action="store_true", help="delete the work folder first")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    if args.verbose:  # the stages' own messages; the tables below print either way
        logs.setup()
    if args.fresh:
        shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work, exist_ok=True)
    from stylehub_ray.ray_utils import ensure_ray

    for attempt in range(5):
        try:
            ensure_ray()
            break
        except Exception as exc:  # a loaded machine: the raylet can miss its start window
            if attempt == 4:
                raise
            print(f"ray.init failed ({exc}); retrying", flush=True)
            time.sleep(15)
    sets = _sets(args.sets)
    results = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        results.append(one_seed(seed, args, sets))
        print(f"seed {seed}: done in {time.perf_counter() - t0:.0f} s "
              f"{json.dumps({k: round(v) for k, v in results[-1]['times_s'].items()})}",
              flush=True)
    print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": {k: v for k, v in vars(args).items()},
                                   "results": results}, indent=2, default=str) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
