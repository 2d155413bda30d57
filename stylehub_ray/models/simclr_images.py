"""SimCLR for the image encoder (Chen et al. 2020; StyleHub paper 2.2), torch only.

No pretrained image weights can be downloaded here, so the catalog photos teach the encoder
themselves: two random views of each photo (random resized crop, horizontal flip, colour jitter,
random grayscale, Gaussian blur: 2.2 "Data Augmentation"), a ResNet backbone ``f`` (ResNet18 by
default, up to 152; the classifier removed, the 512 / 2048-d global average pool kept, exactly
the encoder `stylehub embed images` runs) and a non-linear projection head ``g`` (2.2
"Nonlinear Projection Head"); NT-Xent over the 2N views of a batch (2.2, the formula for
``l_{i,j}``), :func:`stylehub_ray.models.losses.nt_xent_loss`.

The state dict's keys are ``backbone.<torchvision name>`` and ``projection.*``, so
``stylehub embed images --model simclr:PATH`` loads the backbone by stripping the prefix and
dropping the head (:func:`stylehub_ray.embed.image_model.build_backbone`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from stylehub_ray.embed.image_model import FEATURE_DIM, MEAN, STD, build_backbone
from stylehub_ray.embed.weights import ImageWeights
from stylehub_ray.models.losses import nt_xent_loss


@dataclass
class SimCLRImagesSpec:
    """Everything needed to rebuild the network (saved beside its weights, ``spec.json``;
    `embed images --model simclr:PATH` reads ``arch`` from it)."""

    arch: str = "resnet18"
    image_size: int = 64  # the side of the photos it was trained on
    projection_hidden: int = 512
    projection_dim: int = 128
    seed: int = 0  # the backbone's random init (the random-init encoder it is compared with)

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
        # The same seeded random init `embed images --model random` builds: SimCLR starts from
        # exactly the random-init encoder it is compared against.
        self.backbone = build_backbone(spec.arch, ImageWeights("random"), spec.seed)
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


def normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> float, ImageNet mean / std (as the embedding encoder does)."""
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std


def two_views(images: np.ndarray, augment) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, W, 3) uint8 -> two independently augmented views (B, 3, S, S), normalised.
    Each image draws its own parameters (a v2 transform on a batch would share them)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # (B, 3, H, W)
    v1 = torch.stack([augment(img) for img in x])
    v2 = torch.stack([augment(img) for img in x])
    return normalise(v1), normalise(v2)


def simclr_loss(model: nn.Module, v1: torch.Tensor, v2: torch.Tensor, tau: float
                ) -> torch.Tensor:
    """NT-Xent (2.2) over the 2N views; one forward pass so batch norm sees both views.
    ``model`` may be the DDP wrapper of :class:`SimCLRImages`."""
    z = model(torch.cat([v1, v2]))  # (2N, d')
    return nt_xent_loss(z[: len(v1)], z[len(v1):], tau)
