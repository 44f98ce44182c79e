#!/usr/bin/env bash
# Speculation end to end, for docs/BENCHMARKS.md (issue 13): every draft
# strategy side by side with the plain baseline of the same run.
#
# 0. What any strategy could gain at most with this drafter on this machine
#    (`ouro-edge bench-ceiling` at one thread, as edge and cloud run below):
#    best fixed trees, oracle ceilings, confidence chains.
# 1. In one process (`ouro-edge bench-spec`, both models on THREADS threads):
#    each strategy against target-only on Spec-Bench, with the controller's
#    per-round predictions logged (bench-spec-rounds.jsonl).
# 2. Edge and cloud apart (`ouro-bench run`, edge on core 0, cloud on core
#    1): each strategy against cloud-only, and cloud-pool (the cloud's own
#    drafts, no edge), over each emulated link.
#
# Greedy throughout, so every text is also checked against its baseline.
# Run it on an idle machine; compare the ratios, not the absolute speeds.
#
# usage: deploy/bench-speculation.sh [OUT_DIR]   (default bench-results/speculation)
# env:   PROMPTS (default 6: one per category), MAX_TOKENS (128), THREADS (2),
#        STRATEGIES (bench-spec: chain4,ouroboros,hybrid,pool),
#        MODES (ouro-bench: cloud-only,cloud-pool,sd-chain,ouroboros,hybrid,pool),
#        LINKS (lan;delay=10ms;4g — `;`-separated: a link spec has commas),
#        TEMPERATURE (also run the first link sampled at this temperature, e.g. 0.8),
#        WARM=1 (ouro-bench keeps each mode's pool and controller warm across
#        prompts, as the edge daemon does; bench-spec always does)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-results/speculation}"
prompts="${PROMPTS:-6}"; max_tokens="${MAX_TOKENS:-128}"; threads="${THREADS:-2}"
strategies="${STRATEGIES:-chain4,ouroboros,hybrid,pool}"
modes="${MODES:-cloud-only,cloud-pool,sd-chain,ouroboros,hybrid,pool}"
links="${LINKS:-lan;delay=10ms;4g}"
warm=(); [ "${WARM:-0}" = 1 ] && warm=(--warm)
mkdir -p "$out"
deploy/fetch-models.sh qwen2.5-coder-0.5b qwen2.5-coder-1.5b >&2
cargo build --quiet -p ouro-edge -p ouro-bench -p ouro-cloud
bin=target/debug

# Spec-Bench has six categories; bench-spec takes prompts per category.
per_category=$(((prompts + 5) / 6))
echo "bench-speculation: ceilings of this drafter on this machine, $per_category prompt(s) per category" >&2
"$bin/ouro-edge" --threads 1 bench-ceiling --per-category "$per_category" --max-tokens "$max_tokens" \
  --traces "$out/bench-ceiling-traces.jsonl" | tee "$out/bench-ceiling.md"
echo "bench-speculation: in one process, $threads threads, $per_category prompt(s) per category" >&2
"$bin/ouro-edge" --threads "$threads" bench-spec --per-category "$per_category" --max-tokens "$max_tokens" \
  --modes "$strategies" --round-log "$out/bench-spec-rounds.jsonl" | tee "$out/bench-spec.md"

IFS=';' read -r -a link_list <<< "$links"
for link in "${link_list[@]}"; do
  dir="$out/run-$(echo "$link" | tr -c 'a-zA-Z0-9.\n' '_')"
  echo "bench-speculation: edge and cloud apart, link $link" >&2
  "$bin/ouro-bench" run --prompts "$prompts" --max-tokens "$max_tokens" --modes "$modes" \
    --link "$link" --edge-cores 0 --cloud-cores 1 --out "$dir" "${warm[@]}"
done
if [ -n "${TEMPERATURE:-}" ]; then
  echo "bench-speculation: sampled at T=$TEMPERATURE, link ${link_list[0]}" >&2
  "$bin/ouro-bench" run --prompts "$prompts" --max-tokens "$max_tokens" --modes "$modes" \
    --link "${link_list[0]}" --temperature "$TEMPERATURE" --edge-cores 0 --cloud-cores 1 --out "$out/run-sampled" "${warm[@]}"
fi
echo "bench-speculation: results in $out (bench-ceiling.md, bench-spec.md, run-*/report.md)" >&2
