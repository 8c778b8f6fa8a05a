"""Explaining detectors: camkit.Detection on a tiny constructed detector whose scores depend on known
pixels (the map lands there), matching rules, batch independence, gradient-free methods, a padded
batch mapped back onto the image, and torchvision's Faster R-CNN, RetinaNet, FCOS and SSD."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.detection.image_list import ImageList

import camkit
from camkit.errors import InputError
from camkit.maps import normalize_maps

RED_BOX, GREEN_BOX = [2, 3, 6, 7], [7, 1, 10, 5]  # x0, y0, x1, y1 inclusive, in input pixels


class PadToEight(nn.Module):
    """Pads the batch at the bottom and right to a multiple of 8, as torchvision's detectors pad to 32."""

    def forward(self, images):
        h, w = images.shape[-2:]
        padded = F.pad(images, (0, -w % 8, 0, -h % 8))
        return ImageList(padded, [(h, w)] * images.shape[0]), None


class TinyDetector(nn.Module):
    """Images (B, 3, H, W) → backbone: ReLU(identity 1×1 conv), one channel per colour → for each fixed
    candidate box j with label ℓ_j: s_j = sigmoid(4 (mean of channel ℓ_j − 1 over box j − 0.25)).

    Returns torchvision's format: one dict of ``boxes``, ``labels``, ``scores`` per image, by score."""

    def __init__(self, boxes=(RED_BOX, GREEN_BOX), labels=(1, 2)):
        super().__init__()
        self.transform = PadToEight()
        self.backbone = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())
        with torch.no_grad():
            self.backbone[0].weight.copy_(torch.eye(3)[:, :, None, None])
            self.backbone[0].bias.zero_()
        self.register_buffer("candidates", torch.tensor(boxes, dtype=torch.float32))
        self.register_buffer("classes", torch.tensor(labels))

    def forward(self, images):
        features = self.backbone(self.transform(images)[0].tensors)
        out = []
        for feature in features:
            scores = torch.stack([
                feature[int(c) - 1, int(y0):int(y1) + 1, int(x0):int(x1) + 1].mean()
                for (x0, y0, x1, y1), c in zip(self.candidates.tolist(), self.classes.tolist(), strict=True)
            ])
            scores = torch.sigmoid(4 * (scores - 0.25))
            order = scores.argsort(descending=True)
            out.append({"boxes": self.candidates[order], "labels": self.classes[order], "scores": scores[order]})
        return out


def paint(red=RED_BOX, green=GREEN_BOX, size=(11, 13), red_value=1.0, green_value=0.8):
    image = torch.zeros(3, *size)
    x0, y0, x1, y1 = red
    image[0, y0:y1 + 1, x0:x1 + 1] = red_value
    x0, y0, x1, y1 = green
    image[1, y0:y1 + 1, x0:x1 + 1] = green_value
    return image


def inside(maps, box):
    x0, y0, x1, y1 = box
    return maps[..., y0:y1 + 1, x0:x1 + 1].sum() / maps.sum()


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "layercam", "gradcam++", "scorecam"])
def test_map_lands_on_the_pixels_the_matched_detection_reads(method):
    images = paint()[None]  # 11×13: padded to 16×16 by the detector
    green = camkit.Detection(boxes=[[7, 1, 10, 6]], labels=[2])  # IoU 0.8 with the green detection
    e = camkit.explain(TinyDetector(), images, method=method, layer="backbone", targets=green)
    assert e.maps.shape == (1, 1, 11, 13) and e.classes.tolist() == [[2]]
    with torch.no_grad():
        detections = TinyDetector()(images)[0]
    torch.testing.assert_close(e.scores[0, 0], detections["scores"][detections["labels"] == 2][0])
    if method == "scorecam":  # a softmax over channels: the red channel keeps some weight, the peak is green
        assert e.boxes(threshold=0.8).tolist() == [[GREEN_BOX]] and inside(e.maps, RED_BOX) < 0.5
    else:  # gradients reach the green box's pixels only
        assert inside(e.maps, GREEN_BOX) > 0.99 and e.boxes(threshold=0.5).tolist() == [[GREEN_BOX]]


def test_padded_grid_is_cropped_back_onto_the_image():
    # the backbone's grid covers the padded 16×16 batch: the image is its top-left 11×13
    e = camkit.explain(TinyDetector(), paint()[None], method="hirescam", layer="backbone",
                       targets=camkit.Detection(boxes=[RED_BOX], labels=[1]))
    assert e.raw.shape == (1, 1, 16, 16)
    torch.testing.assert_close(e.maps, normalize_maps(e.raw[..., :11, :13]))


def test_matching_rules_top_detections_and_no_match():
    images = paint()[None]
    top = camkit.explain(TinyDetector(), images, layer="backbone")  # no targets: the top detection (red)
    assert top.classes.tolist() == [[1]] and inside(top.maps, RED_BOX) > 0.99
    both = camkit.explain(TinyDetector(), images, layer="backbone", targets=camkit.Detection(top=2))
    with torch.no_grad():
        scores = TinyDetector()(images)[0]["scores"]
    torch.testing.assert_close(both.scores[0, 0], scores.sum())
    assert both.classes.tolist() == [[-1]]  # two labels
    for target in (camkit.Detection(boxes=[GREEN_BOX], labels=[1]),  # right box, wrong label
                   camkit.Detection(boxes=[[7, 1, 10, 2]], labels=[2], iou=0.5)):  # IoU 0.4
        none = camkit.explain(TinyDetector(), images, layer="backbone", targets=target)
        assert none.scores.tolist() == [[0.0]] and none.maps.abs().max() == 0
    unlabelled = camkit.explain(TinyDetector(), images, layer="backbone", targets=camkit.Detection(boxes=[GREEN_BOX]))
    assert unlabelled.classes.tolist() == [[-1]] and inside(unlabelled.maps, GREEN_BOX) > 0.99


