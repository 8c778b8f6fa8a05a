"""Every connected component of every superlevel set of a batch of maps, in one pass.

Superlevel sets are nested: as the threshold falls, components only grow and merge.  Labelling
the map once per threshold repeats that work hundreds of times; instead:

1. **Row hills.**  Each image row is cut where it dips (a pixel lower than its left neighbour and
   not higher than its right one); between cuts the row rises then falls, so the part of a
   "hill" above any level is an interval.
2. **Ascent regions.**  Each hill points to the hill holding its peak's highest neighbour, if
   higher; pointer jumping over the hills (a few thousand, not the pixels) groups them by the local
   maximum they climb to.  The part of a region above any level is connected, so every superlevel
   component is a union of whole region parts.
3. **Region tables.**  Per region and level, the box and pixel count of its part above that
   level: a few scatter operations over the pixels, then cumulative min/max/sum over levels.
4. **Merge tree.**  Two adjacent regions join at their pass level (the best ``min(a, b)`` over
   their touching pixel pairs).  Kruskal's algorithm over a maximum spanning tree of the few
   regions of each image gives every component and the threshold range where it exists.

Steps 1-3 are whole-array numpy operations over the batch; step 4 loops over regions only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree

from camkit.errors import InputError

__all__ = ["ComponentTable", "superlevel_components"]

_FINE_BITS = 21  # resolution of the tie-breaking value inside one level


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

    ``connectivity``: 8 (diagonal neighbours connect, the default) or 4.  ``fine``: optional
    ``(B, H, W)`` values in [0, 1] that order pixels inside a level (e.g. the float map the levels
    were cut from); it only makes ascent regions larger and fewer, never changes the result.
    ``interior_only``: keep only components that do not touch the image border (e.g. the holes
    of the complement), skipping the others' rows; ``area`` and ``largest`` are then not filled.
    ``order_key``: instead of ``fine``, real ``(B, H, W)`` keys that never order two pixels
    against their levels (``levels[p] < levels[q]`` implies ``key[p] < key[q]``), e.g. the map
    ``x`` itself for ``levels = floor(x)``.
    """
    levels = np.asarray(levels)
    if levels.ndim != 3:
        raise InputError(f"levels must be (B, H, W), got shape {levels.shape}")
    if not np.issubdtype(levels.dtype, np.integer):
        raise InputError(f"levels must be integers, got {levels.dtype}")
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, got {connectivity}")
    if max(levels.shape[1:], default=0) >= 1 << 15:
        raise InputError(f"maps of {levels.shape[1:]} pixels are too large (limit 32767 a side)")
    if levels.size and not np.issubdtype(levels.dtype, np.unsignedinteger) and levels.min() < 0:
        raise InputError("levels must be non-negative")
    if levels.dtype.itemsize > 4 or levels.dtype == np.uint32:
        levels = levels.astype(np.int32)  # uint8/16 and int16/32 are used as they are
    batch, height, width = levels.shape
    top = int(levels.max()) if levels.size else 0
    if num_thresholds is None:
        num_thresholds = top
    table_width = max(top, num_thresholds) + 1

    region, n_regions, peak, hills = _ascent_regions(levels, connectivity, fine, order_key)
    region_image = np.repeat(np.arange(batch), np.bincount(peak // (height * width),
                                                           minlength=batch))
    region_top = levels.ravel()[peak].astype(np.int64)
    x0, y0, x1, y1, area = _region_tables(levels, region, n_regions, hills, table_width,
                                           need_area=not interior_only)
    a, b, passes = _passes(levels, region, n_regions, region_image, hills, connectivity)

    parent, passes = _merge_tree(a, b, passes, n_regions)
    birth = np.minimum(np.concatenate([region_top, passes]).astype(np.int64), num_thresholds)
    has_parent = parent >= 0
    death = np.zeros_like(birth)
    death[has_parent] = birth[parent[has_parent]]
    # Pairs (region, ancestor node): the region's part above k belongs to the ancestor alive at k.
    region_parts, node_parts = [], []
    region_ids, node = np.arange(n_regions), np.arange(n_regions)
    while node.size:
        region_parts.append(region_ids)
        node_parts.append(node)
        node = parent[node]
        region_ids, node = region_ids[node >= 0], node[node >= 0]
    pair_region = np.concatenate(region_parts)
    pair_node = np.concatenate(node_parts)
    if interior_only:
        # A node touches the border at k when one of its regions has a border pixel above k.
        border = _border_pixels(batch, height, width)
        region_border_top = np.zeros(n_regions, np.int64)
        np.maximum.at(region_border_top, region.ravel()[border],
                      levels.ravel()[border].astype(np.int64))
        node_border_top = np.zeros(birth.size, np.int64)
        np.maximum.at(node_border_top, pair_node, region_border_top[pair_region])
        death = np.maximum(death, node_border_top)
    lifetimes = np.maximum(birth - death, 0)
    first_row = np.cumsum(lifetimes) - lifetimes
    n_rows = int(lifetimes.sum())

    # Row (node, k) gathers the parts above k of the regions below the node: scatter each
    # region's table values into the rows of each of its ancestors.
    span = lifetimes[pair_node]
    region_rep = np.repeat(pair_region, span)
    node_rep = np.repeat(pair_node, span)
    step = np.arange(region_rep.size) - np.repeat(np.cumsum(span) - span, span)
    k_rep = death[node_rep] + step
    row_rep = first_row[node_rep] + step

    columns = []
    table_cell = (x0.shape[0] - 2 - k_rep) * n_regions + region_rep  # see _region_tables
    for ufunc, table, empty in ((np.minimum, x0, max(height, width)), (np.minimum, y0, max(height, width)),
                                (np.maximum, x1, -1), (np.maximum, y1, -1)):
        column = np.full(n_rows, empty, np.int16)
        ufunc.at(column, row_rep, table.ravel()[table_cell])
        columns.append(column)
    boxes = np.stack(columns, axis=1).astype(np.int64)
    nodes = np.repeat(np.arange(birth.size), lifetimes)
    thresholds = death[nodes] + np.arange(n_rows) - np.repeat(first_row, lifetimes)
    node_image = np.empty(birth.size, np.int64)
    node_image[pair_node] = region_image[pair_region]
    images = node_image[nodes]
    if interior_only:
        areas = np.zeros(n_rows, np.int64)
        largest = np.full((batch, num_thresholds), -1, np.int64)
    else:
        areas = np.bincount(row_rep, weights=area.ravel()[table_cell],
                            minlength=n_rows).astype(np.int64)
        largest = _largest(images, thresholds, boxes, areas, batch, num_thresholds, height, width)
    return ComponentTable(image=images, threshold=thresholds, boxes=boxes, area=areas,
                          largest=largest, shape=(batch, height, width))


