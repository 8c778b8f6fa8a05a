"""Speed of Augmented Grad-CAM's super-resolution, side by side with what it is compared to.

For L = 100 copies of a 224² image and maps of 14² and 7² (each solver with its default iterations), it measures:

* the solve time per map, one map alone and 16 maps solved together (goal: 16 maps ≤ 2× one),
  for both solvers, with the sparse operator built in the timing ("cold") and cached ("warm");
* the time of the 100 Grad-CAMs themselves (VGG16, ``weights=None``, conv5_3 → 14², pool5 → 7²),
  in micro-batches through ``camkit``'s method (goal: solve ÷ Grad-CAMs ≤ 0.25);
* the public reference code's solver, re-written with torch autograd: per image, Adam, 200 steps,
  lr 1e-3, ``grid_sample`` warps and area downsampling (goal: ≥ 20× slower than ours, at an equal
  or higher objective);
* the objective each reaches, and the PSNR of each map and of the baselines against the
  known high-resolution map the CAMs were made from.

Also the shipped coarse model's cost end to end: augmented with L copies ÷ L single Grad-CAMs
(``--coarse``: only that; ``--solve-size 112`` solves on 112², ``input`` on 224²).  Times are medians of ``--runs``
runs, on ``--threads`` CPU threads (default 1).
``python benchmarks/augmented_speed.py [--runs 3] [--device cuda] [--coarse] [--skip-gradcam] [--json out.json]``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

import camkit
from camkit.augmented import (
    SOLVERS,
    RotoTranslation,
    area_downsample,
    baseline,
    objective,
    sample_transforms,
    superresolve,
    warp_coordinates,
)
from camkit.augmented import solvers as solver_module
from camkit.methods.augmented import AugmentedGradCAM

SIZE = (224, 224)
L = 100


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, runs):
    """Median wall time of ``runs`` calls and the last result."""
    times, result = [], None
    for _ in range(runs):
        synchronize(device)
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def truth_maps(batch: int, seed: int = 1) -> torch.Tensor:
    """(batch, 224, 224) maps of 3 sharp ellipses each, heights in [0.5, 1]."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(224.0), torch.arange(224.0), indexing="ij")
    maps = torch.zeros(batch, 224, 224)
    for b in range(batch):
        for _ in range(3):
            cx, cy = (torch.rand(2, generator=gen) * 0.5 + 0.25) * 224
            rx, ry = (torch.rand(2, generator=gen) * 0.15 + 0.08) * 224
            height = torch.rand(1, generator=gen) * 0.5 + 0.5
            maps[b] = torch.maximum(maps[b], height * ((((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) <= 1))
    return maps


def psnr(estimate, truth):
    return (10 * torch.log10(1.0 / (estimate.float().cpu() - truth).square().mean((-2, -1)))).mean().item()


def adam_reference(cams, angles, shifts, lam_tv, mu, steps=200, lr=1e-3):
    """The public reference code's loop for one map (B = 1): autograd through grid_sample warps
    and area downsampling, Adam on h from 0.  Same objective as ours (½ and μ/2 conventions)."""
    device = cams.device
    src_x, src_y = warp_coordinates(angles, shifts, SIZE)
    grid = torch.stack([(2 * src_x + 1) / SIZE[1] - 1, (2 * src_y + 1) / SIZE[0] - 1], dim=-1).float().to(device)
    h = torch.zeros(1, 1, *SIZE, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([h], lr=lr)
    factor = SIZE[0] // cams.shape[-1]
    for _ in range(steps):
        optimizer.zero_grad()
        warped = F.grid_sample(h.expand(len(angles), 1, *SIZE), grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False)
        low = F.avg_pool2d(warped, factor)[:, 0]
        tv = (h[..., 1:, :] - h[..., :-1, :]).abs().sum() + (h[..., 1:] - h[..., :-1]).abs().sum()
        loss = 0.5 * (low - cams[0]).square().sum() + lam_tv * tv + 0.5 * mu * h.square().sum()
        loss.backward()
        optimizer.step()
    return h.detach()[0]


def gradcam_time(device, runs, layer, images):
    """Time of the L Grad-CAMs of one image's copies through camkit (micro-batches), in seconds."""
    import torchvision

    model = torchvision.models.vgg16(weights=None).eval().to(device)
    method = AugmentedGradCAM(L=L)
    layers = {layer: model.get_submodule(layer)}

    def run():
        session = camkit.methods.Session(model, images, layers, None)
        first = {k: torch.relu(v) for k, v in method.base(session).items()}
        return method.copy_cams(session, first)

    seconds, stack = timed(run, device, runs)
    return seconds, method._copies_per_batch(images, {layer: stack[layer][:, :, 0]})


def end_to_end(device, runs, layer, batch=8):
    """Seconds per image of ``camkit.explain(vgg16, images, method="augmented-gradcam", L=100)``
    (Grad-CAMs of the copies + solve), for both solvers (goal on an H100: ≤ 50 ms)."""
    import torchvision

    model = torchvision.models.vgg16(weights=None).eval().to(device)
    images = torch.rand(batch, 3, *SIZE, generator=torch.Generator().manual_seed(4)).to(device)
    out = {}
    for solver in SOLVERS:
        def explain(solver=solver):
            return camkit.explain(model, images, method="augmented-gradcam", layer=layer, L=L, solver=solver)

        explain()  # warm-up: cuDNN autotuning, the cached operator
        seconds, _ = timed(explain, device, runs)
        out[f"{solver}_per_image_s"] = seconds / batch
    return out


def coarse_cost(device, runs, batch=8, copies=(32, 100), solve_size=None):
    """Per image, end to end: ``camkit.explain(coarsenet-shapes, B images, "augmented-gradcam", L)``
    ÷ L single Grad-CAMs (``camkit.explain(..., "gradcam")`` on the same B images, multiplied by
    L); goal ≤ 1.25 on CPU.  The copies are L − 1 extra network passes, so the ratio is (L passes +
    solve) ÷ (L passes): it measures the solve and the copies' overhead.  Each run times the single
    Grad-CAMs (median of 5 calls) right before each augmented call and takes their ratio, so that a
    change of load between the two timings moves few runs; the median ratio over ``runs`` is
    reported with its range."""
    model = camkit.models.pretrained("coarsenet-shapes").to(device)
    data = camkit.data.Shapes("val", size=224, length=batch)
    images = torch.stack([data[i]["image"] for i in range(batch)]).to(device)
    labels = torch.tensor([data[i]["label"] for i in range(batch)], device=device)

    def single():
        return camkit.explain(model, images, method="gradcam", targets=labels)

    single()
    out: dict = {"batch": batch}
    for count in copies:
        def augmented(count=count):
            return camkit.explain(model, images, method="augmented-gradcam", targets=labels, L=count,
                                  size=solve_size)

        augmented()  # the operator is built once per transform set and cached
        ratios, singles, augmenteds = [], [], []
        for _ in range(runs):
            single_s, _ = timed(single, device, 5)
            augmented_s, _ = timed(augmented, device, 1)
            singles.append(single_s)
            augmenteds.append(augmented_s)
            ratios.append(augmented_s / (count * single_s))
        out[f"L={count}"] = {"ratio": statistics.median(ratios), "ratio_range": [min(ratios), max(ratios)],
                             "augmented_s": statistics.median(augmenteds), "gradcam_s": statistics.median(singles),
                             "per_image_s": statistics.median(augmenteds) / batch}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-gradcam", action="store_true")
    parser.add_argument("--skip-adam", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--end-to-end", action="store_true",
                        help="also time camkit.explain(vgg16, 8 images, 'augmented-gradcam', L=100) per image "
                             "(default on CUDA)")
    parser.add_argument("--skip-coarse", action="store_true", help="leave out the coarse model's cost")
    parser.add_argument("--coarse", action="store_true",
                        help="only the coarse model's cost: augmented (L copies) ÷ L single Grad-CAMs")
    parser.add_argument("--solve-size", type=lambda value: value if value == "input" else int(value), default=None,
                        help="coarse model: solve on SIZE×SIZE (the method's size=), e.g. 112, or 'input'; "
                             "default the method's (8 pixels per map cell: 56² for 7×7 maps)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for everything (1: the machine is shared; more threads slow sparse "
                             "products down there)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, runs {args.runs}")
    results = {} if args.skip_coarse else {"coarsenet-shapes": coarse_cost(device, args.runs,
                                                                           solve_size=args.solve_size)}
    print(json.dumps(results, indent=1), flush=True)
    if args.coarse:
        args.skip_gradcam = args.skip_adam = True
        maps = ()
    else:
        maps = ((14, "features.29"), (7, "features.30"))
    angles, shifts = sample_transforms(L, SIZE, seed=0)
    truth = truth_maps(16)
    warped = RotoTranslation(angles, shifts, SIZE)(truth)                                   # (16, L, 224, 224)
    for low, layer in maps:
        cams = area_downsample(warped, (low, low))
        cams = (cams + 0.01 * torch.randn(cams.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
        cams = cams.to(device)
        lam_tv, mu = 0.001 * L, 0.0001 * L
        row = {"map": f"{low}x{low}"}
        for kind in ("single", "avg", "max"):
            row[f"psnr_{kind}"] = psnr(baseline(cams, angles, shifts, SIZE, kind), truth)
        for solver in SOLVERS:
            def solve(batch, cold, cams=cams, solver=solver):
                if cold:
                    solver_module._CACHE.clear()
                return superresolve(cams[:batch], angles, shifts, SIZE, solver=solver)

            solve(1, False)  # warm-up
            one_cold, _ = timed(lambda: solve(1, True), device, args.runs)
            one, single_result = timed(lambda: solve(1, False), device, args.runs)
            sixteen, result = timed(lambda: solve(16, False), device, args.runs)
            row[solver] = {
                "one_map_s": one, "one_map_cold_s": one_cold, "16_maps_s": sixteen,
                "16_over_1": sixteen / one, "per_map_in_16_s": sixteen / 16,
                "objective_map0": result.history[0, -1].item(), "psnr": psnr(result.maps, truth),
                "iterations": result.iterations,
                "_history0": single_result.history[0].cpu(),
            }
        if not args.skip_adam:
            runs = 1 if device.type == "cpu" else args.runs
            def adam(cams=cams, lam_tv=lam_tv, mu=mu):
                return adam_reference(cams[:1], angles, shifts, lam_tv, mu)

            seconds, h = timed(adam, device, runs)
            value = objective(h.cpu(), cams[:1].cpu(), angles, shifts, lam_tv, mu).item()
            row["adam"] = {"per_map_s": seconds, "objective_map0": value, "psnr_map0": psnr(h, truth[:1])}
            for solver in SOLVERS:
                row[solver]["adam_over_ours_1"] = seconds / row[solver]["one_map_s"]
                row[solver]["adam_over_ours_16"] = seconds / row[solver]["per_map_in_16_s"]
                # The time our solver needs to get at least as low as Adam's 200 steps.
                history = row[solver].pop("_history0")
                reached = (history <= value).nonzero()
                if len(reached):
                    needed = int(reached[0])
                    row[solver]["iterations_to_adam_objective"] = needed
                    row[solver]["adam_over_ours_at_equal_objective_1"] = seconds / (
                        row[solver]["one_map_s"] * max(needed, 1) / row[solver]["iterations"])
        if not args.skip_gradcam:
            image = torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(3)).to(device)
            seconds, per_batch = gradcam_time(device, max(1, min(args.runs, 2)), layer, image)
            row["gradcam_100_s"] = seconds
            row["copies_per_micro_batch"] = per_batch
            for solver in SOLVERS:
                row[solver]["solve_over_gradcam"] = row[solver]["one_map_s"] / seconds
        if (args.end_to_end or device.type == "cuda") and not args.skip_gradcam:
            row["end_to_end"] = end_to_end(device, args.runs, layer)
        for solver in SOLVERS:
            row[solver].pop("_history0", None)
        results[row["map"]] = row
        print(json.dumps(row, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
