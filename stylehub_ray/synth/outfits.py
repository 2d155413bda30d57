"""Synthetic Polyvore-U (tuples_630 / 53 / 519 / 32) with planted styles and its ground truth.

Writes the layout that ``stylehub_ray.data.polyvore`` reads (and Fashion-Hash-Net's loader
reads): per set ``image_list_{top,bottom,shoe}`` and ``tuples_{train,val,test}_{posi,nega,
nega_hard}``, item images under ``images/<category>/<hex>.jpg`` (the lists name them
``<category>/<hex>.jpg``, relative to ``images/``), and ``_oracle/`` with the generative factors.

Row formats, as in the release (header line first, then comma-separated integers):

- fixed length (630, 53): ``user,top,bottom,shoe``;
- variable length (519, 32): ``user,top,top,bottom,shoe``, i.e. ``user,top,top2,bottom,shoe``
  with ``-1`` as the second top of a three-item outfit. The order is confirmed against
  lzcn/Fashion-Hash-Net (``data/README.md`` and ``read_item_list``: main top, second top,
  bottom, shoe; only the second top is ever ``-1``).

The generative model:

- K latent styles, each a unit centroid in R^D and a look (hue, saturation, pattern) that the
  images render. Every item has one style and a vector ``normalise(centroid + noise)``; its
  image takes the style's look, jittered by the same noise.
- Items are partitioned per (category, style) into train / val / test pools in 9:2:2, and an
  outfit of split s only uses items of pool s: no item is shared between a user's training and
  test outfits (FND-CL 4.1.1, after Lu et al. 2019), and negatives of a split are "randomly
  mixed using the items in the corresponding split" (Fashion-Hash-Net's data README).
- Users have 1-3 anchor styles with weights. A positive outfit of user u picks an anchor by
  weight and draws each item from that style, or, with probability ``taste_noise`` per item,
  from a uniformly drawn style: positives are not all single-style. The generator's own score
  of an outfit for a user (``oracle_log_ratio``) is the log likelihood ratio of this model
  over random mixing: the best ranking any model can reach (the ceiling the FND-CL tables
  print). ``taste_noise`` is fixed by one rule that looks at no compared model: that score's
  per-user AUC on set 630's random-negative test rows (demo scale, seed 0) is about 95
  (``calibrate_taste_noise``).
- Positives per user are split 9:2:2 into train / val / test (FND-CL 4.1.1). Negatives come in
  blocks per positive (the release's convention: negative row r belongs to the user of
  positive row r // ratio), ``nega_ratio`` = (1, 10, 10) per positive for train / val / test:
  FND-CL evaluates at 1:10 positives to negatives per user.
- ``*_nega``: category-wise random mixtures of the split's items, never redrawn (as
  Polyvore-U builds them), so some are outfits the user would like: ``is_false_negative``
  marks those whose likelihood ratio exceeds 1 (likelier under the user's taste than as a
  random mixture). ``false_negative_fraction`` (default 0) can plant extra ones in
  ``tuples_train_nega``: fresh outfits of one of the user's anchor styles (``planted``).
- ``*_nega_hard``: positives of other users in the same split (Fashion-Hash-Net's
  ``_hard_nega``), flagged by the same rule.
- Variable-length sets: a share of outfits (positives and negatives alike) has a second top.
- Cold starters (53, 32): the same styles as the big sets, but ``tuples_train_posi`` keeps
  only 5 outfits per user; ``_oracle/cold_start.parquet`` lists the rows of the 5-shot and the
  1-shot (first of the five) variants. Their val / test keep the 9:2:2 share of the user's
  outfits.

``_oracle/``: ``meta.json`` (version, params, params hash, summary), ``styles.parquet``,
``users.parquet`` (anchors, weights), ``items.parquet`` (style, pool, vector, look),
``positives.parquet`` (style and ``oracle_score`` of each positive row), ``negatives.parquet``
(every negative row: ``oracle_score``, ``is_false_negative``, ``planted``, ``source_row`` of
hard negatives) and
``cold_start.parquet``. Rows are the 0-based data-row index in their file (header excluded),
the same ``row`` the reader returns.

Deterministic: every random stream is ``default_rng(SeedSequence([seed, ...]))``, iteration is
over sorted / fixed tuples, nothing depends on time; the same seed gives the same bytes.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import json
import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from stylehub_ray.data.polyvore import (
    CATEGORIES,
    FIXED_HEADER,
    SPLITS,
    VARIABLE_HEADER,
    image_list_name,
    set_dir_name,
    tuple_file_name,
)

GENERATOR_VERSION = "outfits-2"
ORACLE_DIR = "_oracle"
IMAGES_DIR = "images"
PATTERNS = ("solid", "hstripes", "vstripes", "dots")
# Column order of the internal outfit arrays: user, top, top2 (-1 = none), bottom, shoe.
USER, TOP, TOP2, BOTTOM, SHOE = range(5)


@dataclass(frozen=True)
class SetSpec:
    name: str
    users: int
    posi_per_user: float  # mean positives per user over all splits (before the cold-start cut)
    items_per_category: int
    variable: bool
    cold_start: bool


@dataclass(frozen=True)
class Scale:
    styles: int
    sets: tuple[SetSpec, ...]


def _sets(
    big: tuple[int, int],
    small: tuple[int, int],
    posi: tuple[float, float, float, float],
    items: tuple[int, int, int, int],
) -> tuple[SetSpec, ...]:
    return (
        SetSpec("630", big[0], posi[0], items[0], variable=False, cold_start=False),
        SetSpec("519", big[1], posi[1], items[1], variable=True, cold_start=False),
        SetSpec("53", small[0], posi[2], items[2], variable=False, cold_start=True),
        SetSpec("32", small[1], posi[3], items[3], variable=True, cold_start=True),
    )


SCALES = {
    "tiny": Scale(styles=8, sets=_sets((20, 16), (6, 6), (18, 18, 18, 18), (240, 240, 150, 150))),
    "demo": Scale(
        styles=16, sets=_sets((120, 100), (24, 16), (30, 30, 30, 30), (1500, 1500, 600, 600))
    ),
    # FND-CL Table 1: outfits / users and items / 3 categories of each set.
    "full": Scale(
        styles=32,
        sets=_sets(
            (630, 519),
            (53, 32),
            (162_945 / 630, 106_806 / 519, 13_707 / 53, 6_565 / 32),
            (199_537 // 3, 178_481 // 3, 26_727 // 3, 18_656 // 3),
        ),
    ),
}


TASTE_NOISE = 0.35  # calibrated: see Realism.taste_noise


@dataclass(frozen=True)
class Realism:
    """Shape parameters of the generative model (fixed by the data's description, not by
    model scores)."""

    style_dim: int = 8
    style_noise: float = 0.35  # item vector = normalise(centroid + noise * N(0, I))
    max_anchors: int = 3  # each user has 1..max_anchors styles
    anchor_shape: float = 2.0  # Gamma shape of the anchor weights (normalised)
    posi_sigma: float = 0.35  # lognormal spread of positives per user
    min_posi: int = 13  # 9 + 2 + 2: every split gets at least one outfit
    two_tops_share: float = 0.6  # variable sets: share of outfits with a 2nd top (FHN README)
    # Taste noise: each item of a positive outfit comes, with this probability, from a style
    # drawn uniformly among all K instead of the outfit's anchor style, so positives are not
    # all single-style and a random mixture is sometimes one the user would like. Its value
    # is set by one rule that looks at no compared model: the oracle's per-user AUC on set
    # 630's random-negative test rows (demo scale, seed 0) is about 95; see
    # :func:`calibrate_taste_noise` and BENCHMARKS.md (FND-CL) for the command and its output.
    taste_noise: float = TASTE_NOISE
    split_weights: tuple[int, int, int] = (9, 2, 2)  # FND-CL 4.1.1
    nega_ratio: tuple[int, int, int] = (1, 10, 10)  # negatives per positive: train, val, test
    cold_shots: tuple[int, int] = (1, 5)  # LPAE / FND-CL 4.3: 1 or 5 outfits per cold starter


def params_for(
    scale: str, seed: int, image_size: int, false_negative_fraction: float, images: bool,
    realism: Realism | None = None,
) -> dict:
    """Everything that decides the output bytes; its hash goes into the oracle and manifest."""
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r}: expected one of {sorted(SCALES)}")
    if not 0.0 <= false_negative_fraction < 1.0:
        raise ValueError(f"false_negative_fraction {false_negative_fraction}: expected [0, 1)")
    if image_size < 16:
        raise ValueError(f"image_size {image_size}: expected >= 16 pixels")
    return {
        "generator": "outfits",
        "version": GENERATOR_VERSION,
        "scale": scale,
        "seed": int(seed),
        "image_size": int(image_size),
        "images": bool(images),
        "false_negative_fraction": float(false_negative_fraction),
        "styles": SCALES[scale].styles,
        "sets": [asdict(s) for s in SCALES[scale].sets],
        "realism": asdict(realism or Realism()),
    }


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


# --------------------------------------------------------------------------------------------
# The generator's own scores: the oracle
# --------------------------------------------------------------------------------------------
def outfit_style(outfits: np.ndarray, item_style: dict[str, np.ndarray]) -> np.ndarray:
    """Style shared by every item of each outfit, -1 where the items disagree.

    ``outfits``: (n, 5) user, top, top2 (-1 = none), bottom, shoe; ``item_style``: category ->
    style per item id.
    """
    s_top = item_style["top"][outfits[:, TOP]]
    top2 = outfits[:, TOP2]
    s_top2 = np.where(top2 >= 0, item_style["top"][np.maximum(top2, 0)], s_top)
    s_bottom = item_style["bottom"][outfits[:, BOTTOM]]
    s_shoe = item_style["shoe"][outfits[:, SHOE]]
    same = (s_top == s_top2) & (s_top == s_bottom) & (s_top == s_shoe)
    return np.where(same, s_top, -1)


def style_counts(item_style: dict[str, np.ndarray], item_pool: dict[str, np.ndarray],
                 k: int) -> dict[str, np.ndarray]:
    """category -> (3, K) items per (split pool, style)."""
    return {cat: np.bincount(item_pool[cat] * k + item_style[cat], minlength=3 * k).reshape(3, k)
            for cat in item_style}


def oracle_log_ratio(
    outfits: np.ndarray,
    split_index: int,
    anchors: np.ndarray,
    weights: np.ndarray,
    item_style: dict[str, np.ndarray],
    counts: dict[str, np.ndarray],
    taste_noise: float,
) -> np.ndarray:
    """The generator's own score of (n, 5) outfits of one split for their row users:
    log p_u(o) / p_rand(o), the likelihood of the outfit under the user's positive model over
    that under a random mixture of the split's items (the Bayes-optimal ranking of positives
    against random negatives: the ceiling every model is measured against).

    p_u: an anchor a ~ w_u, then each item independently from style a with probability
    1 - eps, else from a uniform style, uniformly within the (split, category, style) pool;
    p_rand: each item uniformly within the (split, category) pool. With n_c the pool's items
    and n_cz those of style z, one item i of style z_i contributes the ratio
    (1 - eps) [z_i = a] n_c / n_ca + (eps / K) n_c / n_cz_i.
    """
    k = next(iter(counts.values())).shape[1]
    eps = taste_noise
    users = outfits[:, USER]
    log_terms = np.zeros((len(outfits), anchors.shape[1]))
    for col, cat in ((TOP, "top"), (TOP2, "top"), (BOTTOM, "bottom"), (SHOE, "shoe")):
        ids = outfits[:, col]
        present = ids >= 0
        z = item_style[cat][np.maximum(ids, 0)]
        n_cz = counts[cat][split_index]  # (K,)
        n_c = n_cz.sum()
        a = np.maximum(anchors[users], 0)  # (n, m), padding masked by its zero weight
        ratio = ((1 - eps) * (z[:, None] == a) * n_c / np.maximum(n_cz[a], 1)
                 + (eps / k) * n_c / np.maximum(n_cz[z], 1)[:, None])
        log_terms += np.where(present[:, None], np.log(np.maximum(ratio, 1e-300)), 0.0)
    w = weights[users]
    with np.errstate(divide="ignore"):
        logw = np.where(w > 0, np.log(np.maximum(w, 1e-300)), -np.inf)
    x = logw + log_terms
    top = x.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=1, keepdims=True)))[:, 0]


def is_false_negative(log_ratio: np.ndarray) -> np.ndarray:
    """A negative the user's true taste would accept: likelier under the user's positive
    model than as a random mixture (posterior above 1/2 at equal priors)."""
    return log_ratio > 0


# --------------------------------------------------------------------------------------------
# Sampling helpers
# --------------------------------------------------------------------------------------------
class _Pools:
    """Items grouped by an integer key (CSR layout) for vectorised uniform draws per key."""

    def __init__(self, keys: np.ndarray, n_keys: int) -> None:
        self.order = np.argsort(keys, kind="stable")
        self.count = np.bincount(keys, minlength=n_keys)
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]])

    def draw(self, rng: np.random.Generator, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One item per key; also returns its position in the pool (for ``draw_other``)."""
        pos = rng.integers(0, self.count[keys])
        return self.order[self.start[keys] + pos], pos

    def draw_other(
        self, rng: np.random.Generator, keys: np.ndarray, first: np.ndarray
    ) -> np.ndarray:
        """One item per key, different from the item at pool position ``first``."""
        pos = rng.integers(0, self.count[keys] - 1)
        pos = pos + (pos >= first)
        return self.order[self.start[keys] + pos]


