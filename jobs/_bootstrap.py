"""Make `stylehub_ray` importable when a job runs from `ray job submit --working-dir .`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
