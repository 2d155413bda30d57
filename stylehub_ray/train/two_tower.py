"""Two-tower retrieval + ranking on Ray Train (`stylehub train two-tower`).

- :func:`build_trainer`: a TorchTrainer whose workers each read their shard of
  ``features/training_examples`` through Ray Data (``ray.train.get_dataset_shard``; the dataset
  is materialized first), join the customer and article inputs by index
  (``stylehub_ray.features.inputs.build_inputs``: the ``fit`` feature set where the features
  stage built a point-in-time label window, else ``train``), and train the
  :class:`~stylehub_ray.models.two_tower.TwoStageRecommender` with DDP (CPU or GPU from the
  scaling config) in the one Ray Train loop (:mod:`stylehub_ray.train.loop`;
  :class:`TwoTowerRecipe` is this model's part). Every epoch every worker reports
  :data:`REPORTED_METRICS`; a restarted run resumes from its latest checkpoint.
- :func:`train_two_tower`: the stage. The best epoch by validation MAP@12 is published as
  ``models/two-tower/<variant>/`` (:mod:`stylehub_ray.models.artifacts`; the trained customers
  as ``trained_customers.parquet``); then :func:`build_two_tower_index` writes the FAISS
  index of the article-tower vectors (``test`` feature set) to ``index/two-tower/``.

Validation each epoch (rank 0, broadcast so every worker reports the same numbers): MAP@12 of
the full chain (retrieve, drop bought, rank) on a seeded sample of ``val`` customers seen in
training, with the ``train`` feature set; AUC, precision and recall (threshold 0.5) of the
ranking model on those customers' ``val`` purchases with 4 uniform negatives each (the
paper's metrics). The model math lives in ``stylehub_ray.models.two_tower``.
"""

from __future__ import annotations

import logging
import posixpath
import time
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stylehub_ray.models.artifacts import FORMAT, load_model, write_artifact
from stylehub_ray.run import Run
from stylehub_ray.train import loop as L

logger = logging.getLogger(__name__)

MODEL_NAME = "two-tower"
MODELS = f"models/{MODEL_NAME}"
RAY_TRAIN_DIR = f"_ray_train/{MODEL_NAME}"
EXAMPLES = "features/training_examples"
# Metrics every epoch reports (Tune and early stopping key on these names).
LOGQ = ("sampling", "batch", "off")
REPORTED_METRICS = ("epoch", "loss", "retrieval_loss", "ranking_loss", "auc", "precision",
                    "recall", "val_map12", "epoch_s")


@dataclass
class TrainTwoTowerConfig:
    """`stylehub train two-tower`: the hybrid two-tower retrieval + ranking model."""

    variant: str = "default"
    workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    max_failures: int = 3  # worker-group restarts from the last checkpoint (FailureConfig)
    epochs: int = 3
    seed: int = 0
    batch_size: int = 2048  # examples per worker step (about 1 in 5 is a positive)
    lr: float = 1e-3  # Adam, as the paper
    # The id tables learn from sparse gradients with SparseAdam (each step moves only the
    # batch's rows; dense Adam moved every customer's row at every step, a cost that grew with
    # the customers: 4.4x slower per step at 1/4 of H&M). Dense where it cannot work: several
    # GPU workers (NCCL has no sparse all-reduce).
    sparse_ids: bool = True
    temperature: float = 0.05  # retrieval softmax temperature over unit-vector dot products
    ranking_weight: float = 1.0  # total = retrieval + ranking_weight * ranking
    # The log-q correction of the in-batch softmax: "sampling" = each article's share of all
    # training positives (Yi et al. 2019); "batch" = its share of the batch's positives (what
    # training did before issue 15: only duplicates within a batch are corrected); "off".
    logq: str = "sampling"
    id_dropout: float = 0.1  # share of ids sent to the unknown row (trains it; cold starts)
    hard_negatives: int = 1  # per positive, from the model's own top n_candidates (ranking)
    hard_max_positives: int = 100_000  # positives per worker and epoch that mine them
    text: bool = False  # also feed the text embedding to the article tower
    context: bool = False  # feed day of week, month and weekend to the customer side
    id_embeddings: bool = True  # learned customer and article id embeddings
    id_dim: int = 32
    cat_dim: int = 8
    train_days: int = 0  # 0: every training example; N: only the last N days before val
    val_customers: int = 2000  # val customers sampled for MAP@12 each epoch
    n_candidates: int = 100  # N retrieved before dropping bought and ranking
    drop_bought: bool = True  # in the per-epoch val MAP@12 (both are tried after training)
    shuffle: bool = True  # a new seeded permutation of the worker's examples every epoch
    # After training, choose on val: the retrieval weight in the final score, whether to drop
    # bought articles, and the path of customers without a training positive (any subset).
    choose: tuple[str, ...] = ("retrieval_weight", "drop_bought", "cold")
    patience: int = 0  # early stopping: epochs without a better val_map12 (0: off)
    index: str = "flat"  # FAISS index of the article vectors: flat | hnsw | ivf

    def validate(self) -> None:
        from stylehub_ray.embed.index import KINDS

        if self.workers < 1 or self.epochs < 1 or self.batch_size < 4:
            raise ValueError("train_two_tower: workers >= 1, epochs >= 1, batch_size >= 4 "
                             "expected")
        if self.temperature <= 0 or self.lr <= 0 or self.ranking_weight < 0:
            raise ValueError(f"train_two_tower: temperature > 0, lr > 0, ranking_weight >= 0 "
                             f"expected, got {self.temperature}, {self.lr}, "
                             f"{self.ranking_weight}")
        if self.val_customers < 1 or self.n_candidates < 1 or self.train_days < 0:
            raise ValueError("train_two_tower: val_customers >= 1, n_candidates >= 1, "
                             "train_days >= 0 expected")
        if self.logq not in LOGQ:
            raise ValueError(f"train_two_tower.logq must be one of {LOGQ}, got {self.logq!r}")
        unknown = set(self.choose) - {"retrieval_weight", "drop_bought", "cold"}
        if unknown:
            raise ValueError(f"train_two_tower.choose: unknown choices {sorted(unknown)} "
                             f"(retrieval_weight, drop_bought, cold)")
        if not 0 <= self.id_dropout < 1 or self.hard_negatives < 0 \
                or self.hard_max_positives < 1:
            raise ValueError(f"train_two_tower: 0 <= id_dropout < 1, hard_negatives >= 0, "
                             f"hard_max_positives >= 1 expected, got {self.id_dropout}, "
                             f"{self.hard_negatives}, {self.hard_max_positives}")
        if self.index not in KINDS:
            raise ValueError(f"train_two_tower.index must be one of {KINDS}, got "
                             f"{self.index!r}")
        if not self.variant or "/" in self.variant:
            raise ValueError(f"train_two_tower.variant must be a plain name, got "
                             f"{self.variant!r}")


