"""WSOL metrics: golden hand-made cases, protocol quirks, additivity (merge, state, counts)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from camkit.errors import CamkitError, InputError
from camkit.localize import BoxAccuracy, LocalizationAccuracy, PxAP, iou, prepare_maps

TAUS = np.arange(0, 1, 0.05)


def square_map(size, x0, y0, x1, y1, value=1.0):
    m = np.zeros((size, size))
    m[y0:y1 + 1, x0:x1 + 1] = value
    return m


def pyramid(size, cx, cy, height):
    ys, xs = np.mgrid[:size, :size]
    return np.maximum(0, height - np.maximum(np.abs(xs - cx), np.abs(ys - cy))).astype(np.float64)


def smooth_maps(count, size=40, coarse=6, seed=0):
    rng = np.random.default_rng(seed)
    small = torch.from_numpy(rng.random((count, 1, coarse, coarse)))
    return F.interpolate(small, size=(size, size), mode="bicubic", align_corners=False)[:, 0].numpy()


# --- BoxAccuracy, camkit protocol ---------------------------------------------------------------

def test_binary_maps_are_exact_or_never_right():
    maps = np.stack([square_map(32, 4, 6, 13, 20), square_map(32, 4, 6, 13, 20)])
    gt = [[[4, 6, 13, 20]], [[20, 20, 30, 30]]]
    metric = BoxAccuracy(TAUS)
    metric.update(torch.from_numpy(maps), gt)
    out = metric.result()
    assert out["max_box_acc"] == 50.0 and out["max_box_acc_v2"] == 50.0
    assert np.all(metric.correct_all == 1) and np.all(metric.correct_largest == 1)
    assert out["best_threshold"] == 0.0  # every τ ties: the first one is reported


def test_pyramid_curve_matches_hand_computed_boxes():
    size, cx, cy, height = 31, 15, 15, 12
    gt = np.array([[10, 10, 20, 20]])
    metric = BoxAccuracy(TAUS, iou_thresholds=(0.3, 0.5, 0.7))
    metric.update(pyramid(size, cx, cy, height)[None], [gt])
    # after min-max normalisation m = (12 - d) / 12, kept where d < 12 (1 - τ)
    for j, tau in enumerate(TAUS):
        radius = int(np.ceil(height * (1 - tau))) - 1
        box = [max(cx - radius, 0), max(cy - radius, 0), min(cx + radius, size - 1), min(cy + radius, size - 1)]
        expected_iou = iou([box], gt).item()
        for delta in (0.3, 0.5, 0.7):
            row = list(metric._deltas).index(delta)
            assert metric.correct_largest[row, j] == int(expected_iou >= delta), (tau, delta)
            assert metric.correct_all[row, j] == int(expected_iou >= delta)


def test_largest_and_all_components_differ_on_ties():
    m = square_map(24, 1, 12, 4, 15) + square_map(24, 12, 2, 15, 5)  # equal squares
    on_top_left = BoxAccuracy(TAUS)
    on_top_left.update(m[None], [[[12, 2, 15, 5]]])  # smaller y0 wins the tie: it is the largest
    assert on_top_left.result()["max_box_acc"] == 100.0
    on_other = BoxAccuracy(TAUS)
    on_other.update(m[None], [[[1, 12, 4, 15]]])
    result = on_other.result()
    assert result["max_box_acc"] == 0.0 and result["max_box_acc_v2"] == 100.0
    largest_only = BoxAccuracy(TAUS, all_components=False)
    largest_only.update(m[None], [[[1, 12, 4, 15]]])
    assert largest_only.result()["max_box_acc_v2"] == 0.0


def test_constant_and_zero_maps_localize_nothing_under_camkit():
    metric = BoxAccuracy(TAUS)
    metric.update(np.stack([np.full((16, 16), 3.0), np.zeros((16, 16))]),
                  [[[0, 0, 15, 15]], [[0, 0, 0, 0]]])
    assert metric.correct_all.sum() == 0 and metric.result()["max_box_acc"] == 0.0


def test_best_of_several_ground_truth_boxes_counts():
    metric = BoxAccuracy(TAUS)
    metric.update(square_map(20, 2, 2, 7, 7)[None], [[[12, 12, 18, 18], [2, 2, 7, 7]]])
    assert metric.result()["max_box_acc_v2"] == 100.0


def test_raw_maps_are_normalised_and_batches_are_independent():
    maps = smooth_maps(4, seed=2)
    gt = [[[5, 5, 25, 25]]] * 4
    together = BoxAccuracy(TAUS)
    together.update(maps * 40 - 7, gt)
    alone = BoxAccuracy(TAUS)
    for i in range(4):
        alone.update(maps[i:i + 1], gt[i:i + 1])
    assert np.array_equal(together.correct_all, alone.correct_all)
    assert np.array_equal(together.correct_largest, alone.correct_largest)


# --- BoxAccuracy, wsolevaluation protocol ---------------------------------------------------------

def test_wsolevaluation_far_corner_quirk_and_clipping():
    metric = BoxAccuracy(TAUS, protocol="wsolevaluation", resize=(32, 32))
    maps = np.stack([square_map(32, 10, 10, 19, 19), square_map(32, 22, 0, 31, 9)])
    gt = [np.array([[10, 10, 19, 19]]), np.array([[22, 0, 31, 9]])]
    largest, every = metric.best_ious(prepare_maps(maps, "wsolevaluation", (32, 32)), gt)
    # the reference box is one pixel wider and taller: [10, 10, 20, 20] -> 100 / 121
    assert np.allclose(largest[0], 100 / 121) and np.allclose(every[0], 100 / 121)
    # on the right border x1 + 1 is clipped back to 31: [22, 0, 31, 10] -> 100 / 110
    assert np.allclose(largest[1], 100 / 110)


def test_wsolevaluation_threshold_is_integer_and_strict():
    m = np.zeros((32, 32))
    m[5, 5] = 1.0          # q = 255
    m[20:23, 20:23] = 0.4  # q = int(0.4 * 255) = 102
    metric = BoxAccuracy(np.array([0.39, 0.40, 0.41]), protocol="wsolevaluation", resize=(32, 32),
                         all_components=False)
    largest, _ = metric.best_ious(prepare_maps(m[None], "wsolevaluation", (32, 32)),
                                  [np.array([[20, 20, 22, 22]])])
    # int(0.39 * 255) = 99 < 102 keeps the square; int(0.40 * 255) = 102 drops it (strict >)
    assert largest[0, 0] == pytest.approx(9 / 16) and largest[0, 1] < 0.01 and largest[0, 2] < 0.01


def test_wsolevaluation_empty_map_scores_the_corner_box():
    """The reference answers [0, 0, 0, 0] when nothing is above threshold (a constant map)."""
    metric = BoxAccuracy(TAUS, protocol="wsolevaluation", resize=(16, 16))
    metric.update(np.full((1, 16, 16), 0.3), [[[0, 0, 0, 0]]])
    assert metric.result()["max_box_acc"] == 100.0
    camkit = BoxAccuracy(TAUS, resize=(16, 16))
    camkit.update(np.full((1, 16, 16), 0.3), [[[0, 0, 0, 0]]])
    assert camkit.result()["max_box_acc"] == 0.0


def test_wsolevaluation_counts_hole_borders_as_boxes():
    ring = square_map(40, 5, 5, 30, 30) - square_map(40, 12, 12, 21, 21)  # hole x, y in 12..21
    gt = [np.array([[11, 11, 23, 23]])]
    wsol = BoxAccuracy(np.array([0.5]), protocol="wsolevaluation", resize=(40, 40))
    largest, every = wsol.best_ious(prepare_maps(ring[None], "wsolevaluation", (40, 40)), gt)
    # the hole's border runs one pixel outside it, 11..22, and the far corner gets +1: 11..23
    assert every[0, 0] == 1.0
    assert largest[0, 0] == pytest.approx(iou([[5, 5, 31, 31]], gt[0]).item())
    camkit = BoxAccuracy(np.array([0.5]), resize=(40, 40))
    _, every_camkit = camkit.best_ious(prepare_maps(ring[None], "camkit", (40, 40)), gt)
    assert every_camkit[0, 0] == pytest.approx(iou([[5, 5, 30, 30]], gt[0]).item())


def _reference_all_contours(scoremap, thresholds):
    """wsolevaluation's multi-contour boxes rebuilt with scipy (outer borders and hole borders)."""
    height, width = scoremap.shape
    q = (scoremap * 255).astype(np.uint8)
    per_tau = []
    for tau in thresholds:
        foreground = q > int(tau * q.max())
        labels, count = ndimage.label(foreground, np.ones((3, 3)))
        found = [[s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1]
                 for s in ndimage.find_objects(labels)]
        holes, _ = ndimage.label(~foreground)
        for s in ndimage.find_objects(holes):
            if s[0].start > 0 and s[1].start > 0 and s[0].stop < height and s[1].stop < width:
                found.append([s[1].start - 1, s[0].start - 1, s[1].stop, s[0].stop])
        found = np.array(found or [[0, 0, -1, -1]]).reshape(-1, 4)
        found[:, 2] = np.minimum(found[:, 2] + 1, width - 1)
        found[:, 3] = np.minimum(found[:, 3] + 1, height - 1)
        per_tau.append(found if count else np.array([[0, 0, 0, 0]]))
    return per_tau


