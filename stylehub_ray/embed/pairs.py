"""`stylehub pairs text|image|transactions`: item pairs for the contrastive models.

``text`` / ``image`` (contrastive paper 4.3.3): a FAISS inner-product index over the normalised
vectors of ``embeddings/text`` or ``embeddings/images`` (exact by default, HNSW or IVF by
``index``); the k = 5 nearest other items of every item are its positive pairs and as many
random negatives come from outside them (``pair_math.knn_pairs``). ``transactions`` (4.2.1):
co-purchases of one customer on the same day or within ``window_days``, negatives from items
that customer never bought, mined only from the transactions before the test period (the
features stage's split), since the model is then judged on test-period co-purchases. Pairs
are split 80/20 by canonical anchor so that (a, b) and (b, a) always land on the same side.
Writes ``pairs/<kind>`` and, for text / image, ``index/<kind>/`` (the FAISS index and its
row -> article table, read back by ``embed.index.read_index``).

The stage also records how often a positive pair shares ``product_type_name`` and
``colour_group_name`` against the same share for its random negatives: a check against labels
the vectors never saw (on real data the text carries both names, so text neighbours agree by
construction; images do not).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stylehub_ray.config import resolved
from stylehub_ray.embed import index as I
from stylehub_ray.embed import pair_math
from stylehub_ray.embed import vectors as V
from stylehub_ray.embed.text_model import l2_normalize
from stylehub_ray.run import Run

logger = logging.getLogger(__name__)

KINDS = ("text", "image", "transactions")
SOURCES = {"text": "embeddings/text", "image": "embeddings/images"}
STAGE = "pairs"
AGREEMENT_COLUMNS = ("product_type_name", "colour_group_name")


@dataclass
class PairsConfig:
    """`stylehub pairs KIND`: positive / negative item pairs and the FAISS index."""

    k: int = 5  # neighbours per item = positives per anchor (paper: 5)
    index: str = "flat"  # flat (exact) | hnsw | ivf
    hnsw_m: int = 32
    hnsw_ef_search: int = 64
    ivf_nlist: int | None = None  # None: ~4 sqrt(n)
    ivf_nprobe: int = 16
    threads: int | None = None  # FAISS threads (None: FAISS's default, all cores)
    test_share: float = 0.2
    seed: int = 0
    # transactions only
    window_days: int = 0  # 0: same day
    negatives_per_positive: int = 1
    max_positives: int | None = None

    def validate(self) -> None:
        if self.index not in I.KINDS:
            raise ValueError(f"pairs.index must be one of {', '.join(I.KINDS)}, "
                             f"got {self.index!r}")
        if self.k < 1:
            raise ValueError(f"pairs.k must be >= 1, got {self.k}")
        if not 0.0 <= self.test_share < 1.0:
            raise ValueError(f"pairs.test_share must be in [0, 1), got {self.test_share}")
        if self.window_days < 0 or self.negatives_per_positive < 0:
            raise ValueError("pairs.window_days and pairs.negatives_per_positive must be >= 0")

    def index_params(self) -> I.IndexParams:
        return I.IndexParams(kind=self.index, hnsw_m=self.hnsw_m,
                             hnsw_ef_search=self.hnsw_ef_search, ivf_nlist=self.ivf_nlist,
                             ivf_nprobe=self.ivf_nprobe, seed=self.seed)


def mine_pairs(run: Run, cfg: PairsConfig, kind: str, force: bool = False) -> dict:
    """Mine ``kind`` pairs in ``run``; returns the manifest entry (skipped when up to date)."""
    cfg.validate()
    if kind not in KINDS:
        raise ValueError(f"pairs kind must be one of {', '.join(KINDS)}, got {kind!r}")
    needs = [SOURCES[kind]] if kind in SOURCES else ["raw/transactions", "raw/article_map"]
    for rel in needs:
        if not run.is_complete(rel):
            stage = "embed " + ("images" if kind == "image" else kind) if kind in SOURCES \
                else "ingest"
            raise FileNotFoundError(f"{run.uri_of(rel)} is missing or incomplete: run "
                                    f"`stylehub {stage}` first")
    if kind == "transactions" and run.is_complete("features/interactions"):
        needs.append("features/interactions")  # its split sets the test period
    inputs = {rel: run.marker(rel)["fingerprint"] for rel in needs}
    out = f"pairs/{kind}"
    outputs = [out] + ([f"index/{kind}"] if kind in SOURCES else [])
    step = run.step(STAGE, kind, config=resolved(cfg), inputs=inputs, outputs=outputs,
                    force=force)
    if step.done:
        logger.info(f"pairs {kind}: {run.uri} is up to date; skipped (--force redoes it)")
        return step.previous() | {"skipped": True}
    if cfg.threads:
        import faiss

        faiss.omp_set_num_threads(cfg.threads)
    with step:
        table = _knn(run, cfg, kind, step) if kind in SOURCES else _transactions(run, cfg, step)
        V.write_table(run, step.tmp(out), table)
        label = table.column("label").to_numpy()
        split = np.array(table.column("split").to_pylist(), dtype=object)
        step.counts["pairs"] = {
            "positive": int(label.sum()), "negative": int((label == 0).sum()),
            "train": int((split == "train").sum()), "test": int((split == "test").sum())}
        agreement = attribute_agreement(run, table)
        if agreement:
            step.extra["attribute_agreement"] = agreement
    _log_summary(kind, run.entry(STAGE, kind))
    return run.entry(STAGE, kind)


def _knn(run: Run, cfg: PairsConfig, kind: str, step) -> pa.Table:
    emb = V.read_embeddings(run, SOURCES[kind])
    if kind == "image":  # only articles with a photo have a vector
        emb = emb.filter(emb.column("has_image"))
    n = emb.num_rows
    if n < 2 * cfg.k + 2:
        raise ValueError(f"pairs {kind}: {n} items with a vector; need at least {2 * cfg.k + 2} "
                         f"for {cfg.k} positives and {cfg.k} negatives each")
    x = l2_normalize(V.from_fixed_list(emb.column("embedding")))  # (N, D) unit rows
    with step.time("index_build_s"):
        index = I.build_index(x, cfg.index_params())
    with step.time("search_s"):
        neighbours, scores = I.nearest_others(index, x, cfg.k)
    with step.time("pairs_s"):
        p = pair_math.knn_pairs(neighbours, scores, cfg.seed, cfg.test_share)
        negative = p["label"] == 0
        # Similarity of the negatives from the vectors (positives have the index's score).
        p["score"][negative] = np.einsum("ij,ij->i", x[p["anchor"][negative]],
                                         x[p["other"][negative]])
    idx = emb.column("article_idx").to_numpy()
    ids = emb.column("article_id").to_numpy()
    meta = {"kind": kind, "source": SOURCES[kind], "index": cfg.index,
            "metric": "inner_product", "normalised": True, "n": n, "dim": int(x.shape[1]),
            "params": vars(cfg.index_params())}
    I.write_index(run, step.tmp(f"index/{kind}"), index, idx, ids, meta)
    pos = p["label"] == 1
    step.counts["index"] = {"items": n, "dim": int(x.shape[1])}
    # The paper's measure (cosine distance = 1 - similarity), for comparison with 0.229/0.585.
    step.extra["cosine_distance"] = {
        "positive": round(float(1 - p["score"][pos].mean()), 4),
        "negative": round(float(1 - p["score"][negative].mean()), 4)}
    return pa.table({
        "anchor_idx": pa.array(idx[p["anchor"]], pa.int32()),
        "other_idx": pa.array(idx[p["other"]], pa.int32()),
        "anchor_id": pa.array(ids[p["anchor"]], pa.int64()),
        "other_id": pa.array(ids[p["other"]], pa.int64()),
        "label": pa.array(p["label"], pa.int8()),
        "rank": pa.array(p["rank"], pa.int16()),
        "similarity": pa.array(p["score"], pa.float32()),
        "split": pa.array(p["split"].tolist(), pa.string()),
    })


def _transactions(run: Run, cfg: PairsConfig, step) -> pa.Table:
    from stylehub_ray.data.ingest import read_table

    amap = read_table(run, "raw/article_map")
    order = np.argsort(amap.column("article_idx").to_numpy())
    ids = amap.column("article_id").to_numpy()[order]  # article_idx -> article_id
    tx = read_table(run, "raw/transactions", ["t_dat", "customer_idx", "article_idx"])
    # Before the test period only: its co-purchases are what the model is scored on.
    test_start = str(test_period(run, tx)[0])
    rows = tx.num_rows
    tx = tx.filter(pc.less(tx["t_dat"], pa.scalar(np.datetime64(test_start, "D").item(),
                                                  pa.date32())))
    day = tx.column("t_dat").combine_chunks().cast(pa.int32()).to_numpy()
    with step.time("pairs_s"):
        p = pair_math.transaction_pairs(
            tx.column("customer_idx").to_numpy(), day, tx.column("article_idx").to_numpy(),
            len(ids), cfg.window_days, cfg.negatives_per_positive, cfg.max_positives,
            cfg.seed, cfg.test_share)
    step.counts["transactions"] = {"rows": rows, "before_test": tx.num_rows}
    step.extra["mined_before"] = test_start
    return pa.table({
        "anchor_idx": pa.array(p["anchor"], pa.int32()),
        "other_idx": pa.array(p["other"], pa.int32()),
        "anchor_id": pa.array(ids[p["anchor"]], pa.int64()),
        "other_id": pa.array(ids[p["other"]], pa.int64()),
        "label": pa.array(p["label"], pa.int8()),
        "support": pa.array(p["support"], pa.int32()),
        "split": pa.array(p["split"].tolist(), pa.string()),
    })


def test_period(run: Run, tx: pa.Table):
    """(first day, last day) of the test period: the features stage's ``test_start ..
    test_end`` when it ran, else the last 7 days of ``tx`` (``raw/transactions``' t_dat)."""
    from datetime import date, timedelta

    entry = run.entry("features") or {}
    cut = entry.get("cutoffs") if entry.get("status") == "complete" else None
    if cut:
        return date.fromisoformat(cut["test_start"]), date.fromisoformat(cut["test_end"])
    end = pc.max(tx.column("t_dat")).as_py()
    return end - timedelta(days=6), end


def attribute_agreement(run: Run, pairs: pa.Table,
                        columns: tuple[str, ...] = AGREEMENT_COLUMNS) -> dict:
    """Share of positive and of negative pairs whose two items share each attribute (and
    all of them): how often an item's neighbours have its product type and colour."""
    from stylehub_ray.data.ingest import read_table

    if not run.is_complete("raw/articles"):
        return {}
    arts = read_table(run, "raw/articles", ["article_idx", *columns])
    order = np.argsort(arts.column("article_idx").to_numpy())
    a = pairs.column("anchor_idx").to_numpy()
    b = pairs.column("other_idx").to_numpy()
    label = pairs.column("label").to_numpy()
    same_all = np.ones(len(a), bool)
    out: dict[str, dict[str, float]] = {}
    for col in columns:
        values = np.array(arts.column(col).to_pylist(), dtype=object)[order]
        same = values[a] == values[b]
        same_all &= same
        out[col] = _by_label(same, label)
    out["all"] = _by_label(same_all, label)
    return out


def _by_label(same: np.ndarray, label: np.ndarray) -> dict[str, float]:
    def share(mask: np.ndarray) -> float:
        return round(float(same[mask].mean()), 4) if mask.any() else float("nan")

    return {"positive": share(label == 1), "negative": share(label == 0)}


def _log_summary(kind: str, entry: dict) -> None:
    c = entry["counts"]["pairs"]
    logger.info(f"pairs {kind}: {c['positive']:,} positive, {c['negative']:,} negative; "
                f"train {c['train']:,}, test {c['test']:,}")
    if "cosine_distance" in entry:
        d = entry["cosine_distance"]
        logger.info(f"pairs {kind}: cosine distance positive {d['positive']:.3f}, "
                    f"negative {d['negative']:.3f}")
    for col, shares in entry.get("attribute_agreement", {}).items():
        logger.info(f"pairs {kind}: same {col}: positives {shares['positive']:.1%}, "
                    f"random negatives {shares['negative']:.1%}")


def read_pairs(run: Run, kind: str) -> pa.Table:
    """``pairs/<kind>`` as one table."""
    from stylehub_ray.data.ingest import read_table

    return read_table(run, f"pairs/{kind}")


__all__ = ["PairsConfig", "mine_pairs", "attribute_agreement", "read_pairs"]
