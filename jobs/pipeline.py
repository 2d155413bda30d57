"""Ray job: `ray job submit --working-dir . -- python jobs/pipeline.py SOURCE --run RUN`."""

import sys

import _bootstrap  # noqa: F401  (puts the shipped package on sys.path)

from stylehub_ray.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["pipeline", *sys.argv[1:]]))
