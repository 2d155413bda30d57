"""Two-tower recommendation (seeds/hybrid-two-tower.txt, "Step 6: Inference"): the model's
inputs, the serving object and the batch stage.

- :func:`input_layout` / :func:`build_inputs`: the model's input tables, one row per customer
  (article) index, from ``features/customers`` / ``features/articles`` of one feature set,
  ``features/preprocess``, ``embeddings/images`` (and ``embeddings/text``). Training, batch
  inference and serving all build their inputs here, so they apply the identical transform.
- :class:`TwoTowerRecommender` (no Ray inside): encode customers, retrieve the top N articles
  from the FAISS index of article-tower vectors (``index/two-tower/``), drop what the customer
  bought before the feature set's cutoff, retrieve more when too many were dropped, score the
  rest with the ranking model, keep the top K; customers unseen in training get popularity.
  Each piece is a method of its own so the Serve graph can run them as separate deployments.
- :func:`recommend_matrix`: top-K matrices for evaluation, in process.
- :func:`recommend` (`stylehub recommend`): every customer of ``raw/customers`` on Ray Data
  (an actor pool that loads the recommender once per actor); writes the competition's
  submission CSV and a Parquet of scores.
"""

from __future__ import annotations

import posixpath
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from stylehub_ray.run import Run

MODEL_NAME = "two-tower"
OUT_DIR = "recommendations/two-tower"
FEATURE_SETS = ("train", "test", "fit")  # fit: only with features.label_days > 0
POPULARITY_DAYS = 7  # popularity fallback: sales in the last week before the cutoff
N_CANDIDATES = 100  # N retrieved per customer before dropping bought and ranking (default)


def index_name(variant: str) -> str:
    """``index/two-tower/`` for the default variant, ``index/two-tower-<variant>/`` else."""
    return f"index/{MODEL_NAME}" if variant == "default" else f"index/{MODEL_NAME}-{variant}"


# --------------------------------------------------------------------------------------------
# Inputs: one row per index, built identically for training, batch inference and serving
# --------------------------------------------------------------------------------------------
@dataclass
class InputLayout:
    """Which columns feed the model, in order (saved in the model's metadata)."""

    customer_numeric: list[str]
    customer_categorical: list[str]
    article_numeric: list[str]  # ends with the has_image flag
    article_categorical: list[str]
    image_dim: int
    text_dim: int  # 0: no text embedding
    image_rms: float  # image embeddings are divided by it (PCA outputs are not unit-scaled)
    n_customers: int
    n_articles: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SideTable:
    """One side's model inputs, row = customer_idx (article_idx)."""

    num: np.ndarray  # (n, Dn) float32
    cat: np.ndarray  # (n, K) int64, 0 = unknown category
    extra: np.ndarray  # (n, De) float32 (articles: image, text)
    ids: np.ndarray = field(default=None)  # (n,) int64: idx + 1 (0 is the unknown id)

    def __post_init__(self) -> None:
        if self.ids is None:
            self.ids = np.arange(1, len(self.num) + 1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.num)

    def take(self, idx: np.ndarray) -> dict:
        """Torch inputs of rows ``idx`` (any shape flattened)."""
        import torch

        idx = np.asarray(idx, np.int64).ravel()
        return {"num": torch.from_numpy(self.num[idx]), "cat": torch.from_numpy(self.cat[idx]),
                "ids": torch.from_numpy(self.ids[idx]),
                "extra": torch.from_numpy(self.extra[idx])}

    def tensors(self) -> dict:
        import torch

        return {"num": torch.from_numpy(self.num), "cat": torch.from_numpy(self.cat),
                "ids": torch.from_numpy(self.ids), "extra": torch.from_numpy(self.extra)}



