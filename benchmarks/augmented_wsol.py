"""The benchmark that decides: Augmented Grad-CAM against its baselines on the shapes val set.

For each shipped model (``coarsenet-shapes``: 7×7 maps of 224² images, the paper's regime;
``nin-shapes``: 16×16 maps of 64²), on the first ``--images`` val images, with the true class's
maps, through ``camkit.explain`` (end to end: the copies' Grad-CAMs and the solve):

* Grad-CAM (*single*), the paper's *max* and *avg* baselines over the same ``L`` copies;
* Augmented Grad-CAM with its defaults, with each solver, and with one forward-model option
  changed at a time (frame mask, padding, ``D``, blur, γ);

reporting GT-known Loc at τ = 0.2 (the CAM paper) and 0.15 (the Grad-CAM paper and the reference
code), MaxBoxAcc, MaxBoxAccV2 (δ ∈ {0.3, 0.5, 0.7}, all components), PxAP against the exact masks
(τ grid 0.00–0.99) and seconds per image (one thread by default).

    python benchmarks/augmented_wsol.py [--images 500] [--L 32] [--models coarsenet-shapes,nin-shapes]
"""
from __future__ import annotations

import argparse
import time

import torch

import camkit
from camkit.data import Shapes
from camkit.io import write_json
from camkit.localize.metrics import BoxAccuracy, LocalizationAccuracy, PxAP
from camkit.models.zoo import training_size

#: name -> (method, options); ``L`` is added to every augmented row.
VARIANTS: dict[str, tuple[str, dict]] = {
    "single (Grad-CAM)": ("gradcam", {}),
    "max": ("augmented-max", {}),
    "avg": ("augmented-avg", {}),
    "augmented, defaults": ("augmented-gradcam", {}),
    "augmented, primal-dual": ("augmented-gradcam", {"solver": "primal-dual"}),
    "augmented, subgradient": ("augmented-gradcam", {"solver": "subgradient"}),
    "augmented, frame=all": ("augmented-gradcam", {"frame": "all"}),
    "augmented, frame=coverage": ("augmented-gradcam", {"frame": "coverage"}),
    "augmented, padding=zeros": ("augmented-gradcam", {"padding": "zeros"}),
    "augmented, padding=reflection": ("augmented-gradcam", {"padding": "reflection"}),
    "augmented, downsample=bilinear": ("augmented-gradcam", {"downsample": "bilinear"}),
    "augmented, blur=0": ("augmented-gradcam", {"blur": 0.0}),
    "augmented, gamma=1": ("augmented-gradcam", {"gamma": 1.0}),
    "augmented, size=input": ("augmented-gradcam", {"size": "input"}),
    "augmented, size=half": ("augmented-gradcam", {"size": "half"}),
    "augmented, paper (zeros, frame=all, gamma=1, lam_tv=0.001·L, subgradient, size=input)": (
        "augmented-gradcam", {"padding": "zeros", "frame": "all", "gamma": 1.0, "lam_tv": "paper",
                              "solver": "subgradient", "size": "input"}),
}


def evaluate(model, items, method: str, options: dict, batch: int) -> dict:
    """Metrics (%) and seconds per image of ``method`` on ``items``."""
    loc = {tau: LocalizationAccuracy() for tau in (0.2, 0.15)}
    box, pixel = BoxAccuracy(), PxAP()
    start = time.perf_counter()
    for first in range(0, len(items), batch):
        chunk = items[first:first + batch]
        images = torch.stack([item["image"] for item in chunk])
        labels = torch.tensor([item["label"] for item in chunk])
        gt = [item["boxes"].numpy() for item in chunk]
        e = camkit.explain(model, images, method=method, targets=labels, **options)
        for tau, metric in loc.items():
            boxes = e.boxes(threshold=tau)
            metric.update(boxes, e.classes, labels, gt, gt_known_boxes=boxes[:, 0])
        box.update(e.maps[:, 0], gt)
        pixel.update(e.maps[:, 0], torch.stack([item["mask"] for item in chunk]))
    seconds = (time.perf_counter() - start) / len(items)
    boxes = box.result()
    return {"gt_known_loc@0.2": loc[0.2].result()["gt_known_loc"],
            "gt_known_loc@0.15": loc[0.15].result()["gt_known_loc"],
            "max_box_acc": boxes["max_box_acc"], "max_box_acc_v2": boxes["max_box_acc_v2"],
            "pxap": pixel.result()["pxap"], "s_per_image": seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--L", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--models", default="coarsenet-shapes,nin-shapes")
    parser.add_argument("--variants", default=None, help="row names separated by ';' (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    chosen = VARIANTS if args.variants is None else {k: VARIANTS[k] for k in args.variants.split(";")}
    report = {"args": vars(args)}
    for name in args.models.split(","):
        model = camkit.models.pretrained(name)
        size = training_size(model) or 64
        data = Shapes("val", size=size, length=args.images)
        items = [data[i] for i in range(len(data))]
        print(f"\n{name}: {args.images} val images of {size}², L = {args.L}, threads {torch.get_num_threads()}")
        print("| variant | GT-known Loc @0.2 | @0.15 | MaxBoxAcc | MaxBoxAccV2 | PxAP | s / image |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        rows = {}
        for row, (method, options) in chosen.items():
            options = dict(options)
            if method != "gradcam":
                options["L"] = args.L
            if options.get("lam_tv") == "paper":
                options["lam_tv"] = 0.001 * args.L
            if options.get("size") == "half":  # solved on a grid of half the image's side
                options["size"] = size // 2
            rows[row] = result = evaluate(model, items, method, options, args.batch)
            print(f"| {row} | {result['gt_known_loc@0.2']:.1f} | {result['gt_known_loc@0.15']:.1f} | "
                  f"{result['max_box_acc']:.1f} | {result['max_box_acc_v2']:.1f} | {result['pxap']:.1f} | "
                  f"{result['s_per_image']:.3f} |", flush=True)
        report[name] = rows
    if args.json:
        write_json(args.json, report, allow_nan=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
