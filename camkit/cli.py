"""The ``camkit`` command: ``demo``, ``explain``, ``bench`` and ``train``.

User errors (a missing file, an unknown layer, a bad option) end with a one-line ``camkit: error:``
message and exit code 2, never a traceback.  ``camkit COMMAND --help`` documents each command.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class UserError(Exception):
    """A mistake in the command line or its inputs: reported in one line, exit code 2."""


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")


def _device(name: str):
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"bad --device {name!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but CUDA is not available")
    return device


# ---------------------------------------------------------------- explain
def _explain_parser(sub) -> None:
    p = sub.add_parser("explain", help="explain images on disk; write overlays and a JSON of classes, scores, boxes",
                       description="Explain IMAGE files with a model; write DIR/<name>.png overlays and DIR/explanations.json.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--model", default="nin-shapes",
                   help="nin-shapes (shipped), torchvision:NAME, or a model file (default: %(default)s)")
    p.add_argument("--weights", default=None, help="torchvision weights name, e.g. DEFAULT (needs them on disk or network)")
    p.add_argument("--method", default="gradcam", help="CAM method (camkit.methods.available()); default: %(default)s")
    p.add_argument("--layer", default=None, help="dotted layer name (default: the last spatial layer)")
    p.add_argument("--top-k", type=int, default=1, help="classes explained per image (default: %(default)s)")
    p.add_argument("--size", type=int, default=None, help="resize images to SIZE×SIZE (default: the model's own, else 224)")
    p.add_argument("--normalize", choices=("auto", "imagenet", "none"), default="auto",
                   help="input normalisation: imagenet mean/std for torchvision models (auto), or none")
    p.add_argument("--threshold", type=float, default=0.2, help="box threshold, fraction of the map's max (default: %(default)s)")
    p.add_argument("--out", default="camkit-explain", help="output folder (default: %(default)s)")
    _add_common(p)
    p.set_defaults(run=_run_explain)


def _load_images(paths: Sequence[str], size: int):
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    batch = []
    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"image not found: {path}")
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB").resize((size, size), Image.BILINEAR)
        except (UnidentifiedImageError, OSError) as error:
            raise UserError(f"cannot read image {path}: {error}") from None
        batch.append(torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(batch)


def _run_explain(args) -> int:
    import torch

    import camkit
    from camkit.models.spec import load_model

    torch.manual_seed(args.seed)
    device = _device(args.device)
    model, class_names = load_model(args.model, weights=args.weights)
    model = model.to(device)
    size = args.size or int(getattr(model, "meta", {}).get("image_size", 0) or 0) or 224
    images = _load_images(args.images, size).to(device)
    normalize = args.normalize == "imagenet" or (args.normalize == "auto" and args.model.startswith("torchvision:"))
    inputs = images
    if normalize:
        mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        inputs = (images - mean) / std
    explanation = camkit.explain(model, inputs, method=args.method, layer=args.layer, top_k=args.top_k)
    boxes = explanation.boxes(threshold=args.threshold)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for i, path in enumerate(args.images):
        stem = Path(path).stem
        figure = camkit.plot.overlay(images[i : i + 1].cpu(), explanation.maps[i : i + 1].cpu(),
                                     boxes=boxes[i : i + 1].cpu(), labels=class_names)
        camkit.plot.save(figure, out / f"{stem}.png")
        classes = explanation.classes[i].tolist()
        records.append({
            "image": str(path),
            "overlay": str(out / f"{stem}.png"),
            "classes": classes,
            "class_names": [class_names[c] if class_names and 0 <= c < len(class_names) else str(c) for c in classes],
            "scores": explanation.scores[i].tolist(),
            "probs": explanation.probs[i].tolist(),
            "boxes": boxes[i].tolist(),
        })
    summary = {"model": args.model, "method": args.method, "layers": list(explanation.layers),
               "threshold": args.threshold, "size": size, "images": records}
    _write_json(out / "explanations.json", summary)
    for record in records:
        print(f"{record['image']}: " + ", ".join(
            f"{name} ({score:.2f}) box {box}" for name, score, box in zip(record["class_names"], record["scores"], record["boxes"])))
    print(f"wrote {len(records)} overlays and explanations.json to {out}/")
    return 0


def _write_json(path: Path, value) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


# ---------------------------------------------------------------- demo
def _demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="Grad-CAM, its avg baseline and Augmented Grad-CAM on the built-in shapes data "
                                    "(no downloads)",
                       description="Localize objects of camkit's synthetic shapes data with a shipped model: "
                                   "Grad-CAM (single), the avg baseline and Augmented Grad-CAM; print the "
                                   "localization table and write overlays with the exact object outlines, the "
                                   "BoxAcc-vs-threshold curve and a summary.")
    p.add_argument("--out", default="camkit-demo", help="output folder (default: %(default)s)")
    p.add_argument("--model", default="coarsenet-shapes", choices=("coarsenet-shapes", "nin-shapes"),
                   help="shipped model: coarsenet-shapes (7×7 maps of 224², where augmented pays off) or "
                        "nin-shapes (16×16 of 64²); default: %(default)s")
    p.add_argument("--length", type=int, default=200, help="validation images (default: %(default)s)")
    p.add_argument("--methods", default="gradcam,augmented-avg,augmented-gradcam",
                   help="comma-separated methods (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_common(p)
    p.set_defaults(run=_run_demo)


#: The demo's copies: L = 32 keeps it within about a minute on two cores.
DEMO_METHOD_OPTIONS = {"augmented-gradcam": {"L": 32}, "augmented-avg": {"L": 32}, "augmented-max": {"L": 32}}
DEMO_OUTLINES = 6


def _run_demo(args) -> int:
    import torch

    import camkit
    from camkit import bench

    torch.manual_seed(args.seed)
    device = _device(args.device)
    model = camkit.models.pretrained(args.model).to(device)
    size = int(getattr(model, "meta", {}).get("image_size", 64) or 64)
    dataset = camkit.data.Shapes("val", size=size, length=args.length, seed=args.seed)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in camkit.methods.available()]
    if unknown:
        raise UserError(f"unknown method(s) {unknown}; available: {camkit.methods.available()}")
    options = {m: o for m, o in DEMO_METHOD_OPTIONS.items() if m in methods}
    results = bench.run(model, dataset, methods=methods, out_dir=args.out, batch_size=args.batch_size,
                        class_names=dataset.classes, seed=args.seed, progress=not args.quiet, device=str(device),
                        method_options=options)
    _demo_outlines(model, dataset, methods, options, Path(args.out) / "outlines.png", device)
    print(f"\ncamkit demo: {args.model} (shipped) on {len(dataset)} synthetic shapes images, {size}², "
          "boxes at 20 % of max")
    print(bench.markdown_table(results))
    print(f"\nwrote results.json, results.md, outlines.png, overlays and curves to {args.out}/")
    return 0


def _demo_outlines(model, dataset, methods, options, path: Path, device) -> None:
    """The first images side by side under every method: the map of the true class, its box at 20 %
    (red) and the exact outline of the object (white)."""
    import torch

    import camkit

    count = min(DEMO_OUTLINES, len(dataset))
    items = [dataset[i] for i in range(count)]
    images = torch.stack([item["image"] for item in items])
    labels = torch.tensor([item["label"] for item in items])
    maps = {m: camkit.explain(model, images.to(device), method=m, targets=labels.to(device), **options.get(m, {})).cpu()
            for m in methods}
    figure = camkit.plot.grid(images, maps, boxes=True, gt_boxes=[item["boxes"] for item in items],
                              row_labels=[dataset.classes[int(l)] for l in labels], panel_size=2.0)
    panels = figure.axes[:count * (len(methods) + 1)]
    for index, ax in enumerate(panels):
        ax.contour(items[index // (len(methods) + 1)]["mask"].float().numpy(), levels=[0.5], colors="white",
                   linewidths=0.8)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    camkit.plot.save(figure, temporary)
    os.replace(temporary, path)


# ---------------------------------------------------------------- bench, train
def _delegate_parser(sub, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(run=None, delegate=name)


def build_parser() -> argparse.ArgumentParser:
    from camkit import __version__

    parser = argparse.ArgumentParser(prog="camkit", description="Class activation maps and weakly-supervised localization for PyTorch CNNs.")
    parser.add_argument("--version", action="version", version=f"camkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _demo_parser(sub)
    _explain_parser(sub)
    _delegate_parser(sub, "bench", "a localization benchmark over a data set (see camkit bench --help)")
    _delegate_parser(sub, "train", "train a CAM-ready model on the shapes data (see camkit train --help)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from camkit.errors import CamkitError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in ("bench", "train"):
        # these commands own their argument parsers
        if argv[0] == "bench":
            from camkit.bench import main as command
        else:
            from camkit.train import main as command
        return int(command(argv[1:]) or 0)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except (UserError, CamkitError, FileNotFoundError) as error:
        print(f"camkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("camkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