def input_layout(run: Run, text: bool) -> InputLayout:
    """The layout a new model trains with: every fitted column of preprocess.json."""
    from stylehub_ray.features.preprocess import Preprocessor

    run.require("features/preprocess", f"stylehub features --run {run.uri}")
    run.require("embeddings/images", f"stylehub embed images --run {run.uri}")
    if text:
        run.require("embeddings/text", f"stylehub embed text --run {run.uri}")
    pre = Preprocessor.load(run)

    def cols(d: dict, side: str) -> list[str]:
        return sorted(k.split(".", 1)[1] for k in d if k.startswith(side + "."))

    images = _image_matrix(run)
    present = np.abs(images).sum(1) > 0
    rms = float(np.sqrt((images[present] ** 2).mean())) if present.any() else 1.0
    from stylehub_ray.data.ingest import read_table

    n_customers = read_table(run, "raw/customers", ["customer_idx"]).num_rows
    return InputLayout(
        customer_numeric=cols(pre.numeric, "customer"),
        customer_categorical=cols(pre.categorical, "customer"),
        article_numeric=[*cols(pre.numeric, "article"), "has_image"],
        article_categorical=cols(pre.categorical, "article"),
        image_dim=images.shape[1], text_dim=_text_matrix(run).shape[1] if text else 0,
        image_rms=rms or 1.0, n_customers=n_customers, n_articles=len(images))


def _image_matrix(run: Run) -> np.ndarray:
    from stylehub_ray.embed.vectors import from_fixed_list, read_embeddings

    t = read_embeddings(run, "embeddings/images", ["article_idx", "embedding"])
    _check_dense(t["article_idx"].to_numpy(), run, "embeddings/images")
    return from_fixed_list(t["embedding"])  # null (no image) -> zeros


def _text_matrix(run: Run) -> np.ndarray:
    from stylehub_ray.embed.vectors import from_fixed_list, read_embeddings

    t = read_embeddings(run, "embeddings/text", ["article_idx", "embedding"])
    _check_dense(t["article_idx"].to_numpy(), run, "embeddings/text")
    return from_fixed_list(t["embedding"])


def _check_dense(idx: np.ndarray, run: Run, rel: str) -> None:
    if not np.array_equal(idx, np.arange(len(idx))):
        missing = np.setdiff1d(np.arange(idx.max() + 1 if len(idx) else 0), idx)[:5]
        raise ValueError(f"{run.uri}/{rel}: article_idx must cover 0..n-1 once each; "
                         f"missing or repeated, e.g. {missing.tolist()}")


def build_inputs(run: Run, feature_set: str, layout: InputLayout
                 ) -> tuple[SideTable, SideTable]:
    """(customers, articles) input tables of one feature set in ``layout``'s column order."""
    from stylehub_ray.features.preprocess import Preprocessor
    from stylehub_ray.features.stage import load_features

    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature_set must be one of {FEATURE_SETS}, got {feature_set!r}")
    run.require("features/customers", f"stylehub features --run {run.uri}")
    pre = Preprocessor.load(run)
    sides = []
    for side, n, num_cols, cat_cols in (
            ("customer", layout.n_customers, layout.customer_numeric,
             layout.customer_categorical),
            ("article", layout.n_articles, layout.article_numeric,
             layout.article_categorical)):
        df = load_features(run, f"{side}s", feature_set).sort_values(f"{side}_idx")
        idx = df[f"{side}_idx"].to_numpy()
        if not np.array_equal(idx, np.arange(n)):
            raise ValueError(f"{run.uri}/features/{side}s feature_set={feature_set}: expected "
                             f"{side}_idx 0..{n - 1} once each (as the model was trained), "
                             f"got {len(idx)} rows")
        if side == "article":
            images = _image_matrix(run)
            if images.shape != (n, layout.image_dim):
                raise ValueError(f"{run.uri}/embeddings/images: embedding shape "
                                 f"{images.shape}, the model expects ({n}, {layout.image_dim})")
            df = df.assign(has_image=(np.abs(images).sum(1) > 0).astype(np.float32))
            extra = [images / np.float32(layout.image_rms)]
            if layout.text_dim:
                text = _text_matrix(run)
                if text.shape != (n, layout.text_dim):
                    raise ValueError(f"{run.uri}/embeddings/text: embedding shape "
                                     f"{text.shape}, the model expects ({n}, "
                                     f"{layout.text_dim})")
                extra.append(text)
            extra_m = np.concatenate(extra, axis=1).astype(np.float32)
        else:
            extra_m = np.zeros((n, 0), np.float32)
        missing = [c for c in [*num_cols, *cat_cols] if c not in df.columns]
        if missing:
            raise ValueError(f"{run.uri}/features/{side}s: columns {missing} missing (the "
                             f"model was trained with them)")
        out = pre.transform(side, df[[*num_cols, *cat_cols]])
        num = out[num_cols].to_numpy(np.float32) if num_cols else np.zeros((n, 0), np.float32)
        cat = out[cat_cols].to_numpy(np.int64) if cat_cols else np.zeros((n, 0), np.int64)
        sides.append(SideTable(num=np.ascontiguousarray(num), cat=np.ascontiguousarray(cat),
                               extra=np.ascontiguousarray(extra_m)))
    return sides[0], sides[1]


