#!/usr/bin/env bash
# Where roadie's time goes: perf profiles of the pure engine (per-event feed, the
# worst case) and of a real `roadie run` of the 1,000-task DAG and the 200-step
# chain. Needs perf (`apt-get install linux-perf`); writes into ${OUT:-/tmp/roadie-profile}.
# Reports: top functions by self time, then by inclusive time (inlined frames hidden).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/roadie-profile}
mkdir -p "$OUT"
if ! command -v perf >/dev/null; then
  echo "perf is missing: apt-get install -y linux-perf" >&2
  exit 2
fi
cargo build --release -p roadie-bench
# Other crates are edited while benchmarks run: if roadie does not build right now, say so
# and measure the last binary that did.
if ! cargo build --release -p roadie; then
  if [ -x target/release/roadie ]; then
    echo "warning: roadie does not build now; measuring target/release/roadie from $(date -r target/release/roadie '+%F %T')" >&2
  else
    echo "error: roadie does not build and there is no earlier target/release/roadie" >&2
    exit 1
  fi
fi
BENCH=target/release/roadie-bench
ROADIE=target/release/roadie
"$BENCH" gen "$OUT/wf" >/dev/null

report() { # DATA LABEL
  echo "=== $2: self time"
  perf report -i "$1" --no-children --sort dso,sym --stdio -g none --percent-limit 1.5 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -25 | cut -c1-160
  echo "=== $2: inclusive time (callers included)"
  perf report -i "$1" --children --sort sym --stdio -g none --percent-limit 3 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | grep -v '(inlined)' \
    | grep -v 'lang_start\|catch_unwind\|rust_begin_short\|__libc_start\|_start$\| main$\|0xffffffff' \
    | head -40 | cut -c1-160
}

for w in "wide 1000 per-event" "chain 200 per-event" "wide 1000 batched"; do
  set -- $w
  data="$OUT/engine-$1-$2-$3.data"
  perf record -q -F 1999 --call-graph dwarf,16384 -o "$data" "$BENCH" engine-one "$1" "$2" "$3"
  report "$data" "engine $w"
done

for f in wide-1000 chain-200; do
  data="$OUT/roadie-$f.data"
  home=$(mktemp -d)
  ROADIE_HOME=$home perf record -q -F 1999 --call-graph dwarf,16384 -o "$data" \
    "$ROADIE" run "$OUT/wf/$f.yaml" --quiet >/dev/null 2>&1
  rm -rf "$home"
  echo "=== roadie run $f: by thread name (the steps' processes show as 'true', or under the"
  echo "    forking thread's name until they exec)"
  perf report -i "$data" --no-children --sort comm --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -8
  report "$data" "roadie run $f"
done

# Instruction counts do not depend on the machine's load: callgrind of the engine alone.
if command -v valgrind >/dev/null; then
  for w in "chain 200 per-event" "wide 500 per-event"; do
    set -- $w
    cg="$OUT/callgrind-$1-$2-$3.out"
    valgrind --tool=callgrind --callgrind-out-file="$cg" "$BENCH" engine-one "$1" "$2" "$3" 2>"$cg.log" >/dev/null
    ir=$(grep -o 'refs: *[0-9,]*' "$cg.log" | tr -dc 0-9)
    echo "=== callgrind engine $w: $ir instructions, $((ir / $2)) per step; inclusive top:"
    callgrind_annotate --inclusive=yes "$cg" 2>/dev/null \
      | grep -E 'roadie_engine|format_inner|node_id|hash_one|HashMap.*insert|String as core::clone|memcmp|BTreeMap' \
      | sed -E 's|/rustc/[0-9a-f]+/library/||; s| \[[^]]*\]$||' | head -20 | cut -c1-150
  done
fi
