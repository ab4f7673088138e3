#!/usr/bin/env bash
# What `isolation: worktree` costs: `deputy run` against deputy-mockllm (one write, one
# answer) in a repository of N files with uncommitted work, plain and with `--worktree`
# (snapshot, worktree add, commit at the end, diff stat). Medians of RUNS runs each.
# Usage: bench/worktree.sh [FILES=2000] [RUNS=7]
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-2000}
runs=${2:-7}
cargo build --release --quiet
bin=$PWD/target/release/deputy
tmp=$(mktemp -d)
trap 'kill $mock 2>/dev/null || true; rm -rf "$tmp"' EXIT

# One write and one answer per run, for every run of both kinds.
{ echo "steps:"
  for _ in $(seq $((2 * runs))); do
    echo '  - tool_calls: [{name: write, arguments: {path: src/changed.txt, content: "changed\n"}}]'
    echo '  - text: "Changed src/changed.txt"'
  done; } > "$tmp/script.yaml"
"$bin" mock-server --script "$tmp/script.yaml" --port 0 > "$tmp/mock.out" 2>&1 &
mock=$!
for _ in $(seq 50); do grep -q "listening on" "$tmp/mock.out" && break; sleep 0.1; done
url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$tmp/mock.out" | head -1)

repo=$tmp/repo
mkdir -p "$repo/src"
(cd "$repo" && git init -q -b main
 for i in $(seq "$files"); do echo "line $i" > "src/f$i.txt"; done
 git add . && git -c user.name=b -c user.email=b@b commit -qm files
 echo draft > draft.txt && echo "edited" >> src/f1.txt)

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_runs() { # args for deputy run
    for i in $(seq "$runs"); do
        local s e
        s=$(date +%s%N)
        (cd "$repo" && HOME=$tmp DEPUTY_HOME=$tmp/state OPENAI_BASE_URL=$url DEPUTY_MODEL=mock \
            DEPUTY_LOCAL_PORTS=none "$bin" run -q "$@" "change it" > /dev/null)
        e=$(date +%s%N)
        echo $(( (e - s) / 1000000 )) | tee -a "$tmp/times"
        (cd "$repo" && git checkout -q -- src && rm -f src/changed.txt && echo "edited" >> src/f1.txt)
    done | median
}
plain=$(time_runs); echo "plain: $(tr "\n" " " < "$tmp/times")" >&2; : > "$tmp/times"
isolated=$(time_runs --worktree); echo "worktree: $(tr "\n" " " < "$tmp/times")" >&2
(cd "$repo" && HOME=$tmp DEPUTY_HOME=$tmp/state "$bin" sessions prune 2>/dev/null)
echo "repository: $files files, uncommitted changes; $runs runs each, medians"
echo "deputy run:              ${plain} ms"
echo "deputy run --worktree:   ${isolated} ms  (worktree made, change committed)"
echo "worktree overhead:       $((isolated - plain)) ms"
