"""What the serving graph computes, without Ray: the parts each deployment holds, and the
retrieve-then-rank flow that composes them.

Every deployment in ``serve/app.py`` is a thin Ray Serve wrapper around one *part* here, and
the ingress runs :func:`recommend_flow` over :class:`HandleParts` (``await handle.m.remote()``);
the in-process floor of ``bench/serve.py`` runs the very same flow over :class:`LocalParts`
(direct calls), so the two compute the same recommendation by the same functions. The model
math stays in the models' own modules (``models.recommender.TwoTowerRecommender``,
``eval.fndcl.ColdStartScorer``, ``models.fndcl.cold_start_scores``); the parts only look up,
validate and route.

The trivial parts answer at once with answers of the right shape: the benchmark's trivial graph
is the same topology with them in place of the models.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from stylehub_ray.run import Run
from stylehub_ray.serve.schemas import format_article_id
from stylehub_ray.serve.settings import ServeConfig

ATTRIBUTES = ("prod_name", "product_type_name", "product_group_name", "colour_group_name",
              "department_name", "index_group_name", "garment_group_name")


class BadInput(Exception):
    """A request the graph cannot answer because of what it asked: an HTTP 4xx."""

    def __init__(self, status: int, message: str):
        super().__init__(status, message)
        self.status, self.message = status, message

    def __str__(self) -> str:
        return self.message


class Unavailable(Exception):
    """A part the served runs do not have (no trained model): HTTP 503 with the reason."""


def process_memory_mb() -> float | None:
    """Resident memory of this process (Linux ``/proc``), for /healthz and the load test."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def run_info(run: Run | None) -> dict:
    import os

    info = {"pid": os.getpid(), "rss_mb": process_memory_mb()}
    if run is None:
        return {"run": None, **info}
    return {"run": run.uri, "manifest_updated": run.manifest().get("updated"), **info}


# ------------------------------------------------------------------------------------------
# Look-ups
# ------------------------------------------------------------------------------------------
class Catalog:
    """Article ids <-> dense indices and the attributes a response shows (``raw/articles``)."""

    def __init__(self, ids: np.ndarray, idx: np.ndarray, attributes: dict[str, list]):
        order = np.argsort(ids, kind="stable")
        self.sorted_ids, self.sorted_idx = ids[order], idx[order]
        n = int(idx.max()) + 1 if len(idx) else 0
        self.id_of = np.full(n, -1, np.int64)
        self.id_of[idx] = ids
        self.attributes = {}
        for name, values in attributes.items():
            col = [None] * n
            for i, v in zip(idx.tolist(), values):
                col[i] = v
            self.attributes[name] = col

    @classmethod
    def load(cls, run: Run) -> Catalog:
        from stylehub_ray.data.ingest import read_table

        if not run.is_complete("raw/articles"):
            raise FileNotFoundError(f"{run.uri_of('raw/articles')} is missing: ingest the run "
                                    f"first")
        names = read_table(run, "raw/articles", None).schema.names
        cols = ["article_id", "article_idx", *[a for a in ATTRIBUTES if a in names]]
        t = read_table(run, "raw/articles", cols)
        return cls(t.column("article_id").to_numpy(), t.column("article_idx").to_numpy(),
                   {a: t.column(a).to_pylist() for a in cols[2:]})

    def __len__(self) -> int:
        return len(self.id_of)

    def idx_of(self, article_ids: list[int], field: str = "article_id") -> np.ndarray:
        """Dense indices of article ids; an id not in the catalogue is a 404 naming it."""
        ids = np.asarray(article_ids, np.int64)
        pos = np.searchsorted(self.sorted_ids, ids).clip(0, max(len(self.sorted_ids) - 1, 0))
        found = (self.sorted_ids[pos] == ids) if len(self.sorted_ids) else np.zeros(len(ids),
                                                                                     bool)
        if not found.all():
            missing = [format_article_id(i) for i in ids[~found][:5]]
            raise BadInput(404, f"{field}: unknown article id(s) {', '.join(missing)} (not in "
                                f"this run's {len(self.sorted_ids):,} articles)")
        return self.sorted_idx[pos].astype(np.int64)

    def describe(self, article_idx, scores) -> list[dict]:
        out = []
        for i, s in zip(np.asarray(article_idx).tolist(), np.asarray(scores).tolist()):
            item = {"article_id": format_article_id(self.id_of[i]), "score": float(s)}
            for name, col in self.attributes.items():
                item[name] = col[i]
            out.append(item)
        return out


