"""Faithfulness metrics on constructed cases with a known answer: a model that reads only the
pixels of a region R, maps that point exactly at R or at its complement."""
import pytest
import torch
from torch import nn

from camkit import faithfulness
from camkit.errors import InputError

H = W = 6
REGION = torch.zeros(H, W, dtype=torch.bool)
REGION[1:3, 2:5] = True  # 6 pixels the model reads


class RegionReader(nn.Module):
    """logits = [gain · Σ_{p ∈ R} Σ_c x_c(p) − penalty · Σ_{p ∉ R} Σ_c x_c(p), 0]."""

    def __init__(self, gain=1.0, penalty=0.0):
        super().__init__()
        self.register_buffer("region", REGION.float())
        self.gain, self.penalty = gain, penalty

    def forward(self, x):
        per_pixel = x.sum(1)
        inside = (per_pixel * self.region).sum((1, 2))
        outside = (per_pixel * (1 - self.region)).sum((1, 2))
        score = self.gain * inside - self.penalty * outside
        return torch.stack([score, torch.zeros_like(score)], 1)


def images_and_maps(batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = 0.2 + torch.rand(batch, 3, H, W, generator=generator)
    perfect = REGION.float().expand(batch, H, W).clone()
    return images, perfect, 1 - perfect, torch.zeros(batch, dtype=torch.long)


def test_deletion_golden_curve_and_perfect_map_beats_its_inverse():
    images, perfect, inverse, classes = images_and_maps()
    model = RegionReader()
    curve = faithfulness.deletion(model, images, perfect, classes, steps=H * W, score="logit")
    # one pixel per step; the region's pixels go first, in a random order among ties
    inside = (images.sum(1) * REGION).flatten(1)
    assert curve.fractions.tolist() == pytest.approx([s / (H * W) for s in range(H * W + 1)])
    torch.testing.assert_close(curve.scores[:, 0], inside.sum(1))
    torch.testing.assert_close(curve.scores[:, 6:], torch.zeros(2, H * W - 5))
    assert (curve.scores[:, 1:7] < curve.scores[:, :6]).all()  # strictly falling while R is deleted
    worse = faithfulness.deletion(model, images, inverse, classes, steps=H * W, score="logit")
    torch.testing.assert_close(worse.scores[:, : H * W - 6 + 1], inside.sum(1, keepdim=True).expand(2, H * W - 5))
    assert (curve.auc < worse.auc).all()
    probs = faithfulness.deletion(model, images, perfect, classes, steps=12)
    assert (probs.auc < faithfulness.deletion(model, images, inverse, classes, steps=12).auc).all()
    torch.testing.assert_close(probs.scores[:, -1], torch.full((2,), 0.5))  # all deleted: logits (0, 0)


def test_insertion_perfect_map_beats_its_inverse_and_golden_auc():
    images, perfect, inverse, classes = images_and_maps()
    model = RegionReader()
    good = faithfulness.insertion(model, images, perfect, classes, steps=H * W, baseline=0.0, score="logit")
    bad = faithfulness.insertion(model, images, inverse, classes, steps=H * W, baseline=0.0, score="logit")
    assert (good.auc > bad.auc).all()
    total = (images.sum(1) * REGION).flatten(1).sum(1)
    torch.testing.assert_close(good.scores[:, 6:], total[:, None].expand(2, H * W - 5))
    # inverse: nothing of R until the last 6 steps: AUC ≤ total · (area of the last 6 steps)
    assert (bad.auc <= total * 6 / (H * W) + 1e-6).all()
    # RISE: insertion starts from a blurred copy
    blurred = faithfulness.insertion(model, images, perfect, classes, steps=8, score="logit")
    torch.testing.assert_close(blurred.scores[:, 0], model(faithfulness.blur(images))[:, 0])
    torch.testing.assert_close(blurred.scores[:, -1], total)


def test_average_drop_and_increase_in_confidence_conventions():
    images, perfect, inverse, classes = images_and_maps()
    model = RegionReader(gain=0.3)
    ones = torch.ones(2, H, W)
    for convention in ("relative", "absolute"):
        assert faithfulness.average_drop(model, images, perfect, classes, convention=convention).tolist() == [0.0, 0.0]
        assert faithfulness.average_drop(model, images, ones, classes, convention=convention).tolist() == [0.0, 0.0]
    y = torch.sigmoid(0.3 * (images.sum(1) * REGION).flatten(1).sum(1))  # softmax of (s, 0)
    o = torch.full((2,), 0.5)  # the inverse map zeroes R
    torch.testing.assert_close(faithfulness.average_drop(model, images, inverse, classes), (y - o) / y)
    torch.testing.assert_close(faithfulness.average_drop(model, images, inverse, classes, convention="absolute"), y - o)
    # a model penalised by pixels outside R: masking them raises the score
    model = RegionReader(gain=0.3, penalty=0.05)
    per_pixel = images.sum(1)
    y = torch.sigmoid(0.3 * (per_pixel * REGION).sum((1, 2)) - 0.05 * (per_pixel * ~REGION).sum((1, 2)))
    o = torch.sigmoid(0.3 * (per_pixel * REGION).sum((1, 2)))
    assert faithfulness.increase_in_confidence(model, images, perfect, classes).tolist() == [1.0, 1.0]
    assert faithfulness.increase_in_confidence(model, images, inverse, classes).tolist() == [0.0, 0.0]
    gain = faithfulness.increase_in_confidence
    torch.testing.assert_close(gain(model, images, perfect, classes, convention="absolute"), o - y)
    torch.testing.assert_close(gain(model, images, perfect, classes, convention="relative"), (o - y) / y)
    logit_gain = gain(model, images, perfect, classes, convention="absolute", score="logit")
    torch.testing.assert_close(logit_gain, 0.05 * (per_pixel * ~REGION).sum((1, 2)))


def _dense_imputation(image, removed):
    """ROAD's system written out pixel by pixel: for a removed p, Σ_{q ∈ N(p)} w_pq (x_p − x_q) = 0."""
    c, h, w = image.shape
    unknown = [(i, j) for i in range(h) for j in range(w) if removed[i, j]]
    index = {p: n for n, p in enumerate(unknown)}
    system = torch.zeros(len(unknown), len(unknown), dtype=torch.float64)
    rhs = torch.zeros(len(unknown), c, dtype=torch.float64)
    for (i, j), n in index.items():
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                q = (i + di, j + dj)
                if (di, dj) == (0, 0) or not (0 <= q[0] < h and 0 <= q[1] < w):
                    continue
                weight = 1 / 12 if di and dj else 1 / 6
                system[n, n] += weight
                if q in index:
                    system[n, index[q]] -= weight
                else:
                    rhs[n] += weight * image[:, q[0], q[1]].double()
    solution = torch.linalg.solve(system, rhs)
    out = image.clone().double()
    for (i, j), n in index.items():
        out[:, i, j] = solution[n]
    return out.float()


def test_linear_imputation_matches_the_dense_road_system():
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(3, 2, 7, 5, generator=generator)
    removed = torch.rand(3, 7, 5, generator=generator) < torch.tensor([0.3, 0.6, 0.9]).view(3, 1, 1)
    removed[:, 0, 0] = False  # keep at least one pixel
    imputed = faithfulness.impute_linear(images, removed)
    for b in range(3):
        torch.testing.assert_close(imputed[b], _dense_imputation(images[b], removed[b]), rtol=1e-5, atol=1e-5)
    assert torch.equal(imputed[~removed[:, None].expand_as(images)], images[~removed[:, None].expand_as(images)])
    with pytest.raises(InputError, match="kept pixel"):
        faithfulness.impute_linear(images, torch.ones(3, 7, 5, dtype=torch.bool))


def test_road_perfect_map_beats_its_inverse_in_both_orders():
    # a bright region on a dark background: imputing R from its surroundings erases what the model reads
    images = torch.full((2, 3, H, W), 0.05)
    images[:, :, REGION] = 1.0
    images[1] *= 0.8
    _, perfect, inverse, classes = images_and_maps()
    model = RegionReader(gain=0.5)
    morf_good = faithfulness.road(model, images, perfect, classes, order="morf")
    morf_bad = faithfulness.road(model, images, inverse, classes, order="morf")
    assert (morf_good.mean < morf_bad.mean).all()
    lerf_good = faithfulness.road(model, images, perfect, classes, order="lerf")
    lerf_bad = faithfulness.road(model, images, inverse, classes, order="lerf")
    assert (lerf_good.mean > lerf_bad.mean).all()
    assert morf_good.fractions.tolist() == pytest.approx([0.1 * k for k in range(1, 10)])


def test_metrics_are_deterministic_and_independent_of_the_batch_budget():
    images, perfect, _, classes = images_and_maps(batch=3)
    maps = perfect + 0.1 * torch.rand(3, H, W)
    model = RegionReader(gain=0.5)
    for metric in (faithfulness.deletion, faithfulness.insertion, faithfulness.road):
        big = metric(model, images, maps, classes, batch_size=64)
        small = metric(model, images, maps, classes, batch_size=4)
        torch.testing.assert_close(big.scores, small.scores)
    first = faithfulness.road(model, images, maps, classes, seed=1).scores
    again = faithfulness.road(model, images, maps, classes, seed=1).scores
    other = faithfulness.road(model, images, maps, classes, seed=2).scores
    assert torch.equal(first, again) and not torch.equal(first, other)
    tied = torch.ones(3, H, W)  # all ties: the random order is the seed's
    assert torch.equal(faithfulness.deletion(model, images, tied, classes, seed=4).scores,
                       faithfulness.deletion(model, images, tied, classes, seed=4).scores)


def test_model_mode_restored_and_maps_resized():
    images, perfect, _, classes = images_and_maps()
    model = RegionReader().train()
    faithfulness.deletion(model, images, perfect[:, None], classes, steps=4)
    assert model.training
    small = faithfulness.deletion(model, images, torch.zeros(2, 3, 3), classes, steps=4)
    assert small.scores.shape == (2, 5)


def test_bad_inputs_are_named():
    images, perfect, _, classes = images_and_maps()
    model = RegionReader()
    with pytest.raises(InputError, match=r"\(B, H, W\)"):
        faithfulness.deletion(model, images, perfect[:1], classes)
    with pytest.raises(InputError, match="classes"):
        faithfulness.deletion(model, images, perfect, torch.zeros(3, dtype=torch.long))
    with pytest.raises(InputError, match="convention"):
        faithfulness.average_drop(model, images, perfect, classes, convention="percent")
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        faithfulness.average_drop(model, images, 2 * perfect, classes)
    with pytest.raises(InputError, match="order"):
        faithfulness.road(model, images, perfect, classes, order="random")
    with pytest.raises(InputError, match="fractions"):
        faithfulness.road(model, images, perfect, classes, fractions=(0.5, 1.0))
    with pytest.raises(InputError, match="score"):
        faithfulness.deletion(model, images, perfect, classes, score="softmax")


def test_maps_and_classes_as_explain_returns_them():
    """(B, 1, H, W) maps with (B, 1) classes score as the sliced (B, H, W), (B,); K > 1 is named."""
    images, perfect, inverse, classes = images_and_maps()
    model = RegionReader()
    sliced = faithfulness.deletion(model, images, perfect, classes, steps=4, score="logit")
    whole = faithfulness.deletion(model, images, perfect[:, None], classes[:, None], steps=4, score="logit")
    assert torch.equal(sliced.scores, whole.scores)
    assert not torch.equal(whole.scores, faithfulness.deletion(model, images, inverse[:, None], classes[:, None],
                                                               steps=4, score="logit").scores)
    two = torch.stack([perfect, inverse], 1)
    with pytest.raises(InputError, match="K = 2 maps per image"):
        faithfulness.average_drop(model, images, two, classes[:, None].expand(-1, 2))


@pytest.mark.parametrize("metric", [faithfulness.deletion, faithfulness.insertion, faithfulness.average_drop,
                                    faithfulness.increase_in_confidence, faithfulness.road])
def test_case8_a_class_out_of_range_is_named(metric):
    images, perfect, _, _ = images_and_maps()
    with pytest.raises(InputError, match="class index 99 out of range: the model has 2 classes"):
        metric(RegionReader(), images, perfect, torch.tensor([0, 99]))
    with pytest.raises(InputError, match="class index -1 out of range"):
        metric(RegionReader(), images, perfect, torch.tensor([-1, 0]))
