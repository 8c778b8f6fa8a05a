"""CAM-ready models: NiN, the CAM paper's GAP/GMP conversions of torchvision nets, a factory,
and the checkpoints shipped with camkit (``pretrained("nin-shapes")``)."""
from camkit.models.coarse import CoarseNet
from camkit.models.heads import CamNet, gap_head
from camkit.models.nin import GlobalPool, NiN
from camkit.models.standardize import IMAGENET_MEAN, IMAGENET_STD, Standardize, Standardized
from camkit.models.zoo import WeightsError, available, get, load, pretrained, save, training_size

__all__ = ["NiN", "CoarseNet", "GlobalPool", "Standardize", "Standardized", "IMAGENET_MEAN", "IMAGENET_STD",
           "CamNet", "gap_head", "get", "pretrained", "load", "save", "available", "WeightsError",
           "training_size"]
