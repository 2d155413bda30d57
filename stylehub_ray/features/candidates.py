"""The ranker's candidates from purchase history and its point-in-time features, without Ray.

Everything here is computed from a :class:`PurchaseLog` cut at one day (``cutoff``): the
purchases strictly before it. A candidate's features are therefore as of its cutoff; nothing
on or after it changes them (``tests/test_ranker.py`` checks this).

- History sources, each ``(m, n)`` article_idx (``-1`` padded) and scores, best first:
  :func:`repurchase` (the customer's own articles, by recency-decayed count),
  :func:`copurchase` (articles bought by the same customers as the customer's recent
  purchases, :func:`copurchase_neighbours`), :func:`same_product` (other colours
  and sizes of the customer's recent purchases: the same ``product_code``),
  :func:`popular` (last week's best sellers) and :func:`popular_by_age` (the same within the
  customer's age band). Model sources (ALS, the two-tower) are added by the caller.
- :func:`union`: the long table of (customer, candidate) with every source's score and rank
  (NaN where the source did not propose it).
- :func:`pair_features`: the features of each (customer, candidate) row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DAY = np.timedelta64(1, "D")
AGE_BANDS = (0, 25, 35, 45, 55, 200)  # [lo, hi) years; unknown age is its own band


@dataclass(frozen=True)
class PurchaseLog:
    """Every transaction row (``day`` datetime64[D], ``customer_idx``, ``article_idx``,
    ``price``) and the catalogue facts the features need, row = article_idx / customer_idx."""

    day: np.ndarray
    customer_idx: np.ndarray
    article_idx: np.ndarray
    price: np.ndarray
    product_code: np.ndarray  # (n_articles,) int64, dense codes 0..
    product_type: np.ndarray  # (n_articles,) int64, dense codes 0..
    age: np.ndarray  # (n_customers,) float32, NaN unknown

    @property
    def n_articles(self) -> int:
        return len(self.product_code)

    @property
    def n_customers(self) -> int:
        return len(self.age)

    def before(self, cutoff: np.datetime64) -> PurchaseLog:
        """The purchases strictly before ``cutoff``."""
        keep = self.day < np.datetime64(cutoff, "D")
        return PurchaseLog(self.day[keep], self.customer_idx[keep], self.article_idx[keep],
                           self.price[keep], self.product_code, self.product_type, self.age)

    def between(self, start: np.datetime64, end: np.datetime64) -> tuple[np.ndarray, np.ndarray]:
        """Distinct (customer_idx, article_idx) pairs bought in [start, end), sorted."""
        keep = (self.day >= start) & (self.day < end)
        keys = np.unique(self.customer_idx[keep] * self.n_articles + self.article_idx[keep])
        return keys // self.n_articles, keys % self.n_articles

    @property
    def first_day(self) -> np.datetime64 | None:
        return self.day.min() if len(self.day) else None


class CustomerIndex:
    """The rows of a :class:`PurchaseLog` grouped by customer (a stable sort, so each
    customer's rows keep their order): :meth:`of` gives the log of some customers in time
    proportional to their rows, not to the log's. Every customer-level source and feature
    reads only the customer's own rows, so on that slice it comes out bit for bit as on the
    whole log (``tests/test_ranker.py``); the article-level ones read :class:`ArticleStats`."""

    def __init__(self, log: PurchaseLog):
        self.log = log
        self.order = np.argsort(log.customer_idx, kind="stable")
        self.starts = np.searchsorted(log.customer_idx[self.order],
                                      np.arange(log.n_customers + 1))

    def of(self, customers: np.ndarray) -> PurchaseLog:
        """The purchases of ``customers`` (distinct), each customer's rows in log order."""
        c = np.asarray(customers, np.int64)
        lo, hi = self.starts[c], self.starts[c + 1]
        rows = np.sort(np.concatenate([self.order[a:b] for a, b in zip(lo, hi)])
                       if len(c) else np.zeros(0, np.int64))
        log = self.log
        return PurchaseLog(log.day[rows], log.customer_idx[rows], log.article_idx[rows],
                           log.price[rows], log.product_code, log.product_type, log.age)


def age_band(age: np.ndarray) -> np.ndarray:
    """Band index per age: 0..len(AGE_BANDS) - 2, and len(AGE_BANDS) - 1 for unknown."""
    age = np.asarray(age, np.float64)
    band = np.searchsorted(np.asarray(AGE_BANDS[1:-1], np.float64), age, side="right")
    return np.where(np.isfinite(age), band, len(AGE_BANDS) - 1).astype(np.int64)


@dataclass(frozen=True)
class ArticleStats:
    """What the sources and features know of each article at a cutoff, from every customer's
    purchases before it: computed once per cutoff (:meth:`of`), so a batch of a few customers
    (a served request) does not rescan the log."""

    sales: dict[int, np.ndarray]  # days -> (n_articles,) rows sold in the days before
    first: np.ndarray  # (n_articles,) datetime64[D] first sale (2262-01-01: never)
    last: np.ndarray  # (n_articles,) datetime64[D] last sale (1970-01-01: never)
    sold: np.ndarray  # (n_articles,) bool
    price: np.ndarray  # (n_articles,) mean price
    buyer_age: np.ndarray  # (n_articles,) buyers' mean age
    buyer_age_n: np.ndarray  # (n_articles,) buyers with a known age
    band_sales: np.ndarray  # (n_bands, n_articles) last week's rows sold per age band
    by_code: pd.Series  # product_code -> its articles

    @classmethod
    def of(cls, log: PurchaseLog, cutoff: np.datetime64) -> ArticleStats:
        log = log.before(cutoff)
        cutoff = np.datetime64(cutoff, "D")
        na = log.n_articles
        lc, la = log.customer_idx.astype(np.int64), log.article_idx.astype(np.int64)
        first = np.full(na, np.datetime64("2262-01-01"), "datetime64[D]")
        last = np.full(na, np.datetime64("1970-01-01"), "datetime64[D]")
        np.minimum.at(first, la, log.day)
        np.maximum.at(last, la, log.day)
        price = np.bincount(la, weights=log.price, minlength=na) / np.maximum(
            np.bincount(la, minlength=na), 1)
        age_known = np.isfinite(log.age[lc])
        age = np.bincount(la[age_known], weights=log.age[lc][age_known], minlength=na) / \
            np.maximum(np.bincount(la[age_known], minlength=na), 1)
        keep = log.day >= cutoff - 7 * DAY
        band_sales = np.zeros((len(AGE_BANDS), na))
        np.add.at(band_sales, (age_band(log.age)[lc[keep]], la[keep]), 1.0)
        return cls({d: article_sales(log, cutoff, d) for d in (7, 14, 28)}, first, last,
                   np.bincount(la, minlength=na) > 0, price, age,
                   np.bincount(la[age_known], minlength=na), band_sales,
                   pd.Series(np.arange(na)).groupby(log.product_code).apply(np.array))


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------
def top_per_customer(c: np.ndarray, a: np.ndarray, s: np.ndarray, customers: np.ndarray,
                      n: int) -> tuple[np.ndarray, np.ndarray]:
    """(m, n) article_idx / score of each customer's ``n`` best (customer, article, score)
    rows (ties: lower article first), ``-1`` / NaN padded; rows follow ``customers``."""
    m = len(customers)
    cand = np.full((m, n), -1, np.int64)
    score = np.full((m, n), np.nan, np.float32)
    if len(c) == 0 or n == 0:
        return cand, score
    pos = np.searchsorted(customers, c)
    ok = (pos < m) & (customers[np.minimum(pos, m - 1)] == c)
    pos, a, s = pos[ok], a[ok], s[ok]
    order = np.lexsort((a, -s, pos))
    pos, a, s = pos[order], a[order], s[order]
    starts = np.searchsorted(pos, pos, side="left")
    rank = np.arange(len(pos)) - starts
    keep = rank < n
    cand[pos[keep], rank[keep]] = a[keep]
    score[pos[keep], rank[keep]] = s[keep]
    return cand, score


def repurchase(log: PurchaseLog, cutoff: np.datetime64, customers: np.ndarray, n: int,
               half_life_days: float = 14.0) -> tuple[np.ndarray, np.ndarray]:
    """The customer's own articles, by purchases weighted 0.5 ** (days before cutoff /
    half-life)."""
    age = (np.datetime64(cutoff, "D") - log.day).astype(np.int64)
    w = 0.5 ** (age / half_life_days)
    keys, inv = np.unique(log.customer_idx * log.n_articles + log.article_idx,
                          return_inverse=True)
    s = np.bincount(inv, weights=w, minlength=len(keys))
    return top_per_customer(keys // log.n_articles, keys % log.n_articles, s, customers, n)


def recent_articles(log: PurchaseLog, customers: np.ndarray, last: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(customer_idx, article_idx) of each customer's ``last`` most recently bought distinct
    articles (customers sorted)."""
    frame = pd.DataFrame({"c": log.customer_idx, "a": log.article_idx, "d": log.day})
    frame = frame[np.isin(frame["c"].to_numpy(), customers)]
    frame = frame.sort_values(["c", "d", "a"]).drop_duplicates(["c", "a"], keep="last")
    frame = frame.groupby("c", sort=True).tail(last)
    return frame["c"].to_numpy(np.int64), frame["a"].to_numpy(np.int64)


def gram_row_blocks(x, budget: int = 20_000_000):
    """X^T X of a (customers, articles) CSR ``x``, a block of articles (rows) at a time:
    yields ``(lo, hi, block)``, ``block`` the COO rows ``lo:hi`` of X^T X (articles bought by
    the same customers). The blocks are cut so that each takes at most ``budget`` products
    (an article's row costs the purchases of its buyers; one article over budget is a block
    alone), so memory is bounded by the budget rather than by the number of co-bought pairs:
    hundreds of millions on the full H&M data, where the whole product took 14 GiB on a
    sixteenth of it (issue 23). Each block's rows are exactly those of the whole product."""
    x = x.tocsr()
    by_item = x.T.tocsr()  # (articles, customers)
    per_customer = np.diff(x.indptr).astype(np.float64)
    cost = np.cumsum(by_item.astype(bool).astype(np.float64) @ per_customer)
    lo, n = 0, x.shape[1]
    while lo < n:
        base = cost[lo - 1] if lo else 0.0
        hi = min(n, max(lo + 1, int(np.searchsorted(cost, base + budget, side="right"))))
        yield lo, hi, (by_item[lo:hi] @ x).tocoo()
        lo = hi


def copurchase_neighbours(log: PurchaseLog, cutoff: np.datetime64, window_days: int = 90,
                          neighbours: int = 20, budget: int = 20_000_000
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(n_articles, neighbours) article_idx / similarity: for each article, the articles bought
    by the same customers in the ``window_days`` before the cutoff, by co-buyers /
    sqrt(buyers of each), best first. The co-buyer counts are built a block of articles at
    a time (:func:`gram_row_blocks`, at most ``budget`` products each)."""
    import scipy.sparse as sp

    recent = (log.day >= np.datetime64(cutoff, "D") - window_days * DAY) & (
        log.day < np.datetime64(cutoff, "D"))
    c, a = log.customer_idx[recent], log.article_idx[recent]
    x = sp.csr_matrix((np.ones(len(c), np.float32), (c, a)),
                      shape=(log.n_customers, log.n_articles))
    x.sum_duplicates()
    x.data[:] = 1.0  # a customer counts once per article
    buyers = np.asarray(x.sum(0)).ravel()
    nbr = np.full((log.n_articles, neighbours), -1, np.int64)
    nsim = np.full((log.n_articles, neighbours), np.nan, np.float32)
    for lo, hi, co in gram_row_blocks(x, budget):
        row, col = co.row.astype(np.int64) + lo, co.col.astype(np.int64)
        off = (row != col) & (co.data != 0)
        row, col, data = row[off], col[off], co.data[off]
        sim = data / np.sqrt(buyers[row] * buyers[col])
        nbr[lo:hi], nsim[lo:hi] = top_per_customer(row, col, sim.astype(np.float32),
                                                   np.arange(lo, hi), neighbours)
    return nbr, nsim


def copurchase(log: PurchaseLog, customers: np.ndarray, n: int,
               table: tuple[np.ndarray, np.ndarray], last: int = 5
               ) -> tuple[np.ndarray, np.ndarray]:
    """Item-to-item neighbours (``table``: :func:`copurchase_neighbours`) of the customer's
    ``last`` recent purchases; a candidate's score sums over the purchases that propose it."""
    nbr, nsim = table
    rc, ra = recent_articles(log, customers, last)
    rows_c = np.repeat(rc, nbr.shape[1])
    rows_a = nbr[ra].ravel()
    rows_s = nsim[ra].ravel()
    ok = rows_a >= 0
    keys, inv = np.unique(rows_c[ok] * log.n_articles + rows_a[ok], return_inverse=True)
    s = np.bincount(inv, weights=rows_s[ok], minlength=len(keys))
    return top_per_customer(keys // log.n_articles, keys % log.n_articles, s, customers, n)


def article_sales(log: PurchaseLog, cutoff: np.datetime64, days: int) -> np.ndarray:
    """(n_articles,) float64: rows sold in the ``days`` before the cutoff."""
    keep = log.day >= np.datetime64(cutoff, "D") - days * DAY
    return np.bincount(log.article_idx[keep], minlength=log.n_articles).astype(np.float64)


def same_product(log: PurchaseLog, cutoff: np.datetime64, customers: np.ndarray, n: int,
                 last: int = 5, articles: ArticleStats | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Articles sharing a ``product_code`` with the customer's ``last`` recent purchases, by
    last week's sales (+1, so unsold variants still rank). ``articles``: the stats of the
    whole log at ``cutoff`` (then ``log`` may hold only these customers' purchases)."""
    articles = articles if articles is not None else ArticleStats.of(log, cutoff)
    sales = articles.sales[7] + 1.0
    by_code = articles.by_code
    rc, ra = recent_articles(log, customers, last)
    codes = log.product_code[ra]
    members = [by_code[code] for code in codes]
    sizes = np.array([len(x) for x in members], np.int64)
    if sizes.sum() == 0:
        return top_per_customer(rc[:0], ra[:0], np.zeros(0), customers, n)
    ca = np.concatenate(members).astype(np.int64)
    cc = np.repeat(rc, sizes)
    keys = np.unique(cc * log.n_articles + ca)
    a = keys % log.n_articles
    return top_per_customer(keys // log.n_articles, a, sales[a].astype(np.float32),
                             customers, n)


def popular(log: PurchaseLog, cutoff: np.datetime64, customers: np.ndarray, n: int,
            days: int = 7, articles: ArticleStats | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Last ``days``' best sellers, the same list for every customer."""
    sales = (articles.sales[days] if articles is not None and days in articles.sales
             else article_sales(log, cutoff, days))
    order = np.lexsort((np.arange(log.n_articles), -sales))[:n]
    order = order[sales[order] > 0]
    m = len(customers)
    cand = np.full((m, n), -1, np.int64)
    score = np.full((m, n), np.nan, np.float32)
    cand[:, :len(order)] = order
    score[:, :len(order)] = sales[order]
    return cand, score


def popular_by_age(log: PurchaseLog, cutoff: np.datetime64, customers: np.ndarray, n: int,
                   days: int = 7, articles: ArticleStats | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Last ``days``' best sellers among customers of the customer's age band."""
    bands = age_band(log.age)
    n_bands = len(AGE_BANDS)
    if articles is not None and days == 7:
        sales = articles.band_sales
    else:
        keep = log.day >= np.datetime64(cutoff, "D") - days * DAY
        sales = np.zeros((n_bands, log.n_articles))
        np.add.at(sales, (bands[log.customer_idx[keep]], log.article_idx[keep]), 1.0)
    m = len(customers)
    cand = np.full((m, n), -1, np.int64)
    score = np.full((m, n), np.nan, np.float32)
    mine = bands[customers]
    for b in range(n_bands):
        rows = np.flatnonzero(mine == b)
        order = np.lexsort((np.arange(log.n_articles), -sales[b]))[:n]
        order = order[sales[b][order] > 0]
        cand[rows[:, None], np.arange(len(order))[None, :]] = order
        score[rows[:, None], np.arange(len(order))[None, :]] = sales[b][order]
    return cand, score


def union(customers: np.ndarray, sources: dict[str, tuple[np.ndarray, np.ndarray]]
          ) -> pd.DataFrame:
    """One row per distinct (customer_idx, article_idx) any source proposed, with
    ``<source>_score`` and ``<source>_rank`` (1 = the source's best; NaN: not proposed) and
    ``n_sources``; sorted by customer, then article."""
    frames = []
    for name, (cand, score) in sources.items():
        m, n = cand.shape
        ok = cand >= 0
        frames.append(pd.DataFrame({
            "customer_idx": np.repeat(customers, n)[ok.ravel()],
            "article_idx": cand[ok], "source": name,
            "score": np.asarray(score, np.float32)[ok],
            "rank": np.tile(np.arange(1, n + 1, dtype=np.float32), m)[ok.ravel()]}))
    long = pd.concat(frames, ignore_index=True)
    wide = long.pivot_table(index=["customer_idx", "article_idx"], columns="source",
                            values=["score", "rank"], aggfunc="first")
    wide.columns = [f"{src}_{what}" for what, src in wide.columns]
    for name in sources:  # a source that proposed nothing still gets its columns
        for what in ("score", "rank"):
            if f"{name}_{what}" not in wide.columns:
                wide[f"{name}_{what}"] = np.nan
    wide = wide[[f"{s}_{w}" for s in sources for w in ("score", "rank")]].astype(np.float32)
    wide["n_sources"] = wide[[f"{s}_rank" for s in sources]].notna().sum(axis=1).astype(np.float32)
    return wide.reset_index().astype({"customer_idx": np.int64, "article_idx": np.int64})


def recall(customers: np.ndarray, cand: np.ndarray, truth: list[np.ndarray]) -> float:
    """Share of the (customer, bought article) pairs in ``truth`` that ``cand`` (m, n)
    holds: what a ranker over these candidates can reach at most."""
    hit = total = 0
    for row, t in zip(cand, truth):
        hit += int(np.isin(t, row).sum())
        total += len(t)
    return hit / max(total, 1)


# --------------------------------------------------------------------------------------------
# Point-in-time features
# --------------------------------------------------------------------------------------------
def _pair_stats(keys_all: np.ndarray, day: np.ndarray, query: np.ndarray,
                cutoff: np.datetime64) -> tuple[np.ndarray, np.ndarray]:
    """(count, days since the last purchase) of each ``query`` key among ``keys_all`` rows
    (0 / NaN when never)."""
    keys, inv = np.unique(keys_all, return_inverse=True)
    count = np.bincount(inv, minlength=len(keys)).astype(np.float32)
    last = np.full(len(keys), np.datetime64("1970-01-01"), "datetime64[D]")
    np.maximum.at(last, inv, day)
    pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    found = (keys[pos] == query) if len(keys) else np.zeros(len(query), bool)
    out_n = np.where(found, count[pos] if len(keys) else 0, 0).astype(np.float32)
    since = ((np.datetime64(cutoff, "D") - last[pos]).astype(np.float32) if len(keys)
             else np.zeros(len(query), np.float32))
    return out_n, np.where(found, since, np.nan).astype(np.float32)


def pair_features(log: PurchaseLog, cutoff: np.datetime64, rows: pd.DataFrame,
                  vectors: dict[str, np.ndarray] | None = None, last: int = 5,
                  articles: ArticleStats | None = None) -> pd.DataFrame:
    """``rows`` (customer_idx, article_idx, source columns) with the point-in-time features of
    each pair, from the purchases before ``cutoff`` only: the customer's history with the
    article, its product code and product type (count, days since); the article's sales over
    the last 1, 2 and 4 weeks, their trend, days since its first and last sale, its mean
    price and its buyers' mean age; the customer's purchases, days since the last, mean price
    and age, and the fit of price and age; the cosine of each of ``vectors`` (name: (n_articles,
    d), e.g. image and text embeddings) with the mean of the customer's ``last`` purchases.
    ``articles``: the stats of the whole log at ``cutoff`` (then ``log`` may hold only the
    rows' customers' purchases: :class:`CustomerIndex`)."""
    articles = articles if articles is not None else ArticleStats.of(log, cutoff)
    log = log.before(cutoff)
    cutoff = np.datetime64(cutoff, "D")
    c = rows["customer_idx"].to_numpy(np.int64)
    a = rows["article_idx"].to_numpy(np.int64)
    out = rows.copy()
    na = log.n_articles
    n_codes = int(log.product_code.max(initial=0)) + 1
    n_types = int(log.product_type.max(initial=0)) + 1
    lc, la = log.customer_idx.astype(np.int64), log.article_idx.astype(np.int64)
    out["ua_count"], out["ua_days"] = _pair_stats(lc * na + la, log.day, c * na + a,
                                                  cutoff)
    out["up_count"], out["up_days"] = _pair_stats(
        lc * n_codes + log.product_code[la], log.day, c * n_codes + log.product_code[a],
        cutoff)
    out["ut_count"], out["ut_days"] = _pair_stats(
        lc * n_types + log.product_type[la], log.day, c * n_types + log.product_type[a],
        cutoff)
    # The article.
    st = articles
    s7, s14, s28 = st.sales[7], st.sales[14], st.sales[28]
    out["a_sales_7"], out["a_sales_14"], out["a_sales_28"] = s7[a], s14[a], s28[a]
    out["a_trend"] = (s7[a] / (s28[a] / 4 + 1)).astype(np.float32)
    sold = st.sold
    out["a_days_first"] = np.where(sold[a], (cutoff - st.first[a]).astype(np.float32), np.nan)
    out["a_days_last"] = np.where(sold[a], (cutoff - st.last[a]).astype(np.float32), np.nan)
    out["a_price"] = np.where(sold[a], st.price[a], np.nan).astype(np.float32)
    out["a_buyer_age"] = np.where(st.buyer_age_n[a] > 0, st.buyer_age[a], np.nan).astype(
        np.float32)
    # The customer.
    nc = log.n_customers
    u_n = np.bincount(lc, minlength=nc)
    u_last = np.full(nc, np.datetime64("1970-01-01"), "datetime64[D]")
    np.maximum.at(u_last, lc, log.day)
    u_price = np.bincount(lc, weights=log.price, minlength=nc) / np.maximum(u_n, 1)
    out["u_purchases"] = u_n[c].astype(np.float32)
    out["u_days_last"] = np.where(u_n[c] > 0, (cutoff - u_last[c]).astype(np.float32), np.nan)
    out["u_price"] = np.where(u_n[c] > 0, u_price[c], np.nan).astype(np.float32)
    out["u_age"] = log.age[c].astype(np.float32)
    out["price_ratio"] = (out["a_price"] / out["u_price"]).astype(np.float32)
    out["age_gap"] = (out["u_age"] - out["a_buyer_age"]).astype(np.float32)
    # Similarity to the customer's recent purchases.
    if vectors:
        customers = np.unique(c)
        rc, ra = recent_articles(log, customers, last)
        for name, vec in vectors.items():
            vec = np.asarray(vec, np.float32)
            unit = vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-8)
            mean = np.zeros((len(customers), vec.shape[1]), np.float32)
            np.add.at(mean, np.searchsorted(customers, rc), unit[ra])
            mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-8)
            has = np.zeros(len(customers), bool)
            has[np.searchsorted(customers, rc)] = True
            pos = np.searchsorted(customers, c)
            sim = rowwise_dot(mean, pos, unit, a)
            out[f"{name}_sim"] = np.where(has[pos], sim, np.nan).astype(np.float32)
    return out


def rowwise_dot(left: np.ndarray, i: np.ndarray, right: np.ndarray, j: np.ndarray,
                chunk: int = 65_536) -> np.ndarray:
    """(n,) ``left[i[r]] . right[j[r]]`` for each r, ``chunk`` rows at a time: gathering both
    sides whole is two (n, d) copies (6 GB for 2M candidate rows of 384-d text vectors)."""
    out = np.empty(len(i), np.result_type(left, right))
    for lo in range(0, len(i), chunk):
        sl = slice(lo, lo + chunk)
        out[sl] = np.einsum("nd,nd->n", left[i[sl]], right[j[sl]])
    return out
