"""Purchase history: who bought what before a cutoff, the popularity fallback, and the one
drop-bought + top-up that every recommender applies to its candidates.

- :class:`Purchases`: the distinct (customer, article) pairs as sorted int64 keys
  ``customer * n_articles + article`` (CSR by customer), looked up by binary search for a
  whole (customers, candidates) matrix at once; nothing is dense in customers x articles.
- :class:`History`: the purchases before a feature set's cutoff and the popularity ranking
  of the last :data:`POPULARITY_DAYS` days (the two-tower's fallback and serving's bought
  filter); :func:`load_history` reads it from ``features/interactions``.
- :func:`top_up`: the first ``k`` usable candidates of each row (not padding, not a repeat,
  not bought), followed by a fallback ranking where a row runs short. The baselines, the
  two-tower and serving all drop bought articles and fill up through these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stylehub_ray.run import Run

POPULARITY_DAYS = 7  # the two-tower's fallback: sales in the last week before the cutoff


@dataclass
class Purchases:
    """Distinct (customer, article) pairs as sorted keys ``customer * n_articles + article``
    and ``indptr`` (n_customers + 1,): customer i's keys are ``keys[indptr[i]:indptr[i+1]]``."""

    n_customers: int
    n_articles: int
    keys: np.ndarray  # (P,) int64 sorted
    indptr: np.ndarray  # (n_customers + 1,) int64

    @staticmethod
    def keys_of(customer_idx: np.ndarray, article_idx: np.ndarray, n_customers: int,
              n_articles: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, indptr) of purchase rows (a repeated pair counts once)."""
        c = np.asarray(customer_idx, np.int64)
        a = np.asarray(article_idx, np.int64)
        keys = np.unique(c * n_articles + a)
        indptr = np.searchsorted(keys, np.arange(n_customers + 1, dtype=np.int64) * n_articles)
        return keys, indptr.astype(np.int64)

    @staticmethod
    def from_rows(customer_idx: np.ndarray, article_idx: np.ndarray, n_customers: int,
                  n_articles: int) -> Purchases:
        """From purchase rows (one per transaction; repeats allowed)."""
        keys, indptr = Purchases.keys_of(customer_idx, article_idx, n_customers, n_articles)
        return Purchases(n_customers, n_articles, keys, indptr)

    def count(self, customer_idx: np.ndarray) -> np.ndarray:
        """(m,) int64: distinct articles each customer bought (0 for an unknown customer)."""
        c = np.asarray(customer_idx, np.int64)
        ok = (c >= 0) & (c < self.n_customers)
        out = np.zeros(c.shape, np.int64)
        out[ok] = self.indptr[c[ok] + 1] - self.indptr[c[ok]]
        return out

    def bought(self, customer_idx: np.ndarray) -> list[np.ndarray]:
        """Each customer's articles, ascending (empty for an unknown customer)."""
        c = np.asarray(customer_idx, np.int64)
        return [self.keys[self.indptr[i]:self.indptr[i + 1]] - i * self.n_articles
                if 0 <= i < self.n_customers else np.zeros(0, np.int64) for i in c]

    def contains(self, customer_idx: np.ndarray, articles: np.ndarray) -> np.ndarray:
        """(m, n) bool: ``articles[i, j]`` was bought by ``customer_idx[i]`` (-1 never)."""
        articles = np.asarray(articles, np.int64)
        if self.keys.size == 0:
            return np.zeros(articles.shape, bool)
        q = np.asarray(customer_idx, np.int64)[:, None] * self.n_articles + articles
        pos = np.minimum(np.searchsorted(self.keys, q), self.keys.size - 1)
        return (self.keys[pos] == q) & (articles >= 0)


@dataclass
class History(Purchases):
    """Purchases before a cutoff and the popularity fallback of the week before it."""

    popular: np.ndarray  # article_idx, most sold in the last week before the cutoff first
    popular_score: np.ndarray  # their share of that week's sales

    @classmethod
    def from_pairs(cls, customer_idx: np.ndarray, article_idx: np.ndarray, recent: np.ndarray,
                   n_customers: int, n_articles: int) -> History:
        """``recent``: bool per row, inside the popularity window."""
        a = np.asarray(article_idx, np.int64)
        keys, indptr = cls.keys_of(customer_idx, a, n_customers, n_articles)
        recent_n = np.bincount(a[recent], minlength=n_articles)
        all_n = np.bincount(a, minlength=n_articles)
        # Most sold last week first; ties by all sales before the cutoff, then by index.
        order = np.lexsort((np.arange(n_articles), -all_n, -recent_n))
        total = max(int(recent_n.sum()), 1)
        return cls(n_customers, n_articles, keys, indptr, order,
                   (recent_n[order] / total).astype(np.float32))


def load_history(run: Run, feature_set: str, n_customers: int, n_articles: int) -> History:
    """Purchases before the feature set's cutoff (``features/interactions``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.features.inputs import feature_cutoff

    run.require("features/interactions", f"stylehub features --run {run.uri}")
    cutoff = np.datetime64(feature_cutoff(run, feature_set))
    t = read_table(run, "features/interactions", ["t_dat", "customer_idx", "article_idx"])
    t = t.filter(pc.field("t_dat") < pa.scalar(cutoff.astype("datetime64[D]").item(),
                                               pa.date32()))
    days = t["t_dat"].to_numpy().astype("datetime64[D]")
    recent = days >= cutoff - np.timedelta64(POPULARITY_DAYS, "D")
    return History.from_pairs(t["customer_idx"].to_numpy(), t["article_idx"].to_numpy(),
                              recent, n_customers, n_articles)


def top_up(candidates: np.ndarray, customer_idx: np.ndarray, k: int,
           bought: Purchases | None, fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop bought, then top up: the first ``k`` usable articles of each row of
    ``candidates`` (m, L), best first and ``-1`` padded, followed by the ``fallback`` ranking.
    Padding, repeats and (when ``bought`` is given) articles the customer bought are skipped.

    Returns (recs (m, k) int64, ``-1`` padded; column (m, k) int64: the column of
    ``candidates`` each recommendation came from, ``-1`` where it came from the fallback or is
    padding). A row needed the fallback where fewer than k columns are >= 0.
    """
    candidates = np.asarray(candidates, np.int64)
    customer_idx = np.asarray(customer_idx, np.int64)
    m, width = candidates.shape
    extra = k + width + (int(bought.count(customer_idx).max(initial=0))
                         if bought is not None else 0)
    fallback = np.asarray(fallback, np.int64)[:extra]
    full = np.hstack([candidates, np.broadcast_to(fallback, (m, len(fallback)))])
    usable = full >= 0
    if bought is not None:
        usable &= ~bought.contains(customer_idx, full)
    # Keep an article at its first usable position only.
    rows = np.repeat(np.arange(m, dtype=np.int64), full.shape[1])
    keys = np.where(usable, full, -1).ravel() + rows * (int(full.max(initial=0)) + 2) + 1
    _, first = np.unique(keys, return_index=True)
    unique = np.zeros(full.size, bool)
    unique[first] = True
    usable &= unique.reshape(full.shape)
    order = np.argsort(~usable, axis=1, kind="stable")[:, :k]  # usable positions first
    taken = np.take_along_axis(usable, order, 1)
    recs = np.where(taken, np.take_along_axis(full, order, 1), -1)
    column = np.where(taken & (order < width), order, -1)
    if recs.shape[1] < k:
        pad = np.full((m, k - recs.shape[1]), -1, np.int64)
        recs, column = np.hstack([recs, pad]), np.hstack([column, pad])
    return recs, column
