"""Convergence of the super-resolution solvers on the known-truth problem of issue 11.

At 224², L = 100 views (``camkit.augmented.known_truth``: a rectangle, an ellipse and a Gaussian
blob, views made by scipy warps and block means, noise σ = 0.01) of 14×14 and of 7×7, default
λ = 0.001·L and μ = 0.0001·L, one map:

* the reference objective ``F*``: ``"primal-dual"`` run for 2000 iterations;
* each solver with its default iterations (and the accelerated one with other ``inner`` counts):
  its best objective ÷ ``F*``, the iterations and seconds it needs to come within 1 % of ``F*``,
  and the PSNR of its map against the truth, beside *single*, *avg* and *max*;
* subgradient step rules side by side for 500 iterations (``--step-rules``): the classic
  ``1/(‖P‖²√k)``, Polyak's step with the unknown optimum given (an oracle), and the shipped
  Polyak step against an adaptive target level;
* the solve grid (``--grids 224,112,56,28``): the map solved through the method
  (``AugmentedGradCAM.merge_copies``, λ and μ per input pixel, scaled to the grid), upsampled to
  224² and scored against the truth, with its seconds (operator cached).

Seconds exclude building the operator (cached, reported apart).  ``python
benchmarks/augmented_convergence.py [--L 100] [--maps 14,7] [--step-rules] [--grids 224,112,56,28]
[--json out.json]``
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch

from camkit.augmented import DEFAULT_ITERS, SOLVERS, baseline, forward_model, known_truth, psnr, superresolve
from camkit.augmented.solvers import _add_gradient_adjoint, _gradient, _objective
from camkit.io import write_json
from camkit.maps import resize_maps
from camkit.methods.augmented import AugmentedGradCAM


def reach(history: torch.Tensor, target: float) -> int | None:
    """First iteration whose best objective is ≤ ``target`` (None if never)."""
    hits = (history <= target).nonzero()
    return int(hits[0]) if len(hits) else None


def timed_solve(problem, **options):
    start = time.perf_counter()
    result = superresolve(problem.cams.float(), problem.angles, problem.shifts, problem.size, **options)
    return result, time.perf_counter() - start


def step_rules(problem, optimum: float, iters: int) -> dict:
    """Subgradient descent with three step rules (one map, float32), best objective ÷ ``optimum``."""
    L = problem.cams.shape[1]
    lam, mu = 0.001 * L, 0.0001 * L
    n, m = problem.size
    model = forward_model(problem.angles, problem.shifts, problem.size, problem.cams.shape[-2:])
    views = problem.cams.float().reshape(1, -1).t().contiguous()
    lipschitz = model.norm_bound() + mu

    def value_and_subgradient(h):
        residual = model.forward(h) - views
        dy, dx = _gradient(h.view(n, m, 1))
        value = _objective(residual, dy, dx, h, lam, mu).item()
        direction = model.adjoint(residual) + mu * h
        _add_gradient_adjoint(direction.view(n, m, 1), dy.sign(), dx.sign(), alpha=lam)
        return value, direction

    results = {}
    for rule in ("1/(|P|^2 sqrt k)", "Polyak, optimum known", "Polyak, adaptive level (shipped)"):
        if rule.endswith("(shipped)"):
            best = superresolve(problem.cams.float(), problem.angles, problem.shifts, problem.size,
                                solver="subgradient", iters=iters).history[0]
        else:
            h = torch.zeros(n * m, 1)
            values = []
            for k in range(iters + 1):
                value, direction = value_and_subgradient(h)
                values.append(value)
                if k == iters:
                    break
                norm2 = direction.square().sum().item()
                step = (1 / (lipschitz * math.sqrt(k + 1)) if rule.startswith("1/")
                        else (value - optimum) / max(norm2, 1e-30))
                h = h - step * direction
            best = torch.tensor(values).cummin(0).values
        results[rule] = {f"F/F* at {k}": float(best[k] / optimum) for k in (50, 100, 200, iters) if k < len(best)}
        results[rule]["iterations to 1 %"] = reach(best, 1.01 * optimum)
    return results


def grids(problem, sides: list[int]) -> dict:
    """PSNR and seconds of the map solved through the method on each ``side``² grid (the paper's
    forward model: zeros padding, every view cell, no blur, γ = 1; λ = 0.001·L, μ = 0.0001·L per
    input pixel), upsampled to the truth's size."""
    count = problem.cams.shape[1]
    out = {}
    for side in sides:
        method = AugmentedGradCAM(count, size=(side, side), padding="zeros", frame="all", blur=0.0, gamma=1.0,
                                  divide_by_max=False, lam_tv=0.001 * count, mu=0.0001 * count)
        method.merge_copies(problem.cams.float(), problem.size)  # builds and caches the operator
        start = time.perf_counter()
        maps = method.merge_copies(problem.cams.float(), problem.size)
        seconds = time.perf_counter() - start
        maps = resize_maps(maps[:, None], problem.size)[:, 0]
        out[f"{side}x{side}"] = {"psnr": float(psnr(maps, problem.truth)), "seconds": seconds}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--L", type=int, default=100)
    parser.add_argument("--maps", default="14,7")
    parser.add_argument("--reference-iters", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--step-rules", action="store_true")
    parser.add_argument("--grids", default=None, help="solve-grid sides, e.g. 224,112,56,28")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"224², L = {args.L}, λ = {0.001 * args.L:g}, μ = {0.0001 * args.L:g}, threads {torch.get_num_threads()}")
    report = {}
    for low in (int(v) for v in args.maps.split(",")):
        problem = known_truth(args.L, (224, 224), (low, low))
        start = time.perf_counter()
        forward_model(problem.angles, problem.shifts, problem.size, (low, low))
        build = time.perf_counter() - start
        reference, reference_s = timed_solve(problem, solver="primal-dual", iters=args.reference_iters)
        optimum = float(reference.history[0, -1])
        row: dict = {"operator_build_s": build, "F*": optimum, "F* psnr": float(psnr(reference.maps, problem.truth)),
                     "F* seconds": reference_s}
        for kind in ("single", "avg", "max"):
            row[f"psnr {kind}"] = float(psnr(baseline(problem.cams, problem.angles, problem.shifts, problem.size, kind),
                                             problem.truth))
        runs = [(solver, {}) for solver in SOLVERS] + [("accelerated", {"inner": k}) for k in (10, 20)]
        for solver, options in runs:
            result, seconds = timed_solve(problem, solver=solver, **options)
            history = result.history[0]
            hit = reach(history, 1.01 * optimum)
            name = solver + "".join(f", {k}={v}" for k, v in options.items())
            row[name] = {
                "iterations": result.iterations, "F/F*": float(history[-1] / optimum),
                "iterations to 1 %": hit,
                "seconds to 1 %": None if hit is None else seconds * hit / max(result.iterations, 1),
                "seconds": seconds, "psnr": float(psnr(result.maps, problem.truth)),
            }
        pd_hit = reach(reference.history[0], 1.01 * optimum)
        row["primal-dual (reference run)"] = {"iterations to 1 %": pd_hit,
                                              "seconds to 1 %": reference_s * pd_hit / args.reference_iters}
        if args.step_rules:
            row["step rules"] = step_rules(problem, optimum, DEFAULT_ITERS["subgradient"])
        if args.grids:
            row["grids"] = grids(problem, [int(side) for side in args.grids.split(",")])
        report[f"{low}x{low}"] = row
        print(json.dumps({f"{low}x{low}": row}, indent=1), flush=True)
    if args.json:
        write_json(args.json, report, allow_nan=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