class CustomerMap:
    """Customer id (64 hex) -> ``customer_idx`` from ``raw/customer_map``: a sorted fixed-width
    byte array searched by bisection (1.37M ids take 88 MB, far less than a dict)."""

    def __init__(self, ids: np.ndarray, idx: np.ndarray):
        ids = np.asarray(ids, dtype="S64")
        order = np.argsort(ids, kind="stable")
        self.ids, self.idx = ids[order], np.asarray(idx, np.int64)[order]

    @classmethod
    def load(cls, run: Run) -> CustomerMap:
        from stylehub_ray.data.ingest import read_table

        t = read_table(run, "raw/customer_map", ["customer_id", "customer_idx"])
        return cls(np.asarray(t.column("customer_id").to_pylist(), dtype="S64"),
                   t.column("customer_idx").to_numpy())

    def lookup(self, customer_id: str) -> int | None:
        key = np.asarray([customer_id.encode()], dtype="S64")
        pos = int(np.searchsorted(self.ids, key)[0])
        if pos < len(self.ids) and self.ids[pos] == key[0]:
            return int(self.idx[pos])
        return None

    def sample(self, n: int) -> list[str]:
        return [x.decode() for x in self.ids[:n]]


# ------------------------------------------------------------------------------------------
# Two-tower parts (one per deployment)
# ------------------------------------------------------------------------------------------
def load_recommender(run: Run, cfg: ServeConfig, history: bool = True, index: bool = True):
    """The two-tower recommender of ``run`` (contract: ``models.recommender``), or
    :class:`Unavailable` saying what is missing. A part leaves out the purchase history and
    the FAISS index where it does not use them (``history`` / ``index`` False)."""
    try:
        from stylehub_ray.models.recommender import TwoTowerRecommender
    except ImportError as exc:
        raise Unavailable(f"two-tower recommender not installed: {exc}") from exc
    try:
        return TwoTowerRecommender.load(run, variant=cfg.variant, feature_set=cfg.feature_set,
                                        history=history, index=index)
    except FileNotFoundError as exc:
        raise Unavailable(f"{run.uri}: no trained two-tower model ({exc}); train it with "
                          f"`stylehub train two-tower --run {run.uri}`") from exc


def cold_start_vector(article_vectors: np.ndarray, purchased_idx: np.ndarray, strategy: str,
                      customer_vectors: np.ndarray | None = None, delta: float = 0.0,
                      tau: float = 0.2) -> np.ndarray:
    """A customer vector for a customer the model has never seen, from what they bought.

    ``avg``: the mean of the purchased articles' retrieval vectors. ``w-avg``: FND-CL 3.5
    applied to customers and articles: the similarity of each trained customer i to the new
    one, s_i = mean over purchases j of cos(u_i, v_j) (Eq. 20), the neighbourhood N (Eq. 21:
    s_i > delta, or the most similar), and the softmax(s / tau) weighted average of their
    vectors (Eq. 23-24). Eq. 24 averages the neighbours' scores; a customer's score is linear
    in its vector, so averaging the vectors gives the same ranking through the same index.
    """
    a = article_vectors[purchased_idx]  # (P, d)
    if strategy == "avg":
        return a.mean(axis=0).astype(np.float32)
    if strategy != "w-avg":
        raise BadInput(422, f"cold_start: {strategy!r} is not a strategy; expected avg or w-avg")
    if customer_vectors is None or len(customer_vectors) == 0:
        raise Unavailable("w-avg needs trained customer vectors; none were loaded")
    import torch

    from stylehub_ray.models.fndcl import cold_start_scores

    u = torch.from_numpy(customer_vectors)  # (U, d)
    sim = torch.nn.functional.normalize(u, dim=1) @ torch.nn.functional.normalize(
        torch.from_numpy(a), dim=1).T  # (U, P): cos(u_i, v_j)
    # cold_start_scores returns w @ candidate_scores; with the vectors as "candidates" that
    # is the weighted customer vector, (d,).
    return cold_start_scores(sim, u, "w-avg", delta, tau).numpy().astype(np.float32)


