#!/usr/bin/env bash
# The main-job benchmark: the seed agent on a 6-step scripted task against deputy-mockllm.
# Prints time to first model request, per-turn overhead, total wall time and peak RSS, then the
# same for Codex's native binary on the same task (installed from the npm registry into
# target/bench-codex when npm is there), and how many times shorter deputy's wall time is.
set -euo pipefail
cd "$(dirname "$0")/.."
CODEX_VERSION=${CODEX_VERSION:-0.171.0}
cargo build --release --quiet
if [ -z "${DEPUTY_BENCH_CODEX:-}" ]; then
    dir=target/bench-codex
    if [ ! -d "$dir/node_modules/@openai/codex" ] && command -v npm >/dev/null; then
        npm install --prefix "$dir" --no-audit --no-fund --silent "@openai/codex@$CODEX_VERSION" ||
            echo "session.sh: could not install Codex from npm; it is left out" >&2
    fi
    codex=$(find "$dir/node_modules/@openai" -path '*/vendor/*/bin/codex' -type f 2>/dev/null | head -1)
    [ -n "$codex" ] && export DEPUTY_BENCH_CODEX=$PWD/$codex
fi
cargo bench --quiet --bench session
