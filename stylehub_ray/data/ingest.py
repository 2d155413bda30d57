"""`stylehub ingest`: validate, type and quarantine a source into the run's ``raw/`` tables.

The source layout is detected: the H&M Kaggle files, or Polyvore-U ``tuples_<U>/`` folders.
For H&M, Ray Data parses the CSVs in byte-range chunks in parallel (``csv_chunks``), validates
and types every row (``hm_validate``), and writes Parquet; rejected rows go to
``raw/quarantine/<table>`` with the reason, the field, the value, the line number and the
original line. For every table, rows read = rows kept + rows quarantined, checked here and
recorded in the manifest.
"""

from __future__ import annotations

import io
import logging
import posixpath
import re
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from stylehub_ray.config import IngestConfig, resolved
from stylehub_ray.data import csv_chunks, hm_validate, schemas
from stylehub_ray.run import Run, fingerprint_source, resolve_fs

logger = logging.getLogger(__name__)

H_AND_M = "hm"
POLYVORE = "polyvore"
HM_OUTPUTS = ["raw/articles", "raw/customers", "raw/transactions", "raw/article_map",
              "raw/customer_map", "raw/images", "raw/quarantine"]


class IngestError(ValueError):
    """A source that cannot be ingested at all (missing file or column)."""


def detect_layout(source: str) -> str:
    fs, root = resolve_fs(source)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        raise IngestError(f"{source}: not a folder (expected the H&M files or Polyvore-U "
                          f"tuples_<U>/ folders)")
    names = {posixpath.basename(i.path) for i in fs.get_file_info(pafs.FileSelector(root))}
    if any(n.startswith("tuples_") for n in names):
        from stylehub_ray.data.polyvore import is_polyvore_layout

        if "://" in source or is_polyvore_layout(root):
            return POLYVORE
    if {n for n in names if n.endswith(SOURCE_SUFFIXES)} & {
            name[: -len(".csv")] + s for name, _ in schemas.SOURCE_FILES.values()
            for s in SOURCE_SUFFIXES}:
        return H_AND_M
    raise IngestError(
        f"{source}: neither layout found: expected articles.csv, customers.csv and "
        f"transactions_train.csv (H&M) or tuples_<U>/ folders (Polyvore-U); found "
        f"{', '.join(sorted(names)) or 'nothing'}")


def ingest(source: str, run: Run, cfg: IngestConfig, force: bool = False) -> dict:
    """Ingest ``source`` into ``run``; returns the manifest entry (skipped when up to date)."""
    layout = detect_layout(source)
    if layout == POLYVORE:
        from stylehub_ray.data.ingest_outfits import ingest_polyvore

        return ingest_polyvore(source, run, cfg, force=force)
    return ingest_hm(source, run, cfg, force=force)


# ------------------------------------------------------------------------------------------
# H&M
# ------------------------------------------------------------------------------------------
@dataclass
class TableSource:
    table: str
    uri: str  # the plain CSV the chunks read: the source file, or its staged copy
    columns: list[str]
    chunks: list[csv_chunks.Chunk]
    origin: str = ""  # the file the user gave (quarantine rows and errors name it)

    def __post_init__(self) -> None:
        self.origin = self.origin or self.uri


# The forms each table circulates in: the Kaggle CSV, the same gzip-compressed, or a Parquet
# copy. The first present wins.
SOURCE_SUFFIXES = (".csv", ".csv.gz", ".parquet")
# A pandas index written with the data: an unnamed first column ("" or "Unnamed: 0").
_INDEX_COLUMN = re.compile(r"^(|Unnamed: \d+)$")


def _source_uri(source: str, name: str) -> str:
    return source.rstrip("/") + "/" + name


def locate_sources(source: str) -> dict[str, str]:
    """File name of each table in ``source`` (``articles.csv``, ``articles.csv.gz`` or
    ``articles.parquet``, ...); a clear error for a table with none of them."""
    fs, root = resolve_fs(source)
    out = {}
    for table, (name, _) in schemas.SOURCE_FILES.items():
        stem = name[: -len(".csv")]
        found = [stem + s for s in SOURCE_SUFFIXES
                 if fs.get_file_info(posixpath.join(root, stem + s)).type == pafs.FileType.File]
        if not found:
            raise IngestError(f"{_source_uri(source, name)}: missing ({table} file of the H&M "
                              f"layout; {', '.join(stem + s for s in SOURCE_SUFFIXES[1:])} "
                              f"are read too)")
        out[table] = found[0]
    return out


