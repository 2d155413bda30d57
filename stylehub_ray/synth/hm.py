"""Synthetic H&M data in the exact Kaggle layout, with planted structure and its ground truth.

Writes ``articles.csv`` (25 columns), ``customers.csv`` (7), ``transactions_train.csv``
(``t_dat,customer_id,article_id,price,sales_channel_id``), ``images/<3 digits>/<id>.jpg`` and
``_oracle/`` (the generative factors). The generative model:

- Styles: K latent looks. Each style has an index group, a mean customer age, a palette of
  colours, a set of patterns, a price level, and weights over real (product type, department)
  pairs. Articles belong to one style; colour variants of a product share its product_code.
- Article popularity over time: a heavy-tailed base (lognormal), a life cycle after launch
  (rise over two weeks, then exponential decay) and a season by product type. Weekly
  popularity ``pop[w, a]`` is the product.
- Customers: a taste over styles that depends on age and drifts slowly from theta0 to theta1
  over the two years (sparse: top-T styles each); a number of purchases with the real median 9
  and mean 23; sessions (same-day baskets); a channel preference; a repeat tendency.
- A purchase row is, in order of precedence: a same-day duplicate of the previous row in the
  basket (the data's way of writing quantity > 1), a repeat of an earlier-day purchase, or a new
  purchase: style z ~ theta_c(t), article ~ pop[w, a] within z.

The oracle (``stylehub_ray.synth.oracle``) answers from the same factors. Parameters are set by
realism against the real slice (bench/realism.py prints both side by side), never by model
scores; their hash goes into the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from stylehub_ray.data.schemas import ARTICLE_COLUMNS, TRANSACTION_COLUMNS

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "hm-1"
START = date(2018, 9, 20)
END = date(2020, 9, 22)
N_DAYS = (END - START).days + 1  # 734
N_WEEKS = (N_DAYS + 6) // 7  # 105
TASTE_TOP = 6  # styles kept per taste vector (sparse, so full scale fits in memory)


@dataclass(frozen=True)
class Scale:
    customers: int
    articles: int
    transactions: int
    styles: int


SCALES = {
    "tiny": Scale(customers=1_000, articles=600, transactions=25_000, styles=8),
    "demo": Scale(customers=20_000, articles=5_000, transactions=500_000, styles=24),
    "full": Scale(customers=1_371_980, articles=105_542, transactions=31_788_324, styles=64),
}


@dataclass(frozen=True)
class Realism:
    """Parameters fixed by comparison with the real slice (see bench/realism.py)."""

    tx_per_customer_median: float = 9.0  # real: median 9, mean 23.2
    tx_per_customer_sigma: float = 1.30  # lognormal sigma giving mean ~ 23 with median 9
    tx_per_customer_max: int = 2_000
    no_purchase_share: float = 0.007  # customers.csv rows with no transaction (full data)
    extra_session_prob: float = 0.25  # sessions = 1 + Binomial(n - 1, p): ~3.6 rows/basket
    quantity_dup_prob: float = 0.13  # same item again in the same basket (identical row)
    repeat_rate_mean: float = 0.02  # share of new rows that rebuy an earlier-day item
    channel2_alpha: float = 1.4  # Beta(a, b) per customer, mean 0.70 (real share 0.71)
    channel2_beta: float = 0.6
    sale_prob: float = 0.22
    basket_dispersion: float = 0.5  # Gamma shape of session weights: many 1-2 item baskets
    popularity_sigma: float = 1.0  # lognormal base popularity: heavy tail
    half_life_days_median: float = 150.0
    season_amplitude: float = 0.9
    taste_concentration: float = 0.6  # Dirichlet alpha per style: few styles per customer
    drift_concentration: float = 8.0  # theta1 ~ Dirichlet(drift * theta0 + noise)
    age_scale: float = 9.0
    missing_image_share: float = 0.004  # real: about 0.4% of articles have no image
    missing_desc_share: float = 0.004
    variants_per_product_mean: float = 2.2  # 105,542 articles / 47,224 product codes


def vocab() -> dict:
    return json.loads((Path(__file__).parent / "hm_vocab.json").read_text())


def params_for(cfg) -> dict:
    """Everything that decides the output bytes; its hash goes into the manifest."""
    base = SCALES[cfg.scale]
    scale = Scale(
        customers=cfg.n_customers or base.customers,
        articles=cfg.n_articles or base.articles,
        transactions=cfg.n_transactions or base.transactions,
        styles=cfg.n_styles or base.styles,
    )
    return {
        "version": GENERATOR_VERSION, "seed": cfg.seed, "scale": cfg.scale, **asdict(scale),
        "realism": asdict(Realism()), "images": cfg.images,
        "image_size": [cfg.image_width, cfg.image_height], "start": str(START), "end": str(END),
    }


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


# --------------------------------------------------------------------------------------------
# Time: daily purchase intensity (weekday x month, shaped like the real slice)
# --------------------------------------------------------------------------------------------
WEEKDAY = np.array([4230, 3887, 4899, 4901, 4685, 4766, 4294], float)  # Mon..Sun, real slice
MONTH = np.array([2381, 2019, 2365, 2775, 3186, 3400, 3382, 2663, 2597, 2509, 2205, 2180], float)


def daily_intensity() -> np.ndarray:
    """Relative purchase intensity of each day (N_DAYS,), mean 1."""
    days = [START + timedelta(days=i) for i in range(N_DAYS)]
    g = np.array([WEEKDAY[d.weekday()] * MONTH[d.month - 1] for d in days])
    return g / g.mean()


# --------------------------------------------------------------------------------------------
# Styles and articles
# --------------------------------------------------------------------------------------------
STYLE_WORDS = [
    "Luna", "Nova", "Sierra", "Bella", "Max", "Oslo", "Rio", "Vera", "Ada", "Milo", "Iris",
    "Juno", "Kai", "Lea", "Noah", "Ora", "Pax", "Remy", "Sol", "Tove", "Uma", "Vik", "Wren",
    "Yara", "Zed", "Alva", "Bo", "Cleo", "Dex", "Elsa", "Finn", "Greta",
]
STYLE_PHRASES = [
    "with a relaxed fit", "with narrow shoulder straps", "with buttons down the front",
    "with a high waist and wide legs", "with ribbed cuffs and hem", "with a wrapover front",
    "with a drawstring waist", "with short puff sleeves", "with a round neckline",
    "with a V-neck and long sleeves", "with a zip at the back", "with side pockets",
    "with an elasticated waist", "with a lined hood", "with frills at the hem",
    "with a collar and dropped shoulders", "with raw-edge hems", "with a press-stud fastening",
    "with a chunky sole", "with adjustable straps", "with a fitted silhouette",
    "with slits in the sides", "with a turn-up hem", "with a soft brushed inside",
]
SEASON_KEYWORDS = {
    "summer": ("Swim", "Bikini", "Shorts", "Sandal", "Flip", "Sunglasses", "Vest top", "Sarong"),
    "winter": ("Coat", "Jacket", "Sweater", "Cardigan", "Boots", "Hat/beanie", "Scarf",
               "Gloves", "Hoodie", "Outdoor"),
}
INDEX_GROUP_AGE = {"Ladieswear": 40.0, "Divided": 25.0, "Menswear": 36.0,
                   "Baby/Children": 32.0, "Sport": 30.0}


def make_styles(params: dict, v: dict, rng: np.random.Generator) -> dict:
    """Latent styles: index group, mean age, price level, palette, patterns, type weights."""
    k = params["styles"]
    depts = v["departments"]
    pairs = np.array(v["type_department_counts"], dtype=np.int64)  # (P, 3) type, dept, count
    dept_group = np.array([d["index_group_name"] for d in depts])
    groups, group_counts = np.unique(dept_group[pairs[:, 1]], return_counts=True)
    w = np.bincount(np.searchsorted(groups, dept_group[pairs[:, 1]]), weights=pairs[:, 2])
    style_group = groups[rng.choice(len(groups), size=k, p=w / w.sum())]
    n_colours, n_graphics = len(v["colours"]), len(v["graphical_appearances"])
    colour_w = np.array([c["count"] for c in v["colours"]], float)
    graphic_w = np.array([g["count"] for g in v["graphical_appearances"]], float)
    pair_w = np.zeros((k, len(pairs)))
    palette = np.zeros((k, n_colours))
    patterns = np.zeros((k, n_graphics))
    for s in range(k):
        in_group = dept_group[pairs[:, 1]] == style_group[s]
        # A style is coherent: most of its articles come from a few departments of its group.
        base = pairs[:, 2] * np.where(in_group, 1.0, 0.02)
        pair_w[s] = rng.dirichlet(0.3 * np.ones(len(pairs))) * base + 1e-12
        palette[s] = rng.dirichlet(0.25 * np.ones(n_colours)) * colour_w + 1e-12
        patterns[s] = rng.dirichlet(0.25 * np.ones(n_graphics)) * graphic_w + 1e-12
    return {
        "group": style_group,
        "age": np.array([INDEX_GROUP_AGE.get(g, 33.0) for g in style_group])
        + rng.normal(0, 4, k),
        "price_level": rng.normal(0.0, 0.2, k),
        "weight": rng.dirichlet(2.0 * np.ones(k)),
        "pair_w": pair_w / pair_w.sum(1, keepdims=True),
        "palette": palette / palette.sum(1, keepdims=True),
        "patterns": patterns / patterns.sum(1, keepdims=True),
        "word": [STYLE_WORDS[s % len(STYLE_WORDS)] for s in range(k)],
        "phrases": rng.integers(0, len(STYLE_PHRASES), size=(k, 3)),
    }


def make_articles(params: dict, v: dict, styles: dict, rng: np.random.Generator) -> dict:
    """Articles as colour variants of products; returns column arrays plus latent factors."""
    real = Realism()
    n = params["articles"]
    n_products = max(1, int(round(n / real.variants_per_product_mean)))
    # Variants per product: 1 + Poisson, then trimmed or extended to hit n exactly.
    variants = 1 + rng.poisson(real.variants_per_product_mean - 1, n_products)
    while variants.sum() != n:
        diff = n - variants.sum()
        idx = rng.integers(0, n_products, abs(diff))
        np.add.at(variants, idx, np.sign(diff))
        variants = np.maximum(variants, 1)  # a product keeps at least one variant
    codes = np.sort(rng.choice(np.arange(108_775, 960_000), n_products, replace=False))
    p_style = rng.choice(params["styles"], size=n_products, p=styles["weight"])
    pairs = np.array(v["type_department_counts"], dtype=np.int64)
    p_pair = np.array([rng.choice(len(pairs), p=styles["pair_w"][s]) for s in p_style])
    p_graphic = np.array([rng.choice(styles["patterns"].shape[1], p=styles["patterns"][s])
                          for s in p_style])
    product = np.repeat(np.arange(n_products), variants)
    style = p_style[product]
    # Each variant a colour from the style's palette; variant numbers like the real ids (001..).
    colour = np.array([rng.choice(styles["palette"].shape[1], p=styles["palette"][s])
                       for s in style])
    # Variant suffixes increase within a product with small gaps, like 0108775015 / ..044.
    first = np.r_[0, np.cumsum(variants)[:-1]]
    variant_no = np.arange(n) - np.repeat(first, variants)
    suffix = 1 + variant_no * 3 + rng.integers(0, 3, n)
    article_id = codes[product].astype(np.int64) * 1000 + suffix
    type_idx, dept_idx = pairs[p_pair[product], 0], pairs[p_pair[product], 1]
    types = v["product_types"]
    log_price = (np.array([types[t]["log_price_mean"] for t in type_idx])
                 + styles["price_level"][style]
                 + rng.normal(0, 0.6, n) * np.array([types[t]["log_price_std"] for t in type_idx]))
    # Popularity: heavy-tailed base, launch, decay, season by product type.
    base_pop = rng.lognormal(0.0, real.popularity_sigma, n_products)[product] * rng.lognormal(
        0, 0.3, n)
    launch = rng.integers(-240, N_DAYS - 10, n_products)[product]
    half_life = real.half_life_days_median * rng.lognormal(0, 0.6, n_products)[product]
    season_peak = np.zeros(n)  # day of year of the peak; amplitude 0 = no season
    season_amp = np.zeros(n)
    for i, t in enumerate(type_idx):
        name = types[t]["product_type_name"]
        if any(kw in name for kw in SEASON_KEYWORDS["summer"]):
            season_peak[i], season_amp[i] = 180.0, real.season_amplitude
        elif any(kw in name for kw in SEASON_KEYWORDS["winter"]):
            season_peak[i], season_amp[i] = 0.0, real.season_amplitude
    return {
        "article_id": article_id, "product_code": codes[product], "product": product,
        "style": style.astype(np.int16), "type_idx": type_idx, "dept_idx": dept_idx,
        "colour_idx": colour, "graphic_idx": p_graphic[product],
        "base_price": np.exp(log_price), "base_pop": base_pop, "launch": launch,
        "half_life": half_life, "season_peak": season_peak, "season_amp": season_amp,
        "has_image": rng.random(n) >= real.missing_image_share,
        "has_desc": rng.random(n) >= real.missing_desc_share,
    }


def weekly_popularity(art: dict) -> np.ndarray:
    """pop[w, a] (N_WEEKS, n_articles), float32: base x life cycle x season, mid-week."""
    mid = np.arange(N_WEEKS) * 7 + 3.0
    age = mid[:, None] - art["launch"][None, :]
    life = np.where(age < 0, 0.0, np.minimum(1.0, (age + 1) / 14.0)
                    * np.exp(-np.maximum(age - 14, 0) * math.log(2) / art["half_life"][None, :]))
    doy = np.array([(START + timedelta(days=int(d))).timetuple().tm_yday for d in mid])
    season = np.exp(art["season_amp"][None, :]
                    * np.cos(2 * math.pi * (doy[:, None] - art["season_peak"][None, :]) / 365.0))
    pop = art["base_pop"][None, :] * life * season
    # A small floor keeps every launched article buyable (old stock still sells a little).
    return (pop + 1e-4 * art["base_pop"][None, :] * (age >= 0)).astype(np.float32)


def style_cdf(pop: np.ndarray, style: np.ndarray, n_styles: int) -> tuple[np.ndarray, np.ndarray]:
    """Per week, a cumulative table over articles sorted by style: value = style + within-style
    cumulative share. Sampling an article of style z at week w is one searchsorted of z + u.
    Returns (order, cdf[w, :]) where order maps sorted positions to article indices."""
    order = np.argsort(style, kind="stable")
    s_sorted = style[order].astype(np.int64)
    p = pop[:, order].astype(np.float64)
    totals = np.zeros((pop.shape[0], n_styles))
    for z in range(n_styles):
        totals[:, z] = p[:, s_sorted == z].sum(1)
    totals[totals == 0] = 1.0
    share = p / totals[:, s_sorted]
    cdf = np.zeros_like(share)
    for z in range(n_styles):
        cols = np.flatnonzero(s_sorted == z)
        if len(cols):
            cdf[:, cols] = z + np.cumsum(share[:, cols], axis=1)
    return order, cdf


# --------------------------------------------------------------------------------------------
# Customers
# --------------------------------------------------------------------------------------------
def sparse_top(theta: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep each row's top styles, renormalised: (idx int16, weight float32)."""
    top = min(top, theta.shape[1])
    idx = np.argpartition(-theta, top - 1, axis=1)[:, :top]
    w = np.take_along_axis(theta, idx, 1)
    w = w / w.sum(1, keepdims=True)
    return idx.astype(np.int16), w.astype(np.float32)


