"""``explain()``, ``Explainer`` and ``Explanation``: the API users call."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from camkit import methods as method_registry
from camkit.errors import InputError, all_finite
from camkit.hooks import check_input_rank, preserved_state
from camkit.layers import LayerSpec, find_default_layer, release_caches, resolve_layers
from camkit.layouts import Reshape
from camkit.maps import normalize_maps, resize_maps
from camkit.methods.base import Method, Session
from camkit.targets import TargetSpec, select_explained

__all__ = ["explain", "Explainer", "Explanation", "check_images", "fuse_layer_maps"]


@dataclass
class Explanation:
    """The maps explaining K scores for each of B inputs.

    ``maps``: (B, K, *S) float32 in [0, 1] — (B, K, H, W) for images, (B, K, T, H, W) for clips,
    (B, K, L) for signals — upsampled (bilinear, trilinear, linear) to the input size, then min-max
    normalised per map (over the whole clip).  ``raw``: (B, K, *grid) at layer resolution after
    ReLU, not normalised (the fusion of all tapped layers when there are several, see
    ``layer_raw``).  ``classes``: (B, K) class indices (-1 for callable targets).  ``scores``: (B, K)
    explained scores (logits, or a detector's scores).  ``probs``: (B, K) softmax probabilities of
    those classes (NaN when the output is not (B, N)).
    """

    maps: torch.Tensor
    raw: torch.Tensor
    classes: torch.Tensor
    scores: torch.Tensor
    probs: torch.Tensor
    method: str = ""
    layers: tuple[str, ...] = ()
    layer_raw: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def boxes(self, threshold: float = 0.2, **options) -> torch.Tensor:
        """Box of the largest connected component above ``threshold · max``: (B, K, 4) ``x0, y0, x1, y1``,
        on the maps' device (:func:`camkit.localize.boxes`).

        Clips: one box per frame, (B, K, T, 4), of the pixels above ``threshold ·`` the *clip's* max
        (a frame with none gets the empty box ``0, 0, -1, -1``).  Signals: the longest run above
        ``threshold · max``, (B, K, 2) ``x0, x1`` inclusive (``0, -1`` when empty).  ``options`` go
        to :func:`camkit.localize.boxes` (``connectivity`` only for clips and signals).
        """
        from camkit.localize import boxes
        from camkit.localize.boxes import largest_component_box

        rank = self.maps.dim() - 2
        if rank == 2:
            return boxes(self.maps, threshold=threshold, **options)
        unknown = set(options) - {"connectivity"}
        if unknown:
            raise InputError(f"boxes of {rank}-D maps take threshold and connectivity only, got {sorted(unknown)}")
        maps = self.maps.detach().cpu().double()
        peak = maps.flatten(2).amax(-1).view(*maps.shape[:2], *[1] * rank)
        foreground = (maps > threshold * peak).numpy()
        if rank == 3:  # every frame of every clip
            planes = foreground.reshape(-1, *foreground.shape[-2:])
        else:  # a signal is a 1 × L image
            planes = foreground.reshape(-1, 1, foreground.shape[-1])
        found = torch.from_numpy(np.stack([largest_component_box(p, **options) for p in planes]))
        found = found.to(self.maps.device)
        if rank == 3:
            return found.view(*maps.shape[:3], 4)
        return found[:, [0, 2]].view(*maps.shape[:2], 2)

    def cpu(self) -> Explanation:
        """A copy of this explanation with every tensor on the CPU."""
        return Explanation(
            self.maps.cpu(), self.raw.cpu(), self.classes.cpu(), self.scores.cpu(), self.probs.cpu(),
            self.method, self.layers, {k: v.cpu() for k, v in self.layer_raw.items()},
        )

    def __len__(self) -> int:
        return self.maps.shape[0]

    def __repr__(self) -> str:
        return (f"Explanation(method={self.method!r}, layers={list(self.layers)}, maps={tuple(self.maps.shape)}, "
                f"raw={tuple(self.raw.shape)})")


def check_images(images: object) -> torch.Tensor:
    """Validate a batch ``(B, C, H, W)`` — or signals ``(B, C, L)``, clips ``(B, C, T, H, W)`` — a
    non-empty floating tensor without NaN or Inf."""
    if not isinstance(images, torch.Tensor):
        raise InputError(f"images must be a torch.Tensor of shape (B, C, H, W), got {type(images).__name__}")
    if images.dim() not in (3, 4, 5):
        raise InputError(f"images must be 4-D (B, C, H, W) (or (B, C, L) signals, (B, C, T, H, W) clips), "
                         f"got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise InputError(f"images must be a floating tensor, got dtype {images.dtype} "
                         "(convert with images.float() / 255)")
    if images.shape[0] == 0:
        raise InputError("empty batch: images has shape (0, ...)")
    if not all_finite(images):
        bad = "NaN" if bool(torch.isnan(images).any()) else "Inf"
        raise InputError(f"images contain {bad} values")
    return images


def fuse_layer_maps(layer_maps: dict[str, torch.Tensor], mode: str = "mean") -> torch.Tensor:
    """Fuse per-layer maps (B, K, *grid_i): resize to the finest grid, min-max each, then mean or max."""
    if len(layer_maps) == 1:
        return next(iter(layer_maps.values()))
    rank = next(iter(layer_maps.values())).dim() - 2
    size = max((tuple(m.shape[2:]) for m in layer_maps.values()), key=lambda s: math.prod(s))
    stack = torch.stack([normalize_maps(resize_maps(m, size), rank) for m in layer_maps.values()])
    if mode == "mean":
        return stack.mean(0)
    if mode == "max":
        return stack.amax(0)
    raise InputError(f"unknown fusion {mode!r}; use 'mean' or 'max'")


class Explainer:
    """Explain a model's predictions batch after batch.

    >>> import torch, camkit
    >>> from camkit.data import Shapes
    >>> model = camkit.models.pretrained("nin-shapes")            # shipped: 16×16 maps of 64² images
    >>> images = torch.stack([Shapes("val", size=64, length=2)[i]["image"] for i in range(2)])
    >>> loader = [(images, torch.tensor([0, 1]))]
    >>> with camkit.Explainer(model, method="gradcam") as explainer:
    ...     for images, labels in loader:
    ...         e = explainer(images, targets=labels)
    >>> e.classes
    tensor([[0],
            [1]])

    ``layer``: a module, a dotted name, a list of them (maps are fused), or ``None`` for the last
    module whose output is a map over the input with more than one position that the explained
    output depends on (see :func:`camkit.layers.find_default_layer`).  Tapped outputs may be
    channels-first (B, C, *grid), channels-last (B, *grid, C) or tokens (B, prefix + grid, C),
    recognised from the input's size (:mod:`camkit.layouts`); ``reshape``: a callable
    ``(B, ...) → (B, C, *grid)`` that replaces that recognition.  ``output``: a callable selecting
    what to explain from the model output (default: the tensor, a detector's list of dicts, a
    dict's ``"out"``, a tuple's first element).  ``head``: the classifier CAM uses (found
    automatically).  ``smooth``: ``"tta"`` (average over test-time augmentations) and/or
    ``"eigen"`` (first principal component), applicable to any method.  Other keyword options go
    to the method (e.g. ``bias=True`` for CAM).

    Each call puts the model in eval mode, attaches forward hooks, and restores the model's modes,
    hooks and the grad mode before returning, also on error: nothing is left attached between calls.
    Used as a context manager (``with Explainer(...) as explainer:``), the end of the block releases
    what was cached about the model across calls (its default layer and CAM head,
    :func:`camkit.layers.release_caches`).
    """

    def __init__(
        self,
        model: nn.Module,
        method: str | Method = "gradcam",
        layer: LayerSpec = None,
        *,
        output: Callable[[object], object] | None = None,
        head: str | nn.Module | None = None,
        fuse: str = "mean",
        smooth: str | tuple[str, ...] | None = None,
        reshape: Reshape | None = None,
        **method_options: object,
    ):
        if not isinstance(model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.method = method_registry.get(method, **method_options)
        if smooth:
            from camkit.methods.smoothing import smoothed

            self.method = smoothed(self.method, smooth)
        self.layer_spec = layer
        self.layers = None if layer is None else resolve_layers(model, layer)
        self.output_fn = output
        self.head_spec = head
        if reshape is not None and not callable(reshape):
            raise InputError(f"reshape must be a callable (B, ...) -> (B, C, *grid), got {type(reshape).__name__}")
        self.reshape = reshape
        if fuse not in ("mean", "max"):
            raise InputError(f"unknown fusion {fuse!r}; use 'mean' or 'max'")
        self.fuse = fuse

    def __enter__(self) -> Explainer:
        return self

    def __exit__(self, *exc) -> None:
        release_caches(self.model)

    def __call__(self, images: torch.Tensor, targets: TargetSpec = None, top_k: int | None = None) -> Explanation:
        """Explain ``images`` (B, C, H, W) (or (B, C, *S)): maps of ``targets`` (or the ``top_k`` classes), see
        :func:`explain`."""
        images = check_images(images)
        check_input_rank(self.model, images)
        rank = images.dim() - 2
        if rank not in self.method.spatial_ranks:
            shapes = {1: "(B, C, L) signals", 2: "(B, C, H, W) images", 3: "(B, C, T, H, W) clips"}
            supported = ", ".join(shapes[r] for r in self.method.spatial_ranks)
            raise InputError(f"method {self.method.name or type(self.method).__name__!r} needs {supported}; "
                             f"these inputs {tuple(images.shape)} give {rank}-D maps")
        with torch.inference_mode(False):
            if images.is_inference():
                images = images.clone()
            with preserved_state(self.model):
                layers = self.layers or resolve_layers(
                    self.model, find_default_layer(self.model, images, lambda o: select_explained(o, self.output_fn)))
                session = Session(self.model, images, layers, targets, top_k, self.output_fn, self.head_spec,
                                  self.reshape)
                layer_maps = self.method(session)
        return self._explanation(session, layer_maps)

    def _explanation(self, session: Session, layer_maps: dict[str, torch.Tensor]) -> Explanation:
        layer_raw = {name: F.relu(maps.float()) for name, maps in layer_maps.items()}
        raw = fuse_layer_maps(layer_raw, self.fuse)
        spatial = session.images.shape[2:]
        maps = normalize_maps(resize_maps(raw, spatial, extent=session.extent), len(spatial))
        first = session.first
        output = first.output
        if isinstance(output, torch.Tensor) and output.dim() == 2 and bool((session.classes >= 0).all()):
            probs = output.float().softmax(1).gather(1, session.classes)
        else:
            probs = torch.full_like(first.scores, float("nan"))
        return Explanation(
            maps=maps, raw=raw, classes=session.classes, scores=first.scores, probs=probs,
            method=self.method.name, layers=tuple(layer_maps), layer_raw=layer_raw,
        )


def explain(
    model: nn.Module,
    images: torch.Tensor,
    method: str | Method = "gradcam",
    layer: LayerSpec = None,
    targets: TargetSpec = None,
    top_k: int | None = None,
    **options,
) -> Explanation:
    """Explain ``model`` on ``images`` (B, C, H, W) (or (B, C, L), (B, C, T, H, W)): one call of an :class:`Explainer`.

    >>> import torch, camkit
    >>> from camkit.data import Shapes
    >>> model = camkit.models.pretrained("nin-shapes")            # shipped: 16×16 maps of 64² images
    >>> images = torch.stack([Shapes("val", size=64, length=2)[i]["image"] for i in range(2)])
    >>> e = camkit.explain(model, images, method="gradcam", top_k=3)
    >>> e.maps.shape   # (B, 3, H, W)
    torch.Size([2, 3, 64, 64])
    """
    return Explainer(model, method, layer, **options)(images, targets=targets, top_k=top_k)
