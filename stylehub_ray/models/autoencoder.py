"""The CNN autoencoder whose latent space finds visually similar items for FND-CL's replace
augmentation (3.3.2), torch only.

A small convolutional encoder / decoder on down-scaled item images, trained by pixel MSE; the
latent vectors are compared by cosine similarity within a category to list each item's nearest
neighbours.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ConvAutoencoder(nn.Module):
    """(N, 3, 32, 32) in [0, 1] -> latent (N, latent) -> reconstruction (N, 3, 32, 32)."""

    def __init__(self, latent: int = 32, size: int = 32):
        super().__init__()
        if size % 8:
            raise ValueError(f"autoencoder image size {size} must be a multiple of 8")
        self.size = size
        side = size // 8
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),  # (16, s/2, s/2)
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),  # (32, s/4, s/4)
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),  # (64, s/8, s/8)
            nn.Flatten(), nn.Linear(64 * side * side, latent),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent, 64 * side * side), nn.ReLU(),
            nn.Unflatten(1, (64, side, side)),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(16, 3, 4, stride=2, padding=1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return z, self.decoder(z)


def to_autoencoder_input(images: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, size, size) float in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def fit_autoencoder(
    images: np.ndarray,
    latent: int = 32,
    size: int = 32,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
) -> tuple[ConvAutoencoder, list[float]]:
    """Train on (N, H, W, 3) uint8 images; returns the model and the mean loss per epoch."""
    torch.manual_seed(seed)
    x = to_autoencoder_input(images, size)
    model = ConvAutoencoder(latent, size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), batch_size):
            batch = x[order[start:start + batch_size]]
            _z, recon = model(batch)
            loss = F.mse_loss(recon, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        history.append(total / len(x))
    return model, history


@torch.no_grad()
def encode(model: ConvAutoencoder, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, latent) float32 latent vectors."""
    model.eval()
    x = to_autoencoder_input(images, model.size)
    return torch.cat([model.encoder(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
                     ).numpy().astype(np.float32)


def nearest_neighbors(latent: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """For every row of ``latent`` (N, L), the positions of its k most cosine-similar rows
    among ``candidates`` (indices into ``latent``), itself excluded; -1 padded. (N, k)."""
    z = latent / np.maximum(np.linalg.norm(latent, axis=1, keepdims=True), 1e-12)
    out = np.full((len(z), k), -1, dtype=np.int64)
    if len(candidates) == 0:
        return out
    sim = z @ z[candidates].T  # (N, C)
    is_self = np.arange(len(z))[:, None] == candidates[None, :]
    sim[is_self] = -np.inf
    take = min(k, len(candidates) - (1 if len(candidates) > 1 else 0))
    if take <= 0:
        return out
    top = np.argsort(-sim, axis=1)[:, :take]
    out[:, :take] = candidates[top]
    return out
