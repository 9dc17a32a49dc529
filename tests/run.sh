#!/usr/bin/env bash
# README command 2: every test, against a real nats-server (installed first if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${OZONE_NATS_SERVER:-}" ] && ! command -v nats-server >/dev/null 2>&1; then
  nats/install-nats-server.sh "${OZONE_STUDIO_HOME:-$HOME/.ozone-studio}/bin"
  export OZONE_NATS_SERVER="${OZONE_STUDIO_HOME:-$HOME/.ozone-studio}/bin/nats-server"
fi
cargo test --workspace "$@"
