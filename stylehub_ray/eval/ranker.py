"""The multi-source candidates + LightGBM ranker (the H&M competition's winning shape):
`stylehub train ranker`, `stylehub evaluate ranker` and the ranker's submission.

For one cutoff day (a training week's first day, ``val_start`` or ``test_start``) and a set
of customers, :class:`CandidateBuilder` proposes candidates from every source, each with its
score and rank: repurchase, co-purchase neighbours of recent purchases, the same product code,
last week's popularity overall and in the customer's age band
(``stylehub_ray.features.candidates``), ALS fitted on the purchases before the cutoff
(``stylehub_ray.eval.baselines.ALSBaseline``) and, with ``two_tower=true``, the two-tower's
retrieval (its dot product with every candidate is then a feature too). Every row gets the
point-in-time features of ``features.candidates.pair_features`` (image and text similarity
to the customer's recent purchases included).

Training (:func:`train_ranker`): the ``weeks`` weeks before ``val_start`` (cutoff = each
week's first day, label = bought in that week), the buyers of each week; early stopping on
the val week (MAP@12 over val buyers' candidates); LightGBM lambdarank on Ray Train
(``stylehub_ray.train.ranker``). On data too short for a training week before val it trains
on part of the val buyers and stops early on the rest, and says so. After training it
chooses on val whether to drop bought articles, and records each source's and the union's
candidate recall on val, and the feature importances (logged and plotted).

The two-tower source is off by default: its weights were trained on the purchases of the
ranker's training weeks (``features.label_days`` before val), so on those weeks its scores
already know the labels, and a ranker trained on them learns to trust it more than it earns
on val and test.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from stylehub_ray.features import candidates as C
from stylehub_ray.models.ranker import (
    MODEL_NAME,
    RankerModel,
    feature_matrix,
    model_dir,
    top_k,
)
from stylehub_ray.run import Run

logger = logging.getLogger(__name__)

INTERACTIONS = "features/interactions"
RAY_TRAIN_DIR = f"_ray_train/{MODEL_NAME}"
EVAL_DIR = "eval/ranker"
OUT_DIR = "recommendations/ranker"
SOURCES = ("repurchase", "copurchase", "same_product", "popular", "popular_age", "als",
           "two_tower")


@dataclass
class TrainRankerConfig:
    """`stylehub train ranker`: multi-source candidates ranked by LightGBM lambdarank."""

    variant: str = "default"
    workers: int = 1
    use_gpu: bool = False  # unused: LightGBM trains on CPUs here
    cpus_per_worker: float = 1.0
    seed: int = 0
    weeks: int = 4  # training weeks before val (fewer when the data is shorter)
    week_days: int = 7  # a label window
    min_history_days: int = 14  # a training week needs this much history before it
    train_customers: int = 10_000  # buyers sampled per training week
    val_customers: int = 5_000  # val buyers sampled for early stopping, choices and recall
    # Candidates per source (0: the source is off).
    n_repurchase: int = 24
    n_copurchase: int = 24
    n_same_product: int = 12
    n_popular: int = 24
    n_popular_age: int = 24
    n_als: int = 24
    n_two_tower: int = 24
    two_tower: bool = False  # see the module docstring: its scores leak on training weeks
    two_tower_variant: str = "default"
    copurchase_days: int = 90
    recent: int = 5  # recent purchases behind co-purchase, same product and similarities
    als_factors: int = 64
    als_iterations: int = 15
    als_regularization: float = 0.05
    # LightGBM
    rounds: int = 300
    patience: int = 30
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.9
    drop_bought: bool | None = None  # None: chosen on val

    def validate(self) -> None:
        if self.workers < 1 or self.cpus_per_worker <= 0 or self.week_days < 1:
            raise ValueError("train_ranker: workers >= 1, cpus_per_worker > 0, week_days >= 1 "
                             "expected")
        if self.weeks < 0 or self.train_customers < 1 or self.val_customers < 1:
            raise ValueError("train_ranker: weeks >= 0, train_customers >= 1, "
                             "val_customers >= 1 expected")
        if self.rounds < 1 or self.patience < 1 or self.learning_rate <= 0:
            raise ValueError("train_ranker: rounds >= 1, patience >= 1, learning_rate > 0 "
                             "expected")
        if not self.variant or "/" in self.variant:
            raise ValueError(f"train_ranker.variant must be a plain name, got "
                             f"{self.variant!r}")
        if not any(self.counts().values()):
            raise ValueError("train_ranker: every candidate source is off (n_* = 0)")

    def counts(self) -> dict[str, int]:
        """Candidates per source, the sources that are on."""
        n = {"repurchase": self.n_repurchase, "copurchase": self.n_copurchase,
             "same_product": self.n_same_product, "popular": self.n_popular,
             "popular_age": self.n_popular_age, "als": self.n_als,
             "two_tower": self.n_two_tower if self.two_tower else 0}
        return {k: v for k, v in n.items() if v > 0}


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def _dense(values: np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(values), return_inverse=True)[1].astype(np.int64)


def load_log(run: Run) -> C.PurchaseLog:
    """Every purchase of ``features/interactions`` with the catalogue facts."""
    from stylehub_ray.data.ingest import read_table

    run.require(INTERACTIONS, f"stylehub features --run {run.uri}")
    t = read_table(run, INTERACTIONS, ["t_dat", "customer_idx", "article_idx", "price"])
    arts = read_table(run, "raw/articles", ["article_idx", "product_code", "product_type_no"]
                      ).sort_by("article_idx")
    cust = read_table(run, "raw/customers", ["customer_idx", "age"]).sort_by("customer_idx")
    return C.PurchaseLog(
        t["t_dat"].to_numpy().astype("datetime64[D]"),
        t["customer_idx"].to_numpy().astype(np.int64),
        t["article_idx"].to_numpy().astype(np.int64),
        t["price"].to_numpy(zero_copy_only=False).astype(np.float64),
        _dense(arts["product_code"].to_numpy(zero_copy_only=False)),
        _dense(arts["product_type_no"].to_numpy(zero_copy_only=False)),
        cust["age"].to_numpy(zero_copy_only=False).astype(np.float32))


def _vectors(run: Run) -> dict[str, np.ndarray]:
    from stylehub_ray.features.inputs import image_matrix, text_matrix

    out = {}
    if run.is_complete("embeddings/images"):
        out["image"] = image_matrix(run)
    if run.is_complete("embeddings/text"):
        out["text"] = text_matrix(run)
    return out


class CandidateBuilder:
    """Candidates and features for customers at one cutoff: the per-cutoff models (ALS, the
    co-purchase table, the two-tower) are built once, then :meth:`rows` per batch."""

    def __init__(self, run: Run, log: C.PurchaseLog, cutoff: np.datetime64,
                 cfg: TrainRankerConfig, vectors: dict[str, np.ndarray],
                 feature_set: str = "train", state: dict[str, np.ndarray] | None = None):
        from stylehub_ray.eval.baselines import ALSBaseline, Interactions

        self.cutoff = np.datetime64(cutoff, "D")
        self.log = log.before(self.cutoff)
        self.cfg, self.vectors, self.counts = cfg, vectors, cfg.counts()
        # Once per cutoff: the article-level stats and the log grouped by customer, so a batch
        # of customers reads only its own purchases (a served request stays cheap).
        self.articles = C.ArticleStats.of(self.log, self.cutoff)
        self.by_customer = C.CustomerIndex(self.log)
        # The fitted parts (co-purchase table, ALS factors) from ``state`` when given (see
        # :meth:`state`): minutes over every purchase at the real size, seconds to load.
        state = state or {}
        self.table = None
        if "copurchase" in self.counts:
            self.table = ((state["copurchase_neighbours"], state["copurchase_similarity"])
                          if "copurchase_neighbours" in state else
                          C.copurchase_neighbours(self.log, self.cutoff, cfg.copurchase_days))
        self.als = None
        if "als" in self.counts and len(self.log.day):
            data = Interactions(self.log.customer_idx, self.log.article_idx, self.log.day,
                                log.n_customers, log.n_articles, self.cutoff)
            als = ALSBaseline(factors=cfg.als_factors, iterations=cfg.als_iterations,
                              regularization=cfg.als_regularization, seed=cfg.seed)
            self.als = (als.from_factors(data, state) if "user_factors" in state
                        else als.fit(data))
        self.two_tower = None
        if "two_tower" in self.counts:
            from stylehub_ray.models.recommender import cached_recommender

            self.two_tower = cached_recommender(run, cfg.two_tower_variant, feature_set)

    def state(self) -> dict[str, np.ndarray]:
        """The parts fitted over every purchase before the cutoff, as arrays: what
        ``CandidateBuilder(..., state=...)`` takes instead of fitting them again."""
        out = {}
        if self.table is not None:
            out["copurchase_neighbours"], out["copurchase_similarity"] = self.table
        if self.als is not None:
            out |= self.als.factors()
        return out

    def sources(self, customers: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each source's (m, n) candidates and scores, rows = ``customers`` (sorted)."""
        cut, n, recent, stats = self.cutoff, self.counts, self.cfg.recent, self.articles
        log = self.by_customer.of(customers)  # their purchases: the article stats see all
        out = {}
        if "repurchase" in n:
            out["repurchase"] = C.repurchase(log, cut, customers, n["repurchase"])
        if "copurchase" in n:
            out["copurchase"] = C.copurchase(log, customers, n["copurchase"], self.table,
                                             recent)
        if "same_product" in n:
            out["same_product"] = C.same_product(log, cut, customers, n["same_product"],
                                                 recent, stats)
        if "popular" in n:
            out["popular"] = C.popular(log, cut, customers, n["popular"], articles=stats)
        if "popular_age" in n:
            out["popular_age"] = C.popular_by_age(log, cut, customers, n["popular_age"],
                                                  articles=stats)
        if "als" in n:
            if self.als is not None:
                out["als"] = self.als.scored(customers, min(n["als"], log.n_articles))
            else:
                out["als"] = (np.full((len(customers), 1), -1, np.int64),
                              np.full((len(customers), 1), np.nan, np.float32))
        if self.two_tower is not None:
            vec = self.two_tower.encode_customers(customers, cold=True)
            out["two_tower"] = self.two_tower.retrieve(vec, n["two_tower"])
        return out

    def rows(self, customers: np.ndarray, sources: dict | None = None) -> pd.DataFrame:
        """The union of every source's candidates with their point-in-time features."""
        customers = np.asarray(customers, np.int64)
        sources = sources if sources is not None else self.sources(customers)
        rows = C.pair_features(self.by_customer.of(customers), self.cutoff,
                               C.union(customers, sources), self.vectors, self.cfg.recent,
                               self.articles)
        if self.two_tower is not None:
            c = rows["customer_idx"].to_numpy(np.int64)
            a = rows["article_idx"].to_numpy(np.int64)
            users, inv = np.unique(c, return_inverse=True)
            vec = self.two_tower.encode_customers(users, cold=True)
            rows["two_tower_dot"] = C.rowwise_dot(vec, inv, self.two_tower.article_vectors, a)
        return rows


