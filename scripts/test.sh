#!/usr/bin/env bash
# The test command of the README: installs what the tests need, then runs the whole
# workspace's tests. Safe to run on a fresh machine and again and again.
#
# The AWS tests start their own moto server (PyPI `moto[server]`) on a free port of
# 127.0.0.1 per test and stop it when the test ends (providers/aws/src/testing); the
# instance agent runs each instance's bootstrap with the AWS CLI (PyPI `awscli`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/skyform-target}"
# Snapshots are compared, never rewritten, here.
export INSTA_UPDATE=no

echo "== emulators: moto server and the AWS CLI (PyPI)" >&2
python3 -m pip install -q --disable-pip-version-check 'moto[server]>=5.2.5,<5.3' 'awscli>=1.33,<2' >&2
# pip's script directory first (pyenv shims may not know new scripts yet).
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
command -v moto_server >/dev/null && command -v aws >/dev/null

echo "== headless Chromium (the HTML views of show/status are rendered and checked in it)" >&2
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
chromium --version >&2

# No AWS call may leave this machine: no instance metadata, no shared config.
export AWS_EC2_METADATA_DISABLED=true

cargo test --workspace --no-fail-fast "$@"
