"""Pixels without a figure: a map blended over its image, boxes and labels drawn into an array."""
from __future__ import annotations

from typing import Any

import matplotlib
import matplotlib.colors
import numpy as np

from camkit.errors import InputError
from camkit.plot.inputs import _colormap, _read_maps, _resized, _to_numpy, to_rgb

__all__ = ["blend", "overlay_arrays"]

def blend(image: Any, map_hw: Any, alpha: float = 0.5, cmap: str | matplotlib.colors.Colormap = "jet",
          mask_below: float | None = None) -> np.ndarray:
    """Blend a color-mapped map over an image: ``(1 - α)·image + α·cmap(map)``.

    ``image``: one image of any accepted kind (``(H, W, 3)`` float in [0, 1] is used as is).
    ``map_hw``: ``(h, w)`` in [0, 1], resized (bilinear) to ``(H, W)`` when it differs.  Pixels where
    ``map < mask_below`` show the image unchanged.  Returns ``(H, W, 3)`` float32 in [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1]; got {alpha}")
    rgb = image if (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[-1] == 3
                    and image.dtype == np.float32) else to_rgb(image)[0]
    values = _to_numpy(map_hw)
    while values.ndim > 2 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 2:
        raise InputError(f"blend takes one map (h, w); got shape {values.shape}")
    values = _read_maps(values, 1).maps[0, 0]
    values = _resized(values, rgb.shape[:2])
    heat = _colormap(cmap)(values)[..., :3].astype(np.float32)
    blended = (1.0 - alpha) * rgb + alpha * heat
    if mask_below is not None:
        blended = np.where((values < mask_below)[..., None], rgb, blended)
    return np.clip(blended, 0.0, 1.0).astype(np.float32)


def overlay_arrays(images: Any, maps_or_explanation: Any, alpha: float = 0.5, cmap="jet",
                   mask_below: float | None = None, mean=None, std=None,
                   min_max: bool = False) -> list[np.ndarray]:
    """The pixels of :func:`overlay` without a figure: one ``(K, H, W, 3)`` float32 array per image."""
    rgbs = to_rgb(images, mean, std)
    maps = _read_maps(maps_or_explanation, len(rgbs), min_max)
    return [np.stack([blend(rgb, maps.maps[b, k], alpha, cmap, mask_below) for k in range(maps.k)])
            for b, rgb in enumerate(rgbs)]


def _draw_rect_into(rgb: np.ndarray, box: np.ndarray, color: np.ndarray, width: int) -> None:
    height, width_px = rgb.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    xa, xb = max(x0, 0), min(x1, width_px - 1)
    ya, yb = max(y0, 0), min(y1, height - 1)
    if xa > xb or ya > yb:
        return
    for t in range(width):  # each ring lies inside the box: pixel x0 .. x1 inclusive
        for x in (x0 + t, x1 - t):
            if xa <= x <= xb:
                rgb[ya:yb + 1, x] = color
        for y in (y0 + t, y1 - t):
            if ya <= y <= yb:
                rgb[y, xa:xb + 1] = color


def _draw_text_into(rgb: np.ndarray, text: str, x: int, y: int, color: np.ndarray) -> None:
    from PIL import Image, ImageDraw

    height, width = rgb.shape[:2]
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    draw.text((max(x, 0), max(y, 0)), text, fill=255)
    rgb[np.asarray(mask) > 127] = color
