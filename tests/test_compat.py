"""The torchvision shim: used only when the compiled extension cannot load, and enough for
torchvision.models and transforms.v2 on CPU torch."""

from __future__ import annotations

import subprocess
import sys

from stylehub_ray import compat


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


def test_models_and_transforms_work_after_shim():
    out = _fresh(
        "from stylehub_ray.compat import ensure_torchvision\n"
        "import torch\n"
        "shimmed = ensure_torchvision()\n"
        "assert ensure_torchvision() == shimmed  # idempotent\n"
        "from torchvision.models import resnet18\n"
        "from torchvision.transforms import v2\n"
        "m = resnet18(weights=None).eval()\n"
        "x = v2.Resize((32, 32))(torch.rand(3, 40, 50))\n"
        "print(shimmed, tuple(m(x[None]).shape))\n")
    assert out.returncode == 0, out.stderr[-2000:]
    shimmed, shape = out.stdout.split(maxsplit=1)
    assert shape.strip() == "(1, 1000)"
    import torch

    # On a CPU torch with PyPI's CUDA torchvision the shim is needed; with a matching build not.
    assert shimmed == str(not torch.cuda.is_available() and "+cpu" in torch.__version__)


def test_plain_import_fails_without_shim_on_cpu_torch():
    import torch

    if "+cpu" not in torch.__version__:
        return  # a matching torchvision build imports on its own; nothing to show here
    out = _fresh("import torchvision")
    assert out.returncode != 0 and "torchvision::nms" in out.stderr


def test_shim_skipped_when_extension_loads(monkeypatch):
    monkeypatch.setattr(compat, "_state", {"checked": False, "shimmed": False, "library": None})
    monkeypatch.setattr(compat, "_extension_loads", lambda: True)
    assert compat.ensure_torchvision() is False
    assert compat._state["library"] is None
