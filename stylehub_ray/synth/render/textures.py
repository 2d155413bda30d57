"""Patterns of the synthetic product photos: one fabric per H&M graphical appearance (stripes,
dots, checks, prints, denim, lace...) and the choice of pattern from the appearance's name.

Each pattern returns the fabric (H, W, 3) float32 for the whole frame; the silhouette mask
decides later where it shows, so patterns never need to know the garment's shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from stylehub_ray.synth.render.palette import luma, mix, norm_name


@dataclass
class Surface:
    """What a pattern draws on: the frame, its colours, the silhouette and the render's rng."""

    h: int
    w: int
    yy: np.ndarray  # (H, W) row index, float32
    xx: np.ndarray  # (H, W) column index, float32
    base: np.ndarray  # (3,) main colour after shade jitter
    accent: np.ndarray  # (3,) contrast colour for prints, stripes, dots
    bbox: tuple[int, int, int, int]  # silhouette rows y0:y1, columns x0:x1
    mask: np.ndarray  # (H, W) silhouette coverage in [0, 1]
    rng: np.random.Generator

    @property
    def unit(self) -> float:
        """Pixels per 128-pixel-high reference: patterns keep their scale at other sizes."""
        return self.h / 128.0

    def flat(self) -> np.ndarray:
        return np.broadcast_to(self.base, (self.h, self.w, 3)).astype(np.float32)

    def pick(self, cond: np.ndarray, colour: np.ndarray, fabric: np.ndarray | None = None,
             ) -> np.ndarray:
        """Fabric with `colour` where `cond` holds."""
        out = self.flat() if fabric is None else fabric
        return np.where(cond[..., None], colour.astype(np.float32), out)

    def motif_layer(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        img = Image.new("L", (self.w, self.h), 0)
        return img, ImageDraw.Draw(img)


@lru_cache(maxsize=8)
def grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.indices((h, w), dtype=np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def erode(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """Min over the 4-neighbourhood, `steps` times (numpy slices: ~5x faster than MinFilter)."""
    out = mask
    for _ in range(steps):
        prev, out = out, out.copy()
        np.minimum(out[1:], prev[:-1], out=out[1:])
        np.minimum(out[:-1], prev[1:], out=out[:-1])
        np.minimum(out[:, 1:], prev[:, :-1], out=out[:, 1:])
        np.minimum(out[:, :-1], prev[:, 1:], out=out[:, :-1])
    return out


def _smooth_noise(s: Surface, cells: tuple[int, int]) -> np.ndarray:
    """Low-frequency noise in [0, 1]: random cells bilinearly upsampled."""
    small = s.rng.random(cells, dtype=np.float32)
    img = Image.fromarray(small, mode="F").resize((s.w, s.h), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _solid(s: Surface) -> np.ndarray:
    return s.flat()


def _stripe(s: Surface) -> np.ndarray:
    period = s.rng.uniform(6.0, 11.0) * s.unit
    coord = s.yy if s.rng.random() < 0.8 else s.xx  # most H&M stripes are horizontal (Breton)
    on = ((coord + s.rng.uniform(0, period)) % period) < period * s.rng.uniform(0.3, 0.45)
    return s.pick(on, s.accent)


def _dot(s: Surface) -> np.ndarray:
    sp = s.rng.uniform(8.0, 12.0) * s.unit
    r = sp * s.rng.uniform(0.16, 0.24)
    row = np.floor(s.yy / sp)
    # Alternate rows are offset by half a period: the usual polka-dot lattice.
    dx = (s.xx + (row % 2) * sp / 2) % sp - sp / 2
    dy = s.yy % sp - sp / 2
    return s.pick(dx * dx + dy * dy < r * r, s.accent)


def _check(s: Surface) -> np.ndarray:
    p = s.rng.uniform(9.0, 15.0) * s.unit
    hband = (s.yy % p) < p / 2
    vband = (s.xx % p) < p / 2
    # Gingham: crossings are full accent, single bands half-way, the rest base.
    t = (hband.astype(np.float32) + vband.astype(np.float32))[..., None] * 0.5
    fabric = s.flat() * (1 - t) + s.accent.astype(np.float32) * t
    thin = (np.abs((s.xx % (2 * p)) - p / 4) < 0.6) | (np.abs((s.yy % (2 * p)) - p / 4) < 0.6)
    return s.pick(thin, s.accent * 0.6, fabric)


def _argyle(s: Surface) -> np.ndarray:
    sx, sy = 14.0 * s.unit, 20.0 * s.unit
    u, v = s.xx / sx + s.yy / sy, s.xx / sx - s.yy / sy
    diamond = (np.floor(u) + np.floor(v)) % 2 == 0
    fabric = s.pick(diamond, s.base * 0.6 + s.accent * 0.4)
    overcheck = (np.abs((u % 1) - 0.5) < 0.06) | (np.abs((v % 1) - 0.5) < 0.06)
    return s.pick(overcheck, s.accent, fabric)


def _melange(s: Surface) -> np.ndarray:
    # Heather: fibres of lighter and darker yarn, slightly streaky along the knit rows.
    n = s.rng.standard_normal((s.h, s.w), dtype=np.float32) * 0.09
    rows = s.rng.standard_normal((s.h, 1), dtype=np.float32) * 0.03
    f = 1.0 + n + rows
    return np.clip(s.flat() * f[..., None] + 18 * n[..., None], 0, 255)


def _slub(s: Surface) -> np.ndarray:
    seg = max(2, s.w // 10)
    streak = s.rng.standard_normal((s.h, seg), dtype=np.float32)
    streak = np.repeat(streak, -(-s.w // seg), axis=1)[:, : s.w]  # thick-thin yarn runs
    f = 1.0 + 0.07 * streak + 0.03 * s.rng.standard_normal((s.h, s.w), dtype=np.float32)
    return np.clip(s.flat() * f[..., None], 0, 255)


def _neps(s: Surface) -> np.ndarray:
    flecks = s.rng.random((s.h, s.w), dtype=np.float32)
    fabric = s.pick(flecks < 0.04, s.accent)
    return s.pick(flecks > 0.975, np.array([250.0, 250.0, 245.0]), fabric)


def _motif(s: Surface, draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    kind = int(s.rng.integers(0, 5))
    if kind == 0:
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif kind == 1:  # star
        pts = []
        for i in range(10):
            a = math.pi * i / 5 - math.pi / 2
            rr = r if i % 2 == 0 else r * 0.45
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        draw.polygon(pts, fill=255)
    elif kind == 2:  # slogan: lines of "text"
        for i, frac in enumerate((1.0, 0.7, 0.85)):
            y = cy - r * 0.7 + i * r * 0.6
            draw.rectangle((cx - r * frac, y, cx + r * frac, y + r * 0.35), fill=255)
    elif kind == 3:  # heart
        draw.ellipse((cx - r, cy - r * 0.6, cx, cy + r * 0.3), fill=255)
        draw.ellipse((cx, cy - r * 0.6, cx + r, cy + r * 0.3), fill=255)
        draw.polygon([(cx - r, cy - r * 0.05), (cx + r, cy - r * 0.05), (cx, cy + r)], fill=255)
    else:  # logo box
        draw.rectangle((cx - r, cy - r * 0.6, cx + r, cy + r * 0.6), fill=255)


def _front_print(s: Surface) -> np.ndarray:
    y0, y1, x0, x1 = s.bbox
    img, draw = s.motif_layer()
    r = max(3.0, min(x1 - x0, y1 - y0) * s.rng.uniform(0.16, 0.22))
    _motif(s, draw, (x0 + x1) / 2, y0 + (y1 - y0) * 0.38, r)
    return s.pick(np.asarray(img) > 127, s.accent)


def _placement_print(s: Surface) -> np.ndarray:
    y0, y1, x0, x1 = s.bbox
    img, draw = s.motif_layer()
    r = max(2.0, min(x1 - x0, y1 - y0) * s.rng.uniform(0.08, 0.12))
    # Off-centre: a chest logo, a hem graphic or a hip motif.
    cx = x0 + (x1 - x0) * s.rng.choice([0.35, 0.65])
    cy = y0 + (y1 - y0) * s.rng.choice([0.3, 0.7])
    _motif(s, draw, cx, cy, r)
    return s.pick(np.asarray(img) > 127, s.accent)


def _all_over(s: Surface) -> np.ndarray:
    # Scattered small florals/leopard spots in two colours across the whole fabric.
    img, draw = s.motif_layer()
    n = int(s.h * s.w / (60 * s.unit * s.unit))
    xs = s.rng.uniform(0, s.w, n)
    ys = s.rng.uniform(0, s.h, n)
    rs = s.rng.uniform(1.2, 3.2, n) * s.unit
    vals = s.rng.choice([128, 255], n)
    for x, y, r, val in zip(xs, ys, rs, vals):
        draw.ellipse((x - r, y - r * 0.8, x + r, y + r * 0.8), fill=int(val))
    layer = np.asarray(img)
    second = mix(s.accent, (255, 255, 255), 0.5) if luma(s.accent) < 128 else (
        mix(s.accent, (0, 0, 0), 0.5))
    fabric = s.pick(layer == 255, s.accent)
    return s.pick(layer == 128, np.array(second, dtype=np.float32), fabric)


def _colour_block(s: Surface) -> np.ndarray:
    y0, y1, x0, x1 = s.bbox
    third = np.array(mix(s.base, s.accent, 0.5), dtype=np.float32)
    kind = int(s.rng.integers(0, 3))
    if kind == 0:  # horizontal blocks: yoke / body / hem
        t = (s.yy - y0) / max(1, y1 - y0)
        fabric = s.pick(t < 0.3, s.accent)
        return s.pick(t > 0.8, third, fabric)
    if kind == 1:  # left / right halves
        return s.pick(s.xx < (x0 + x1) / 2 - 0.15 * (x1 - x0), s.accent)
    diag = (s.xx - x0) / max(1, x1 - x0) + (s.yy - y0) / max(1, y1 - y0)
    return s.pick(diag > 1.35, s.accent)


def _contrast(s: Surface) -> np.ndarray:
    # Contrast piping along the outline plus one chest band.
    edge = (s.mask > 0.5) & (erode(s.mask, 2) < 0.5)
    y0, y1 = s.bbox[0], s.bbox[1]
    band = np.abs(s.yy - (y0 + 0.42 * (y1 - y0))) < 1.5 * s.unit
    return s.pick(edge | band, s.accent)


def _mixed(s: Surface) -> np.ndarray:
    y0, y1 = s.bbox[0], s.bbox[1]
    striped = _stripe(s)
    return np.where((s.yy > (y0 + y1) / 2)[..., None], striped, s.flat())


def _embroidery(s: Surface) -> np.ndarray:
    y0, y1, x0, x1 = s.bbox
    img, draw = s.motif_layer()
    cx, cy = (x0 + x1) / 2, y0 + (y1 - y0) * 0.4
    r = max(3.0, (x1 - x0) * 0.12)
    for i in range(6):  # a stitched flower: petal outlines around a centre
        a = math.pi * i / 3
        px, py = cx + r * 0.7 * math.cos(a), cy + r * 0.7 * math.sin(a)
        draw.ellipse((px - r * 0.4, py - r * 0.4, px + r * 0.4, py + r * 0.4), outline=255,
                     width=max(1, int(s.unit)))
    draw.ellipse((cx - r * 0.25, cy - r * 0.25, cx + r * 0.25, cy + r * 0.25), fill=255)
    stitch = ((s.xx + s.yy) % 3) > 0  # dashes: thread over, under
    return s.pick((np.asarray(img) > 127) & stitch, s.accent)


def _application(s: Surface) -> np.ndarray:
    # Raised appliqué: rosettes with a lit top edge and a shadow below.
    y0, y1, x0, x1 = s.bbox
    light, dlight = s.motif_layer()
    shade, dshade = s.motif_layer()
    r = max(2.0, (x1 - x0) * 0.07)
    for _ in range(int(s.rng.integers(3, 6))):
        cx = s.rng.uniform(x0 + r, max(x0 + r + 1, x1 - r))
        cy = s.rng.uniform(y0 + (y1 - y0) * 0.15, y0 + (y1 - y0) * 0.6)
        dshade.ellipse((cx - r, cy - r + 1.5, cx + r, cy + r + 1.5), fill=255)
        dlight.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    fabric = s.pick(np.asarray(shade) > 127, s.base * 0.55)
    return s.pick(np.asarray(light) > 127, np.minimum(s.base * 1.25 + 25, 255), fabric)


def _glitter(s: Surface) -> np.ndarray:
    sparkle = s.rng.random((s.h, s.w), dtype=np.float32)
    fabric = s.pick(sparkle < 0.06, np.array([255.0, 252.0, 235.0]))
    return s.pick(sparkle > 0.96, np.minimum(s.base * 1.4 + 40, 255), fabric)


def _metallic(s: Surface) -> np.ndarray:
    # Foil sheen: a bright diagonal highlight band fading into darker folds.
    d = (s.xx / s.w + s.yy / s.h) * math.pi * s.rng.uniform(1.5, 2.5)
    sheen = np.cos(d + s.rng.uniform(0, math.tau))[..., None]
    fabric = s.flat() * (0.9 + 0.2 * sheen)
    return np.clip(fabric + np.maximum(sheen, 0) * 45, 0, 255)


def _sequin(s: Surface) -> np.ndarray:
    sp = 4.0 * s.unit
    cell_y, cell_x = np.floor(s.yy / sp), np.floor((s.xx + (np.floor(s.yy / sp) % 2) * sp / 2) / sp)
    # Each sequin catches the light differently: a hash of its cell gives its brightness.
    hashv = np.sin(cell_x * 12.9898 + cell_y * 78.233 + s.rng.uniform(0, 100)) * 43758.5453
    bright = (hashv - np.floor(hashv))[..., None]
    return np.clip(s.flat() * (0.7 + 0.6 * bright) + 30 * (bright > 0.85), 0, 255)


def _treatment(s: Surface) -> np.ndarray:
    # Acid wash / tie-dye: blotchy low-frequency bleaching.
    n = _smooth_noise(s, (6, 5))[..., None]
    t = np.clip((n - 0.45) * 1.4, 0, 0.5)
    return s.flat() * (1 - t) + 255 * t


def _transparent(s: Surface) -> np.ndarray:
    # Sheer fabric: the white table shows through, a fine weave keeps it visible.
    weave = (((s.xx % 3) < 1) | ((s.yy % 3) < 1)).astype(np.float32)[..., None]
    sheer = 0.55 - 0.25 * weave
    return s.flat() * (1 - sheer) + 255 * sheer


def _lace(s: Surface) -> np.ndarray:
    sp = 6.0 * s.unit
    row = np.floor(s.yy / sp)
    dx = (s.xx + (row % 2) * sp / 2) % sp - sp / 2
    dy = s.yy % sp - sp / 2
    d2 = dx * dx + dy * dy
    holes = (d2 < (sp * 0.32) ** 2) & (d2 > (sp * 0.12) ** 2)
    t = holes[..., None] * 0.75
    return s.flat() * (1 - t) + 255 * t


def _mesh(s: Surface) -> np.ndarray:
    p = max(3, round(4 * s.unit))
    holes = ((s.xx % p) >= p / 2) & ((s.yy % p) >= p / 2)
    t = holes[..., None] * 0.65
    return s.flat() * (1 - t) + 255 * t


def _jacquard(s: Surface) -> np.ndarray:
    tile = 12.0 * s.unit
    u = (s.xx % tile) / tile - 0.5
    v = (s.yy % tile) / tile - 0.5
    figure = (np.abs(u) + np.abs(v) < 0.32) & ~(np.abs(u) + np.abs(v) < 0.16)  # woven lozenges
    return s.pick(figure, np.array(mix(s.base, s.accent, 0.45), dtype=np.float32))


def _denim(s: Surface) -> np.ndarray:
    # 3/1 twill diagonals, indigo weft noise and a lighter fade down the front.
    twill = (((s.xx + s.yy) % 4) < 2).astype(np.float32)
    weft = s.rng.standard_normal((s.h, s.w), dtype=np.float32) * 0.05
    x0, x1 = s.bbox[2], s.bbox[3]
    cx = (x0 + x1) / 2
    fade = np.exp(-(((s.xx - cx) / max(4, 0.35 * (x1 - x0))) ** 2)) * 0.18
    f = (0.88 + 0.12 * twill + weft)[..., None]
    return np.clip(s.flat() * f * (1 - fade[..., None]) + 255 * fade[..., None], 0, 255)


def _chambray(s: Surface) -> np.ndarray:
    white = (s.rng.random((s.h, s.w), dtype=np.float32) < 0.3)[..., None] * 0.3
    cross = (((s.xx + s.yy) % 2) < 1)[..., None] * 0.05
    return s.flat() * (1 - white - cross) + 255 * white


def _structure(s: Surface) -> np.ndarray:
    # Rib knit / waffle: regular vertical ribs, sometimes crossed.
    p = max(2, round(3 * s.unit))
    rib = (s.xx % p) < 1
    if s.rng.random() < 0.4:
        rib = rib | ((s.yy % p) < 1)
    return s.pick(rib, s.base * 0.78)


def _other_pattern(s: Surface) -> np.ndarray:
    # Chevron zigzag: a pattern, but none of the named ones.
    p = 10.0 * s.unit
    zig = s.yy + np.abs((s.xx % p) - p / 2)
    return s.pick((zig % p) < p * 0.35, s.accent)


PATTERNS: dict[str, Callable[[Surface], np.ndarray]] = {
    "solid": _solid, "stripe": _stripe, "dot": _dot, "check": _check, "argyle": _argyle,
    "melange": _melange, "slub": _slub, "neps": _neps, "front_print": _front_print,
    "placement_print": _placement_print, "all_over": _all_over, "colour_block": _colour_block,
    "contrast": _contrast, "mixed": _mixed, "embroidery": _embroidery,
    "application": _application, "glitter": _glitter, "metallic": _metallic,
    "sequin": _sequin, "treatment": _treatment, "transparent": _transparent, "lace": _lace,
    "mesh": _mesh, "jacquard": _jacquard, "denim": _denim, "chambray": _chambray,
    "structure": _structure, "other_pattern": _other_pattern,
}

# graphical_appearance_name (lower case) -> pattern, for every appearance in hm_vocab.json.
_APPEARANCE_PATTERN = {
    "solid": "solid", "unknown": "solid", "stripe": "stripe", "dot": "dot", "check": "check",
    "argyle": "argyle", "melange": "melange", "slub": "slub", "neps": "neps",
    "front print": "front_print", "placement print": "placement_print",
    "all over pattern": "all_over", "colour blocking": "colour_block", "contrast": "contrast",
    "mixed solid/pattern": "mixed", "embroidery": "embroidery", "application/3d": "application",
    "glittering/metallic": "glitter", "metallic": "metallic", "sequin": "sequin",
    "treatment": "treatment", "transparent": "transparent", "lace": "lace", "mesh": "mesh",
    "jacquard": "jacquard", "denim": "denim", "chambray": "chambray",
    "other structure": "structure", "other pattern": "other_pattern",
}

_APPEARANCE_KEYWORDS = (
    ("stripe", "stripe"), ("dot", "dot"), ("spot", "dot"), ("check", "check"),
    ("plaid", "check"), ("tartan", "check"), ("argyle", "argyle"), ("melange", "melange"),
    ("print", "front_print"), ("floral", "all_over"), ("block", "colour_block"),
    ("lace", "lace"), ("mesh", "mesh"), ("denim", "denim"), ("glitter", "glitter"),
    ("metal", "metallic"), ("sequin", "sequin"), ("embroid", "embroidery"),
    ("pattern", "other_pattern"), ("structure", "structure"), ("knit", "structure"),
)


def pattern_for(graphical_appearance_name: object) -> str:
    """Name of the pattern (a key of PATTERNS) drawn for a graphical appearance."""
    key = norm_name(graphical_appearance_name)
    if key in _APPEARANCE_PATTERN:
        return _APPEARANCE_PATTERN[key]
    for word, pattern in _APPEARANCE_KEYWORDS:
        if word in key:
            return pattern
    return "solid"  # nothing known about the surface: plain fabric is the common case
