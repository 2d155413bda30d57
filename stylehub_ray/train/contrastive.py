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
``models/contrastive/<variant>/model.pt``, with the item embeddings in
``embeddings/contrastive/<variant>`` and their FAISS index in ``index/contrastive-<variant>``
(what :mod:`stylehub_ray.eval.similar` serves). DDP through ``ray.train.torch.prepare_model``;
the global batch is split across the workers and each worker's NT-Xent uses its own part.
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
import pyarrow as pa
import pyarrow.compute as pc

from stylehub_ray.run import Run, stable_hash

MODELS = "models/contrastive"
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
    out = asdict(cfg)
    out.update(inputs=cfg.resolved_inputs(), hidden=list(cfg.hidden))
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
# Trained model
# --------------------------------------------------------------------------------------------
def load_contrastive(run: Run, variant: str = "text"):
    """(model on CPU in eval mode, metadata) of a trained variant."""
    import torch

    from stylehub_ray.models.contrastive import ContrastiveSpec, SimCLR

    rel = model_dir(variant)
    if not run.is_complete(rel):
        raise FileNotFoundError(f"{run.uri_of(rel)}: no complete model (train it with "
                                f"`stylehub train contrastive --run {run.uri} --set "
                                f"pairs=...`)")
    with run.fs.open_input_stream(run.path(posixpath.join(rel, "model.pt"))) as f:
        blob = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=False)
    model = SimCLR(ContrastiveSpec.from_dict(blob["spec"]))
    model.load_state_dict(blob["state"])
    return model.eval(), blob["meta"]


def list_variants(run: Run) -> list[str]:
    import pyarrow.fs as pafs

    infos = run.fs.get_file_info(pafs.FileSelector(run.path(MODELS), allow_not_found=True))
    return sorted(posixpath.basename(i.path) for i in infos
                  if i.type == pafs.FileType.Directory
                  and run.is_complete(model_dir(posixpath.basename(i.path))))



def _plan(run: Run, cfg: TrainContrastiveConfig) -> tuple[dict, dict]:
    cfg.validate()
    inputs = {f"pairs/{cfg.pairs}": run.require(f"pairs/{cfg.pairs}",
                                                f"stylehub pairs {cfg.pairs} --run {run.uri}")}
    for rel in input_sources(cfg.resolved_inputs()):
        inputs[rel] = run.require(rel, f"stylehub embed {rel.split('/')[1]} --run {run.uri}")
    return resolved_config(cfg), inputs


def ray_train_name(cfg: TrainContrastiveConfig, config: dict, inputs: dict) -> str:
    """The same config and inputs find the same Ray Train folder, so a crashed step resumes."""
    return f"{cfg.variant()}-{stable_hash(config)}-{stable_hash(inputs)[:8]}"


def build_trainer(run: Run, cfg: TrainContrastiveConfig, *, fail_after_epoch: int | None = None,
                  callbacks=(), storage_path: str | None = None, name: str | None = None):
    """(TorchTrainer, run name) for one variant. ``fail_after_epoch`` makes the workers crash
    after checkpointing that epoch (resume tests only); ``callbacks``, ``storage_path`` and
    ``name`` are for Ray Tune (each trial's folder under the run's ``tune/``)."""
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    from stylehub_ray.ray_utils import ensure_ray

    config, inputs = _plan(run, cfg)
    name = name or ray_train_name(cfg, config, inputs)
    ensure_ray()
    from stylehub_ray.data.ingest import read_table

    n_items = read_table(run, input_sources(cfg.resolved_inputs())[0], ["article_idx"]).num_rows
    train = split_pairs(run, cfg, n_items)["train"]
    # Materialized: on 2 CPUs a TorchTrainer over a dataset with work left can hang.
    dataset = ray.data.from_arrow(train).materialize()
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"run": run.uri, "cfg": config, "fail_after_epoch": fail_after_epoch},
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.workers, use_gpu=cfg.use_gpu,
            resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_path or run.uri_of(RAY_TRAIN_DIR),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            callbacks=list(callbacks)),
        datasets={"train": dataset},
    )
    return trainer, name


