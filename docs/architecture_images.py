"""Draw the pictures of docs/architectures.md: ``python docs/architecture_images.py`` (about a minute on a CPU).

Random weights (seeded) on synthetic inputs: the maps show each family's geometry — which grid the
layer has, how it lies over the input — not what a trained network sees.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision

import camkit
from camkit.data import Shapes

OUT = Path(__file__).resolve().parent / "images"


def picture(size: tuple[int, int], index: int = 3) -> torch.Tensor:
    """A shapes image (one object on clutter) resized to ``size``, (1, 3, H, W)."""
    image = Shapes("val", size=96, length=8, seed=0)[index]["image"][None]
    return torch.nn.functional.interpolate(image, size=size, mode="bilinear", align_corners=False)


def main() -> None:
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None).eval()
    torch.nn.init.normal_(vit.heads.head.weight, std=0.02)  # zero-initialised by torchvision
    image = picture((224, 224))
    e = camkit.explain(vit, image, top_k=3)
    titles = [f"ViT-B/16, class {c}" for c in e.classes[0].tolist()]
    camkit.plot.overlay(image, e, panel_size=2.0, dpi=70, titles=titles, save=OUT / "arch-vit.png")
    swin = torchvision.models.swin_t(weights=None).eval()
    wide = picture((160, 288))
    e = camkit.explain(swin, wide, layer="norm", top_k=2)
    titles = [f"Swin-T, class {c}" for c in e.classes[0].tolist()]
    camkit.plot.overlay(wide, e, panel_size=2.4, dpi=70, titles=titles, save=OUT / "arch-swin.png")
    r3d = torchvision.models.video.r3d_18(weights=None).eval()
    clip = torch.zeros(1, 3, 8, 112, 112) + 0.2
    for t in range(8):  # a red square crossing the frame
        x = 10 + 10 * t
        clip[0, 0, t, 40:72, x:x + 32] = 1.0
    e = camkit.explain(r3d, clip)
    camkit.plot.frame_strip(clip, e, panel_size=1.2, dpi=70, save=OUT / "arch-video.png")
    torch.manual_seed(0)
    detector = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, box_score_thresh=0.0).eval()
    scene = picture((192, 256), index=5)
    with torch.no_grad():
        found = detector(scene)[0]
    target = camkit.Detection(boxes=found["boxes"][:1], labels=found["labels"][:1])
    maps = {layer: camkit.explain(detector, scene, layer=layer, targets=target)
            for layer in ("backbone.body.16", "backbone.fpn.layer_blocks.0")}
    box = found["boxes"][:1].round().long()
    camkit.plot.compare(scene[0], {name: e.maps[0, 0] for name, e in maps.items()}, gt_boxes=box,
                        panel_size=2.2, dpi=70, save=OUT / "arch-detector.png")


if __name__ == "__main__":
    main()
