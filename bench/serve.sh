#!/usr/bin/env bash
# `deputy serve` under load: 100 sessions at once to one server against deputy-mockllm.
# Prints sessions per second and API latency p50/p99.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
cargo bench --quiet --bench serve
