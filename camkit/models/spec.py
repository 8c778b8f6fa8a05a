"""Resolve the ``MODEL`` argument of the command line: a shipped or camkit model name, a
torchvision model, or a model file; and the input that model expects (:func:`preprocessing`).

* ``nin-shapes`` (and every name ``camkit.models.available()`` lists) — :func:`camkit.models.get`;
* ``torchvision:NAME`` — any torchvision classification or segmentation model, random weights
  unless ``weights`` names some (``"DEFAULT"``); fetching weights needs network access;
* a path — a camkit model file (:func:`camkit.models.save`) or a TorchScript archive, both read
  without running code; a whole pickled ``nn.Module`` (``torch.save(model, path)``) only with
  ``trust=True`` (``--trust-model-file``): unpickling runs any code the file holds.
"""
from __future__ import annotations

import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from camkit.errors import InputError, one_line
from camkit.models.standardize import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["load_model", "Preprocessing", "preprocessing"]


def load_model(spec: str, weights: str | None = None, trust: bool = False) -> tuple[nn.Module, list[str] | None]:
    """``(model in eval mode, class names or None)`` for a model spec (see module docstring).

    A model file is read with ``torch.load(weights_only=True)`` (or as TorchScript); a file that
    only full unpickling can read raises :class:`InputError` unless ``trust`` is true."""
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
        if not path.is_file():
            raise InputError(f"model file {spec} does not exist")
        return _load_file(path, trust)
    if spec in models.available():
        model = models.get(spec, weights=weights)
        return model.eval(), getattr(model, "class_names", None)
    raise InputError(
        f"unknown model {spec!r}: use one of {models.available()}, 'torchvision:NAME', or a model file path"
    )


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with ``constants.pkl`` and ``code/`` (``torch.save`` has neither)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _looks_like_torch_file(path: Path) -> bool:
    """``torch.save`` writes a zip archive (or, before PyTorch 1.6, a pickle: protocol byte 0x80)."""
    with open(path, "rb") as handle:
        start = handle.read(4)
    return start == b"PK\x03\x04" or start[:1] == b"\x80"


def _load_file(path: Path, trust: bool) -> tuple[nn.Module, list[str] | None]:
    from camkit import models

    with warnings.catch_warnings():  # torch's deprecation notes would come before the one-line error
        warnings.simplefilter("ignore")
        if _is_torchscript(path):
            try:
                return torch.jit.load(str(path), map_location="cpu").eval(), None
            except Exception as error:
                raise InputError(f"could not read TorchScript file {path}: {one_line(error)}") from None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            if not _looks_like_torch_file(path):  # a text file, an image: nothing to unpickle
                raise InputError(f"could not read model file {path}: not a PyTorch file") from None
            if not trust:
                raise InputError(
                    f"{path} holds pickled Python objects (e.g. a whole model saved with torch.save(model)); "
                    "unpickling runs any code the file holds: pass --trust-model-file (trust=True) only if "
                    "you trust who made it, or save the model with camkit.models.save or torch.jit.script"
                ) from None
            try:
                state = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as error:
                raise InputError(f"could not read model file {path}: {one_line(error)}") from None
        except Exception as error:  # not a torch file, truncated, corrupt
            raise InputError(f"could not read model file {path} (truncated, or not a PyTorch file): "
                             f"{one_line(error)}") from None
    if isinstance(state, nn.Module):
        return state.eval(), getattr(state, "class_names", None)
    if isinstance(state, dict) and state.get("format") == models.zoo.MODEL_FORMAT:
        model = models.load(path)
        return model, getattr(model, "class_names", None)
    tensors = isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    kind = "a state_dict" if tensors else f"a {type(state).__name__}"
    raise InputError(f"{path} holds {kind}, not a model; a state_dict needs its architecture: build the "
                     "model in Python, load_state_dict, and call camkit.explain")


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects of an image: ``size``, the shorter side to resize to (aspect kept);
    ``mean`` / ``std``, the standardisation ``(x - mean) / std`` of images in [0, 1] (``None``: the
    images as they are); ``source``: where these come from, for the user."""

    size: int
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    source: str


def preprocessing(spec: str, model: nn.Module, weights: str | None = None, standardize: str = "auto",
                  size: int | None = None) -> Preprocessing:
    """The input ``model`` (loaded from ``spec``) expects.

    ``size``: given by the user, else the model's recorded training size
    (:func:`camkit.models.training_size`: ``meta["image_size"]`` or ``meta["data"]["size"]`` of a
    camkit model file), else for torchvision weights the shorter side their own preprocessing
    resizes to (``weights.transforms().resize_size``, before its center crop: the whole image is
    explained), else 224.  ``standardize``: ``"auto"`` (torchvision models: the weights' mean and
    std, ImageNet's for random weights; other models: none, a camkit model standardises inside),
    ``"imagenet"`` or ``"none"``.
    """
    from camkit.models.zoo import DEFAULT_SIZE, training_size

    if standardize not in ("auto", "imagenet", "none"):
        raise InputError(f"standardize must be 'auto', 'imagenet' or 'none', got {standardize!r}")
    if size is not None and int(size) < 1:
        raise InputError(f"size must be a positive number of pixels, got {size}")
    transform = _weights_transform(spec, weights)
    chosen, source = size, "--size"
    if chosen is None and training_size(model) is not None:
        chosen, source = training_size(model), "the model's training size"
    if chosen is None and transform is not None:
        resize = getattr(transform, "resize_size", None)
        if resize:
            chosen, source = int(resize[0] if isinstance(resize, (list, tuple)) else resize), f"{weights} weights"
    if chosen is None:
        chosen, source = DEFAULT_SIZE, "default"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    if standardize == "imagenet" or (standardize == "auto" and spec.startswith("torchvision:")):
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        if standardize == "auto" and transform is not None and getattr(transform, "mean", None) is not None:
            mean, std = tuple(transform.mean), tuple(transform.std)
    return Preprocessing(int(chosen), mean, std, source)


def _weights_transform(spec: str, weights: str | None):
    """The torchvision weights' own preprocessing (a ``transforms()`` object), or ``None``."""
    if weights is None or not spec.startswith("torchvision:"):
        return None
    import torchvision

    try:
        return torchvision.models.get_model_weights(spec.split(":", 1)[1]).verify(weights).transforms()
    except (KeyError, ValueError):
        return None