# The fitted candidate parts at the cutoffs a published ranker serves from, saved with it.
STATE_FILE = "cutoffs/{}.npz"  # val_start, test_start


def _state_bytes(state: dict[str, np.ndarray]) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **state)
    return buf.getvalue()


def load_state(run: Run, variant: str, cutoff: str) -> dict[str, np.ndarray] | None:
    """The saved candidate parts of ``models/ranker/<variant>`` at ``cutoff`` (``val_start`` or
    ``test_start``); None for a model saved without them (built then, as before)."""
    import io

    rel = posixpath.join(model_dir(variant), STATE_FILE.format(cutoff))
    if not run.exists(rel):
        return None
    with run.fs.open_input_stream(run.path(rel)) as f:
        data = f.read()
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _week_rows(run_uri: str, log: C.PurchaseLog, start: np.datetime64,
               cfg: TrainRankerConfig, vectors: dict[str, np.ndarray], users: np.ndarray,
               truth: list[np.ndarray], week: int) -> pd.DataFrame:
    """One training week's labelled candidate rows, groups with a bought candidate only (a
    Ray task in :func:`training_data`)."""
    rows = CandidateBuilder(Run(run_uri), log, start, cfg, vectors, "train").rows(users)
    rows["label"] = label_rows(rows, users, truth, log.n_articles)
    return _only_with_positive(rows).assign(week=week)


