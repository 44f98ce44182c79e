#!/usr/bin/env bash
# Runtime benchmark for docs/BENCHMARKS.md: ouro's model runtime and
# llama.cpp (the workplace's peer script, ../shared/tools/llamacpp-peer.sh)
# on the same GGUF file, threads and context, run back to back, printed as a
# Markdown table of ratios: decode tokens/s, prefill of a 256-token prompt,
# the verify-cost curve c(k) = pass(k) / pass(1) over a 256-token context,
# and peak RSS. Run it on an idle machine; compare ratios, not absolute times.
# The models run with every id in their LM head (`--draft-vocab none`): these
# are the verifier's figures, and a drafter's restricted head (FR-Spec) is
# measured by `bench-model` itself beside the full one.
#
# usage: deploy/bench-runtime.sh [model...]   (default: the two Qwen models)
# env:   THREADS (default "1 2"), KS (default 1,2,4,8,16,32,64), REPS (default 3),
#        OURO_KERNEL (force a kernel path: portable, avx2, avx512)
set -euo pipefail
cd "$(dirname "$0")/.."
models=("$@"); [ ${#models[@]} -eq 0 ] && models=(qwen2.5-coder-0.5b qwen2.5-coder-1.5b)
threads="${THREADS:-1 2}"; ks="${KS:-1,2,4,8,16,32,64}"; reps="${REPS:-3}"
peer=../shared/tools/llamacpp-peer.sh
deploy/fetch-models.sh "${models[@]}" >&2
cargo build --quiet -p ouro-edge
bin=target/debug/ouro-edge
model_dir="${OURO_MODEL_DIR:-$HOME/.cache/ouro/models}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for m in "${models[@]}"; do
  for t in $threads; do
    echo "bench-runtime: $m, $t thread(s): ouro" >&2
    "$bin" --threads "$t" bench-model --model "$m" --draft-vocab none --ks "$ks" --decode-tokens 32 --reps "$reps" --json |
      sed 's/^/ouro /' >> "$out"
    if [ -x "$peer" ]; then
      echo "bench-runtime: $m, $t thread(s): llama.cpp" >&2
      "$peer" "$model_dir/$m.gguf" "$t" 256 "$ks" "$reps" 2>/dev/null | tail -n 1 | sed "s/^/llama $m /" >> "$out"
      lb="${OURO_PEER_DIR:-$HOME/.cache/ouro/peers}/llama.cpp-0.3.36/build/bin/llama-bench"
      # This llama.cpp's repacked batch kernels die with SIGILL on AMX CPUs
      # (the peer script says so for its passes): then prefill runs unrepacked.
      pp="$("$lb" -m "$model_dir/$m.gguf" -t "$t" -p 256 -n 0 -r "$reps" -o jsonl 2>/dev/null)" ||
        pp="$("$lb" -m "$model_dir/$m.gguf" -t "$t" -p 256 -n 0 -r "$reps" --repack 0 -o jsonl 2>/dev/null)"
      echo "$pp" | tail -n 1 | sed "s/^/prefill $m $t /" >> "$out"
    fi
  done
done
python3 - "$out" "$ks" <<'PY'
import json, sys
rows, ks = {}, sys.argv[2].split(",")
for line in open(sys.argv[1]):
    kind, rest = line.split(" ", 1)
    if kind == "ouro":
        o = json.loads(rest); rows.setdefault((o["model"], o["threads"]), {})["ouro"] = o
    elif kind == "llama":
        m, j = rest.split(" ", 1); l = json.loads(j); rows.setdefault((m, l["threads"]), {})["llama"] = l
    else:
        m, t, j = rest.split(" ", 2); rows.setdefault((m, int(t)), {})["pp"] = json.loads(j)["avg_ts"]
cpu = next(iter(rows.values()))["ouro"]["cpu"]
print(f"CPU: {cpu}; ouro kernels: {next(iter(rows.values()))['ouro']['kernel']}\n")
print("| model | threads | | decode tok/s | prefill 256 tok/s | pass k=1 ms | " + " | ".join(f"c({k})" for k in ks[1:]) + " | peak RSS MiB |")
print("|---|---:|---|---:|---:|---:|" + "---:|" * (len(ks) - 1) + "---:|")
for (m, t), r in sorted(rows.items()):
    o = r["ouro"]; ck = {str(v["k"]): v["ratio"] for v in o["verify_ms"]}; ms = {str(v["k"]): v["ms"] for v in o["verify_ms"]}
    print(f"| {m} | {t} | ouro | {o['decode_tokens_per_sec']:.2f} | {o['prefill_tokens_per_sec']:.1f} | {ms['1']:.1f} | "
          + " | ".join(f"{ck[k]:.2f}" for k in ks[1:]) + f" | {o['peak_rss_mib']:.0f} |")
    if "llama" in r:
        l = r["llama"]; pp = r.get("pp", float("nan"))
        print(f"| | | llama.cpp | {l['decode_tok_s']:.2f} | {pp:.1f} | {l['pass_ms']['1']:.1f} | "
              + " | ".join(f"{l['ck'][k]:.2f}" for k in ks[1:]) + " | |")
        print(f"| | | ratio | **{o['decode_tokens_per_sec'] / l['decode_tok_s']:.2f}x** | **{o['prefill_tokens_per_sec'] / pp:.2f}x** | "
              f"{ms['1'] / l['pass_ms']['1']:.2f}x | " + " | ".join(f"{ms[k] / l['pass_ms'][k]:.2f}x" for k in ks[1:]) + " | |")
print("\nratio row: decode and prefill are ouro/llama.cpp speed (above 1 is faster); the pass columns are ouro/llama.cpp time per pass (below 1 is faster).")
PY
