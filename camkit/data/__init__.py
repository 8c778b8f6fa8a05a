"""Data sets with localization ground truth.

``Shapes`` (synthetic, :mod:`camkit.data.shapes`) is always available; the wsolevaluation
reader and writer (``WSOLDataset``, ``export_wsol`` in :mod:`camkit.data.wsol`) are imported on
first access.
"""
from __future__ import annotations

import importlib

from camkit.data.shapes import Shapes, class_names

__all__ = ["Shapes", "class_names", "WSOLDataset", "export_wsol"]

_LAZY = {"WSOLDataset": "camkit.data.wsol", "export_wsol": "camkit.data.wsol"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in ("shapes", "wsol"):
        return importlib.import_module(f"camkit.data.{name}")
    raise AttributeError(f"module 'camkit.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
