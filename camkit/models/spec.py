"""Resolve the ``MODEL`` argument of the command line: a shipped or camkit model name, a
torchvision model, or a model file.

* ``nin-shapes`` (and every name ``camkit.models.available()`` lists) — :func:`camkit.models.get`;
* ``torchvision:NAME`` — any torchvision classification or segmentation model, random weights
  unless ``weights`` names some (``"DEFAULT"``); fetching weights needs network access;
* a path — a camkit model file (:func:`camkit.models.save`), a TorchScript archive, or a whole
  pickled ``nn.Module`` (``torch.save(model, path)``; unpickling runs code: load only files you trust).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from camkit.errors import InputError

__all__ = ["load_model"]


def load_model(spec: str, weights: str | None = None) -> tuple[nn.Module, list[str] | None]:
    """``(model in eval mode, class names or None)`` for a model spec (see module docstring)."""
    from camkit import models

    if spec.startswith("torchvision:"):
        name = spec.split(":", 1)[1]
        import torchvision

        if name not in torchvision.models.list_models():
            raise InputError(f"unknown torchvision model {name!r}")
        model = models.zoo._torchvision(name, weights, 1000)
        names = None
        if weights is not None:
            meta = torchvision.models.get_model_weights(name).verify(weights).meta
            names = list(meta.get("categories") or []) or None
        return model.eval(), names
    path = Path(spec)
    if path.suffix in (".pt", ".pth", ".ckpt") or path.exists():
        if not path.exists():
            raise InputError(f"model file {spec} does not exist")
        return _load_file(path)
    if spec in models.available():
        model = models.get(spec, weights=weights)
        return model.eval(), getattr(model, "class_names", None)
    raise InputError(
        f"unknown model {spec!r}: use one of {models.available()}, 'torchvision:NAME', or a model file path"
    )


def _load_file(path: Path) -> tuple[nn.Module, list[str] | None]:
    from camkit import models

    try:
        model = models.load(path)
        return model, getattr(model, "class_names", None)
    except models.WeightsError:
        pass
    except Exception:  # not a camkit file: fall through to the other formats
        pass
    try:
        return torch.jit.load(str(path), map_location="cpu").eval(), None
    except (RuntimeError, ValueError):
        pass
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise InputError(f"could not read model file {path}: {error}") from None
    if not isinstance(model, nn.Module):
        raise InputError(
            f"{path} holds a {type(model).__name__}, not a model; a state_dict needs its architecture: "
            "build the model in Python and call camkit.explain"
        )
    return model.eval(), getattr(model, "class_names", None)
