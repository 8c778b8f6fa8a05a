"""camkit bench under torchrun: 2 CPU processes (gloo) give exactly the single-process results,
a failing process ends the run with a message from rank 0 (no hang), and a rerun resumes each
shard's finished chunks."""
import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest

pytest.importorskip("torch.distributed")

WORKER = textwrap.dedent('''
    import sys
    import torch
    from torch import nn
    from camkit import bench
    from camkit.data import Shapes

    out, length, poison_at, log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    TESTS = %r
    POISONED = [False]

    sys.path.insert(0, TESTS)
    from helpers import ColorNet as HueNet

    class ColorNet(HueNet):
        def forward(self, x):
            if POISONED[0]:
                raise RuntimeError("injected failure")
            return super().forward(x)

    class Logged(torch.utils.data.Dataset):
        fingerprint = "logged-shapes"

        def __init__(self):
            self.base = Shapes("val", size=64, length=length)

        def __len__(self):
            return len(self.base)

        def __getitem__(self, index):
            with open(log, "a") as handle:
                handle.write(f"{index}\\n")
            if index == poison_at:
                POISONED[0] = True
            return self.base[index]

    try:
        bench.run(ColorNet().eval(), Logged(), methods=("cam", "gradcam"), out_dir=out, batch_size=2,
                  chunk_size=2, examples=2, progress=False, timeout_s=60)
    except bench.BenchError as error:
        import os
        if os.environ.get("RANK", "0") == "0":
            print(f"RANK0-ERROR: {error}", flush=True)
        sys.exit(3)
''')


def _launch(tmp_path, processes, out, length, poison_at, log):
    script = tmp_path / "worker.py"
    script.write_text(WORKER % os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTEST_XDIST_WORKER", None)
    command = [sys.executable]
    if processes > 1:
        command += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    command += [str(script), str(out), str(length), str(poison_at), str(log)]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    return done, time.monotonic() - started


def _read(path):
    results = json.loads((path / "results.json").read_text())
    results.pop("run")
    return results, (path / "records.jsonl").read_text()


def _indices(log):
    return sorted(int(line) for line in log.read_text().split()) if log.exists() else []


@pytest.mark.slow
def test_two_processes_equal_one_fail_cleanly_and_resume_per_shard(tmp_path):
    length = 11  # odd: the shards (chunks 0,2,4 and 1,3,5 of 2 images) differ in size
    single, _ = _launch(tmp_path, 1, tmp_path / "single", length, -1, tmp_path / "single.log")
    assert single.returncode == 0, single.stderr[-3000:]

    # rank 1 fails in its second chunk (images 6-7): rank 0 reports it, nobody hangs
    failed, seconds = _launch(tmp_path, 2, tmp_path / "multi", length, 6, tmp_path / "failed.log")
    assert failed.returncode != 0
    assert "RANK0-ERROR: distributed benchmark failed: rank 1: RuntimeError: injected failure" \
        in failed.stdout, failed.stdout[-2000:] + failed.stderr[-3000:]
    assert seconds < 120
    assert not (tmp_path / "multi" / "results.json").exists()
    saved = sorted(p.name for p in (tmp_path / "multi" / "state").iterdir())
    assert "chunk-000001.json" in saved and "chunk-000003.json" not in saved
    finished = {i for name in saved for c in [int(name[6:12])] for i in (2 * c, 2 * c + 1) if i < length}

    # rerun: finished chunks are not recomputed, and the numbers equal the single process's
    rerun, _ = _launch(tmp_path, 2, tmp_path / "multi", length, -1, tmp_path / "rerun.log")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # each image is read once: a finished chunk's to compare its content (it is not evaluated
    # again, or it would be read twice), the others' to evaluate them; and images 0 and 1 once more
    # by rank 0 to draw examples.png
    assert finished and Counter(_indices(tmp_path / "rerun.log")) == Counter(
        {i: 1 + (i in (0, 1)) for i in range(length)})
    multi_results, multi_records = _read(tmp_path / "multi")
    single_results, single_records = _read(tmp_path / "single")
    assert multi_results == single_results
    assert multi_records == single_records
    assert multi_results["totals"]["evaluated"] == length
    assert 0 < multi_results["methods"]["cam"]["top1_loc"] < multi_results["methods"]["cam"]["top5_loc"]
