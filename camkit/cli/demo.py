"""``camkit demo``: Grad-CAM, its avg baseline and Augmented Grad-CAM on the built-in shapes data (no downloads)."""
from __future__ import annotations

import argparse
from pathlib import Path

from camkit.cli.common import add_common, device, integer, method_list, shipped_models

NAME = "demo"
HELP = "Grad-CAM, its avg baseline and Augmented Grad-CAM on the built-in shapes data (no downloads)"

#: The demo's copies: L = 32 keeps Augmented Grad-CAM and its baselines to about a minute on 2 cores.
METHOD_OPTIONS = {"augmented-gradcam": {"L": 32}, "augmented-avg": {"L": 32}, "augmented-max": {"L": 32}}
#: Images drawn side by side with their exact outlines in ``outlines.png``.
OUTLINES = 6


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``camkit demo``."""
    p.description = ("Localize objects of camkit's synthetic shapes data with a shipped model: Grad-CAM "
                     "(single), the avg baseline and Augmented Grad-CAM; print the localization table and "
                     "write overlays with the exact object outlines, the BoxAcc-vs-threshold curve and a "
                     "summary.")
    p.add_argument("--out", default="camkit-demo", help="output folder (default: %(default)s)")
    p.add_argument("--model", default="coarsenet-shapes", choices=shipped_models(),
                   help="shipped model: coarsenet-shapes (7×7 maps of 224², where augmented pays off) or "
                        "nin-shapes (16×16 maps of 64²); default: %(default)s")
    p.add_argument("--length", type=integer(1), default=200, help="validation images (default: %(default)s)")
    p.add_argument("--methods", default="gradcam,augmented-avg,augmented-gradcam",
                   help="comma-separated methods (default: %(default)s)")
    p.add_argument("--batch-size", type=integer(1), default=50)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_common(p)


def run(args: argparse.Namespace) -> int:
    """Benchmark a shipped model on shapes validation images; print the table, draw the outlines."""
    import torch

    from camkit import bench
    from camkit.data import Shapes
    from camkit.io import output_folder
    from camkit.models import pretrained, training_size

    torch.manual_seed(args.seed)
    chosen = device(args.device)
    output_folder(args.out)
    model = pretrained(args.model).to(chosen)
    size = training_size(model) or 64
    dataset = Shapes("val", size=size, length=args.length, seed=args.seed)
    methods = method_list(args.methods)
    options = {m: o for m, o in METHOD_OPTIONS.items() if m in methods}
    # One class per image: Augmented Grad-CAM solves one map per explained class, and five per
    # image would make the demo five times longer (the table then leaves out Top-k Loc).
    results = bench.run(model, dataset, methods=methods, out_dir=args.out, batch_size=args.batch_size,
                        class_names=dataset.classes, seed=args.seed, progress=not args.quiet, device=str(chosen),
                        method_options=options, top_k=1)
    outlines(model, dataset, methods, options, Path(args.out) / "outlines.png", chosen)
    print(f"\ncamkit demo: {args.model} (shipped) on {len(dataset)} synthetic shapes images, {size}², "
          "top-1 class, boxes at 20 % of max")
    print(bench.markdown_table(results))
    print(f"\n{bench.resume_summary(results)}")
    print(f"wrote {', '.join([*results['run']['files'], 'outlines.png'])} to {args.out}/")
    return 0


def outlines(model, dataset, methods, options, path: Path, chosen) -> None:
    """The first images under every method side by side: the true class's map, its box at 20 % of
    the max (red), the GT box (green) and the exact outline of the object (white)."""
    import torch

    import camkit

    count = min(OUTLINES, len(dataset))
    items = [dataset[i] for i in range(count)]
    images = torch.stack([item["image"] for item in items])
    labels = torch.tensor([item["label"] for item in items])
    maps = {m: camkit.explain(model, images.to(chosen), method=m, targets=labels.to(chosen),
                              **options.get(m, {})).cpu() for m in methods}
    figure = camkit.plot.grid(images, maps, boxes=True, gt_boxes=[item["boxes"] for item in items],
                              row_labels=[dataset.classes[int(label)] for label in labels], panel_size=2.0)
    for index, ax in enumerate(figure.axes[:count * (len(methods) + 1)]):
        ax.contour(items[index // (len(methods) + 1)]["mask"].float().numpy(), levels=[0.5], colors="white",
                   linewidths=0.8)
    camkit.plot.save(figure, path)                                    # atomic
