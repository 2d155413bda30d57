"""Ingest: typed tables, stable idx, images, oracle copy, and every kind of bad input."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import copy_source

from stylehub_ray.config import IngestConfig
from stylehub_ray.data import schemas
from stylehub_ray.data.ingest import IngestError, ingest, read_table
from stylehub_ray.run import Run


def _csv_rows(path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip()) - 1


def test_tiny_ingest_tables_and_counts(tiny_hm, tiny_run):
    entry = tiny_run.entry("ingest")
    assert entry["status"] == "complete"
    for table, name in (("articles", "articles.csv"), ("customers", "customers.csv"),
                        ("transactions", "transactions_train.csv")):
        c = entry["counts"][table]
        assert c["read"] == _csv_rows(tiny_hm / name)
        assert c["kept"] == c["read"] and c["quarantined"] == 0
    tx = read_table(tiny_run, "raw/transactions")
    assert tx.num_rows == entry["counts"]["transactions"]["kept"]
    assert tx.schema.field("t_dat").type == schemas.TRANSACTIONS.field("t_dat").type
    # Partitioned by H&M week: every week key is a Wednesday and the rows lie in its 7 days.
    weeks = np.array(tx.column("week").to_pylist(), dtype="datetime64[D]")
    days = tx.column("t_dat").to_numpy().astype("datetime64[D]")
    offset = (days - weeks).astype(np.int64)
    assert np.all((offset >= 0) & (offset < 7))
    assert {str(w.astype(object).weekday()) for w in np.unique(weeks)} == {"2"}


def test_dense_idx_is_rank_of_sorted_id(tiny_run):
    arts = read_table(tiny_run, "raw/articles")
    ids = arts.column("article_id").to_numpy()
    idx = arts.column("article_idx").to_numpy()
    assert np.array_equal(np.sort(idx), np.arange(len(ids)))
    assert np.array_equal(ids[np.argsort(idx)], np.sort(ids))
    cmap = read_table(tiny_run, "raw/customer_map")
    cids = np.array(cmap.column("customer_id").to_pylist())
    assert list(cids[np.argsort(cmap.column("customer_idx").to_numpy())]) == sorted(cids)
    tx = read_table(tiny_run, "raw/transactions")
    amap = dict(zip(ids.tolist(), idx.tolist()))
    assert all(amap[a] == i for a, i in zip(tx.column("article_id").to_pylist()[:500],
                                            tx.column("article_idx").to_pylist()[:500]))


def test_images_and_oracle(tiny_hm, tiny_run):
    images = read_table(tiny_run, "raw/images")
    oracle = pq.read_table(tiny_hm / "_oracle" / "articles.parquet")
    expected_missing = int((~oracle.column("has_image").to_numpy()).sum())
    status = images.column("status").to_pylist()
    assert status.count("missing") == expected_missing
    assert status.count("present") == images.num_rows - expected_missing
    present = [p for p, s in zip(images.column("path").to_pylist(), status) if s == "present"]
    name = present[0].rsplit("/", 1)[1]
    assert len(name) == len("0123456789.jpg") and present[0].split("/")[-2] == name[:3]
    assert tiny_run.is_complete("raw/oracle")
    assert tiny_run.entry("ingest")["generator"]["params_hash"] == json.loads(
        (tiny_hm / "_oracle" / "generator.json").read_text())["params_hash"]


def test_rerun_is_skipped_and_force_redoes(tiny_hm, ray_head, tmp_path):
    run = Run(str(tmp_path / "run"))
    first = ingest(str(tiny_hm), run, IngestConfig())
    assert "skipped" not in first
    again = ingest(str(tiny_hm), run, IngestConfig())
    assert again["skipped"] is True
    changed = ingest(str(tiny_hm), run, IngestConfig(chunk_mb=0.05))
    assert "skipped" not in changed  # a config change redoes the stage
    forced = ingest(str(tiny_hm), run, IngestConfig(chunk_mb=0.05), force=True)
    assert "skipped" not in forced


def test_file_uri_run(tiny_hm, ray_head, tmp_path):
    run = Run(f"file://{tmp_path}/uri-run")
    ingest(str(tiny_hm), run, IngestConfig())
    assert run.is_complete("raw/transactions")
    assert read_table(run, "raw/customers").num_rows == _csv_rows(tiny_hm / "customers.csv")


# --------------------------------------------------------------------------------------------
# Bad input: each kind lands in quarantine with its reason; nothing is lost.
# --------------------------------------------------------------------------------------------
def _lines(path):
    return path.read_text().splitlines()


@pytest.fixture(scope="module")
def bad_source(tiny_hm, tmp_path_factory):
    src = copy_source(tiny_hm, tmp_path_factory.mktemp("bad") / "src")
    arts, custs, txs = (_lines(src / n) for n in ("articles.csv", "customers.csv",
                                                  "transactions_train.csv"))
    art_id = arts[1].split(",")[0]
    cust_id = custs[1].split(",")[0]
    ok = f"2020-01-02,{cust_id},{art_id},0.0254,2"
    bad_tx = {
        "t_dat must be a date YYYY-MM-DD": f"2020-13-45,{cust_id},{art_id},0.0254,2",
        "price must be a positive number": f"2020-01-02,{cust_id},{art_id},-0.5,2",
        "price zero": f"2020-01-02,{cust_id},{art_id},0,1",
        "price text": f"2020-01-02,{cust_id},{art_id},cheap,1",
        "price inf": f"2020-01-02,{cust_id},{art_id},inf,1",
        "sales_channel_id must be one of 1, 2": f"2020-01-02,{cust_id},{art_id},0.02,3",
        "channel text": f"2020-01-02,{cust_id},{art_id},0.02,web",
        "customer_id must be 64 lower-case hex characters": f"2020-01-02,abc123,{art_id},0.02,1",
        "article_id must be a number of at most 10 digits":
            f"2020-01-02,{cust_id},12345678901,0.02,1",
        "article_id not in articles.csv": f"2020-01-02,{cust_id},0999999999,0.02,1",
        "customer_id not in customers.csv": f"2020-01-02,{'f' * 64},{art_id},0.02,1",
        "wrong column count: expected 5, got 6": ok + ",extra",
        "wrong column count: expected 5, got 4": f"2020-01-02,{cust_id},{art_id},0.02",
    }
    # Bad rows in the middle of the file, so line numbers are checked across chunks.
    mid = len(txs) // 2
    new_tx = txs[:mid] + list(bad_tx.values()) + txs[mid:]
    (src / "transactions_train.csv").write_text("\n".join(new_tx) + "\n")
    dup_article = arts[2]
    bad_art = {
        "duplicate article_id": dup_article,
        "article_id must be a number of at most 10 digits": "01234ABCDE" + arts[3][10:],
        "product_type_no must be an integer": ",".join(
            [arts[4].split(",")[0][:-3] + "999"] + [arts[4].split(",")[1], "x", "seven"]
            + arts[4].split(",")[4:]),
        "wrong column count: expected 25, got 3": "0000000001,0000000,Thing",
    }
    (src / "articles.csv").write_text("\n".join(arts + list(bad_art.values())) + "\n")
    fields = custs[2].split(",")
    bad_cust = {
        "duplicate customer_id": custs[2],
        "age must be a number or blank": ",".join(["a" * 64, "", "", "ACTIVE", "NONE", "abc",
                                                   "p" * 64]),
        "age must be within 0..120": ",".join(["b" * 64, "", "", "ACTIVE", "NONE", "150",
                                               "p" * 64]),
        "customer_id must be 64 lower-case hex characters": ",".join(
            ["C" * 64] + fields[1:]),
        "FN must be a number or blank": ",".join(["d" * 64, "yes", "", "ACTIVE", "NONE",
                                                  "30.0", "p" * 64]),
    }
    (src / "customers.csv").write_text("\n".join(custs + list(bad_cust.values())) + "\n")
    # A corrupt JPEG: the image is reported unreadable, the job goes on.
    jpg = sorted((src / "images").rglob("*.jpg"))[0]
    jpg.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return {"src": src, "tx": bad_tx, "art": bad_art, "cust": bad_cust, "mid": mid,
            "corrupt": jpg.stem, "n_tx": len(new_tx) - 1, "n_art": len(arts) - 1 + len(bad_art),
            "n_cust": len(custs) - 1 + len(bad_cust)}


@pytest.fixture(scope="module")
def bad_run(bad_source, ray_head, tmp_path_factory):
    run = Run(str(tmp_path_factory.mktemp("bad_run")))
    # Small chunks so the bad rows fall in a later chunk than the first.
    ingest(str(bad_source["src"]), run, IngestConfig(chunk_mb=0.05))
    return run


def _quarantine(run, table):
    return read_table(run, f"raw/quarantine/{table}").to_pylist()


def test_bad_transactions_quarantined_with_reason_and_line(bad_source, bad_run):
    q = _quarantine(bad_run, "transactions")
    assert len(q) == len(bad_source["tx"])
    by_line = {row["line"]: row for row in q}
    for label, line in bad_source["tx"].items():
        row = by_line[line]  # the original line is kept verbatim
        reason = label if not label.startswith(("price ", "channel ")) else None
        if reason:
            assert row["reason"] == reason, (label, row)
        elif label.startswith("price"):
            assert row["reason"] == "price must be a positive number" and row["field"] == "price"
        else:
            assert row["reason"].startswith("sales_channel_id must be one of")
        assert row["source"].endswith("transactions_train.csv")
    # Line numbers point at the rows in the file (header = line 1).
    lines = (bad_source["src"] / "transactions_train.csv").read_text().splitlines()
    for row in q:
        assert lines[row["line_number"] - 1] == row["line"]
    counts = bad_run.entry("ingest")["counts"]["transactions"]
    assert counts["read"] == bad_source["n_tx"]
    assert counts["read"] == counts["kept"] + counts["quarantined"]
    assert counts["quarantined"] == len(bad_source["tx"])


def test_bad_articles_and_customers(bad_source, bad_run):
    for table, kinds, n in (("articles", bad_source["art"], bad_source["n_art"]),
                            ("customers", bad_source["cust"], bad_source["n_cust"])):
        q = _quarantine(bad_run, table)
        assert sorted(r["reason"] for r in q) == sorted(kinds), table
        for r in q:
            assert r["line"] == kinds[r["reason"]]
        c = bad_run.entry("ingest")["counts"][table]
        assert (c["read"], c["kept"], c["quarantined"]) == (n, n - len(kinds), len(kinds))
    dup = next(r for r in _quarantine(bad_run, "articles") if r["reason"] == "duplicate article_id")
    assert dup["value"] == bad_source["art"]["duplicate article_id"].split(",")[0]
    assert dup["line_number"] == bad_source["n_art"] - len(bad_source["art"]) + 2


def test_corrupt_image_is_unreadable_not_fatal(bad_source, bad_run):
    images = read_table(bad_run, "raw/images").to_pylist()
    row = next(r for r in images if f"{r['article_id']:010d}" == bad_source["corrupt"])
    assert row["status"] == "unreadable" and "unreadable image" in row["reason"]
    assert bad_run.entry("ingest")["counts"]["images"]["unreadable"] == 1


def test_missing_file_names_the_file(tiny_hm, tmp_path):
    src = copy_source(tiny_hm, tmp_path / "src")
    (src / "customers.csv").unlink()
    with pytest.raises(IngestError, match=r"customers\.csv: missing"):
        ingest(str(src), Run(str(tmp_path / "run")), IngestConfig())


def test_missing_column_names_file_and_column(tiny_hm, tmp_path):
    src = copy_source(tiny_hm, tmp_path / "src")
    path = src / "transactions_train.csv"
    text = path.read_text().replace("sales_channel_id", "channel", 1)
    path.write_text(text)
    with pytest.raises(IngestError, match=r"transactions_train\.csv: missing column\(s\) "
                                          r"sales_channel_id"):
        ingest(str(src), Run(str(tmp_path / "run")), IngestConfig())


def test_unknown_layout(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(IngestError, match="neither layout found"):
        ingest(str(tmp_path), Run(str(tmp_path / "run")), IngestConfig())
