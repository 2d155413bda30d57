"""`stylehub evaluate contrastive`: the contrastive item model against its test pairs, its
neighbours' attributes and behaviour; plus the SimCLR image encoders.

For each trained variant (``models/contrastive/<variant>``), on the test split of its own pair
source, beside the same measures on its untrained input vectors:

- the paper's measure (4.6): the mean cosine distance (1 - cosine similarity) of the positive
  and of the negative test pairs, and their difference (``separation``); the paper reports
  0.2286 / 0.5849 for the text approach and distances collapsing toward 1 for transactions
  (4.2.3);
- ranking: for each test anchor, its positives' ranks among all items (``recall@5``,
  ``recall@20``, ``mrr``; MRR over the first ``mrr_depth`` ranks, a reciprocal rank beyond
  them counts 0), through :mod:`stylehub_ray.metrics`;
- neighbour agreement: the share of each item's ``neighbours`` nearest items that share its
  ``product_type_name``, ``colour_group_name`` and both, beside chance (the share two random
  items share it);
- behaviour (DESIGN: judge by it, the paper's measure is circular for kNN pairs): co-purchase
  neighbour recall@k, the share of ordered pairs (a, b) of different items bought by one
  customer in the test period where b is among a's k nearest items.

Plots next to ``metrics.json`` under ``eval/contrastive/<variant>/``: ``loss.png``,
``distances.png``, ``map.png`` (PCA or t-SNE of item embeddings by product group).

For each SimCLR image encoder (``models/simclr_images/<variant>``): neighbour agreement of the
pooled backbone features of the catalog photos, SimCLR against the encoder it started from (the
ImageNet-pretrained one, or random init for SimCLR from scratch), in
``eval/simclr_images/<variant>/metrics.json``.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stylehub_ray import plots
from stylehub_ray.embed.pair_measures import knn, pair_measures, unit_rows
from stylehub_ray.run import Run

logger = logging.getLogger(__name__)

EVAL = "eval/contrastive"
EVAL_SIMCLR = "eval/simclr_images"
AGREEMENT_COLUMNS = ("product_type_name", "colour_group_name")
MAP_COLUMN = "product_group_name"
# The paper's 4.6 (text approach, 50 epochs) and 4.2.3 (transactions: both distances ~1).
PAPER = {"text": {"pos_dist": 0.2286, "neg_dist": 0.5849, "separation": 0.5849 - 0.2286}}
PAPER_NOTE = {"transactions": "paper 4.2.3: positive and negative distances both approach 1"}


@dataclass
class EvaluateContrastiveConfig:
    """`stylehub evaluate contrastive`."""

    variants: tuple[str, ...] = ()  # (): every trained variant
    ks: tuple[int, ...] = (5, 20)
    mrr_depth: int = 100
    max_anchors: int = 5000  # test anchors ranked (seeded sample when more)
    neighbours: int = 10
    agreement_items: int = 5000  # items whose neighbours are checked (seeded sample)
    copurchase_k: int = 20
    copurchase_max_items: int = 50  # a customer's test-period items beyond this are sampled
    map_method: str = "pca"  # pca | tsne
    map_points: int = 3000
    plots: bool = True
    simclr: bool = True  # also evaluate the trained SimCLR image encoders
    simclr_variants: tuple[str, ...] = ()  # (): every trained one
    seed: int = 0

    def validate(self) -> None:
        if not self.ks or min(self.ks) < 1 or self.mrr_depth < max(self.ks):
            raise ValueError(f"evaluate_contrastive: ks >= 1 and mrr_depth >= max(ks) "
                             f"expected, got ks={self.ks}, mrr_depth={self.mrr_depth}")
        if self.map_method not in ("pca", "tsne"):
            raise ValueError(f"evaluate_contrastive.map_method must be pca or tsne, got "
                             f"{self.map_method!r}")
        if min(self.max_anchors, self.neighbours, self.agreement_items, self.copurchase_k,
               self.map_points, self.copurchase_max_items) < 1:
            raise ValueError("evaluate_contrastive: counts and k must be >= 1")


# --------------------------------------------------------------------------------------------
# Measures (numpy + FAISS; the pair measures live in embed/pair_measures.py, shared with the
# trainer's validation)
# --------------------------------------------------------------------------------------------
def neighbour_agreement(emb: np.ndarray, labels: dict[str, np.ndarray], has_vector: np.ndarray,
                        k: int = 10, max_items: int = 5000, seed: int = 0) -> dict:
    """Share of each item's ``k`` nearest items (cosine) that share its label, per column and
    for all columns at once, averaged over (a seeded sample of) the items; ``chance`` is the
    share for a random other item."""
    unit = unit_rows(emb)
    items = np.flatnonzero(has_vector)
    if len(items) > max_items:
        items = np.sort(np.random.default_rng([seed, 0xB]).choice(items, max_items,
                                                                  replace=False))
    nb, _ = knn(unit, items, k, has_vector)
    valid = nb >= 0
    out: dict = {"k": k, "items": int(len(items))}
    same_all = np.ones(nb.shape, bool)
    codes_all = []
    for col, values in labels.items():
        codes = _codes(values)
        codes_all.append(codes)
        same = codes[items][:, None] == codes[np.maximum(nb, 0)]
        same_all &= same
        out[col] = {"share": _share(same, valid), "chance": _chance(codes[has_vector])}
    joint = _codes(np.array(list(zip(*[c.tolist() for c in codes_all])), dtype=object)
                   if codes_all else np.zeros(len(unit)))
    out["all"] = {"share": _share(same_all, valid), "chance": _chance(joint[has_vector])}
    return out


def _codes(values: np.ndarray) -> np.ndarray:
    keys = [v if not isinstance(v, (list, np.ndarray)) else tuple(v) for v in values]
    _, codes = np.unique(np.array([str(v) for v in keys], dtype=object), return_inverse=True)
    return codes


def _share(same: np.ndarray, valid: np.ndarray) -> float:
    n = valid.sum()
    return float((same & valid).sum() / n) if n else float("nan")


def _chance(codes: np.ndarray) -> float:
    counts = np.bincount(codes)
    n = counts.sum()
    return float(((counts * (counts - 1)).sum()) / (n * (n - 1))) if n > 1 else float("nan")


def copurchase_pairs(customer: np.ndarray, article: np.ndarray, max_items: int,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ordered pairs (a, b), a != b, of distinct articles one customer bought (a customer's
    items beyond ``max_items`` are sampled, seeded)."""
    rng = np.random.default_rng([seed, 0xC])
    key = np.unique(np.asarray(customer, np.int64) << 32 | np.asarray(article, np.int64))
    cust, art = key >> 32, key & 0xFFFFFFFF
    starts = np.r_[0, np.flatnonzero(np.diff(cust)) + 1, len(cust)]
    aa, bb = [], []
    for lo, hi in zip(starts[:-1], starts[1:]):
        items = art[lo:hi]
        if len(items) < 2:
            continue
        if len(items) > max_items:
            items = rng.choice(items, max_items, replace=False)
        x, y = np.meshgrid(items, items, indexing="ij")
        off = x != y
        aa.append(x[off])
        bb.append(y[off])
    if not aa:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(aa), np.concatenate(bb)