def _draw_outfits(
    rng: np.random.Generator,
    pools: dict[str, _Pools],
    users: np.ndarray,
    keys: np.ndarray,
    variable: bool,
    two_tops_share: float,
) -> np.ndarray:
    """(n, 5) outfits: each slot drawn from its category's pool ``keys``: (n,) one key for
    the whole outfit, or (n, 4) one per slot (top, top2, bottom, shoe)."""
    n = len(users)
    if keys.ndim == 1:
        keys = np.repeat(keys[:, None], 4, axis=1)
    out = np.empty((n, 5), dtype=np.int64)
    out[:, USER] = users
    out[:, TOP], pos = pools["top"].draw(rng, keys[:, 0])
    out[:, TOP2] = -1
    if variable:
        same = keys[:, 1] == keys[:, 0]  # never the first top again
        second = np.where(same, pools["top"].draw_other(rng, keys[:, 1], np.where(same, pos, -1)),
                          pools["top"].draw(rng, keys[:, 1])[0])
        out[:, TOP2] = np.where(rng.random(n) < two_tops_share, second, -1)
    out[:, BOTTOM] = pools["bottom"].draw(rng, keys[:, 2])[0]
    out[:, SHOE] = pools["shoe"].draw(rng, keys[:, 3])[0]
    return out


