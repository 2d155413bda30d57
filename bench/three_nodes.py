"""The tiny pipeline as jobs on three Ray nodes against one node with the same CPUs, in one run.

Both layouts are raylets on this machine started by ``ray.cluster_utils.Cluster``
(tests/multinode.py): three nodes (a head with 1 CPU, two workers with 2 each) and one node
(a head with 5). The source and the run live in a bucket of moto's local S3 server; the stages
go as `ray job submit --working-dir` jobs (ingest, features, then the rest of the pipeline, each
job's temporary directory deleted after it), as tests/test_multinode.py submits them. Prints the
seconds per job and in all, the ratio to one node, and the tasks and Ray Train workers per
node from Ray's state, with the load average; writes ``bench/results/three_nodes.json``.

On one machine the nodes share the CPUs, the disk and the network stack: this measures what
several raylets cost (scheduling across nodes, object transfers between them, one worker pool
per node), not what more machines gain.

    python bench/three_nodes.py [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from multinode import placements, start_cluster, submit_stage  # noqa: E402
from object_storage import DEMO, load, local_s3  # noqa: E402

LAYOUTS = {"three nodes": {"workers": 2, "head_cpus": 1, "worker_cpus": 2},
           "one node": {"workers": 0, "head_cpus": 5, "worker_cpus": 0}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    os.environ.pop("RAY_ADDRESS", None)
    import pyarrow.fs as pafs

    from stylehub_ray.config import GenerateHMConfig
    from stylehub_ray.synth.hm import generate_hm

    work = Path(tempfile.mkdtemp(prefix="bench-multinode-"))
    generate_hm(str(work / "src"), GenerateHMConfig(scale="tiny", images=True))
    rows = []
    with local_s3():
        s3fs, _ = pafs.FileSystem.from_uri("s3://bucket")
        pafs.copy_files(str(work / "src"), "bucket/src", source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=s3fs)
        for layout, shape in LAYOUTS.items():
            uri = f"s3://bucket/run-{layout.replace(' ', '-')}"
            jobs = [("ingest", ["ingest", "s3://bucket/src", "--run", uri, "--set",
                                "chunk_mb=0.2"]),
                    ("features", ["features", "--run", uri]),
                    ("pipeline", ["pipeline", "s3://bucket/src", "--run", uri, *DEMO])]
            with start_cluster(**shape) as info:
                before = load()
                seconds = {}
                for name, job in jobs:
                    tag = f"{layout.replace(' ', '-')}-{name}"
                    _, seconds[name] = submit_stage(info, job, work / f"tmp-{tag}", tag)
                after = load()
                placed = placements(info)
            nodes = info["nodes"]
            tasks = Counter(nodes.get(n, "unknown") for n, _ in placed["tasks"] if n)
            train = Counter(nodes.get(n, "unknown") for n, c in placed["actors"]
                            if "TrainWorker" in c)
            total = sum(seconds.values())
            rows.append({"layout": layout, **shape, "seconds": {k: round(v, 1) for k, v in
                                                                 seconds.items()},
                         "total_s": round(total, 1), "tasks_per_node": dict(tasks),
                         "train_workers_per_node": dict(train), "load_before": before,
                         "load_after": after})
            print(f"RESULT {layout}: {total:.1f} s ("
                  + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
                  + f"); tasks per node {dict(sorted(tasks.items()))}; Ray Train workers per "
                  f"node {dict(sorted(train.items()))} (load {before} -> {after})", flush=True)
    one = next(r["total_s"] for r in rows if r["layout"] == "one node")
    for r in rows:
        r["ratio_to_one_node"] = round(r["total_s"] / one, 2)
    print("RESULT three nodes / one node: "
          f"{rows[0]['ratio_to_one_node']:.2f} of the time", flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "three_nodes.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