def feature_cutoff(run: Run, feature_set: str) -> str:
    """The feature set's cutoff date: features and purchase history end the day before."""
    entry = run.entry("features")
    if not entry or "cutoffs" not in entry:
        raise FileNotFoundError(f"{run.uri}: the manifest has no features cutoffs; run "
                                f"`stylehub features --run {run.uri}` first")
    key = {"train": "val_start", "test": "test_start", "fit": "fit_start"}[feature_set]
    if key not in entry["cutoffs"]:
        raise FileNotFoundError(f"{run.uri}: no `{feature_set}` feature set (built by "
                                f"`stylehub features --set label_days=N`)")
    return entry["cutoffs"][key]


# --------------------------------------------------------------------------------------------
# Purchase history (the bought filter) and the popularity fallback
# --------------------------------------------------------------------------------------------
@dataclass
class History:
    """Distinct (customer, article) pairs bought before a cutoff, as sorted keys
    ``customer * n_articles + article`` (CSR by customer), and the fallback ranking."""

    n_customers: int
    n_articles: int
    keys: np.ndarray  # (P,) int64 sorted
    indptr: np.ndarray  # (n_customers + 1,) int64
    popular: np.ndarray  # article_idx, most sold in the last week before the cutoff first
    popular_score: np.ndarray  # their share of that week's sales

    @classmethod
    def from_pairs(cls, customer_idx: np.ndarray, article_idx: np.ndarray, recent: np.ndarray,
                   n_customers: int, n_articles: int) -> History:
        """``recent``: bool per row, inside the popularity window."""
        c = np.asarray(customer_idx, np.int64)
        a = np.asarray(article_idx, np.int64)
        keys = np.unique(c * n_articles + a)
        indptr = np.searchsorted(keys, np.arange(n_customers + 1, dtype=np.int64) * n_articles)
        recent_n = np.bincount(a[recent], minlength=n_articles)
        all_n = np.bincount(a, minlength=n_articles)
        # Most sold last week first; ties by all sales before the cutoff, then by index.
        order = np.lexsort((np.arange(n_articles), -all_n, -recent_n))
        total = max(int(recent_n.sum()), 1)
        return cls(n_customers, n_articles, keys, indptr.astype(np.int64), order,
                   (recent_n[order] / total).astype(np.float32))

    def bought(self, customer_idx: np.ndarray) -> list[np.ndarray]:
        c = np.asarray(customer_idx, np.int64)
        return [self.keys[self.indptr[i]:self.indptr[i + 1]] - i * self.n_articles
                if 0 <= i < self.n_customers else np.zeros(0, np.int64) for i in c]

    def contains(self, customer_idx: np.ndarray, articles: np.ndarray) -> np.ndarray:
        """(m, n) bool: articles[i, j] was bought by customer_idx[i] (-1 never)."""
        q = np.asarray(customer_idx, np.int64)[:, None] * self.n_articles + articles
        pos = np.searchsorted(self.keys, q)
        hit = self.keys[np.minimum(pos, len(self.keys) - 1)] == q if len(self.keys) else (
            np.zeros(q.shape, bool))
        return hit & (articles >= 0)


