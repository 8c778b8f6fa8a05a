"""Weakly-supervised localization: boxes and masks from maps, box IoU, and WSOL metrics.

    >>> import camkit
    >>> camkit.localize.boxes(maps, threshold=0.2)           # (..., 4) largest component's box
    >>> camkit.localize.iou([[1, 2, 5, 6]], [[3, 1, 4, 5]])   # tensor([[8/27]])
    >>> acc = camkit.localize.BoxAccuracy(protocol="wsolevaluation")
    >>> acc.update(maps, gt_boxes); acc.result()["max_box_acc_v2"]

Boxes are ``x0, y0, x1, y1`` in inclusive pixel coordinates (IoU with the +1 convention).
Metrics keep additive counts: ``merge`` them across batches or processes.
"""
from camkit.localize.boxes import (
                                   EMPTY_BOX,
                                   best_iou,
                                   box_array,
                                   box_iou,
                                   boxes,
                                   component_boxes,
                                   iou,
                                   largest_box_array,
                                   largest_component_box,
                                   masks,
                                   nonempty,
)
from camkit.localize.component_tree import ComponentTable, superlevel_components
from camkit.localize.counts import Counts
from camkit.localize.metrics import BoxAccuracy, LocalizationAccuracy, PxAP, default_thresholds, prepare_maps

__all__ = [
    "EMPTY_BOX", "boxes", "masks", "iou", "best_iou", "box_iou", "component_boxes", "largest_component_box",
    "largest_box_array", "box_array", "nonempty", "superlevel_components", "ComponentTable", "Counts",
    "BoxAccuracy", "LocalizationAccuracy", "PxAP", "prepare_maps", "default_thresholds",
]