def test_wsolevaluation_matches_a_per_threshold_reference_on_bumpy_maps():
    maps = smooth_maps(6, size=48, coarse=10, seed=7)
    rng = np.random.default_rng(3)
    gt = [np.array([[x, y, x + w, y + h]]) for x, y, w, h in rng.integers(2, 22, size=(6, 4))]
    metric = BoxAccuracy(TAUS, protocol="wsolevaluation", resize=(48, 48))
    prepared = prepare_maps(maps, "wsolevaluation", (48, 48))
    _, every = metric.best_ious(prepared, gt)
    for i in range(6):
        reference = [iou(b, gt[i]).max().item() for b in _reference_all_contours(prepared[i], TAUS)]
        assert np.allclose(every[i], reference), i


def test_wsolevaluation_matches_opencv_image_for_image():
    cv2 = pytest.importorskip("cv2")
    maps = smooth_maps(4, size=64, coarse=8, seed=9)
    gt = [np.array([[10, 12, 40, 50]]), np.array([[0, 0, 30, 30]]), np.array([[20, 5, 60, 35]]),
          np.array([[30, 30, 63, 63]])]
    prepared = prepare_maps(maps, "wsolevaluation", (64, 64))
    for all_contours in (False, True):
        metric = BoxAccuracy(TAUS, protocol="wsolevaluation", resize=(64, 64))
        largest, every = metric.best_ious(prepared, gt)
        ours = every if all_contours else largest
        for i in range(4):
            image = np.expand_dims((prepared[i] * 255).astype(np.uint8), 2)
            for j, tau in enumerate(TAUS):
                _, binary = cv2.threshold(image, int(tau * np.max(image)), 255, cv2.THRESH_BINARY)
                contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
                if not all_contours:
                    contours = [max(contours, key=cv2.contourArea)]
                found = []
                for c in contours:
                    x, y, w, h = cv2.boundingRect(c)
                    found.append([x, y, min(x + w, 63), min(y + h, 63)])
                assert ours[i, j] == pytest.approx(iou(found, gt[i]).max().item()), (i, tau)


