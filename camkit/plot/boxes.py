"""Boxes on figures and images: ``draw_boxes``, and the box layouts the figures accept.

Boxes are ``x0, y0, x1, y1`` in inclusive pixel coordinates, read by the one box validator
(:func:`camkit.localize.box_array`); empty boxes (``x1 < x0``, e.g. :data:`camkit.localize.EMPTY_BOX`)
and NaN ones are skipped (:func:`camkit.localize.nonempty`).
"""
from __future__ import annotations

from typing import Any

import matplotlib
import matplotlib.colors
import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from camkit.errors import InputError
from camkit.localize import box_array, nonempty
from camkit.plot.inputs import _Maps, _to_numpy, to_rgb
from camkit.plot.pixels import _draw_rect_into, _draw_text_into

__all__ = ["PRED_COLOR", "GT_COLOR", "draw_boxes"]

PRED_COLOR = "red"      # CAM paper: predicted boxes red, ground truth green


GT_COLOR = "lime"


def _valid_boxes(array: np.ndarray) -> np.ndarray:
    return array[nonempty(array)]


def _labels_for(labels: Any, n: int) -> list[str | None]:
    if labels is None:
        return [None] * n
    if isinstance(labels, str):
        return [labels] * n
    labels = list(labels)
    if len(labels) != n:
        raise InputError(f"{len(labels)} label(s) for {n} box(es)")
    return [None if label is None else str(label) for label in labels]


def draw_boxes(target: Axes | Any, boxes: Any, labels: Any = None, color: Any = PRED_COLOR,
               linewidth: float = 2.0, fontsize: float = 8.0) -> Axes | np.ndarray:
    """Draw boxes ``x0, y0, x1, y1`` (inclusive pixel coordinates) on an Axes or into an image.

    The rectangle covers pixels ``x0 .. x1`` and ``y0 .. y1`` inclusive: on an Axes showing the
    image with ``imshow`` its edges lie at ``x0 - 0.5`` and ``x1 + 0.5`` (``linewidth`` in points,
    centred on the edge); in an image the outline is ``linewidth`` pixels thick, inside the box.
    ``boxes``: ``(4,)`` or ``(N, 4)``; ``labels``: one string or ``N`` strings, written inside each
    box's top-left corner.  Boxes with ``x1 < x0``, ``y1 < y0`` or NaN are skipped.  Returns the Axes, or a new
    ``(H, W, 3)`` float32 array when ``target`` is an image (any accepted kind).
    """
    array = box_array(boxes, "boxes", integer=False)
    names = _labels_for(labels, len(array))
    keep = nonempty(array)
    array, names = array[keep], [name for name, kept in zip(names, keep, strict=True) if kept]
    try:
        rgba = matplotlib.colors.to_rgba(color)
    except ValueError:
        raise InputError(f"not a color: {color!r}") from None

    if isinstance(target, Axes):
        for (x0, y0, x1, y1), name in zip(array, names, strict=True):
            target.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False,
                                       edgecolor=rgba, linewidth=linewidth))
            if name:
                target.text(x0 - 0.5, y0 - 0.5, name, color="white", fontsize=fontsize,
                            va="top", ha="left", clip_on=True,
                            bbox=dict(facecolor=rgba, edgecolor="none", pad=1.0, alpha=0.8))
        return target

    images = to_rgb(target)
    if len(images) != 1:
        raise InputError(f"draw_boxes draws into one image; got a batch of {len(images)}")
    rgb = images[0].copy()
    thickness = max(int(round(linewidth)), 1)
    color_rgb = np.asarray(rgba[:3], dtype=np.float32)
    for box, name in zip(array, names, strict=True):
        _draw_rect_into(rgb, box, color_rgb, thickness)
        if name:
            _draw_text_into(rgb, name, int(round(box[0])) + thickness + 1,
                            int(round(box[1])) + thickness + 1, color_rgb)
    return rgb


def _panel_boxes(boxes: Any, batch: int, k: int, per_panel_ok: bool, what: str) -> list[list[np.ndarray]]:
    """Boxes in any accepted layout -> ``[b][k]`` lists of ``(n, 4)`` arrays.

    Layouts: ``(4,)`` or ``(n, 4)`` for a single image; ``(B, 4)`` one per image;
    ``(B, K, 4)`` one per panel (predictions) or ``(B, n, 4)`` n per image; ``(B, K, n, 4)``;
    a list of ``B`` per-image entries, each ``(4,)``, ``(n, 4)`` or ``(K, n, 4)`` (for one image, a
    list of n boxes is also read as its ``(n, 4)``).
    """
    empty = np.zeros((0, 4))
    if boxes is None:
        return [[empty] * k for _ in range(batch)]

    def whole_image(entry) -> list[np.ndarray]:
        return [_valid_boxes(box_array(entry, what, integer=False))] * k

    def per_image(entry) -> list[np.ndarray]:
        array = _to_numpy(entry)
        if array.ndim == 3:
            if not per_panel_ok or array.shape[0] != k:
                raise InputError(f"{what}: a per-image entry of shape {array.shape} needs one "
                                 f"(n, 4) group per map (K = {k})")
            return [_valid_boxes(box_array(group, what, integer=False)) for group in array]
        return whole_image(array)

    if isinstance(boxes, (list, tuple)) and boxes and not np.isscalar(boxes[0]):
        if len(boxes) == batch:
            return [per_image(entry) for entry in boxes]
        if batch == 1:
            return [whole_image(boxes)]
        raise InputError(f"{what}: {len(boxes)} entries for {batch} image(s)")

    array = _to_numpy(boxes).astype(np.float64)
    if array.shape[-1:] != (4,):
        raise InputError(f"{what} must end in 4 coordinates x0, y0, x1, y1; got shape {array.shape}")
    if array.ndim == 1:
        if batch != 1:
            raise InputError(f"{what}: one box (4,) given for {batch} images; give (B, 4)")
        return [whole_image(array)]
    if array.ndim == 2:
        if batch == 1:
            return [whole_image(array)]
        if array.shape[0] != batch:
            raise InputError(f"{what}: shape {array.shape} does not match {batch} images; "
                             "give (B, 4), (B, n, 4) or a list of B (n, 4) arrays")
        return [whole_image(row) for row in array]
    if array.shape[0] != batch:
        raise InputError(f"{what}: shape {array.shape} does not start with the batch size {batch}")
    if array.ndim == 3:
        if per_panel_ok and array.shape[1] == k and k > 1:
            return [[_valid_boxes(box[None]) for box in row] for row in array]
        return [whole_image(row) for row in array]
    if array.ndim == 4 and per_panel_ok and array.shape[1] == k:
        return [[_valid_boxes(group) for group in row] for row in array]
    raise InputError(f"{what}: cannot read boxes of shape {array.shape}")


def _predicted_boxes(boxes: Any, maps: _Maps, box_threshold: float, what: str = "boxes"):
    if boxes is True:
        if maps.source is None or not callable(getattr(maps.source, "boxes", None)):
            raise InputError("boxes=True needs an Explanation (something with .boxes(threshold)); "
                             "pass the boxes themselves instead")
        boxes = maps.source.boxes(box_threshold)
    elif boxes is False:
        boxes = None
    return _panel_boxes(boxes, maps.batch, maps.k, per_panel_ok=True, what=what)
