"""What the serving graph computes, without Ray: the parts each deployment holds.

Every deployment in ``serve/app.py`` is a thin Ray Serve wrapper around one *part* here. The
``/recommend`` parts: :class:`CandidatePart` (customer look-up and vector, FAISS retrieval,
the bought filter, cold start and popularity), :class:`RankerPart` (the ranking model) and
:class:`TwoTowerPart` (both in one replica). Each takes a list of requests, so a replica
batches concurrent requests (``@serve.batch``) and the in-process floor of ``bench/serve.py``
calls the very same methods. The model math stays in the models' own modules
(``models.recommender.TwoTowerRecommender``, ``eval.ranker.RankerRecommender`` for the
LightGBM ranker's path, ``eval.fndcl.ColdStartScorer``, ``models.fndcl.cold_start_scores``);
the parts only look up, validate and route.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
# Two-tower: the candidate side (look-ups, retrieval, bought filter) and the ranker
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


@dataclass
class RecommendQuery:
    """One ``/recommend`` request as the parts see it (ids already checked by the ingress)."""

    customer_id: str
    k: int
    purchased_idx: np.ndarray  # int64 article_idx the request says were bought (cold start)
    strategy: str  # avg | w-avg
    drop_bought: bool | None  # None: the model's choice, made on val by training


@dataclass
class Recommendation:
    """Articles and scores, best first. ``ranked_by == ""`` (paths ``model`` and
    ``model-cold``): the ranker's candidates with their retrieval scores, not ranked yet
    (:meth:`RankerPart.finish` ranks them)."""

    article_idx: np.ndarray
    scores: np.ndarray
    path: str
    ranked_by: str
    known_customer: bool
    customer_idx: int | None = None


class TreeRankerPart:
    """The LightGBM ranker (``models/ranker/<variant>``, issue 18) for the run's customers:
    candidates from every source beside the retriever (repurchase, co-purchase, same product
    code, popularity overall and by age band, ALS) with their point-in-time features, scored
    by the trees. It is ``eval.ranker.RankerRecommender``, the one `stylehub recommend --set
    model=ranker` runs, so a served answer is the submission's. What does not depend on the
    request is built once per replica (ALS fitted at the cutoff, the co-purchase table, the
    article stats, the purchases grouped by customer); a batch then reads only its customers'
    purchases (about 50 ms for one customer on the demo run)."""

    def __init__(self, run: Run, cfg: ServeConfig):
        from stylehub_ray.eval.ranker import RankerRecommender

        self.variant = cfg.ranker
        self.rec = RankerRecommender(run, cfg.ranker, cfg.feature_set)

    @staticmethod
    def available(run: Run, cfg: ServeConfig) -> bool:
        from stylehub_ray.models.ranker import model_dir

        return bool(cfg.ranker) and run.is_complete(model_dir(cfg.ranker))

    def recommend_many(self, customers: np.ndarray, ks: list[int],
                       drops: list[bool | None]) -> list[Recommendation]:
        """One batch of known customers: one call per (k, drop-bought) setting."""
        out: list[Recommendation | None] = [None] * len(customers)
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(zip(ks, drops)):
            groups.setdefault(key, []).append(i)
        for (k, drop), rows in groups.items():
            arts, scores = self.rec.recommend(customers[rows], k, drop)
            for i, a, s in zip(rows, arts, self._below_candidates(scores)):
                out[i] = Recommendation(a, s, "ranker", "ranking model", True,
                                        int(customers[i]))
        return out

    @staticmethod
    def _below_candidates(scores: np.ndarray) -> np.ndarray:
        """The trees' scores; an article the popularity top-up added (NaN: not a candidate)
        gets a score below every candidate's, in its order (JSON has no NaN)."""
        filled = np.isnan(scores)
        floor = np.where(filled.all(1), 0.0, np.nanmin(np.where(filled, np.inf, scores), 1))
        below = floor[:, None] - np.cumsum(filled, 1)
        return np.where(filled, below, scores).astype(np.float32)

    def info(self) -> dict:
        return {"variant": self.variant, "features": len(self.rec.model.features)}


