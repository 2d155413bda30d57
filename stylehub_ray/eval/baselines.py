"""Baselines for the two-tower: time-decayed popularity, item-based CF, ALS.

Every baseline is a small class with ``fit(interactions)`` on the training interactions and
``recommend(customer_idx, k, exclude_bought)`` -> (m, k) int64 ``article_idx``, best first,
``-1`` padded. Nothing here builds a dense customers x articles matrix: purchases are a sparse
CSR matrix and each recommendation batch keeps only each customer's candidate lists.

- :class:`PopularityBaseline`: the articles sold most in the last ``window_days`` before the
  cutoff, each sale weighted by ``0.5 ** (age_days / half_life_days)``; ties (articles without
  a sale in the window) are broken by sales over the whole history.
- :class:`ItemCFBaseline`: item-based collaborative filtering with adjusted cosine similarity
  and the weighted-sum prediction, the method of Syiam et al. as summarised in
  ../shared/seeds/stylehub-contrastive.txt, section 2.1 (formulas below).
- :class:`ALSBaseline`: implicit-feedback matrix factorisation by alternating least squares
  (Hu, Koren, Volinsky 2008) from the ``implicit`` library, the well-known peer.

Customers that a model cannot score (no purchase before the cutoff, or too few scored
articles) get the popularity ranking to fill their list, as the two-tower's own fallback does;
each class counts them in ``self.filled``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from stylehub_ray.features.history import Purchases, top_up

BASELINES = ("popularity", "item-cf", "als")
# The popularity fallback of every baseline: the last week, half-life 3 days.
FALLBACK_WINDOW_DAYS, FALLBACK_HALF_LIFE_DAYS = 7, 3.0


@dataclass(frozen=True)
class Interactions:
    """Purchases before a cutoff, one entry per transaction row (a repeated row is a second
    unit): ``customer_idx``, ``article_idx`` (int64) and ``day`` (datetime64[D])."""

    customer_idx: np.ndarray
    article_idx: np.ndarray
    day: np.ndarray
    n_customers: int
    n_articles: int
    cutoff: np.datetime64  # first day after the data: the start of the period to predict

    def __post_init__(self) -> None:
        n = len(self.customer_idx)
        if len(self.article_idx) != n or len(self.day) != n:
            raise ValueError(f"interactions: customer_idx, article_idx and day must have the "
                             f"same length, got {n}, {len(self.article_idx)}, {len(self.day)}")
        for name, values, size in (("customer_idx", self.customer_idx, self.n_customers),
                                   ("article_idx", self.article_idx, self.n_articles)):
            if n and (values.min() < 0 or values.max() >= size):
                bad = values[(values < 0) | (values >= size)][0]
                raise ValueError(f"interactions: {name} {bad} outside 0..{size - 1}")
        if n and self.day.max() >= self.cutoff:
            raise ValueError(f"interactions: day {self.day.max()} is not before the cutoff "
                             f"{self.cutoff}")

    def counts(self, since: np.datetime64 | None = None) -> sp.csr_matrix:
        """(customers, articles) CSR of purchase counts (on days >= ``since`` when given)."""
        keep = slice(None) if since is None else self.day >= since
        c, a = self.customer_idx[keep], self.article_idx[keep]
        m = sp.csr_matrix((np.ones(len(c), np.float32), (c, a)),
                          shape=(self.n_customers, self.n_articles))
        m.sum_duplicates()
        m.sort_indices()
        return m


def top_per_row(scores: sp.csr_matrix, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, n) int64 columns and (rows, n) float64 values of each row's ``n`` largest stored
    values (ties: lower column first), ``-1`` / 0 padded. Only stored entries are candidates."""
    scores = scores.tocsr()
    scores.sort_indices()
    lengths = np.diff(scores.indptr)
    rows = np.repeat(np.arange(scores.shape[0]), lengths)
    order = np.lexsort((scores.indices, -scores.data, rows))  # by row, then score desc
    rank = np.arange(len(order)) - np.repeat(scores.indptr[:-1], lengths)
    keep = rank < n
    cols = np.full((scores.shape[0], n), -1, np.int64)
    values = np.zeros((scores.shape[0], n))
    cols[rows[keep], rank[keep]] = scores.indices[order][keep]
    values[rows[keep], rank[keep]] = scores.data[order][keep]
    return cols, values


