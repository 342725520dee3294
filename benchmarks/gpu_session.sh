#!/bin/bash
# One device call for the GPU checks of the scale-out and evidence issues, sized for a 590 s
# command: benchmark grids (benchmarks/gpu_grid.py, one after another, stopped at a shared time
# budget; finished runs are reused by a later call on a machine still warm), then the one-process
# FSDP cells of the support table (benchmarks/gpu_scaleout.py), and the ZeRO-2 and ZeRO-3 cells when
# DeepSpeed's wheels travel in .device/wheels (the device machine has no network and no DeepSpeed;
# here: `pip wheel --no-deps -w .device/wheels deepspeed==0.19.8`, then `pip download --no-deps
# --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .device/wheels`
# pydantic pydantic_core annotated-types typing-inspection hjson, about 5 MB). Needs
# `python benchmarks/gpu_grid.py pack .device/pack [--grid G]` here first, and the device tool's
# run with carry [".device"]. A call carries 64 MiB at most: the pack of minilm-long-full (the 15
# tasks of every grid, about 60 MiB) leaves no room for the wheels; the default pack (4 tasks,
# 48 MiB) does.
#   bash benchmarks/gpu_session.sh $OUT [GRID_BUDGET_S] [GRID@TRAIN_CAP ...]
# Default grid: minilm-classifier@1000 (the full-size grid). The generative and long streams at
# full size (pack with --grid minilm-long-full; the long stream's grid has its full-size rates):
#   bash benchmarks/gpu_session.sh $OUT 400 minilm-generative@1000 minilm-long-full@1000
# GRID_ARGS adds gpu_grid.py run options to every grid, e.g. the full-size grid in TF32 (fp32 weights,
# TensorFloat-32 matmuls; the fp32 one took 11m55s of grid time on an H200, the target is 8 min):
#   GRID_ARGS="--tf32" bash benchmarks/gpu_session.sh $OUT 450 minilm-classifier@1000
# (its run folders are kept apart from the fp32 ones). The GPU's utilisation and memory are sampled
# every 5 s into gpu_util.csv beside the results: whether the GPU or the CPU set the pace.
# Everything goes to $OUT as two files (a log and a tarball), whatever stops first.
set -u
out=${1:?output folder}
budget=${2:-380}
shift $(( $# >= 2 ? 2 : $# ))
grids=("$@")
[ ${#grids[@]} -eq 0 ] && grids=(minilm-classifier@1000)
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" RETAIN_PROGRESS=0
log=$out/session.log
work=/tmp/gpu_session
mkdir -p $work/grid $work/scaleout
pack_up() {  # the results, not the run folders (checkpoints)
  (cd $work && find grid scaleout gpu_util.csv -maxdepth 3 -type f \( -name '*.json' -o -name '*.md' -o -name '*.csv' \
     -o -name '*.log' -o -name '*.png' \) | tar czf $out/gpu_results.tgz -T -)
}
extra=${GRID_ARGS:-}
tag=$(echo "$extra" | tr -c 'A-Za-z0-9\n' _ | tr -d '\n'); tag=${tag:+-$tag}
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 5 > $work/gpu_util.csv 2>&1 &
sampler=$!
trap 'kill $sampler 2> /dev/null; pack_up' EXIT
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, transformers, accelerate, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'peft', peft.__version__)"
  modes=fsdp
  if ls .device/wheels/deepspeed-*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .device/wheels/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site" && modes="fsdp,zero2,zero3"
  fi
  deadline=$(( $(date +%s) + budget ))
  for spec in "${grids[@]}"; do
    name=${spec%@*}; cap=${spec#*@}; [ "$cap" = "$spec" ] && cap=1000
    left=$(( deadline - $(date +%s) ))
    if [ $left -lt 30 ]; then echo "== grid $name at $cap: no budget left"; continue; fi
    echo "== grid $name, $cap train per task (budget ${left}s)"; start=$(date +%s)
    timeout $((left + 90)) python3 benchmarks/gpu_grid.py run --packed .device/pack $work/grid/$name@$cap \
        --grid $name --max-train $cap --workers 12 --budget-s $left --work $work/runs-$name@$cap$tag $extra
    echo "grid rc=$? after $(( $(date +%s) - start ))s"; pack_up
  done
  echo "== scale-out cells ($modes, one process, bf16)"; start=$(date +%s)
  timeout $(( 90 * $(echo $modes | tr , "\n" | wc -l) )) python3 benchmarks/gpu_scaleout.py $work/scaleout --modes $modes --timeout 80
  echo "scaleout rc=$? after $(( $(date +%s) - start ))s"
  date -u
} > $log 2>&1
