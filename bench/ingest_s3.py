"""Ingest of the tiny source from a bucket (moto's S3 server on 127.0.0.1): where its time goes,
and the photo check with Pillow reading the bucket's file (before) against one read per photo
(now), side by side in one run.

`bench/three_nodes.py` measured the ingest job from a bucket at about 113 s against 3 s for a
local ingest of the same data. This generates the tiny H&M source, copies it to
``s3://bucket/src``, runs ``stylehub ingest`` from there (``--repeats`` times, each into a new
run) and prints its step timings; then checks every photo of the source in one process both
ways: ``Image.open`` on ``open_input_file`` (Pillow's reads, a request each) and the file read
whole with ``open_input_stream`` then verified in memory (what ``check_images`` does now).
Prints seconds and the ratio; writes JSON.

    python bench/ingest_s3.py [--repeats 1] [--out bench/results]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from object_storage import load, local_s3  # noqa: E402


def _check_seconds(paths: list[str], whole: bool) -> float:
    import pyarrow.fs as pafs
    from PIL import Image

    fs, _ = pafs.FileSystem.from_uri("s3://bucket")
    t0 = time.perf_counter()
    for p in paths:
        if whole:
            with fs.open_input_stream(p) as f:
                data = f.read()
            with Image.open(io.BytesIO(data)) as im:
                im.verify()
        else:
            with fs.open_input_file(p) as f, Image.open(f) as im:
                im.verify()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    os.environ.pop("RAY_ADDRESS", None)
    with local_s3():
        import pyarrow.fs as pafs

        from stylehub_ray.cli import main as cli
        from stylehub_ray.config import GenerateHMConfig
        from stylehub_ray.ray_utils import ensure_ray
        from stylehub_ray.run import Run
        from stylehub_ray.synth.hm import generate_hm

        work = Path(tempfile.mkdtemp(prefix="bench-ingest-s3-"))
        generate_hm(str(work / "src"), GenerateHMConfig(scale="tiny", images=True))
        s3, _ = pafs.FileSystem.from_uri("s3://bucket")
        pafs.copy_files(str(work / "src"), "bucket/src",
                        source_filesystem=pafs.LocalFileSystem(), destination_filesystem=s3)
        photos = sorted(str(p.relative_to(work / "src")) for p in (work / "src").rglob("*.jpg"))
        paths = [f"bucket/src/{p}" for p in photos]
        ensure_ray()
        out: dict = {"photos": len(paths), "ingest": [], "check": {}}
        for r in range(args.repeats):
            before = load()
            t0 = time.perf_counter()
            assert cli(["ingest", "s3://bucket/src", "--run", f"s3://bucket/run-{r}",
                        "--set", "chunk_mb=0.2"]) == 0
            wall = time.perf_counter() - t0
            timings = Run(f"s3://bucket/run-{r}").entry("ingest").get("timings", {})
            out["ingest"].append({"wall_s": round(wall, 1), "timings": timings,
                                  "load": [before, load()]})
            print(f"RESULT ingest from the bucket, repeat {r}: {wall:.1f} s (load {before} -> "
                  f"{load()}); step timings {timings}", flush=True)
        before = load()
        secs = {"pillow_reads": [], "one_read": []}
        for _ in range(2):
            for name, whole in (("pillow_reads", False), ("one_read", True)):
                secs[name].append(_check_seconds(paths, whole))
        best = {k: min(v) for k, v in secs.items()}
        out["check"] = {"seconds": secs, "ratio": best["pillow_reads"] / best["one_read"],
                        "load": [before, load()]}
        print(f"RESULT photo check of {len(paths)} photos in the bucket, one process (load "
              f"{before} -> {load()}): Pillow on the bucket's file {best['pillow_reads']:.2f} s, "
              f"one read each {best['one_read']:.2f} s: {out['check']['ratio']:.1f}x")
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "ingest_s3.json").write_text(json.dumps(out, indent=2) + "\n")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
