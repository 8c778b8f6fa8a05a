"""``camkit demo``: CAM, Grad-CAM and Augmented Grad-CAM on the built-in shapes data (no downloads)."""
from __future__ import annotations

import argparse

from camkit.cli.common import add_common, device, integer, method_list

NAME = "demo"
HELP = "CAM, Grad-CAM and Augmented Grad-CAM on the built-in shapes data (no downloads)"

#: Options that keep the demo's Augmented Grad-CAM to a few seconds.
METHOD_OPTIONS = {"augmented-gradcam": {"L": 32, "iters": 100}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``camkit demo``."""
    p.description = ("Localize objects of camkit's synthetic shapes data with its shipped NiN: CAM, "
                     "Grad-CAM and Augmented Grad-CAM; print the localization table and write "
                     "overlays, the BoxAcc-vs-threshold curve and a summary.")
    p.add_argument("--out", default="camkit-demo", help="output folder (default: %(default)s)")
    p.add_argument("--length", type=integer(1), default=200, help="validation images (default: %(default)s)")
    p.add_argument("--methods", default="cam,gradcam,augmented-gradcam",
                   help="comma-separated methods (default: %(default)s)")
    p.add_argument("--batch-size", type=integer(1), default=50)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_common(p)


def run(args: argparse.Namespace) -> int:
    """Benchmark the shipped NiN on shapes validation images; print the table."""
    import torch

    from camkit import bench
    from camkit.data import Shapes
    from camkit.io import output_folder
    from camkit.models import pretrained, training_size

    torch.manual_seed(args.seed)
    chosen = device(args.device)
    output_folder(args.out)
    model = pretrained("nin-shapes").to(chosen)
    size = training_size(model) or 64
    dataset = Shapes("val", size=size, length=args.length, seed=args.seed)
    methods = method_list(args.methods)
    results = bench.run(model, dataset, methods=methods, out_dir=args.out, batch_size=args.batch_size,
                        class_names=dataset.classes, seed=args.seed, progress=not args.quiet, device=str(chosen),
                        method_options={m: o for m, o in METHOD_OPTIONS.items() if m in methods})
    print(f"\ncamkit demo: NiN-GAP (shipped) on {len(dataset)} synthetic shapes images, {size}², "
          "boxes at 20 % of max")
    print(bench.markdown_table(results))
    print(f"\n{bench.resume_summary(results)}")
    print(f"wrote {', '.join(results['run']['files'])} to {args.out}/")
    return 0
