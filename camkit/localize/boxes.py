"""Boxes and masks from maps at one threshold, box validation and box IoU.

Boxes are ``x0, y0, x1, y1`` in inclusive pixel coordinates; the IoU uses the +1 pixel convention,
``area = (x1 - x0 + 1) * (y1 - y0 + 1)``.  :data:`EMPTY_BOX` ``(0, 0, -1, -1)`` is the one empty box
(what camkit returns for a map with no foreground): area 0, IoU 0 with every box.  Any other box
with ``x1 < x0`` or ``y1 < y0`` is refused when scoring, with an error naming it, and so is
``EMPTY_BOX`` as ground truth: a silent IoU of 0 would hide the mistake.

Functions on tensors return tensors on the input's device (the work is done on the CPU with
NumPy and SciPy, whose connected-component labelling has no GPU counterpart here); the
``*_array`` functions are the same on NumPy arrays, for callers that stay in NumPy.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from camkit.errors import InputError

__all__ = ["EMPTY_BOX", "boxes", "masks", "iou", "best_iou", "component_boxes", "largest_component_box",
           "box_array", "nonempty", "box_iou", "largest_box_array", "ground_truth", "padded_best_iou"]

#: Box of an empty foreground: zero area under the +1 convention, IoU 0 with every box.
EMPTY_BOX = (0, 0, -1, -1)


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _as_numpy_maps(maps) -> np.ndarray:
    maps = _numpy(maps)
    if maps.ndim < 2:
        raise InputError(f"maps must be (H, W), (B, H, W) or (B, K, H, W), got shape {maps.shape}")
    if not (np.issubdtype(maps.dtype, np.floating) or np.issubdtype(maps.dtype, np.integer)
            or maps.dtype == bool):
        raise InputError(f"maps must be numeric, got dtype {maps.dtype}")
    maps = maps.astype(np.float64, copy=False)
    check_finite(maps)
    return maps


def check_finite(maps: np.ndarray, nan: bool = True) -> None:
    """Refuse maps holding +inf or -inf (and NaN unless ``nan=False``) with an error naming the map
    (index in the flattened leading axes) and the value."""
    bad = ~np.isfinite(maps) if nan else np.isinf(maps)
    if bad.any():
        index = np.unravel_index(int(np.argmax(bad)), maps.shape)
        value = maps[index]
        what = "NaN" if np.isnan(value) else ("+inf" if value > 0 else "-inf")
        which = f" (map {int(np.ravel_multi_index(index[:-2], maps.shape[:-2]))})" if maps.ndim > 2 else ""
        raise InputError(f"maps contain {what}{which}: every value must be finite")


def _like(array: np.ndarray, maps) -> torch.Tensor:
    """``array`` as a tensor on the device of ``maps`` when it is a tensor (else on the CPU)."""
    tensor = torch.from_numpy(array)
    return tensor.to(maps.device) if isinstance(maps, torch.Tensor) else tensor


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
    inclusive), on the device of ``maps``; with ``all_components=True``, nested lists (same
    leading shape) of ``(N, 4)`` long tensors, one box per component, sorted by ``(y0, x0, y1, x1)``.

    An empty foreground (an all-zero or non-positive map: no pixel exceeds its own max) has no
    region, so nothing is localized: the box is :data:`EMPTY_BOX` ``(0, 0, -1, -1)``, of zero area
    and IoU 0 with any ground truth (``all_components`` gives a ``(0, 4)`` tensor).  A whole-image
    box would instead reward a map that carries no information.
    """
    if not all_components:
        return _like(largest_box_array(maps, threshold, connectivity), maps)
    array = _as_numpy_maps(maps)
    _check_threshold(threshold)
    lead = array.shape[:-2]
    flat = array.reshape(-1, *array.shape[-2:])
    per_map = [_like(component_boxes(_foreground(m, threshold), connectivity)[0], maps) for m in flat]
    return _nest(per_map, lead)


