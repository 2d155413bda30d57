"""Several Ray nodes sharing only object storage (issue 22, item 1; the `cluster` suite).

A head and two worker nodes (separate raylets on this machine, tests/multinode.py), the run
and the source in a bucket of the local S3 server, the stages submitted as jobs with
`ray job submit --working-dir`. Nodes on one machine share a disk, so the test proves the
point another way: every path the manifest records is `s3://`, every output's completion
marker is in the bucket, each job's local temporary directory is deleted before the next job
starts, and Ray's own state shows tasks and actors placed on the worker nodes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, wait_for
from multinode import SINGLE_HOST_ENV, start_cluster

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
    """One stage as a job; its processes' temporary directory is ``tmp``, deleted after."""
    tmp.mkdir(parents=True)
    ray = str(Path(sys.executable).parent / "ray")
    # The job's driver keeps the cluster's 127.0.0.1 address (tests/multinode.py says why).
    runtime_env = {"env_vars": {"TMPDIR": str(tmp), **SINGLE_HOST_ENV}}
    cmd = [ray, "job", "submit", "--address", info["dashboard"], "--working-dir", str(REPO),
           "--submission-id", name, "--runtime-env-json", json.dumps(runtime_env), "--",
           "python", "-m", "stylehub_ray", *args]

    def submit():
        out = subprocess.run(cmd, cwd=REPO, env=info["env"], capture_output=True, text=True,
                             timeout=900)
        # The head's job agent can come up after the node does: Ray asks to try again later.
        return out if "No available agent" not in out.stderr + out.stdout else None

    t0 = time.monotonic()
    out = wait_for(submit, timeout=120, every=3.0)
    seconds = time.monotonic() - t0
    if out.returncode != 0:  # `ray job submit` exits 1 when the job fails
        print(out.stdout[-6000:], out.stderr[-3000:], sep="\n")
        pytest.fail(f"job {name} failed (its output above)")
    shutil.rmtree(tmp)  # nothing a later stage could read from this job's local disk
    return out.stdout, seconds


# Ray's state API, asked in a process of its own: in this one (attached to the test session's
# head) it answers for that head whatever address it is given.
PLACEMENTS = """
import json, sys
from ray.util.state import list_actors, list_tasks
tasks = list_tasks(address=sys.argv[1], limit=10_000, raise_on_missing_output=False)
actors = list_actors(address=sys.argv[1], limit=10_000, raise_on_missing_output=False)
print(json.dumps({"tasks": [[t.node_id, t.name] for t in tasks],
                  "actors": [[a.node_id, a.class_name] for a in actors]}))
"""


def _placements(info: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", PLACEMENTS, info["dashboard"]], env=info["env"],
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_stages_as_jobs_on_three_nodes_sharing_only_the_bucket(s3, tiny_hm, tmp_path):
    import pyarrow.fs as pafs
    from test_cli import DEMO

    src, uri = "s3://bucket/multinode-src", "s3://bucket/multinode-run"
    s3fs, _ = pafs.FileSystem.from_uri("s3://bucket")
    pafs.copy_files(str(tiny_hm), "bucket/multinode-src",
                    source_filesystem=pafs.LocalFileSystem(), destination_filesystem=s3fs)
    sets = DEMO  # the tiny pipeline's settings (ingest's chunk_mb in its own job too)
    jobs = [("ingest", ["ingest", src, "--run", uri, "--set", "chunk_mb=0.2"]),
            ("features", ["features", "--run", uri]),
            ("pipeline", ["pipeline", src, "--run", uri, *sets])]
    with start_cluster(workers=2, head_cpus=1, worker_cpus=2) as info:
        seconds = {}
        for name, args in jobs:
            _, seconds[name] = _submit(info, args, tmp_path / f"tmp-{name}", f"mn-{name}")
        placed = _placements(info)
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
    assert {k.split("/")[0] for k in steps} >= {
        "ingest", "features", "embed_images", "embed_text", "train_contrastive",
        "train_two_tower", "recommend", "train_ranker"}
    for key, entry in steps.items():
        assert entry["status"] == "complete", key
        for output in entry.get("outputs", []):
            assert run.is_complete(output), (key, output)  # its marker is in the bucket