class _Base:
    """Shared by the baselines: the bought index, the popularity fallback and batching."""

    batch_size = 2048

    def _fit_common(self, data: Interactions) -> None:
        self.n_articles = data.n_articles
        self.bought = Purchases.from_rows(data.customer_idx, data.article_idx,
                                          data.n_customers, data.n_articles)
        self.fallback = popularity_ranking(data, FALLBACK_WINDOW_DAYS, FALLBACK_HALF_LIFE_DAYS)
        self.filled = 0

    def _candidates(self, customer_idx: np.ndarray, n: int) -> np.ndarray:
        raise NotImplementedError

    def recommend(self, customer_idx: np.ndarray, k: int, exclude_bought: bool = True
                  ) -> np.ndarray:
        """(len(customer_idx), k) int64 article_idx, best first, -1 padded."""
        if not hasattr(self, "bought"):
            raise RuntimeError(f"{type(self).__name__}: call fit() before recommend()")
        customer_idx = np.asarray(customer_idx, np.int64)
        out = np.empty((len(customer_idx), k), np.int64)
        self.filled = 0
        for lo in range(0, len(customer_idx), self.batch_size):
            cs = customer_idx[lo:lo + self.batch_size]
            n = k + (int(self.bought.count(cs).max(initial=0)) if exclude_bought else 0)
            recs, column = top_up(self._candidates(cs, min(n, self.n_articles)), cs, k,
                                  self.bought if exclude_bought else None, self.fallback)
            out[lo:lo + len(cs)] = recs
            self.filled += int(((column >= 0).sum(1) < k).sum())  # rows the fallback filled
        return out


def popularity_scores(data: Interactions, window_days: int, half_life_days: float
                      ) -> np.ndarray:
    """(articles,) float64: sales in the ``window_days`` before the cutoff, a sale ``d`` days
    before the cutoff (d = 1 for the last day) weighted by 0.5 ** ((d - 1) / half_life)."""
    since = data.cutoff - np.timedelta64(window_days, "D")
    keep = data.day >= since
    age = (data.cutoff - data.day[keep]).astype(np.int64) - 1
    weights = 0.5 ** (age / half_life_days)
    return np.bincount(data.article_idx[keep], weights=weights, minlength=data.n_articles)


def popularity_ranking(data: Interactions, window_days: int, half_life_days: float
                       ) -> np.ndarray:
    """Every article_idx, by decayed window sales, then by sales over the whole history, then
    by index."""
    recent = popularity_scores(data, window_days, half_life_days)
    total = np.bincount(data.article_idx, minlength=data.n_articles)
    return np.lexsort((np.arange(data.n_articles), -total, -recent)).astype(np.int64)


class PopularityBaseline(_Base):
    """The last week's best sellers with time decay, the same list for every customer (minus
    what each bought, when excluded)."""

    def __init__(self, window_days: int = FALLBACK_WINDOW_DAYS,
                 half_life_days: float = FALLBACK_HALF_LIFE_DAYS):
        if window_days < 1 or half_life_days <= 0:
            raise ValueError(f"popularity: window_days must be >= 1 and half_life_days > 0, "
                             f"got {window_days}, {half_life_days}")
        self.window_days, self.half_life_days = window_days, half_life_days

    def fit(self, data: Interactions) -> PopularityBaseline:
        self._fit_common(data)
        self.ranking = popularity_ranking(data, self.window_days, self.half_life_days)
        self.fallback = self.ranking
        return self

    def _candidates(self, customer_idx: np.ndarray, n: int) -> np.ndarray:
        return np.broadcast_to(self.ranking[:n], (len(customer_idx), n))


