"""A synthetic weakly-supervised localization data set with exact ground truth.

Each image holds one object on a noisy, low-saturation gradient background cluttered with
*fragments*: thin strokes, short arcs, small dots and tiny textured patches in every color,
including the objects' colors.  The class of an image is its object's **color × texture**
(``"red striped"``, ``"blue dotted"`` …); the object's **shape** (disk, square, triangle, cross),
size, rotation and position vary within every class.  Color and texture fill the whole object,
so the evidence for the class covers the object (what a CAM should recover), while fragments are
too thin or too small to be objects, so neither color nor context alone gives the class away.

Objects are drawn last, fully inside the image and without anti-aliasing, so the mask is the
set of object pixels and the box is that mask's bounding box, both exact.

Every item is a pure function of ``(seed, split, index)``:

    >>> from camkit.data import Shapes
    >>> val = Shapes("val", size=64, length=500)
    >>> item = val[3]                      # dict: image (3, H, W) float32 in [0, 1], label,
    >>> item["boxes"]                      #       boxes (1, 4) x0, y0, x1, y1 inclusive, mask (H, W)
    tensor([[ 2, 11, 35, 45]])
"""
from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
import torch
from skimage import draw

from camkit.errors import InputError

__all__ = ["SHAPES", "COLORS", "TEXTURES", "ALL_TEXTURES", "Shapes", "render", "class_names"]

SHAPES: tuple[str, ...] = ("disk", "square", "triangle", "cross")
TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted")
#: Every texture ``texture_pattern`` draws (``TEXTURES`` are the default classes).
ALL_TEXTURES: tuple[str, ...] = TEXTURES + ("checked",)
#: Hue (degrees) of each object color; saturation and value are jittered per object.
COLORS: dict[str, float] = {"red": 0.0, "yellow": 58.0, "green": 120.0, "blue": 230.0}
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
DEFAULT_LENGTH: dict[str, int] = {"train": 10000, "val": 1000, "test": 1000}


def class_names(colors: Sequence[str] = tuple(COLORS), textures: Sequence[str] = TEXTURES) -> list[str]:
    """Class names ``"<color> <texture>"``; class ``i`` is ``colors[i // len(textures)]``,
    ``textures[i % len(textures)]``."""
    return [f"{color} {texture}" for color in colors for texture in textures]


def texture_pattern(texture: str, x: np.ndarray, y: np.ndarray, period: float) -> np.ndarray:
    """Where ``texture`` takes its dark shade, at object-frame coordinates ``x``, ``y`` (pixels).

    ``"striped"``: stripes of width ``period / 2``; ``"dotted"``: dots of radius ``0.3 period`` on
    a square grid; ``"checked"`` (not a default class): squares of side ``period``.
    """
    if texture == "solid":
        return np.zeros(np.broadcast(x, y).shape, dtype=bool)
    if texture == "striped":
        return np.floor(2 * x / period).astype(int) % 2 == 1
    if texture == "checked":  # learnt slowly apart from stripes at every angle: not a default class
        return (np.floor(x / period).astype(int) + np.floor(y / period).astype(int)) % 2 == 1
    if texture == "dotted":
        dx, dy = x % period - period / 2, y % period - period / 2
        return dx * dx + dy * dy <= (0.3 * period) ** 2
    raise InputError(f"unknown texture {texture!r}; known: {ALL_TEXTURES}")