class CandidatePart:
    """Everything of ``/recommend`` but the ranking model: customer id -> index (the run's
    customer map) -> customer-tower vector (computed once per replica for every trained
    customer), top N articles from the FAISS index, what the customer bought dropped (the
    purchase history), deeper retrieval when too many were dropped (two-tower paper, Step 6);
    a customer the model never saw gets the cold-start vector of the articles the request
    says they bought (retrieval scores), or popularity.

    :meth:`candidates_many` takes many requests at once: one look-up, one FAISS search and one
    bought filter (a sorted-key search, ``History.contains``) for the whole batch.

    When the run has a published LightGBM ranker (``serve.ranker``), it answers every
    customer of the run whose request names no purchases (path ``ranker``,
    :class:`TreeRankerPart`); the two-tower paths answer the rest.
    """

    def __init__(self, run: Run, cfg: ServeConfig):
        self.run, self.cfg = run, cfg
        self.customers = CustomerMap.load(run)
        self.trees = TreeRankerPart(run, cfg) if TreeRankerPart.available(run, cfg) else None
        self.rec = load_recommender(run, cfg)
        self.article_vectors = np.asarray(self.rec.article_vectors, np.float32)
        self.drop_bought = bool(self.rec.choices["drop_bought"])  # the default, chosen on val
        trained = np.sort(self.customers.idx[self.rec.known(self.customers.idx)])
        # The customers the model answers: the trained ones, and those without a training
        # positive when their vector from features beat popularity on val (path model-cold).
        served = np.sort(self.customers.idx[self.rec.paths(self.customers.idx) != "popularity"])
        size = int(self.customers.idx.max()) + 1 if len(self.customers.idx) else 0
        self.row_of = np.full(size, -1, np.int64)
        self.row_of[served] = np.arange(len(served))
        # Their vectors, (n, d): 1.37M x 32 floats take 175 MB.
        self.vectors = self._encode_all(served)
        wavg_rows = self.row_of[trained]
        if len(wavg_rows) > cfg.wavg_customers:  # the w-avg neighbourhood: a seeded sample
            wavg_rows = np.sort(np.random.default_rng(cfg.seed).choice(
                wavg_rows, cfg.wavg_customers, replace=False))
        self.customer_vectors = self.vectors[wavg_rows]  # FND-CL 3.5 neighbourhood

    def _encode_all(self, idx: np.ndarray, batch: int = 8192) -> np.ndarray:
        if not len(idx):
            return np.zeros((0, self.article_vectors.shape[1]), np.float32)
        return np.concatenate([np.asarray(self.rec.encode_customers(idx[i:i + batch],
                                                                    cold=True), np.float32)
                               for i in range(0, len(idx), batch)])

    def candidates_many(self, queries: list[RecommendQuery]) -> list[Recommendation]:
        m = len(queries)
        out: list[Recommendation | None] = [None] * m
        cust = np.array([self._lookup(q.customer_id) for q in queries], np.int64)  # -1: none
        if self.trees is not None:  # the run's customers without purchases in the request
            mine = [i for i, q in enumerate(queries) if cust[i] >= 0 and not len(
                q.purchased_idx)]
            if mine:  # drop_bought None: the ranker's own choice, made on val
                got = self.trees.recommend_many(cust[mine], [queries[i].k for i in mine],
                                                [queries[i].drop_bought for i in mine])
                for i, r in zip(mine, got):
                    out[i] = r
        queries = [q if q.drop_bought is not None else replace(q, drop_bought=self.drop_bought)
                   for q in queries]
        known = self.rec.known(cust)
        served = np.zeros(m, bool)
        served[cust >= 0] = self.row_of[cust[cust >= 0]] >= 0
        vectors, rows, depth = [], [], []
        for i, q in enumerate(queries):
            if out[i] is not None:
                continue
            if served[i]:
                vectors.append(self.vectors[self.row_of[cust[i]]])
            elif len(q.purchased_idx):
                vectors.append(cold_start_vector(self.article_vectors, q.purchased_idx,
                                                 q.strategy, self.customer_vectors,
                                                 self.cfg.wavg_delta, self.cfg.wavg_tau))
            else:
                out[i] = self._popular(q, cust[i])
                continue
            rows.append(i)
            depth.append(max(self.cfg.candidates, q.k) + len(q.purchased_idx))
        if rows:
            self._retrieve(queries, cust, known, served, np.array(rows), np.stack(vectors),
                           np.array(depth), out)
        return out

    def _retrieve(self, queries, cust, known, served, rows, vectors, depth, out) -> None:
        """Top ``depth`` per row, bought dropped; rows left with fewer than k articles are
        retrieved again four times deeper (Step 6: "additional articles are retrieved")."""
        n_articles = int(self.rec.n_articles)
        pending = np.arange(len(rows))
        while len(pending):
            n = int(depth[pending].max())
            got, scores = self.rec.retrieve(vectors[pending], n)  # (p, n), -1 padded
            drop = self._bought(queries, cust, rows[pending], got)
            short = []
            for j, p in enumerate(pending):
                i = rows[p]
                q = queries[i]
                width = min(int(depth[p]), n_articles)
                keep = (got[j, :width] >= 0) & ~drop[j, :width]
                if keep.sum() < q.k and width < n_articles:
                    short.append(p)
                    continue
                a, s = got[j, :width][keep], scores[j, :width][keep]
                if served[i]:  # ranked next, with the retrieval scores
                    out[i] = Recommendation(a, s, "model" if known[i] else "model-cold", "",
                                            True, int(cust[i]))
                else:
                    out[i] = Recommendation(a[:q.k], s[:q.k], f"cold-start-{q.strategy}",
                                            "retrieval score", bool(cust[i] >= 0),
                                            int(cust[i]) if cust[i] >= 0 else None)
            pending = np.array(short, np.int64)
            depth[pending] = np.minimum(depth[pending] * 4, n_articles)

    def _bought(self, queries, cust, rows, got) -> np.ndarray:
        """(p, n) bool: the article is dropped (bought before the cutoff, or named in the
        request's purchases), for the requests that drop what was bought."""
        drop = np.zeros(got.shape, bool)
        on = np.array([queries[i].drop_bought for i in rows], bool)
        if not on.any():
            return drop
        c = cust[rows]
        history = on & (c >= 0)
        if history.any():
            drop[history] = self.rec.history.contains(c[history], got[history])
        for j, i in enumerate(rows):
            if on[j] and len(queries[i].purchased_idx):
                drop[j] |= np.isin(got[j], queries[i].purchased_idx)
        return drop

    def _popular(self, q: RecommendQuery, customer_idx: int) -> Recommendation:
        history = self.rec.history
        take = q.k
        while True:
            top = np.asarray(history.popular[:take], np.int64)
            scores = np.asarray(history.popular_score[:len(top)], np.float32)
            keep = np.ones(len(top), bool)
            if q.drop_bought and customer_idx >= 0:
                keep = ~history.contains(np.array([customer_idx]), top[None])[0]
            if keep.sum() >= q.k or take >= len(history.popular):
                break
            take *= 4
        return Recommendation(top[keep][:q.k], scores[keep][:q.k], "popularity", "popularity",
                              bool(customer_idx >= 0),
                              int(customer_idx) if customer_idx >= 0 else None)

    def _lookup(self, customer_id: str) -> int:
        idx = self.customers.lookup(customer_id)
        return -1 if idx is None else idx

    def info(self) -> dict:
        return {"part": "candidates", **run_info(self.run),
                "customers": len(self.customers.ids), "articles": int(self.rec.n_articles),
                "wavg_customers": len(self.customer_vectors),
                "ranker": self.trees.info() if self.trees is not None else None}


