"""Ranking metrics for recommenders (MAP@K, recall, precision, NDCG, MRR, hit rate, coverage, AUC).

Every model and baseline is scored by this module, using the H&M Kaggle competition's
conventions. These apply to every ranking metric here:

* ``recs`` holds one ranked list of item ids per user, best first. It can be a sequence of
  sequences or a 2-D integer array of shape (users, ranks). Negative ids (the ``-1`` padding
  of a 2-D array) are not items. They never count as hits or towards coverage, but they
  still take up their rank. Only the first ``k`` ranks are read, and a list shorter than
  ``k`` is treated as padded.
* ``truth`` holds one collection of relevant item ids per user, in the same order as
  ``recs``. It is treated as a set, so a repeated id counts once. Negative ids are dropped,
  so a padded 2-D truth array also works.
* If a recommended item appears more than once in a user's list, it counts only at its first
  rank, as the competition's ``apk`` does (``p not in predicted[:i]``). Later copies take up
  a rank but can never be hits.
* **Users with an empty truth are left out of the mean.** This is the H&M MAP@12
  convention: only customers who bought something in the test week are scored. Their
  per-user value is ``nan``. A mean over no scored users is also ``nan``.
* Item ids are integers. H&M article ids fit easily in int64.

Every ranking metric accepts ``per_user=True``. It then returns a float array with one value
per user, ``nan`` for users who were not scored, instead of the mean. Evaluation code uses it
to report distributions.

Implementation: each user's first ``k`` recommendations are looked up in the truth all at
once. Each (user, item) pair is encoded as one int64 key and found by binary search in the
sorted truth keys, which gives a boolean hit matrix of shape (users, k). Every metric is then
a few array operations on that matrix, with no Python loop over items, so a million users
take seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, islice

import numpy as np

Recs = Sequence[Sequence[int]] | np.ndarray
Truth = Sequence[Collection[int]] | np.ndarray

# Per-user formula: (hits (U, k) bool, n_truth (U,) int, k) -> (U,) float.
UserFormula = Callable[[np.ndarray, np.ndarray, int], np.ndarray]

# Largest value a (user, item) key may reach. It is kept below 2**63 so int64 cannot overflow.
_MAX_KEY = 2**62


@dataclass(frozen=True)
class _Ranking:
    """Recommendations matched against the truth.

    ranked: (U, W) int64, each user's first W recommended ids, padded with -1.
    hits: (U, W) bool, True where the rank holds a relevant item at its first occurrence.
    n_truth: (U,) int64, the number of distinct relevant items for each user.
    """

    ranked: np.ndarray
    hits: np.ndarray
    n_truth: np.ndarray


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _ranked_matrix(recs: Recs, width: int | None) -> np.ndarray:
    """Return (U, width) int64: each user's first ``width`` recommendations, padded with -1.

    If ``width`` is None, the longest list sets the width.
    """
    if isinstance(recs, np.ndarray):
        if recs.ndim != 2 or not np.issubdtype(recs.dtype, np.integer):
            raise ValueError(
                f"recs array must be 2-D integer (users, ranks), got shape {recs.shape} "
                f"dtype {recs.dtype}"
            )
        width = recs.shape[1] if width is None else width
        out = np.full((recs.shape[0], width), -1, dtype=np.int64)
        kept = min(width, recs.shape[1])
        out[:, :kept] = recs[:, :kept]
        return out

    n_users = len(recs)
    lengths = np.fromiter((len(r) for r in recs), dtype=np.int64, count=n_users)
    if width is None:
        width = int(lengths.max(initial=0))
    lengths = np.minimum(lengths, width)
    # The only Python-level loop over items is this single pass to flatten the ragged lists.
    flat = np.fromiter(
        chain.from_iterable(islice(r, width) for r in recs),
        dtype=np.int64,
        count=int(lengths.sum()),
    )
    out = np.full((n_users, width), -1, dtype=np.int64)
    rows = np.repeat(np.arange(n_users), lengths)
    # Each item's column is its index in the flat array minus the index where its row starts.
    starts = np.cumsum(lengths) - lengths
    cols = np.arange(flat.size) - np.repeat(starts, lengths)
    out[rows, cols] = flat
    return out


def _flatten_truth(truth: Truth) -> tuple[np.ndarray, np.ndarray]:
    """Return (users, items), one entry per truth id, with negative ids dropped."""
    if isinstance(truth, np.ndarray) and truth.ndim == 2:
        users = np.repeat(np.arange(truth.shape[0]), truth.shape[1])
        items = truth.astype(np.int64).ravel()
    else:
        lengths = np.fromiter((len(t) for t in truth), dtype=np.int64, count=len(truth))
        users = np.repeat(np.arange(len(truth)), lengths)
        items = np.fromiter(chain.from_iterable(truth), dtype=np.int64, count=int(lengths.sum()))
    keep = items >= 0
    return users[keep], items[keep]


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values, the same as ``np.unique(values)``.

    numpy 2.4's ``np.unique`` takes a hash-table path that needs ~16 s for 12M int64 values
    with many distinct ids, while a sort plus an adjacent-difference mask takes ~0.2 s.
    """
    values = np.sort(values, axis=None)
    keep = np.ones(values.size, dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def _first_occurrence(ranked: np.ndarray) -> np.ndarray:
    """(U, W) bool: True where a row's value appears for the first time in that row."""
    # A stable sort keeps equal ids in rank order. So within each run of equal ids, the
    # first element is the first occurrence and every later element is a repeat.
    order = np.argsort(ranked, axis=1, kind="stable")  # (U, W)
    ids_sorted = np.take_along_axis(ranked, order, axis=1)
    repeat = np.zeros(ranked.shape, dtype=bool)
    repeat[:, 1:] = ids_sorted[:, 1:] == ids_sorted[:, :-1]
    first = np.empty(ranked.shape, dtype=bool)
    np.put_along_axis(first, order, ~repeat, axis=1)
    return first


def _pair_keys(
    r_users: np.ndarray,
    r_items: np.ndarray,
    t_users: np.ndarray,
    t_items: np.ndarray,
    n_users: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Encode (user, item) pairs as ``user * stride + item_code``; return both keys and stride."""
    all_items = np.concatenate([r_items, t_items])
    top = int(all_items.max(initial=-1)) + 1
    if n_users * top < _MAX_KEY:
        # Normal case: the raw ids are small enough to use directly, with no extra sort.
        return r_users * top + r_items, t_users * top + t_items, top
    # Ids too large to fit in a key (for example hashed ids): replace them with dense codes.
    # The code is each id's rank among the distinct ids, which np.unique's return_inverse
    # also gives, but without numpy 2.4's slow hashing path (see _sorted_unique).
    order = np.argsort(all_items)
    ids_sorted = all_items[order]
    is_new = np.ones(ids_sorted.size, dtype=bool)
    is_new[1:] = ids_sorted[1:] != ids_sorted[:-1]
    codes = np.empty(all_items.size, dtype=np.int64)
    codes[order] = np.cumsum(is_new) - 1
    stride = max(int(is_new.sum()), 1)
    r_codes, t_codes = codes[: r_items.size], codes[r_items.size :]
    return r_users * stride + r_codes, t_users * stride + t_codes, stride


def _sorted_contains(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Return a bool array: True where each query is found in ``sorted_keys``.

    Same result as ``np.isin``, but several times faster here. ``np.isin`` also sorts or
    hashes the ~12M recommendation keys, whereas a binary search into the smaller, already
    sorted truth keys needs no extra pass.
    """
    if sorted_keys.size == 0:
        return np.zeros(queries.shape, dtype=bool)
    # The queries come in user order (keys grow with the user index), so the searches move
    # through sorted_keys roughly in order and stay cache-friendly.
    pos = np.searchsorted(sorted_keys, queries)
    pos[pos == sorted_keys.size] = 0  # past the end: compare with any key, it cannot be equal
    return sorted_keys[pos] == queries


def _match(recs: Recs, truth: Truth, width: int | None) -> _Ranking:
    """Find, for every user and rank, whether the recommended item is relevant (see module doc)."""
    if len(recs) != len(truth):
        raise ValueError(
            f"recs and truth must have one entry per user, got {len(recs)} recs and "
            f"{len(truth)} truth entries"
        )
    ranked = _ranked_matrix(recs, width)  # (U, W)
    n_users = ranked.shape[0]
    t_users, t_items = _flatten_truth(truth)
    valid = (ranked >= 0) & _first_occurrence(ranked)  # real items at their first rank
    r_users = np.nonzero(valid)[0]  # same row-major order as ranked[valid]
    r_keys, t_keys, stride = _pair_keys(r_users, ranked[valid], t_users, t_items, n_users)
    t_keys = _sorted_unique(t_keys)  # sorted; truth is a set, so repeated ids count once
    hits = np.zeros(ranked.shape, dtype=bool)
    hits[valid] = _sorted_contains(t_keys, r_keys)
    n_truth = np.bincount(t_keys // stride, minlength=n_users).astype(np.int64)
    return _Ranking(ranked=ranked, hits=hits, n_truth=n_truth)


def _finish(values: np.ndarray, n_truth: np.ndarray, per_user: bool) -> float | np.ndarray:
    """Blank out users with no truth, then return the per-user array or the mean of the rest."""
    scored = n_truth > 0
    values = np.where(scored, values, np.nan).astype(np.float64)
    if per_user:
        return values
    # This check avoids numpy's "mean of empty slice" warning; nan is the documented result.
    return float(values[scored].mean()) if scored.any() else float("nan")


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise division that gives nan where the denominator is 0 (those users are unscored)."""
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    return np.divide(numerator, denominator, out=out, where=denominator > 0)


# Per-user formulas. Each takes the (U, k) hit matrix, which is padded to exactly k columns,
# and the (U,) truth sizes, and returns (U,) floats.


def _user_precision(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    return hits.sum(axis=1) / k


def _user_recall(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    return _divide(hits.sum(axis=1), n_truth)


def _user_average_precision(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    # apk: sum over ranks i <= k of P(i) * rel(i), divided by min(|truth|, k).
    ranks = np.arange(1, hits.shape[1] + 1)  # (k,)
    precision_at_rank = np.cumsum(hits, axis=1) / ranks  # (U, k)
    return _divide((precision_at_rank * hits).sum(axis=1), np.minimum(n_truth, k))


def _user_ndcg(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))  # rank i gets 1/log2(i + 1)
    dcg = hits @ discounts
    # The ideal list puts min(|truth|, k) hits first. ideal[n] is the sum of the first n discounts.
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])
    return _divide(dcg, ideal[np.minimum(n_truth, k)])


def _user_reciprocal_rank(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    if hits.shape[1] == 0:  # every list empty (k=None): argmax is undefined on no columns
        return np.zeros(hits.shape[0])
    first = hits.argmax(axis=1)  # index of the first hit; 0 also for rows with no hit
    return np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)


def _user_hit(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    return hits.any(axis=1).astype(np.float64)


def _metric(
    user_formula: UserFormula, recs: Recs, truth: Truth, k: int, per_user: bool
) -> float | np.ndarray:
    k = _check_k(k)
    matched = _match(recs, truth, k)
    return _finish(user_formula(matched.hits, matched.n_truth, k), matched.n_truth, per_user)


def precision_at_k(
    recs: Recs, truth: Truth, k: int, *, per_user: bool = False
) -> float | np.ndarray:
    """Precision@K = (number of distinct relevant items in the top k) / k.

    The denominator is always k, even when a list is shorter than k. A short list is
    penalised just as if it were padded with misses.
    """
    return _metric(_user_precision, recs, truth, k, per_user)


def recall_at_k(recs: Recs, truth: Truth, k: int, *, per_user: bool = False) -> float | np.ndarray:
    """Recall@K = (number of relevant items in the top k) / |truth|.

    The denominator is the full truth size, not min(|truth|, k), so recall is below 1 whenever
    |truth| > k.
    """
    return _metric(_user_recall, recs, truth, k, per_user)


def ndcg_at_k(recs: Recs, truth: Truth, k: int, *, per_user: bool = False) -> float | np.ndarray:
    """NDCG@K with binary relevance.

    DCG sums 1/log2(i + 1) over the hits at ranks i <= k. The ideal DCG puts
    min(|truth|, k) hits at the top ranks.
    """
    return _metric(_user_ndcg, recs, truth, k, per_user)


def map_at_k(recs: Recs, truth: Truth, k: int, *, per_user: bool = False) -> float | np.ndarray:
    """MAP@K exactly as the H&M competition's ``apk``/``mapk``, except for empty truth.

    For each user, AP@K is the sum over ranks i <= k of P(i) * rel(i), divided by
    min(|truth|, k). P(i) is the precision of the top i, and rel(i) is 1 if rank i holds a
    relevant item seen for the first time.

    Kaggle's ``mapk`` counts users with empty truth as 0. Here they are left out of the mean,
    following the competition's own scoring, where only buyers are in the answer file.
    """
    return _metric(_user_average_precision, recs, truth, k, per_user)


def average_precision_at_k(
    rec: Sequence[int] | np.ndarray, truth: Collection[int], k: int
) -> float:
    """AP@K for one user (the competition's ``apk``). Returns nan if ``truth`` is empty.

    ``apk`` returns 0.0 for empty truth. Here the user is unscored instead, which matches the
    per-user arrays of :func:`map_at_k`.
    """
    return float(map_at_k([list(rec)], [truth], k, per_user=True)[0])


def hit_rate_at_k(
    recs: Recs, truth: Truth, k: int, *, per_user: bool = False
) -> float | np.ndarray:
    """Hit rate@K: the share of scored users with at least one relevant item in the top k."""
    return _metric(_user_hit, recs, truth, k, per_user)


def mrr(
    recs: Recs, truth: Truth, k: int | None = None, *, per_user: bool = False
) -> float | np.ndarray:
    """Mean reciprocal rank: 1 / (rank of the first relevant item), or 0 if none is in the top k.

    If ``k`` is None, each user's whole list is searched.
    """
    width = None if k is None else _check_k(k)
    matched = _match(recs, truth, width)
    values = _user_reciprocal_rank(matched.hits, matched.n_truth, matched.hits.shape[1])
    return _finish(values, matched.n_truth, per_user)


def _coverage(ranked: np.ndarray, n_items: int) -> float:
    if n_items < 1:
        raise ValueError(f"n_items (catalogue size) must be a positive integer, got {n_items!r}")
    return _sorted_unique(ranked[ranked >= 0]).size / n_items


def coverage(recs: Recs, n_items: int, k: int | None = None) -> float:
    """Catalogue coverage: (distinct item ids in all users' top k) / n_items.

    Coverage describes what the recommender outputs, so every user counts here, including users
    with no truth. Padding (negative ids) does not count. If ``k`` is None, whole lists are used.
    """
    width = None if k is None else _check_k(k)
    return _coverage(_ranked_matrix(recs, width), n_items)


def auc(labels: Iterable[int] | np.ndarray, scores: Iterable[float] | np.ndarray) -> float:
    """ROC AUC of ``scores`` against binary ``labels``, computed by sklearn's ``roc_auc_score``.

    This is the probability that a random positive scores above a random negative, with ties
    counted as 1/2. If ``labels`` has only one class (or is empty), AUC is undefined. In that
    case the function returns nan, with no error and no warning, so callers can average AUC
    over groups, some of which have one class, with ``np.nanmean``.
    """
    labels = np.asarray(labels).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(
            f"labels and scores must have the same length, got {labels.size} and {scores.size}"
        )
    if np.unique(labels).size < 2:
        return float("nan")
    # Imported here because sklearn.metrics takes about a second to import, and most users of
    # this module (ranking evaluation, Ray workers) never need AUC.
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


_PER_USER_FORMULAS = {
    "map": _user_average_precision,
    "recall": _user_recall,
    "precision": _user_precision,
    "ndcg": _user_ndcg,
    "mrr": _user_reciprocal_rank,
    "hit_rate": _user_hit,
}


def evaluate_ranking(
    recs: Recs, truth: Truth, ks: Sequence[int] = (12,), n_items: int | None = None
) -> dict[str, float]:
    """Compute every ranking metric at every k in ``ks``.

    Keys (the project's contract): ``map@K``, ``recall@K``, ``precision@K``, ``ndcg@K``,
    ``mrr@K``, ``hit_rate@K`` and ``coverage@K`` for each K, plus ``n_users``, the number of
    users with non-empty truth (the users the means are over). ``coverage@K`` covers all users
    and is nan when ``n_items`` is None, so every run has the same keys.

    Recommendations are matched once, at the largest k. A hit at rank i does not depend on k,
    so each smaller k just uses the first k columns.
    """
    ks = [_check_k(k) for k in ks]
    if not ks:
        raise ValueError("ks must name at least one cutoff, got an empty sequence")
    matched = _match(recs, truth, max(ks))
    result: dict[str, float] = {}
    for k in ks:
        hits = matched.hits[:, :k]
        for name, user_formula in _PER_USER_FORMULAS.items():
            values = user_formula(hits, matched.n_truth, k)
            result[f"{name}@{k}"] = _finish(values, matched.n_truth, per_user=False)
        result[f"coverage@{k}"] = (
            float("nan") if n_items is None else _coverage(matched.ranked[:, :k], n_items)
        )
    result["n_users"] = int((matched.n_truth > 0).sum())
    return result


def per_user_auc_ndcg(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> dict:
    """Mean over users of AUC and NDCG (whole candidate list) of each user's candidates, as
    FND-CL reports them: one row per (user, candidate), ``labels`` 1 / 0; users without both a
    positive and a negative are left out."""
    order = np.argsort(users, kind="stable")
    u, lab, sc = users[order], labels[order], scores[order]
    bounds = np.flatnonzero(np.diff(u)) + 1
    aucs, recs, truth = [], [], []
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(u)]):
        y, s = lab[lo:hi], sc[lo:hi]
        if y.min() == y.max():
            continue
        aucs.append(auc(y, s))
        recs.append(np.argsort(-s, kind="stable"))  # candidate positions, best first
        truth.append(np.flatnonzero(y))
    if not aucs:
        return {"auc": float("nan"), "ndcg": float("nan"), "users": 0}
    width = max(len(r) for r in recs)
    return {"auc": float(np.mean(aucs)), "ndcg": float(ndcg_at_k(recs, truth, width)),
            "users": len(aucs)}
