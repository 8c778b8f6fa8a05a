"""``camkit train``: train a CAM-ready NiN or CoarseNet on the shapes data (:func:`camkit.train.train`)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

NAME = "train"
HELP = "train a CAM-ready model on the shapes data"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``camkit train``."""
    p.description = ("Train a CAM-ready NiN or CoarseNet on the synthetic shapes data set and save it for "
                     "camkit.models.load().")
    p.add_argument("--arch", choices=("nin", "coarse"), default="nin",
                   help="nin: NiN (16×16 maps at 64²); coarse: CoarseNet, a patch stem + VGG blocks "
                        "(7×7 maps at 224²); default: %(default)s")
    p.add_argument("--patch", type=int, default=8, help="coarse: side and stride of the stem convolution")
    p.add_argument("--stem-width", type=int, default=32, help="coarse: channels of the stem")
    p.add_argument("--out", default="nin-shapes.pt", help="model file to write (default: %(default)s)")
    p.add_argument("--checkpoint", default=None,
                   help="training state, written every epoch (default: OUT with suffix .ckpt)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if the checkpoint exists")
    p.add_argument("--pool", choices=("avg", "max"), default="avg", help="global pooling: GAP or GMP")
    p.add_argument("--widths", default=None, help="block widths, comma separated (nin: 24,48,96; coarse: 48,96,128)")
    p.add_argument("--kernels", default=None, help="block kernel sizes, comma separated (nin: 5,3,3; coarse: 3,1,1)")
    p.add_argument("--downsample", type=int, default=2, help="nin: number of 2x2 max pools")
    p.add_argument("--dropout", type=float, default=None, help="dropout (nin: 0.1, coarse: 0)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--train-length", type=int, default=6000)
    p.add_argument("--val-length", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    p.add_argument("--class-weights", choices=("none", "balanced"), default="none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def run(args: argparse.Namespace) -> int:
    """Train a NiN or CoarseNet on shapes, print one JSON line per epoch, save ``--out``; the file
    records the image size, the thread count, the torch version and the command line."""
    import torch
    from torch import nn

    from camkit.data import Shapes
    from camkit.models import CoarseNet, NiN, save
    from camkit.train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_set = Shapes("train", size=args.size, length=args.train_length, seed=args.seed)
    val_set = Shapes("val", size=args.size, length=args.val_length, seed=args.seed)
    model: nn.Module
    if args.arch == "coarse":
        model = CoarseNet(train_set.num_classes, _ints(args.widths or "48,96,128"), _ints(args.kernels or "3,1,1"),
                          patch=args.patch, stem_width=args.stem_width, pool=args.pool,
                          dropout=0.0 if args.dropout is None else args.dropout)
    else:
        model = NiN(train_set.num_classes, _ints(args.widths or "24,48,96"), _ints(args.kernels or "5,3,3"),
                    downsample=args.downsample, pool=args.pool, dropout=0.1 if args.dropout is None else args.dropout)
    checkpoint = args.checkpoint or str(Path(args.out).with_suffix(".ckpt"))
    began = time.perf_counter()
    history = train(model, train_set, val_set, epochs=args.epochs, lr=args.lr, optimizer=args.optimizer,
                    weight_decay=args.weight_decay, batch_size=args.batch_size,
                    class_weights=None if args.class_weights == "none" else args.class_weights,
                    checkpoint=checkpoint, resume=not args.no_resume, seed=args.seed,
                    progress=not args.quiet, log=lambda r: print(json.dumps(r), flush=True))
    model.class_names = list(train_set.classes)
    options = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, type(None)))}
    save(model, args.out, meta={"image_size": args.size, "torch_threads": torch.get_num_threads(),
                                "torch": str(torch.__version__), "options": options,
                                "data": {"size": args.size, "seed": args.seed, "train_length": args.train_length},
                                "history": history, "train_seconds": time.perf_counter() - began})
    print(f"saved {args.out} (val accuracy {history[-1].get('val_accuracy', float('nan')):.4f})")
    return 0
