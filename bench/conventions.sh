#!/usr/bin/env bash
# What a repository's conventions cost at start and per call: `deputy run` against
# deputy-mockllm (one write, one answer) in a git repository, plain; with project instructions
# (AGENTS.md at the top with two @imports, CLAUDE.md in the workspace below it), SKILLS skills
# and as many commands; and with a PreToolUse and a PostToolUse hook (`true`) on every call.
# Medians of RUNS runs each (wall time of the whole process).
# Usage: bench/conventions.sh [SKILLS=20] [RUNS=15]
set -euo pipefail
cd "$(dirname "$0")/.."
skills=${1:-20}
runs=${2:-15}
cargo build --release --quiet
bin=$PWD/target/release/deputy
tmp=$(mktemp -d)
trap 'kill $mock 2>/dev/null || true; rm -rf "$tmp"' EXIT

{ echo "steps:"
  for _ in $(seq $((3 * runs))); do
    echo '  - tool_calls: [{name: write, arguments: {path: out.txt, content: "x\n"}}]'
    echo '  - text: "done"'
  done; } > "$tmp/script.yaml"
"$bin" mock-server --script "$tmp/script.yaml" --port 0 > "$tmp/mock.out" 2>&1 &
mock=$!
for _ in $(seq 50); do grep -q "listening on" "$tmp/mock.out" && break; sleep 0.1; done
url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$tmp/mock.out" | head -1)

plain=$tmp/plain; rich=$tmp/rich
for r in "$plain" "$rich"; do mkdir -p "$r/svc"; (cd "$r" && git init -q -b main); done
# The rich repository: instructions with imports, skills and commands.
printf '# Rules\nRun `make check`.\nSee @docs/testing.md and @docs/style.md\n' > "$rich/AGENTS.md"
mkdir -p "$rich/docs"; for f in testing style; do head -c 4000 /dev/zero | tr '\0' 'a' > "$rich/docs/$f.md"; done
printf 'This service is async.\n' > "$rich/svc/CLAUDE.md"
for i in $(seq "$skills"); do
    d=$rich/.claude/skills/skill-$i; mkdir -p "$d/scripts"
    printf -- '---\nname: skill-%s\ndescription: Does task %s. Use when asked for %s.\n---\nSteps for %s.\n' "$i" "$i" "$i" "$i" > "$d/SKILL.md"
    echo "echo $i" > "$d/scripts/run.sh"
    mkdir -p "$rich/.claude/commands"
    printf -- '---\ndescription: Command %s\n---\nDo %s for $ARGUMENTS\n' "$i" "$i" > "$rich/.claude/commands/c$i.md"
done
mkdir -p "$tmp/hookhome/.claude"
printf '{"hooks": {"PreToolUse": [{"hooks": [{"type": "command", "command": "true"}]}], "PostToolUse": [{"hooks": [{"type": "command", "command": "true"}]}]}}\n' > "$tmp/hookhome/.claude/settings.json"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_runs() { # dir home [run args…]
    local dir=$1 home=$2; shift 2
    for _ in $(seq "$runs"); do
        local s e
        s=$(date +%s%N)
        (cd "$dir/svc" && HOME=$home DEPUTY_HOME=$tmp/state OPENAI_BASE_URL=$url DEPUTY_MODEL=mock \
            DEPUTY_LOCAL_PORTS=none "$bin" run -q --ephemeral "${@:-change it}" > /dev/null)
        e=$(date +%s%N)
        echo $(( (e - s) / 1000000 ))
    done | median
}
mkdir -p "$tmp/home"
a=$(time_runs "$plain" "$tmp/home")
b=$(time_runs "$rich" "$tmp/home")
c=$(time_runs "$rich" "$tmp/home" --command c1 -- now)
d=$(time_runs "$plain" "$tmp/hookhome")
echo "$runs runs each, medians of the whole \`deputy run\` (one write, one answer)"
echo "plain repository:                                    ${a} ms"
echo "instructions (3 files, 8 KB) and $skills skills:              ${b} ms"
echo "the same, run as one of $skills commands (--command):      ${c} ms"
echo "a PreToolUse and a PostToolUse hook (\`true\`) per call: ${d} ms"
