#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run`): fetch the pinned models once
# into the cache, check formatting, lints, module cycles and the deployment files
# (deploy/lint-deploy.sh), run every test (the end-to-end
# ones include the official `openai` client, via deploy/openai-env.sh, and a
# short soak), then every fuzz target briefly.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/fetch-models.sh all
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# No two modules of a crate use each other (module-level uses and paths).
deploy/check-module-cycles.py
# Kubernetes overlays, the Containerfile and the systemd units (docs/DEPLOYING.md).
deploy/lint-deploy.sh
# Model tests share ~1 GiB models; two test threads keep memory and the two
# cores busy without oversubscribing candle's own thread pool.
cargo test --workspace -- --test-threads=2
# Every fuzz target for 30 s from its seeds (the 10-minute runs and their
# figures: docs/RELIABILITY.md). Needs the nightly toolchain.
deploy/fuzz.sh 30
# Building the container image compiles the workspace again in release mode
# (25-31 min with one job on the shared two-core machine), so it runs only when asked.
if [ "${OURO_TEST_CONTAINER:-0}" = 1 ]; then deploy/container/test-image.sh; fi