def copurchase_recall(emb: np.ndarray, has_vector: np.ndarray, a: np.ndarray, b: np.ndarray,
                      k: int) -> dict:
    """Share of co-purchase pairs (a, b) with b among a's ``k`` nearest items."""
    ok = has_vector[a] & has_vector[b]
    a, b = a[ok], b[ok]
    if not len(a):
        return {"k": k, "pairs": 0, "recall": float("nan")}
    anchors, inv = np.unique(a, return_inverse=True)
    nb, _ = knn(unit_rows(emb), anchors, k, has_vector)
    hit = (nb[inv] == b[:, None]).any(axis=1)
    return {"k": k, "pairs": int(len(a)), "anchors": int(len(anchors)),
            "recall": float(hit.mean())}


def test_period_purchases(run: Run) -> tuple[np.ndarray, np.ndarray, dict]:
    """(customer_idx, article_idx, period) of the test period: the features stage's
    ``test_start .. test_end`` when it ran, else the last 7 days of the transactions (the
    period the transaction pairs are mined before, ``embed.pairs.test_period``)."""
    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.embed.pairs import test_period

    tx = read_table(run, "raw/transactions", ["t_dat", "customer_idx", "article_idx"])
    start, end = test_period(run, tx)
    t = tx.filter((pc.field("t_dat") >= start) & (pc.field("t_dat") <= end))
    return (t.column("customer_idx").to_numpy(), t.column("article_idx").to_numpy(),
            {"start": str(start), "end": str(end), "rows": t.num_rows})


