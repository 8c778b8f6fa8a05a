"""Boxes and masks from maps at one threshold, and box IoU.

Boxes are ``x0, y0, x1, y1`` in inclusive pixel coordinates; the IoU uses the +1 pixel convention,
``area = (x1 - x0 + 1) * (y1 - y0 + 1)``.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from camkit.errors import InputError

__all__ = ["EMPTY_BOX", "boxes", "masks", "iou", "component_boxes", "largest_component_box",
           "as_box_array"]

#: Box of an empty foreground: zero area under the +1 convention, IoU 0 with every box.
EMPTY_BOX = (0, 0, -1, -1)


def _as_numpy_maps(maps) -> np.ndarray:
    if isinstance(maps, torch.Tensor):
        maps = maps.detach().cpu().numpy()
    maps = np.asarray(maps)
    if maps.ndim < 2:
        raise InputError(f"maps must be (H, W), (B, H, W) or (B, K, H, W), got shape {maps.shape}")
    if not (np.issubdtype(maps.dtype, np.floating) or np.issubdtype(maps.dtype, np.integer)
            or maps.dtype == bool):
        raise InputError(f"maps must be numeric, got dtype {maps.dtype}")
    maps = maps.astype(np.float64, copy=False)
    if np.isnan(maps).any():
        raise InputError("maps contain NaN")
    return maps


def _structure(connectivity: int) -> np.ndarray:
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, got {connectivity}")
    return ndimage.generate_binary_structure(2, 2 if connectivity == 8 else 1)


def _foreground(single_map: np.ndarray, threshold: float) -> np.ndarray:
    return single_map > threshold * single_map.max()


def component_boxes(foreground: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(N, 4)`` and pixel counts ``(N,)`` of the connected components of a boolean
    ``(H, W)`` mask, sorted by ``(y0, x0, y1, x1)``."""
    labels, count = ndimage.label(foreground, structure=_structure(connectivity))
    if count == 0:
        return np.zeros((0, 4), np.int64), np.zeros(0, np.int64)
    slices = ndimage.find_objects(labels)
    found = np.array([[s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1] for s in slices],
                     np.int64)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    order = np.lexsort((found[:, 2], found[:, 3], found[:, 0], found[:, 1]))
    return found[order], sizes[order]


def largest_component_box(foreground: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """Box of the component with the most pixels (ties: smallest ``y0``, then ``x0``);
    :data:`EMPTY_BOX` when ``foreground`` is empty."""
    found, sizes = component_boxes(foreground, connectivity)
    if sizes.size == 0:
        return np.array(EMPTY_BOX, np.int64)
    return found[int(np.argmax(sizes))]  # sorted by (y0, x0): argmax keeps the first of ties


def boxes(maps, threshold: float = 0.2, connectivity: int = 8, all_components: bool = False):
    """Boxes around the pixels above ``threshold * max`` of each map (CAM protocol).

    ``maps``: ``(H, W)``, ``(B, H, W)`` or ``(B, K, H, W)``, tensor or array.  A pixel is kept
    when ``m(x, y) > threshold * max(m)`` (strict); components are 8-connected (or 4-connected).
    ``threshold`` 0.2 is the CAM paper's, 0.15 the Grad-CAM paper's.

    Returns a long tensor ``(..., 4)`` of the largest component's box (``x0, y0, x1, y1``
    inclusive); with ``all_components=True``, nested lists (same leading shape) of ``(N, 4)``
    long tensors, one box per component, sorted by ``(y0, x0, y1, x1)``.

    An empty foreground (an all-zero or non-positive map: no pixel exceeds its own max) has no
    region, so nothing is localized: the box is :data:`EMPTY_BOX` ``(0, 0, -1, -1)``, of zero area
    and IoU 0 with any ground truth (``all_components`` gives a ``(0, 4)`` tensor).  A whole-image
    box would instead reward a map that carries no information.
    """
    array = _as_numpy_maps(maps)
    if not np.isfinite(threshold):
        raise InputError(f"threshold must be finite, got {threshold}")
    lead = array.shape[:-2]
    flat = array.reshape(-1, *array.shape[-2:])
    if all_components:
        per_map = [torch.from_numpy(component_boxes(_foreground(m, threshold), connectivity)[0])
                   for m in flat]
        return _nest(per_map, lead)
    out = np.stack([largest_component_box(_foreground(m, threshold), connectivity) for m in flat]) \
        if flat.shape[0] else np.zeros((0, 4), np.int64)
    return torch.from_numpy(out.reshape(*lead, 4))


def _nest(items: list, lead: tuple):
    if not lead:
        return items[0]
    if len(lead) == 1:
        return items
    step = int(np.prod(lead[1:]))
    return [_nest(items[i * step:(i + 1) * step], lead[1:]) for i in range(lead[0])]


def masks(maps, threshold: float = 0.2) -> torch.Tensor:
    """Boolean masks of the pixels above ``threshold * max`` of each map, same shape as ``maps``."""
    array = _as_numpy_maps(maps)
    peak = array.max(axis=(-2, -1), keepdims=True)
    return torch.from_numpy(array > threshold * peak)


def as_box_array(value, name: str = "boxes") -> np.ndarray:
    """``(N, 4)`` int64 array from a tensor, array or nested list of boxes (one box allowed)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.size == 0:
        return np.zeros((0, 4), np.int64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise InputError(f"{name} must be (N, 4) x0, y0, x1, y1 boxes, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InputError(f"{name} contain NaN or inf")
        if not np.array_equal(array, np.round(array)):
            raise InputError(f"{name} must hold integer pixel coordinates")
    return array.astype(np.int64)


def iou_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``(N, M)`` of int arrays ``(N, 4)`` and ``(M, 4)`` (+1 convention)."""
    a = a[:, None, :]
    b = b[None, :, :]
    inter_w = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    inter_h = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = inter_w * inter_h
    area_a = np.maximum(0, a[..., 2] - a[..., 0] + 1) * np.maximum(0, a[..., 3] - a[..., 1] + 1)
    area_b = np.maximum(0, b[..., 2] - b[..., 0] + 1) * np.maximum(0, b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def iou(a, b) -> torch.Tensor:
    """Pairwise IoU of boxes ``a`` ``(N, 4)`` and ``b`` ``(M, 4)`` → ``(N, M)`` float64.

    ``IoU = |A ∩ B| / |A ∪ B|`` with inclusive pixel areas ``(x1 - x0 + 1)(y1 - y0 + 1)``; e.g.
    ``[1, 2, 5, 6]`` vs ``[3, 1, 4, 5]`` is 8/27.  Empty boxes (``x1 < x0``) have area 0 and IoU 0.
    """
    return torch.from_numpy(iou_numpy(as_box_array(a, "a"), as_box_array(b, "b")))
