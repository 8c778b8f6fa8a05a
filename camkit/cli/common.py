"""What every command shares: common options, the device, method lists, input standardisation.

Command modules import torch and camkit's heavier modules inside ``run``, so that ``camkit --help``
answers at once."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from camkit.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["add_common", "device", "method_list", "STANDARDIZE_CHOICES", "add_standardize", "wants_imagenet"]

STANDARDIZE_CHOICES = ("auto", "imagenet", "none")


def add_common(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--seed``."""
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")


def device(name: str) -> torch.device:
    """The ``--device`` argument as a ``torch.device``; CUDA only when it is there."""
    import torch

    try:
        chosen = torch.device(name)
    except RuntimeError as error:
        raise InputError(f"bad --device {name!r}: {error}") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but CUDA is not available")
    return chosen


def method_list(text: str) -> list[str]:
    """``"cam,gradcam"`` → ``["cam", "gradcam"]``, each a registered method."""
    from camkit import methods

    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in methods.available()]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; available: {methods.available()}")
    return names


def add_standardize(parser: argparse.ArgumentParser) -> None:
    """``--standardize``: whether images in [0, 1] are standardised with ImageNet's mean/std."""
    parser.add_argument("--standardize", choices=STANDARDIZE_CHOICES, default="auto",
                        help="input standardisation (x - mean) / std with ImageNet's mean and std: "
                             "auto (for torchvision: models), imagenet (always) or none")


def wants_imagenet(choice: str, model_spec: str) -> bool:
    """True when ``--standardize`` (``choice``) asks for ImageNet standardisation of this model."""
    return choice == "imagenet" or (choice == "auto" and model_spec.startswith("torchvision:"))