def article_labels(run: Run, n_items: int, columns=(*AGREEMENT_COLUMNS, MAP_COLUMN)
                   ) -> dict[str, np.ndarray]:
    from stylehub_ray.data.ingest import read_table

    arts = read_table(run, "raw/articles", ["article_idx", *columns])
    idx = arts.column("article_idx").to_numpy()
    out = {}
    for col in columns:
        values = np.full(n_items, None, dtype=object)
        values[idx] = np.array(arts.column(col).to_pylist(), dtype=object)
        out[col] = values
    return out


# --------------------------------------------------------------------------------------------
# One variant
# --------------------------------------------------------------------------------------------
def embedding_measures(emb: np.ndarray, has_vector: np.ndarray, test: pa.Table, labels: dict,
                       purchases: tuple[np.ndarray, np.ndarray], cfg: EvaluateContrastiveConfig
                       ) -> dict:
    """Every measure of one set of item vectors (trained embeddings or raw inputs)."""
    m = pair_measures(emb, test, has_vector, cfg.ks, cfg.mrr_depth, cfg.max_anchors, cfg.seed,
                      distances=True)
    m["agreement"] = neighbour_agreement(
        emb, {c: labels[c] for c in AGREEMENT_COLUMNS}, has_vector, cfg.neighbours,
        cfg.agreement_items, cfg.seed)
    m["copurchase"] = copurchase_recall(emb, has_vector, *purchases, cfg.copurchase_k)
    return m


def evaluate_variant(run: Run, variant: str, cfg: EvaluateContrastiveConfig,
                     plot_dir: str | None = None) -> dict:
    """Every measure for the trained embeddings of ``variant`` and for its input vectors."""
    import torch

    from stylehub_ray.embed.pairs import read_pairs
    from stylehub_ray.models.artifacts import load_model
    from stylehub_ray.train.contrastive import load_item_inputs

    model, _spec, meta = load_model(run, "contrastive", variant)
    pairs_kind = meta["config"]["pairs"]
    items = load_item_inputs(run, meta["inputs"])
    emb = model.embed_all(torch.from_numpy(items.x)).numpy()
    pairs = read_pairs(run, pairs_kind)
    test = pairs.filter(pc.equal(pairs.column("split"), "test"))
    labels = article_labels(run, items.n_items)
    cust, art, period = test_period_purchases(run)
    purchases = copurchase_pairs(cust, art, cfg.copurchase_max_items, cfg.seed)
    trained = embedding_measures(emb, items.has_vector, test, labels, purchases, cfg)
    raw = embedding_measures(items.x, items.has_vector, test, labels, purchases, cfg)
    res = {"variant": variant, "pairs": pairs_kind, "inputs": meta["inputs"],
           "best_epoch": meta["best_epoch"], "epochs": len(meta["history"]),
           "test_period": period, "paper": PAPER.get(pairs_kind),
           "paper_note": PAPER_NOTE.get(pairs_kind),
           "trained": {k: v for k, v in trained.items() if k not in ("pos", "neg")},
           "input": {k: v for k, v in raw.items() if k not in ("pos", "neg")}}
    if plot_dir is not None:
        res["plots"] = write_plots(run, plot_dir, variant, meta["history"], trained, raw, emb,
                                   items.has_vector, labels[MAP_COLUMN], cfg)
    return res


def write_plots(run: Run, folder: str, variant: str, history: list[dict], trained: dict,
                raw: dict, emb: np.ndarray, has_vector: np.ndarray, groups: np.ndarray,
                cfg: EvaluateContrastiveConfig) -> list[str]:
    """loss.png, distances.png, map.png into ``folder`` (a path in the run's filesystem)."""
    written = []

    def save(png: bytes, name: str) -> None:
        run.write_at(posixpath.join(folder, name), png)
        written.append(name)

    save(plots.contrastive_history_png(variant, history), "loss.png")
    save(plots.distance_histograms_png(
        variant, (("trained embeddings", trained), ("input vectors", raw))), "distances.png")

    rows = np.flatnonzero(has_vector)
    if len(rows) > cfg.map_points:
        rows = np.sort(np.random.default_rng([cfg.seed, 0xD]).choice(rows, cfg.map_points,
                                                                     replace=False))
    x = unit_rows(emb[rows])
    if cfg.map_method == "tsne" and len(rows) > 5:
        from sklearn.manifold import TSNE

        xy = TSNE(2, init="pca", random_state=cfg.seed,
                  perplexity=min(30, len(rows) - 1)).fit_transform(x)
    else:
        from sklearn.decomposition import PCA

        xy = PCA(2, random_state=cfg.seed).fit_transform(x) if len(rows) > 2 else \
            np.zeros((len(rows), 2))
    title = f"{variant}: item embeddings ({cfg.map_method.upper()}), by {MAP_COLUMN}"
    save(plots.group_map_png(xy, groups[rows], title), "map.png")
    return written


