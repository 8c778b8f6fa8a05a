"""Weakly-supervised localization: boxes and masks from maps, box IoU, and WSOL metrics.

    >>> import torch, camkit
    >>> maps = torch.zeros(1, 1, 8, 8); maps[0, 0, 2:5, 3:7] = 1.0    # (B, K, H, W)
    >>> camkit.localize.boxes(maps, threshold=0.2)           # (B, K, 4) largest component's box
    tensor([[[3, 2, 6, 4]]])
    >>> camkit.localize.iou([[1, 2, 5, 6]], [[3, 1, 4, 5]])   # 8/27
    tensor([[0.2963]], dtype=torch.float64)
    >>> acc = camkit.localize.BoxAccuracy()                  # protocol="wsolevaluation": 224² maps
    >>> acc.update(maps, [[[3, 2, 6, 4]]]); acc.result()["max_box_acc_v2"]
    100.0

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