class RankerPart:
    """The ranking model over many requests' candidates at once."""

    def __init__(self, run: Run, cfg: ServeConfig, rec=None):
        self.run = run
        self.rec = rec if rec is not None else load_recommender(run, cfg, history=False,
                                                                index=False)

    def rank_many(self, requests: list[tuple[int, np.ndarray, np.ndarray]]
                  ) -> list[np.ndarray]:
        """Scores of each (customer_idx, candidates, retrieval scores) request: one model
        call, rows padded with -1 to the widest (the model scores those -inf); the final
        score combines the ranking model with the retrieval score as chosen on val."""
        out = [np.zeros(0, np.float32)] * len(requests)
        todo = [i for i, r in enumerate(requests) if len(r[1])]
        if todo:
            width = max(len(requests[i][1]) for i in todo)
            cust = np.array([requests[i][0] for i in todo], np.int64)
            cands = np.full((len(todo), width), -1, np.int64)  # (m, width)
            retrieval = np.zeros((len(todo), width), np.float32)
            for row, i in enumerate(todo):
                cands[row, :len(requests[i][1])] = requests[i][1]
                retrieval[row, :len(requests[i][2])] = requests[i][2]
            scores = np.asarray(self.rec.rank(cust, cands, retrieval), np.float32)
            for row, i in enumerate(todo):
                out[i] = scores[row, :len(requests[i][1])]
        return out

    @staticmethod
    def finish(cand: Recommendation, scores: np.ndarray, k: int) -> Recommendation:
        """The top ``k`` of ranked candidates."""
        order = np.argsort(-np.asarray(scores, np.float32), kind="stable")[:k]
        return Recommendation(cand.article_idx[order], np.asarray(scores)[order], cand.path,
                              "ranking model", cand.known_customer, cand.customer_idx)

    def info(self) -> dict:
        return {"part": "ranker", **run_info(self.run)}