def _model_dir(variant: str) -> str:
    return f"{MODELS}/{variant}"


def _plan(run: Run, cfg: TrainTwoTowerConfig) -> tuple[dict, dict]:
    """(resolved config, input fingerprints) of a training step."""
    cfg.validate()
    feats = f"stylehub features --run {run.uri}"
    inputs = {EXAMPLES: run.require(EXAMPLES, feats),
              "embeddings/images": run.require("embeddings/images",
                                               f"stylehub embed images --run {run.uri}")}
    if cfg.text:
        inputs["embeddings/text"] = run.require("embeddings/text",
                                                f"stylehub embed text --run {run.uri}")
    # The artifact format: a model saved in an older format is retrained, not loaded.
    return asdict(cfg) | {"artifact_format": FORMAT}, inputs


def examples_dataset(run: Run, cfg: TrainTwoTowerConfig):
    """The training examples as a materialized Ray Dataset of (customer_idx, article_idx,
    label) (materialized: on 2 CPUs a 2-worker trainer over a lazy dataset hangs)."""
    from stylehub_ray.data.io import read_parquet
    from stylehub_ray.features.inputs import feature_cutoff

    cols = ["customer_idx", "article_idx", "label"] + (["t_dat"] if cfg.train_days else []) + (
        list(CONTEXT_COLUMNS) if cfg.context else [])
    ds = read_parquet(run, EXAMPLES, cols)
    if cfg.train_days:
        start = np.datetime64(feature_cutoff(run, "train")) - np.timedelta64(cfg.train_days, "D")
        ds = ds.map_batches(_since, batch_format="pyarrow", batch_size=None,
                            fn_kwargs={"start": str(start)})
    return ds.materialize()


def _since(batch: pa.Table, start: str) -> pa.Table:
    keep = pc.greater_equal(batch["t_dat"], pa.scalar(np.datetime64(start, "D").item(),
                                                      pa.date32()))
    return batch.filter(keep).drop_columns(["t_dat"])


def build_trainer(run: Run, cfg: TrainTwoTowerConfig, *, name: str | None = None,
                  storage_path: str | None = None, **options):
    """(TorchTrainer, run name). ``storage_path`` / ``name`` override the Ray Train folder
    (``_ray_train/two-tower/<name>``); ``options`` as
    :func:`stylehub_ray.train.loop.build_trainer` takes them (``fail_after_epoch``,
    ``callbacks``, ``gpus_per_worker``)."""
    from stylehub_ray.ray_utils import ensure_ray

    config, inputs = _plan(run, cfg)
    name = name or L.ray_train_name(cfg.variant, config, inputs)
    ensure_ray()
    trainer = L.build_trainer(TwoTowerRecipe(run.uri, cfg), name=name,
                              storage_path=storage_path or run.uri_of(RAY_TRAIN_DIR),
                              datasets={"train": examples_dataset(run, cfg)}, **options)
    return trainer, name


