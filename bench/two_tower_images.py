"""The two-tower with random-init against pretrained image features, over generated seeds.

Reuses the data of ``bench/two_tower_fixes.py`` (run it first): for each seed, its on-sale run
(images embedded by a random-init ResNet18 at 64 px, the two-tower trained with every fix as
rung 5) is copied, its images embedded again with the default encoder (the ImageNet-pretrained
EfficientNet-Lite0 with the colour histogram, at 128 px as `make demo`), and the two-tower
trained and scored again with the same settings. Prints MAP@12 dropped / kept, the fraction of
the oracle's and the paired interval against ALS for both, per seed.

    .venv/bin/python bench/two_tower_images.py --seeds 0 1 2

The generated photos are rendered shapes and colours, not garments: this shows what the
features do for the two-tower on this data, not what ImageNet features do on real photos (the
real-slice neighbour tables in BENCHMARKS.md measure that).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import two_tower_fixes as F  # noqa: E402

from stylehub_ray.config import load_config, stage_config  # noqa: E402
from stylehub_ray.run import Run  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "two_tower_images.json"
DEFAULT_RUNG = 5  # every fix on: the defaults


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--work", default="/tmp/stylehub-two-tower-fixes")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--image-size", type=int, default=128)
    args = p.parse_args()
    from stylehub_ray.embed.images import embed_images
    from stylehub_ray.ray_utils import ensure_ray

    ensure_ray()
    out = {}
    for seed in args.seeds:
        src = os.path.join(args.work, f"run-{seed}-on-sale")
        if not os.path.exists(src):
            raise SystemExit(f"{src} is missing: run bench/two_tower_fixes.py first")
        dst = os.path.join(args.work, f"run-{seed}-pretrained")
        if not os.path.exists(dst):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                "models", "index", "eval", "_ray_train", "recommendations"))
        run = Run(dst)
        embed_images(run, load_config(stage_config("embed_images"), None,
                                      [f"image_size={args.image_size}"]), force=True)
        row = F.one_rung(run, DEFAULT_RUNG, args)
        before = next(r for r in json.loads(F.RESULTS.read_text())["results"][str(seed)]
                      if r["rung"] == DEFAULT_RUNG)
        out[seed] = {"random": before, "pretrained": row}
        for name, r in out[seed].items():
            d, k = r["drop"], r["keep"]
            print(f"seed {seed} {name:10s}: {d['map@12']:.4f} / {k['map@12']:.4f} = "
                  f"{d['fraction']:.3f} / {k['fraction']:.3f} of oracle; minus ALS "
                  f"{d['minus_als']} / {k['minus_als']}", flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
