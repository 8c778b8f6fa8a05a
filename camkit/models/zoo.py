"""Model factory over torchvision, camkit's own model files, and the shipped checkpoints.

>>> import camkit
>>> model = camkit.models.pretrained("nin-shapes")      # eval mode, model.class_names
>>> vgg = camkit.models.get("vgg16-gap", num_classes=12)  # CAM-ready, random weights
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from camkit.errors import CamkitError, InputError, one_line
from camkit.io import save_torch
from camkit.models.coarse import CoarseNet
from camkit.models.heads import gap_head
from camkit.models.nin import NiN

__all__ = ["WeightsError", "get", "pretrained", "save", "load", "available", "training_size", "DEFAULT_SIZE",
           "WEIGHTS_DIR"]

#: The shorter side images are resized to when nothing says what a model was trained on.
DEFAULT_SIZE = 224
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODEL_FORMAT = "camkit-model-v1"
#: Checkpoints shipped inside the package: name -> file in ``WEIGHTS_DIR``.
SHIPPED = {"nin-shapes": "nin-shapes.pt", "coarsenet-shapes": "coarsenet-shapes.pt"}
#: Architectures a model file may hold: ``arch`` name -> class built from the file's ``config``.
ARCHITECTURES: dict[str, type[nn.Module]] = {"nin": NiN, "coarse": CoarseNet}
#: torchvision backbones ``get`` knows; ``"<name>-gap"`` / ``"<name>-gmp"`` are their CAM-ready forms.
BACKBONES = ("vgg16", "googlenet", "resnet18", "resnet50")


class WeightsError(CamkitError, RuntimeError):
    """Pretrained weights could not be fetched or read."""


def available() -> list[str]:
    """Names ``get`` accepts."""
    return (["nin"] + list(BACKBONES) + [f"{b}-{p}" for b in BACKBONES for p in ("gap", "gmp")]
            + sorted(SHIPPED))


def _torchvision(name: str, weights, num_classes: int) -> nn.Module:
    import torchvision

    kwargs = {}
    if weights is None:
        if name == "googlenet":
            kwargs = {"init_weights": True, "aux_logits": False}
    else:
        try:
            weights = torchvision.models.get_model_weights(name)[weights] if isinstance(weights, str) else weights
        except KeyError:
            known = [w.name for w in torchvision.models.get_model_weights(name)]
            raise InputError(f"unknown weights {weights!r} for {name!r}; "
                             f"torchvision has {known + ['DEFAULT']}") from None
    try:
        model = torchvision.models.get_model(name, weights=weights, **kwargs)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a corrupt download a RuntimeError
        if weights is None:
            raise
        raise WeightsError(
            f"could not fetch torchvision weights {str(weights)!r} for {name!r}: {error}. "
            "Download them on a machine with network access into the torch hub cache "
            f"({torch.hub.get_dir()}/checkpoints) and copy them here, or pass weights=None for "
            "random initialisation.") from error
    if num_classes != 1000:
        _replace_classifier(model, name, num_classes)
    return model


def _replace_classifier(model: nn.Module, name: str, num_classes: int) -> None:
    """A new ``num_classes``-way last Linear layer (VGG: ``classifier[-1]``, others: ``fc``)."""
    if name.startswith("vgg"):
        classifier = model.get_submodule("classifier")
        assert isinstance(classifier, nn.Sequential)
        last = classifier[-1]
        assert isinstance(last, nn.Linear)
        classifier[-1] = nn.Linear(last.in_features, num_classes)
    else:
        fc = model.get_submodule("fc")
        assert isinstance(fc, nn.Linear)
        model.fc = nn.Linear(fc.in_features, num_classes)


def get(name: str, num_classes: int = 1000, weights=None, **kwargs) -> nn.Module:
    """A model by name: ``"nin"``, a torchvision backbone (``"vgg16"``, ``"googlenet"``,
    ``"resnet18"``, ``"resnet50"``), its CAM-ready form ``"<backbone>-gap"`` / ``"-gmp"``
    (:func:`gap_head`), or a shipped checkpoint (``"nin-shapes"``).

    ``weights``: ``None`` (random), or a torchvision weights name such as ``"DEFAULT"`` /
    ``"IMAGENET1K_V1"``; fetching them needs network access, and failure raises
    :class:`WeightsError` saying what to do.  With weights, a new ``num_classes``-way classifier
    replaces the ImageNet one.  ``kwargs`` go to ``NiN`` or ``gap_head``.
    """
    if num_classes < 1:
        raise InputError(f"num_classes must be >= 1, got {num_classes}")
    if name in SHIPPED:
        return pretrained(name)
    if name == "nin":
        if weights is not None:
            raise InputError("'nin' has no downloadable weights; use pretrained('nin-shapes') or train one")
        return NiN(num_classes, **kwargs)
    base, _, pool = name.partition("-")
    if base not in BACKBONES or pool not in ("", "gap", "gmp"):
        raise InputError(f"unknown model {name!r}; available: {available()}")
    if not pool:
        return _torchvision(base, weights, num_classes)
    backbone = _torchvision(base, weights, 1000)
    return gap_head(backbone, num_classes, pool="avg" if pool == "gap" else "max", **kwargs)


def save(model: nn.Module, path, meta: dict | None = None) -> None:
    """Save a ``NiN`` or ``CoarseNet`` with its config and ``class_names`` for :func:`load` (atomic write)."""
    arch = next((name for name, cls in ARCHITECTURES.items() if type(model) is cls), None)
    if arch is None:
        raise InputError(f"save() stores {[c.__name__ for c in ARCHITECTURES.values()]} models; got "
                         f"{type(model).__name__} (use torch.save on its state_dict)")
    built: Any = model                                    # NiN and CoarseNet carry config and class_names
    state = {"format": MODEL_FORMAT, "arch": arch, "config": dict(built.config),
             "class_names": list(built.class_names or []), "meta": dict(meta or {}),
             "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    save_torch(path, state)


def load(path) -> nn.Module:
    """Load a model file written by :func:`save`, in eval mode (``torch.load(weights_only=True)``)."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"model file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # not a torch file, truncated, or pickled objects weights_only refuses
        raise WeightsError(f"could not read model file {path}: {one_line(error)}") from None
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise WeightsError(f"{path} is not a camkit model file (format {MODEL_FORMAT!r})")
    arch = state.get("arch", "nin")
    if arch not in ARCHITECTURES:
        raise WeightsError(f"{path} holds an unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    model: Any = ARCHITECTURES[arch](**state["config"])
    model.load_state_dict(_renamed_keys(state["state_dict"]))
    model.class_names = list(state["class_names"]) or None
    model.meta = state.get("meta", {})
    return model.eval()


def _renamed_keys(state_dict: dict) -> dict:
    """Files saved before the input module was named ``standardize`` call it ``normalize``."""
    return {("standardize." + key[len("normalize."):] if key.startswith("normalize.") else key): value
            for key, value in state_dict.items()}


def training_size(model: nn.Module) -> int | None:
    """The image side a camkit model was trained at, as its file records it (``meta["image_size"]``,
    or ``meta["data"]["size"]`` as ``camkit train`` writes it), or ``None`` when it does not say."""
    meta = getattr(model, "meta", None)
    if not isinstance(meta, dict):
        return None
    data = meta.get("data")
    for value in (meta.get("image_size"), data.get("size") if isinstance(data, dict) else None):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def pretrained(name: str = "nin-shapes") -> nn.Module:
    """A model shipped inside camkit, in eval mode, with ``class_names`` and ``meta`` (the side it was
    trained at: :func:`training_size`).

    ``"nin-shapes"``: a NiN-GAP trained on :class:`camkit.data.Shapes` (64×64, 12 classes), 16×16
    maps.  ``"coarsenet-shapes"``: a :class:`CoarseNet` (patch stem + VGG blocks + GAP) trained on
    224×224 shapes, 7×7 maps (stride 32, the regime Augmented Grad-CAM was made for).  Both take
    the data set's images in [0, 1] as they are; their CAM is ``model.class_maps(images)``.
    """
    if name not in SHIPPED:
        raise InputError(f"no shipped model {name!r}; available: {sorted(SHIPPED)}")
    return load(WEIGHTS_DIR / SHIPPED[name])
