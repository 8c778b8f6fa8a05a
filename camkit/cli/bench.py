"""``camkit bench``: the localization benchmark over the shapes data or a wsolevaluation folder
(see :mod:`camkit.bench`); runs unchanged under ``torchrun``."""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camkit.cli.common import (
    add_standardize,
    add_trust,
    device,
    integer,
    key_value,
    method_list,
    real,
    shipped_models,
)
from camkit.errors import CamkitError, InputError

if TYPE_CHECKING:
    from torch import nn

NAME = "bench"
HELP = "a localization benchmark over a data set"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``camkit bench``."""
    p.description = ("Weakly-supervised localization benchmark: explain every image with every "
                     "method in one pass and write DIR/results.json, results.md, records.jsonl, "
                     "box_acc.png and examples.png.  Runs unchanged under torchrun.")
    p.add_argument("--model", default="nin-shapes",
                   help=f"a shipped model ({', '.join(shipped_models())}), torchvision:NAME, or a model file "
                        "(default: %(default)s)")
    p.add_argument("--weights", default=None, help="torchvision weights name, e.g. DEFAULT")
    add_trust(p)
    p.add_argument("--data", default="shapes",
                   help="'shapes' or a wsolevaluation metadata folder (default: %(default)s)")
    p.add_argument("--image-root", default=None,
                   help="image folder of a wsolevaluation split (default: METADATA/../../images)")
    p.add_argument("--split", default="val", help="shapes split (default: %(default)s)")
    p.add_argument("--length", type=integer(1), default=None,
                   help="number of images (default: all; shapes: 1000)")
    p.add_argument("--size", type=integer(1), default=None,
                   help="image side: shapes default the model's training size, else 64; wsolevaluation "
                        "data default 224")
    p.add_argument("--methods", default="cam,gradcam", help="comma-separated (default: %(default)s)")
    p.add_argument("--layer", default=None, help="dotted layer name (default: the last spatial layer)")
    p.add_argument("--option", action="append", default=[], metavar="METHOD:KEY=VALUE",
                   help="an option of one method, e.g. augmented-gradcam:L=32 (repeatable; "
                        "VALUE is read as JSON when it parses, else as a string)")
    p.add_argument("--out", default="camkit-bench", help="output folder (default: %(default)s)")
    p.add_argument("--batch-size", type=integer(1), default=32)
    p.add_argument("--workers", type=integer(0), default=0, help="DataLoader worker processes")
    p.add_argument("--chunk-size", type=integer(1), default=None,
                   help="images per resumable chunk, whole batches (default: 8 batches)")
    p.add_argument("--threshold", type=real(0, 1, high_open=True), default=0.2,
                   help="box threshold for Top-1/Top-5/GT-known Loc, fraction of max (default: %(default)s)")
    p.add_argument("--top-k", type=integer(1), default=5, help="classes for Top-k Loc (default: %(default)s)")
    p.add_argument("--protocol", choices=("camkit", "wsolevaluation"), default="camkit",
                   help="MaxBoxAcc/PxAP protocol (default: %(default)s)")
    p.add_argument("--tau-step", type=real(0, 1, low_open=True, high_open=True), default=0.01,
                   help="τ grid step, in (0, 1) (default: %(default)s)")
    add_standardize(p)
    p.add_argument("--examples", type=integer(0), default=8, help="images in examples.png (0: none)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--timeout", type=real(0, low_open=True), default=1800.0,
                   help="seconds a process waits for the others before failing (default: %(default)s)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="reuse the finished chunks in DIR/state whose settings, model weights and "
                        "images, labels and boxes are unchanged (default: on)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def interrupted(args: argparse.Namespace) -> str:
    """What ``camkit bench`` says when interrupted."""
    return f"finished chunks are kept in {args.out}/state (rerun the same command to resume)"


def parse_method_options(specs: Sequence[str], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["augmented-gradcam:L=32", ...]`` → ``{"augmented-gradcam": {"L": 32}}``."""
    options: dict[str, dict[str, Any]] = {}
    for spec in specs:
        method, colon, assignment = spec.partition(":")
        if not (colon and method and assignment.partition("=")[1] and assignment.partition("=")[0]):
            raise InputError(f"--option {spec!r}: expected METHOD:KEY=VALUE")
        if method not in methods:
            raise InputError(f"--option {spec!r}: {method!r} is not among --methods {list(methods)}")
        key, value = key_value(assignment)
        options.setdefault(method, {})[key] = value
    return options