def load_model_history(run: Run, variant: str = "default", feature_set: str = "test"
                       ) -> History:
    """The purchase history a published model's recommender uses, without the model's inputs
    (the bought filter's serving part needs nothing else)."""
    from stylehub_ray.train.two_tower import load_two_tower

    _model, meta = load_two_tower(run, variant)
    layout = InputLayout(**meta["layout"])
    return load_history(run, feature_set, layout.n_customers, layout.n_articles)


def load_history(run: Run, feature_set: str, n_customers: int, n_articles: int) -> History:
    """Purchases before the feature set's cutoff (``features/interactions``)."""
    from stylehub_ray.data.ingest import read_table

    run.require("features/interactions", f"stylehub features --run {run.uri}")
    cutoff = np.datetime64(feature_cutoff(run, feature_set))
    t = read_table(run, "features/interactions", ["t_dat", "customer_idx", "article_idx"])
    t = t.filter(pc.field("t_dat") < pa.scalar(cutoff.astype("datetime64[D]").item(),
                                               pa.date32()))
    days = t["t_dat"].to_numpy().astype("datetime64[D]")
    recent = days >= cutoff - np.timedelta64(POPULARITY_DAYS, "D")
    return History.from_pairs(t["customer_idx"].to_numpy(), t["article_idx"].to_numpy(),
                              recent, n_customers, n_articles)


