"""Speed and memory of camkit's CAM and Grad-CAM against the floor (a no-grad forward) and peers.

    .venv/bin/python benchmarks/speed.py                  # resnet50, B=8, 224², CPU, medians of 5
    .venv/bin/python benchmarks/speed.py --methods        # + a time row per registered method
    .venv/bin/python benchmarks/speed.py --architectures  # ViT-B/16 and r3d_18 Grad-CAM vs grad-cam

Time ratios are measured side by side in one process (median of --repeats runs each, interleaved).
Extra peak memory is measured in a fresh subprocess per case: peak RSS during the call minus RSS
before it.  Peers (torchcam, captum, grad-cam) are used when installed; none is a camkit dependency.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torchvision

import camkit


def build(model_name: str):
    torch.manual_seed(0)
    return getattr(torchvision.models, model_name)(weights=None).eval()


def make_cases(model, layer_name: str):
    """Name → callable(images, classes) for each library available, all explaining the given classes."""
    layer = dict(model.named_modules())[layer_name]
    cases = {}

    def forward(images, classes):
        with torch.no_grad():
            model(images)

    cases["no-grad forward"] = forward
    explainer = camkit.Explainer(model, "gradcam", layer=layer_name)
    cam_explainer = camkit.Explainer(model, "cam", layer=layer_name)
    cases["camkit gradcam"] = lambda images, classes: explainer(images, targets=classes[:, 0])
    cases["camkit gradcam top-5"] = lambda images, classes: explainer(images, top_k=5)
    cases["camkit cam"] = lambda images, classes: cam_explainer(images, targets=classes[:, 0])
    cases["camkit explain() one-shot"] = lambda images, classes: camkit.explain(model, images, targets=classes[:, 0])
    try:
        from torchcam.methods import GradCAM as TorchcamGradCAM

        def torchcam_case(images, classes):
            extractor = TorchcamGradCAM(model, target_layer=layer_name)
            try:
                scores = model(images)
                extractor(classes[:, 0].tolist(), scores)
            finally:
                extractor.remove_hooks()

        cases["torchcam gradcam"] = torchcam_case
    except ImportError:
        pass
    try:
        from captum.attr import LayerGradCam

        captum_method = LayerGradCam(model, layer)
        cases["captum gradcam"] = lambda images, classes: captum_method.attribute(images, target=classes[:, 0])
    except ImportError:
        pass
    try:
        from pytorch_grad_cam import GradCAM as PGCGradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        def pgc_case(images, classes):
            with PGCGradCAM(model=model, target_layers=[layer]) as cam:
                cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in classes[:, 0]])

        cases["grad-cam gradcam"] = pgc_case
    except ImportError:
        pass
    return cases


def time_cases(cases, images, classes, repeats: int, model=None, runs: dict | None = None) -> dict[str, float]:
    """Median seconds per case over ``repeats`` interleaved rounds (every run kept in ``runs`` if given)."""
    model = MODEL if model is None else model
    for case in cases.values():  # warm-up: caches, allocator, camkit's layer probe
        case(images, classes)
    samples = {name: [] for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            start = time.perf_counter()
            case(images, classes)
            samples[name].append(time.perf_counter() - start)
            for p in model.parameters():  # peers leave .grad on parameters; clear it between runs
                p.grad = None
    if runs is not None:
        runs.update(samples)
    return {name: statistics.median(values) for name, values in samples.items()}


def vit_reshape(tensor, height=14, width=14):
    """pytorch-grad-cam's documented ViT reshape_transform."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def architecture_rows(repeats: int, batch: int) -> dict[str, dict[str, float]]:
    """Grad-CAM ÷ no-grad forward on ViT-B/16 (224²) and r3d_18 (16 × 112² clips), camkit (no layer,
    no reshape) beside pytorch-grad-cam (its documented layer and reshape) on the same inputs."""
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None).eval()
    torch.nn.init.normal_(vit.heads.head.weight, std=0.02)
    r3d = torchvision.models.video.r3d_18(weights=None).eval()
    setups = {
        "vit_b_16": (vit, torch.rand(batch, 3, 224, 224), vit.encoder.layers[-1].ln_1, vit_reshape),
        "r3d_18": (r3d, torch.rand(batch, 3, 16, 112, 112), r3d.layer4, None),
    }
    results = {}
    for name, (model, images, layer, reshape) in setups.items():
        with torch.no_grad():
            classes = model(images).argmax(1, keepdim=True)
        explainer = camkit.Explainer(model, "gradcam")

        def forward(images, classes, model=model):
            with torch.no_grad():
                model(images)

        cases = {"no-grad forward": forward,
                 "camkit gradcam": lambda images, classes, e=explainer: e(images, targets=classes[:, 0])}
        try:
            from pytorch_grad_cam import GradCAM as PGCGradCAM
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

            def pgc_case(images, classes, model=model, layer=layer, reshape=reshape):
                with PGCGradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
                    cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in classes[:, 0]])

            cases["grad-cam gradcam"] = pgc_case
        except ImportError:
            pass
        runs: dict[str, list[float]] = {}
        times = time_cases(cases, images, classes, repeats, model, runs)
        # a busy machine drifts between rounds: the ratio within each round (same moment) is steadier
        paired = {case: statistics.median(t / f for t, f in zip(runs[case], runs["no-grad forward"], strict=True))
                  for case in runs}
        results[name] = {case: t / times["no-grad forward"] for case, t in times.items()}
        results[name]["forward_s"] = times["no-grad forward"]
        results[name].update({f"{case} (paired)": ratio for case, ratio in paired.items()})
        layer_name = explainer(images[:1]).layers[0]
        print(f"\n{name}, B={batch}, input {tuple(images.shape[1:])}, camkit's default layer {layer_name}, "
              f"median of {repeats}")
        print("| case | time (s) | ÷ no-grad forward | median of per-round ratios |\n|---|---|---|---|")
        for case, seconds in times.items():
            print(f"| {case} | {seconds:.3f} | {seconds / times['no-grad forward']:.2f} | {paired[case]:.2f} |",
                  flush=True)
    return results


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(args) -> None:
    """In a fresh process: extra peak RSS (MiB) of one call of one case, after one warm-up call at B=1.

    The peak (VmHWM) is reset through /proc/self/clear_refs just before the call, so model
    construction does not count.
    """
    global MODEL
    MODEL = build(args.model)
    cases = make_cases(MODEL, args.layer)
    case = cases[args.memory_case]
    case(torch.rand(1, 3, args.size, args.size), torch.zeros(1, 1, dtype=torch.long))
    images = torch.rand(args.memory_batch, 3, args.size, args.size)
    classes = torch.zeros(args.memory_batch, 1, dtype=torch.long)
    before = _status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    case(images, classes)
    print(json.dumps({"extra_peak_mib": _status_mib("VmHWM") - before}))