def largest_box_array(maps, threshold: float = 0.2, connectivity: int = 8) -> np.ndarray:
    """:func:`boxes` (largest component) as an int64 NumPy array ``(..., 4)``."""
    array = _as_numpy_maps(maps)
    _check_threshold(threshold)
    lead = array.shape[:-2]
    flat = array.reshape(-1, *array.shape[-2:])
    if not flat.shape[0]:
        return np.zeros((*lead, 4), np.int64)
    found = np.stack([largest_component_box(_foreground(m, threshold), connectivity) for m in flat])
    return found.reshape(*lead, 4)


def _check_threshold(threshold: float) -> None:
    if not np.isfinite(threshold):
        raise InputError(f"threshold must be finite, got {threshold}")


def _nest(items: list, lead: tuple):
    if not lead:
        return items[0]
    if len(lead) == 1:
        return items
    step = int(np.prod(lead[1:]))
    return [_nest(items[i * step:(i + 1) * step], lead[1:]) for i in range(lead[0])]


def masks(maps, threshold: float = 0.2) -> torch.Tensor:
    """Boolean masks of the pixels above ``threshold * max`` of each map, same shape (and device)
    as ``maps``."""
    array = _as_numpy_maps(maps)
    peak = array.max(axis=(-2, -1), keepdims=True)
    return _like(array > threshold * peak, maps)


