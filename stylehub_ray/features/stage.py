"""`stylehub features`: temporal split, then features, negatives and preprocessing on Ray Data.

Split first, so nothing from an evaluation period leaks into training features:
- ``last-week`` (default, the H&M competition's protocol): ``test`` is the last 7 days, ``val``
  the 7 days before, ``train`` everything earlier;
- ``ratio`` (the paper): dates in order, continuous periods holding 70% / 15% / 15% of the rows
  (a day is never cut in two).
Two feature sets are always built: ``train`` (as of the start of ``val``: for scoring ``val``,
and for the training examples when ``label_days`` = 0) and ``test`` (as of the start of
``test``: for scoring ``test``). With ``label_days`` > 0 (the default, 91) a third, ``fit``, is
built as of ``label_days`` before ``val`` (cutoff ``fit_start``), and the training positives
are the purchases from then to ``val`` only, joined with it: the
model then learns from features that do not yet count the purchase it is asked to predict, as
it will be asked on ``val`` and ``test`` (new articles without sales history included).

Customer and article features are exact: rows are routed to ``buckets`` groups by
``customer_idx % buckets`` (``article_idx % buckets``) and each Ray Data group computes the
features of complete customers (articles) with pandas (``aggregates.py``). The number of
buckets is configuration, not cluster size, so outputs do not depend on the cluster.
Negative sampling runs per customer bucket, seeded by (seed, bucket): deterministic, and
nothing is collected on the driver but the small per-customer tables.
"""

from __future__ import annotations

import logging
import posixpath
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stylehub_ray.config import FeaturesConfig, resolved
from stylehub_ray.data.ingest import read_table
from stylehub_ray.data.io import read_parquet
from stylehub_ray.features import aggregates as agg
from stylehub_ray.features.preprocess import Preprocessor
from stylehub_ray.run import Run

logger = logging.getLogger(__name__)

OUTPUTS = ["features/customers", "features/articles", "features/interactions",
           "features/training_examples", "features/preprocess"]
TX_COLUMNS = ["t_dat", "customer_idx", "article_idx", "price", "sales_channel_id"]
CUSTOMER_ATTRIBUTES = ["age", "FN", "Active", "club_member_status", "fashion_news_frequency"]
ARTICLE_CATEGORIES = [
    "product_type_name", "product_group_name", "graphical_appearance_name", "colour_group_name",
    "perceived_colour_value_name", "perceived_colour_master_name", "department_name",
    "index_name", "index_group_name", "section_name", "garment_group_name",
]
CUSTOMER_CATEGORIES = ["club_member_status", "fashion_news_frequency", "main_channel"]


class SplitError(ValueError):
    """A split with no transactions: names the dates."""


# ------------------------------------------------------------------------------------------
# Split
# ------------------------------------------------------------------------------------------
def compute_split(day_counts: pd.Series, cfg: FeaturesConfig) -> dict[str, str]:
    """Cutoff dates from rows per day (index: date). Every split must hold rows."""
    days = day_counts.sort_index()
    first, last = days.index.min(), days.index.max()
    if cfg.split == "last-week":
        test_start = last - timedelta(days=6)
        val_start = last - timedelta(days=13)
    else:
        share_before = (days.cumsum() - days) / days.sum()
        r_train, r_val = cfg.ratios[0], cfg.ratios[0] + cfg.ratios[1]
        # The first day with at least that share of rows before it; none when the last days
        # hold more than the later periods' share (a few days of data).
        after_train = share_before.index[share_before.to_numpy() >= r_train]
        after_val = share_before.index[share_before.to_numpy() >= r_val]
        if len(after_train) == 0 or len(after_val) == 0:
            raise SplitError(
                f"split ratio {tuple(cfg.ratios)}: {len(days)} day(s) of data from {first} to "
                f"{last}, and no day boundary leaves the val and test shares after it (the "
                f"last day alone holds {days.iloc[-1] / days.sum():.0%} of the rows); whole "
                f"days go to one period, so this split needs more days of transactions")
        val_start, test_start = after_train[0], after_val[0]
    cut = {"train_start": first, "val_start": val_start, "test_start": test_start,
           "test_end": last}
    periods = {"train": (first, val_start - timedelta(days=1)),
               "val": (val_start, test_start - timedelta(days=1)), "test": (test_start, last)}
    for name, (lo, hi) in periods.items():
        n = int(days[(days.index >= lo) & (days.index <= hi)].sum())
        if n == 0:
            span = (f"would end on {hi}, before it starts on {lo}" if hi < lo
                    else f"{lo} .. {hi} has no transactions")
            hint = ("; with fewer than 15 days of data use --set features.split=ratio"
                    if cfg.split == "last-week" else "")
            raise SplitError(f"split {cfg.split}: the {name} period {span} "
                             f"(data from {first} to {last}){hint}")
    return {k: str(v) for k, v in cut.items()}


