#!/usr/bin/env bash
# The main job on a fresh machine, in a few minutes: fetch the Qwen pair once,
# start a cloud verifier (Qwen2.5-Coder-1.5B, pinned to core 1) and an edge
# drafter (0.5B, core 0) talking over an emulated 4g link, run a few
# Spec-Bench prompts as cloud-only and as ouroboros speculation, and print the
# comparison. Results land in bench-results/demo (results.json, report.md, SVGs).
#
# usage: deploy/demo.sh [extra ouro-bench run flags...]
#   OURO_DEMO_PROMPTS (3), OURO_DEMO_TOKENS (64), OURO_DEMO_LINK (4g)
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/fetch-models.sh qwen2.5-coder-0.5b qwen2.5-coder-1.5b
cargo build --quiet -p ouro-cloud -p ouro-bench
cores=$(nproc)
edge_cores=0
cloud_cores=$([ "$cores" -gt 1 ] && echo 1 || echo 0)
exec target/debug/ouro-bench run \
  --drafter qwen2.5-coder-0.5b --target qwen2.5-coder-1.5b \
  --modes cloud-only,ouroboros \
  --prompts "${OURO_DEMO_PROMPTS:-3}" --max-tokens "${OURO_DEMO_TOKENS:-64}" --max-prompt-tokens 160 \
  --link "${OURO_DEMO_LINK:-4g}" \
  --edge-cores "$edge_cores" --cloud-cores "$cloud_cores" \
  --out bench-results/demo "$@"