def _cutoff_state(run_uri: str, log: C.PurchaseLog, cutoff: np.datetime64,
                  cfg: TrainRankerConfig) -> dict[str, np.ndarray]:
    """The fitted candidate parts at ``cutoff`` (:meth:`CandidateBuilder.state`; a Ray task):
    no vectors, and no two-tower source (``cfg`` has it off), since only ALS and the
    co-purchase table are saved."""
    return CandidateBuilder(Run(run_uri), log, cutoff, cfg, {}, "test").state()


def _sample(customers: np.ndarray, limit: int, seed: int) -> np.ndarray:
    if len(customers) <= limit:
        return customers
    return np.sort(np.random.default_rng(seed).choice(customers, limit, replace=False))


def _truth(log: C.PurchaseLog, start: np.datetime64, days: int
           ) -> tuple[np.ndarray, list[np.ndarray]]:
    """(buyers sorted, their distinct articles) in [start, start + days)."""
    c, a = log.between(start, start + days * C.DAY)
    users, first = np.unique(c, return_index=True)
    return users, np.split(a, first[1:])


def label_rows(rows: pd.DataFrame, customers: np.ndarray, truth: list[np.ndarray],
               n_articles: int) -> np.ndarray:
    """(n,) float32: 1 where the row's customer bought its article in the label window."""
    keys = np.concatenate([c * n_articles + t for c, t in zip(customers, truth)]
                          ) if len(customers) else np.zeros(0, np.int64)
    q = rows["customer_idx"].to_numpy(np.int64) * n_articles + rows["article_idx"].to_numpy(
        np.int64)
    return np.isin(q, keys).astype(np.float32)


