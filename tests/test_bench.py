"""camkit bench: results equal an independent camkit.localize computation, determinism, resume,
unreadable images, command-line errors."""
import json

import pytest
import torch

import camkit
from camkit import bench
from camkit.data import Shapes
from helpers import ColorNet


@pytest.fixture(scope="module")
def shapes():
    return Shapes("val", size=64, length=12)


def _without_run(results):
    return {k: v for k, v in results.items() if k != "run"}


def _independent(model, dataset, methods, batch_size, threshold=0.2):
    """Metrics recomputed batch by batch with camkit.explain and camkit.localize."""
    out = {}
    for method in methods:
        loc = camkit.localize.LocalizationAccuracy()
        box = camkit.localize.BoxAccuracy()
        pxap = camkit.localize.PxAP()
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            images = torch.stack([i["image"] for i in items])
            labels = torch.tensor([i["label"] for i in items])
            gt = [i["boxes"] for i in items]
            top = camkit.explain(model, images, method=method, top_k=5)
            known = camkit.explain(model, images, method=method, targets=labels).maps[:, 0]
            loc.update(top.boxes(threshold), top.classes, labels, gt,
                       camkit.localize.boxes(known, threshold))
            box.update(known, gt)
            pxap.update(known, torch.stack([i["mask"] for i in items]))
        out[method] = {**loc.result(), **box.result(), "pxap": pxap.result()["pxap"]}
    return out


