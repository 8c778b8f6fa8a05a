"""``camkit train``: train a CAM-ready NiN or CoarseNet on the shapes data (:func:`camkit.train.train`).

It says what it does with what is already there: a checkpoint of the same run is continued (and
the epoch it resumes from is printed), a checkpoint or model file of another run is refused with
the settings that differ (``--resume`` continues it to another number of epochs, ``--overwrite``
starts afresh), and a finished run is not trained or saved again.

An architecture option is added in :func:`add_arguments`, used in :func:`build_model` and kept in
the model's ``config`` (as ``NiN.config`` and ``CoarseNet.config`` do): the settings check
(:func:`camkit.train.run_settings`) then names it when it differs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camkit.cli.common import integer, real

if TYPE_CHECKING:
    from torch import nn

NAME = "train"
HELP = "train a CAM-ready model on the shapes data"


# per architecture: the defaults of --widths, --kernels and --dropout
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "nin": {"widths": [24, 48, 96], "kernels": [5, 3, 3], "dropout": 0.1},
    "coarse": {"widths": [48, 96, 128], "kernels": [3, 1, 1], "dropout": 0.0},
}


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more positive integers, comma separated")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``camkit train``."""
    p.description = ("Train a CAM-ready NiN or CoarseNet on the synthetic shapes data set and save it for "
                     "camkit.models.load().  An existing checkpoint of the same run is continued; one "
                     "of another run is refused unless --resume or --overwrite says what to do.")
    p.add_argument("--arch", choices=tuple(ARCH_DEFAULTS), default="nin",
                   help="nin: NiN (16×16 maps at 64²); coarse: CoarseNet, a patch stem + VGG blocks "
                        "(7×7 maps at 224²); default: %(default)s")
    p.add_argument("--patch", type=integer(1), default=8, help="coarse: side and stride of the stem convolution")
    p.add_argument("--stem-width", type=integer(1), default=32, help="coarse: channels of the stem")
    p.add_argument("--out", default="nin-shapes.pt", help="model file to write (default: %(default)s)")
    p.add_argument("--checkpoint", default=None,
                   help="training state, written every epoch (default: OUT with suffix .ckpt)")
    choice = p.add_mutually_exclusive_group()
    choice.add_argument("--resume", action="store_true",
                        help="continue the checkpoint to --epochs even when that is another number of "
                             "epochs (its other settings must be the same)")
    choice.add_argument("--overwrite", action="store_true",
                        help="start afresh, replacing the checkpoint and the model file")
    p.add_argument("--pool", choices=("avg", "max"), default="avg", help="global pooling: GAP or GMP")
    p.add_argument("--widths", type=_ints, default=None,
                   help="block widths, comma separated (nin: 24,48,96; coarse: 48,96,128)")
    p.add_argument("--kernels", type=_ints, default=None,
                   help="block kernel sizes, comma separated (nin: 5,3,3; coarse: 3,1,1)")
    p.add_argument("--downsample", type=integer(0), default=2, help="nin: number of 2x2 max pools")
    p.add_argument("--dropout", type=real(0, 1, high_open=True), default=None, help="dropout (nin: 0.1, coarse: 0)")
    p.add_argument("--size", type=integer(16), default=64, help="image side in pixels")
    p.add_argument("--train-length", type=integer(1), default=6000)
    p.add_argument("--val-length", type=integer(0), default=1000)
    p.add_argument("--epochs", type=integer(1), default=3)
    p.add_argument("--batch-size", type=integer(1), default=64)
    p.add_argument("--lr", type=real(0, low_open=True), default=3e-3)
    p.add_argument("--weight-decay", type=real(0), default=5e-4)
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    p.add_argument("--class-weights", choices=("none", "balanced"), default="none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=integer(1), default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_model(args: argparse.Namespace, num_classes: int) -> nn.Module:
    """The model the options describe (its ``config`` records them for the settings check)."""
    from camkit.models import CoarseNet, NiN

    given = {key: getattr(args, key) for key in ("widths", "kernels", "dropout")}
    options = {key: default if given[key] is None else given[key] for key, default in ARCH_DEFAULTS[args.arch].items()}
    if args.arch == "coarse":
        return CoarseNet(num_classes, options["widths"], options["kernels"], patch=args.patch,
                         stem_width=args.stem_width, pool=args.pool, dropout=options["dropout"])
    return NiN(num_classes, options["widths"], options["kernels"], downsample=args.downsample, pool=args.pool,
               dropout=options["dropout"])


def _describe(args: argparse.Namespace) -> dict[str, Any]:
    """What the command line knows of its data: the shapes options that generate it."""
    return {"data": "shapes", "size": args.size, "train_length": args.train_length,
            "val_length": args.val_length, "data_seed": args.seed}


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`camkit.train.train`'s options from the command line (the defaults for the others)."""
    return {"epochs": args.epochs, "lr": args.lr, "optimizer": args.optimizer, "weight_decay": args.weight_decay,
            "batch_size": args.batch_size, "seed": args.seed,
            "class_weights": None if args.class_weights == "none" else args.class_weights}


def _saved_run(path: Path) -> dict[str, Any] | None:
    """The settings and epochs an existing model file records (``None`` when it records none)."""
    from camkit.errors import InputError
    from camkit.models import WeightsError, load

    try:
        meta = getattr(load(path), "meta", {}) or {}
    except (WeightsError, InputError):
        return None
    run = meta.get("run")
    return run if isinstance(run, dict) and "settings" in run else None


def _same_run(saved: dict[str, Any] | None, settings: dict[str, Any], epochs: int) -> bool:
    from camkit.train import differences

    return (saved is not None and saved.get("epochs") == epochs
            and not differences(saved["settings"], settings, ignore=("data", "val_data")))


def run(args: argparse.Namespace) -> int:
    """Train a NiN or CoarseNet on shapes, print one JSON line per epoch, save ``--out`` (unless it
    already holds this finished run); the file records the image size, the thread count, the torch
    version and the options."""
    import torch

    from camkit.data import Shapes, class_names
    from camkit.errors import InputError
    from camkit.io import output_file
    from camkit.models import save
    from camkit.train import differences, load_checkpoint, run_settings, train

    out = output_file(args.out)
    checkpoint = Path(args.checkpoint) if args.checkpoint else out.with_suffix(".ckpt")
    output_file(checkpoint, what="--checkpoint")
    if checkpoint.resolve() == out.resolve():
        raise InputError(f"--checkpoint and --out are the same file {out}: give them different names")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_model(args, len(class_names()))
    options = _options(args)
    describe = _describe(args)
    defaults: dict[str, Any] = {"momentum": 0.9, "warmup_epochs": 0.5, "label_smoothing": 0.0, "flip": True}
    settings = run_settings(model, **options, **defaults, describe=describe)
    saved_out = _saved_run(out) if out.exists() and not args.overwrite else None
    if out.exists() and not args.overwrite:
        replace = "pass --overwrite to replace it, or choose another --out"
        if saved_out is None:
            raise InputError(f"{out} exists and does not record how it was trained: {replace}")
        # the checkpoint decides about epochs (continued with --resume); without one, they must match too
        ignore = ("data", "val_data") + (("epochs",) if checkpoint.exists() else ())
        changed = differences({**saved_out["settings"], "epochs": saved_out.get("epochs")}, settings, ignore=ignore)
        if changed:
            raise InputError(f"{out} exists and holds a run with other settings ({'; '.join(changed)}): {replace}")
        if not checkpoint.exists():
            print(f"{out} already holds this run ({args.epochs} epochs): nothing to do (--overwrite trains it again)")
            return 0
    if out.exists() and args.overwrite:
        print(f"camkit train: overwriting {out} when this run ends", file=sys.stderr)
    finished_before = (checkpoint.exists() and not args.overwrite
                       and load_checkpoint(checkpoint)["epoch"] >= args.epochs)

    train_set = Shapes("train", size=args.size, length=args.train_length, seed=args.seed)
    val_set = Shapes("val", size=args.size, length=args.val_length, seed=args.seed) if args.val_length else None
    began = time.perf_counter()
    history = train(model, train_set, val_set, **options, **defaults, checkpoint=checkpoint,
                    resume=True if args.resume else False if args.overwrite else None, describe=describe,
                    progress=not args.quiet, log=lambda r: print(json.dumps(r), flush=True),
                    notify=lambda message: print(f"camkit train: {message}", file=sys.stderr))
    if finished_before and _same_run(saved_out, settings, args.epochs):
        print(f"{out} already holds this finished run: not saved again")
        return 0
    model.class_names = list(train_set.classes)  # type: ignore[assignment]
    done = load_checkpoint(checkpoint).get("settings", settings)
    recorded = {key: value for key, value in vars(args).items()
                if isinstance(value, (str, int, float, bool, list, type(None))) and key != "func"}
    save(model, out, meta={"image_size": args.size, "torch_threads": torch.get_num_threads(),
                           "torch": str(torch.__version__), "options": recorded,
                           "data": {"size": args.size, "seed": args.seed, "train_length": args.train_length},
                           "run": {"settings": done, "epochs": len(history)},
                           "history": history, "train_seconds": time.perf_counter() - began})
    accuracy = history[-1].get("val_accuracy", float("nan")) if history else float("nan")
    print(f"saved {out} (val accuracy {accuracy:.4f})")
    return 0
