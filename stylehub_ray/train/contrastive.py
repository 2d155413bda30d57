"""`stylehub train contrastive`: the StyleHub contrastive item model on Ray Train.

A TorchTrainer (``--workers``, ``--gpus-per-worker``) trains
:class:`stylehub_ray.models.contrastive.SimCLR` on the positive pairs of ``pairs/<pairs>``
(``text``, ``image`` or ``transactions``; paper 4.2 and 4.3): the batch supplies the negatives
(NT-Xent, 4.5), so the labelled negative pairs serve validation and evaluation only. Defaults
follow the paper (4.4): Adam 1e-3, CosineAnnealingLR, 50 epochs, batch 256.

Data: the train split's positive pairs are a materialized Ray Dataset; each worker reads its
shard (``ray.train.get_dataset_shard``, equal split) once, sorts it by pair row and draws a
seeded permutation of it every epoch, so a run resumed from a checkpoint continues exactly as
the uninterrupted run would. The item vectors (n_items x D, small) are read from the run in
every worker: ``embeddings/text``, ``embeddings/images`` or both side by side
(``inputs``). An article without a photo gets a zero image vector and a ``has_image`` = 0
column (1 for the others), so text+image models still embed it and image models can tell it
apart; image-only models rank only the items that have a photo.

Validation: the train split's pairs whose canonical (smaller) anchor is one of ``val_share``
of the items (seeded) are held out of training. Every epoch every worker reports
``REPORTED_METRICS``; the best epoch by ``select_by`` is published as
``models/contrastive/<variant>/`` (:mod:`stylehub_ray.models.artifacts`), with the item
embeddings in ``embeddings/contrastive/<variant>`` and their FAISS index in
``index/contrastive-<variant>`` (what :mod:`stylehub_ray.eval.similar` serves). The Ray Train
loop is :mod:`stylehub_ray.train.loop`; :class:`ContrastiveRecipe` is this model's part of it
(DDP; the global batch is split across the workers and each worker's NT-Xent uses its own
part).
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stylehub_ray.models.artifacts import FORMAT, write_artifact
from stylehub_ray.run import Run
from stylehub_ray.train import loop as L

logger = logging.getLogger(__name__)

MODEL = "contrastive"
MODELS = f"models/{MODEL}"
EMBEDDINGS = "embeddings/contrastive"
RAY_TRAIN_DIR = "_ray_train/contrastive"
PAIR_KINDS = ("text", "image", "transactions")
INPUTS = ("text", "image", "text+image")
SOURCES = {"text": "embeddings/text", "image": "embeddings/images"}
SELECT_BY = ("val_recall5", "val_separation")
# Metrics every epoch reports (Tune and early stopping key on these names).
REPORTED_METRICS = ("epoch", "loss", "val_pos_dist", "val_neg_dist", "val_separation",
                    "val_recall5", "epoch_s")


@dataclass
class TrainContrastiveConfig:
    """`stylehub train contrastive`: one variant per pair source (``pairs``)."""

    pairs: str = "text"  # text | image | transactions
    inputs: str = ""  # text | image | text+image; "": image for image pairs, else text
    tag: str = ""  # appended to the variant name: models/contrastive/<pairs>[-<tag>]
    hidden: tuple[int, ...] = (1024,)
    embed_dim: int = 512
    projection_hidden: int = 512
    projection_dim: int = 128
    dropout: float = 0.1
    tau: float = 0.1
    epochs: int = 50
    batch_size: int = 256  # global: split across the workers
    lr: float = 1e-3
    weight_decay: float = 0.0
    mask_duplicates: bool = True  # copies of a pair's item in the batch are not its negatives
    val_share: float = 0.1
    val_anchors: int = 2000  # anchors ranked per epoch for val_recall5 (seeded sample)
    select_by: str = "val_recall5"
    workers: int = 1
    cpus_per_worker: float = 1.0
    max_failures: int = 3  # worker-group restarts from the last checkpoint (FailureConfig)
    use_gpu: bool = False
    seed: int = 0

    def validate(self) -> None:
        if self.pairs not in PAIR_KINDS:
            raise ValueError(f"train_contrastive.pairs must be one of {', '.join(PAIR_KINDS)}, "
                             f"got {self.pairs!r}")
        if self.resolved_inputs() not in INPUTS:
            raise ValueError(f"train_contrastive.inputs must be one of {', '.join(INPUTS)}, "
                             f"got {self.inputs!r}")
        if self.select_by not in SELECT_BY:
            raise ValueError(f"train_contrastive.select_by must be one of "
                             f"{', '.join(SELECT_BY)}, got {self.select_by!r}")
        if self.epochs < 1 or self.workers < 1 or self.batch_size < 2 * self.workers:
            raise ValueError(f"train_contrastive: epochs >= 1, workers >= 1 and batch_size >= "
                             f"2 per worker expected, got epochs={self.epochs}, workers="
                             f"{self.workers}, batch_size={self.batch_size}")
        if self.tau <= 0 or self.lr <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"train_contrastive: tau > 0, lr > 0, 0 <= dropout < 1 expected, "
                             f"got tau={self.tau}, lr={self.lr}, dropout={self.dropout}")
        if not 0 < self.val_share < 1 or self.val_anchors < 1:
            raise ValueError(f"train_contrastive: 0 < val_share < 1 and val_anchors >= 1 "
                             f"expected, got {self.val_share}, {self.val_anchors}")
        if min((self.embed_dim, self.projection_dim, self.projection_hidden, *self.hidden)) < 1:
            raise ValueError("train_contrastive: every layer width must be >= 1")

    def resolved_inputs(self) -> str:
        return self.inputs or ("image" if self.pairs == "image" else "text")

    def variant(self) -> str:
        return self.pairs + (f"-{self.tag}" if self.tag else "")


def resolved_config(cfg: TrainContrastiveConfig) -> dict:
    """The config as the manifest and the model record it (with the artifact format, so a
    model saved in an older format is retrained rather than loaded)."""
    out = asdict(cfg)
    out.update(inputs=cfg.resolved_inputs(), hidden=list(cfg.hidden), artifact_format=FORMAT)
    return out


def model_dir(variant: str) -> str:
    return f"{MODELS}/{variant}"


def embeddings_dir(variant: str) -> str:
    return f"{EMBEDDINGS}/{variant}"


def index_dir(variant: str) -> str:
    return f"index/contrastive-{variant}"


# --------------------------------------------------------------------------------------------
# Data: item vectors and pairs (shared by training, evaluation and similar items)
# --------------------------------------------------------------------------------------------
@dataclass
class ItemInputs:
    """The model's input vector of every article, row = article_idx."""

    x: np.ndarray  # (n_items, D) float32
    has_vector: np.ndarray  # (n_items,) bool: the item has an input (a photo, for image-only)
    article_id: np.ndarray  # (n_items,) int64
    inputs: str

    @property
    def n_items(self) -> int:
        return len(self.x)


