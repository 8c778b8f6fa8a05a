"""camkit bench (camkit.cli.bench): a wsolevaluation folder with a corrupt image, one-line user
errors, method options."""
import json

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