def adjusted_cosine(ratings: sp.csr_matrix, neighbors: int,
                    block_products: int = 20_000_000) -> sp.csr_matrix:
    """(articles, articles) CSR: row i keeps the ``neighbors`` largest positive adjusted cosine
    similarities of article i with articles bought together with it by some customer.

    Section 2.1: sim(p, q) = sum_k (R_kp - Rbar_k)(R_kq - Rbar_k) /
    (sqrt(sum_k (R_kp - Rbar_k)^2) sqrt(sum_k (R_kq - Rbar_k)^2)), the sums over all m
    customers. With implicit feedback an article a customer did not buy is a rating of 0, so
    Rbar_k is the mean of customer k's row over the catalogue. The sums expand, without
    centring the sparse matrix, to G_pq - a_p - a_q + s over norms sqrt(G_pp - 2 a_p + s), with
    G = R^T R, a = Rbar^T R and s = sum_k Rbar_k^2. Pairs no customer bought together have
    G_pq = 0 and a similarity of (s - a_p - a_q) / (norms), of the order of Rbar^2, almost
    always negative; they are not kept as neighbours.

    G is built a block of articles (rows) at a time (``gram_row_blocks``, at most
    ``block_products`` products each) and only each row's top ``neighbors`` are kept, so
    memory is bounded by the budget, not by the number of co-bought pairs.
    """
    from stylehub_ray.features.candidates import gram_row_blocks

    ratings = ratings.tocsr().astype(np.float64)
    n_items = ratings.shape[1]
    rbar = np.asarray(ratings.sum(axis=1)).ravel() / n_items  # (customers,)
    a = np.asarray(ratings.T @ rbar).ravel()  # (articles,)
    s = float(rbar @ rbar)
    diag = np.asarray((ratings.multiply(ratings)).sum(axis=0)).ravel()
    norm = np.sqrt(np.maximum(diag - 2 * a + s, 0.0))
    cols = np.full((n_items, neighbors), -1, np.int64)
    values = np.zeros((n_items, neighbors))
    for lo, hi, gram in gram_row_blocks(ratings, block_products):  # co-bought pairs only
        p, q = gram.row.astype(np.int64) + lo, gram.col.astype(np.int64)
        off = p != q
        p, q, g = p[off], q[off], gram.data[off]
        del gram
        denom = norm[p] * norm[q]
        sim = np.divide(g - a[p] - a[q] + s, denom, out=np.zeros_like(g), where=denom > 0)
        keep = sim > 0
        sims = sp.csr_matrix((sim[keep], (p[keep] - lo, q[keep])), shape=(hi - lo, n_items))
        cols[lo:hi], values[lo:hi] = top_per_row(sims, neighbors)
    rows = np.repeat(np.arange(n_items), cols.shape[1])
    ok = cols.ravel() >= 0
    return sp.csr_matrix((values.ravel()[ok], (rows[ok], cols.ravel()[ok])),
                         shape=(n_items, n_items))


class ItemCFBaseline(_Base):
    """Item-based CF, section 2.1: adjusted cosine similarities between articles, then the
    weighted sum P_ui = sum_N S_iN R_uN / sum_N |S_iN| over the neighbourhood N of article i
    (its ``neighbors`` most similar articles; R_uN = 0 where u did not buy N)."""

    def __init__(self, neighbors: int = 50, rating: str = "count", window_days: int = 0):
        if neighbors < 1:
            raise ValueError(f"item-cf: neighbors must be >= 1, got {neighbors}")
        if rating not in ("count", "binary"):
            raise ValueError(f"item-cf: rating must be count or binary, got {rating!r}")
        if window_days < 0:
            raise ValueError(f"item-cf: window_days must be >= 0 (0: all), got {window_days}")
        self.neighbors, self.rating, self.window_days = neighbors, rating, window_days

    def fit(self, data: Interactions) -> ItemCFBaseline:
        self._fit_common(data)
        since = data.cutoff - np.timedelta64(self.window_days, "D") if self.window_days else None
        ratings = data.counts(since)
        if self.rating == "binary":
            ratings.data[:] = 1.0
        self.ratings = ratings
        self.sim = adjusted_cosine(ratings, self.neighbors)  # (articles, articles)
        # Weighted-sum denominator: sum_N |S_iN| of each article i.
        self.norm = np.asarray(abs(self.sim).sum(axis=1)).ravel()
        return self

    def predict(self, customer_idx: np.ndarray) -> sp.csr_matrix:
        """(m, articles) sparse P_ui: only articles with a bought neighbour are stored."""
        raw = (self.ratings[customer_idx] @ self.sim.T).tocsr()  # sum_N R_uN S_iN
        raw.data /= self.norm[raw.indices]  # every stored i has a neighbour, so norm > 0
        return raw

    def _candidates(self, customer_idx: np.ndarray, n: int) -> np.ndarray:
        return top_per_row(self.predict(customer_idx), n)[0]


