#!/usr/bin/env bash
# README command 2: every test, against a real nats-server (installed first if missing), with
# the Python audit reader (the envelope's second implementation) in its own virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${OZONE_NATS_SERVER:-}" ] && ! command -v nats-server >/dev/null 2>&1; then
  nats/install-nats-server.sh "${OZONE_STUDIO_HOME:-$HOME/.ozone-studio}/bin"
  export OZONE_NATS_SERVER="${OZONE_STUDIO_HOME:-$HOME/.ozone-studio}/bin/nats-server"
fi
if [ -z "${OZONE_AUDIT_PYTHON:-}" ]; then
  venv="${XDG_CACHE_HOME:-$HOME/.cache}/ozone-studio/audit-reader-venv"
  req=tests/audit_reader/requirements.txt
  if ! cmp -s "$req" "$venv/requirements.txt" 2>/dev/null; then
    echo "installing the audit reader's Python packages into $venv"
    python3 -m venv --system-site-packages "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$venv/requirements.txt"
  fi
  export OZONE_AUDIT_PYTHON="$venv/bin/python"
fi
"$OZONE_AUDIT_PYTHON" tests/audit_reader/ozone_audit_reader.py \
  --selftest "${OZONE_TESTDATA_DIR:-../shared/testdata/crypto}/hpke-x25519-sha256-aes256gcm.json"
# The component binaries sit next to `ozone-cli`; the bootstrap test runs them as processes.
cargo build --workspace --bins
cargo test --workspace "$@"