def train_contrastive(run: Run, cfg: TrainContrastiveConfig, force: bool = False,
                      log=print) -> dict:
    """Train one variant; publish its best epoch, the item embeddings and their FAISS index."""
    import torch

    variant = cfg.variant()
    config, inputs = _plan(run, cfg)
    outputs = [model_dir(variant), embeddings_dir(variant), index_dir(variant)]
    step = run.step("train_contrastive", variant, config=config, inputs=inputs,
                    outputs=outputs, force=force)
    if step.done:
        log(f"train_contrastive/{variant}: up to date; skipped (--force redoes it)")
        return step.previous() | {"skipped": True}
    name = ray_train_name(cfg, config, inputs)
    if force:
        run.delete(posixpath.join(RAY_TRAIN_DIR, name))  # --force: no resume
    trainer, _ = build_trainer(run, cfg)
    with step:
        with step.time("fit_s"):
            result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"train_contrastive/{variant}: the run reported no checkpoint")
        with result.checkpoint.as_directory() as d:
            state = torch.load(os.path.join(d, "state.pt"), map_location="cpu",
                               weights_only=False)
        meta = {"variant": variant, "config": config, "inputs": cfg.resolved_inputs(),
                "best_epoch": state["best_epoch"], "best": state["best_metrics"],
                "history": state["history"], "select_by": cfg.select_by,
                "pairs": {"train": state["n_train_pairs"]}}
        blob = {"spec": state["spec"], "state": state["best_state"], "meta": meta}
        buf = io.BytesIO()
        torch.save(blob, buf)
        run.write_at(posixpath.join(step.tmp(model_dir(variant)), "model.pt"), buf.getvalue())
        run.write_at(posixpath.join(step.tmp(model_dir(variant)), "history.json"),
               json.dumps(meta, indent=2, default=str).encode())
        with step.time("publish_s"):
            n_indexed = _publish_embeddings(run, step, variant, blob)
        step.counts = {"epochs": {"trained": len(state["history"]), "best": state["best_epoch"],
                                  "resumed_at": state.get("resumed_at", -1)},
                       "items": {"embedded": n_indexed},
                       "pairs": {"train": state["n_train_pairs"]}}
        step.extra["best_metrics"] = state["best_metrics"]
        step.extra["ray_train_path"] = result.path
    run.delete(posixpath.join(RAY_TRAIN_DIR, name))  # complete: nothing left to resume
    b = state["best_metrics"]
    log(f"train_contrastive/{variant}: best epoch {state['best_epoch']} loss {b['loss']:.4f} "
        f"val distance pos {b['val_pos_dist']:.3f} neg {b['val_neg_dist']:.3f} recall@5 "
        f"{b['val_recall5']:.3f} ({step.timings.get('fit_s', 0):.0f}s)")
    return run.entry("train_contrastive", variant)


def _publish_embeddings(run: Run, step, variant: str, blob: dict) -> int:
    """Item embeddings (unit rows) and a flat FAISS inner-product index over the items that
    have an input vector."""
    import torch

    from stylehub_ray.embed import index as I
    from stylehub_ray.embed import vectors as V
    from stylehub_ray.embed.text_model import l2_normalize
    from stylehub_ray.models.contrastive import ContrastiveSpec, SimCLR

    items = load_item_inputs(run, blob["meta"]["inputs"])
    model = SimCLR(ContrastiveSpec.from_dict(blob["spec"]))
    model.load_state_dict(blob["state"])
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


