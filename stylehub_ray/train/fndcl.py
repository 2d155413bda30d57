"""FND-CL on Ray: the item-feature precompute (Ray Data) and the training stage (Ray Train).

Stages, each a ``(run, cfg, force, log) -> dict`` function recorded through ``run.step``:

- :func:`prepare_fndcl_items`: Ray Data over ``raw/outfit_items`` images: the frozen trunk
  features of every item (one conv pass gives AlexNet-large's fc7 and AlexNet-small's pooled
  conv features) into ``features/fndcl/items``; a CNN autoencoder on the same images lists
  each item's visually similar items of its category for the replace augmentation
  (``features/fndcl/neighbors``).
- :func:`train_fndcl`: a TorchTrainer over one Polyvore-U set; ``stage`` teacher / student,
  ``loss`` bpr / npair / fnd / fndcl; the variant ``<stage>-<loss>[-<tag>]`` lands in
  ``models/fndcl/<variant>/``. The one Ray Train loop (:mod:`stylehub_ray.train.loop`)
  checkpoints every epoch and resumes after a crash (the Ray Train folder is kept under
  ``_ray_train/fndcl/`` until the step completes); :class:`FNDCLRecipe` is this model's part:
  the batches (negatives, augmented views) and validation. The student reads the frozen
  teacher's published model.

The model math (forward, losses, the teacher's distillation weights) lives in
``stylehub_ray.models.fndcl``; this module moves data.
"""

from __future__ import annotations

import logging
import os
import posixpath
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stylehub_ray.models.artifacts import FORMAT, load_model, write_artifact
from stylehub_ray.run import Run
from stylehub_ray.train import loop as L

logger = logging.getLogger(__name__)

ITEMS = "features/fndcl/items"
NEIGHBORS = "features/fndcl/neighbors"
MODEL = "fndcl"
MODELS = f"models/{MODEL}"
RAY_TRAIN_DIR = "_ray_train/fndcl"
STAGES = ("teacher", "student")
LOSSES = ("bpr", "npair", "fnd", "fndcl")
# Metrics every epoch reports (Tune and early stopping key on these names).
REPORTED_METRICS = ("epoch", "loss", "val_auc", "val_ndcg", "epoch_s")
CATEGORY_ORDER = ("top", "bottom", "shoe")
# Cold-start set of each training set (4.3): 630 -> 53, 519 -> 32.
COLD_SET = {"630": "53", "519": "32"}


# --------------------------------------------------------------------------------------------
# Configs (the lead moves these into config.py)
# --------------------------------------------------------------------------------------------
@dataclass
class FNDCLItemsConfig:
    """`stylehub features fndcl-items`: frozen trunk features + replace neighbours."""

    # Polyvore-U sets to featurize (a training set and its cold starters); empty: all.
    sets: tuple[str, ...] = ("630", "53")
    image_size: int = 64  # CNN input side (generated images are 64 px; real ones 291 px)
    # Frozen trunks to precompute: the teacher's pretrained EfficientNet-Lite2 by default;
    # AlexNet sizes (large, m, s, xs) only with ImageNet weights (weights_path).
    backbones: tuple[str, ...] = ("lite2",)
    weights_path: str = ""  # torchvision alexnet ImageNet .pth; empty: seeded random init
    seed: int = 0
    batch_size: int = 128
    actors: int = 2  # featurizing actors, one CPU each
    ae_size: int = 32  # autoencoder input side
    ae_latent: int = 32
    ae_epochs: int = 8
    neighbors: int = 5  # replace candidates per item

    def validate(self) -> None:
        from stylehub_ray.models.fndcl import FEATURE_DIMS, LITE_DIMS

        for b in self.backbones:
            if b not in FEATURE_DIMS | LITE_DIMS:
                raise ValueError(f"fndcl_items.backbones: {b!r} not in "
                                 f"{sorted(FEATURE_DIMS | LITE_DIMS)}")
        if self.image_size < 32 or self.ae_size % 8 or self.neighbors < 1:
            raise ValueError("fndcl_items: image_size >= 32, ae_size a multiple of 8, "
                             "neighbors >= 1 expected")


