"""`stylehub recommend`: the two-tower's submission for every customer of ``raw/customers`` on
Ray Data (an actor pool that loads the recommender once per actor); writes the competition's
submission CSV and a Parquet of scores.

The model's inputs are built in ``features/inputs.py``, the purchase history in
``features/history.py`` and the retrieve, drop bought, rank chain is
``models/recommender.TwoTowerRecommender`` (seeds/hybrid-two-tower.txt, "Step 6: Inference").
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from stylehub_ray.features.inputs import FEATURE_SETS
from stylehub_ray.models.recommender import (
    MODEL_NAME,
    N_CANDIDATES,
    PATHS,
    TwoTowerRecommender,
    index_name,
)
from stylehub_ray.run import Run

logger = logging.getLogger(__name__)

OUT_DIR = "recommendations/two-tower"


# --------------------------------------------------------------------------------------------
# `stylehub recommend`: every customer, on Ray Data
# --------------------------------------------------------------------------------------------
@dataclass
class RecommendConfig:
    """`stylehub recommend`: the submission of every customer in ``raw/customers``."""

    variant: str = "default"
    model: str = "two-tower"  # two-tower | ranker (`stylehub train ranker`)
    k: int = 12
    n_candidates: int = N_CANDIDATES  # N retrieved before dropping bought and ranking
    drop_bought: bool | None = None  # None: the model's choice, made on val by training
    feature_set: str = "test"
    batch_size: int = 2048  # customers per actor call
    actors: int | None = None  # None: one per 2 CPUs of the cluster (at least 1)
    cpus_per_actor: float = 1.0
    threads: int = 1  # torch / FAISS threads per actor

    def validate(self) -> None:
        if self.k < 1 or self.n_candidates < 1 or self.batch_size < 1 or self.threads < 1:
            raise ValueError("recommend: k, n_candidates, batch_size and threads must be >= 1")
        if self.feature_set not in FEATURE_SETS:
            raise ValueError(f"recommend.feature_set must be one of {FEATURE_SETS}, got "
                             f"{self.feature_set!r}")
        if self.model not in ("two-tower", "ranker"):
            raise ValueError(f"recommend.model must be two-tower or ranker, got "
                             f"{self.model!r}")
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"recommend.actors must be >= 1, got {self.actors}")


class RecommendActor:
    """Ray Data actor: loads the recommender once, then recommends batch after batch."""

    def __init__(self, run_uri: str, cfg: dict):
        import torch

        self.cfg = RecommendConfig(**cfg)
        torch.set_num_threads(self.cfg.threads)
        try:
            import faiss

            faiss.omp_set_num_threads(self.cfg.threads)
        except (ImportError, AttributeError):
            pass
        self.rec = TwoTowerRecommender.load(Run(run_uri), self.cfg.variant,
                                            self.cfg.feature_set, self.cfg.n_candidates)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        c = batch["customer_idx"].astype(np.int64)
        arts, scores, path = self.rec.recommend(c, self.cfg.k, self.cfg.drop_bought)
        return {"customer_idx": c, "article_idx": arts, "score": scores,
                "path": np.array(path, dtype=object)}


def _out_rel(cfg: RecommendConfig) -> str:
    return f"{OUT_DIR}/{cfg.variant}"


def recommend(run: Run, cfg: RecommendConfig, out: str | None = None, force: bool = False) -> dict:
    """Recommend for every customer of ``raw/customers``; writes
    ``recommendations/two-tower/<variant>/submission.csv`` and ``scores/part-0.parquet``,
    and copies the CSV to ``out`` when given."""
    import ray
    from ray.data import ActorPoolStrategy

    from stylehub_ray.config import resolved
    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.ray_utils import ensure_ray

    cfg.validate()
    if cfg.model == "ranker":
        from stylehub_ray.eval.ranker import recommend_ranker

        return recommend_ranker(run, cfg, out=out, force=force)
    model_rel = f"models/{MODEL_NAME}/{cfg.variant}"
    run.require(model_rel, f"stylehub train two-tower --run {run.uri}")
    inputs = {rel: run.marker(rel)["fingerprint"] for rel in
              (model_rel, "raw/customers", "features/customers", "features/interactions")}
    if run.is_complete(index_name(cfg.variant)):
        inputs[index_name(cfg.variant)] = run.marker(index_name(cfg.variant))["fingerprint"]
    rel = _out_rel(cfg)
    step = run.step("recommend", cfg.variant, config=resolved(cfg), inputs=inputs,
                    outputs=[rel], force=force)
    if step.done:
        logger.info(f"recommend/{cfg.variant}: up to date; skipped (--force redoes it)")
        entry = step.previous() | {"skipped": True}
    else:
        ensure_ray()
        customers = read_table(run, "raw/customers", ["customer_idx", "customer_id"]).sort_by(
            "customer_idx")
        articles = read_table(run, "raw/article_map", ["article_idx", "article_id"]).sort_by(
            "article_idx")
        n = customers.num_rows
        actors = cfg.actors or max(1, int(ray.cluster_resources().get("CPU", 2)) // 2)
        blocks = max(1, min(-(-n // cfg.batch_size), actors * 4))
        size = -(-n // blocks)
        idx = pa.table({"customer_idx": customers["customer_idx"].cast(pa.int64())})
        with step:
            with step.time("recommend_s"):
                ds = ray.data.from_arrow([idx.slice(lo, size) for lo in range(0, n, size)])
                ds = ds.map_batches(RecommendActor, batch_size=cfg.batch_size,
                                    batch_format="numpy", compute=ActorPoolStrategy(size=actors),
                                    num_cpus=cfg.cpus_per_actor,
                                    fn_constructor_kwargs={"run_uri": run.uri,
                                                           "cfg": asdict(cfg)})
                parts = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
            res = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
            order = np.argsort(res["customer_idx"], kind="stable")
            res = {key: v[order] for key, v in res.items()}
            if not np.array_equal(res["customer_idx"], customers["customer_idx"].to_numpy()):
                raise RuntimeError("recommend: the actors did not return every customer once")
            with step.time("write_s"):
                step.counts = _write_outputs(run, step.tmp(rel), customers, articles, res, cfg,
                                             _drop_bought(run, cfg))
        entry = run.entry("recommend", cfg.variant)
        c = entry["counts"]["customers"]
        logger.info(f"recommend/{cfg.variant}: {c['total']:,} customers ({c['model']:,} model, "
                    f"{c['model-cold']:,} model from features (no training positive), "
                    f"{c['popularity']:,} popularity); bought articles "
                    f"{'dropped' if entry['counts']['recommendations']['drop_bought'] else 'kept'}"
                    f" in {entry['timings'].get('recommend_s', 0):.1f}s")
    if out:
        copy_out(run, posixpath.join(rel, "submission.csv"), out)
        logger.info(f"submission: {out}")
    return entry


def _write_outputs(run: Run, folder: str, customers: pa.Table, articles: pa.Table, res: dict,
                   cfg: RecommendConfig, drop_bought: bool, paths: tuple[str, ...] = PATHS
                   ) -> dict:
    import pyarrow.parquet as pq

    from stylehub_ray.embed.vectors import to_fixed_list

    arts = res["article_idx"]
    ids = articles["article_id"].to_numpy()
    names = np.array([f"{a:010d}" for a in ids.tolist()] + [""], dtype=object)
    text = names[np.where(arts >= 0, arts, len(ids))]
    prediction = [" ".join(x for x in row if x) for row in text.tolist()]
    csv = pd.DataFrame({"customer_id": customers["customer_id"].to_numpy(zero_copy_only=False),
                        "prediction": prediction}).to_csv(index=False)
    run.write_at(posixpath.join(folder, "submission.csv"), csv.encode())
    article_id = np.where(arts >= 0, ids[np.maximum(arts, 0)], -1)
    table = pa.table({
        "customer_idx": res["customer_idx"].astype(np.int32),
        "customer_id": customers["customer_id"],
        "article_idx": pa.FixedSizeListArray.from_arrays(
            pa.array(arts.astype(np.int32).ravel()), arts.shape[1]),
        "article_id": pa.FixedSizeListArray.from_arrays(pa.array(article_id.ravel()),
                                                        arts.shape[1]),
        "score": to_fixed_list(res["score"]),
        "path": pa.array(res["path"].tolist(), pa.string()),
    })
    run.fs.create_dir(posixpath.join(folder, "scores"), recursive=True)
    pq.write_table(table, posixpath.join(folder, "scores", "part-0.parquet"), filesystem=run.fs)
    answered = res["path"]
    return {"customers": {"total": len(answered),
                          **{p: int((answered == p).sum()) for p in paths}},
            "recommendations": {"k": cfg.k, "padded_rows": int((arts < 0).any(1).sum()),
                                "distinct_articles": int(len(np.unique(arts[arts >= 0]))),
                                "drop_bought": drop_bought}}


def _drop_bought(run: Run, cfg: RecommendConfig) -> bool:
    """Whether the submission drops bought articles: the setting, else the model's choice."""
    from stylehub_ray.models.artifacts import load_meta
    from stylehub_ray.models.recommender import DEFAULT_CHOICES

    if cfg.drop_bought is not None:
        return bool(cfg.drop_bought)
    meta = load_meta(run, MODEL_NAME, cfg.variant)
    return bool((DEFAULT_CHOICES | (meta.get("choices") or {}))["drop_bought"])


def copy_out(run: Run, rel: str, out: str) -> None:
    """Copy one file of the run to a local path or URI."""
    from stylehub_ray.run import resolve_fs

    fs, path = resolve_fs(out)
    parent = posixpath.dirname(path)
    if parent:
        fs.create_dir(parent, recursive=True)
    with run.fs.open_input_stream(run.path(rel)) as src, fs.open_output_stream(path) as dst:
        dst.write(src.read())


def read_scores(run: Run, variant: str = "default") -> pa.Table:
    """The Parquet of scores written by :func:`recommend`."""
    from stylehub_ray.data.ingest import read_table

    rel = f"{OUT_DIR}/{variant}"
    run.require(rel, f"stylehub recommend --run {run.uri}")
    return read_table(run, posixpath.join(rel, "scores"))