def split_of(t_dat: np.ndarray, cut: dict[str, str]) -> np.ndarray:
    d = np.asarray(t_dat).astype("datetime64[D]")
    return np.where(d < np.datetime64(cut["val_start"]), "train",
                    np.where(d < np.datetime64(cut["test_start"]), "val", "test"))


# ------------------------------------------------------------------------------------------
# Ray Data tasks
# ------------------------------------------------------------------------------------------
# Ray Data tasks take Arrow batches and convert them with pyarrow's own to_pandas: plain numpy
# dtypes (Ray's pandas batches carry Arrow-backed dtypes, on which e.g. % is not implemented).
BUCKET_KEYS = {"by_customer": "customer_idx", "by_article": "article_idx"}


def bucketize(batch: pa.Table, scratch: str, buckets: int) -> pa.Table:
    """Ray Data task: route one block's rows to per-bucket Parquet files, by customer and by
    article (a shuffle through the run's storage), and return the block's rows per day.

    File names come from the block's content, so a retried task overwrites its own files.
    """
    import hashlib

    from stylehub_ray.run import resolve_fs

    fs, root = resolve_fs(scratch)
    c = batch.column("customer_idx").to_numpy()
    a = batch.column("article_idx").to_numpy()
    digest = hashlib.sha1(np.array([batch.num_rows, c.sum(), a.sum(), (c * 7 + a).sum()],
                                   np.int64).tobytes()).hexdigest()[:16]
    for name, key in BUCKET_KEYS.items():
        b = batch.column(key).to_numpy() % buckets
        order = np.argsort(b, kind="stable")
        sorted_b = b[order]
        part = batch.take(pa.array(order))
        bounds = np.flatnonzero(sorted_b[1:] != sorted_b[:-1]) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(b)]):
            folder = posixpath.join(root, name, f"bucket={int(sorted_b[lo])}")
            fs.create_dir(folder, recursive=True)
            pq.write_table(part.slice(lo, hi - lo), posixpath.join(folder, f"{digest}.parquet"),
                           filesystem=fs)
    days = pd.Series(batch.column("t_dat").to_numpy(zero_copy_only=False)).value_counts()
    return pa.table({"t_dat": pa.array(list(days.index), pa.date32()),
                     "rows": pa.array(days.to_numpy(np.int64))})


def read_bucket(scratch: str, name: str, bucket: int) -> pd.DataFrame:
    """Every row of one bucket (empty frame when the bucket got none), in a stable order."""
    import pyarrow.dataset as pads

    from stylehub_ray.run import resolve_fs

    fs, root = resolve_fs(scratch)
    folder = posixpath.join(root, name, f"bucket={bucket}")
    if fs.get_file_info(folder).type == pa.fs.FileType.NotFound:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in TX_COLUMNS})
    files = sorted(i.path for i in fs.get_file_info(pa.fs.FileSelector(folder))
                   if i.path.endswith(".parquet"))
    # Dates as datetime64, not Python date objects: converting those one by one cost most of
    # the aggregation time.
    return pads.dataset(files, filesystem=fs, format="parquet").to_table().to_pandas(
        date_as_object=False)


def _bucket_of(batch: pa.Table) -> int:
    return int(batch.column("bucket")[0].as_py())


def features_task(batch: pa.Table, scratch: str, kind: str, cutoffs: dict[str, str],
                  recent_days: int) -> pd.DataFrame:
    """Ray Data task: the features of every customer (article) in one bucket, for each
    feature set (cutoff)."""
    name = "by_customer" if kind == "customer" else "by_article"
    tx = read_bucket(scratch, name, _bucket_of(batch))
    fn = agg.customer_features if kind == "customer" else agg.article_features
    frames = []
    for feature_set, cutoff in cutoffs.items():
        if len(tx):
            frames.append(fn(tx, cutoff, recent_days).reset_index().assign(
                feature_set=feature_set))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def interactions_task(batch: pa.Table, cut: dict[str, str]) -> pa.Table:
    """Ray Data task: day of week, month, weekend flag and split of each transaction."""
    import pyarrow.compute as pc

    days = batch.column("t_dat")
    dow = pc.cast(pc.day_of_week(days), pa.int8())  # 0 = Monday
    return (batch.append_column("day_of_week", dow)
                 .append_column("month", pc.cast(pc.month(days), pa.int8()))
                 .append_column("is_weekend", pc.cast(pc.greater_equal(dow, 5), pa.int8()))
                 .append_column("split", pa.array(split_of(days.to_numpy(), cut))))


