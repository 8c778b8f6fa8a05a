"""Localization with Augmented Grad-CAM vs its baselines on the shapes data set (shipped NiN).

GT-known Loc (box of the true class's map at 20 % of its max, IoU ≥ 0.5) and MaxBoxAccV2
(Choe et al.) for Grad-CAM (*single*), the *max* and *avg* baselines and the super-resolved map
with both solvers, on the same images and the same L transforms.

    python benchmarks/augmented_wsol.py [--images 96] [--L 32] [--batch 16]
"""
from __future__ import annotations

import argparse
import time

import torch

import camkit
from camkit.data import Shapes
from camkit.localize.metrics import BoxAccuracy, LocalizationAccuracy

VARIANTS = {
    "gradcam (single)": dict(method="gradcam"),
    "augmented max": dict(method="augmented-gradcam", baseline="max"),
    "augmented avg": dict(method="augmented-gradcam", baseline="avg"),
    "augmented subgradient": dict(method="augmented-gradcam", solver="subgradient"),
    "augmented primal-dual": dict(method="augmented-gradcam", solver="primal-dual"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--L", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    model = camkit.models.pretrained("nin-shapes")
    data = Shapes("val", size=64, length=args.images, seed=0)
    items = [data[i] for i in range(len(data))]
    print(f"{args.images} shapes val images (64²), nin-shapes, L = {args.L}")
    print(f"{'variant':24s} {'GT-known Loc':>12s} {'MaxBoxAccV2':>12s} {'s/image':>8s}")
    for name, options in VARIANTS.items():
        options = dict(options)
        method = options.pop("method")
        if method != "gradcam":
            options["L"] = args.L
        loc, box = LocalizationAccuracy(), BoxAccuracy()
        start = time.perf_counter()
        for first in range(0, len(items), args.batch):
            chunk = items[first:first + args.batch]
            images = torch.stack([item["image"] for item in chunk])
            labels = torch.tensor([item["label"] for item in chunk])
            gt = [item["boxes"].numpy() for item in chunk]
            e = camkit.explain(model, images, method=method, targets=labels, **options)
            boxes = e.boxes(threshold=0.2)
            loc.update(boxes, e.classes, labels, gt, gt_known_boxes=boxes[:, 0])
            box.update(e.maps[:, 0], gt)
        seconds = (time.perf_counter() - start) / len(items)
        print(f"{name:24s} {loc.result()['gt_known_loc']:12.1f} {box.result()['max_box_acc_v2']:12.1f} {seconds:8.3f}")


if __name__ == "__main__":
    main()
