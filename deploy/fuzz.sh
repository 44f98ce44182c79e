#!/usr/bin/env bash
# Builds ouro's cargo-fuzz targets (fuzz/) and runs each for SECONDS, one at
# a time, then prints a Markdown summary (time run, executions, coverage)
# and writes it to bench-results/fuzz/summary.md.
#
#   deploy/fuzz.sh SECONDS [TARGET...]     # all targets when none is named
#   nice -n 19 deploy/fuzz.sh 600          # the 10-minute run of docs/RELIABILITY.md
#
# Each target starts from its committed seeds (fuzz/seeds/TARGET) plus what
# earlier runs added to fuzz/corpus/TARGET (not committed). libFuzzer runs in
# a single process with -rss_limit_mb=2048 (which also caps any single
# allocation at 2 GB) and -detect_leaks=0 (caches that live for the process
# are not bugs here). A crash stops that target; the script goes on with the
# others, then exits 1 and names every crash artifact. To replay one:
#
#   cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...
#
# Needs a nightly toolchain (rustup); installs cargo-fuzz from crates.io if
# it is missing. Environment: OURO_FUZZ_TOOLCHAIN (default nightly),
# OURO_FUZZ_RSS_MB (default 2048), OURO_FUZZ_TIMEOUT (seconds per input,
# default 60), OURO_FUZZ_OUT (default bench-results/fuzz).
set -euo pipefail

usage() {
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

[[ $# -ge 1 && $1 =~ ^[0-9]+$ && $1 -gt 0 ]] || usage
secs=$1
shift

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
toolchain=${OURO_FUZZ_TOOLCHAIN:-nightly}
rss_mb=${OURO_FUZZ_RSS_MB:-2048}
timeout=${OURO_FUZZ_TIMEOUT:-60}
out=${OURO_FUZZ_OUT:-bench-results/fuzz}
all=(draft_round frame gguf gguf_tokenizer api_request stop_matcher phrase_pool link_profile draft_vocab)
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")
for t in "${targets[@]}"; do
    [[ " ${all[*]} " == *" $t "* ]] || { echo "unknown target '$t' (known: ${all[*]})" >&2; exit 2; }
done

if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz needs a nightly toolchain: rustup toolchain install $toolchain" >&2
    exit 2
fi
if ! cargo "+$toolchain" fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz from crates.io"
    cargo "+$toolchain" install cargo-fuzz --locked
fi

echo "== building ${#targets[@]} fuzz target(s)"
if [[ $# -eq 0 ]]; then
    cargo "+$toolchain" fuzz build
else
    for t in "${targets[@]}"; do
        cargo "+$toolchain" fuzz build "$t"
    done
fi

mkdir -p "$out"
rows=()
crashes=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log="$out/$t.log"
    echo "== $t: ${secs}s (log: $log)"
    start=$(date +%s)
    set +e
    cargo "+$toolchain" fuzz run "$t" "$root/fuzz/corpus/$t" "$root/fuzz/seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb="$rss_mb" -timeout="$timeout" \
        -detect_leaks=0 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    elapsed=$(($(date +%s) - start))
    # libFuzzer's own count of the time fuzzed; the wall time (build check
    # included) when a crash cut the run short.
    ran=$(sed -nE 's/^Done [0-9]+ runs in ([0-9]+) second.*/\1/p' "$log" | tail -n 1)
    ran=${ran:-$elapsed}
    last=$(grep -E ' cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$last")
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)
    [[ -n $execs ]] || execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
    rss=$(sed -nE 's/^stat::peak_rss_mb: *([0-9]+).*/\1/p' "$log" | tail -n 1)
    artifacts=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tr '\n' ' ')
    if [[ $rc -ne 0 || -n $artifacts ]]; then
        status="CRASH"
        crashes+=("$t: ${artifacts:-exit status $rc, see $log}")
        grep -E 'panicked at|^==[0-9]+==ERROR|SUMMARY:|out-of-memory|timeout after' "$log" | head -n 5 | sed 's/^/    /' || true
    else
        status="ok"
    fi
    rate=$((${execs:-0} / (ran > 0 ? ran : 1)))
    echo "   $t: ${ran}s, ${execs:-?} execs (${rate}/s), cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, peak rss ${rss:-?} MB: $status"
    rows+=("| $t | $ran | ${execs:-?} | $rate | ${cov:-?} | ${ft:-?} | ${corp:-?} | ${rss:-?} | $status |")
done

cpu=$(lscpu 2>/dev/null | sed -nE 's/^Model name: *//p' | head -n 1)
summary=$(
    echo "# Fuzzing summary"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), ${secs}s per target, ${cpu:-unknown CPU}, $(nproc) CPUs;" \
        "$(cargo "+$toolchain" fuzz --version 2>/dev/null), $(rustc "+$toolchain" --version)."
    echo
    echo "| target | seconds | execs | execs/s | cov | ft | corpus | peak RSS MB | result |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${rows[@]}"
    if [[ ${#crashes[@]} -gt 0 ]]; then
        echo
        echo "Crashes (replay with \`cargo +nightly fuzz run TARGET ARTIFACT\`):"
        echo
        printf -- '- %s\n' "${crashes[@]}"
    fi
)
echo
echo "$summary" | tee "$out/summary.md"
[[ ${#crashes[@]} -eq 0 ]]