@dataclass
class TrainFNDCLConfig:
    """`stylehub train fndcl`: one teacher or student variant on one Polyvore-U set."""

    stage: str = "teacher"
    loss: str = "npair"
    tag: str = ""  # appended to the variant name, e.g. "hard"
    set_name: str = "630"
    # "": lite2 (pretrained EfficientNet-Lite2) for the teacher, tiny (a CNN as small as the
    # paper's XS, from scratch) for the students
    backbone: str = ""
    teacher: str = ""  # variant of the frozen teacher; "": teacher-npair[-tag]
    # None: frozen precomputed features for a pretrained trunk (the teacher), end to end from
    # the images otherwise (the students: nothing stays at its random init)
    frozen_features: bool | None = None
    image_size: int = 32  # end-to-end mode only: the CNN's input side
    dim: int = 128
    heads: int = 8
    hidden: int = 0  # the item head's width; 0: 1024 for the teacher, 256 for the students
    epochs: int = 8
    batch_size: int = 32
    lr: float = 0.05  # the students' (SGD with momentum, 4.1.4)
    # The teacher's, picked on its half of val (demo outfits, seed 0, 4 epochs: lr 0.05 ->
    # AUC 86.31, 0.02 -> 88.98, 0.01 -> 89.78; BENCHMARKS.md): its frozen-feature head
    # overshoots at the students' 0.05
    teacher_lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    tau_fnd: float = 0.1
    tau_cl: float = 0.1
    lam: float = 0.2
    alpha: float | None = None  # None: 1.25 on fixed-length sets (630), 1.5 on variable (519)
    augmentations: tuple[str, ...] = ()  # (): (erase, replace) fixed / (erase, erase) variable
    hard_negative_share: float = 0.0  # 4.4: 0.5 trains half the negatives on hard ones
    # FND / FND-CL only: before distilling, check on val that the teacher beats an N-pair
    # student trained without distillation for the same epochs (trained here if missing),
    # and stop if it does not: a weaker teacher cannot help
    teacher_check: bool = True
    workers: int = 1
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    seed: int = 0

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"train_fndcl.stage must be one of {STAGES}, got {self.stage!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"train_fndcl.loss must be one of {LOSSES}, got {self.loss!r}")
        if self.loss in ("fnd", "fndcl") and self.stage != "student":
            raise ValueError(f"train_fndcl.loss={self.loss} distils a teacher: needs "
                             f"stage=student")
        if len(self.resolved_augmentations()) != 2:
            raise ValueError("train_fndcl.augmentations: expected two, e.g. erase,replace")
        from stylehub_ray.models.fndcl import AUGMENTATIONS, BACKBONE_DIMS

        for a in self.resolved_augmentations():
            if a not in AUGMENTATIONS:
                raise ValueError(f"train_fndcl.augmentations: {a!r} not in {AUGMENTATIONS}")
        if tuple(self.resolved_augmentations()) == ("identity", "identity"):
            raise ValueError("train_fndcl.augmentations: two identities give no second view")
        if self.resolved_backbone() not in BACKBONE_DIMS:
            raise ValueError(f"train_fndcl.backbone {self.backbone!r}: expected one of "
                             f"{sorted(BACKBONE_DIMS)}")
        if self.resolved_backbone().startswith("tiny") and self.resolved_frozen():
            raise ValueError("train_fndcl: the tiny trunk has no pretrained weights; frozen "
                             "it would stay at its random init (frozen_features=false)")
        if not 0.0 <= self.hard_negative_share <= 1.0:
            raise ValueError("train_fndcl.hard_negative_share must be in [0, 1]")
        if self.epochs < 1 or self.batch_size < 2 or self.workers < 1:
            raise ValueError("train_fndcl: epochs >= 1, batch_size >= 2, workers >= 1 expected")

    # Paper defaults that depend on the set (4.1.4).
    def variable_set(self) -> bool:
        from stylehub_ray.data.polyvore import is_variable_set

        return is_variable_set(self.set_name)

    def resolved_alpha(self) -> float:
        if self.alpha is not None:
            return float(self.alpha)
        return 1.5 if self.variable_set() else 1.25

    def resolved_augmentations(self) -> tuple[str, ...]:
        if self.augmentations:
            return tuple(self.augmentations)
        return ("erase", "erase") if self.variable_set() else ("erase", "replace")

    def resolved_backbone(self) -> str:
        return self.backbone or ("lite2" if self.stage == "teacher" else "tiny")

    def resolved_frozen(self) -> bool:
        from stylehub_ray.models.fndcl import LITE_DIMS

        if self.frozen_features is not None:
            return bool(self.frozen_features)
        return self.resolved_backbone() in LITE_DIMS

    def resolved_lr(self) -> float:
        return self.teacher_lr if self.stage == "teacher" else self.lr

    def resolved_hidden(self) -> int:
        return self.hidden or (1024 if self.stage == "teacher" else 256)

    def variant(self) -> str:
        return f"{self.stage}-{self.loss}" + (f"-{self.tag}" if self.tag else "")

    def teacher_variant(self) -> str:
        return self.teacher or ("teacher-npair" + (f"-{self.tag}" if self.tag else ""))

    def val_kind(self) -> str:
        """The val negatives that pick the epoch: a run trained on hard negatives (4.4) is
        measured on hard ones, so it selects on them too."""
        return "nega_hard" if self.hard_negative_share > 0 else "nega"

    def val_half(self) -> int:
        """4.1.1: the teacher selects on one half of val, the student on the other."""
        return 0 if self.stage == "teacher" else 1


def resolved_train_config(cfg: TrainFNDCLConfig) -> dict:
    """The config as the manifest records it, set-dependent defaults filled in (and the
    artifact format: a model saved in an older format is retrained, not loaded)."""
    out = asdict(cfg)
    out.update(alpha=cfg.resolved_alpha(), augmentations=list(cfg.resolved_augmentations()),
               backbone=cfg.resolved_backbone(), frozen_features=cfg.resolved_frozen(),
               hidden=cfg.resolved_hidden(),
               teacher=cfg.teacher_variant() if cfg.loss in ("fnd", "fndcl") else "",
               # Only distillation checks a teacher: an N-pair student is the same model
               # whether the check trained it or a run asked for it.
               teacher_check=cfg.teacher_check and cfg.loss in ("fnd", "fndcl"),
               artifact_format=FORMAT)
    return out


