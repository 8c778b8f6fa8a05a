"""Data sets with localization ground truth.

``Shapes`` (synthetic, :mod:`camkit.data.shapes`) is always available; the public names of the
wsolevaluation reader and writer (:mod:`camkit.data.wsol`: ``WSOLDataset``, ``export_wsol``,
``read_metadata`` …) are imported on first access.
"""
from __future__ import annotations

import importlib

from camkit.data.batching import collate
from camkit.data.shapes import Shapes, class_names

__all__ = ["Shapes", "class_names", "collate", "WSOLDataset", "WSOLMetadata", "read_metadata", "export_wsol",
           "resize_box"]

_WSOL = "camkit.data.wsol"
_SUBMODULES = ("batching", "shapes", "wsol")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"camkit.data.{name}")
    if not name.startswith("_"):
        try:
            wsol = importlib.import_module(_WSOL)
        except ModuleNotFoundError as error:
            if error.name != _WSOL:
                raise
        else:
            if name in getattr(wsol, "__all__", ()):
                value = getattr(wsol, name)
                globals()[name] = value
                return value
    raise AttributeError(f"module 'camkit.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
