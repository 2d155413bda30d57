"""FAISS indexes over unit vectors (inner product = cosine) and the k-nearest-others search.

``flat`` is exact; ``hnsw`` and ``ivf`` are the approximate choices for a large catalogue.
The index is saved with ``faiss.serialize_index`` so it can live on any filesystem pyarrow
reaches, next to the row -> article table that maps FAISS ids back to articles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("flat", "hnsw", "ivf")


@dataclass
class IndexParams:
    kind: str = "flat"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 64
    ivf_nlist: int | None = None  # None: about 4 * sqrt(n)
    ivf_nprobe: int = 16
    seed: int = 0


def build_index(vectors: np.ndarray, params: IndexParams):
    """An inner-product index over ``vectors`` (N, D) float32 (normalise them first)."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    if params.kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif params.kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params.hnsw_ef_construction
        index.hnsw.efSearch = params.hnsw_ef_search
    elif params.kind == "ivf":
        nlist = params.ivf_nlist or max(1, min(n // 39, int(4 * np.sqrt(n))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = params.seed
        index.train(x)
        index.nprobe = min(params.ivf_nprobe, nlist)
    else:
        raise ValueError(f"index kind must be one of {', '.join(KINDS)}, got {params.kind!r}")
    index.add(x)
    return index


def nearest_others(index, vectors: np.ndarray, k: int, batch: int = 16_384
                   ) -> tuple[np.ndarray, np.ndarray]:
    """For every row i: the ``k`` nearest rows other than i, best first, and their scores.

    Searches k + 1 and removes i itself. Exact duplicates tie with i, so i may not come first
    (or, in an approximate index, at all): it is removed wherever it appears, and the k best
    others are kept. Rows with fewer than k others found are padded with -1.
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    ids = np.full((n, k), -1, np.int64)
    scores = np.full((n, k), -np.inf, np.float32)
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        s, i = index.search(x[lo:hi], k + 1)  # (B, k+1)
        self_id = np.arange(lo, hi)[:, None]
        keep = (i != self_id) & (i >= 0)
        # Stable order of the kept columns: first k kept entries of each row.
        rank = np.cumsum(keep, axis=1) - 1
        take = keep & (rank < k)
        rows, cols = np.nonzero(take)
        ids[lo + rows, rank[rows, cols]] = i[rows, cols]
        scores[lo + rows, rank[rows, cols]] = s[rows, cols]
    return ids, scores


def serialize(index) -> bytes:
    import faiss

    return faiss.serialize_index(index).tobytes()


def deserialize(data: bytes):
    import faiss

    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