def test_wsolevaluation_resizes_to_224_by_default():
    metric = BoxAccuracy(TAUS, protocol="wsolevaluation")
    small = square_map(28, 7, 7, 20, 20)
    # 28 -> 224 is x8; the square covers 56..167 (bicubic ringing is cut by the thresholds)
    metric.update(small[None], [[[56, 56, 167, 167]]])
    assert metric.result()["max_box_acc"] == 100.0


def test_box_accuracy_validates_input():
    with pytest.raises(InputError):
        BoxAccuracy(np.array([0.5, 0.2]))
    with pytest.raises(InputError):
        BoxAccuracy(protocol="voc")
    metric = BoxAccuracy(TAUS)
    with pytest.raises(InputError):
        metric.update(np.zeros((2, 8, 8)), [[[0, 0, 1, 1]]])
    with pytest.raises(InputError):
        metric.update(np.full((1, 8, 8), np.nan), [[[0, 0, 1, 1]]])
    with pytest.raises(CamkitError):
        BoxAccuracy(TAUS).result()


# --- additivity ---------------------------------------------------------------------------------

def test_merge_of_two_halves_equals_one_pass_for_every_metric():
    maps = smooth_maps(8, seed=4)
    rng = np.random.default_rng(4)
    gt = [np.array([[x, y, x + 12, y + 15]]) for x, y in rng.integers(0, 20, size=(8, 2))]
    masks = maps > 0.6

    for make in (lambda: BoxAccuracy(TAUS), lambda: BoxAccuracy(TAUS, protocol="wsolevaluation",
                                                                   resize=(40, 40))):
        whole, first, second = make(), make(), make()
        whole.update(maps, gt)
        first.update(maps[:3], gt[:3])
        second.update(maps[3:], gt[3:])
        merged = first.merge(second)
        assert merged.num_images == 8
        assert np.array_equal(merged.correct_all, whole.correct_all)
        assert np.array_equal(merged.correct_largest, whole.correct_largest)
        assert merged.result()["max_box_acc_v2"] == whole.result()["max_box_acc_v2"]

    whole, first, second = PxAP(TAUS), PxAP(TAUS), PxAP(TAUS)
    whole.update(maps, masks)
    first.update(maps[:5], masks[:5])
    second.update(maps[5:], masks[5:])
    assert first.merge(second).result()["pxap"] == whole.result()["pxap"]