def training_weeks(log: C.PurchaseLog, val_start: np.datetime64, cfg: TrainRankerConfig
                   ) -> list[np.datetime64]:
    """Cutoffs of the training weeks: each week ends where the next (or val) starts; a week
    needs ``min_history_days`` of purchases before it."""
    first = log.first_day
    out = []
    for w in range(1, cfg.weeks + 1):
        cut = val_start - w * cfg.week_days * C.DAY
        if first is None or cut - first < cfg.min_history_days * C.DAY:
            break
        out.append(cut)
    return out


def _part(rows: pd.DataFrame, features: list[str], query: np.ndarray) -> dict:
    return {"x": feature_matrix(rows, features), "y": rows["label"].to_numpy(np.float32),
            "query": query, "customer_idx": rows["customer_idx"].to_numpy(np.int64)}


def _only_with_positive(rows: pd.DataFrame, key: str = "customer_idx") -> pd.DataFrame:
    """Rows of the groups that hold a bought candidate (lambdarank learns nothing from the
    rest)."""
    pos = rows.groupby(key)["label"].transform("max") > 0
    return rows[pos.to_numpy()]


def feature_names(rows: pd.DataFrame) -> list[str]:
    return [c for c in rows.columns if c not in ("customer_idx", "article_idx", "label",
                                                  "week")]


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------
def _plan(run: Run, cfg: TrainRankerConfig) -> tuple[dict, dict]:
    cfg.validate()
    inputs = {INTERACTIONS: run.require(INTERACTIONS, f"stylehub features --run {run.uri}")}
    for rel in ("embeddings/images", "embeddings/text"):
        if run.is_complete(rel):
            inputs[rel] = run.marker(rel)["fingerprint"]
    if cfg.two_tower:
        rel = f"models/two-tower/{cfg.two_tower_variant}"
        inputs[rel] = run.require(rel, f"stylehub train two-tower --run {run.uri}")
    return asdict(cfg), inputs