def _paint_texture(canvas: np.ndarray, ys: np.ndarray, xs: np.ndarray, texture: str, color: np.ndarray,
                   shade: np.ndarray, centre: np.ndarray, angle: float, period: float) -> None:
    """Paint ``texture`` (``color`` / dark ``shade``) on pixels ``(ys, xs)``, rotated by ``angle`` about ``centre``."""
    dx, dy = xs - centre[0], ys - centre[1]
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    dark = texture_pattern(texture, u, v, period)
    canvas[ys, xs] = np.where(dark[:, None], shade, color)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _outline(shape: str, extent: float, angle: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Polygons (each (n, 2) as x, y around the origin) whose union is ``shape`` of side ``extent``."""
    half = extent / 2
    if shape == "disk":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        aspect = rng.uniform(0.8, 1.0)
        polys = [np.stack([half * np.cos(t), half * aspect * np.sin(t)], 1)]
    elif shape == "square":
        a = 0.8 * half  # about the area of the disk
        polys = [np.array([[-a, -a], [a, -a], [a, a], [-a, a]])]
    elif shape == "triangle":
        t = np.pi / 2 + np.array([0, 2, 4]) * np.pi / 3
        radius = 1.15 * half  # circumradius, so its area is not much below the others'
        polys = [np.stack([radius * np.cos(t), radius * np.sin(t)], 1)]
    elif shape == "cross":
        arm = half * rng.uniform(0.28, 0.38)
        polys = [np.array([[-half, -arm], [half, -arm], [half, arm], [-half, arm]]),
                 np.array([[-arm, -half], [arm, -half], [arm, half], [-arm, half]])]
    else:  # pragma: no cover - guarded by Shapes.__init__
        raise InputError(f"unknown shape {shape!r}; known: {SHAPES}")
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return [p @ rotation.T for p in polys]


def _paint_polygons(canvas: np.ndarray, polys: list[np.ndarray], color: np.ndarray) -> np.ndarray:
    """Paint the union of ``polys`` (x, y) on ``canvas`` (H, W, 3) in place; return its (H, W) mask."""
    mask = np.zeros(canvas.shape[:2], dtype=bool)
    for poly in polys:
        rr, cc = draw.polygon(poly[:, 1], poly[:, 0], shape=mask.shape)
        mask[rr, cc] = True
    canvas[mask] = color
    return mask


def _period(rng: np.random.Generator, size: int) -> float:
    """Texture period in pixels: 4-7 px at 64², scaled with the image (at least 3 px)."""
    return max(3.0, rng.uniform(4.0, 7.0) * size / 64)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A low-saturation linear color gradient, (H, W, 3)."""
    start = _hsv(rng.uniform(), rng.uniform(0.0, 0.3), rng.uniform(0.3, 0.8))
    stop = _hsv(rng.uniform(), rng.uniform(0.0, 0.3), rng.uniform(0.3, 0.8))
    direction = rng.uniform(0, 2 * np.pi)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    along = np.cos(direction) * ramp[None, :] + np.sin(direction) * ramp[:, None] + 0.5
    along = np.clip(along, 0, 1)[..., None]
    return (1 - along) * start + along * stop


def _fragments(canvas: np.ndarray, rng: np.random.Generator, count: int, hues: list[float]) -> None:
    """Paint ``count`` fragments: strokes 1-2 px wide, short arcs, dots of radius <= 2.5 and
    textured squares of side <= size / 10."""
    size = canvas.shape[0]
    for _ in range(count):
        hue = hues[rng.integers(len(hues))] if rng.uniform() < 0.6 else rng.uniform(0, 360)
        color = _hsv((hue + rng.uniform(-12, 12)) / 360, rng.uniform(0.6, 1.0), rng.uniform(0.5, 1.0))
        kind = rng.integers(4)
        if kind == 3:  # a small textured patch
            side = rng.uniform(0.05, 0.1) * size
            r0, c0 = rng.uniform(0, size - side, 2)
            rr, cc = draw.rectangle((r0, c0), extent=(side, side), shape=canvas.shape[:2])
            texture = ALL_TEXTURES[rng.integers(1, len(ALL_TEXTURES))]
            _paint_texture(canvas, rr.ravel(), cc.ravel(), texture, color, 0.4 * color,
                           np.array([c0, r0]), rng.uniform(0, np.pi), _period(rng, size))
            continue
        if kind == 0:  # stroke
            r0, c0 = rng.uniform(0, size, 2)
            length, angle = rng.uniform(0.1, 0.3) * size, rng.uniform(0, np.pi)
            r1, c1 = r0 + length * np.sin(angle), c0 + length * np.cos(angle)
            width = rng.uniform(0.5, 1.2)
            nr, nc = width * np.cos(angle), -width * np.sin(angle)
            rr, cc = draw.polygon([r0 - nr, r1 - nr, r1 + nr, r0 + nr], [c0 - nc, c1 - nc, c1 + nc, c0 + nc],
                                  shape=canvas.shape[:2])
        elif kind == 1:  # arc of a circle outline
            radius = rng.uniform(0.05, 0.15) * size
            r0, c0 = rng.uniform(0, size, 2)
            start = rng.uniform(0, 2 * np.pi)
            t = start + np.linspace(0, rng.uniform(0.5, 1.5) * np.pi, 40)
            rr = np.round(r0 + radius * np.sin(t)).astype(int)
            cc = np.round(c0 + radius * np.cos(t)).astype(int)
            keep = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
            rr, cc = rr[keep], cc[keep]
        else:  # dot
            rr, cc = draw.disk(tuple(rng.uniform(0, size, 2)), rng.uniform(1.0, 2.5), shape=canvas.shape[:2])
        canvas[rr, cc] = color


def render(rng: np.random.Generator, size: int, label: int, *, colors: Sequence[str] = tuple(COLORS),
           textures: Sequence[str] = TEXTURES, shapes: Sequence[str] = SHAPES,
           scale: tuple[float, float] = (0.3, 0.65), fragments: tuple[int, int] = (4, 10),
           noise: tuple[float, float] = (0.02, 0.08)):
    """Draw one image of class ``label`` (color ``label // len(textures)``, texture ``label % len(textures)``)
    with a shape drawn at random from ``shapes``.

    Returns ``image`` (3, H, W) float32 in [0, 1], ``mask`` (H, W) bool and ``box`` (4,) int64
    ``x0, y0, x1, y1`` inclusive (the mask's bounding box).  The object's extent is
    ``scale`` × ``size`` (before rotation); it lies fully inside the image.  Textured objects
    alternate their color with a dark shade of it (0.4 × the color).
    """
    texture = textures[label % len(textures)]
    color_name = colors[int(label) // len(textures)]
    canvas = _background(rng, size)
    _fragments(canvas, rng, int(rng.integers(fragments[0], fragments[1] + 1)),
               [COLORS[c] for c in colors])

    shape = shapes[int(rng.integers(len(shapes)))]
    angle = rng.uniform(0, 2 * np.pi)
    extent = rng.uniform(*scale) * size
    polys = _outline(shape, extent, angle, rng)
    points = np.concatenate(polys)
    low, high = points.min(0), points.max(0)
    # Pixel centres are integers; keep every vertex within [0, size - 1].
    centre = np.array([rng.uniform(-low[i], size - 1 - high[i]) for i in range(2)])
    hue = COLORS[color_name] + rng.uniform(-15, 15)
    color = _hsv(hue / 360, rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))
    mask = _paint_polygons(canvas, [p + centre for p in polys], color)
    ys, xs = np.nonzero(mask)
    _paint_texture(canvas, ys, xs, texture, color, 0.4 * color, centre, angle, _period(rng, size))

    canvas += rng.normal(0.0, rng.uniform(*noise), canvas.shape).astype(np.float32)
    image = np.clip(canvas, 0.0, 1.0).transpose(2, 0, 1)
    ys, xs = np.nonzero(mask)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.int64)
    return np.ascontiguousarray(image, dtype=np.float32), mask, box


