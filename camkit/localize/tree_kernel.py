"""Compiled kernels of the component tree (numba: compiled on first use, then cached on disk).

Every connected component of every superlevel set ``{levels > k}`` of a map, in one pass:

1. **Hills.**  Each row is cut at its dips (a pixel lower than its left neighbour and not higher
   than its right one); between two cuts the row rises then falls, so the part of a hill above any
   level is an interval around its peak.
2. **Ascent regions.**  Each hill points to the hill of its peak's highest neighbour when that
   one is higher; a region is a tree of such pointers.  Its part above any level is connected
   (a hill's part touches its target's), so every superlevel component is a union of region parts.
3. **Region graph.**  Two regions touch at their pass level, the highest ``min(level_p, level_q)``
   over touching pixel pairs: above it their parts are apart, below it joined.
4. **Kruskal.**  Joining regions in order of decreasing pass level (union-find) builds every
   component in the order the threshold falls.  A component exists for ``k`` in ``[pass level of
   its last join, pass level where it joins another)``; its rows (box and pixel count above ``k``)
   are written when it dies, from column / row maxima and a level histogram kept per large
   component (added up as components join), or, for a small one, by scanning its hills.

Everything runs on whole rows and on the few thousand hills of an image, never pixel by pixel
in level order: the sweep costs a few passes over the pixels whatever the number of thresholds.
Its scratch arrays live in one int32 workspace that the caller keeps between calls (see
:func:`component_rows`).  :func:`cell_ious` then scores the rows against the ground truth.

One algorithm: the sweep above, one compiled function per step.
"""
import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros  # numba's intrinsic for LLVM's cttz

jit = njit(cache=True, nogil=True, error_model="numpy")
# Helpers called in loops are inlined: a call would count references to every array it takes.
inline = njit(cache=True, nogil=True, error_model="numpy", inline="always")

# A component keeps column, row and level profiles once it has this many pixels; the rows of a
# smaller one are found by scanning its hills.
SLOT_MIN = 256

# Columns of the component table (valid at union-find roots).
PARENT, BIRTH, NPIX, X0, Y0, X1, Y1, LMIN, LMAX, BORDER, SLOT, HEAD, TAIL = range(13)
# Columns of the row table.
IMAGE, K, BX0, BY0, BX1, BY1, AREA = range(7)
# How maps become levels (see component_rows).
LEVELS, UINT8, UINT8_COMPLEMENT, THRESHOLDS = range(4)
# What the range pass found in a map (see component_rows' normalise).
FINITE, HAS_NAN, HAS_INF = range(3)


