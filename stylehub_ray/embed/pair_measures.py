"""Measures of item embeddings over labelled item pairs (numpy + FAISS, no Ray): the
contrastive paper's distances (4.6) and the rank of each anchor's positives among all items.
The contrastive trainer validates with them every epoch and its evaluation reports them
(:mod:`stylehub_ray.eval.contrastive`)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def unit_rows(x: np.ndarray) -> np.ndarray:
    from stylehub_ray.embed.text_model import l2_normalize

    return l2_normalize(np.asarray(x, np.float32))


def knn(unit: np.ndarray, queries: np.ndarray, k: int, candidates: np.ndarray | None = None,
        batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest candidate rows of each query row (itself excluded), best first, by
    cosine over unit rows: (ids (Q, k) padded -1, similarities (Q, k))."""
    from stylehub_ray.embed import index as I

    rows = np.arange(len(unit)) if candidates is None else np.flatnonzero(candidates)
    index = I.build_index(unit[rows], I.IndexParams("flat"))
    queries = np.asarray(queries, np.int64)
    return I.search(index, unit[queries], k, rows=rows, exclude=queries, batch=batch)


def pair_measures(emb: np.ndarray, pairs: pa.Table, has_vector: np.ndarray,
                  ks: tuple[int, ...] = (5, 20), mrr_depth: int | None = None,
                  max_anchors: int = 5000, seed: int = 0, distances: bool = False) -> dict:
    """The paper's distances and the ranking of each anchor's positives among all items.

    ``pairs``: ``anchor_idx``, ``other_idx``, ``label`` (1 positive, 0 negative); pairs with an
    item without a vector are left out. With ``distances``, the per-pair distances come back
    too (``pos``, ``neg``) for the histograms.
    """
    from stylehub_ray.metrics import evaluate_ranking, mrr

    unit = unit_rows(emb)
    a = pairs.column("anchor_idx").to_numpy().astype(np.int64)
    b = pairs.column("other_idx").to_numpy().astype(np.int64)
    label = pairs.column("label").to_numpy()
    ok = has_vector[a] & has_vector[b]
    a, b, label = a[ok], b[ok], label[ok]
    dist = 1.0 - np.einsum("ij,ij->i", unit[a], unit[b])  # 4.6: 1 - cosine similarity
    pos, neg = dist[label == 1], dist[label == 0]
    out = {"pos_pairs": int(len(pos)), "neg_pairs": int(len(neg)),
           "pos_dist": _mean(pos), "neg_dist": _mean(neg)}
    out["separation"] = out["neg_dist"] - out["pos_dist"]
    anchors = np.unique(a[label == 1])
    if len(anchors) > max_anchors:
        anchors = np.sort(np.random.default_rng([seed, 0xA]).choice(anchors, max_anchors,
                                                                    replace=False))
    depth = max(mrr_depth or max(ks), max(ks))
    truth_of: dict[int, set] = {}
    sel = np.isin(a, anchors) & (label == 1)
    for x, y in zip(a[sel].tolist(), b[sel].tolist()):
        truth_of.setdefault(x, set()).add(y)
    out["anchors"] = int(len(anchors))
    if len(anchors):
        recs, _ = knn(unit, anchors, depth, has_vector)
        truth = [truth_of[int(x)] for x in anchors]
        r = evaluate_ranking(recs, truth, ks=ks)
        for k in ks:
            out[f"recall@{k}"] = float(r[f"recall@{k}"])
        out["mrr"] = float(mrr(recs, truth, depth))
    else:
        out.update({f"recall@{k}": float("nan") for k in ks} | {"mrr": float("nan")})
    if distances:
        out["pos"], out["neg"] = pos, neg
    return out


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else float("nan")