def _read_source(run: Run, rel: str) -> pa.Table:
    from stylehub_ray.embed.vectors import read_embeddings

    table = read_embeddings(run, rel)
    if "embedding" not in table.column_names:
        raise ValueError(f"{run.uri_of(rel)}: no 'embedding' column (got "
                         f"{', '.join(table.column_names)})")
    idx = table.column("article_idx").to_numpy()
    if not np.array_equal(idx, np.arange(len(idx))):
        bad = int(np.flatnonzero(idx != np.arange(len(idx)))[0])
        raise ValueError(f"{run.uri_of(rel)}: article_idx must cover 0..n-1 once each; row "
                         f"{bad} has article_idx {int(idx[bad])}")
    return table


def load_item_inputs(run: Run, inputs: str) -> ItemInputs:
    """``text``: the text vectors; ``image``: the image vectors plus a has_image column;
    ``text+image``: both side by side (an article without a photo: zeros and has_image 0)."""
    from stylehub_ray.embed.vectors import from_fixed_list

    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
    parts, has_vector, ids = [], None, None
    for kind in ("text", "image"):
        if kind not in inputs.split("+"):
            continue
        t = _read_source(run, SOURCES[kind])
        vec = from_fixed_list(t.column("embedding"))
        if ids is None:
            ids = t.column("article_id").to_numpy().astype(np.int64)
        elif len(ids) != t.num_rows or not np.array_equal(ids, t.column("article_id").to_numpy()):
            raise ValueError(f"{run.uri_of(SOURCES['image'])} and {run.uri_of(SOURCES['text'])} "
                             f"cover different articles ({t.num_rows} vs {len(ids)} rows)")
        if kind == "image":
            present = t.column("embedding").is_valid().to_numpy(zero_copy_only=False)
            vec = np.concatenate([vec, present[:, None].astype(np.float32)], axis=1)
            has_vector = present if inputs == "image" else np.ones(len(vec), bool)
        parts.append(vec)
    x = np.concatenate(parts, axis=1).astype(np.float32)
    if has_vector is None:
        has_vector = np.ones(len(x), bool)
    if not has_vector.any():
        raise ValueError(f"{run.uri}: no article has an input vector for inputs={inputs!r}")
    return ItemInputs(x, has_vector, ids, inputs)


