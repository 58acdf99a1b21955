#!/usr/bin/env bash
# The README's first quick-start command: install what is missing, build
# roadie, and run the seed workflow examples/daemon-step.yaml for real:
# InfluxDB as a daemon step, a database created through {{steps.influx.ip}},
# three producers writing in parallel, a consumer reading the 41 points back.
#
# InfluxDB keeps its data in a fresh temporary directory for each demo run,
# so the consumer shows exactly this run's 41 points.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

echo "demo: installing system packages if missing (scripts/setup.sh)"
bash scripts/setup.sh

if ! command -v cargo >/dev/null 2>&1 && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
echo "demo: building roadie (cargo build --release -p roadie)"
cargo build --release -p roadie

influx_dir=$(mktemp -d)
trap 'rm -rf "$influx_dir"' EXIT
export INFLUXDB_META_DIR="$influx_dir/meta" INFLUXDB_DATA_DIR="$influx_dir/data" INFLUXDB_DATA_WAL_DIR="$influx_dir/wal"

echo "demo: target/release/roadie run examples/daemon-step.yaml"
status=0
target/release/roadie run examples/daemon-step.yaml || status=$?

echo
echo "demo: the consumer's output (roadie logs @latest --node consumer):"
target/release/roadie logs @latest --node consumer | sed 's/^consumer: //' | python3 -c '
import json, sys
data = json.load(sys.stdin)
values = data["results"][0]["series"][0]["values"]
print(f"demo: {len(values)} points read back from InfluxDB (expected 41)")
'
exit "$status"