def measure_memory(args, names) -> dict[str, float]:
    results = {}
    for name in names:
        values = []
        for _ in range(args.memory_repeats):
            out = subprocess.run(
                [sys.executable, __file__, "--memory-case", name, "--model", args.model, "--layer", args.layer,
                 "--size", str(args.size), "--memory-batch", str(args.memory_batch)],
                capture_output=True, text=True, check=True,
            )
            values.append(json.loads(out.stdout.strip().splitlines()[-1])["extra_peak_mib"])
        results[name] = statistics.median(values)
    return results


# Perturbation methods cost one forward per channel (2048 at resnet50's layer4) per image: on a
# CPU their rows use these options, printed beside the ratio.
CPU_METHOD_OPTIONS = {
    "scorecam": {"max_channels": 64},
    "sscam": {"samples": 2, "max_channels": 64},
    "iscam": {"samples": 2, "max_channels": 64},
    "ablationcam": {"batch_size": 256},
    "augmented-gradcam": {"L": 32},
}


def method_rows(images, classes, repeats: int, forward_time: float, skip=(),
                only=None) -> dict[str, tuple[float, dict]]:
    """Time ÷ no-grad forward for every registered method, or those in ``only`` (median; a single
    run past 20 s)."""
    rows = {}
    for name in camkit.methods.available():
        if name in skip or (only and name not in only):
            continue
        options = CPU_METHOD_OPTIONS.get(name, {}) if images.device.type == "cpu" else {}
        explainer = camkit.Explainer(MODEL, name, layer=ARGS.layer, **options)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            explainer(images, targets=classes[:, 0])
            runs.append(time.perf_counter() - start)
            if runs[0] > 20:
                break
        rows[name] = (statistics.median(runs) / forward_time, options)
    return rows


def main(argv=None) -> None:
    global MODEL, ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-batch", type=int, default=16)
    parser.add_argument("--memory-repeats", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--methods", action="store_true", help="add a time row per registered method")
    parser.add_argument("--architectures", action="store_true",
                        help="only the ViT-B/16 and r3d_18 rows (batch --batch, default 8 is slow on a CPU: use 2)")
    parser.add_argument("--skip", default="", help="comma-separated methods to leave out of --methods")
    parser.add_argument("--only", default="", help="comma-separated methods: --methods times only these")
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results to this JSON file")
    ARGS = args = parser.parse_args(argv)
    if args.memory_case:
        memory_child(args)
        return
    if args.architectures:
        result = architecture_rows(args.repeats, args.batch)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
        return
    MODEL = build(args.model)
    torch.manual_seed(0)
    images = torch.rand(args.batch, 3, args.size, args.size)
    with torch.no_grad():
        classes = MODEL(images).argmax(1, keepdim=True)
    cases = make_cases(MODEL, args.layer)
    times = time_cases(cases, images, classes, args.repeats)
    forward = times["no-grad forward"]
    print(f"{args.model}, B={args.batch}, {args.size}², CPU threads={torch.get_num_threads()}, "
          f"median of {args.repeats}")
    print("| case | time (s) | ÷ no-grad forward |\n|---|---|---|")
    for name, seconds in times.items():
        print(f"| {name} | {seconds:.3f} | {seconds / forward:.2f} |")
    print(f"\ncamkit top-5 ÷ top-1 Grad-CAM: {times['camkit gradcam top-5'] / times['camkit gradcam']:.2f}")
    result = {"times": times}
    if not args.no_memory:
        memory = measure_memory(args, list(cases))
        floor = memory["no-grad forward"]
        print(f"\nExtra peak memory at B={args.memory_batch} (MiB, median of {args.memory_repeats} fresh processes)")
        print("| case | extra peak (MiB) | ÷ no-grad forward |\n|---|---|---|")
        for name, mib in memory.items():
            print(f"| {name} | {mib:.0f} | {mib / floor:.2f} |")
        result["memory_mib"] = memory
    if args.methods:
        rows = method_rows(images, classes, args.repeats, forward, skip=set(filter(None, args.skip.split(","))),
                           only=set(filter(None, args.only.split(","))))
        print("\n| method | time ÷ no-grad forward | options |\n|---|---|---|")
        for name, (ratio, options) in rows.items():
            print(f"| {name} | {ratio:.2f} | {options or ''} |")
        result["methods"] = {name: {"ratio": r, "options": o} for name, (r, o) in rows.items()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
