#!/usr/bin/env bash
# Regenerate bench/hot-symbols.txt: the functions a `deputy run` session executes, in the order
# they first run, which build.rs hands to the linker (lld's --symbol-ordering-file) so they sit
# next to each other in the release binary. The kernel maps a program's code 64 KB around each
# page it touches; spread over 29 MB of code, the ~3 MB a session runs had it map 13 MB.
#
# What runs is found by running it: the seed task (examples/mock/seed-task.yaml) on each model
# protocol, under callgrind (every function; bubblewrap, as valgrind cannot run Landlock's
# system calls), then under perf with call stacks with Landlock (what it adds, as far as
# sampling finds it). A few minutes on 2 cores.
# Symbol names carry hashes that change with the compiler and the dependencies' versions (and a
# generic function's with the types it is used with): run this again after either, or when
# bench/session.sh says the binary has lost many of the names. Release builds are one LTO module,
# so a change elsewhere in deputy leaves the names as they were (2152 of 2153 after a change to
# deputy-runtime; with ThinLTO, whose module hashes end many names, 90% after one commit).
#
# Needs valgrind and perf. Run from anywhere: bash bench/order.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "order.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
command -v perf >/dev/null || { echo "order.sh: needs perf (apt-get install linux-perf)" >&2; exit 1; }
cargo build --release --quiet
bin=$PWD/target/release/deputy
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin" mock-server --script examples/mock/seed-task.yaml --port 0 >"$work/mock.out" 2>&1 &
for _ in $(seq 50); do grep -q http "$work/mock.out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[^ ]*' "$work/mock.out" | head -1)
[ -n "$url" ] || { echo "order.sh: the mock did not start" >&2; cat "$work/mock.out" >&2; exit 1; }

# One session: backend, protocol, output format, then the wrapper to run deputy under.
session() {
    local backend=$1 api=$2 format=$3
    shift 3
    local ws=$work/ws home=$work/home
    rm -rf "$ws" "$home"
    mkdir -p "$ws" "$home/.config/deputy"
    echo "print('app')" >"$ws/app.py"
    local base=OPENAI_BASE_URL
    case $api in
        anthropic) base=ANTHROPIC_BASE_URL ;;
        responses) printf '[providers.openai]\napi = "responses"\n' >"$home/.config/deputy/config.toml" ;;
    esac
    # The mock plays the script from the top for each new conversation.
    (cd "$ws" && env -i PATH="$PATH" HOME="$home" DEPUTY_HOME="$work/state" \
        DEPUTY_SANDBOX_BACKEND="$backend" "$base=$url" DEPUTY_MODEL=mock \
        "$@" "$bin" run --agent backend-architect --output-format "$format" "add a health check" \
        >/dev/null 2>"$work/err") || { echo "order.sh: the session failed:" >&2; cat "$work/err" >&2; exit 1; }
}

: >"$work/names"
n=0
for api in chat anthropic responses; do
    for format in json text; do
        n=$((n + 1))
        session bwrap "$api" "$format" valgrind -q --tool=callgrind --dump-instr=no --demangle=no \
            --callgrind-out-file="$work/cg.$n"
        sed -n 's/^c\?fn=([0-9]*) *\(.\+\)$/\1/p' "$work/cg.$n" >>"$work/names"
    done
done
if "$bin" sandbox check 2>/dev/null | grep -q "^  landlock *works"; then
    for api in chat anthropic responses; do
        for i in $(seq 4); do
            session landlock "$api" json perf record -q -F 5000 --call-graph dwarf,16384 -o "$work/perf.data"
            perf script -i "$work/perf.data" -F ip,sym --no-demangle 2>/dev/null |
                awk 'NF >= 2 { print $2 }' | sed 's/+0x[0-9a-f]*$//' >>"$work/names"
        done
    done
fi

# Keep the names the binary defines as functions, each once, in first-run order.
nm --defined-only "$bin" | awk '$2 ~ /^[tTwW]$/ { print $3 }' | sort -u >"$work/defined"
awk 'NR == FNR { defined[$0] = 1; next } defined[$0] && !seen[$0]++' "$work/defined" "$work/names" \
    >bench/hot-symbols.txt
echo "order.sh: $(wc -l <bench/hot-symbols.txt) functions in bench/hot-symbols.txt; rebuild (cargo build --release) to use them"