def training_data(run: Run, cfg: TrainRankerConfig) -> dict:
    """The ranker's rows: val (candidates at ``val_start`` for a sample of val buyers, the
    candidate recall of each source and of the union) and the training weeks' (buyers of each
    week, candidates at its first day, groups with a bought candidate only), as LightGBM
    parts (``train``, ``val``: x, y, query, customer_idx), with ``features``, ``weeks``,
    ``notes`` (what it did instead on short data), the val builder, rows, buyers and truth
    for the choices, and ``test_state``: a Ray object ref to the test cutoff's fitted parts
    (:func:`_cutoff_state`), computed meanwhile."""
    import ray

    from stylehub_ray.eval.ranking import _cutoffs
    from stylehub_ray.ray_utils import ensure_ray, gather

    cut = _cutoffs(run)
    val_start = np.datetime64(cut["val_start"], "D")
    test_start = np.datetime64(cut["test_start"], "D")
    log = load_log(run)
    vectors = _vectors(run)
    # Each training week's candidates (its own ALS, co-purchase table and customer index, over
    # every purchase before it) are built in a Ray task, side by side and out of the driver,
    # which builds val's meanwhile; the test cutoff's fitted parts too (see ``test_state``).
    ensure_ray()
    log_ref, vectors_ref = ray.put(log), ray.put(vectors)
    weeks = training_weeks(log, val_start, cfg)
    week_rows = ray.remote(num_cpus=1)(_week_rows)
    refs = []
    for w, start in enumerate(weeks):
        users, truth = _truth(log, start, cfg.week_days)
        keep = np.isin(users, _sample(users, cfg.train_customers, cfg.seed + 1 + w))
        users, truth = users[keep], [t for t, k in zip(truth, keep) if k]
        if len(users):
            refs.append(week_rows.remote(run.uri, log_ref, start, cfg, vectors_ref, users,
                                         truth, w))
    test_state = ray.remote(num_cpus=1)(_cutoff_state).remote(
        run.uri, log_ref, test_start, replace(cfg, two_tower=False))
    val_days = int(min(cfg.week_days, (test_start - val_start).astype(int)))
    val_users, val_truth = _truth(log, val_start, val_days)
    keep = np.isin(val_users, _sample(val_users, cfg.val_customers, cfg.seed))
    val_users = val_users[keep]
    val_truth = [t for t, k in zip(val_truth, keep) if k]
    builder = CandidateBuilder(run, log, val_start, cfg, vectors, "train")
    val_sources = builder.sources(val_users)
    val_rows = builder.rows(val_users, val_sources)
    val_rows["label"] = label_rows(val_rows, val_users, val_truth, log.n_articles)
    recall = {name: round(C.recall(val_users, cand, val_truth), 4)
              for name, (cand, _) in val_sources.items()}
    recall["union"] = round(float(val_rows["label"].sum()) / max(
        sum(len(t) for t in val_truth), 1), 4)
    recall["candidates_per_customer"] = round(len(val_rows) / max(len(val_users), 1), 1)
    frames = gather(refs, "train_ranker: training weeks' candidates", "weeks")
    notes = []
    if frames:
        train_rows = pd.concat(frames, ignore_index=True)
        stop_rows = _only_with_positive(val_rows).assign(week=-1)
    else:
        # Too little history for a week before val: train on part of the val buyers and stop
        # early on the rest.
        notes.append(f"only {int((val_start - (log.first_day or val_start)).astype(int))} "
                     f"days before val (a training week needs {cfg.min_history_days} days of "
                     f"history before it and {cfg.week_days} of labels): trained on 70% of the "
                     f"val buyers, early stopping on the other 30%")
        vr = _only_with_positive(val_rows).assign(week=-1)
        users = vr["customer_idx"].unique()
        held = np.isin(vr["customer_idx"].to_numpy(),
                       _sample(users, max(1, int(len(users) * 0.3)), cfg.seed))
        train_rows, stop_rows = vr[~held], vr[held]
    if train_rows.empty or train_rows["label"].sum() == 0:
        raise ValueError(f"train_ranker: no training customer has a bought article among their "
                         f"candidates ({len(weeks)} training weeks, {len(val_users)} val "
                         f"buyers); the data is too small")
    features = feature_names(val_rows)
    train_rows = train_rows.sort_values(["week", "customer_idx"], kind="stable")
    stop_rows = stop_rows.sort_values(["customer_idx"], kind="stable")
    query = train_rows["week"].to_numpy(np.int64) * (log.n_customers + 1) + train_rows[
        "customer_idx"].to_numpy(np.int64)
    return {"train": _part(train_rows, features, query),
            "val": _part(stop_rows, features, stop_rows["customer_idx"].to_numpy(np.int64)),
            "features": features, "weeks": weeks, "notes": notes, "recall": recall,
            "builder": builder, "val_rows": val_rows, "val_users": val_users,
            "val_truth": val_truth, "test_state": test_state,
            "rows": {"train": int(len(train_rows)), "val": int(len(stop_rows)),
                     "train_positives": int(train_rows["label"].sum())}}


