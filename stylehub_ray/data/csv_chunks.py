"""Read a CSV in byte-range chunks without losing a single row.

Ray Data's ``read_csv`` either fails the whole read on a malformed row or, with an
``invalid_row_handler``, drops it where nobody can see it. Ingest must keep every rejected row
with its reason and line, so it plans byte ranges here (split at newlines) and parses each range
with pyarrow in a Ray Data task, every column as a string, recording rows of the wrong width
instead of skipping them. Each output row carries ``_chunk`` and ``_record`` (its 1-based record
number inside the chunk, blank lines not counted, as pyarrow numbers them), from which the
driver later recovers global line numbers for the few rows that are quarantined.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from stylehub_ray.run import resolve_fs

WINDOW = 1 << 20


@dataclass(frozen=True)
class Chunk:
    uri: str
    index: int
    start: int
    end: int


def read_header(uri: str) -> tuple[list[str], int]:
    """(column names, byte offset of the first data row). Raises on an empty file."""
    fs, path = resolve_fs(uri)
    with fs.open_input_file(path) as f:
        head = f.read_at(min(WINDOW, f.size()), 0)
    return header_of(head, uri)


def header_of(head: bytes, uri: str) -> tuple[list[str], int]:
    """(column names, length of the header line) from a file's first bytes. A UTF-8
    byte-order mark and a CRLF line end are read through."""
    if not head:
        raise ValueError(f"{uri}: the file is empty (expected a header line)")
    nl = head.find(b"\n")
    line = head if nl < 0 else head[:nl]
    names = next(csv.reader([line.decode("utf-8-sig").rstrip("\r")]))
    return [n.strip() for n in names], (len(head) if nl < 0 else nl + 1)


def plan_chunks(uri: str, data_start: int, chunk_bytes: int) -> list[Chunk]:
    """Byte ranges of about ``chunk_bytes``, each ending just after a newline."""
    fs, path = resolve_fs(uri)
    chunks: list[Chunk] = []
    with fs.open_input_file(path) as f:
        size = f.size()
        start = data_start
        while start < size:
            end = min(size, start + chunk_bytes)
            while end < size:  # move the cut to just after the next newline
                window = f.read_at(WINDOW, end - 1)
                nl = window.find(b"\n")
                if nl >= 0:
                    end = end - 1 + nl + 1
                    break
                end += len(window) - 1
            end = min(end, size)
            chunks.append(Chunk(uri, len(chunks), start, end))
            start = end
    return chunks


def read_chunk_bytes(chunk: Chunk) -> bytes:
    fs, path = resolve_fs(chunk.uri)
    with fs.open_input_file(path) as f:
        return f.read_at(chunk.end - chunk.start, chunk.start)


def parse_typed(chunk: Chunk, columns: list[str], types: dict[str, pa.DataType],
                data: bytes | None = None) -> pa.Table | None:
    """The fast path: parse straight into typed columns. None when anything in the chunk does
    not fit (a value that does not convert, a row of the wrong width, a blank), so the caller
    re-reads it with :func:`parse_chunk`, which keeps every bad row's text."""
    data = read_chunk_bytes(chunk) if data is None else data
    bad: list[int] = []

    def on_invalid(row) -> str:
        bad.append(row.number)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=columns, use_threads=False,
                                           block_size=max(1 << 20, len(data) + 1)),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types=types,
                                                 include_columns=list(types)),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if bad or any(table.column(c).null_count for c in types):
        return None
    return table


def parse_chunk(chunk: Chunk, columns: list[str],
                data: bytes | None = None) -> tuple[pa.Table, list[tuple[int, str, int]]]:
    """Parse one chunk: (table of string columns + _chunk/_record, rows of the wrong width as
    (record number, text, number of fields))."""
    data = read_chunk_bytes(chunk) if data is None else data
    bad: list[tuple[int, str, int]] = []

    def on_invalid(row) -> str:
        bad.append((row.number, row.text, row.actual_columns))
        return "skip"

    table = pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(column_names=columns, use_threads=False,
                                       block_size=max(1 << 20, len(data) + 1)),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in columns},
            strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    n_records = table.num_rows + len(bad)
    if bad:
        bad_numbers = np.array([b[0] for b in bad], dtype=np.int64)
        records = np.setdiff1d(np.arange(1, n_records + 1), bad_numbers)
    else:
        records = np.arange(1, n_records + 1)
    table = table.append_column("_chunk", pa.array(np.full(table.num_rows, chunk.index,
                                                           np.int32)))
    table = table.append_column("_record", pa.array(records.astype(np.int64)))
    return table, bad


def count_records(chunk: Chunk) -> int:
    """Non-blank lines in a chunk: what pyarrow numbers records by."""
    lines = read_chunk_bytes(chunk).split(b"\n")
    return sum(1 for line in lines if line.strip(b"\r"))


def to_csv_line(values: list[str | None]) -> str:
    """A row's fields written back as one CSV line (quoted only where needed): the original
    line for files written that way, as the H&M files are."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(["" if v is None else v for v in values])
    return buf.getvalue()