def test_results_equal_an_independent_localize_computation(shapes, tmp_path):
    model = ColorNet().eval()
    results = bench.run(model, shapes, methods=("cam", "gradcam"), out_dir=tmp_path / "a",
                        batch_size=4, chunk_size=4, examples=3, progress=False)
    expected = _independent(model, shapes, ("cam", "gradcam"), batch_size=4)
    written = json.loads((tmp_path / "a" / "results.json").read_text())
    assert _without_run(written) == json.loads(json.dumps(_without_run(results)))
    for method in ("cam", "gradcam"):
        for key in ("top1_loc", "top5_loc", "gt_known_loc", "max_box_acc", "max_box_acc_v2", "pxap"):
            assert written["methods"][method][key] == pytest.approx(expected[method][key], abs=1e-9), (method, key)
    # numbers that could have come out otherwise: neither all-wrong nor all-right
    assert 0 < written["methods"]["cam"]["top1_loc"] < written["methods"]["cam"]["top5_loc"] <= 100
    assert 0 < written["methods"]["gradcam"]["pxap"] < 100
    assert written["totals"] == {"images": 12, "evaluated": 12, "errors": 0}
    assert written["methods"]["cam"]["counts"]["images"] == 12 and written["errors"] == []
    # classes of the first method per image, from the model itself
    with torch.no_grad():
        logits = model(torch.stack([shapes[i]["image"] for i in range(12)]))
    records = [json.loads(line) for line in (tmp_path / "a" / "records.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(12))
    assert [r["classes"] for r in records] == logits.topk(5, dim=1).indices.tolist()
    top1 = (logits.argmax(1) == torch.tensor([shapes[i]["label"] for i in range(12)])).float().mean()
    assert written["classification"]["top1_acc"] == pytest.approx(100 * top1.item())
    for name in ("results.md", "box_acc.png", "examples.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    assert "| cam |" in (tmp_path / "a" / "results.md").read_text()

    # same seed, fresh folder, other batching of chunks: the same numbers
    again = bench.run(model, shapes, methods=("cam", "gradcam"), out_dir=tmp_path / "b",
                      batch_size=4, chunk_size=8, examples=0, progress=False)
    assert again["methods"] == results["methods"]


def test_wsolevaluation_protocol_and_true_class_maps_outside_the_top_k(shapes, tmp_path):
    """top_k=2 leaves most true classes out of the explained ones: their maps come from a second
    explanation; box metrics use the reference protocol (maps at 224², boxes rescaled)."""
    from camkit.data.wsol import resize_box

    model = ColorNet().eval()
    results = bench.run(model, shapes, methods=("gradcam",), out_dir=tmp_path, batch_size=6,
                        top_k=2, protocol="wsolevaluation", examples=0, progress=False)
    items = [shapes[i] for i in range(12)]
    images, labels = torch.stack([i["image"] for i in items]), torch.tensor([i["label"] for i in items])
    top = camkit.explain(model, images, method="gradcam", top_k=2)
    assert (top.classes == labels[:, None]).any(1).float().mean() < 0.75   # the second path is used
    known = camkit.explain(model, images, method="gradcam", targets=labels).maps[:, 0]
    box = camkit.localize.BoxAccuracy(protocol="wsolevaluation")
    box.update(known, [torch.tensor([resize_box(b, (64, 64), (224, 224)) for b in i["boxes"].tolist()])
                       for i in items])
    loc = camkit.localize.LocalizationAccuracy(top_k=2)
    loc.update(top.boxes(0.2), top.classes, labels, [i["boxes"] for i in items],
               camkit.localize.boxes(known, 0.2))
    expected = {**box.result(), **loc.result()}
    for key in ("max_box_acc", "max_box_acc_v2", "top1_loc", "top5_loc", "gt_known_loc"):
        assert results["methods"]["gradcam"][key] == pytest.approx(expected[key], abs=1e-9), key
    assert 0 < results["methods"]["gradcam"]["gt_known_loc"] and results["config"]["top_k"] == 2


class Interruptible(torch.utils.data.Dataset):
    """Shapes that records which indices were read and can be told to stop (Ctrl-C) at one."""

    fingerprint = "interruptible-shapes-12"

    def __init__(self, base, stop_at=None):
        self.base, self.stop_at, self.read = base, stop_at, []

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        if index == self.stop_at:
            raise KeyboardInterrupt
        self.read.append(index)
        return self.base[index]


def test_an_interrupted_run_resumes_without_recomputing_finished_chunks(shapes, tmp_path):
    model = ColorNet().eval()
    options = dict(methods=("gradcam",), batch_size=2, chunk_size=4, examples=0, progress=False)
    reference = bench.run(model, Interruptible(shapes), out_dir=tmp_path / "full", **options)

    first = Interruptible(shapes, stop_at=6)
    with pytest.raises(KeyboardInterrupt):
        bench.run(model, first, out_dir=tmp_path / "resumed", **options)
    state = sorted(p.name for p in (tmp_path / "resumed" / "state").iterdir())
    assert state == ["chunk-000000.json"]          # chunk 1 (images 4-7) was cut short
    assert not (tmp_path / "resumed" / "results.json").exists()

    second = Interruptible(shapes)
    resumed = bench.run(model, second, out_dir=tmp_path / "resumed", **options)
    # chunk 0 is read once, to compare its content; chunks 1 and 2 once, to evaluate them
    assert sorted(second.read) == list(range(12))
    assert resumed["run"]["chunks_resumed_rank0"] == 1
    assert resumed["run"]["chunks_recomputed_rank0"] == {"not computed before": 2}
    assert bench.resume_summary(resumed) == "reused 1 of 3 chunks; recomputed 2 (not computed before: 2)"
    assert _without_run(resumed) == _without_run(reference)

    # --no-resume recomputes everything
    third = Interruptible(shapes)
    again = bench.run(model, third, out_dir=tmp_path / "resumed", resume=False, **options)
    assert sorted(third.read) == list(range(12)) and again["run"]["chunks_recomputed_rank0"] == {"resume off": 3}


class Edited(torch.utils.data.Dataset):
    """Shapes items with some labels, boxes or pixels changed; its repr is an address (a custom
    data set that does not describe its content)."""

    def __init__(self, base, labels=None, shift_boxes=(), darken=()):
        self.base, self.labels, self.shift_boxes, self.darken = base, labels or {}, set(shift_boxes), set(darken)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        item = dict(self.base[index])
        item["label"] = self.labels.get(index, item["label"])
        if index in self.shift_boxes:
            item["boxes"] = item["boxes"] + torch.tensor([1, 0, 1, 0])
        if index in self.darken:
            item["image"] = item["image"] * 0.9
        return item


def test_case4_a_chunk_is_reused_only_when_its_own_content_is_the_same(shapes, tmp_path):
    model = ColorNet().eval()
    options = dict(methods=("cam",), batch_size=4, chunk_size=4, examples=0, progress=False)
    first = bench.run(model, Edited(shapes), out_dir=tmp_path / "run", **options)
    assert first["run"]["chunks_recomputed_rank0"] == {"not computed before": 3}
    assert " at 0x" in repr(Edited(shapes))
    same = bench.run(model, Edited(shapes), out_dir=tmp_path / "run", **options)
    assert same["run"]["chunks_resumed_rank0"] == 3 and _without_run(same) == _without_run(first)
    changed = "images, labels or boxes changed"
    for edit, chunks in ((dict(labels={5: 0}), 1), (dict(shift_boxes=[1, 9]), 2), (dict(darken=[11]), 1)):
        dataset = Edited(shapes, **edit)
        resumed = bench.run(model, dataset, out_dir=tmp_path / "run", **options)
        assert resumed["run"]["chunks_recomputed_rank0"] == {changed: chunks}, edit
        fresh = bench.run(model, dataset, out_dir=tmp_path / f"fresh-{chunks}-{sorted(edit)}", **options)
        assert _without_run(resumed) == _without_run(fresh), edit
        bench.run(model, Edited(shapes), out_dir=tmp_path / "run", **options)   # back to the original
    # Shapes of another scale has the same repr but other images: nothing is reused
    other = Shapes("val", size=64, length=12, scale=(0.2, 0.3))
    assert repr(other) == repr(shapes)
    resumed = bench.run(model, other, out_dir=tmp_path / "run", **options)
    assert resumed["run"]["chunks_recomputed_rank0"] == {changed: 3}
    assert resumed["methods"] != first["methods"]
    # another setting is named
    resumed = bench.run(model, other, out_dir=tmp_path / "run", threshold=0.3, **options)
    assert resumed["run"]["chunks_recomputed_rank0"] == {"settings changed (threshold)": 3}


def test_chunks_of_another_camkit_version_are_recomputed(shapes, tmp_path, monkeypatch):
    # a release may change a method's defaults while every setting stays the same
    model, options = ColorNet().eval(), dict(methods=("cam",), batch_size=4, chunk_size=4, examples=0, progress=False)
    bench.run(model, shapes, out_dir=tmp_path / "run", **options)
    monkeypatch.setattr(camkit, "__version__", "99.0")
    resumed = bench.run(model, shapes, out_dir=tmp_path / "run", **options)
    assert resumed["run"]["chunks_recomputed_rank0"] == {"settings changed (camkit)": 3}


@pytest.mark.parametrize("option, value", [("tau_step", 0.0), ("tau_step", float("nan")), ("tau_step", 1.0),
                                           ("iou_threshold", 0.0), ("threshold", float("nan"))])
def test_case7_non_finite_or_out_of_range_numbers_are_input_errors(shapes, tmp_path, option, value):
    with pytest.raises(camkit.errors.InputError, match=option):
        bench.run(ColorNet().eval(), shapes, methods=("cam",), out_dir=tmp_path, progress=False, **{option: value})
    assert not (tmp_path / "state").exists()


def test_case7_an_out_that_is_a_file_is_refused_before_the_work(shapes, tmp_path):
    (tmp_path / "taken").write_text("mine")
    with pytest.raises(camkit.errors.InputError, match="is a file, not a folder"):
        bench.run(ColorNet().eval(), shapes, methods=("cam",), out_dir=tmp_path / "taken", progress=False)
    assert (tmp_path / "taken").read_text() == "mine"


def test_case8_examples_0_leaves_no_stale_figure(shapes, tmp_path):
    options = dict(methods=("cam",), batch_size=4, progress=False, out_dir=tmp_path)
    assert "examples.png" in bench.run(ColorNet().eval(), shapes, examples=2, **options)["run"]["files"]
    assert (tmp_path / "examples.png").exists()
    results = bench.run(ColorNet().eval(), shapes, examples=0, **options)
    assert "examples.png" not in results["run"]["files"] and not (tmp_path / "examples.png").exists()


class Flaky(torch.utils.data.Dataset):
    fingerprint = "flaky"

    def __init__(self, base, bad):
        self.base, self.bad = base, bad

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        if index == self.bad:
            raise OSError(f"cannot read image {index}")
        return self.base[index]


def test_an_unreadable_item_is_counted_not_fatal_also_in_workers(shapes, tmp_path):
    model = ColorNet().eval()
    results = bench.run(model, Flaky(shapes, bad=5), methods=("cam",), out_dir=tmp_path,
                        batch_size=4, workers=2, examples=0, progress=False)
    assert results["totals"] == {"images": 12, "evaluated": 11, "errors": 1}
    assert results["errors"] == [{"index": 5, "error": "OSError: cannot read image 5"}]
    kept = torch.utils.data.Subset(shapes, [i for i in range(12) if i != 5])
    # the 11 readable images, in the same batches as the run (the bad one leaves a batch of 3)
    loc = camkit.localize.LocalizationAccuracy()
    for indices in ([0, 1, 2, 3], [4, 6, 7], [8, 9, 10, 11]):
        items = [shapes[i] for i in indices]
        e = camkit.explain(model, torch.stack([i["image"] for i in items]), method="cam", top_k=5)
        loc.update(e.boxes(0.2), e.classes, torch.tensor([i["label"] for i in items]),
                   [i["boxes"] for i in items])
    assert results["methods"]["cam"]["top5_loc"] == pytest.approx(loc.result()["top5_loc"])
    assert len(kept) == results["methods"]["cam"]["counts"]["images"]


def test_the_table_titles_the_top_k_column_with_the_run_s_k_and_drops_it_for_top_1():
    scores = {"top1_loc": 40.0, "top5_loc": 60.0, "gt_known_loc": 70.0, "max_box_acc": 80.0,
              "max_box_acc_v2": 75.0}
    header = {k: bench.markdown_table({"methods": {"cam": scores}, "config": {"top_k": k}}).splitlines()[0]
              for k in (1, 3, 5)}
    assert "Top-3 Loc" in header[3] and "Top-5" not in header[3]
    assert "Top-5 Loc" in header[5]
    assert "Top-1 Loc" in header[1] and "Top-5" not in header[1] and header[1].count("|") == 6
    row = bench.markdown_table({"methods": {"cam": scores}, "config": {"top_k": 1}}).splitlines()[2]
    assert row == "| cam | 40.00 | 70.00 | 80.00 | 75.00 |"
