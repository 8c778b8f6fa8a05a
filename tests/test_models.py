"""camkit.models: NiN's CAM structure, CAM-ready torchvision conversions, the factory, the shipped model."""
import urllib.error

import pytest
import torch
import torch.nn.functional as F
import torchvision

import camkit
from camkit.data import Shapes
from camkit.errors import InputError
from camkit.models import CamNet, NiN, WeightsError, gap_head, get, load, pretrained, save

pytestmark = pytest.mark.usefixtures("one_thread")


def small_nin(pool="avg", **kwargs):
    return NiN(5, widths=(8, 16, 12), kernel_sizes=(3, 3, 3), pool=pool, **kwargs).eval()


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_nin_logits_are_global_pool_of_the_class_channels(pool):
    model = small_nin(pool)
    images = torch.rand(3, 3, 32, 40)
    maps = model.class_maps(images)
    assert maps.shape == (3, 5, 8, 10), "two 2x2 pools: the map side is a quarter of the input side"
    expected = maps.mean(dim=(2, 3)) if pool == "avg" else maps.amax(dim=(2, 3))
    torch.testing.assert_close(model(images), expected)
    # class_maps is the output of the module `features`, the last module before pooling.
    captured = {}
    model.features.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    model(images)
    torch.testing.assert_close(captured["out"], maps)


def test_nin_normalises_inside_the_model():
    model = small_nin()
    torch.testing.assert_close(model.standardize(torch.full((1, 3, 2, 2), 0.75)), torch.ones(1, 3, 2, 2))


def test_nin_class_relu_makes_maps_non_negative():
    maps = small_nin(class_relu=True).class_maps(torch.rand(2, 3, 16, 16))
    assert maps.min() >= 0 and maps.max() > 0


def test_nin_cam_from_camkit_explain_is_its_class_channel():
    explain = pytest.importorskip("camkit.explainer").explain
    model = small_nin()
    images = torch.rand(2, 3, 32, 32)
    targets = torch.tensor([3, 1])
    e = explain(model, images, method="cam", targets=targets)
    expected = model.class_maps(images).detach()[torch.arange(2), targets].relu()
    torch.testing.assert_close(e.raw[:, 0], expected, rtol=1e-5, atol=1e-6)


def test_nin_rejects_bad_configuration():
    with pytest.raises(InputError, match="pool"):
        NiN(4, pool="median")
    with pytest.raises(InputError, match="downsample"):
        NiN(4, widths=(8, 8), kernel_sizes=(3, 3), downsample=2)


@pytest.mark.parametrize("name", ["vgg16", "googlenet"])
def test_gap_head_gives_14x14_maps_at_224_and_a_linear_head_on_their_mean(name):
    kwargs = {"init_weights": True, "aux_logits": False} if name == "googlenet" else {}
    torch.manual_seed(0)
    model = gap_head(torchvision.models.get_model(name, weights=None, **kwargs), num_classes=7).eval()
    assert isinstance(model, CamNet)
    images = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        activations = model.conv(model.features(images))
        logits = model(images)
    assert activations.shape == (1, 1024, 14, 14)
    torch.testing.assert_close(logits, F.linear(activations.mean(dim=(2, 3)), model.fc.weight, model.fc.bias))


def test_gap_head_on_resnet_runs_layer4_at_stride_one():
    torch.manual_seed(0)
    model = gap_head(torchvision.models.resnet18(weights=None), num_classes=3, pool="max").eval()
    with torch.no_grad():
        activations = model.conv(model.features(torch.rand(1, 3, 112, 112)))
        logits = model(torch.rand(1, 3, 112, 112))
    assert activations.shape[-2:] == (7, 7) and logits.shape == (1, 3)
    with pytest.raises(InputError, match="VGG, GoogLeNet and ResNet"):
        gap_head(torch.nn.Linear(3, 3))


def test_get_builds_random_models_by_name():
    torch.manual_seed(0)
    model = get("resnet18-gmp", num_classes=4)
    assert isinstance(model, CamNet) and model.fc.out_features == 4 and model.pool.mode == "max"
    assert get("resnet18", num_classes=6).fc.out_features == 6
    assert isinstance(get("nin", num_classes=9), NiN)
    with pytest.raises(InputError, match="unknown model"):
        get("alexnet-gap")


def test_get_says_clearly_when_weights_cannot_be_fetched(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match=r"could not fetch torchvision weights .*resnet18.*weights=None"):
        get("resnet18-gap", num_classes=3, weights="DEFAULT")
    with pytest.raises(WeightsError, match="could not fetch"):
        get("resnet18", num_classes=3, weights="IMAGENET1K_V1")
    with pytest.raises(InputError, match="unknown weights 'IMAGENET9K'"):
        get("resnet18", weights="IMAGENET9K")


def test_save_load_round_trip(tmp_path):
    model = small_nin()
    model.class_names = ["a", "b", "c", "d", "e"]
    save(model, tmp_path / "m.pt", meta={"note": "test"})
    again = load(tmp_path / "m.pt")
    images = torch.rand(2, 3, 24, 24)
    torch.testing.assert_close(again(images), model(images))
    assert again.class_names == model.class_names and again.meta == {"note": "test"} and not again.training
    with pytest.raises(WeightsError, match="does not exist"):
        load(tmp_path / "missing.pt")


def test_shipped_nin_classifies_and_localizes_shapes():
    model = pretrained("nin-shapes")
    assert not model.training and model.config["pool"] == "avg"
    data = Shapes("val", size=model.meta["data"]["size"], length=60)
    assert model.class_names == data.classes
    images = torch.stack([data[i]["image"] for i in range(60)])
    labels = torch.tensor([data[i]["label"] for i in range(60)])
    with torch.no_grad():
        maps = model.class_maps(images)
    assert (model.pool(maps).argmax(1) == labels).float().mean() >= 0.9
    # The true class's CAM peaks inside the object for most images.
    cams = maps[torch.arange(60), labels]
    peak = cams.flatten(1).argmax(1)
    scale = images.shape[-1] / cams.shape[-1]
    px, py = (peak % cams.shape[-1] + 0.5) * scale, (peak // cams.shape[-1] + 0.5) * scale
    boxes = torch.stack([data[i]["boxes"][0] for i in range(60)]).float()
    inside = (px >= boxes[:, 0]) & (px <= boxes[:, 2] + 1) & (py >= boxes[:, 1]) & (py <= boxes[:, 3] + 1)
    assert inside.float().mean() >= 0.8
    # GT-known Loc at τ = 0.2 through the public path (explain → boxes → IoU ≥ 0.5); 500 images: 74 %.
    e = camkit.explain(model, images, method="cam", targets=labels)
    hits = camkit.localize.iou(e.boxes(0.2)[:, 0], boxes.long()).diagonal() >= 0.5
    assert hits.float().mean() >= 0.6
    assert camkit.models.get("nin-shapes").config == model.config
    with pytest.raises(InputError, match="no shipped model"):
        pretrained("nin-imagenet")


def test_case8_a_grey_image_to_an_rgb_model_is_named_not_broadcast():
    model = camkit.models.pretrained("nin-shapes")
    with pytest.raises(camkit.errors.InputError, match=r"images have 1 channel\(s\) but the model standardises 3"):
        camkit.explain(model, torch.rand(1, 1, 64, 64))
    grey = camkit.models.Standardize((0.5,), (0.25,))        # one mean and std serve any channel count
    torch.testing.assert_close(grey(torch.full((1, 3, 2, 2), 0.75)), torch.ones(1, 3, 2, 2))