def train_two_tower(run: Run, cfg: TrainTwoTowerConfig, force: bool = False) -> dict:
    """Train with a Ray TorchTrainer; publish the best epoch by val MAP@12 as
    ``models/two-tower/<variant>/``; build ``index/two-tower/``."""
    variant = cfg.variant
    out = _model_dir(variant)
    config, inputs = _plan(run, cfg)
    step = run.step("train_two_tower", variant, config=config, inputs=inputs, outputs=[out],
                    force=force)
    if step.done:
        logger.info(f"train_two_tower/{variant}: up to date; skipped (--force redoes it)")
        entry = step.previous() | {"skipped": True}
    else:
        name = L.ray_train_name(variant, config, inputs)
        if force:
            run.delete(posixpath.join(RAY_TRAIN_DIR, name))  # --force: no resume
        trainer, _ = build_trainer(run, cfg)
        with step:
            with step.time("fit_s"):
                art, path = L.fit(trainer, MODEL_NAME, {"variant": variant, "config": config})
            if cfg.choose:
                with step.time("choose_s"):
                    art.meta["choices"], art.meta["choices_val"] = choose_on_val(run, cfg, art)
                step.extra["choices"] = art.meta["choices"]
                step.extra["choices_val"] = art.meta["choices_val"]
            write_artifact(run, step.tmp(out), art)
            meta, hist = art.meta, art.meta["history"]
            step.counts = {"epochs": {"trained": len(hist), "best": meta["best_epoch"],
                                      "resumed_at": meta["resumed_at"],
                                      "restarts": meta.get("restarts", 0)},
                           "customers": {"trained": int(art.arrays["trained_customers"].sum()),
                                         "val_sampled": meta["val_customers"]},
                           "articles": {"trained": int(art.arrays["trained_articles"].sum())}}
            step.extra["best_metrics"] = meta["best"]
            step.extra["samples_per_s"] = round(float(np.mean(
                [h["samples_s"] for h in hist])), 1) if hist else 0.0
            step.extra["ray_train_path"] = path
        run.delete(posixpath.join(RAY_TRAIN_DIR, name))  # complete: nothing left to resume
        entry = run.entry("train_two_tower", variant)
        b = meta["best"]
        logger.info(f"train_two_tower/{variant}: best epoch {meta['best_epoch']} val_map12 "
                    f"{b['val_map12']:.4f} auc {b['auc']:.4f} "
                    f"({step.timings.get('fit_s', 0):.0f}s)")
        if entry.get("choices"):
            log_choices(variant, entry["choices"], entry["choices_val"])
    build_two_tower_index(run, variant, cfg.index, force=force)
    return entry


def build_two_tower_index(run: Run, variant: str = "default", kind: str = "flat",
                          feature_set: str = "test", force: bool = False) -> dict:
    """FAISS index of the article-tower vectors (``feature_set`` inputs) at
    ``index/two-tower/`` (``index/two-tower-<variant>/``): faiss.index, ids.parquet
    (row, article_idx, article_id), index.json."""
    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.embed.index import IndexParams, build_index, write_index
    from stylehub_ray.features.inputs import InputLayout, build_inputs
    from stylehub_ray.models.recommender import index_name, known_ids, uses_unknown_id

    model_rel = _model_dir(variant)
    name = index_name(variant)
    inputs = {model_rel: run.require(model_rel, f"stylehub train two-tower --run {run.uri}"),
              "features/articles": run.require("features/articles",
                                               f"stylehub features --run {run.uri}")}
    step = run.step("index_two_tower", variant,
                    config={"kind": kind, "feature_set": feature_set}, inputs=inputs,
                    outputs=[name], force=force)
    if step.done:
        return step.previous() | {"skipped": True}
    model, _spec, meta = load_model(run, MODEL_NAME, variant)
    _customers, articles = build_inputs(run, feature_set, InputLayout(**meta["layout"]))
    if uses_unknown_id(meta.get("config")):
        articles = known_ids(articles, meta.get("trained_articles"))
    vectors = model.article_vectors(articles.tensors()).numpy().astype(np.float32)
    ids = read_table(run, "raw/article_map", ["article_idx", "article_id"]).sort_by(
        "article_idx")
    with step:
        with step.time("index_s"):
            index = build_index(vectors, IndexParams(kind=kind))
        info = {"kind": kind, "dim": int(vectors.shape[1]), "items": len(vectors),
                "metric": "inner_product", "source": model_rel, "variant": variant,
                "feature_set": feature_set, "model": inputs[model_rel]}
        write_index(run, step.tmp(name), index, ids["article_idx"].to_numpy(),
                    ids["article_id"].to_numpy(), info)
        step.counts = {"index": {"items": len(vectors), "dim": int(vectors.shape[1])}}
    logger.info(f"index_two_tower/{variant}: {len(vectors):,} article vectors ({kind}) at {name}")
    return run.entry("index_two_tower", variant)



