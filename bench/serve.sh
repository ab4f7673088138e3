#!/usr/bin/env bash
# `deputy serve` under load: 100 sessions at once against deputy-mockllm, to one worker on the
# embedded store, then to two workers sharing a PostgreSQL store (needs PostgreSQL installed).
# Prints sessions per second and API latency p50/p99, then the time from kill -9 of a worker
# mid-command to its session finished on another worker.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
cargo bench --quiet --bench serve
