"""Augmented Grad-CAM (Morbidelli et al., ICASSP 2020): super-resolution of the CAMs of many
roto-translated copies of an image.  See ``docs/augmented.md``."""
from camkit.augmented.operators import (
    ForwardModel, RotoTranslation, area_downsample, area_downsample_adjoint, area_weights,
    sample_transforms, warp_coordinates,
)

__all__ = [
    "ForwardModel", "RotoTranslation", "area_downsample", "area_downsample_adjoint", "area_weights",
    "sample_transforms", "warp_coordinates",
]