# --------------------------------------------------------------------------------------------
# Data for the worker: trained customers, validation sample
# --------------------------------------------------------------------------------------------
def training_positives(run: Run, cfg: TrainTwoTowerConfig, n_customers: int, n_articles: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(bool per customer: has a positive among the training examples used; positives per
    article, int64: each article's sampling probability for the log-q correction, and which
    article id rows are trained)."""
    import pyarrow.dataset as pads

    from stylehub_ray.features.inputs import feature_cutoff

    ds = pads.dataset(run.path(EXAMPLES), filesystem=run.fs, format="parquet",
                      ignore_prefixes=["_", "."])
    flt = pc.field("label") == 1
    if cfg.train_days:
        start = np.datetime64(feature_cutoff(run, "train")) - np.timedelta64(cfg.train_days, "D")
        flt = flt & (pc.field("t_dat") >= pa.scalar(start.astype("datetime64[D]").item(),
                                                     pa.date32()))
    t = ds.to_table(columns=["customer_idx", "article_idx"], filter=flt)
    trained = np.zeros(n_customers, bool)
    trained[t["customer_idx"].to_numpy()] = True
    counts = np.bincount(t["article_idx"].to_numpy().astype(np.int64), minlength=n_articles)
    return trained, counts.astype(np.int64)


def trained_customers(run: Run, cfg: TrainTwoTowerConfig, n_customers: int) -> np.ndarray:
    """Bool per customer: has a positive among the training examples used."""
    from stylehub_ray.data.ingest import read_table

    n_articles = read_table(run, "raw/article_map", ["article_idx"]).num_rows
    return training_positives(run, cfg, n_customers, n_articles)[0]


def val_pairs(run: Run, n_articles: int) -> np.ndarray:
    """The distinct (customer, article) purchases of the val period, as sorted keys
    ``customer_idx * n_articles + article_idx``."""
    from stylehub_ray.data.ingest import read_table

    t = read_table(run, "features/interactions", ["customer_idx", "article_idx", "split"])
    t = t.filter(pc.field("split") == "val")
    return np.unique(t["customer_idx"].to_numpy().astype(np.int64) * n_articles
                     + t["article_idx"].to_numpy())


def validation_data(run: Run, cfg: TrainTwoTowerConfig, trained: np.ndarray, n_articles: int
                    ) -> dict:
    """Seeded sample of val customers seen in training: their val truth (for MAP@12) and
    val examples (their distinct val purchases, label 1, plus 4 uniform negatives each that
    they did not buy in val, label 0) for AUC / precision / recall."""
    pairs = val_pairs(run, n_articles)
    c, a = pairs // n_articles, pairs % n_articles
    keep = trained[c]
    c, a, pairs = c[keep], a[keep], pairs[keep]
    rng = np.random.default_rng(cfg.seed)
    users = np.unique(c)
    if len(users) > cfg.val_customers:
        users = np.sort(rng.choice(users, cfg.val_customers, replace=False))
    sel = np.isin(c, users)
    c, a, pairs = c[sel], a[sel], pairs[sel]
    starts = np.searchsorted(c, users)
    ends = np.searchsorted(c, users, side="right")
    truth = [a[s:e] for s, e in zip(starts, ends)]
    neg_c = np.repeat(c, 4)
    neg_a = rng.integers(0, n_articles, len(neg_c))
    for _ in range(10):  # redraw the negatives that hit a val purchase
        bad = np.isin(neg_c * n_articles + neg_a, pairs)
        if not bad.any():
            break
        neg_a[bad] = rng.integers(0, n_articles, int(bad.sum()))
    ok = ~np.isin(neg_c * n_articles + neg_a, pairs)
    return {"customers": users, "truth": truth,
            "ex_customer": np.r_[c, neg_c[ok]], "ex_article": np.r_[a, neg_a[ok]],
            "ex_label": np.r_[np.ones(len(c), np.int64), np.zeros(int(ok.sum()), np.int64)]}


# The retrieval weights tried on val (combine_scores): 0 = the ranking model alone (the paper),
# 1 = the retrieval order alone.
RETRIEVAL_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def val_truth(run: Run, customers: np.ndarray, n_articles: int, limit: int, seed: int
              ) -> tuple[np.ndarray, list[np.ndarray]]:
    """A seeded sample of at most ``limit`` val buyers among ``customers`` (bool mask per
    customer): (customer_idx, their distinct val purchases)."""
    pairs = val_pairs(run, n_articles)
    c, a = pairs // n_articles, pairs % n_articles
    keep = customers[c]
    c, a = c[keep], a[keep]
    users = np.unique(c)
    if len(users) > limit:
        users = np.sort(np.random.default_rng(seed).choice(users, limit, replace=False))
    sel = np.isin(c, users)
    c, a = c[sel], a[sel]
    bounds = np.searchsorted(c, users), np.searchsorted(c, users, side="right")
    return users, [a[lo:hi] for lo, hi in zip(*bounds)]


def choose_on_val(run: Run, cfg: TrainTwoTowerConfig, art) -> tuple[dict, dict]:
    """The published model's recommendation choices, each made on val MAP@12 (features as of
    val, a seeded sample of val buyers): the retrieval weight in the final score
    (:data:`RETRIEVAL_WEIGHTS`) and whether to drop bought articles, on customers seen in
    training; then, for customers without a training positive, the model's vector from their
    features against popularity. Ties keep the paper's chain (weight 0, drop, popularity).
    Returns (choices, the val MAP@12 behind each)."""
    from stylehub_ray.features.history import load_history
    from stylehub_ray.features.inputs import InputLayout, build_inputs
    from stylehub_ray.metrics import map_at_k
    from stylehub_ray.models.recommender import DEFAULT_CHOICES, TwoTowerRecommender

    layout = InputLayout(**art.meta["layout"])
    customers, articles = build_inputs(run, "train", layout)
    history = load_history(run, "train", layout.n_customers, layout.n_articles)
    trained = np.asarray(art.arrays["trained_customers"], bool)
    rec = TwoTowerRecommender(art.build(), customers, articles, history, trained,
                              n_candidates=cfg.n_candidates, meta=art.meta,
                              trained_articles=art.arrays["trained_articles"])
    warm, warm_truth = val_truth(run, trained, layout.n_articles, cfg.val_customers, cfg.seed)
    cold, cold_truth = val_truth(run, ~trained, layout.n_articles, cfg.val_customers,
                                 cfg.seed + 1)
    choices = dict(DEFAULT_CHOICES)
    numbers: dict = {"warm_customers": len(warm), "cold_customers": len(cold), "warm": {}}
    best = -1.0
    drops = (True, False) if "drop_bought" in cfg.choose else (True,)
    weights = RETRIEVAL_WEIGHTS if "retrieval_weight" in cfg.choose else (0.0,)
    for drop in drops:
        for w in weights:
            rec.choices = choices | {"retrieval_weight": w}
            score = (float(map_at_k(rec.recommend(warm, 12, drop)[0], warm_truth, 12))
                     if len(warm) else 0.0)
            numbers["warm"][f"{'drop' if drop else 'keep'} w={w:g}"] = round(score, 5)
            if score > best:
                best, pick = score, {"retrieval_weight": w, "drop_bought": drop}
    choices |= pick
    numbers["cold"] = {}
    for path in ("popularity", "model"):
        rec.choices = choices | {"cold": path}
        numbers["cold"][path] = round(float(map_at_k(
            rec.recommend(cold, 12)[0], cold_truth, 12)), 5) if len(cold) else 0.0
    if "cold" in cfg.choose and numbers["cold"]["model"] > numbers["cold"]["popularity"]:
        choices["cold"] = "model"
    return choices, numbers


def log_choices(variant: str, choices: dict, numbers: dict) -> None:
    """The choices made on val, in words, with the numbers behind them."""
    warm = numbers["warm"]
    w = choices["retrieval_weight"]
    best_keep = max((v for k, v in warm.items() if k.startswith("keep")), default=float("nan"))
    best_drop = max(v for k, v in warm.items() if k.startswith("drop"))
    logger.info(f"train_two_tower/{variant}: choices on val MAP@12 "
                f"({numbers['warm_customers']:,} trained val buyers): final score = ranking "
                + (f"+ retrieval at weight {w:g}" if w else "model alone")
                + f" ({warm[('drop' if choices['drop_bought'] else 'keep') + f' w={w:g}']:.4f}"
                f", ranking alone {warm['drop w=0' if choices['drop_bought'] else 'keep w=0']:.4f}"
                f"); bought articles "
                + ("dropped" if choices["drop_bought"] else "kept")
                + f" (best dropped {best_drop:.4f}, kept {best_keep:.4f})")
    cold = numbers["cold"]
    logger.info(f"train_two_tower/{variant}: customers without a training positive "
                f"({numbers['cold_customers']:,} val buyers): "
                + ("the model's vector from their features" if choices["cold"] == "model"
                   else "popularity")
                + f" (model {cold['model']:.4f}, popularity {cold['popularity']:.4f})")


def evaluate_epoch(model, customers, articles, history, trained, val: dict,
                   cfg: TrainTwoTowerConfig) -> dict:
    """Validation metrics of the current weights (see the module docstring)."""
    import torch

    from stylehub_ray.metrics import auc, map_at_k
    from stylehub_ray.models.recommender import TwoTowerRecommender

    model.eval()
    rec = TwoTowerRecommender(model, customers, articles, history, trained,
                              n_candidates=cfg.n_candidates)
    out = {"val_map12": float("nan"), "auc": float("nan"), "precision": float("nan"),
           "recall": float("nan")}
    if len(val["customers"]):
        recs = rec.recommend(val["customers"], 12, cfg.drop_bought)[0]
        out["val_map12"] = float(map_at_k(recs, val["truth"], 12))
    if len(val["ex_label"]):
        with torch.no_grad():
            hc = model.customer_encoder(customers.take(val["ex_customer"]))
            ha = model.article_encoder(articles.take(val["ex_article"]))
            p = torch.sigmoid(model.ranking(hc, ha)).numpy()
        y = val["ex_label"]
        pred = p >= 0.5
        tp = float((pred & (y == 1)).sum())
        out["auc"] = float(auc(y, p))
        out["precision"] = tp / max(float(pred.sum()), 1.0)
        out["recall"] = tp / max(float((y == 1).sum()), 1.0)
    model.train()
    return out


def model_inputs(run: Run, cfg: TrainTwoTowerConfig):
    """(layout, customer inputs, article inputs, model spec) of the ``train`` feature set."""
    from stylehub_ray.features.inputs import build_inputs, input_layout
    from stylehub_ray.features.preprocess import Preprocessor
    from stylehub_ray.models.two_tower import TwoTowerSpec

    layout = input_layout(run, cfg.text, cfg.context)
    customers, articles = build_inputs(run, "train", layout)
    pre = Preprocessor.load(run)
    spec = TwoTowerSpec(
        customer_numeric=customers.num.shape[1],
        customer_categories=tuple(pre.cardinality(f"customer.{c}")
                                  for c in layout.customer_categorical),
        article_numeric=articles.num.shape[1],
        article_categories=tuple(pre.cardinality(f"article.{c}")
                                 for c in layout.article_categorical),
        article_extra=articles.extra.shape[1],
        customer_extra=customers.extra.shape[1],
        customer_ids=layout.n_customers + 1 if cfg.id_embeddings else 0,
        article_ids=layout.n_articles + 1 if cfg.id_embeddings else 0,
        id_dim=cfg.id_dim, cat_dim=cfg.cat_dim)
    return layout, customers, articles, spec


def sparse_ids_apply(cfg: TrainTwoTowerConfig, device, world: int) -> bool:
    """Whether the id tables train with sparse gradients here: as configured, except with
    several workers on GPUs, where DDP's NCCL all-reduce takes dense gradients only."""
    if not cfg.sparse_ids or not cfg.id_embeddings:
        return False
    if world > 1 and getattr(device, "type", str(device)) != "cpu":
        logger.warning("train_two_tower: %d GPU workers: dense id gradients (NCCL cannot "
                       "all-reduce sparse ones)", world)
        return False
    return True


