#!/usr/bin/env bash
# roadie's daemon benchmark (issue 3): one-step `true` workflows submitted to a
# daemon with 2 workers on SQLite in a temp ROADIE_HOME, through `roadie submit`
# (process per submission, 4 concurrent), through the Rust API (one workflow per
# call), and queued while the daemon is stopped. Prints submit latency p50/p99,
# time to all Succeeded, workflows/s, idle/peak RSS of supervisor and workers,
# and CPU per process and thread. Asserts nothing about time.
# Extra arguments go to `roadie-bench daemon`, e.g.
#   bench/daemon.sh --cli-n 2000 --parts cli,api --keep /tmp/rbd
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p roadie-bench
if ! cargo build --release -p roadie; then
  if [ -x target/release/roadie ]; then
    echo "warning: roadie does not build now; measuring target/release/roadie from $(date -r target/release/roadie '+%F %T')" >&2
  else
    echo "error: roadie does not build and there is no earlier target/release/roadie" >&2
    exit 1
  fi
fi
echo "machine: $(uname -srm), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty tree'), roadie built $(date -u -r target/release/roadie '+%F %T UTC')"
exec target/release/roadie-bench daemon --roadie target/release/roadie "$@"
