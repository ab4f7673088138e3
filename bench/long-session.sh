#!/usr/bin/env bash
# The long-session benchmark: 200 turns with 8 KB tool outputs against deputy-mockllm, with a
# 32k window and compaction, then without compaction. Prints input tokens at turn 10 and 200,
# the session's total, and the per-turn overhead at both points.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
cargo bench --quiet --bench long_session