def train_ranker(run: Run, cfg: TrainRankerConfig, force: bool = False) -> dict:
    """Build the training weeks' and val's candidates, fit LightGBM lambdarank on Ray Train
    with early stopping on val, choose drop-bought on val and publish
    ``models/ranker/<variant>/``."""
    import ray

    from stylehub_ray.train import ranker as T

    config, inputs = _plan(run, cfg)
    out = model_dir(cfg.variant)
    step = run.step("train_ranker", cfg.variant, config=config, inputs=inputs, outputs=[out],
                    force=force)
    if step.done:
        logger.info(f"train_ranker/{cfg.variant}: up to date; skipped (--force redoes it)")
        return step.previous() | {"skipped": True}
    with step:
        with step.time("candidates_s"):
            data = training_data(run, cfg)
        for note in data["notes"]:
            logger.warning(f"train_ranker/{cfg.variant}: {note}")
        features, recall = data["features"], data["recall"]
        with step.time("fit_s"):
            text, metrics = T.fit_ray(data["train"], data["val"], features, config,
                                      run.uri_of(RAY_TRAIN_DIR),
                                      f"{cfg.variant}-{step.spec_hash[:12]}")
        meta = {"variant": cfg.variant, "config": config, "features": features,
                "best_iteration": int(metrics["best_iteration"]),
                "rounds": int(metrics.get("rounds", 0)), "curve": metrics.get("curve", []),
                "val_map12_candidates": metrics.get("val_map12"),
                "weeks": [str(w) for w in data["weeks"]], "notes": data["notes"],
                "candidate_recall": recall, "rows": data["rows"]}
        model = RankerModel.from_string(text, meta)
        with step.time("choose_s"):
            meta["choices"], meta["choices_val"] = choose_on_val(
                model, data["builder"], data["val_rows"], data["val_users"],
                data["val_truth"], cfg.drop_bought)
        # The co-purchase table and ALS at val and test, saved with the model: evaluation,
        # the submission and every Serve replica load them instead of fitting them again.
        with step.time("cutoffs_s"):
            step.write_bytes(out, STATE_FILE.format("val_start"),
                             _state_bytes(data["builder"].state()))
            data["builder"] = None
            step.write_bytes(out, STATE_FILE.format("test_start"),
                             _state_bytes(ray.get(data.pop("test_state"))))
        gain = model.booster.feature_importance("gain")
        meta["importance"] = {f: round(float(g), 3) for f, g in
                              sorted(zip(features, gain), key=lambda x: -x[1])}
        step.write_bytes(out, "model.txt", text.encode())
        step.write_json(out, "meta.json", meta)
        from stylehub_ray import plots

        step.write_bytes(out, "importance.png", plots.feature_importance_png(
            list(meta["importance"]), list(meta["importance"].values()),
            f"ranker/{cfg.variant}: feature importance (gain)"))
        step.counts = meta["rows"] | {"weeks": len(data["weeks"]),
                                      "val_customers": len(data["val_users"]),
                                      "features": len(features)}
        step.extra |= {"candidate_recall": recall, "choices": meta["choices"],
                       "choices_val": meta["choices_val"], "notes": data["notes"],
                       "best_iteration": meta["best_iteration"],
                       "rows_per_s": round(meta["rows"]["train"] * max(meta["rounds"], 1)
                                           / max(step.timings["fit_s"], 1e-9), 1)}
    run.delete(RAY_TRAIN_DIR)
    log_training(cfg.variant, meta, step.timings)
    return run.entry("train_ranker", cfg.variant)


def log_training(variant: str, meta: dict, timings: dict) -> None:
    r = meta["candidate_recall"]
    logger.info(f"train_ranker/{variant}: {meta['rows']['train']:,} training rows "
                f"({len(meta['weeks'])} weeks), best round {meta['best_iteration']} "
                f"(stopped after {meta['rounds']}), val MAP@12 over candidates "
                f"{meta['val_map12_candidates']:.4f} (fit {timings.get('fit_s', 0):.1f}s, "
                f"candidates {timings.get('candidates_s', 0):.1f}s)")
    logger.info(f"train_ranker/{variant}: candidate recall on val: " + ", ".join(
        f"{k} {v}" for k, v in r.items()))
    logger.info(f"train_ranker/{variant}: chosen on val: bought articles "
                f"{'dropped' if meta['choices']['drop_bought'] else 'kept'} "
                f"(val MAP@12 {meta['choices_val']})")
    top = list(meta["importance"].items())[:10]
    logger.info(f"train_ranker/{variant}: top features by gain: " + ", ".join(
        f"{k} {v:.0f}" for k, v in top))


