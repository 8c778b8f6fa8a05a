"""Tapping layers with forward hooks, and leaving the model exactly as it was found.

``preserved_state`` restores train/eval flags (module by module), the global grad mode and, via the
caller's ``finally``, hooks.  ``LayerTap`` records the output of each tapped layer; in gradient mode
the first tapped layer that runs becomes a leaf of a fresh autograd graph, so the trunk before it
runs without recording a graph and backward stops there.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Mapping

import torch
from torch import nn

__all__ = ["preserved_state", "LayerTap"]


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
        self._handles: list = []

    def __enter__(self) -> "LayerTap":
        for name, module in self.layers.items():
            self._handles.append(module.register_forward_hook(self._hook_for(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook_for(self, name: str):
        def hook(module: nn.Module, inputs, output):
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