class EncoderPart:
    """Customer encoder: id -> index -> customer-tower vector; cold-start vectors.

    The trained customers' vectors are computed once per replica by the recommender's own
    ``encode_customers`` (in batches), so a request is a look-up: 1.37M customers x 32 floats
    take 175 MB. ``precompute_customers = false`` encodes each request instead.
    """

    def __init__(self, run: Run, cfg: ServeConfig):
        self.run, self.cfg = run, cfg
        self.customers = CustomerMap.load(run)
        self.rec = load_recommender(run, cfg, history=False, index=False)
        self.article_vectors = np.asarray(self.rec.article_vectors, np.float32)
        trained = np.sort(self.customers.idx[self.rec.known(self.customers.idx)])
        self.row_of = np.full(int(self.customers.idx.max()) + 1 if len(trained) else 0, -1,
                              np.int64)
        self.vectors = None
        if cfg.precompute_customers:
            self.vectors = self._encode_all(trained)
            self.row_of[trained] = np.arange(len(trained))
        wavg_rows = np.arange(len(trained))
        if len(wavg_rows) > cfg.wavg_customers:  # the w-avg neighbourhood: a seeded sample
            wavg_rows = np.sort(np.random.default_rng(cfg.seed).choice(
                wavg_rows, cfg.wavg_customers, replace=False))
        # Trained customers' vectors for the w-avg neighbourhood (FND-CL 3.5).
        self.customer_vectors = (self.vectors[wavg_rows] if self.vectors is not None
                                 else self._encode_all(trained[wavg_rows]))

    def _encode_all(self, idx: np.ndarray, batch: int = 8192) -> np.ndarray:
        if not len(idx):
            return np.zeros((0, self.article_vectors.shape[1]), np.float32)
        return np.concatenate([np.asarray(self.rec.encode_customers(idx[i:i + batch]),
                                          np.float32) for i in range(0, len(idx), batch)])

    def encode(self, customer_id: str) -> dict:
        idx = self.customers.lookup(customer_id)
        if idx is None:
            return {"customer_idx": None, "in_map": False, "known": False, "vector": None}
        if not bool(np.asarray(self.rec.known(np.array([idx], np.int64)))[0]):
            return {"customer_idx": idx, "in_map": True, "known": False, "vector": None}
        if self.vectors is not None:
            vec = self.vectors[self.row_of[idx]]
        else:
            vec = self.rec.encode_customers(np.array([idx], np.int64))[0]
        return {"customer_idx": idx, "in_map": True, "known": True, "vector": vec}

    def cold_vector(self, purchased_idx: list[int], strategy: str) -> np.ndarray:
        return cold_start_vector(self.article_vectors, np.asarray(purchased_idx, np.int64),
                                 strategy, self.customer_vectors, self.cfg.wavg_delta,
                                 self.cfg.wavg_tau)

    def info(self) -> dict:
        return {"part": "encoder", **run_info(self.run),
                "customers": len(self.customers.ids),
                "wavg_customers": len(self.customer_vectors)}


