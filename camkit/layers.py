"""Which layer to tap and which classifier head CAM reads its weights from.

* ``resolve_layers`` turns a layer spec (module, dotted name, or a list of them) into
  ``{name: module}``; an unknown name gets an error listing the closest names.
* ``find_default_layer`` runs the model once on a single image with every module hooked and takes
  the last module to finish whose output lies over the input as a map (a layout of
  :mod:`camkit.layouts`: channels-first, channels-last or tokens, more than one position) *and
  influences the output*: the gradient of the output reaches its grid.  In torchvision's ViT the
  last encoder block reaches the head only through the class token (zero gradient on every patch
  token), so the default is the LayerNorm that feeds the last block's attention.
* ``find_head`` identifies the head *numerically*: a Linear or 1x1 conv ``W, b`` after the tapped
  layer such that ``logits = W · pool(act(A)) + b`` on the probe image, with pool ∈ {avg, max} over
  every position and act ∈ {identity, ReLU}; or ``logits = pool(act(A))`` when ``A`` has one
  channel per class (NiN).
"""
from __future__ import annotations

import difflib
import itertools
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.conv import _ConvNd

from camkit.errors import HeadError, LayerError
from camkit.hooks import run_model
from camkit.layouts import Layout, find_layout

__all__ = ["LayerSpec", "Head", "resolve_layers", "find_default_layer", "find_head", "module_name",
           "release_caches", "nonfinite_source"]

LayerSpec = str | nn.Module | Sequence[str | nn.Module] | None


@dataclass(frozen=True)
class Head:
    """A CAM classifier head: ``logits = weight · pool(act(A)) + bias``, pooled over every position.

    ``weight`` is ``None`` for identity heads (the tapped layer has one channel per class).
    """

    module_name: str | None
    weight: torch.Tensor | None  # (N, C)
    bias: torch.Tensor | None  # (N,)
    pool: str  # "avg" or "max"
    activation: str | None  # None or "relu"

    def features(self, activations: torch.Tensor) -> torch.Tensor:
        """``act(A)``: what the head pools, (B, C, *grid)."""
        return F.relu(activations) if self.activation == "relu" else activations

    def class_weights(self, classes: torch.Tensor, channels: int, like: torch.Tensor) -> torch.Tensor:
        """Rows ``W_c`` of the explained classes, (B, K) → (B, K, C); one-hot for identity heads."""
        if self.weight is None:
            return F.one_hot(classes, channels).to(like)
        return self.weight.detach().to(like)[classes]

    def class_maps(self, activations: torch.Tensor, classes: torch.Tensor, bias: bool = False) -> torch.Tensor:
        """CAM ``M_c(p) = Σ_k W_ck act(A)_k(p) [+ b_c]``: activations (B, C, *grid), classes (B, K) → (B, K, *grid)."""
        features = self.features(activations)
        if self.weight is None:
            index = classes.view(*classes.shape, *[1] * (features.dim() - 2)).expand(-1, -1, *features.shape[2:])
            return features.gather(1, index)
        weight = self.weight.detach().to(features)[classes]  # (B, K, C)
        maps = torch.einsum("bkc,bc...->bk...", weight, features)
        if bias and self.bias is not None:
            classes_bias = self.bias.detach().to(features)[classes]
            maps = maps + classes_bias.view(*classes_bias.shape, *[1] * (features.dim() - 2))
        return maps


def module_name(model: nn.Module, module: nn.Module) -> str:
    """The dotted name of ``module`` in ``model``; :class:`LayerError` when it is not one of its modules."""
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    raise LayerError(f"{type(module).__name__} module given as layer is not part of the model")


def resolve_layers(model: nn.Module, spec: LayerSpec) -> dict[str, nn.Module]:
    """Layer spec → ``{dotted name: module}``, in the order given.  ``None`` is handled by the caller."""
    items = [spec] if isinstance(spec, (str, nn.Module)) else list(spec or [])
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


def _run_recorded(model: nn.Module, image: torch.Tensor, grad: bool = False) -> tuple[list[_Record], object]:
    """One forward of ``image`` (1, C, *S) recording every submodule's inputs and output.

    ``grad=True`` records the autograd graph (the image requires grad, so frozen models have one too;
    it is a non-leaf copy, so a model may still write into its input).
    """
    records: list[_Record] = []
    handles = []

    def hook_for(name: str) -> Callable[[nn.Module, tuple, object], None]:
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            records.append(_Record(name, module, len(records), inputs, output))

        return hook

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook_for(name)))
    try:
        with torch.set_grad_enabled(grad):
            output = run_model(model, image.detach().requires_grad_(True).clone() if grad else image)
    finally:
        for handle in handles:
            handle.remove()
    return records, output


