#!/usr/bin/env bash
# The test command of the README: installs and starts what the tests need, then runs the
# whole workspace's tests. Safe to run on a fresh machine and again and again.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/skyform-target}"
# Snapshots are compared, never rewritten, here.
export INSTA_UPDATE=no
cargo test --workspace --no-fail-fast "$@"
