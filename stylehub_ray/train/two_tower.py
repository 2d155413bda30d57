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
REPORTED_METRICS = ("epoch", "loss", "retrieval_loss", "ranking_loss", "auc", "precision",
                    "recall", "val_map12", "epoch_s")


@dataclass
class TrainTwoTowerConfig:
    """`stylehub train two-tower`: the hybrid two-tower retrieval + ranking model."""

    variant: str = "default"
    workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    epochs: int = 3
    seed: int = 0
    batch_size: int = 2048  # examples per worker step (about 1 in 5 is a positive)
    lr: float = 1e-3  # Adam, as the paper
    temperature: float = 0.05  # retrieval softmax temperature over unit-vector dot products
    ranking_weight: float = 1.0  # total = retrieval + ranking_weight * ranking
    logq: bool = True  # log-q correction of the in-batch softmax by in-batch popularity
    text: bool = False  # also feed the text embedding to the article tower
    id_embeddings: bool = True  # learned customer and article id embeddings
    id_dim: int = 32
    cat_dim: int = 8
    train_days: int = 0  # 0: every training example; N: only the last N days before val
    val_customers: int = 2000  # val customers sampled for MAP@12 each epoch
    n_candidates: int = 100  # N retrieved before dropping bought and ranking
    drop_bought: bool = True
    shuffle_buffer: int = 0  # Ray Data local shuffle buffer (rows); 0: the examples' order
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

    cols = ["customer_idx", "article_idx", "label"] + (["t_dat"] if cfg.train_days else [])
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
            write_artifact(run, step.tmp(out), art)
            meta, hist = art.meta, art.meta["history"]
            step.counts = {"epochs": {"trained": len(hist), "best": meta["best_epoch"],
                                      "resumed_at": meta["resumed_at"]},
                           "customers": {"trained": int(art.arrays["trained_customers"].sum()),
                                         "val_sampled": meta["val_customers"]}}
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
    from stylehub_ray.models.recommender import index_name

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
def trained_customers(run: Run, cfg: TrainTwoTowerConfig, n_customers: int) -> np.ndarray:
    """Bool per customer: has a positive among the training examples used."""
    import pyarrow.dataset as pads

    from stylehub_ray.features.inputs import feature_cutoff

    ds = pads.dataset(run.path(EXAMPLES), filesystem=run.fs, format="parquet",
                      ignore_prefixes=["_", "."])
    flt = pc.field("label") == 1
    if cfg.train_days:
        start = np.datetime64(feature_cutoff(run, "train")) - np.timedelta64(cfg.train_days, "D")
        flt = flt & (pc.field("t_dat") >= pa.scalar(start.astype("datetime64[D]").item(),
                                                     pa.date32()))
    c = ds.to_table(columns=["customer_idx"], filter=flt)["customer_idx"].to_numpy()
    out = np.zeros(n_customers, bool)
    out[c] = True
    return out


def validation_data(run: Run, cfg: TrainTwoTowerConfig, trained: np.ndarray, n_articles: int
                    ) -> dict:
    """Seeded sample of val customers seen in training: their val truth (for MAP@12) and
    val examples (their distinct val purchases, label 1, plus 4 uniform negatives each that
    they did not buy in val, label 0) for AUC / precision / recall."""
    from stylehub_ray.data.ingest import read_table

    t = read_table(run, "features/interactions", ["customer_idx", "article_idx", "split"])
    t = t.filter(pc.field("split") == "val")
    pairs = np.unique(t["customer_idx"].to_numpy().astype(np.int64) * n_articles
                      + t["article_idx"].to_numpy())
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

    layout = input_layout(run, cfg.text)
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
        customer_ids=layout.n_customers + 1 if cfg.id_embeddings else 0,
        article_ids=layout.n_articles + 1 if cfg.id_embeddings else 0,
        id_dim=cfg.id_dim, cat_dim=cfg.cat_dim)
    return layout, customers, articles, spec


def run_epoch(model, batches, c_tab: dict, a_tab: dict, opt, cfg: TrainTwoTowerConfig,
              device) -> tuple[np.ndarray, int, int]:
    """One pass over ``batches`` (dicts of numpy ``customer_idx``, ``article_idx``,
    ``label``): the joint loss, backward, Adam step. Returns (summed loss, retrieval loss,
    ranking loss), steps, samples. The Ray Train worker and the plain-loop benchmark both run
    this."""
    import torch

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
        u, v, logits = model(ci, ai)
        pos = y > 0.5
        if int(pos.sum()) >= 2:
            r_loss = M.retrieval_loss(u[pos], v[pos], cfg.temperature, a[pos], c[pos],
                                      cfg.logq)
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
        from stylehub_ray.features.history import load_history
        from stylehub_ray.features.inputs import build_inputs, training_feature_set
        from stylehub_ray.models.two_tower import TwoStageRecommender

        cfg, run = self.cfg, Run(self.run)
        self.worker = worker
        self.layout, self.customers, self.articles, self._spec = model_inputs(run, cfg)
        # The examples join the feature set of their own time (point in time: `fit`, where
        # the features stage built one); validation scores `val` with the `train` set, as of
        # `val`.
        fit_c, fit_a = self.customers, self.articles
        fit_set = training_feature_set(run)
        if fit_set != "train":
            fit_c, fit_a = build_inputs(run, fit_set, self.layout)
        self.c_tab = {k: v.to(worker.device) for k, v in fit_c.tensors().items()}
        self.a_tab = {k: v.to(worker.device) for k, v in fit_a.tensors().items()}
        self.trained = trained_customers(run, cfg, self.layout.n_customers)
        self.history_tx = self.val = None
        if worker.rank == 0:
            self.history_tx = load_history(run, "train", self.layout.n_customers,
                                           self.layout.n_articles)
            self.val = validation_data(run, cfg, self.trained, self.layout.n_articles)
        return TwoStageRecommender(self._spec)

    def spec(self):
        return self._spec

    def optimizer(self, model):
        import torch

        return torch.optim.Adam(model.parameters(), lr=self.cfg.lr)

    def train_epoch(self, model, optimizer, epoch: int) -> dict:
        cfg, world = self.cfg, self.worker.world
        t0 = time.perf_counter()
        batches = self.worker.shard.iter_batches(
            batch_size=cfg.batch_size, batch_format="numpy", drop_last=True,
            local_shuffle_buffer_size=cfg.shuffle_buffer or None,
            local_shuffle_seed=cfg.seed * 1000 + epoch if cfg.shuffle_buffer else None)
        sums, steps, samples = run_epoch(model, batches, self.c_tab, self.a_tab, optimizer, cfg,
                                         self.worker.device)
        train_s = time.perf_counter() - t0
        return {"loss": sums[0] / max(steps, 1), "retrieval_loss": sums[1] / max(steps, 1),
                "ranking_loss": sums[2] / max(steps, 1), "train_s": round(train_s, 3),
                "samples": samples * world,
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
                "trained_customers": self.trained}
