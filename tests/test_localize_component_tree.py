"""The compiled component tree against a brute-force labelling of every threshold, cell by cell.

Property tests: random maps of several sizes and numbers of levels, and the maps that break
sweeps (empty, constant, one pixel, one row or column, checkerboards, nested rings with holes,
plateaus), for both connectivities, for the components of ``{levels > k}`` and for the holes
(components of the complement that do not touch the border); then ``BoxAccuracy`` under both
protocols against a per-threshold labelling, every (image, τ) cell.
"""
import numpy as np
import pytest
from scipy import ndimage

from camkit.localize import BoxAccuracy, component_tree, iou, prepare_maps, superlevel_components
from camkit.localize.boxes import EMPTY_BOX, box_iou, ground_truth
from camkit.localize.component_tree import cell_ious, sweep, sweep_rows

STRUCTURE = {8: np.ones((3, 3), bool), 4: ndimage.generate_binary_structure(2, 1)}


def labelled(mask, connectivity):
    """Boxes ``(N, 4)`` and pixel counts of the components of a boolean mask, and whether each
    touches the image border."""
    labels, count = ndimage.label(mask, STRUCTURE[connectivity])
    slices = ndimage.find_objects(labels)
    boxes = np.array([[s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1] for s in slices],
                     np.int64).reshape(-1, 4)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    height, width = mask.shape
    border = (boxes[:, 0] == 0) | (boxes[:, 1] == 0) | (boxes[:, 2] == width - 1) | (boxes[:, 3] == height - 1)
    return boxes, sizes, border


def rows_of(table, b, k):
    """The rows of image ``b`` at threshold index ``k``, sorted like ``labelled`` after a sort."""
    rows = np.flatnonzero((table.image == b) & (table.threshold == k))
    return rows[np.lexsort((table.boxes[rows, 3], table.boxes[rows, 2], table.boxes[rows, 1],
                            table.boxes[rows, 0]))]


def sort_boxes(boxes, *columns):
    order = np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0]))
    return (boxes[order], *(c[order] for c in columns))


def assert_tree_equals_labelling(levels, num_thresholds, connectivity):
    """Every cell: the components of {levels > k} (boxes, areas, the largest) and the holes."""
    table = superlevel_components(levels, num_thresholds, connectivity)
    holes = superlevel_components(num_thresholds - np.minimum(levels, num_thresholds), num_thresholds,
                                  4 if connectivity == 8 else 8, interior_only=True)
    for b in range(levels.shape[0]):
        for k in range(num_thresholds):
            boxes, sizes, _ = labelled(levels[b] > k, connectivity)
            boxes, sizes = sort_boxes(boxes, sizes)
            rows = rows_of(table, b, k)
            assert np.array_equal(table.boxes[rows], boxes), (b, k)
            assert np.array_equal(table.area[rows], sizes), (b, k)
            largest = table.largest[b, k]
            if sizes.size == 0:
                assert largest == -1
            else:  # most pixels; ties: smallest y0, then x0
                tied = np.flatnonzero(sizes == sizes.max())
                expected = tied[np.lexsort((boxes[tied, 0], boxes[tied, 1]))[0]]
                assert np.array_equal(table.boxes[largest], boxes[expected]), (b, k)
                assert table.area[largest] == sizes.max()
            # The complement {levels <= k} in the dual connectivity: its interior components are
            # the holes at threshold num_thresholds - 1 - k of the complemented levels.
            hole_boxes, _, border = labelled(levels[b] <= k, 4 if connectivity == 8 else 8)
            hole_rows = rows_of(holes, b, num_thresholds - 1 - k)
            assert np.array_equal(holes.boxes[hole_rows], sort_boxes(hole_boxes[~border])[0]), (b, k)


