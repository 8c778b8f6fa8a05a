"""camkit bench (camkit.cli.bench): a wsolevaluation folder with a corrupt image, one-line user
errors, method options."""
import json

import numpy as np
import pytest
import torch

import camkit
from camkit.cli import main
from camkit.cli.bench import parse_method_options
from camkit.data import Shapes


def test_cli_on_wsol_folder_with_a_corrupt_png(tmp_path, capsys):
    from camkit.data.wsol import export_wsol

    meta = export_wsol(Shapes("val", size=64, length=6), tmp_path / "wsol", "val")
    (tmp_path / "wsol" / "images" / "val" / "000002.png").write_bytes(b"not a png")
    model_file = tmp_path / "nin.pt"
    torch.manual_seed(0)
    camkit.models.save(camkit.models.NiN(len(camkit.data.shapes.class_names())), model_file)
    out = tmp_path / "out"
    code = main(["bench", "--model", str(model_file), "--data", str(meta), "--size", "64",
                 "--methods", "gradcam", "--out", str(out), "--batch-size", "3",
                 "--examples", "0", "--quiet", "--protocol", "wsolevaluation"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["totals"] == {"images": 6, "evaluated": 5, "errors": 1}
    assert results["errors"][0]["index"] == 2 and "000002.png" in results["errors"][0]["error"]
    assert results["config"]["protocol"] == "wsolevaluation"
    assert "| gradcam |" in capsys.readouterr().out


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    assert main(["bench", "--model", "nin", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert main(["bench", "--model", "nin", "--methods", "nope", "--out", str(tmp_path)]) == 2
    assert main(["bench", "--model", "nin", "--option", "cam:bias", "--out", str(tmp_path)]) == 2
    assert main(["bench", "--model", "nin", "--methods", "cam", "--option", "cam:color=1",
                 "--length", "2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("camkit bench: error:") for line in err)
    assert "missing" in err[0] and "nope" in err[1] and "METHOD:KEY=VALUE" in err[2]
    assert "color" in err[3]


def test_method_options_from_the_command_line():
    assert parse_method_options(["augmented-gradcam:L=32", "augmented-gradcam:solver=fista",
                                 "cam:bias=true"], ["cam", "augmented-gradcam"]) == \
        {"augmented-gradcam": {"L": 32, "solver": "fista"}, "cam": {"bias": True}}


def _wsol(tmp_path, length=6):
    from camkit.data.wsol import export_wsol

    meta = export_wsol(Shapes("val", size=64, length=length), tmp_path / "wsol", "val")
    model_file = tmp_path / "nin.pt"
    torch.manual_seed(0)
    camkit.models.save(camkit.models.NiN(len(camkit.data.shapes.class_names())), model_file)
    return meta, model_file


def test_case4_resume_recomputes_chunks_whose_labels_or_images_changed(tmp_path, capsys):
    meta, model_file = _wsol(tmp_path)
    command = ["bench", "--model", str(model_file), "--data", str(meta), "--size", "64", "--methods", "cam",
               "--batch-size", "2", "--chunk-size", "2", "--examples", "0", "--quiet"]
    assert main([*command, "--out", str(tmp_path / "run")]) == 0
    assert "reused 0 of 3 chunks; recomputed 3 (not computed before: 3)" in capsys.readouterr().out
    labels = (meta / "class_labels.txt").read_text().splitlines()
    labels[3] = labels[3].rsplit(",", 1)[0] + ",0"                  # image 3 (chunk 1) relabelled
    (meta / "class_labels.txt").write_text("\n".join(labels) + "\n")
    image = tmp_path / "wsol" / "images" / "val" / "000005.png"       # image 5 (chunk 2) edited
    image.write_bytes(image.read_bytes()[:-12] + image.read_bytes()[-12:])   # same bytes: unchanged
    assert main([*command, "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "reused 2 of 3 chunks; recomputed 1 (images, labels or boxes changed: 1)" in out
    from PIL import Image
    Image.fromarray(255 - np.asarray(Image.open(image))).save(image)
    assert main([*command, "--out", str(tmp_path / "run")]) == 0
    assert "reused 2 of 3 chunks; recomputed 1 (images, labels or boxes changed: 1)" in capsys.readouterr().out
    assert main([*command, "--out", str(tmp_path / "fresh")]) == 0
    resumed, fresh = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("run", "fresh"))
    assert resumed["methods"] == fresh["methods"] and resumed["classification"] == fresh["classification"]


def test_case4_a_ground_truth_line_for_no_image_names_the_file_and_line(tmp_path, capsys):
    meta, model_file = _wsol(tmp_path, length=3)
    lines = (meta / "localization.txt").read_text().splitlines()
    lines[1] = lines[1].replace("val/000001.png", "val/00001.png")      # a typo in the image id
    (meta / "localization.txt").write_text("\n".join(lines) + "\n")
    code = main(["bench", "--model", str(model_file), "--data", str(meta), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "localization.txt line 2: image id 'val/00001.png' is not in image_ids.txt" in err[0]


@pytest.mark.parametrize("command", ["bench", "demo"])
def test_case7_an_out_that_is_a_file_is_one_line_before_the_work(tmp_path, capsys, command):
    (tmp_path / "afile").write_text("mine")
    code = main([command, "--length", "4", "--methods", "cam", "--out", str(tmp_path / "afile"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"camkit {command}: error: --out {tmp_path / 'afile'} is a file, not a folder"]
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize("options, message", [
    (["--tau-step", "0"], "argument --tau-step: must be a finite number in (0, 1), got 0"),
    (["--tau-step", "nan"], "argument --tau-step: must be a finite number in (0, 1), got nan"),
    (["--threshold", "inf"], "argument --threshold"),
    (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (["--length", "-1"], "argument --length"),
    (["--timeout", "-5"], "argument --timeout"),
    (["--device", "meta"], "--device meta holds no data"),
])
def test_case7_bad_numbers_and_devices_are_one_line_errors(tmp_path, capsys, options, message):
    code = main(["bench", "--methods", "cam", "--length", "4", *options, "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o" / "state").exists()


def test_case8_examples_0_does_not_claim_or_leave_an_examples_figure(tmp_path, capsys):
    command = ["bench", "--methods", "cam", "--length", "8", "--batch-size", "4", "--out", str(tmp_path), "--quiet"]
    assert main([*command, "--examples", "2"]) == 0
    assert "examples.png" in capsys.readouterr().out and (tmp_path / "examples.png").exists()
    assert main([*command, "--examples", "0"]) == 0
    out = capsys.readouterr().out
    assert "examples.png" not in out and "box_acc.png" in out and not (tmp_path / "examples.png").exists()
