"""The ranking protocol of the H&M models: test truth, metric table, oracle, bootstrap, plots.

Protocol (the same for the two-tower and every baseline, all scored by ``stylehub_ray.metrics``):

- **Customers that count**: every customer with at least one purchase in the ``test`` period
  of ``features/interactions`` (the H&M MAP@12 convention), those without a purchase before
  ``test_start`` included (models give them their popularity fallback; they are counted).
- **Relevant items**: the distinct articles the customer bought in the ``test`` period,
  articles they had bought before included (H&M customers rebuy, so every model is scored
  both with and without dropping articles bought before ``test_start``).
- **Training information**: every interaction before ``test_start`` (``train`` + ``val``),
  the same that the two-tower's ``test`` feature set sees.
- **Metrics**: precision@K, recall@K, NDCG@K for K in ``ks`` (10, 20, 30: the paper), MAP@12
  (the competition's), catalogue coverage@K (distinct articles recommended to the scored
  customers over the catalogue), with percentile bootstrap intervals over customers (the
  same resamples for every model, so intervals of differences are paired).
- **Oracle** (generated data only): the generator's true top-K over the test period
  (``HMOracle.topk``) scored on the same truth (realized), and its expected score
  (``HMOracle.expected_metrics``); each model is also reported as a fraction of the realized
  oracle. On real data there is no oracle.

Stages: :func:`evaluate_baselines` (``stylehub evaluate baselines``) and
:func:`evaluate_two_tower` (``stylehub evaluate two-tower``); both refresh the summary
(``eval/summary/``: the table of every model, the baselines and the oracle, and the bar plot),
which :func:`format_summary` prints.
"""

from __future__ import annotations

