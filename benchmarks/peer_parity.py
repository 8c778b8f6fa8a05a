"""camkit's CAM methods side by side with pytorch-grad-cam (`grad-cam`) and torchcam.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/peer_parity.py [--model resnet18] [--size 224] [--batch 2]
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/peer_parity.py --transformers [--batch 2]

``--transformers``: Grad-CAM on ViT-B/16 and Swin-T (random weights, seeded; ViT's zero-initialised
head given random weights) against pytorch-grad-cam with its documented ``reshape_transform``s, on
the same layer and classes; camkit is given no reshape code (and no layer, for ViT).

Random-weight torchvision model (seeded), random images, camkit's top-1 classes given to every
library.  Per method and peer: the maximum absolute difference and the Pearson correlation of the
min-max normalised maps, compared where each peer returns them:

* pytorch-grad-cam returns ``normalise(resize(normalise(ReLU(raw))))`` at the input size: compared
  with camkit's ``Explanation.maps`` (``normalise(resize(ReLU(raw)))``, the same up to its 1e-7).
* torchcam returns ``normalise(ReLU(raw))`` at layer resolution: compared with ``normalise(e.raw)``.

Eigen methods are compared up to the SVD's sign (camkit fixes it, pytorch-grad-cam does not).
The peers are benchmark-only dependencies: ``.venv/bin/pip install --no-deps grad-cam torchcam ttach``
and ``.venv/bin/pip install scikit-learn`` (pytorch-grad-cam imports it).
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's per-batch progress bars

import numpy as np
import torch
import torchvision

import camkit
from camkit.maps import normalize_maps


def compare(ours: torch.Tensor, theirs: torch.Tensor, either_sign: bool = False) -> tuple[float, float]:
    """(max |Δ|, Pearson r) of two stacks of normalised maps (B, h, w)."""
    ours, theirs = ours.double().flatten(), torch.as_tensor(theirs).double().flatten()
    candidates = [theirs]
    if either_sign:  # a sign flip of the principal component gives 1 − m after normalisation
        candidates.append(1 - theirs)
    results = []
    for other in candidates:
        diff = (ours - other).abs().max().item()
        corr = torch.corrcoef(torch.stack([ours, other]))[0, 1].item()
        results.append((diff, corr))
    return min(results)


def gradcam_peer(model, images, classes, layer, name, options):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    kinds = {
        "gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
        "layercam": pgc.LayerCAM, "hirescam": pgc.HiResCAM, "gradcam-elementwise": pgc.GradCAMElementWise,
        "scorecam": pgc.ScoreCAM, "ablationcam": pgc.AblationCAM, "eigencam": pgc.EigenCAM,
        "eigengradcam": pgc.EigenGradCAM,
    }
    if name not in kinds:
        return None
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    with kinds[name](model=model, target_layers=[layer]) as cam:
        if hasattr(cam, "batch_size"):
            cam.batch_size = 32
        maps = cam(input_tensor=images, targets=targets, eigen_smooth=options.get("eigen", False))
    return torch.from_numpy(np.asarray(maps))


def torchcam_peer(model, images, classes, layer_name, name):
    import torchcam.methods as tcm

    kinds = {
        "cam": (tcm.CAM, {"fc_layer": "fc"}), "gradcam": (tcm.GradCAM, {}), "gradcam++": (tcm.GradCAMpp, {}),
        "xgradcam": (tcm.XGradCAM, {}), "layercam": (tcm.LayerCAM, {}),
        "scorecam": (tcm.ScoreCAM, {"batch_size": 32}),
        "iscam": (tcm.ISCAM, {"batch_size": 32, "num_samples": 2}),
        "sscam": (tcm.SSCAM, {"batch_size": 32, "num_samples": 2}),
        "smoothgradcam++": (tcm.SmoothGradCAMpp, {"num_samples": 4, "std": 0.3}),
    }
    if name not in kinds:
        return None
    kind, kwargs = kinds[name]
    with kind(model, target_layer=layer_name, input_shape=tuple(images.shape[1:]), **kwargs) as extractor:
        with torch.set_grad_enabled(True):
            scores = model(images)
        maps = extractor(class_idx=[int(c) for c in classes], scores=scores)
    return maps[0].detach()


# camkit options that select the peer's convention where camkit's default differs (see docs/methods.md)
GRADCAM_OPTIONS = {"scorecam": {"align_corners": True}}
TORCHCAM_OPTIONS = {
    "scorecam": {"normalize": "layer"},
    "iscam": {"normalize": "layer", "samples": 2},
    "sscam": {"normalize": "layer", "samples": 2},
    "smoothgradcam++": {"samples": 4, "std": 0.3},
}


def vit_reshape(tensor, height=14, width=14):
    """pytorch-grad-cam's documented ViT reshape_transform (tutorials/vit_example.py)."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def swin_reshape(tensor, height=7, width=7):
    """pytorch-grad-cam's documented Swin reshape_transform (tutorials/swinT_example.py)."""
    result = tensor.reshape(tensor.size(0), height, width, tensor.size(-1))
    return result.transpose(2, 3).transpose(1, 2)