def special_maps(size):
    """Maps that break sweeps, all ``(size, size)`` integer levels in 0 .. 6."""
    yy, xx = np.mgrid[:size, :size]
    centre = size // 2
    ring_radius = np.maximum(np.abs(yy - centre), np.abs(xx - centre))
    maps = {
        "empty": np.zeros((size, size)),
        "constant": np.full((size, size), 6),
        "one pixel": np.zeros((size, size)),
        "checkerboard": ((yy + xx) % 2) * 6,
        "coarse checkerboard": ((yy // 3 + xx // 3) % 2) * 3 + (yy % 2),
        "nested rings": (ring_radius % 4 < 2) * (6 - ring_radius // 4).clip(1, 6),
        "stripes": (xx % 3 == 0) * 5 + (yy % 4 == 0),
        "diagonals": ((yy - xx) % 5 == 0) * 4 + ((yy + xx) % 7 == 0) * 2,
        "plateaus": (yy // 4 + xx // 5) % 4 * 2,
    }
    maps["one pixel"][centre, centre - 1] = 5
    return {name: m.astype(np.int64) for name, m in maps.items()}


@pytest.mark.parametrize("connectivity", [8, 4])
def test_special_maps_equal_labelling(connectivity):
    for name, m in special_maps(13).items():
        try:
            assert_tree_equals_labelling(m[None], 7, connectivity)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from error


@pytest.mark.parametrize("connectivity", [8, 4])
@pytest.mark.parametrize("seed", range(6))
def test_random_maps_of_several_sizes_and_levels_equal_labelling(connectivity, seed):
    rng = np.random.default_rng(seed)
    for height, width in [(1, 1), (1, 9), (9, 1), (2, 2), (7, 16), (23, 17), (3, 150)]:  # 150: three flag words
        num_thresholds = int(rng.choice([1, 2, 5, 31]))
        levels = rng.integers(0, num_thresholds + 2, size=(2, height, width))  # some above num_thresholds
        assert_tree_equals_labelling(levels, num_thresholds, connectivity)


def test_smooth_maps_with_many_regions_and_hundreds_of_levels():
    """Large components get column, row and level profiles: exercise those with 255 levels."""
    rng = np.random.default_rng(3)
    coarse = rng.random((2, 6, 7))
    maps = ndimage.zoom(coarse, (1, 8, 8), order=3)
    levels = np.clip((maps - maps.min()) / np.ptp(maps) * 255, 0, 255).astype(np.int64)
    assert_tree_equals_labelling(levels, 255, 8)


def test_levels_dtype_and_num_thresholds_default():
    levels = np.array([[[3, 1, 2], [0, 3, 0]]])
    table = superlevel_components(levels.astype(np.uint8))  # up to the largest level, 3
    assert table.largest.shape == (1, 3)
    assert [b.tolist() for b in table.boxes_at(2)] == [[[0, 0, 1, 1]]]  # 8-connected diagonal
    assert superlevel_components(levels.astype(np.int64), 3, 4).boxes_at(2)[0].tolist() == [[0, 0, 0, 0],
                                                                                          [1, 1, 1, 1]]
    empty = superlevel_components(np.zeros((2, 0, 5), np.int64), 4)
    assert empty.boxes.shape == (0, 4) and empty.largest.shape == (2, 4) and (empty.largest == -1).all()


def test_threshold_levels_are_exact_at_and_around_every_threshold():
    """``m > τ_k`` exactly when ``k < level``, also for values equal to a threshold and one ulp
    either side, and for thresholds that are not a regular grid."""
    for thresholds in (np.arange(0, 1, 0.001), np.array([0.0, 1e-9, 0.3, 0.30000001, 0.5, 0.999999])):
        values = np.concatenate([thresholds, np.nextafter(thresholds, 2), np.nextafter(thresholds, -1),
                                 [0.0, 1.0, -0.0]])
        values = values[(values >= 0) & (values <= 1)]
        maps = np.resize(values, (1, 1, values.size))
        table, top = sweep(maps, "thresholds", thresholds.size, thresholds=thresholds)
        expected = (maps[0, 0][:, None] > thresholds[None, :]).sum(axis=1)  # the level of each value
        assert top[0] == expected.max()
        for k in range(thresholds.size):
            foreground = np.zeros(values.size, bool)
            for box in table.boxes_at(k)[0]:
                foreground[box[0]:box[2] + 1] = True
            assert np.array_equal(foreground, expected > k), k


def test_kept_workspaces_give_the_same_rows_across_shapes_and_threads():
    """The sweep keeps its scratch per thread and shape; it must come back clean after every call."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(5)
    batches = [rng.random((3, 19, 23)), rng.random((2, 23, 19)), rng.random((3, 19, 23)) ** 3]
    calls = [(maps, args) for maps in batches
             for args in (("uint8", 256, 8, False), ("uint8_complement", 255, 4, True), ("levels", 1, 8, False),
                          ("uint8", 256, 8, False, None, True))]

    def run(call):
        maps, args = call
        return sweep_rows(maps, *args)

    fresh = []
    for call in calls:
        component_tree._workspaces.__dict__.pop("by_shape", None)
        fresh.append(run(call))
    with ThreadPoolExecutor(3) as pool:
        threaded = list(pool.map(run, calls * 3))
    for results, expected_results in (([run(call) for call in calls], fresh), (threaded, fresh * 3)):
        for got, expected in zip(results, expected_results, strict=True):
            for a, b in zip(got, expected, strict=True):
                np.testing.assert_array_equal(a, b)


def test_holes_from_one_read_equal_the_complement_swept_on_its_own():
    """``holes=True`` gives the rows a separate interior-only sweep of the complement gives, for
    every quantiser and connectivity, and leaves the component rows as they were."""
    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[:31, :37]
    bumps = np.stack([np.sin(yy / f) * np.cos(xx / (f + 1)) for f in (1.5, 2.0, 3.0)])  # basins: holes
    cases = [("uint8", 256, rng.random((3, 17, 29)) ** 2),
             ("uint8", 256, (bumps + 1) / 2),
             ("levels", 7, rng.integers(0, 8, (5, 12, 15)).astype(np.float64)),
             ("levels", 7, np.stack([m.astype(np.float64) for m in special_maps(13).values()]))]
    found = 0
    for levels_from, count, maps in cases:
        for connectivity in (8, 4):
            rows, largest, top, hole_rows, _ = sweep_rows(maps, levels_from, count, connectivity, holes=True)
            alone = sweep_rows(maps, levels_from, count, connectivity)
            for a, b in zip((rows, largest, top), alone[:3], strict=True):
                np.testing.assert_array_equal(a, b)
            assert alone[3].shape == (0, 7)
            if levels_from == "uint8":
                complement = sweep_rows(maps, "uint8_complement", count - 1, 4, interior_only=True)[0]
            else:
                levels = np.minimum(maps, count)
                complement = sweep_rows(np.maximum(count - 1 - levels, 0), "levels", count - 1, 4,
                                        interior_only=True)[0]
            np.testing.assert_array_equal(hole_rows, complement)
            found += hole_rows.shape[0]
    assert found > 100


def test_each_pixels_hill_found_from_the_flag_words_is_the_hill_holding_it():
    """``_hill_at`` (hill starts counted in the row's flag words) against the hills' own column
    ranges, at every pixel of maps with plateaus, ties and single-pixel hills."""
    from camkit.localize import tree_kernel

    rng = np.random.default_rng(17)
    for height, width in ((9, 23), (5, 64), (12, 17)):
        for levels in (rng.integers(0, 4, (height, width)), rng.integers(0, 255, (height, width))):
            pw = width + 2
            q = np.full((height + 2) * pw, -1, np.int32)
            q.reshape(height + 2, pw)[1:-1, 1:-1] = levels
            most = height * (width // 2 + 1)
            hill_y, hill_x0, hill_x1, peak_level, peak_x = np.zeros((5, most + 1), np.int32)
            row_first = np.zeros(height + 1, np.int32)
            words = np.zeros((height, (width + 7) // 8), np.uint64)
            starts_before = np.zeros(words.shape, np.int32)
            n = tree_kernel._hills(q, height, width, hill_y, hill_x0, hill_x1, peak_level, peak_x, row_first, words,
                                   starts_before)
            for h in range(n):
                for x in range(hill_x0[h], hill_x1[h] + 1):
                    assert tree_kernel._hill_at(hill_y[h], x, row_first, words, starts_before) == h


def test_normalising_while_reading_equals_prepare_maps_bit_for_bit():
    """``normalise=True`` gives the rows, levels and holes that the maps ``prepare_maps`` returns
    give, for raw maps of every kind (offset and scaled, negative, tiny and huge spans, constant,
    already in [0, 1], holding -0.0), and flags NaN and ±inf maps, which it scores as zeros."""
    rng = np.random.default_rng(21)
    raw = [rng.random((13, 17)) * 7 - 3, rng.normal(size=(13, 17)) * 1e-9 + 5, rng.random((13, 17)) * 1e300,
           np.full((13, 17), 2.5), rng.random((13, 17)), -rng.random((13, 17))]
    raw[4][0, 0], raw[4][1, 1] = 0.0, 1.0  # already normalised: read as it is
    raw[5][3, 4] = -0.0
    maps = np.stack(raw)
    calls = ((("uint8", 256, 8), {"holes": True}),
             (("thresholds", 50, 8), {"thresholds": np.linspace(0, 0.98, 50)}),
             (("uint8_complement", 255, 4), {"interior_only": True}))
    for args, options in calls:
        expected = sweep_rows(prepare_maps(maps, "camkit"), *args, **options)
        got = sweep_rows(maps, *args, **options, normalise=True)
        for a, b in zip(got[:4], expected[:4], strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(got[4], 0)
        assert got[0].shape[0] > 50
    broken = np.stack([rng.random((6, 6)) for _ in range(5)])
    broken[0, 1, 1], broken[1, 2, 2], broken[2, 3, 3] = np.nan, np.inf, -np.inf
    broken[3, 0, 0], broken[3, 5, 5] = np.inf, np.nan  # NaN wins, as in prepare_maps
    broken[4].view(np.int64)[2, 2] = np.int64(-1)  # a NaN with the sign bit set
    rows, largest, top, _, status = sweep_rows(broken, "uint8", 256, normalise=True)
    assert status.tolist() == [1, 2, 2, 1, 1]
    assert np.all(top == 0) and np.all(largest == -1) and rows.shape[0] == 0
    assert component_tree.refused(status[[0, 4]], nan_to_zero=True) is False
    assert component_tree.refused(status[[0, 4]], nan_to_zero=False) is True
    assert component_tree.refused(status[[1]], nan_to_zero=True) is True


# --- cell_ious: the compiled IoU pass against box_iou on the same boxes -------------------------

def numpy_cell_ious(table, gt, columns, empty_box, height, width, far_corner, holes=None, hole_flip=0):
    """:func:`cell_ious` in NumPy from :func:`sweep` tables and :func:`box_iou` (the spec)."""
    batch, n_levels = table.largest.shape
    boxes, images, levels = table.boxes, table.image, table.threshold
    if holes is not None:
        boxes = np.concatenate([boxes, holes.boxes + [-1, -1, 1, 1]])
        images = np.concatenate([images, holes.image])
        levels = np.concatenate([levels, hole_flip - holes.threshold])
    if far_corner:
        boxes = boxes.copy()
        boxes[:, 2] = np.minimum(boxes[:, 2] + 1, width - 1)
        boxes[:, 3] = np.minimum(boxes[:, 3] + 1, height - 1)
    row_iou = box_iou(boxes[:, None], gt[images]).max(axis=1, initial=0.0)
    empty = box_iou(np.array(empty_box)[None], gt).max(axis=1, initial=0.0)
    best = np.full((batch, n_levels), -1.0)
    np.maximum.at(best, (images, levels), row_iou)
    best = np.where(best < 0, empty[:, None], best)
    largest = np.where(table.largest >= 0, row_iou[np.maximum(table.largest, 0)] if boxes.size else 0.0,
                       empty[:, None])
    rows = np.arange(batch)[:, None]
    return largest[rows, columns], best[rows, columns]


def cell_iou_cases():
    """Level maps ``(1, H, W)`` (the edge cases of :func:`special_maps`, 1×1 and random ones)."""
    rng = np.random.default_rng(7)
    cases = [m[None] for m in special_maps(13).values()]
    cases += [np.full((1, 1, 1), 4), np.zeros((1, 1, 1), np.int64), rng.integers(0, 7, (1, 9, 14)),
              rng.integers(0, 7, (1, 1, 11)), rng.integers(0, 3, (1, 17, 5))]
    return cases


@pytest.mark.parametrize("far_corner", [False, True])
def test_cell_ious_equal_box_iou_on_the_same_boxes(far_corner):
    rng = np.random.default_rng(11)
    for levels in cell_iou_cases():
        height, width = levels.shape[1:]
        maps = levels.astype(np.float64)
        gts = ([[0, 0, 0, 0]], [[0, 0, width - 1, height - 1]],
               [[width // 3, 1, width - 1, height // 2], [0, height // 2, width // 2, height - 1]])
        for gt_boxes in gts:
            gt = ground_truth([np.minimum(np.array(gt_boxes), [width - 1, height - 1] * 2)])
            table, _ = sweep(maps, "levels", 7)
            holes, _ = sweep(6 - maps, "levels", 7, connectivity=4, interior_only=True)
            rows, largest, _, _, _ = sweep_rows(maps, "levels", 7)
            hole_rows = sweep_rows(6 - maps, "levels", 7, connectivity=4, interior_only=True)[0]
            columns = rng.integers(0, 7, (1, 20))
            for empty_box in (EMPTY_BOX, (0, 0, 0, 0)):
                for with_holes in (False, True):
                    expected = numpy_cell_ious(table, gt, columns, empty_box, height, width, far_corner,
                                               holes if with_holes else None, 6)
                    got = cell_ious(rows, largest, gt, columns, empty_box, (height, width), far_corner,
                                    hole_rows if with_holes else None, 6)
                    np.testing.assert_array_equal(got[0], expected[0])
                    np.testing.assert_array_equal(got[1], expected[1])


def test_cell_ious_of_an_empty_batch_and_of_maps_without_components():
    gt = ground_truth([np.array([[0, 0, 2, 2]]), np.array([[1, 1, 3, 3]])])
    rows, largest, _, _, _ = sweep_rows(np.zeros((2, 4, 4)), "levels", 3)
    assert rows.shape == (0, 7)
    largest_iou, best = cell_ious(rows, largest, gt, np.zeros((2, 5), np.int64), (0, 0, 0, 0), (4, 4), True)
    expected = box_iou(np.array([[0, 0, 0, 0]]), gt[:, 0])[:, None]  # the empty box's IoU
    np.testing.assert_array_equal(largest_iou, np.broadcast_to(expected, (2, 5)))
    np.testing.assert_array_equal(best, np.broadcast_to(expected, (2, 5)))
    none = cell_ious(np.zeros((0, 7), np.int32), np.zeros((0, 3), np.int64), np.zeros((0, 1, 4), np.int64),
                     np.zeros((0, 5), np.int64), EMPTY_BOX, (4, 4))
    assert none[0].shape == none[1].shape == (0, 5)


# --- BoxAccuracy, every cell against a per-threshold labelling ----------------------------------

def smooth(count, size, seed):
    rng = np.random.default_rng(seed)
    coarse = rng.random((count, 5, 5))
    maps = ndimage.zoom(coarse, (1, size / 5, size / 5), order=3)
    maps[0, size // 3:size // 3 + 4, size // 3:size // 3 + 4] = maps.min()  # a hole
    return maps


def reference_cells(prepared, gt, thresholds, protocol, connectivity=8):
    """Per image and τ, by labelling each threshold: IoU of the largest component's box and the
    best IoU of all boxes (under wsolevaluation: uint8 levels, int(τ max q) thresholds, hole
    borders, far corner + 1, empty foreground -> [0, 0, 0, 0])."""
    batch, height, width = prepared.shape
    largest, every = np.zeros((batch, thresholds.size)), np.zeros((batch, thresholds.size))
    for b in range(batch):
        q = (prepared[b] * 255).astype(np.uint8)
        for j, tau in enumerate(thresholds):
            if protocol == "wsolevaluation":
                foreground = q > int(tau * q.max())
            else:
                foreground = prepared[b] > tau
            boxes, sizes, _ = labelled(foreground, connectivity)
            if sizes.size == 0:
                empty = [0, 0, 0, 0] if protocol == "wsolevaluation" else [0, 0, -1, -1]
                largest[b, j] = every[b, j] = iou([empty], gt[b]).max().item()
                continue
            tied = np.flatnonzero(sizes == sizes.max())
            chosen = tied[np.lexsort((boxes[tied, 0], boxes[tied, 1]))[0]]
            everything = boxes
            if protocol == "wsolevaluation":
                hole_boxes, _, border = labelled(~foreground, 4)
                everything = np.concatenate([boxes, hole_boxes[~border] + [-1, -1, 1, 1]])
                everything[:, 2] = np.minimum(everything[:, 2] + 1, width - 1)
                everything[:, 3] = np.minimum(everything[:, 3] + 1, height - 1)
            largest[b, j] = iou(everything[chosen:chosen + 1], gt[b]).max().item()
            every[b, j] = iou(everything, gt[b]).max().item()
    return largest, every


@pytest.mark.parametrize("protocol", ["camkit", "wsolevaluation"])
def test_box_accuracy_equals_labelling_every_threshold_in_every_cell(protocol):
    thresholds = np.arange(0, 1, 0.01)
    prepared = prepare_maps(smooth(4, 36, seed=1), protocol, resize=(36, 36))
    gt = [np.array([[4, 5, 20, 24]]), np.array([[10, 10, 30, 30], [0, 0, 8, 8]]), np.array([[0, 0, 35, 35]]),
          np.array([[12, 2, 14, 33]])]
    metric = BoxAccuracy(thresholds, protocol=protocol, resize=(36, 36))
    largest, every = metric.best_ious(prepared, gt)
    expected_largest, expected_every = reference_cells(prepared, gt, thresholds, protocol)
    np.testing.assert_array_equal(largest, expected_largest)
    np.testing.assert_array_equal(every, expected_every)
    metric.update(prepared, gt)
    for row, delta in enumerate(metric._deltas):  # the counts are these cells, thresholded
        assert np.array_equal(metric.correct_all[row], (expected_every >= delta).sum(axis=0))
        assert np.array_equal(metric.correct_largest[row], (expected_largest >= delta).sum(axis=0))


def test_box_accuracy_four_connected_camkit_protocol_equals_labelling():
    thresholds = np.array([0.0, 0.2, 0.45, 0.7, 0.9])
    prepared = prepare_maps(smooth(2, 30, seed=4), "camkit")
    gt = [np.array([[3, 3, 18, 20]]), np.array([[10, 0, 29, 12]])]
    largest, every = BoxAccuracy(thresholds, connectivity=4).best_ious(prepared, gt)
    expected_largest, expected_every = reference_cells(prepared, gt, thresholds, "camkit", connectivity=4)
    np.testing.assert_array_equal(largest, expected_largest)
    np.testing.assert_array_equal(every, expected_every)
