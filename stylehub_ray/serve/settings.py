"""`stylehub serve` settings: which runs to serve and the graph's request limits (no Ray here).

One dataclass, registered as the ``serve`` stage config, so the CLI (``--config``, ``--set``)
and the Serve app builder (``build_app(args)``, the ``args:`` of ``serve_config.yaml``) resolve
the same settings the same way. Replica counts, autoscaling bounds and CPU/GPU per replica are
Serve's own deployment options: they live in ``serve_config.yaml`` (or the decorators' defaults
in ``serve/app.py`` for a local ``stylehub serve``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

COLD_START_STRATEGIES = ("avg", "w-avg")
# Where /recommend's retrieval and ranking run: in the ingress replica (no handle hop), in one
# deployment behind it (one hop), or as two deployments (two hops; e.g. a GPU ranker).
RECOMMEND_LAYOUTS = ("ingress", "together", "split")


@dataclass
class ServeConfig:
    """`stylehub serve --run RUN [--outfits-run RUN2] [--port 8000]`."""

    run: str = ""  # the H&M run: two-tower, image index, similar items ("" serves none)
    outfits_run: str = ""  # the Polyvore-U run with a trained FND-CL variant ("" serves none)
    host: str = "127.0.0.1"
    port: int = 8000
    variant: str = "default"  # models/two-tower/<variant>
    # models/ranker/<variant>: when the run has it, it answers the run's customers (path
    # "ranker"); "" leaves every request to the two-tower
    ranker: str = "default"
    feature_set: str = "test"  # customer features and purchase history as of this cutoff
    outfit_variant: str = ""  # models/fndcl/<variant>; "": the student if trained, else teacher
    candidates: int = 100  # articles retrieved, then ranked (the paper's top-N)
    recommend_layout: str = "ingress"  # ingress | together | split (see RECOMMEND_LAYOUTS)
    max_upload_mb: float = 5.0  # /similar-image body limit
    cold_start: str = "avg"  # default strategy when a request carries purchases
    wavg_tau: float = 0.2  # FND-CL 4.1.4: tau of Eq. 23
    wavg_delta: float = 0.0  # FND-CL 4.1.4: delta of Eq. 21
    wavg_customers: int = 50_000  # trained customers in the w-avg neighbourhood (sampled)
    # @serve.batch of /recommend's parts: requests that queue while a batch runs go together;
    # 0 s: a lone request does not wait for company.
    batch_max_size: int = 16
    batch_wait_timeout_s: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"serve.port must be in 1..65535, got {self.port}")
        if self.cold_start not in COLD_START_STRATEGIES:
            raise ValueError(f"serve.cold_start must be one of {', '.join(COLD_START_STRATEGIES)}"
                             f", got {self.cold_start!r}")
        if self.recommend_layout not in RECOMMEND_LAYOUTS:
            raise ValueError(f"serve.recommend_layout must be one of "
                             f"{', '.join(RECOMMEND_LAYOUTS)}, got {self.recommend_layout!r}")
        if "/" in self.ranker:
            raise ValueError(f"serve.ranker must be a variant name, got {self.ranker!r}")
        for name in ("candidates", "batch_max_size", "wavg_customers"):
            if getattr(self, name) < 1:
                raise ValueError(f"serve.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_upload_mb <= 0 or self.wavg_tau <= 0 or self.batch_wait_timeout_s < 0:
            raise ValueError("serve.max_upload_mb and serve.wavg_tau must be positive, "
                             "serve.batch_wait_timeout_s >= 0")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def resolve_run_path(path: str) -> str:
    """A run path every replica can open: URIs as given; a relative local path against the
    current directory when it exists there, else against the checkout this package lives in
    (``serve deploy`` builds the app in a Ray worker whose directory is not the user's)."""
    if not path or "://" in path or Path(path).is_absolute():
        return path
    here = Path(path).resolve()
    if here.exists():
        return str(here)
    checkout = Path(__file__).resolve().parents[2] / path
    if checkout.exists():
        return str(checkout)
    raise FileNotFoundError(f"serve: run directory {path!r} not found (looked in {Path.cwd()} "
                            f"and {checkout.parent}); pass an absolute path or a URI")