import contextvars
import logging
import posixpath
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stylehub_ray import plots
from stylehub_ray.eval.baselines import BASELINES, Interactions, make_baseline
from stylehub_ray.metrics import (
    evaluate_ranking,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from stylehub_ray.run import Run

logger = logging.getLogger(__name__)

INTERACTIONS = "features/interactions"
ORACLE = "eval/oracle"
SUMMARY = "eval/summary"
BASELINE_DIR = "eval/baselines"
TWO_TOWER_DIR = "eval/two-tower"
RANKER_DIR = "eval/ranker"
TWO_TOWER_MODELS = "models/two-tower"
SETTINGS = {True: "drop_bought", False: "keep_bought"}


@dataclass
class EvaluateRankingConfig:
    """`stylehub evaluate two-tower`: the ranking protocol (shared by the baselines)."""

    variant: str = "default"  # the two-tower variant under models/two-tower/
    ks: tuple[int, ...] = (10, 20, 30)  # precision / recall / NDCG cutoffs (the paper's)
    map_k: int = 12  # MAP@12, the competition's metric (recall@12 beside it)
    drop_bought: tuple[bool, ...] = (True, False)  # both settings are scored
    bootstrap: int = 1000  # resamples of customers for the intervals (0: none)
    confidence: float = 0.95
    seed: int = 0
    oracle_draws: int = 8  # Monte Carlo draws of the oracle's expected score
    plots: bool = True
    map_articles: int = 3000  # articles drawn in the 2-D embedding map

    def validate(self) -> None:
        if not self.ks or min(self.ks) < 1 or self.map_k < 1:
            raise ValueError(f"evaluate: ks and map_k must be positive, got ks={self.ks}, "
                             f"map_k={self.map_k}")
        if not self.drop_bought:
            raise ValueError("evaluate: drop_bought must name at least one setting")
        if self.bootstrap < 0 or not 0 < self.confidence < 1:
            raise ValueError(f"evaluate: bootstrap >= 0 and 0 < confidence < 1 expected, got "
                             f"{self.bootstrap}, {self.confidence}")
        if self.oracle_draws < 1 or self.map_articles < 2:
            raise ValueError("evaluate: oracle_draws >= 1 and map_articles >= 2 expected")

    @property
    def k_max(self) -> int:
        return max(*self.ks, self.map_k)

    def protocol(self) -> dict:
        """The settings that change the numbers (what a step's config hash covers)."""
        return {k: v for k, v in asdict(self).items()
                if k in ("ks", "map_k", "drop_bought", "bootstrap", "confidence", "seed")}


@dataclass
class EvaluateBaselinesConfig(EvaluateRankingConfig):
    """`stylehub evaluate baselines`: the protocol plus each baseline's hyperparameters
    (fixed here, never tuned on the test period)."""

    baselines: tuple[str, ...] = BASELINES
    popularity_window_days: int = 7
    popularity_half_life_days: float = 3.0
    cf_neighbors: int = 50
    cf_rating: str = "count"  # count (a repeat purchase rates higher) or binary
    cf_window_days: int = 0  # history the similarities are computed on; 0: all
    als_factors: int = 64
    als_regularization: float = 0.05
    als_iterations: int = 15
    als_alpha: float = 1.0
    als_threads: int = 0  # 0: every core

    def validate(self) -> None:
        super().validate()
        for name in self.baselines:
            if name not in BASELINES:
                raise ValueError(f"baselines.baselines: unknown baseline {name!r}; known: "
                                 f"{', '.join(BASELINES)}")
        for name in self.baselines:
            make_baseline(name, **self.params(name))  # checks the hyperparameters

    def params(self, name: str) -> dict:
        """The constructor arguments of one baseline."""
        if name == "popularity":
            return {"window_days": self.popularity_window_days,
                    "half_life_days": self.popularity_half_life_days}
        if name == "item-cf":
            return {"neighbors": self.cf_neighbors, "rating": self.cf_rating,
                    "window_days": self.cf_window_days}
        return {"factors": self.als_factors, "regularization": self.als_regularization,
                "iterations": self.als_iterations, "alpha": self.als_alpha, "seed": self.seed,
                "threads": self.als_threads}


def protocol_of(cfg: EvaluateRankingConfig) -> EvaluateRankingConfig:
    """The plain protocol config of any evaluate config (drops the baseline fields)."""
    base = {f.name for f in fields(EvaluateRankingConfig)}
    return EvaluateRankingConfig(**{k: v for k, v in asdict(cfg).items() if k in base})


# --------------------------------------------------------------------------------------------
# Data: the test truth and the training interactions
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TestSet:
    """The customers that count (sorted), their relevant articles and the period."""

    customers: np.ndarray  # (n,) int64
    truth: list[np.ndarray]  # distinct article_idx bought in the test period, per customer
    start: str
    end: str
    n_articles: int
    n_customers: int

    @property
    def n_purchases(self) -> np.ndarray:
        return np.array([len(t) for t in self.truth], np.int64)



def _cutoffs(run: Run) -> dict:
    entry = run.entry("features") or {}
    cut = entry.get("cutoffs")
    if not cut or any(k not in cut for k in ("val_start", "test_start", "test_end")):
        raise ValueError(f"{run.uri}/manifest.json: step 'features' has no cutoffs "
                         f"(val_start, test_start, test_end); rerun `stylehub features`")
    return cut


def _read_split(run: Run, splits: tuple[str, ...]) -> pd.DataFrame:
    import pyarrow.dataset as pads

    ds = pads.dataset(run.path(INTERACTIONS), filesystem=run.fs, format="parquet",
                      partitioning="hive", ignore_prefixes=["_", "."])
    table = ds.to_table(columns=["t_dat", "customer_idx", "article_idx"],
                        filter=pc.field("split").isin(list(splits)))
    return table.to_pandas(date_as_object=False)


def _catalogue(run: Run) -> tuple[int, int]:
    """(n_customers, n_articles) from the mapping tables."""
    from stylehub_ray.data.ingest import read_table

    sizes = []
    for rel, col in (("raw/customer_map", "customer_idx"), ("raw/article_map", "article_idx")):
        run.require(rel, f"stylehub ingest SOURCE --run {run.uri}")
        sizes.append(read_table(run, rel, [col]).num_rows)
    return sizes[0], sizes[1]


def load_test_set(run: Run) -> TestSet:
    """The test truth: every customer who bought in the ``test`` split, with the distinct
    articles they bought there."""
    run.require(INTERACTIONS, f"stylehub features --run {run.uri}")
    cut = _cutoffs(run)
    n_customers, n_articles = _catalogue(run)
    test = _read_split(run, ("test",))
    if test.empty:
        raise ValueError(f"{run.uri}/{INTERACTIONS}: split=test holds no rows (period "
                         f"{cut['test_start']} .. {cut['test_end']})")
    pairs = test[["customer_idx", "article_idx"]].drop_duplicates().sort_values(
        ["customer_idx", "article_idx"])
    c = pairs["customer_idx"].to_numpy(np.int64)
    a = pairs["article_idx"].to_numpy(np.int64)
    customers, starts = np.unique(c, return_index=True)
    truth = np.split(a, starts[1:])
    return TestSet(customers, truth, cut["test_start"], cut["test_end"], n_articles,
                   n_customers)


def load_training_interactions(run: Run) -> Interactions:
    """Every interaction before ``test_start`` (``train`` + ``val``): what the baselines fit
    on for the test period, the information of the two-tower's ``test`` feature set."""
    run.require(INTERACTIONS, f"stylehub features --run {run.uri}")
    cut = _cutoffs(run)
    n_customers, n_articles = _catalogue(run)
    df = _read_split(run, ("train", "val"))
    return Interactions(df["customer_idx"].to_numpy(np.int64),
                        df["article_idx"].to_numpy(np.int64),
                        df["t_dat"].to_numpy().astype("datetime64[D]"), n_customers,
                        n_articles, np.datetime64(cut["test_start"], "D"))


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------
def per_user_metrics(recs: np.ndarray, truth: list[np.ndarray], cfg: EvaluateRankingConfig
                     ) -> dict[str, np.ndarray]:
    """(n,) per-customer values of the metrics that get intervals: MAP and recall at
    ``map_k``, precision / recall / NDCG at each of ``ks``."""
    out = {f"map@{cfg.map_k}": map_at_k(recs, truth, cfg.map_k, per_user=True),
           f"recall@{cfg.map_k}": recall_at_k(recs, truth, cfg.map_k, per_user=True)}
    for k in cfg.ks:
        out[f"precision@{k}"] = precision_at_k(recs, truth, k, per_user=True)
        out[f"recall@{k}"] = recall_at_k(recs, truth, k, per_user=True)
        out[f"ndcg@{k}"] = ndcg_at_k(recs, truth, k, per_user=True)
    return out


def bootstrap_intervals(per_user: dict[str, np.ndarray], resamples: int, seed: int = 0,
                        confidence: float = 0.95, chunk: int = 100) -> dict[str, list[float]]:
    """Percentile bootstrap interval of the mean of each per-customer array: customers drawn
    with replacement ``resamples`` times. The draws depend only on (seed, number of
    customers), so two models scored on the same customers get the same resamples."""
    if resamples < 1 or not per_user:
        return {}
    n = len(next(iter(per_user.values())))
    rng = np.random.default_rng(seed)
    means: dict[str, list[np.ndarray]] = {name: [] for name in per_user}
    for lo in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - lo), n))  # (b, n)
        for name, values in per_user.items():
            means[name].append(np.nanmean(values[idx], axis=1))
    tail = (1 - confidence) / 2 * 100
    return {name: [float(np.percentile(np.concatenate(m), tail)),
                   float(np.percentile(np.concatenate(m), 100 - tail))]
            for name, m in means.items()}