def source_header(uri: str) -> list[str]:
    """Column names of a source file in any of its forms (cheap: the first line or the
    Parquet footer); an unnamed index column is named ``_index``."""
    fs, path = resolve_fs(uri)
    if uri.endswith(".parquet"):
        names = pq.ParquetFile(path, filesystem=fs).schema_arrow.names
    elif uri.endswith(".gz"):
        with fs.open_input_stream(path, compression="gzip") as f:
            head = f.read(csv_chunks.WINDOW)
        names, _ = csv_chunks.header_of(head, uri)
    else:
        names, _ = csv_chunks.read_header(uri)
    return ["_index" if i == 0 and _INDEX_COLUMN.match(n) else n for i, n in enumerate(names)]


def check_headers(source: str, names: dict[str, str]) -> dict[str, list[str]]:
    """Every required column in each file's header; otherwise a clear error."""
    out = {}
    for table, (_, required) in schemas.SOURCE_FILES.items():
        uri = _source_uri(source, names[table])
        header = source_header(uri)
        missing = [c for c in required if c not in header]
        if missing:
            raise IngestError(f"{uri}: missing column(s) {', '.join(missing)} "
                              f"(header has: {', '.join(header)})")
        out[table] = header
    return out


def stage_csv(uri: str, run: Run, rel: str, columns: list[str]) -> str:
    """A plain CSV copy of a gzip CSV or a Parquet table at ``rel`` in the run (byte-range
    chunks need an uncompressed CSV that every worker can open); returns its URI."""
    fs, path = resolve_fs(uri)
    target = run.path(rel)
    run.fs.create_dir(posixpath.dirname(target), recursive=True)
    if uri.endswith(".gz"):
        with fs.open_input_stream(path, compression="gzip") as src, \
                run.fs.open_output_stream(target) as dst:
            while block := src.read(16 << 20):
                dst.write(block)
        return run.uri_of(rel)
    pf = pq.ParquetFile(path, filesystem=fs)
    wanted = [c for c in columns if c != "_index"]
    header = pa.schema([pf.schema_arrow.field(c) for c in wanted])
    with run.fs.open_output_stream(target) as dst:
        writer = None
        for batch in pf.iter_batches(columns=wanted, batch_size=256_000):
            table = _csv_ready(pa.Table.from_batches([batch], header))
            if writer is None:
                writer = pacsv.CSVWriter(dst, table.schema, write_options=pacsv.WriteOptions(
                    quoting_style="needed"))
            writer.write_table(table)
        if writer is None:  # an empty table: the header alone
            dst.write((",".join(wanted) + "\n").encode())
        else:
            writer.close()
    return run.uri_of(rel)


def _csv_ready(table: pa.Table) -> pa.Table:
    """Columns as the Kaggle CSV writes them: dates as YYYY-MM-DD, NaN as blank."""
    for i, f in enumerate(table.schema):
        col = table.column(i)
        if pa.types.is_timestamp(f.type):
            table = table.set_column(i, f.name, pc.cast(col, pa.date32()))
        elif pa.types.is_floating(f.type):
            table = table.set_column(i, f.name, pc.if_else(pc.is_nan(col),
                                                           pa.scalar(None, f.type), col))
    return table


def check_sources(source: str, cfg: IngestConfig, run: Run | None = None,
                  staging: str = "") -> dict[str, TableSource]:
    """Every file present, every required column in its header; gzip and Parquet files are
    staged as plain CSV under ``staging`` in ``run``. Then each file's byte-range chunks."""
    names = locate_sources(source)
    headers = check_headers(source, names)
    out = {}
    for table, name in names.items():
        origin = _source_uri(source, name)
        uri = origin
        if not name.endswith(".csv"):
            if run is None:
                raise IngestError(f"{origin}: a compressed or Parquet source needs a run to "
                                  f"stage its CSV copy in")
            uri = stage_csv(origin, run, posixpath.join(staging, f"{table}.csv"),
                            headers[table])
        header, data_start = csv_chunks.read_header(uri)
        header = ["_index" if i == 0 and _INDEX_COLUMN.match(n) else n
                  for i, n in enumerate(header)]
        chunk_bytes = int(cfg.chunk_mb * (1 << 20))
        out[table] = TableSource(table, uri, header,
                                 csv_chunks.plan_chunks(uri, data_start, chunk_bytes), origin)
    return out


