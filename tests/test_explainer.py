"""explain() and Explainer (camkit.explainer): batch independence, grad modes, bad images, autocast, devices."""
import pytest
import torch

import camkit
from camkit import layers
from camkit.errors import InputError
from helpers import small_cnn


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_batch_independence(method):
    model = small_cnn().train()
    images = torch.rand(4, 3, 16, 16)
    batch = camkit.explain(model, images, method=method, top_k=2)
    for i in range(4):
        alone = camkit.explain(model, images[i : i + 1], method=method, top_k=2)
        torch.testing.assert_close(alone.raw[0], batch.raw[i], rtol=1e-5, atol=1e-6)
        assert alone.classes[0].tolist() == batch.classes[i].tolist()


def test_works_inside_no_grad_and_inference_mode():
    model = small_cnn()
    images = torch.rand(2, 3, 16, 16)
    reference = camkit.explain(model, images)
    with torch.no_grad():
        inside = camkit.explain(model, images)
        assert not torch.is_grad_enabled()
    torch.testing.assert_close(inside.raw, reference.raw)
    with torch.inference_mode():
        inference_images = images.clone()
        inside = camkit.explain(model, inference_images)
        assert torch.is_inference_mode_enabled()
    torch.testing.assert_close(inside.raw, reference.raw)


@pytest.mark.parametrize("method, options", [("gradcam", {}), ("augmented-gradcam", {"L": 4}),
                                             ("augmented-avg", {"L": 4})])
def test_images_with_requires_grad_get_no_grad(method, options):
    images, model = torch.rand(2, 3, 16, 16, requires_grad=True), small_cnn()
    reference = camkit.explain(model, images.detach(), method=method, **options)
    explained = camkit.explain(model, images, method=method, **options)
    assert images.grad is None and images.requires_grad
    torch.testing.assert_close(explained.raw, reference.raw)
    with torch.inference_mode():
        inside = camkit.explain(model, images.detach().clone(), method=method, **options)
    torch.testing.assert_close(inside.raw, reference.raw)


@pytest.mark.parametrize(
    "images, message",
    [
        ([[1.0]], "torch.Tensor"),
        (torch.rand(3, 16, 16), "4-D"),
        (torch.randint(0, 255, (1, 3, 16, 16)), "floating"),
        (torch.rand(0, 3, 16, 16), "empty batch"),
        (torch.full((1, 3, 16, 16), float("nan")), "NaN"),
        (torch.full((1, 3, 16, 16), float("inf")), "Inf"),
    ],
)


def test_bad_images_are_named(images, message):
    with pytest.raises(InputError, match=message):
        camkit.explain(small_cnn(), images)


def test_autocast_bfloat16_and_channels_last():
    model = small_cnn()
    images = torch.rand(2, 3, 16, 16)
    reference = camkit.explain(model, images, top_k=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = camkit.explain(model, images, top_k=2)
        low_cam = camkit.explain(model, images, method="cam", top_k=2)
    assert low.maps.dtype == torch.float32
    assert low.classes.tolist() == reference.classes.tolist()
    assert torch.corrcoef(torch.stack([low.maps.flatten(), reference.maps.flatten()]))[0, 1] > 0.98
    assert torch.corrcoef(torch.stack([low_cam.maps.flatten(), reference.maps.flatten()]))[0, 1] > 0.98
    last = model.to(memory_format=torch.channels_last)
    cl = camkit.explain(last, images.to(memory_format=torch.channels_last), top_k=2)
    torch.testing.assert_close(cl.raw, reference.raw, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model = small_cnn()
    images = torch.rand(2, 3, 16, 16)
    cpu = camkit.explain(model, images, top_k=2)
    gpu = camkit.explain(model.cuda(), images.cuda(), top_k=2)
    assert gpu.maps.device.type == "cuda"
    torch.testing.assert_close(gpu.raw.cpu(), cpu.raw, rtol=1e-3, atol=1e-4)


def test_with_block_releases_what_was_cached_about_the_model():
    model, images = small_cnn(), torch.rand(2, 3, 16, 16)
    reference = camkit.explain(model, images, method="cam")
    layers.release_caches(model)
    with camkit.Explainer(model, method="cam") as explainer:
        inside = explainer(images)
        assert model in layers._DEFAULT_LAYER_CACHE and model in layers._HEAD_CACHE
    assert model not in layers._DEFAULT_LAYER_CACHE and model not in layers._HEAD_CACHE
    torch.testing.assert_close(inside.raw, reference.raw)
    with pytest.raises(RuntimeError, match="inside"), camkit.Explainer(model, method="cam") as explainer:
        explainer(images)
        raise RuntimeError("inside the block")
    assert model not in layers._DEFAULT_LAYER_CACHE  # released on error too


def test_boxes_stay_on_the_device_of_the_maps():
    e = camkit.explain(small_cnn(), torch.rand(2, 3, 16, 16), top_k=2)
    boxes = e.boxes(0.2)
    assert boxes.device == e.maps.device and boxes.shape == (2, 2, 4)
    assert torch.equal(boxes, camkit.localize.boxes(e.maps.numpy(), 0.2))
    if torch.cuda.is_available():
        on_gpu = camkit.explain(small_cnn().cuda(), torch.rand(2, 3, 16, 16).cuda(), top_k=2)
        assert on_gpu.boxes(0.2).device == on_gpu.maps.device
