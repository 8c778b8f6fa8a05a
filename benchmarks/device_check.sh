#!/usr/bin/env bash
# Augmented Grad-CAM on a GPU machine: install camkit (offline, torch is preinstalled), run the
# augmented tests (the CUDA ones run only when CUDA is available) and the timings on CUDA: the
# shipped coarse-map model's cost (augmented with L copies ÷ L single Grad-CAMs) first, then VGG16's.
# Finishes in under 5 minutes on one H100.  Results land in $OUT (default /tmp/augmented-device).
#   bash benchmarks/device_check.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/augmented-device}
mkdir -p "$OUT"
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

# No network on the device: install without dependencies; fall back to the source tree.
if ! $PY -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/pip.log" 2>&1; then
    echo "pip install -e . failed (see pip.log); using PYTHONPATH"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
$PY - <<'PY' | tee "$OUT/env.txt"
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
try:
    import torchvision; print("torchvision", torchvision.__version__)
except ImportError:
    print("torchvision missing: the VGG16 timings will be skipped")
PY

status=0
if $PY -c "import pytest" 2>/dev/null; then
    timeout 100 $PY -m pytest -q -p no:cacheprovider tests/test_augmented_operators.py \
        tests/test_augmented_solvers.py tests/test_augmented_method.py tests/test_augmented_model.py 2>&1 | tee "$OUT/tests.txt" | tail -5
    status=${PIPESTATUS[0]}
else
    echo "pytest missing: tests skipped" | tee "$OUT/tests.txt"
fi

extra=""
$PY -c "import torchvision" 2>/dev/null || extra="--skip-gradcam"
timeout 60 $PY benchmarks/augmented_speed.py --device cuda --runs 3 --coarse \
    --json "$OUT/augmented_cost_coarse_cuda.json" 2>&1 | tee "$OUT/augmented_cost_coarse_cuda.txt" | tail -20
timeout 170 $PY benchmarks/augmented_speed.py --device cuda --runs 3 --skip-coarse $extra \
    --json "$OUT/augmented_speed_cuda.json" 2>&1 | tee "$OUT/augmented_speed_cuda.txt" | tail -80
exit $status
