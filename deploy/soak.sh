#!/usr/bin/env bash
# Bounded load and soak (docs/RELIABILITY.md, "Load and soak"): fetches
# SmolLM2-135M once, then runs `ouro-bench soak` twice, SECONDS each:
#   cloud: 64 speculative sessions (+8 beyond the cloud's 64-session limit)
#          with replayed drafts against one ouro-cloud serve;
#   edge:  200 HTTP clients against one ouro-edge serve (drafter alone,
#          the daemon's default admission limits).
# Each checks every answer against the reference text, times every refusal,
# samples the server's RSS every second, stops by itself, and leaves
# results.json, report.md and rss.csv in bench-results/soak/<scenario>/.
# Exits non-zero if either run failed (both run regardless).
#
# usage: deploy/soak.sh [SECONDS] [extra ouro-bench soak flags...]   (SECONDS default 600)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
[ $# -gt 0 ] && shift
deploy/fetch-models.sh smollm2-135m
cargo build --quiet -p ouro-cloud -p ouro-edge -p ouro-bench
status=0
for scenario in cloud edge; do
  echo "soak: $scenario for ${secs} s" >&2
  target/debug/ouro-bench soak --scenario "$scenario" --duration "$secs" \
    --out "bench-results/soak/$scenario" "$@" || status=1
done
exit "$status"
