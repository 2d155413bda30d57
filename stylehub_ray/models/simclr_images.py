"""SimCLR for the image encoder (Chen et al. 2020; StyleHub paper 2.2), torch only.

The catalog photos fine-tune the image encoder themselves: two random views of each photo
(random resized crop, horizontal flip, colour jitter, random grayscale, Gaussian blur: 2.2
"Data Augmentation"), a backbone ``f`` (the classifier removed, the global average pool kept,
exactly the encoder `stylehub embed images` runs: EfficientNet-Lite0 by default, started from
its ImageNet weights, ``init="random"`` for SimCLR from scratch) and a non-linear projection
head ``g`` (2.2 "Nonlinear Projection Head"); NT-Xent over the 2N views of a batch (2.2, the
formula for ``l_{i,j}``), :func:`stylehub_ray.models.losses.nt_xent_loss`.

The state dict's keys are ``backbone.<the backbone's own names>`` and ``projection.*``, so
``stylehub embed images --model simclr:PATH`` loads the backbone by stripping the prefix and
dropping the head (:func:`stylehub_ray.embed.image_model.build_backbone`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from stylehub_ray.embed import image_model
from stylehub_ray.embed.image_model import FEATURE_DIM, build_backbone
from stylehub_ray.embed.weights import resolve_image_weights
from stylehub_ray.models.losses import nt_xent_loss


@dataclass
class SimCLRImagesSpec:
    """Everything needed to rebuild the network (saved beside its weights, ``spec.json``;
    `embed images --model simclr:PATH` reads ``arch`` from it)."""

    arch: str = "efficientnet_lite0"
    image_size: int = 64  # the side of the photos it was trained on
    projection_hidden: int = 512
    projection_dim: int = 128
    seed: int = 0  # the backbone's random init (with init="random") and the head's
    # The backbone it starts from, the encoder it is compared with: "pretrained" (ImageNet
    # weights, embed_images.model=pretrained; `train simclr-images` defaults to it) or "random"
    # (embed_images.model=random; specs saved before this field started there).
    init: str = "random"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SimCLRImagesSpec:
        return cls(**d)


class SimCLRImages(nn.Module):
    """``z = g(f(x))``: backbone ``f`` (images -> pooled features) and projection ``g``."""

    def __init__(self, spec: SimCLRImagesSpec):
        super().__init__()
        self.spec = spec
        # The encoder `embed images --model <init>` builds: SimCLR starts from exactly the
        # encoder it is compared against.
        self.backbone = build_backbone(spec.arch, resolve_image_weights(spec.init, spec.arch),
                                       spec.seed)
        self.arch = spec.arch
        d = FEATURE_DIM[spec.arch]
        self.projection = nn.Sequential(  # g: 2.2, a non-linear MLP head
            nn.Linear(d, spec.projection_hidden), nn.BatchNorm1d(spec.projection_hidden),
            nn.ReLU(inplace=True), nn.Linear(spec.projection_hidden, spec.projection_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised images -> (B, projection_dim)."""
        return self.projection(self.backbone(x))  # (B, D) -> (B, d')

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``h = f(x)``, (B, D): the representation kept for downstream use."""
        return self.backbone(x)


def make_augment(size: int):
    """One random view of a (3, H, W) uint8 image at ``size`` px (2.2's augmentations)."""
    from stylehub_ray.compat import ensure_torchvision

    ensure_torchvision()
    from torchvision.transforms import v2

    blur = max(3, (size // 10) | 1)  # SimCLR: kernel ~10% of the side, odd
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([v2.GaussianBlur(blur, sigma=(0.1, 2.0))], p=0.5),
    ])


def normalise(x: torch.Tensor, arch: str) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> float, scaled for ``arch`` (as the embedding encoder does)."""
    return image_model.normalise(x, arch)


def two_views(images: np.ndarray, augment, arch: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, W, 3) uint8 -> two independently augmented views (B, 3, S, S), normalised for
    ``arch``. Each image draws its own parameters (a v2 transform on a batch would share
    them)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # (B, 3, H, W)
    v1 = torch.stack([augment(img) for img in x])
    v2 = torch.stack([augment(img) for img in x])
    return normalise(v1, arch), normalise(v2, arch)


def simclr_loss(model: nn.Module, v1: torch.Tensor, v2: torch.Tensor, tau: float
                ) -> torch.Tensor:
    """NT-Xent (2.2) over the 2N views; one forward pass so batch norm sees both views.
    ``model`` may be the DDP wrapper of :class:`SimCLRImages`."""
    z = model(torch.cat([v1, v2]))  # (2N, d')
    return nt_xent_loss(z[: len(v1)], z[len(v1):], tau)
