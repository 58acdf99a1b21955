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
    cargo fmt --all -- --check || die "code is not rustfmt-clean: run 'cargo fmt -p CRATE' on the crates listed above"
    step "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings || die "clippy found warnings (see above)"
fi

step "cargo build --workspace --all-targets"
cargo build --workspace --all-targets

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace --no-fail-fast"
    cargo nextest run --workspace --no-fail-fast
else
    step "cargo test --workspace --no-fail-fast (cargo-nextest not installed)"
    cargo test --workspace --no-fail-fast
fi

step "cargo test --doc --workspace"
cargo test --doc --workspace

printf '\ntest: all steps passed\n'
