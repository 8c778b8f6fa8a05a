"""Layer specs (camkit.layers): a module, a name or a list; unknown or unusable layers are named."""
import pytest
import torch
from torch import nn

import camkit
from camkit.errors import InputError, LayerError
from helpers import small_cnn


def test_layer_given_as_module_or_name_or_list():
    model = small_cnn()
    images = torch.rand(2, 3, 16, 16)
    by_name = camkit.explain(model, images, layer="features.7")
    by_module = camkit.explain(model, images, layer=model.features[7])
    torch.testing.assert_close(by_name.raw, by_module.raw)
    fused = camkit.explain(model, images, layer=["features.2", "features"])
    assert fused.layers == ("features.2", "features")
    assert fused.raw.shape[-2:] == (16, 16)  # fused at the finest layer resolution
    assert set(fused.layer_raw) == {"features.2", "features"}


def test_bad_layers_are_named():
    model, images = small_cnn(), torch.rand(2, 3, 16, 16)
    with pytest.raises(LayerError, match="close candidates: features"):
        camkit.explain(model, images, layer="featurs")
    with pytest.raises(LayerError, match="not a \\(B, C, h, w\\)"):
        camkit.explain(model, images, layer="fc")
    model.unused = nn.Conv2d(3, 3, 1)
    with pytest.raises(LayerError, match="not reached"):
        camkit.explain(model, images, layer="unused")
    with pytest.raises(LayerError, match="no spatial layer"):
        camkit.explain(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4)), images)
    with pytest.raises(InputError, match="unknown method 'gradcm'; did you mean gradcam"):
        camkit.explain(model, images, method="gradcm")
    with pytest.raises(InputError, match="Module"):
        camkit.explain("resnet", images)
