"""Faithfulness metrics: does the model's score follow the pixels a map points at?

Every function takes ``model``, ``images`` (B, C, H, W), one map per image ``maps`` (B, 1, H, W) as
``camkit.explain`` returns it for one class per image (``top_k=1`` or ``targets=...``; (B, H, W)
is accepted, a map of another size is resized bilinearly) and the class each map explains,
``classes`` (B, 1) or (B,) (the explanation's ``classes``); K > 1 maps per image is an error:
pick one with ``maps[:, k:k+1]``, ``classes[:, k]``.  It runs the model in eval
mode without gradients on batches of at most ``batch_size`` perturbed images, and restores the
model's modes.  ``score="prob"`` (default) scores the softmax probability of the class,
``"logit"`` the raw logit; a class index out of the model's range raises
:class:`camkit.errors.InputError`.  Random choices (ties in a map's ranking, ROAD's noise) come from a
generator seeded with ``seed``: results are deterministic.

* :func:`deletion`, :func:`insertion`: curves and their AUC (Petsiuk et al., RISE, BMVC 2018).
* :func:`average_drop`, :func:`increase_in_confidence`: the image multiplied by its map
  (Chattopadhay et al., Grad-CAM++, WACV 2018), in named conventions (the peers differ).
* :func:`road`: remove-and-debias with noisy linear imputation (Rong et al., ICML 2022).

>>> import torch, camkit
>>> from camkit.data import Shapes
>>> model = camkit.models.pretrained("nin-shapes")            # shipped: 16×16 maps of 64² images
>>> images = torch.stack([Shapes("val", size=64, length=2)[i]["image"] for i in range(2)])
>>> e = camkit.explain(model, images, method="gradcam")
>>> camkit.faithfulness.deletion(model, images, e.maps, e.classes).auc.shape  # (B,), lower is better
torch.Size([2])
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
import torch.nn.functional as F
from torch import nn

from camkit.errors import InputError
from camkit.hooks import preserved_state
from camkit.maps import resize_maps
from camkit.targets import check_class_range, select_output

__all__ = ["Curve", "deletion", "insertion", "average_drop", "increase_in_confidence", "road", "blur", "impute_linear"]


@dataclass
class Curve:
    """Scores along a perturbation path.

    ``fractions``: (P,) share of pixels removed (deletion, ROAD) or inserted (insertion).
    ``scores``: (B, P) score of the class at each point.  ``auc``: (B,) trapezoidal area under
    ``scores`` over ``fractions``.  ``mean``: (B,) mean over the points (ROAD's summary).
    """

    fractions: torch.Tensor
    scores: torch.Tensor

    @property
    def auc(self) -> torch.Tensor:
        """(B,) trapezoidal area under ``scores`` over ``fractions``."""
        return torch.trapezoid(self.scores, self.fractions.to(self.scores), dim=-1)

    @property
    def mean(self) -> torch.Tensor:
        """(B,) mean score over the points (ROAD's summary)."""
        return self.scores.mean(-1)


# ----------------------------------------------------------------------------- input checks, scoring


def _check(images, maps, classes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"images must be a floating (B, C, H, W) tensor, got {shape}")
    if not isinstance(maps, torch.Tensor):
        raise InputError(f"maps must be a (B, 1, H, W) or (B, H, W) tensor, got {type(maps).__name__}")
    if maps.dim() == 4 and maps.shape[1] != 1:
        raise InputError(f"maps hold K = {maps.shape[1]} maps per image {tuple(maps.shape)}; faithfulness "
                         "metrics score one map per image: explain one class per image (top_k=1 or "
                         "targets=...) or pass maps[:, k:k+1] with classes[:, k]")
    if maps.dim() == 4:
        maps = maps[:, 0]
    if maps.dim() != 3 or maps.shape[0] != images.shape[0]:
        raise InputError(f"maps must be (B, 1, H, W) or (B, H, W) with B = {images.shape[0]}, "
                         f"got {tuple(maps.shape)}")
    maps = resize_maps(maps.float().to(images.device), (images.shape[-2], images.shape[-1]))
    if not bool(torch.isfinite(maps).all()):
        raise InputError("maps contain NaN or Inf values")
    classes = torch.as_tensor(classes, device=images.device)
    if classes.dim() == 2 and classes.shape[1] == 1:
        classes = classes[:, 0]
    if classes.shape != (images.shape[0],) or classes.is_floating_point():
        raise InputError(f"classes must be (B,) = ({images.shape[0]},) class indices, got {tuple(classes.shape)}")
    return images, maps, classes.long()


def _scorer(model: nn.Module, score: str,
            output: Callable | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if score not in ("prob", "logit"):
        raise InputError(f"score must be 'prob' or 'logit', got {score!r}")

    def run(images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        logits = select_output(model(images), output).float()
        if logits.dim() != 2:
            raise InputError(f"faithfulness metrics need (B, num_classes) outputs, got {tuple(logits.shape)}")
        check_class_range(classes, logits.shape[1])
        values = logits.softmax(1) if score == "prob" else logits
        return values.gather(1, classes[:, None].to(values.device))[:, 0]

    return run


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")


def _ranks(maps: torch.Tensor, generator: torch.Generator, descending: bool = True) -> torch.Tensor:
    """Rank (B, H·W) of each pixel, 0 = most relevant; ties broken by a seeded random order."""
    flat = maps.flatten(1)
    perm = torch.randperm(flat.shape[1], generator=generator).to(flat.device)
    order = perm[torch.argsort(flat[:, perm], dim=1, descending=descending, stable=True)]
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def _generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return generator


# ----------------------------------------------------------------------------- deletion / insertion


def blur(images: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Gaussian blur (B, C, H, W), reflect padding: RISE's insertion substrate (klen 11, σ 5)."""
    radius = kernel_size // 2
    x = torch.arange(kernel_size, dtype=images.dtype, device=images.device) - radius
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    mode = "reflect" if min(images.shape[-2:]) > radius else "replicate"
    padded = F.pad(images, (radius, radius, radius, radius), mode=mode)
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _substrate(images: torch.Tensor, baseline) -> torch.Tensor:
    if isinstance(baseline, str):
        if baseline != "blur":
            raise InputError(f"baseline must be a number, 'blur' or a tensor, got {baseline!r}")
        return blur(images)
    if isinstance(baseline, torch.Tensor):
        try:
            return torch.broadcast_to(baseline.to(images), images.shape)
        except RuntimeError:
            raise InputError(f"baseline of shape {tuple(baseline.shape)} does not broadcast to "
                             f"{tuple(images.shape)}") from None
    return torch.full_like(images, float(baseline))


def _path_curve(model, images, maps, classes, steps, start, end, score, batch_size, seed, output) -> Curve:
    """Scores along the path that moves pixels from ``start`` to ``end`` in decreasing map order."""
    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive int, got {steps!r}")
    _check_batch_size(batch_size)
    b, _, h, w = images.shape
    ranks = _ranks(maps, _generator(seed)).view(b, 1, h, w)
    counts = torch.round(torch.linspace(0, h * w, steps + 1, dtype=torch.float64)).long()
    fractions = counts.double() / (h * w)
    pairs = [(i, s) for i in range(b) for s in range(steps + 1)]
    scores = torch.empty(b, steps + 1)
    run = _scorer(model, score, output)
    with preserved_state(model), torch.no_grad():
        for first in range(0, len(pairs), batch_size):
            chunk = pairs[first:first + batch_size]
            index = torch.tensor([i for i, _ in chunk], device=images.device)
            moved = (ranks[index] < counts[[s for _, s in chunk]].to(images.device).view(-1, 1, 1, 1))
            batch = torch.where(moved, end[index], start[index])
            values = run(batch, classes[index]).cpu()
            for (i, s), value in zip(chunk, values, strict=True):
                scores[i, s] = value
    return Curve(fractions.float(), scores)


def deletion(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, classes, steps: int = 32,
             baseline: float | str | torch.Tensor = 0.0, score: str = "prob", batch_size: int = 64,
             seed: int = 0, output: Callable | None = None) -> Curve:
    r"""Deletion curve: remove pixels from the most relevant down, replacing them by ``baseline``.

    At step s of ``steps`` the :math:`\mathrm{round}(s\,HW/\text{steps})` pixels of highest map
    value (all channels) are set to the baseline (0 by default, as RISE; ``"blur"`` or a tensor).
    A faithful map makes the score fall fast: **lower AUC is better**.  Returns a :class:`Curve`
    with ``steps + 1`` points; costs B·(steps + 1) forwards.
    """
    images, maps, classes = _check(images, maps, classes)
    substrate = _substrate(images, baseline)
    return _path_curve(model, images, maps, classes, steps, images, substrate, score, batch_size, seed, output)


def insertion(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, classes, steps: int = 32,
              baseline: float | str | torch.Tensor = "blur", score: str = "prob", batch_size: int = 64,
              seed: int = 0, output: Callable | None = None) -> Curve:
    r"""Insertion curve: start from ``baseline`` (a blurred copy by default, as RISE) and put the
    original pixels back from the most relevant down.  **Higher AUC is better.**  Returns a
    :class:`Curve` with ``steps + 1`` points; costs B·(steps + 1) forwards.
    """
    images, maps, classes = _check(images, maps, classes)
    substrate = _substrate(images, baseline)
    return _path_curve(model, images, maps, classes, steps, substrate, images, score, batch_size, seed, output)


# ----------------------------------------------------------------------------- confidence on the masked image


def _masked_scores(model, images, maps, classes, score, batch_size, output) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (B,) of the images, Y, and of the images multiplied by their map, O."""
    _check_batch_size(batch_size)
    if maps.min() < 0 or maps.max() > 1:
        raise InputError("maps must lie in [0, 1] (use Explanation.maps, which is min-max normalised)")
    run = _scorer(model, score, output)
    original, masked = [], []
    with preserved_state(model), torch.no_grad():
        for first in range(0, images.shape[0], batch_size):
            part = slice(first, first + batch_size)
            original.append(run(images[part], classes[part]))
            masked.append(run(images[part] * maps[part, None], classes[part]))
    return torch.cat(original).cpu(), torch.cat(masked).cpu()


def average_drop(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, classes, convention: str = "relative",
                 score: str = "prob", batch_size: int = 64, output: Callable | None = None) -> torch.Tensor:
    r"""Per-image drop of confidence when the image is multiplied by its map (B,); **lower is better**.

    ``convention="relative"`` (Chattopadhay et al.; torchcam's and most papers' "Average Drop", who
    report 100 × the mean): :math:`\max(0, Y_c - O_c) / Y_c`.  ``"absolute"`` (pytorch-grad-cam's
    ``DropInConfidence``): :math:`\max(0, Y_c - O_c)`.  :math:`Y_c` is the score of the image,
    :math:`O_c` that of ``image · map`` (maps in [0, 1]).  A map of ones gives 0.
    """
    if convention not in ("relative", "absolute"):
        raise InputError(f"convention must be 'relative' or 'absolute', got {convention!r}")
    images, maps, classes = _check(images, maps, classes)
    original, masked = _masked_scores(model, images, maps, classes, score, batch_size, output)
    drop = (original - masked).clamp_min(0)
    return drop / original if convention == "relative" else drop


def increase_in_confidence(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, classes,
                           convention: str = "indicator", score: str = "prob", batch_size: int = 64,
                           output: Callable | None = None) -> torch.Tensor:
    r"""Per-image increase of confidence when the image is multiplied by its map (B,); **higher is better**.

    ``convention="indicator"`` (Chattopadhay et al., pytorch-grad-cam's ``IncreaseInConfidence``;
    the mean is the share of images, reported × 100): :math:`\mathbb{1}[O_c > Y_c]`.
    ``"absolute"``: :math:`\max(0, O_c - Y_c)`.  ``"relative"``: :math:`\max(0, O_c - Y_c) / Y_c`.
    """
    if convention not in ("indicator", "absolute", "relative"):
        raise InputError(f"convention must be 'indicator', 'absolute' or 'relative', got {convention!r}")
    images, maps, classes = _check(images, maps, classes)
    original, masked = _masked_scores(model, images, maps, classes, score, batch_size, output)
    if convention == "indicator":
        return (masked > original).float()
    gain = (masked - original).clamp_min(0)
    return gain / original if convention == "relative" else gain


# ----------------------------------------------------------------------------- ROAD


_NEIGHBOURS = ((-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6),
               (0, 1, 1 / 6), (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12))


def _imputation_system(removed: np.ndarray, image: np.ndarray):
    """Sparse system (n, n) and right-hand sides (n, C) of ROAD's imputation for one image."""
    h, w = removed.shape
    rows, cols = np.nonzero(removed)
    n = rows.size
    variable = np.full((h, w), -1, dtype=np.int64)
    variable[rows, cols] = np.arange(n)
    diagonal = np.zeros(n)
    rhs = np.zeros((n, image.shape[0]))
    entries_r, entries_c, entries_v = [], [], []
    for di, dj, weight in _NEIGHBOURS:
        r, c = rows + di, cols + dj
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        diagonal[inside] += weight
        source = np.nonzero(inside)[0]
        r, c = r[inside], c[inside]
        unknown = removed[r, c]
        entries_r.append(source[unknown])
        entries_c.append(variable[r[unknown], c[unknown]])
        entries_v.append(np.full(int(unknown.sum()), -weight))
        np.add.at(rhs, source[~unknown], weight * image[:, r[~unknown], c[~unknown]].T)
    entries_r.append(np.arange(n))
    entries_c.append(np.arange(n))
    entries_v.append(diagonal)
    system = scipy.sparse.csc_matrix(
        (np.concatenate(entries_v), (np.concatenate(entries_r), np.concatenate(entries_c))), shape=(n, n)
    )
    return system, rhs


def impute_linear(images: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    r"""ROAD's linear imputation (B, C, H, W): each removed pixel becomes the weighted mean of its
    8 neighbours (weights 1/6 direct, 1/12 diagonal, neighbours outside the image dropped).

    For removed pixels i (``removed`` (B, 1, H, W) or (B, H, W), bool) the values x solve
    :math:`d_i x_i - \sum_{j \in N(i)\ \text{removed}} w_{ij} x_j = \sum_{j \in N(i)\ \text{kept}} w_{ij} v_j`
    with :math:`d_i = \sum_{j \in N(i)} w_{ij}`, the system of Rong et al.'s ``NoisyLinearImputer``,
    solved exactly with a sparse LU factorisation (one per image, shared by its channels).  It has a
    unique solution when at least one pixel of the image is kept.
    """
    if removed.dim() == 4:
        removed = removed[:, 0]
    if bool(removed.flatten(1).all(1).any()):
        raise InputError("ROAD imputation needs at least one kept pixel per image (fraction < 1)")
    out = images.detach().clone()
    flat_masks = removed.cpu().numpy().astype(bool)
    pixels = images.detach().cpu().double().numpy()
    for b in range(images.shape[0]):
        if not flat_masks[b].any():
            continue
        system, rhs = _imputation_system(flat_masks[b], pixels[b])
        solution = scipy.sparse.linalg.spsolve(system, rhs).reshape(rhs.shape)
        rows, cols = np.nonzero(flat_masks[b])
        filled = torch.as_tensor(solution.T, dtype=images.dtype).to(images.device)
        out[b][:, torch.as_tensor(rows), torch.as_tensor(cols)] = filled
    return out


def road(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, classes,
         fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), order: str = "morf",
         noise: float = 0.01, score: str = "prob", batch_size: int = 64, seed: int = 0,
         output: Callable | None = None) -> Curve:
    r"""ROAD (Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods",
    ICML 2022): remove a fraction of pixels and impute them so that the removal leaks no shape.

    For each fraction p, the :math:`\mathrm{round}(p\,HW)` pixels of highest map value
    (``order="morf"``, most relevant first; **lower is better**) or lowest (``"lerf"``; **higher is
    better**) are replaced by :func:`impute_linear` plus Gaussian noise of standard deviation
    ``noise`` (absolute, 0.01 as the paper's code).  Returns a :class:`Curve` over ``fractions``;
    ``Curve.mean`` is the summary the paper and pytorch-grad-cam's ``ROAD*Average`` report.
    pytorch-grad-cam's ``ROADMostRelevantFirst(percentile=q)`` removes the pixels *above* the q-th
    percentile, i.e. p = 1 − q/100.
    """
    if order not in ("morf", "lerf"):
        raise InputError(f"order must be 'morf' or 'lerf', got {order!r}")
    points = torch.as_tensor(list(fractions), dtype=torch.float64)
    if points.numel() == 0 or bool((points < 0).any()) or bool((points >= 1).any()):
        raise InputError(f"ROAD fractions must lie in [0, 1), got {points.tolist()}")
    _check_batch_size(batch_size)
    images, maps, classes = _check(images, maps, classes)
    b, _, h, w = images.shape
    generator = _generator(seed)
    ranks = _ranks(maps, generator, descending=(order == "morf")).view(b, 1, h, w)
    counts = torch.round(points * h * w).long()
    pairs = [(i, p) for i in range(b) for p in range(len(counts))]
    scores = torch.empty(b, len(counts))
    run = _scorer(model, score, output)
    with preserved_state(model), torch.no_grad():
        for first in range(0, len(pairs), batch_size):
            chunk = pairs[first:first + batch_size]
            index = torch.tensor([i for i, _ in chunk], device=images.device)
            removed = ranks[index] < counts[[p for _, p in chunk]].to(images.device).view(-1, 1, 1, 1)
            imputed = impute_linear(images[index], removed)
            jitter = torch.randn(imputed.shape, generator=generator).to(imputed)
            imputed = torch.where(removed, imputed + noise * jitter, imputed)
            values = run(imputed, classes[index]).cpu()
            for (i, p), value in zip(chunk, values, strict=True):
                scores[i, p] = value
    return Curve(points.float(), scores)