def _train_loop(config: dict) -> None:
    """Ray Train worker: NT-Xent over positive pairs, per-epoch checkpoints and resume."""
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist

    from stylehub_ray.eval.contrastive import pair_measures
    from stylehub_ray.models.contrastive import ContrastiveSpec, SimCLR, pair_loss

    cfg = TrainContrastiveConfig(**{**config["cfg"], "hidden": tuple(config["cfg"]["hidden"])})
    run = Run(config["run"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    torch.manual_seed(cfg.seed)

    items = load_item_inputs(run, cfg.resolved_inputs())
    x = torch.from_numpy(items.x).to(device)
    val = split_pairs(run, cfg, items.n_items)["val"]
    shard = _read_shard(ray.train.get_dataset_shard("train"))
    anchors_t = torch.from_numpy(shard["anchor_idx"])
    others_t = torch.from_numpy(shard["other_idx"])

    spec = ContrastiveSpec(input_dim=items.x.shape[1], hidden=cfg.hidden,
                           embed_dim=cfg.embed_dim, projection_hidden=cfg.projection_hidden,
                           projection_dim=cfg.projection_dim, dropout=cfg.dropout)
    core = SimCLR(spec)
    core.set_input_stats(torch.from_numpy(items.x[items.has_vector]))
    model = ray.train.torch.prepare_model(core)  # to the device; DDP when world > 1
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)  # 4.4

    start_epoch, history, resumed_at = 0, [], -1
    best_state, best_metrics, best_epoch = None, None, -1
    ckpt = ray.train.get_checkpoint()
    if ckpt:  # resume: the same weights, optimizer and schedule as after the epoch
        with ckpt.as_directory() as d:
            st = torch.load(os.path.join(d, "state.pt"), map_location="cpu", weights_only=False)
        core.load_state_dict(st["state"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        start_epoch, history = st["epoch"] + 1, st["history"]
        resumed_at = start_epoch
        best_state, best_metrics, best_epoch = st["best_state"], st["best_metrics"], \
            st["best_epoch"]

    per_worker = cfg.batch_size // world
    steps = torch.tensor(len(anchors_t) // per_worker)
    if world > 1:  # DDP needs the same number of steps on every worker
        dist.all_reduce(steps, op=dist.ReduceOp.MIN)
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"train_contrastive/{cfg.variant()}: {len(anchors_t)} training pairs "
                         f"on worker {rank}, fewer than one batch of {per_worker}")
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(anchors_t), generator=torch.Generator().manual_seed(
            cfg.seed * 1_000_003 + epoch * 1009 + rank))
        losses = []
        for s in range(steps):
            idx = perm[s * per_worker:(s + 1) * per_worker]  # drop_last: full batches only
            a, b = anchors_t[idx].to(device), others_t[idx].to(device)
            ids = (a, b) if cfg.mask_duplicates else (None, None)
            loss = pair_loss(model, x[a], x[b], cfg.tau, *ids)  # 4.5, Eq. L_batch
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()
        emb = core.embed_all(x).cpu().numpy()
        m = pair_measures(emb, val, items.has_vector, ks=(5,), max_anchors=cfg.val_anchors,
                          seed=cfg.seed)
        metrics = {"epoch": epoch, "loss": float(np.mean(losses)),
                   "val_pos_dist": m["pos_dist"], "val_neg_dist": m["neg_dist"],
                   "val_separation": m["separation"], "val_recall5": m["recall@5"],
                   "epoch_s": round(time.perf_counter() - t0, 3)}
        history.append(metrics)
        score = _selection_score(metrics, cfg.select_by)
        if best_metrics is None or score > _selection_score(best_metrics, cfg.select_by):
            best_metrics, best_epoch = dict(metrics), epoch
            best_state = {k: v.detach().cpu().clone() for k, v in core.state_dict().items()}
        if rank == 0:
            with tempfile.TemporaryDirectory() as d:
                torch.save({"spec": spec.as_dict(), "state": core.state_dict(),
                            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                            "epoch": epoch, "history": history, "best_state": best_state,
                            "best_metrics": best_metrics, "best_epoch": best_epoch,
                            "resumed_at": resumed_at,
                            "n_train_pairs": int(len(anchors_t)) * world},
                           os.path.join(d, "state.pt"))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics)  # every worker reports once per epoch (Train V2)
        if config.get("fail_after_epoch") is not None and epoch >= config["fail_after_epoch"]:
            raise RuntimeError(f"injected failure after epoch {epoch} (resume test)")


def _selection_score(metrics: dict, key: str) -> float:
    v = metrics.get(key)
    return float("-inf") if v is None or not np.isfinite(v) else float(v)
