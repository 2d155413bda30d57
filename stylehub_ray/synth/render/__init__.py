"""Synthetic product photos rendered from H&M article attributes.

The synthetic H&M generator needs an image per article from which an image encoder (ResNet,
SimCLR) can recover the attributes that drive real purchases: colour, silhouette and pattern.
Each render is a white-background portrait "packshot" (96x128 by default, like the real H&M
photos): a silhouette chosen by product group and refined by product type, filled with the
colour group's RGB, with the graphical appearance drawn as a texture inside the silhouette.
A seed adds small scale/offset/rotation/shade jitter, so two articles with equal attributes are
not pixel-identical, while a given seed always gives the same image.

The parts: ``palette`` (colours, shade jitter, contrast colours), ``shapes`` (the pen and the
silhouettes), ``textures`` (the patterns); this module composes them into a photo.

Only Pillow and numpy are used; one 96x128 render costs well under a millisecond of drawing
plus a few vectorised numpy passes, so a single core renders several hundred images a second.
Names outside the vocabulary (``stylehub_ray/synth/hm_vocab.json``) never raise: they fall back
by keyword (``"Navy Blue"`` -> blue, ``"Pinstripe"`` -> stripe) and then to a neutral default.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from stylehub_ray.synth.render.palette import COLOUR_RGB, accent_for, base_colour, colour_rgb, luma
from stylehub_ray.synth.render.shapes import SILHOUETTES, draw_silhouette, silhouette_for
from stylehub_ray.synth.render.textures import PATTERNS, Surface, erode, grid, pattern_for

__all__ = [
    "COLOUR_RGB", "PATTERNS", "SILHOUETTES", "colour_rgb", "pattern_for", "render_article",
    "render_to_jpeg", "silhouette_for", "silhouette_mask",
]

_BACKGROUND = 255.0


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        w, h = int(size[0]), int(size[1])
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"render size must be (width, height) integers, got {size!r}") from exc
    if w < 8 or h < 8:
        raise ValueError(f"render size must be at least 8x8 pixels, got {size!r}")
    return w, h


def silhouette_mask(
    product_group_name: str,
    product_type_name: str,
    *,
    size: tuple[int, int] = (96, 128),
    seed: int = 0,
) -> np.ndarray:
    """Coverage (H, W) float32 in [0, 1] of the silhouette `render_article` draws for the same
    group, type, size and seed (useful as a segmentation target and in tests)."""
    w, h = _check_size(size)
    rng = np.random.default_rng(seed)
    return draw_silhouette(silhouette_for(product_group_name, product_type_name), w, h, rng)[0]


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.max(axis=1) > 0.5)
    cols = np.flatnonzero(mask.max(axis=0) > 0.5)
    if rows.size == 0:
        h, w = mask.shape
        return 0, h, 0, w
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def render_article(
    product_group_name: str,
    product_type_name: str,
    colour_group_name: str,
    graphical_appearance_name: str,
    *,
    size: tuple[int, int] = (96, 128),
    seed: int = 0,
) -> Image.Image:
    """Render a white-background product photo (RGB, `size` = (width, height)) of an article.

    The silhouette follows the product group and type, the fill the colour group and the
    texture the graphical appearance; `seed` sets the small scale/offset/rotation/shade jitter.
    Unknown names fall back (see `silhouette_for`, `colour_rgb`, `pattern_for`), never raise.
    """
    w, h = _check_size(size)
    rng = np.random.default_rng(seed)
    shape = silhouette_for(product_group_name, product_type_name)
    mask, dark, light = draw_silhouette(shape, w, h, rng)

    base = base_colour(colour_group_name, rng)  # with shade jitter
    yy, xx = grid(h, w)
    surface = Surface(h, w, yy, xx, base, accent_for(base, rng), _bbox(mask), mask, rng)
    fabric = PATTERNS[pattern_for(graphical_appearance_name)](surface)  # (H, W, 3)

    # Studio light: a soft side-to-side gradient, and a darker rim so white-on-white articles
    # keep a visible outline (real packshots have the same soft edge shadow).
    tilt = rng.uniform(-0.05, 0.05)
    shade = 1.0 + tilt * (xx * (2.0 / w) - 1.0) - 0.18 * (mask - erode(mask))
    # Seams and shadows darken; on near-black fabric darkening is invisible, so there they
    # catch the light instead (as stitching on black leather does in real photos).
    if luma(base) < 60:
        light = np.maximum(light, 0.2 * dark)
    else:
        shade = shade - 0.35 * dark
    fabric = fabric * shade[..., None]
    fabric = fabric + (255.0 - fabric) * (0.75 * light)[..., None]

    m = mask[..., None]
    out = fabric * m + _BACKGROUND * (1.0 - m)
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), mode="RGB")


def render_to_jpeg(
    product_group_name: str,
    product_type_name: str,
    colour_group_name: str,
    graphical_appearance_name: str,
    *,
    size: tuple[int, int] = (96, 128),
    seed: int = 0,
    quality: int = 85,
) -> bytes:
    """`render_article` encoded as JPEG bytes (quality 85, like the H&M image dump)."""
    img = render_article(product_group_name, product_type_name, colour_group_name,
                         graphical_appearance_name, size=size, seed=seed)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