def make_optimizer(params: tuple[list, list], sparse: bool, lr: float):
    """Adam over every parameter, the id tables by ``SparseAdam`` when their gradients are
    sparse (``params``: :func:`~stylehub_ray.models.two_tower.split_id_parameters`)."""
    import torch

    ids, rest = params
    if not sparse:
        return torch.optim.Adam([*ids, *rest], lr=lr)
    return L.Optimizers(torch.optim.Adam(rest, lr=lr),
                        torch.optim.SparseAdam(ids, lr=lr) if ids else None)


def run_epoch(model, batches, c_tab: dict, a_tab: dict, opt, cfg: TrainTwoTowerConfig,
              device, log_q=None, generator=None) -> tuple[np.ndarray, int, int]:
    """One pass over ``batches`` (dicts of numpy ``customer_idx``, ``article_idx``,
    ``label``): the joint loss, backward, Adam step. ``log_q`` (n_articles,) tensor: the
    log-q correction (None: off); ``generator``: torch RNG of the id dropout. Returns (summed
    loss, retrieval loss, ranking loss), steps, samples. The Ray Train worker and the
    plain-loop benchmark both run this."""
    import torch

    from stylehub_ray.features.inputs import context_features
    from stylehub_ray.models import two_tower as M

    model.train()
    sums = np.zeros(3)
    steps = samples = 0
    for batch in batches:
        c = torch.from_numpy(batch["customer_idx"].astype(np.int64)).to(device)
        a = torch.from_numpy(batch["article_idx"].astype(np.int64)).to(device)
        y = torch.from_numpy(batch["label"].astype(np.float32)).to(device)
        ci = {k: v[c] for k, v in c_tab.items()}  # the join by index
        ai = {k: v[a] for k, v in a_tab.items()}
        if "day_of_week" in batch:  # the example's day as the customer's context
            ci["extra"] = torch.from_numpy(context_features(
                batch["day_of_week"], batch["month"], batch["is_weekend"])).to(device)
        ci["ids"] = M.drop_ids(ci["ids"], cfg.id_dropout, generator)
        ai["ids"] = M.drop_ids(ai["ids"], cfg.id_dropout, generator)
        u, v, logits = model(ci, ai)
        pos = y > 0.5
        if int(pos.sum()) >= 2:
            lq = log_q[a[pos]] if log_q is not None else None
            if cfg.logq == "batch":
                lq = M.batch_log_q(a[pos])
            r_loss = M.retrieval_loss(u[pos], v[pos], cfg.temperature, a[pos], c[pos], lq)
        else:  # no in-batch softmax over fewer than two positives
            r_loss = (u.sum() + v.sum()) * 0.0
        k_loss = M.ranking_loss(logits, y)
        loss = M.total_loss(r_loss, k_loss, cfg.ranking_weight)
        opt.zero_grad()
        loss.backward()  # under DDP: gradients averaged across workers
        opt.step()
        sums += [loss.item(), r_loss.item(), k_loss.item()]
        steps += 1
        samples += len(y)
    return sums, steps, samples


