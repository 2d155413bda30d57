"""Synthetic product photos rendered from H&M article attributes.

The synthetic H&M generator needs an image per article from which an image encoder (ResNet,
SimCLR) can recover the attributes that drive real purchases: colour, silhouette and pattern.
Each render is a white-background portrait "packshot" (96x128 by default, like the real H&M
photos): a silhouette chosen by product group and refined by product type, filled with the
colour group's RGB, with the graphical appearance drawn as a texture inside the silhouette.
A seed adds small scale/offset/rotation/shade jitter, so two articles with equal attributes are
not pixel-identical, while a given seed always gives the same image.

Only Pillow and numpy are used; one 96x128 render costs well under a millisecond of drawing
plus a few vectorised numpy passes, so a single core renders several hundred images a second.
Names outside the vocabulary (``stylehub_ray/synth/hm_vocab.json``) never raise: they fall back
by keyword (``"Navy Blue"`` -> blue, ``"Pinstripe"`` -> stripe) and then to a neutral default.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]
Point = tuple[float, float]
Box = tuple[float, float, float, float]

# One RGB per colour_group_name of hm_vocab.json (all 50). Values follow the H&M naming: the
# "Light"/"Dark" variants are tints/shades of the plain colour and "Other X" is a muted X, so
# the colour groups an encoder must separate stay ordered the way shoppers perceive them.
COLOUR_RGB: dict[str, RGB] = {
    "Black": (28, 28, 30),
    "White": (250, 250, 248),
    "Off White": (243, 239, 226),
    "Light Grey": (200, 200, 202),
    "Grey": (140, 140, 143),
    "Dark Grey": (78, 78, 82),
    "Light Beige": (236, 222, 196),
    "Beige": (216, 196, 160),
    "Dark Beige": (172, 146, 110),
    "Greyish Beige": (180, 170, 150),
    "Yellowish Brown": (150, 106, 48),
    "Greenish Khaki": (122, 122, 78),
    "Light Yellow": (250, 238, 160),
    "Yellow": (242, 208, 40),
    "Dark Yellow": (200, 160, 30),
    "Other Yellow": (226, 200, 96),
    "Light Orange": (250, 184, 126),
    "Orange": (238, 128, 36),
    "Dark Orange": (196, 86, 28),
    "Other Orange": (216, 124, 76),
    "Light Red": (236, 112, 112),
    "Red": (200, 30, 42),
    "Dark Red": (128, 22, 36),
    "Other Red": (184, 60, 60),
    "Light Pink": (246, 194, 208),
    "Pink": (238, 146, 178),
    "Dark Pink": (196, 58, 110),
    "Other Pink": (218, 132, 160),
    "Light Purple": (200, 176, 226),
    "Purple": (118, 60, 150),
    "Dark Purple": (74, 36, 90),
    "Other Purple": (142, 96, 150),
    "Light Blue": (160, 196, 232),
    "Blue": (44, 84, 172),
    "Dark Blue": (26, 36, 82),
    "Other Blue": (74, 112, 160),
    "Light Turquoise": (150, 220, 214),
    "Turquoise": (36, 172, 172),
    "Dark Turquoise": (0, 108, 114),
    "Other Turquoise": (64, 166, 164),
    "Light Green": (170, 214, 164),
    "Green": (58, 140, 70),
    "Dark Green": (30, 74, 46),
    "Other Green": (92, 130, 92),
    "Gold": (212, 172, 60),
    "Silver": (190, 192, 198),
    "Bronze/Copper": (180, 112, 56),
    # Clear plastic/organza photographs as a faint cool grey on a white table.
    "Transparent": (222, 226, 232),
    # No hue is known for these two: a neutral mid tone keeps them away from every real group.
    "Other": (150, 134, 142),
    "Unknown": (128, 128, 128),
}

# Colours used for prints, dots and stripes: the H&M palette's most common contrast colours.
_ACCENT_NAMES = (
    "Black", "White", "Off White", "Red", "Dark Blue", "Yellow", "Light Pink", "Green",
    "Orange", "Light Blue", "Dark Red", "Beige",
)

_SUPERSAMPLE = 2  # silhouettes are drawn at 2x and box-filtered down: anti-aliased edges
_BACKGROUND = 255.0


# ---------------------------------------------------------------------------------------------
# Name normalisation and fallbacks
# ---------------------------------------------------------------------------------------------


def _norm(name: object) -> str:
    """Lower-case, stripped name; None/NaN and other non-strings become '' (-> fallback)."""
    if not isinstance(name, str):
        return ""
    return " ".join(name.strip().lower().split())


_COLOUR_BY_KEY = {k.lower(): v for k, v in COLOUR_RGB.items()}
# Words that name a hue in free text, mapped to a colour group, for names outside the vocabulary.
_COLOUR_WORDS = {
    "black": "Black", "white": "White", "cream": "Off White", "ivory": "Off White",
    "grey": "Grey", "gray": "Grey", "beige": "Beige", "sand": "Beige", "camel": "Dark Beige",
    "brown": "Yellowish Brown", "khaki": "Greenish Khaki", "olive": "Greenish Khaki",
    "yellow": "Yellow", "mustard": "Dark Yellow", "orange": "Orange", "rust": "Dark Orange",
    "red": "Red", "burgundy": "Dark Red", "wine": "Dark Red", "pink": "Pink",
    "purple": "Purple", "lilac": "Light Purple", "violet": "Purple", "blue": "Blue",
    "navy": "Dark Blue", "denim": "Blue", "turquoise": "Turquoise", "teal": "Dark Turquoise",
    "mint": "Light Turquoise", "green": "Green", "gold": "Gold", "silver": "Silver",
    "copper": "Bronze/Copper", "bronze": "Bronze/Copper",
}


def colour_rgb(colour_group_name: object) -> RGB:
    """RGB of a colour group; unknown names fall back by hue word and light/dark modifier."""
    key = _norm(colour_group_name)
    if key in _COLOUR_BY_KEY:
        return _COLOUR_BY_KEY[key]
    words = key.replace("/", " ").replace("-", " ").split()
    for word in reversed(words):  # the hue is usually the last word: "Dusty Light Pink"
        if word in _COLOUR_WORDS:
            r, g, b = COLOUR_RGB[_COLOUR_WORDS[word]]
            if "light" in words or "pale" in words:
                return _mix((r, g, b), (255, 255, 255), 0.45)
            if "dark" in words or "deep" in words:
                return (int(r * 0.55), int(g * 0.55), int(b * 0.55))
            return (r, g, b)
    return COLOUR_RGB["Unknown"]


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def _luma(c: Sequence[float]) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


# ---------------------------------------------------------------------------------------------
# Drawing in unit coordinates with jitter
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Jitter:
    """Per-render similarity transform: scale, offset (fraction of the image), rotation."""

    scale: float
    dx: float
    dy: float
    cos: float
    sin: float


class _Pen:
    """Draws shapes given in a unit frame (u right, v down) onto the render's layers.

    Layers: "mask" (the silhouette; value 0 cuts holes), "dark" (seams, shadows, soles: darken
    the fabric) and "light" (white soles, highlights: lighten it). A sub-frame maps the unit
    square onto part of the image, so sets (top + trousers) reuse the single-garment shapes.
    """

    def __init__(
        self,
        draws: dict[str, ImageDraw.ImageDraw],
        size: tuple[int, int],
        jitter: _Jitter,
        frame: Box = (0.0, 0.0, 1.0, 1.0),
        tint: int | None = None,
    ) -> None:
        self._draws = draws
        self._w, self._h = size
        self._j = jitter
        self._frame = frame
        self._tint = tint

    def sub(self, u0: float, v0: float, u1: float, v1: float) -> _Pen:
        fx0, fy0, fx1, fy1 = self._frame
        fw, fh = fx1 - fx0, fy1 - fy0
        frame = (fx0 + u0 * fw, fy0 + v0 * fh, fx0 + u1 * fw, fy0 + v1 * fh)
        return _Pen(self._draws, (self._w, self._h), self._j, frame, self._tint)

    def tinted(self, value: int) -> _Pen:
        """Same frame; every silhouette fill also sets the dark layer to `value` (0 clears it)
        and clears the light layer, so one object can sit in front of or in the shadow of
        another (the two shoes of a pair) without the one behind showing through."""
        return _Pen(self._draws, (self._w, self._h), self._j, self._frame, value)

    def _emit(self, op: str, layer: str, value: int, xy: object, **kw: object) -> None:
        getattr(self._draws[layer], op)(xy, fill=value, **kw)
        if layer == "mask" and value and self._tint is not None:
            getattr(self._draws["dark"], op)(xy, fill=self._tint, **kw)
            getattr(self._draws["light"], op)(xy, fill=0, **kw)

    def _xy(self, u: float, v: float) -> Point:
        fx0, fy0, fx1, fy1 = self._frame
        # Rotate and scale about the image centre in pixels, so the aspect ratio is kept.
        px = (fx0 + u * (fx1 - fx0) - 0.5) * self._w
        py = (fy0 + v * (fy1 - fy0) - 0.5) * self._h
        j = self._j
        x = j.scale * (j.cos * px - j.sin * py) + (0.5 + j.dx) * self._w
        y = j.scale * (j.sin * px + j.cos * py) + (0.5 + j.dy) * self._h
        return (x, y)

    def _px(self, d: float) -> float:
        """A length in frame-width units, in pixels."""
        return d * (self._frame[2] - self._frame[0]) * self._w * self._j.scale

    def poly(self, pts: Sequence[Point], layer: str = "mask", value: int = 255) -> None:
        self._emit("polygon", layer, value, [self._xy(u, v) for u, v in pts])

    def sym(self, half: Sequence[Point], layer: str = "mask", value: int = 255) -> None:
        """Left-right symmetric polygon from its right half (top centre to bottom centre)."""
        mirrored = [(1.0 - u, v) for u, v in reversed(half)]
        self.poly(list(half) + mirrored, layer, value)

    def rect(self, box: Box, layer: str = "mask", value: int = 255) -> None:
        u0, v0, u1, v1 = box
        self.poly([(u0, v0), (u1, v0), (u1, v1), (u0, v1)], layer, value)

    def ellipse(self, box: Box, layer: str = "mask", value: int = 255) -> None:
        u0, v0, u1, v1 = box
        cx, cy = self._xy((u0 + u1) / 2, (v0 + v1) / 2)
        # Rotation of at most a few degrees: an axis-aligned ellipse is close enough.
        rx = max(self._px((u1 - u0) / 2), 0.5)
        ry = max((v1 - v0) / 2 * (self._frame[3] - self._frame[1]) * self._h * self._j.scale, 0.5)
        self._emit("ellipse", layer, value, (cx - rx, cy - ry, cx + rx, cy + ry))

    def line(
        self, pts: Sequence[Point], width: float, layer: str = "mask", value: int = 255
    ) -> None:
        w = max(1, round(self._px(width)))
        self._emit("line", layer, value, [self._xy(u, v) for u, v in pts], width=w,
                   joint="curve")

    def dots(self, pts: Sequence[Point], r: float, layer: str = "light", value: int = 255) -> None:
        for u, v in pts:
            self.ellipse((u - r, v - r * 0.75, u + r, v + r * 0.75), layer, value)


def _arc(cu: float, cv: float, ru: float, rv: float, a0: float, a1: float,
         n: int = 10) -> list[Point]:
    """Points on an elliptic arc; angles in degrees, 0 = right, 90 = down (image axes)."""
    out = []
    for i in range(n + 1):
        a = math.radians(a0 + (a1 - a0) * i / n)
        out.append((cu + ru * math.cos(a), cv + rv * math.sin(a)))
    return out


# ---------------------------------------------------------------------------------------------
# Silhouettes. Each takes a pen and the render's generator (for small style variation).
# ---------------------------------------------------------------------------------------------

ShapeFn = Callable[[_Pen, np.random.Generator], None]


def _upper(
    p: _Pen,
    sleeve: str,
    *,
    hw: float = 0.24,
    hem: float = 0.84,
    neck: str = "crew",
    flare: float = 0.0,
    cuff: float = 0.0,
) -> None:
    """Upper-body garment seen from the front: torso, neckline and sleeves (none/short/long)."""
    side = 0.5 + hw
    neck_pts = {
        "crew": [(0.5, 0.17), (0.61, 0.12)],
        "scoop": [(0.5, 0.23), (0.61, 0.12)],
        "v": [(0.5, 0.32), (0.61, 0.12)],
        "deep": [(0.5, 0.42), (0.61, 0.12)],
    }[neck]
    if sleeve == "none":
        body = [(0.665, 0.11), (side - 0.04, 0.27), (side, 0.34)]
    elif sleeve == "short":
        body = [(side, 0.15), (side + 0.16, 0.29), (side + 0.09, 0.37), (side, 0.31)]
    elif sleeve == "cap":
        body = [(side, 0.15), (side + 0.08, 0.24), (side + 0.02, 0.29), (side, 0.28)]
    else:  # long
        body = [(side, 0.15), (side + 0.19 + cuff, 0.71), (side + 0.1, 0.73),
                (side + 0.01, 0.35)]
    p.sym(neck_pts + body + [(side + flare, hem), (0.5, hem)])


def _lines(p: _Pen, segments: Sequence[Sequence[Point]], width: float = 0.012,
           layer: str = "dark", value: int = 200) -> None:
    for seg in segments:
        p.line(seg, width, layer, value)


def _tshirt(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p, "short", hw=0.24 + rng.uniform(-0.02, 0.02))
    p.line(_arc(0.5, 0.12, 0.11, 0.05, 10, 170), 0.018, "dark", 140)  # neckband seam


def _top(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p, "cap", hw=0.2, hem=0.78, neck="scoop")


def _vest_top(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p, "none", hw=0.2, hem=0.84, neck="scoop")


def _sweater(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p, "long", hw=0.25, hem=0.82)
    _lines(p, [[(0.26, 0.77), (0.74, 0.77)], _arc(0.5, 0.12, 0.11, 0.05, 10, 170)], 0.02)
    _lines(p, [[(0.84, 0.67), (0.93, 0.66)], [(0.16, 0.67), (0.07, 0.66)]], 0.02)


def _hoodie(p: _Pen, rng: np.random.Generator) -> None:
    p.ellipse((0.33, 0.02, 0.67, 0.26))  # hood behind the neck
    _upper(p, "long", hw=0.25, hem=0.82)
    p.ellipse((0.41, 0.07, 0.59, 0.22), "dark", 150)  # hood opening
    p.sym([(0.5, 0.56), (0.62, 0.56), (0.68, 0.76), (0.5, 0.76)], "dark", 70)  # pocket
    _lines(p, [[(0.46, 0.2), (0.45, 0.38)], [(0.54, 0.2), (0.55, 0.38)]], 0.012, "light", 220)


def _cardigan(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p, "long", hw=0.25, hem=0.82, neck="v")
    _lines(p, [[(0.5, 0.32), (0.5, 0.82)]], 0.014)
    p.dots([(0.53, v) for v in (0.4, 0.5, 0.6, 0.7)], 0.018)


def _jacket(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p, "long", hw=0.27, hem=0.72, cuff=0.01)
    p.sym([(0.5, 0.18), (0.6, 0.1), (0.7, 0.14), (0.62, 0.26), (0.5, 0.2)], "dark", 90)  # collar
    _lines(p, [[(0.5, 0.2), (0.5, 0.72)], [(0.3, 0.55), (0.4, 0.55)], [(0.6, 0.55), (0.7, 0.55)]])


def _coat(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p, "long", hw=0.26, hem=0.95, neck="v", flare=0.05, cuff=0.01)
    p.sym([(0.5, 0.32), (0.61, 0.12), (0.66, 0.16), (0.58, 0.3), (0.5, 0.36)], "dark", 110)
    _lines(p, [[(0.52, 0.34), (0.52, 0.95)]])
    p.dots([(0.57, v) for v in (0.42, 0.54, 0.66)], 0.02, "dark", 170)


def _blazer(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p, "long", hw=0.25, hem=0.8, neck="deep")
    _lines(p, [[(0.61, 0.12), (0.58, 0.28), (0.64, 0.31), (0.5, 0.5)],
               [(0.39, 0.12), (0.42, 0.28), (0.36, 0.31), (0.5, 0.5)], [(0.5, 0.5), (0.5, 0.8)],
               [(0.3, 0.62), (0.4, 0.62)], [(0.6, 0.62), (0.7, 0.62)]], 0.014, "dark", 220)
    p.dots([(0.52, 0.56)], 0.02, "dark", 200)


def _shirt(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p, "long", hw=0.24, hem=0.86, cuff=-0.01)
    p.sym([(0.5, 0.19), (0.6, 0.11), (0.63, 0.17), (0.56, 0.24), (0.5, 0.19)], "light", 120)
    _lines(p, [[(0.5, 0.19), (0.5, 0.86)]], 0.01, "dark", 150)
    p.dots([(0.53, v) for v in (0.3, 0.42, 0.54, 0.66, 0.78)], 0.012)


def _blouse(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p, "long", hw=0.22, hem=0.8, neck="scoop", flare=0.04, cuff=0.04)
    _lines(p, [[(0.82, 0.68), (0.92, 0.69)], [(0.18, 0.68), (0.08, 0.69)]], 0.015, "dark", 110)


def _polo(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p, "short", hw=0.24)
    p.sym([(0.5, 0.19), (0.6, 0.11), (0.64, 0.18), (0.55, 0.24), (0.5, 0.19)], "dark", 110)
    _lines(p, [[(0.5, 0.19), (0.5, 0.34)]], 0.02, "dark", 130)


def _bodysuit(p: _Pen, rng: np.random.Generator) -> None:
    p.sym([(0.5, 0.24), (0.6, 0.1), (0.66, 0.1), (0.7, 0.3), (0.69, 0.62), (0.6, 0.8),
           (0.55, 0.88), (0.5, 0.88)])


def _waistcoat(p: _Pen, rng: np.random.Generator) -> None:
    p.sym([(0.5, 0.46), (0.61, 0.12), (0.67, 0.12), (0.69, 0.3), (0.74, 0.36), (0.74, 0.68),
           (0.5, 0.76)])
    p.dots([(0.52, v) for v in (0.5, 0.58, 0.66)], 0.016, "dark", 200)


def _puffer_vest(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p, "none", hw=0.26, hem=0.76, neck="crew")
    _lines(p, [[(0.24, v), (0.76, v)] for v in (0.36, 0.48, 0.6)], 0.012, "dark", 120)
    _lines(p, [[(0.5, 0.17), (0.5, 0.76)]], 0.01, "dark", 180)


def _trousers(p: _Pen, rng: np.random.Generator) -> None:
    wide = rng.uniform(-0.03, 0.04)  # slim to wide leg
    p.sym([(0.5, 0.07), (0.72, 0.07), (0.75, 0.3), (0.77 + wide, 0.95), (0.56 - wide / 2, 0.95),
           (0.515, 0.4), (0.5, 0.4)])
    _lines(p, [[(0.28, 0.12), (0.72, 0.12)]], 0.02, "dark", 110)
    _lines(p, [[(0.5, 0.12), (0.5, 0.3)], [(0.64, 0.12), (0.73, 0.22)],
               [(0.36, 0.12), (0.27, 0.22)]], 0.01, "dark", 170)


def _leggings(p: _Pen, rng: np.random.Generator) -> None:
    p.sym([(0.5, 0.06), (0.66, 0.06), (0.69, 0.3), (0.63, 0.94), (0.545, 0.94), (0.512, 0.36),
           (0.5, 0.36)])


def _shorts(p: _Pen, rng: np.random.Generator) -> None:
    p.sym([(0.5, 0.22), (0.73, 0.22), (0.77, 0.4), (0.82, 0.64), (0.56, 0.66), (0.515, 0.48),
           (0.5, 0.48)])
    _lines(p, [[(0.27, 0.27), (0.73, 0.27)]], 0.02, "dark", 110)


def _skirt(p: _Pen, rng: np.random.Generator) -> None:
    hem = rng.uniform(0.62, 0.86)
    p.sym([(0.5, 0.14), (0.68, 0.14), (0.84, hem), (0.5, hem + 0.02)])
    _lines(p, [[(0.32, 0.19), (0.68, 0.19)]], 0.018, "dark", 100)


def _dress(p: _Pen, rng: np.random.Generator) -> None:
    hem = rng.uniform(0.82, 0.95)
    p.sym([(0.5, 0.2), (0.6, 0.08), (0.655, 0.08), (0.7, 0.25), (0.665, 0.42), (0.86, hem),
           (0.5, hem + 0.01)])
    if rng.random() < 0.35:  # some dresses have short sleeves
        p.sym([(0.5, 0.14), (0.655, 0.08), (0.8, 0.22), (0.74, 0.3), (0.5, 0.25)])
    _lines(p, [[(0.34, 0.42), (0.66, 0.42)]], 0.012, "dark", 100)


def _jumpsuit(p: _Pen, rng: np.random.Generator) -> None:
    p.sym([(0.5, 0.2), (0.6, 0.08), (0.655, 0.08), (0.7, 0.25), (0.68, 0.45), (0.76, 0.95),
           (0.555, 0.95), (0.515, 0.6), (0.5, 0.6)])
    _lines(p, [[(0.32, 0.44), (0.68, 0.44)]], 0.02, "dark", 120)


def _dungarees(p: _Pen, rng: np.random.Generator) -> None:
    p.sym([(0.5, 0.2), (0.63, 0.2), (0.63, 0.38), (0.72, 0.4), (0.75, 0.55), (0.77, 0.95),
           (0.56, 0.95), (0.515, 0.62), (0.5, 0.62)])
    _lines(p, [[(0.4, 0.21), (0.34, 0.04)], [(0.6, 0.21), (0.66, 0.04)]], 0.05, "mask", 255)
    p.rect((0.43, 0.25, 0.57, 0.34), "dark", 80)


def _overall(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p.sub(0.0, 0.0, 1.0, 0.75), "long", hw=0.25, hem=0.75)
    _trousers(p.sub(0.03, 0.35, 0.97, 1.0), rng)
    _lines(p, [[(0.5, 0.13), (0.5, 0.6)]], 0.012)


def _set_top_bottom(top: ShapeFn, bottom: ShapeFn) -> ShapeFn:
    def draw(p: _Pen, rng: np.random.Generator) -> None:
        top(p.sub(0.08, 0.0, 0.92, 0.55), rng)
        bottom(p.sub(0.12, 0.45, 0.88, 1.0), rng)
    return draw


def _long_tee(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p, "long", hw=0.24, hem=0.86)


def _long_john(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p.sub(0.0, 0.0, 1.0, 0.7), "long", hw=0.22, hem=0.75)
    _leggings(p.sub(0.05, 0.38, 0.95, 1.0), rng)


def _robe(p: _Pen, rng: np.random.Generator) -> None:
    _upper(p, "long", hw=0.25, hem=0.95, neck="v", flare=0.05, cuff=0.04)
    _lines(p, [[(0.22, 0.5), (0.78, 0.5)], [(0.6, 0.5), (0.64, 0.66)]], 0.025, "dark", 130)


def _sarong(p: _Pen, rng: np.random.Generator) -> None:
    p.poly([(0.22, 0.18), (0.78, 0.18), (0.86, 0.88), (0.5, 0.84), (0.2, 0.72)])
    p.ellipse((0.62, 0.14, 0.74, 0.26))
    _lines(p, [[(0.68, 0.24), (0.6, 0.84)]], 0.012, "dark", 110)


def _corset(p: _Pen, rng: np.random.Generator) -> None:
    p.sym([(0.5, 0.22), (0.7, 0.2), (0.64, 0.5), (0.7, 0.78), (0.5, 0.8)])
    _lines(p, [[(0.45, v), (0.55, v + 0.04)] for v in np.arange(0.26, 0.74, 0.08)], 0.01,
           "light", 200)


def _bra(p: _Pen, rng: np.random.Generator) -> None:
    for cu, top in ((0.36, 0.4), (0.64, 0.6)):
        # A cup: rounded underwire below, rising to a point where the strap joins.
        p.poly(_arc(cu, 0.42, 0.14, 0.14, 0, 180) + [(top, 0.24)])
    p.rect((0.2, 0.5, 0.8, 0.58))
    _lines(p, [[(0.4, 0.25), (0.34, 0.08)], [(0.6, 0.25), (0.66, 0.08)]], 0.018, "mask", 255)
    _lines(p, [[(0.2, 0.54), (0.8, 0.54)]], 0.012, "dark", 90)


def _bikini_top(p: _Pen, rng: np.random.Generator) -> None:
    for x in (0.33, 0.67):
        p.poly([(x, 0.3), (x + 0.15, 0.56), (x - 0.15, 0.56)])
    _lines(p, [[(0.12, 0.56), (0.88, 0.56)], [(0.33, 0.3), (0.42, 0.12)],
               [(0.67, 0.3), (0.58, 0.12)]], 0.014, "mask", 255)


def _brief(p: _Pen, rng: np.random.Generator) -> None:
    p.sym([(0.5, 0.36), (0.78, 0.34), (0.77, 0.43), (0.6, 0.58), (0.565, 0.7), (0.5, 0.7)])
    _lines(p, [[(0.23, 0.37), (0.77, 0.37)]], 0.015, "dark", 100)


def _swimsuit(p: _Pen, rng: np.random.Generator) -> None:
    p.sym([(0.5, 0.28), (0.6, 0.1), (0.645, 0.1), (0.68, 0.3), (0.66, 0.56), (0.71, 0.72),
           (0.57, 0.84), (0.5, 0.84)])


def _nipple_covers(p: _Pen, rng: np.random.Generator) -> None:
    for cu in (0.32, 0.68):
        p.ellipse((cu - 0.13, 0.4, cu + 0.13, 0.6))
        p.ellipse((cu - 0.03, 0.47, cu + 0.03, 0.53), "dark", 80)


def _socks(p: _Pen, rng: np.random.Generator) -> None:
    sock = [(0.2, 0.05), (0.55, 0.05), (0.55, 0.6), (0.85, 0.68), (0.93, 0.8), (0.86, 0.92),
            (0.45, 0.92), (0.24, 0.8), (0.2, 0.6)]
    for frame in ((0.02, 0.06, 0.58, 0.86), (0.4, 0.12, 0.96, 0.92)):
        q = p.sub(*frame)
        q.poly(sock)
        _lines(q, [[(0.2, v), (0.55, v)] for v in (0.08, 0.14, 0.2)], 0.02, "dark", 80)


def _tights(p: _Pen, rng: np.random.Generator) -> None:
    _leggings(p.sub(0.0, 0.0, 1.0, 0.92), rng)
    p.ellipse((0.34, 0.84, 0.47, 0.95))
    p.ellipse((0.53, 0.84, 0.66, 0.95))
    _lines(p, [[(0.34, 0.09), (0.66, 0.09)]], 0.03, "dark", 100)


# Shoes: a pair in side profile facing right, the back shoe higher and in shadow, like the
# H&M shoe packshots. Each function draws one shoe in a unit frame (heel left, toe right).


def _pair(one: ShapeFn, back: Box = (0.0, 0.2, 0.86, 0.58),
          front: Box = (0.1, 0.38, 0.98, 0.78)) -> ShapeFn:
    def draw(p: _Pen, rng: np.random.Generator) -> None:
        one(p.sub(*back).tinted(150), rng)
        one(p.sub(*front).tinted(0), rng)  # tint 0 clears the back shoe's shadow
    return draw


def _sneaker(p: _Pen, rng: np.random.Generator) -> None:
    p.poly([(0.06, 0.3), (0.3, 0.34), (0.4, 0.12), (0.5, 0.16), (0.76, 0.46), (0.93, 0.56),
            (0.97, 0.74), (0.94, 0.9), (0.06, 0.9), (0.03, 0.6)])
    p.rect((0.02, 0.76, 0.97, 0.92), "light", 230)  # white rubber sole
    _lines(p, [[(0.48, v), (0.58, v + 0.06)] for v in (0.24, 0.34, 0.44)], 0.015, "light", 200)


_BOOT_BACK, _BOOT_FRONT = (0.02, 0.06, 0.78, 0.72), (0.18, 0.22, 0.96, 0.92)


def _boot(p: _Pen, rng: np.random.Generator, shaft: float = 0.04) -> None:
    p.poly([(0.12, shaft), (0.44, shaft), (0.47, 0.56), (0.8, 0.64), (0.95, 0.74),
            (0.94, 0.9), (0.1, 0.9), (0.12, 0.5)])
    p.rect((0.1, 0.86, 0.94, 0.92), "dark", 160)
    p.rect((0.1, 0.8, 0.28, 0.92), "dark", 200)  # block heel


def _bootie(p: _Pen, rng: np.random.Generator) -> None:
    _boot(p, rng, shaft=0.34)


def _pump(p: _Pen, rng: np.random.Generator, open_top: bool = False) -> None:
    p.poly([(0.06, 0.24), (0.2, 0.4), (0.45, 0.46), (0.8, 0.56), (0.97, 0.72), (0.9, 0.8),
            (0.62, 0.78), (0.38, 0.62), (0.23, 0.58), (0.23, 0.96), (0.15, 0.96), (0.1, 0.6),
            (0.04, 0.5)])
    if open_top:  # sandal: cut the upper away, leaving an ankle strap and a toe strap
        p.poly([(0.14, 0.44), (0.5, 0.52), (0.72, 0.6), (0.5, 0.64), (0.2, 0.54)], "mask", 0)


def _heeled_sandal(p: _Pen, rng: np.random.Generator) -> None:
    _pump(p, rng, open_top=True)


def _wedge(p: _Pen, rng: np.random.Generator) -> None:
    p.poly([(0.06, 0.24), (0.2, 0.4), (0.45, 0.46), (0.8, 0.56), (0.97, 0.72), (0.92, 0.84),
            (0.5, 0.84), (0.08, 0.96), (0.04, 0.5)])
    p.poly([(0.5, 0.74), (0.94, 0.76), (0.92, 0.84), (0.5, 0.84), (0.08, 0.96), (0.07, 0.64)],
           "dark", 90)  # cork/rubber wedge


def _flat(p: _Pen, rng: np.random.Generator) -> None:
    p.poly([(0.04, 0.42), (0.2, 0.52), (0.55, 0.54), (0.85, 0.58), (0.97, 0.72), (0.92, 0.88),
            (0.06, 0.88), (0.02, 0.64)])
    p.ellipse((0.56, 0.5, 0.68, 0.62), "dark", 120)  # toe bow
    p.rect((0.02, 0.82, 0.96, 0.89), "dark", 130)


def _sandal(p: _Pen, rng: np.random.Generator) -> None:
    p.poly([(0.03, 0.74), (0.94, 0.74), (0.97, 0.86), (0.03, 0.86)])
    _lines(p, [[(0.12, 0.74), (0.2, 0.36), (0.36, 0.74)],
               [(0.5, 0.74), (0.66, 0.44), (0.84, 0.74)]], 0.06, "mask", 255)


def _flip_flop(p: _Pen, rng: np.random.Generator) -> None:
    # Top view: H&M shoots flip flops from above.
    for cu in (0.33, 0.67):
        p.ellipse((cu - 0.14, 0.16, cu + 0.14, 0.9))
        _lines(p, [[(cu - 0.12, 0.5), (cu, 0.26), (cu + 0.12, 0.5)]], 0.025, "dark", 160)


def _slipper(p: _Pen, rng: np.random.Generator) -> None:
    p.poly(_arc(0.5, 0.78, 0.47, 0.46, 180, 360, 16) + [(0.97, 0.9), (0.03, 0.9)])
    p.ellipse((0.06, 0.4, 0.4, 0.64), "dark", 110)  # foot opening


# Bags, small leather goods and items.


def _handbag(p: _Pen, rng: np.random.Generator) -> None:
    p.poly([(0.2, 0.44), (0.8, 0.44), (0.88, 0.86), (0.12, 0.86)])
    p.line(_arc(0.5, 0.45, 0.19, 0.24, 180, 360), 0.045)
    _lines(p, [[(0.2, 0.56), (0.5, 0.64), (0.8, 0.56)]], 0.014, "dark", 150)


def _shoulder_bag(p: _Pen, rng: np.random.Generator) -> None:
    p.ellipse((0.18, 0.5, 0.82, 0.86))
    p.rect((0.18, 0.5, 0.82, 0.68))
    p.line([(0.22, 0.52), (0.4, 0.08), (0.6, 0.08), (0.78, 0.52)], 0.02)
    p.rect((0.44, 0.6, 0.56, 0.66), "light", 200)  # clasp


def _tote(p: _Pen, rng: np.random.Generator) -> None:
    p.rect((0.16, 0.4, 0.84, 0.9))
    for cu in (0.36, 0.64):
        p.line(_arc(cu, 0.41, 0.09, 0.22, 180, 360), 0.03)


def _backpack(p: _Pen, rng: np.random.Generator) -> None:
    p.ellipse((0.22, 0.16, 0.78, 0.46))
    p.rect((0.22, 0.31, 0.78, 0.9))
    p.line(_arc(0.5, 0.18, 0.08, 0.08, 180, 360), 0.025)
    p.rect((0.32, 0.56, 0.68, 0.84), "dark", 80)  # front pocket
    _lines(p, [[(0.26, 0.36), (0.74, 0.36)]], 0.012, "light", 200)


def _gym_bag(p: _Pen, rng: np.random.Generator) -> None:
    p.ellipse((0.06, 0.44, 0.26, 0.8))
    p.ellipse((0.74, 0.44, 0.94, 0.8))
    p.rect((0.16, 0.44, 0.84, 0.8))
    p.line(_arc(0.5, 0.46, 0.2, 0.16, 180, 360), 0.035)
    _lines(p, [[(0.16, 0.5), (0.84, 0.5)]], 0.012, "light", 200)


def _wallet(p: _Pen, rng: np.random.Generator) -> None:
    p.rect((0.18, 0.38, 0.82, 0.7))
    p.poly([(0.18, 0.38), (0.82, 0.38), (0.82, 0.5), (0.18, 0.5)], "dark", 70)
    p.ellipse((0.46, 0.46, 0.54, 0.54), "light", 200)


def _mobile_case(p: _Pen, rng: np.random.Generator) -> None:
    p.rect((0.3, 0.14, 0.7, 0.86))
    p.rect((0.36, 0.19, 0.5, 0.3), "mask", 0)  # camera cut-out


def _umbrella(p: _Pen, rng: np.random.Generator) -> None:
    p.poly(_arc(0.5, 0.48, 0.42, 0.32, 180, 360, 16))
    for i in range(4):  # scalloped canopy edge
        cu = 0.185 + 0.21 * i
        p.ellipse((cu - 0.105, 0.43, cu + 0.105, 0.53), "mask", 0)
    p.line([(0.5, 0.44), (0.5, 0.86)] + _arc(0.44, 0.86, 0.06, 0.05, 0, 180, 6), 0.025)


def _bottle(p: _Pen, rng: np.random.Generator) -> None:
    p.rect((0.36, 0.26, 0.64, 0.9))
    p.rect((0.42, 0.14, 0.58, 0.27), "mask", 255)
    p.rect((0.42, 0.14, 0.58, 0.22), "dark", 150)


def _beanie(p: _Pen, rng: np.random.Generator) -> None:
    p.poly(_arc(0.5, 0.5, 0.3, 0.3, 180, 360, 16) + [(0.8, 0.74), (0.2, 0.74)])
    p.rect((0.2, 0.58, 0.8, 0.74), "dark", 70)  # turned-up cuff
    if rng.random() < 0.4:
        p.ellipse((0.42, 0.12, 0.58, 0.26))  # pompom


def _brim_hat(p: _Pen, rng: np.random.Generator) -> None:
    p.ellipse((0.05, 0.5, 0.95, 0.68))
    p.poly([(0.3, 0.58), (0.32, 0.32)] + _arc(0.5, 0.34, 0.18, 0.1, 180, 360) +
           [(0.68, 0.32), (0.7, 0.58)])
    p.rect((0.3, 0.5, 0.7, 0.56), "dark", 160)  # hat band


def _bucket_hat(p: _Pen, rng: np.random.Generator) -> None:
    p.poly([(0.3, 0.34), (0.7, 0.34), (0.74, 0.56), (0.88, 0.7), (0.12, 0.7), (0.26, 0.56)])
    p.ellipse((0.3, 0.28, 0.7, 0.4))
    _lines(p, [[(0.26, 0.56), (0.74, 0.56)]], 0.012, "dark", 130)


def _cap(p: _Pen, rng: np.random.Generator) -> None:
    p.poly(_arc(0.44, 0.62, 0.3, 0.3, 180, 360, 16))
    p.poly([(0.6, 0.6), (0.9, 0.6), (0.94, 0.66), (0.6, 0.68)])  # peak
    p.ellipse((0.41, 0.3, 0.47, 0.36), "dark", 120)


def _scarf(p: _Pen, rng: np.random.Generator) -> None:
    # Hung on a hanger: a loop at the top and two ends falling in front, one over the other.
    p.ellipse((0.22, 0.04, 0.78, 0.34))
    p.ellipse((0.36, 0.1, 0.64, 0.24), "mask", 0)
    p.poly([(0.5, 0.24), (0.72, 0.24), (0.7, 0.8), (0.52, 0.8)])
    p.poly([(0.5, 0.24), (0.52, 0.8), (0.7, 0.8), (0.72, 0.24)], "dark", 60)  # the end behind
    p.poly([(0.28, 0.24), (0.52, 0.26), (0.5, 0.9), (0.28, 0.9)])
    _lines(p, [[(u, 0.9), (u, 0.95)] for u in np.arange(0.29, 0.5, 0.03)], 0.012, "mask", 255)


def _belt(p: _Pen, rng: np.random.Generator) -> None:
    p.rect((0.04, 0.46, 0.96, 0.54))
    p.rect((0.12, 0.42, 0.26, 0.58), "mask", 255)
    p.rect((0.15, 0.45, 0.23, 0.55), "mask", 0)  # buckle frame
    p.dots([(u, 0.5) for u in (0.7, 0.76, 0.82)], 0.012, "dark", 200)


def _sunglasses(p: _Pen, rng: np.random.Generator) -> None:
    p.ellipse((0.1, 0.4, 0.47, 0.6))
    p.ellipse((0.53, 0.4, 0.9, 0.6))
    p.line(_arc(0.5, 0.44, 0.05, 0.03, 180, 360, 6), 0.025)
    p.line([(0.1, 0.45), (0.04, 0.42)], 0.025)
    p.line([(0.9, 0.45), (0.96, 0.42)], 0.025)
    p.ellipse((0.16, 0.43, 0.26, 0.48), "light", 90)  # lens reflection


def _necklace(p: _Pen, rng: np.random.Generator) -> None:
    p.line(_arc(0.5, 0.16, 0.32, 0.44, 0, 180, 16), 0.018)
    p.ellipse((0.44, 0.56, 0.56, 0.7))


def _earrings(p: _Pen, rng: np.random.Generator) -> None:
    for cu in (0.32, 0.68):
        p.line([(cu, 0.3), (cu, 0.44)], 0.02)
        p.ellipse((cu - 0.09, 0.42, cu + 0.09, 0.66))
        p.ellipse((cu - 0.05, 0.48, cu + 0.05, 0.6), "mask", 0)


def _ring(p: _Pen, rng: np.random.Generator) -> None:
    p.ellipse((0.28, 0.36, 0.72, 0.7))
    p.ellipse((0.34, 0.41, 0.66, 0.65), "mask", 0)
    p.ellipse((0.42, 0.28, 0.58, 0.4), "mask", 255)


def _bracelet(p: _Pen, rng: np.random.Generator) -> None:
    p.ellipse((0.14, 0.3, 0.86, 0.7))
    p.ellipse((0.24, 0.38, 0.76, 0.62), "mask", 0)


def _watch(p: _Pen, rng: np.random.Generator) -> None:
    p.rect((0.41, 0.08, 0.59, 0.92))
    p.ellipse((0.3, 0.37, 0.7, 0.63))
    p.ellipse((0.34, 0.4, 0.66, 0.6), "light", 200)


def _gloves(p: _Pen, rng: np.random.Generator) -> None:
    p.rect((0.3, 0.42, 0.7, 0.88))
    for i in range(4):
        cu = 0.34 + i * 0.107
        p.line([(cu, 0.46), (cu, 0.16 + 0.04 * abs(i - 1.5))], 0.085)
    p.line([(0.3, 0.64), (0.16, 0.44)], 0.09)
    p.rect((0.3, 0.8, 0.7, 0.88), "dark", 90)


def _hair_clip(p: _Pen, rng: np.random.Generator) -> None:
    p.ellipse((0.2, 0.42, 0.8, 0.58))
    _lines(p, [[(u, 0.58), (u, 0.66)] for u in np.arange(0.28, 0.74, 0.07)], 0.025,
           "mask", 255)


def _hair_ties(p: _Pen, rng: np.random.Generator) -> None:
    for cu, cv in ((0.34, 0.4), (0.64, 0.46), (0.44, 0.64)):
        p.ellipse((cu - 0.15, cv - 0.11, cu + 0.15, cv + 0.11))
        p.ellipse((cu - 0.09, cv - 0.065, cu + 0.09, cv + 0.065), "mask", 0)


def _hairband(p: _Pen, rng: np.random.Generator) -> None:
    p.line(_arc(0.5, 0.56, 0.32, 0.34, 170, 370, 16), 0.07)


def _tie(p: _Pen, rng: np.random.Generator) -> None:
    p.poly([(0.45, 0.08), (0.55, 0.08), (0.57, 0.17), (0.63, 0.82), (0.5, 0.93), (0.37, 0.82),
            (0.43, 0.17)])
    _lines(p, [[(0.43, 0.17), (0.57, 0.17)]], 0.012, "dark", 130)


def _braces(p: _Pen, rng: np.random.Generator) -> None:
    _lines(p, [[(0.32, 0.08), (0.42, 0.6), (0.42, 0.9)], [(0.68, 0.08), (0.58, 0.6), (0.58, 0.9)],
               [(0.42, 0.6), (0.58, 0.6)]], 0.05, "mask", 255)
    for cu in (0.32, 0.68, 0.42, 0.58):
        v = 0.08 if cu in (0.32, 0.68) else 0.9
        p.rect((cu - 0.04, v - 0.03, cu + 0.04, v + 0.03), "light", 200)


def _dog_wear(p: _Pen, rng: np.random.Generator) -> None:
    _tshirt(p.sub(0.15, 0.2, 0.85, 0.8), rng)


def _generic(p: _Pen, rng: np.random.Generator) -> None:
    # A folded garment: the most common thing an H&M packshot shows when we know nothing.
    p.rect((0.2, 0.2, 0.8, 0.8))
    p.ellipse((0.2, 0.14, 0.8, 0.26))
    _lines(p, [[(0.22, 0.5), (0.78, 0.5)]], 0.012, "dark", 120)


SILHOUETTES: dict[str, ShapeFn] = {
    "tshirt": _tshirt, "top": _top, "vest_top": _vest_top, "sweater": _sweater,
    "hoodie": _hoodie, "cardigan": _cardigan, "jacket": _jacket, "coat": _coat,
    "blazer": _blazer, "shirt": _shirt, "blouse": _blouse, "polo": _polo,
    "bodysuit": _bodysuit, "waistcoat": _waistcoat, "puffer_vest": _puffer_vest,
    "trousers": _trousers, "leggings": _leggings, "shorts": _shorts, "skirt": _skirt,
    "dress": _dress, "jumpsuit": _jumpsuit, "dungarees": _dungarees, "overall": _overall,
    "garment_set": _set_top_bottom(_tshirt, _shorts),
    "pyjama_set": _set_top_bottom(_long_tee, _trousers),
    "underwear_set": _set_top_bottom(_bra, _brief),
    "swim_set": _set_top_bottom(_bikini_top, _brief),
    "long_john": _long_john, "robe": _robe, "sarong": _sarong, "corset": _corset,
    "bra": _bra, "bikini_top": _bikini_top, "brief": _brief, "swimsuit": _swimsuit,
    "nipple_covers": _nipple_covers, "socks": _socks, "tights": _tights,
    "sneaker": _pair(_sneaker), "boot": _pair(_boot, _BOOT_BACK, _BOOT_FRONT),
    "bootie": _pair(_bootie, _BOOT_BACK, _BOOT_FRONT),
    "pump": _pair(_pump), "heeled_sandal": _pair(_heeled_sandal), "wedge": _pair(_wedge),
    "flat": _pair(_flat), "sandal": _pair(_sandal), "flip_flop": _flip_flop,
    "slipper": _pair(_slipper),
    "handbag": _handbag, "shoulder_bag": _shoulder_bag, "tote": _tote, "backpack": _backpack,
    "gym_bag": _gym_bag, "wallet": _wallet, "mobile_case": _mobile_case, "umbrella": _umbrella,
    "bottle": _bottle, "beanie": _beanie, "brim_hat": _brim_hat, "bucket_hat": _bucket_hat,
    "cap": _cap, "scarf": _scarf, "belt": _belt, "sunglasses": _sunglasses,
    "necklace": _necklace, "earrings": _earrings, "ring": _ring, "bracelet": _bracelet,
    "watch": _watch, "gloves": _gloves, "hair_clip": _hair_clip, "hair_ties": _hair_ties,
    "hairband": _hairband, "tie": _tie, "braces": _braces, "dog_wear": _dog_wear,
    "generic": _generic,
}

# product_type_name (lower case) -> silhouette, for every type in hm_vocab.json.
_TYPE_SHAPE = {
    "t-shirt": "tshirt", "top": "top", "vest top": "vest_top", "sweater": "sweater",
    "hoodie": "hoodie", "cardigan": "cardigan", "jacket": "jacket", "coat": "coat",
    "blazer": "blazer", "shirt": "shirt", "blouse": "blouse", "polo shirt": "polo",
    "bodysuit": "bodysuit", "tailored waistcoat": "waistcoat",
    "outdoor waistcoat": "puffer_vest", "trousers": "trousers", "outdoor trousers": "trousers",
    "leggings/tights": "leggings", "shorts": "shorts", "skirt": "skirt", "dress": "dress",
    "jumpsuit/playsuit": "jumpsuit", "dungarees": "dungarees", "garment set": "garment_set",
    "outdoor overall": "overall", "costumes": "dress", "swimsuit": "swimsuit",
    "swimwear bottom": "brief", "bikini top": "bikini_top", "swimwear set": "swim_set",
    "sarong": "sarong", "underwear body": "bodysuit", "underwear corset": "corset",
    "underdress": "dress", "underwear bottom": "brief", "long john": "long_john",
    "underwear set": "underwear_set", "nipple covers": "nipple_covers", "robe": "robe",
    "bra": "bra", "kids underwear top": "vest_top", "night gown": "dress",
    "pyjama jumpsuit/playsuit": "jumpsuit", "pyjama bottom": "trousers",
    "pyjama set": "pyjama_set", "socks": "socks", "underwear tights": "tights",
    "ballerinas": "flat", "boots": "boot", "flip flop": "flip_flop", "other shoe": "sneaker",
    "pumps": "pump", "heels": "pump", "sandals": "sandal", "heeled sandals": "heeled_sandal",
    "slippers": "slipper", "sneakers": "sneaker", "wedge": "wedge", "bootie": "bootie",
    "flat shoe": "flat", "flat shoes": "flat", "bag": "handbag", "backpack": "backpack",
    "tote bag": "tote", "shoulder bag": "shoulder_bag", "weekend/gym bag": "gym_bag",
    "wallet": "wallet", "mobile case": "mobile_case", "umbrella": "umbrella",
    "waterbottle": "bottle", "belt": "belt", "bracelet": "bracelet", "cap/peaked": "cap",
    "cap": "cap", "earring": "earrings", "earrings": "earrings", "gloves": "gloves",
    "hair clip": "hair_clip", "hair string": "hair_ties", "hair ties": "hair_ties",
    "hair/alice band": "hairband", "hairband": "hairband", "hat/beanie": "beanie",
    "beanie": "beanie", "hat/brim": "brim_hat", "felt hat": "brim_hat",
    "straw hat": "brim_hat", "bucket hat": "bucket_hat", "necklace": "necklace",
    "ring": "ring", "scarf": "scarf", "sunglasses": "sunglasses", "tie": "tie",
    "watch": "watch", "dog wear": "dog_wear", "braces": "braces",
    "other accessories": "generic", "unknown": "generic",
}

# product_group_name (lower case) -> silhouette when the type is missing or unknown.
_GROUP_SHAPE = {
    "garment upper body": "tshirt", "garment lower body": "trousers",
    "garment full body": "dress", "underwear": "brief", "nightwear": "pyjama_set",
    "socks & tights": "socks", "swimwear": "swimsuit", "shoes": "sneaker", "bags": "handbag",
    "accessories": "handbag", "items": "mobile_case", "unknown": "generic",
    "cosmetic": "bottle", "stationery": "wallet", "furniture": "generic", "fun": "generic",
    "garment and shoe care": "bottle", "interior textile": "generic",
}

# Substrings of unknown type names, most specific first.
_TYPE_KEYWORDS = (
    ("t-shirt", "tshirt"), ("tee", "tshirt"), ("hood", "hoodie"), ("cardigan", "cardigan"),
    ("sweat", "sweater"), ("jumper", "sweater"), ("blazer", "blazer"), ("coat", "coat"),
    ("jacket", "jacket"), ("blouse", "blouse"), ("shirt", "shirt"), ("vest", "vest_top"),
    ("top", "top"), ("legging", "leggings"), ("tights", "tights"), ("trouser", "trousers"),
    ("pant", "trousers"), ("jean", "trousers"), ("short", "shorts"), ("skirt", "skirt"),
    ("dress", "dress"), ("gown", "dress"), ("suit", "jumpsuit"), ("sock", "socks"),
    ("bra", "bra"), ("brief", "brief"), ("bikini", "bikini_top"), ("boot", "boot"),
    ("sandal", "sandal"), ("sneaker", "sneaker"), ("shoe", "sneaker"), ("heel", "pump"),
    ("backpack", "backpack"), ("bag", "handbag"), ("wallet", "wallet"), ("hat", "brim_hat"),
    ("cap", "cap"), ("beanie", "beanie"), ("scarf", "scarf"), ("belt", "belt"),
    ("glasses", "sunglasses"), ("necklace", "necklace"), ("earring", "earrings"),
    ("ring", "ring"), ("bracelet", "bracelet"), ("watch", "watch"), ("glove", "gloves"),
    ("hair", "hair_clip"), ("umbrella", "umbrella"), ("bottle", "bottle"),
)


def silhouette_for(product_group_name: object, product_type_name: object) -> str:
    """Name of the silhouette (a key of SILHOUETTES) drawn for a group and type."""
    ptype, group = _norm(product_type_name), _norm(product_group_name)
    if ptype in _TYPE_SHAPE and ptype not in ("unknown", "other accessories"):
        return _TYPE_SHAPE[ptype]
    if ptype:
        for word, shape in _TYPE_KEYWORDS:
            if word in ptype:
                return shape
    if group in _GROUP_SHAPE:
        return _GROUP_SHAPE[group] if ptype != "other accessories" else "generic"
    return _TYPE_SHAPE.get(ptype, "generic")


# ---------------------------------------------------------------------------------------------
# Patterns. Each returns the fabric (H, W, 3) float32 for the whole frame; the silhouette mask
# decides later where it shows, so patterns never need to know the garment's shape.
# ---------------------------------------------------------------------------------------------


@dataclass
class _Surface:
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
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.indices((h, w), dtype=np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def _erode(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """Min over the 4-neighbourhood, `steps` times (numpy slices: ~5x faster than MinFilter)."""
    out = mask
    for _ in range(steps):
        prev, out = out, out.copy()
        np.minimum(out[1:], prev[:-1], out=out[1:])
        np.minimum(out[:-1], prev[1:], out=out[:-1])
        np.minimum(out[:, 1:], prev[:, :-1], out=out[:, 1:])
        np.minimum(out[:, :-1], prev[:, 1:], out=out[:, :-1])
    return out


def _smooth_noise(s: _Surface, cells: tuple[int, int]) -> np.ndarray:
    """Low-frequency noise in [0, 1]: random cells bilinearly upsampled."""
    small = s.rng.random(cells, dtype=np.float32)
    img = Image.fromarray(small, mode="F").resize((s.w, s.h), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _solid(s: _Surface) -> np.ndarray:
    return s.flat()


def _stripe(s: _Surface) -> np.ndarray:
    period = s.rng.uniform(6.0, 11.0) * s.unit
    coord = s.yy if s.rng.random() < 0.8 else s.xx  # most H&M stripes are horizontal (Breton)
    on = ((coord + s.rng.uniform(0, period)) % period) < period * s.rng.uniform(0.3, 0.45)
    return s.pick(on, s.accent)


def _dot(s: _Surface) -> np.ndarray:
    sp = s.rng.uniform(8.0, 12.0) * s.unit
    r = sp * s.rng.uniform(0.16, 0.24)
    row = np.floor(s.yy / sp)
    # Alternate rows are offset by half a period: the usual polka-dot lattice.
    dx = (s.xx + (row % 2) * sp / 2) % sp - sp / 2
    dy = s.yy % sp - sp / 2
    return s.pick(dx * dx + dy * dy < r * r, s.accent)


def _check(s: _Surface) -> np.ndarray:
    p = s.rng.uniform(9.0, 15.0) * s.unit
    hband = (s.yy % p) < p / 2
    vband = (s.xx % p) < p / 2
    # Gingham: crossings are full accent, single bands half-way, the rest base.
    t = (hband.astype(np.float32) + vband.astype(np.float32))[..., None] * 0.5
    fabric = s.flat() * (1 - t) + s.accent.astype(np.float32) * t
    thin = (np.abs((s.xx % (2 * p)) - p / 4) < 0.6) | (np.abs((s.yy % (2 * p)) - p / 4) < 0.6)
    return s.pick(thin, s.accent * 0.6, fabric)


def _argyle(s: _Surface) -> np.ndarray:
    sx, sy = 14.0 * s.unit, 20.0 * s.unit
    u, v = s.xx / sx + s.yy / sy, s.xx / sx - s.yy / sy
    diamond = (np.floor(u) + np.floor(v)) % 2 == 0
    fabric = s.pick(diamond, s.base * 0.6 + s.accent * 0.4)
    overcheck = (np.abs((u % 1) - 0.5) < 0.06) | (np.abs((v % 1) - 0.5) < 0.06)
    return s.pick(overcheck, s.accent, fabric)


def _melange(s: _Surface) -> np.ndarray:
    # Heather: fibres of lighter and darker yarn, slightly streaky along the knit rows.
    n = s.rng.standard_normal((s.h, s.w), dtype=np.float32) * 0.09
    rows = s.rng.standard_normal((s.h, 1), dtype=np.float32) * 0.03
    f = 1.0 + n + rows
    return np.clip(s.flat() * f[..., None] + 18 * n[..., None], 0, 255)


def _slub(s: _Surface) -> np.ndarray:
    seg = max(2, s.w // 10)
    streak = s.rng.standard_normal((s.h, seg), dtype=np.float32)
    streak = np.repeat(streak, -(-s.w // seg), axis=1)[:, : s.w]  # thick-thin yarn runs
    f = 1.0 + 0.07 * streak + 0.03 * s.rng.standard_normal((s.h, s.w), dtype=np.float32)
    return np.clip(s.flat() * f[..., None], 0, 255)


def _neps(s: _Surface) -> np.ndarray:
    flecks = s.rng.random((s.h, s.w), dtype=np.float32)
    fabric = s.pick(flecks < 0.04, s.accent)
    return s.pick(flecks > 0.975, np.array([250.0, 250.0, 245.0]), fabric)


def _motif(s: _Surface, draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
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


def _front_print(s: _Surface) -> np.ndarray:
    y0, y1, x0, x1 = s.bbox
    img, draw = s.motif_layer()
    r = max(3.0, min(x1 - x0, y1 - y0) * s.rng.uniform(0.16, 0.22))
    _motif(s, draw, (x0 + x1) / 2, y0 + (y1 - y0) * 0.38, r)
    return s.pick(np.asarray(img) > 127, s.accent)


def _placement_print(s: _Surface) -> np.ndarray:
    y0, y1, x0, x1 = s.bbox
    img, draw = s.motif_layer()
    r = max(2.0, min(x1 - x0, y1 - y0) * s.rng.uniform(0.08, 0.12))
    # Off-centre: a chest logo, a hem graphic or a hip motif.
    cx = x0 + (x1 - x0) * s.rng.choice([0.35, 0.65])
    cy = y0 + (y1 - y0) * s.rng.choice([0.3, 0.7])
    _motif(s, draw, cx, cy, r)
    return s.pick(np.asarray(img) > 127, s.accent)


def _all_over(s: _Surface) -> np.ndarray:
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
    second = _mix(s.accent, (255, 255, 255), 0.5) if _luma(s.accent) < 128 else (
        _mix(s.accent, (0, 0, 0), 0.5))
    fabric = s.pick(layer == 255, s.accent)
    return s.pick(layer == 128, np.array(second, dtype=np.float32), fabric)


def _colour_block(s: _Surface) -> np.ndarray:
    y0, y1, x0, x1 = s.bbox
    third = np.array(_mix(s.base, s.accent, 0.5), dtype=np.float32)
    kind = int(s.rng.integers(0, 3))
    if kind == 0:  # horizontal blocks: yoke / body / hem
        t = (s.yy - y0) / max(1, y1 - y0)
        fabric = s.pick(t < 0.3, s.accent)
        return s.pick(t > 0.8, third, fabric)
    if kind == 1:  # left / right halves
        return s.pick(s.xx < (x0 + x1) / 2 - 0.15 * (x1 - x0), s.accent)
    diag = (s.xx - x0) / max(1, x1 - x0) + (s.yy - y0) / max(1, y1 - y0)
    return s.pick(diag > 1.35, s.accent)


def _contrast(s: _Surface) -> np.ndarray:
    # Contrast piping along the outline plus one chest band.
    edge = (s.mask > 0.5) & (_erode(s.mask, 2) < 0.5)
    y0, y1 = s.bbox[0], s.bbox[1]
    band = np.abs(s.yy - (y0 + 0.42 * (y1 - y0))) < 1.5 * s.unit
    return s.pick(edge | band, s.accent)


def _mixed(s: _Surface) -> np.ndarray:
    y0, y1 = s.bbox[0], s.bbox[1]
    striped = _stripe(s)
    return np.where((s.yy > (y0 + y1) / 2)[..., None], striped, s.flat())


def _embroidery(s: _Surface) -> np.ndarray:
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


def _application(s: _Surface) -> np.ndarray:
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


def _glitter(s: _Surface) -> np.ndarray:
    sparkle = s.rng.random((s.h, s.w), dtype=np.float32)
    fabric = s.pick(sparkle < 0.06, np.array([255.0, 252.0, 235.0]))
    return s.pick(sparkle > 0.96, np.minimum(s.base * 1.4 + 40, 255), fabric)


def _metallic(s: _Surface) -> np.ndarray:
    # Foil sheen: a bright diagonal highlight band fading into darker folds.
    d = (s.xx / s.w + s.yy / s.h) * math.pi * s.rng.uniform(1.5, 2.5)
    sheen = np.cos(d + s.rng.uniform(0, math.tau))[..., None]
    fabric = s.flat() * (0.9 + 0.2 * sheen)
    return np.clip(fabric + np.maximum(sheen, 0) * 45, 0, 255)


def _sequin(s: _Surface) -> np.ndarray:
    sp = 4.0 * s.unit
    cell_y, cell_x = np.floor(s.yy / sp), np.floor((s.xx + (np.floor(s.yy / sp) % 2) * sp / 2) / sp)
    # Each sequin catches the light differently: a hash of its cell gives its brightness.
    hashv = np.sin(cell_x * 12.9898 + cell_y * 78.233 + s.rng.uniform(0, 100)) * 43758.5453
    bright = (hashv - np.floor(hashv))[..., None]
    return np.clip(s.flat() * (0.7 + 0.6 * bright) + 30 * (bright > 0.85), 0, 255)


def _treatment(s: _Surface) -> np.ndarray:
    # Acid wash / tie-dye: blotchy low-frequency bleaching.
    n = _smooth_noise(s, (6, 5))[..., None]
    t = np.clip((n - 0.45) * 1.4, 0, 0.5)
    return s.flat() * (1 - t) + 255 * t


def _transparent(s: _Surface) -> np.ndarray:
    # Sheer fabric: the white table shows through, a fine weave keeps it visible.
    weave = (((s.xx % 3) < 1) | ((s.yy % 3) < 1)).astype(np.float32)[..., None]
    sheer = 0.55 - 0.25 * weave
    return s.flat() * (1 - sheer) + 255 * sheer


def _lace(s: _Surface) -> np.ndarray:
    sp = 6.0 * s.unit
    row = np.floor(s.yy / sp)
    dx = (s.xx + (row % 2) * sp / 2) % sp - sp / 2
    dy = s.yy % sp - sp / 2
    d2 = dx * dx + dy * dy
    holes = (d2 < (sp * 0.32) ** 2) & (d2 > (sp * 0.12) ** 2)
    t = holes[..., None] * 0.75
    return s.flat() * (1 - t) + 255 * t


def _mesh(s: _Surface) -> np.ndarray:
    p = max(3, round(4 * s.unit))
    holes = ((s.xx % p) >= p / 2) & ((s.yy % p) >= p / 2)
    t = holes[..., None] * 0.65
    return s.flat() * (1 - t) + 255 * t


def _jacquard(s: _Surface) -> np.ndarray:
    tile = 12.0 * s.unit
    u = (s.xx % tile) / tile - 0.5
    v = (s.yy % tile) / tile - 0.5
    figure = (np.abs(u) + np.abs(v) < 0.32) & ~(np.abs(u) + np.abs(v) < 0.16)  # woven lozenges
    return s.pick(figure, np.array(_mix(s.base, s.accent, 0.45), dtype=np.float32))


def _denim(s: _Surface) -> np.ndarray:
    # 3/1 twill diagonals, indigo weft noise and a lighter fade down the front.
    twill = (((s.xx + s.yy) % 4) < 2).astype(np.float32)
    weft = s.rng.standard_normal((s.h, s.w), dtype=np.float32) * 0.05
    x0, x1 = s.bbox[2], s.bbox[3]
    cx = (x0 + x1) / 2
    fade = np.exp(-(((s.xx - cx) / max(4, 0.35 * (x1 - x0))) ** 2)) * 0.18
    f = (0.88 + 0.12 * twill + weft)[..., None]
    return np.clip(s.flat() * f * (1 - fade[..., None]) + 255 * fade[..., None], 0, 255)


def _chambray(s: _Surface) -> np.ndarray:
    white = (s.rng.random((s.h, s.w), dtype=np.float32) < 0.3)[..., None] * 0.3
    cross = (((s.xx + s.yy) % 2) < 1)[..., None] * 0.05
    return s.flat() * (1 - white - cross) + 255 * white


def _structure(s: _Surface) -> np.ndarray:
    # Rib knit / waffle: regular vertical ribs, sometimes crossed.
    p = max(2, round(3 * s.unit))
    rib = (s.xx % p) < 1
    if s.rng.random() < 0.4:
        rib = rib | ((s.yy % p) < 1)
    return s.pick(rib, s.base * 0.78)


def _other_pattern(s: _Surface) -> np.ndarray:
    # Chevron zigzag: a pattern, but none of the named ones.
    p = 10.0 * s.unit
    zig = s.yy + np.abs((s.xx % p) - p / 2)
    return s.pick((zig % p) < p * 0.35, s.accent)


PATTERNS: dict[str, Callable[[_Surface], np.ndarray]] = {
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
    key = _norm(graphical_appearance_name)
    if key in _APPEARANCE_PATTERN:
        return _APPEARANCE_PATTERN[key]
    for word, pattern in _APPEARANCE_KEYWORDS:
        if word in key:
            return pattern
    return "solid"  # nothing known about the surface: plain fabric is the common case


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        w, h = int(size[0]), int(size[1])
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"render size must be (width, height) integers, got {size!r}") from exc
    if w < 8 or h < 8:
        raise ValueError(f"render size must be at least 8x8 pixels, got {size!r}")
    return w, h


def _draw_silhouette(shape: str, w: int, h: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask, dark and light layers (H, W) float32 in [0, 1] of one silhouette."""
    ss = (w * _SUPERSAMPLE, h * _SUPERSAMPLE)
    angle = math.radians(rng.uniform(-2.5, 2.5))
    jitter = _Jitter(
        scale=rng.uniform(0.93, 1.03),
        dx=rng.uniform(-0.025, 0.025),
        dy=rng.uniform(-0.02, 0.02),
        cos=math.cos(angle),
        sin=math.sin(angle),
    )
    images = {name: Image.new("L", ss, 0) for name in ("mask", "dark", "light")}
    pen = _Pen({k: ImageDraw.Draw(v) for k, v in images.items()}, ss, jitter)
    SILHOUETTES[shape](pen, rng)
    # Box-filter the 2x drawing down: anti-aliased coverage in [0, 1].
    return tuple(  # type: ignore[return-value]
        np.asarray(images[k].reduce(_SUPERSAMPLE), dtype=np.float32) * (1.0 / 255.0)
        for k in ("mask", "dark", "light")
    )


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
    return _draw_silhouette(silhouette_for(product_group_name, product_type_name), w, h, rng)[0]