def _map_layout(record: _Record, spatial: tuple[int, ...]) -> Layout | None:
    """The record's layout when its output is a map of one image with more than one position."""
    output = record.output
    if not isinstance(output, torch.Tensor) or output.shape[0] != 1 or not output.is_floating_point():
        return None
    layout = find_layout(output, spatial)
    if layout is None or _prod(layout.grid) <= 1:
        return None
    return layout


def _prod(values: Sequence[int]) -> int:
    total = 1
    for v in values:
        total *= v
    return total


_ADAPTIVE_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                   nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)


def _passes_through(record: _Record) -> bool:
    """A module that adds nothing to its input's map: its output equals its only tensor input (Identity,
    eval Dropout, a pool to the same size), or it is an adaptive pool that only repeats values
    (VGG's 7×7 ``avgpool`` on a smaller map)."""
    tensors = [x for x in record.inputs if isinstance(x, torch.Tensor)]
    if len(tensors) != 1 or not isinstance(record.output, torch.Tensor):
        return False
    (source,) = tensors
    output = record.output
    if isinstance(record.module, _ADAPTIVE_POOLS) and source.dim() == output.dim():
        return all(o >= s for o, s in zip(output.shape[2:], source.shape[2:], strict=True))
    return source.shape == output.shape and torch.equal(source, output)


