#!/usr/bin/env bash
# A cloud verifier and an edge daemon on this machine, wired together over
# loopback in development mode (no TLS, a throwaway token), for trying the
# OpenAI-compatible API. Ctrl-C stops both.
#
# usage: deploy/serve-pair.sh [grpc|quic]
#   OURO_VERIFIER_MODEL (default smollm2-135m), OURO_MODEL (the drafter, default
#   the verifier), OURO_EDGE_LISTEN (default 127.0.0.1:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
transport="${1:-grpc}"
verifier="${OURO_VERIFIER_MODEL:-smollm2-135m}"
drafter="${OURO_MODEL:-$verifier}"
listen="${OURO_EDGE_LISTEN:-127.0.0.1:8080}"
deploy/fetch-models.sh "$verifier" "$drafter"
cargo build --quiet -p ouro-cloud -p ouro-edge
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/token"
target/debug/ouro-cloud serve --model "$verifier" --insecure-dev --tokens-file "$work/token" \
  --listen 127.0.0.1:0 --quic-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 > "$work/cloud.out" &
# The readiness line: {"ready":{"service":"ouro-cloud","listen":"ADDR","metrics":"ADDR","quic":"ADDR"}}
until grep -q '^{"ready":' "$work/cloud.out" 2>/dev/null; do sleep 0.2; done
cat "$work/cloud.out"
key=listen; [ "$transport" = quic ] && key=quic
addr="$(sed -n 's/^{"ready":.*"'"$key"'":"\([^"]*\)".*/\1/p' "$work/cloud.out")"
echo "edge: drafter $drafter, cloud $addr over $transport"
echo "try:  curl -s http://$listen/v1/chat/completions -H 'content-type: application/json' \\"
echo "        -d '{\"model\":\"ouro\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi!\"}],\"max_tokens\":64}'"
target/debug/ouro-edge serve --model "$drafter" --listen "$listen" --cloud "$addr" --transport "$transport" \
  --insecure-dev --token-file "$work/token"
