"""Running and tapping the model, and leaving it exactly as it was found.

``preserved_state`` restores train/eval flags (module by module), the global grad mode and, via the
caller's ``finally``, hooks.  ``LayerTap`` records the output of each tapped layer; in gradient mode
the first tapped layer that runs becomes a leaf of a fresh autograd graph, so the trunk before it
runs without recording a graph and backward stops there.  ``run_model`` calls the model and names
an input it cannot take (channel count, dtype) instead of passing on torch's error;
``check_input_rank`` refuses images of another rank than the model's first convolution takes.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from camkit.errors import InputError

__all__ = ["preserved_state", "LayerTap", "run_model", "first_convolution", "check_input_rank"]

_IMAGE_SHAPES = {1: "(B, C, L)", 2: "(B, C, H, W)", 3: "(B, C, T, H, W)"}


def first_convolution(model: nn.Module) -> tuple[str, _ConvNd] | None:
    """The first Conv1d/2d/3d registered in ``model`` (its stem, in every torchvision model), or None."""
    for name, module in model.named_modules():
        if isinstance(module, _ConvNd):
            return name, module
    return None


def check_input_rank(model: nn.Module, images: torch.Tensor) -> None:
    """Refuse images whose rank is not the one the model's first convolution takes (a Conv2d takes
    (B, C, H, W): a 3-D tensor is then an image without its batch dimension, not a batch of signals)."""
    found = first_convolution(model)
    if found is None:
        return
    name, conv = found
    rank = len(conv.kernel_size)
    if images.dim() != rank + 2:
        hint = " (add a batch dimension: images[None])" if images.dim() == rank + 1 else ""
        raise InputError(
            f"images must be {rank + 2}-D {_IMAGE_SHAPES.get(rank, '')} for this model (its first convolution "
            f"{name!r} is a {type(conv).__name__}), got shape {tuple(images.shape)}{hint}"
        )


def _input_mismatch(model: nn.Module, images: torch.Tensor) -> str | None:
    """What about ``images`` the model cannot take, when it can be named: channels or dtype."""
    found = first_convolution(model)
    if found is not None and found[1].in_channels != images.shape[1]:
        name, conv = found
        return (f"images have {images.shape[1]} channel(s) but the model's first convolution {name!r} expects "
                f"{conv.in_channels}")
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if len(dtypes) == 1 and images.dtype not in dtypes and not torch.is_autocast_enabled(images.device.type):
        (dtype,) = dtypes
        return (f"images are {images.dtype} but the model's parameters are {dtype}: convert one to the other "
                f"(e.g. images.to({dtype}))")
    return None


def run_model(model: nn.Module, images: torch.Tensor) -> object:
    """``model(images)``; if it fails on a wrong channel count or dtype, an ``InputError`` naming it."""
    try:
        return model(images)
    except (RuntimeError, TypeError) as error:
        problem = _input_mismatch(model, images)
        if problem is None:
            raise
        raise InputError(problem) from error


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block; restore every module's mode and the grad mode after.

    ``requires_grad`` flags are never changed by camkit; parameters never receive ``.grad`` because
    gradients are taken with ``torch.autograd.grad`` with respect to activations only.
    """
    modes = [(module, module.training) for module in model.modules()]
    grad_enabled = torch.is_grad_enabled()
    try:
        model.eval()
        yield
    finally:
        for module, training in modes:
            module.training = training
        torch.set_grad_enabled(grad_enabled)


class LayerTap:
    """Forward hooks that record the output of each tapped layer, ``(B, C, h, w)`` each.

    Use as a context manager around one forward pass; the hooks are removed on exit, also when the
    forward raises.  With ``start_graph=True`` the forward must run under ``torch.no_grad()``: the
    first tapped layer to run is detached into a leaf that requires grad and grad recording is
    switched on from there, so only the layers after it are recorded.  A layer called several
    times keeps its last output.  Each hook hands a clone downstream so that in-place operations
    after the layer (``ReLU(inplace=True)``, ``out += identity``) cannot change what was recorded.
    """

    def __init__(self, layers: Mapping[str, nn.Module], start_graph: bool = False):
        self.layers = dict(layers)
        self.start_graph = start_graph
        self.outputs: dict[str, object] = {}
        self._graph_started = False
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> LayerTap:
        for name, module in self.layers.items():
            self._handles.append(module.register_forward_hook(self._hook_for(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook_for(self, name: str) -> Callable[[nn.Module, tuple, object], object]:
        def hook(module: nn.Module, inputs: tuple, output: object) -> object:
            if not isinstance(output, torch.Tensor):
                self.outputs[name] = output
                return None
            if self.start_graph and not self._graph_started:
                output = output.detach().requires_grad_(True)
                self._graph_started = True
                torch.set_grad_enabled(True)
            self.outputs[name] = output
            return output.clone()

        return hook
