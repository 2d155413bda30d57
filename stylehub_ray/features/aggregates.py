"""Customer, article and interaction features (hybrid two-tower paper, Step 2), as pure pandas.

Each function takes the transactions of a set of customers (or articles) that is complete for
them, i.e. every transaction they have before the cutoff, and computes their features as of the
cutoff. The Ray stage (``stage.py``) routes rows so that each call gets complete groups; these
functions hold the definitions, so the tests can check every value by hand.

Definitions (all from transactions with ``t_dat < cutoff``; "recent" = the ``recent_days``
days before the cutoff, ``cutoff - recent_days <= t_dat < cutoff``):
- counts and sums are over transaction rows (a repeated row is a second unit bought);
- ``price_std`` is the population standard deviation (0 for one transaction);
- ``main_channel`` is the most used sales channel, the lower id on a tie;
- ``days_active`` = last - first purchase day; ``purchase_frequency`` = count /
  max(days_active, 1);
- ``days_since_first`` / ``days_since_last`` count days from that purchase to the cutoff.
Rows with no transaction before the cutoff get defined values, never NaN: zero counts and sums,
prices imputed with the median over customers (articles) that have them, ``days_since_*`` =
the days from the first transaction in the data to the cutoff plus one ("never"), the most
common channel, and ``has_history`` = 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CUSTOMER_NUMERIC = [
    "tx_count", "price_mean", "price_std", "price_min", "price_max", "spend_total",
    "unique_articles", "days_active", "purchase_frequency", "days_since_first",
    "days_since_last", "recent_count", "recent_price_mean", "recent_spend", "has_history",
]
ARTICLE_NUMERIC = [
    "sales_count", "unique_customers", "price_mean", "price_std", "price_median",
    "days_since_first_sale", "days_since_last_sale", "recent_sales", "recent_unique_customers",
    "has_history",
]
PRICE_COLUMNS = {"customer": ["price_mean", "price_std", "price_min", "price_max"],
                 "article": ["price_mean", "price_std", "price_median"]}


def _days(values: pd.Series) -> np.ndarray:
    """Day numbers; fast for datetime64 columns (read with ``date_as_object=False``)."""
    return np.asarray(values.to_numpy()).astype("datetime64[D]").astype(np.int64)


def _main_channel(df: pd.DataFrame, key: str) -> pd.Series:
    counts = df.groupby([key, "sales_channel_id"]).size().unstack(fill_value=0)
    # idxmax returns the first column with the maximum: the lower channel id on a tie.
    return counts.idxmax(axis=1).astype(np.int8)


def customer_features(tx: pd.DataFrame, cutoff, recent_days: int = 30) -> pd.DataFrame:
    """Features of every customer in ``tx`` (columns t_dat, customer_idx, article_idx, price,
    sales_channel_id; only rows before ``cutoff`` are used), indexed by customer_idx."""
    cut = int(np.datetime64(cutoff, "D").astype(np.int64))
    day = _days(tx["t_dat"])
    tx = tx.assign(_day=day)[day < cut]
    g = tx.groupby("customer_idx")
    out = pd.DataFrame({
        "tx_count": g.size(),
        "price_mean": g["price"].mean(),
        "price_std": g["price"].std(ddof=0),
        "price_min": g["price"].min(),
        "price_max": g["price"].max(),
        "spend_total": g["price"].sum(),
        "unique_articles": g["article_idx"].nunique(),
        "first_day": g["_day"].min(),
        "last_day": g["_day"].max(),
    })
    out["main_channel"] = _main_channel(tx, "customer_idx")
    out["days_active"] = out["last_day"] - out["first_day"]
    out["purchase_frequency"] = out["tx_count"] / out["days_active"].clip(lower=1)
    out["days_since_first"] = cut - out["first_day"]
    out["days_since_last"] = cut - out["last_day"]
    recent = tx[tx["_day"] >= cut - recent_days].groupby("customer_idx")["price"]
    out["recent_count"] = recent.size()
    out["recent_spend"] = recent.sum()
    out["recent_price_mean"] = recent.mean()
    out["has_history"] = 1
    return out.drop(columns=["first_day", "last_day"])


def article_features(tx: pd.DataFrame, cutoff, recent_days: int = 30) -> pd.DataFrame:
    """Features of every article in ``tx`` (rows before ``cutoff``), indexed by article_idx."""
    cut = int(np.datetime64(cutoff, "D").astype(np.int64))
    day = _days(tx["t_dat"])
    tx = tx.assign(_day=day)[day < cut]
    g = tx.groupby("article_idx")
    out = pd.DataFrame({
        "sales_count": g.size(),
        "unique_customers": g["customer_idx"].nunique(),
        "price_mean": g["price"].mean(),
        "price_std": g["price"].std(ddof=0),
        "price_median": g["price"].median(),
        "days_since_first_sale": cut - g["_day"].min(),
        "days_since_last_sale": cut - g["_day"].max(),
    })
    out["main_channel"] = _main_channel(tx, "article_idx")
    recent = tx[tx["_day"] >= cut - recent_days].groupby("article_idx")["customer_idx"]
    out["recent_sales"] = recent.size()
    out["recent_unique_customers"] = recent.nunique()
    out["has_history"] = 1
    return out


ZERO_WHEN_NONE = {
    "customer": ["tx_count", "spend_total", "unique_articles", "days_active",
                 "purchase_frequency", "recent_count", "recent_spend", "has_history"],
    "article": ["sales_count", "unique_customers", "recent_sales", "recent_unique_customers",
                "has_history"],
}
INTEGER = {
    "customer": ["tx_count", "unique_articles", "days_active", "days_since_first",
                 "days_since_last", "recent_count", "has_history"],
    "article": ["sales_count", "unique_customers", "days_since_first_sale",
                "days_since_last_sale", "recent_sales", "recent_unique_customers",
                "has_history"],
}


def complete(features: pd.DataFrame, index: np.ndarray, kind: str, never_days: int,
             price_medians: dict[str, float], main_channel: int) -> tuple[pd.DataFrame, int]:
    """Reindex to every customer (article) and give those without history defined values.
    Returns (features, how many had no history)."""
    out = features.reindex(index)
    missing = int(out["has_history"].isna().sum())
    out[ZERO_WHEN_NONE[kind]] = out[ZERO_WHEN_NONE[kind]].fillna(0)
    for col in PRICE_COLUMNS[kind]:
        out[col] = out[col].fillna(price_medians[col])
    if kind == "customer":
        # No purchase in the recent days: the customer's usual price stands in.
        out["recent_price_mean"] = out["recent_price_mean"].fillna(out["price_mean"])
    for col in [c for c in out.columns if c.startswith("days_since")]:
        out[col] = out[col].fillna(never_days)
    out["main_channel"] = out["main_channel"].fillna(main_channel).astype(np.int8)
    out[INTEGER[kind]] = out[INTEGER[kind]].astype(np.int64)
    out.index.name = "customer_idx" if kind == "customer" else "article_idx"
    return out.reset_index(), missing


def interaction_features(t_dat: pd.Series) -> pd.DataFrame:
    """Per transaction: day of week (0 = Monday), month (1-12), weekend flag (Sat/Sun)."""
    dt = pd.to_datetime(t_dat)
    dow = dt.dt.day_of_week.astype(np.int8)
    return pd.DataFrame({"day_of_week": dow, "month": dt.dt.month.astype(np.int8),
                         "is_weekend": (dow >= 5).astype(np.int8)}, index=t_dat.index)


def sample_negatives(pos_customer: np.ndarray, bought_keys: np.ndarray, n_articles: int,
                     k: int, rng: np.random.Generator,
                     popularity: np.ndarray | None = None,
                     max_rounds: int = 50, pos_day: np.ndarray | None = None,
                     first_sale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """k negatives per positive: articles the customer did not buy in the training period.

    ``bought_keys`` are the sorted unique ``customer_idx * n_articles + article_idx`` of the
    training period. Draws are uniform or proportional to ``popularity``; a draw that hits a
    bought article is redrawn. With ``pos_day`` (day number of each positive) and
    ``first_sale`` (day number of each article's first sale; a large number for never), a
    positive's negatives come only from the articles on sale that day (first sold on or
    before it): an article not yet sold was no choice the customer passed over. Returns (row
    of the positive each negative belongs to, article) for the negatives found; a positive
    whose customer bought (nearly) every article on sale may end up with fewer than k, which
    the caller counts.
    """
    owner = np.repeat(np.arange(len(pos_customer)), k)
    cust = pos_customer[owner].astype(np.int64)
    if first_sale is not None and pos_day is not None:
        return _sample_on_sale(owner, cust, bought_keys, n_articles, rng, popularity,
                               max_rounds, np.asarray(pos_day, np.int64)[owner],
                               np.asarray(first_sale, np.int64))
    cdf = None
    if popularity is not None:
        cdf = np.cumsum(popularity, dtype=np.float64)
        cdf /= cdf[-1]
    article = np.empty(len(owner), np.int64)
    todo = np.arange(len(owner))
    for _ in range(max_rounds):
        if len(todo) == 0:
            break
        if cdf is None:
            draw = rng.integers(0, n_articles, len(todo))
        else:
            draw = np.minimum(np.searchsorted(cdf, rng.random(len(todo)), side="right"),
                              n_articles - 1)
        article[todo] = draw
        todo = todo[_hits(bought_keys, cust[todo] * n_articles + draw)]
    keep = np.ones(len(owner), bool)
    keep[todo] = False
    return owner[keep], article[keep]


def _hits(bought_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Bool per key: in the sorted ``bought_keys``."""
    if not len(bought_keys):
        return np.zeros(len(keys), bool)
    pos = np.minimum(np.searchsorted(bought_keys, keys), len(bought_keys) - 1)
    return bought_keys[pos] == keys


