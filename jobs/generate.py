"""Ray job: `ray job submit --working-dir . -- python jobs/generate.py hm OUT --scale full`.

At full scale the transactions and the images are generated in parallel Ray tasks.
"""

import sys

import _bootstrap  # noqa: F401  (puts the shipped package on sys.path)

from stylehub_ray.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["generate", *sys.argv[1:]]))
