#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run`): fetch the pinned models once
# into the cache, check formatting and lints, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/fetch-models.sh all
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Model tests share ~1 GiB models; two test threads keep memory and the two
# cores busy without oversubscribing candle's own thread pool.
cargo test --workspace -- --test-threads=2