def _sample_on_sale(owner, cust, bought_keys, n_articles, rng, popularity, max_rounds, day,
                    first_sale) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sample_negatives` among the articles on sale on each negative's day: articles
    sorted by first sale, so those on sale on day d are a prefix, drawn from by a uniform
    number (or a point on the prefix's popularity CDF)."""
    order = np.argsort(first_sale, kind="stable")
    on_sale = np.searchsorted(first_sale[order], day, side="right")  # prefix length per draw
    weights = (np.asarray(popularity, np.float64)[order] if popularity is not None
               else np.ones(n_articles))
    cdf = np.cumsum(weights)
    article = np.full(len(owner), -1, np.int64)
    todo = np.flatnonzero(on_sale > 0)  # nothing on sale: no negative
    for _ in range(max_rounds):
        if len(todo) == 0:
            break
        n = on_sale[todo]
        if popularity is None:
            j = np.minimum((rng.random(len(todo)) * n).astype(np.int64), n - 1)
        else:
            j = np.minimum(np.searchsorted(cdf, rng.random(len(todo)) * cdf[n - 1],
                                           side="right"), n - 1)
        draw = order[j]
        article[todo] = draw
        todo = todo[_hits(bought_keys, cust[todo] * n_articles + draw)]
    keep = article >= 0
    keep[todo] = False
    return owner[keep], article[keep]
