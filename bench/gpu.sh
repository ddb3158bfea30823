#!/usr/bin/env bash
# The GPU benchmark (bench/gpu.py), run from the source tree without installing the package.
#
#   bash bench/gpu.sh            # full size on a GPU (expected 1-3 min on an H200; budget 8); small without CUDA
#   bash bench/gpu.sh --small    # tiny trunk, 2 rounds: seconds, anywhere
#
# On the lent GPU machine (its python3 has torch, timm and transformers but no omegaconf and no
# network), the training part drives the real Trainer only if omegaconf comes along as a wheel:
#   here, once:   .venv/bin/pip download omegaconf==2.4.0 --no-deps -d .device-wheels
#                 (.device-wheels/ is git-ignored through .git/info/exclude, so it must be carried)
#   device tool:  run(command="bash bench/gpu.sh", carry=[".device-wheels"], timeout_s=540)
# The table is printed last; the full results land in $OUT/gpu.json. Without the wheel the same
# training step runs without the Trainer (the JSON's training.loop says which).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1  # random weights only: nothing is downloaded

if ! "$PY" -c "import omegaconf" 2>/dev/null && ls .device-wheels/omegaconf-*.whl >/dev/null 2>&1; then
  # Into a throwaway folder, not the machine's site-packages; omegaconf's only dependency, PyYAML, is there.
  lib="${TMPDIR:-/tmp}/steervit-bench-pylib"
  if "$PY" -m pip install -q --no-index --no-deps --find-links .device-wheels --target "$lib" omegaconf; then
    export PYTHONPATH="$PYTHONPATH:$lib"
  else
    echo "could not install omegaconf from .device-wheels: training runs the faithful step" >&2
  fi
fi

exec "$PY" bench/gpu.py "$@"