# --------------------------------------------------------------------------------------------
# SimCLR image encoders
# --------------------------------------------------------------------------------------------
def evaluate_simclr_variant(run: Run, variant: str, cfg: EvaluateContrastiveConfig) -> dict:
    """Neighbour agreement of the SimCLR backbone's pooled features against the encoder it
    started from (``start``: its weights are ``start_weights``), over the catalog photos."""
    from stylehub_ray.models.artifacts import load_meta
    from stylehub_ray.train.simclr_images import embed_catalog, start_weights

    meta = load_meta(run, "simclr_images", variant)
    labels = article_labels(run, meta["n_items"], AGREEMENT_COLUMNS)
    out = {"variant": variant, "arch": meta["config"]["arch"],
           "image_size": meta["config"]["image_size"], "epochs": len(meta["history"]),
           "final_loss": meta["history"][-1]["loss"] if meta["history"] else None,
           "start_weights": start_weights(run, variant)}
    for name in ("simclr", "start"):
        vec, present = embed_catalog(run, variant, start=name == "start")
        out[name] = neighbour_agreement(vec, labels, present, cfg.neighbours,
                                        cfg.agreement_items, cfg.seed)
    out["images"] = int(present.sum())
    return out


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------
def evaluate_contrastive(run: Run, cfg: EvaluateContrastiveConfig, force: bool = False) -> dict:
    """Evaluate every trained variant (one manifest step each) and print the table."""
    from stylehub_ray.models.artifacts import list_variants, load_meta
    from stylehub_ray.train import contrastive as T

    cfg.validate()
    variants = list(cfg.variants) or list_variants(run, "contrastive")
    simclr = []
    if cfg.simclr:
        simclr = list(cfg.simclr_variants) or list_variants(run, "simclr_images")
    if not variants and not simclr:
        raise FileNotFoundError(f"{run.uri}: no trained contrastive variant under {T.MODELS}/ "
                                f"(run `stylehub train contrastive --run {run.uri}` first)")
    conf = asdict(cfg)
    results: dict = {"contrastive": {}, "simclr": {}}
    for variant in variants:
        rel = T.model_dir(variant)
        if not run.is_complete(rel):
            raise FileNotFoundError(f"{run.uri_of(rel)}: not trained")
        meta = load_meta(run, "contrastive", variant)
        inputs = {rel: run.marker(rel)["fingerprint"]}
        for dep in (f"pairs/{meta['config']['pairs']}", "raw/transactions", "raw/articles"):
            inputs[dep] = run.marker(dep)["fingerprint"]
        out = f"{EVAL}/{variant}"
        step = run.step("evaluate_contrastive", variant,
                        config={k: v for k, v in conf.items()
                                if k not in ("variants", "simclr", "simclr_variants")},
                        inputs=inputs, outputs=[out], force=force)
        if step.done:
            results["contrastive"][variant] = run.read_json(posixpath.join(out, "metrics.json"))
            continue
        with step:
            res = evaluate_variant(run, variant, cfg, step.tmp(out) if cfg.plots else None)
            run.write_json(posixpath.join(_rel_of(run, step.tmp(out)), "metrics.json"), res)
            step.extra["trained"] = {k: res["trained"][k] for k in
                                     ("pos_dist", "neg_dist", "separation", "mrr")}
        results["contrastive"][variant] = res
    for variant in simclr:
        from stylehub_ray.train.simclr_images import model_dir as simclr_dir

        rel = simclr_dir(variant)
        out = f"{EVAL_SIMCLR}/{variant}"
        step = run.step("evaluate_simclr_images", variant,
                        config={k: conf[k] for k in ("neighbours", "agreement_items", "seed")},
                        inputs={rel: run.marker(rel)["fingerprint"],
                                "raw/images": run.marker("raw/images")["fingerprint"]},
                        outputs=[out], force=force)
        if step.done:
            results["simclr"][variant] = run.read_json(posixpath.join(out, "metrics.json"))
            continue
        with step:
            res = evaluate_simclr_variant(run, variant, cfg)
            run.write_json(posixpath.join(_rel_of(run, step.tmp(out)), "metrics.json"), res)
        results["simclr"][variant] = res
    for line in format_table(results):
        logger.info(line)
    return results