EXAMPLE_COLUMNS = ("customer_idx", "article_idx", "label")
CONTEXT_COLUMNS = ("day_of_week", "month", "is_weekend")


def collect_examples(batches, sort: bool) -> dict[str, np.ndarray]:
    """A worker's examples in memory. ``sort``: in a fixed order (customer, article, label),
    whatever order Ray Data's blocks arrived in, so a seed gives the same epochs; else in
    arrival order (the files' order: one customer bucket after another)."""
    parts = list(batches)
    keys = [k for k in (*EXAMPLE_COLUMNS, *CONTEXT_COLUMNS) if parts and k in parts[0]]
    data = {k: (np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, np.int64))
            for k in keys or EXAMPLE_COLUMNS}
    if sort:
        order = np.lexsort((data["label"], data["article_idx"], data["customer_idx"]))
        data = {k: v[order] for k, v in data.items()}
    return data


def epoch_batches(data: dict[str, np.ndarray], steps: int, rng: np.random.Generator | None):
    """``steps`` batches covering ``data``: a fresh permutation from ``rng`` (None: the
    data's order). Every batch mixes customers of every bucket, and the in-batch negatives
    change from epoch to epoch."""
    n = len(data["label"])
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for chunk in np.array_split(order, max(steps, 1)):
        yield {k: v[chunk] for k, v in data.items()}


