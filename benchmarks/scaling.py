"""How ``camkit bench`` scales with processes (torchrun): the shapes benchmark with Grad-CAM.

Runs, interleaved round by round so that background load hits every configuration alike:

* 1 process with T threads for every T in ``--threads`` (default 1 and 2),
* ``torchrun --nproc_per_node P`` with 1 thread per process for every P > 1 in ``--processes``,

each ``--repeats`` times with ``--no-resume`` into a fresh folder, and reports the median wall
time of the whole command, the CPU seconds of all its processes, and the evaluation alone
(``results.json["run"]["seconds"]`` of rank 0: from the start of ``run`` to the gathered results,
so it includes waiting for the slowest rank), the speed-ups, and whether every configuration produced the same
``results.json`` numbers.

    .venv/bin/python benchmarks/scaling.py                       # this 2-core machine (~4 min)
    .venv/bin/python benchmarks/scaling.py --processes 1,2,4,8 --threads 1,8 --length 8000
    .venv/bin/python benchmarks/scaling.py --device cuda --processes 1 --threads 1   # NCCL path

The model is the shipped ``nin-shapes`` when its weights are present, else a seeded random
NiN (12 classes) saved to a temporary file: the work per image is the same.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _model_spec(folder: Path) -> str:
    import torch

    import camkit

    weights = Path(camkit.__file__).parent / "models" / "weights" / "nin-shapes.pt"
    if weights.exists():
        return "nin-shapes"
    torch.manual_seed(0)
    path = folder / "nin-random.pt"
    camkit.models.save(camkit.models.NiN(12), path)
    return str(path)


def _command(processes: int, bench_args: list[str]) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "camkit.bench", *bench_args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(processes), "-m", "camkit.bench", *bench_args]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", default="1,2", help="process counts (default: %(default)s)")
    parser.add_argument("--threads", default="1,2",
                        help="thread counts of the 1-process baselines (default: %(default)s)")
    parser.add_argument("--length", type=int, default=4000, help="shapes images (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunk-size", type=int, default=64, help="images per chunk (default: %(default)s)")
    parser.add_argument("--method", default="gradcam")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    processes = [int(p) for p in args.processes.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    configs = [(1, t) for t in threads] + [(p, 1) for p in processes if p > 1]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = _model_spec(tmp)
        times: dict[tuple[int, int], list[tuple[float, float, float]]] = {c: [] for c in configs}
        numbers = {}
        for repeat in range(args.repeats):
            for config in configs:
                procs, nthreads = config
                out = tmp / f"out-{procs}x{nthreads}-{repeat}"
                bench_args = ["--model", model, "--data", "shapes", "--length", str(args.length),
                              "--methods", args.method, "--batch-size", str(args.batch_size),
                              "--chunk-size", str(args.chunk_size), "--examples", "0",
                              "--device", args.device, "--out", str(out), "--no-resume", "--quiet"]
                env = {**os.environ, "OMP_NUM_THREADS": str(nthreads), "MKL_NUM_THREADS": str(nthreads)}
                started, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
                done = subprocess.run(_command(procs, bench_args), env=env, capture_output=True, text=True)
                wall = time.perf_counter() - started
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
                if done.returncode != 0:
                    print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
                    return 1
                results = json.loads((out / "results.json").read_text())
                run = results.pop("run")
                numbers[config] = results
                times[config].append((wall, run["seconds"], cpu))
                print(f"round {repeat + 1}: {procs} process(es) x {nthreads} thread(s): "
                      f"wall {wall:.2f} s, evaluation {run['seconds']:.2f} s, CPU {cpu:.2f} s, "
                      f"load average {os.getloadavg()[0]:.1f}", flush=True)

    reference = configs[0]
    identical = all(numbers[c] == numbers[reference] for c in configs)
    rows = []
    for config in configs:
        wall = statistics.median(t[0] for t in times[config])
        evaluation = statistics.median(t[1] for t in times[config])
        cpu = statistics.median(t[2] for t in times[config])
        rows.append({"processes": config[0], "threads_per_process": config[1],
                     "wall_s": round(wall, 3), "evaluation_s": round(evaluation, 3),
                     "cpu_s": round(cpu, 3)})
    print(f"\ncamkit bench scaling: {args.length} shapes images 64², {args.method}, batch "
          f"{args.batch_size}, device {args.device}, median of {args.repeats}")
    print("| processes × threads | wall (s) | evaluation (s) | CPU (s) | " +
          " | ".join(f"speed-up vs 1×{t} (wall / eval)" for t in threads) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(threads))
    base = {t: next(r for r in rows if r["processes"] == 1 and r["threads_per_process"] == t)
            for t in threads}
    for row in rows:
        ratios = [f"{base[t]['wall_s'] / row['wall_s']:.2f}× / {base[t]['evaluation_s'] / row['evaluation_s']:.2f}×"
                  for t in threads]
        print(f"| {row['processes']} × {row['threads_per_process']} | {row['wall_s']:.2f} | "
              f"{row['evaluation_s']:.2f} | {row['cpu_s']:.2f} | " + " | ".join(ratios) + " |")
    print(f"\nresults.json numbers identical across configurations: {identical}")
    print(f"load average at the end: {os.getloadavg()} on {os.cpu_count()} CPUs (other jobs slow "
          "every configuration; CPU seconds show the work each configuration needs)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "identical": identical,
                                               "config": vars(args)}, indent=2))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
