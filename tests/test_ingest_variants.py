"""Ingest reads the H&M files in the forms people have them, and fails loudly on unreadable ones.

Each variant is the tiny source rewritten one way (no photos: only the tables matter here); its
tables must come out exactly as the tiny run's, with nothing quarantined.
"""

from __future__ import annotations

import gzip
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest

from stylehub_ray.config import IngestConfig
from stylehub_ray.data.ingest import IngestError, ingest, read_table
from stylehub_ray.run import Run

FILES = ("articles.csv", "customers.csv", "transactions_train.csv")
CFG = IngestConfig(verify_images=False)


def _copy_tables(tiny_hm, dst):
    dst.mkdir(parents=True)
    for name in FILES:
        shutil.copy(tiny_hm / name, dst / name)
    return dst


def _read(path, **kw) -> pd.DataFrame:
    """A table as pandas reads it by default: ids as integers, dates as timestamps."""
    return pd.read_csv(path, parse_dates=["t_dat"] if "transactions" in path.name else None,
                       **kw)


def _same_tables(run: Run, reference: Run) -> None:
    counts = run.entry("ingest")["counts"]
    for table in ("articles", "customers", "transactions"):
        assert counts[table]["quarantined"] == 0, (table, read_table(
            run, f"raw/quarantine/{table}").to_pylist()[:3])
        assert counts[table]["kept"] == reference.entry("ingest")["counts"][table]["kept"]
    for rel, key in (("raw/articles", "article_id"), ("raw/customers", "customer_id")):
        assert read_table(run, rel).sort_by(key).equals(read_table(reference, rel).sort_by(key))
    cols = ["t_dat", "customer_idx", "article_id", "article_idx", "price", "sales_channel_id"]
    order = [(c, "ascending") for c in cols]
    got = read_table(run, "raw/transactions", cols).sort_by(order)
    want = read_table(reference, "raw/transactions", cols).sort_by(order)
    assert got.equals(want)


def _ingest(src, tmp_path) -> Run:
    run = Run(str(tmp_path / "run"))
    ingest(str(src), run, CFG)
    return run


def test_ids_as_integers_without_leading_zeros(tiny_hm, tiny_run, tmp_path):
    src = _copy_tables(tiny_hm, tmp_path / "src")
    for name in FILES:  # written back as pandas writes them: 108775015 for 0108775015
        _read(src / name).to_csv(src / name, index=False)
    assert (src / "articles.csv").read_text().splitlines()[1].split(",")[0][0] != "0"
    _same_tables(_ingest(src, tmp_path), tiny_run)


def test_unnamed_index_column_first(tiny_hm, tiny_run, tmp_path):
    src = _copy_tables(tiny_hm, tmp_path / "src")
    for name in FILES:
        pd.read_csv(src / name, dtype=str, keep_default_na=False).to_csv(src / name)
    assert (src / "customers.csv").read_text().startswith(",customer_id,")
    _same_tables(_ingest(src, tmp_path), tiny_run)


def test_utf8_byte_order_mark(tiny_hm, tiny_run, tmp_path):
    src = _copy_tables(tiny_hm, tmp_path / "src")
    for name in FILES:
        (src / name).write_bytes(b"\xef\xbb\xbf" + (src / name).read_bytes())
    _same_tables(_ingest(src, tmp_path), tiny_run)


def test_crlf_line_ends(tiny_hm, tiny_run, tmp_path):
    src = _copy_tables(tiny_hm, tmp_path / "src")
    for name in FILES:
        (src / name).write_bytes((src / name).read_bytes().replace(b"\n", b"\r\n"))
    _same_tables(_ingest(src, tmp_path), tiny_run)


def test_gzip_csvs(tiny_hm, tiny_run, tmp_path):
    src = _copy_tables(tiny_hm, tmp_path / "src")
    for name in FILES:
        (src / f"{name}.gz").write_bytes(gzip.compress((src / name).read_bytes()))
        (src / name).unlink()
    run = _ingest(src, tmp_path)
    _same_tables(run, tiny_run)
    assert not run.exists("_staging") or not list((tmp_path / "run" / "_staging").iterdir())


def test_parquet_copies(tiny_hm, tiny_run, tmp_path):
    src = _copy_tables(tiny_hm, tmp_path / "src")
    for name in FILES:
        _read(src / name).to_parquet(src / name.replace(".csv", ".parquet"))
        (src / name).unlink()
    assert pq.read_schema(src / "articles.parquet").field("article_id").type == "int64"
    _same_tables(_ingest(src, tmp_path), tiny_run)


def test_mostly_unreadable_table_fails_naming_file_field_reason_line(tiny_hm, ray_head,
                                                                     tmp_path):
    src = _copy_tables(tiny_hm, tmp_path / "src")
    lines = (src / "transactions_train.csv").read_text().splitlines()
    # Dates written day-first: every row but the first 40% fails to parse.
    keep = int(len(lines) * 0.4)
    bad = [",".join(["/".join(reversed(f[0].split("-")))] + f[1:])
           for f in (line.split(",") for line in lines[keep:])]
    (src / "transactions_train.csv").write_text("\n".join(lines[:keep] + bad) + "\n")
    run = Run(str(tmp_path / "run"))
    with pytest.raises(IngestError) as err:
        ingest(str(src), run, CFG)
    msg = str(err.value)
    assert "transactions_train.csv" in msg and "field t_dat" in msg
    assert "t_dat must be a date YYYY-MM-DD" in msg and bad[0][:10] in msg
    assert "max_malformed_share=0.5" in msg
    q = read_table(run, "failed/ingest/quarantine/transactions")
    assert q.num_rows == len(bad)
    assert not run.is_complete("raw/transactions")
    # The share is a setting: allowed, the rows stay quarantined and ingest completes.
    ingest(str(src), run, IngestConfig(verify_images=False, max_malformed_share=0.7))
    assert run.entry("ingest")["counts"]["transactions"]["quarantined"] == len(bad)


def test_unknown_references_stay_quarantined_with_their_share(tiny_hm, ray_head, tmp_path,
                                                              logged):
    src = _copy_tables(tiny_hm, tmp_path / "src")
    # A sample cut from a larger data set: most customers gone, their purchases orphaned.
    custs = (src / "customers.csv").read_text().splitlines()
    (src / "customers.csv").write_text("\n".join(custs[: len(custs) // 5]) + "\n")
    run = _ingest(src, tmp_path)
    c = run.entry("ingest")["counts"]["transactions"]
    assert c["unknown_reference"] == c["quarantined"] > c["read"] / 2
    share = f"{c['unknown_reference'] / c['read']:.1%}"
    assert any(line.startswith(f"transactions: {c['unknown_reference']:,} of {c['read']:,} "
                               f"rows ({share}) name a customer or article")
               for line in logged())
