"""Import torchvision on a CPU-only torch, where PyPI's CUDA build of torchvision cannot load.

PyPI ships torchvision only as a CUDA build; its compiled extension needs libtorch_cuda and
fails to load on CPU torch, and the Python package then dies at import with
``RuntimeError: operator torchvision::nms does not exist`` (transformers imports torchvision
whenever it is installed, so the failure spreads there too). Defining the two missing operator
schemas before the first import is enough for ``torchvision.models`` and ``transforms.v2``;
``torchvision.io`` decoding and ``ops.nms`` still do not work, so images are decoded with Pillow.

Call :func:`ensure_torchvision` in every process (Ray workers included) before importing
torchvision or transformers. It does nothing when the real extension loads.
"""

from __future__ import annotations

import importlib.util
import threading

_lock = threading.Lock()
_state: dict[str, object] = {"checked": False, "shimmed": False, "library": None}

# The schemas torchvision's Python code registers fake kernels for at import time.
MISSING_OP_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _extension_loads() -> bool:
    """True when torchvision's compiled ops are usable (a matching CPU or CUDA build)."""
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018  (registered by a loaded extension)
        return True
    except (AttributeError, RuntimeError):
        pass
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    import glob
    import os

    for location in spec.submodule_search_locations:
        for so in glob.glob(os.path.join(location, "_C*.so")) + glob.glob(
            os.path.join(location, "_C*.pyd")
        ):
            try:
                torch.ops.load_library(so)
                return True
            except OSError:
                return False
    return False


def ensure_torchvision() -> bool:
    """Make ``import torchvision`` work; returns True when the op-schema shim was installed.

    Idempotent and thread-safe. Raises ImportError with a clear message when torchvision
    is not installed at all.
    """
    with _lock:
        if _state["checked"]:
            return bool(_state["shimmed"])
        if importlib.util.find_spec("torchvision") is None:
            raise ImportError(
                "torchvision is not installed: install the version matching torch "
                "(torch 2.13.0 -> torchvision 0.28.0)"
            )
        import torch

        if not _extension_loads():
            lib = torch.library.Library("torchvision", "DEF")
            for schema in MISSING_OP_SCHEMAS.values():
                lib.define(schema)
            _state["library"] = lib  # keep the Library alive: dropping it unregisters the ops
            _state["shimmed"] = True
        _state["checked"] = True
        return bool(_state["shimmed"])
