"""The core on real torchvision architectures (random weights, small inputs)."""
import pytest
import torch
import torchvision

import camkit
from camkit.errors import HeadError
from camkit.layers import find_head
from camkit.targets import select_output

# name, constructor options, input side, expected default layer, CAM head (None: CAM is refused)
ARCHITECTURES = [
    ("resnet50", {}, 64, "layer4", "fc"),
    ("googlenet", {"aux_logits": True, "init_weights": True}, 64, "inception5b", "fc"),
    ("densenet121", {}, 64, "features", "classifier"),
    ("mobilenet_v2", {}, 64, "features", "classifier.1"),
    ("mobilenet_v3_small", {}, 64, "features", None),  # its head is an MLP after pooling: no CAM
    ("efficientnet_b0", {}, 64, "features", "classifier.1"),
    ("inception_v3", {"aux_logits": True, "init_weights": True}, 107, "Mixed_7c", "fc"),
    ("vgg16", {}, 64, "features", None),
]


def build(name, options, classes=10):
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None, num_classes=classes, **options)


@pytest.mark.parametrize("name, options, side, layer, head", ARCHITECTURES, ids=[a[0] for a in ARCHITECTURES])
def test_gradcam_and_cam_on_torchvision_models(name, options, side, layer, head):
    model = build(name, options).eval()
    images = torch.rand(2, 3, side, side)
    e = camkit.explain(model, images, method="gradcam", top_k=2)
    assert e.layers == (layer,)
    assert e.maps.shape == (2, 2, side, side)
    assert torch.isfinite(e.maps).all() and e.maps.max() == 1.0
    with torch.no_grad():
        logits = model(images)
    torch.testing.assert_close(e.scores, logits.topk(2, 1).values, rtol=1e-4, atol=1e-4)
    if head is None:
        with pytest.raises(HeadError, match="method='gradcam'"):
            camkit.explain(model, images, method="cam")
        return
    found = find_head(model, images, layer, select_output)
    assert found.module_name == head
    # the CAM read off the head reproduces the logits: mean over positions of M_c + b_c = logit_c
    activations = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: activations.update(a=o))
    with torch.no_grad():
        model(images)
    handle.remove()
    classes = torch.arange(10).expand(2, 10)
    maps = found.class_maps(activations["a"], classes, bias=True)
    pooled = maps.mean((2, 3)) if found.pool == "avg" else None
    torch.testing.assert_close(pooled, logits, rtol=1e-4, atol=1e-4)
    cam = camkit.explain(model, images, method="cam", top_k=2)
    assert cam.classes.tolist() == e.classes.tolist()


def test_gradcam_equals_cam_over_hw_on_resnet50():
    model = build("resnet50", {})
    images = torch.rand(2, 3, 64, 64)
    grad = camkit.explain(model, images, method="gradcam", top_k=3)
    cam = camkit.explain(model, images, method="cam", top_k=3)
    torch.testing.assert_close(grad.raw, cam.raw / 4, rtol=1e-4, atol=1e-6)


def test_googlenet_in_train_mode_explains_main_logits_and_stays_in_train_mode():
    model = build("googlenet", {"aux_logits": True, "init_weights": True}).train()
    images = torch.rand(2, 3, 64, 64)
    e = camkit.explain(model, images, method="gradcam", targets=[1, 2])
    assert model.training and model.aux1.training
    model.eval()
    reference = camkit.explain(model, images, method="gradcam", targets=[1, 2])
    torch.testing.assert_close(e.raw, reference.raw)
    # in train mode torchvision returns a namedtuple; its first element is what camkit explains
    outputs = model.train()(images)
    assert type(outputs).__name__ == "GoogLeNetOutputs"
    assert select_output(outputs) is outputs.logits


def test_fcn_resnet50_segmentation_target():
    torch.manual_seed(0)
    model = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=4).eval()
    images = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[:32, :32] = True
    target = camkit.Segmentation(2, mask=mask)
    e = camkit.explain(model, images, method="gradcam", layer="backbone.layer4", targets=target)
    assert e.classes.tolist() == [[2]]
    with torch.no_grad():
        out = model(images)["out"]
    torch.testing.assert_close(e.scores[0, 0], out[0, 2][mask].sum(), rtol=1e-4, atol=1e-3)
    assert e.maps.shape == (1, 1, 64, 64) and e.maps.max() == 1.0
    predicted = camkit.explain(model, images, layer="backbone.layer4", targets=camkit.Segmentation(1))
    torch.testing.assert_close(predicted.scores[0, 0], out[0, 1][out[0].argmax(0) == 1].sum(), rtol=1e-4, atol=1e-3)
    with pytest.raises(camkit.errors.InputError, match="Segmentation"):
        camkit.explain(model, images, layer="backbone.layer4", targets=1)
