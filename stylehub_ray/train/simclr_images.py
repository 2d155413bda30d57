"""`stylehub train simclr-images`: self-supervised SimCLR of the image encoder on Ray Train.

The ``present`` photos of ``raw/images`` are decoded (letterboxed to ``image_size``, the
embedding stage's own decode task) into a materialized Ray Dataset; every worker streams its
shard each epoch (``iter_batches`` with a seeded local shuffle), draws two augmented views per
photo and minimises NT-Xent (:mod:`stylehub_ray.models.simclr_images`). DDP through
``ray.train.torch.prepare_model``; the global batch is split across the workers. A checkpoint
every epoch; an interrupted run resumes from its last one.

Output ``models/simclr_images/<variant>/``: ``model.pt`` (``{"state_dict", "arch",
"image_size", "kind": "simclr"}``; load it with ``stylehub embed images --model
simclr:RUN/models/simclr_images/<variant>/model.pt --set arch=<arch>``) and ``history.json``.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow.compute as pc

from stylehub_ray.run import Run, stable_hash

MODELS = "models/simclr_images"
RAY_TRAIN_DIR = "_ray_train/simclr_images"
REPORTED_METRICS = ("epoch", "loss", "epoch_s")


@dataclass
class TrainSimCLRImagesConfig:
    """`stylehub train simclr-images`."""

    arch: str = "resnet18"  # resnet18 .. resnet152
    image_size: int = 64
    projection_hidden: int = 512
    projection_dim: int = 128
    tau: float = 0.5
    epochs: int = 10
    batch_size: int = 128  # global: split across the workers
    lr: float = 1e-3
    weight_decay: float = 1e-6
    max_images: int | None = None  # a seeded sample of the photos (None: all)
    tag: str = ""  # variant name; "": <arch>-<image_size>
    workers: int = 1
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    seed: int = 0

    def validate(self) -> None:
        from stylehub_ray.embed.image_model import ARCHS

        if self.arch not in ARCHS:
            raise ValueError(f"train_simclr_images.arch must be one of {', '.join(ARCHS)}, "
                             f"got {self.arch!r}")
        if self.image_size < 32:
            raise ValueError(f"train_simclr_images.image_size must be >= 32, got "
                             f"{self.image_size}")
        if self.epochs < 1 or self.workers < 1 or self.batch_size < 2 * self.workers:
            raise ValueError(f"train_simclr_images: epochs >= 1, workers >= 1 and batch_size >= "
                             f"2 per worker expected, got {self.epochs}, {self.workers}, "
                             f"{self.batch_size}")
        if self.tau <= 0 or self.lr <= 0:
            raise ValueError(f"train_simclr_images: tau > 0 and lr > 0 expected, got "
                             f"{self.tau}, {self.lr}")

    def variant(self) -> str:
        return self.tag or f"{self.arch}-{self.image_size}"


def model_dir(variant: str) -> str:
    return f"{MODELS}/{variant}"


def checkpoint_path(run: Run, variant: str) -> str:
    """The file `embed images --model simclr:PATH` takes (a local run's path)."""
    return run.uri_of(posixpath.join(model_dir(variant), "model.pt"))


def list_variants(run: Run) -> list[str]:
    import pyarrow.fs as pafs

    infos = run.fs.get_file_info(pafs.FileSelector(run.path(MODELS), allow_not_found=True))
    return sorted(posixpath.basename(i.path) for i in infos
                  if i.type == pafs.FileType.Directory
                  and run.is_complete(model_dir(posixpath.basename(i.path))))


def load_simclr_meta(run: Run, variant: str) -> dict:
    rel = model_dir(variant)
    if not run.is_complete(rel):
        raise FileNotFoundError(f"{run.uri_of(rel)}: no complete SimCLR encoder (train it with "
                                f"`stylehub train simclr-images --run {run.uri}`)")
    return run.read_json(posixpath.join(rel, "history.json"))


def load_simclr_images(run: Run, variant: str):
    """(SimCLRImages on CPU in eval mode, metadata)."""
    import torch

    from stylehub_ray.models.simclr_images import SimCLRImages, SimCLRImagesSpec

    meta = load_simclr_meta(run, variant)
    c = meta["config"]
    model = SimCLRImages(SimCLRImagesSpec(arch=c["arch"], image_size=c["image_size"],
                                          projection_hidden=c["projection_hidden"],
                                          projection_dim=c["projection_dim"], seed=c["seed"]))
    with run.fs.open_input_stream(run.path(posixpath.join(model_dir(variant), "model.pt"))) as f:
        blob = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
    model.load_state_dict(blob["state_dict"])
    return model.eval(), meta


def _photos(run: Run, cfg: TrainSimCLRImagesConfig):
    from stylehub_ray.data.ingest import read_table

    if not run.is_complete("raw/images"):
        raise FileNotFoundError(f"{run.uri_of('raw/images')} is missing: run ingest first")
    images = read_table(run, "raw/images", ["article_id", "article_idx", "path", "status"])
    present = images.filter(pc.equal(images.column("status"), "present"))
    if cfg.max_images and present.num_rows > cfg.max_images:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(present.num_rows, cfg.max_images,
                                                               replace=False))
        present = present.take(keep)
    if present.num_rows < cfg.batch_size:
        raise ValueError(f"{run.uri_of('raw/images')}: {present.num_rows} present photos, fewer "
                         f"than one batch ({cfg.batch_size}); lower train_simclr_images."
                         f"batch_size")
    return images.num_rows, present


