#!/usr/bin/env bash
# Runs Argo's example workflows (shared/argo-examples/expected.tsv) with roadie
# and compares each run's final phase with the one Argo gives it.
#
# Usage: scripts/conformance.sh [-j JOBS] [-t SECONDS] [-r ROADIE] [PATTERN...]
#   -j JOBS     examples run at once (default 4)
#   -t SECONDS  time limit per example (default 300; 30 for those listed in
#               tests/conformance/known-failures.tsv, several of which hang today)
#   -r ROADIE   the roadie binary (default target/debug/roadie, built if missing)
#   PATTERN     only the example files whose path contains one of these
#
# Each example runs in its own ROADIE_HOME and working directory (steps run in
# roadie's cwd) and, when run as root where `unshare` works, in its own mount
# and network namespace with a private /tmp, /mnt and loopback, as a pod would: the
# examples write fixed paths (/tmp/message) and bind fixed ports (nginx on 80).
# tests/conformance/bin comes first on roadie's PATH: `sh` is BusyBox ash, as
# in the examples' images, `apk` checks tools are installed, `nc` is ncat.
# Rows marked CronWorkflow are skipped: `roadie run` takes Workflows only.
# forever.yaml (expected `Running`) is started, checked to be Running, and
# stopped with SIGINT. Suspended nodes are resumed with `roadie resume` and
# examples using templateRef get tests/conformance/templates/ stored with
# `roadie template create`, once roadie has those commands. Prints a table
# (file, expected, got, seconds, reason), a pass count and the slowest
# examples; the table is also written to target/conformance.md. Exit status 0
# when every example not in tests/conformance/known-failures.tsv passed.
#
# The same run, for CI: cargo test -p roadie --test conformance.
# Needs the examples' host programs: run scripts/setup.sh first (python,
# node, cowsay, nginx, jq, curl, busybox, ncat, argosay).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=4
limit=300
known_limit=30
roadie=""
while getopts "j:t:r:h" opt; do
    case $opt in
        j) jobs=$OPTARG ;;
        t) limit=$OPTARG ;;
        r) roadie=$OPTARG ;;
        h) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))

examples=${ROADIE_ARGO_EXAMPLES:-}
if [[ -z $examples ]]; then
    shared=${ROADIE_SHARED_DIR:-$repo/../shared}
    examples=$shared/argo-examples
fi
[[ -f $examples/expected.tsv ]] || { echo "conformance: no expected.tsv in $examples (set ROADIE_SHARED_DIR or ROADIE_ARGO_EXAMPLES)" >&2; exit 2; }
examples=$(cd "$examples" && pwd)

if [[ -z $roadie ]]; then
    roadie=$repo/target/debug/roadie
    if [[ ! -x $roadie ]]; then
        (cd "$repo" && cargo build -q -p roadie) || exit 2
    fi
fi
[[ -x $roadie ]] || { echo "conformance: $roadie is not an executable" >&2; exit 2; }
roadie=$(cd "$(dirname "$roadie")" && pwd)/$(basename "$roadie")
known=$repo/tests/conformance/known-failures.tsv

for prog in python node cowsay argosay jq curl nginx; do
    command -v "$prog" >/dev/null 2>&1 || echo "conformance: warning: '$prog' is not on PATH (scripts/setup.sh installs it); examples that use it will fail" >&2
done

# Not under /tmp: each example gets a private /tmp, and `roadie get` runs
# outside it.
mkdir -p "$repo/target"
scratch=$(mktemp -d "$repo/target/conformance-runs.XXXXXX")
isolate=0
if unshare --mount --net --propagation private sh -c 'ip link set lo up && mount -t tmpfs roadie-probe /tmp' >/dev/null 2>&1; then
    isolate=1
fi
shims=$repo/tests/conformance/bin
has_cmd() { "$roadie" "$1" --help >/dev/null 2>&1; }
has_resume=0; has_cmd resume && has_resume=1
has_template=0; has_cmd template && has_template=1
trap 'rm -rf "$scratch"' EXIT

