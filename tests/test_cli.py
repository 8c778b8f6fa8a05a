"""The ``camkit`` command (camkit.cli) and ``camkit explain``: the real entry point in a subprocess
on small inputs, user errors in-process (one line on stderr, exit code 2)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import camkit
from camkit.cli import build_parser, main
from camkit.data import Shapes
from camkit.imagefiles import read_image
from camkit.localize import iou


def run_cli(*args, module="camkit", cwd=None):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, timeout=300)


def one_line_error(capsys, *args):
    """Run ``camkit ARGS`` in this process; its exit code and its stderr lines."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.fixture()
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for name in ("first", "second"):
        pixels = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
        path = tmp_path / f"{name}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.mark.slow
def test_explain_writes_overlays_and_json_matching_the_model(image_files, tmp_path):
    out = tmp_path / "out"
    result = run_cli("explain", *image_files, "--model", "torchvision:resnet18", "--size", "64", "--top-k", "2",
                     "--out", out)
    assert result.returncode == 0, result.stderr
    for name in ("first", "second"):  # an overlay per image and class, at the image's own 48 x 40 size
        assert Image.open(out / f"{name}.png").size == (48, 40)
        assert Image.open(out / f"{name}.top2.png").size == (48, 40)
    summary = json.loads((out / "explanations.json").read_text())
    assert summary["layers"] == ["layer4"] and len(summary["images"]) == 2
    assert summary["shorter_side"] == 64 and summary["mean"] == [0.485, 0.456, 0.406]
    # the same model (seed 0, random weights) and preprocessing in this process give the same logits:
    # the 40 x 48 images run at 64 x 77 (shorter side 64, aspect kept), standardised with ImageNet's
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    batch = [read_image(path) for path in image_files]
    resized = torch.nn.functional.interpolate(torch.stack(batch), size=(64, 77), mode="bilinear",
                                              antialias=True, align_corners=False).clamp(0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model((resized - mean) / std)
    top = logits.topk(2, dim=1)
    for i, record in enumerate(summary["images"]):
        assert record["size"] == [48, 40] and record["input_size"] == [77, 64]
        assert record["classes"] == top.indices[i].tolist()
        np.testing.assert_allclose(record["scores"], top.values[i].numpy(), rtol=1e-4, atol=1e-4)
        for x0, y0, x1, y1 in record["boxes"]:
            assert 0 <= x0 <= x1 <= 47 and 0 <= y0 <= y1 <= 39


def _save(pixels, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def shape_files(tmp_path_factory):
    """Twelve shapes validation images (one per class) as PNG files, with their labels."""
    folder = tmp_path_factory.mktemp("shapes")
    data = Shapes("val", size=64, length=12, seed=0)
    paths = [_save((data[i]["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
                   folder / f"img{i:02d}.png") for i in range(12)]
    return paths, [data[i]["label"] for i in range(12)]


def test_case1_an_input_is_never_overwritten_and_same_names_do_not_collide(shape_files, tmp_path, capsys):
    image = _save(np.asarray(Image.open(shape_files[0][0])), tmp_path / "a" / "shape.png")
    before = image.read_bytes()
    code, err = one_line_error(capsys, "explain", image, "--out", tmp_path / "a", "--quiet")
    assert code == 2 and len(err) == 1 and "would overwrite the input" in err[0]
    assert image.read_bytes() == before and not (tmp_path / "a" / "explanations.json").exists()
    other = _save(np.asarray(Image.open(shape_files[0][1])), tmp_path / "b" / "shape.png")
    assert main(["explain", str(image), str(other), "--out", str(tmp_path / "ab"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "ab" / "explanations.json").read_text())
    overlays = [record["overlays"][0] for record in summary["images"]]
    assert overlays == [str(tmp_path / "ab" / "a" / "shape.png"), str(tmp_path / "ab" / "b" / "shape.png")]
    assert not np.array_equal(np.asarray(Image.open(overlays[0])), np.asarray(Image.open(overlays[1])))
    # the input's folder is fine where no name collides
    jpeg = tmp_path / "c" / "photo.jpg"
    jpeg.parent.mkdir()
    Image.open(image).convert("RGB").save(jpeg)
    assert main(["explain", str(jpeg), "--out", str(jpeg.parent), "--quiet"]) == 0
    assert (jpeg.parent / "photo.png").exists() and jpeg.exists()


def test_case2_the_shipped_model_runs_at_its_training_size(shape_files, tmp_path):
    paths, labels = shape_files
    assert main(["explain", *map(str, paths), "--out", str(tmp_path), "--quiet"]) == 0
    summary = json.loads((tmp_path / "explanations.json").read_text())
    assert summary["shorter_side"] == 64 and summary["shorter_side_from"] == "the model's training size"
    assert [record["classes"][0] for record in summary["images"]] == labels


def test_case3_wide_and_tall_images_keep_their_geometry(tmp_path, capsys):
    wide = np.full((40, 300, 3), 128, np.uint8)
    wide[5:35, 200:230] = (255, 0, 0)
    _save(wide, tmp_path / "in" / "wide.png")
    _save(np.ascontiguousarray(wide.transpose(1, 0, 2)), tmp_path / "in" / "tall.png")
    _save(np.repeat(np.repeat(wide, 10, axis=0), 10, axis=1), tmp_path / "in" / "huge.png")   # 3000 x 400
    out = tmp_path / "out"
    assert main(["explain", str(tmp_path / "in"), "--out", str(out), "--max-side", "1000", "--quiet"]) == 0
    records = {Path(r["image"]).name: r for r in json.loads((out / "explanations.json").read_text())["images"]}
    for name, (width, height) in {"wide.png": (300, 40), "tall.png": (40, 300), "huge.png": (3000, 400)}.items():
        record = records[name]
        assert record["size"] == [width, height] and min(record["input_size"]) == 64
        x0, y0, x1, y1 = record["boxes"][0]
        assert 0 <= x0 <= x1 < width and 0 <= y0 <= y1 < height, (name, record["boxes"])
        assert Image.open(out / name).size == tuple(record["overlay_size"])
    assert records["wide.png"]["overlay_size"] == [300, 40] and not records["wide.png"]["capped"]
    assert records["huge.png"]["overlay_size"] == [1000, 133] and records["huge.png"]["capped"]
    # the red square (x 200..229, y 5..34 in the wide image) is what is boxed, in every geometry
    truth = {"wide.png": [200, 5, 229, 34], "tall.png": [5, 200, 34, 229], "huge.png": [2000, 50, 2299, 349]}
    for name, box in truth.items():
        assert iou(torch.tensor([records[name]["boxes"][0]]), torch.tensor([box]))[0, 0] >= 0.5, name
    assert "wide.png (300×40)" in capsys.readouterr().out


def test_case6_a_model_file_is_unpickled_only_when_trusted(shape_files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "PWNED"
    torch.save({"x": RunsCode(str(marker))}, tmp_path / "evil.pt")
    image = shape_files[0][0]
    code, err = one_line_error(capsys, "explain", image, "--model", tmp_path / "evil.pt", "--out", tmp_path / "o")
    assert code == 2 and len(err) == 1 and "--trust-model-file" in err[0] and not marker.exists()
    torch.manual_seed(0)
    torch.save(camkit.models.NiN(12, widths=(8,), kernel_sizes=(3,), downsample=0), tmp_path / "whole.pt")
    code, err = one_line_error(capsys, "explain", image, "--model", tmp_path / "whole.pt", "--out", tmp_path / "o")
    assert code == 2 and "unpickling runs any code" in err[0]
    assert main(["explain", str(image), "--model", str(tmp_path / "whole.pt"), "--trust-model-file",
                 "--size", "64", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    (tmp_path / "junk.pt").write_bytes(b"not an archive")
    code, err = one_line_error(capsys, "explain", image, "--model", tmp_path / "junk.pt", "--out", tmp_path / "o")
    assert code == 2 and len(err) == 1 and "could not read model file" in err[0]
    assert "WARNING: unpickling runs any code" in " ".join(run_help("explain").split())


def run_help(command):
    parser = build_parser()
    return parser._subparsers._group_actions[0].choices[command].format_help()


class RunsCode:
    """Unpickling this touches a file: what a crafted model file can do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.mark.parametrize("options, message", [
    (["--size", "-3"], "argument --size: must be at least 1, got -3"),
    (["--size", "0"], "argument --size: must be at least 1, got 0"),
    (["--top-k", "0"], "argument --top-k: must be at least 1"),
    (["--threshold", "nan"], "argument --threshold: must be a finite number in [0, 1)"),
    (["--device", "meta"], "--device meta holds no data"),
    (["--device", "cpu:x"], "bad --device"),
])
def test_case7_8_bad_numbers_and_devices_are_one_line_errors(shape_files, tmp_path, capsys, options, message):
    code, err = one_line_error(capsys, "explain", shape_files[0][0], *options, "--out", tmp_path / "o")
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o" / "explanations.json").exists()


def test_case7_an_unusable_out_is_refused_before_the_work(shape_files, tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    for out, message in ((tmp_path / "afile", "is a file, not a folder"),
                         (tmp_path / "afile" / "sub", "cannot create the folder"),
                         (Path("/proc/camkit-test"), "cannot create the folder")):
        code, err = one_line_error(capsys, "explain", shape_files[0][0], "--out", out)
        assert code == 2 and len(err) == 1 and message in err[0], err
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_command_that_fails_leaves_no_empty_out_folder(shape_files, tmp_path, capsys):
    (tmp_path / "kept").mkdir()
    for out in (tmp_path / "new" / "deeper", tmp_path / "kept" / "new"):
        code, err = one_line_error(capsys, "explain", tmp_path / "missing.png", "--out", out)
        assert code == 2 and "image not found" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_case7_a_read_only_out_is_refused(shape_files, tmp_path, capsys):
    (tmp_path / "ro").mkdir(mode=0o555)
    code, err = one_line_error(capsys, "explain", shape_files[0][0], "--out", tmp_path / "ro")
    assert code == 2 and "is not writable" in err[0]


def test_case7_8_bombs_and_16_bit_images(tmp_path, capsys):
    from test_imagefiles import header_only_png

    bomb = header_only_png(tmp_path / "bomb.png", 12_000, 12_000)
    code, err = one_line_error(capsys, "explain", bomb, "--out", tmp_path / "o")
    assert code == 2 and len(err) == 1 and "decompression bomb" in err[0]
    assert not (tmp_path / "o" / "explanations.json").exists()
    # a 16-bit grey of 30000 / 65535 is explained like the 8-bit grey 117 / 255, not like white
    Image.fromarray(np.full((64, 64), 30000, np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray(np.full((64, 64), 117, np.uint8)).save(tmp_path / "g8.png")
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(tmp_path / "white.png")
    assert main(["explain", *(str(tmp_path / n) for n in ("g16.png", "g8.png", "white.png")), "--top-k", "12",
                 "--out", str(tmp_path / "o"), "--quiet"]) == 0
    records = json.loads((tmp_path / "o" / "explanations.json").read_text())["images"]
    scores = [dict(zip(r["classes"], r["scores"], strict=True)) for r in records]
    gap_to_8_bit = max(abs(scores[0][c] - scores[1][c]) for c in range(12))
    gap_to_white = max(abs(scores[0][c] - scores[2][c]) for c in range(12))
    assert gap_to_8_bit < 0.005 < gap_to_white, (gap_to_8_bit, gap_to_white)


def test_missing_image_is_a_one_line_error(tmp_path, capsys):
    code, err = one_line_error(capsys, "explain", tmp_path / "nope.png", "--model", "torchvision:resnet18")
    assert code == 2 and len(err) == 1
    assert err[0].startswith("camkit explain: error: image not found")


def test_unknown_layer_is_a_one_line_error(image_files, tmp_path, capsys):
    code, err = one_line_error(capsys, "explain", image_files[0], "--model", "torchvision:resnet18", "--size", "32",
                               "--layer", "layer5", "--out", tmp_path / "o")
    assert code == 2 and len(err) == 1
    assert "unknown layer 'layer5'" in err[0] and "layer4" in err[0]


def test_unknown_model_and_method_are_one_line_errors(image_files, capsys):
    code, err = one_line_error(capsys, "explain", image_files[0], "--model", "resnet9000")
    assert code == 2 and len(err) == 1 and "unknown model" in err[0]
    code, err = one_line_error(capsys, "explain", image_files[0], "--model", "torchvision:resnet18", "--size", "32",
                               "--method", "gradcamm")
    assert code == 2 and len(err) == 1 and "did you mean gradcam" in err[0]


@pytest.mark.parametrize("command", ["demo", "explain", "bench", "train"])
def test_help_for_every_command(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "--seed" in result.stdout and f"usage: camkit {command}" in result.stdout


def test_python_m_camkit_bench_is_camkit_bench():
    result = run_cli("--help", module="camkit.bench")
    assert result.returncode == 0 and "usage: camkit bench" in result.stdout


def test_no_command_prints_the_commands_and_exits_2(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert all(name in out for name in ("demo", "explain", "bench", "train"))


def test_explain_passes_method_options_and_refuses_bad_ones_before_any_work(shape_files, tmp_path, capsys):
    image = shape_files[0][0]
    out = tmp_path / "o"
    assert main(["explain", str(image), "--method", "augmented-gradcam", "--option", "L=4", "--option", "iters=3",
                 "--option", "solver=primal-dual", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    summary = json.loads((out / "explanations.json").read_text())
    assert summary["options"] == {"L": 4, "iters": 3, "solver": "primal-dual"}
    # the overlay's map is the method's with those options, not its defaults
    model = camkit.models.pretrained("nin-shapes")
    image_tensor = read_image(image)[None]
    wanted = camkit.explain(model, image_tensor, method="augmented-gradcam", L=4, iters=3, solver="primal-dual")
    assert summary["images"][0]["boxes"] == wanted.boxes(threshold=0.2)[0].tolist()
    # an option named like one of the photo pipeline's own (augmented's solve grid `size`) reaches the method
    assert main(["explain", str(image), "--method", "augmented-gradcam", "--option", "L=4", "--option", "iters=3",
                 "--option", "size=[16, 16]", "--out", str(tmp_path / "grid"), "--quiet"]) == 0
    capsys.readouterr()
    summary = json.loads((tmp_path / "grid" / "explanations.json").read_text())
    assert summary["options"] == {"L": 4, "iters": 3, "size": [16, 16]} and summary["shorter_side"] == 64
    wanted = camkit.explain(model, image_tensor, method="augmented-gradcam", L=4, iters=3, size=(16, 16))
    assert wanted.raw.shape[-2:] == (16, 16)
    assert summary["images"][0]["boxes"] == wanted.boxes(threshold=0.2)[0].tolist()
    for options, message in ((["--option", "L"], "--option 'L': expected KEY=VALUE"),
                             (["--option", "foo=1"], "method 'gradcam': GradCAM() takes no arguments"),
                             (["--method", "augmented-gradcam", "--option", "L=0"], "L must be")):
        code, err = one_line_error(capsys, "explain", image, *options, "--out", tmp_path / "bad")
        assert code == 2 and len(err) == 1 and message in err[0], err
        assert not (tmp_path / "bad").exists()


def test_unknown_arguments_are_said_by_their_command(shape_files, capsys):
    code, err = one_line_error(capsys, "explain", shape_files[0][0], "--bogus", "1")
    assert code == 2 and err == ["camkit explain: error: unrecognized arguments: --bogus 1"]
    code, err = one_line_error(capsys, "--bogus")
    assert code == 2 and err == ["camkit: error: unrecognized arguments: --bogus"]


def test_model_help_lists_every_shipped_model():
    from camkit.models.zoo import SHIPPED

    for command in ("explain", "bench"):
        text = " ".join(run_cli(command, "--help").stdout.split())
        assert all(name in text for name in SHIPPED), text


def test_explain_stops_on_an_unreadable_file_or_skips_and_names_it(tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    rng = np.random.default_rng(5)
    for name in ("a.png", "sub/c.png"):
        Image.fromarray((rng.random((40, 52, 3)) * 255).astype(np.uint8)).save(photos / name)
    (photos / "b.png").write_bytes(b"not an image")
    Image.fromarray((rng.random((40, 52, 3)) * 255).astype(np.uint8)).save(photos / "cut.jpg", quality=90)
    data = (photos / "cut.jpg").read_bytes()
    (photos / "cut.jpg").write_bytes(data[:len(data) // 2])     # its header reads, its pixels do not
    before = {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()}

    code, err = one_line_error(capsys, "explain", photos, "--out", tmp_path / "stopped", "--quiet")
    assert code == 2 and len(err) == 1 and "b.png" in err[0] and "--skip-unreadable" in err[0], err
    assert not (tmp_path / "stopped").exists()                  # headers are read before any work

    code, err = one_line_error(capsys, "explain", photos / "a.png", photos / "cut.jpg", "--batch-size", "1",
                               "--out", tmp_path / "partly", "--quiet")
    assert code == 2 and len(err) == 1 and "cut.jpg" in err[0], err
    assert "1 explained before it left overlays" in err[0] and not (tmp_path / "partly" / "explanations.json").exists()

    out = tmp_path / "out"
    assert main(["explain", str(photos), "--skip-unreadable", "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "skipped 2 unreadable files" in captured.out
    assert [line.split(":")[0] for line in captured.err.strip().splitlines()] == ["skipped", "skipped"]
    summary = json.loads((out / "explanations.json").read_text())
    assert [Path(r["image"]).name for r in summary["images"]] == ["a.png", "c.png"]
    assert [Path(s["image"]).name for s in summary["skipped"]] == ["b.png", "cut.jpg"]    # input order
    assert "truncated" in summary["skipped"][1]["error"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "sub/c.png"]
    # the overlays of the readable images are those of a run without the broken files
    clean = tmp_path / "clean"
    assert main(["explain", str(photos / "a.png"), str(photos / "sub" / "c.png"), "--out", str(clean), "--quiet"]) == 0
    capsys.readouterr()
    assert [r["boxes"] for r in json.loads((clean / "explanations.json").read_text())["images"]] == \
        [r["boxes"] for r in summary["images"]]
    assert {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()} == before      # inputs untouched
