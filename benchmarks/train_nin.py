"""Train the shipped NiN-GAP on shapes and its GMP twin; measure accuracy and CAM localization.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_nin.py --ship

(defaults: 64² images, 6000 training images, 3 epochs, batch 64, AdamW lr 3e-3, NiN widths
24/48/96, dropout 0.1, one torch thread: on a busy 2-core machine one thread ran faster than two)

trains both models with ``camkit.train`` (same data, seed and schedule; only the global pooling
differs), then reports on validation images: top-1 accuracy (``--val-length``) and GT-known Loc
(``camkit.explain(method="cam")`` for the true class: ReLU, bilinear upsampling to the image,
min-max normalisation; ``camkit.localize.boxes``: pixels > τ·max, largest 8-connected component,
its box; correct when IoU >= 0.5 with the GT box) on the
first ``--loc-length`` images, τ = 0.2 (plus a τ sweep), and MaxBoxAcc / MaxBoxAccV2
(``camkit.localize.BoxAccuracy``, camkit protocol, at the image resolution).  ``--evaluate FILE ...`` only measures
existing model files.  ``--ship`` copies the GAP model to
``camkit/models/weights/nin-shapes.pt``.  Results go to ``--report`` as JSON.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

import camkit
from camkit.data import Shapes
from camkit.models import NiN, load, save
from camkit.train import stack, train

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def localization(model: NiN, data: Shapes, n: int, thresholds=(0.1, 0.15, 0.2, 0.3, 0.4, 0.5)) -> dict:
    """GT-known Loc (%) at each τ, plus the share of map peaks inside the GT box, on items 0..n-1.

    Maps come from ``camkit.explain(method="cam")`` (the true class), boxes from
    ``camkit.localize.boxes`` (largest 8-connected component of pixels > τ·max).
    """
    items = [data[i] for i in range(n)]
    images = torch.stack([it["image"] for it in items])
    labels = torch.tensor([it["label"] for it in items])
    gt = torch.stack([it["boxes"][0] for it in items])
    maps = torch.cat([camkit.explain(model, images[i:i + 250], method="cam", targets=labels[i:i + 250]).maps
                      for i in range(0, n, 250)])  # (n, 1, H, W)
    result = {}
    for t in thresholds:
        pred = camkit.localize.boxes(maps, threshold=t)[:, 0]
        overlap = camkit.localize.iou(pred, gt).diagonal()
        result[f"gt_known_loc@{t}"] = 100.0 * (overlap >= 0.5).double().mean().item()
    box_accuracy = camkit.localize.BoxAccuracy()  # τ grid 0.00..0.99, δ in {0.3, 0.5, 0.7}
    box_accuracy.update(maps[:, 0], [it["boxes"] for it in items])
    scores = box_accuracy.result()
    result["max_box_acc"], result["max_box_acc_v2"] = scores["max_box_acc"], scores["max_box_acc_v2"]
    peak = maps[:, 0].flatten(1).argmax(1)
    py, px = peak // maps.shape[-1], peak % maps.shape[-1]
    inside = (px >= gt[:, 0]) & (px <= gt[:, 2]) & (py >= gt[:, 1]) & (py <= gt[:, 3])
    result["peak_in_box"] = 100.0 * inside.double().mean().item()
    return result


@torch.no_grad()
def accuracy(model: NiN, data) -> float:
    data = stack(data)
    correct = sum((model(data.images[i:i + 250].float()).argmax(1) == data.labels[i:i + 250]).sum().item()
                  for i in range(0, len(data), 250))
    return 100.0 * correct / len(data)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--train-length", type=int, default=6000)
    p.add_argument("--val-length", type=int, default=1000)
    p.add_argument("--loc-length", type=int, default=500)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--widths", default="24,48,96")
    p.add_argument("--kernels", default="5,3,3")
    p.add_argument("--downsample", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--class-relu", action="store_true")
    p.add_argument("--pools", default="avg,max", help="which twins to train")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="build/nin-shapes", help="folder for models and checkpoints")
    p.add_argument("--report", default=None, help="JSON report path (default: OUT/report.json)")
    p.add_argument("--ship", action="store_true", help="copy the GAP model into camkit/models/weights/")
    p.add_argument("--evaluate", nargs="+", metavar="MODEL", help="only evaluate these model files")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.evaluate:
        for path in args.evaluate:
            model = load(path)
            size = model.meta.get("data", {}).get("size", args.size)
            val_set = Shapes("val", size=size, length=args.val_length, seed=args.seed)
            result = {"val_accuracy": accuracy(model, val_set), **localization(model, val_set, args.loc_length)}
            print(path, json.dumps(result), flush=True)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    train_set = Shapes("train", size=args.size, length=args.train_length, seed=args.seed)
    val_set = Shapes("val", size=args.size, length=args.val_length, seed=args.seed)
    train_data, val_data = stack(train_set), stack(val_set)
    render_seconds = time.perf_counter() - began
    print(f"rendered {len(train_data)} + {len(val_data)} images in {render_seconds:.1f} s", file=sys.stderr)

    report = {"args": vars(args), "render_seconds": render_seconds, "torch_threads": torch.get_num_threads()}
    for pool in args.pools.split(","):
        torch.manual_seed(args.seed)
        model = NiN(train_set.num_classes, [int(w) for w in args.widths.split(",")],
                    [int(k) for k in args.kernels.split(",")], downsample=args.downsample, pool=pool,
                    dropout=args.dropout, class_relu=args.class_relu)
        t0 = time.perf_counter()
        history = train(model, train_data, val_data, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                        seed=args.seed, checkpoint=out / f"nin-{pool}.ckpt", resume=False, progress=False,
                        log=lambda r, pool=pool: print(pool, json.dumps(r), file=sys.stderr, flush=True))
        seconds = time.perf_counter() - t0
        model.class_names = list(train_set.classes)
        path = out / f"nin-shapes-{pool}.pt"
        save(model, path, meta={"data": {"size": args.size, "seed": args.seed, "train_length": args.train_length},
                                "history": history, "train_seconds": seconds})
        loc = localization(load(path), val_set, args.loc_length)
        report[pool] = {"val_accuracy": 100.0 * history[-1]["val_accuracy"], "train_seconds": seconds,
                        "parameters": sum(p.numel() for p in model.parameters()),
                        "file_bytes": path.stat().st_size, **loc}
        print(pool, json.dumps(report[pool]), flush=True)
        if pool == "avg" and args.ship:
            shutil.copyfile(path, ROOT / "camkit" / "models" / "weights" / "nin-shapes.pt")
    Path(args.report or out / "report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
