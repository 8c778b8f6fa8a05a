"""What every command shares: common options, numeric option types, the device, method lists,
input standardisation.

Command modules import torch and camkit's heavier modules inside ``run``, so that ``camkit --help``
answers at once."""
from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from camkit.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["add_common", "device", "method_list", "STANDARDIZE_CHOICES", "add_standardize", "integer", "real",
           "add_trust"]

STANDARDIZE_CHOICES = ("auto", "imagenet", "none")


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` for an integer in ``[low, high]``: ``integer(1)`` is a positive count."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            bound = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def real(low: float, high: float = math.inf, *, low_open: bool = False,
         high_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` for a finite number in the interval from ``low`` to ``high`` (each end
    closed unless ``low_open`` / ``high_open``); NaN and infinities are refused."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (math.isfinite(value) and above and below):
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def add_common(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--seed``."""
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")


def device(name: str) -> torch.device:
    """The ``--device`` argument as a ``torch.device`` that holds data and is there (a tensor is
    made on it to find out); ``meta`` is refused: it computes shapes, not maps."""
    import torch

    try:
        chosen = torch.device(name)
    except RuntimeError as error:
        raise InputError(f"bad --device {name!r}: {error}") from None
    if chosen.type == "meta":
        raise InputError("--device meta holds no data (shapes only): use cpu or cuda")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but CUDA is not available")
    try:
        torch.zeros(1, device=chosen)
    except (RuntimeError, AssertionError) as error:  # an index past the last GPU, a backend not built
        raise InputError(f"--device {name} cannot be used: {str(error).splitlines()[0]}") from None
    return chosen


def method_list(text: str) -> list[str]:
    """``"cam,gradcam"`` → ``["cam", "gradcam"]``, each a registered method."""
    from camkit import methods

    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in methods.available()]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; available: {methods.available()}")
    if not names:
        raise InputError("no method given")
    return names


def add_standardize(parser: argparse.ArgumentParser) -> None:
    """``--standardize``: whether images in [0, 1] are standardised, and with which mean and std."""
    parser.add_argument("--standardize", choices=STANDARDIZE_CHOICES, default="auto",
                        help="input standardisation (x - mean) / std: auto (for torchvision: models, the "
                             "weights' own mean and std, ImageNet's for random weights), imagenet "
                             "(always ImageNet's) or none")


def add_trust(parser: argparse.ArgumentParser) -> None:
    """``--trust-model-file``: allow a model file that only full unpickling can read."""
    parser.add_argument("--trust-model-file", action="store_true",
                        help="WARNING: unpickling runs any code the file holds. Load a pickled model "
                             "file (torch.save(model)) only if you trust who made it; without this "
                             "flag model files load with torch.load(weights_only=True)")


def key_value(spec: str, flag: str = "--option") -> tuple[str, Any]:
    """``"L=32"`` → ``("L", 32)``: a method option from the command line, VALUE read as JSON when it
    parses (numbers, booleans, lists), else kept as a string."""
    key, equals, text = spec.partition("=")
    if not (equals and key.strip()):
        raise InputError(f"{flag} {spec!r}: expected KEY=VALUE")
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return key.strip(), value


def shipped_models() -> tuple[str, ...]:
    """``("coarsenet-shapes", "nin-shapes")``: the models shipped inside camkit (the files of
    ``camkit/models/weights``, read without importing torch, so that ``--help`` stays instant)."""
    from pathlib import Path

    return tuple(sorted(path.stem for path in (Path(__file__).parents[1] / "models" / "weights").glob("*.pt")))