def transformer_rows(batch: int) -> None:
    """ViT-B/16 and Swin-T Grad-CAM: camkit (no reshape code) vs pytorch-grad-cam (documented reshapes)."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None).eval()
    torch.nn.init.normal_(vit.heads.head.weight, std=0.02)  # zero-initialised by torchvision: every map would be 0
    swin = torchvision.models.swin_t(weights=None).eval()
    images = torch.rand(batch, 3, 224, 224)
    cases = [  # model, camkit layer (None: its default), the peer's layer, the peer's reshape, label
        (vit, None, "encoder.layers.encoder_layer_11.ln_1", vit_reshape, "ViT-B/16"),
        (swin, "features.7.1.norm2", "features.7.1.norm2", swin_reshape, "Swin-T"),
        (swin, "norm", "norm", swin_reshape, "Swin-T"),
    ]
    print(f"\nTransformers (random weights, seeded), B={batch}, 224x224, camkit's top-3 classes for both")
    print("| model | layer (camkit) | peer layer | max abs diff | correlation | peer max |")
    print("| --- | --- | --- | --- | --- | --- |")
    for model, layer, peer_layer, reshape, label in cases:
        e = camkit.explain(model, images, method="gradcam", layer=layer, top_k=3)
        module = dict(model.named_modules())[peer_layer]
        worst, corr, peak = 0.0, 1.0, 0.0
        with pgc.GradCAM(model=model, target_layers=[module], reshape_transform=reshape) as cam:
            for k in range(3):
                targets = [ClassifierOutputTarget(int(c)) for c in e.classes[:, k]]
                theirs = torch.from_numpy(np.asarray(cam(input_tensor=images, targets=targets)))
                diff, r = compare(e.maps[:, k], theirs)
                worst, corr, peak = max(worst, diff), min(corr, r), max(peak, float(theirs.max()))
        shown = e.layers[0] + (" (default)" if layer is None else "")
        print(f"| {label} | {shown} | {peer_layer} | {worst:.2e} | {corr:.6f} | {peak:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--methods", nargs="*", default=None)
    parser.add_argument("--transformers", action="store_true", help="only the ViT-B/16 and Swin-T rows")
    args = parser.parse_args()
    if args.transformers:
        transformer_rows(args.batch)
        return

    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None).eval()
    images = torch.rand(args.batch, 3, args.size, args.size)
    classes = camkit.explain(model, images, method="cam", layer=args.layer).classes[:, 0]
    layer = dict(model.named_modules())[args.layer]
    names = args.methods or ["cam", "gradcam"] + [m for m in camkit.methods.available() if m not in ("cam", "gradcam")]
    print(f"{args.model} (random weights), layer {args.layer}, B={args.batch}, {args.size}x{args.size}, "
          f"classes {classes.tolist()}")
    print("| method | peer | camkit options | max abs diff | correlation | camkit s | peer s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in names:
        for peer in ("grad-cam", "torchcam"):
            options = (GRADCAM_OPTIONS if peer == "grad-cam" else TORCHCAM_OPTIONS).get(name, {})
            torch.manual_seed(0)
            start = time.perf_counter()
            if peer == "grad-cam":
                theirs = gradcam_peer(model, images, classes, layer, name, {})
            else:
                theirs = torchcam_peer(model, images, classes, args.layer, name)
            peer_time = time.perf_counter() - start
            if theirs is None:
                continue
            start = time.perf_counter()
            e = camkit.explain(model, images, method=name, layer=args.layer, targets=classes, **options)
            ours_time = time.perf_counter() - start
            ours = e.maps[:, 0] if peer == "grad-cam" else normalize_maps(e.raw[:, 0])
            diff, corr = compare(ours, theirs, either_sign=name.startswith("eigen"))
            shown = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "defaults"
            print(f"| {name} | {peer} | {shown} | {diff:.2e} | {corr:.6f} | {ours_time:.2f} | {peer_time:.2f} |",
                  flush=True)
    # smoothing options against pytorch-grad-cam's eigen_smooth
    for name in ("gradcam", "gradcam++", "layercam"):
        if args.methods and name not in args.methods:
            continue
        theirs = gradcam_peer(model, images, classes, layer, name, {"eigen": True})
        e = camkit.explain(model, images, method=name, layer=args.layer, targets=classes, smooth="eigen")
        diff, corr = compare(e.maps[:, 0], theirs, either_sign=True)
        print(f"| {name} + smooth='eigen' | grad-cam (eigen_smooth=True) | defaults | {diff:.2e} | {corr:.6f} | | |",
              flush=True)


if __name__ == "__main__":
    main()
