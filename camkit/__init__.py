"""camkit: class activation maps and weakly-supervised localization for PyTorch CNNs.

    >>> import torch, camkit
    >>> from camkit.data import Shapes
    >>> model = camkit.models.pretrained("nin-shapes")            # shipped: 16×16 maps of 64² images
    >>> images = torch.stack([Shapes("val", size=64, length=2)[i]["image"] for i in range(2)])
    >>> e = camkit.explain(model, images, method="gradcam")
    >>> e.maps.shape                                              # (B, K, H, W) in [0, 1]
    torch.Size([2, 1, 64, 64])

Submodules (``camkit.localize``, ``camkit.plot``, ``camkit.augmented`` …) are imported on
first attribute access so that ``import camkit`` stays light.
"""
from __future__ import annotations

import importlib

__version__ = "0.2.0"

_SUBMODULES = (
    "augmented", "bench", "cli", "data", "detection", "errors", "explainer", "faithfulness", "hooks",
    "imagefiles", "io", "layers", "layouts", "localize", "maps", "methods", "models", "photos", "plot", "targets",
    "train",
)
# The function ``camkit.explain`` lives in ``camkit.explainer`` so that no submodule shadows it.
_LAZY_ATTRIBUTES = {
    "explain": ("camkit.explainer", "explain"),
    "Explainer": ("camkit.explainer", "Explainer"),
    "Explanation": ("camkit.explainer", "Explanation"),
    "Segmentation": ("camkit.targets", "Segmentation"),
    "Detection": ("camkit.detection", "Detection"),
}


def __getattr__(name: str):
    if name in _LAZY_ATTRIBUTES:
        module_name, attribute = _LAZY_ATTRIBUTES[name]
        value = getattr(importlib.import_module(module_name), attribute)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"camkit.{name}")
    raise AttributeError(f"module 'camkit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_ATTRIBUTES) | set(_SUBMODULES))
