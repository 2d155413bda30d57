"""A run directory on object storage: moto's S3 server on 127.0.0.1 (conftest `s3`), a bucket,
and `s3://bucket/...` runs. Endpoint and credentials come from the standard AWS variables.

- the commit step writes in place (S3 has no rename) with the marker last, and a step killed
  mid-write leaves nothing that a later stage takes for whole;
- the tiny pipeline runs every stage on an `s3://bucket/...` run, and the Serve parts load
  their models from the bucket and answer: tests/test_cli.py's pipeline test on storage "s3".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from stylehub_ray.run import Run

KILLED = textwrap.dedent("""
    import os, signal, sys
    from stylehub_ray.run import Run, iter_files
    run = Run(sys.argv[1])
    step = run.step("ingest", config={"try": 2}, inputs={}, outputs=["raw/articles"])
    with step:
        step.write_bytes("raw/articles", "part-0.parquet", b"half of a table")
        os.kill(os.getpid(), signal.SIGKILL)  # killed mid-write: no marker, no manifest entry
""")


def test_commit_in_place_and_a_step_killed_mid_write_is_never_whole(s3):
    run = Run("s3://bucket/killed")
    first = run.step("ingest", config={"try": 1}, inputs={}, outputs=["raw/articles"])
    with first:
        first.write_bytes("raw/articles", "part-0.parquet", b"the whole table")
    assert run.is_complete("raw/articles") and run.entry("ingest")["status"] == "complete"
    assert not run.exists("_tmp")  # written in place: nothing to rename
    fingerprint = run.require("raw/articles", "stylehub ingest")

    out = subprocess.run([sys.executable, "-c", KILLED, run.uri], env=dict(os.environ),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr
    # The new output is half there, without its marker: no later stage takes it for whole.
    assert run.exists("raw/articles/part-0.parquet")
    assert not run.is_complete("raw/articles")
    with pytest.raises(FileNotFoundError, match="missing or incomplete: run `stylehub ingest`"):
        run.require("raw/articles", "stylehub ingest")
    assert run.entry("ingest")["status"] == "running"
    again = run.step("ingest", config={"try": 2}, inputs={}, outputs=["raw/articles"])
    assert not again.done  # the rerun redoes it
    with again:
        again.write_bytes("raw/articles", "part-0.parquet", b"the new whole table")
    assert run.require("raw/articles", "stylehub ingest") != fingerprint
    with run.fs.open_input_stream(run.path("raw/articles/part-0.parquet")) as f:
        assert f.read() == b"the new whole table"