def score(recs: np.ndarray, test: TestSet, cfg: EvaluateRankingConfig,
          oracle: dict | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """The metric table of one recommendation matrix (rows = ``test.customers``) with
    intervals and, on generated data, fractions of the oracle; and the per-customer values."""
    if recs.shape[0] != len(test.customers):
        raise ValueError(f"recommendations have {recs.shape[0]} rows for "
                         f"{len(test.customers)} test customers")
    ks = tuple(sorted({*cfg.ks, cfg.map_k}))
    table = evaluate_ranking(recs, test.truth, ks=ks, n_items=test.n_articles)
    per_user = per_user_metrics(recs, test.truth, cfg)
    result = {"metrics": table,
              "ci": bootstrap_intervals(per_user, cfg.bootstrap, cfg.seed, cfg.confidence)}
    if oracle is not None:
        result["fraction_of_oracle"] = fractions(table, oracle["realized"]["metrics"])
    return result, per_user


def fractions(metrics: dict, oracle_metrics: dict) -> dict[str, float]:
    """Each metric as a fraction of the oracle's (coverage and counts left out)."""
    out = {}
    for name, value in metrics.items():
        ref = oracle_metrics.get(name)
        if name.startswith("coverage") or name == "n_users" or not ref:
            continue
        out[name] = float(value / ref)
    return out


def evaluate_recommender(recommend: Callable[[np.ndarray, int, bool], np.ndarray],
                         test: TestSet, cfg: EvaluateRankingConfig, oracle: dict | None,
                         cold: np.ndarray) -> tuple[dict, pd.DataFrame]:
    """Score ``recommend(customers, k, drop_bought)`` in every drop-bought setting: returns
    the result (per setting) and the per-customer table (per_user.parquet)."""
    result: dict = {"customers": int(len(test.customers)),
                    "customers_without_history": int(cold.sum()),
                    "period": [test.start, test.end]}
    frames = []
    for drop in cfg.drop_bought:
        recs = np.asarray(recommend(test.customers, cfg.k_max, drop), np.int64)
        scored, per_user = score(recs, test, cfg, oracle)
        scored["padded_rows"] = int((recs[:, :cfg.map_k] < 0).any(axis=1).sum())
        result[SETTINGS[drop]] = scored
        frames.append(pd.DataFrame({"customer_idx": test.customers,
                                    "setting": SETTINGS[drop], **per_user}))
    return result, pd.concat(frames, ignore_index=True)


def _without_history(run: Run, customers: np.ndarray, data: Interactions | None = None
                     ) -> np.ndarray:
    """(n,) bool: customers with no purchase before ``test_start``."""
    data = data or load_training_interactions(run)
    seen = np.zeros(data.n_customers, bool)
    seen[data.customer_idx] = True
    return ~seen[customers]


# --------------------------------------------------------------------------------------------
# Oracle
# --------------------------------------------------------------------------------------------
def oracle_scores(run: Run, cfg: EvaluateRankingConfig, test: TestSet | None = None,
                  force: bool = False) -> dict | None:
    """The oracle's realized and expected scores on the test period (``eval/oracle/``), or
    None on real data. One step shared by every evaluation."""
    from stylehub_ray.synth.oracle import HMOracle

    if not run.is_complete("raw/oracle"):
        return None
    proto = protocol_of(cfg)
    inputs = {rel: run.marker(rel)["fingerprint"] for rel in (INTERACTIONS, "raw/oracle")}
    conf = proto.protocol() | {"oracle_draws": cfg.oracle_draws}
    step = run.step("evaluate_oracle", config=conf, inputs=inputs, outputs=[ORACLE],
                    force=force)
    if step.done:
        return run.read_json(f"{ORACLE}/metrics.json")
    oracle = HMOracle.load(run)
    test = test or load_test_set(run)
    with step:
        with step.time("topk_s"):
            recs = oracle.topk(test.customers, test.start, test.end, cfg.k_max)
        realized, per_user = score(recs, test, proto)
        with step.time("expected_s"):
            expected = oracle.expected_metrics(test.customers, test.n_purchases, test.start,
                                               test.end, cfg.map_k, draws=cfg.oracle_draws,
                                               seed=cfg.seed)
        res = {"customers": int(len(test.customers)), "period": [test.start, test.end],
               "realized": realized, "expected": expected}
        _write_result(run, step, ORACLE, res, pd.DataFrame(
            {"customer_idx": test.customers, "setting": "oracle", **per_user}))
        step.extra["map"] = {"realized": realized["metrics"][f"map@{cfg.map_k}"],
                             "expected": expected[f"map@{cfg.map_k}"]}
    logger.info(f"oracle: MAP@{cfg.map_k} {realized['metrics'][f'map@{cfg.map_k}']:.4f} realized, "
                f"{expected[f'map@{cfg.map_k}']:.4f} expected")
    return res


def _write_result(run: Run, step, rel: str, result: dict, per_user: pd.DataFrame) -> None:
    target = step.tmp(rel)
    run.write_json(posixpath.join(posixpath.relpath(target, run.root), "metrics.json"), result)
    pq.write_table(pa.Table.from_pandas(per_user, preserve_index=False),
                   posixpath.join(target, "per_user.parquet"), filesystem=run.fs)


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------
def evaluate_baselines(run: Run, cfg: EvaluateBaselinesConfig, force: bool = False) -> dict:
    """`stylehub evaluate baselines`: fit each baseline on the interactions before
    ``test_start`` and score it on the test period (``eval/baselines/<name>/``), then refresh
    and print the summary."""
    cfg.validate()
    run.require(INTERACTIONS, f"stylehub features --run {run.uri}")
    test = load_test_set(run)
    oracle = oracle_scores(run, cfg, test, force=force)
    data: Interactions | None = None
    results = {}
    for name in cfg.baselines:
        out = f"{BASELINE_DIR}/{name}"
        step = run.step("evaluate_baselines", name,
                        config=protocol_of(cfg).protocol() | {"params": cfg.params(name)},
                        inputs=_inputs(run, [INTERACTIONS] + ([ORACLE] if oracle else [])),
                        outputs=[out], force=force)
        if step.done:
            results[name] = run.read_json(f"{out}/metrics.json")
            continue
        if data is None:
            data = load_training_interactions(run)
        with step:
            model = make_baseline(name, **cfg.params(name))
            with step.time("fit_s"):
                model.fit(data)
            filled = {}

            def recommend(customers, k, drop, model=model, filled=filled):
                recs = model.recommend(customers, k, exclude_bought=drop)
                filled[SETTINGS[drop]] = model.filled
                return recs

            with step.time("score_s"):
                res, per_user = evaluate_recommender(
                    recommend, test, protocol_of(cfg), oracle,
                    _without_history(run, test.customers, data))
            res |= {"model": name, "params": cfg.params(name), "filled_by_popularity": filled}
            _write_result(run, step, out, res, per_user)
            step.extra["map"] = {s: res[s]["metrics"][f"map@{cfg.map_k}"]
                                 for s in SETTINGS.values() if s in res}
        scores = ", ".join(f"{s} MAP@{cfg.map_k} {res[s]['metrics'][f'map@{cfg.map_k}']:.4f}"
                           for s in SETTINGS.values() if s in res)
        logger.info(f"baseline {name}: fitted and scored in {step.timings['total_s']:.1f} s; "
                    f"{scores}")
        results[name] = res
    summary = summarize(run, cfg, force=force)
    return {"baselines": results, "oracle": oracle, "summary": summary}


def evaluate_two_tower(run: Run, cfg: EvaluateRankingConfig, force: bool = False) -> dict:
    """`stylehub evaluate two-tower`: score the trained two-tower (``recommend_matrix``, the
    test feature set) on the test period (``eval/two-tower/<variant>/``), with its training
    curves and the 2-D map of its article vectors; then refresh and print the summary."""
    from stylehub_ray.models.recommender import index_name, recommend_matrix

    cfg.validate()
    model_rel = f"{TWO_TOWER_MODELS}/{cfg.variant}"
    run.require(model_rel, f"stylehub train two-tower --run {run.uri}")
    run.require(index_name(cfg.variant), f"stylehub train two-tower --run {run.uri}")
    test = load_test_set(run)
    oracle = oracle_scores(run, cfg, test, force=force)
    out = f"{TWO_TOWER_DIR}/{cfg.variant}"
    step = run.step("evaluate_two_tower", cfg.variant,
                    config=protocol_of(cfg).protocol() | {"plots": cfg.plots,
                                                          "map_articles": cfg.map_articles},
                    inputs=_inputs(run, [INTERACTIONS, model_rel, index_name(cfg.variant)] + (
                        [ORACLE] if oracle else [])), outputs=[out], force=force)
    if step.done:
        res = run.read_json(f"{out}/metrics.json")
    else:
        with step:
            def recommend(customers, k, drop):
                return recommend_matrix(run, customers, k, drop_bought=drop,
                                        feature_set="test", variant=cfg.variant)

            with step.time("score_s"):
                res, per_user = evaluate_recommender(recommend, test, cfg, oracle,
                                                     _without_history(run, test.customers))
            res |= {"model": "two-tower", "variant": cfg.variant,
                    **_choices_of(run, cfg.variant, test.customers)}
            _write_result(run, step, out, res, per_user)
            if cfg.plots:
                with step.time("plots_s"):
                    res["plots"] = two_tower_plots(run, cfg, step.tmp(out))
                run.write_json(posixpath.join(posixpath.relpath(step.tmp(out), run.root),
                                              "metrics.json"), res)
            step.extra["map"] = {s: res[s]["metrics"][f"map@{cfg.map_k}"]
                                 for s in SETTINGS.values() if s in res}
    summary = summarize(run, cfg, force=force)
    return {"two_tower": res, "oracle": oracle, "summary": summary}


def _choices_of(run: Run, variant: str, customers: np.ndarray) -> dict:
    """The two-tower's choices made on val and how many test buyers lack a training
    positive (the group the cold choice serves)."""
    from stylehub_ray.models.artifacts import load_meta

    meta = load_meta(run, "two-tower", variant)
    if not meta.get("choices"):
        return {}
    trained = np.asarray(meta["trained_customers"], bool)
    c = np.asarray(customers, np.int64)
    return {"choices": meta["choices"], "cold_customers": int((~trained[c]).sum())}


def _inputs(run: Run, rels: list[str]) -> dict[str, str]:
    return {rel: run.marker(rel)["fingerprint"] for rel in rels}


# --------------------------------------------------------------------------------------------
# Summary: every model, the baselines and the oracle in one table and one plot
# --------------------------------------------------------------------------------------------
def _listed(run: Run, folder: str) -> list[str]:
    import pyarrow.fs as pafs

    infos = run.fs.get_file_info(pafs.FileSelector(run.path(folder), allow_not_found=True))
    return sorted(f"{folder}/{posixpath.basename(i.path)}" for i in infos
                  if i.type == pafs.FileType.Directory
                  and run.is_complete(f"{folder}/{posixpath.basename(i.path)}"))


def _evaluated(run: Run) -> dict[str, str]:
    """Label -> folder of every complete model evaluation: ``two-tower/<variant>``,
    ``ranker/<variant>`` and each baseline by name."""
    folders = {f"two-tower/{posixpath.basename(r)}": r for r in _listed(run, TWO_TOWER_DIR)}
    folders |= {f"ranker/{posixpath.basename(r)}": r for r in _listed(run, RANKER_DIR)}
    return folders | {posixpath.basename(r): r for r in _listed(run, BASELINE_DIR)}


def collect(run: Run) -> dict:
    """Every complete evaluation of the run: {"oracle": ..., "models": {label: result}}."""
    models = {}
    for label, rel in _evaluated(run).items():
        models[label] = run.read_json(f"{rel}/metrics.json")
    oracle = run.read_json(f"{ORACLE}/metrics.json") if run.is_complete(ORACLE) else None
    return {"oracle": oracle, "models": models}


def paired_differences(run: Run, cfg: EvaluateRankingConfig, reference: str,
                       metric: str, drop: bool = True) -> dict[str, list[float]]:
    """Bootstrap interval of (reference - other) in ``metric`` for every other evaluated
    model, in one drop-bought setting, over the same resampled customers."""
    folders = _evaluated(run)
    if reference not in folders:
        return {}

    def values(rel: str) -> pd.Series:
        t = pq.read_table(run.path(f"{rel}/per_user.parquet"), filesystem=run.fs,
                          columns=["customer_idx", "setting", metric]).to_pandas()
        t = t[t["setting"] == SETTINGS[drop]]
        return t.set_index("customer_idx")[metric]

    ref = values(folders[reference])
    if ref.empty:
        return {}
    out = {}
    for label, rel in folders.items():
        if label == reference:
            continue
        other = values(rel).reindex(ref.index)
        if other.isna().any():
            continue
        diff = {metric: (ref - other).to_numpy()}
        out[label] = bootstrap_intervals(diff, cfg.bootstrap, cfg.seed,
                                         cfg.confidence).get(metric, [])
    return out


# Whether summarize prints the table: `stylehub pipeline` turns it off while its evaluation
# stages run and prints the final table once.
SHOW_SUMMARY: contextvars.ContextVar[bool] = contextvars.ContextVar("show_summary",
                                                                    default=True)


def summarize(run: Run, cfg: EvaluateRankingConfig, force: bool = False) -> dict:
    """``eval/summary/``: table.json, table.txt and models.png over every complete evaluation;
    prints the table."""
    found = [r for r in [*_evaluated(run).values(), ORACLE] if run.is_complete(r)]
    step = run.step("evaluate_summary", config=protocol_of(cfg).protocol(),
                    inputs=_inputs(run, found), outputs=[SUMMARY], force=force)
    if step.done:
        summary = run.read_json(f"{SUMMARY}/table.json")
    else:
        collected = collect(run)
        summary = {"oracle": collected["oracle"], "models": collected["models"],
                   "map_k": cfg.map_k, "ks": list(cfg.ks)}
        for key, prefix in (("differences", "two-tower/"), ("differences_ranker", "ranker/")):
            reference = next((m for m in collected["models"] if m.startswith(prefix)), None)
            if reference:
                summary[key] = {
                    "reference": reference, "metric": f"map@{cfg.map_k}",
                    "intervals": paired_differences(run, cfg, reference, f"map@{cfg.map_k}"),
                    "intervals_keep": paired_differences(run, cfg, reference,
                                                         f"map@{cfg.map_k}", drop=False)}
        with step:
            rel = posixpath.relpath(step.tmp(SUMMARY), run.root)
            run.write_json(posixpath.join(rel, "table.json"), summary)
            text = "\n".join(format_summary(summary)) + "\n"
            run.write_bytes(posixpath.join(rel, "table.txt"), text.encode())
            if cfg.plots and summary["models"]:
                run.write_bytes(posixpath.join(rel, "models.png"), bars_png(summary))
    if SHOW_SUMMARY.get():
        for line in format_summary(summary):
            logger.info(line)
    return summary


def _rows(summary: dict) -> list[tuple[str, str, dict]]:
    """(label, setting, scored) for the oracle and every model and setting."""
    rows = []
    oracle = summary.get("oracle")
    if oracle:
        rows.append(("oracle (realized)", "", oracle["realized"]))
    for label, res in sorted(summary["models"].items(),
                             key=lambda kv: (not kv[0].startswith("two-tower"),
                                             not kv[0].startswith("ranker"), kv[0])):
        for setting in SETTINGS.values():
            if setting in res:
                rows.append((label, setting.split("_")[0], res[setting]))
    return rows


def format_summary(summary: dict) -> list[str]:
    """The metric table `make demo` prints: the oracle, every model, every baseline."""
    mk, ks = summary["map_k"], summary["ks"]
    models = summary["models"]
    any_res = next(iter(models.values()), None) or summary.get("oracle")
    if not any_res:
        return ["no evaluation yet"]
    lines = ["", f"test period {any_res['period'][0]} .. {any_res['period'][1]}: "
                 f"{any_res['customers']:,} customers bought"
                 + (f" ({any_res['customers_without_history']:,} without earlier purchases)"
                    if "customers_without_history" in any_res else "")
             + "; relevant = the distinct articles each bought in the period"]
    head = (f"{'model':22s} {'bought':6s} {f'MAP@{mk}':>7s} {'95% interval':>15s} "
            f"{f'R@{mk}':>7s} " + " ".join(f"{f'P@{k}':>6s} {f'R@{k}':>6s} {f'N@{k}':>6s}"
                                          for k in ks) + f" {f'cov@{mk}':>7s}")
    oracle = summary.get("oracle")
    if oracle:
        head += f" {'/oracle':>7s}"
    lines.append(head)
    for label, setting, scored in _rows(summary):
        # A model evaluated under other cutoffs shows nan where this protocol's are missing.
        m = defaultdict(lambda: float("nan"), scored["metrics"])
        ci = scored.get("ci", {})
        interval = ci.get(f"map@{mk}")
        line = (f"{label:22s} {setting:6s} {m[f'map@{mk}']:7.4f} "
                + (f"[{interval[0]:.4f},{interval[1]:.4f}]" if interval else " " * 15)
                + f" {m[f'recall@{mk}']:7.4f} "
                + " ".join(f"{m[f'precision@{k}']:6.4f} {m[f'recall@{k}']:6.4f} "
                           f"{m[f'ndcg@{k}']:6.4f}" for k in ks)
                + f" {m[f'coverage@{mk}']:7.4f}")
        if oracle:
            frac = scored.get("fraction_of_oracle", {}).get(f"map@{mk}")
            line += f" {frac:7.3f}" if frac is not None else f" {1.0:7.3f}"
        lines.append(line)
    if oracle:
        e = oracle["expected"]
        lines.append(f"{'oracle (expected)':22s} {'':6s} {e[f'map@{mk}']:7.4f} {'':15s} "
                     f"{e[f'recall@{mk}']:7.4f}   (the generator's expectation, "
                     f"{oracle['customers']:,} customers)")
    for diff in (summary.get("differences"), summary.get("differences_ranker")):
        for key, setting in (("intervals", "bought dropped"), ("intervals_keep", "bought kept")):
            if diff and diff.get(key):  # one line per reference and setting
                lines.append(f"{diff['reference']} minus each model, {diff['metric']}, "
                             f"{setting}, paired 95% bootstrap interval: " + "; ".join(
                                 f"vs {label} [{lo:+.4f}, {hi:+.4f}] "
                                 + ("better" if lo > 0 else "worse" if hi < 0
                                    else "not separable")
                                 for label, (lo, hi) in diff[key].items()))
    for label, res in sorted(summary["models"].items()):
        ranker = res.get("ranker")
        if ranker:
            r = dict(ranker["candidate_recall"])
            last = [k for k in ("union", "candidates_per_customer") if k in r]
            recall = ", ".join(f"{k} {r[k]}" for k in [*(k for k in r if k not in last), *last])
            lines.append(f"{label}: candidate recall on val (share of val purchases among the "
                         f"candidates): {recall}")
            lines.append(f"{label}: trained on {len(ranker['weeks'])} weeks before val, best "
                         f"round {ranker['best_iteration']}; bought articles "
                         f"{'dropped' if ranker['choices']['drop_bought'] else 'kept'} by "
                         f"default (chosen on val)")
            lines.extend(f"{label}: {note}" for note in ranker.get("notes", []))
    for label, res in sorted(summary["models"].items()):
        if res.get("choices"):
            c = res["choices"]
            lines.append(
                f"{label}: chosen on val: bought articles "
                f"{'dropped' if c['drop_bought'] else 'kept'} by default; customers without a "
                f"training positive ({res.get('cold_customers', 0):,} of the test buyers) get "
                + ("the model's vector from their features" if c["cold"] == "model"
                   else "popularity")
                + (f"; final score = ranking + retrieval at weight {c['retrieval_weight']:g}"
                   if c["retrieval_weight"] else "; final score = the ranking model"))
    return lines


# --------------------------------------------------------------------------------------------
# Plots (drawn by stylehub_ray.plots)
# --------------------------------------------------------------------------------------------
def bars_png(summary: dict) -> bytes:
    """Bars of MAP@k and recall@k of every model and setting against the oracle, with the
    bootstrap intervals as error bars."""
    mk = summary["map_k"]
    rows = [(f"{label} {setting}".strip(), scored) for label, setting, scored in _rows(summary)]
    return plots.model_bars_png(rows, (f"map@{mk}", f"recall@{mk}"),
                                "test period: models (blue), baselines (orange), oracle (grey)")


def two_tower_history(run: Run, variant: str) -> list[dict]:
    """The per-epoch metrics the two-tower trainer recorded (models/two-tower/<variant>/
    history.json, else the model's metadata)."""
    rel = f"{TWO_TOWER_MODELS}/{variant}/history.json"
    if run.exists(rel):
        history = run.read_json(rel)
        return history["history"] if isinstance(history, dict) else history
    from stylehub_ray.models.artifacts import load_meta

    return list(load_meta(run, "two-tower", variant).get("history", []))


def two_tower_plots(run: Run, cfg: EvaluateRankingConfig, folder: str) -> list[str]:
    """curves.png and articles_2d.png into ``folder`` (a path in the run's filesystem)."""
    from stylehub_ray.data.ingest import read_table
    from stylehub_ray.models.recommender import TwoTowerRecommender

    written = []
    history = two_tower_history(run, cfg.variant)
    if history:
        with run.fs.open_output_stream(posixpath.join(folder, "curves.png")) as f:
            f.write(plots.training_curves_png(history))
        written.append("curves.png")
    rec = TwoTowerRecommender.load(run, variant=cfg.variant, feature_set="test")
    articles = read_table(run, "raw/articles", ["article_idx", "product_group_name"])
    labels = np.empty(rec.n_articles, object)
    labels[articles.column("article_idx").to_numpy()] = articles.column(
        "product_group_name").to_numpy(zero_copy_only=False)
    with run.fs.open_output_stream(posixpath.join(folder, "articles_2d.png")) as f:
        f.write(plots.embedding_map_png(np.asarray(rec.article_vectors), labels,
                                        cfg.map_articles, cfg.seed))
    written.append("articles_2d.png")
    return written


__all__ = ["EvaluateRankingConfig", "EvaluateBaselinesConfig", "TestSet", "load_test_set",
           "load_training_interactions", "score", "bootstrap_intervals", "oracle_scores",
           "evaluate_baselines", "evaluate_two_tower", "summarize", "format_summary",
           "collect", "paired_differences", "BASELINES"]