class ALSBaseline(_Base):
    """Implicit ALS (``implicit.cpu.als``) on purchase counts times ``alpha`` (the confidence
    weight); customers without a purchase get the popularity fallback."""

    def __init__(self, factors: int = 64, regularization: float = 0.05, iterations: int = 15,
                 alpha: float = 1.0, seed: int = 0, threads: int = 0):
        if factors < 1 or iterations < 1 or regularization < 0 or alpha <= 0:
            raise ValueError(f"als: need factors >= 1, iterations >= 1, regularization >= 0, "
                             f"alpha > 0; got {factors}, {iterations}, {regularization}, "
                             f"{alpha}")
        self.params = dict(factors=factors, regularization=regularization,
                           iterations=iterations, alpha=alpha, random_state=seed,
                           num_threads=threads)

    def fit(self, data: Interactions) -> ALSBaseline:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        self._fit_common(data)
        self.user_items = data.counts()
        # implicit runs its own threads; a multi-threaded BLAS underneath only contends.
        with threadpool_limits(1, "blas"):
            self.model = AlternatingLeastSquares(calculate_training_loss=False, **self.params)
            self.model.fit(self.user_items, show_progress=False)
        return self

    def factors(self) -> dict[str, np.ndarray]:
        """The fitted factors, to save (:meth:`from_factors` rebuilds the model from them)."""
        return {"user_factors": np.asarray(self.model.user_factors, np.float32),
                "item_factors": np.asarray(self.model.item_factors, np.float32)}

    def from_factors(self, data: Interactions, factors: dict[str, np.ndarray]) -> ALSBaseline:
        """The model of :meth:`fit` on ``data`` from saved factors, without fitting (a Serve
        replica: seconds instead of minutes over every purchase). The factors must come from
        a fit on the same ``data`` (the caller keys them by its inputs)."""
        from implicit.cpu.als import AlternatingLeastSquares

        user, item = factors["user_factors"], factors["item_factors"]
        if user.shape[0] != data.n_customers or item.shape[0] != data.n_articles:
            raise ValueError(f"als: saved factors of {user.shape[0]} customers x "
                             f"{item.shape[0]} articles do not fit {data.n_customers} x "
                             f"{data.n_articles}")
        self._fit_common(data)
        self.user_items = data.counts()
        self.model = AlternatingLeastSquares(calculate_training_loss=False, **self.params)
        self.model.user_factors, self.model.item_factors = user, item
        return self

    def _candidates(self, customer_idx: np.ndarray, n: int) -> np.ndarray:
        return self.scored(customer_idx, n)[0]

    def scored(self, customer_idx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(m, n) article_idx (-1 for a customer without purchases: no factors learnt) and
        their float32 scores (the ranker's ALS source)."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            ids, scores = self.model.recommend(customer_idx, self.user_items[customer_idx],
                                               N=n, filter_already_liked_items=False)
        ids = np.asarray(ids, np.int64).reshape(len(customer_idx), -1)
        scores = np.asarray(scores, np.float32).reshape(ids.shape)
        none = self.bought.count(customer_idx) == 0
        ids[none] = -1
        scores[none] = np.nan
        return ids, scores


def make_baseline(name: str, **params) -> _Base:
    """A baseline by name (``BASELINES``) with its hyperparameters."""
    classes = {"popularity": PopularityBaseline, "item-cf": ItemCFBaseline, "als": ALSBaseline}
    if name not in classes:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    return classes[name](**params)
