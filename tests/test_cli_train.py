"""camkit train (camkit.cli.train): trains and saves a loadable model; bad options are one line."""
import json
import math

import pytest
import torch

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
    assert load(out).meta["run"]["epochs"] == 1
    assert record["epoch"] == 1 and math.isfinite(record["train_loss"])
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0


TINY = ["--size", "16", "--train-length", "24", "--val-length", "12", "--widths", "4,6", "--kernels", "3,3",
        "--downsample", "1", "--quiet", "--threads", "1"]


def one_line(capsys, *args):
    code = main(["train", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines(), captured.out


@pytest.mark.parametrize("options, message", [
    (["--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
    (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (["--lr", "nan"], "argument --lr: must be a finite number"),
    (["--lr", "0"], "argument --lr: must be a finite number in (0, inf]"),
    (["--widths", "8,x"], "argument --widths: '8,x' is not a comma-separated list of integers"),
    (["--dropout", "1"], "argument --dropout"),
])
def test_case7_a_bad_training_option_is_a_one_line_error(tmp_path, capsys, options, message):
    code, err, _ = one_line(capsys, "--out", tmp_path / "nin.pt", *TINY, *options)
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "nin.pt").exists()


def test_case7_unreadable_checkpoints_and_unwritable_outputs_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "junk.ckpt").write_text("junk")
    code, err, _ = one_line(capsys, "--out", tmp_path / "a.pt", "--checkpoint", tmp_path / "junk.ckpt", *TINY)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"camkit train: error: cannot read checkpoint {tmp_path}")
    assert main(["train", "--out", str(tmp_path / "b.pt"), *TINY, "--epochs", "1"]) == 0
    capsys.readouterr()
    whole = (tmp_path / "b.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(whole[: len(whole) // 2])
    code, err, _ = one_line(capsys, "--out", tmp_path / "c.pt", "--checkpoint", tmp_path / "cut.ckpt", *TINY)
    assert code == 2 and len(err) == 1 and "cannot read checkpoint" in err[0] and "cut.ckpt" in err[0]
    (tmp_path / "afile").write_text("mine")
    for out, message in ((tmp_path / "afile" / "m.pt", "afile is a file, not a folder"),
                         ("/proc/camkit-test/m.pt", "cannot create the folder"),
                         (tmp_path, "is a folder, not a file")):
        code, err, _ = one_line(capsys, "--out", out, *TINY)
        assert code == 2 and len(err) == 1 and message in err[0], err
    code, err, _ = one_line(capsys, "--out", tmp_path / "d.ckpt", *TINY)
    assert code == 2 and "--checkpoint and --out are the same file" in err[0]


def test_case5_train_says_what_it_does_with_an_existing_run(tmp_path, capsys):
    out, checkpoint = tmp_path / "nin.pt", tmp_path / "nin.ckpt"
    assert main(["train", "--out", str(out), *TINY, "--epochs", "1"]) == 0
    capsys.readouterr()
    saved = out.read_bytes()
    # the same finished run: nothing trained, nothing saved again
    code, err, printed = one_line(capsys, "--out", out, *TINY, "--epochs", "1")
    assert code == 0 and "has finished all 1 epochs: nothing to train" in err[0]
    assert "not saved again" in printed and out.read_bytes() == saved
    # other settings are refused and named; the files are left as they were
    code, err, _ = one_line(capsys, "--out", out, *TINY, "--epochs", "1", "--lr", "0.1")
    assert code == 2 and len(err) == 1 and "other settings (lr: 0.003 → 0.1)" in err[0]
    code, err, _ = one_line(capsys, "--out", out, *TINY, "--epochs", "1", "--optimizer", "sgd")
    assert code == 2 and "optimizer: 'adamw' → 'sgd'" in err[0]
    code, err, _ = one_line(capsys, "--out", out, *TINY, "--widths", "4,8", "--epochs", "1")
    assert code == 2 and "model.config.widths: [4, 6] → [4, 8]" in err[0]
    # more epochs need --resume, which prints the epoch it resumes from
    code, err, _ = one_line(capsys, "--out", out, *TINY, "--epochs", "2")
    assert code == 2 and "pass --resume" in err[0]
    code, err, printed = one_line(capsys, "--out", out, *TINY, "--epochs", "2", "--resume")
    assert code == 0 and err == [f"camkit train: resuming {checkpoint} from epoch 2 of 2"]
    assert [json.loads(line)["epoch"] for line in printed.splitlines()[:-1]] == [2]
    assert out.read_bytes() != saved and load(out).meta["run"]["epochs"] == 2
    # fewer epochs than trained is refused clearly, even with --resume
    code, err, _ = one_line(capsys, "--out", out, *TINY, "--epochs", "1", "--resume")
    assert code == 2 and "has already trained 2 epochs; 1 is fewer" in err[0]
    # a model file without its checkpoint is not replaced unless asked
    checkpoint.unlink()
    code, err, _ = one_line(capsys, "--out", out, *TINY, "--epochs", "3")
    assert code == 2 and "holds a run with other settings (epochs: 2 → 3)" in err[0] and "--overwrite" in err[0]
    code, _, printed = one_line(capsys, "--out", out, *TINY, "--epochs", "2")
    assert code == 0 and "already holds this run (2 epochs): nothing to do" in printed
    code, err, _ = one_line(capsys, "--out", out, *TINY, "--epochs", "1", "--lr", "0.1", "--overwrite")
    assert code == 0 and err == [f"camkit train: overwriting {out} when this run ends"]
    assert load(out).meta["run"]["settings"]["lr"] == 0.1


def test_arch_coarse_trains_a_coarsenet_with_its_own_defaults_and_names_a_changed_stem(tmp_path, capsys):
    out = tmp_path / "coarse.pt"
    tiny = ["--arch", "coarse", "--size", "32", "--patch", "4", "--stem-width", "4",
            "--widths", "4,6", "--kernels", "3,1", "--train-length", "24",
            "--val-length", "12", "--quiet", "--threads", "1", "--epochs", "1"]
    assert main(["train", "--out", str(out), *tiny]) == 0
    capsys.readouterr()
    model = load(out)
    assert type(model).__name__ == "CoarseNet" and model.meta["image_size"] == 32
    # the coarse default dropout (0), not NiN's (0.1)
    assert model.config["patch"] == 4 and model.config["dropout"] == 0.0
    assert model.meta["options"]["arch"] == "coarse" and model.meta["options"]["widths"] == [4, 6]
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 12)
    code, err, _ = one_line(capsys, "--out", out, *tiny[:7], "8", *tiny[8:])
    assert code == 2 and len(err) == 1 and "model.config.stem_width: 4 → 8" in err[0], err