def mine_hard_negatives(model, c_tab: dict, a_tab: dict, data: dict[str, np.ndarray],
                        n_candidates: int, per_positive: int, cap: int,
                        rng: np.random.Generator, chunk: int = 256
                        ) -> dict[str, np.ndarray]:
    """Negatives for the ranking model from the model's own retrieval (Step 6 reorders
    retrieved candidates, which are far harder than uniform draws): for up to ``cap`` positive
    rows, ``per_positive`` articles drawn from the customer's current top ``n_candidates``,
    minus the customer's own positives. Label 0; they enter the ranking loss only (the
    retrieval loss takes positives)."""
    import torch

    pos = np.flatnonzero(data["label"] == 1)
    empty = {k: np.zeros(0, np.int64) for k in data}
    if not len(pos) or not per_positive:
        return empty
    if len(pos) > cap:
        pos = np.sort(rng.choice(pos, cap, replace=False))
    c = data["customer_idx"][pos].astype(np.int64)
    n_articles = len(a_tab["ids"])
    n = min(int(n_candidates), n_articles)
    every = data["label"] == 1
    owned = np.unique(data["customer_idx"][every].astype(np.int64) * n_articles
                      + data["article_idx"][every])
    users, inverse = np.unique(c, return_inverse=True)
    with torch.no_grad():
        v = model.article_vectors(a_tab)  # (n_articles, d)
        top = np.empty((len(users), n), np.int64)
        for lo in range(0, len(users), chunk):
            ids = torch.from_numpy(users[lo:lo + chunk]).to(v.device)
            u = model.customer_vectors({k: t[ids] for k, t in c_tab.items()})
            top[lo:lo + chunk] = torch.topk(u @ v.T, n, dim=1).indices.cpu().numpy()
    pick = rng.integers(0, n, (len(pos), per_positive))
    hard = top[inverse[:, None], pick].ravel()
    cust = np.repeat(c, per_positive)
    ok = ~np.isin(cust * n_articles + hard, owned)
    out = {"customer_idx": cust[ok], "article_idx": hard[ok],
           "label": np.zeros(int(ok.sum()), np.int64)}
    for k in CONTEXT_COLUMNS:  # a hard negative shares its positive's day
        if k in data:
            out[k] = np.repeat(data[k][pos], per_positive)[ok]
    return out


