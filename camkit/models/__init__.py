"""CAM-ready models: NiN, the CAM paper's GAP/GMP conversions of torchvision nets, a factory,
and the checkpoints shipped with camkit (``pretrained("nin-shapes")``)."""
from camkit.models.coarse import CoarseNet
from camkit.models.heads import CamNet, gap_head
from camkit.models.nin import NiN, GlobalPool, Normalize
from camkit.models.zoo import WeightsError, available, get, load, pretrained, save

__all__ = ["NiN", "CoarseNet", "GlobalPool", "Normalize", "CamNet", "gap_head", "get", "pretrained", "load", "save",
           "available", "WeightsError"]