def examples_task(batch: pa.Table, scratch: str, shared: list, cutoff: str, n_articles: int,
                  k: int, seed: int, label_start: str | None = None) -> pa.Table | pd.DataFrame:
    """Ray Data task: the training positives of one customer bucket (distinct customer,
    article, day before ``cutoff``; with ``label_start``, on or after it only) plus k sampled
    negatives each (articles the customer did not buy before ``cutoff``), shuffled."""
    bucket = _bucket_of(batch)
    tx = read_bucket(scratch, "by_customer", bucket)
    if len(tx) == 0:
        return pd.DataFrame()
    tx = tx[tx["t_dat"].to_numpy() < np.datetime64(cutoff)]
    if len(tx) == 0:
        return pd.DataFrame()
    from stylehub_ray.ray_utils import worker_cached

    ctx = worker_cached(shared[0])
    bought = np.unique(tx["customer_idx"].to_numpy(np.int64) * n_articles
                       + tx["article_idx"].to_numpy(np.int64))
    if label_start is not None:
        tx = tx[tx["t_dat"].to_numpy() >= np.datetime64(label_start)]
        if len(tx) == 0:
            return pd.DataFrame()
    pos = (tx.drop_duplicates(["customer_idx", "article_idx", "t_dat"])
             .sort_values(["customer_idx", "t_dat", "article_idx"], kind="stable")
             .reset_index(drop=True))
    rng = np.random.default_rng([seed, bucket])
    cust = pos["customer_idx"].to_numpy(np.int64)
    first_sale = ctx.get("first_sale")
    owner, neg_article = agg.sample_negatives(
        cust, bought, n_articles, k, rng, ctx["popularity"],
        pos_day=(pos["t_dat"].to_numpy().astype("datetime64[D]").astype(np.int64)
                 if first_sale is not None else None),
        first_sale=first_sale)
    rows = pd.DataFrame({
        "customer_idx": np.r_[cust, cust[owner]].astype(np.int32),
        "article_idx": np.r_[pos["article_idx"].to_numpy(), neg_article].astype(np.int32),
        "t_dat": np.r_[pos["t_dat"].to_numpy(), pos["t_dat"].to_numpy()[owner]],
        "label": np.r_[np.ones(len(pos), np.int8), np.zeros(len(owner), np.int8)],
    })
    rows = pd.concat([rows, agg.interaction_features(rows["t_dat"])], axis=1)
    # The customer's features, repeated on each of their positives and negatives.
    joined = ctx["customers"].iloc[rows["customer_idx"].to_numpy()].reset_index(drop=True)
    rows = pd.concat([rows, joined.drop(columns=["customer_idx"])], axis=1)
    rows = rows.iloc[rng.permutation(len(rows))].reset_index(drop=True)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    return table.set_column(table.schema.get_field_index("t_dat"), "t_dat",
                            table.column("t_dat").cast(pa.date32()))


# ------------------------------------------------------------------------------------------
# The stage
# ------------------------------------------------------------------------------------------
def build_features(run: Run, cfg: FeaturesConfig, force: bool = False) -> dict:
    import ray
    import ray.data

    from stylehub_ray.ray_utils import ensure_ray

    for rel in ("raw/transactions", "raw/customers", "raw/articles"):
        if not run.is_complete(rel):
            raise FileNotFoundError(f"{run.uri}/{rel}: not there or incomplete; run "
                                    f"`stylehub ingest SOURCE --run {run.uri}` first")
    inputs = {rel: run.marker(rel)["fingerprint"]
              for rel in ("raw/transactions", "raw/customers", "raw/articles")}
    step = run.step("features", config=resolved(cfg), inputs=inputs, outputs=OUTPUTS,
                    force=force)
    if step.done:
        logger.info(f"features: {run.uri} is up to date; skipped (--force redoes it)")
        return step.previous() | {"skipped": True}
    ensure_ray()
    customers = read_table(run, "raw/customers").to_pandas()
    articles = read_table(run, "raw/articles").to_pandas()
    scratch_rel = f"_tmp/features-scratch-{step.fingerprint}"
    scratch = run.uri_of(scratch_rel)
    buckets = ray.data.from_items([{"bucket": b} for b in range(cfg.buckets)],
                                  override_num_blocks=cfg.buckets)
    with step:
        try:
            with step.time("bucketize_s"):
                tx = read_parquet(run, "raw/transactions", TX_COLUMNS,
                                  target_bytes=int(cfg.block_mb * (1 << 20))).materialize()
                per_day = tx.map_batches(bucketize, batch_format="pyarrow", batch_size=None,
                                         fn_kwargs={"scratch": scratch,
                                                    "buckets": cfg.buckets}).to_pandas()
                day_counts = per_day.groupby("t_dat")["rows"].sum()
                day_counts.index = [d if isinstance(d, date) else pd.Timestamp(d).date()
                                    for d in day_counts.index]
            cut = compute_split(day_counts, cfg)
            if cfg.label_days:
                cut["fit_start"] = fit_start(cut, cfg.label_days)
            step.extra["cutoffs"] = cut
            step.counts = _build(run, step, cfg, cut, day_counts, tx, buckets, scratch,
                                 customers, articles)
        finally:
            run.delete(scratch_rel)
    log_features(run.entry("features"))
    return run.entry("features")