# --------------------------------------------------------------------------------------------
# This model's part of the Ray Train loop
# --------------------------------------------------------------------------------------------
class TwoTowerRecipe(L.Recipe):
    """The two-tower's part of the Ray Train loop (no Ray here): the joint loss over the
    worker's shard of the training examples, validation on rank 0 shared with every worker,
    early stopping after ``patience`` epochs without a better val MAP@12."""

    model = MODEL_NAME
    select_by = "val_map12"
    cfg: TrainTwoTowerConfig

    def setup(self, worker: L.Worker):
        import torch

        from stylehub_ray.features.history import load_history
        from stylehub_ray.features.inputs import build_inputs, training_feature_set
        from stylehub_ray.models.recommender import known_ids
        from stylehub_ray.models.two_tower import (
            TwoStageRecommender,
            sampling_log_q,
            split_id_parameters,
        )

        cfg, run = self.cfg, Run(self.run)
        self.worker = worker
        self.layout, self.customers, self.articles, self._spec = model_inputs(run, cfg)
        self.trained, positives = training_positives(run, cfg, self.layout.n_customers,
                                                     self.layout.n_articles)
        self.trained_articles = positives > 0
        # An id row without a training positive is never trained: with id dropout (which
        # trains the unknown id 0) such rows use id 0, in training as at inference.
        remap = cfg.id_dropout > 0
        if remap:
            self.customers = known_ids(self.customers, self.trained)
            self.articles = known_ids(self.articles, self.trained_articles)
        # The examples join the feature set of their own time (point in time: `fit`, where
        # the features stage built one); validation scores `val` with the `train` set, as of
        # `val`.
        fit_c, fit_a = self.customers, self.articles
        fit_set = training_feature_set(run)
        if fit_set != "train":
            fit_c, fit_a = build_inputs(run, fit_set, self.layout)
            if remap:
                fit_c = known_ids(fit_c, self.trained)
                fit_a = known_ids(fit_a, self.trained_articles)
        self.c_tab = {k: v.to(worker.device) for k, v in fit_c.tensors().items()}
        self.a_tab = {k: v.to(worker.device) for k, v in fit_a.tensors().items()}
        self.log_q = (sampling_log_q(torch.from_numpy(positives)).to(worker.device)
                      if cfg.logq == "sampling" else None)
        self.data = None  # this worker's examples, collected on the first epoch
        self.history_tx = self.val = None
        if worker.rank == 0:
            self.history_tx = load_history(run, "train", self.layout.n_customers,
                                           self.layout.n_articles)
            self.val = validation_data(run, cfg, self.trained, self.layout.n_articles)
        model = TwoStageRecommender(self._spec)
        self.sparse = sparse_ids_apply(cfg, worker.device, worker.world)
        self.params = split_id_parameters(model, self.sparse)  # before DDP wraps it
        return model

    def spec(self):
        return self._spec

    def optimizer(self, model):
        return make_optimizer(self.params, self.sparse, self.cfg.lr)

    def _steps(self) -> int:
        """Optimizer steps per epoch: the same on every worker (DDP steps together)."""
        steps = max(1, len(self.data["label"]) // self.cfg.batch_size)
        if self.worker.world > 1:
            import torch
            import torch.distributed as dist

            t = torch.tensor([steps], device=self.worker.device)
            dist.all_reduce(t, op=dist.ReduceOp.MIN)
            steps = int(t.item())
        return steps

    def train_epoch(self, model, optimizer, epoch: int) -> dict:
        import torch

        cfg, world, rank = self.cfg, self.worker.world, self.worker.rank
        t0 = time.perf_counter()
        if self.data is None:
            self.data = collect_examples(
                self.worker.shard.iter_batches(batch_size=65_536, batch_format="numpy"),
                sort=cfg.shuffle)
        # Seeds per (seed, epoch, rank): a resumed epoch repeats exactly.
        rng = np.random.default_rng([cfg.seed, epoch, rank])
        gen = torch.Generator(device=self.worker.device)
        gen.manual_seed(int(rng.integers(2 ** 62)))
        data, hard = self.data, 0
        if cfg.hard_negatives:
            core = getattr(model, "module", model)
            mined = mine_hard_negatives(core, self.c_tab, self.a_tab, self.data,
                                        cfg.n_candidates, cfg.hard_negatives,
                                        cfg.hard_max_positives, rng)
            hard = len(mined["label"])
            data = {k: np.concatenate([self.data[k], mined[k]]) for k in self.data}
        batches = epoch_batches(data, self._steps(), rng if cfg.shuffle else None)
        sums, steps, samples = run_epoch(model, batches, self.c_tab, self.a_tab, optimizer, cfg,
                                         self.worker.device, self.log_q, gen)
        train_s = time.perf_counter() - t0
        return {"loss": sums[0] / max(steps, 1), "retrieval_loss": sums[1] / max(steps, 1),
                "ranking_loss": sums[2] / max(steps, 1), "train_s": round(train_s, 3),
                "samples": samples * world, "hard_negatives": hard * world,
                "samples_s": round(samples * world / max(train_s, 1e-9), 1)}

    def validate(self, model, epoch: int) -> dict:
        """Rank 0's validation, broadcast so that every worker reports the same numbers."""
        val = None
        if self.worker.rank == 0:
            val = evaluate_epoch(model, self.customers, self.articles, self.history_tx,
                                 self.trained, self.val, self.cfg)
        if self.worker.world > 1:
            import torch.distributed as dist

            box = [val]
            dist.broadcast_object_list(box, src=0)
            val = box[0]
        return val

    def best_metrics(self, metrics: dict) -> dict:
        best = {k: metrics[k] for k in ("val_map12", "auc", "precision", "recall")}
        if best["val_map12"] != best["val_map12"]:  # nan: no val customers
            best["val_map12"] = -1.0
        return best

    def stop_early(self, epoch: int, best_epoch: int) -> bool:
        return bool(self.cfg.patience) and epoch - best_epoch >= self.cfg.patience

    def facts(self) -> dict:
        return {"layout": self.layout.to_dict(), "n_customers": self.layout.n_customers,
                "val_customers": int(len(self.val["customers"])),
                "trained_customers": self.trained,
                "trained_articles": self.trained_articles}
