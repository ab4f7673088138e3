#!/usr/bin/env bash
# The main-job benchmark: the seed agent on a 6-step scripted task against deputy-mockllm.
# Prints time to first model request, per-turn overhead, total wall time and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
cargo bench --quiet --bench session
