"""WSOL metrics held as additive counts.

Every metric keeps integer counts (images seen, images localized per threshold, pixel score
histograms); ``update`` adds a batch, ``merge`` adds another metric's counts, ``state_dict`` /
``load_state_dict`` serialise them, and ``counts()`` / ``load_counts()`` expose all of them as one
flat int64 tensor for ``torch.distributed.all_reduce(..., op=SUM)``.  Ratios are only formed in
``result()``.

Shapes follow ``camkit.explain``: ``LocalizationAccuracy`` takes the ``(B, K, 4)`` boxes of the
``K`` explained classes (``explanation.boxes()``, best class first); ``BoxAccuracy`` and ``PxAP``
score **one map per image, the true class's**: ``(B, 1, H, W)`` as ``explain(model, images,
targets=labels).maps`` returns it (``(B, H, W)`` is accepted too); ``K > 1`` is an error.

Protocols for box metrics (``BoxAccuracy``):

* ``"camkit"``: float maps, a pixel is foreground at τ when ``m > τ · max m`` (after min-max
  normalisation, ``m > τ``), tight boxes, empty foreground → :data:`EMPTY_BOX` (IoU 0).
* ``"wsolevaluation"``: reproduces ``clovaai/wsolevaluation`` image for image: maps resized to
  224² (bicubic) and min-max normalised (NaN or constant → zeros), quantised
  ``q = uint8(255 · m)`` (truncation), foreground ``q > int(τ · max q)``, 8-connected regions,
  every contour OpenCV's ``RETR_TREE`` returns (outer borders *and* hole borders) for
  MaxBoxAccV2, far corner one past the region (``x1 = x_max + 1`` clipped to ``W - 1``, same for
  y), empty foreground → ``[0, 0, 0, 0]``.  Known difference: the reference picks the "largest"
  contour by polygon area (``cv2.contourArea``), camkit by pixel count; they disagree only between
  near-equal components (see ``benchmarks/localize_speed.py`` for the measured effect).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from camkit.errors import CamkitError, InputError
from camkit.localize.boxes import EMPTY_BOX, box_array, check_finite, ground_truth, padded_best_iou
from camkit.localize.component_tree import cell_ious, refused, sweep_rows
from camkit.localize.counts import Counts
from camkit.maps import resize_maps

__all__ = ["LocalizationAccuracy", "BoxAccuracy", "PxAP", "prepare_maps", "default_thresholds"]

PROTOCOLS = ("camkit", "wsolevaluation")
_WSOL_SIZE = (224, 224)
_REFERENCE_EMPTY_BOX = (0, 0, 0, 0)


def default_thresholds(step: float = 0.01) -> np.ndarray:
    """The τ grid ``arange(0, 1, step)`` (as wsolevaluation builds it)."""
    return np.arange(0, 1, step)


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return protocol


def _as_map_batch(maps, name: str = "maps") -> np.ndarray:
    """One map per image as ``(B, H, W)`` float64 numpy, from ``(B, 1, H, W)`` (what
    ``camkit.explain(..., targets=labels)`` returns), ``(B, H, W)`` or ``(H, W)``, a tensor (on
    any device) or an array; float64 arrays are not copied."""
    if isinstance(maps, torch.Tensor):
        if maps.is_complex() or maps.dtype == torch.bool:
            raise InputError(f"{name} must be real numbers, got {maps.dtype}")
        maps = maps.detach().cpu().to(torch.float64).numpy()
    maps = np.asarray(maps)
    if maps.dtype.kind not in "iuf":
        raise InputError(f"{name} must be real numbers, got {maps.dtype}")
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim == 4 and maps.shape[1] != 1:
        raise InputError(
            f"{name} hold K = {maps.shape[1]} maps per image {tuple(maps.shape)}; these metrics score one "
            "map per image, the true class's: explain(model, images, targets=labels) gives (B, 1, H, W), "
            "or pick one map per image from top-k maps")
    if maps.ndim == 4:
        maps = maps[:, 0]
    if maps.ndim != 3:
        raise InputError(f"{name} must be (B, 1, H, W), (B, H, W) or (H, W), got {tuple(maps.shape)}")
    return maps.astype(np.float64, copy=False)


def prepare_maps(maps, protocol: str = "camkit", resize=None) -> np.ndarray:
    """Maps ``(B, 1, H, W)`` or ``(B, H, W)`` as the protocol scores them, ``(B, H, W)``: resized
    (bicubic, ``resize`` = (H, W); the
    wsolevaluation protocol defaults to 224²) then min-max normalised per map, float64 numpy.

    NaN maps raise :class:`InputError` under ``"camkit"``; wsolevaluation turns them to zeros, as
    the reference does.  ±inf raises under both (the reference would score garbage).
    """
    return _min_max(_at_scoring_size(maps, protocol, resize), nan_to_zero=protocol == "wsolevaluation")


def _at_scoring_size(maps, protocol: str, resize) -> np.ndarray:
    """:func:`prepare_maps` up to the normalisation: ``(B, H, W)`` float64 numpy, resized."""
    _check_protocol(protocol)
    maps = _as_map_batch(maps)
    if resize is None and protocol == "wsolevaluation":
        resize = _WSOL_SIZE
    if resize is not None and maps.shape[-2:] != tuple(resize):  # torch only where there is work
        maps = resize_maps(torch.from_numpy(np.ascontiguousarray(maps)), tuple(resize), mode="bicubic").numpy()
    return maps  # NaN stays NaN


def _min_max(maps: np.ndarray, nan_to_zero: bool) -> np.ndarray:
    """Per-map ``m -= min; m /= max`` (constant maps -> zeros), as ``camkit.maps.normalize_maps``
    and the reference compute it, skipping the passes that would not change a value.  A map with
    a NaN (its min or max is NaN) becomes zeros or raises :class:`InputError`; ±inf always raises."""
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    broken = np.isnan(low) | np.isnan(high)
    if np.isinf(low).any() or np.isinf(high).any():  # NaN wins: the reference zeroes such a map
        check_finite(np.where(broken, 0.0, maps), nan=False)
    if broken.any():
        if not nan_to_zero:
            raise InputError("maps contain NaN")
        maps = np.where(broken, 0.0, maps)
        low, high = np.where(broken, 0.0, low), np.where(broken, 0.0, high)
    if np.all(low == 0) and np.all(high == 1):
        return maps
    maps = maps - low
    span = high - low
    return np.divide(maps, span, out=np.zeros_like(maps), where=span > 0)


def _ground_truth_batch(gt_boxes, batch: int) -> np.ndarray:
    """One ground-truth set per image (a list of ``(N_i, 4)``, or ``(B, 4)`` / ``(B, N, 4)``), validated
    (every image has a box, none is reversed) and padded: ``(B, G, 4)`` int64, see
    :func:`camkit.localize.boxes.ground_truth`."""
    if isinstance(gt_boxes, (torch.Tensor, np.ndarray)):
        array = gt_boxes.detach().cpu().numpy() if isinstance(gt_boxes, torch.Tensor) else gt_boxes
        if array.ndim == 2:
            array = array[:, None]
        gt_boxes = list(array)
    if len(gt_boxes) != batch:
        raise InputError(f"got {len(gt_boxes)} ground-truth box lists for {batch} maps")
    gt_boxes = [_numpy(b) for b in gt_boxes]
    for i, b in enumerate(gt_boxes):
        if b.size == 0:
            raise InputError(f"image {i} has no ground-truth box")
    return ground_truth(gt_boxes)


class LocalizationAccuracy(Counts):
    """Top-1 Loc, Top-5 Loc and GT-known Loc at a fixed map threshold (CAM / Grad-CAM papers).

    An image is localized by a box when its IoU with any ground-truth box is ``>= iou_threshold``.
    Top-1 Loc: top-1 class correct and its box localizes.  Top-k Loc: some class among the top k
    is correct and its box localizes.  GT-known Loc: the box from the true class's map localizes.
    Counts: ``num_images``, ``top1_correct``, ``topk_correct``, ``gt_known_images``,
    ``gt_known_correct``.
    """

    _fields = ("num_images", "top1_correct", "topk_correct", "gt_known_images", "gt_known_correct")

    def __init__(self, iou_threshold: float = 0.5, top_k: int = 5):
        self.iou_threshold = float(iou_threshold)
        self.top_k = int(top_k)
        self.num_images = self.top1_correct = self.topk_correct = np.int64(0)
        self.gt_known_images = self.gt_known_correct = np.int64(0)

    def _config(self) -> tuple:
        return (self.iou_threshold, self.top_k)

    def update(self, boxes, classes, labels, gt_boxes, gt_known_boxes=None) -> None:
        """Add a batch.  ``boxes`` ``(B, K, 4)``: box of each explained class, best first
        (``explanation.boxes()``); ``classes`` ``(B, K)``: those classes; ``labels`` ``(B,)``;
        ``gt_boxes``: one ``(N_i, 4)`` set per image; ``gt_known_boxes`` (optional) ``(B, 1, 4)``
        or ``(B, 4)``: the box of the true class's map (``explain(..., targets=labels).boxes()``)."""
        labels, boxes = _numpy(labels).reshape(-1), _numpy(boxes)
        if boxes.ndim == 2:
            boxes = boxes[:, None]
        if boxes.ndim != 3 or boxes.shape[2] != 4:
            raise InputError(f"boxes must be (B, K, 4), got {boxes.shape}")
        boxes = box_array(boxes.reshape(-1, 4), "boxes").reshape(boxes.shape)
        gt = _ground_truth_batch(gt_boxes, len(labels))
        known = None
        if gt_known_boxes is not None:
            known = box_array(_numpy(gt_known_boxes).reshape(-1, 4), "gt_known_boxes")
            if known.shape[0] != len(labels):
                raise InputError(f"gt_known_boxes has {known.shape[0]} boxes for {len(labels)} images: "
                                 "give one box per image, (B, 4) or (B, 1, 4)")
            known = padded_best_iou(known, gt)
        self.update_ious(padded_best_iou(boxes, gt), classes, labels, known)

    def update_ious(self, ious, classes, labels, gt_known_ious=None) -> None:
        """Add a batch from IoUs already computed (:func:`camkit.localize.best_iou`):
        ``ious`` ``(B, K)``, the best IoU of each explained class's box with the image's
        ground truth; ``classes`` ``(B, K)``; ``labels`` ``(B,)``; ``gt_known_ious`` ``(B,)``."""
        ious, classes = np.asarray(ious, np.float64), _numpy(classes)
        labels = _numpy(labels).reshape(-1)
        if ious.ndim == 1:
            ious = ious[:, None]
        if classes.ndim == 1:
            classes = classes[:, None]
        if ious.shape != classes.shape or ious.shape[0] != labels.shape[0]:
            raise InputError(f"boxes {ious.shape + (4,)}, classes {classes.shape} and labels "
                             f"{labels.shape} disagree: expected (B, K, 4), (B, K), (B,)")
        k = min(self.top_k, classes.shape[1])
        hit = (ious[:, :k] >= self.iou_threshold) & (classes[:, :k] == labels[:, None])
        self.top1_correct += int(hit[:, 0].sum()) if k else 0
        self.topk_correct += int(hit.any(axis=1).sum())
        self.num_images += labels.shape[0]
        if gt_known_ious is not None:
            known = np.asarray(gt_known_ious, np.float64).reshape(-1)
            if known.shape[0] != labels.shape[0]:
                raise InputError(f"{known.shape[0]} GT-known IoUs for {labels.shape[0]} images")
            self.gt_known_correct += int((known >= self.iou_threshold).sum())
            self.gt_known_images += labels.shape[0]

    def result(self) -> dict:
        """Percentages ``top1_loc``, ``top5_loc`` (top-k), ``gt_known_loc`` (NaN without GT-known
        updates) and the matching errors ``100 - accuracy``."""
        if self.num_images == 0:
            raise CamkitError("LocalizationAccuracy.result() before any update")
        top1 = float(100.0 * self.top1_correct / self.num_images)
        topk = float(100.0 * self.topk_correct / self.num_images)
        known = (float(100.0 * self.gt_known_correct / self.gt_known_images)
                 if self.gt_known_images else float("nan"))
        return {"top1_loc": top1, "top5_loc": topk, "gt_known_loc": known,
                "top1_loc_error": 100.0 - top1, "top5_loc_error": 100.0 - topk,
                "gt_known_loc_error": 100.0 - known, "num_images": int(self.num_images)}


