"""camkit.io: a file camkit writes is complete or absent; the old one survives a failed write."""
import json
import os
import stat

import numpy as np
import pytest
import torch

from camkit import io
from camkit.errors import InputError


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_writers_round_trip_and_leave_no_temporary_file(tmp_path):
    io.write_text(tmp_path / "a" / "note.txt", "héllo\n")
    io.write_bytes(tmp_path / "a" / "raw.bin", b"\x00\x01")
    io.write_json(tmp_path / "a" / "v.json", {"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(3)})
    io.save_torch(tmp_path / "a" / "state.pt", {"w": torch.arange(4)})
    assert (tmp_path / "a" / "note.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "a" / "raw.bin").read_bytes() == b"\x00\x01"
    assert json.loads((tmp_path / "a" / "v.json").read_text()) == {"n": 3, "x": 0.5, "a": [0, 1, 2]}
    assert torch.equal(torch.load(tmp_path / "a" / "state.pt", weights_only=True)["w"], torch.arange(4))
    assert _leftovers(tmp_path / "a") == []
    # the permissions of any file made in that folder (not a private temporary file's 0600)
    probe = tmp_path / "a" / "probe"
    probe.write_text("")
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "v.json").st_mode) == stat.S_IMODE(os.stat(probe).st_mode)


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "results.json"
    io.write_json(target, {"done": True})
    with pytest.raises(ValueError):
        io.write_json(target, {"bad": float("nan")})        # NaN is not JSON
    with pytest.raises(RuntimeError, match="half-way"), io.atomic_path(target) as temporary:
        temporary.write_text('{"do')
        raise RuntimeError("stopped half-way")
    assert json.loads(target.read_text()) == {"done": True}
    assert _leftovers(tmp_path) == []


def test_nan_is_written_only_when_asked():
    assert io.to_json({"p": float("nan")}, indent=None, allow_nan=True) == '{"p": NaN}'
    with pytest.raises(TypeError, match="not JSON serialisable"):
        io.to_json({"x": object()})


def test_output_folder_and_file_are_checked_before_any_work(tmp_path):
    assert io.output_folder(tmp_path / "new" / "deep") == tmp_path / "new" / "deep"
    assert (tmp_path / "new" / "deep").is_dir() and list((tmp_path / "new" / "deep").iterdir()) == []
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(InputError, match="--out .*afile is a file, not a folder"):
        io.output_folder(tmp_path / "afile")
    with pytest.raises(InputError, match="cannot create the folder"):
        io.output_folder(tmp_path / "afile" / "sub")
    with pytest.raises(InputError, match="cannot create the folder"):
        io.output_folder("/proc/camkit-test")
    with pytest.raises(InputError, match="--checkpoint .* is a folder, not a file"):
        io.output_file(tmp_path / "new", what="--checkpoint")
    assert io.output_file(tmp_path / "other" / "m.pt") == tmp_path / "other" / "m.pt"
    assert (tmp_path / "afile").read_text() == "mine"


def test_folders_made_for_a_failed_run_are_removed_unless_they_hold_something(tmp_path):
    with pytest.raises(InputError), io.removed_if_failed():
        io.output_folder(tmp_path / "a" / "b")
        io.output_file(tmp_path / "c" / "result.json")
        raise InputError("the run failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError), io.removed_if_failed():
        io.output_folder(tmp_path / "a" / "b")
        (tmp_path / "a" / "partial.json").write_text("{}")     # e.g. resumable work already written
        raise InputError("the run failed")
    assert (tmp_path / "a" / "partial.json").exists() and not (tmp_path / "a" / "b").exists()
    with io.removed_if_failed():
        io.output_folder(tmp_path / "ok")
    assert (tmp_path / "ok").is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_not_writable(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(InputError, match="is not writable"):
        io.output_folder(tmp_path / "ro")


def test_write_png_is_exact_and_atomic(tmp_path):
    from PIL import Image

    pixels = np.linspace(0, 1, 2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    io.write_png(tmp_path / "p.png", pixels)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "p.png")), np.rint(pixels * 255).astype(np.uint8))
    assert _leftovers(tmp_path) == []