def _plan(run: Run, cfg: TrainSimCLRImagesConfig) -> tuple[dict, dict]:
    cfg.validate()
    if not run.is_complete("raw/images"):
        raise FileNotFoundError(f"{run.uri_of('raw/images')} is missing: run `stylehub ingest "
                                f"SOURCE --run {run.uri}` first")
    return asdict(cfg), {"raw/images": run.marker("raw/images")["fingerprint"]}


def ray_train_name(cfg: TrainSimCLRImagesConfig, config: dict, inputs: dict) -> str:
    """The same config and inputs find the same Ray Train folder, so a crashed step resumes."""
    return f"{cfg.variant()}-{stable_hash(config)}-{stable_hash(inputs)[:8]}"


def build_trainer(run: Run, cfg: TrainSimCLRImagesConfig, *,
                  fail_after_epoch: int | None = None, callbacks=(),
                  storage_path: str | None = None, name: str | None = None):
    """(TorchTrainer, run name); the photos are decoded into a materialized Ray Dataset."""
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    from stylehub_ray.embed.images import decode_task
    from stylehub_ray.ray_utils import ensure_ray

    config, inputs = _plan(run, cfg)
    name = name or ray_train_name(cfg, config, inputs)
    ensure_ray()
    _n, present = _photos(run, cfg)
    step = 64
    blocks = [present.select(["article_id", "article_idx", "path"]).slice(i, step)
              for i in range(0, present.num_rows, step)]
    ds = ray.data.from_arrow(blocks).map_batches(
        decode_task, batch_size=step, batch_format="numpy",
        fn_kwargs={"size": cfg.image_size}, num_cpus=1)
    # Unreadable photos (decode errors) are dropped; the rest are materialized (on 2 CPUs a
    # TorchTrainer over a dataset with work left can hang).
    ds = ds.filter(lambda row: row["error"] == "").select_columns(
        ["article_idx", "image"]).materialize()
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"cfg": config, "fail_after_epoch": fail_after_epoch},
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.workers, use_gpu=cfg.use_gpu,
            resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_path or run.uri_of(RAY_TRAIN_DIR),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            callbacks=list(callbacks)),
        datasets={"train": ds},
    )
    return trainer, name


def train_simclr_images(run: Run, cfg: TrainSimCLRImagesConfig, force: bool = False,
                        log=print) -> dict:
    """Train the SimCLR image encoder; publish ``models/simclr_images/<variant>/model.pt``."""
    import torch

    variant = cfg.variant()
    config, inputs = _plan(run, cfg)
    out = model_dir(variant)
    step = run.step("train_simclr_images", variant, config=config, inputs=inputs,
                    outputs=[out], force=force)
    if step.done:
        log(f"train_simclr_images/{variant}: up to date; skipped (--force redoes it); "
            f"--model simclr:{checkpoint_path(run, variant)}")
        return step.previous() | {"skipped": True}
    name = ray_train_name(cfg, config, inputs)
    if force:
        run.delete(posixpath.join(RAY_TRAIN_DIR, name))  # --force: no resume
    trainer, _ = build_trainer(run, cfg)
    n_items, present = _photos(run, cfg)
    with step:
        with step.time("fit_s"):
            result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"train_simclr_images/{variant}: the run reported no checkpoint")
        with result.checkpoint.as_directory() as d:
            state = torch.load(os.path.join(d, "state.pt"), map_location="cpu",
                               weights_only=False)
        blob = {"state_dict": state["state"], "arch": cfg.arch, "image_size": cfg.image_size,
                "kind": "simclr"}
        buf = io.BytesIO()
        torch.save(blob, buf)
        folder = step.tmp(out)
        run.fs.create_dir(folder, recursive=True)
        with run.fs.open_output_stream(posixpath.join(folder, "model.pt")) as f:
            f.write(buf.getvalue())
        meta = {"variant": variant, "config": config, "history": state["history"],
                "n_items": n_items, "images": present.num_rows,
                "resumed_at": state.get("resumed_at", -1)}
        with run.fs.open_output_stream(posixpath.join(folder, "history.json")) as f:
            f.write(json.dumps(meta, indent=2).encode())
        step.counts = {"epochs": {"trained": len(state["history"]),
                                  "resumed_at": state.get("resumed_at", -1)},
                       "images": {"photos": present.num_rows}}
        step.extra["final_loss"] = state["history"][-1]["loss"]
    run.delete(posixpath.join(RAY_TRAIN_DIR, name))
    h = state["history"]
    log(f"train_simclr_images/{variant}: {len(h)} epochs, loss {h[0]['loss']:.4f} -> "
        f"{h[-1]['loss']:.4f} ({step.timings.get('fit_s', 0):.0f}s); embed with --model "
        f"simclr:{checkpoint_path(run, variant)} --set arch={cfg.arch}")
    return run.entry("train_simclr_images", variant)


