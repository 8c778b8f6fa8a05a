"""Augmented Grad-CAM (Morbidelli et al., ICASSP 2020): super-resolution of the CAMs of many
roto-translated copies of an image.  See ``docs/augmented.md``.

    >>> angles, shifts = camkit.augmented.sample_transforms(100, (224, 224), seed=0)   # doctest: +SKIP
    >>> maps, history = camkit.augmented.superresolve(cams, angles, shifts, (224, 224))  # doctest: +SKIP
"""
from camkit.augmented.baselines import BASELINES, aligned_cams, baseline
from camkit.augmented.operators import (
    ForwardModel,
    RotoTranslation,
    area_downsample,
    area_downsample_adjoint,
    area_weights,
    sample_transforms,
    warp_coordinates,
)
from camkit.augmented.solvers import SOLVERS, SuperResolution, forward_model, objective, superresolve

__all__ = [
    "BASELINES", "ForwardModel", "RotoTranslation", "SOLVERS", "SuperResolution", "aligned_cams",
    "area_downsample", "area_downsample_adjoint", "area_weights", "baseline", "forward_model",
    "objective", "sample_transforms", "superresolve", "warp_coordinates",
]