# --------------------------------------------------------------------------------------------
# Data: one Polyvore-U set as arrays (shared by training and evaluation)
# --------------------------------------------------------------------------------------------
@dataclass
class OutfitSet:
    """One set's outfits as (n, 4) global item indices (top, top2, bottom, shoe; -1 empty)."""

    set_name: str
    n_users: int
    offsets: dict[str, int]  # category -> first global index
    n_items: int
    tables: dict[tuple[str, str], dict[str, np.ndarray]]  # (split, kind) -> row, user, outfits

    def get(self, split: str, kind: str) -> dict[str, np.ndarray]:
        key = (split, kind)
        if key not in self.tables:
            return {"row": np.zeros(0, np.int64), "user": np.zeros(0, np.int64),
                    "outfits": np.zeros((0, 4), np.int64)}
        return self.tables[key]

    def ratio(self, split: str, kind: str) -> int:
        """Negatives per positive row (the release's block convention)."""
        n_pos = len(self.get(split, "posi")["row"])
        return max(1, len(self.get(split, kind)["row"]) // max(n_pos, 1))


def item_counts(run: Run, set_name: str) -> dict[str, int]:
    from stylehub_ray.data.ingest import read_table

    items = read_table(run, "raw/outfit_items", ["set_name", "category", "item_id"])
    items = items.filter(pc.equal(items["set_name"], set_name))
    counts = {}
    for cat in CATEGORY_ORDER:
        ids = items.filter(pc.equal(items["category"], cat))["item_id"].to_numpy()
        counts[cat] = int(ids.max()) + 1 if len(ids) else 0
    return counts


def load_outfit_set(run: Run, set_name: str) -> OutfitSet:
    """Read ``raw/outfits`` of one set into arrays (rows sorted as in their files)."""
    from stylehub_ray.data.ingest import read_table

    counts = item_counts(run, set_name)
    if not sum(counts.values()):
        raise ValueError(f"{run.uri}: raw/outfit_items has no items of set {set_name!r}")
    offsets, start = {}, 0
    for cat in CATEGORY_ORDER:
        offsets[cat] = start
        start += counts[cat]
    t = read_table(run, "raw/outfits")
    t = t.filter(pc.equal(t["set_name"], set_name))
    users_max = 0
    tables: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for split in ("train", "val", "test"):
        for kind in ("posi", "nega", "nega_hard"):
            part = t.filter(pc.and_(pc.equal(t["split"], split), pc.equal(t["kind"], kind)))
            if part.num_rows == 0:
                continue
            part = part.sort_by("row")
            col = {c: part[c].to_numpy().astype(np.int64) for c in
                   ("row", "user", "top", "top2", "bottom", "shoe")}
            outfits = np.stack([
                col["top"] + offsets["top"],
                np.where(col["top2"] >= 0, col["top2"] + offsets["top"], -1),
                col["bottom"] + offsets["bottom"],
                col["shoe"] + offsets["shoe"],
            ], axis=1)
            tables[(split, kind)] = {"row": col["row"], "user": col["user"], "outfits": outfits}
            users_max = max(users_max, int(col["user"].max()) + 1)
    return OutfitSet(set_name, users_max, offsets, start, tables)


def val_half_rows(data: OutfitSet, half: int, kind: str = "nega") -> tuple[np.ndarray, ...]:
    """(users, outfits, labels) of one half of ``val`` (4.1.1): each user's val positives
    alternate between the halves; a negative follows the positive its block belongs to."""
    pos = data.get("val", "posi")
    neg = data.get("val", kind)
    order = np.lexsort((pos["row"], pos["user"]))
    rank = np.empty(len(order), np.int64)
    # rank of each positive among its user's positives
    u_sorted = pos["user"][order]
    first = np.r_[0, np.flatnonzero(np.diff(u_sorted)) + 1]
    starts = np.repeat(first, np.diff(np.r_[first, len(order)]))
    rank[order] = np.arange(len(order)) - starts
    pos_half = rank % 2
    keep_pos = pos_half == half
    ratio = data.ratio("val", kind)
    owner = neg["row"] // ratio  # row of the positive this negative belongs to
    row_to_half = np.full(int(pos["row"].max()) + 1 if len(pos["row"]) else 0, -1)
    row_to_half[pos["row"]] = pos_half
    keep_neg = row_to_half[np.minimum(owner, len(row_to_half) - 1)] == half
    users = np.r_[pos["user"][keep_pos], neg["user"][keep_neg]]
    outfits = np.r_[pos["outfits"][keep_pos], neg["outfits"][keep_neg]]
    labels = np.r_[np.ones(keep_pos.sum(), np.int64), np.zeros(keep_neg.sum(), np.int64)]
    return users, outfits, labels


def _outfit_keys(outfits: np.ndarray) -> list[tuple[int, ...]]:
    """Order-free identity of (n, 4) outfits: the two tops sorted, then bottom and shoe."""
    tops = np.sort(outfits[:, :2], axis=1)
    return [tuple(r) for r in np.c_[tops, outfits[:, 2:]].tolist()]


def positive_owners(pos_users: np.ndarray, pos_outfits: np.ndarray,
                    negatives: np.ndarray) -> np.ndarray:
    """(M, k) the users whose training positives include each negative outfit (M, 4), -1
    padded (k >= 1): a hard negative is another user's positive, and the N-pair batch shares
    every negative with every pair, so it reaches its owner too."""
    owners: dict[tuple[int, ...], set[int]] = {}
    for key, user in zip(_outfit_keys(pos_outfits), pos_users.tolist()):
        owners.setdefault(key, set()).add(user)
    found = [sorted(owners.get(key, ())) for key in _outfit_keys(negatives)]
    k = max([1] + [len(f) for f in found])
    out = np.full((len(found), k), -1, np.int64)
    for i, f in enumerate(found):
        out[i, :len(f)] = f
    return out


def valid_negatives(owners, users, negatives):
    """(B, N) bool: False where batch negative n (a row of ``owners``, :func:`positive_owners`)
    is a training positive of pair b's user. ``users`` (B,), ``negatives`` (N,) tensors."""
    return ~(owners[negatives][None, :, :] == users[:, None, None]).any(-1)


def load_item_table(run: Run, data: OutfitSet, backbone: str) -> np.ndarray:
    """(n_items, F) float32 precomputed trunk features of one set (zeros for items whose
    image is missing)."""
    import pyarrow.dataset as pads

    col = f"feat_{backbone}"
    ds = pads.dataset(run.path(ITEMS), filesystem=run.fs, format="parquet",
                      ignore_prefixes=["_", "."])
    if col not in ds.schema.names:
        raise ValueError(f"{run.uri}/{ITEMS} has no {col}: rerun the items stage with "
                         f"backbones including {backbone!r}")
    t = ds.to_table(columns=["category", "item_id", col],
                    filter=pc.field("set_name") == data.set_name)
    if t.num_rows == 0:
        raise ValueError(f"{run.uri}/{ITEMS} has no items of set {data.set_name!r}: rerun the "
                         f"items stage with sets including it")
    feats = t[col].combine_chunks()
    dim = feats.type.list_size
    values = feats.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    out = np.zeros((data.n_items, dim), np.float32)
    cats = t["category"].to_pylist()
    gidx = np.array([data.offsets[c] for c in cats]) + t["item_id"].to_numpy()
    out[gidx] = values
    return out


def load_item_images(run: Run, data: OutfitSet, size: int,
                     only: np.ndarray | None = None) -> np.ndarray:
    """(n_items, size, size, 3) uint8 item images of one set (end-to-end mode, efficiency);
    with ``only`` (global indices), the other rows stay blank (white)."""
    from PIL import Image

    from stylehub_ray.data.ingest import read_table

    t = read_table(run, "raw/outfit_items", ["set_name", "category", "item_id", "path",
                                             "status"])
    t = t.filter(pc.equal(t["set_name"], data.set_name))
    out = np.full((data.n_items, size, size, 3), 255, np.uint8)
    wanted = None if only is None else set(np.asarray(only).tolist())
    for cat, iid, path, status in zip(*(t[c].to_pylist() for c in
                                        ("category", "item_id", "path", "status"))):
        if wanted is not None and data.offsets[cat] + iid not in wanted:
            continue
        if status == "present":
            with Image.open(path) as im:
                out[data.offsets[cat] + iid] = np.asarray(
                    im.convert("RGB").resize((size, size), Image.BILINEAR))
    return out


def item_inputs(run: Run, data: OutfitSet, spec, image_size: int, device=None):
    """(item table, transform) a model of ``spec`` scores one set with: its precomputed frozen
    features and None, or the item images (uint8) and the preprocessing its trunk expects."""
    import torch

    from stylehub_ray.models.fndcl import preprocess_images

    if spec.frozen_features:
        return torch.from_numpy(load_item_table(run, data, spec.backbone)), None
    images = torch.from_numpy(load_item_images(run, data, image_size))

    def transform(rows: torch.Tensor) -> torch.Tensor:
        x = preprocess_images(rows.cpu(), image_size, spec.backbone)
        return x if device is None else x.to(device)

    return images, transform


def load_neighbors(run: Run, data: OutfitSet) -> np.ndarray | None:
    """(n_items, k) global indices of each item's replace candidates, -1 padded."""
    if not run.is_complete(NEIGHBORS):
        return None
    import pyarrow.dataset as pads

    ds = pads.dataset(run.path(NEIGHBORS), filesystem=run.fs, format="parquet",
                      ignore_prefixes=["_", "."])
    t = ds.to_table(filter=pc.field("set_name") == data.set_name)
    if t.num_rows == 0:
        return None
    nb = t["neighbors"].combine_chunks()
    k = nb.type.list_size
    values = nb.values.to_numpy(zero_copy_only=False).reshape(-1, k)
    offs = np.array([data.offsets[c] for c in t["category"].to_pylist()])
    out = np.full((data.n_items, k), -1, np.int64)
    out[offs + t["item_id"].to_numpy()] = np.where(values >= 0, values + offs[:, None], -1)
    return out


# --------------------------------------------------------------------------------------------
# Stage: item features (Ray Data) + replace neighbours (autoencoder)
# --------------------------------------------------------------------------------------------
class _ItemFeaturizer:
    """Ray Data actor: decode images, run the frozen trunks (pretrained EfficientNet-Lite;
    AlexNet sizes sharing one conv pass), keep a thumbnail for the autoencoder. Built once per
    actor (random inits are seeded, so every actor agrees)."""

    def __init__(self, backbones: tuple[str, ...], image_size: int, weights_path: str,
                 seed: int, ae_size: int):
        import torch

        from stylehub_ray.models.fndcl import LITE_DIMS, make_lite, make_trunks

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        alexnets = tuple(b for b in backbones if b not in LITE_DIMS)
        self.trunks = make_trunks(alexnets, seed, weights_path) if alexnets else {}
        self.lites = {b: make_lite(b) for b in backbones if b in LITE_DIMS}  # ImageNet weights
        self.image_size, self.ae_size = image_size, ae_size

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        import torch
        from PIL import Image

        from stylehub_ray.models.fndcl import preprocess_images, trunk_features

        big, thumbs = [], []
        for path in batch["path"]:
            with Image.open(path) as im:
                rgb = im.convert("RGB")
                big.append(np.asarray(rgb.resize((self.image_size,) * 2, Image.BILINEAR)))
                thumbs.append(np.asarray(rgb.resize((self.ae_size,) * 2, Image.BILINEAR)))
        pixels = torch.from_numpy(np.stack(big))
        feats = {}
        if self.trunks:
            feats = trunk_features(self.trunks, preprocess_images(pixels, self.image_size))
        with torch.no_grad():
            for name, net in self.lites.items():
                feats[name] = net(preprocess_images(pixels, self.image_size, name))
        out = {k: pa.array(batch[k]) for k in ("set_name", "category", "item_id")}
        # Fixed-size list columns (not Ray's tensor extension type): plain Parquet that
        # pyarrow alone reads back.
        for size, f in feats.items():
            out[f"feat_{size}"] = _fixed_list(f.numpy().astype(np.float32))
        out["thumb"] = _fixed_list(np.stack(thumbs).reshape(len(thumbs), -1))
        return pa.table(out)


def _fixed_list(values: np.ndarray) -> pa.Array:
    """(n, d) -> FixedSizeList column."""
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])