# --------------------------------------------------------------------------------------------
# The serving object
# --------------------------------------------------------------------------------------------
class TwoTowerRecommender:
    """Retrieve, drop bought, rank, top K (Step 6). Arrays in, arrays out; no Ray inside.

    Attributes: ``article_vectors`` (n_articles, d) float32, the article tower's output (row =
    article_idx); ``n_articles``; ``n_candidates`` (N retrieved per customer).
    """

    def __init__(self, model, customers: SideTable, articles: SideTable,
                 history: History | None, trained: np.ndarray, index=None,
                 index_rows: np.ndarray | None = None, n_candidates: int = 100,
                 meta: dict | None = None, build_index: bool = True):
        import torch

        self.model = model.eval()
        self.customers, self.articles, self.history = customers, articles, history
        self.trained = np.asarray(trained, bool)
        self.n_articles = len(articles)
        self.n_candidates = int(n_candidates)
        self.meta = meta or {}
        with torch.no_grad():
            a = articles.tensors()
            self.article_vectors = model.article_vectors(a).numpy().astype(np.float32)
            self._article_branch = model.article_branch(a)  # (n_articles, 32), for rank()
        if index is None and build_index:
            from stylehub_ray.embed.index import IndexParams
            from stylehub_ray.embed.index import build_index as _build

            index = _build(self.article_vectors, IndexParams(kind="flat"))
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
        from stylehub_ray.train.two_tower import load_two_tower

        model, meta = load_two_tower(run, variant)
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
                from stylehub_ray.embed.index import read_index

                index, rows = read_index(run, name)
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

    def encode_customers(self, customer_idx: np.ndarray) -> np.ndarray:
        """(n, d) float32 unit customer-tower vectors; KeyError naming unknown customers."""
        import torch

        c = np.asarray(customer_idx, np.int64)
        unknown = c[~self.known(c)]
        if len(unknown):
            raise KeyError(f"customers not seen in training: {unknown[:10].tolist()}"
                           + (f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""))
        with torch.no_grad():
            return self.model.customer_vectors(self.customers.take(c)).numpy()

    def retrieve(self, vectors: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` articles by dot product: (article_idx int64 (m, n), scores float32)."""
        if self.index is None:
            raise RuntimeError("this recommender was loaded without its index (index=False)")
        from stylehub_ray.embed.index import search

        n = min(int(n), self.n_articles)
        return search(self.index, vectors, n, rows=self.index_rows, batch=None)

    def bought(self, customer_idx: np.ndarray) -> list[np.ndarray]:
        """Articles each customer bought before the feature set's cutoff."""
        return self._history().bought(customer_idx)

    def _history(self) -> History:
        if self.history is None:
            raise RuntimeError("this recommender was loaded without its purchase history "
                               "(history=False)")
        return self.history

    def rank(self, customer_idx: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Ranking-model probabilities (m, n) float32; -inf where a candidate is -1."""
        import torch

        cand = np.asarray(candidates, np.int64)
        if cand.size == 0:
            return np.zeros(cand.shape, np.float32)
        with torch.no_grad():
            cb = self.model.customer_branch(self.customers.take(customer_idx))  # (m, 32)
            ab = self._article_branch[torch.from_numpy(np.maximum(cand, 0))]  # (m, n, 32)
            p = self.model.head_probability(cb, ab).numpy().astype(np.float32)
        return np.where(cand >= 0, p, -np.inf).astype(np.float32)

    def popular(self, k: int) -> np.ndarray:
        """The popularity fallback: the ``k`` most sold articles of the last week."""
        return self._history().popular[:k].copy()

    # -- the whole chain ---------------------------------------------------------------------
    def recommend(self, customer_idx: np.ndarray, k: int, drop_bought: bool = True
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(article_idx int64 (m, k) padded -1, scores float32 (m, k), path per customer:
        ``model`` or ``popularity``)."""
        c = np.asarray(customer_idx, np.int64)
        m = len(c)
        out_a = np.full((m, k), -1, np.int64)
        out_s = np.full((m, k), -np.inf, np.float32)
        known = self.known(c)
        rows = np.flatnonzero(known)
        if len(rows):
            vec = self.encode_customers(c[rows])
            n = max(self.n_candidates, k)
            pending = np.arange(len(rows))
            while len(pending):
                cand, _ = self.retrieve(vec[pending], n)
                if drop_bought:
                    cand = np.where(self.history.contains(c[rows[pending]], cand), -1, cand)
                # Step 6: "If too many articles are filtered out, additional articles are
                # retrieved": widen N for the customers left with fewer than k.
                short = ((cand >= 0).sum(1) < k) & (n < self.n_articles)
                done = pending[~short]
                if len(done):
                    cd = cand[~short]
                    s = self.rank(c[rows[done]], cd)
                    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
                    out_a[rows[done]] = np.take_along_axis(cd, top, 1)
                    out_s[rows[done]] = np.take_along_axis(s, top, 1)
                pending = pending[short]
                n = min(n * 4, self.n_articles)
            self._fill_popular(c, rows, out_a, out_s, drop_bought)
        pop = np.flatnonzero(~known)
        if len(pop):
            take = min(k, self.n_articles)
            out_a[pop, :take] = self.history.popular[:take]
            out_s[pop, :take] = self.history.popular_score[:take]
        return out_a, out_s, ["model" if x else "popularity" for x in known]

    def _fill_popular(self, c, rows, out_a, out_s, drop_bought) -> None:
        """A model row still short of k (the customer bought nearly everything) is topped up
        with popular articles it does not hold (nor bought, when dropping)."""
        short = rows[(out_a[rows] < 0).any(1)]
        for r in short:
            have = set(out_a[r][out_a[r] >= 0].tolist())
            if drop_bought:
                have |= set(self.history.bought([c[r]])[0].tolist())
            extra = [a for a in self.history.popular.tolist() if a not in have]
            free = np.flatnonzero(out_a[r] < 0)[:len(extra)]
            out_a[r, free] = extra[:len(free)]
            out_s[r, free] = -np.inf


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


def recommend_matrix(run: Run, customer_idx: np.ndarray, k: int, *, drop_bought: bool = True,
                     feature_set: str = "test", variant: str = "default",
                     batch_size: int = 4096) -> np.ndarray:
    """Top-``k`` article_idx (m, k) int64, -1 padded, for the given customers (unseen ones get
    popularity), in process: what evaluation scores."""
    rec = cached_recommender(run, variant, feature_set)
    c = np.asarray(customer_idx, np.int64)
    out = np.full((len(c), k), -1, np.int64)
    for lo in range(0, len(c), batch_size):
        out[lo:lo + batch_size] = rec.recommend(c[lo:lo + batch_size], k, drop_bought)[0]
    return out


# --------------------------------------------------------------------------------------------
# `stylehub recommend`: every customer, on Ray Data
# --------------------------------------------------------------------------------------------
@dataclass
class RecommendConfig:
    """`stylehub recommend`: the submission of every customer in ``raw/customers``."""

    variant: str = "default"
    k: int = 12
    n_candidates: int = N_CANDIDATES  # N retrieved before dropping bought and ranking
    drop_bought: bool = True
    feature_set: str = "test"
    batch_size: int = 2048  # customers per actor call
    actors: int | None = None  # None: one per 2 CPUs of the cluster (at least 1)
    cpus_per_actor: float = 1.0
    threads: int = 1  # torch / FAISS threads per actor

    def validate(self) -> None:
        if self.k < 1 or self.n_candidates < 1 or self.batch_size < 1 or self.threads < 1:
            raise ValueError("recommend: k, n_candidates, batch_size and threads must be >= 1")
        if self.feature_set not in FEATURE_SETS:
            raise ValueError(f"recommend.feature_set must be one of {FEATURE_SETS}, got "
                             f"{self.feature_set!r}")
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"recommend.actors must be >= 1, got {self.actors}")


class RecommendActor:
    """Ray Data actor: loads the recommender once, then recommends batch after batch."""

    def __init__(self, run_uri: str, cfg: dict):
        import torch

        self.cfg = RecommendConfig(**cfg)
        torch.set_num_threads(self.cfg.threads)
        try:
            import faiss

            faiss.omp_set_num_threads(self.cfg.threads)
        except (ImportError, AttributeError):
            pass
        self.rec = TwoTowerRecommender.load(Run(run_uri), self.cfg.variant,
                                            self.cfg.feature_set, self.cfg.n_candidates)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        c = batch["customer_idx"].astype(np.int64)
        arts, scores, path = self.rec.recommend(c, self.cfg.k, self.cfg.drop_bought)
        return {"customer_idx": c, "article_idx": arts, "score": scores,
                "path": np.array(path, dtype=object)}


def _out_rel(cfg: RecommendConfig) -> str:
    return f"{OUT_DIR}/{cfg.variant}"


def recommend(run: Run, cfg: RecommendConfig, out: str | None = None, force: bool = False,
              log=print) -> dict:
    """Recommend for every customer of ``raw/customers``; writes
    ``recommendations/two-tower/<variant>/submission.csv`` and ``scores/part-0.parquet``,
    and copies the CSV to ``out`` when given."""
    import ray
    from ray.data import ActorPoolStrategy

    from stylehub_ray.config import resolved
    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.ray_utils import ensure_ray

    cfg.validate()
    model_rel = f"models/{MODEL_NAME}/{cfg.variant}"
    run.require(model_rel, f"stylehub train two-tower --run {run.uri}")
    inputs = {rel: run.marker(rel)["fingerprint"] for rel in
              (model_rel, "raw/customers", "features/customers", "features/interactions")}
    if run.is_complete(index_name(cfg.variant)):
        inputs[index_name(cfg.variant)] = run.marker(index_name(cfg.variant))["fingerprint"]
    rel = _out_rel(cfg)
    step = run.step("recommend", cfg.variant, config=resolved(cfg), inputs=inputs,
                    outputs=[rel], force=force)
    if step.done:
        log(f"recommend/{cfg.variant}: up to date; skipped (--force redoes it)")
        entry = step.previous() | {"skipped": True}
    else:
        ensure_ray()
        customers = read_table(run, "raw/customers", ["customer_idx", "customer_id"]).sort_by(
            "customer_idx")
        articles = read_table(run, "raw/article_map", ["article_idx", "article_id"]).sort_by(
            "article_idx")
        n = customers.num_rows
        actors = cfg.actors or max(1, int(ray.cluster_resources().get("CPU", 2)) // 2)
        blocks = max(1, min(-(-n // cfg.batch_size), actors * 4))
        size = -(-n // blocks)
        idx = pa.table({"customer_idx": customers["customer_idx"].cast(pa.int64())})
        with step:
            with step.time("recommend_s"):
                ds = ray.data.from_arrow([idx.slice(lo, size) for lo in range(0, n, size)])
                ds = ds.map_batches(RecommendActor, batch_size=cfg.batch_size,
                                    batch_format="numpy", compute=ActorPoolStrategy(size=actors),
                                    num_cpus=cfg.cpus_per_actor,
                                    fn_constructor_kwargs={"run_uri": run.uri,
                                                           "cfg": asdict(cfg)})
                parts = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
            res = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
            order = np.argsort(res["customer_idx"], kind="stable")
            res = {key: v[order] for key, v in res.items()}
            if not np.array_equal(res["customer_idx"], customers["customer_idx"].to_numpy()):
                raise RuntimeError("recommend: the actors did not return every customer once")
            with step.time("write_s"):
                step.counts = _write_outputs(run, step.tmp(rel), customers, articles, res, cfg)
        entry = run.entry("recommend", cfg.variant)
        c = entry["counts"]["customers"]
        log(f"recommend/{cfg.variant}: {c['total']:,} customers ({c['model']:,} model, "
            f"{c['popularity']:,} popularity fallback) in "
            f"{entry['timings'].get('recommend_s', 0):.1f}s")
    if out:
        copy_out(run, posixpath.join(rel, "submission.csv"), out)
        log(f"submission: {out}")
    return entry


def _write_outputs(run: Run, folder: str, customers: pa.Table, articles: pa.Table, res: dict,
                   cfg: RecommendConfig) -> dict:
    import pyarrow.parquet as pq

    from stylehub_ray.embed.vectors import to_fixed_list

    arts = res["article_idx"]
    ids = articles["article_id"].to_numpy()
    names = np.array([f"{a:010d}" for a in ids.tolist()] + [""], dtype=object)
    text = names[np.where(arts >= 0, arts, len(ids))]
    prediction = [" ".join(x for x in row if x) for row in text.tolist()]
    csv = pd.DataFrame({"customer_id": customers["customer_id"].to_numpy(zero_copy_only=False),
                        "prediction": prediction}).to_csv(index=False)
    run.write_at(posixpath.join(folder, "submission.csv"), csv.encode())
    article_id = np.where(arts >= 0, ids[np.maximum(arts, 0)], -1)
    table = pa.table({
        "customer_idx": res["customer_idx"].astype(np.int32),
        "customer_id": customers["customer_id"],
        "article_idx": pa.FixedSizeListArray.from_arrays(
            pa.array(arts.astype(np.int32).ravel()), arts.shape[1]),
        "article_id": pa.FixedSizeListArray.from_arrays(pa.array(article_id.ravel()),
                                                        arts.shape[1]),
        "score": to_fixed_list(res["score"]),
        "path": pa.array(res["path"].tolist(), pa.string()),
    })
    run.fs.create_dir(posixpath.join(folder, "scores"), recursive=True)
    pq.write_table(table, posixpath.join(folder, "scores", "part-0.parquet"), filesystem=run.fs)
    paths = res["path"]
    return {"customers": {"total": len(paths), "model": int((paths == "model").sum()),
                          "popularity": int((paths == "popularity").sum())},
            "recommendations": {"k": cfg.k, "padded_rows": int((arts < 0).any(1).sum()),
                                "distinct_articles": int(len(np.unique(arts[arts >= 0])))}}


def copy_out(run: Run, rel: str, out: str) -> None:
    """Copy one file of the run to a local path or URI."""
    from stylehub_ray.run import resolve_fs

    fs, path = resolve_fs(out)
    parent = posixpath.dirname(path)
    if parent:
        fs.create_dir(parent, recursive=True)
    with run.fs.open_input_stream(run.path(rel)) as src, fs.open_output_stream(path) as dst:
        dst.write(src.read())


def read_scores(run: Run, variant: str = "default") -> pa.Table:
    """The Parquet of scores written by :func:`recommend`."""
    from stylehub_ray.data.ingest import read_table

    rel = f"{OUT_DIR}/{variant}"
    run.require(rel, f"stylehub recommend --run {run.uri}")
    return read_table(run, posixpath.join(rel, "scores"))