def _accent_for(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A contrast colour: another palette colour or a tint/shade, always clearly different."""
    lb = _luma(base)
    if rng.random() < 0.5:
        names = [n for n in _ACCENT_NAMES if abs(_luma(COLOUR_RGB[n]) - lb) > 70]
        if names:
            return np.array(COLOUR_RGB[names[int(rng.integers(len(names)))]], dtype=np.float32)
    if lb > 140:
        return base * 0.4
    return base + (255.0 - base) * 0.7


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
    mask, dark, light = _draw_silhouette(shape, w, h, rng)

    # Shade jitter: the same colour photographs a little differently shot to shot.
    base = np.asarray(colour_rgb(colour_group_name), dtype=np.float32)
    base = np.clip(base * rng.uniform(0.95, 1.05) + rng.uniform(-4, 4, 3), 0, 255)
    yy, xx = _grid(h, w)
    surface = _Surface(h, w, yy, xx, base, _accent_for(base, rng), _bbox(mask), mask, rng)
    fabric = PATTERNS[pattern_for(graphical_appearance_name)](surface)  # (H, W, 3)

    # Studio light: a soft side-to-side gradient, and a darker rim so white-on-white articles
    # keep a visible outline (real packshots have the same soft edge shadow).
    tilt = rng.uniform(-0.05, 0.05)
    shade = 1.0 + tilt * (xx * (2.0 / w) - 1.0) - 0.18 * (mask - _erode(mask))
    # Seams and shadows darken; on near-black fabric darkening is invisible, so there they
    # catch the light instead (as stitching on black leather does in real photos).
    if _luma(base) < 60:
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
