"""Contrastive item model and SimCLR image encoder: the runs behind BENCHMARKS.md.

On one run directory (a copy of the demo run, or ``--source`` ingested into ``--run``):
embed text (bundled MiniLM) if missing, mine ``text`` and ``transactions`` pairs if missing,
train the contrastive model on each pair source, optionally train SimCLR on the photos, then
``evaluate contrastive`` and print its table (the paper's distances beside ours, ranking,
neighbour agreement, co-purchase recall; SimCLR against random init). Writes
``bench/results/contrastive-<name>.json``.

    cp -r runs/demo runs/demo-contrastive
    python bench/contrastive.py --run runs/demo-contrastive --name demo --epochs 10 \
        --simclr-epochs 5 --simclr-max-images 2000
    python bench/contrastive.py --source ../shared/data/hm-sample --run /tmp/hm-real \
        --name real --epochs 10 --simclr-epochs 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--source", help="an H&M-layout folder to ingest into --run first")
    p.add_argument("--name", default="demo")
    p.add_argument("--pairs", default="text,transactions")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--tau", type=float, default=0.1)
    p.add_argument("--simclr-epochs", type=int, default=0, help="0: no SimCLR run")
    p.add_argument("--simclr-image-size", type=int, default=64)
    p.add_argument("--simclr-batch-size", type=int, default=128)
    p.add_argument("--simclr-max-images", type=int)
    p.add_argument("--force", action="store_true")
    args = p.parse_args()

    from stylehub_ray.config import IngestConfig
    from stylehub_ray.data.ingest import ingest
    from stylehub_ray.embed.pairs import PairsConfig, mine_pairs
    from stylehub_ray.embed.text import EmbedTextConfig, embed_text
    from stylehub_ray.eval.contrastive import EvaluateContrastiveConfig, evaluate_contrastive
    from stylehub_ray.ray_utils import ensure_ray
    from stylehub_ray.run import Run
    from stylehub_ray.train.contrastive import TrainContrastiveConfig, train_contrastive
    from stylehub_ray.train.simclr_images import TrainSimCLRImagesConfig, train_simclr_images

    ensure_ray()
    run = Run(args.run)
    timings: dict[str, float] = {}

    def timed(name, fn, *a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        timings[name] = round(time.perf_counter() - t0, 1)
        return out

    if args.source:
        timed("ingest", ingest, args.source, run, IngestConfig())
    if not run.is_complete("embeddings/text"):
        timed("embed_text", embed_text, run, EmbedTextConfig())
    kinds = [k for k in args.pairs.split(",") if k]
    for kind in kinds:
        timed(f"pairs_{kind}", mine_pairs, run, PairsConfig(), kind)
    for kind in kinds:
        cfg = TrainContrastiveConfig(pairs=kind, epochs=args.epochs, batch_size=args.batch_size,
                                     tau=args.tau)
        timed(f"train_{kind}", train_contrastive, run, cfg, force=args.force)
    if args.simclr_epochs:
        scfg = TrainSimCLRImagesConfig(epochs=args.simclr_epochs,
                                       image_size=args.simclr_image_size,
                                       batch_size=args.simclr_batch_size,
                                       max_images=args.simclr_max_images)
        timed("train_simclr_images", train_simclr_images, run, scfg, force=args.force)
    res = timed("evaluate", evaluate_contrastive, run, EvaluateContrastiveConfig(),
                force=args.force)
    out = {"name": args.name, "run": run.uri, "args": vars(args), "timings_s": timings,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "results": res}
    path = Path(__file__).parent / "results" / f"contrastive-{args.name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"timings (s): {timings}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
