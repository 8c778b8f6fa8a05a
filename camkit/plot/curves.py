"""BoxAcc-vs-τ curves: ``threshold_curve``."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from camkit.errors import InputError
from camkit.plot.figures import _finish, new_figure
from camkit.plot.inputs import _to_numpy

__all__ = ["threshold_curve"]

_THRESHOLD_KEYS = ("thresholds", "threshold", "taus", "tau", "cam_thresholds")


_ACCURACY_KEYS = ("box_acc", "boxacc", "box_accuracy", "curves", "curve", "accuracy", "acc")


_DELTA_KEYS = ("iou_thresholds", "deltas", "delta", "iou_threshold")


def _find_key(mapping: Mapping, keys: Sequence[str]):
    lowered = {str(key).lower(): key for key in mapping}
    for key in keys:
        if key in lowered:
            return mapping[lowered[key]]
    return None


def _is_result(value: Any) -> bool:
    return isinstance(value, Mapping) and _find_key(value, _THRESHOLD_KEYS) is not None


def _curve_lines(name: str, value: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """One entry of ``threshold_curve`` -> ``(label, τ, BoxAcc)`` lines."""
    deltas = None
    if _is_result(value):
        thresholds = _find_key(value, _THRESHOLD_KEYS)
        accuracy = _find_key(value, _ACCURACY_KEYS)
        deltas = _find_key(value, _DELTA_KEYS)
        if accuracy is None:
            raise InputError(f"curve {name!r}: a result dict needs one of the keys {_ACCURACY_KEYS}")
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        thresholds, accuracy = value
    else:
        raise InputError(f"curve {name!r}: give (thresholds, box_acc) or a result dict with "
                         f"thresholds and box_acc; got {type(value).__name__}")
    tau = _to_numpy(thresholds).astype(np.float64).reshape(-1)

    if isinstance(accuracy, Mapping):
        series = [(f"δ={float(delta):g}" if _numeric(delta) else str(delta), values)
                  for delta, values in accuracy.items()]
    else:
        acc = _to_numpy(accuracy).astype(np.float64)
        if acc.ndim == 1:
            series = [("", acc)]
        elif acc.ndim == 2:
            if acc.shape[1] != tau.size and acc.shape[0] == tau.size:
                acc = acc.T
            delta_values = (list(_to_numpy(deltas).reshape(-1)) if deltas is not None
                            else list(range(acc.shape[0])))
            if len(delta_values) != acc.shape[0]:
                raise InputError(f"curve {name!r}: {len(delta_values)} IoU threshold(s) for "
                                 f"{acc.shape[0]} curve(s)")
            series = [(f"δ={float(delta):g}", row) for delta, row in zip(delta_values, acc, strict=True)]
        else:
            raise InputError(f"curve {name!r}: box accuracy must be 1-D (per τ) or 2-D (per δ, τ); "
                             f"got shape {acc.shape}")
    lines = []
    for suffix, values in series:
        acc = _to_numpy(values).astype(np.float64).reshape(-1)
        if acc.size != tau.size:
            raise InputError(f"curve {name!r}: {acc.size} accuracies for {tau.size} thresholds")
        label = " ".join(part for part in (name, suffix) if part)
        lines.append((label, tau, acc))
    return lines


def _numeric(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def threshold_curve(curves: Mapping[str, Any], ax: Axes | None = None, mark_max: bool = True,
                    title: str | None = "BoxAcc vs. CAM threshold", figsize=(5.0, 3.5),
                    dpi: float = 100.0, save: str | os.PathLike | None = None) -> Figure:
    """Plot BoxAcc(τ) curves, the maximum of each marked (MaxBoxAcc is that maximum at δ = 0.5).

    ``curves``: ``{name: (thresholds, box_acc)}`` with ``box_acc`` ``(T,)``, ``(D, T)`` or
    ``{δ: (T,)}``; or ``{name: result dict}`` / one result dict with a thresholds key
    (``thresholds``/``tau``) and an accuracy key (``box_acc``/``curves``/``accuracy``: one of the
    same forms, with ``iou_thresholds``/``deltas`` naming the rows of a 2-D array).  Accuracies
    are plotted as given (fractions or percent).  Draws on ``ax`` when given.
    """
    if _is_result(curves):
        curves = {"": curves}
    if not isinstance(curves, Mapping) or not curves:
        raise InputError("curves must be a non-empty dict {name: (thresholds, box_acc)} or a result dict")
    lines = [line for name, value in curves.items() for line in _curve_lines(str(name), value)]
    if ax is None:
        figure = new_figure(figsize, dpi=dpi, layout="constrained")
        ax = figure.add_subplot()
    else:
        figure = cast(Figure, ax.figure)
    percent = max(float(np.nanmax(acc)) if acc.size else 0.0 for _, _, acc in lines) > 1.0
    for label, tau, acc in lines:
        if mark_max and acc.size and np.any(np.isfinite(acc)):
            best = int(np.nanargmax(acc))
            label = f"{label} (max {acc[best]:.{1 if percent else 3}f} at τ={tau[best]:.2f})".strip()
            (line,) = ax.plot(tau, acc, label=label)
            ax.plot([tau[best]], [acc[best]], "o", color=line.get_color())
        else:
            ax.plot(tau, acc, label=label or None)
    ax.set_xlabel("CAM threshold τ")
    ax.set_ylabel("BoxAcc (%)" if percent else "BoxAcc")
    ax.set_ylim(0, 100 if percent else 1)
    ax.grid(True, alpha=0.3)
    if any(label for label, _, _ in lines) or mark_max:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _finish(figure, save)
