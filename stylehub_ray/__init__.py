"""StyleHub-Ray: a fashion recommender platform on Ray, from ingest to serving."""

import os as _os
import sys as _sys

# Ray reads these when it is imported, and every process that imports this package may go on
# to import ray: offline machines must not phone home, and token auth must be the same in the
# driver and in the instance it starts (a first ray.init() writes ~/.ray/auth_token; a driver
# with auth 'disabled' then cannot talk to the GCS it started).
# When ray is already imported, it has read them: changing them now would only make the driver
# and the processes it spawns disagree.
if "ray" not in _sys.modules:
    _os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    _os.environ.setdefault("RAY_AUTH_MODE", "token")

__version__ = "0.1.0"