def _build(run: Run, step, cfg: FeaturesConfig, cut: dict, day_counts: pd.Series, tx,
           buckets, scratch: str, customers: pd.DataFrame, articles: pd.DataFrame) -> dict:
    import ray

    n_articles = len(articles)
    data_start = np.datetime64(cut["train_start"])
    counts: dict[str, dict] = {"split_rows": {}}
    period = split_of(np.array(day_counts.index, dtype="datetime64[D]"), cut)
    for name in ("train", "val", "test"):
        counts["split_rows"][name] = int(day_counts.to_numpy()[period == name].sum())
    feature_sets = {"train": cut["val_start"], "test": cut["test_start"]}
    if cut.get("fit_start"):
        feature_sets["fit"] = cut["fit_start"]
    examples_set = "fit" if "fit" in feature_sets else "train"
    frames: dict[str, dict[str, pd.DataFrame]] = {"customer": {}, "article": {}}
    with step.time("aggregates_s"):
        for kind, table, attrs in (("customer", customers,
                                    customers[["customer_idx", *CUSTOMER_ATTRIBUTES]]),
                                   ("article", articles, articles)):
            computed = buckets.map_batches(
                features_task, batch_size=1, batch_format="pyarrow",
                fn_kwargs={"scratch": scratch, "kind": kind, "cutoffs": feature_sets,
                           "recent_days": cfg.recent_days}).to_pandas()
            key = f"{kind}_idx"
            for name, cutoff in feature_sets.items():
                never = int((np.datetime64(cutoff) - data_start).astype(int)) + 1
                part = (computed[computed["feature_set"] == name].drop(columns=["feature_set"])
                        .set_index(key).sort_index() if len(computed) else computed)
                full, none = _finish(part, len(table), kind, never)
                frames[kind][name] = full.merge(attrs, on=key)
                counts.setdefault(f"{name}_features", {"cutoff": cutoff}).update({
                    f"{kind}s": len(table), f"{kind}s_without_history": none})
                folder = posixpath.join(step.tmp(f"features/{kind}s"), f"feature_set={name}")
                run.fs.create_dir(folder, recursive=True)
                pq.write_table(pa.Table.from_pandas(frames[kind][name], preserve_index=False),
                               posixpath.join(folder, "part-0.parquet"), filesystem=run.fs)

    with step.time("interactions_s"):
        tx.map_batches(interactions_task, fn_kwargs={"cut": cut},
                       batch_format="pyarrow").write_parquet(
            step.tmp_uri("features/interactions"), partition_cols=["split"])

    with step.time("negatives_s"):
        popularity = None
        if cfg.negative_sampling == "popularity":
            popularity = frames["article"][examples_set].sort_values("article_idx")[
                "sales_count"].to_numpy(np.float64)
        train_c = frames["customer"][examples_set].sort_values("customer_idx")
        shared = ray.put({"customers": train_c[
            ["customer_idx", *agg.CUSTOMER_NUMERIC, "main_channel", *CUSTOMER_ATTRIBUTES]]
            .reset_index(drop=True), "popularity": popularity,
            "first_sale": (first_sale_days(frames["article"]["train"], cut["val_start"])
                           if cfg.negatives_on_sale else None)})
        # Streamed to Parquet (at full scale the examples are ~5x the training rows).
        buckets.map_batches(
            examples_task, batch_size=1, batch_format="pyarrow",
            fn_kwargs={"scratch": scratch, "shared": [shared], "cutoff": cut["val_start"],
                       "n_articles": n_articles, "k": cfg.negatives, "seed": cfg.seed,
                       "label_start": cut.get("fit_start")},
        ).write_parquet(step.tmp_uri("features/training_examples"))
        positives, negatives = _label_counts(run, step.tmp("features/training_examples"))
        # A customer who bought (nearly) every article can leave a positive short.
        counts["training_examples"] = {"positives": positives, "negatives": negatives,
                                       "negatives_short": positives * cfg.negatives - negatives}

    with step.time("preprocess_s"):
        pre = Preprocessor.fit(
            {"customer": frames["customer"]["train"], "article": frames["article"]["train"]},
            numeric={"customer": agg.CUSTOMER_NUMERIC + ["age", "FN", "Active"],
                     "article": agg.ARTICLE_NUMERIC},
            categorical={"customer": CUSTOMER_CATEGORIES,
                         "article": ARTICLE_CATEGORIES + ["main_channel"]})
        target = posixpath.join(step.tmp("features/preprocess"), "preprocess.json")
        with run.fs.open_output_stream(target) as f:
            f.write(pre.to_json().encode())

    return counts