def _train_loop(config: dict) -> None:
    """Ray Train worker: two views per photo, NT-Xent, per-epoch checkpoints and resume."""
    import ray.train
    import ray.train.torch
    import torch

    from stylehub_ray.models.simclr_images import (
        SimCLRImages,
        SimCLRImagesSpec,
        make_augment,
        simclr_loss,
        two_views,
    )

    cfg = TrainSimCLRImagesConfig(**config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    torch.manual_seed(cfg.seed)
    core = SimCLRImages(SimCLRImagesSpec(arch=cfg.arch, image_size=cfg.image_size,
                                         projection_hidden=cfg.projection_hidden,
                                         projection_dim=cfg.projection_dim, seed=cfg.seed))
    model = ray.train.torch.prepare_model(core)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    augment = make_augment(cfg.image_size)
    shard = ray.train.get_dataset_shard("train")

    start_epoch, history, resumed_at = 0, [], -1
    ckpt = ray.train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            st = torch.load(os.path.join(d, "state.pt"), map_location="cpu", weights_only=False)
        core.load_state_dict(st["state"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        start_epoch, history, resumed_at = st["epoch"] + 1, st["history"], st["epoch"] + 1

    per_worker = cfg.batch_size // world
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + rank)  # the views' randomness
        losses = []
        # Equal shards (Ray Train splits with equal=True) and full batches only, so every
        # worker takes the same number of DDP steps.
        for batch in shard.iter_batches(batch_size=per_worker, batch_format="numpy",
                                        drop_last=True, local_shuffle_buffer_size=4 * per_worker,
                                        local_shuffle_seed=cfg.seed * 7919 + epoch):
            v1, v2 = two_views(batch["image"], augment)
            loss = simclr_loss(model, v1.to(device), v2.to(device), cfg.tau)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()
        metrics = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
                   "epoch_s": round(time.perf_counter() - t0, 3)}
        history.append(metrics)
        if rank == 0:
            with tempfile.TemporaryDirectory() as d:
                torch.save({"state": core.state_dict(), "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(), "epoch": epoch,
                            "history": history, "resumed_at": resumed_at},
                           os.path.join(d, "state.pt"))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics)
        if config.get("fail_after_epoch") is not None and epoch >= config["fail_after_epoch"]:
            raise RuntimeError(f"injected failure after epoch {epoch} (resume test)")


# --------------------------------------------------------------------------------------------
# Catalog embeddings with the trained or the random-init backbone (evaluation)
# --------------------------------------------------------------------------------------------
def embed_catalog(run: Run, variant: str, random_init: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Pooled backbone features of every article's photo at the encoder's image size, through
    the embedding stage's Ray Data pipeline: (vectors (n_items, D), present (n_items,))."""
    import pyarrow as pa

    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.embed.image_model import FEATURE_DIM
    from stylehub_ray.embed.images import EmbedImagesConfig, features_dataset
    from stylehub_ray.embed.pool import plan_pool
    from stylehub_ray.embed.vectors import from_fixed_list
    from stylehub_ray.embed.weights import resolve_image_weights
    from stylehub_ray.ray_utils import ensure_ray

    meta = load_simclr_meta(run, variant)
    c = meta["config"]
    model = "random" if random_init else f"simclr:{checkpoint_path(run, variant)}"
    ecfg = EmbedImagesConfig(arch=c["arch"], model=model, seed=c["seed"],
                             image_size=c["image_size"], batch_size=64)
    weights = resolve_image_weights(ecfg.model, ecfg.arch)
    ensure_ray()
    images = read_table(run, "raw/images", ["article_id", "article_idx", "path", "status"])
    present = images.filter(pc.equal(images.column("status"), "present"))
    plan = plan_pool(None, ecfg.batch_size, ecfg.gpu_batch_size, None)
    parts = features_dataset(present, ecfg, weights, plan).to_arrow_refs()
    import ray

    t = pa.concat_tables(ray.get(parts))
    n = images.num_rows
    out = np.zeros((n, FEATURE_DIM[c["arch"]]), np.float32)
    ok = np.zeros(n, bool)
    good = np.asarray(pc.equal(t.column("error"), "").to_numpy(zero_copy_only=False), bool)
    idx = t.column("article_idx").to_numpy()
    out[idx] = from_fixed_list(t.column("embedding_full"))
    ok[idx[good]] = True
    return out, ok
