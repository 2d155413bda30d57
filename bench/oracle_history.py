"""The oracle's top-k over a run's test buyers (issue 23): the history of purchases read once a
call (now) against once a batch (before), same customers, same answers, in one process.

The full run's evaluate_oracle spent 1,993 s on its 104,077 test buyers: each batch of 256
(top-k) or 128 (expected metrics) read the customers' earlier purchases with a filtered scan
of every transaction (31.8M rows at full size). ``HMOracle.topk`` now reads them once. This
takes the first ``--customers`` test buyers of ``--run``, times the old path (``probabilities``
batch by batch with no history given: one scan each) and ``topk``, alternating, ``--repeats``
times, checks both give the same top-k, and prints seconds and the ratio.

    .venv/bin/python bench/oracle_history.py --run /work/fs/full/run --customers 2048
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "oracle_history.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--customers", type=int, default=2048)
    p.add_argument("--batch", type=int, default=256, help="topk's default batch")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    from stylehub_ray.eval.ranking import load_test_set
    from stylehub_ray.run import Run
    from stylehub_ray.synth.oracle import HMOracle, _top

    run = Run(args.run)
    oracle = HMOracle.load(run)
    if oracle is None:
        raise SystemExit(f"{args.run}: no raw/oracle (only generated runs have one)")
    test = load_test_set(run)
    customers = test.customers[:args.customers]
    k = 12

    def per_batch() -> np.ndarray:  # the code before: one history scan a batch
        out = np.empty((len(customers), k), np.int64)
        for lo in range(0, len(customers), args.batch):
            out[lo:lo + args.batch] = _top(oracle.probabilities(
                customers[lo:lo + args.batch], test.start, test.end), k)
        return out

    def once() -> np.ndarray:
        return oracle.topk(customers, test.start, test.end, k, batch=args.batch)

    load0 = os.getloadavg()[0]
    seconds: dict[str, list[float]] = {"per_batch": [], "once": []}
    answers = {}
    for _ in range(args.repeats):
        for name, fn in (("per_batch", per_batch), ("once", once)):
            t0 = time.perf_counter()
            answers[name] = fn()
            seconds[name].append(time.perf_counter() - t0)
    np.testing.assert_array_equal(answers["per_batch"], answers["once"])
    best = {m: min(s) for m, s in seconds.items()}
    n_batches = -(-len(customers) // args.batch)
    out = {"run": args.run, "customers": int(len(customers)), "test_buyers": int(
        len(test.customers)), "batch": args.batch, "batches": n_batches, "seconds": seconds,
        "ratio_per_batch_to_once": best["per_batch"] / best["once"], "same_top_k": True,
        "load": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    print(f"oracle top-{k} of {len(customers):,} of {len(test.customers):,} test buyers, "
          f"{n_batches} batches of {args.batch}, load {out['load'][0]} -> {out['load'][1]}")
    for name, label in (("per_batch", "history read per batch (before)"),
                        ("once", "history read once (now)")):
        print(f"  {label:32s}: {best[name]:8.1f} s (runs "
              f"{', '.join(f'{s:.1f}' for s in seconds[name])})")
    print(f"  before / now: {out['ratio_per_batch_to_once']:.2f}x; same top-{k}: yes")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
