"""Ray job: `ray job submit --working-dir . -- python jobs/ingest.py SOURCE --run RUN`.

The working directory (this repository) is shipped to the cluster by the job's runtime
environment, so the package travels with the job; the stage is the same library call the CLI
makes.
"""

import sys

import _bootstrap  # noqa: F401  (puts the shipped package on sys.path)

from stylehub_ray.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["ingest", *sys.argv[1:]]))