def test_state_dict_and_flat_counts_round_trip():
    maps = smooth_maps(3, seed=6)
    gt = [[[3, 3, 20, 20]]] * 3
    metric = BoxAccuracy(TAUS)
    metric.update(maps, gt)
    restored = BoxAccuracy(TAUS)
    restored.load_state_dict(metric.state_dict())
    assert restored.result()["max_box_acc_v2"] == metric.result()["max_box_acc_v2"]
    summed = BoxAccuracy(TAUS)
    summed.load_counts(metric.counts() * 2)  # what an all-reduce over two equal ranks gives
    assert summed.num_images == 6 and np.array_equal(summed.correct_all, 2 * metric.correct_all)
    with pytest.raises(InputError):
        metric.merge(BoxAccuracy(TAUS, protocol="wsolevaluation"))
    with pytest.raises(InputError):
        summed.load_counts(metric.counts()[:-1])


# --- PxAP ---------------------------------------------------------------------------------------

def test_pxap_golden_with_ignore_and_empty_masks():
    scores = np.array([[[0.9, 0.6], [0.3, 0.1]]])
    truth = np.array([[[1, 0], [1, 0]]])
    metric = PxAP(np.arange(0, 1, 0.01))
    metric.update(scores, truth)
    # ranked T, F, T, F: AP = 1 * 1/2 + 2/3 * 1/2
    assert metric.result()["pxap"] == pytest.approx(100 * (0.5 + (2 / 3) * 0.5))
    ignoring = PxAP(np.arange(0, 1, 0.01))
    ignoring.update(scores, truth, ignore_masks=np.array([[[0, 1], [0, 0]]]))
    assert ignoring.result()["pxap"] == pytest.approx(100.0)  # ranked T, T, F
    # an image with an empty mask adds negatives only
    ignoring.update(np.array([[[0.0, 1.0], [0.5, 0.2]]]), np.zeros((1, 2, 2)))
    assert ignoring.positive_hist.sum() == 2 and ignoring.negative_hist.sum() == 5
    empty = PxAP()
    empty.update(scores, np.zeros((1, 2, 2)))
    assert np.isnan(empty.result()["pxap"])


