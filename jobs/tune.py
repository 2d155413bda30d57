"""Ray job: `ray job submit --working-dir . -- python jobs/tune.py fndcl --run RUN [--samples N]
[--set space.alpha=grid:0.5,1,1.5,2 ...]`.

A Ray Tune sweep over one trainer (contrastive, two-tower, fndcl), the same library call the
CLI's `stylehub tune` makes; the job's driver runs the Tuner, each trial a Ray Train run.
"""

import sys

import _bootstrap  # noqa: F401  (puts the shipped package on sys.path)

from stylehub_ray.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["tune", *sys.argv[1:]]))
