"""Augmented Grad-CAM (Morbidelli et al., ICASSP 2020): super-resolution of the CAMs of many
roto-translated copies of an image: operators, solvers and baselines (the method that runs the
copies through a model is ``camkit.methods.augmented``).  See ``docs/augmented.md``.

    >>> angles, shifts = camkit.augmented.sample_transforms(100, (224, 224), seed=0)   # doctest: +SKIP
    >>> maps, history = camkit.augmented.superresolve(cams, angles, shifts, (224, 224))  # doctest: +SKIP
"""
from camkit.augmented.baselines import BASELINES, aligned_cams, baseline
from camkit.augmented.forward import ForwardModel
from camkit.augmented.operators import (
    DOWNSAMPLINGS,
    PADDINGS,
    GaussianBlur,
    ImageCopies,
    RotoTranslation,
    area_downsample,
    area_downsample_adjoint,
    area_weights,
    downsample_weights,
    gaussian_kernel,
    image_warp,
    sample_transforms,
    warp_coordinates,
)
from camkit.augmented.solvers import (
    DEFAULT_ITERS,
    DEFAULT_TOL,
    SOLVERS,
    SuperResolution,
    forward_model,
    objective,
    superresolve,
)
from camkit.augmented.synthetic import KnownTruth, known_truth, psnr

__all__ = [
    "BASELINES", "DEFAULT_ITERS", "DEFAULT_TOL", "DOWNSAMPLINGS", "ForwardModel", "GaussianBlur", "ImageCopies",
    "KnownTruth", "PADDINGS", "RotoTranslation", "SOLVERS", "SuperResolution", "aligned_cams", "area_downsample",
    "area_downsample_adjoint", "area_weights", "baseline", "downsample_weights", "forward_model",
    "gaussian_kernel", "image_warp", "known_truth", "objective", "psnr", "sample_transforms", "superresolve",
    "warp_coordinates",
]