def _merge_tree(a: np.ndarray, b: np.ndarray, passes: np.ndarray, n_regions: int):
    """Parent of every tree node (regions ``0 .. n_regions-1``, then one node per merge; -1 for
    roots) and the pass level of each merge.

    The merge tree only depends on a maximum spanning tree of the region graph (pass levels as
    weights): keep those few edges, then run Kruskal's algorithm over them, highest pass first.
    Merge node m joins two components at pass p; it exists for thresholds k < p until its own
    parent merge.
    """
    if passes.size:
        weights = int(passes.max()) + 1 - passes
        spanning = minimum_spanning_tree(
            coo_matrix((weights, (a, b)), shape=(n_regions, n_regions)).tocsr()).tocoo()
        order = np.argsort(spanning.data, kind="stable")
        a, b = spanning.row[order], spanning.col[order]
        passes = int(passes.max()) + 1 - spanning.data[order].astype(np.int64)
    n_merges = passes.size
    owner = list(range(n_regions))  # union-find root region -> current tree node
    union = list(range(n_regions))

    def find(i: int) -> int:
        while union[i] != i:
            union[i] = union[union[i]]
            i = union[i]
        return i

    merge_children = np.empty((n_merges, 2), np.int64)
    for m, (i, j) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        ri, rj = find(i), find(j)  # a spanning tree never joins a component to itself
        merge_children[m] = owner[ri], owner[rj]
        union[rj] = ri
        owner[ri] = n_regions + m
    parent = np.full(n_regions + n_merges, -1, np.int64)
    parent[merge_children.ravel()] = np.repeat(np.arange(n_regions, n_regions + n_merges), 2)
    return parent, passes


@dataclass
class _Hills:
    start: np.ndarray  # flat index of each hill's first pixel
    region: np.ndarray
    row: np.ndarray  # row of the (B * H, W) stack
    top: np.ndarray  # level of the hill's peak


