"""Embedding throughput: the Ray Data actor-pool pipelines against a plain single-process loop.

Side by side in one run, over the same files, model, batch size and cores:
- images: ``features_dataset`` (decode tasks + encoder actor pool; what ``embed images`` runs
  before PCA) against a loop that decodes with Pillow and calls the same ``ImageEncoder`` in
  one process with torch on every core; also the whole ``embed images`` stage (PCA + writes).
  The encoder is the stage's default (ImageNet-pretrained EfficientNet-Lite0 + colour
  histogram) unless ``--arch`` / ``--model`` / ``--colour`` say otherwise;
- text: clean tasks + MiniLM actor pool (what ``embed text`` runs) against a loop of
  ``clean_text`` + the same ``BertEncoder``; also the whole ``embed text`` stage.
Both sides include loading the model. Goal: Ray at least 0.9 of the plain loop.

    python bench/embed.py [--source H&M_DIR] [--arch efficientnet_lite0] [--model pretrained]
                          [--colour 0.3] [--image-size 224] [--limit-images N]
                          [--limit-texts N] [--repeats 1] [--skip-text]

Without --source it generates the tiny H&M source (600 rendered 96x128 images). Writes JSON to
bench/results/embed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc


def plain_images(paths: list[str], cfg, threads: int) -> float:
    """Single process: Pillow decode + the same encoder, batch by batch. Returns seconds."""
    import torch

    from stylehub_ray.embed.image_model import ImageEncoder, decode_image
    from stylehub_ray.embed.images import read_bytes
    from stylehub_ray.embed.weights import resolve_image_weights

    torch.set_num_threads(threads)
    size, batch = cfg.image_size, cfg.batch_size
    t0 = time.perf_counter()
    enc = ImageEncoder.load(cfg.arch, resolve_image_weights(cfg.model, cfg.arch), cfg.seed,
                            colour=cfg.colour)
    n = 0
    for lo in range(0, len(paths), batch):
        imgs = np.stack([decode_image(read_bytes(p), size) for p in paths[lo:lo + batch]])
        n += len(enc.encode(imgs))
    assert n == len(paths)
    return time.perf_counter() - t0


def ray_images(present, cfg) -> float:
    from stylehub_ray.embed.images import features_dataset
    from stylehub_ray.embed.pool import plan_pool
    from stylehub_ray.embed.weights import resolve_image_weights

    plan = plan_pool(None, cfg.batch_size, cfg.gpu_batch_size)
    t0 = time.perf_counter()
    weights = resolve_image_weights(cfg.model, cfg.arch)
    n = sum(b.num_rows for b in features_dataset(present, cfg, weights, plan)
            .iter_batches(batch_format="pyarrow", batch_size=None))
    assert n == present.num_rows
    return time.perf_counter() - t0


def plain_text(columns: dict, batch: int, threads: int) -> float:
    import torch

    from stylehub_ray.embed.text_model import BertEncoder, clean_columns
    from stylehub_ray.embed.weights import resolve_text_model

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    texts = clean_columns(columns)
    enc = BertEncoder(str(resolve_text_model("default")))
    n = sum(len(enc.encode(texts[lo:lo + batch])) for lo in range(0, len(texts), batch))
    assert n == len(texts)
    return time.perf_counter() - t0


def ray_text(articles, batch: int) -> float:
    import ray.data

    from stylehub_ray.embed.pool import plan_pool
    from stylehub_ray.embed.text import EmbedTextConfig, clean_task, encode_dataset
    from stylehub_ray.embed.weights import resolve_text_model

    cfg = EmbedTextConfig(batch_size=batch)
    plan = plan_pool(None, batch, cfg.gpu_batch_size)
    t0 = time.perf_counter()
    step = cfg.clean_batch_size
    blocks = [articles.slice(i, step) for i in range(0, articles.num_rows, step)]
    cleaned = ray.data.from_arrow(blocks).map_batches(clean_task, batch_format="pyarrow",
                                                      batch_size=step)
    ds = encode_dataset(cleaned, None, resolve_text_model("default"), cfg, plan)
    n = sum(b.num_rows for b in ds.iter_batches(batch_format="pyarrow", batch_size=None))
    assert n == articles.num_rows
    return time.perf_counter() - t0


def main() -> None:
    from stylehub_ray.embed.images import EmbedImagesConfig, embed_images

    ap = argparse.ArgumentParser()
    ap.add_argument("--source", help="an H&M layout folder (default: generate the tiny one)")
    default = EmbedImagesConfig()
    ap.add_argument("--arch", default=default.arch)
    ap.add_argument("--model", default=default.model)
    ap.add_argument("--colour", type=float, default=default.colour)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--text-batch", type=int, default=256)
    ap.add_argument("--limit-images", type=int, default=None)
    ap.add_argument("--limit-texts", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--skip-text", action="store_true")
    ap.add_argument("--skip-images", action="store_true")
    ap.add_argument("--stage", action="store_true",
                    help="also time the whole stage (PCA and writes included)")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()

    from stylehub_ray.config import GenerateHMConfig, IngestConfig
    from stylehub_ray.data.ingest import ingest, read_table
    from stylehub_ray.embed.text import EmbedTextConfig, embed_text
    from stylehub_ray.embed.text_model import TEXT_COLUMNS
    from stylehub_ray.ray_utils import ensure_ray
    from stylehub_ray.run import Run
    from stylehub_ray.synth.hm import generate_hm

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    # Ray starts its workers at nice 15 (so the driver and raylet stay responsive). The plain
    # loop runs at nice 0; on a machine shared with other jobs that alone starves the Ray side.
    # Same cores must mean the same priority: the local instance started here runs workers at 0.
    os.environ.setdefault("RAY_worker_niceness", "0")
    cores = os.cpu_count() or 1
    ensure_ray(num_cpus=cores)  # same cores on both sides
    import ray

    tmp = Path(tempfile.mkdtemp(prefix="stylehub-bench-embed-"))
    source = args.source
    if source is None:
        source = str(tmp / "src")
        generate_hm(source, GenerateHMConfig(scale="tiny"))
    run = Run(str(tmp / "run"))
    ingest(source, run, IngestConfig())
    result: dict = {"machine": {"cores": cores, "ray_cpus": ray.cluster_resources().get("CPU"),
                                "gpus": ray.cluster_resources().get("GPU", 0),
                                "platform": platform.machine()},
                    "source": source, "repeats": args.repeats}

    if not args.skip_images:
        images = read_table(run, "raw/images")
        present = images.filter(pc.equal(images.column("status"), "present"))
        if args.limit_images:
            present = present.slice(0, args.limit_images)
        paths = present.column("path").to_pylist()
        cfg = EmbedImagesConfig(arch=args.arch, model=args.model, colour=args.colour,
                                image_size=args.image_size, batch_size=args.batch)
        plain = min(plain_images(paths, cfg, cores) for _ in range(args.repeats))
        ours = min(ray_images(present, cfg) for _ in range(args.repeats))
        stage = None
        if args.stage and not args.limit_images:
            t0 = time.perf_counter()
            embed_images(run, cfg, force=True)
            stage = time.perf_counter() - t0
        n = len(paths)
        result["images"] = {"n": n, "arch": args.arch, "model": args.model,
                            "colour": args.colour, "image_size": args.image_size,
                            "batch": args.batch, "plain_s": round(plain, 2),
                            "ray_s": round(ours, 2), "plain_per_s": round(n / plain, 1),
                            "ray_per_s": round(n / ours, 1), "ratio": round(plain / ours, 3),
                            "stage_s": round(stage, 2) if stage else None}
        print("images:", json.dumps(result["images"]), flush=True)
    if not args.skip_text:
        articles = read_table(run, "raw/articles", ["article_id", "article_idx",
                                                    *TEXT_COLUMNS])
        if args.limit_texts:
            articles = articles.slice(0, args.limit_texts)
        cols = {c: articles.column(c).to_pylist() for c in TEXT_COLUMNS}
        plain = min(plain_text(cols, args.text_batch, cores) for _ in range(args.repeats))
        ours = min(ray_text(articles, args.text_batch) for _ in range(args.repeats))
        stage = None
        if args.stage and not args.limit_texts:
            t0 = time.perf_counter()
            embed_text(run, EmbedTextConfig(batch_size=args.text_batch), force=True)
            stage = time.perf_counter() - t0
        n = articles.num_rows
        result["text"] = {"n": n, "encoder": "all-MiniLM-L6-v2", "batch": args.text_batch,
                          "plain_s": round(plain, 2), "ray_s": round(ours, 2),
                          "plain_per_s": round(n / plain, 1), "ray_per_s": round(n / ours, 1),
                          "ratio": round(plain / ours, 3),
                          "stage_s": round(stage, 2) if stage else None}
        print("text:", json.dumps(result["text"]), flush=True)

    m = result["machine"]
    print(f"machine: {m['platform']}, {m['cores']} cores, Ray CPUs {m['ray_cpus']}, "
          f"GPUs {m['gpus']}; best of {args.repeats}; source {source}")
    print(f"{'what':8} {'items':>7} {'plain s':>8} {'ray s':>7} {'plain /s':>9} {'ray /s':>8} "
          f"{'ray/plain':>9} {'stage s':>8}")
    for what in ("images", "text"):
        r = result.get(what)
        if r:
            print(f"{what:8} {r['n']:>7,} {r['plain_s']:>8} {r['ray_s']:>7} "
                  f"{r['plain_per_s']:>9} {r['ray_per_s']:>8} {r['ratio']:>9} "
                  f"{r['stage_s'] if r['stage_s'] is not None else '-':>8}")
    if "images" in result:
        r = result["images"]
        print(f"images: {r['arch']} ({r['model']}, colour {r['colour']}) at "
              f"{r['image_size']}px, batch {r['batch']}")
    with open("/proc/loadavg") as f:
        result["machine"]["loadavg_at_end"] = f.read().split()[:3]
    print(f"load average at the end: {' '.join(result['machine']['loadavg_at_end'])}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "embed.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
