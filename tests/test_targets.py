"""Targets and outputs (camkit.targets): every target form agrees, top-k equals single calls, output kinds, errors."""
import collections

import pytest
import torch
from torch import nn

import camkit
from camkit.errors import InputError
from helpers import small_cnn


def test_top_k_maps_equal_single_class_calls():
    model = small_cnn()
    images = torch.rand(2, 3, 16, 16)
    top = camkit.explain(model, images, method="gradcam", top_k=3)
    for k in range(3):
        single = camkit.explain(model, images, method="gradcam", targets=top.classes[:, k])
        torch.testing.assert_close(single.raw[:, 0], top.raw[:, k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(single.scores[:, 0], top.scores[:, k])
    assert (top.scores[:, :-1] >= top.scores[:, 1:]).all()


def test_targets_forms_agree():
    model = small_cnn()
    images = torch.rand(2, 3, 16, 16)
    as_int = camkit.explain(model, images, targets=3)
    as_list = camkit.explain(model, images, targets=[3, 3])
    as_tensor = camkit.explain(model, images, targets=torch.tensor([[3], [3]]))
    as_callable = camkit.explain(model, images, targets=lambda out: out[:, 3])
    for other in (as_list, as_tensor, as_callable):
        torch.testing.assert_close(other.raw, as_int.raw)
    assert as_callable.classes.tolist() == [[-1], [-1]]
    assert torch.isnan(as_callable.probs).all()
    torch.testing.assert_close(as_callable.scores, as_int.scores)


class Wrapped(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.net = small_cnn()
        self.kind = kind

    def forward(self, x):
        logits = self.net(x)
        if self.kind == "tuple":
            return logits, logits * 0
        if self.kind == "namedtuple":
            return collections.namedtuple("Out", "logits aux")(logits, logits * 0)
        if self.kind == "dict":
            return {"out": logits, "aux": logits * 0}
        return {"logits": logits}


@pytest.mark.parametrize("kind", ["tuple", "namedtuple", "dict", "custom"])
def test_output_kinds(kind):
    images = torch.rand(2, 3, 16, 16)
    reference = camkit.explain(small_cnn(), images, layer="features")
    options = {"output": lambda o: o["logits"]} if kind == "custom" else {}
    e = camkit.explain(Wrapped(kind), images, layer="net.features", **options)
    torch.testing.assert_close(e.raw, reference.raw)


def test_dict_output_without_out_key_names_the_keys():
    with pytest.raises(InputError, match="logits"):
        camkit.explain(Wrapped("custom"), torch.rand(1, 3, 16, 16), layer="net.features")


def test_bad_targets_are_named():
    model, images = small_cnn(), torch.rand(2, 3, 16, 16)
    with pytest.raises(InputError, match="out of range"):
        camkit.explain(model, images, targets=5)
    with pytest.raises(InputError, match="out of range"):
        camkit.explain(model, images, targets=[0, -1])
    with pytest.raises(InputError, match="batch of 2"):
        camkit.explain(model, images, targets=[0, 1, 2])
    with pytest.raises(InputError, match="top_k"):
        camkit.explain(model, images, top_k=6)
    with pytest.raises(InputError, match="not both"):
        camkit.explain(model, images, targets=1, top_k=2)
    with pytest.raises(InputError, match=r"\(B,\)"):
        camkit.explain(model, images, targets=lambda out: out)