def _ascent_regions(levels, connectivity, fine, order_key=None):
    """Region id per pixel, number of regions, flat index of each region's peak, and the row
    "hills" the regions are made of (flat start index, region of each hill).

    Two steps keep the work on whole arrays short: each image row is cut at its local minima into
    unimodal runs ("hills", whose part above any level is an interval); then each hill points to
    the hill holding the highest neighbour of its peak, if higher, and pointer jumping over the few
    hills groups them by the local maximum they climb to.
    """
    batch, height, width = levels.shape
    n_pixels = levels.size
    # An order of the pixels consistent with the levels (ties allowed): (level, fine value).
    if order_key is not None:
        key = order_key
    elif fine is not None:
        # levels * 2^F + fine * (2^F - 1): the fine value never outweighs one level
        key = np.multiply(fine, (1 << _FINE_BITS) - 1, dtype=np.float64)
        key += levels * float(1 << _FINE_BITS)
    else:
        key = levels
    rows = key.reshape(-1, width)

    # A hill starts at each row start and at each pixel lower than its left neighbour and not
    # higher than its right one; between two starts a row never dips, so the part of a hill
    # above any level is an interval.  A hill's first strict descent (or its end) is its peak.
    falls = rows[:, :-1] > rows[:, 1:]
    start = np.empty(rows.shape, bool)
    start[:, 0] = True
    start[:, 1:] = falls
    start[:, 1:-1] &= rows[:, 2:] >= rows[:, 1:-1]
    if width > 1:
        start[:, -1] = False
    start_index = np.flatnonzero(start)
    hill_plus_one = np.cumsum(start.ravel(), dtype=np.int32)
    descent = np.empty(rows.shape, bool)
    descent[:, :-1] = falls
    descent[:, -1] = True
    descent_index = np.flatnonzero(descent)
    peak = descent_index[np.searchsorted(descent_index, start_index)]

    # Each hill points to the hill of its peak's highest neighbour when that one is higher.
    y, x = (peak // width) % height, peak % width
    flat_key = key.ravel()
    best_key = flat_key[peak]
    pointer = np.arange(peak.size, dtype=np.int64)
    offsets = [(-1, 0), (1, 0)] + ([(-1, -1), (-1, 1), (1, -1), (1, 1)] if connectivity == 8 else [])
    for dy, dx in offsets:
        valid = (y + dy >= 0) & (y + dy < height) & (x + dx >= 0) & (x + dx < width)
        neighbour = np.where(valid, peak + dy * width + dx, peak)
        neighbour_key = flat_key[neighbour]
        higher = valid & (neighbour_key > best_key)
        best_key = np.where(higher, neighbour_key, best_key)
        pointer = np.where(higher, hill_plus_one[neighbour] - 1, pointer)
    while True:
        jumped = pointer[pointer]
        if np.array_equal(jumped, pointer):
            break
        pointer = jumped
    is_root = pointer == np.arange(peak.size)
    region_of_hill = (np.cumsum(is_root, dtype=np.int32) - 1)[pointer]
    if is_root.sum() < (1 << 15):
        region_of_hill = region_of_hill.astype(np.int16)  # half the bytes for every pixel pass
    region = np.repeat(region_of_hill, np.diff(start_index, append=n_pixels))
    hills = _Hills(start=start_index, region=region_of_hill, row=start_index // width,
                   top=levels.ravel()[peak])
    return region.reshape(levels.shape), int(is_root.sum()), peak[is_root], hills


def _region_tables(levels, region, n_regions, hills, table_width, need_area=True):
    """Per threshold ``k`` and region ``i`` (tables are ``(k, i)``): box and pixel count of
    ``region_i ∩ {levels > k}`` (empty: x0 = y0 = large, x1 = y1 = -1, area 0)."""
    batch, height, width = levels.shape
    lv = levels.ravel()

    # Tables are stored top level first, (table_width, n_regions): row j holds threshold
    # k = table_width - 1 - j, so cumulative extremes run forward over contiguous rows.
    def extent(line_top):
        # line_top[i, c]: highest level of region i on line c; the region's part above k spans
        # the lines whose top exceeds k, i.e. rows j >= table_width - top.
        r, c = np.nonzero(line_top)
        cell = (table_width - line_top[r, c].astype(np.intp)) * n_regions + r
        c = c.astype(np.int16)  # coordinates fit: H, W < 2^15 (checked by the caller)
        low = np.full((table_width + 1) * n_regions, max(height, width), np.int16)
        high = np.full((table_width + 1) * n_regions, -1, np.int16)
        np.minimum.at(low, cell, c)
        np.maximum.at(high, cell, c)
        low, high = low.reshape(-1, n_regions), high.reshape(-1, n_regions)
        np.minimum.accumulate(low, axis=0, out=low)
        np.maximum.accumulate(high, axis=0, out=high)
        return low, high

    column_top = np.zeros(n_regions * width, levels.dtype)
    cell = region.ravel() * np.int32(width)  # int32 index arithmetic: half the memory traffic
    cell += _column_of_pixel(levels.shape)
    np.maximum.at(column_top, cell, lv)
    x0, x1 = extent(column_top.reshape(n_regions, width))
    # Rows: the hills (row runs) already know their highest level.
    row_top = np.zeros(n_regions * height, levels.dtype)
    np.maximum.at(row_top, hills.region.astype(np.intp) * height + hills.row % height,
                  hills.top.astype(levels.dtype))
    y0, y1 = extent(row_top.reshape(n_regions, height))
    area = None
    if need_area:
        # Same row order as the other tables: row j counts levels >= table_width - j.
        cell = np.subtract(table_width, lv, dtype=np.int32)
        cell *= np.int32(n_regions)
        cell += region.ravel()
        counts = np.bincount(cell, minlength=(table_width + 1) * n_regions).astype(np.int32)
        area = np.cumsum(counts.reshape(table_width + 1, n_regions), axis=0, out=counts.reshape(
            table_width + 1, n_regions))
    return x0, y0, x1, y1, area


def _column_of_pixel(shape: tuple[int, int, int]) -> np.ndarray:
    """Column index of every pixel of a ``(B, H, W)`` stack, flattened (cached per shape)."""
    cached = _COLUMNS.get(shape)
    if cached is None:
        if len(_COLUMNS) > 8:
            _COLUMNS.clear()
        cached = np.ascontiguousarray(np.broadcast_to(np.arange(shape[2], dtype=np.int32), shape)).ravel()
        cached.setflags(write=False)
        _COLUMNS[shape] = cached
    return cached


_COLUMNS: dict[tuple[int, int, int], np.ndarray] = {}


def _border_pixels(batch: int, height: int, width: int) -> np.ndarray:
    """Flat indices of the pixels on the border of every image of a ``(B, H, W)`` stack."""
    frame = np.zeros((height, width), bool)
    frame[[0, -1], :] = True
    frame[:, [0, -1]] = True
    inside = np.flatnonzero(frame)
    return (np.arange(batch)[:, None] * height * width + inside[None]).ravel()


def _passes(levels, region, n_regions, region_image, hills, connectivity):
    """Adjacent region pairs ``(a, b)`` with their pass level ``max min(level_p, level_q)`` over
    touching pixels, sorted by decreasing pass (pairs that only touch at level 0 are dropped)."""
    width = levels.shape[2]
    # Regions are numbered image by image: pair keys use ids local to the image.
    first_region = np.searchsorted(region_image, np.arange(levels.shape[0]))
    local = np.arange(n_regions) - first_region[region_image]
    per_image = int(local.max()) + 1 if n_regions else 1
    best = np.zeros(levels.shape[0] * per_image * per_image, levels.dtype)

    def add_pairs(ia, ib, pair_levels):
        low, high = np.minimum(ia, ib), np.maximum(ia, ib)
        keys = (region_image[low] * per_image + local[low]) * per_image + local[high]
        np.maximum.at(best, keys, pair_levels.astype(levels.dtype, copy=False))

    batch, height, _ = levels.shape
    flat_region, flat_levels = region.ravel(), levels.ravel()

    def add_flat_pairs(first, second):
        differ = flat_region[first] != flat_region[second]
        first, second = first[differ], second[differ]
        add_pairs(flat_region[first], flat_region[second],
                  np.minimum(flat_levels[first], flat_levels[second]))

    # Along rows, regions only change where a hill starts.
    horizontal = hills.start[hills.start % width != 0]
    add_flat_pairs(horizontal - 1, horizontal)
    # Down the columns: one comparison of the whole stack.
    vertical = np.flatnonzero(region[:, :-1, :] != region[:, 1:, :])
    top = vertical + vertical // ((height - 1) * width) * width  # index in the (B, H, W) stack
    add_flat_pairs(top, top + width)
    if connectivity == 8:
        # A diagonal pair can only differ where its vertical pair or the horizontal pair below
        # it differs: test the diagonals at those few places only.
        column = top % width
        below_row = (horizontal // width) % height >= 1
        from_horizontal = horizontal[below_row]
        right = np.concatenate([top[column < width - 1], from_horizontal - width - 1])
        add_flat_pairs(right, right + width + 1)
        left = np.concatenate([top[column > 0], from_horizontal - width])
        add_flat_pairs(left, left + width - 1)
    keys = np.flatnonzero(best)
    pass_levels = best[keys]
    order = np.argsort(-pass_levels, kind="stable")
    keys, pass_levels = keys[order], pass_levels[order]
    image, rest = np.divmod(keys, per_image * per_image)
    a, b = np.divmod(rest, per_image)
    return first_region[image] + a, first_region[image] + b, pass_levels.astype(np.int64)


def _largest(images, thresholds, boxes, areas, batch, num_thresholds, height, width):
    """Row of the largest component per (image, threshold): most pixels, then smallest y0, x0."""
    largest = np.full((batch, num_thresholds), -1, np.int64)
    if images.size == 0:
        return largest
    span = (height + 1) * (width + 1)
    key = areas * span + (span - 1 - (boxes[:, 1] * (width + 1) + boxes[:, 0]))
    cell = images * num_thresholds + thresholds
    best = np.full(batch * num_thresholds, -1, np.int64)
    np.maximum.at(best, cell, key)
    winners = np.flatnonzero(key == best[cell])
    largest.ravel()[cell[winners]] = winners
    return largest
