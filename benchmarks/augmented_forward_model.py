"""Which forward model matches what the network saw?  One option of Augmented Grad-CAM at a time.

On held-out images (the shapes ``test`` split by default, so that the defaults chosen here are
not tuned on the ``val`` images ``augmented_wsol.py`` reports), it

1. measures the network's response: least-squares fits of the true class's Grad-CAM cells
   (divided by their max) against the exact masks, ``g^γ ≈ a · D(G_σ mask) + b``, for a grid of
   PSF widths σ and exponents γ (R² of each);
2. computes the Grad-CAMs of the ``L`` copies once per padding (``zeros``, ``border``,
   ``reflection``) and super-resolves them under one change of the default forward model or
   solver at a time (frame mask, padding, area vs bilinear ``D``, blur σ, γ, λ, solve size, and
   the copies' ranges of angles and shifts: which transforms the network's maps follow),
   reporting GT-known Loc at τ = 0.2 and 0.15, MaxBoxAcc, MaxBoxAccV2, PxAP and the solve time.

    python benchmarks/augmented_forward_model.py [--model coarsenet-shapes] [--images 160] [--L 32]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import camkit
from camkit.augmented import area_downsample, baseline
from camkit.augmented.operators import GaussianBlur
from camkit.data import Shapes
from camkit.io import write_json
from camkit.layers import resolve_layers
from camkit.localize import boxes as map_boxes
from camkit.localize import iou
from camkit.localize.metrics import BoxAccuracy, PxAP
from camkit.methods.augmented import LAM_TV_PER_COPY, AugmentedGradCAM
from camkit.models.zoo import training_size


def scores(maps: torch.Tensor, items: list[dict]) -> dict:
    """GT-known Loc at τ = 0.2 / 0.15, MaxBoxAcc, MaxBoxAccV2, PxAP (%) of ``maps (B, H, W)``."""
    gt_boxes = [item["boxes"] for item in items]
    box, pixel = BoxAccuracy(), PxAP()
    box.update(maps, gt_boxes)
    pixel.update(maps, torch.stack([item["mask"] for item in items]))
    first = torch.stack([b[0] for b in gt_boxes])
    result = {f"loc@{tau}": 100 * (iou(map_boxes(maps[:, None], threshold=tau)[:, 0], first).diagonal() >= 0.5)
              .double().mean().item() for tau in (0.2, 0.15)}
    boxes = box.result()
    result.update(max_box_acc=boxes["max_box_acc"], max_box_acc_v2=boxes["max_box_acc_v2"], pxap=pixel.result()["pxap"])
    return result


def response_fit(model, items, labels) -> dict:
    """R² of ``g^γ ≈ a · D(G_σ mask) + b`` over all cells of the true class's Grad-CAMs, and the
    mean ``g`` of the cells whose block the object covers by 0–20 %, 20–40 %, … (the response)."""
    images = torch.stack([item["image"] for item in items])
    masks = torch.stack([item["mask"] for item in items]).double()
    cams = torch.cat([camkit.explain(model, images[i:i + 32], targets=labels[i:i + 32]).raw[:, 0]
                      for i in range(0, len(items), 32)]).double()
    cams = cams / cams.amax((-2, -1), keepdim=True).clamp(min=1e-12)
    size, low = masks.shape[-2:], cams.shape[-2:]
    rows = []
    cover = area_downsample(masks, tuple(low)).reshape(-1)
    response = [float(cams.reshape(-1)[(cover >= lo) & (cover < lo + 0.2 + 1e-9 * (lo == 0.8))].mean())
                for lo in (0.0, 0.2, 0.4, 0.6, 0.8)]
    for sigma in (0.0, 4.0, 8.0, 12.0, 16.0, 24.0):
        blurred = masks if sigma == 0 else GaussianBlur(sigma, (size[0], size[1]), torch.float64)(
            masks.flatten(1).t()).t().reshape(masks.shape)
        cover = area_downsample(blurred, tuple(low)).reshape(-1)
        design = torch.stack([cover, torch.ones_like(cover)], 1)
        for gamma in (1.0, 1.5, 2.0, 3.0):
            target = cams.reshape(-1) ** gamma
            fit = torch.linalg.lstsq(design, target[:, None]).solution
            residual = (design @ fit)[:, 0] - target
            r2 = 1 - residual.square().sum() / (target - target.mean()).square().sum()
            rows.append({"sigma": sigma, "gamma": gamma, "r2": float(r2)})
    return {"fits": rows, "mean_cam_by_coverage": response}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="coarsenet-shapes")
    parser.add_argument("--split", default="test")
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--L", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default=None, help="comma-separated variant names to run (default: all)")
    parser.add_argument("--base", default="", help="change the base the variants depart from, e.g. gamma=2,lam=0.1")
    parser.add_argument("--response-only", action="store_true", help="only the response measurement (1.)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = camkit.models.pretrained(args.model)
    size = training_size(model) or 64
    data = Shapes(args.split, size=size, length=args.images)
    items = [data[i] for i in range(len(data))]
    labels = torch.tensor([item["label"] for item in items])
    images = torch.stack([item["image"] for item in items])
    print(f"{args.model}, {args.images} {args.split} images of {size}², L = {args.L}, threads {args.threads}")
    report: dict = {"args": vars(args), "response": response_fit(model, items, labels)}
    fits = report["response"]["fits"]
    print("mean Grad-CAM / max of cells covered 0-20, 20-40, 40-60, 60-80, 80-100 %:",
          [round(v, 2) for v in report["response"]["mean_cam_by_coverage"]])
    print("response fit R² (σ, γ):", ", ".join(f"({r['sigma']:g}, {r['gamma']:g}) {r['r2']:.3f}" for r in fits),
          f"; best {max(fits, key=lambda r: r['r2'])}")
    if args.response_only:
        return 0

    defaults = AugmentedGradCAM(L=args.L)
    base = dict(frame=defaults.frame, padding=defaults.padding, downsample=defaults.downsample, blur=defaults.blur,
                gamma=defaults.gamma, lam=1.0, size=None, angle=defaults.max_angle, shift=1.0)
    for assignment in filter(None, args.base.split(",")):
        key, value = assignment.split("=")
        base[key] = value if key in ("frame", "padding", "downsample") or value == "input" else float(value)
    variants = {"defaults": {}}
    variants.update({f"frame={f}": {"frame": f} for f in ("mask", "coverage", "all") if f != base["frame"]})
    variants.update({f"padding={p}": {"padding": p} for p in ("zeros", "border", "reflection") if p != base["padding"]})
    variants.update({f"padding={p}, frame=all": {"padding": p, "frame": "all"} for p in ("border", "reflection")})
    variants.update({f"downsample={d}": {"downsample": d} for d in ("area", "bilinear") if d != base["downsample"]})
    variants.update({f"blur={s:g}": {"blur": s} for s in (0.0, 8.0, 16.0) if s != base["blur"]})
    variants.update({f"gamma={g:g}": {"gamma": g} for g in (1.0, 1.5, 2.0, 3.0) if g != base["gamma"]})
    variants.update({f"lam_tv×{s:g}": {"lam": s} for s in (0.3, 3.0, 10.0) if s != base["lam"]})
    variants["paper (gamma=1, frame=all, lam_tv=0.001·L)"] = {"gamma": 1.0, "frame": "all", "lam": 10.0}
    variants.update({f"size={s}": {"size": s} for s in ("input", 28, 56, 112) if s != size})
    variants.update({f"max_angle={a:g}": {"angle": a} for a in (0.0, 0.25, 1.0) if a != base["angle"]})
    variants.update({f"max_shift×{s:g}": {"shift": s} for s in (0.5, 2.0) if s != base["shift"]})
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only.split(",")}

    stacks: dict[tuple, torch.Tensor] = {}
    default_shift = 30.0 / 224.0 * size

    def method_for(option: dict) -> AugmentedGradCAM:
        return AugmentedGradCAM(L=args.L, frame=option["frame"], padding=option["padding"],
                                downsample=option["downsample"], blur=option["blur"], gamma=option["gamma"],
                                max_angle=option["angle"], max_shift=option["shift"] * default_shift,
                                lam_tv=option["lam"] * LAM_TV_PER_COPY * args.L, size=option["size"])

    def copies(option: dict) -> torch.Tensor:
        """Grad-CAMs (B, L, h, w) of the copies of every image, divided by their max."""
        key = (option["padding"], option["angle"], option["shift"])
        if key not in stacks:
            method = method_for(option)
            parts = []
            layers = resolve_layers(model, "features")
            for i in range(0, len(items), args.batch):
                session = camkit.methods.Session(model, images[i:i + args.batch], layers, labels[i:i + args.batch])
                first = {k: torch.relu(v) for k, v in method.base(session).items()}
                parts.append(next(iter(method.copy_cams(session, first).values()))[:, 0])
            stack = torch.cat(parts)  # (B, L, h, w)
            peak = stack.amax((-2, -1), keepdim=True)
            stacks[key] = torch.where(peak > 0, stack / peak.clamp(min=1e-12), stack)
        return stacks[key]

    rows = {}
    baseline_option = {**base, "padding": "zeros"}
    angles, shifts = method_for(baseline_option).transforms((size, size))
    for kind in ("single", "avg", "max"):
        rows[kind] = scores(baseline(copies(baseline_option), angles, shifts, (size, size), kind), items)
    for name, change in variants.items():
        option = {**base, **change}
        method = method_for(option)
        method.merge_copies(copies(option)[:args.batch], (size, size))  # builds and caches the operator
        start = time.perf_counter()
        maps = torch.cat([method.merge_copies(copies(option)[i:i + args.batch], (size, size))
                          for i in range(0, len(items), args.batch)])
        seconds = (time.perf_counter() - start) / len(items)
        if maps.shape[-2:] != (size, size):
            maps = camkit.maps.resize_maps(maps[:, None], (size, size))[:, 0]
        rows[name] = {**scores(maps, items), "solve_s_per_image": seconds}
        print(name, json.dumps(rows[name]), flush=True)
    report["rows"] = rows
    print("| variant | GT-known Loc @0.2 | @0.15 | MaxBoxAcc | MaxBoxAccV2 | PxAP | solve s/image |")
    print("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['loc@0.2']:.1f} | {row['loc@0.15']:.1f} | {row['max_box_acc']:.1f} | "
              f"{row['max_box_acc_v2']:.1f} | {row['pxap']:.1f} | {row.get('solve_s_per_image', 0):.3f} |")
    if args.json:
        write_json(args.json, report, allow_nan=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
