"""FND-CL benchmark on generated Polyvore-U outfits: BPR, N-pair, FND, FND-CL over seeds.

For each seed and training set (630 with its cold starters 53; 519, variable length, with
32): generate outfits, ingest, featurize items (the teacher's frozen pretrained
EfficientNet-Lite2), train the teacher (N-pair, Lite2 features, 1024-wide head) and the
students (a CNN as small as XS, end to end from the images) with BPR, N-pair, FND and FND-CL
(FND runs check first that the teacher beats the N-pair student), then the hard-negative
setting (4.4: half the training negatives are other users' positives; teacher and students
retrained), and evaluate: per-user AUC / NDCG at 1:10 (Table 2), hard negatives (Table 4),
cold starters 1 / 5 shots avg vs w-avg (Table 3), and whether the teacher finds the oracle's
false negatives; the oracle (the generator's own scores) is the ceiling row. Prints the
tables with the paper's numbers beside ours and writes
``bench/results/fndcl.json``.

    .venv/bin/python bench/fndcl.py --seeds 0 1 2 --scale demo --epochs 6 --sets 630 519
    .venv/bin/python bench/fndcl.py --calibrate   # the rule that fixes the generator's noise
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

from stylehub_ray import logs  # noqa: E402
from stylehub_ray.config import IngestConfig  # noqa: E402
from stylehub_ray.data.ingest import ingest  # noqa: E402
from stylehub_ray.eval.fndcl import EvaluateFNDCLConfig, evaluate_fndcl  # noqa: E402
from stylehub_ray.run import Run  # noqa: E402
from stylehub_ray.synth.outfits import generate_outfits  # noqa: E402
from stylehub_ray.train.fndcl import (  # noqa: E402
    COLD_SET,
    FNDCLItemsConfig,
    TeacherNotStronger,
    TrainFNDCLConfig,
    prepare_fndcl_items,
    train_fndcl,
)

RESULTS = Path(__file__).resolve().parent / "results" / "fndcl.json"
# (stage, loss): the teacher first, the students read it.
PLAIN = [("teacher", "npair"), ("student", "bpr"), ("student", "npair"), ("student", "fnd"),
         ("student", "fndcl")]
HARD = [("teacher", "npair"), ("student", "npair"), ("student", "fnd"), ("student", "fndcl")]
# The paper's numbers (Tables 2-4), per training set; None where only a figure shows them.
PAPER = {
    "table2": {"630": {"student-fnd": (89.91, 82.18), "student-fndcl": (90.28, 82.47)},
               "519": {"student-fnd": (91.86, 84.74), "student-fndcl": (92.30, 85.51)}},
    "table3": {"53": {"student-fnd": {"1-avg": 78.68, "5-avg": 79.42, "1-w-avg": 79.72,
                                      "5-w-avg": 80.98},
                      "student-fndcl": {"1-avg": 79.59, "5-avg": 80.09, "1-w-avg": 80.33,
                                        "5-w-avg": 81.56}},
               "32": {"student-fnd": {"1-avg": 83.84, "5-avg": 84.10, "1-w-avg": 84.53,
                                      "5-w-avg": 85.31},
                      "student-fndcl": {"1-avg": 85.26, "5-avg": 85.43, "1-w-avg": 85.51,
                                        "5-w-avg": 86.41}}},
    "table4": {"630": {"student-fnd-hard": (83.55, 68.74), "student-fndcl-hard": (84.24, 69.99)},
               "519": {"student-fnd-hard": (83.90, 69.11), "student-fndcl-hard": (84.76, 70.50)}},
}
# Two-sided 95% Student t quantiles by degrees of freedom (seeds - 1).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def one_seed(seed: int, set_name: str, args: argparse.Namespace, work: str) -> dict:
    src = os.path.join(work, f"src-{seed}")
    run_dir = os.path.join(work, f"run-{seed}-{set_name}")
    t0 = time.perf_counter()
    generate_outfits(src, scale=args.scale, seed=seed)  # skipped when already there
    run = Run(run_dir)
    ingest(src, run, IngestConfig())
    prepare_fndcl_items(run, FNDCLItemsConfig(
        sets=(set_name, COLD_SET[set_name]), image_size=args.image_size,
        ae_epochs=args.ae_epochs, seed=seed))
    common = dict(epochs=args.epochs, seed=seed, set_name=set_name)
    stopped = {}  # variant -> the teacher check's message (FND would distil a weaker teacher)
    runs = [TrainFNDCLConfig(stage=stage, loss=loss, **common) for stage, loss in PLAIN] + [
        TrainFNDCLConfig(stage=stage, loss=loss, tag="hard", hard_negative_share=0.5, **common)
        for stage, loss in HARD]
    for cfg in runs:
        try:
            train_fndcl(run, cfg)
        except TeacherNotStronger as exc:
            stopped[cfg.variant()] = str(exc)
            print(f"stopped: {exc}", flush=True)
    res = evaluate_fndcl(run, EvaluateFNDCLConfig(
        image_size=args.image_size,
        efficiency=(args.efficiency and seed == args.seeds[0] and set_name == args.sets[0]),
        efficiency_repeats=3))
    res["_seconds"] = round(time.perf_counter() - t0, 1)
    res["_teacher_check_stopped"] = stopped
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return res


def _ms(values: list[float]) -> str:
    v = np.array([x for x in values if x == x]) * 100
    return f"{v.mean():6.2f} ± {v.std():4.2f}" if len(v) else "   -   "


def diff_interval(a: list[float], b: list[float]) -> str:
    """Mean of the paired differences a - b over seeds with its 95% t interval (points)."""
    d = np.array([p - q for p, q in zip(a, b) if p == p and q == q]) * 100
    if len(d) < 2:
        return f"{d.mean():+.2f}" if len(d) else "-"
    half = T95.get(len(d) - 1, 1.96) * d.std(ddof=1) / np.sqrt(len(d))
    return f"{d.mean():+.2f} [{d.mean() - half:+.2f}, {d.mean() + half:+.2f}]"


def summarize(per_seed: dict[int, dict], set_name: str = "630") -> list[str]:
    seeds = sorted(per_seed)
    cold_set = COLD_SET[set_name]
    variants = sorted({v for s in seeds for v in per_seed[s]
                       if not v.startswith("_") and v not in ("efficiency", "oracle")},
                      key=lambda v: (v.endswith("-hard"), not v.startswith("teacher"), v))

    def col(variant, *keys):
        out = []
        for s in seeds:
            x = per_seed[s].get(variant, {})
            for k in keys:
                x = x.get(k, {}) if isinstance(x, dict) else {}
            out.append(x if isinstance(x, float) else float("nan"))
        return out

    lines = [f"FND-CL bench, set {set_name} (cold starters {cold_set}): seeds {seeds}, "
             f"mean ± std over seeds (percent)", "",
             "Table 2 / Fig. 4 (test, 1:10 random negatives) and Table 4 (hard negatives)",
             f"{'variant':22s} {'AUC':>14s} {'NDCG':>14s} {'AUC-H':>14s} {'NDCG-H':>14s} "
             f"{'paper AUC/NDCG':>16s}"]
    for v in ["oracle"] + variants:
        paper = PAPER["table2"][set_name].get(v) or PAPER["table4"][set_name].get(v)
        p = f"{paper[0]:.2f}/{paper[1]:.2f}" if paper else "-"
        lines.append(f"{v:22s} {_ms(col(v, 'test', 'auc')):>14s} "
                     f"{_ms(col(v, 'test', 'ndcg')):>14s} {_ms(col(v, 'test_hard', 'auc')):>14s} "
                     f"{_ms(col(v, 'test_hard', 'ndcg')):>14s} {p:>16s}")
    lines += ["", f"Table 3 (cold starters of set {cold_set}, AUC; paper Polyvore-{cold_set} in "
                  f"brackets)",
              f"{'variant':22s} " + " ".join(f"{k:>22s}" for k in
                                             ("1-avg", "1-w-avg", "5-avg", "5-w-avg"))]
    for v in variants:
        paper = PAPER["table3"][cold_set].get(v, {})
        cells = []
        for k in ("1-avg", "1-w-avg", "5-avg", "5-w-avg"):
            pk = f" [{paper[k]:.2f}]" if k in paper else ""
            cells.append(f"{_ms(col(v, 'cold_start', k, 'auc'))}{pk}")
        lines.append(f"{v:22s} " + " ".join(f"{c:>22s}" for c in cells))
    lines += ["", "the oracle's false negatives among training negatives scored above the "
                  "user's positive mean (teacher = the one FND distils)",
              f"{'variant':22s} {'share above':>14s} {'share all':>14s} {'recall':>14s}"]
    for v in variants:
        lines.append(f"{v:22s} {_ms(col(v, 'false_negatives', 'share_fn_above')):>14s} "
                     f"{_ms(col(v, 'false_negatives', 'share_fn_all')):>14s} "
                     f"{_ms(col(v, 'false_negatives', 'fn_recall')):>14s}")
    orders = {
        "teacher > FND-CL (AUC)": ("teacher-npair", "student-fndcl", "test"),
        "teacher > N-pair student (AUC)": ("teacher-npair", "student-npair", "test"),
        "FND-CL > FND (AUC)": ("student-fndcl", "student-fnd", "test"),
        "FND > N-pair (AUC)": ("student-fnd", "student-npair", "test"),
        "N-pair > BPR (AUC)": ("student-npair", "student-bpr", "test"),
        "FND-CL > FND (hard AUC, hard-trained)": ("student-fndcl-hard", "student-fnd-hard",
                                                  "test_hard"),
        "FND > N-pair (hard AUC, hard-trained)": ("student-fnd-hard", "student-npair-hard",
                                                  "test_hard"),
        "FND-CL > FND (hard NDCG, hard-trained)": ("student-fndcl-hard", "student-fnd-hard",
                                                   "test_hard", "ndcg"),
    }
    for s in seeds:
        for v, msg in per_seed[s].get("_teacher_check_stopped", {}).items():
            lines.append(f"seed {s}: {v} not trained: {msg}")
    lines += ["", "orderings: seeds where it holds, mean difference (points) [95% t interval]"]
    for name, (a, b, split, *metric) in orders.items():
        m = metric[0] if metric else "auc"
        xa, xb = col(a, split, m), col(b, split, m)
        held = sum(1 for p, q in zip(xa, xb) if p > q)
        lines.append(f"  {name:40s} {held}/{len(seeds)}  {diff_interval(xa, xb)}")
    for strat in ("1", "5"):
        for v in ("student-fnd", "student-fndcl"):
            w, a = col(v, "cold_start", f"{strat}-w-avg", "auc"), col(v, "cold_start",
                                                                      f"{strat}-avg", "auc")
            held = sum(1 for p, q in zip(w, a) if p > q)
            lines.append(f"  w-avg > avg, {strat}-shot, {v:22s} {held}/{len(seeds)}  "
                         f"{diff_interval(w, a)}")
    return lines


# The `make demo` setting: a short FND-CL run on the demo outfits (the calls the pipeline makes).
DEMO_ITEMS = FNDCLItemsConfig(image_size=64, ae_epochs=2)
DEMO_TEACHER = TrainFNDCLConfig(stage="teacher", loss="npair", epochs=4)
DEMO_STUDENT = TrainFNDCLConfig(stage="student", loss="fndcl", epochs=4)
DEMO_EVAL = EvaluateFNDCLConfig(image_size=64, efficiency_sizes=("lite2", "tiny"),
                                efficiency_repeats=1)


def demo(work: str) -> dict:
    """Generate the demo outfits, ingest, featurize, teacher + FND-CL student, evaluate."""
    src, run_dir = os.path.join(work, "demo-src"), os.path.join(work, "demo-run")
    t0 = time.perf_counter()
    generate_outfits(src, scale="demo", seed=0)
    run = Run(run_dir)
    ingest(src, run, IngestConfig())
    prepare_fndcl_items(run, DEMO_ITEMS)
    train_fndcl(run, DEMO_TEACHER)
    train_fndcl(run, DEMO_STUDENT)
    res = evaluate_fndcl(run, DEMO_EVAL)
    print(f"demo: {time.perf_counter() - t0:.0f}s")
    return res


def calibrate(scale: str, seed: int) -> int:
    """The generator's rule (no compared model): the taste noise whose oracle AUC on set
    630's random-negative test rows is closest to 95."""
    from stylehub_ray.synth.outfits import TASTE_NOISE, calibrate_taste_noise, oracle_metrics

    best, rows = calibrate_taste_noise(scale, seed)
    print(f"oracle on set 630 test, random negatives 1:10, scale {scale}, seed {seed}")
    print(f"{'taste_noise':>11s} {'AUC':>7s} {'NDCG':>7s} {'false neg.':>10s}")
    for eps, m in rows:
        print(f"{eps:11.2f} {100 * m['auc']:7.2f} {100 * m['ndcg']:7.2f} "
              f"{100 * m['false_negative_share']:9.1f}%")
    print(f"rule picks taste_noise = {best:.2f} (the generator's default: {TASTE_NOISE})")
    print(f"\nthe oracle at the default, every set, test 1:10, scale {scale}, seed {seed}")
    print(f"{'set':>4s} {'negatives':>10s} {'AUC':>7s} {'NDCG':>7s} {'false neg.':>10s}")
    for set_name in ("630", "519", "53", "32"):
        for kind in ("nega", "nega_hard"):
            m = oracle_metrics(scale, seed, set_name=set_name, kind=kind)
            print(f"{set_name:>4s} {kind:>10s} {100 * m['auc']:7.2f} {100 * m['ndcg']:7.2f} "
                  f"{100 * m['false_negative_share']:9.1f}%")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--scale", default="demo")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--sets", nargs="+", default=["630"], choices=sorted(COLD_SET),
                   help="training sets (each with its cold starters: 630/53, 519/32)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--ae-epochs", type=int, default=3)
    p.add_argument("--no-efficiency", dest="efficiency", action="store_false",
                   help="metrics only (timings need the heavy lock and a quiet machine)")
    p.add_argument("--work", default="")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--demo", action="store_true", help="only the short `make demo` setting")
    p.add_argument("--calibrate", action="store_true",
                   help="print the oracle AUC per taste_noise and the value the rule picks")
    args = p.parse_args(argv)
    if args.calibrate:
        return calibrate(args.scale, args.seeds[0])
    logs.setup()  # the stages' own tables (evaluate_fndcl's among them)
    work = args.work or tempfile.mkdtemp(prefix="fndcl-bench-")
    if args.demo:
        demo(work)
        return 0
    t0 = time.perf_counter()
    per_set: dict[str, dict[int, dict]] = {}
    lines = []
    for set_name in args.sets:
        per_seed = per_set.setdefault(set_name, {})
        for seed in args.seeds:
            per_seed[seed] = one_seed(seed, set_name, args, work)
            print(f"set {set_name} seed {seed}: {per_seed[seed]['_seconds']}s", flush=True)
            write_results(args, t0, per_set, lines + summarize(per_seed, set_name))
        lines += summarize(per_seed, set_name) + [""]
        print("\n".join(lines), flush=True)
    if not args.keep:
        for seed in args.seeds:
            shutil.rmtree(os.path.join(work, f"src-{seed}"), ignore_errors=True)
    write_results(args, t0, per_set, lines)
    print(f"wrote {RESULTS}")
    return 0


def write_results(args: argparse.Namespace, t0: float, per_set: dict, lines: list[str]) -> None:
    """The results so far (rewritten after every seed, so a long run leaves what it did)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "command": "python bench/fndcl.py " + " ".join(sys.argv[1:]),
        "args": vars(args), "wall_s": round(time.perf_counter() - t0, 1),
        "per_set": per_set, "paper": PAPER, "table": lines}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