def choose_on_val(model: RankerModel, builder: CandidateBuilder, rows: pd.DataFrame,
                  users: np.ndarray, truth: list[np.ndarray], fixed: bool | None
                  ) -> tuple[dict, dict]:
    """Drop bought articles or keep them, by val MAP@12 of the ranker's top 12 (all val
    buyers sampled, not only those with a bought candidate)."""
    from stylehub_ray.features.history import Purchases
    from stylehub_ray.metrics import map_at_k

    log = builder.log
    bought = Purchases.from_rows(log.customer_idx, log.article_idx, log.n_customers,
                                 log.n_articles)
    fallback = C.popular(log, builder.cutoff, np.zeros(1, np.int64), log.n_articles)[0][0]
    scores = model.score(rows)
    numbers = {}
    for drop in (True, False):
        recs, _ = top_k(rows, scores, users, 12, bought if drop else None, fallback)
        numbers["drop" if drop else "keep"] = round(float(map_at_k(recs, truth, 12)), 5)
    drop = fixed if fixed is not None else numbers["drop"] > numbers["keep"]
    return {"drop_bought": bool(drop)}, numbers


# --------------------------------------------------------------------------------------------
# Recommendation and evaluation
# --------------------------------------------------------------------------------------------
class RankerRecommender:
    """The published ranker at one cutoff: candidates, features, scores, top K."""

    def __init__(self, run: Run, variant: str = "default", feature_set: str = "test"):
        from stylehub_ray.eval.ranking import _cutoffs
        from stylehub_ray.features.history import Purchases

        self.model = RankerModel.load(run, variant)
        cfg = TrainRankerConfig(**self.model.meta["config"])
        cut = _cutoffs(run)
        name = "test_start" if feature_set == "test" else "val_start"
        cutoff = np.datetime64(cut[name], "D")
        log = load_log(run)
        self.builder = CandidateBuilder(run, log, cutoff, cfg, _vectors(run), feature_set,
                                        state=load_state(run, variant, name))
        hist = self.builder.log
        self.bought = Purchases.from_rows(hist.customer_idx, hist.article_idx,
                                          hist.n_customers, hist.n_articles)
        self.fallback = C.popular(hist, cutoff, np.zeros(1, np.int64), hist.n_articles)[0][0]
        self.fallback = np.r_[self.fallback[self.fallback >= 0],
                              np.setdiff1d(np.arange(hist.n_articles), self.fallback)]

    def recommend(self, customers: np.ndarray, k: int, drop_bought: bool | None = None,
                  batch: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
        """(m, k) article_idx and scores for ``customers`` (any order)."""
        drop = self.model.drop_bought if drop_bought is None else drop_bought
        c = np.asarray(customers, np.int64)
        order = np.argsort(c, kind="stable")
        recs = np.full((len(c), k), -1, np.int64)
        scores = np.full((len(c), k), np.nan, np.float32)
        for lo in range(0, len(c), batch):
            part = c[order[lo:lo + batch]]
            users = np.unique(part)
            rows = self.builder.rows(users)
            r, s = top_k(rows, self.model.score(rows), users, k,
                         self.bought if drop else None, self.fallback)
            pos = np.searchsorted(users, part)
            recs[order[lo:lo + batch]] = r[pos]
            scores[order[lo:lo + batch]] = s[pos]
        return recs, scores


@dataclass
class EvaluateRankerConfig:
    """`stylehub evaluate ranker`: the ranking protocol on the ranker."""

    variant: str = "default"
    ks: tuple[int, ...] = (10, 20, 30)
    map_k: int = 12
    drop_bought: tuple[bool, ...] = (True, False)
    bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0
    oracle_draws: int = 8
    plots: bool = True

    def protocol_config(self):
        from stylehub_ray.eval.ranking import EvaluateRankingConfig

        return EvaluateRankingConfig(ks=self.ks, map_k=self.map_k, drop_bought=self.drop_bought,
                                     bootstrap=self.bootstrap, confidence=self.confidence,
                                     seed=self.seed, oracle_draws=self.oracle_draws,
                                     plots=self.plots)


def evaluate_ranker(run: Run, cfg: EvaluateRankerConfig, force: bool = False) -> dict:
    """Score the ranker on the test period (``eval/ranker/<variant>/``) with the protocol of
    ``eval/ranking.py``; refresh and print the summary."""
    from stylehub_ray.eval import ranking as R

    proto = cfg.protocol_config()
    proto.validate()
    model_rel = model_dir(cfg.variant)
    run.require(model_rel, f"stylehub train ranker --run {run.uri}")
    test = R.load_test_set(run)
    oracle = R.oracle_scores(run, proto, test, force=force)
    out = f"{EVAL_DIR}/{cfg.variant}"
    step = run.step("evaluate_ranker", cfg.variant, config=proto.protocol(),
                    inputs=R._inputs(run, [INTERACTIONS, model_rel] + (
                        [R.ORACLE] if oracle else [])), outputs=[out], force=force)
    if step.done:
        res = run.read_json(f"{out}/metrics.json")
    else:
        with step:
            with step.time("load_s"):
                rec = RankerRecommender(run, cfg.variant, "test")

            def recommend(customers, k, drop):
                return rec.recommend(customers, k, drop)[0]

            with step.time("score_s"):
                res, per_user = R.evaluate_recommender(
                    recommend, test, proto, oracle, R._without_history(run, test.customers))
            meta = rec.model.meta
            res |= {"model": MODEL_NAME, "variant": cfg.variant,
                    "ranker": {"choices": meta["choices"], "notes": meta.get("notes", []),
                               "candidate_recall": meta["candidate_recall"],
                               "weeks": meta["weeks"], "best_iteration": meta["best_iteration"]}}
            R._write_result(run, step, out, res, per_user)
            step.extra["map"] = {s: res[s]["metrics"][f"map@{cfg.map_k}"]
                                 for s in R.SETTINGS.values() if s in res}
    summary = R.summarize(run, proto, force=force)
    return {"ranker": res, "oracle": oracle, "summary": summary}


def recommend_ranker(run: Run, cfg, out: str | None = None, force: bool = False) -> dict:
    """`stylehub recommend --set model=ranker`: the ranker's top K for every customer of
    ``raw/customers``, in this process in batches (``recommendations/ranker/<variant>/``)."""
    from stylehub_ray.config import resolved
    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.eval.recommend import _write_outputs, copy_out

    model_rel = model_dir(cfg.variant)
    run.require(model_rel, f"stylehub train ranker --run {run.uri}")
    inputs = {rel: run.marker(rel)["fingerprint"] for rel in
              (model_rel, "raw/customers", INTERACTIONS)}
    rel = f"{OUT_DIR}/{cfg.variant}"
    step = run.step("recommend", f"ranker-{cfg.variant}", config=resolved(cfg), inputs=inputs,
                    outputs=[rel], force=force)
    if step.done:
        entry = step.previous() | {"skipped": True}
    else:
        customers = read_table(run, "raw/customers", ["customer_idx", "customer_id"]).sort_by(
            "customer_idx")
        articles = read_table(run, "raw/article_map", ["article_idx", "article_id"]).sort_by(
            "article_idx")
        with step:
            with step.time("recommend_s"):
                rec = RankerRecommender(run, cfg.variant, cfg.feature_set)
                c = customers["customer_idx"].to_numpy().astype(np.int64)
                arts, scores = rec.recommend(c, cfg.k, cfg.drop_bought)
            drop = rec.model.drop_bought if cfg.drop_bought is None else bool(cfg.drop_bought)
            res = {"customer_idx": c, "article_idx": arts, "score": scores,
                   "path": np.array(["ranker"] * len(c), dtype=object)}
            with step.time("write_s"):
                step.counts = _write_outputs(run, step.tmp(rel), customers, articles, res, cfg,
                                             drop, paths=("ranker",))
        entry = run.entry("recommend", f"ranker-{cfg.variant}")
        logger.info(f"recommend/ranker-{cfg.variant}: {len(c):,} customers; bought articles "
                    f"{'dropped' if drop else 'kept'} in "
                    f"{entry['timings'].get('recommend_s', 0):.1f}s")
    if out:
        copy_out(run, posixpath.join(rel, "submission.csv"), out)
        logger.info(f"submission: {out}")
    return entry
