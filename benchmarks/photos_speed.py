"""Throughput of explaining a folder of mixed-size photographs at their own geometry, and what a
benchmark resume costs to check.

    .venv/bin/python benchmarks/photos_speed.py                     # resnet18, 40 photos, CPU, medians of 3
    .venv/bin/python benchmarks/photos_speed.py --model resnet50 --device cuda --copies 16

Photos: scikit-image's samples (chelsea 451×300, rocket 640×427, coffee 600×400, astronaut
512×512, and the rocket turned to portrait 427×640) as JPEG files, ``--copies`` of each.  Cases,
all from the files (decoding included) to maps and boxes on each photo's own grid, timed side by
side in one process (``--repeats`` rounds, each running every case once; ratios are the median
of the per-round ratios, robust to a shared machine's drifting load):

* ``grouped``: :func:`camkit.photos.iter_photos` with ``batch_size`` (images of one resized shape
  share a batch);
* ``one by one``: the same with ``batch_size=1``;
* ``squashed``: the old path — every photo resized to ``size``², batches of ``batch_size``, maps
  and boxes at ``size``² (the wrong geometry; the floor the new path is compared with);
* ``decode``: reading and resizing only (the I/O floor).

``--bench N`` also times ``camkit.bench.run`` on N shapes images: a fresh run, then the same run
resumed (every chunk reused: the cost of reading and hashing each chunk's items to check them).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data
import torch
import torchvision
from PIL import Image

import camkit
from camkit.imagefiles import read_image
from camkit.models import IMAGENET_MEAN, IMAGENET_STD, Standardize
from camkit.photos import iter_photos, resize_image, shorter_side


def write_photos(folder: Path, copies: int) -> list[Path]:
    samples = {"chelsea": skimage.data.chelsea(), "rocket": skimage.data.rocket(), "coffee": skimage.data.coffee(),
               "astronaut": skimage.data.astronaut(), "portrait": np.ascontiguousarray(np.rot90(skimage.data.rocket()))}
    paths = []
    for copy in range(copies):
        for name, pixels in samples.items():
            path = folder / f"{name}-{copy:03d}.jpg"
            Image.fromarray(pixels).save(path, quality=92)
            paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--bench", type=int, default=0, help="also time a bench resume on N shapes images")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None).eval().to(device)
    folder = Path(tempfile.mkdtemp(prefix="camkit-photos-"))
    paths = write_photos(folder, args.copies)
    options = dict(size=args.size, mean=IMAGENET_MEAN, std=IMAGENET_STD, device=device)
    standardize = Standardize(IMAGENET_MEAN, IMAGENET_STD).to(device)

    def grouped():
        for photo in iter_photos(model, paths, batch_size=args.batch_size, **options):
            photo.boxes.sum()

    def one_by_one():
        for photo in iter_photos(model, paths, batch_size=1, **options):
            photo.boxes.sum()

    def squashed():
        with camkit.Explainer(model, "gradcam") as explainer:
            for start in range(0, len(paths), args.batch_size):
                batch = torch.stack([resize_image(read_image(p), (args.size, args.size))
                                     for p in paths[start:start + args.batch_size]]).to(device)
                explainer(standardize(batch)).cpu().boxes()

    def decode():
        for path in paths:
            image = read_image(path)
            resize_image(image, shorter_side(tuple(image.shape[-2:]), args.size))

    cases = {"grouped": grouped, "one by one": one_by_one, "squashed (old)": squashed, "decode only": decode}
    grouped()  # warm-up: layer search, allocator
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, case in cases.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            began = time.perf_counter()
            case()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name].append(time.perf_counter() - began)
    shapes = sorted({shorter_side(Image.open(p).size[::-1], args.size) for p in paths})
    print(f"{len(paths)} photos, {len(shapes)} resized shapes {shapes}, {args.model} gradcam, shorter side "
          f"{args.size}, batch {args.batch_size}, {device}, {torch.get_num_threads()} threads; "
          f"median of {args.repeats}")
    # a shared machine's load drifts between rounds: each round's cases ran back to back, so the
    # ratio is taken per round, then its median
    print("| case | s (median) | images/s | time / grouped (median of per-round ratios) |\n|---|---:|---:|---:|")
    for name, runs in seconds.items():
        median = statistics.median(runs)
        ratio = statistics.median(r / g for r, g in zip(runs, seconds["grouped"], strict=True))
        print(f"| {name} | {median:.2f} | {len(paths) / median:.1f} | {ratio:.2f} |")
    report = {name: runs for name, runs in seconds.items()}
    if args.bench:
        report["bench"] = bench_resume(args.bench)
    print(json.dumps(report))


def bench_resume(length: int) -> dict[str, float]:
    """Seconds of a fresh ``bench.run`` on ``length`` shapes images, and of the same run resumed."""
    from camkit import bench

    model = camkit.models.pretrained("nin-shapes")
    data = camkit.data.Shapes("val", size=64, length=length)
    out = Path(tempfile.mkdtemp(prefix="camkit-bench-"))
    times = {}
    for name in ("fresh", "resumed"):
        began = time.perf_counter()
        results = bench.run(model, data, methods=("cam", "gradcam"), out_dir=out, examples=0, progress=False)
        times[name] = time.perf_counter() - began
        print(f"bench {name}: {times[name]:.2f} s ({bench.resume_summary(results)})")
    return times


if __name__ == "__main__":
    main()