def input_sources(inputs: str) -> list[str]:
    return [SOURCES[k] for k in ("text", "image") if k in inputs.split("+")]


def validation_items(n_items: int, share: float, seed: int) -> np.ndarray:
    """Items whose train-split pairs (by canonical anchor) are held out for validation."""
    rng = np.random.default_rng([seed, 0x7A1])
    mask = np.zeros(n_items, bool)
    mask[rng.permutation(n_items)[: max(1, int(round(share * n_items)))]] = True
    return mask


def split_pairs(run: Run, cfg: TrainContrastiveConfig, n_items: int) -> dict[str, pa.Table]:
    """``train`` (positives used for training, with their ``row`` in pairs/<kind>) and
    ``val`` (positives and negatives held out), from the train split of the pairs."""
    from stylehub_ray.embed.pairs import read_pairs

    t = read_pairs(run, cfg.pairs)
    rel = f"pairs/{cfg.pairs}"
    for col in ("anchor_idx", "other_idx", "label", "split"):
        if col not in t.column_names:
            raise ValueError(f"{run.uri_of(rel)}: column {col!r} missing")
    t = t.append_column("row", pa.array(np.arange(t.num_rows), pa.int64()))
    t = t.filter(pc.equal(t.column("split"), "train"))
    a = t.column("anchor_idx").to_numpy().astype(np.int64)
    b = t.column("other_idx").to_numpy().astype(np.int64)
    if len(a) and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_items):
        bad = a[(a < 0) | (a >= n_items)].tolist() + b[(b < 0) | (b >= n_items)].tolist()
        raise ValueError(f"{run.uri_of(rel)}: article_idx {bad[0]} outside the catalogue "
                         f"0..{n_items - 1}")
    val = validation_items(n_items, cfg.val_share, cfg.seed)[np.minimum(a, b)]
    label = t.column("label").to_numpy()
    train = t.filter(pa.array(~val & (label == 1))).select(["row", "anchor_idx", "other_idx"])
    if train.num_rows < 2:
        raise ValueError(f"{run.uri_of(rel)}: {train.num_rows} positive training pairs; need "
                         f"at least 2 (mine more pairs or lower val_share)")
    return {"train": train, "val": t.filter(pa.array(val))}


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------
def _plan(run: Run, cfg: TrainContrastiveConfig) -> tuple[dict, dict]:
    cfg.validate()
    inputs = {f"pairs/{cfg.pairs}": run.require(f"pairs/{cfg.pairs}",
                                                f"stylehub pairs {cfg.pairs} --run {run.uri}")}
    for rel in input_sources(cfg.resolved_inputs()):
        inputs[rel] = run.require(rel, f"stylehub embed {rel.split('/')[1]} --run {run.uri}")
    return resolved_config(cfg), inputs


def build_trainer(run: Run, cfg: TrainContrastiveConfig, *, name: str | None = None,
                  storage_path: str | None = None, **options):
    """(TorchTrainer, run name) for one variant (:func:`stylehub_ray.train.loop.build_trainer`
    takes ``options``: ``fail_after_epoch``, ``callbacks``, ``gpus_per_worker``; ``name`` and
    ``storage_path`` replace the Ray Train folder ``_ray_train/contrastive/<name>``)."""
    import ray.data

    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.ray_utils import ensure_ray

    config, inputs = _plan(run, cfg)
    name = name or L.ray_train_name(cfg.variant(), config, inputs)
    ensure_ray()
    n_items = read_table(run, input_sources(cfg.resolved_inputs())[0], ["article_idx"]).num_rows
    train = split_pairs(run, cfg, n_items)["train"]
    trainer = L.build_trainer(
        ContrastiveRecipe(run.uri, cfg), name=name,
        storage_path=storage_path or run.uri_of(RAY_TRAIN_DIR),
        datasets={"train": ray.data.from_arrow(train).materialize()}, **options)
    return trainer, name