def test_pxap_of_constant_map_is_the_positive_share():
    metric = PxAP()
    truth = np.zeros((1, 4, 5))
    truth[0, :, :2] = 1
    metric.update(np.full((1, 4, 5), 0.7), truth)
    assert metric.result()["pxap"] == pytest.approx(100 * 8 / 20)


def test_pxap_resizes_masks_with_nearest_neighbour():
    metric = PxAP(resize=(8, 8))
    truth = np.zeros((1, 4, 4))
    truth[0, :2] = 1
    metric.update(np.repeat(np.repeat(truth, 2, axis=1), 2, axis=2) * 0.5 + 0.25, truth)
    assert metric.result()["pxap"] == pytest.approx(100.0)
    assert metric.positive_hist.sum() == 32


# --- LocalizationAccuracy -----------------------------------------------------------------------

def test_localization_accuracy_golden():
    good, bad = [10, 10, 29, 29], [40, 40, 49, 49]
    gt = [[[10, 10, 29, 29]]] * 3
    boxes = torch.tensor([[good, bad, bad],     # right class, good box: top-1 and top-5
                          [bad, bad, good],     # right class third: top-5 only
                          [bad, good, good]])   # right class first but its box misses
    classes = torch.tensor([[3, 1, 2], [0, 1, 7], [5, 2, 1]])
    labels = torch.tensor([3, 7, 5])
    metric = LocalizationAccuracy(top_k=5)
    metric.update(boxes, classes, labels, gt, gt_known_boxes=torch.tensor([good, bad, good]))
    out = metric.result()
    assert out["top1_loc"] == pytest.approx(100 / 3) and out["top5_loc"] == pytest.approx(200 / 3)
    assert out["gt_known_loc"] == pytest.approx(200 / 3)
    assert out["top1_loc_error"] == pytest.approx(200 / 3)
    other = LocalizationAccuracy()
    other.update(boxes[:1], classes[:1], labels[:1], gt[:1])
    merged = metric.merge(other).result()
    assert merged["num_images"] == 4 and merged["top1_loc"] == 50.0
    assert merged["gt_known_loc"] == pytest.approx(200 / 3)  # the second batch had no GT-known boxes


def test_localization_accuracy_iou_boundary_is_inclusive():
    metric = LocalizationAccuracy(iou_threshold=0.5)
    metric.update(torch.tensor([[[0, 0, 4, 9]]]), torch.tensor([[1]]), torch.tensor([1]),
                  [[[0, 0, 9, 9]]])  # IoU exactly 0.5
    assert metric.result()["top1_loc"] == 100.0


def test_nan_maps_become_zeros_under_wsolevaluation():
    maps = np.stack([square_map(16, 2, 2, 6, 6), square_map(16, 2, 2, 6, 6)])
    maps[1, 0, 0] = np.nan
    prepared = prepare_maps(maps, "wsolevaluation", (16, 16))
    assert np.array_equal(prepared[1], np.zeros((16, 16))) and prepared[0].max() == 1.0
    with pytest.raises(InputError):
        prepare_maps(maps, "camkit")


