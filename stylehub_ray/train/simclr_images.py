"""`stylehub train simclr-images`: self-supervised SimCLR of the image encoder on Ray Train.

The ``present`` photos of ``raw/images`` are decoded (letterboxed to ``image_size``, the
embedding stage's own decode task) into a materialized Ray Dataset; every worker streams its
shard each epoch (``iter_batches`` with a seeded local shuffle), draws two augmented views per
photo and minimises NT-Xent (:mod:`stylehub_ray.models.simclr_images`). The Ray Train loop
is :mod:`stylehub_ray.train.loop` (DDP; the global batch is split across the workers; a
checkpoint every epoch, an interrupted run resumes from its last one); :class:`SimCLRRecipe`
is this model's part of it.

Output ``models/simclr_images/<variant>/`` (:mod:`stylehub_ray.models.artifacts`), the last
epoch: ``model.pt`` (the state dict, ``backbone.*`` and ``projection.*``; load it with
``stylehub embed images --model simclr:RUN/models/simclr_images/<variant>/model.pt --set
arch=<arch>``), ``spec.json``, ``meta.json`` and ``history.json``.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow.compute as pc

from stylehub_ray.models.artifacts import FORMAT, load_meta, write_artifact
from stylehub_ray.run import Run, fingerprint_source
from stylehub_ray.train import loop as L

logger = logging.getLogger(__name__)

MODEL = "simclr_images"
MODELS = f"models/{MODEL}"
RAY_TRAIN_DIR = "_ray_train/simclr_images"
REPORTED_METRICS = ("epoch", "loss", "epoch_s")


@dataclass
class TrainSimCLRImagesConfig:
    """`stylehub train simclr-images`."""

    arch: str = "efficientnet_lite0"  # efficientnet_lite0/1/2, resnet18 .. resnet152
    # pretrained: fine-tune from the ImageNet weights (embed_images.model=pretrained);
    # random: SimCLR from scratch
    init: str = "pretrained"
    image_size: int = 64
    projection_hidden: int = 512
    projection_dim: int = 128
    tau: float = 0.5
    epochs: int = 10
    batch_size: int = 128  # global: split across the workers
    lr: float = 1e-4  # fine-tuning: a larger step wipes out what ImageNet taught
    weight_decay: float = 1e-6
    max_images: int | None = None  # a seeded sample of the photos (None: all)
    tag: str = ""  # variant name; "": <arch>-<image_size>, "-scratch" added for init=random
    workers: int = 1
    cpus_per_worker: float = 1.0
    max_failures: int = 3  # worker-group restarts from the last checkpoint (FailureConfig)
    use_gpu: bool = False
    seed: int = 0

    def validate(self) -> None:
        from stylehub_ray.embed.image_model import ARCHS

        if self.arch not in ARCHS:
            raise ValueError(f"train_simclr_images.arch must be one of {', '.join(ARCHS)}, "
                             f"got {self.arch!r}")
        if self.init not in ("pretrained", "random"):
            raise ValueError(f"train_simclr_images.init must be pretrained or random, got "
                             f"{self.init!r}")
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
        scratch = "-scratch" if self.init == "random" else ""
        return self.tag or f"{self.arch}-{self.image_size}{scratch}"


def model_dir(variant: str) -> str:
    return f"{MODELS}/{variant}"


def checkpoint_path(run: Run, variant: str) -> str:
    """The file `embed images --model simclr:PATH` takes (a local run's path)."""
    return run.uri_of(posixpath.join(model_dir(variant), "model.pt"))


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
    from stylehub_ray.embed.weights import resolve_image_weights

    cfg.validate()
    if not run.is_complete("raw/images"):
        raise FileNotFoundError(f"{run.uri_of('raw/images')} is missing: run `stylehub ingest "
                                f"SOURCE --run {run.uri}` first")
    weights = resolve_image_weights(cfg.init, cfg.arch)  # missing weights fail here, not in
    inputs = {"raw/images": run.marker("raw/images")["fingerprint"]}  # the workers
    if weights.path is not None:
        inputs["weights"] = fingerprint_source(weights.path)
    # The artifact format: a model saved in an older format is retrained, not loaded.
    return asdict(cfg) | {"artifact_format": FORMAT}, inputs


def build_trainer(run: Run, cfg: TrainSimCLRImagesConfig, *, name: str | None = None,
                  storage_path: str | None = None, **options):
    """(TorchTrainer, run name); the photos are decoded into a materialized Ray Dataset.
    ``options`` as :func:`stylehub_ray.train.loop.build_trainer` takes them."""
    import ray.data

    from stylehub_ray.embed.images import decode_task
    from stylehub_ray.ray_utils import ensure_ray

    config, inputs = _plan(run, cfg)
    name = name or L.ray_train_name(cfg.variant(), config, inputs)
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
    trainer = L.build_trainer(SimCLRRecipe(run.uri, cfg), name=name,
                              storage_path=storage_path or run.uri_of(RAY_TRAIN_DIR),
                              datasets={"train": ds}, **options)
    return trainer, name


def train_simclr_images(run: Run, cfg: TrainSimCLRImagesConfig, force: bool = False) -> dict:
    """Train the SimCLR image encoder; publish ``models/simclr_images/<variant>/``."""
    variant = cfg.variant()
    config, inputs = _plan(run, cfg)
    out = model_dir(variant)
    step = run.step("train_simclr_images", variant, config=config, inputs=inputs,
                    outputs=[out], force=force)
    if step.done:
        logger.info(f"train_simclr_images/{variant}: up to date; skipped (--force redoes it); "
                    f"--model simclr:{checkpoint_path(run, variant)}")
        return step.previous() | {"skipped": True}
    name = L.ray_train_name(variant, config, inputs)
    if force:
        run.delete(posixpath.join(RAY_TRAIN_DIR, name))  # --force: no resume
    trainer, _ = build_trainer(run, cfg)
    n_items, present = _photos(run, cfg)
    with step:
        with step.time("fit_s"):
            art, _path = L.fit(trainer, MODEL, {"variant": variant, "config": config,
                                                "n_items": n_items,
                                                "images": present.num_rows})
        write_artifact(run, step.tmp(out), art)
        h = art.meta["history"]
        step.counts = {"epochs": {"trained": len(h), "resumed_at": art.meta["resumed_at"],
                                  "restarts": art.meta.get("restarts", 0)},
                       "images": {"photos": present.num_rows}}
        step.extra["final_loss"] = h[-1]["loss"]
    run.delete(posixpath.join(RAY_TRAIN_DIR, name))
    logger.info(f"train_simclr_images/{variant}: {len(h)} epochs, loss {h[0]['loss']:.4f} -> "
                f"{h[-1]['loss']:.4f} ({step.timings.get('fit_s', 0):.0f}s); embed with --model "
                f"simclr:{checkpoint_path(run, variant)} --set arch={cfg.arch}")
    return run.entry("train_simclr_images", variant)


class SimCLRRecipe(L.Recipe):
    """The SimCLR image encoder's part of the Ray Train loop (no Ray here): two views per
    photo of the worker's shard, NT-Xent; the last epoch is published."""

    model = MODEL
    cfg: TrainSimCLRImagesConfig

    def setup(self, worker: L.Worker):
        from stylehub_ray.models.simclr_images import SimCLRImages, make_augment

        self.worker = worker
        self.augment = make_augment(self.cfg.image_size)
        return SimCLRImages(self.spec())

    def spec(self):
        from stylehub_ray.models.simclr_images import SimCLRImagesSpec

        c = self.cfg
        return SimCLRImagesSpec(arch=c.arch, image_size=c.image_size,
                                projection_hidden=c.projection_hidden,
                                projection_dim=c.projection_dim, seed=c.seed, init=c.init)

    def optimizer(self, model):
        import torch

        return torch.optim.Adam(model.parameters(), lr=self.cfg.lr,
                                weight_decay=self.cfg.weight_decay)

    def scheduler(self, optimizer):
        import torch

        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.cfg.epochs)

    def train_epoch(self, model, optimizer, epoch: int) -> dict:
        import torch

        from stylehub_ray.models.simclr_images import simclr_loss, two_views

        cfg, device, rank = self.cfg, self.worker.device, self.worker.rank
        per_worker = cfg.batch_size // self.worker.world
        model.train()
        torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + rank)  # the views' randomness
        losses = []
        # Equal shards (Ray Train splits with equal=True) and full batches only, so every
        # worker takes the same number of DDP steps.
        for batch in self.worker.shard.iter_batches(
                batch_size=per_worker, batch_format="numpy", drop_last=True,
                local_shuffle_buffer_size=4 * per_worker,
                local_shuffle_seed=cfg.seed * 7919 + epoch):
            v1, v2 = two_views(batch["image"], self.augment, cfg.arch)
            loss = simclr_loss(model, v1.to(device), v2.to(device), cfg.tau)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return {"loss": float(np.mean(losses)) if losses else float("nan")}