def _ingest_fingerprint(run: Run) -> str:
    entry = run.entry("ingest")
    if not entry or entry.get("status") != "complete" or not run.is_complete("raw/outfits"):
        raise FileNotFoundError(f"{run.uri}: no complete Polyvore-U ingest (run `stylehub "
                                f"ingest SOURCE --run {run.uri}` first)")
    return entry["fingerprint"]


def prepare_fndcl_items(run: Run, cfg: FNDCLItemsConfig, force: bool = False) -> dict:
    """Frozen item features (Ray Data) and replace neighbours of the configured sets."""
    from stylehub_ray.data.ingest import read_table

    cfg.validate()
    fp = _ingest_fingerprint(run)
    step = run.step("fndcl_items", config=asdict(cfg),
                    inputs={"raw/outfit_items": fp, "raw/outfits": fp},
                    outputs=[ITEMS, NEIGHBORS], force=force)
    if step.done:
        logger.info(f"fndcl_items: {run.uri} is up to date; skipped (--force redoes it)")
        return step.previous() | {"skipped": True}
    import ray

    from stylehub_ray.ray_utils import ensure_ray

    ensure_ray()
    items = read_table(run, "raw/outfit_items")
    if cfg.sets:
        items = items.filter(pc.is_in(items["set_name"], pa.array(list(cfg.sets))))
    present = items.filter(pc.equal(items["status"], "present"))
    if present.num_rows == 0:
        raise ValueError(f"{run.uri}: raw/outfit_items has no present images for sets "
                         f"{cfg.sets or 'all'}")
    with step:
        with step.time("features_s"):
            ds = ray.data.from_arrow(present.select(["set_name", "category", "item_id", "path"]))
            ds = ds.repartition(max(cfg.actors, present.num_rows // 2048))
            feats = ds.map_batches(
                _ItemFeaturizer,
                fn_constructor_args=(tuple(cfg.backbones), cfg.image_size, cfg.weights_path,
                                     cfg.seed, cfg.ae_size),
                batch_size=cfg.batch_size,
                compute=ray.data.ActorPoolStrategy(size=max(1, cfg.actors)),
                # Half a CPU each: on a 2-CPU instance two whole-CPU actors would leave none
                # for the repartition feeding them (a silent hang); each runs one thread.
                num_cpus=0.5, batch_format="numpy",
            ).materialize()
            feats.drop_columns(["thumb"]).write_parquet(step.tmp_uri(ITEMS))
        with step.time("autoencoder_s"):
            thumbs_t = feats.select_columns(
                ["set_name", "category", "item_id", "thumb"]).to_arrow_refs()
            thumbs_t = pa.concat_tables(ray.get(thumbs_t))
            s = cfg.ae_size
            thumbs = thumbs_t["thumb"].combine_chunks().values.to_numpy().astype(
                np.uint8).reshape(-1, s, s, 3)
            nb_parts, history = replace_neighbors(run, thumbs_t, thumbs, cfg)
            import pyarrow.parquet as pq

            path = posixpath.join(step.tmp(NEIGHBORS), "neighbors.parquet")
            pq.write_table(pa.concat_tables(nb_parts), path, filesystem=run.fs)
        step.counts = {"items": {"featurized": present.num_rows,
                                 "missing_images": items.num_rows - present.num_rows}}
        step.extra["autoencoder_mse"] = [round(h, 5) for h in history]
    logger.info(f"fndcl_items: {present.num_rows} items featurized ({', '.join(cfg.backbones)}); "
                f"autoencoder mse {history[0]:.4f} -> {history[-1]:.4f}")
    return run.entry("fndcl_items")


def training_items(run: Run, thumbs_t: pa.Table) -> np.ndarray:
    """(n,) bool over the rows of ``thumbs_t`` (set_name, category, item_id): True for the
    items that appear in their set's training outfits."""
    from stylehub_ray.data.ingest import read_table

    outfits = read_table(run, "raw/outfits", ["set_name", "split", "top", "top2", "bottom",
                                              "shoe"])
    outfits = outfits.filter(pc.equal(outfits["split"], "train"))
    sets = thumbs_t["set_name"].to_numpy(zero_copy_only=False)
    cats = thumbs_t["category"].to_numpy(zero_copy_only=False)
    ids = thumbs_t["item_id"].to_numpy()
    mask = np.zeros(len(ids), bool)
    for set_name in sorted(set(sets.tolist())):
        o = outfits.filter(pc.equal(outfits["set_name"], set_name))
        train_ids = {
            "top": np.union1d(o["top"].to_numpy(), o["top2"].to_numpy()),
            "bottom": np.unique(o["bottom"].to_numpy()),
            "shoe": np.unique(o["shoe"].to_numpy()),
        }
        for cat in CATEGORY_ORDER:
            sel = (sets == set_name) & (cats == cat)
            mask[sel] = np.isin(ids[sel], train_ids[cat])
    return mask


def replace_neighbors(run: Run, thumbs_t: pa.Table, thumbs: np.ndarray,
                      cfg: FNDCLItemsConfig) -> tuple[list[pa.Table], list[float]]:
    """The replace augmentation's candidates (3.3.2): a CNN autoencoder fitted on the
    thumbnails of the training items only (val and test images stay unseen), then per (set,
    category) each item's ``cfg.neighbors`` nearest training items in its latent space (so a
    replaced view never brings a validation or test item into training). Returns the
    neighbour tables and the autoencoder's loss per epoch."""
    from stylehub_ray.models.autoencoder import encode, fit_autoencoder, nearest_neighbors

    train = training_items(run, thumbs_t)
    ae, history = fit_autoencoder(thumbs[train], latent=cfg.ae_latent, size=cfg.ae_size,
                                  epochs=cfg.ae_epochs, seed=cfg.seed)
    latent = encode(ae, thumbs)
    sets = thumbs_t["set_name"].to_numpy(zero_copy_only=False)
    cats = thumbs_t["category"].to_numpy(zero_copy_only=False)
    ids = thumbs_t["item_id"].to_numpy()
    k = cfg.neighbors
    parts = []
    for set_name in sorted(set(sets.tolist())):
        for cat in CATEGORY_ORDER:
            sel = np.flatnonzero((sets == set_name) & (cats == cat))
            if not len(sel):
                continue
            cand = np.flatnonzero(train[sel])
            nb = nearest_neighbors(latent[sel], cand, k)  # positions within sel
            nb_ids = np.where(nb >= 0, ids[sel][np.maximum(nb, 0)], -1)
            parts.append(pa.table({
                "set_name": pa.array([set_name] * len(sel), pa.string()),
                "category": pa.array([cat] * len(sel), pa.string()),
                "item_id": pa.array(ids[sel], pa.int32()),
                "neighbors": pa.FixedSizeListArray.from_arrays(
                    pa.array(nb_ids.ravel(), pa.int32()), k),
            }))
    return parts, history


# --------------------------------------------------------------------------------------------
# Stage: training (Ray Train)
# --------------------------------------------------------------------------------------------
def _model_dir(variant: str) -> str:
    return f"{MODELS}/{variant}"


def _plan(run: Run, cfg: TrainFNDCLConfig) -> tuple[str, dict, dict, str]:
    """(output, resolved config, input fingerprints, teacher variant) of a training step."""
    cfg.validate()
    out = _model_dir(cfg.variant())
    fp = _ingest_fingerprint(run)
    inputs = {"raw/outfits": fp}
    if cfg.resolved_frozen():
        inputs[ITEMS] = run.require(ITEMS, f"stylehub train fndcl --run {run.uri}")
    if "replace" in cfg.resolved_augmentations() and cfg.loss == "fndcl":
        inputs[NEIGHBORS] = run.require(NEIGHBORS, f"stylehub train fndcl --run {run.uri}")
    teacher = ""
    if cfg.loss in ("fnd", "fndcl"):
        teacher = cfg.teacher_variant()
        inputs[_model_dir(teacher)] = run.require(
            _model_dir(teacher), f"stylehub train fndcl --run {run.uri} --set stage=teacher")
    return out, resolved_train_config(cfg), inputs, teacher


def build_trainer(run: Run, cfg: TrainFNDCLConfig, *, name: str | None = None,
                  storage_path: str | None = None, **options):
    """(TorchTrainer, run name) for one variant. ``storage_path`` / ``name`` replace the
    default Ray Train folder ``_ray_train/fndcl/<name>`` (a Tune trial keeps its own under
    ``tune/``); ``options`` as :func:`stylehub_ray.train.loop.build_trainer` takes them
    (``fail_after_epoch``: crash after that epoch, resume tests only; ``callbacks``: Ray
    Tune's TuneReportCallback; ``gpus_per_worker``)."""
    _out, config, inputs, teacher = _plan(run, cfg)
    name = name or L.ray_train_name(cfg.variant(), config, inputs)
    trainer = L.build_trainer(FNDCLRecipe(run.uri, cfg, teacher), name=name,
                              storage_path=storage_path or run.uri_of(RAY_TRAIN_DIR), **options)
    return trainer, name


def train_fndcl(run: Run, cfg: TrainFNDCLConfig, force: bool = False) -> dict:
    """Train one variant with a Ray TorchTrainer; publish the best epoch (by val AUC on this
    stage's half of val) as ``models/fndcl/<variant>/``."""
    variant = cfg.variant()
    out, config, inputs, teacher = _plan(run, cfg)
    step = run.step("train_fndcl", variant, config=config, inputs=inputs, outputs=[out],
                    force=force)
    if step.done:
        logger.info(f"train_fndcl/{variant}: up to date; skipped (--force redoes it)")
        return step.previous() | {"skipped": True}
    name = L.ray_train_name(variant, config, inputs)
    if force:
        run.delete(posixpath.join(RAY_TRAIN_DIR, name))  # --force: no resume
    trainer, _ = build_trainer(run, cfg)
    with step:
        if teacher and cfg.teacher_check:
            with step.time("teacher_check_s"):
                step.extra["teacher_check"] = check_teacher(run, cfg)
        with step.time("fit_s"):
            art, path = L.fit(trainer, MODEL, {"variant": variant, "config": config,
                                               "teacher": teacher})
        meta = art.meta
        meta["n_users"] = art.spec.n_users
        write_artifact(run, step.tmp(out), art)
        step.counts = {"epochs": {"trained": len(meta["history"]), "best": meta["best_epoch"],
                                  "resumed_at": meta["resumed_at"],
                                  "restarts": meta.get("restarts", 0)}}
        step.extra["best_metrics"] = meta["best"]
        step.extra["ray_train_path"] = path
    run.delete(posixpath.join(RAY_TRAIN_DIR, name))  # complete: nothing left to resume
    b = meta["best"]
    logger.info(f"train_fndcl/{variant}: best epoch {meta['best_epoch']} val_auc "
                f"{b['val_auc']:.4f} val_ndcg {b['val_ndcg']:.4f} "
                f"({step.timings.get('fit_s', 0):.0f}s)")
    return run.entry("train_fndcl", variant)


class TeacherNotStronger(RuntimeError):
    """The teacher does not beat a student trained without distillation: FND would distil
    from a weaker model, which cannot help (issue 19)."""


def val_auc_of(run: Run, variant: str, data: OutfitSet, half: int, kind: str) -> float:
    """Per-user AUC of a published variant on one half of val (:func:`val_half_rows`)."""
    import torch

    from stylehub_ray.metrics import per_user_auc_ndcg

    model, spec, meta = load_model(run, MODEL, variant)
    table, transform = item_inputs(run, data, spec, meta["config"]["image_size"])
    users, outfits, labels = val_half_rows(data, half, kind)
    scores = model.score_outfits(table, torch.from_numpy(users), torch.from_numpy(outfits),
                                 transform).numpy()
    return per_user_auc_ndcg(users, labels, scores)["auc"]


def check_teacher(run: Run, cfg: TrainFNDCLConfig) -> dict:
    """Before distilling: the teacher must beat an N-pair student of the same size trained
    without distillation for the same epochs (``student-npair[-tag]``, trained here when it is
    missing), on the students' half of val (the teacher never selected on it), with the val
    negatives this run selects on. Raises :class:`TeacherNotStronger` when it does not."""
    from dataclasses import replace

    baseline = replace(cfg, stage="student", loss="npair", teacher="", teacher_check=False)
    train_fndcl(run, baseline)  # skipped when up to date
    data = load_outfit_set(run, cfg.set_name)
    kind, half = cfg.val_kind(), cfg.val_half()
    t_variant, s_variant = cfg.teacher_variant(), baseline.variant()
    t_auc = val_auc_of(run, t_variant, data, half, kind)
    s_auc = val_auc_of(run, s_variant, data, half, kind)
    result = {"teacher": t_variant, "teacher_val_auc": t_auc, "student": s_variant,
              "student_val_auc": s_auc, "val_half": half, "val_negatives": kind}
    if not t_auc > s_auc:
        raise TeacherNotStronger(
            f"{cfg.variant()}: the teacher {t_variant} (val AUC {100 * t_auc:.2f}) does not beat "
            f"{s_variant}, the same student trained without distillation for {cfg.epochs} "
            f"epochs (val AUC {100 * s_auc:.2f}), on half {half} of val ({kind}); distilling "
            f"from a weaker teacher cannot help: train a stronger teacher (more epochs, "
            f"another trunk) or pass --set teacher_check=false to distil anyway")
    logger.info(f"{cfg.variant()}: teacher {t_variant} val AUC {100 * t_auc:.2f} beats "
                f"{s_variant} {100 * s_auc:.2f}; distilling")
    return result


@dataclass
class FNDCLRecipe(L.Recipe):
    """FND-CL's part of the Ray Train loop (no Ray here): each epoch a seeded shard of the
    training positives, each with its own negative (hard with probability
    ``hard_negative_share``, 4.4) and, for FND-CL, two augmented views (3.3); the loss is
    :func:`stylehub_ray.models.fndcl.training_loss`; validation on this stage's half of val."""

    teacher: str = ""  # the frozen teacher's variant (FND / FND-CL students)

    model = MODEL
    select_by = "val_auc"
    cfg: TrainFNDCLConfig

    @property
    def find_unused_parameters(self) -> bool:
        """Only FND-CL's loss uses the projection head g; DDP must not wait for it."""
        return self.cfg.loss != "fndcl"

    def setup(self, worker: L.Worker):
        import torch

        from stylehub_ray.models import fndcl as M

        cfg, run = self.cfg, Run(self.run)
        self.worker, device = worker, worker.device
        data = load_outfit_set(run, cfg.set_name)
        backbone, frozen = cfg.resolved_backbone(), cfg.resolved_frozen()
        self._spec = M.ModelSpec(n_users=data.n_users, backbone=backbone, dim=cfg.dim,
                                 heads=cfg.heads, hidden=cfg.resolved_hidden(),
                                 frozen_features=frozen)
        table, self.transform = item_inputs(run, data, self._spec, cfg.image_size, device)
        self.table = table.to(device)
        neighbors = load_neighbors(run, data)
        self.neighbors = torch.from_numpy(neighbors) if neighbors is not None else None
        model = M.FNDCLModel(self._spec)
        if not frozen and backbone in M.LITE_DIMS:  # fine-tuning starts from ImageNet
            model.item_encoder.trunk.load_state_dict(M.make_lite(backbone).state_dict())
        if frozen:  # standardise with the items of the training outfits only
            used = np.unique(np.r_[data.get("train", "posi")["outfits"].ravel(),
                                   data.get("train", "nega")["outfits"].ravel()])
            model.item_encoder.set_feature_stats(
                self.table[torch.from_numpy(used[used >= 0])].cpu())

        self.pos = data.get("train", "posi")
        neg_sets = [data.get("train", "nega"), data.get("train", "nega_hard")]
        self.ratios = [data.ratio("train", "nega"), data.ratio("train", "nega_hard")]
        self.neg_offset = len(neg_sets[0]["row"])  # hard negatives follow the random ones
        self.n_hard = len(neg_sets[1]["row"])
        if cfg.hard_negative_share > 0 and self.n_hard == 0:
            raise ValueError(f"set {cfg.set_name}: hard_negative_share > 0 but the run has no "
                             f"tuples_train_nega_hard")
        all_neg = torch.from_numpy(np.r_[neg_sets[0]["outfits"], neg_sets[1]["outfits"]])
        self.pos_users = torch.from_numpy(self.pos["user"])
        self.pos_outfits = torch.from_numpy(self.pos["outfits"])
        self.all_neg = all_neg
        self.neg_owners = torch.from_numpy(
            positive_owners(self.pos["user"], self.pos["outfits"], all_neg.numpy()))

        # FND (Eq. 11-12): the frozen teacher's side, precomputed once.
        self.distillation = None
        if self.teacher:
            teacher, tspec, tmeta = load_model(run, MODEL, self.teacher)
            t_table, t_transform = item_inputs(run, data, tspec, tmeta["config"]["image_size"])
            self.distillation = M.Distillation.from_teacher(
                teacher, t_table, self.pos_users, self.pos_outfits, all_neg, data.n_users,
                t_transform)
            del teacher, t_table

        self.val_users, val_outfits, self.val_labels = val_half_rows(data, cfg.val_half(),
                                                                     cfg.val_kind())
        self.val_users_t = torch.from_numpy(self.val_users)
        self.val_outfits_t = torch.from_numpy(val_outfits)
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + worker.rank)
        return model

    def spec(self):
        return self._spec

    def optimizer(self, model):
        import torch

        c = self.cfg
        return torch.optim.SGD(model.parameters(), lr=c.resolved_lr(), momentum=c.momentum,
                               weight_decay=c.weight_decay)

    def train_epoch(self, model, optimizer, epoch: int) -> dict:
        import torch

        from stylehub_ray.models import fndcl as M

        cfg, device, gen = self.cfg, self.worker.device, self.gen
        rank, world = self.worker.rank, self.worker.world
        n_pos = len(self.pos["row"])
        per_worker = n_pos // world
        steps = max(1, per_worker // cfg.batch_size)
        model.train()
        # One permutation for all workers (same seed), then a disjoint shard each.
        perm = torch.randperm(n_pos, generator=torch.Generator().manual_seed(
            cfg.seed * 7919 + epoch))[rank * per_worker:(rank + 1) * per_worker]
        losses = []
        for s in range(steps):
            idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            if len(idx) < 2:
                continue
            users = self.pos_users[idx]
            negatives = self.negatives(idx)
            views = None
            if cfg.loss == "fndcl":
                views = M.augment_pair(self.pos_outfits[idx], cfg.resolved_augmentations(),
                                       self.neighbors, gen)
                views = (views[0].to(device), views[1].to(device))
            out = model(self.table, users.to(device), self.pos_outfits[idx].to(device),
                        self.all_neg[negatives].to(device), views, self.transform)
            d = None
            if self.distillation is not None:
                d = self.distillation.weights(users, negatives, cfg.resolved_alpha()).to(device)
            valid = valid_negatives(self.neg_owners, users, negatives).to(device)
            loss = M.training_loss(out, cfg.loss, cfg.tau_fnd, d, cfg.tau_cl, cfg.lam, valid)
            optimizer.zero_grad()
            loss.backward()  # under DDP: gradients averaged across the workers
            optimizer.step()
            losses.append(loss.item())
        return {"loss": float(np.mean(losses)) if losses else float("nan")}

    def negatives(self, idx):
        """Each pair's own negative, a position in the training negatives: a random block row
        of its positive, hard with probability ``hard_negative_share`` (4.4); the batch's
        negatives serve every pair."""
        import torch

        gen, ratios = self.gen, self.ratios
        block = self.pos["row"][idx.numpy()]
        hard = (torch.rand(len(idx), generator=gen) < self.cfg.hard_negative_share).numpy()
        k = [torch.randint(0, r, (len(idx),), generator=gen).numpy() for r in ratios]
        # Positions equal file rows unless ingest quarantined lines: clamp, never crash.
        neg_idx = np.where(
            hard, self.neg_offset + np.minimum(block * ratios[1] + k[1], self.n_hard - 1),
            np.minimum(block * ratios[0] + k[0], self.neg_offset - 1))
        return torch.from_numpy(neg_idx)

    def validate(self, model, epoch: int) -> dict:
        from stylehub_ray.metrics import per_user_auc_ndcg

        device = self.worker.device
        model.eval()
        scores = model.score_outfits(self.table, self.val_users_t.to(device),
                                     self.val_outfits_t.to(device),
                                     self.transform).cpu().numpy()
        val = per_user_auc_ndcg(self.val_users, self.val_labels, scores)
        return {"val_auc": val["auc"], "val_ndcg": val["ndcg"]}

    def best_metrics(self, metrics: dict) -> dict:
        return {"val_auc": metrics["val_auc"], "val_ndcg": metrics["val_ndcg"]}

    def worker_state(self) -> dict:
        return {"generator": self.gen.get_state()}

    def load_worker_state(self, state: dict) -> None:
        self.gen.set_state(state["generator"])
