"""Validate and type H&M rows, vectorised: every row is kept or rejected with a reason.

Each validator takes a chunk parsed as strings (``csv_chunks.parse_chunk``) and returns one
table with the typed columns plus ``_reason``, ``_field``, ``_value`` and ``_line`` (null for
kept rows). A row that fails several checks is rejected for the first one, in the order the
checks are listed. Only rejected rows, which are rare, are touched in Python.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from stylehub_ray.data import schemas
from stylehub_ray.data.csv_chunks import to_csv_line

META = [("_chunk", pa.int32()), ("_record", pa.int64()), ("_reason", pa.string()),
        ("_field", pa.string()), ("_value", pa.string()), ("_line", pa.string())]
HEX64 = "^[0-9a-f]{64}$"
# Article ids are 10 digits with leading zeros in the Kaggle files; copies written by pandas or
# a spreadsheet carry them as integers (108775015 for 0108775015). Both mean the same id: the
# internal form is the int64 (``schemas.article_id_str`` gives the 10-digit text back).
DIGITS10 = "^[0-9]{1,10}$"
ARTICLE_ID_REASON = "article_id must be a number of at most 10 digits"
INT_RE = "^[+-]?[0-9]+$"
FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
# 1970-01-01 was a Thursday; H&M weeks run Wednesday to Tuesday (the last training week is
# 2020-09-16 .. 2020-09-22), so a week starts on days where (days - 6) % 7 == 0.
WEEK_ANCHOR = 6


class Checks:
    """Accumulates the first failed check of every row."""

    def __init__(self, raw: pa.Table):
        self.raw = raw
        self.code = np.zeros(raw.num_rows, np.int16)
        self.checks: list[tuple[str, str]] = [("", "")]

    def fail(self, bad: np.ndarray, field: str, reason: str) -> None:
        self.checks.append((field, reason))
        self.code[bad & (self.code == 0)] = len(self.checks) - 1

    @property
    def ok(self) -> np.ndarray:
        return self.code == 0

    def output(self, typed: dict[str, pa.Array], schema: pa.Schema,
               bad_width: list[tuple[int, str, int]], chunk: int, n_columns: int) -> pa.Table:
        n = self.raw.num_rows
        reason = np.full(n, None, object)
        field = np.full(n, None, object)
        value = np.full(n, None, object)
        line = np.full(n, None, object)
        rows = np.flatnonzero(~self.ok)
        if len(rows):
            # Every source column (an unnamed index column included), so ``line`` is the row
            # as the file has it.
            raw_cols = [self.raw.column(c) for c in self.raw.column_names
                        if c not in ("_chunk", "_record")]
            for r in rows:
                f, why = self.checks[self.code[r]]
                reason[r], field[r] = why, f
                value[r] = self.raw.column(f)[int(r)].as_py()
                line[r] = to_csv_line([col[int(r)].as_py() for col in raw_cols])
        cols = {name: typed[name] for name in schema.names}
        out = pa.table({
            **cols,
            "_chunk": self.raw.column("_chunk"), "_record": self.raw.column("_record"),
            "_reason": pa.array(reason, pa.string()), "_field": pa.array(field, pa.string()),
            "_value": pa.array(value, pa.string()), "_line": pa.array(line, pa.string()),
        }, schema=with_meta(schema))
        if bad_width:
            out = pa.concat_tables([out, width_rows(bad_width, schema, chunk, n_columns)])
        return out


def with_meta(schema: pa.Schema) -> pa.Schema:
    return pa.schema(list(schema) + [pa.field(n, t) for n, t in META])


def width_rows(bad: list[tuple[int, str, int]], schema: pa.Schema, chunk: int,
               n_columns: int) -> pa.Table:
    """Rows with the wrong number of fields: nothing typed, the original text kept."""
    n = len(bad)
    cols = {f.name: pa.nulls(n, f.type) for f in schema}
    return pa.table({
        **cols,
        "_chunk": pa.array([chunk] * n, pa.int32()),
        "_record": pa.array([b[0] for b in bad], pa.int64()),
        "_reason": pa.array([f"wrong column count: expected {n_columns}, got {b[2]}"
                             for b in bad]),
        "_field": pa.array(["*"] * n), "_value": pa.array([str(b[2]) for b in bad]),
        "_line": pa.array([b[1] for b in bad]),
    }, schema=with_meta(schema))


# -- vectorised parsers ---------------------------------------------------------------------
def week_of(days: pa.Array) -> pa.Array:
    """The H&M week of each date: the ISO date of its Wednesday, as a string."""
    d = days.cast(pa.int32()).to_numpy(zero_copy_only=False)
    start = (d - (d - WEEK_ANCHOR) % 7).astype(np.int32)
    return pa.array(start).cast(pa.date32()).cast(pa.string())


def _col(table: pa.Table, name: str) -> pa.Array:
    return table.column(name).combine_chunks()


def _mask(arr: pa.Array) -> np.ndarray:
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


def matches(col: pa.Array, pattern: str) -> np.ndarray:
    """Regex match, computed once per distinct value (ids repeat a lot in transactions)."""
    enc = pc.dictionary_encode(col)
    ok_values = _mask(pc.match_substring_regex(enc.dictionary, pattern))
    return ok_values[enc.indices.to_numpy(zero_copy_only=False)]


def parse_number(col: pa.Array, to: pa.DataType, pattern: str,
                 optional: bool = False) -> tuple[pa.Array, np.ndarray]:
    """(typed values with nulls where invalid or empty, ok mask). Empty is ok when optional."""
    empty = _mask(pc.equal(col, ""))
    try:  # fast path: every non-empty value parses
        filled = pc.if_else(pa.array(empty), pa.scalar("0"), col) if empty.any() else col
        values = pc.cast(filled, to)
        ok = np.ones(len(col), bool) if optional else ~empty
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        ok = matches(col, pattern) | (empty & optional)
        filled = pc.if_else(pa.array(ok & ~empty), col, pa.scalar("0"))
        values = pc.cast(filled, to)
    valid = ok & ~empty
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not valid.all():
        values = pc.if_else(pa.array(valid), values, pa.scalar(None, to))
    return values, ok


def blank_to_null(col: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)


# -- tables ---------------------------------------------------------------------------------
def validate_articles(raw: pa.Table, bad_width, chunk: int) -> pa.Table:
    checks = Checks(raw)
    ids = _col(raw, "article_id")
    id_ok = matches(ids, DIGITS10)
    checks.fail(~id_ok, "article_id", ARTICLE_ID_REASON)
    typed: dict[str, pa.Array] = {}
    typed["article_id"], _ = parse_number(
        pc.if_else(pa.array(id_ok), ids, pa.scalar("0")), pa.int64(), INT_RE)
    for c in schemas.ARTICLE_INT_COLUMNS:
        typed[c], ok = parse_number(_col(raw, c), pa.int32(), INT_RE)
        checks.fail(~ok, c, f"{c} must be an integer")
    for c in schemas.ARTICLES.names:
        if c not in typed and c != "article_idx":
            col = _col(raw, c)
            typed[c] = blank_to_null(col) if c == "detail_desc" else col
    typed["article_idx"] = pa.nulls(raw.num_rows, pa.int32())  # assigned after dedup
    return checks.output(typed, schemas.ARTICLES, bad_width, chunk,
                         raw.num_columns - 2)


def validate_customers(raw: pa.Table, bad_width, chunk: int) -> pa.Table:
    checks = Checks(raw)
    checks.fail(~matches(_col(raw, "customer_id"), HEX64), "customer_id",
                "customer_id must be 64 lower-case hex characters")
    typed: dict[str, pa.Array] = {"customer_id": _col(raw, "customer_id")}
    for c in ("FN", "Active"):
        typed[c], ok = parse_number(_col(raw, c), pa.float32(), FLOAT_RE, optional=True)
        checks.fail(~ok, c, f"{c} must be a number or blank")
    typed["age"], ok = parse_number(_col(raw, "age"), pa.float32(), FLOAT_RE, optional=True)
    checks.fail(~ok, "age", "age must be a number or blank")
    age = typed["age"].to_numpy(zero_copy_only=False)
    checks.fail(~np.isnan(age) & ((age < 0) | (age > 120)), "age", "age must be within 0..120")
    for c in ("club_member_status", "fashion_news_frequency"):
        typed[c] = blank_to_null(_col(raw, c))
    typed["postal_code"] = _col(raw, "postal_code")
    typed["customer_idx"] = pa.nulls(raw.num_rows, pa.int32())
    return checks.output(typed, schemas.CUSTOMERS, bad_width, chunk,
                         raw.num_columns - 2)


class TransactionValidator:
    """Transactions need the kept articles and customers: built once per worker process."""

    def __init__(self, lookups: dict, channels: tuple[int, ...] = (1, 2)):
        self.article_ids = np.asarray(lookups["article_ids"], np.int64)  # sorted: idx = rank
        self.customers = pd.Index(lookups["customer_ids"])  # sorted: idx = rank
        self.channels = np.array(channels, np.int64)

    FAST_TYPES = {"t_dat": pa.date32(), "customer_id": pa.string(), "article_id": pa.string(),
                  "price": pa.float64(), "sales_channel_id": pa.int64()}

    def validate_fast(self, t: pa.Table) -> pa.Table | None:
        """Typed rows with no problem at all -> the output table; anything else -> None."""
        price = t.column("price").combine_chunks().to_numpy()
        if not (np.isfinite(price) & (price > 0)).all():
            return None
        if not np.isin(t.column("sales_channel_id").combine_chunks().to_numpy(),
                       self.channels).all():
            return None
        cust = pc.dictionary_encode(t.column("customer_id").combine_chunks())
        names = cust.dictionary
        if not _mask(pc.match_substring_regex(names, HEX64)).all():
            return None
        c_idx = self.customers.get_indexer(names.to_numpy(zero_copy_only=False))
        if (c_idx < 0).any():
            return None
        art = pc.dictionary_encode(t.column("article_id").combine_chunks())
        if not _mask(pc.match_substring_regex(art.dictionary, DIGITS10)).all():
            return None
        a_ids = pc.cast(art.dictionary, pa.int64()).to_numpy()
        pos = np.searchsorted(self.article_ids, a_ids)
        pos_c = np.minimum(pos, max(len(self.article_ids) - 1, 0))
        if len(self.article_ids) == 0 or (self.article_ids[pos_c] != a_ids).any():
            return None
        a_rows = art.indices.to_numpy()
        days = t.column("t_dat").combine_chunks()
        return pa.table({
            "t_dat": days,
            "customer_idx": pa.array(c_idx[cust.indices.to_numpy()].astype(np.int32)),
            "article_id": pa.array(a_ids[a_rows]),
            "article_idx": pa.array(pos_c[a_rows].astype(np.int32)),
            "price": pa.array(price),
            "sales_channel_id": pc.cast(t.column("sales_channel_id"), pa.int8()),
            "week": week_of(days),
        }, schema=schemas.TRANSACTIONS)

    def validate(self, raw: pa.Table, bad_width, chunk: int) -> pa.Table:
        checks = Checks(raw)
        days = pc.strptime(_col(raw, "t_dat"), format="%Y-%m-%d", unit="s", error_is_null=True)
        days = pc.cast(days, pa.date32())
        checks.fail(_mask(pc.is_null(days)), "t_dat", "t_dat must be a date YYYY-MM-DD")
        cust = _col(raw, "customer_id")
        checks.fail(~matches(cust, HEX64), "customer_id",
                    "customer_id must be 64 lower-case hex characters")
        art = _col(raw, "article_id")
        art_ok = matches(art, DIGITS10)
        checks.fail(~art_ok, "article_id", ARTICLE_ID_REASON)
        price, ok = parse_number(_col(raw, "price"), pa.float64(), FLOAT_RE)
        p = price.to_numpy(zero_copy_only=False)
        checks.fail(~ok | ~np.isfinite(p) | ~(p > 0), "price",
                    "price must be a positive number")
        channel, ok = parse_number(_col(raw, "sales_channel_id"), pa.int64(), INT_RE)
        ch = channel.to_numpy(zero_copy_only=False)
        checks.fail(~ok | ~np.isin(np.nan_to_num(ch, nan=-1).astype(np.int64), self.channels),
                    "sales_channel_id",
                    f"sales_channel_id must be one of {', '.join(map(str, self.channels))}")
        # Lookups, once per distinct id.
        enc = pc.dictionary_encode(cust)
        c_idx = self.customers.get_indexer(enc.dictionary.to_numpy(zero_copy_only=False))
        c_idx = c_idx[enc.indices.to_numpy(zero_copy_only=False)]
        checks.fail(c_idx < 0, "customer_id", "customer_id not in customers.csv")
        a_num, _ = parse_number(pc.if_else(pa.array(art_ok), art, pa.scalar("0")), pa.int64(),
                                INT_RE)
        a = a_num.to_numpy(zero_copy_only=False)
        pos_c = np.minimum(np.searchsorted(self.article_ids, a), max(len(self.article_ids) - 1, 0))
        found = (self.article_ids[pos_c] == a if len(self.article_ids)
                 else np.zeros(len(a), bool))
        checks.fail(~found, "article_id", "article_id not in articles.csv")
        ok_rows = checks.ok
        typed = {
            "t_dat": days,
            "customer_idx": pa.array(np.where(ok_rows, c_idx, 0).astype(np.int32),
                                     mask=~ok_rows),
            "article_id": pa.array(np.where(ok_rows, a, 0), pa.int64(), mask=~ok_rows),
            "article_idx": pa.array(np.where(ok_rows, pos_c, 0).astype(np.int32),
                                    mask=~ok_rows),
            "price": price,
            "sales_channel_id": pa.array(np.nan_to_num(ch, nan=0).astype(np.int8),
                                         mask=~ok_rows),
            "week": pc.if_else(pa.array(ok_rows), week_of(pc.fill_null(days, 0)),
                               pa.scalar(None, pa.string())),
        }
        return checks.output(typed, schemas.TRANSACTIONS, bad_width, chunk,
                             raw.num_columns - 2)


def parse_and_validate(batch: dict, table: str) -> pa.Table:
    """Ray Data task for the small tables: one chunk spec in, one validated table out."""
    from stylehub_ray.data.csv_chunks import parse_chunk

    chunk, columns = chunk_of(batch)
    raw, bad_width = parse_chunk(chunk, columns)
    fn = {"articles": validate_articles, "customers": validate_customers}[table]
    return fn(raw, bad_width, chunk.index)


def chunk_of(batch: pa.Table) -> tuple:
    """The one chunk spec in a Ray Data batch (batch_size=1, pyarrow format)."""
    from stylehub_ray.data.csv_chunks import Chunk

    spec = batch.slice(0, 1).to_pylist()[0]
    return (Chunk(spec["uri"], int(spec["index"]), int(spec["start"]), int(spec["end"])),
            list(spec["columns"]))