def test_batch_independence_with_boxes_per_image():
    images = torch.stack([paint(), paint(red_value=0.5, green_value=1.0), paint(red_value=0.0)])
    target = camkit.Detection(boxes=[[RED_BOX], [GREEN_BOX, RED_BOX], [GREEN_BOX]], labels=[[1], [2, 1], [2]])
    for method in ("gradcam", "eigencam", "scorecam"):
        batch = camkit.explain(TinyDetector(), images, method=method, layer="backbone", targets=target)
        for i in range(3):
            alone_target = camkit.Detection(boxes=[target.boxes[i]], labels=[target.labels[i]])
            alone = camkit.explain(TinyDetector(), images[i:i + 1], method=method, layer="backbone",
                                   targets=alone_target)
            torch.testing.assert_close(alone.raw[0], batch.raw[i], rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(alone.scores[0], batch.scores[i])


def test_gradient_free_methods_and_a_score_callable():
    images = paint()[None]
    eigen = camkit.explain(TinyDetector(), images, method="eigencam", layer="backbone")
    assert inside(eigen.maps, RED_BOX) + inside(eigen.maps, GREEN_BOX) > 0.99  # class-agnostic: the objects

    def green_score(outputs):  # any callable on the list of dicts works as a target
        return torch.stack([o["scores"][o["labels"] == 2].sum() for o in outputs])

    score = camkit.explain(TinyDetector(), images, method="scorecam", layer="backbone", targets=green_score)
    same = camkit.explain(TinyDetector(), images, method="scorecam", layer="backbone",
                          targets=camkit.Detection(boxes=[GREEN_BOX], labels=[2]))
    torch.testing.assert_close(score.raw, same.raw)
    assert score.boxes(threshold=0.8).tolist() == [[GREEN_BOX]]


def test_detection_errors_are_named():
    images = paint()[None]
    with pytest.raises(InputError, match="Detection"):
        camkit.explain(TinyDetector(), images, layer="backbone", targets=2)
    with pytest.raises(InputError, match="top_k"):
        camkit.explain(TinyDetector(), images, layer="backbone", top_k=2)
    with pytest.raises(InputError, match=r"\(N, 4\)"):
        camkit.Detection(boxes=[[1, 2, 3]]).resolve(TinyDetector()(images), None)
    with pytest.raises(InputError, match="x1 ≥ x0"):
        camkit.Detection(boxes=[[5, 2, 3, 4]]).resolve(TinyDetector()(images), None)
    with pytest.raises(InputError, match="iou"):
        camkit.Detection(iou=0)
    with pytest.raises(InputError, match="labels need boxes"):
        camkit.Detection(labels=[1])
    with pytest.raises(InputError, match="TTA"):
        camkit.explain(TinyDetector(), images, layer="backbone", smooth="tta")
    with pytest.raises(InputError, match="detector's output"):
        camkit.explain(nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()), images,
                       targets=camkit.Detection())


def _state(model):
    return ([m.training for m in model.modules()], [len(m._forward_hooks) for m in model.modules()],
            [p.requires_grad for p in model.parameters()])


DETECTORS = [  # torchvision's smallest of each family, thresholds 0 so that random weights detect something
    ("fasterrcnn_mobilenet_v3_large_320_fpn", {"box_score_thresh": 0.0, "box_detections_per_img": 20},
     "backbone.body.16"),
    ("retinanet_resnet50_fpn", {"score_thresh": 0.0, "detections_per_img": 20, "min_size": 64, "max_size": 64},
     "backbone.body.layer4"),
    ("fcos_resnet50_fpn", {"score_thresh": 0.0, "detections_per_img": 20, "min_size": 64, "max_size": 64},
     "backbone.body.layer4"),
    ("ssdlite320_mobilenet_v3_large", {"score_thresh": 0.0, "detections_per_img": 20}, "backbone.features.1"),
]


@pytest.mark.parametrize("name, options, layer", DETECTORS, ids=[d[0].split("_")[0] for d in DETECTORS])
def test_torchvision_detectors_explain_and_are_left_as_found(name, options, layer, one_thread):
    torch.manual_seed(0)
    model = getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None, **options)
    model.train()
    model.backbone.requires_grad_(False)
    before = _state(model)
    images = torch.rand(2, 3, 40, 56)
    e = camkit.explain(model, images)  # its own top detection, the backbone's deepest map
    assert e.layers == (layer,) and e.maps.shape == (2, 1, 40, 56)
    assert torch.isfinite(e.maps).all() and (e.scores > 0).all()
    assert _state(model) == before and all(p.grad is None for p in model.parameters())
    alone = camkit.explain(model, images[1:])  # batch independence on the real thing
    torch.testing.assert_close(alone.raw[0], e.raw[1], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(alone.scores[0], e.scores[1])
    model.eval()
    with torch.no_grad():
        first = model(images[:1])[0]
    target = camkit.Detection(boxes=first["boxes"][:1], labels=first["labels"][:1])
    one = camkit.explain(model, images[:1], targets=target)
    torch.testing.assert_close(one.scores[0, 0], first["scores"][0])
    assert one.classes.tolist() == [[int(first["labels"][0])]]
