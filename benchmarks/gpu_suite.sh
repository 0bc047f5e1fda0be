#!/usr/bin/env bash
# The GPU benchmarks in one command: vs braintrace, memory vs T and scale,
# merged into OUT/gpu_suite.json (see benchmarks/gpu_suite.py for the layout).
#
#   bash benchmarks/gpu_suite.sh --out bench_out/gpu          # GPU machine, under 8 minutes
#   bash benchmarks/gpu_suite.sh --tiny --out /tmp/gpu_tiny   # CPU-sized, seconds
#
# Every flag goes to gpu_suite.py (--device cpu|gpu, --budget, --skip-peer,
# --sections, --section-args). The python is $PYTHON, else the checkout's
# .venv, else python3; this checkout comes first on PYTHONPATH.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then
  PY="$ROOT/.venv/bin/python"
else
  PY="$(command -v python3 || command -v python)"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" "$ROOT/benchmarks/gpu_suite.py" "$@"