def dataset_from_args(args: argparse.Namespace, model: nn.Module) -> tuple[Any, list[str] | None]:
    """The data set ``--data`` names and its class names (``None`` for wsolevaluation data)."""
    import torch

    from camkit.data import Shapes
    from camkit.models import training_size

    if args.data == "shapes":
        size = args.size or training_size(model) or 64
        dataset = Shapes(args.split, size=size, length=args.length, seed=args.seed)
        return dataset, dataset.classes
    metadata = Path(args.data)
    if not metadata.is_dir():
        raise InputError(f"--data {args.data!r} is neither 'shapes' nor a metadata folder")
    image_root = Path(args.image_root) if args.image_root else metadata.parent.parent / "images"
    if not image_root.is_dir():
        raise InputError(f"image root {image_root} is not a folder (give --image-root)")
    from camkit.bench.state import dataset_fingerprint
    from camkit.data.wsol import WSOLDataset

    wsol = WSOLDataset(metadata, image_root, size=args.size or 224)
    if args.length is None:
        return wsol, None
    subset = torch.utils.data.Subset(wsol, range(min(args.length, len(wsol))))
    subset.fingerprint = f"{dataset_fingerprint(wsol)}[:{len(subset)}]"  # type: ignore[attr-defined]
    return subset, None


def run(args: argparse.Namespace) -> int:
    """Benchmark the model on the data set; print the table (rank 0)."""
    import torch

    from camkit import bench
    from camkit.bench.distributed import BenchError
    from camkit.layers import resolve_layers
    from camkit.models import Standardized
    from camkit.models.spec import load_model, preprocessing

    methods = method_list(args.methods)
    method_options = parse_method_options(args.option, methods)
    device(args.device)  # there and holding data (under torchrun each process picks its GPU)
    torch.manual_seed(args.seed)
    model, names = load_model(args.model, args.weights, trust=args.trust_model_file)
    layer = None
    if args.layer is not None:  # resolved on the model itself: a standardising wrapper adds a prefix
        layer = resolve_layers(model, args.layer)[args.layer]
    dataset, data_names = dataset_from_args(args, model)
    prep = preprocessing(args.model, model, args.weights, args.standardize)
    if prep.mean is not None and prep.std is not None:
        model = Standardized(model, prep.mean, prep.std)
    try:
        results = bench.run(
            model, dataset, methods=methods, out_dir=args.out, batch_size=args.batch_size,
            workers=args.workers, threshold=args.threshold, class_names=names or data_names, seed=args.seed,
            resume=args.resume, progress=not args.quiet, examples=args.examples, device=args.device,
            method_options=method_options, top_k=args.top_k, protocol=args.protocol, layer=layer,
            chunk_size=args.chunk_size, tau_step=args.tau_step, timeout_s=args.timeout,
            model_id=f"{args.model}:{args.weights}:{args.standardize}:{args.layer}")
    except CamkitError:
        raise
    except RuntimeError as error:  # e.g. a distributed timeout, CUDA out of memory: the run failed
        raise BenchError(str(error)) from error
    if int(os.environ.get("RANK", "0")) == 0:
        print(bench.markdown_table(results))
        print(f"\n{bench.resume_summary(results)}")
        print(f"wrote {', '.join(results['run']['files'])} to {args.out}/")
    return 0