class BoxAccuracy(Counts):
    """BoxAcc(τ, δ) over a threshold grid, MaxBoxAcc and MaxBoxAccV2 (Choe et al., CVPR 2020).

    BoxAcc(τ, δ) = share of images whose best box at τ has IoU ≥ δ with some GT box.
    ``max_box_acc`` = max_τ BoxAcc(τ, 0.5) with the largest component's box;
    ``max_box_acc_v2`` = mean over ``iou_thresholds`` of max_τ BoxAcc(τ, δ), with the best of all
    components' boxes (``all_components=True``, the paper's V2) or the largest one's.

    Counts: ``num_images`` and ``correct_largest`` / ``correct_all`` ``(len(δ), len(τ))``.
    Every component at every τ comes from one compiled sweep per batch and tree
    (:func:`camkit.localize.component_tree.sweep_rows`), not one labelling per τ, and their IoUs
    from one compiled pass over its rows (:func:`camkit.localize.component_tree.cell_ious`).
    GT boxes must be in the coordinates of the scored maps (e.g. 224² for wsolevaluation).
    """

    _fields = ("num_images", "correct_largest", "correct_all")

    def __init__(self, thresholds: Sequence[float] | np.ndarray | None = None,
                 iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7), all_components: bool = True,
                 protocol: str = "camkit", resize: tuple[int, int] | None = None,
                 connectivity: int = 8, chunk_size: int = 8):
        self.protocol = _check_protocol(protocol)
        thresholds = default_thresholds() if thresholds is None else np.asarray(thresholds,
                                                                                 np.float64)
        if thresholds.ndim != 1 or thresholds.size == 0 or np.any(np.diff(thresholds) <= 0):
            raise InputError("thresholds must be a non-empty increasing 1-D sequence")
        if thresholds[0] < 0 or thresholds[-1] >= 1:
            raise InputError("thresholds must lie in [0, 1)")
        self.thresholds = thresholds
        self.iou_thresholds = tuple(float(d) for d in iou_thresholds)
        if not self.iou_thresholds or not all(0 < d <= 1 for d in self.iou_thresholds):
            raise InputError("iou_thresholds must be values in (0, 1]")
        self._deltas = np.array(sorted(set(self.iou_thresholds) | {0.5}))
        self.all_components = bool(all_components)
        if connectivity not in (4, 8):
            raise InputError(f"connectivity must be 4 or 8, got {connectivity}")
        if protocol == "wsolevaluation" and connectivity != 8:
            raise InputError("the wsolevaluation protocol uses 8-connected regions")
        self.connectivity = connectivity
        self.resize = resize
        self.chunk_size = max(1, int(chunk_size))
        self.num_images = np.int64(0)
        self.correct_largest = np.zeros((self._deltas.size, thresholds.size), np.int64)
        self.correct_all = np.zeros((self._deltas.size, thresholds.size), np.int64)

    def _config(self) -> tuple:
        return (self.protocol, tuple(self.thresholds.tolist()), tuple(self._deltas.tolist()),
                self.all_components, self.connectivity)

    def update(self, maps, gt_boxes) -> None:
        """Add a batch: ``maps`` ``(B, 1, H, W)`` (one map per image, the true class's, as
        ``explain(..., targets=labels).maps``) or ``(B, H, W)``, raw or in [0, 1] (resized and
        min-max normalised as :func:`prepare_maps` does, by the kernel as it reads them); ``gt_boxes``
        one ``(N_i, 4)`` box set per image.  A refused batch (NaN, ±inf, a bad box) adds nothing."""
        maps = _at_scoring_size(maps, self.protocol, self.resize)
        gt = _ground_truth_batch(gt_boxes, maps.shape[0])
        nan_to_zero = self.protocol == "wsolevaluation"
        correct_largest, correct_all = np.zeros_like(self.correct_largest), np.zeros_like(self.correct_all)
        for start in range(0, maps.shape[0], self.chunk_size):
            stop = start + self.chunk_size
            best_largest, best_all, status = self._best_ious(maps[start:stop], gt[start:stop], normalise=True)
            if refused(status, nan_to_zero):
                _min_max(maps, nan_to_zero)  # raises prepare_maps' error, naming the map
                raise CamkitError("the kernel flagged a map that prepare_maps accepts")
            correct_largest += (best_largest[None] >= self._deltas[:, None, None]).sum(axis=1)
            correct_all += (best_all[None] >= self._deltas[:, None, None]).sum(axis=1)
        self.correct_largest += correct_largest
        self.correct_all += correct_all
        self.num_images += maps.shape[0]

    def best_ious(self, prepared: np.ndarray, gt: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per image and τ: IoU of the largest component's box, and the best IoU over all boxes
        (``(B, len(τ))`` each), for maps already prepared by :func:`prepare_maps`."""
        return self._best_ious(prepared, _ground_truth_batch(gt, prepared.shape[0]))[:2]

    def _best_ious(self, maps: np.ndarray, gt: np.ndarray,
                   normalise: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`best_ious` with ``gt`` ``(B, G, 4)`` already validated and padded, and each map's
        status (:func:`camkit.localize.component_tree.sweep_rows`); ``normalise``: ``maps`` are at
        the scoring size but not yet min-max normalised."""
        batch, height, width = maps.shape
        if self.protocol == "camkit":
            # level = #{k : τ_k < m}, so that m > τ_k exactly when k < level
            rows, largest, _, _, status = sweep_rows(maps, "thresholds", self.thresholds.size, self.connectivity,
                                                     thresholds=self.thresholds, normalise=normalise)
            columns = np.broadcast_to(np.arange(self.thresholds.size), (batch, self.thresholds.size))
            return (*cell_ious(rows, largest, gt, columns, EMPTY_BOX, (height, width)), status)
        # q = uint8(255 m), the reference's map; foreground at τ: q > int(τ · max q)
        # OpenCV's contour tree also boxes the border of every hole (all components only): a
        # 4-connected component of {q <= k} = {255 - q > 254 - k} that does not touch the image
        # border, traced on the foreground pixels one pixel outside it on every side.
        rows, largest, top, hole_rows, status = sweep_rows(maps, "uint8", 256, self.connectivity,
                                                           holes=self.all_components, normalise=normalise)
        columns = np.floor(self.thresholds[None, :] * top[:, None]).astype(np.int64)
        # The reference's box ends at x + w (one past the region), clipped to the map.
        return (*cell_ious(rows, largest, gt, columns, _REFERENCE_EMPTY_BOX, (height, width), far_corner=True,
                           hole_rows=hole_rows, hole_flip=254), status)

    def result(self) -> dict:
        """Percentages: ``max_box_acc``, ``max_box_acc_v2``, ``box_acc`` (dict δ → curve over τ
        used by V2), ``box_acc_largest`` / ``box_acc_all`` ``(len(δ), len(τ))`` arrays,
        ``best_threshold`` (τ of MaxBoxAcc), ``best_thresholds_v2`` (dict δ → τ)."""
        if self.num_images == 0:
            raise CamkitError("BoxAccuracy.result() before any update")
        largest = 100.0 * self.correct_largest / self.num_images
        every = 100.0 * self.correct_all / self.num_images
        curves = every if self.all_components else largest
        half = int(np.flatnonzero(self._deltas == 0.5)[0])
        rows = [int(np.flatnonzero(self._deltas == d)[0]) for d in self.iou_thresholds]
        return {
            "max_box_acc": float(largest[half].max()),
            "max_box_acc_v2": float(np.mean([curves[r].max() for r in rows])),
            "max_box_acc_per_iou": {d: float(curves[r].max()) for d, r in zip(self.iou_thresholds, rows, strict=True)},
            "box_acc": {d: curves[r].copy() for d, r in zip(self.iou_thresholds, rows, strict=True)},
            "box_acc_largest": largest[rows], "box_acc_all": every[rows],
            "best_threshold": float(self.thresholds[int(np.argmax(largest[half]))]),
            "best_thresholds_v2": {d: float(self.thresholds[int(np.argmax(curves[r]))])
                                   for d, r in zip(self.iou_thresholds, rows, strict=True)},
            "thresholds": self.thresholds.copy(), "iou_thresholds": self.iou_thresholds,
            "num_images": int(self.num_images),
        }


class PxAP(Counts):
    """Pixel average precision of maps against GT masks (Choe et al., CVPR 2020).

    Scores of GT-foreground and GT-background pixels (ignored pixels left out) are counted in
    histograms with bin edges ``τ_0 … τ_{n-1}, 1, 2, 3``; with ``tp(τ_i)``/``fp(τ_i)`` the pixels
    scoring ``>= τ_i``, ``PxAP = Σ_i precision_i (recall_i - recall_{i-1})`` over the thresholds
    from high to low (wsolevaluation's ``MaskEvaluator``).  Counts: ``num_images``,
    ``positive_hist`` and ``negative_hist``.
    """

    _fields = ("num_images", "positive_hist", "negative_hist")

    def __init__(self, thresholds: Sequence[float] | np.ndarray | None = None,
                 protocol: str = "camkit", resize: tuple[int, int] | None = None):
        self.protocol = _check_protocol(protocol)
        thresholds = default_thresholds() if thresholds is None else np.asarray(thresholds,
                                                                                 np.float64)
        if thresholds.ndim != 1 or thresholds.size == 0 or np.any(np.diff(thresholds) <= 0):
            raise InputError("thresholds must be a non-empty increasing 1-D sequence")
        self.thresholds = thresholds
        self.edges = np.append(thresholds, [1.0, 2.0, 3.0])
        self.resize = resize
        self.num_images = np.int64(0)
        self.positive_hist = np.zeros(self.edges.size - 1, np.int64)
        self.negative_hist = np.zeros(self.edges.size - 1, np.int64)

    def _config(self) -> tuple:
        return (self.protocol, tuple(self.thresholds.tolist()))

    def update(self, maps, gt_masks, ignore_masks=None) -> None:
        """``maps`` ``(B, 1, H, W)`` (the true class's map of each image) or ``(B, H, W)``;
        ``gt_masks`` ``(B, H', W')`` or ``(B, 1, H', W')`` (foreground where > 0.5);
        ``ignore_masks`` same shape or None (ignored where > 0.5 and not foreground).  Masks are
        resized to the scored map size with nearest neighbour."""
        prepared = prepare_maps(maps, self.protocol, self.resize)
        size = prepared.shape[-2:]
        positive = self._mask(gt_masks, prepared.shape[0], size, "gt_masks")
        ignore = (self._mask(ignore_masks, prepared.shape[0], size, "ignore_masks") & ~positive
                  if ignore_masks is not None else np.zeros_like(positive))
        negative = ~positive & ~ignore
        self.positive_hist += self._histogram(prepared[positive])
        self.negative_hist += self._histogram(prepared[negative])
        self.num_images += prepared.shape[0]

    def _histogram(self, scores: np.ndarray) -> np.ndarray:
        return np.histogram(scores, bins=self.edges)[0].astype(np.int64)

    @staticmethod
    def _mask(masks, batch, size, name) -> np.ndarray:
        masks = torch.from_numpy(_as_map_batch(torch.as_tensor(masks).to(torch.float64), name))
        if masks.shape[0] != batch:
            raise InputError(f"{name} has {masks.shape[0]} masks for {batch} maps")
        if tuple(masks.shape[-2:]) != tuple(size):
            masks = torch.nn.functional.interpolate(masks[:, None], size=tuple(size),
                                                    mode="nearest")[:, 0]
        return (masks > 0.5).numpy()

    def result(self) -> dict:
        """``pxap`` in percent (NaN when no GT-foreground pixel was seen), ``precision`` and
        ``recall`` curves (thresholds from high to low), ``num_images``."""
        if self.num_images == 0:
            raise CamkitError("PxAP.result() before any update")
        tp = np.cumsum(self.positive_hist[::-1])
        fp = np.cumsum(self.negative_hist[::-1])
        positives = self.positive_hist.sum()
        if positives == 0:
            return {"pxap": float("nan"), "precision": np.full(tp.size, np.nan),
                    "recall": np.full(tp.size, np.nan), "num_images": int(self.num_images)}
        predicted = tp + fp
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = tp / positives
        pxap = float(100.0 * (precision[1:] * np.diff(recall))[predicted[1:] > 0].sum())
        return {"pxap": pxap, "precision": precision, "recall": recall,
                "num_images": int(self.num_images)}