# --------------------------------------------------------------------------------------------
# Catalog embeddings with the trained backbone or the one it started from (evaluation)
# --------------------------------------------------------------------------------------------
def start_weights(run: Run, variant: str) -> str:
    """The ``model`` setting of the encoder a trained variant started from (its ``init``)."""
    return load_meta(run, MODEL, variant)["config"].get("init", "random")


def embed_catalog(run: Run, variant: str, start: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Pooled backbone features (no colour histogram) of every article's photo at the
    encoder's image size, through the embedding stage's Ray Data pipeline, with the trained
    backbone or (``start``) the one it started from: (vectors (n_items, D), present
    (n_items,))."""
    import pyarrow as pa

    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.embed.image_model import FEATURE_DIM
    from stylehub_ray.embed.images import EmbedImagesConfig, features_dataset
    from stylehub_ray.embed.pool import plan_pool
    from stylehub_ray.embed.vectors import from_fixed_list
    from stylehub_ray.embed.weights import resolve_image_weights
    from stylehub_ray.ray_utils import ensure_ray

    c = load_meta(run, MODEL, variant)["config"]
    model = start_weights(run, variant) if start else f"simclr:{checkpoint_path(run, variant)}"
    ecfg = EmbedImagesConfig(arch=c["arch"], model=model, seed=c["seed"],
                             image_size=c["image_size"], batch_size=64, colour=0.0)
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
