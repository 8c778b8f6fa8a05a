"""The ``camkit`` command (camkit.cli) and ``camkit explain``: the real entry point in a subprocess
on small inputs, user errors in-process (one line on stderr, exit code 2)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from camkit.cli import main


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
    assert (out / "first.png").stat().st_size > 0 and (out / "second.png").stat().st_size > 0
    summary = json.loads((out / "explanations.json").read_text())
    assert summary["layers"] == ["layer4"] and len(summary["images"]) == 2
    # the same model (seed 0, random weights) and preprocessing in this process give the same logits
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    batch = []
    for path in image_files:
        rgb = Image.open(path).convert("RGB").resize((64, 64), Image.BILINEAR)
        batch.append(torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255).permute(2, 0, 1))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model((torch.stack(batch) - mean) / std)
    top = logits.topk(2, dim=1)
    for i, record in enumerate(summary["images"]):
        assert record["classes"] == top.indices[i].tolist()
        np.testing.assert_allclose(record["scores"], top.values[i].numpy(), rtol=1e-4, atol=1e-4)
        for x0, y0, x1, y1 in record["boxes"]:
            assert 0 <= x0 <= x1 <= 63 and 0 <= y0 <= y1 <= 63


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