def _rel_of(run: Run, path: str) -> str:
    return posixpath.relpath(path, run.root)


def format_table(results: dict) -> list[str]:
    """The side-by-side table `stylehub evaluate contrastive` and `make demo` print."""
    lines: list[str] = []
    con = results.get("contrastive", {})
    if con:
        ks = sorted(int(k.split("@")[1]) for k in next(iter(con.values()))["trained"]
                    if k.startswith("recall@"))
        lines += ["", "contrastive item model: test pairs of each variant's own source "
                      "(cosine distance = 1 - cos; paper 4.6)",
                  f"{'variant':16s} {'vectors':8s} {'pos d':>6s} {'neg d':>6s} {'sep':>6s} "
                  + " ".join(f"{'R@' + str(k):>6s}" for k in ks)
                  + f" {'MRR':>6s} {'type':>6s} {'colour':>6s} {'both':>6s} {'co-buy':>7s}"]
        for variant, r in con.items():
            for name in ("input", "trained"):
                m = r[name]
                ag, cb = m["agreement"], m["copurchase"]
                lines.append(
                    f"{variant:16s} {name:8s} {_f(m['pos_dist'])} {_f(m['neg_dist'])} "
                    f"{_f(m['separation'])} " + " ".join(_f(m[f'recall@{k}']) for k in ks)
                    + f" {_f(m['mrr'])} {_f(ag['product_type_name']['share'])} "
                    f"{_f(ag['colour_group_name']['share'])} {_f(ag['all']['share'])} "
                    f"{_f(cb['recall']):>7s}")
            if r.get("paper"):
                p = r["paper"]
                lines.append(f"{variant:16s} {'paper':8s} {_f(p['pos_dist'])} "
                             f"{_f(p['neg_dist'])} {_f(p['separation'])}")
            elif r.get("paper_note"):
                lines.append(f"{variant:16s} {'paper':8s} {r['paper_note']}")
        first = next(iter(con.values()))["trained"]
        ag = first["agreement"]
        lines.append(f"type / colour / both: share of the {ag['k']} nearest items with the "
                     f"item's product type / colour group / both (chance "
                     f"{_f(ag['product_type_name']['chance']).strip()} / "
                     f"{_f(ag['colour_group_name']['chance']).strip()} / "
                     f"{_f(ag['all']['chance']).strip()}); co-buy: co-purchase neighbour "
                     f"recall@{first['copurchase']['k']} in the test period")
    sim = results.get("simclr", {})
    if sim:
        lines += ["", "SimCLR image encoder: neighbour agreement of pooled backbone features "
                      "(catalog photos)",
                  f"{'variant':16s} {'encoder':8s} {'images':>6s} {'type':>6s} {'colour':>6s} "
                  f"{'both':>6s}"]
        for variant, r in sim.items():
            start = r.get("start_weights", "random")  # the encoder SimCLR started from
            for name, label in (("start", start), ("simclr", "simclr")):
                ag = r[name]
                lines.append(f"{variant:16s} {label:8s} {r['images']:6d} "
                             f"{_f(ag['product_type_name']['share'])} "
                             f"{_f(ag['colour_group_name']['share'])} {_f(ag['all']['share'])}")
            ag = r["start"]
            lines.append(f"{variant:16s} {'chance':8s} {'':6s} "
                         f"{_f(ag['product_type_name']['chance'])} "
                         f"{_f(ag['colour_group_name']['chance'])} {_f(ag['all']['chance'])}")
    return lines


def _f(x) -> str:
    return "     -" if x is None or (isinstance(x, float) and x != x) else f"{x:6.3f}"