def _float_tensors(value: object) -> Iterator[torch.Tensor]:
    """Every floating tensor in a model output (tensors, and those inside dicts, lists, tuples)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _float_tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _float_tensors(item)


def _last_influenced(candidates: list[tuple[_Record, Layout]], source: object) -> _Record | None:
    """The last candidate whose map grid the gradient of a random projection of ``source`` reaches.

    The last 16 candidates are tried first (a backward through the model's tail only), then all.
    """
    generator = torch.Generator().manual_seed(0)
    terms = [(t.float() * torch.randn(t.shape, generator=generator).to(t.device)).sum()
             for t in _float_tensors(source) if t.requires_grad]
    if not terms:
        return None
    scalar = torch.stack(terms).sum()
    for group in (candidates[-16:], candidates):
        wanted = [(r, layout, r.output) for r, layout in group
                  if isinstance(r.output, torch.Tensor) and r.output.requires_grad]
        if not wanted:
            continue
        try:
            grads = torch.autograd.grad(scalar, [t for _, _, t in wanted], retain_graph=True, allow_unused=True)
        except RuntimeError:  # a forward that cannot be differentiated: no influence information
            return None
        hits = [r for (r, layout, _), g in zip(wanted, grads, strict=True)
                if g is not None and bool(layout.to_maps(g).abs().amax() > 0)]
        if hits:
            return hits[-1]
    return None


# model → {(input shape, dtype, structure): layer name}; a changed structure misses the cache.
_DEFAULT_LAYER_CACHE: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()
_HEAD_CACHE: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()

# Where a detector's default layer is looked for, first match wins: the deepest map of its backbone
# network (torchvision's FPN detectors keep it in ``backbone.body``, SSD in ``backbone.features``).
_DETECTOR_PREFIXES = ("backbone.body.", "backbone.features.", "backbone.")


def release_caches(model: nn.Module) -> None:
    """Forget the default layer and classifier head found for ``model`` (found again on next use)."""
    _DEFAULT_LAYER_CACHE.pop(model, None)
    _HEAD_CACHE.pop(model, None)


def _structure_key(model: nn.Module, images: torch.Tensor, extra: object = None) -> tuple:
    return (tuple(images.shape[1:]), images.dtype, images.device.type, tuple(map(id, model.modules())), extra)


def find_default_layer(model: nn.Module, images: torch.Tensor,
                       select: Callable[[object], object] | None = None) -> str:
    """Name of the last module to finish whose output on ``images[:1]`` is a map (see module doc)
    with more than one position and a grid that the explained output's gradient reaches.

    ``select`` picks what is explained from the model output (default: all of it); a detector's
    (a list of dicts) default is its backbone's deepest map (``backbone.body``'s last, else
    ``backbone.features``'s), whichever detections it reaches.  Modules that only pass their input
    through (Identity, eval Dropout, a pool to the same size) are skipped in favour of the module
    that produced the map.  When no gradient reaches any map (a zero-initialised head), the input
    of the last module to run stands for the output.  Cached per model and input shape.
    """
    key = _structure_key(model, images)
    cache = _DEFAULT_LAYER_CACHE.setdefault(model, {})
    if key in cache:
        return cache[key]
    spatial = tuple(images.shape[2:])
    try:
        records, output = _run_recorded(model, images[:1], grad=True)
    except RuntimeError:  # a forward that cannot record a graph: decide on structure (a model error raises again)
        records, output = _run_recorded(model, images[:1])
    selected = output if select is None else select(output)
    candidates = [(r, layout) for r in records
                  if (layout := _map_layout(r, spatial)) is not None and not _passes_through(r)]
    detector = isinstance(selected, list) and hasattr(model, "backbone")
    if detector:
        for prefix in _DETECTOR_PREFIXES:
            inside = [(r, layout) for r, layout in candidates
                      if r.name.startswith(prefix) or r.name == prefix.rstrip(".")]
            if inside:
                candidates = inside
                break
    if not candidates:
        raise LayerError(
            f"the model has no spatial layer: no module outputs a map over an input of shape {tuple(images.shape[1:])} "
            "((B, C, *grid), (B, *grid, C) or tokens (B, prefix + grid, C) with more than one position); "
            "CAM methods need a convolutional or patch layer (pass layer=... to choose one)"
        )
    # which detections a backbone level reaches depends on the image: a detector's default is structural
    chosen = None if detector else (
        _last_influenced(candidates, selected) or _last_influenced(candidates, records[-1].inputs))
    cache[key] = (chosen or candidates[-1][0]).name
    return cache[key]


def find_head(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    select_output: Callable[[object], object],
    head: str | nn.Module | None = None,
    layout: Layout | None = None,
) -> Head:
    """The classifier head CAM uses for ``layer`` (see module docstring).  Cached per model, layer, input shape.

    ``layout``: how the layer's output lies over the input (found from its shape when None).
    """
    key = _structure_key(model, images, (layer, head if isinstance(head, (str, type(None))) else id(head), layout))
    cache = _HEAD_CACHE.setdefault(model, {})
    if key in cache:
        return cache[key]
    records, output = _run_recorded(model, images[:1])
    logits = select_output(output)
    tapped = [r for r in records if r.name == layer]
    if not tapped:
        raise LayerError(f"layer {layer!r} was not reached by the forward pass")
    raw = tapped[-1].output
    layout = layout or find_layout(raw, tuple(images.shape[2:]))
    if layout is None or not isinstance(raw, torch.Tensor):
        raise LayerError(f"layer {layer!r} does not output a map over the input (B, C, *grid)")
    activations = layout.to_maps(raw)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise HeadError(
            f"CAM needs a classifier output (B, num_classes); the model returns {shape}; "
            "use method='gradcam' (with targets=camkit.Segmentation(...) or camkit.Detection(...) for dense outputs)"
        )
    if head is not None:
        found = _user_head(model, head, activations, logits)
    else:
        found = _search_head(records, tapped[-1].order, activations, logits, layer)
    cache[key] = found
    return found


def _pooled_candidates(activations: torch.Tensor) -> Iterator[tuple[str, str | None, torch.Tensor]]:
    for activation in (None, "relu"):
        features = (F.relu(activations) if activation == "relu" else activations).float().flatten(2)
        for pool in ("avg", "max"):
            yield pool, activation, features.mean(-1) if pool == "avg" else features.amax(-1)


def _matches(prediction: torch.Tensor, logits: torch.Tensor) -> bool:
    """``prediction ≈ logits`` up to the precision the model ran in (autocast gives half precision)."""
    tolerance = 1e-4 if logits.dtype in (torch.float32, torch.float64) else 2e-2
    logits = logits.float()
    scale = logits.abs().max().clamp_min(1.0)
    return prediction.shape == logits.shape and bool(((prediction - logits).abs() <= tolerance * scale).all())


def _head_weights(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    if isinstance(module, nn.Linear):
        return module.weight, module.bias
    if isinstance(module, _ConvNd) and all(k == 1 for k in module.kernel_size) and module.groups == 1:
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
        raise HeadError(f"head {name!r} is a {type(module).__name__}; CAM needs a Linear or 1x1 convolution")
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


def nonfinite_source(model: nn.Module, image: torch.Tensor) -> str | None:
    """Where a model's NaN or Inf comes from: a parameter or buffer holding one, else the first module
    whose output on ``image`` (1, C, *S) has one; None when neither does."""
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            kind = "parameter" if isinstance(tensor, nn.Parameter) else "buffer"
            return f"the model's {kind} {name!r} holds NaN or Inf"
    records, _ = _run_recorded(model, image)
    for record in records:
        if any(not bool(torch.isfinite(t).all()) for t in _float_tensors(record.output)):
            return f"module {record.name!r} ({type(record.module).__name__}) outputs NaN or Inf"
    return None
