#!/usr/bin/env bash
# The GPU checks in one run, sized for a short lease on one NVIDIA GPU (about 8 minutes on an H200):
#   1. benchmarks/qlora_memory.py: peak memory of 7B-shaped NF4 + LoRA and 1.5B-shaped bf16/NF4 GRPO training;
#   2. benchmarks/gpu_throughput.py: completion tokens/s of trl-plus trainers against TRL's GRPOTrainer.
# Usage: bash benchmarks/gpu_checks.sh OUT_DIR   (results and logs land in OUT_DIR)
# Each check has its own time limit, so a slow one cannot take the other's time.
set -uo pipefail
out="${1:?usage: bash benchmarks/gpu_checks.sh OUT_DIR}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD:${PYTHONPATH:-}"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, transformers, trl, peft, bitsandbytes as b; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'bitsandbytes', b.__version__)"
} 2>&1 | tee "$out/environment.txt"

timeout "${QLORA_LIMIT:-300}" python3 benchmarks/qlora_memory.py --algos dr_grpo --steps 2 \
  --output "$out/qlora_memory.json" 2>&1 | tee "$out/qlora_memory.log"
echo "qlora_memory exit: ${PIPESTATUS[0]}" | tee -a "$out/qlora_memory.log"

timeout "${THROUGHPUT_LIMIT:-200}" python3 benchmarks/gpu_throughput.py --algos dr_grpo dapo reinforce_pp remax rahf \
  --prompts 8 --generations 8 --length 128 --reps 3 --warmup 1 \
  --json "$out/gpu.json" --md "$out/gpu.md" 2>&1 | tee "$out/gpu_throughput.log"
echo "gpu_throughput exit: ${PIPESTATUS[0]}" | tee -a "$out/gpu_throughput.log"