# run_one FILE EXPECTED: prints "file<TAB>expected<TAB>got<TAB>seconds<TAB>reason".
run_one() {
    local file=$1 expected=$2
    local id=${file//\//_}
    id=${id%.yaml}
    local dir=$scratch/$id
    mkdir -p "$dir/home" "$dir/work"
    local name
    name=conf-$(printf '%s' "$id" | tr 'A-Z_.' 'a-z--' | cut -c1-40)
    local start=$SECONDS got reason="" limit=$limit
    if [[ -f $known ]] && grep -q "^${file}"$'\t' "$known" && ((known_limit < limit)); then
        limit=$known_limit
    fi
    export ROADIE_HOME=$dir/home NO_COLOR=1 PATH=$shims:$PATH:/usr/games
    # Each step its own /tmp and /mnt, as each pod has (used when root).
    export ROADIE_PRIVATE_DIRS=/tmp:/mnt
    unset ROADIE_PROFILE
    local -a launch=("$roadie")
    if [[ $isolate == 1 ]]; then
        launch=(unshare --mount --net --propagation private sh -c \
            'ip link set lo up && mount -t tmpfs -o mode=1777 roadie-conformance-tmp /tmp && { [ ! -d /mnt ] || mount -t tmpfs roadie-conformance-mnt /mnt; } && exec "$0" "$@"' "$roadie")
    fi
    # roadie reads a copy in the scratch dir: the private /tmp would hide
    # examples kept under /tmp.
    local wf=$dir/$(basename "$file")
    cp "$examples/$file" "$wf"
    if [[ $has_template == 1 ]] && grep -q 'emplateRef' "$wf"; then
        local t
        for t in "$repo"/tests/conformance/templates/*.yaml; do
            "$roadie" template create "$t" >/dev/null 2>>"$dir/err"
        done
    fi
    if [[ $expected == Running ]]; then
        (cd "$dir/work" && exec "${launch[@]}" run "$wf" --quiet --name "$name" </dev/null >"$dir/out" 2>"$dir/err") &
        local pid=$! i
        got=""
        for ((i = 0; i < limit * 5; i++)); do
            got=$("$roadie" get "$name" -o json 2>/dev/null | jq -r '.status.phase // empty' 2>/dev/null)
            [[ $got == Running ]] && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        # Running must last: look again a second later.
        if [[ $got == Running ]]; then
            sleep 1
            got=$("$roadie" get "$name" -o json 2>/dev/null | jq -r '.status.phase // empty' 2>/dev/null)
        fi
        kill -INT "$pid" 2>/dev/null
        for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        [[ -n $got ]] || got=None
    else
        (cd "$dir/work" && exec timeout -s INT -k 15 "$limit" "${launch[@]}" run "$wf" --quiet --name "$name" </dev/null >"$dir/out" 2>"$dir/err") &
        local pid=$! resumed=""
        if [[ $has_resume == 1 ]]; then
            while kill -0 "$pid" 2>/dev/null; do
                local node
                for node in $("$roadie" get "$name" -o json 2>/dev/null | jq -r '.status.nodes // {} | .[] | select(.type == "Suspend" and .phase == "Running") | .displayName' 2>/dev/null); do
                    [[ " $resumed " == *" $node "* ]] && continue
                    resumed+=" $node"
                    local sfile snode sparam svalue
                    while IFS=$'\t' read -r sfile snode sparam svalue; do
                        [[ $sfile == "$file" && $snode == "$node" ]] || continue
                        "$roadie" set "$name" --node-field-selector "displayName=$node" --output-parameter "$sparam=$svalue" >/dev/null 2>>"$dir/err"
                    done < <(grep -v '^#' "$repo/tests/conformance/suspend-outputs.tsv")
                    "$roadie" resume "$name" >/dev/null 2>>"$dir/err"
                done
                sleep 0.5
            done
        fi
        wait "$pid"
        local rc=$?
        got=$("$roadie" get "$name" -o json 2>/dev/null | jq -r '.status.phase // empty' 2>/dev/null)
        [[ -n $got ]] || got=None
        if [[ $rc == 124 || $rc == 137 ]]; then
            reason="timed out after ${limit}s; "
        fi
    fi
    if [[ $got != "$expected" ]]; then
        local msg
        msg=$("$roadie" get "$name" -o json 2>/dev/null | jq -r '
            [(.status.message // empty),
             (.status.nodes // {} | to_entries[] | .value
              | select(.phase == "Failed" or .phase == "Error")
              | select(.type != "Steps" and .type != "DAG" and .type != "StepGroup" and .type != "TaskGroup")
              | "\(.displayName): \(.message // .phase)")] | unique | join("; ")' 2>/dev/null)
        [[ -n $msg ]] || msg=$(grep -v '^\s*$' "$dir/err" | head -3 | tr '\n' ' ')
        reason+=$msg
    fi
    reason=$(printf '%s' "$reason" | tr '\t\n|' '  /' | cut -c1-300)
    printf '%s\t%s\t%s\t%s\t%s\n' "$file" "$expected" "$got" "$((SECONDS - start))" "$reason"
}
export -f run_one
export roadie examples scratch limit known_limit known repo isolate shims has_resume has_template

selected=$scratch/selected.tsv
# Argo labels its long examples `duration`: run them first so they overlap
# with the many short ones.
tail -n +2 "$examples/expected.tsv" | awk -F'\t' '{ print ($4 ~ /duration/ ? 0 : 1) "\t" $0 }' | sort -s -t$'\t' -k1,1n | cut -f2- |
while IFS=$'\t' read -r file expected _rest; do
    [[ -n $file && $expected != CronWorkflow ]] || continue
    if [[ $# -gt 0 ]]; then
        keep=0
        for pat in "$@"; do [[ $file == *"$pat"* ]] && keep=1; done
        [[ $keep == 1 ]] || continue
    fi
    printf '%s\t%s\n' "$file" "$expected"
done >"$selected"

total=$(wc -l <"$selected")
echo "conformance: $total examples from $examples, $jobs at a time, ${limit}s each" >&2
results=$scratch/results.tsv
tr '\t' '\n' <"$selected" | xargs -d '\n' -n 2 -P "$jobs" bash -c 'run_one "$0" "$1"' \
    | tee /dev/stderr | sort >"$results"

passed=$(awk -F'\t' '$2 == $3' "$results" | wc -l)
unexpected=0
report=$repo/target/conformance.md
mkdir -p "$repo/target"
{
    printf '# roadie conformance: Argo examples\n\n%s of %s passed\n\n' "$passed" "$total"
    printf '| file | expected | got | seconds | reason |\n|---|---|---|---|---|\n'
    while IFS=$'\t' read -r file expected got secs reason; do
        mark=""
        if [[ $expected != "$got" ]]; then
            if [[ -f $known ]] && grep -q "^${file}"$'\t' "$known"; then mark=" (known)"; else mark=" (NEW)"; fi
        fi
        printf '| %s | %s | %s%s | %s | %s |\n' "$file" "$expected" "$got" "$mark" "$secs" "$reason"
    done <"$results"
} >"$report"
cat "$report"
echo
echo "slowest:"
sort -t$'\t' -k4,4nr "$results" | head -5 | awk -F'\t' '{printf "  %4ss  %s\n", $4, $1}'
while IFS=$'\t' read -r file expected got _; do
    if [[ $expected != "$got" ]] && ! { [[ -f $known ]] && grep -q "^${file}"$'\t' "$known"; }; then
        unexpected=$((unexpected + 1))
    fi
done <"$results"
echo "conformance: $passed/$total passed; $unexpected failed that are not in tests/conformance/known-failures.tsv; table in $report"
[[ $unexpected -eq 0 ]]