NEVER_SOLD = np.int64(1) << 40  # a first-sale day after any positive's day


def first_sale_days(articles: pd.DataFrame, cutoff: str) -> np.ndarray:
    """Day number of each article's first sale (row = article_idx) from the features as of
    ``cutoff`` (exact for every day before it, which is all the training examples need);
    :data:`NEVER_SOLD` for articles without a sale before it."""
    a = articles.sort_values("article_idx")
    cut = np.datetime64(cutoff, "D").astype(np.int64)
    first = cut - a["days_since_first_sale"].to_numpy(np.int64)
    return np.where(a["has_history"].to_numpy() > 0, first, NEVER_SOLD)


def fit_start(cut: dict, label_days: int) -> str:
    """The ``fit`` feature set's cutoff: ``label_days`` before ``val``, after the first day."""
    start = date.fromisoformat(str(cut["val_start"])) - timedelta(days=label_days)
    if start <= date.fromisoformat(str(cut["train_start"])):
        raise SplitError(f"features.label_days={label_days}: the label window would start "
                         f"{start}, not after the data's first day {cut['train_start']}; use "
                         f"fewer days")
    return start.isoformat()


def _label_counts(run: Run, path: str) -> tuple[int, int]:
    """(positives, negatives) read back from the written examples' label column."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    files = [i.path for i in run.fs.get_file_info(pa.fs.FileSelector(path, recursive=True))
             if i.path.endswith(".parquet")]
    if not files:
        return 0, 0
    labels = pads.dataset(files, filesystem=run.fs, format="parquet").to_table(
        columns=["label"]).column("label")
    positives = int(pc.sum(labels).as_py() or 0)
    return positives, len(labels) - positives


def _finish(features: pd.DataFrame, n: int, kind: str, never: int) -> tuple[pd.DataFrame, int]:
    medians = {c: float(features[c].median()) if len(features) else 0.0
               for c in agg.PRICE_COLUMNS[kind]}
    channel = int(features["main_channel"].mode().iloc[0]) if len(features) else 2
    return agg.complete(features, np.arange(n), kind, never, medians, channel)


def log_features(entry: dict) -> None:
    cut = entry.get("cutoffs", {})
    c = entry.get("counts", {})
    logger.info(f"split {entry['config']['split']}: train {cut.get('train_start')} .. "
                f"val {cut.get('val_start')} .. test {cut.get('test_start')} .. "
                f"{cut.get('test_end')}"
                + (f"; training labels from {cut['fit_start']} (features as of then)"
                   if cut.get("fit_start") else ""))
    rows = c.get("split_rows", {})
    logger.info("rows: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()))
    ex = c.get("training_examples", {})
    if ex:
        logger.info(f"training examples: {ex['positives']:,} positives, "
                    f"{ex['negatives']:,} negatives"
                    + (f" ({ex['negatives_short']:,} short)" if ex.get("negatives_short") else ""))


def load_features(run: Run, kind: str, feature_set: str = "train") -> pd.DataFrame:
    """features/customers or features/articles for one feature set, as pandas."""
    import pyarrow.compute as pc

    table = read_table(run, f"features/{kind}")
    return table.filter(pc.field("feature_set") == feature_set).drop_columns(
        ["feature_set"]).to_pandas()
