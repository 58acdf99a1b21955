#!/usr/bin/env bash
# roadie's benchmark harness: builds the release binaries, then runs every
# benchmark once (process table + pure-engine microbenchmark) and prints the
# figures. Asserts nothing about time. Extra arguments go to roadie-bench,
# e.g. `bench/run.sh --reps 5`, `bench/run.sh engine`, `bench/run.sh --keep /tmp/rb`.
set -euo pipefail
cd "$(dirname "$0")/.."
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
echo "machine: $(uname -srm), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty tree')"
if [ "${1:-}" = engine ]; then
  shift
  exec target/release/roadie-bench engine "$@"
fi
exec target/release/roadie-bench --roadie target/release/roadie "$@"
