"""The two-tower's retrieve, drop bought, rank chain (two-tower paper, "Step 6: Inference"),
without Ray: training validation, batch recommendation, evaluation and every serving part use
it.

- :class:`TwoTowerRecommender`: encode customers, retrieve the top N articles from the FAISS
  index of article-tower vectors (``index/two-tower/``), drop what the customer bought before
  the feature set's cutoff, retrieve more when too many were dropped, score the rest with the
  ranking model (combined with the retrieval score by the weight chosen on val), keep the top
  K, top up a row still short with popular articles. Customers without a training positive
  ("cold": outside the label window, or new) get the model's vector from their features (the
  unknown id row, trained by id dropout) or popularity, whichever won on val
  (``meta["choices"]``, written by training). Each piece is a method of its own so the Serve
  graph can run them as separate deployments.
- :func:`load_model_history`: the purchase history a published model's recommender uses,
  alone (serving's bought filter).
- :func:`cached_recommender` / :func:`recommend_matrix`: top-K matrices for evaluation, in
  process.
"""

from __future__ import annotations

import posixpath

import numpy as np

from stylehub_ray.embed import index as I
from stylehub_ray.features.history import History, load_history, top_up
from stylehub_ray.features.inputs import InputLayout, SideTable, build_inputs
from stylehub_ray.run import Run

MODEL_NAME = "two-tower"
N_CANDIDATES = 100  # N retrieved per customer before dropping bought and ranking (default)
PATHS = ("model", "model-cold", "popularity")  # which path answered a customer
# What a model trained before the choices were made on val does (the paper's chain).
DEFAULT_CHOICES = {"retrieval_weight": 0.0, "drop_bought": True, "cold": "popularity"}


def uses_unknown_id(config: dict) -> bool:
    """Whether a model trained with ``config`` encodes rows without a training positive with
    the unknown id 0: only when id dropout trained that row (else each keeps its own row)."""
    return float((config or {}).get("id_dropout", 0.0)) > 0


def known_ids(side: SideTable, trained: np.ndarray | None) -> SideTable:
    """``side`` with the id of every row without a training positive set to 0 ("unknown"):
    its own id row was never trained, the unknown row was (id dropout)."""
    if trained is None:
        return side
    trained = np.asarray(trained, bool)
    ids = np.where(trained, np.arange(1, len(side) + 1, dtype=np.int64), 0)
    return SideTable(num=side.num, cat=side.cat, extra=side.extra, ids=ids)


def combine_scores(rank_p: np.ndarray, retrieval: np.ndarray, weight: float,
                   temperature: float) -> np.ndarray:
    """The final score of a candidate: (1 - w) * logit(ranking probability) + w * retrieval
    logit (dot product / temperature). w = 0 is the paper's chain (the ranking model alone),
    w = 1 the retrieval order. -inf stays -inf."""
    if weight <= 0:
        return rank_p
    p = np.clip(rank_p, 1e-7, 1 - 1e-7)
    s = (1 - weight) * np.log(p / (1 - p)) + weight * retrieval / temperature
    return np.where(np.isfinite(rank_p), s, -np.inf).astype(np.float32)


def index_name(variant: str) -> str:
    """``index/two-tower/`` for the default variant, ``index/two-tower-<variant>/`` else."""
    return f"index/{MODEL_NAME}" if variant == "default" else f"index/{MODEL_NAME}-{variant}"