class RetrieverPart:
    """Retriever: the FAISS index of the article-tower vectors, loaded once per replica."""

    def __init__(self, run: Run, cfg: ServeConfig):
        self.run = run
        self.rec = load_recommender(run, cfg, history=False)

    def retrieve(self, vector: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        n = min(int(n), int(self.rec.n_articles))
        idx, scores = self.rec.retrieve(np.asarray(vector, np.float32).reshape(1, -1), n)
        keep = idx[0] >= 0
        return idx[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)

    def info(self) -> dict:
        return {"part": "retriever", **run_info(self.run), "articles": int(self.rec.n_articles)}


class RankerPart:
    """Ranker: the ranking model over many requests' candidates at once."""

    def __init__(self, run: Run, cfg: ServeConfig):
        self.run = run
        self.rec = load_recommender(run, cfg, history=False, index=False)

    def rank_many(self, requests: list[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        """Scores of each (customer_idx, candidates) request; one model call per distinct
        candidate count (rows are padded to it with their own first candidate)."""
        out: list[np.ndarray | None] = [None] * len(requests)
        width = max((len(c) for _, c in requests), default=0)
        todo = [i for i, (_, c) in enumerate(requests) if len(c)]
        for i, (_, c) in enumerate(requests):
            if not len(c):
                out[i] = np.zeros(0, np.float32)
        if todo:
            cust = np.array([requests[i][0] for i in todo], np.int64)
            cands = np.stack([np.pad(np.asarray(requests[i][1], np.int64),
                                     (0, width - len(requests[i][1])), mode="edge")
                              for i in todo])  # (m, width)
            scores = np.asarray(self.rec.rank(cust, cands), np.float32)  # (m, width)
            for row, i in enumerate(todo):
                out[i] = scores[row, :len(requests[i][1])]
        return out

    def info(self) -> dict:
        return {"part": "ranker", **run_info(self.run)}


class HistoryPart:
    """Bought filter (purchase history before the feature set's cutoff) and popularity."""

    def __init__(self, run: Run, cfg: ServeConfig):
        from stylehub_ray.models.recommender import load_model_history

        self.run = run
        try:  # the history only: no model inputs, no index
            self.history = load_model_history(run, cfg.variant, cfg.feature_set)
        except FileNotFoundError as exc:
            raise Unavailable(f"{run.uri}: no trained two-tower model ({exc}); train it with "
                              f"`stylehub train two-tower --run {run.uri}`") from exc

    def bought(self, customer_idx: int | None) -> np.ndarray:
        if customer_idx is None:
            return np.zeros(0, np.int64)
        return np.asarray(self.history.bought(np.array([customer_idx], np.int64))[0],
                          np.int64)

    def popular(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The fallback's articles and their share of the last week's sales."""
        idx = np.asarray(self.history.popular[:int(k)], np.int64)
        return idx, np.asarray(self.history.popular_score[:len(idx)], np.float32)

    def info(self) -> dict:
        return {"part": "history", **run_info(self.run)}


# Trivial parts: the same calls, answered at once (the benchmark's trivial graph).
class TrivialEncoderPart:
    def __init__(self, run: Run | None = None, cfg: ServeConfig | None = None, dim: int = 32):
        self.run, self.dim = run, dim

    def encode(self, customer_id: str) -> dict:
        return {"customer_idx": 0, "in_map": True, "known": True,
                "vector": np.zeros(self.dim, np.float32)}

    def cold_vector(self, purchased_idx: list[int], strategy: str) -> np.ndarray:
        return np.zeros(self.dim, np.float32)

    def info(self) -> dict:
        return {"part": "encoder", "trivial": True, **run_info(self.run)}


class TrivialRetrieverPart:
    def __init__(self, run: Run | None = None, cfg: ServeConfig | None = None):
        self.run = run

    def retrieve(self, vector: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(int(n), dtype=np.int64), np.zeros(int(n), np.float32)

    def info(self) -> dict:
        return {"part": "retriever", "trivial": True, **run_info(self.run)}


class TrivialRankerPart:
    def __init__(self, run: Run | None = None, cfg: ServeConfig | None = None):
        self.run = run

    def rank_many(self, requests: list[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        return [np.zeros(len(c), np.float32) for _, c in requests]

    def info(self) -> dict:
        return {"part": "ranker", "trivial": True, **run_info(self.run)}


class TrivialHistoryPart:
    def __init__(self, run: Run | None = None, cfg: ServeConfig | None = None):
        self.run = run

    def bought(self, customer_idx: int | None) -> np.ndarray:
        return np.zeros(0, np.int64)

    def popular(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(int(k), dtype=np.int64), np.zeros(int(k), np.float32)

    def info(self) -> dict:
        return {"part": "history", "trivial": True, **run_info(self.run)}


# ------------------------------------------------------------------------------------------
# The flow, over handles (serving) or direct calls (the in-process floor)
# ------------------------------------------------------------------------------------------
class LocalParts:
    """The flow's view of the parts as direct calls in this process."""

    def __init__(self, encoder, retriever, ranker, history):
        self.encoder, self.retriever, self.ranker, self.history = (encoder, retriever, ranker,
                                                                   history)

    async def encode(self, customer_id):
        return self.encoder.encode(customer_id)

    async def cold_vector(self, purchased_idx, strategy):
        return self.encoder.cold_vector(purchased_idx, strategy)

    async def retrieve(self, vector, n):
        return self.retriever.retrieve(vector, n)

    async def rank(self, customer_idx, candidates):
        return self.ranker.rank_many([(customer_idx, candidates)])[0]

    async def bought(self, customer_idx):
        return self.history.bought(customer_idx)

    async def popular(self, k):
        return self.history.popular(k)


@dataclass
class Recommendation:
    article_idx: np.ndarray
    scores: np.ndarray
    path: str
    ranked_by: str
    known_customer: bool


async def recommend_flow(parts, customer_id: str, k: int, purchased_idx: np.ndarray,
                         strategy: str, drop_bought: bool, candidates: int) -> Recommendation:
    """Retrieve, drop what was bought, rank, keep the top k (two-tower paper, "Step 6:
    Inference"), or a fallback for a customer the model has never seen: the cold-start vector
    when the request carries purchases, else popularity."""
    enc = await parts.encode(customer_id)
    idx, purchased_idx = enc["customer_idx"], np.asarray(purchased_idx, np.int64)
    history = parts.bought(idx) if drop_bought and idx is not None else _none()
    if enc["known"]:
        n = max(candidates, k)
        (got, _), bought = await asyncio.gather(parts.retrieve(enc["vector"], n), history)
        drop = np.union1d(bought, purchased_idx) if drop_bought else np.zeros(0, np.int64)
        keep = got[~np.isin(got, drop)]
        if len(keep) < k and len(got) == n:  # too many were bought: retrieve deeper once
            got, _ = await parts.retrieve(enc["vector"], n + len(drop))
            keep = got[~np.isin(got, drop)]
        scores = np.asarray(await parts.rank(idx, keep), np.float32)
        order = np.argsort(-scores, kind="stable")[:k]
        return Recommendation(keep[order], scores[order], "model", "ranking model", True)
    if len(purchased_idx):
        vector, bought = await asyncio.gather(parts.cold_vector(purchased_idx, strategy), history)
        drop = np.union1d(bought, purchased_idx) if drop_bought else np.zeros(0, np.int64)
        got, scores = await parts.retrieve(vector, max(candidates, k) + len(drop))
        keep = ~np.isin(got, drop)
        got, scores = got[keep][:k], scores[keep][:k]
        return Recommendation(got, scores, f"cold-start-{strategy}", "retrieval score",
                              enc["in_map"])
    bought = await history
    top, scores = await parts.popular(k + len(bought))
    keep = ~np.isin(top, bought)
    return Recommendation(top[keep][:k], scores[keep][:k], "popularity", "popularity",
                          enc["in_map"])


async def _none() -> np.ndarray:
    return np.zeros(0, np.int64)


# ------------------------------------------------------------------------------------------
# Item similarity: by article (contrastive model, else the run's item vectors) and by photo
# ------------------------------------------------------------------------------------------
class VectorSearch:
    """Unit item vectors (row = article_idx) and a FAISS inner-product index over those with
    a vector: the k nearest other articles of an article, or of a query vector."""

    def __init__(self, vectors: np.ndarray, valid: np.ndarray, source: str, index=None,
                 rows: np.ndarray | None = None):
        from stylehub_ray.embed import index as I
        from stylehub_ray.embed.text_model import l2_normalize

        self.vectors = l2_normalize(np.asarray(vectors, np.float32))
        self.valid, self.source = np.asarray(valid, bool), source
        if index is None:
            rows = np.flatnonzero(self.valid)
            index = I.build_index(self.vectors[rows], I.IndexParams(kind="flat"))
        self.index, self.rows = index, np.asarray(rows, np.int64)

    @classmethod
    def from_embeddings(cls, run: Run, rel: str, source: str,
                        index_rel: str | None = None) -> VectorSearch:
        from stylehub_ray.embed.vectors import from_fixed_list, read_embeddings

        t = read_embeddings(run, rel, ["article_idx", "embedding"])
        n = int(t.column("article_idx").to_numpy().max()) + 1
        vectors = np.zeros((n, t.column("embedding").type.list_size), np.float32)
        idx = t.column("article_idx").to_numpy()
        vectors[idx] = from_fixed_list(t.column("embedding"))
        valid = np.zeros(n, bool)
        valid[idx] = t.column("embedding").is_valid().to_numpy(zero_copy_only=False)
        if index_rel and run.is_complete(index_rel):
            from stylehub_ray.embed.index import read_index

            index, rows = read_index(run, index_rel)
            return cls(vectors, valid, source, index, rows)
        return cls(vectors, valid, source)

    def search(self, query: np.ndarray, k: int, exclude: int = -1
               ) -> tuple[np.ndarray, np.ndarray]:
        from stylehub_ray.embed.index import search
        from stylehub_ray.embed.text_model import l2_normalize

        q = l2_normalize(np.asarray(query, np.float32).reshape(1, -1))
        idx, s = search(self.index, q, k, rows=self.rows, exclude=np.array([exclude]),
                        batch=None)
        found = idx[0] >= 0
        return idx[0][found], s[0][found]

    def similar(self, article_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        if article_idx >= len(self.valid) or not self.valid[article_idx]:
            raise BadInput(404, f"article has no {self.source} vector (e.g. no photo)")
        return self.search(self.vectors[article_idx], k, exclude=article_idx)


class SimilarPart:
    """``/similar/{article_id}``: the contrastive model's neighbours when one is trained in
    the run (``eval.similar``), else the nearest articles by the run's text, then image,
    embeddings (the vectors the contrastive model starts from)."""

    def __init__(self, run: Run, cfg: ServeConfig):
        self.run, self.search = run, None
        self.contrastive = _contrastive_similar(run)
        if self.contrastive is None:
            for rel, index_rel, source in (("embeddings/text", "index/text", "text-embeddings"),
                                           ("embeddings/images", "index/image",
                                            "image-embeddings")):
                if run.is_complete(rel):
                    self.search = VectorSearch.from_embeddings(run, rel, source, index_rel)
                    break
        if self.contrastive is None and self.search is None:
            raise Unavailable(f"{run.uri}: no contrastive model and no item embeddings; run "
                              f"`stylehub embed text --run {run.uri}`")
        self.source = "contrastive" if self.contrastive is not None else self.search.source

    def similar(self, article_idx: int, k: int) -> tuple[np.ndarray, np.ndarray, str]:
        if self.contrastive is not None:
            idx, scores = self.contrastive(int(article_idx), int(k))
            return np.asarray(idx, np.int64), np.asarray(scores, np.float32), self.source
        idx, scores = self.search.similar(int(article_idx), int(k))
        return idx, scores, self.source

    def info(self) -> dict:
        return {"part": "similar", **run_info(self.run), "source": self.source}


def _contrastive_similar(run: Run):
    """A ``(article_idx, k) -> (article_idx, scores)`` callable over the run's contrastive
    model (``stylehub_ray.eval.similar``), or None when none is trained or installed."""
    try:
        from stylehub_ray.eval import similar as S
    except ImportError:
        return None
    finder = getattr(S, "SimilarItems", None)
    if finder is None:
        return None
    try:
        model = finder.load(run)
    except (FileNotFoundError, ValueError):
        return None
    def similar(article_idx: int, k: int) -> tuple[list[int], list[float]]:
        rows = model.by_article(int(model.article_id[article_idx]), k)
        return [r["article_idx"] for r in rows], [r["score"] for r in rows]

    return similar


class ImageSearchPart:
    """``/similar-image``: an uploaded photo through the run's image encoder (the backbone
    and settings ``embed images`` used, a SimCLR one included) and its PCA, then the nearest
    catalogue photos (``index/image`` when mined, else a flat index of
    ``embeddings/images``)."""

    def __init__(self, run: Run, cfg: ServeConfig):
        import torch

        from stylehub_ray.embed.images import PhotoEncoder

        self.run = run
        try:
            self.photos = PhotoEncoder.from_run(run, "cuda" if torch.cuda.is_available()
                                                else "cpu")
        except FileNotFoundError as exc:
            raise Unavailable(str(exc)) from None
        self.search = VectorSearch.from_embeddings(run, "embeddings/images", "image-embeddings",
                                                   "index/image")
        self.model = self.photos.label

    def similar(self, data: bytes, k: int) -> tuple[np.ndarray, np.ndarray, str]:
        try:
            reduced = self.photos.photo(data)  # (P,), as embed images stored the catalog's
        except Exception as exc:  # noqa: BLE001 - whatever Pillow raises: the client's file
            raise BadInput(415, f"upload is not a readable image: {type(exc).__name__}: "
                                f"{str(exc)[:200]}") from None
        idx, scores = self.search.search(reduced, k)
        return idx, scores, f"image-embeddings: {self.model}"

    def info(self) -> dict:
        return {"part": "image", **run_info(self.run), "model": self.model}


# ------------------------------------------------------------------------------------------
# Outfits (FND-CL)
# ------------------------------------------------------------------------------------------
def pick_outfit_variant(run: Run, variant: str = "") -> str:
    """The FND-CL variant to serve: the one named, else a trained student, else a teacher."""
    from stylehub_ray.eval.fndcl import list_variants

    variants = list_variants(run)
    if variant:
        if variant not in variants:
            raise Unavailable(f"{run.uri}: models/fndcl/{variant} is not trained; trained: "
                              f"{', '.join(variants) or 'none'}")
        return variant
    for prefix in ("student-", "teacher-"):
        for v in sorted(variants):
            if v.startswith(prefix):
                return v
    raise Unavailable(f"{run.uri}: no trained FND-CL model; run `stylehub train fndcl --run "
                      f"{run.uri}`")


class OutfitPart:
    """``/outfit-score``: FND-CL scores (Eq. 9) of outfits for a trained user, or for a new
    user from the outfits they liked (3.5, avg / w-avg, Eq. 20-24)."""

    def __init__(self, run: Run, cfg: ServeConfig):
        from stylehub_ray.models.artifacts import load_meta, load_spec

        self.run, self.cfg = run, cfg
        self.variant = pick_outfit_variant(run, cfg.outfit_variant)
        meta = load_meta(run, "fndcl", self.variant)
        self.set_name = str(meta["config"]["set_name"])
        self.n_users = int(load_spec(run, "fndcl", self.variant).n_users)
        self.scorers: dict = {}
        self._scorer(self.set_name)

    def _scorer(self, set_name: str):
        from stylehub_ray.eval.fndcl import ColdStartScorer

        if set_name not in self.scorers:
            try:
                self.scorers[set_name] = ColdStartScorer.from_run(self.run, self.variant,
                                                                  set_name)
            except ValueError as exc:
                raise BadInput(404, f"set_name {set_name!r}: {exc}") from None
        return self.scorers[set_name]

    def score(self, user: int | None, set_name: str | None, outfits: list[dict],
              liked: list[dict], strategy: str) -> dict:
        import torch

        set_name = set_name or self.set_name
        if user is not None and set_name != self.set_name:
            raise BadInput(422, f"user {user}: trained users belong to set {self.set_name}, "
                                f"not {set_name}; a new user of set {set_name} sends `liked`")
        if user is not None and user >= self.n_users:
            raise BadInput(404, f"user: unknown user {user} (the model has {self.n_users} "
                                f"users, 0..{self.n_users - 1})")
        scorer = self._scorer(set_name)
        self._check_items(scorer, outfits, "outfits")
        self._check_items(scorer, liked, "liked")
        if user is not None:
            rows = torch.as_tensor(scorer.outfit_rows(outfits))
            users = torch.full((len(rows),), int(user), dtype=torch.long)
            scores = scorer.model.score_outfits(scorer.item_table, users, rows)
            path = "model"
        else:
            scores = scorer.score(liked, outfits, strategy, self.cfg.wavg_delta,
                                  self.cfg.wavg_tau)
            path = f"cold-start-{strategy}"
        return {"user": user, "set_name": set_name, "variant": self.variant, "path": path,
                "scores": np.asarray(scores, np.float64).tolist()}

    @staticmethod
    def _check_items(scorer, outfits: list[dict], field: str) -> None:
        o, n = scorer.offsets, int(scorer.item_table.shape[0])
        sizes = {"top": o["bottom"] - o["top"], "top2": o["bottom"] - o["top"],
                 "bottom": o["shoe"] - o["bottom"], "shoe": n - o["shoe"]}
        for i, outfit in enumerate(outfits):
            for slot, size in sizes.items():
                item = outfit.get(slot, -1)
                if item >= size or (item < 0 and slot != "top2"):
                    raise BadInput(404, f"{field}[{i}].{slot}: unknown item {item} (this set "
                                        f"has {size} {slot.rstrip('2')} items, 0..{size - 1})")

    def info(self) -> dict:
        return {"part": "outfits", **run_info(self.run), "variant": self.variant,
                "set_name": self.set_name, "users": self.n_users}
