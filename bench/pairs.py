"""Pair mining: the `pairs text` stage against a bare FAISS search of the same index; and the
quality of real-data neighbours.

Speed (default): 105,542 x 384 unit vectors (the H&M catalogue at MiniLM's width, drawn as a
mixture of 2,000 clusters so neighbours exist), written as ``embeddings/text`` of a scratch
run. Side by side in one run:
- bare: ``faiss.IndexFlatIP`` add + ``search(x, k + 1)`` for every item, nothing else;
- ours: ``mine_pairs(kind="text")`` end to end (read the table, normalise, build the same
  index, search, drop self, draw negatives, split, write pairs + index, agreement stats).
Goal: ours within 1.2x of bare.

Real data (``--real H&M_DIR``, e.g. the hm-sample slice): ingest, ``embed text`` (MiniLM),
``pairs text``, ``embed images`` (``--arch`` / ``--model`` / ``--colour``, by default the
stage's: pretrained EfficientNet-Lite0 with the colour part) and ``pairs image``; prints how
often an item's 5 neighbours share its product_type_name and colour_group_name, against random
negatives. `bench/image_encoders.py` compares the image encoders at 10 neighbours.

    python bench/pairs.py [--n 105542] [--dim 384] [--k 5] [--repeats 1]
    python bench/pairs.py --real ../shared/data/hm-sample [--arch efficientnet_lite0
                          --model pretrained --colour 0.3 --image-size 224]
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
import pyarrow as pa


def synthetic(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    from stylehub_ray.embed.text_model import l2_normalize

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, dim)).astype(
        np.float32)
    return l2_normalize(x)


def write_fake_text_embeddings(run, x: np.ndarray) -> None:
    """``embeddings/text`` through a real step, so the stage sees a complete artifact."""
    from stylehub_ray.embed import vectors as V

    n = len(x)
    step = run.step("embed", "text", config={"bench": True}, inputs={},
                    outputs=["embeddings/text"], force=True)
    with step:
        V.write_table(run, step.tmp("embeddings/text"), pa.table({
            "article_id": pa.array(np.arange(n) + 100_000_000, pa.int64()),
            "article_idx": pa.array(np.arange(n), pa.int32()),
            "text": pa.array([""] * n, pa.string()),
            "embedding": V.to_fixed_list(x)}))


def bare(x: np.ndarray, k: int) -> float:
    import faiss

    t0 = time.perf_counter()
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    index.search(x, k + 1)
    return time.perf_counter() - t0


def speed(args) -> dict:
    import faiss

    from stylehub_ray.embed.pairs import PairsConfig, mine_pairs
    from stylehub_ray.run import Run

    x = synthetic(args.n, args.dim, args.clusters)
    run = Run(tempfile.mkdtemp(prefix="stylehub-bench-pairs-"))
    write_fake_text_embeddings(run, x)
    bare_s, ours_s, entry = [], [], None
    for _ in range(args.repeats):
        bare_s.append(bare(x, args.k))
        t0 = time.perf_counter()
        entry = mine_pairs(run, PairsConfig(k=args.k), "text", force=True)
        ours_s.append(time.perf_counter() - t0)
    b, o = min(bare_s), min(ours_s)
    out = {"n": args.n, "dim": args.dim, "k": args.k, "faiss_threads": faiss.omp_get_max_threads(),
           "bare_s": round(b, 2), "ours_s": round(o, 2), "ratio": round(o / b, 3),
           "stage_timings": entry["timings"], "pairs": entry["counts"]["pairs"]}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, FAISS threads "
          f"{out['faiss_threads']}; best of {args.repeats}")
    print(f"{'vectors':>9} {'dim':>4} {'k':>2} {'bare faiss s':>13} {'pairs stage s':>14} "
          f"{'stage/bare':>10}")
    print(f"{args.n:>9,} {args.dim:>4} {args.k:>2} {b:>13.2f} {o:>14.2f} {o / b:>10.3f}")
    t = entry["timings"]
    print("stage breakdown: " + ", ".join(f"{k} {v}" for k, v in t.items()))
    return out


def real(args) -> dict:
    from stylehub_ray.config import IngestConfig
    from stylehub_ray.data.ingest import ingest
    from stylehub_ray.embed.images import EmbedImagesConfig, embed_images
    from stylehub_ray.embed.pairs import PairsConfig, mine_pairs
    from stylehub_ray.embed.text import EmbedTextConfig, embed_text
    from stylehub_ray.ray_utils import ensure_ray
    from stylehub_ray.run import Run

    ensure_ray(num_cpus=os.cpu_count())
    run = Run(args.run or tempfile.mkdtemp(prefix="stylehub-real-"))
    ingest(args.real, run, IngestConfig())
    out: dict = {"source": args.real, "run": run.uri}
    t0 = time.perf_counter()
    text = embed_text(run, EmbedTextConfig())
    out["embed_text_s"] = round(time.perf_counter() - t0, 1)
    out["text_counts"] = text["counts"]
    pt = mine_pairs(run, PairsConfig(), "text")
    out["pairs_text"] = {k: pt.get(k) for k in ("counts", "cosine_distance",
                                                "attribute_agreement", "timings")}
    t0 = time.perf_counter()
    img = embed_images(run, EmbedImagesConfig(arch=args.arch, model=args.model,
                                              colour=args.colour, image_size=args.image_size))
    out["embed_images_s"] = round(time.perf_counter() - t0, 1)
    out["image_counts"] = img["counts"]
    out["explained_variance"] = img["explained_variance"]
    out["images_per_s"] = img["images_per_s"]
    pi = mine_pairs(run, PairsConfig(), "image")
    out["pairs_image"] = {k: pi.get(k) for k in ("counts", "cosine_distance",
                                                 "attribute_agreement")}
    print(f"real data: {args.real}; run {run.uri}")
    print(f"embed text: {text['counts']['text']['articles']:,} articles, MiniLM 384-d, "
          f"{out['embed_text_s']} s")
    print(f"embed images: {img['counts']['images']['embedded']:,} photos, {args.arch} "
          f"({args.model}, colour {args.colour}) at {args.image_size}px, "
          f"{out['embed_images_s']} s "
          f"({img['images_per_s']} images/s in the pool); PCA "
          f"{img['counts']['pca']['dim_in']} -> {img['counts']['pca']['dim_out']} keeps "
          f"{img['explained_variance']:.1%}")
    print(f"{'pairs':6} {'items':>7} {'same type +':>11} {'same type -':>11} "
          f"{'same colour +':>13} {'same colour -':>13} {'both +':>7} {'both -':>7} "
          f"{'cos dist +/-':>13}")
    for kind, e in (("text", pt), ("image", pi)):
        a = e["attribute_agreement"]
        d = e["cosine_distance"]
        print(f"{kind:6} {e['counts']['index']['items']:>7,} "
              f"{a['product_type_name']['positive']:>11.1%} "
              f"{a['product_type_name']['negative']:>11.1%} "
              f"{a['colour_group_name']['positive']:>13.1%} "
              f"{a['colour_group_name']['negative']:>13.1%} "
              f"{a['all']['positive']:>7.1%} {a['all']['negative']:>7.1%} "
              f"{d['positive']:>6.3f}/{d['negative']:.3f}")
    print("(+ = an item and one of its 5 nearest neighbours; - = its random negatives)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=105_542)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--clusters", type=int, default=2_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--real", help="H&M layout folder: run the real-data quality check")
    ap.add_argument("--run", help="run directory for --real (default: a temp dir)")
    ap.add_argument("--arch", default="efficientnet_lite0")
    ap.add_argument("--model", default="pretrained")
    ap.add_argument("--colour", type=float, default=0.3)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    result = real(args) if args.real else speed(args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    name = "pairs_real.json" if args.real else "pairs.json"
    (Path(args.out) / name).write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
