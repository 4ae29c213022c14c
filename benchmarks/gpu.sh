#!/usr/bin/env bash
# The training, attack and evaluation benchmarks on a GPU, in at most 10 minutes.
#
#   .venv/bin/pip install -e '.[gpu]'      # TensorFlow's CUDA wheels (Linux, NVIDIA driver)
#   bash benchmarks/gpu.sh [PYTHON]        # default .venv/bin/python; output: stdout
#
# Each benchmark runs with --device gpu (it refuses to start when TensorFlow sees no GPU, so a
# CPU figure is never printed as a GPU one) and under its own time limit; the budgets add up
# to 10 minutes. Training and PGD also run under --precision mixed (mixed_float16 on a GPU),
# printed as a ratio to float32 measured in the same run. The machine (CPU, TensorFlow, the
# GPU) is printed by each benchmark.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
export TF_CPP_MIN_LOG_LEVEL=2
: "${ADVGUI_DATA:=$(cd ../shared/data/mnist 2>/dev/null && pwd)}"
export ADVGUI_DATA
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader
"$PY" -c "import tensorflow as tf; g = tf.config.list_physical_devices('GPU'); \
print('TensorFlow', tf.__version__, 'GPUs:', g); raise SystemExit(0 if g else 3)" || {
    echo "gpu.sh: TensorFlow sees no GPU: install the extra (pip install -e '.[gpu]')" >&2
    exit 3
}
status=0
run() {  # run SECONDS NAME ARGS...
    local limit=$1 name=$2
    shift 2
    echo "=== $name (at most ${limit} s) ==="
    timeout "$limit" "$PY" "$@" --device gpu || { echo "$name: exit $?"; status=1; }
}
run 180 training benchmarks/bench_training.py --part throughput --rounds 1 --precision mixed
run 120 attacks benchmarks/bench_attack.py --repeats 3
run 100 mixed-pgd benchmarks/bench_strong_attacks.py --quick --skip-art --skip-torch \
    --cw-n 4 --precision mixed
run 200 evaluation benchmarks/bench_leaderboard.py --local-only --attack autoattack \
    --eps 0.3 --n 1000 --chunk 250
exit $status
