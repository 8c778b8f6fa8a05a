"""MaxBoxAccV2 ``update`` time of this working tree against another git revision, side by side.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/localize_ab.py 2710d4c --images 96 --runs 9

The load of a shared machine moves the cv2 reference of ``localize_speed.py`` more than camkit's
sweep, so ratios taken at different times are not comparable; two versions of camkit timed at
the same moments are.  Each side runs in a worker process of its own (the revision checked out
by ``git worktree`` into a temporary folder and imported from there); the coordinator asks the
two workers in turn, in alternating order, to score the same chunk of 8 maps
(``BoxAccuracy(protocol="wsolevaluation")`` with every component, 1000 thresholds, on
``localize_speed.py``'s smooth 224² maps), each after reading 64 MB so that the maps come cold
from memory, as between the reference's chunks.  Reported: per-map time of each side (min and
median over ``--runs``), the median of the per-run ratios and of the per-chunk ratios (the two
sides' times of one chunk, taken back to back: the figure least moved by load bursts), and
whether the counts agree.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

import numpy as np
from localize_speed import smooth_maps

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHUNK = 8

WORKER = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from camkit.localize import BoxAccuracy
data = np.load(sys.argv[2])
maps, boxes = data["maps"], [b[None] for b in data["boxes"]]
metric = BoxAccuracy(np.arange(0, 1, 0.001), (0.3, 0.5, 0.7), all_components=True, protocol="wsolevaluation")
BoxAccuracy(np.arange(0, 1, 0.001), protocol="wsolevaluation").update(maps[:1], boxes[:1])  # compile
evict = np.ones(8 << 20)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    command = json.loads(line)
    if command["op"] == "chunk":
        start = command["start"]
        evict.sum()
        began = time.perf_counter()
        metric.update(maps[start:start + command["size"]], boxes[start:start + command["size"]])
        print(json.dumps({"seconds": time.perf_counter() - began}), flush=True)
    else:
        print(json.dumps({"counts": metric.correct_all.tolist() + metric.correct_largest.tolist()}), flush=True)
        break
"""


class Worker:
    """One side: a process importing camkit from ``tree``, scoring chunks on request."""

    def __init__(self, tree: pathlib.Path, data: pathlib.Path):
        self.process = subprocess.Popen([sys.executable, "-c", WORKER, str(tree), str(data)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        self.ask(None)

    def ask(self, command: dict | None) -> dict:
        if command is not None:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("a worker stopped (see its error above)")
        return json.loads(line)

    def close(self) -> list:
        counts = self.ask({"op": "counts"})["counts"]
        self.process.wait()
        return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revision", help="the git revision to compare this working tree with")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    found = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{args.revision}^{{commit}}"],
                           capture_output=True)
    if found.returncode != 0:
        parser.exit(2, f"localize_ab: {args.revision!r} is not a commit of {ROOT}\n")
    maps, boxes = smooth_maps(args.images)
    with tempfile.TemporaryDirectory() as scratch:
        other = pathlib.Path(scratch) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(other), args.revision],
                       check=True)
        try:
            data = pathlib.Path(scratch) / "maps.npz"
            np.savez(data, maps=maps, boxes=np.concatenate(boxes))
            sides = {"this tree": Worker(ROOT, data), args.revision: Worker(other, data)}
            per_run: dict[str, list[float]] = {name: [] for name in sides}
            chunk_ratios = []
            for run in range(args.runs):
                seconds = dict.fromkeys(sides, 0.0)
                for index, start in enumerate(range(0, args.images, CHUNK)):
                    order = list(sides) if (run + index) % 2 == 0 else list(sides)[::-1]
                    chunk = {name: sides[name].ask({"op": "chunk", "start": start, "size": CHUNK})["seconds"]
                             for name in order}
                    chunk_ratios.append(chunk[args.revision] / chunk["this tree"])
                    for name in sides:
                        seconds[name] += chunk[name]
                for name in sides:
                    per_run[name].append(1e6 * seconds[name] / args.images)
            counts = [worker.close() for worker in sides.values()]
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], check=False)
    for name, times in per_run.items():
        print(f"{name:12s} µs per map: min {min(times):.1f}, median {statistics.median(times):.1f}")
    ratios = [b / a for a, b in zip(per_run["this tree"], per_run[args.revision], strict=True)]
    print(f"{args.revision} ÷ this tree, median of {args.runs} runs: {statistics.median(ratios):.3f} "
          f"(runs {min(ratios):.3f}–{max(ratios):.3f}); median of {len(chunk_ratios)} chunk pairs: "
          f"{statistics.median(chunk_ratios):.3f}; counts equal: {counts[0] == counts[1]}")


if __name__ == "__main__":
    main()
