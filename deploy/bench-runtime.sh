#!/usr/bin/env bash
# Runtime benchmark for docs/BENCHMARKS.md: decode tokens/s with 1 and 2
# threads, the verify-cost curve c(k) over a 256-token context, and peak RSS,
# for each pinned model (one process per run, so pools and RSS are clean).
# Also measures the effect of re-encoding legacy quant formats as Q8_0.
#
# usage: deploy/bench-runtime.sh [model...]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
models=("$@"); [ ${#models[@]} -eq 0 ] && models=(smollm2-135m qwen2.5-coder-0.5b qwen2.5-coder-1.5b)
deploy/fetch-models.sh "${models[@]}"
cargo build --quiet -p ouro-edge
bin=target/debug/ouro-edge
echo "# ouro runtime benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for m in "${models[@]}"; do
  for t in 1 2; do
    "$bin" --threads "$t" bench-model --model "$m"
  done
  case "$m" in
    smollm2-135m|qwen2.5-coder-0.5b) "$bin" --threads 2 bench-model --model "$m" --no-requantize --ks 1,8 ;;
  esac
done