class Shapes(torch.utils.data.Dataset):
    """Synthetic shapes: item ``i`` of ``split`` is drawn from ``SeedSequence([seed, split, i])``.

    Splits ``"train"``, ``"val"``, ``"test"`` use disjoint random streams.  Labels cycle through
    the classes (``label = i % num_classes``), so every prefix is balanced.  Classes are
    ``colors × textures``; ``shapes`` are drawn at random within every class.

    Items: ``{"image": (3, H, W) float32 in [0, 1], "label": int, "boxes": (1, 4) int64
    x0, y0, x1, y1 inclusive, "mask": (H, W) bool}``.  ``classes`` holds the class names.
    """

    def __init__(self, split: str = "train", size: int = 64, length: int | None = None, seed: int = 0, *,
                 colors: Sequence[str] = tuple(COLORS), textures: Sequence[str] = TEXTURES,
                 shapes: Sequence[str] = SHAPES, scale: tuple[float, float] = (0.3, 0.65)):
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
        if int(size) < 16:
            raise InputError(f"size must be at least 16 pixels, got {size}")
        unknown = ([s for s in shapes if s not in SHAPES] + [c for c in colors if c not in COLORS]
                   + [t for t in textures if t not in ALL_TEXTURES])
        if unknown or not (shapes and colors and textures):
            raise InputError(f"unknown or no shapes/colors/textures {unknown}; known: {SHAPES}, "
                             f"{tuple(COLORS)}, {ALL_TEXTURES}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise InputError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        self.split, self.size, self.seed = split, int(size), int(seed)
        self.length = DEFAULT_LENGTH[split] if length is None else int(length)
        if self.length < 0:
            raise InputError(f"length must be >= 0, got {length}")
        self.colors, self.textures, self.shapes = tuple(colors), tuple(textures), tuple(shapes)
        self.scale = (float(scale[0]), float(scale[1]))
        self.classes = class_names(self.colors, self.textures)

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(colors) · len(textures)``."""
        return len(self.classes)

    def __len__(self) -> int:
        return self.length

    def label(self, index: int) -> int:
        """Class of item ``index``: ``index % num_classes`` (every prefix is balanced)."""
        return index % self.num_classes

    def __getitem__(self, index: int) -> dict:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        index %= self.length
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
        label = self.label(index)
        image, mask, box = render(rng, self.size, label, colors=self.colors, textures=self.textures,
                                  shapes=self.shapes, scale=self.scale)
        return {"image": torch.from_numpy(image), "label": label,
                "boxes": torch.from_numpy(box)[None], "mask": torch.from_numpy(mask)}

    def __repr__(self) -> str:
        return (f"Shapes(split={self.split!r}, size={self.size}, length={self.length}, seed={self.seed}, "
                f"classes={self.num_classes})")
