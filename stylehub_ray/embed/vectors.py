"""Vectors in Arrow: ``fixed_size_list<float32>[D]`` columns, read back as (N, D) numpy arrays.

Embedding tables store vectors as plain Arrow fixed-size lists (not Ray's tensor extension
type), so any Parquet reader (pandas, DuckDB, Spark) opens them without Ray.
"""

from __future__ import annotations

import posixpath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stylehub_ray.run import Run


def to_fixed_list(vectors: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """(N, D) float array -> fixed_size_list<float32>[D]; rows where ``valid`` is False are
    null (no vector)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    mask = None if valid is None else pa.array(~np.asarray(valid, dtype=bool))
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), d, mask=mask)


def from_fixed_list(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """fixed_size_list<float32>[D] -> (N, D) float32; null rows come back as zeros."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array(
            [], column.type)
    d = column.type.list_size
    out = np.zeros((len(column), d), np.float32)
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    if valid.any():
        flat = column.filter(pa.array(valid)).flatten().to_numpy(zero_copy_only=False)
        out[valid] = flat.reshape(-1, d)
    return out


def write_table(run: Run, folder: str, table: pa.Table, name: str = "part-0.parquet") -> None:
    """One Parquet file into a (temporary) output folder of the run's filesystem."""
    import pyarrow.parquet as pq

    run.fs.create_dir(folder, recursive=True)
    pq.write_table(table, posixpath.join(folder, name), filesystem=run.fs)


def read_file(run: Run, rel: str) -> bytes:
    with run.fs.open_input_stream(run.path(rel)) as f:
        return f.read()


def read_embeddings(run: Run, rel: str, columns: list[str] | None = None) -> pa.Table:
    """An embeddings table (``embeddings/images`` or ``embeddings/text``), in article_idx
    order (Ray Data writes its parts in no particular order)."""
    from stylehub_ray.data.ingest import read_table

    if not run.is_complete(rel):
        raise FileNotFoundError(f"{run.uri_of(rel)} is missing or incomplete (no _SUCCESS): "
                                f"run the stage that writes it first")
    table = read_table(run, rel, columns)
    return table.take(pc.sort_indices(table, [("article_idx", "ascending")]))
