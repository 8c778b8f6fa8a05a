"""camkit train (camkit.cli.train): trains and saves a loadable model; bad options are one line."""
import json
import math

import pytest

from camkit.cli import main
from camkit.data import Shapes
from camkit.models import load


def test_command_line_trains_and_saves_a_loadable_model(tmp_path, capsys):
    out = tmp_path / "nin.pt"
    code = main(["train", "--out", str(out), "--epochs", "1", "--size", "24", "--train-length", "48",
                 "--val-length", "24", "--widths", "8,12", "--kernels", "3,3", "--downsample", "1",
                 "--quiet", "--threads", "1"])
    assert code == 0
    model = load(out)
    assert model.class_names == Shapes("val").classes and not model.training
    assert (tmp_path / "nin.ckpt").exists()
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert record["epoch"] == 1 and math.isfinite(record["train_loss"])
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0


def test_a_bad_training_option_is_a_one_line_error(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "nin.pt"), "--epochs", "0", "--train-length", "8",
                 "--val-length", "4", "--size", "16", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["camkit train: error: epochs must be >= 1, got 0"]
    assert not (tmp_path / "nin.pt").exists()
