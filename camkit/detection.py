"""Explaining object detectors: the :class:`Detection` target and the geometry of a detector's input.

torchvision's detectors (Faster R-CNN, RetinaNet, FCOS, SSD …) return, in eval mode, one dict per
image with ``boxes`` (N, 4) ``x0, y0, x1, y1`` in input pixels, ``labels`` (N,) and ``scores`` (N,).
Their ``transform`` resizes each image and pads the batch at the bottom and right; a tapped
backbone map covers the padded batch, so :func:`input_extent` records which part of it the image
fills, and the explainer maps the grid back onto the image with it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from camkit.errors import InputError
from camkit.targets import ModelOutput, ResolvedTargets, is_detection_output

__all__ = ["Detection", "input_extent"]

BoxesSpec = torch.Tensor | Sequence[Sequence[float]] | Sequence[torch.Tensor] | None
LabelsSpec = int | torch.Tensor | Sequence[int] | Sequence[torch.Tensor] | None


class Detection:
    r"""The score of a detector's detections that match given boxes and labels, per image.

    .. math:: S_b = \sum_j s_b\big(m_b(j)\big), \qquad
              m_b(j) = \arg\max_{d:\ \ell_d = \ell_j,\ \mathrm{IoU}(d, j) \ge \tau} \mathrm{IoU}(d, j)

    for each target box ``j`` of image ``b``: the detection of the same label (any label when
    ``labels`` is None) with the highest IoU, if it reaches ``iou`` (τ); ``s`` is the detector's own
    score (a probability for Faster R-CNN and SSD, a sigmoid for RetinaNet, √(class · centerness)
    for FCOS).  A target box that no detection matches adds 0: an image with no match has score 0
    and an all-zero map.

    ``boxes``: (N, 4) ``x0, y0, x1, y1`` in input pixels for every image, or a sequence of B such
    arrays (one per image).  ``labels``: an int, (N,), or a sequence of B label arrays.  Without
    ``boxes``, each image's ``top`` highest-scoring detections of the first pass become its target
    boxes (with their labels), and every later pass (masked copies for Score-CAM, noisy copies …)
    is scored on the detections that match them.  ``classes`` of the explanation are each image's
    target label, or -1 where its boxes carry several labels (or none).

    >>> e = camkit.explain(detector, images, layer="backbone.body.layer4",
    ...                    targets=camkit.Detection(boxes=[[10, 20, 80, 90]], labels=[3]))  # doctest: +SKIP
    """

    def __init__(self, boxes: BoxesSpec = None, labels: LabelsSpec = None, iou: float = 0.5, top: int = 1):
        if not isinstance(iou, (int, float)) or isinstance(iou, bool) or not 0 < iou <= 1:
            raise InputError(f"Detection iou must be a number in (0, 1], got {iou!r}")
        if not isinstance(top, int) or isinstance(top, bool) or top < 1:
            raise InputError(f"Detection top must be a positive int, got {top!r}")
        if boxes is None and labels is not None:
            raise InputError("Detection labels need boxes: give boxes=..., or neither for the top detections")
        self.boxes, self.labels, self.iou, self.top = boxes, labels, float(iou), top
        self._bound: tuple[list[torch.Tensor], list[torch.Tensor | None]] | None = None

    def resolve(self, output: ModelOutput, top_k: int | None) -> ResolvedTargets:
        """Fix each image's target boxes (given, or its top detections here) and their classes (B, 1)."""
        if top_k is not None:
            raise InputError("top_k does not apply to detections: use targets=camkit.Detection(top=k)")
        detections = _detections(output)
        labels: list[torch.Tensor | None]
        if self.boxes is None:
            best = [d["scores"].argsort(descending=True)[: self.top] for d in detections]
            boxes = [d["boxes"][order] for d, order in zip(detections, best, strict=True)]
            labels = [d["labels"][order] if "labels" in d else None for d, order in zip(detections, best, strict=True)]
        else:
            boxes = _per_image_boxes(self.boxes, len(detections))
            labels = _per_image_labels(self.labels, boxes)
        bound = Detection(iou=self.iou)
        bound._bound = ([b.detach().float() for b in boxes], [None if lb is None else lb.detach() for lb in labels])
        device = detections[0]["scores"].device
        classes = torch.tensor([_single_label(lb) for lb in labels], dtype=torch.long, device=device)[:, None]
        return ResolvedTargets(classes, lambda out: bound(out)[:, None])

    def __call__(self, output: ModelOutput) -> torch.Tensor:
        """Scores (B,) of ``output``'s detections matching the target boxes (bound by :meth:`resolve`)."""
        detections = _detections(output)
        if self._bound is None:
            return self.resolve(output, None).scorer(output)[:, 0]
        boxes, labels = self._bound
        if len(boxes) != len(detections):
            raise InputError(f"Detection targets were fixed for {len(boxes)} images, the output has {len(detections)}")
        matched = [_matched_score(d, b.to(d["boxes"].device), lb, self.iou)
                   for d, b, lb in zip(detections, boxes, labels, strict=True)]
        return torch.stack(matched).float()

    def __repr__(self) -> str:
        given = "top detections" if self.boxes is None else "given boxes"
        return f"Detection({given}, iou={self.iou}, top={self.top})"