def train_contrastive(run: Run, cfg: TrainContrastiveConfig, force: bool = False) -> dict:
    """Train one variant; publish its best epoch, the item embeddings and their FAISS index."""
    variant = cfg.variant()
    config, inputs = _plan(run, cfg)
    outputs = [model_dir(variant), embeddings_dir(variant), index_dir(variant)]
    step = run.step("train_contrastive", variant, config=config, inputs=inputs,
                    outputs=outputs, force=force)
    if step.done:
        logger.info(f"train_contrastive/{variant}: up to date; skipped (--force redoes it)")
        return step.previous() | {"skipped": True}
    name = L.ray_train_name(variant, config, inputs)
    if force:
        run.delete(posixpath.join(RAY_TRAIN_DIR, name))  # --force: no resume
    trainer, _ = build_trainer(run, cfg)
    with step:
        with step.time("fit_s"):
            art, path = L.fit(trainer, MODEL, {
                "variant": variant, "config": config, "inputs": cfg.resolved_inputs(),
                "select_by": cfg.select_by})
        write_artifact(run, step.tmp(model_dir(variant)), art)
        with step.time("publish_s"):
            n_indexed = _publish_embeddings(run, step, variant, art.build(), art.meta)
        meta = art.meta
        step.counts = {"epochs": {"trained": len(meta["history"]), "best": meta["best_epoch"],
                                  "resumed_at": meta["resumed_at"],
                                  "restarts": meta.get("restarts", 0)},
                       "items": {"embedded": n_indexed},
                       "pairs": meta["pairs"]}
        step.extra["best_metrics"] = meta["best"]
        step.extra["ray_train_path"] = path
    run.delete(posixpath.join(RAY_TRAIN_DIR, name))  # complete: nothing left to resume
    b = meta["best"]
    logger.info(f"train_contrastive/{variant}: best epoch {meta['best_epoch']} loss "
                f"{b['loss']:.4f} val distance pos {b['val_pos_dist']:.3f} neg "
                f"{b['val_neg_dist']:.3f} recall@5 {b['val_recall5']:.3f} "
                f"({step.timings.get('fit_s', 0):.0f}s)")
    return run.entry("train_contrastive", variant)


def _publish_embeddings(run: Run, step, variant: str, model, meta: dict) -> int:
    """Item embeddings (unit rows) and a flat FAISS inner-product index over the items that
    have an input vector."""
    import torch

    from stylehub_ray.embed import index as I
    from stylehub_ray.embed import vectors as V
    from stylehub_ray.embed.text_model import l2_normalize

    items = load_item_inputs(run, meta["inputs"])
    emb = l2_normalize(model.embed_all(torch.from_numpy(items.x)).numpy())
    idx = np.arange(items.n_items)
    V.write_table(run, step.tmp(embeddings_dir(variant)), pa.table({
        "article_id": pa.array(items.article_id, pa.int64()),
        "article_idx": pa.array(idx, pa.int32()),
        "has_vector": pa.array(items.has_vector, pa.bool_()),
        "embedding": V.to_fixed_list(emb, items.has_vector)}))
    rows = np.flatnonzero(items.has_vector)
    index = I.build_index(emb[rows], I.IndexParams("flat"))
    meta = {"kind": f"contrastive-{variant}", "source": embeddings_dir(variant),
            "index": "flat", "metric": "inner_product", "normalised": True, "n": len(rows),
            "dim": int(emb.shape[1]), "inputs": items.inputs}
    I.write_index(run, step.tmp(index_dir(variant)), index, rows, items.article_id[rows], meta)
    return len(rows)



