"""The tiny pipeline on a local run directory against the same on S3 (moto's local server).

Starts ``moto_server`` on 127.0.0.1 (a free port) with a bucket, points the standard AWS
variables at it (before the local Ray instance starts, so its workers inherit them), generates
the tiny H&M source and runs ``stylehub pipeline`` (the settings of tests/test_cli.py) twice
per repeat: on a local folder and on ``s3://bucket/run-N``. Prints each wall time with the
load average before and after, and writes JSON.

    python bench/object_storage.py [--repeats 1] [--out bench/results]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

DEMO = ["--set", "ingest.chunk_mb=0.2", "--set", "embed_images.model=random",
        "--set", "embed_images.arch=resnet18", "--set", "embed_images.image_size=32",
        "--set", "train_contrastive.epochs=1", "--set", "evaluate_contrastive.simclr=false",
        "--set", "train_two_tower.epochs=1", "--set", "evaluate_ranking.bootstrap=20",
        "--set", "baselines.bootstrap=20", "--set", "evaluate_ranker.bootstrap=20"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextlib.contextmanager
def local_s3() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 with a bucket ``bucket``, the standard AWS variables
    pointed at it in this process (set them before Ray starts: its workers inherit them)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_EC2_METADATA_DISABLED": "true"})
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H",
                               "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(urllib.request.Request(f"{endpoint}/bucket",
                                                              method="PUT"), timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    os.environ.pop("RAY_ADDRESS", None)
    with local_s3():
        from stylehub_ray.cli import main as cli
        from stylehub_ray.config import GenerateHMConfig
        from stylehub_ray.ray_utils import ensure_ray
        from stylehub_ray.synth.hm import generate_hm

        work = Path(tempfile.mkdtemp(prefix="bench-s3-"))
        generate_hm(str(work / "src"), GenerateHMConfig(scale="tiny", images=True))
        ensure_ray()  # up before the timings: both runs share the same warm instance
        rows = []
        for r in range(args.repeats):
            for kind, uri in (("local", str(work / f"run-{r}")), ("s3", f"s3://bucket/run-{r}")):
                before = load()
                t0 = time.perf_counter()
                assert cli(["pipeline", str(work / "src"), "--run", uri, *DEMO]) == 0
                wall = time.perf_counter() - t0
                rows.append({"run": kind, "repeat": r, "wall_s": round(wall, 1),
                             "load_before": before, "load_after": load()})
                print(f"RESULT {kind:5s} repeat {r}: {wall:.1f} s (load {before} -> "
                      f"{load()})", flush=True)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "object_storage.json").write_text(json.dumps(rows, indent=2) + "\n")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
