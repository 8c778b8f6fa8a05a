"""Which layer to tap and which classifier head CAM reads its weights from.

* ``resolve_layers`` turns a layer spec (module, dotted name, or a list of them) into
  ``{name: module}``; an unknown name gets an error listing the closest names.
* ``probe`` runs the model once on a single image with every module hooked, to find the default
  layer (the last module to finish whose output is ``(1, C, h, w)`` with ``h·w > 1``) and, for CAM,
  the classifier head.
* ``find_head`` identifies the head *numerically*: a Linear or 1x1 conv ``W, b`` after the tapped
  layer such that ``logits = W · pool(act(A)) + b`` on the probe image, with pool ∈ {avg, max} and
  act ∈ {identity, ReLU}; or ``logits = pool(act(A))`` when ``A`` has one channel per class (NiN).
"""
from __future__ import annotations

import difflib
import weakref
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from camkit.errors import HeadError, LayerError

__all__ = ["LayerSpec", "Head", "resolve_layers", "find_default_layer", "find_head", "module_name", "release_caches"]

LayerSpec = Union[None, str, nn.Module, Sequence[Union[str, nn.Module]]]


@dataclass(frozen=True)
class Head:
    """A CAM classifier head: ``logits = weight · pool(act(A)) + bias``.

    ``weight`` is ``None`` for identity heads (the tapped layer has one channel per class).
    """

    module_name: str | None
    weight: torch.Tensor | None  # (N, C)
    bias: torch.Tensor | None  # (N,)
    pool: str  # "avg" or "max"
    activation: str | None  # None or "relu"

    def features(self, activations: torch.Tensor) -> torch.Tensor:
        """``act(A)``: what the head pools, (B, C, h, w)."""
        return F.relu(activations) if self.activation == "relu" else activations

    def class_weights(self, classes: torch.Tensor, channels: int, like: torch.Tensor) -> torch.Tensor:
        """Rows ``W_c`` of the explained classes, (B, K) → (B, K, C); one-hot for identity heads."""
        if self.weight is None:
            return F.one_hot(classes, channels).to(like)
        return self.weight.detach().to(like)[classes]

    def class_maps(self, activations: torch.Tensor, classes: torch.Tensor, bias: bool = False) -> torch.Tensor:
        """CAM ``M_c(x, y) = Σ_k W_ck act(A)_k(x, y) [+ b_c]``: activations (B, C, h, w), classes (B, K) → (B, K, h, w)."""
        features = self.features(activations)
        if self.weight is None:
            index = classes[:, :, None, None].expand(-1, -1, *features.shape[-2:])
            return features.gather(1, index)
        weight = self.weight.detach().to(features)[classes]  # (B, K, C)
        maps = torch.einsum("bkc,bchw->bkhw", weight, features)
        if bias and self.bias is not None:
            maps = maps + self.bias.detach().to(features)[classes][..., None, None]
        return maps


def module_name(model: nn.Module, module: nn.Module) -> str:
    """The dotted name of ``module`` in ``model``; :class:`LayerError` when it is not one of its modules."""
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    raise LayerError(f"{type(module).__name__} module given as layer is not part of the model")


def resolve_layers(model: nn.Module, spec: LayerSpec) -> dict[str, nn.Module]:
    """Layer spec → ``{dotted name: module}``, in the order given.  ``None`` is handled by the caller."""
    items = [spec] if isinstance(spec, (str, nn.Module)) else list(spec)
    if not items:
        raise LayerError("layer list is empty")
    modules = dict(model.named_modules())
    resolved: dict[str, nn.Module] = {}
    for item in items:
        if isinstance(item, nn.Module):
            resolved[module_name(model, item)] = item
        elif isinstance(item, str):
            if item not in modules:
                raise LayerError(_unknown_layer_message(item, modules))
            resolved[item] = modules[item]
        else:
            raise LayerError(f"a layer is given as a module or a dotted name, not {type(item).__name__}")
    return resolved