def _detections(output: ModelOutput) -> Sequence[dict[str, torch.Tensor]]:
    if not is_detection_output(output):
        raise InputError("Detection targets need a detector's output: a list with one dict of 'boxes', 'labels' "
                         "and 'scores' per image (torchvision detection models in eval mode)")
    return output


def _matched_score(detections: dict[str, torch.Tensor], boxes: torch.Tensor, labels: torch.Tensor | None,
                   iou: float) -> torch.Tensor:
    """Σ over target boxes of the score of their best-IoU detection of the same label (0 when none)."""
    scores = detections["scores"]
    total = scores[:0].sum()  # 0, but on the graph: an image without a match still backpropagates
    if boxes.numel() == 0 or scores.numel() == 0:
        return total
    from torchvision.ops import box_iou  # torchvision is imported only when a detector is explained

    found = detections["boxes"].detach().float()
    overlap = box_iou(boxes, found).nan_to_num(0.0)  # (N targets, M detections); 0/0 for empty boxes
    overlap = torch.where((boxes[:, None] == found[None]).all(-1), torch.ones_like(overlap), overlap)
    valid = overlap >= iou
    if labels is not None and "labels" in detections:
        valid &= labels.to(detections["labels"].device)[:, None] == detections["labels"][None, :]
    overlap = torch.where(valid, overlap, torch.full_like(overlap, -1.0))
    best = overlap.argmax(1)
    matched = valid.gather(1, best[:, None])[:, 0]
    return total + scores[best[matched]].sum()


def _as_boxes(value: object, what: str) -> torch.Tensor:
    try:
        boxes = torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError) as error:
        raise InputError(f"{what} must be an (N, 4) array of x0, y0, x1, y1: {error}") from None
    if boxes.numel() == 0:
        return boxes.reshape(0, 4)
    if boxes.dim() == 1:
        boxes = boxes[None]
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise InputError(f"{what} must be (N, 4) x0, y0, x1, y1, got shape {tuple(boxes.shape)}")
    if not bool(torch.isfinite(boxes).all()):
        raise InputError(f"{what} contain NaN or Inf")
    if bool((boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any()):
        raise InputError(f"{what} must have x1 ≥ x0 and y1 ≥ y0, got {boxes.tolist()}")
    return boxes


def _per_image_boxes(boxes: object, batch: int) -> list[torch.Tensor]:
    """One (N, 4) array for every image, or a sequence of B of them."""
    per_image = isinstance(boxes, (list, tuple)) and len(boxes) > 0 and (
        isinstance(boxes[0], torch.Tensor) and boxes[0].dim() == 2
        or isinstance(boxes[0], (list, tuple)) and len(boxes[0]) > 0 and isinstance(boxes[0][0], (list, tuple))
    )
    if not per_image:
        shared = _as_boxes(boxes, "Detection boxes")
        return [shared] * batch
    assert isinstance(boxes, (list, tuple))
    if len(boxes) != batch:
        raise InputError(f"Detection got boxes for {len(boxes)} images, the batch has {batch}")
    return [_as_boxes(b, f"Detection boxes of image {i}") for i, b in enumerate(boxes)]


def _per_image_labels(labels: object, boxes: list[torch.Tensor]) -> list[torch.Tensor | None]:
    if labels is None:
        return [None] * len(boxes)
    if isinstance(labels, (list, tuple)) and len(labels) == len(boxes) and any(
            isinstance(x, (torch.Tensor, list, tuple)) for x in labels):
        per_image = [torch.as_tensor(x).reshape(-1) for x in labels]
    else:
        shared = torch.as_tensor(labels).reshape(-1)
        per_image = [shared] * len(boxes)
    for i, (lb, b) in enumerate(zip(per_image, boxes, strict=True)):
        if lb.is_floating_point() or lb.dtype == torch.bool:
            raise InputError(f"Detection labels must be integers, got dtype {lb.dtype}")
        if lb.numel() == 1 and b.shape[0] > 1:
            per_image[i] = lb.expand(b.shape[0])
        elif lb.numel() != b.shape[0]:
            raise InputError(f"Detection got {lb.numel()} labels for {b.shape[0]} boxes of image {i}")
    return [lb.long() for lb in per_image]


def _single_label(labels: torch.Tensor | None) -> int:
    if labels is None or labels.numel() == 0 or bool((labels != labels[0]).any()):
        return -1
    return int(labels[0])


@contextlib.contextmanager
def input_extent(model: nn.Module) -> Iterator[list[tuple[float, ...]]]:
    """Record, during a forward, the fraction of the padded batch (height, width) that the images fill.

    For a model whose ``transform`` returns an ``ImageList`` (torchvision's detectors), the list
    yielded receives ``(h / H_pad, w / W_pad)``; otherwise it stays empty (the grid is the image).
    """
    extents: list[tuple[float, ...]] = []
    transform = getattr(model, "transform", None)
    if not isinstance(transform, nn.Module):
        yield extents
        return

    def hook(module: nn.Module, inputs: object, output: object) -> None:
        image_list = output[0] if isinstance(output, tuple) else output
        sizes, tensors = getattr(image_list, "image_sizes", None), getattr(image_list, "tensors", None)
        if sizes and isinstance(tensors, torch.Tensor):
            height, width = tensors.shape[-2:]
            extents.append((sizes[0][0] / height, sizes[0][1] / width))

    handle = transform.register_forward_hook(hook)
    try:
        yield extents
    finally:
        handle.remove()
