"""Positive / negative item pairs and their train / test split (numpy only, no Ray, no I/O).

- kNN pairs (contrastive paper 4.3.3): the k nearest other items of every item are its
  positives; as many negatives per anchor are drawn at random among items that are neither the
  anchor, nor one of its k neighbours, nor an item that has the anchor among *its* neighbours
  (so no unordered pair is ever labelled both ways).
- Transaction pairs (4.2.1): two different items bought by the same customer on the same day,
  or within ``window_days`` of each other, are a positive; a negative pairs a positive's anchor
  with an item that customer never bought.
- Split: each item falls in ``test`` with probability ``test_share`` (seeded), and a pair goes
  where its canonical anchor, the smaller article_idx of the two, goes. Both orientations of a
  pair, (a, b) and (b, a), share the canonical anchor, so they never straddle the split.
"""

from __future__ import annotations

import numpy as np

MAX_REDRAWS = 200


def pair_keys(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Unordered pair -> one int64 key (min * n + max)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    return np.minimum(a, b) * n + np.maximum(a, b)


def item_test_mask(n_items: int, test_share: float, seed: int) -> np.ndarray:
    """Which items are test anchors: an exact ``round(test_share * n)`` of them, seeded."""
    rng = np.random.default_rng([seed, 0x5EED])
    mask = np.zeros(n_items, bool)
    mask[rng.permutation(n_items)[: int(round(test_share * n_items))]] = True
    return mask


def split_of(anchor: np.ndarray, other: np.ndarray, test_items: np.ndarray) -> np.ndarray:
    """'train' / 'test' per pair, from its canonical anchor (the smaller index)."""
    canonical = np.minimum(anchor, other)
    return np.where(test_items[canonical], "test", "train").astype(object)


def draw_negatives(anchors: np.ndarray, n_items: int, forbidden,
                   rng: np.random.Generator) -> np.ndarray:
    """One random partner per anchor such that ``forbidden(rows, partners)`` is False (``rows``
    index ``anchors``), the partner differs from the anchor and no (anchor, partner) repeats.
    Rejection sampling: redraw only the rejected ones. Anchors left without a partner after
    the redraws get -1 (only in catalogues too small to have one)."""
    partner = rng.integers(0, n_items, len(anchors))
    todo = np.arange(len(anchors))
    for _ in range(MAX_REDRAWS):
        p = partner[todo]
        bad = (p == anchors[todo]) | forbidden(todo, p)
        # Repeats of the same (anchor, partner): keep the first, redraw the others.
        key = anchors * np.int64(n_items) + partner
        _, first = np.unique(key, return_index=True)
        repeat = np.ones(len(anchors), bool)
        repeat[first] = False
        bad |= repeat[todo]
        todo = todo[bad]
        if len(todo) == 0:
            return partner
        partner[todo] = rng.integers(0, n_items, len(todo))
    partner[todo] = -1
    return partner


def knn_pairs(neighbors: np.ndarray, scores: np.ndarray, seed: int = 0,
              test_share: float = 0.2) -> dict[str, np.ndarray]:
    """Pairs from a (N, k) neighbour table (-1 = none): k positives and k negatives per anchor.

    Returns columns ``anchor``, ``other``, ``label`` (1/0), ``rank`` (1..k for positives, 0 for
    negatives), ``score`` (the index's similarity for positives, NaN for negatives: the caller
    fills it from the vectors), ``split``.
    """
    n, k = neighbors.shape
    anchor = np.repeat(np.arange(n, dtype=np.int64), k)
    other = neighbors.reshape(-1).astype(np.int64)
    rank = np.tile(np.arange(1, k + 1, dtype=np.int16), n)
    found = other >= 0
    anchor, other, rank = anchor[found], other[found], rank[found]
    score = scores.reshape(-1)[found].astype(np.float32)
    positive_keys = np.unique(pair_keys(anchor, other, n))

    rng = np.random.default_rng(seed)
    neg_anchor = anchor.copy()  # as many negatives per anchor as it has positives

    def forbidden(rows: np.ndarray, p: np.ndarray) -> np.ndarray:
        return np.isin(pair_keys(neg_anchor[rows], p, n), positive_keys)

    neg_other = draw_negatives(neg_anchor, n, forbidden, rng)
    ok = neg_other >= 0
    neg_anchor, neg_other = neg_anchor[ok], neg_other[ok]
    test_items = item_test_mask(n, test_share, seed)
    all_anchor = np.concatenate([anchor, neg_anchor])
    all_other = np.concatenate([other, neg_other])
    return {
        "anchor": all_anchor, "other": all_other,
        "label": np.r_[np.ones(len(anchor), np.int8), np.zeros(len(neg_anchor), np.int8)],
        "rank": np.r_[rank, np.zeros(len(neg_anchor), np.int16)],
        "score": np.r_[score, np.full(len(neg_anchor), np.nan, np.float32)],
        "split": split_of(all_anchor, all_other, test_items),
    }


def transaction_pairs(customer: np.ndarray, day: np.ndarray, article: np.ndarray,
                      n_items: int, window_days: int = 0, negatives_per_positive: int = 1,
                      max_positives: int | None = None, seed: int = 0,
                      test_share: float = 0.2) -> dict[str, np.ndarray]:
    """Co-purchase pairs: unordered (lo, hi) items bought by one customer within
    ``window_days`` (0: the same day), deduplicated across customers with ``support`` = the
    number of customers who bought both; negatives pair ``lo`` with an item the supporting
    customer (the first one, in customer order) never bought.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    tx = pd.DataFrame({"c": np.asarray(customer, np.int64), "d": np.asarray(day, np.int64),
                       "a": np.asarray(article, np.int64)}).drop_duplicates()
    found = []
    for shift in range(window_days + 1):
        # Rows bought `shift` days after another row of the same customer.
        left = tx.assign(d=tx["d"] + shift)
        m = left.merge(tx, on=["c", "d"], suffixes=("_l", "_r"))
        m = m[m["a_l"] < m["a_r"]] if shift == 0 else m[m["a_l"] != m["a_r"]]
        found.append(pd.DataFrame({"c": m["c"].to_numpy(),
                                   "lo": np.minimum(m["a_l"], m["a_r"]).to_numpy(),
                                   "hi": np.maximum(m["a_l"], m["a_r"]).to_numpy()}))
    pos = pd.concat(found, ignore_index=True).drop_duplicates()
    pos = (pos.groupby(["lo", "hi"], sort=True)
              .agg(support=("c", "size"), c=("c", "min")).reset_index())
    if max_positives is not None and len(pos) > max_positives:
        pos = pos.iloc[np.sort(rng.choice(len(pos), max_positives, replace=False))]
    lo, hi = pos["lo"].to_numpy(), pos["hi"].to_numpy()
    positive_keys = np.unique(pair_keys(lo, hi, n_items))
    bought = np.unique(tx["c"].to_numpy() * np.int64(n_items) + tx["a"].to_numpy())

    neg_anchor = np.repeat(lo, negatives_per_positive)
    neg_customer = np.repeat(pos["c"].to_numpy(), negatives_per_positive)

    def forbidden(rows: np.ndarray, p: np.ndarray) -> np.ndarray:
        # The supporting customer bought p, or (anchor, p) is itself a positive pair.
        return (np.isin(neg_customer[rows] * np.int64(n_items) + p, bought)
                | np.isin(pair_keys(neg_anchor[rows], p, n_items), positive_keys))

    neg_other = draw_negatives(neg_anchor, n_items, forbidden, rng)
    ok = neg_other >= 0
    neg_anchor, neg_other = neg_anchor[ok], neg_other[ok]
    test_items = item_test_mask(n_items, test_share, seed)
    all_anchor = np.concatenate([lo, neg_anchor])
    all_other = np.concatenate([hi, neg_other])
    return {
        "anchor": all_anchor, "other": all_other,
        "label": np.r_[np.ones(len(lo), np.int8), np.zeros(len(neg_anchor), np.int8)],
        "support": np.r_[pos["support"].to_numpy().astype(np.int32),
                         np.zeros(len(neg_anchor), np.int32)],
        "split": split_of(all_anchor, all_other, test_items),
    }