def _specs(src: TableSource) -> list[dict]:
    return [{"uri": c.uri, "index": c.index, "start": c.start, "end": c.end,
             "columns": src.columns} for c in src.chunks]


def _dataset(src: TableSource):
    import ray.data

    return ray.data.from_items(_specs(src), override_num_blocks=max(1, len(src.chunks)))


def _split(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    bad = pc.is_valid(table.column("_reason"))
    return table.filter(pc.invert(bad)), table.filter(bad)


def _original_lines(src: TableSource, where: list[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """Original text of rows addressed by (chunk, record), re-read from the source."""
    out = {}
    for chunk in sorted({c for c, _ in where}):
        raw, _ = csv_chunks.parse_chunk(src.chunks[chunk], src.columns)
        records = raw.column("_record").to_numpy()
        cols = [raw.column(c) for c in src.columns]
        for c, r in where:
            if c == chunk:
                i = int(np.searchsorted(records, r))
                out[(c, r)] = csv_chunks.to_csv_line([col[i].as_py() for col in cols])
    return out


def _quarantine_table(src: TableSource, bad: pa.Table) -> pa.Table:
    """The rejected rows in the published quarantine schema, with global line numbers."""
    n = bad.num_rows
    if n == 0:
        return schemas.QUARANTINE.empty_table()
    chunks = bad.column("_chunk").to_numpy()
    # Records before each chunk (only chunks up to the last one with a rejected row).
    last = int(chunks.max())
    counts = np.array([csv_chunks.count_records(c) for c in src.chunks[:last]], np.int64)
    prior = np.r_[0, np.cumsum(counts)]
    line_number = 1 + prior[chunks] + bad.column("_record").to_numpy()  # header is line 1
    return pa.table({
        "table": pa.array([src.table] * n), "source": pa.array([src.origin] * n),
        "line_number": pa.array(line_number, pa.int64()), "line": bad.column("_line"),
        "field": bad.column("_field"), "value": bad.column("_value"),
        "reason": bad.column("_reason"),
    }, schema=schemas.QUARANTINE)


def _dedupe(src: TableSource, kept: pa.Table, key: str) -> tuple[pa.Table, pa.Table]:
    """Keep the first row of every id (file order); later ones are rejected as duplicates."""
    order = pc.sort_indices(kept, [("_chunk", "ascending"), ("_record", "ascending")])
    kept = kept.take(order)
    ids = kept.column(key).to_pandas()
    dup = ids.duplicated(keep="first").to_numpy()
    if not dup.any():
        return kept, kept.slice(0, 0)
    rows = kept.filter(pa.array(dup))
    where = list(zip(rows.column("_chunk").to_pylist(), rows.column("_record").to_pylist()))
    lines = _original_lines(src, where)
    value = [str(v) if key != "article_id" else schemas.article_id_str(v)
             for v in rows.column(key).to_pylist()]
    rows = (rows.set_column(rows.schema.get_field_index("_reason"), "_reason",
                            pa.array([f"duplicate {key}"] * rows.num_rows))
                .set_column(rows.schema.get_field_index("_field"), "_field",
                            pa.array([key] * rows.num_rows))
                .set_column(rows.schema.get_field_index("_value"), "_value", pa.array(value))
                .set_column(rows.schema.get_field_index("_line"), "_line",
                            pa.array([lines[w] for w in where])))
    return kept.filter(pa.array(~dup)), rows


def _assign_idx(kept: pa.Table, key: str, idx: str, schema: pa.Schema) -> pa.Table:
    """Dense idx = rank of the id in sorted order: stable for the same set of ids."""
    kept = kept.sort_by(key)
    kept = kept.set_column(kept.schema.get_field_index(idx), idx,
                           pa.array(np.arange(kept.num_rows, dtype=np.int32)))
    return kept.select(schema.names).cast(schema)


def _write_parquet(table: pa.Table, run: Run, path: str, name: str = "part-0.parquet") -> None:
    run.fs.create_dir(path, recursive=True)
    pq.write_table(table, posixpath.join(path, name), filesystem=run.fs)


def _small_table(src: TableSource, key: str, idx: str, schema: pa.Schema) -> tuple[pa.Table,
                                                                                     pa.Table, int]:
    """Articles or customers: validated on Ray Data, deduplicated and indexed on the driver."""
    import ray

    ds = _dataset(src).map_batches(hm_validate.parse_and_validate, batch_size=1,
                                   fn_kwargs={"table": src.table}, batch_format="pyarrow")
    parts = ray.get(ds.to_arrow_refs())
    table = pa.concat_tables(parts) if parts else hm_validate.with_meta(schema).empty_table()
    kept, bad = _split(table)
    kept, dups = _dedupe(src, kept, key)
    bad = pa.concat_tables([bad, dups])
    return _assign_idx(kept, key, idx, schema), _quarantine_table(src, bad), table.num_rows


def _parquet_rows(run: Run, path: str) -> int:
    """Rows actually written under ``path``, read back from the Parquet footers."""
    total = 0
    for info in run.fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        if info.type == pafs.FileType.File and info.path.endswith(".parquet"):
            total += pq.ParquetFile(info.path, filesystem=run.fs).metadata.num_rows
    return total


def ingest_hm(source: str, run: Run, cfg: IngestConfig, force: bool = False) -> dict:
    import ray

    from stylehub_ray.ray_utils import ensure_ray

    names = locate_sources(source)
    check_headers(source, names)  # a missing column fails before anything runs
    oracle_dir = _source_uri(source, "_oracle")
    has_oracle = _exists(oracle_dir)
    outputs = HM_OUTPUTS + (["raw/oracle"] if has_oracle else [])
    inputs = {"source": source, "layout": H_AND_M, "fingerprint": fingerprint_source(source)}
    for name in (*names.values(), "images", "_oracle"):
        if _exists(_source_uri(source, name)):
            inputs[name] = fingerprint_source(_source_uri(source, name))
    step = run.step("ingest", config=resolved(cfg), inputs=inputs, outputs=outputs, force=force)
    if step.done:
        logger.info(f"ingest: {run.uri} is up to date with {source}; skipped (--force redoes it)")
        return step.previous() | {"skipped": True}
    ensure_ray()
    counts: dict[str, dict] = {}
    staging = f"_staging/ingest-{uuid.uuid4().hex[:8]}"
    quarantined: dict[str, pa.Table] = {}
    try:
        with step:
            sources = check_sources(source, cfg, run, staging)
            with step.time("articles_s"):
                articles = _checked_small_table(run, cfg, sources["articles"], "article_id",
                                                "article_idx", schemas.ARTICLES, counts,
                                                quarantined)
            with step.time("customers_s"):
                customers = _checked_small_table(run, cfg, sources["customers"], "customer_id",
                                                 "customer_idx", schemas.CUSTOMERS, counts,
                                                 quarantined)
            _write_parquet(articles, run, step.tmp("raw/articles"))
            _write_parquet(customers, run, step.tmp("raw/customers"))
            _write_parquet(articles.select(["article_id", "article_idx"]), run,
                           step.tmp("raw/article_map"))
            _write_parquet(customers.select(["customer_id", "customer_idx"]), run,
                           step.tmp("raw/customer_map"))

            with step.time("transactions_s"):
                lookups = ray.put({"article_ids": articles.column("article_id").to_numpy(),
                                   "customer_ids": customers.column("customer_id").to_numpy(
                                       zero_copy_only=False)})
                q_tx, read, kept = _transactions(sources["transactions"], lookups, cfg, run,
                                                 step)
                quarantined["transactions"] = q_tx
                counts["transactions"] = _reconcile("transactions", read, kept, q_tx.num_rows)
                counts["transactions"]["unknown_reference"] = _unknown_references(q_tx)
                _check_form(run, sources["transactions"], q_tx, read, cfg, quarantined)
            qdir = step.tmp("raw/quarantine")
            for name, q in quarantined.items():
                _write_parquet(q, run, posixpath.join(qdir, name))

            with step.time("images_s"):
                images, orphans = _images(source, articles, cfg)
                _write_parquet(images, run, step.tmp("raw/images"))
            status = images.column("status").to_pylist()
            counts["images"] = {s: status.count(s) for s in ("present", "missing", "unreadable")}
            counts["images"]["files_without_article"] = orphans
            if has_oracle:
                _copy_tree(oracle_dir, run, step.tmp("raw/oracle"))
                step.extra["generator"] = _generator_meta(oracle_dir)
            step.counts = counts
    finally:
        run.delete(staging)
    log_summary(counts)
    return run.entry("ingest")


def _checked_small_table(run: Run, cfg: IngestConfig, src: TableSource, key: str, idx: str,
                         schema: pa.Schema, counts: dict, quarantined: dict) -> pa.Table:
    """Articles or customers validated, counted and checked for form; the kept rows."""
    kept, q, read = _small_table(src, key, idx, schema)
    quarantined[src.table] = q
    counts[src.table] = _reconcile(src.table, read, kept.num_rows, q.num_rows)
    _check_form(run, src, q, read, cfg, quarantined)
    return kept


# Reasons that are not about a row's form: it parsed, but names a customer or article the
# other tables lack (common in a sample cut from a larger data set), or repeats an id.
_REFERENCE_REASONS = ("customer_id not in customers.csv", "article_id not in articles.csv")


def _unknown_references(q: pa.Table) -> int:
    reasons = q.column("reason").to_pylist()
    return sum(r in _REFERENCE_REASONS for r in reasons)


FAILED_QUARANTINE = "failed/ingest/quarantine"


def _check_form(run: Run, src: TableSource, q: pa.Table, read: int, cfg: IngestConfig,
                quarantined: dict[str, pa.Table]) -> None:
    """Fail when more than ``cfg.max_malformed_share`` of a table's rows do not parse: that
    is a file in a form ingest does not read, not a few bad rows. The error names the file, the
    field, the commonest reason and an example line; the quarantine so far is kept under
    ``failed/ingest/quarantine/<table>`` for inspection."""
    reasons = q.column("reason").to_pylist()
    form = [i for i, r in enumerate(reasons)
            if r not in _REFERENCE_REASONS and not r.startswith("duplicate ")]
    if not read or len(form) / read <= cfg.max_malformed_share:
        return
    pairs = list(zip(q.column("field").to_pylist(), reasons))
    (field, reason), n = Counter(pairs[i] for i in form).most_common(1)[0]
    example = next(i for i in form if pairs[i] == (field, reason))
    kept_at = run.uri_of(FAILED_QUARANTINE)
    run.delete(FAILED_QUARANTINE)
    for name, table in quarantined.items():
        _write_parquet(table, run, run.path(posixpath.join(FAILED_QUARANTINE, name)))
    raise IngestError(
        f"{src.origin}: {len(form):,} of {read:,} rows ({len(form) / read:.0%}) do not parse, "
        f"more than ingest.max_malformed_share={cfg.max_malformed_share}; the commonest: field "
        f"{field}: {reason} ({n:,} rows), e.g. line {q.column('line_number')[example].as_py()}: "
        f"{q.column('line')[example].as_py()!r}. The quarantined rows are kept in {kept_at}")


def _reconcile(table: str, read: int, kept: int, quarantined: int) -> dict:
    if read != kept + quarantined:
        raise RuntimeError(f"{table}: rows read {read} != kept {kept} + quarantined "
                           f"{quarantined}: rows were lost; this is a bug")
    return {"read": read, "kept": kept, "quarantined": quarantined}


def transaction_chunk_task(batch: pa.Table, lookups: list, channels: tuple[int, ...],
                           out_uri: str) -> pa.Table:
    """Ray Data task: parse, validate and write one chunk of transactions, in one pass.

    Kept rows are written as ``week=<wednesday>/part-<chunk>.parquet`` (a retried task
    overwrites its own files, so retries never duplicate rows). Returns one report row: records
    read, rows kept, and the rejected rows (Arrow IPC bytes; usually none).
    """
    from stylehub_ray.ray_utils import worker_cached

    chunk, columns = hm_validate.chunk_of(batch)
    # The lookups are built once per worker process, not once per chunk.
    validator = worker_cached(
        lookups[0], lambda value: hm_validate.TransactionValidator(value, channels))
    data = csv_chunks.read_chunk_bytes(chunk)
    kept = None
    typed = csv_chunks.parse_typed(chunk, columns, validator.FAST_TYPES, data)
    if typed is not None:
        kept, records = validator.validate_fast(typed), typed.num_rows
        bad = hm_validate.with_meta(schemas.TRANSACTIONS).empty_table()
    if kept is None:  # something in the chunk is wrong: re-read it keeping every line's text
        raw, wrong_width = csv_chunks.parse_chunk(chunk, columns, data)
        out = validator.validate(raw, wrong_width, chunk.index)
        records = out.num_rows
        kept, bad = _split(out)
        kept = kept.drop_columns([name for name, _ in hm_validate.META])
    write_weeks(kept, out_uri, chunk.index)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, bad.schema) as writer:
        writer.write_table(bad)
    return pa.table({"chunk": [chunk.index], "records": [records], "kept": [kept.num_rows],
                     "rejected": [sink.getvalue().to_pybytes()]})


def write_weeks(table: pa.Table, out_uri: str, chunk: int) -> None:
    """Hive partitions by ``week``: one file per week present in the chunk. The H&M file is
    sorted by date, so a chunk is usually already in week order and is only sliced."""
    if table.num_rows == 0:
        return
    fs, root = resolve_fs(out_uri)
    days = table.column("t_dat").combine_chunks().cast(pa.int32()).to_numpy()
    week = days - (days - hm_validate.WEEK_ANCHOR) % 7
    if not np.all(week[1:] >= week[:-1]):
        order = np.argsort(week, kind="stable")
        table, week = table.take(pa.array(order)), week[order]
    table = table.drop_columns(["week"])
    bounds = np.flatnonzero(week[1:] != week[:-1]) + 1
    names = hm_validate.week_of(pa.array(week[np.r_[0, bounds]].astype(np.int32)))
    for name, lo, hi in zip(names.to_pylist(), np.r_[0, bounds], np.r_[bounds, len(week)]):
        folder = posixpath.join(root, f"week={name}")
        fs.create_dir(folder, recursive=True)
        pq.write_table(table.slice(lo, hi - lo),
                       posixpath.join(folder, f"part-{chunk:05d}.parquet"), filesystem=fs)


def _transactions(src: TableSource, lookups, cfg: IngestConfig, run: Run, step) -> tuple[
        pa.Table, int, int]:
    import ray

    reports = _dataset(src).map_batches(
        transaction_chunk_task, batch_size=1, batch_format="pyarrow",
        fn_kwargs={"lookups": [lookups], "channels": tuple(cfg.channels),
                   "out_uri": step.tmp_uri("raw/transactions")},
    )
    parts = ray.get(reports.to_arrow_refs())
    report = pa.concat_tables(parts)
    rejected = [pa.ipc.open_stream(b).read_all() for b in report.column("rejected").to_pylist()]
    bad = pa.concat_tables(rejected) if rejected else hm_validate.with_meta(
        schemas.TRANSACTIONS).empty_table()
    read = int(pc.sum(report.column("records")).as_py() or 0)
    return _quarantine_table(src, bad), read, _parquet_rows(run, step.tmp("raw/transactions"))


def _images(source: str, articles: pa.Table, cfg: IngestConfig) -> tuple[pa.Table, int]:
    """One row per kept article: its image path and status (present / missing / unreadable)."""
    fs, root = resolve_fs(source)
    img_root = posixpath.join(root, "images")
    files: dict[str, str] = {}
    if fs.get_file_info(img_root).type == pafs.FileType.Directory:
        for info in fs.get_file_info(pafs.FileSelector(img_root, recursive=True)):
            if info.type == pafs.FileType.File and info.path.endswith(".jpg"):
                files[posixpath.basename(info.path)[:-4]] = info.path
    ids = articles.column("article_id").to_pylist()
    names = [schemas.article_id_str(a) for a in ids]
    expected = [posixpath.join(img_root, n[:3], f"{n}.jpg") for n in names]
    status, reason, paths = [], [], []
    for name, want in zip(names, expected):
        found = files.get(name)
        if found is None:
            status.append("missing")
            reason.append(f"no file images/{name[:3]}/{name}.jpg")
            paths.append(None)
        else:
            status.append("present")
            reason.append(None if found == want else f"found at {found}, not {want}")
            paths.append(found)
    if cfg.verify_images:
        _verify_images(source, paths, status, reason)
    orphans = len(set(files) - set(names))
    if "://" in source:  # keep URIs readable by other processes
        scheme = source.split("://", 1)[0]
        paths = [None if p is None else f"{scheme}://{p}" for p in paths]
    return pa.table({
        "article_id": articles.column("article_id"), "article_idx": articles.column("article_idx"),
        "path": pa.array(paths, pa.string()), "status": pa.array(status),
        "reason": pa.array(reason, pa.string()),
    }, schema=schemas.IMAGES), orphans


def check_images(batch: dict) -> dict:
    """Ray Data task: does each file open as an image? Pillow's verify reads the whole file, so
    each is read in one request and verified in memory (Pillow's own small reads on an object
    store's file are a request each)."""
    from PIL import Image

    source = batch["source"][0]
    fs, _ = resolve_fs(source)
    errors = []
    for path in batch["path"]:
        try:
            with fs.open_input_stream(str(path)) as f:
                data = f.read()
            with Image.open(io.BytesIO(data)) as im:
                im.verify()
            errors.append("")
        except Exception as exc:  # noqa: BLE001 - any decoder failure means unreadable
            errors.append(f"unreadable image: {type(exc).__name__}: {exc}"[:300])
    return {"path": batch["path"], "error": np.array(errors, dtype=object)}


def _verify_images(source: str, paths: list, status: list, reason: list) -> None:
    import ray.data

    present = [i for i, p in enumerate(paths) if p is not None]
    if not present:
        return
    ds = ray.data.from_items([{"path": paths[i], "source": source} for i in present],
                             override_num_blocks=max(1, min(64, len(present) // 2000 + 1)))
    checked = ds.map_batches(check_images, batch_size=2000, batch_format="numpy").take_all()
    errors = {row["path"]: row["error"] for row in checked}
    for i in present:
        err = errors.get(paths[i], "")
        if err:
            status[i], reason[i] = "unreadable", err


def _exists(uri: str) -> bool:
    fs, path = resolve_fs(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _copy_tree(src_uri: str, run: Run, dst: str) -> None:
    src_fs, src_root = resolve_fs(src_uri)
    if isinstance(src_fs, pafs.LocalFileSystem) and isinstance(run.fs, pafs.LocalFileSystem):
        shutil.copytree(src_root, dst, dirs_exist_ok=True)
        return
    pafs.copy_files(src_root, dst, source_filesystem=src_fs, destination_filesystem=run.fs)


def _generator_meta(oracle_uri: str) -> dict:
    import json

    fs, root = resolve_fs(oracle_uri)
    with fs.open_input_stream(posixpath.join(root, "generator.json")) as f:
        meta = json.loads(f.read().decode())
    return {"version": meta.get("version"), "params_hash": meta.get("params_hash")}


def log_summary(counts: dict) -> None:
    rows = [(t, c.get("read", ""), c.get("kept", ""), c.get("quarantined", ""))
            for t, c in counts.items() if "read" in c]
    logger.info(f"{'table':14s} {'read':>12s} {'kept':>12s} {'quarantined':>12s}")
    for t, r, k, q in rows:
        logger.info(f"{t:14s} {r:>12,} {k:>12,} {q:>12,}")
    for t, c in counts.items():
        if c.get("unknown_reference") and c.get("read"):
            n, share = c["unknown_reference"], c["unknown_reference"] / c["read"]
            logger.info(f"{t}: {n:,} of {c['read']:,} rows ({share:.1%}) name a customer or "
                        f"article the other files lack (quarantined; expected when the files "
                        f"are a sample cut from a larger data set)")
    if "images" in counts:
        im = counts["images"]
        logger.info("images         " + ", ".join(f"{k} {v:,}" for k, v in im.items()))


def read_table(run: Run, rel: str, columns: list[str] | None = None) -> pa.Table:
    """Read a raw/ table back (all partitions), for tests, reports and later stages."""
    import pyarrow.dataset as pads

    ds = pads.dataset(run.path(rel), filesystem=run.fs, format="parquet",
                      partitioning="hive", exclude_invalid_files=True,
                      ignore_prefixes=["_", "."])
    return ds.to_table(columns=columns)


__all__ = ["ingest", "ingest_hm", "detect_layout", "IngestError", "read_table"]