class TwoTowerPart:
    """Retrieval and ranking in one replica (``recommend_layout`` ``together`` or
    ``ingress``): :meth:`recommend_many` is the whole ``/recommend`` for many requests."""

    def __init__(self, run: Run, cfg: ServeConfig):
        self.run = run
        self.candidates = CandidatePart(run, cfg)
        self.ranker = RankerPart(run, cfg, rec=self.candidates.rec)

    def recommend_many(self, queries: list[RecommendQuery]) -> list[Recommendation]:
        got = self.candidates.candidates_many(queries)
        model = [i for i, r in enumerate(got) if r.ranked_by == ""]
        scores = self.ranker.rank_many([(got[i].customer_idx, got[i].article_idx,
                                         got[i].scores) for i in model])
        for i, s in zip(model, scores):
            got[i] = RankerPart.finish(got[i], s, queries[i].k)
        return got

    def info(self) -> dict:
        return {**self.candidates.info(), "part": "two-tower"}


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
            # A well-formed request naming a user that set does not have: not found.
            raise BadInput(404, f"user {user}: trained users belong to set {self.set_name}, "
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
            scores = scorer.model.score_outfits(scorer.item_table, users, rows,
                                                scorer.transform)  # images: end-to-end model
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


# ------------------------------------------------------------------------------------------
# What a graph can serve
# ------------------------------------------------------------------------------------------
ENDPOINTS = ("recommend", "similar", "similar-image", "outfit-score")


def served_endpoints(cfg: ServeConfig) -> dict[str, str | None]:
    """Each endpoint group -> None when the runs hold what it needs, else why not (with the
    command that makes it). A cheap look at the manifests, so the app builder can leave what
    the runs cannot answer out of the API (and its schema)."""
    why: dict[str, str | None] = dict.fromkeys(ENDPOINTS, None)
    if cfg.run:
        run = Run(cfg.run)
        if not run.is_complete("raw/articles"):
            for name in ("recommend", "similar", "similar-image"):
                why[name] = f"{run.uri}: no article catalogue (`stylehub ingest`)"
        if not why["recommend"] and not run.is_complete(f"models/two-tower/{cfg.variant}"):
            why["recommend"] = (f"{run.uri}: no trained two-tower model (`stylehub train "
                                f"two-tower --run {run.uri}`)")
        if not why["similar"] and not _has_similar(run):
            why["similar"] = (f"{run.uri}: no contrastive model and no item embeddings "
                              f"(`stylehub embed text --run {run.uri}`)")
        entry = run.entry("embed_images") or {}
        if not why["similar-image"] and entry.get("status") != "complete":
            why["similar-image"] = (f"{run.uri}: no image embeddings (`stylehub embed images "
                                    f"--run {run.uri}`)")
    else:
        for name in ("recommend", "similar", "similar-image"):
            why[name] = "no run given (serve.run)"
    if cfg.outfits_run:
        try:
            pick_outfit_variant(Run(cfg.outfits_run), cfg.outfit_variant)
        except Unavailable as exc:
            why["outfit-score"] = str(exc)
    else:
        why["outfit-score"] = "no outfits run given (serve.outfits_run)"
    return why


def _has_similar(run: Run) -> bool:
    if any(run.is_complete(rel) for rel in ("embeddings/text", "embeddings/images")):
        return True
    try:
        from stylehub_ray.train.contrastive import index_dir
    except ImportError:
        return False
    return run.is_complete(index_dir("text"))