class TwoTowerRecommender:
    """Retrieve, drop bought, rank, top K (Step 6). Arrays in, arrays out; no Ray inside.

    Attributes: ``article_vectors`` (n_articles, d) float32, the article tower's output (row =
    article_idx); ``n_articles``; ``n_candidates`` (N retrieved per customer); ``choices``
    (retrieval_weight, drop_bought, cold: made on val by training, overridable).
    """

    def __init__(self, model, customers: SideTable, articles: SideTable,
                 history: History | None, trained: np.ndarray, index=None,
                 index_rows: np.ndarray | None = None, n_candidates: int = 100,
                 meta: dict | None = None, build_index: bool = True,
                 trained_articles: np.ndarray | None = None, choices: dict | None = None):
        import torch

        self.model = model.eval()
        self.meta = meta or {}
        if trained_articles is None:
            trained_articles = self.meta.get("trained_articles")
        self.trained = np.asarray(trained, bool)
        self.customers, self.articles = customers, articles
        if uses_unknown_id(self.meta.get("config")):
            self.customers = known_ids(customers, self.trained)
            self.articles = known_ids(articles, trained_articles)
        self.history = history
        self.n_articles = len(articles)
        self.n_candidates = int(n_candidates)
        self.choices = DEFAULT_CHOICES | (self.meta.get("choices") or {}) | (choices or {})
        self.temperature = float(self.meta.get("config", {}).get("temperature", 0.05))
        with torch.no_grad():
            a = self.articles.tensors()
            self.article_vectors = model.article_vectors(a).numpy().astype(np.float32)
            self._article_branch = model.article_branch(a)  # (n_articles, 32), for rank()
        if index is None and build_index:
            index = I.build_index(self.article_vectors, I.IndexParams(kind="flat"))
            index_rows = np.arange(self.n_articles, dtype=np.int64)
        self.index = index  # None: loaded without it (a serving part that never retrieves)
        self.index_rows = (np.asarray(index_rows, np.int64) if index_rows is not None
                           else np.zeros(0, np.int64))  # FAISS row -> article_idx

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def load(cls, run: Run, variant: str = "default", feature_set: str = "test",
             n_candidates: int | None = None, history: bool = True, index: bool = True
             ) -> TwoTowerRecommender:
        """From a run: the published model, the inputs of ``feature_set``, the purchase
        history before its cutoff, and the FAISS index (``index/two-tower/``) when it was
        built from the same model and feature set (else an exact in-memory one).
        ``history=False`` / ``index=False`` leave those out (a serving part that needs
        neither: at full scale the history alone is 31M purchases)."""
        from stylehub_ray.models.artifacts import load_model

        model, _spec, meta = load_model(run, MODEL_NAME, variant)
        layout = InputLayout(**meta["layout"])
        customers, articles = build_inputs(run, feature_set, layout)
        bought = (load_history(run, feature_set, layout.n_customers, layout.n_articles)
                  if history else None)
        want_index, index, rows = index, None, None
        name = index_name(variant)
        if want_index and run.is_complete(name):
            info = run.read_json(posixpath.join(name, "index.json"))
            model_fp = run.marker(f"models/{MODEL_NAME}/{variant}")["fingerprint"]
            if info.get("feature_set") == feature_set and info.get("model") == model_fp:
                index, rows = I.read_index(run, name)
        return cls(model, customers, articles, bought, meta["trained_customers"], index,
                   rows, n_candidates or N_CANDIDATES, meta, build_index=want_index)

    # -- the pieces --------------------------------------------------------------------------
    def known(self, customer_idx: np.ndarray) -> np.ndarray:
        """Bool mask: the customer was in training (has a trained id embedding)."""
        c = np.asarray(customer_idx, np.int64)
        ok = (c >= 0) & (c < len(self.trained))
        out = np.zeros(c.shape, bool)
        out[ok] = self.trained[c[ok]]
        return out

    def paths(self, customer_idx: np.ndarray) -> np.ndarray:
        """Which path answers each customer: ``model`` (trained), ``model-cold`` (no training
        positive; the model's vector from features, when it beat popularity on val) or
        ``popularity``."""
        c = np.asarray(customer_idx, np.int64)
        known = self.known(c)
        in_range = (c >= 0) & (c < len(self.customers))
        cold = in_range & (self.choices["cold"] == "model")
        return np.where(known, "model", np.where(cold, "model-cold", "popularity"))

    def encode_customers(self, customer_idx: np.ndarray, cold: bool = False) -> np.ndarray:
        """(n, d) float32 unit customer-tower vectors; KeyError naming customers not seen in
        training unless ``cold`` (then they are encoded from their features, id unknown)."""
        import torch

        c = np.asarray(customer_idx, np.int64)
        unknown = c[~self.known(c)]
        if len(unknown) and not cold:
            raise KeyError(f"customers not seen in training: {unknown[:10].tolist()}"
                           + (f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""))
        bad = c[(c < 0) | (c >= len(self.customers))]
        if len(bad):
            raise KeyError(f"customer_idx out of range: {bad[:10].tolist()}")
        with torch.no_grad():
            return self.model.customer_vectors(self.customers.take(c)).numpy()

    def retrieve(self, vectors: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` articles by dot product: (article_idx int64 (m, n), scores float32)."""
        if self.index is None:
            raise RuntimeError("this recommender was loaded without its index (index=False)")
        n = min(int(n), self.n_articles)
        return I.search(self.index, vectors, n, rows=self.index_rows, batch=None)

    def bought(self, customer_idx: np.ndarray) -> list[np.ndarray]:
        """Articles each customer bought before the feature set's cutoff."""
        return self._history().bought(customer_idx)

    def _history(self) -> History:
        if self.history is None:
            raise RuntimeError("this recommender was loaded without its purchase history "
                               "(history=False)")
        return self.history

    def rank(self, customer_idx: np.ndarray, candidates: np.ndarray,
             retrieval: np.ndarray | None = None) -> np.ndarray:
        """Candidate scores (m, n) float32, -inf where a candidate is -1: the ranking model's
        probabilities, combined with the ``retrieval`` scores (dot products, (m, n)) by the
        chosen ``retrieval_weight`` when given (:func:`combine_scores`)."""
        import torch

        cand = np.asarray(candidates, np.int64)
        if cand.size == 0:
            return np.zeros(cand.shape, np.float32)
        with torch.no_grad():
            cb = self.model.customer_branch(self.customers.take(customer_idx))  # (m, 32)
            ab = self._article_branch[torch.from_numpy(np.maximum(cand, 0))]  # (m, n, 32)
            p = self.model.head_probability(cb, ab).numpy().astype(np.float32)
        p = np.where(cand >= 0, p, -np.inf).astype(np.float32)
        if retrieval is None:
            return p
        return combine_scores(p, retrieval, float(self.choices["retrieval_weight"]),
                              self.temperature)

    def popular(self, k: int) -> np.ndarray:
        """The popularity fallback: the ``k`` most sold articles of the last week."""
        return self._history().popular[:k].copy()

    # -- the whole chain ---------------------------------------------------------------------
    def recommend(self, customer_idx: np.ndarray, k: int, drop_bought: bool | None = None
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(article_idx int64 (m, k) padded -1, scores float32 (m, k), path per customer:
        one of :data:`PATHS`). ``drop_bought`` None: the choice made on val."""
        if drop_bought is None:
            drop_bought = bool(self.choices["drop_bought"])
        c = np.asarray(customer_idx, np.int64)
        m = len(c)
        out_a = np.full((m, k), -1, np.int64)
        out_s = np.full((m, k), -np.inf, np.float32)
        paths = self.paths(c)
        rows = np.flatnonzero(paths != "popularity")
        if len(rows):
            vec = self.encode_customers(c[rows], cold=True)
            n = max(self.n_candidates, k)
            pending = np.arange(len(rows))
            while len(pending):
                cand, score = self.retrieve(vec[pending], n)
                if drop_bought:
                    cand = np.where(self.history.contains(c[rows[pending]], cand), -1, cand)
                # Step 6: "If too many articles are filtered out, additional articles are
                # retrieved": widen N for the customers left with fewer than k.
                short = ((cand >= 0).sum(1) < k) & (n < self.n_articles)
                done = pending[~short]
                if len(done):
                    cd = cand[~short]
                    s = self.rank(c[rows[done]], cd, score[~short])
                    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
                    out_a[rows[done]] = np.take_along_axis(cd, top, 1)
                    out_s[rows[done]] = np.take_along_axis(s, top, 1)
                pending = pending[short]
                n = min(n * 4, self.n_articles)
            self._fill_popular(c, rows, out_a, out_s, drop_bought)
        pop = np.flatnonzero(paths == "popularity")
        if len(pop):
            take = min(k, self.n_articles)
            out_a[pop, :take] = self.history.popular[:take]
            out_s[pop, :take] = self.history.popular_score[:take]
        return out_a, out_s, paths.tolist()

    def _fill_popular(self, c, rows, out_a, out_s, drop_bought) -> None:
        """A model row still short of k (the customer bought nearly everything) is topped up
        with popular articles it does not hold (nor bought, when dropping)."""
        short = rows[(out_a[rows] < 0).any(1)]
        if not len(short):
            return
        # The model's articles come first in each row (-1 ranks last), so the top-up keeps
        # them, with their scores, and fills the -1 slots in popularity order.
        recs, column = top_up(out_a[short], c[short], out_a.shape[1],
                              self.history if drop_bought else None, self.history.popular)
        kept = np.take_along_axis(out_s[short], np.maximum(column, 0), 1)
        out_s[short] = np.where(column >= 0, kept, -np.inf)
        out_a[short] = recs


_CACHE: dict[tuple, TwoTowerRecommender] = {}


def cached_recommender(run: Run, variant: str = "default", feature_set: str = "test"
                       ) -> TwoTowerRecommender:
    """One loaded recommender per (run, variant, feature set, model build), reused."""
    rel = f"models/{MODEL_NAME}/{variant}"
    if not run.is_complete(rel):
        raise FileNotFoundError(f"{run.uri}/{rel}: no complete model (train it with "
                                f"`stylehub train two-tower --run {run.uri}`)")
    key = (run.uri, variant, feature_set, run.marker(rel)["fingerprint"])
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = TwoTowerRecommender.load(run, variant, feature_set)
    return _CACHE[key]


def recommend_matrix(run: Run, customer_idx: np.ndarray, k: int, *,
                     drop_bought: bool | None = None,
                     feature_set: str = "test", variant: str = "default",
                     batch_size: int = 4096) -> np.ndarray:
    """Top-``k`` article_idx (m, k) int64, -1 padded, for the given customers (unseen ones get
    the path chosen on val), in process: what evaluation scores. ``drop_bought`` None: the
    model's choice made on val."""
    rec = cached_recommender(run, variant, feature_set)
    c = np.asarray(customer_idx, np.int64)
    out = np.full((len(c), k), -1, np.int64)
    for lo in range(0, len(c), batch_size):
        out[lo:lo + batch_size] = rec.recommend(c[lo:lo + batch_size], k, drop_bought)[0]
    return out


def load_model_history(run: Run, variant: str = "default", feature_set: str = "test"
                       ) -> History:
    """The purchase history a published model's recommender uses, without the model's inputs
    (the bought filter's serving part needs nothing else)."""
    from stylehub_ray.models.artifacts import load_meta

    layout = InputLayout(**load_meta(run, MODEL_NAME, variant)["layout"])
    return load_history(run, feature_set, layout.n_customers, layout.n_articles)
