"""The shipped coarse-map model ``coarsenet-shapes``: loads safely, classifies the shapes val set."""
import torch

import camkit
from camkit.data import Shapes
from camkit.models import CoarseNet


def test_coarse_model_is_shipped_and_records_its_image_size():
    assert "coarsenet-shapes" in camkit.models.available()
    model = camkit.models.pretrained("coarsenet-shapes")            # weights_only=True inside
    assert isinstance(model, CoarseNet) and not model.training
    assert model.meta["image_size"] == 224 and model.stride == 32
    assert len(model.class_names) == 12


def test_coarse_model_classifies_the_shapes_val_set():
    torch.manual_seed(0)
    model = camkit.models.pretrained("coarsenet-shapes")
    data = Shapes("val", size=224, length=144)
    images = torch.stack([data[i]["image"] for i in range(len(data))])
    labels = torch.tensor([data[i]["label"] for i in range(len(data))])
    with torch.no_grad():
        accuracy = torch.cat([model(images[i:i + 48]).argmax(1) for i in range(0, 144, 48)]).eq(labels).float().mean()
    assert accuracy >= 0.95, accuracy
    # A GAP network: Grad-CAM = CAM / (h·w) before ReLU and normalisation, at 7×7 (stride 32).
    cam = model.class_maps(images[:4])[torch.arange(4), labels[:4]]
    grad = camkit.explain(model, images[:4], method="gradcam", targets=labels[:4]).raw[:, 0]
    assert grad.shape == (4, 7, 7)
    torch.testing.assert_close(grad, torch.relu(cam) / 49, rtol=1e-4, atol=1e-6)