@jit
def component_rows(maps, quantiser, thresholds, num_thresholds, connectivity, interior_only, workspace,
                   holes=False, normalise=False):
    """Every component of ``{levels > k}`` for ``k = 0 .. num_thresholds - 1``.

    ``maps``: float64 ``(B, H, W)``, turned into levels by ``quantiser``: :data:`LEVELS` (the
    values are the levels), :data:`UINT8` (``int(255 m)``, the wsolevaluation reference's uint8
    map), :data:`UINT8_COMPLEMENT` (``255 - int(255 m)``) or :data:`THRESHOLDS` (the number of
    ``thresholds``, sorted, strictly below ``m``); levels above ``num_thresholds`` act as it.
    ``connectivity``: 4 or 8; ``interior_only``: only components that do not touch the image
    border (their pixel counts are not computed).  ``holes``: also the holes of every component,
    from the levels already loaded: the 4-connected components of ``{T - 1 - levels > k}`` (``T`` =
    ``num_thresholds``) that do not touch the border, i.e. those of ``{levels <= T - 2 - k}``.
    ``normalise``: each map is min-max normalised as it is read, ``m = (m - min) / (max - min)``
    (:func:`camkit.localize.metrics.prepare_maps`'s arithmetic, bit for bit; a constant map, or one
    holding NaN or ±inf, gives zeros).  ``workspace``: int32 scratch returned by an earlier call with the same map size,
    ``num_thresholds``, ``interior_only`` and ``holes`` (it is left clean), or a smaller array for
    a fresh one.

    Returns ``rows`` int32 ``(N, 7)``: image, k, x0, y0, x1, y1 (inclusive box), pixel count;
    ``largest`` int64 ``(B, num_thresholds)``: the row of the component with the most pixels
    (ties: smallest y0, then x0), -1 for none; ``top`` int64 ``(B,)``: each image's highest level;
    ``hole_rows`` (empty without ``holes``; pixel counts 0); ``status`` int8 ``(B,)``, with
    ``normalise`` (else zeros): :data:`FINITE`, :data:`HAS_NAN` or :data:`HAS_INF` (±inf, no NaN);
    the workspace used.
    """
    batch, height, width = maps.shape
    top = num_thresholds
    pw = width + 2
    n_levels = 1 if interior_only else top + 1
    most_hills = height * (width // 2 + 1)
    capacity = 3 * most_hills + height
    n_slots = height * width // SLOT_MIN + 1
    n_frames = 2 if holes else 1
    n_words = (width + 7) // 8  # flag words per row
    sizes = (n_frames * (height + 2) * pw, 5 * (most_hills + 1), 2 * (height + 1), 3 * height * n_words,
             3 * most_hills, 13 * most_hills, 4 * capacity, top + 2, n_slots * (width + height + n_levels + 1))
    need = 0
    for size in sizes:
        need += size + (size & 1)  # even offsets: 8-byte aligned views
    if workspace.size < need:
        # Zeros: the profile slots and the flags' padding must start clean (each call leaves them so).
        workspace = np.zeros(need, np.int32)
    start = 0
    frames, start = _take(workspace, start, n_frames * (height + 2) * pw)
    q, complement = frames[:(height + 2) * pw], frames[(height + 2) * pw:]
    q[:] = -1  # the levels (and their complement) with a frame of -1
    complement[:] = -1
    hill_block, start = _take(workspace, start, 5 * (most_hills + 1))
    per_hill = hill_block.reshape((5, most_hills + 1))
    row_first, start = _take(workspace, start, 2 * (height + 1))  # hills' and region runs' first per row
    flag_block, start = _take(workspace, start, 3 * height * n_words)  # per row: flag words, starts before each
    region_block, start = _take(workspace, start, 3 * most_hills)
    per_region = region_block.reshape((3, most_hills))
    comp_flat, start = _take(workspace, start, 13 * most_hills)
    edge_block, start = _take(workspace, start, 4 * capacity)
    bucket, start = _take(workspace, start, top + 2)
    slots, start = _take(workspace, start, n_slots * (width + height + n_levels + 1))
    free = slots[n_slots * (width + height + n_levels):]
    scratch = (flag_block[2 * height * n_words:].reshape((height, n_words)), per_hill, row_first,
               flag_block[:2 * height * n_words].view(np.uint64).reshape((height, n_words)), per_region,
               comp_flat.reshape((most_hills, 13)), edge_block.reshape((4, capacity)), bucket,
               slots[:n_slots * width].reshape((n_slots, width)),
               slots[n_slots * width:n_slots * (width + height)].reshape((n_slots, height)),
               slots[n_slots * (width + height):n_slots * (width + height + n_levels)].reshape((n_slots, n_levels)),
               free)
    for i in range(n_slots):
        free[i] = i
    rows = np.empty((4096, 7), np.int32)
    n_rows = 0
    hole_rows = np.empty((4096 if holes else 0, 7), np.int32)
    n_hole_rows = 0
    largest = np.empty((batch, num_thresholds), np.int64)
    for b in range(batch):
        for k in range(num_thresholds):
            largest[b, k] = -1
    first = _threshold_buckets(thresholds) if quantiser == THRESHOLDS else np.zeros(1, np.int64)
    highest = np.zeros(batch, np.int64)
    status = np.zeros(batch, np.int8)
    row = np.empty(width)
    for b in range(batch):
        low, span = 0.0, 1.0
        if normalise:  # the range pass brings the map into the cache for the load that follows
            low, high, status[b] = _range(maps[b])
            span = high - low if status[b] == FINITE else 0.0
        highest[b] = _load(maps[b], quantiser, thresholds, first, top, q, low, span, row)
        first_row = n_rows
        rows, n_rows = _tree(b, q, height, width, connectivity, interior_only, top, n_levels, scratch, rows, n_rows)
        if not interior_only:
            _largest(rows, first_row, n_rows, largest[b])
        if holes:
            _complement(q, height, width, top - 1, complement)
            hole_rows, n_hole_rows = _tree(b, complement, height, width, 4, True, top - 1, 1, scratch, hole_rows,
                                           n_hole_rows)
    return rows[:n_rows], largest, highest, hole_rows[:n_hole_rows], status, workspace


@jit
def _tree(b, q, height, width, connectivity, interior_only, top, n_levels, scratch, rows, n_rows):
    """The rows of image ``b``'s components from its levels ``q`` (framed by -1), appended to
    ``rows``; ``scratch``: the workspace's arrays (see :func:`component_rows`), left clean."""
    starts_before, per_hill, row_first, words, per_region, comp, per_edge, bucket, col, rowmax, hist, free = scratch
    hill_y, hill_x0, hill_x1, peak_level, peak_x = per_hill[0], per_hill[1], per_hill[2], per_hill[3], per_hill[4]
    pointer, hill_region, next_hill = per_region[0], per_region[1], per_region[2]
    edge_a, edge_b, edge_p, order = per_edge[0], per_edge[1], per_edge[2], per_edge[3]
    n_hills = _hills(q, height, width, hill_y, hill_x0, hill_x1, peak_level, peak_x, row_first, words, starts_before)
    n_regions = _regions(q, height, width, connectivity, n_hills, hill_y, hill_x0, hill_x1, peak_level,
                         peak_x, row_first, words, starts_before, pointer, hill_region, next_hill, comp, top, bucket,
                         order)
    # After the regions, peak_x and pointer hold the region runs (see _edges).
    n_edges = _edges(q, height, width, connectivity == 8, hill_x1, row_first[:height + 1], hill_region, peak_x,
                     pointer, row_first[height + 1:], edge_a, edge_b, edge_p)
    _by_level_down(edge_p, n_edges, top, bucket, order, False)
    rows, n_rows, _ = _kruskal(b, q, height, width, interior_only, n_levels, n_regions, hill_y, hill_x0,
                               hill_x1, peak_level, next_hill, comp, edge_a, edge_b, edge_p, order,
                               n_edges, col, rowmax, hist, free, free.size, rows, n_rows)
    return rows, n_rows


@jit
def _complement(q, height, width, flip, out):
    """``out = max(flip - q, 0)`` inside the frame (``out``'s frame stays as it is)."""
    pw = width + 2
    flip = np.int32(flip)
    for y in range(height):
        inside = np.uint64((y + 1) * pw + 1)  # unsigned indices: no test for negative ones
        for x in range(inside, inside + np.uint64(width)):
            out[x] = max(flip - q[x], np.int32(0))


@inline
def _take(workspace, start, size):
    """``workspace[start:start + size]`` and the next even offset after it."""
    return workspace[start:start + size], start + size + (size & 1)


@jit
def _range(image):
    """Minimum, maximum and status (:data:`FINITE`, :data:`HAS_NAN`, :data:`HAS_INF`) of a map.

    Reduced as integer keys ``bits ^ (sign ? 0x7FF…F : 0)`` (signed), ordered as the floats are,
    with NaN beyond ±inf: numba vectorises an integer reduction, not a float (NaN-aware) one."""
    flip = np.int64(0x7FFFFFFFFFFFFFFF)
    plus_inf = np.int64(0x7FF0000000000000)  # the key of +inf; -inf's is its complement
    lowest, highest = flip, ~flip
    for y in range(image.shape[0]):
        bits = image[y].view(np.int64)
        for x in range(bits.size):
            key = bits[x] ^ ((bits[x] >> 63) & flip)
            lowest = min(lowest, key)
            highest = max(highest, key)
    if highest > plus_inf or lowest < ~plus_inf:
        return 0.0, 0.0, HAS_NAN
    if highest == plus_inf or lowest == ~plus_inf:
        return 0.0, 0.0, HAS_INF
    ends = np.empty(2, np.int64)
    ends[0] = lowest ^ ((lowest >> 63) & flip)  # the key map is its own inverse
    ends[1] = highest ^ ((highest >> 63) & flip)
    values = ends.view(np.float64)
    return values[0], values[1], FINITE


@jit
def _load(image, quantiser, thresholds, first, top, q, low, span, row):
    """Levels of one map ``(H, W)`` into ``q`` (inside its frame), of ``(m - low) / span`` (``m``
    itself for ``low, span = 0, 1``; 0 for ``span = 0``; ``row``: float64 ``(W,)`` scratch for it);
    returns the highest level."""
    height, width = image.shape
    pw = width + 2
    highest = 0
    scaled = low != 0.0 or span != 1.0
    for y in range(height):
        source = image[y]
        target = q[(y + 1) * pw + 1:(y + 1) * pw + 1 + width]
        if scaled:
            for x in range(width):  # as prepare_maps: the difference, then the quotient
                row[x] = (source[x] - low) / span if span > 0.0 else 0.0
            source = row
        # Values out of range (and NaN, which callers refuse or zero) are clamped, never cast raw.
        if quantiser == LEVELS:
            for x in range(width):
                target[x] = int(min(source[x], top)) if source[x] >= 1 else 0
        elif quantiser == UINT8:
            for x in range(width):
                level = source[x] * 255.0
                target[x] = min(int(min(level, 255.0)) if level >= 1 else 0, top)
        elif quantiser == UINT8_COMPLEMENT:
            for x in range(width):
                level = source[x] * 255.0
                target[x] = min(255 - (int(min(level, 255.0)) if level >= 1 else 0), top)
        else:
            n = thresholds.size
            n_buckets = first.size - 1
            for x in range(width):
                m = source[x]
                c = 0
                if m >= 0:  # NaN and negatives count none; one bucket back keeps j / n_buckets <= m
                    c = first[max(int(min(m, 1.0) * n_buckets) - 1, 0)]
                while c < n and thresholds[c] < m:
                    c += 1
                target[x] = min(c, top)
        for x in range(width):
            highest = max(highest, target[x])
    return highest


@jit
def _threshold_buckets(thresholds):
    """``first[j]``: how many ``thresholds`` lie below ``j / n_buckets`` (``4 n`` buckets over [0, 1])."""
    n = thresholds.size
    n_buckets = 4 * n
    first = np.empty(n_buckets + 1, np.int64)
    c = 0
    for j in range(n_buckets + 1):
        while c < n and thresholds[c] < j / n_buckets:
            c += 1
        first[j] = c
    return first


@jit
def _hills(q, height, width, hill_y, hill_x0, hill_x1, peak_level, peak_x, row_first, words, starts_before):
    """Cut each row at its dips (a pixel lower than its left neighbour and not higher than its
    right one): between two cuts a row rises then falls, so the part of a hill above any level is
    an interval.  Per hill: row, first and last column, peak level and the last column at the
    peak (the first strict descent).  ``words`` ``(H, ⌈W/8⌉)`` keep each row's flags (a byte a
    pixel: bit 0 a hill start, bit 1 a peak) and ``starts_before`` the hill starts before each
    word, for :func:`_hill_at`.

    With ``d(x)``: pixel x is higher than pixel x + 1 (the frame counts as lowest), a hill starts
    where ``d`` falls from 1 to 0 and its peak is where ``d`` next rises from 0 to 1."""
    pw = width + 2
    byte_start, low_bits, bits_per_byte_log2 = np.uint64(56), np.uint64(3), np.uint64(3)
    n = 0
    for y in range(height):
        row = q[(y + 1) * pw:(y + 2) * pw]  # pixel x at row[x + 1]
        flags = words[y].view(np.uint8)
        for x in range(width):
            before = row[x] > row[x + 1]
            after = row[x + 1] > row[x + 2]
            flags[x] = (before & (after ^ 1)) | ((after & (before ^ 1)) << 1)
        flags[0] = 1 | (flags[0] & 2)
        row_first[y] = n
        starts = 0
        for w in range(words.shape[1]):
            starts_before[y, w] = starts
            starts += _starts_in(words[y, w])
        h = n - 1
        for w in range(words.shape[1]):  # the few flagged pixels: the lowest nonzero byte of each word
            word = words[y, w]
            while word != 0:
                bit = np.uint64(trailing_zeros(word)) & byte_start  # little-endian: pixel 8 w + bit / 8
                flag = (word >> bit) & low_bits
                word ^= flag << bit
                x = 8 * w + int(bit >> bits_per_byte_log2)
                if flag & 1:
                    h += 1
                    hill_x0[h] = x
                    peak_x[h] = -1
                if flag & 2 and peak_x[h] < 0:
                    peak_x[h] = x
        n = h + 1
        hill_x0[n] = width
        for h in range(row_first[y], n):
            x1 = hill_x0[h + 1] - 1
            hill_x1[h] = x1
            hill_y[h] = y
            peak_level[h] = row[peak_x[h] + 1]
    row_first[height] = n
    return n


_START_BITS = np.uint64(0x0101010101010101)  # bit 0 of every byte of a flag word


@inline
def _starts_in(word):
    """How many hill starts (bit 0 of a byte) a flag word holds: the bytes' sum, by one product."""
    return np.int32(((word & _START_BITS) * _START_BITS) >> np.uint64(56))


@inline
def _hill_at(y, x, row_first, words, starts_before):
    """The hill of pixel ``(y, x)``: the hill starts at or before it in its row, counted."""
    w = x >> 3
    through_x = np.uint64(0xFFFFFFFFFFFFFFFF) >> np.uint64(56 - 8 * (x & 7))  # the bytes of pixels <= x
    return row_first[y] - 1 + starts_before[y, w] + _starts_in(words[y, w] & through_x)


@jit
def _regions(q, height, width, connectivity, n_hills, hill_y, hill_x0, hill_x1, peak_level, peak_x, row_first,
             words, starts_before, pointer, hill_region, next_hill, comp, top, bucket, order):
    """Group hills into ascent regions: a hill points to the hill of its peak's highest neighbour
    when that one is higher (by level, then by index), and a region is a tree of pointers.  A
    hill's part above k touches its target's (its peak is above k, and so is that neighbour), so a
    region's part above any level is connected.  Fills ``comp`` per region (its birth is its peak
    level) and the member lists (``HEAD``, ``TAIL``, ``next_hill``)."""
    pw = width + 2
    # Neighbours in index order, the pixel itself in the middle: key = 16 level + rank.
    if connectivity == 8:
        offsets = np.array([-pw - 1, -pw, -pw + 1, -1, 0, 1, pw - 1, pw, pw + 1])
        rows, columns = np.array([-1, -1, -1, 0, 0, 0, 1, 1, 1]), np.array([-1, 0, 1, -1, 0, 1, -1, 0, 1])
    else:
        offsets = np.array([-pw, -1, 0, 1, pw])
        rows, columns = np.array([-1, 0, 0, 0, 1]), np.array([0, -1, 0, 1, 0])
    middle = offsets.size // 2
    for h in range(n_hills):
        p = (hill_y[h] + 1) * pw + peak_x[h] + 1
        best = 0
        for rank in range(offsets.size):
            best = max(best, q[np.uint64(p + offsets[rank])] * 16 + rank)
        rank = best & 15
        pointer[h] = h if rank == middle else _hill_at(hill_y[h] + rows[rank], peak_x[h] + columns[rank], row_first,
                                                       words, starts_before)
    # Each hill's root in one step, its target's being known: targets come first by peak level
    # down, then by index down (a target at the same level has its peak later in raster order:
    # the neighbour it was picked for comes after the source's peak and lies on its top plateau,
    # whose last column is its peak).
    _by_level_down(peak_level, n_hills, top, bucket, order, True)
    for i in range(n_hills):
        h = order[i]
        pointer[h] = pointer[pointer[h]]
    n_regions = 0
    for h in range(n_hills):
        if pointer[h] == h:
            hill_region[h] = n_regions
            comp[n_regions, PARENT] = n_regions
            comp[n_regions, NPIX] = 0
            comp[n_regions, X0] = width
            comp[n_regions, Y0] = height
            comp[n_regions, X1] = -1
            comp[n_regions, Y1] = -1
            comp[n_regions, LMIN] = peak_level[h]
            comp[n_regions, LMAX] = peak_level[h]
            comp[n_regions, BORDER] = 0
            comp[n_regions, SLOT] = -1
            comp[n_regions, HEAD] = -1
            comp[n_regions, TAIL] = -1
            n_regions += 1
    for h in range(n_hills):
        r = np.uint64(hill_region[pointer[h]])  # unsigned: no test for negative indices
        hill_region[h] = r
        y, x0, x1 = hill_y[h], hill_x0[h], hill_x1[h]
        left = q[(y + 1) * pw + x0 + 1]
        right = q[(y + 1) * pw + x1 + 1]
        comp[r, NPIX] += x1 - x0 + 1
        comp[r, X0] = min(comp[r, X0], x0)
        comp[r, X1] = max(comp[r, X1], x1)
        comp[r, Y0] = min(comp[r, Y0], y)
        comp[r, Y1] = max(comp[r, Y1], y)
        comp[r, LMIN] = min(comp[r, LMIN], min(left, right))  # a hill is lowest at an end
        if y == 0 or y == height - 1:
            border = peak_level[h]
        else:
            border = max(left if x0 == 0 else 0, right if x1 == width - 1 else 0)
        comp[r, BORDER] = max(comp[r, BORDER], border)
        next_hill[h] = -1
        if comp[r, HEAD] < 0:
            comp[r, HEAD] = h
        else:
            next_hill[comp[r, TAIL]] = h
        comp[r, TAIL] = h
    for r in range(n_regions):
        comp[r, BIRTH] = comp[r, LMAX]
    return n_regions


@jit
def _add_hills(h, s, q, width, n_levels, hill_y, hill_x0, hill_x1, peak_level, next_hill, col, rowmax, hist):
    """Add hill ``h`` and the hills after it in its list to profile slot ``s``: column maxima,
    row maxima and (``n_levels > 1``) the level histogram."""
    pw = width + 2
    columns, counts = col[s], hist[s]
    while h >= 0:
        y, x0, x1 = hill_y[h], hill_x0[h], hill_x1[h]
        shift = np.uint64((y + 1) * pw + 1)
        for x in range(np.uint64(x0), np.uint64(x1 + 1)):  # unsigned indices: no test for negative ones
            level = q[shift + x]
            columns[x] = max(columns[x], level)
            if n_levels > 1:
                counts[np.uint64(level)] += 1
        rowmax[s, y] = max(rowmax[s, y], peak_level[h])
        h = next_hill[h]


@jit
def _edges(q, height, width, diagonal, hill_x1, row_first, hill_region, run_x1, run_region, run_first, edge_a,
           edge_b, edge_p):
    """Pairs of touching regions with their pass level, the highest ``min(level)`` over two
    touching pixels, one in each (a pair may repeat; pass 0 is left out).  Per row, the hills of
    one region in a row make a run (last column ``run_x1``, region ``run_region``, first of the
    row ``run_first``): rows touch run by run."""
    pw = width + 2
    n = 0
    runs = 0
    for y in range(height):
        row = q[(y + 1) * pw:(y + 2) * pw]
        run_first[y] = runs
        for h in range(row_first[y], row_first[y + 1] - 1):
            a, c = hill_region[h], hill_region[h + 1]
            level = row[hill_x1[h] + 2]  # the next hill's first pixel, a dip: the lower of the two
            edge_a[n] = a
            edge_b[n] = c
            edge_p[n] = level
            n += (level > 0) & (a != c)
            run_x1[runs] = hill_x1[h]
            run_region[runs] = a
            runs += a != c
        last = row_first[y + 1] - 1
        run_x1[runs] = width - 1
        run_region[runs] = hill_region[last]
        runs += 1
    run_first[height] = runs
    # Touching runs of consecutive rows: the column ranges where the run pair stays the same
    # ("segments") are swept left to right, every pair inside a segment taken.  Of the diagonal
    # pairs that cross a run boundary, only the one staying within the pair at the segment's right
    # end can raise a pass level: the others are matched by a vertical pair and a row neighbour,
    # since a row is higher just left of a cut (a run ends at a hill's cut) than at it.
    for y in range(height - 1):
        up = q[(y + 1) * pw + 1:(y + 2) * pw + 1]  # pixel x at up[x]; up[width] is the frame
        down = q[(y + 2) * pw + 1:(y + 3) * pw + 1]
        i = run_first[y]
        j = run_first[y + 1]
        lo = 0
        while True:
            end_i = run_x1[i]
            end_j = run_x1[j]
            hi = min(end_i, end_j)
            a, c = run_region[i], run_region[j]
            if a != c:
                best = min(up[hi], down[hi])
                one = np.uint64(1)
                if diagonal:
                    for x in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no test for negative indices
                        best = max(best, min(up[x], down[x]), min(up[x], down[x + one]), min(up[x + one], down[x]))
                    if end_i < end_j:
                        best = max(best, min(up[hi], down[hi + 1]))
                    elif end_j < end_i:
                        best = max(best, min(up[hi + 1], down[hi]))
                else:
                    for x in range(np.uint64(lo), np.uint64(hi)):
                        best = max(best, min(up[x], down[x]))
                edge_a[n] = a
                edge_b[n] = c
                edge_p[n] = best
                n += best > 0
            if hi == width - 1:
                break
            i += end_i == hi
            j += end_j == hi
            lo = hi + 1
    return n


@jit
def _by_level_down(levels, n, top, bucket, order, later_first):
    """``order``: ``0 .. n - 1`` by decreasing ``levels`` (in ``[0, top]``; counting sort), ties
    by increasing index, or by decreasing index with ``later_first``."""
    bucket[:top + 2] = 0
    for t in range(n):
        bucket[top - levels[t] + 1] += 1
    for v in range(top + 1):
        bucket[v + 1] += bucket[v]
    for i in range(n):
        t = n - 1 - i if later_first else i
        v = top - levels[t]
        order[bucket[v]] = t
        bucket[v] += 1


@inline
def _find(comp, c):
    while comp[c, PARENT] != c:
        comp[c, PARENT] = comp[comp[c, PARENT], PARENT]
        c = comp[c, PARENT]
    return c


@jit
def _kruskal(b, q, height, width, interior_only, n_levels, n_regions, hill_y, hill_x0, hill_x1, peak_level,
             next_hill, comp, edge_a, edge_b, edge_p, order, n_edges, col, rowmax, hist, free, n_free, rows,
             n_rows):
    """Join regions at their pass levels, highest first.  A component's rows (one per k where it
    exists) are written when it joins another (its life ends there) and, for the components left
    at the end, down to k = 0."""
    for step in range(n_edges + n_regions):
        if step < n_edges:
            t = order[step]
            a = _find(comp, edge_a[t])
            c = _find(comp, edge_b[t])
            if a == c:
                continue
            low = edge_p[t]
        else:  # the components left at the end
            a = c = step - n_edges
            if comp[a, PARENT] != a:
                continue
            low = 0
        for side in range(1 if a == c else 2):
            r = a if side == 0 else c
            lo = max(low, comp[r, BORDER]) if interior_only else low
            if comp[r, BIRTH] <= lo:
                continue
            rows = _reserve(rows, n_rows, comp[r, BIRTH] - lo)
            if comp[r, SLOT] < 0 and comp[r, NPIX] >= SLOT_MIN:  # large: profiles pay off from now on
                n_free -= 1
                comp[r, SLOT] = free[n_free]
                _add_hills(comp[r, HEAD], comp[r, SLOT], q, width, n_levels, hill_y, hill_x0, hill_x1, peak_level,
                           next_hill, col, rowmax, hist)
            if comp[r, SLOT] < 0:
                n_rows = _scan_rows(r, lo, b, q, height, width, hill_y, hill_x0, hill_x1, peak_level, next_hill,
                                    comp, rows, n_rows)
            else:
                n_rows = _profile_rows(r, lo, b, n_levels, comp, col, rowmax, hist, rows, n_rows)
        if a == c:
            if comp[a, SLOT] >= 0:  # leave the slot clean for the next image
                n_free = _release(comp, a, col, rowmax, hist, n_levels, free, n_free)
            continue
        # The one with a profile slot (the larger when both have one) absorbs the other.
        if comp[a, SLOT] >= 0 and comp[c, SLOT] >= 0:
            swap = comp[c, NPIX] > comp[a, NPIX]
        elif comp[a, SLOT] >= 0 or comp[c, SLOT] >= 0:
            swap = comp[c, SLOT] >= 0
        else:
            swap = comp[c, NPIX] > comp[a, NPIX]
        keep, gone = (c, a) if swap else (a, c)
        s, g = comp[keep, SLOT], comp[gone, SLOT]
        if interior_only and max(comp[keep, BORDER], comp[gone, BORDER]) >= low:
            # it touches the image border for the rest of its life: no more rows, no profiles
            if s >= 0:
                n_free = _release(comp, keep, col, rowmax, hist, n_levels, free, n_free)
            if g >= 0:
                n_free = _release(comp, gone, col, rowmax, hist, n_levels, free, n_free)
        elif s >= 0 and g >= 0:
            for x in range(comp[gone, X0], comp[gone, X1] + 1):
                col[s, x] = max(col[s, x], col[g, x])
            for y in range(comp[gone, Y0], comp[gone, Y1] + 1):
                rowmax[s, y] = max(rowmax[s, y], rowmax[g, y])
            if n_levels > 1:
                for v in range(comp[gone, LMIN], comp[gone, LMAX] + 1):
                    hist[s, v] += hist[g, v]
            n_free = _release(comp, gone, col, rowmax, hist, n_levels, free, n_free)
        elif s >= 0:
            _add_hills(comp[gone, HEAD], s, q, width, n_levels, hill_y, hill_x0, hill_x1, peak_level, next_hill,
                       col, rowmax, hist)
        next_hill[comp[keep, TAIL]] = comp[gone, HEAD]
        comp[keep, TAIL] = comp[gone, TAIL]
        comp[gone, PARENT] = keep
        comp[keep, NPIX] += comp[gone, NPIX]
        comp[keep, X0] = min(comp[keep, X0], comp[gone, X0])
        comp[keep, Y0] = min(comp[keep, Y0], comp[gone, Y0])
        comp[keep, X1] = max(comp[keep, X1], comp[gone, X1])
        comp[keep, Y1] = max(comp[keep, Y1], comp[gone, Y1])
        comp[keep, LMIN] = min(comp[keep, LMIN], comp[gone, LMIN])
        comp[keep, LMAX] = max(comp[keep, LMAX], comp[gone, LMAX])
        comp[keep, BORDER] = max(comp[keep, BORDER], comp[gone, BORDER])
        comp[keep, BIRTH] = low
    return rows, n_rows, n_free


@jit
def _release(comp, c, col, rowmax, hist, n_levels, free, n_free):
    """Clear the profile slot of component ``c`` and put it back on the free stack."""
    s = comp[c, SLOT]
    col[s, comp[c, X0]:comp[c, X1] + 1] = 0
    rowmax[s, comp[c, Y0]:comp[c, Y1] + 1] = 0
    if n_levels > 1:
        hist[s, comp[c, LMIN]:comp[c, LMAX] + 1] = 0
    comp[c, SLOT] = -1
    free[n_free] = s
    return n_free + 1


@inline
def _reserve(rows, n_rows, extra):
    """``rows``, grown if it has no room for ``extra`` more."""
    if n_rows + extra <= rows.shape[0]:
        return rows
    grown = np.empty((2 * (n_rows + extra), 7), np.int32)
    for r in range(n_rows):
        for f in range(7):
            grown[r, f] = rows[r, f]
    return grown


@inline
def _scan_rows(c, lo, b, q, height, width, hill_y, hill_x0, hill_x1, peak_level, next_hill, comp, rows, n_rows):
    """Rows of a small component for k in [lo, birth), from the parts of its hills above k."""
    hi = comp[c, BIRTH]
    pw = width + 2
    for r in range(n_rows, n_rows + hi - lo):
        rows[r, IMAGE] = b
        rows[r, K] = lo + r - n_rows
        rows[r, BX0] = width
        rows[r, BY0] = height
        rows[r, BX1] = -1
        rows[r, BY1] = -1
        rows[r, AREA] = 0
    h = comp[c, HEAD]
    while h >= 0:
        y = hill_y[h]
        base = (y + 1) * pw + 1
        left, right = base + hill_x0[h], base + hill_x1[h]
        for k in range(lo, min(hi, peak_level[h])):
            while q[left] <= k:
                left += 1
            while q[right] <= k:
                right -= 1
            r = n_rows + k - lo
            rows[r, BX0] = min(rows[r, BX0], left - base)
            rows[r, BY0] = min(rows[r, BY0], y)
            rows[r, BX1] = max(rows[r, BX1], right - base)
            rows[r, BY1] = max(rows[r, BY1], y)
            rows[r, AREA] += right - left + 1
        h = next_hill[h]
    return n_rows + hi - lo


@inline
def _profile_rows(c, lo, b, n_levels, comp, col, rowmax, hist, rows, n_rows):
    """Rows of a component with a profile slot for k in [lo, birth): the first and last column
    and row whose maximum exceeds k, and the pixels above k (with ``n_levels > 1``)."""
    s = comp[c, SLOT]
    x0, x1, y0, y1 = comp[c, X0], comp[c, X1], comp[c, Y0], comp[c, Y1]
    below = 0  # pixels at levels <= k
    if n_levels > 1:
        for v in range(comp[c, LMIN], lo + 1):
            below += hist[s, v]
    for k in range(lo, comp[c, BIRTH]):
        while col[s, x0] <= k:
            x0 += 1
        while col[s, x1] <= k:
            x1 -= 1
        while rowmax[s, y0] <= k:
            y0 += 1
        while rowmax[s, y1] <= k:
            y1 -= 1
        rows[n_rows, IMAGE] = b
        rows[n_rows, K] = k
        rows[n_rows, BX0] = x0
        rows[n_rows, BY0] = y0
        rows[n_rows, BX1] = x1
        rows[n_rows, BY1] = y1
        rows[n_rows, AREA] = 0
        if n_levels > 1:
            rows[n_rows, AREA] = comp[c, NPIX] - below
            below += hist[s, k + 1]
        n_rows += 1
    return n_rows


@jit
def _largest(rows, first, stop, largest):
    """Per k: the row with the most pixels (ties: smallest y0, then x0)."""
    for i in range(first, stop):
        k = rows[i, K]
        j = largest[k]
        if j < 0 or rows[i, AREA] > rows[j, AREA] or (rows[i, AREA] == rows[j, AREA] and (
                rows[i, BY0] < rows[j, BY0] or (rows[i, BY0] == rows[j, BY0] and rows[i, BX0] < rows[j, BX0]))):
            largest[k] = i


@inline
def _best_gt_iou(x0, y0, x1, y1, gt):
    """Best IoU of box ``(x0, y0, x1, y1)`` with the ground-truth boxes ``gt`` ``(G, 4)``: the
    compiled :func:`camkit.localize.boxes.box_iou` (same integer operations, same float division),
    0 with no ground truth."""
    area = max(0, x1 - x0 + 1) * max(0, y1 - y0 + 1)
    best = 0.0
    for g in range(gt.shape[0]):
        inter = (max(0, min(x1, gt[g, 2]) - max(x0, gt[g, 0]) + 1)
                 * max(0, min(y1, gt[g, 3]) - max(y0, gt[g, 1]) + 1))
        union = area + max(0, gt[g, 2] - gt[g, 0] + 1) * max(0, gt[g, 3] - gt[g, 1] + 1) - inter
        best = max(best, inter / max(union, 1) if union > 0 else 0.0)
    return best


@jit
def cell_ious(rows, largest, hole_rows, hole_flip, gt, columns, empty_box, far_corner, height, width):
    """Per image and threshold column: the IoU of the largest component's box and the best IoU
    of all boxes, with the image's ground truth.

    ``rows`` int32 ``(N, 7)`` and ``largest`` ``(B, K)`` from :func:`component_rows`;
    ``hole_rows`` ``(M, 7)`` (may be empty): holes, boxed one pixel outside on every side and
    counted at level ``hole_flip - k``; ``gt`` int64 ``(B, G, 4)`` padded with empty boxes;
    ``columns`` int64 ``(B, T)``: the level ``k`` scored at each threshold; ``empty_box`` ``(4,)``:
    the box of a level with no component; ``far_corner``: boxes end one pixel past the component,
    clipped to the image (wsolevaluation's ``x + w``).  Returns two float64 ``(B, T)`` arrays.
    """
    batch, n_columns = columns.shape
    n_levels = largest.shape[1]
    row_iou = np.empty(rows.shape[0])
    best = np.full((batch, n_levels), -1.0)
    for r in range(rows.shape[0] + hole_rows.shape[0]):
        hole = r >= rows.shape[0]
        row = hole_rows[r - rows.shape[0]] if hole else rows[r]
        b, k = row[IMAGE], hole_flip - row[K] if hole else row[K]
        pad = 1 if hole else 0
        x0, y0, x1, y1 = row[BX0] - pad, row[BY0] - pad, row[BX1] + pad, row[BY1] + pad
        if far_corner:
            x1, y1 = min(x1 + 1, width - 1), min(y1 + 1, height - 1)
        value = _best_gt_iou(x0, y0, x1, y1, gt[b])
        if not hole:
            row_iou[r] = value
        best[b, k] = max(best[b, k], value)
    largest_iou = np.empty((batch, n_columns))
    best_iou = np.empty((batch, n_columns))
    for b in range(batch):
        empty = _best_gt_iou(empty_box[0], empty_box[1], empty_box[2], empty_box[3], gt[b])
        for t in range(n_columns):
            k = columns[b, t]
            largest_iou[b, t] = row_iou[largest[b, k]] if largest[b, k] >= 0 else empty
            best_iou[b, t] = best[b, k] if best[b, k] >= 0 else empty
    return largest_iou, best_iou
