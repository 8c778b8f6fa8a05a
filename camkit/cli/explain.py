"""``camkit explain IMAGE ...``: overlays at each image's own size and a JSON of classes, scores and
boxes in each image's own pixels (:mod:`camkit.photos`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from camkit.cli.common import add_common, add_standardize, add_trust, device, integer, key_value, real, shipped_models

NAME = "explain"
HELP = "explain image files or folders; write overlays and a JSON of classes, scores, boxes"
#: Longer side of the overlays of huge images (maps and overlays are scaled down past it).
MAX_SIDE = 2048


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``camkit explain``."""
    p.description = ("Explain images with a model at each image's own aspect: the shorter side is "
                     "resized to the model's size, maps and boxes come back in the image's own pixels. "
                     "Writes DIR/<name>.png overlays (the input's path below the inputs' common folder) "
                     "and DIR/explanations.json; never writes over an input.")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, folders (searched recursively) or quoted globs ('photos/**/*.jpg')")
    p.add_argument("--model", default="nin-shapes",
                   help=f"a shipped model ({', '.join(shipped_models())}), torchvision:NAME, or a model file "
                        "(default: %(default)s)")
    p.add_argument("--weights", default=None,
                   help="torchvision weights name, e.g. DEFAULT (needs them on disk or network)")
    add_trust(p)
    p.add_argument("--method", default="gradcam",
                   help="CAM method (camkit.methods.available()); default: %(default)s")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the method, e.g. L=32 for augmented-gradcam (repeatable; VALUE is read "
                        "as JSON when it parses, else as a string)")
    p.add_argument("--layer", default=None, help="dotted layer name (default: the last spatial layer)")
    p.add_argument("--top-k", type=integer(1), default=1, help="classes explained per image (default: %(default)s)")
    p.add_argument("--size", type=integer(1), default=None,
                   help="shorter side the network sees, aspect kept (default: the model's training size, "
                        "torchvision weights' own resize, else 224)")
    add_standardize(p)
    p.add_argument("--threshold", type=real(0, 1, high_open=True), default=0.2,
                   help="box threshold, fraction of the map's max (default: %(default)s)")
    p.add_argument("--square", action="store_true",
                   help="run every image at SIZE×SIZE, its aspect not kept, for models that take one input "
                        "size (e.g. torchvision's ViT); maps and boxes still come back in its own pixels")
    p.add_argument("--batch-size", type=integer(1), default=8,
                   help="images per forward; images of one resized shape share a batch (default: %(default)s)")
    p.add_argument("--max-side", type=integer(16), default=MAX_SIDE,
                   help="longer side of overlays and maps of huge images (default: %(default)s; boxes are "
                        "always in the original pixels)")
    p.add_argument("--max-pixels", type=integer(1), default=None,
                   help="refuse images with more pixels (default: Pillow's limit, 89478485)")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="leave out image files that cannot be read (missing, broken, not images, over "
                        "--max-pixels), each named on stderr and in explanations.json, instead of stopping")
    p.add_argument("--out", default="camkit-explain", help="output folder (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_common(p)


def overlay_names(relative: Path, k: int) -> list[Path]:
    """The overlay files of one image: ``NAME.png`` for its first class, ``NAME.top2.png`` … after."""
    return [relative] + [relative.with_name(f"{relative.stem}.top{rank}.png") for rank in range(2, k + 1)]


def run(args: argparse.Namespace) -> int:
    """Explain the images; write an overlay per image and class, and ``explanations.json``."""
    import torch

    from camkit import methods
    from camkit.errors import ImageFileError, InputError
    from camkit.imagefiles import MAX_PIXELS, check_spares_inputs, find_images, output_names
    from camkit.io import output_folder, write_json
    from camkit.models.spec import load_model, preprocessing
    from camkit.photos import iter_photos

    options = dict(key_value(spec) for spec in args.option)
    methods.get(args.method, **options)  # an unknown method or option is said before any work
    torch.manual_seed(args.seed)
    chosen = device(args.device)
    out = output_folder(args.out)
    paths = find_images(args.images)
    overlays = [overlay_names(out / name, args.top_k) for name in output_names(paths)]
    planned = [path for files in overlays for path in files] + [out / "explanations.json"]
    check_spares_inputs(planned, paths, what=f"--out {args.out}")
    if len({str(p).lower() for p in planned}) != len(planned):
        raise InputError("two outputs would share a name (an input named like another's NAME.topK.png): "
                         "explain them separately")
    model, class_names = load_model(args.model, weights=args.weights, trust=args.trust_model_file)
    model = model.to(chosen)
    prep = preprocessing(args.model, model, args.weights, args.standardize, args.size)
    max_pixels = args.max_pixels or MAX_PIXELS
    records: dict[int, dict] = {}
    layers: tuple[str, ...] = ()
    skipped: list[tuple[int, str]] | None = [] if args.skip_unreadable else None
    photos = iter_photos(model, paths, size=prep.size, method=args.method, layer=args.layer,
                         top_k=args.top_k, threshold=args.threshold, mean=prep.mean, std=prep.std,
                         batch_size=args.batch_size, max_side=args.max_side, max_pixels=max_pixels,
                         device=chosen, progress=not args.quiet, square=args.square, skipped=skipped,
                         method_options=options)
    try:
        for photo in photos:
            layers = photo.layers
            names = [_class_name(c, class_names) for c in photo.classes.tolist()]
            _write_overlays(photo, names, overlays[photo.index])
            records[photo.index] = {
                "image": str(paths[photo.index]),
                "overlays": [str(p) for p in overlays[photo.index]],
                **photo.geometry.to_json(),
                "classes": photo.classes.tolist(),
                "class_names": names,
                "scores": photo.scores.tolist(),
                "probs": photo.probs.tolist(),
                "boxes": photo.boxes.tolist(),
            }
    except ImageFileError as error:
        done = (f"; {len(records)} explained before it left overlays in {out}/ but no explanations.json"
                if records else "")
        raise ImageFileError(f"{error}{done} (--skip-unreadable leaves such files out)") from None
    ordered = [records[index] for index in sorted(records)]
    left_out = [{"image": str(paths[index]), "error": message} for index, message in sorted(skipped or [])]
    summary = {"model": args.model, "weights": args.weights, "method": args.method, "options": options,
               "layers": list(layers),
               "threshold": args.threshold, "shorter_side": prep.size, "shorter_side_from": prep.source,
               "square": args.square,
               "mean": prep.mean, "std": prep.std, "max_side": args.max_side, "boxes": "x0, y0, x1, y1 "
               "inclusive, in each image's own pixels", "images": ordered, "skipped": left_out}
    write_json(out / "explanations.json", summary, allow_nan=True)  # probs are NaN for non-classifiers
    for record in ordered:
        width, height = record["size"]
        print(f"{record['image']} ({width}×{height}): " + ", ".join(
            f"{name} ({score:.2f}) box {box}"
            for name, score, box in zip(record["class_names"], record["scores"], record["boxes"], strict=True)))
    for entry in left_out:
        print(f"skipped: {entry['error']}", file=sys.stderr)
    print(f"wrote {sum(len(r['overlays']) for r in ordered)} overlays and explanations.json to {out}/"
          + (f"; skipped {len(left_out)} unreadable file{'s' if len(left_out) != 1 else ''}" if left_out else ""))
    return 0


def _class_name(index: int, class_names) -> str:
    return class_names[index] if class_names and 0 <= index < len(class_names) else str(index)


def _write_overlays(photo, names: list[str], files: list[Path]) -> None:
    """Each class's map over the image at the display size, with its box and name."""
    from camkit.io import write_png
    from camkit.photos import scale_boxes
    from camkit.plot import blend, draw_boxes

    rgb = photo.image.permute(1, 2, 0).numpy()
    shown = scale_boxes(photo.boxes, photo.geometry.original, photo.geometry.display)
    width = max(2, round(max(photo.geometry.display) / 300))
    for k, path in enumerate(files):
        pixels = blend(rgb, photo.maps[k].numpy())
        label = f"{names[k]} ({float(photo.scores[k]):.2f})"
        write_png(path, draw_boxes(pixels, shown[k].numpy(), labels=label, linewidth=width))
