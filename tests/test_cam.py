"""CAM (camkit.methods.cam): golden values on a tiny model, the bias option, Grad-CAM = CAM / (h·w)."""
import torch

import camkit
from helpers import TinyGAP, small_cnn

X = torch.tensor([[1.0, 2.0], [3.0, -4.0]]).view(1, 1, 2, 2)


def test_cam_golden_values():
    # A = [relu(x), relu(-x)] = [[1,2],[3,0]], [[0,0],[0,4]]; logits = [4.0, 3.5]; CAM_0 = A0 + 2 A1
    e = camkit.explain(TinyGAP(), X, method="cam", layer="relu", top_k=2)
    assert e.classes.tolist() == [[0, 1]]
    torch.testing.assert_close(e.scores, torch.tensor([[4.0, 3.5]]))
    torch.testing.assert_close(e.raw[0, 0], torch.tensor([[1.0, 2.0], [3.0, 8.0]]))
    torch.testing.assert_close(e.raw[0, 1], torch.tensor([[3.0, 6.0], [9.0, 0.0]]))  # ReLU(3 A0 − A1)
    torch.testing.assert_close(e.maps[0, 0], torch.tensor([[0.0, 1 / 7], [2 / 7, 1.0]]))
    torch.testing.assert_close(e.probs, torch.tensor([[4.0, 3.5]]).softmax(1))


def test_cam_bias_option_adds_class_bias_everywhere():
    e = camkit.explain(TinyGAP(), X, method="cam", layer="relu", targets=0, bias=True)
    torch.testing.assert_close(e.raw[0, 0], torch.tensor([[1.5, 2.5], [3.5, 8.5]]))


def test_gradcam_equals_cam_over_hw_on_gap_network():
    model = small_cnn()
    images = torch.rand(3, 3, 16, 16)
    grad = camkit.explain(model, images, method="gradcam", top_k=3)
    cam = camkit.explain(model, images, method="cam", top_k=3)
    h, w = cam.raw.shape[-2:]
    assert grad.layers == cam.layers == ("features",)
    torch.testing.assert_close(grad.raw, cam.raw / (h * w), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad.maps, cam.maps, rtol=1e-4, atol=1e-5)
