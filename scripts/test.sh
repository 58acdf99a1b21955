#!/usr/bin/env bash
# roadie's test command (the README's, and CI's through .ci/run).
#
# Builds every target, runs the whole test suite with cargo-nextest (or
# `cargo test` where nextest is not installed), then the doc tests, which
# nextest does not run. With ROADIE_STRICT=1 (CI sets it) rustfmt and clippy
# run first, so style and lint failures stop the run before the slow part.
#
# Exports ROADIE_SHARED_DIR when the project's shared/ folder sits beside the
# repository: tests read the seed workflows and Argo examples from there.
set -euo pipefail

step() { printf '\n== test: %s\n' "$*"; }
die() {
    printf 'test: ERROR: %s\n' "$*" >&2
    exit 1
}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

if ! command -v cargo >/dev/null 2>&1 && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    export PATH
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found on PATH (install Rust with rustup)"

if [[ -z ${ROADIE_SHARED_DIR:-} && -d $repo_root/../shared ]]; then
    ROADIE_SHARED_DIR=$(cd "$repo_root/../shared" && pwd)
    export ROADIE_SHARED_DIR
fi
printf 'test: repo %s; ROADIE_SHARED_DIR=%s\n' "$repo_root" "${ROADIE_SHARED_DIR:-<unset>}"

if [[ ${ROADIE_STRICT:-0} == 1 ]]; then
    step "cargo fmt --all -- --check"
    # rustfmt colours its diff even into a file or pipe; keep CI logs plain.
    fmt_color=auto
    [[ -t 1 ]] || fmt_color=never
    cargo fmt --all -- --check --color "$fmt_color" || die "code is not rustfmt-clean: run 'cargo fmt -p CRATE' on the crates listed above"
    step "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings || die "clippy found warnings (see above)"
fi

step "cargo build --workspace --all-targets"
cargo build --workspace --all-targets

# Each runner's output is also kept in a log so the totals can be summed into
# one closing line: doc tests run last, and a crate without doc tests would
# otherwise end the run on a "0 passed" line.
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT
status=0

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace --no-fail-fast"
    cargo nextest run --workspace --no-fail-fast 2>&1 | tee "$log_dir/unit.log" || status=1
else
    step "cargo test --workspace --all-targets --no-fail-fast (cargo-nextest not installed; doc tests next)"
    cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee "$log_dir/unit.log" || status=1
fi

step "cargo test --doc --workspace"
cargo test --doc --workspace 2>&1 | tee "$log_dir/doc.log" || status=1

# Sum "N passed" / "N failed" / "N skipped|ignored" from nextest's Summary line
# and from every libtest "test result:" line.
count() { # count WORD FILE...: sum of the numbers before WORD on result lines
    awk -v word="$1" '
        /^ *Summary \[/ || /^test result:/ {
            line = $0
            while (match(line, "[0-9]+ " word)) {
                n += substr(line, RSTART, RLENGTH - length(word) - 1)
                line = substr(line, RSTART + RLENGTH)
            }
        }
        END { print n + 0 }' "${@:2}"
}
passed=$(count passed "$log_dir"/*.log)
failed=$(($(count failed "$log_dir"/*.log) + $(count 'timed out' "$log_dir"/*.log)))
skipped=$(($(count skipped "$log_dir"/*.log) + $(count ignored "$log_dir"/*.log)))

if [[ $status -ne 0 ]]; then
    printf '\ntest: FAILED (see above)\n'
    printf 'tests: %d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
    exit 1
fi
printf '\ntest: all steps passed\n'
printf 'tests: %d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
