#!/bin/bash
# One device call for the GPU checks of the scale-out and evidence issues, sized for a 590 s
# command: the full-size grid (benchmarks/gpu_grid.py, stopped at its time budget) and then the
# one-process FSDP cells of the support table (benchmarks/gpu_scaleout.py --modes fsdp; DeepSpeed
# is not installed on the device machine). Needs `python benchmarks/gpu_grid.py pack .device/pack`
# here first, and the device tool's run with carry [".device"]:
#   bash benchmarks/gpu_session.sh $OUT [GRID_BUDGET_S]
# Everything goes to $OUT as two files (a log and a tarball), whatever stops first.
set -u
out=${1:?output folder}
budget=${2:-380}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" RETAIN_PROGRESS=0
log=$out/session.log
work=/tmp/gpu_session
mkdir -p $work/grid $work/scaleout
pack_up() {  # the results, not the run folders (checkpoints)
  (cd $work && find grid scaleout -maxdepth 2 -type f \( -name '*.json' -o -name '*.md' -o -name '*.csv' \
     -o -name '*.log' -o -name '*.png' \) | tar czf $out/gpu_results.tgz -T -)
}
trap pack_up EXIT
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, transformers, accelerate, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'peft', peft.__version__)"
  echo "== grid (budget ${budget}s)"; start=$(date +%s)
  timeout $((budget + 90)) python3 benchmarks/gpu_grid.py run --packed .device/pack $work/grid \
      --workers 12 --budget-s $budget --work $work/grid-runs
  echo "grid rc=$? after $(( $(date +%s) - start ))s"; pack_up
  echo "== scale-out cells (FSDP, one process, bf16)"; start=$(date +%s)
  timeout 130 python3 benchmarks/gpu_scaleout.py $work/scaleout --modes fsdp --timeout 115
  echo "scaleout rc=$? after $(( $(date +%s) - start ))s"
  date -u
} > $log 2>&1