def make_customers(params: dict, styles: dict, rng: np.random.Generator) -> dict:
    real = Realism()
    n, k = params["customers"], params["styles"]
    # Ages: the real slice is bimodal (students and young adults; a second group around 50).
    young = rng.random(n) < 0.56
    age = np.where(young, rng.normal(25, 3.5, n), rng.normal(49, 9.5, n)).clip(16, 95).round()
    age_missing = rng.random(n) < 0.009
    # Taste: Dirichlet around style weight x age affinity; drifts to theta1 by the end.
    affinity = styles["weight"][None, :] * np.exp(
        -0.5 * ((age[:, None] - styles["age"][None, :]) / real.age_scale) ** 2) + 1e-6
    affinity /= affinity.sum(1, keepdims=True)
    theta0 = _dirichlet_rows(rng, real.taste_concentration * k * affinity)
    theta1 = _dirichlet_rows(rng, real.drift_concentration * theta0 + 0.05 * affinity)
    t0i, t0w = sparse_top(theta0, TASTE_TOP)
    t1i, t1w = sparse_top(theta1, TASTE_TOP)
    # Purchases per customer: lognormal (median 9, mean ~23), scaled to hit the exact total.
    counts = np.floor(rng.lognormal(math.log(real.tx_per_customer_median),
                                    real.tx_per_customer_sigma, n))
    counts = counts.clip(1, real.tx_per_customer_max)
    counts[rng.random(n) < real.no_purchase_share] = 0
    counts = _exact_total(counts, params["transactions"], rng)
    # Active window: most stay until the end; some churn; starts spread over the period.
    start = (rng.beta(0.9, 1.6, n) * (N_DAYS - 1)).astype(np.int32)
    churn = rng.random(n) < 0.25
    end = np.where(churn, start + (rng.random(n) * (N_DAYS - start)).astype(np.int32),
                   N_DAYS - 1)
    ids = np.array([hashlib.sha256(f"hm:{params['seed']}:c{i}".encode()).hexdigest()
                    for i in range(n)])
    n_postal = max(1, n // 3)
    postal_codes = np.array([hashlib.sha256(f"hm:{params['seed']}:p{i}".encode()).hexdigest()
                             for i in range(n_postal)])
    postal = postal_codes[np.minimum(rng.zipf(1.6, n) - 1, n_postal - 1)]
    fn = rng.random(n) < 0.34
    active = fn & (rng.random(n) < 0.95)
    club = rng.choice(["ACTIVE", "PRE-CREATE", "LEFT CLUB", ""], n, p=[0.918, 0.07, 0.004, 0.008])
    news = rng.choice(["NONE", "Regularly", "Monthly", ""], n, p=[0.66, 0.33, 0.002, 0.008])
    return {
        "customer_id": ids, "age": age, "age_missing": age_missing, "postal_code": postal,
        "FN": fn, "Active": active, "club_member_status": club, "fashion_news_frequency": news,
        "taste0_idx": t0i, "taste0_w": t0w, "taste1_idx": t1i, "taste1_w": t1w,
        "n_transactions": counts.astype(np.int64), "window_start": start,
        "window_end": end.astype(np.int32),
        "p_channel2": rng.beta(real.channel2_alpha, real.channel2_beta, n).astype(np.float32),
        "repeat_rate": rng.beta(1.0, 1.0 / real.repeat_rate_mean - 1.0, n).astype(np.float32),
    }


def _dirichlet_rows(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    g = rng.standard_gamma(alpha)
    g += 1e-12
    return g / g.sum(1, keepdims=True)


def _exact_total(counts: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Rescale integer counts so they sum to ``total`` exactly, keeping zeros at zero."""
    counts = np.floor(counts * total / max(counts.sum(), 1))
    diff = int(total - counts.sum())
    buyers = np.flatnonzero(counts > 0)
    if diff > 0:
        np.add.at(counts, rng.choice(buyers, diff, p=counts[buyers] / counts[buyers].sum()), 1)
    while diff < 0:
        take = rng.choice(np.flatnonzero(counts > 1), -diff)
        np.add.at(counts, take, -1)
        counts = np.maximum(counts, 1)
        diff = int(total - counts.sum())
    return counts


def taste_at(taste: dict, rows: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """theta_c(t) = (1 - t/T) theta0 + (t/T) theta1 as a sparse (idx, w) over 2*TASTE_TOP."""
    lam = (day / (N_DAYS - 1)).astype(np.float32)[:, None]
    idx = np.concatenate([taste["taste0_idx"][rows], taste["taste1_idx"][rows]], 1)
    w = np.concatenate([(1 - lam) * taste["taste0_w"][rows], lam * taste["taste1_w"][rows]], 1)
    return idx, w


# --------------------------------------------------------------------------------------------
# Transactions for a block of customers (a Ray task at scale)
# --------------------------------------------------------------------------------------------
def simulate_block(seed: int, block: int, cust: dict, shared: dict) -> dict:
    """Purchase rows of one block of customers: (day, customer, article, price, channel)."""
    real = Realism()
    rng = _rng(seed, 1000, block)
    n_c = cust["n_transactions"]
    m = len(n_c)
    # Sessions: 1 + Binomial(n - 1, p) per buying customer.
    sessions = np.where(n_c > 0, 1 + rng.binomial(np.maximum(n_c - 1, 0),
                                                  real.extra_session_prob), 0)
    sessions = np.minimum(sessions, n_c)
    s_cust = np.repeat(np.arange(m), sessions)
    # Session days from the global intensity restricted to the customer's window, sorted.
    G = shared["cum_intensity"]
    lo, hi = G[cust["window_start"][s_cust]], G[cust["window_end"][s_cust] + 1]
    s_day = np.searchsorted(G, lo + rng.random(len(s_cust)) * (hi - lo), side="right") - 1
    s_day = np.clip(s_day, cust["window_start"][s_cust], cust["window_end"][s_cust])
    order = np.lexsort((s_day, s_cust))
    s_cust, s_day = s_cust[order], s_day[order]
    # Rows per session: one each, the rest spread over the customer's sessions in proportion
    # to Gamma weights, which gives the real mix of many small and a few large baskets.
    s_first = np.r_[0, np.cumsum(sessions)[:-1]]
    extra = n_c - sessions
    e_cust = np.repeat(np.arange(m), extra)
    s_w = rng.gamma(real.basket_dispersion, 1.0, len(s_cust)) + 1e-9
    s_tot = np.add.reduceat(s_w, s_first[sessions > 0]) if len(s_cust) else s_w
    tot = np.zeros(m)
    tot[sessions > 0] = s_tot
    # cdf value = customer's local session index + 1 - remaining share; search within the
    # customer by offsetting targets by the customer's first session position.
    cum = np.cumsum(s_w) - np.repeat(np.r_[0, np.cumsum(s_w)][s_first], sessions)
    key = s_cust.astype(np.float64) * 2 + cum / tot[s_cust]  # strictly increasing per customer
    e_target = e_cust * 2.0 + rng.random(len(e_cust)) * (1 - 1e-12)
    e_sess = np.searchsorted(key, e_target, side="left")
    per_session = 1 + np.bincount(e_sess, minlength=len(s_cust))
    r_sess = np.repeat(np.arange(len(s_cust)), per_session)
    r_cust, r_day = s_cust[r_sess], s_day[r_sess].astype(np.int32)
    n_rows = len(r_sess)
    # New purchases for every row (overwritten below for duplicates and repeats).
    idx, w = taste_at(shared["taste"], cust["taste_rows"][r_cust], r_day)
    cw = np.cumsum(w, 1)
    pick = (rng.random(n_rows)[:, None] * cw[:, -1:] > cw).sum(1)
    z = idx[np.arange(n_rows), np.minimum(pick, idx.shape[1] - 1)].astype(np.float64)
    week = r_day // 7
    target = z + rng.random(n_rows) * (1 - 1e-9)
    pos = np.empty(n_rows, np.int64)
    cdf, order_a = shared["cdf"], shared["order"]
    for wk in np.unique(week):
        sel = np.flatnonzero(week == wk)
        pos[sel] = np.searchsorted(cdf[wk], target[sel], side="right")
    article = order_a[np.minimum(pos, len(order_a) - 1)]
    # Which rows copy another: same-basket duplicates first, then earlier-day repeats.
    sess_start = np.r_[0, np.cumsum(per_session)[:-1]]
    in_session = np.arange(n_rows) - np.repeat(sess_start, per_session)
    src = np.arange(n_rows)
    dup = (in_session > 0) & (rng.random(n_rows) < real.quantity_dup_prob)
    src[dup] = np.flatnonzero(dup) - 1
    c_first_row = np.r_[0, np.cumsum(n_c)[:-1]]
    prior = sess_start[r_sess] - c_first_row[r_cust]  # this customer's rows on earlier days
    rep = (~dup) & (prior > 0) & (rng.random(n_rows) < cust["repeat_rate"][r_cust])
    src[rep] = c_first_row[r_cust[rep]] + (rng.random(rep.sum()) * prior[rep]).astype(np.int64)
    while True:  # resolve chains (a duplicate of a repeat of ...) by pointer jumping
        nxt = src[src]
        if np.array_equal(nxt, src):
            break
        src = nxt
    article = article[src]
    # Prices: the article's price, sometimes on sale, on the real grid of 'xx.99' / 59000.
    on_sale = rng.random(n_rows) < real.sale_prob
    # The per-type price moments come from real transactions, sales included: lift the list
    # price so that the mix of full and sale prices lands on them.
    price = shared["base_price"][article] * np.where(on_sale, rng.uniform(0.6, 0.9, n_rows), 1.08)
    cents = np.maximum(1, np.round(price * 590.0)) * 100 - 1
    channel = np.where(rng.random(n_rows) < cust["p_channel2"][r_cust], 2, 1).astype(np.int8)
    channel[dup] = channel[np.flatnonzero(dup) - 1]
    price_out = cents / 59000.0
    price_out[dup] = price_out[np.flatnonzero(dup) - 1]
    return {
        "day": r_day.astype(np.int16), "customer": cust["global_row"][r_cust].astype(np.int32),
        "article": article.astype(np.int32), "price": price_out, "channel": channel,
    }


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------
def articles_table(art: dict, styles: dict, v: dict) -> pa.Table:
    types, depts = v["product_types"], v["departments"]
    colours, graphics = v["colours"], v["graphical_appearances"]
    t = [types[i] for i in art["type_idx"]]
    d = [depts[i] for i in art["dept_idx"]]
    c = [colours[i] for i in art["colour_idx"]]
    g = [graphics[i] for i in art["graphic_idx"]]
    style = art["style"]
    names = [f"{styles['word'][s]} {ti['product_type_name'].lower()}" for s, ti in zip(style, t)]
    # detail_desc describes the product (colour variants share it, as in the real data), so
    # text similarity follows product type, pattern, material and style.
    descs = []
    for i in range(len(t)):
        if not art["has_desc"][i]:
            descs.append(None)
            continue
        pattern = g[i]["graphical_appearance_name"].lower()
        kind = t[i]["product_type_name"]
        head = kind if pattern in ("solid", "unknown") else f"{pattern} {kind.lower()}"
        phrase = STYLE_PHRASES[styles["phrases"][style[i], art["product"][i] % 3]]
        descs.append(f"{head[0].upper()}{head[1:]} in {d[i]['garment_group_name'].lower()} "
                     f"{phrase}. {styles['word'][style[i]]} collection, "
                     f"{d[i]['section_name'].lower()}.")
    cols = {
        "article_id": [f"{a:010d}" for a in art["article_id"]],
        "product_code": [f"{p:07d}" for p in art["product_code"]],
        "prod_name": names,
        "product_type_no": [x["product_type_no"] for x in t],
        "product_type_name": [x["product_type_name"] for x in t],
        "product_group_name": [x["product_group_name"] for x in t],
        "graphical_appearance_no": [x["graphical_appearance_no"] for x in g],
        "graphical_appearance_name": [x["graphical_appearance_name"] for x in g],
        "colour_group_code": [x["colour_group_code"] for x in c],
        "colour_group_name": [x["colour_group_name"] for x in c],
        "perceived_colour_value_id": [x["perceived_colour_value_id"] for x in c],
        "perceived_colour_value_name": [x["perceived_colour_value_name"] for x in c],
        "perceived_colour_master_id": [x["perceived_colour_master_id"] for x in c],
        "perceived_colour_master_name": [x["perceived_colour_master_name"] for x in c],
        **{k: [x[k] for x in d] for k in ARTICLE_COLUMNS[14:24]},
        "detail_desc": descs,
    }
    return pa.table({k: pa.array(cols[k]) for k in ARTICLE_COLUMNS})


def customers_table(cu: dict) -> pa.Table:
    n = len(cu["customer_id"])

    def opt(mask: np.ndarray, values) -> pa.Array:
        return pa.array([v if m else None for v, m in zip(values, mask)])

    return pa.table({
        "customer_id": pa.array(cu["customer_id"]),
        "FN": opt(cu["FN"], np.ones(n)),
        "Active": opt(cu["Active"], np.ones(n)),
        "club_member_status": opt(cu["club_member_status"] != "", cu["club_member_status"]),
        "fashion_news_frequency": opt(cu["fashion_news_frequency"] != "",
                                      cu["fashion_news_frequency"]),
        "age": opt(~cu["age_missing"], cu["age"]),
        "postal_code": pa.array(cu["postal_code"]),
    })


def write_csv(table: pa.Table, path: str) -> None:
    """CSV the way the Kaggle files are written (pandas' writer): quotes only around values that
    hold a comma or a quote, floats as ``1.0``, blanks for missing values."""
    table.to_pandas().to_csv(path, index=False)


# --------------------------------------------------------------------------------------------
# The whole generator
# --------------------------------------------------------------------------------------------
def generate_hm(out: str, cfg, force: bool = False) -> dict:
    """Write the H&M layout and ``_oracle/`` under ``out``; returns a summary.

    Skips when ``out`` already holds a complete generation with the same parameters.
    Transactions are simulated in blocks of customers (Ray tasks when there is more than one
    block) and images are rendered in Ray tasks; every block has its own seed stream, so the
    bytes do not depend on how many workers ran them.
    """
    import time

    params = params_for(cfg)
    phash = params_hash(params)
    root = Path(out)
    done = root / "_oracle" / "_SUCCESS"
    if done.exists() and not force:
        prev = json.loads((root / "_oracle" / "generator.json").read_text())
        if prev.get("params_hash") == phash:
            logger.info(f"generate hm: {out} already holds this generation ({phash}); skipped")
            return prev["summary"] | {"skipped": True}
    done.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    v = vocab()
    seed = params["seed"]
    styles = make_styles(params, v, _rng(seed, 1))
    art = make_articles(params, v, styles, _rng(seed, 2))
    cu = make_customers(params, styles, _rng(seed, 3))
    pop = weekly_popularity(art)
    order, cdf = style_cdf(pop, art["style"], params["styles"])
    timings["factors_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    rows = _simulate_all(params, cfg, cu, art, order, cdf)
    timings["simulate_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    write_csv(articles_table(art, styles, v), str(root / "articles.csv"))
    write_csv(customers_table(cu), str(root / "customers.csv"))
    n_tx = _write_transactions(root / "transactions_train.csv", rows, cu, art)
    timings["write_csv_s"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    n_images = _write_images(root, cfg, art, v) if cfg.images else 0
    timings["images_s"] = time.perf_counter() - t3

    _write_oracle(root / "_oracle", params, phash, styles, art, cu, pop)
    summary = {
        "articles": len(art["article_id"]), "customers": len(cu["customer_id"]),
        "transactions": n_tx, "images": n_images,
        "articles_without_image": int((~art["has_image"]).sum()),
        "timings": {k: round(x, 2) for k, x in timings.items()},
        "total_s": round(time.perf_counter() - t0, 2),
    }
    meta = {"version": GENERATOR_VERSION, "params": params, "params_hash": phash,
            "summary": summary}
    (root / "_oracle" / "generator.json").write_text(json.dumps(meta, indent=2) + "\n")
    done.write_text(phash + "\n")  # last: a crash before this leaves no complete generation
    return summary


def _customer_blocks(n: int, per_task: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + per_task)) for s in range(0, n, per_task)]


def _simulate_all(params, cfg, cu, art, order, cdf) -> dict:
    taste = {k: cu[k] for k in ("taste0_idx", "taste0_w", "taste1_idx", "taste1_w")}
    shared = {"cum_intensity": np.r_[0.0, np.cumsum(daily_intensity())], "cdf": cdf,
              "order": order, "base_price": art["base_price"], "taste": taste}
    blocks = _customer_blocks(len(cu["customer_id"]), cfg.customers_per_task)

    def block_args(b: int, lo: int, hi: int) -> dict:
        keys = ("n_transactions", "window_start", "window_end", "p_channel2", "repeat_rate")
        c = {k: cu[k][lo:hi] for k in keys}
        c["global_row"] = np.arange(lo, hi)
        c["taste_rows"] = np.arange(lo, hi)
        return c

    if len(blocks) == 1:
        parts = [simulate_block(params["seed"], 0, block_args(0, *blocks[0]), shared)]
    else:
        import ray

        from stylehub_ray.ray_utils import ensure_ray

        ensure_ray()
        shared_ref = ray.put(shared)
        task = ray.remote(simulate_block)
        parts = ray.get([task.remote(params["seed"], b, block_args(b, lo, hi), shared_ref)
                         for b, (lo, hi) in enumerate(blocks)])
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _write_transactions(path: Path, rows: dict, cu: dict, art: dict,
                        chunk: int = 2_000_000) -> int:
    """Sorted by date like the Kaggle file; written in chunks so memory stays bounded."""
    order = np.lexsort((rows["article"], rows["customer"], rows["day"]))
    dates = np.array([str(START + timedelta(days=i)) for i in range(N_DAYS)])
    art_ids = pa.array([f"{a:010d}" for a in art["article_id"]])
    cust_ids = pa.array(cu["customer_id"])
    date_arr = pa.array(dates)
    # No value here can hold a comma or a quote, so nothing is quoted, as in the Kaggle file.
    opts = pacsv.WriteOptions(include_header=False, quoting_style="none")
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "wb") as sink, pacsv.CSVWriter(sink, pa.schema([
        ("t_dat", pa.string()), ("customer_id", pa.string()), ("article_id", pa.string()),
        ("price", pa.float64()), ("sales_channel_id", pa.int8()),
    ]), write_options=opts) as writer:
        sink.write((",".join(TRANSACTION_COLUMNS) + "\n").encode())
        for s in range(0, len(order), chunk):
            sel = order[s:s + chunk]
            writer.write_table(pa.table({
                "t_dat": date_arr.take(pa.array(rows["day"][sel].astype(np.int32))),
                "customer_id": cust_ids.take(pa.array(rows["customer"][sel])),
                "article_id": art_ids.take(pa.array(rows["article"][sel])),
                "price": pa.array(rows["price"][sel]),
                "sales_channel_id": pa.array(rows["channel"][sel]),
            }))
    os.replace(tmp, path)
    return len(order)


def render_block(root: str, items: list[tuple[str, str, str, str, str]],
                 size: tuple[int, int], seed: int) -> int:
    """Render and write one block of article images; returns how many were written."""
    from stylehub_ray.synth.render import render_to_jpeg

    for article_id, group, kind, colour, graphic in items:
        folder = Path(root) / "images" / article_id[:3]
        folder.mkdir(parents=True, exist_ok=True)
        data = render_to_jpeg(group, kind, colour, graphic, size=size,
                              seed=(seed * 1_000_003 + int(article_id)) % (2**32))
        (folder / f"{article_id}.jpg").write_bytes(data)
    return len(items)


def _write_images(root: Path, cfg, art: dict, v: dict) -> int:
    types, colours, graphics = v["product_types"], v["colours"], v["graphical_appearances"]
    items = [
        (f"{a:010d}", types[t]["product_group_name"], types[t]["product_type_name"],
         colours[c]["colour_group_name"], graphics[g]["graphical_appearance_name"])
        for a, t, c, g, has in zip(art["article_id"], art["type_idx"], art["colour_idx"],
                                   art["graphic_idx"], art["has_image"]) if has
    ]
    size = (cfg.image_width, cfg.image_height)
    blocks = [items[i:i + cfg.images_per_task] for i in range(0, len(items), cfg.images_per_task)]
    if len(blocks) <= 1:
        return sum(render_block(str(root), b, size, cfg.seed) for b in blocks)
    import ray

    from stylehub_ray.ray_utils import ensure_ray, gather

    ensure_ray()
    task = ray.remote(render_block)
    return sum(gather([task.remote(str(root), b, size, cfg.seed) for b in blocks],
                      "render photos", unit="blocks"))


def _write_oracle(folder: Path, params, phash, styles, art, cu, pop) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "style": np.arange(params["styles"], dtype=np.int16),
        "index_group_name": styles["group"], "mean_age": styles["age"],
        "price_level": styles["price_level"], "weight": styles["weight"],
    }), folder / "styles.parquet")
    pq.write_table(pa.table({
        "article_id": art["article_id"], "product_code": art["product_code"],
        "style": art["style"], "base_price": art["base_price"], "base_pop": art["base_pop"],
        "launch_day": art["launch"], "half_life_days": art["half_life"],
        "season_peak_doy": art["season_peak"], "season_amplitude": art["season_amp"],
        "has_image": art["has_image"],
    }), folder / "articles.parquet")

    def lists(idx: np.ndarray, w: np.ndarray) -> tuple[pa.Array, pa.Array]:
        k = idx.shape[1]
        return (pa.FixedSizeListArray.from_arrays(pa.array(idx.ravel()), k),
                pa.FixedSizeListArray.from_arrays(pa.array(w.ravel()), k))

    t0i, t0w = lists(cu["taste0_idx"], cu["taste0_w"])
    t1i, t1w = lists(cu["taste1_idx"], cu["taste1_w"])
    pq.write_table(pa.table({
        "customer_id": cu["customer_id"], "taste0_idx": t0i, "taste0_w": t0w,
        "taste1_idx": t1i, "taste1_w": t1w, "n_transactions": cu["n_transactions"],
        "window_start": cu["window_start"], "window_end": cu["window_end"],
        "p_channel2": cu["p_channel2"], "repeat_rate": cu["repeat_rate"],
    }), folder / "customers.parquet")
    np.save(folder / "popularity.npy", pop)  # (N_WEEKS, n_articles) float32, column = article
    np.save(folder / "daily_intensity.npy", daily_intensity())
