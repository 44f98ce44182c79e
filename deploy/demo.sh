#!/usr/bin/env bash
# The main job on a fresh machine: fetch the model on first use, then stream
# a greedy answer from it with tokens/s at the end.
#
# usage: deploy/demo.sh [prompt] [extra ouro-edge generate flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
model="${OURO_MODEL:-smollm2-135m}"
prompt="${1:-Explain in three sentences why speculative decoding makes large language models faster.}"
shift || true
deploy/fetch-models.sh "$model"
cargo run --quiet -p ouro-edge -- generate --model "$model" --max-tokens 128 "$prompt" "$@"
