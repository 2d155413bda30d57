"""Several Ray nodes sharing only object storage (issue 22, item 1; the `cluster` suite).

A head and two worker nodes (separate raylets on this machine, tests/multinode.py), the run
and the source in a bucket of the local S3 server, the stages submitted as jobs with
`ray job submit --working-dir`. Nodes on one machine share a disk, so the test proves the
point another way: every path the manifest records is `s3://`, every output's completion
marker is in the bucket, each job's local temporary directory is deleted before the next job
starts, and Ray's own state shows tasks and actors placed on the worker nodes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from multinode import JobFailed, placements, start_cluster, submit_stage

from stylehub_ray.run import Run

pytestmark = pytest.mark.cluster


def _local_paths(value, where="") -> list[str]:
    """Every string in the manifest that names a local file (absolute or file://)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _local_paths(v, f"{where}/{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _local_paths(v, f"{where}[{i}]")]
    if isinstance(value, str) and (value.startswith("/") or value.startswith("file:")):
        return [f"{where}: {value}"]
    return []


def _submit(info: dict, args: list[str], tmp: Path, name: str) -> tuple[str, float]:
    try:
        return submit_stage(info, args, tmp, name)
    except JobFailed as exc:
        print(exc.output)
        pytest.fail(f"job {name} failed (its output above)")


def test_stages_as_jobs_on_three_nodes_sharing_only_the_bucket(s3, tiny_hm, tmp_path):
    import pyarrow.fs as pafs
    from test_cli import DEMO

    src, uri = "s3://bucket/multinode-src", "s3://bucket/multinode-run"
    s3fs, _ = pafs.FileSystem.from_uri("s3://bucket")
    pafs.copy_files(str(tiny_hm), "bucket/multinode-src",
                    source_filesystem=pafs.LocalFileSystem(), destination_filesystem=s3fs)
    # The tiny pipeline's settings (ingest's chunk_mb in its own job too), through the stages
    # that put work on the nodes: Ray Data tasks (the embeddings), Ray Train workers (the
    # two-tower) and the ranker's Ray tasks. The whole pipeline runs on the bucket in make test
    # (tests/test_cli.py); run here too it made this test about 690 s of the cluster suite's
    # 1,733 s in the CI run of 2026-12-02 (from its temporary folders' times).
    sets = [*DEMO, "--set", "pipeline.stages=[embed_images,embed_text,train_two_tower,"
                            "train_ranker]"]
    jobs = [("ingest", ["ingest", src, "--run", uri, "--set", "chunk_mb=0.2"]),
            ("features", ["features", "--run", uri]),
            ("pipeline", ["pipeline", src, "--run", uri, *sets])]
    with start_cluster(workers=2, head_cpus=1, worker_cpus=2) as info:
        seconds, ended = {}, {}
        for name, args in jobs:
            _, seconds[name] = _submit(info, args, tmp_path / f"tmp-{name}", f"mn-{name}")
            if name in ("ingest", "features"):
                ended[name] = Run(uri).entry(name)["ended"]
        placed = placements(info)
    nodes = info["nodes"]
    per_node = Counter(nodes.get(n, "unknown") for n, _ in placed["tasks"] if n)
    train_workers = Counter(nodes.get(n, "unknown") for n, name in placed["actors"]
                            if "TrainWorker" in name)
    print(f"jobs: {', '.join(f'{k} {v:.1f} s' for k, v in seconds.items())}; tasks per node "
          f"{dict(sorted(per_node.items()))}; Ray Train workers per node "
          f"{dict(sorted(train_workers.items()))}")
    assert per_node["worker0"] > 0 and per_node["worker1"] > 0, per_node
    assert train_workers["worker0"] + train_workers["worker1"] > 0, train_workers

    run = Run(uri)
    manifest = run.manifest()
    assert manifest["run"] == uri
    assert not _local_paths(manifest), _local_paths(manifest)[:5]
    steps = manifest["steps"]
    # The pipeline job took ingest and features from the bucket as the earlier jobs left them.
    assert {k: steps[k]["ended"] for k in ended} == ended
    assert {k.split("/")[0] for k in steps} >= {
        "ingest", "features", "embed_images", "embed_text", "train_two_tower", "train_ranker"}
    for key, entry in steps.items():
        assert entry["status"] == "complete", key
        for output in entry.get("outputs", []):
            assert run.is_complete(output), (key, output)  # its marker is in the bucket
