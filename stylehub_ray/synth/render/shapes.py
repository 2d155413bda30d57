"""Silhouettes of the synthetic product photos: a pen that draws in a unit frame with a
per-photo jitter, one drawing function per garment, shoe pair, bag or accessory, and the choice
of silhouette from the H&M product group and type."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from stylehub_ray.synth.render.palette import norm_name

Point = tuple[float, float]
Box = tuple[float, float, float, float]

_SUPERSAMPLE = 2  # silhouettes are drawn at 2x and box-filtered down: anti-aliased edges


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
    ptype, group = norm_name(product_type_name), norm_name(product_group_name)
    if ptype in _TYPE_SHAPE and ptype not in ("unknown", "other accessories"):
        return _TYPE_SHAPE[ptype]
    if ptype:
        for word, shape in _TYPE_KEYWORDS:
            if word in ptype:
                return shape
    if group in _GROUP_SHAPE:
        return _GROUP_SHAPE[group] if ptype != "other accessories" else "generic"
    return _TYPE_SHAPE.get(ptype, "generic")


def draw_silhouette(shape: str, w: int, h: int,
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
