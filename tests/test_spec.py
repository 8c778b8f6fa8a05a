"""camkit.models.spec: model files load without running code unless trusted; the input a model
expects comes from its checkpoint or its torchvision weights."""
import os

import pytest
import torch
from torch import nn

import camkit
from camkit.errors import InputError
from camkit.models import training_size
from camkit.models.spec import load_model, preprocessing


class TouchesAFile:
    """Unpickling this creates a file: what a crafted model file can do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def tiny_nin():
    torch.manual_seed(0)
    return camkit.models.NiN(3, widths=(4,), kernel_sizes=(3,), downsample=0)


def test_case6_a_crafted_pickle_is_refused_and_runs_no_code(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"weights": TouchesAFile(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="pickled Python objects.*--trust-model-file"):
        load_model(str(tmp_path / "evil.pt"))
    assert not marker.exists()
    with pytest.raises(InputError, match="holds a dict"):    # trusted: its code runs, and it is no model
        load_model(str(tmp_path / "evil.pt"), trust=True)
    assert marker.exists()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_each_kind_of_model_file(tmp_path):
    model = tiny_nin()
    camkit.models.save(model, tmp_path / "camkit.pt", meta={"data": {"size": 32}})
    loaded, _ = load_model(str(tmp_path / "camkit.pt"))
    assert training_size(loaded) == 32 and not loaded.training
    torch.save(model.state_dict(), tmp_path / "state.pt")
    with pytest.raises(InputError, match="holds a state_dict.*needs its architecture"):
        load_model(str(tmp_path / "state.pt"))
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(InputError, match="--trust-model-file"):
        load_model(str(tmp_path / "whole.pt"))
    whole, _ = load_model(str(tmp_path / "whole.pt"), trust=True)
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(whole(x), model.eval()(x))
    scripted = torch.jit.trace(nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), x)
    scripted.save(str(tmp_path / "script.pt"))
    script, _ = load_model(str(tmp_path / "script.pt"))        # TorchScript is no pickle: no flag needed
    assert script(x).shape == (1, 2)
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(InputError, match="could not read model file .*junk.pt"):
        load_model(str(tmp_path / "junk.pt"))
    data = (tmp_path / "camkit.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="could not read model file .*cut.pt"):
        load_model(str(tmp_path / "cut.pt"))
    with pytest.raises(InputError, match="does not exist"):
        load_model(str(tmp_path / "missing.pt"))


def test_case2_the_size_a_model_expects():
    shipped = camkit.models.pretrained("nin-shapes")
    assert "image_size" not in shipped.meta and shipped.meta["data"]["size"] == 64
    prep = preprocessing("nin-shapes", shipped)
    assert (prep.size, prep.mean, prep.std, prep.source) == (64, None, None, "the model's training size")
    assert preprocessing("nin-shapes", shipped, size=100).size == 100
    resnet = torchvision_resnet18()
    prep = preprocessing("torchvision:resnet18", resnet)
    assert prep.size == 224 and prep.mean == camkit.models.IMAGENET_MEAN and prep.std == camkit.models.IMAGENET_STD
    assert preprocessing("torchvision:resnet18", resnet, standardize="none").mean is None
    assert preprocessing("nin-shapes", shipped, standardize="imagenet").mean == camkit.models.IMAGENET_MEAN
    # torchvision weights: their own resize and statistics, read without downloading anything
    prep = preprocessing("torchvision:resnet50", resnet, weights="DEFAULT")
    assert prep.size == 232 and prep.source == "DEFAULT weights" and prep.mean == (0.485, 0.456, 0.406)
    assert preprocessing("torchvision:vit_b_16", resnet, weights="IMAGENET1K_V1").size == 256
    with pytest.raises(InputError):
        preprocessing("nin-shapes", shipped, standardize="sometimes")


def torchvision_resnet18():
    import torchvision

    return torchvision.models.resnet18(weights=None)