def _unknown_layer_message(name: str, modules: dict[str, nn.Module]) -> str:
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    if not close:
        close = [n for n in names if n.startswith(name.split(".")[0])][:5] or names[-5:]
    return f"unknown layer {name!r}; close candidates: {', '.join(close)}"


@dataclass
class _Record:
    name: str
    module: nn.Module
    order: int
    inputs: tuple
    output: object


def _run_recorded(model: nn.Module, image: torch.Tensor) -> tuple[list[_Record], object]:
    """One no-grad forward of ``image`` (1, 3, H, W) recording every submodule's inputs and output."""
    records: list[_Record] = []
    handles = []

    def hook_for(name: str):
        def hook(module, inputs, output):
            records.append(_Record(name, module, len(records), inputs, output))

        return hook

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook_for(name)))
    try:
        with torch.no_grad():
            output = model(image)
    finally:
        for handle in handles:
            handle.remove()
    return records, output


def _is_feature_map(value: object) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() == 4 and value.shape[-1] * value.shape[-2] > 1


def _passes_through(record: _Record) -> bool:
    """A module that adds nothing to its input's map: its output equals its only tensor input (Identity,
    eval Dropout, a pool to the same size), or it is an adaptive pool that only repeats values
    (VGG's 7×7 ``avgpool`` on a smaller map)."""
    tensors = [x for x in record.inputs if isinstance(x, torch.Tensor)]
    if len(tensors) != 1:
        return False
    (source,) = tensors
    if isinstance(record.module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and source.dim() == 4:
        return record.output.shape[-2] >= source.shape[-2] and record.output.shape[-1] >= source.shape[-1]
    return source.shape == record.output.shape and torch.equal(source, record.output)


# model → {(input shape, dtype, structure): layer name}; a changed structure misses the cache.
_DEFAULT_LAYER_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_HEAD_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def release_caches(model: nn.Module) -> None:
    """Forget the default layer and classifier head found for ``model`` (found again on next use)."""
    _DEFAULT_LAYER_CACHE.pop(model, None)
    _HEAD_CACHE.pop(model, None)


def _structure_key(model: nn.Module, images: torch.Tensor, extra: object = None) -> tuple:
    return (tuple(images.shape[1:]), images.dtype, images.device.type, tuple(map(id, model.modules())), extra)


def find_default_layer(model: nn.Module, images: torch.Tensor) -> str:
    """Name of the last module to finish whose output on ``images[:1]`` is ``(1, C, h, w)``, ``h·w > 1``.

    Modules that only pass their input through (Identity, eval Dropout, a pool to the same size) are
    skipped in favour of the module that produced the map.  Cached per model and input shape.
    """
    key = _structure_key(model, images)
    cache = _DEFAULT_LAYER_CACHE.setdefault(model, {})
    if key not in cache:
        records, _ = _run_recorded(model, images[:1])
        candidates = [r for r in records if _is_feature_map(r.output) and not _passes_through(r)]
        if not candidates:
            raise LayerError(
                "the model has no spatial layer: no module outputs a 4-D (B, C, h, w) feature map with "
                f"h·w > 1 on an input of shape {tuple(images.shape[1:])}; CAM methods need a convolutional "
                "layer (pass layer=... to choose one)"
            )
        cache[key] = candidates[-1].name
    return cache[key]


def find_head(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    select_output: Callable[[object], torch.Tensor],
    head: str | nn.Module | None = None,
) -> Head:
    """The classifier head CAM uses for ``layer`` (see module docstring).  Cached per model, layer, input shape."""
    key = _structure_key(model, images, (layer, head if isinstance(head, (str, type(None))) else id(head)))
    cache = _HEAD_CACHE.setdefault(model, {})
    if key in cache:
        return cache[key]
    records, output = _run_recorded(model, images[:1])
    logits = select_output(output)
    tapped = [r for r in records if r.name == layer]
    if not tapped:
        raise LayerError(f"layer {layer!r} was not reached by the forward pass")
    activations = tapped[-1].output
    if not _is_feature_map(activations) and not (isinstance(activations, torch.Tensor) and activations.dim() == 4):
        raise LayerError(f"layer {layer!r} does not output a (B, C, h, w) feature map")
    if logits.dim() != 2:
        raise HeadError(
            f"CAM needs a classifier output (B, num_classes); the model returns shape {tuple(logits.shape)}; "
            "use method='gradcam' (with targets=camkit.Segmentation(...) for dense outputs)"
        )
    if head is not None:
        found = _user_head(model, head, activations, logits)
    else:
        found = _search_head(records, tapped[-1].order, activations, logits, layer)
    cache[key] = found
    return found


def _pooled_candidates(activations: torch.Tensor):
    for activation in (None, "relu"):
        features = F.relu(activations) if activation == "relu" else activations
        for pool in ("avg", "max"):
            pooled = features.float().mean((2, 3)) if pool == "avg" else features.float().amax((2, 3))
            yield pool, activation, pooled


def _matches(prediction: torch.Tensor, logits: torch.Tensor) -> bool:
    """``prediction ≈ logits`` up to the precision the model ran in (autocast gives half precision)."""
    tolerance = 1e-4 if logits.dtype in (torch.float32, torch.float64) else 2e-2
    logits = logits.float()
    scale = logits.abs().max().clamp_min(1.0)
    return prediction.shape == logits.shape and bool(((prediction - logits).abs() <= tolerance * scale).all())


def _head_weights(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    if isinstance(module, nn.Linear):
        return module.weight, module.bias
    if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1:
        return module.weight.flatten(1), module.bias
    return None


def _search_head(records, tapped_order: int, activations: torch.Tensor, logits: torch.Tensor, layer: str) -> Head:
    channels, classes = activations.shape[1], logits.shape[1]
    if channels == classes:
        for pool, activation, pooled in _pooled_candidates(activations):
            if _matches(pooled, logits):
                return Head(None, None, None, pool, activation)
    seen = []
    for record in reversed([r for r in records if r.order > tapped_order]):
        weights = _head_weights(record.module)
        if weights is None:
            continue
        weight, bias = weights
        seen.append(f"{record.name} ({type(record.module).__name__} {weight.shape[1]}→{weight.shape[0]})")
        if weight.shape != (classes, channels):
            continue
        for pool, activation, pooled in _pooled_candidates(activations):
            prediction = pooled @ weight.detach().float().T
            if bias is not None:
                prediction = prediction + bias.detach().float()
            if _matches(prediction, logits):
                return Head(record.name, weight, bias, pool, activation)
    found = f" (layers after it: {', '.join(seen[:4])})" if seen else ""
    raise HeadError(
        f"CAM needs a Linear or 1x1-conv classifier applied right after global pooling of layer {layer!r} "
        f"({channels} channels → {classes} classes), and none was found{found}. "
        "Use method='gradcam', tap the layer the classifier pools (layer=...), or pass head=..."
    )


def _user_head(model: nn.Module, head: str | nn.Module, activations: torch.Tensor, logits: torch.Tensor) -> Head:
    name = head if isinstance(head, str) else module_name(model, head)
    module = resolve_layers(model, name)[name]
    weights = _head_weights(module)
    if weights is None:
        raise HeadError(f"head {name!r} is a {type(module).__name__}; CAM needs a Linear or 1x1 Conv2d")
    weight, bias = weights
    if weight.shape[1] != activations.shape[1]:
        raise HeadError(
            f"head {name!r} takes {weight.shape[1]} features but the tapped layer has {activations.shape[1]} channels"
        )
    for pool, activation, pooled in _pooled_candidates(activations):
        prediction = pooled @ weight.detach().float().T + (0 if bias is None else bias.detach().float())
        if _matches(prediction, logits):
            return Head(name, weight, bias, pool, activation)
    return Head(name, weight, bias, "avg", None)
