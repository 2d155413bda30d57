"""FAISS indexes over unit vectors (inner product = cosine): build, search, read and write.

``flat`` is exact; ``hnsw`` and ``ivf`` are the approximate choices for a large catalogue.
Every FAISS index of a run lives in a folder of its own (``index/text``, ``index/image``,
``index/contrastive-<variant>``, ``index/two-tower``) written by :func:`write_index` and read
by :func:`read_index`: ``faiss.index`` (``faiss.serialize_index``, so it can live on any
filesystem pyarrow reaches), ``ids.parquet`` (``row``, ``article_idx``, ``article_id``: FAISS
row -> article) and ``index.json`` (what the index holds). :func:`search` is the one k-nearest
search over an index: FAISS rows mapped to articles, padding and the query item left out.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

import numpy as np

from stylehub_ray.run import Run

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


def search(index, vectors: np.ndarray, k: int, rows: np.ndarray | None = None,
           exclude: np.ndarray | None = None, batch: int | None = 16_384,
           fill: float = -np.inf) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest indexed items of each query row, best first: (ids (m, k) int64
    padded -1, scores (m, k) float32 padded ``fill``).

    ``rows``: FAISS row -> item id (None: the row itself). ``exclude`` (m,): an item id left
    out of each query's answer (the query item itself); one more is searched for it. Exact
    duplicates tie with the query item, so it may not come first (or, in an approximate index,
    at all): it is removed wherever it appears and the k best others are kept. Queries go to
    FAISS ``batch`` rows at a time (None: all at once).
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    ids = np.full((n, k), -1, np.int64)
    scores = np.full((n, k), fill, np.float32)
    width = min(k + (exclude is not None), int(index.ntotal))
    if n == 0 or width < 1:
        return ids, scores
    step = batch or n
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        s, i = index.search(x[lo:hi], width)  # (B, width)
        found = i if rows is None else np.where(i >= 0, rows[np.maximum(i, 0)], -1)
        keep = found >= 0
        if exclude is not None:
            keep &= found != np.asarray(exclude, np.int64)[lo:hi, None]
        # Stable order of the kept columns: first k kept entries of each row.
        rank = np.cumsum(keep, axis=1) - 1
        take = keep & (rank < k)
        r, c = np.nonzero(take)
        ids[lo + r, rank[r, c]] = found[r, c]
        scores[lo + r, rank[r, c]] = s[r, c]
    return ids, scores


def nearest_others(index, vectors: np.ndarray, k: int, batch: int = 16_384
                   ) -> tuple[np.ndarray, np.ndarray]:
    """For every row i of the indexed ``vectors``: the ``k`` nearest rows other than i, best
    first, and their scores; rows with fewer than k others found are padded with -1."""
    return search(index, vectors, k, exclude=np.arange(len(vectors)), batch=batch)


def serialize(index) -> bytes:
    import faiss

    return faiss.serialize_index(index).tobytes()


def deserialize(data: bytes):
    import faiss

    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


def write_index(run: Run, folder: str, index, article_idx: np.ndarray, article_id: np.ndarray,
                info: dict) -> None:
    """An index folder (a step's temporary output): ``faiss.index``, ``ids.parquet`` (row i of
    the index is ``article_idx[i]``, ``article_id[i]``) and ``info`` as ``index.json``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(article_idx) != index.ntotal or len(article_id) != index.ntotal:
        raise ValueError(f"{folder}: {index.ntotal} index rows but {len(article_idx)} "
                         f"article_idx and {len(article_id)} article_id")
    run.write_at(posixpath.join(folder, "faiss.index"), serialize(index))
    ids = pa.table({"row": pa.array(np.arange(len(article_idx)), pa.int32()),
                    "article_idx": pa.array(np.asarray(article_idx), pa.int32()),
                    "article_id": pa.array(np.asarray(article_id), pa.int64())})
    pq.write_table(ids, posixpath.join(folder, "ids.parquet"), filesystem=run.fs)
    run.write_at(posixpath.join(folder, "index.json"),
                 (json.dumps(info, indent=2, default=str) + "\n").encode())


def read_index(run: Run, rel: str) -> tuple[object, np.ndarray]:
    """(FAISS index, row -> article_idx int64) of the index folder ``rel``."""
    import pyarrow.parquet as pq

    with run.fs.open_input_stream(run.path(posixpath.join(rel, "faiss.index"))) as f:
        index = deserialize(f.read())
    ids = pq.read_table(run.path(posixpath.join(rel, "ids.parquet")), filesystem=run.fs,
                        columns=["row", "article_idx"])
    rows = np.full(ids.num_rows, -1, np.int64)
    rows[ids.column("row").to_numpy()] = ids.column("article_idx").to_numpy()
    return index, rows