def _noisy_keys(rng: np.random.Generator, style: np.ndarray, split_index: int, k: int,
                noise: float) -> np.ndarray:
    """(n, 4) pool keys of a positive's slots: the outfit's style, each slot replaced by a
    uniform style with probability ``noise`` (the user's taste noise)."""
    n = len(style)
    slot_style = np.repeat(style[:, None], 4, axis=1)
    off = rng.random((n, 4)) < noise
    slot_style = np.where(off, rng.integers(0, k, size=(n, 4)), slot_style)
    return split_index * k + slot_style


def _pick_anchor(
    rng: np.random.Generator, users: np.ndarray, anchors: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """One anchor style per row, by the row user's weights."""
    cum = np.cumsum(weights, axis=1)[users]
    u = rng.random(len(users))
    idx = (u[:, None] >= cum).sum(axis=1)
    n_anchors = (anchors[users] >= 0).sum(axis=1)
    idx = np.minimum(idx, n_anchors - 1)  # float round-off at the last cumulative weight
    return anchors[users, idx]


def _split_counts(n: np.ndarray, weights: tuple[int, int, int]) -> np.ndarray:
    """(users, 3) train / val / test counts in the ratio ``weights``, at least one each."""
    total = sum(weights)
    val = np.maximum(1, np.round(n * weights[1] / total)).astype(np.int64)
    test = np.maximum(1, np.round(n * weights[2] / total)).astype(np.int64)
    return np.stack([n - val - test, val, test], axis=1)


# --------------------------------------------------------------------------------------------
# One set
# --------------------------------------------------------------------------------------------
@dataclass
class _SetData:
    spec: SetSpec
    item_style: dict[str, np.ndarray]
    item_pool: dict[str, np.ndarray]
    item_vector: dict[str, np.ndarray]
    item_jitter: dict[str, np.ndarray]  # (n, 2) hue / value jitter of the image
    anchors: np.ndarray
    weights: np.ndarray
    split_counts: np.ndarray  # (users, 3) positives per split, after the cold-start cut
    files: dict[tuple[str, str], np.ndarray]  # (split, kind) -> (n, 5)
    posi_style: dict[str, np.ndarray]
    posi_score: dict[str, np.ndarray]  # oracle_log_ratio of each positive row
    nega_oracle: dict[tuple[str, str], dict[str, np.ndarray]]
    cold_rows: dict[int, np.ndarray]  # shots -> rows of tuples_train_posi


def _make_items(
    rng: np.random.Generator, n: int, centroids: np.ndarray, realism: Realism
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Style, split pool, vector and image jitter of ``n`` items of one category."""
    k = len(centroids)
    style = rng.permutation(np.arange(n) % k)  # balanced styles, random ids
    noise = rng.standard_normal((n, realism.style_dim))
    vec = centroids[style] + realism.style_noise * noise
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    # Pools: within each style, a random 9:2:2 cut (test first, then val, rest train).
    order = np.lexsort((rng.random(n), style))
    group = np.bincount(style, minlength=k)
    if group.min() < 3:
        raise ValueError(f"{n} items for {k} styles: need >= 3 per style for three split pools")
    start = np.concatenate([[0], np.cumsum(group)[:-1]])
    rank = np.arange(n) - start[style[order]]
    g = group[style[order]]
    w = realism.split_weights
    n_test = np.maximum(1, np.round(g * w[2] / sum(w)))
    n_val = np.maximum(1, np.round(g * w[1] / sum(w)))
    pool_sorted = np.where(rank < n_test, 2, np.where(rank < n_test + n_val, 1, 0))
    pool = np.empty(n, dtype=np.int64)
    pool[order] = pool_sorted
    return style.astype(np.int64), pool, vec.astype(np.float32), noise[:, :2].astype(np.float32)


def _make_set(
    spec: SetSpec,
    centroids: np.ndarray,
    realism: Realism,
    false_negative_fraction: float,
    rng: np.random.Generator,
) -> _SetData:
    k = len(centroids)
    item_style, item_pool, item_vector, item_jitter = {}, {}, {}, {}
    style_pools, split_pools = {}, {}
    for cat in CATEGORIES:
        s, p, v, j = _make_items(rng, spec.items_per_category, centroids, realism)
        item_style[cat], item_pool[cat], item_vector[cat], item_jitter[cat] = s, p, v, j
        style_pools[cat] = _Pools(p * k + s, 3 * k)
        split_pools[cat] = _Pools(p, 3)
    if spec.variable and style_pools["top"].count.min() < 2:
        raise ValueError(f"set {spec.name}: too few tops per style pool for two-top outfits")

    # Users: 1..max_anchors distinct styles with Gamma-normalised weights.
    u = spec.users
    m = realism.max_anchors
    n_anchors = rng.integers(1, m + 1, size=u)
    perm = np.argsort(rng.random((u, k)), axis=1)[:, :m]
    present = np.arange(m)[None, :] < n_anchors[:, None]
    anchors = np.where(present, perm, -1).astype(np.int64)
    raw = rng.gamma(realism.anchor_shape, size=(u, m)) * present
    weights = raw / raw.sum(axis=1, keepdims=True)

    # Positives per user, lognormal around the mean, then split 9:2:2.
    mu = spec.posi_per_user / math.exp(realism.posi_sigma**2 / 2)
    n_posi = np.maximum(
        realism.min_posi, np.round(mu * rng.lognormal(0.0, realism.posi_sigma, size=u))
    ).astype(np.int64)
    counts = _split_counts(n_posi, realism.split_weights)
    if spec.cold_start:
        counts[:, 0] = max(realism.cold_shots)

    n_style = style_counts(item_style, item_pool, k)

    def score(outfits: np.ndarray, si: int) -> np.ndarray:
        return oracle_log_ratio(outfits, si, anchors, weights, item_style, n_style,
                                realism.taste_noise)

    files: dict[tuple[str, str], np.ndarray] = {}
    posi_style: dict[str, np.ndarray] = {}
    posi_score: dict[str, np.ndarray] = {}
    nega_oracle: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for si, split in enumerate(SPLITS):
        users = np.repeat(np.arange(u), counts[:, si])
        style = _pick_anchor(rng, users, anchors, weights)
        keys = _noisy_keys(rng, style, si, k, realism.taste_noise)
        posi = _draw_outfits(rng, style_pools, users, keys, spec.variable,
                             realism.two_tops_share)
        files[(split, "posi")] = posi
        posi_style[split] = style
        posi_score[split] = score(posi, si)

        ratio = realism.nega_ratio[si]
        neg_users = np.repeat(users, ratio)
        # Random negatives as Polyvore-U builds them: category-wise random mixtures of the
        # split's items, never redrawn, so some are outfits the user would like (their flag).
        nega = _draw_outfits(rng, split_pools, neg_users, np.full(len(neg_users), si),
                             spec.variable, realism.two_tops_share)
        planted = np.zeros(len(nega), dtype=bool)
        if split == "train" and false_negative_fraction > 0:
            planted = _plant_false_negatives(
                rng,
                nega,
                posi,
                style_pools,
                anchors,
                weights,
                spec,
                realism,
                false_negative_fraction,
            )
        files[(split, "nega")] = nega
        nega_score = score(nega, si)
        nega_oracle[(split, "nega")] = {
            "user": neg_users,
            "oracle_score": nega_score,
            "is_false_negative": is_false_negative(nega_score),
            "planted": planted,
            "source_row": np.full(len(nega), -1, dtype=np.int64),
        }

        # Hard negatives: positives of another user in the same split.
        src = rng.integers(0, len(posi), size=len(neg_users))
        for _ in range(1000):
            clash = np.flatnonzero(users[src] == neg_users)
            if not len(clash):
                break
            src[clash] = rng.integers(0, len(posi), size=len(clash))
        else:
            raise RuntimeError(f"set {spec.name} {split}: could not draw other users' outfits")
        hard = posi[src].copy()
        hard[:, USER] = neg_users
        files[(split, "nega_hard")] = hard
        hard_score = score(hard, si)
        nega_oracle[(split, "nega_hard")] = {
            "user": neg_users,
            "oracle_score": hard_score,
            "is_false_negative": is_false_negative(hard_score),
            "planted": np.zeros(len(hard), dtype=bool),
            "source_row": src,
        }

    cold_rows: dict[int, np.ndarray] = {}
    if spec.cold_start:
        first = np.concatenate([[0], np.cumsum(counts[:, 0])[:-1]])
        for shots in realism.cold_shots:
            cold_rows[shots] = (first[:, None] + np.arange(shots)[None, :]).ravel()
    return _SetData(
        spec=spec,
        item_style=item_style,
        item_pool=item_pool,
        item_vector=item_vector,
        item_jitter=item_jitter,
        anchors=anchors,
        weights=weights.astype(np.float32),
        split_counts=counts,
        files=files,
        posi_style=posi_style,
        posi_score=posi_score,
        nega_oracle=nega_oracle,
        cold_rows=cold_rows,
    )


def _plant_false_negatives(
    rng: np.random.Generator,
    nega: np.ndarray,
    posi: np.ndarray,
    style_pools: dict[str, _Pools],
    anchors: np.ndarray,
    weights: np.ndarray,
    spec: SetSpec,
    realism: Realism,
    fraction: float,
) -> np.ndarray:
    """Replace exactly round(fraction * n) training negatives, in place, by fresh outfits of
    one of the row user's styles (train pool); returns the planted mask."""
    n = len(nega)
    m = math.floor(fraction * n + 0.5)
    rows = np.sort(rng.choice(n, size=m, replace=False))
    users = nega[rows, USER]
    seen = {tuple(r) for r in posi.tolist()}  # a planted outfit should not copy a positive
    todo = np.arange(m)
    for _ in range(100):
        style = _pick_anchor(rng, users[todo], anchors, weights)
        nega[rows[todo]] = _draw_outfits(
            rng, style_pools, users[todo], style, spec.variable, realism.two_tops_share
        )  # train pool key = 0 * K + style
        todo = np.array(
            [t for t in todo.tolist() if tuple(nega[rows[t]].tolist()) in seen], dtype=np.int64
        )
        if not len(todo):
            break
    planted = np.zeros(n, dtype=bool)
    planted[rows] = True
    return planted


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def _write_tuples(fn: str, rows: np.ndarray, variable: bool) -> None:
    cols = (USER, TOP, TOP2, BOTTOM, SHOE) if variable else (USER, TOP, BOTTOM, SHOE)
    header = VARIABLE_HEADER if variable else FIXED_HEADER
    table = pa.table({f"c{i}": pa.array(rows[:, c], pa.int64()) for i, c in enumerate(cols)})
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
    with open(fn, "wb") as f:
        f.write((header + "\n").encode())
        f.write(buf.getvalue())


def _image_names(phash: str, set_name: str, category: str, n: int) -> list[str]:
    """Hex names like the release's (sha1-looking), unique per dataset, set, category, id."""
    return [
        f"{category}/{hashlib.sha1(f'{phash}/{set_name}/{category}/{i}'.encode()).hexdigest()}.jpg"
        for i in range(n)
    ]


def _style_looks(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue, saturation and pattern per style: neighbouring styles differ in hue and pattern."""
    style = np.arange(k)
    hue = style / k
    saturation = np.where((style // 2) % 2 == 0, 0.85, 0.5)
    pattern = style % len(PATTERNS)
    return hue, saturation, pattern


_SHAPES = {
    # Polygons in unit coordinates: a T-shirt, trousers, a low shoe.
    "top": [
        (0.3, 0.12),
        (0.7, 0.12),
        (0.95, 0.33),
        (0.84, 0.45),
        (0.75, 0.37),
        (0.75, 0.9),
        (0.25, 0.9),
        (0.25, 0.37),
        (0.16, 0.45),
        (0.05, 0.33),
    ],
    "bottom": [
        (0.28, 0.08),
        (0.72, 0.08),
        (0.8, 0.93),
        (0.58, 0.93),
        (0.5, 0.4),
        (0.42, 0.93),
        (0.2, 0.93),
    ],
    "shoe": [(0.08, 0.5), (0.42, 0.5), (0.55, 0.64), (0.9, 0.72), (0.93, 0.84), (0.08, 0.84)],
}


def _masks(size: int) -> dict[str, Image.Image]:
    masks = {}
    for cat, poly in _SHAPES.items():
        m = Image.new("L", (size, size), 0)
        ImageDraw.Draw(m).polygon([(x * size, y * size) for x, y in poly], fill=255)
        masks[cat] = m
    return masks


def _render(size: int, mask: Image.Image, rgb: tuple[int, int, int], pattern: int) -> Image.Image:
    """The item: its shape filled with its colour and its style's pattern on white."""
    layer = Image.new("RGB", (size, size), rgb)
    draw = ImageDraw.Draw(layer)
    dark = tuple(int(c * 0.55) for c in rgb)
    step = max(4, size // 8)
    name = PATTERNS[pattern]
    if name == "hstripes":
        for y in range(0, size, step):
            draw.rectangle([0, y, size, y + step // 2 - 1], fill=dark)
    elif name == "vstripes":
        for x in range(0, size, step):
            draw.rectangle([x, 0, x + step // 2 - 1, size], fill=dark)
    elif name == "dots":
        r = max(1, step // 4)
        for y in range(step // 2, size, step):
            for x in range(step // 2, size, step):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=dark)
    white = Image.new("RGB", (size, size), (255, 255, 255))
    return Image.composite(layer, white, mask)


def _item_colours(
    style: np.ndarray, jitter: np.ndarray, looks: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Hue and value of each item: the style's hue, jittered by the item's own noise."""
    hue, _sat, _pattern = looks
    item_hue = (hue[style] + 0.02 * jitter[:, 0]) % 1.0
    value = np.clip(0.8 + 0.08 * jitter[:, 1], 0.45, 1.0)
    return item_hue, value


def _write_images(
    out: str,
    data: _SetData,
    names: dict[str, list[str]],
    size: int,
    looks: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> int:
    masks = _masks(size)
    _hue, sat, pattern = looks
    written = 0
    for cat in CATEGORIES:
        os.makedirs(os.path.join(out, IMAGES_DIR, cat), exist_ok=True)
        style = data.item_style[cat]
        item_hue, value = _item_colours(style, data.item_jitter[cat], looks)
        for i, name in enumerate(names[cat]):
            r, g, b = colorsys.hsv_to_rgb(float(item_hue[i]), float(sat[style[i]]), float(value[i]))
            rgb = (int(r * 255), int(g * 255), int(b * 255))
            img = _render(size, masks[cat], rgb, int(pattern[style[i]]))
            img.save(os.path.join(out, IMAGES_DIR, name), "JPEG", quality=85)
            written += 1
    return written


def _list_array(values: np.ndarray, dtype: pa.DataType) -> pa.Array:
    """(n, d) -> fixed-size list column."""
    return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel(), dtype), values.shape[1])


def _write_oracle(
    out: str,
    sets: list[_SetData],
    names: dict[str, dict[str, list[str]]],
    centroids: np.ndarray,
    looks: tuple[np.ndarray, np.ndarray, np.ndarray],
    meta: dict,
) -> None:
    odir = os.path.join(out, ORACLE_DIR)
    os.makedirs(odir, exist_ok=True)
    hue, sat, pattern = looks
    k = len(centroids)
    pq.write_table(
        pa.table(
            {
                "style": pa.array(np.arange(k), pa.int32()),
                "hue": pa.array(hue, pa.float32()),
                "saturation": pa.array(sat, pa.float32()),
                "pattern": pa.array([PATTERNS[p] for p in pattern], pa.string()),
                "centroid": _list_array(centroids, pa.float32()),
            }
        ),
        os.path.join(odir, "styles.parquet"),
    )
    users, items, posis, negas, colds = [], [], [], [], []
    for d in sets:
        s = d.spec.name
        n_u = len(d.anchors)
        n_anch = (d.anchors >= 0).sum(axis=1)
        users.append(
            pa.table(
                {
                    "set_name": pa.array([s] * n_u, pa.string()),
                    "user": pa.array(np.arange(n_u), pa.int32()),
                    "cold_start": pa.array(np.full(n_u, d.spec.cold_start)),
                    "n_anchors": pa.array(n_anch, pa.int8()),
                    "anchors": pa.array(
                        [row[:n].tolist() for row, n in zip(d.anchors, n_anch)],
                        pa.list_(pa.int32()),
                    ),
                    "weights": pa.array(
                        [row[:n].tolist() for row, n in zip(d.weights, n_anch)],
                        pa.list_(pa.float32()),
                    ),
                    "n_train_posi": pa.array(d.split_counts[:, 0], pa.int32()),
                    "n_val_posi": pa.array(d.split_counts[:, 1], pa.int32()),
                    "n_test_posi": pa.array(d.split_counts[:, 2], pa.int32()),
                }
            )
        )
        for cat in CATEGORIES:
            n = len(d.item_style[cat])
            item_hue, value = _item_colours(d.item_style[cat], d.item_jitter[cat], looks)
            items.append(
                pa.table(
                    {
                        "set_name": pa.array([s] * n, pa.string()),
                        "category": pa.array([cat] * n, pa.string()),
                        "item_id": pa.array(np.arange(n), pa.int32()),
                        "image": pa.array(names[s][cat], pa.string()),
                        "style": pa.array(d.item_style[cat], pa.int32()),
                        "pool": pa.array([SPLITS[p] for p in d.item_pool[cat]], pa.string()),
                        "hue": pa.array(item_hue, pa.float32()),
                        "value": pa.array(value, pa.float32()),
                        "vector": _list_array(d.item_vector[cat], pa.float32()),
                    }
                )
            )
        for split in SPLITS:
            posi = d.files[(split, "posi")]
            n = len(posi)
            posis.append(
                pa.table(
                    {
                        "set_name": pa.array([s] * n, pa.string()),
                        "split": pa.array([split] * n, pa.string()),
                        "row": pa.array(np.arange(n), pa.int32()),
                        "user": pa.array(posi[:, USER], pa.int32()),
                        "style": pa.array(d.posi_style[split], pa.int32()),
                        "oracle_score": pa.array(d.posi_score[split], pa.float64()),
                    }
                )
            )
            for kind in ("nega", "nega_hard"):
                o = d.nega_oracle[(split, kind)]
                n = len(o["user"])
                negas.append(
                    pa.table(
                        {
                            "set_name": pa.array([s] * n, pa.string()),
                            "split": pa.array([split] * n, pa.string()),
                            "kind": pa.array([kind] * n, pa.string()),
                            "row": pa.array(np.arange(n), pa.int32()),
                            "user": pa.array(o["user"], pa.int32()),
                            "is_false_negative": pa.array(o["is_false_negative"]),
                            "oracle_score": pa.array(o["oracle_score"], pa.float64()),
                            "planted": pa.array(o["planted"]),
                            "source_row": pa.array(o["source_row"], pa.int32()),
                        }
                    )
                )
        for shots in sorted(d.cold_rows):
            rows = d.cold_rows[shots]
            train_users = d.files[("train", "posi")][rows, USER]
            colds.append(
                pa.table(
                    {
                        "set_name": pa.array([s] * len(rows), pa.string()),
                        "user": pa.array(train_users, pa.int32()),
                        "shots": pa.array(np.full(len(rows), shots), pa.int8()),
                        "row": pa.array(rows, pa.int32()),
                    }
                )
            )
    for name, parts in (
        ("users", users),
        ("items", items),
        ("positives", posis),
        ("negatives", negas),
        ("cold_start", colds),
    ):
        pq.write_table(pa.concat_tables(parts), os.path.join(odir, f"{name}.parquet"))
    with open(os.path.join(odir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def _centroids(seed: int, k: int, dim: int) -> np.ndarray:
    rng = _rng(seed, 0)
    centroids = rng.standard_normal((k, dim))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    return centroids.astype(np.float32)


def oracle_metrics(scale: str = "demo", seed: int = 0, realism: Realism | None = None,
                   set_name: str = "630", split: str = "test", kind: str = "nega") -> dict:
    """The oracle's per-user AUC / NDCG (FND-CL's measure, 1:10) on one set's ``split``
    positives against their ``kind`` negatives, built in memory (no files, no images), with
    the share of those negatives flagged false negatives."""
    from stylehub_ray.metrics import per_user_auc_ndcg

    realism = realism or Realism()
    sc = SCALES[scale]
    index = next(i for i, spec in enumerate(sc.sets) if spec.name == set_name)
    data = _make_set(sc.sets[index], _centroids(seed, sc.styles, realism.style_dim), realism,
                     0.0, _rng(seed, 1, index))
    pos, neg = data.files[(split, "posi")], data.nega_oracle[(split, kind)]
    users = np.r_[pos[:, USER], neg["user"]]
    labels = np.r_[np.ones(len(pos), np.int64), np.zeros(len(neg["user"]), np.int64)]
    scores = np.r_[data.posi_score[split], neg["oracle_score"]]
    return per_user_auc_ndcg(users, labels, scores) | {
        "false_negative_share": float(neg["is_false_negative"].mean())}


def calibrate_taste_noise(scale: str = "demo", seed: int = 0, target: float = 0.95,
                          grid: tuple[float, ...] = tuple(np.round(np.arange(0.05, 0.96, 0.05),
                                                                   2))) -> tuple[float, list]:
    """The rule that fixes ``Realism.taste_noise``, looking at no compared model: the grid
    value whose oracle AUC (set 630, random-negative test rows, :func:`oracle_metrics`) is
    closest to ``target``. Returns (value, [(noise, metrics), ...])."""
    rows = [(eps, oracle_metrics(scale, seed, Realism(taste_noise=float(eps))))
            for eps in grid]
    best = min(rows, key=lambda r: abs(r[1]["auc"] - target))[0]
    return float(best), rows


def generate_outfits(
    out: str,
    scale: str = "tiny",
    seed: int = 0,
    image_size: int = 64,
    *,
    false_negative_fraction: float = 0.0,
    images: bool = True,
    realism: Realism | None = None,
) -> dict:
    """Write a synthetic Polyvore-U layout under ``out``; returns its summary (also written to
    ``_oracle/meta.json``): params hash, and per set users, items and rows per file.
    ``false_negative_fraction`` plants that share of extra false negatives among the training
    random negatives (0: only the natural ones of random mixing); ``realism`` replaces the
    default shape parameters (calibration and tests only)."""
    realism = realism or Realism()
    params = params_for(scale, seed, image_size, false_negative_fraction, images, realism)
    phash = params_hash(params)
    meta_path = os.path.join(out, "_oracle", "meta.json")
    if os.path.exists(meta_path):  # the same generation is already there: keep its bytes
        with open(meta_path) as f:
            previous = json.load(f)
        if previous.get("params_hash") == phash:
            return previous.get("summary", previous) | {"skipped": True}
    sc = SCALES[scale]
    centroids = _centroids(seed, sc.styles, realism.style_dim)
    looks = _style_looks(sc.styles)

    os.makedirs(out, exist_ok=True)
    sets: list[_SetData] = []
    names: dict[str, dict[str, list[str]]] = {}
    summary_sets: dict[str, dict] = {}
    n_images = 0
    for index, spec in enumerate(sc.sets):
        # One stream per set, so a set's bytes do not depend on the other sets' sizes.
        data = _make_set(spec, centroids, realism, false_negative_fraction, _rng(seed, 1, index))
        sets.append(data)
        folder = os.path.join(out, set_dir_name(spec.name))
        os.makedirs(folder, exist_ok=True)
        names[spec.name] = {}
        for cat in CATEGORIES:
            listed = _image_names(phash, spec.name, cat, spec.items_per_category)
            names[spec.name][cat] = listed
            with open(os.path.join(folder, image_list_name(cat)), "w") as f:
                f.write("\n".join(listed) + "\n")
        rows = {}
        for (split, kind), arr in sorted(data.files.items()):
            _write_tuples(os.path.join(folder, tuple_file_name(split, kind)), arr, spec.variable)
            rows[f"{split}_{kind}"] = len(arr)
        if images:
            n_images += _write_images(out, data, names[spec.name], image_size, looks)
        summary_sets[spec.name] = {
            "users": spec.users,
            "variable_length": spec.variable,
            "cold_start": spec.cold_start,
            "items": {cat: spec.items_per_category for cat in CATEGORIES},
            "rows": rows,
            "planted_false_negatives": int(data.nega_oracle[("train", "nega")]["planted"].sum()),
            "false_negatives": {
                f"{split}_{kind}": int(data.nega_oracle[(split, kind)]["is_false_negative"].sum())
                for split in SPLITS for kind in ("nega", "nega_hard")},
        }
    summary = {
        "generator": "outfits",
        "version": GENERATOR_VERSION,
        "params_hash": phash,
        "scale": scale,
        "seed": int(seed),
        "images": n_images,
        "sets": summary_sets,
    }
    _write_oracle(
        out,
        sets,
        names,
        centroids,
        looks,
        {"params": params, "params_hash": phash, "summary": summary},
    )
    return summary