@pytest.mark.parametrize("protocol", ["camkit", "wsolevaluation"])
def test_raw_maps_score_as_their_prepared_maps_and_a_refused_chunk_adds_nothing(protocol):
    """``update`` normalises while the kernel reads (no pass of its own): raw maps count as their
    ``prepare_maps`` output does; a bad map in a later chunk refuses the whole batch, named by
    its index in the batch, and leaves the counts as they were."""
    maps = 4 * smooth_maps(6, size=24, seed=3) - 1.5
    gt = [[[4, 4, 15, 18]]] * 6
    raw, prepared = (BoxAccuracy(TAUS, protocol=protocol, resize=(24, 24), chunk_size=2) for _ in range(2))
    raw.update(maps, gt)
    prepared.update(prepare_maps(maps, protocol, (24, 24)), gt)
    assert torch.equal(raw.counts(), prepared.counts())
    assert 0 < raw.correct_all.sum() < raw.correct_all.size * 6
    before = raw.counts().clone()
    broken = maps.copy()
    broken[5, 1, 1] = np.inf
    with pytest.raises(InputError, match=r"maps contain \+inf \(map 5\)"):
        raw.update(broken, gt)
    broken[5, 1, 1] = np.nan
    if protocol == "camkit":
        with pytest.raises(InputError, match="NaN"):
            raw.update(broken, gt)
    assert torch.equal(raw.counts(), before)


def test_camkit_protocol_matches_labelling_every_threshold():
    """Fast path vs a straightforward per-threshold reference (scipy.ndimage.label)."""
    maps = smooth_maps(5, size=36, coarse=7, seed=12)
    rng = np.random.default_rng(12)
    gt = [np.array([[x, y, x + w, y + h]]) for x, y, w, h in rng.integers(1, 18, size=(5, 4))]
    thresholds = np.arange(0, 1, 0.02)
    metric = BoxAccuracy(thresholds)
    prepared = prepare_maps(maps, "camkit")
    largest, every = metric.best_ious(prepared, gt)
    for i in range(5):
        for j, tau in enumerate(thresholds):
            labels, count = ndimage.label(prepared[i] > tau, np.ones((3, 3)))
            boxes = np.array([[s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1]
                              for s in ndimage.find_objects(labels)]).reshape(-1, 4)
            if count == 0:
                assert largest[i, j] == 0.0 and every[i, j] == 0.0
                continue
            sizes = np.bincount(labels.ravel())[1:]
            ties = np.flatnonzero(sizes == sizes.max())
            chosen = ties[np.lexsort((boxes[ties, 0], boxes[ties, 1]))[0]]
            assert largest[i, j] == pytest.approx(iou(boxes[chosen:chosen + 1], gt[i]).item())
            assert every[i, j] == pytest.approx(iou(boxes, gt[i]).max().item())


# --- shapes: the (B, K, ...) layout camkit.explain returns --------------------------------------

def test_box_accuracy_and_pxap_take_one_map_per_image_as_b_1_h_w():
    maps = smooth_maps(3, size=24)
    gt = [[[2, 3, 12, 15]], [[0, 0, 23, 23]], [[10, 10, 20, 20]]]
    masks = maps > 0.5
    flat, stacked = BoxAccuracy(TAUS), BoxAccuracy(TAUS)
    flat.update(maps, gt)
    stacked.update(torch.from_numpy(maps)[:, None], gt)
    assert torch.equal(flat.counts(), stacked.counts())
    assert 0 < flat.result()["max_box_acc_v2"] < 100  # a case that could differ
    pxap_flat, pxap_stacked = PxAP(TAUS), PxAP(TAUS)
    pxap_flat.update(maps, masks)
    pxap_stacked.update(maps[:, None], masks[:, None])
    assert torch.equal(pxap_flat.counts(), pxap_stacked.counts())
    with pytest.raises(InputError, match="K = 2 maps per image"):
        BoxAccuracy().update(np.stack([maps, maps], 1), gt)
    with pytest.raises(InputError, match="K = 3 maps per image"):
        PxAP().update(np.stack([maps] * 3, 1), masks)