# --------------------------------------------------------------------------------------------
# Ray Train worker
# --------------------------------------------------------------------------------------------
def _read_shard(shard) -> dict[str, np.ndarray]:
    """The worker's whole shard, sorted by pair row (Ray Data may deliver blocks in any
    order; sorting makes every epoch's permutation reproducible)."""
    cols: dict[str, list] = {"row": [], "anchor_idx": [], "other_idx": []}
    for batch in shard.iter_batches(batch_size=65_536, batch_format="numpy"):
        for c in cols:
            cols[c].append(batch[c])
    out = {c: np.concatenate(v) if v else np.zeros(0, np.int64) for c, v in cols.items()}
    order = np.argsort(out["row"], kind="stable")
    return {c: v[order].astype(np.int64) for c, v in out.items()}


class ContrastiveRecipe(L.Recipe):
    """The contrastive model's part of the Ray Train loop (no Ray here): NT-Xent over the
    worker's positive pairs, a seeded permutation per epoch, validation on held-out pairs."""

    model = MODEL
    cfg: TrainContrastiveConfig

    @property
    def select_by(self) -> str:
        return self.cfg.select_by

    def setup(self, worker: L.Worker):
        import torch
        import torch.distributed as dist

        from stylehub_ray.models.contrastive import ContrastiveSpec, SimCLR

        cfg, run = self.cfg, Run(self.run)
        self.worker = worker
        self.items = load_item_inputs(run, cfg.resolved_inputs())
        self.x = torch.from_numpy(self.items.x).to(worker.device)
        self.val = split_pairs(run, cfg, self.items.n_items)["val"]
        shard = _read_shard(worker.shard)
        self.anchors = torch.from_numpy(shard["anchor_idx"])
        self.others = torch.from_numpy(shard["other_idx"])
        self._spec = ContrastiveSpec(
            input_dim=self.items.x.shape[1], hidden=cfg.hidden, embed_dim=cfg.embed_dim,
            projection_hidden=cfg.projection_hidden, projection_dim=cfg.projection_dim,
            dropout=cfg.dropout)
        core = SimCLR(self._spec)
        core.set_input_stats(torch.from_numpy(self.items.x[self.items.has_vector]))
        self.per_worker = cfg.batch_size // worker.world
        steps = torch.tensor(len(self.anchors) // self.per_worker)
        if worker.world > 1:  # DDP needs the same number of steps on every worker
            dist.all_reduce(steps, op=dist.ReduceOp.MIN)
        self.steps = int(steps)
        if self.steps < 1:
            raise ValueError(f"train_contrastive/{cfg.variant()}: {len(self.anchors)} training "
                             f"pairs on worker {worker.rank}, fewer than one batch of "
                             f"{self.per_worker}")
        return core

    def spec(self):
        return self._spec

    def optimizer(self, model):
        import torch

        return torch.optim.Adam(model.parameters(), lr=self.cfg.lr,
                                weight_decay=self.cfg.weight_decay)

    def scheduler(self, optimizer):
        import torch

        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.cfg.epochs)  # 4.4

    def train_epoch(self, model, optimizer, epoch: int) -> dict:
        import torch

        from stylehub_ray.models.contrastive import pair_loss

        cfg, device = self.cfg, self.worker.device
        model.train()
        perm = torch.randperm(len(self.anchors), generator=torch.Generator().manual_seed(
            cfg.seed * 1_000_003 + epoch * 1009 + self.worker.rank))
        losses = []
        for s in range(self.steps):
            idx = perm[s * self.per_worker:(s + 1) * self.per_worker]  # drop_last: full batches
            a, b = self.anchors[idx].to(device), self.others[idx].to(device)
            ids = (a, b) if cfg.mask_duplicates else (None, None)
            loss = pair_loss(model, self.x[a], self.x[b], cfg.tau, *ids)  # 4.5, Eq. L_batch
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return {"loss": float(np.mean(losses))}

    def validate(self, model, epoch: int) -> dict:
        from stylehub_ray.embed.pair_measures import pair_measures

        emb = model.embed_all(self.x).cpu().numpy()
        m = pair_measures(emb, self.val, self.items.has_vector, ks=(5,),
                          max_anchors=self.cfg.val_anchors, seed=self.cfg.seed)
        return {"val_pos_dist": m["pos_dist"], "val_neg_dist": m["neg_dist"],
                "val_separation": m["separation"], "val_recall5": m["recall@5"]}

    def facts(self) -> dict:
        return {"pairs": {"train": int(len(self.anchors)) * self.worker.world}}
