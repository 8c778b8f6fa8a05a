"""Boxes, masks and IoU at one threshold; the one-pass component tree against per-threshold labelling."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from camkit.errors import InputError
from camkit.localize import EMPTY_BOX, boxes, iou, masks, superlevel_components
from camkit.localize.boxes import box_array, ground_truth


def pyramid(size=21, centre=(10, 10), height=10):
    """Chebyshev cone: m = max(0, height - max(|x - cx|, |y - cy|))."""
    ys, xs = np.mgrid[:size, :size]
    distance = np.maximum(np.abs(xs - centre[0]), np.abs(ys - centre[1]))
    return np.maximum(0, height - distance).astype(np.float64)


def smooth_maps(count, size=48, coarse=6, seed=0):
    rng = np.random.default_rng(seed)
    small = torch.from_numpy(rng.random((count, 1, coarse, coarse)))
    maps = F.interpolate(small, size=(size, size), mode="bicubic", align_corners=False)[:, 0].numpy()
    low = maps.min(axis=(1, 2), keepdims=True)
    return (maps - low) / (maps.max(axis=(1, 2), keepdims=True) - low)


def reference_boxes(foreground, connectivity):
    structure = ndimage.generate_binary_structure(2, 2 if connectivity == 8 else 1)
    labels, count = ndimage.label(foreground, structure)
    found = np.array([[s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1]
                      for s in ndimage.find_objects(labels)], np.int64).reshape(-1, 4)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    order = np.lexsort((found[:, 2], found[:, 3], found[:, 0], found[:, 1]))
    return found[order], sizes[order]


# --- IoU -------------------------------------------------------------------------------------

def test_iou_golden_and_conventions():
    assert iou([[1, 2, 5, 6]], [[3, 1, 4, 5]]).item() == pytest.approx(8 / 27, abs=1e-15)
    table = iou([[0, 0, 9, 9], [20, 20, 29, 29], [0, 0, 4, 9]], [[0, 0, 9, 9], [5, 0, 9, 9]])
    expected = torch.tensor([[1.0, 0.5], [0.0, 0.0], [0.5, 0.0]], dtype=torch.float64)
    assert torch.equal(table, expected)
    # symmetry, and a single pixel box has area 1
    assert torch.equal(iou([[3, 1, 4, 5]], [[1, 2, 5, 6]]), iou([[1, 2, 5, 6]], [[3, 1, 4, 5]]))
    assert iou([[2, 2, 2, 2]], [[2, 2, 3, 2]]).item() == 0.5


def test_iou_of_empty_boxes_is_zero():
    assert iou([EMPTY_BOX], [[0, 0, 5, 5]]).item() == 0.0
    assert iou([EMPTY_BOX], [EMPTY_BOX]).item() == 0.0
    assert iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


def test_iou_rejects_bad_boxes():
    with pytest.raises(InputError):
        iou([[1, 2, 3]], [[0, 0, 1, 1]])
    with pytest.raises(InputError):
        iou([[0.5, 0, 1, 1]], [[0, 0, 1, 1]])


# --- boxes at one threshold -------------------------------------------------------------------

@pytest.mark.parametrize("tau", [0.0, 0.05, 0.2, 0.35, 0.5, 0.75, 0.9, 0.95])
def test_unimodal_map_has_known_box_at_every_threshold(tau):
    height, cx, cy = 10, 10, 7
    m = pyramid(size=21, centre=(cx, cy), height=height)
    # m > tau * 10  <=>  distance < 10 (1 - tau)  <=>  distance <= ceil(10 (1 - tau)) - 1
    radius = int(np.ceil(height * (1 - tau))) - 1
    expected = [max(cx - radius, 0), max(cy - radius, 0), min(cx + radius, 20), min(cy + radius, 20)]
    assert boxes(torch.from_numpy(m), threshold=tau).tolist() == expected


def test_largest_component_and_all_components():
    m = np.zeros((20, 30))
    m[2:5, 3:6] = 1.0      # 9 pixels
    m[10:18, 20:28] = 0.5  # 64 pixels, lower but above 0.2 * max
    assert boxes(m).tolist() == [20, 10, 27, 17]
    every = boxes(m, all_components=True)
    assert every.tolist() == [[3, 2, 5, 4], [20, 10, 27, 17]]
    # at 0.6 of max only the small bright square is left
    assert boxes(m, threshold=0.6).tolist() == [3, 2, 5, 4]


def test_equal_components_tie_goes_to_the_top_left_one():
    m = np.zeros((20, 20))
    m[12:15, 1:4] = 1.0
    m[2:5, 10:13] = 1.0
    assert boxes(m).tolist() == [10, 2, 12, 4]  # smaller y0 wins


def test_threshold_is_strict_and_relative():
    m = np.array([[0.0, 2.0, 10.0], [0.0, 0.0, 0.0], [2.1, 0.0, 0.0]])
    # 0.2 * max = 2: the pixel at exactly 2 is dropped, 2.1 kept (separate component, 8-conn)
    assert boxes(m, threshold=0.2, all_components=True).tolist() == [[2, 0, 2, 0], [0, 2, 0, 2]]
    assert boxes(m * 7.0, threshold=0.2, all_components=True).tolist() == [[2, 0, 2, 0], [0, 2, 0, 2]]


def test_connectivity_four_and_eight():
    m = np.zeros((5, 5))
    m[1, 1] = m[2, 2] = m[3, 3] = 1.0
    assert boxes(m, connectivity=8).tolist() == [1, 1, 3, 3]
    assert boxes(m, connectivity=4, all_components=True).shape == (3, 4)
    with pytest.raises(InputError):
        boxes(m, connectivity=6)


def test_empty_foreground_gives_the_empty_box():
    zero = np.zeros((2, 3, 8, 9))
    out = boxes(zero)
    assert out.shape == (2, 3, 4) and (out == torch.tensor(EMPTY_BOX)).all()
    assert boxes(zero[0, 0], all_components=True).shape == (0, 4)
    assert boxes(-np.ones((4, 4))).tolist() == list(EMPTY_BOX)  # nothing exceeds 0.2 * (-1)


def test_constant_positive_map_is_one_whole_image_component():
    assert boxes(np.full((6, 9), 3.0)).tolist() == [0, 0, 8, 5]


def test_shapes_of_inputs_and_outputs():
    rng = np.random.default_rng(0)
    maps = torch.from_numpy(rng.random((2, 3, 12, 10)).astype(np.float32))
    batched = boxes(maps)
    assert batched.dtype == torch.int64 and batched.shape == (2, 3, 4)
    assert torch.equal(batched[1], boxes(maps[1]))
    assert torch.equal(batched[1, 2], boxes(maps[1, 2].numpy()))
    nested = boxes(maps, all_components=True)
    assert len(nested) == 2 and len(nested[0]) == 3 and nested[1][2].shape[1] == 4
    with pytest.raises(InputError):
        boxes(torch.full((4, 4), float("nan")))


def test_masks_match_the_threshold_rule():
    rng = np.random.default_rng(1)
    maps = rng.random((3, 7, 8)) * rng.random((3, 1, 1)) * 5
    out = masks(maps, threshold=0.3)
    expected = maps > 0.3 * maps.max(axis=(1, 2), keepdims=True)
    assert out.dtype == torch.bool and np.array_equal(out.numpy(), expected)


def test_box_contains_its_component_and_is_tight():
    for m in smooth_maps(6, size=40, seed=3):
        foreground = m > 0.45 * m.max()
        labels, count = ndimage.label(foreground, np.ones((3, 3)))
        sizes = np.bincount(labels.ravel())[1:]
        box = boxes(m, threshold=0.45).numpy()
        component = labels == (np.argmax(sizes) + 1)
        ys, xs = np.nonzero(component)
        assert xs.min() >= box[0] and xs.max() <= box[2] and ys.min() >= box[1] and ys.max() <= box[3]
        assert (xs.min(), ys.min(), xs.max(), ys.max()) == tuple(box)  # tight: touches all sides


# --- one-pass component tree ------------------------------------------------------------------

@pytest.mark.parametrize("connectivity", [8, 4])
@pytest.mark.parametrize("quantum", [255, 12])  # fine levels, and coarse levels with plateaus
def test_component_tree_equals_labelling_at_every_threshold(connectivity, quantum):
    maps = smooth_maps(5, size=40, coarse=7, seed=quantum + connectivity)
    levels = (maps / maps.max() * quantum).astype(np.int64)
    table = superlevel_components(levels, quantum, connectivity, fine=maps / maps.max())
    for k in range(quantum):
        per_image = table.boxes_at(k)
        for b in range(maps.shape[0]):
            expected, sizes = reference_boxes(levels[b] > k, connectivity)
            assert np.array_equal(per_image[b], expected), (k, b)
            row = table.largest[b, k]
            if sizes.size:
                assert table.area[row] == sizes.max()
                assert np.array_equal(table.boxes[row], expected[np.argmax(sizes)])
            else:
                assert row == -1


def test_component_tree_without_fine_values_and_on_noise():
    rng = np.random.default_rng(5)
    levels = rng.integers(0, 6, size=(3, 15, 17))
    table = superlevel_components(levels, 6, 8)
    for k in range(6):
        for b in range(3):
            assert np.array_equal(table.boxes_at(k)[b], reference_boxes(levels[b] > k, 8)[0])


def test_components_only_grow_as_the_threshold_falls():
    maps = smooth_maps(4, size=40, seed=11)
    levels = (maps / maps.max() * 60).astype(np.int64)
    table = superlevel_components(levels, 60, 8)
    for k in range(59):
        below, above = table.boxes_at(k), table.boxes_at(k + 1)
        for b in range(4):
            for box in above[b]:
                inside = ((below[b][:, 0] <= box[0]) & (below[b][:, 1] <= box[1])
                          & (below[b][:, 2] >= box[2]) & (below[b][:, 3] >= box[3]))
                assert inside.any(), (k, b, box)
            # the largest component never shrinks as k falls
            if table.largest[b, k + 1] >= 0:
                assert table.area[table.largest[b, k]] >= table.area[table.largest[b, k + 1]]


def test_component_tree_rejects_bad_levels():
    with pytest.raises(InputError):
        superlevel_components(np.zeros((4, 4), np.int64))
    with pytest.raises(InputError):
        superlevel_components(np.zeros((1, 4, 4)))
    with pytest.raises(InputError):
        superlevel_components(-np.ones((1, 4, 4), np.int64))


def test_component_tree_on_noise_with_many_regions():
    """Hundreds of regions per image: exercises the index arithmetic of large batches."""
    rng = np.random.default_rng(8)
    levels = rng.integers(0, 40, size=(2, 64, 72))
    table = superlevel_components(levels, 40, 8)
    for k in (0, 5, 17, 30, 38):
        for b in range(2):
            assert np.array_equal(table.boxes_at(k)[b], reference_boxes(levels[b] > k, 8)[0]), (k, b)


def test_best_iou_per_image_and_per_row():
    from camkit.localize import best_iou

    gt = [np.array([[0, 0, 9, 9]]), np.array([[20, 20, 29, 29], [0, 0, 4, 9]])]
    boxes = np.array([[[0, 0, 9, 9], [5, 0, 9, 9]], [[0, 0, 9, 9], [20, 20, 29, 29]]])   # (B, K, 4)
    np.testing.assert_array_equal(best_iou(boxes, gt), [[1.0, 0.5], [0.5, 1.0]])
    rows = np.array([[5, 0, 9, 9], [0, 0, 9, 9], list(EMPTY_BOX)])
    np.testing.assert_array_equal(best_iou(rows, gt, image=[0, 1, 1]), [0.5, 0.5, 0.0])
    assert best_iou(boxes[:, 0], [gt[0], np.zeros((0, 4))]).tolist() == [1.0, 0.0]
    with pytest.raises(InputError, match="last axis of 4, got shape"):
        best_iou(np.zeros((2, 5)), gt)        # 10 numbers: not boxes, whatever reshape would allow


def test_one_box_validator_for_scoring_and_drawing():
    from camkit.localize import box_array, nonempty

    assert box_array([1, 2, 3, 4]).tolist() == [[1, 2, 3, 4]]
    with pytest.raises(InputError, match="integer"):
        box_array([[0.5, 0, 1, 1]])
    drawn = box_array([[0.5, 0, 1, 1], [np.nan, 0, 1, 1], list(EMPTY_BOX)], integer=False)
    assert nonempty(drawn).tolist() == [True, False, False]
    with pytest.raises(InputError, match=r"\(4,\) or \(N, 4\)"):
        box_array(np.zeros((2, 3)))


# --- refused input: reversed boxes, infinite maps (issue 12, item 8) ---------------------------

def test_iou_refuses_a_reversed_box_naming_it_but_keeps_the_empty_box():
    with pytest.raises(InputError, match=r"b\[1\] = \[5, 2, 3, 8\] is reversed"):
        iou([[0, 0, 9, 9]], [[0, 0, 4, 4], [5, 2, 3, 8]])
    with pytest.raises(InputError, match=r"a\[0\] = \[2, 9, 6, 1\] is reversed"):
        iou([[2, 9, 6, 1]], [[0, 0, 9, 9]])
    assert iou([EMPTY_BOX], [[0, 0, 9, 9]]).item() == 0.0  # the documented empty box stays valid


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_maps_are_refused_like_nan(bad):
    m = np.zeros((2, 6, 6))
    m[1, 2, 3] = bad
    sign = "+inf" if bad > 0 else "-inf"
    with pytest.raises(InputError, match=rf"maps contain \{sign} \(map 1\)"):
        boxes(m)
    with pytest.raises(InputError, match=rf"\{sign}"):
        boxes(m, all_components=True)
    with pytest.raises(InputError, match=rf"\{sign}"):
        masks(torch.from_numpy(m))
    with pytest.raises(InputError, match="NaN"):
        masks(np.full((3, 3), np.nan))


def test_ground_truth_checked_all_at_once_equals_set_by_set():
    """Integer sets in order are validated in one pass; every other input goes set by set.  Both
    give the same padded ``(B, G, 4)``, and a bad box is still named by its set and row."""
    rng = np.random.default_rng(5)

    def random_set(n, dtype=np.int64):
        x0, y0 = rng.integers(0, 50, (2, n))
        return np.stack([x0, y0, x0 + rng.integers(0, 9, n), y0 + rng.integers(0, 9, n)], 1).astype(dtype)

    def set_by_set(sets):
        checked = [box_array(s, allow_empty=False) for s in sets]
        padded = np.tile(np.array(EMPTY_BOX), (len(checked), max(len(s) for s in checked), 1))
        for i, s in enumerate(checked):
            padded[i, :len(s)] = s
        return padded

    cases = [[random_set(1) for _ in range(4)],
             [random_set(n) for n in (1, 3, 2)],
             [random_set(2, np.uint8), random_set(2, np.int32)],
             [random_set(1).astype(np.float64), random_set(2)],  # float: set by set
             [random_set(2).tolist(), torch.from_numpy(random_set(1))]]
    for sets in cases:
        got = ground_truth(sets)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, set_by_set(sets))
    bad = [random_set(2), random_set(3)]
    bad[1][2] = [9, 4, 3, 8]
    with pytest.raises(InputError, match=r"gt_boxes\[1\]\[2\] = \[9, 4, 3, 8\] is reversed"):
        ground_truth(bad)