def test_localization_accuracy_from_ious_equals_from_boxes():
    from camkit.localize import best_iou

    rng = np.random.default_rng(3)
    gt = [np.array([[4, 4, 14, 14]] + [[20, 2, 28, 9]] * (i % 2)) for i in range(8)]
    shift = rng.integers(-4, 5, (8, 3, 2)) * np.array([1, 2, 4])[None, :, None]   # class k: ±4·(1, 2, 4) px
    shift = shift[..., [0, 1, 0, 1]]                                              # moved, never reversed
    boxes = np.array([[4, 4, 14, 14]]) + shift                                     # (B, K, 4)
    labels = rng.integers(0, 3, 8)
    classes = rng.integers(0, 3, (8, 3))
    classes[::2, 0] = labels[::2]                                                # half the top-1 right
    from_boxes, from_ious = LocalizationAccuracy(top_k=2), LocalizationAccuracy(top_k=2)
    from_boxes.update(boxes, classes, labels, gt, gt_known_boxes=boxes[:, :1])   # (B, 1, 4)
    from_ious.update_ious(best_iou(boxes, gt), classes, labels, best_iou(boxes[:, 0], gt))
    assert torch.equal(from_boxes.counts(), from_ious.counts())
    localized = [iou(boxes[i, :1], gt[i]).max().item() >= 0.5 for i in range(8)]
    assert int(from_boxes.gt_known_correct) == sum(localized)
    assert 0 < sum(localized) < 8 and 0 < int(from_boxes.topk_correct) < 8


# --- refused input: reversed ground truth, infinite maps (issue 12, item 8) ---------------------

def test_reversed_ground_truth_box_is_refused_not_scored_zero():
    maps = np.stack([square_map(16, 2, 2, 8, 8)] * 2)
    gt = [np.array([[2, 2, 8, 8]]), np.array([[0, 0, 15, 15], [8, 2, 2, 8]])]  # image 1, box 1: x1 < x0
    for protocol in ("camkit", "wsolevaluation"):
        with pytest.raises(InputError, match=r"gt_boxes\[1\]\[1\] = \[8, 2, 2, 8\] is reversed"):
            BoxAccuracy(TAUS, protocol=protocol, resize=(16, 16)).update(maps, gt)
    loc = LocalizationAccuracy()
    with pytest.raises(InputError, match=r"gt_boxes\[1\]\[1\] = \[8, 2, 2, 8\] is reversed"):
        loc.update(torch.tensor([[[2, 2, 8, 8]], [[2, 2, 8, 8]]]), torch.tensor([[0], [0]]), torch.tensor([0, 0]), gt)
    with pytest.raises(InputError, match=r"gt_boxes\[0\]\[0\] = \[0, 0, -1, -1\] is reversed"):
        loc.update(torch.tensor([[[2, 2, 8, 8]]]), torch.tensor([[0]]), torch.tensor([0]), [[[0, 0, -1, -1]]])
    assert loc.num_images == 0  # nothing was counted


@pytest.mark.parametrize("protocol", ["camkit", "wsolevaluation"])
@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_maps_are_refused_by_every_metric(protocol, bad):
    maps = np.stack([square_map(16, 2, 2, 8, 8)] * 3)
    maps[2, 5, 5] = bad
    sign = "+inf" if bad > 0 else "-inf"
    with pytest.raises(InputError, match=rf"maps contain \{sign} \(map 2\)"):
        BoxAccuracy(TAUS, protocol=protocol, resize=(16, 16)).update(maps, [[[2, 2, 8, 8]]] * 3)
    with pytest.raises(InputError, match=rf"\{sign}"):
        PxAP(TAUS, protocol=protocol, resize=(16, 16)).update(maps, maps > 0.5)
    with pytest.raises(InputError, match=rf"\{sign}"):
        prepare_maps(maps, protocol, (16, 16))
