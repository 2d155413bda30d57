"""Image encoder: Pillow decoding and a torchvision ResNet without its classifier (no Ray here).

The two-tower paper ("Step 1: Image Embedding") removes ResNet152's classification layer and
keeps the global average pool of the last convolutional block: a 2048-d vector per photo
(512-d for resnet18/34). The same module runs in the Ray actors, in the plain benchmark loop
and in serving.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from stylehub_ray.embed.weights import ImageWeights

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
FEATURE_DIM = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048,
               "resnet152": 2048}
# ImageNet statistics: torchvision's weights expect them, and random init does not care.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# H&M photos sit on a light background; pad with it rather than black.
PAD_RGB = (255, 255, 255)
BACKBONE_PREFIXES = ("module.", "backbone.", "encoder.", "model.")


def decode_image(data: bytes, size: int) -> np.ndarray:
    """JPEG/PNG bytes -> (size, size, 3) uint8: the longer side scaled to ``size`` and the
    shorter padded, so a portrait garment photo is neither cropped nor stretched.

    Raises whatever Pillow raises for a corrupt or truncated file (callers record it).
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()  # force the full decode here: truncated files fail now, not later
        im = im.convert("RGB")
        scale = size / max(im.size)
        w, h = max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))
        im = im.resize((w, h), Image.Resampling.BILINEAR)
        canvas = Image.new("RGB", (size, size), PAD_RGB)
        canvas.paste(im, ((size - w) // 2, (size - h) // 2))
        return np.asarray(canvas, dtype=np.uint8)


def build_backbone(arch: str, weights: ImageWeights, seed: int = 0):
    """A torchvision ResNet with ``fc`` replaced by identity: images -> pooled features.

    Random init is seeded so that every actor (and every rerun) builds the same network.
    State dicts are loaded with ``weights_only=True`` (:mod:`stylehub_ray.tensor_io`);
    classifier keys are ignored and every backbone key must be present (a wrong ``arch`` fails
    here, naming the missing keys).
    """
    from stylehub_ray.compat import ensure_torchvision

    ensure_torchvision()
    import torch
    import torchvision.models as tvm

    from stylehub_ray.tensor_io import load_tensors

    if arch not in ARCHS:
        raise ValueError(f"embed_images.arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = getattr(tvm, arch)(weights=None)
    net.fc = torch.nn.Identity()
    if weights.path is not None:
        state = load_tensors(weights.path)
        saved = saved_arch(weights.path, state, weights.kind == "simclr")
        if saved is not None and saved != arch:
            raise ValueError(f"{weights.path}: a {saved} checkpoint, but arch={arch!r}; "
                             f"pass --set arch={saved}")
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]  # a {"state_dict": ...} checkpoint
        state = {_strip_prefix(k): v for k, v in state.items() if not _is_head(k)}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(
                f"{weights.path}: not a {arch} state dict: {len(missing)} backbone keys "
                f"missing (first: {', '.join(missing[:3])}); "
                f"unexpected keys: {', '.join(unexpected[:3]) or 'none'}")
    net.eval()
    return net


def saved_arch(path: str, state, published: bool) -> str | None:
    """The architecture a checkpoint names: with ``published``, ``arch`` of the ``spec.json``
    beside a published model's ``model.pt`` (``stylehub train simclr-images``, the format of
    :mod:`stylehub_ray.models.artifacts`); else an ``arch`` entry of a ``{"state_dict": ...,
    "arch": ...}`` file; None if neither."""
    import json
    import os

    spec = os.path.join(os.path.dirname(path), "spec.json")
    if published and os.path.isfile(spec):
        with open(spec) as f:
            arch = json.load(f).get("arch")
        if isinstance(arch, str):
            return arch
    if isinstance(state, dict) and isinstance(state.get("arch"), str):
        return state["arch"]
    return None


def _strip_prefix(key: str) -> str:
    for prefix in BACKBONE_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _is_head(key: str) -> bool:
    """Classifier / projection-head keys, which the embedding does not use."""
    key = _strip_prefix(key)
    return key.startswith(("fc.", "head.", "projection.", "projector."))


@dataclass
class ImageEncoder:
    """Backbone + device placement: ``encode(uint8 (N, H, W, 3)) -> float32 (N, D)``.

    On CUDA the batch runs in bf16 autocast with channels_last memory (the fast path for
    convolutions on tensor cores); on CPU in float32. Results agree up to float tolerance.
    """

    net: object
    device: str = "cpu"

    @classmethod
    def load(cls, arch: str, weights: ImageWeights, seed: int = 0,
             device: str = "cpu") -> ImageEncoder:
        import torch

        net = build_backbone(arch, weights, seed).to(device)
        if device.startswith("cuda"):
            net = net.to(memory_format=torch.channels_last)
        return cls(net, device)

    def encode(self, images: np.ndarray) -> np.ndarray:
        import torch

        if len(images) == 0:
            return np.zeros((0, self.dim), np.float32)
        cuda = self.device.startswith("cuda")
        x = torch.from_numpy(np.ascontiguousarray(images))  # (N, H, W, 3) uint8
        x = x.to(self.device, non_blocking=cuda).permute(0, 3, 1, 2).float().div_(255)
        mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1)
        x = (x - mean) / std  # (N, 3, H, W)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16,
                                                    enabled=cuda):
            out = self.net(x)  # (N, D)
        return out.float().cpu().numpy()

    @property
    def dim(self) -> int:
        return int(self.net.layer4[-1].conv1.in_channels)
