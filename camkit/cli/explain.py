"""``camkit explain IMAGE ...``: overlays and a JSON of classes, scores and boxes."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from camkit.cli.common import add_common, add_standardize, device, wants_imagenet
from camkit.errors import InputError

if TYPE_CHECKING:
    import torch

NAME = "explain"
HELP = "explain images on disk; write overlays and a JSON of classes, scores, boxes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``camkit explain``."""
    p.description = "Explain IMAGE files with a model; write DIR/<name>.png overlays and DIR/explanations.json."
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--model", default="nin-shapes",
                   help="nin-shapes (shipped), torchvision:NAME, or a model file (default: %(default)s)")
    p.add_argument("--weights", default=None,
                   help="torchvision weights name, e.g. DEFAULT (needs them on disk or network)")
    p.add_argument("--method", default="gradcam",
                   help="CAM method (camkit.methods.available()); default: %(default)s")
    p.add_argument("--layer", default=None, help="dotted layer name (default: the last spatial layer)")
    p.add_argument("--top-k", type=int, default=1, help="classes explained per image (default: %(default)s)")
    p.add_argument("--size", type=int, default=None,
                   help="resize images to SIZE×SIZE (default: the model's own, else 224)")
    add_standardize(p)
    p.add_argument("--threshold", type=float, default=0.2,
                   help="box threshold, fraction of the map's max (default: %(default)s)")
    p.add_argument("--out", default="camkit-explain", help="output folder (default: %(default)s)")
    add_common(p)


def load_images(paths: Sequence[str], size: int) -> torch.Tensor:
    """Image files as a batch ``(B, 3, size, size)`` in [0, 1] (bilinear resize)."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    batch = []
    for path in paths:
        if not Path(path).is_file():
            raise InputError(f"image not found: {path}")
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        except (UnidentifiedImageError, OSError) as error:
            raise InputError(f"cannot read image {path}: {error}") from None
        batch.append(torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(batch)


def run(args: argparse.Namespace) -> int:
    """Explain the images; write an overlay per image and ``explanations.json``."""
    import torch

    from camkit import plot
    from camkit.explainer import explain
    from camkit.io import write_json
    from camkit.models import IMAGENET_MEAN, IMAGENET_STD, Standardize
    from camkit.models.spec import load_model

    torch.manual_seed(args.seed)
    chosen = device(args.device)
    model, class_names = load_model(args.model, weights=args.weights)
    model = model.to(chosen)
    size = args.size or int(getattr(model, "meta", {}).get("image_size", 0) or 0) or 224
    images = load_images(args.images, size).to(chosen)
    inputs = images
    if wants_imagenet(args.standardize, args.model):
        inputs = Standardize(IMAGENET_MEAN, IMAGENET_STD).to(chosen)(images)
    explanation = explain(model, inputs, method=args.method, layer=args.layer, top_k=args.top_k)
    boxes = explanation.boxes(threshold=args.threshold)
    out = Path(args.out)
    records = []
    for i, path in enumerate(args.images):
        overlay = out / f"{Path(path).stem}.png"
        plot.overlay(images[i : i + 1].cpu(), explanation.maps[i : i + 1].cpu(), boxes=boxes[i : i + 1].cpu(),
                     labels=class_names, save=overlay)
        classes = explanation.classes[i].tolist()
        records.append({
            "image": str(path),
            "overlay": str(overlay),
            "classes": classes,
            "class_names": [class_names[c] if class_names and 0 <= c < len(class_names) else str(c)
                            for c in classes],
            "scores": explanation.scores[i].tolist(),
            "probs": explanation.probs[i].tolist(),
            "boxes": boxes[i].tolist(),
        })
    summary = {"model": args.model, "method": args.method, "layers": list(explanation.layers),
               "threshold": args.threshold, "size": size, "images": records}
    write_json(out / "explanations.json", summary, allow_nan=True)  # probs are NaN for non-classifiers
    for record in records:
        print(f"{record['image']}: " + ", ".join(
            f"{name} ({score:.2f}) box {box}"
            for name, score, box in zip(record["class_names"], record["scores"], record["boxes"], strict=True)))
    print(f"wrote {len(records)} overlays and explanations.json to {out}/")
    return 0