def box_array(value, name: str = "boxes", integer: bool = True, allow_empty: bool = True) -> np.ndarray:
    """Validate boxes: ``(N, 4)`` from a tensor, an array or a (nested) list; ``(4,)`` is one box,
    an empty input ``(0, 4)``.  ``integer=True`` (scoring): int64, finite integer coordinates,
    ``x0 <= x1`` and ``y0 <= y1`` except for :data:`EMPTY_BOX` (refused too with
    ``allow_empty=False``, e.g. for ground truth); ``integer=False`` (drawing): float64, NaN and
    empty boxes allowed (they are skipped, see :func:`nonempty`)."""
    array = _numpy(value)
    if array.dtype == object:
        raise InputError(f"{name} must be numbers x0, y0, x1, y1; got ragged {value!r}")
    if array.size == 0:
        return np.zeros((0, 4), np.int64 if integer else np.float64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        raise InputError(f"{name} must be (4,) or (N, 4) boxes x0, y0, x1, y1; got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"{name} must be numbers x0, y0, x1, y1; got dtype {array.dtype}")
    if not integer:
        return array.astype(np.float64)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InputError(f"{name} contain NaN or inf")
        if not np.array_equal(array, np.round(array)):
            raise InputError(f"{name} must hold integer pixel coordinates")
    array = array.astype(np.int64)
    # A reversed box is refused rather than swapped: it usually means another convention
    # (x, y, w, h or y0, x0, ...), which a swap would turn into a plausible but wrong box.
    reversed_ = (array[:, 2] < array[:, 0]) | (array[:, 3] < array[:, 1])
    if allow_empty:
        reversed_ &= np.any(array != np.array(EMPTY_BOX), axis=1)
    if reversed_.any():
        i = int(np.argmax(reversed_))
        raise InputError(f"{name}[{i}] = {array[i].tolist()} is reversed (x1 < x0 or y1 < y0): a box is x0, y0, "
                         "x1, y1 with x0 <= x1 and y0 <= y1")
    return array


def nonempty(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` -> ``(N,)``: False for empty boxes (``x1 < x0`` or ``y1 < y0``) and NaN ones."""
    with np.errstate(invalid="ignore"):
        return (np.all(np.isfinite(boxes), axis=-1) & (boxes[..., 2] >= boxes[..., 0])
                & (boxes[..., 3] >= boxes[..., 1]))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of integer boxes ``a`` ``(..., 4)`` and ``b`` ``(..., 4)``, broadcast against each other
    (+1 convention; empty boxes have area 0 and IoU 0)."""
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
    ``[1, 2, 5, 6]`` vs ``[3, 1, 4, 5]`` is 8/27.  :data:`EMPTY_BOX` has area 0 and IoU 0; any other
    reversed box (``x1 < x0`` or ``y1 < y0``) raises :class:`InputError` naming it.
    """
    table = box_iou(box_array(a, "a")[:, None], box_array(b, "b")[None])
    return _like(table, a if isinstance(a, torch.Tensor) else b)


def best_iou(boxes, gt_boxes: Sequence, image=None) -> np.ndarray:
    """Best IoU of each box with its image's ground truth, float64 (0 where an image has no
    ground-truth box).

    ``gt_boxes``: one ``(N_i, 4)`` set per image.  ``boxes``: ``(B, ..., 4)``, image ``i``'s boxes at
    ``boxes[i]`` → ``(B, ...)``; or, with ``image`` ``(R,)``, rows ``(R, 4)`` of images ``image[r]`` → ``(R,)``.
    """
    boxes = _numpy(boxes)
    if boxes.shape[-1:] != (4,):
        raise InputError(f"boxes must have a last axis of 4, got shape {boxes.shape}")
    boxes = box_array(boxes.reshape(-1, 4), "boxes").reshape(boxes.shape)
    gt = ground_truth(gt_boxes)
    if image is None and boxes.shape[0] != gt.shape[0]:
        raise InputError(f"boxes {boxes.shape} need one ground-truth set per image ({gt.shape[0]} given)")
    return padded_best_iou(boxes, gt, image)


def ground_truth(gt_boxes: Sequence) -> np.ndarray:
    """Validated ground-truth boxes, one ``(N_i, 4)`` set per image (a reversed or empty box is an
    error naming it), as ``(B, G, 4)`` int64 padded with :data:`EMPTY_BOX` (``G = max N_i``)."""
    gt = [_numpy(g) for g in gt_boxes]
    if not _integer_sets_in_order(gt):  # the per-set checks, for an error naming the box
        gt = [box_array(g, f"gt_boxes[{i}]", allow_empty=False) for i, g in enumerate(gt)]
    sizes = {g.shape[0] for g in gt}
    if len(sizes) == 1:
        return np.stack(gt).astype(np.int64, copy=False)
    padded = np.tile(np.array(EMPTY_BOX, np.int64), (len(gt), max(sizes, default=0), 1))
    for i, g in enumerate(gt):
        padded[i, :g.shape[0]] = g
    return padded


def _integer_sets_in_order(sets: list[np.ndarray]) -> bool:
    """Whether every set is an ``(N, 4)`` integer array of boxes with ``x0 <= x1``, ``y0 <= y1``
    (what :func:`box_array` accepts without change), checked on all sets at once."""
    if not sets or not all(g.ndim == 2 and g.shape[1] == 4 and g.dtype.kind in "iu" for g in sets):
        return False
    every = np.concatenate(sets)
    return bool(np.all(every[:, 2] >= every[:, 0]) and np.all(every[:, 3] >= every[:, 1]))


def padded_best_iou(boxes: np.ndarray, gt: np.ndarray, image=None) -> np.ndarray:
    """:func:`best_iou` for int64 ``boxes`` already valid and ``gt`` from :func:`ground_truth`."""
    if boxes.shape[-1:] != (4,):
        raise InputError(f"boxes must have a last axis of 4, got shape {boxes.shape}")
    if image is None:
        gt = gt.reshape(gt.shape[0], *(1,) * (boxes.ndim - 2), *gt.shape[1:])
    else:
        gt = gt[np.asarray(image)]
    best = np.zeros(boxes.shape[:-1])
    for column in range(gt.shape[-2]):  # a few ground-truth boxes per image: one vectorised pass each
        best = np.maximum(best, box_iou(boxes, gt[..., column, :]))
    return best
