"""Every connected component of every superlevel set of a batch of maps, in one pass.

Superlevel sets are nested: as the threshold falls, components only grow and merge.  Labelling
the map once per threshold repeats that work hundreds of times; :func:`superlevel_components`
instead sweeps the map once (row hills, ascent regions, Kruskal's algorithm over the regions:
see :mod:`camkit.localize.tree_kernel`, compiled with numba on first use) and returns every
component of every threshold as a :class:`ComponentTable`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from camkit.errors import InputError

__all__ = ["ComponentTable", "superlevel_components", "sweep", "sweep_rows", "refused", "cell_ious"]

_workspaces = threading.local()  # the kernel's scratch arrays, per thread: {(H, W, K, interior_only, holes): int32}
_WORKSPACES = 4  # kept per thread (a metric uses one or two)
_WORKSPACE_BYTES = 64 << 20  # larger ones (huge level counts) are not kept
_NO_WORKSPACE = np.zeros(0, np.int32)


@dataclass
class ComponentTable:
    """Every connected component of ``{levels > k}`` for every ``k`` in ``0 .. num_thresholds-1``.

    Row ``r`` is one component of image ``image[r]`` at threshold index ``threshold[r]``: its box
    ``boxes[r]`` (``x0, y0, x1, y1`` inclusive pixel coordinates) and pixel count ``area[r]``.
    ``largest[b, k]`` is the row of the component with the most pixels (ties: smallest ``y0``,
    then smallest ``x0``), -1 when ``{levels > k}`` is empty in image ``b``.
    """

    image: np.ndarray
    threshold: np.ndarray
    boxes: np.ndarray
    area: np.ndarray
    largest: np.ndarray
    shape: tuple[int, int, int]

    def boxes_at(self, k: int) -> list[np.ndarray]:
        """Per image, the ``(N_i, 4)`` boxes of the components of ``{levels > k}``, sorted by
        ``(y0, x0, y1, x1)``."""
        rows = np.flatnonzero(self.threshold == k)
        boxes = self.boxes[rows]
        rows = rows[np.lexsort((boxes[:, 2], boxes[:, 3], boxes[:, 0], boxes[:, 1],
                                self.image[rows]))]
        counts = np.bincount(self.image[rows], minlength=self.shape[0])
        return np.split(self.boxes[rows], np.cumsum(counts)[:-1])


def superlevel_components(levels: np.ndarray, num_thresholds: int | None = None,
                          connectivity: int = 8, fine: np.ndarray | None = None,
                          interior_only: bool = False,
                          order_key: np.ndarray | None = None) -> ComponentTable:
    """Components of ``{levels > k}`` for ``k = 0 .. num_thresholds - 1`` (default: up to the
    largest level), for a batch of non-negative integer ``levels`` ``(B, H, W)``.

    ``connectivity``: 8 (diagonal neighbours connect, the default) or 4.  ``interior_only``: keep
    only components that do not touch the image border (e.g. the holes of the complement);
    ``area`` is then zero and ``largest`` -1.  ``fine`` and ``order_key`` (tie-breaking orders
    that an earlier algorithm needed) are accepted and ignored: the result never depended on them.
    """
    levels = np.asarray(levels)
    if levels.ndim != 3:
        raise InputError(f"levels must be (B, H, W), got shape {levels.shape}")
    if not np.issubdtype(levels.dtype, np.integer):
        raise InputError(f"levels must be integers, got {levels.dtype}")
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, got {connectivity}")
    if levels.size and not np.issubdtype(levels.dtype, np.unsignedinteger) and levels.min() < 0:
        raise InputError("levels must be non-negative")
    if num_thresholds is None:
        num_thresholds = int(levels.max()) if levels.size else 0
    num_thresholds = int(num_thresholds)
    if not 0 <= num_thresholds < 1 << 27:
        raise InputError(f"num_thresholds must be in [0, 2^27), got {num_thresholds}")
    # Levels above num_thresholds act as it: clipped, they are exact as float64.
    maps = np.minimum(levels, num_thresholds).astype(np.float64)
    return sweep(maps, "levels", num_thresholds, connectivity, interior_only)[0]


def sweep(maps: np.ndarray, levels_from: str, num_thresholds: int, connectivity: int = 8,
          interior_only: bool = False, thresholds: np.ndarray | None = None) -> tuple[ComponentTable, np.ndarray]:
    """:func:`superlevel_components` of the levels of float maps ``(B, H, W)``, and each map's
    highest level ``(B,)``.  ``levels_from``: ``"levels"`` (the values are the levels),
    ``"uint8"`` (``int(255 m)``, the wsolevaluation reference's uint8 map), ``"uint8_complement"``
    (``255 - int(255 m)``) or ``"thresholds"`` (the number of ``thresholds`` strictly below ``m``,
    so that ``m > thresholds[k]`` exactly when ``k < level``).  Levels are made while the maps are
    read, not in passes of their own."""
    batch, height, width = maps.shape
    rows, largest, top, _, _ = sweep_rows(maps, levels_from, num_thresholds, connectivity, interior_only, thresholds)
    area = np.zeros(rows.shape[0], np.int64) if interior_only else rows[:, 6].astype(np.int64)
    table = ComponentTable(image=rows[:, 0].astype(np.int64), threshold=rows[:, 1].astype(np.int64),
                           boxes=rows[:, 2:6].astype(np.int64), area=area, largest=largest,
                           shape=(batch, height, width))
    return table, top


def sweep_rows(maps: np.ndarray, levels_from: str, num_thresholds: int, connectivity: int = 8,
               interior_only: bool = False, thresholds: np.ndarray | None = None,
               holes: bool = False, normalise: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sweep` as the kernel writes it: ``rows`` int32 ``(N, 7)`` (image, k, x0, y0, x1, y1,
    pixel count), ``largest`` int64 ``(B, num_thresholds)`` (row of the largest component, -1 for
    none), each map's highest level ``(B,)`` and ``hole_rows`` ``(M, 7)``, for :func:`cell_ious`,
    and each map's ``status`` ``(B,)`` int8.

    ``holes``: ``hole_rows`` are also the holes of the components, from the same read of the maps:
    the 4-connected components of ``{T - 1 - level > k}`` (``T = num_thresholds``) that do not touch
    the border, as :func:`sweep_rows` of the complement with ``interior_only`` gives them; without
    it, ``hole_rows`` is empty.

    ``normalise``: the maps are min-max normalised as the kernel reads them, as
    :func:`camkit.localize.metrics.prepare_maps` would (bit for bit) but without a pass of its own;
    a map with NaN or ±inf is scored as zeros and flagged in ``status`` (``tree_kernel.HAS_NAN``,
    ``HAS_INF``; else ``FINITE``, 0): see :func:`refused`."""
    # numba: imported (and the kernel compiled, or loaded from its cache) on first use
    from camkit.localize.tree_kernel import LEVELS, THRESHOLDS, UINT8, UINT8_COMPLEMENT, component_rows

    quantisers = {"levels": LEVELS, "uint8": UINT8, "uint8_complement": UINT8_COMPLEMENT, "thresholds": THRESHOLDS}
    batch, height, width = maps.shape
    if maps.size == 0 or num_thresholds == 0:
        return (np.zeros((0, 7), np.int32), np.full((batch, num_thresholds), -1, np.int64), np.zeros(batch, np.int64),
                np.zeros((0, 7), np.int32), np.zeros(batch, np.int8))
    # The kernel's scratch is kept per thread and shape: freed and allocated again, its pages would
    # be handed back to the system and faulted in afresh by every call (~15 % of the sweep).
    workspaces = _workspaces.__dict__.setdefault("by_shape", {})
    key = (height, width, num_thresholds, bool(interior_only), bool(holes))
    workspace = workspaces.pop(key, _NO_WORKSPACE)  # a call that raises leaves none behind
    rows, largest, top, hole_rows, status, workspace = component_rows(
        np.ascontiguousarray(maps, dtype=np.float64), quantisers[levels_from],
        np.zeros(0) if thresholds is None else np.ascontiguousarray(thresholds, dtype=np.float64),
        num_thresholds, connectivity, bool(interior_only), workspace, bool(holes), bool(normalise))
    if workspace.nbytes <= _WORKSPACE_BYTES:
        if len(workspaces) >= _WORKSPACES:
            workspaces.pop(next(iter(workspaces)))
        workspaces[key] = workspace
    return rows, largest, top, hole_rows, status


def refused(status: np.ndarray, nan_to_zero: bool) -> bool:
    """Whether :func:`sweep_rows`' ``status`` flags a map that must be refused: one holding ±inf,
    or NaN unless ``nan_to_zero`` (the wsolevaluation protocol's zeros)."""
    from camkit.localize.tree_kernel import HAS_INF, HAS_NAN

    return bool(np.any(status == HAS_INF) or (not nan_to_zero and np.any(status == HAS_NAN)))


def cell_ious(rows: np.ndarray, largest: np.ndarray, gt: np.ndarray, columns: np.ndarray,
              empty_box: tuple[int, int, int, int], shape: tuple[int, int], far_corner: bool = False,
              hole_rows: np.ndarray | None = None, hole_flip: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per image and threshold, the IoU with the ground truth of the largest component's box and
    the best IoU of all boxes, ``(B, T)`` float64 each (compiled; equal to
    :func:`camkit.localize.boxes.box_iou` on the same boxes).

    ``rows``, ``largest``: from :func:`sweep_rows`; ``gt`` ``(B, G, 4)`` int64 from
    :func:`camkit.localize.boxes.ground_truth`; ``columns`` ``(B, T)``: the level ``k`` scored at
    each threshold; ``empty_box``: the box of a level without components; ``shape``: ``(H, W)``;
    ``far_corner``: boxes end one pixel past the component, clipped to the map (wsolevaluation's
    ``x + w``).  ``hole_rows`` (from :func:`sweep_rows` with ``holes``): holes, boxed one
    pixel outside on every side, counted at level ``hole_flip - k``."""
    from camkit.localize.tree_kernel import cell_ious as compiled

    if hole_rows is None:
        hole_rows = np.zeros((0, 7), np.int32)
    return compiled(rows, largest, hole_rows, hole_flip, np.ascontiguousarray(gt, dtype=np.int64),
                    np.ascontiguousarray(columns, dtype=np.int64), np.array(empty_box, np.int64), bool(far_corner),
                    shape[0], shape[1])
