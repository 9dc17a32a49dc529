#!/usr/bin/env bash
# README command 1: from a fresh clone to a running, checked security plane.
# Installs what is missing (nats-server 2.15.1, hash-pinned), builds `ozone`, runs `ozone up`.
# Safe to re-run: init never replaces a key, and a running ecosystem is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

export OZONE_STUDIO_HOME="${OZONE_STUDIO_HOME:-$HOME/.ozone-studio}"
nats/install-nats-server.sh "$OZONE_STUDIO_HOME/bin"

echo "building ozone (release)..."
cargo build --release --quiet -p ozone
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
install -m 755 "$target_dir/release/ozone" "$OZONE_STUDIO_HOME/bin/ozone.new"
mv "$OZONE_STUDIO_HOME/bin/ozone.new" "$OZONE_STUDIO_HOME/bin/ozone"

"$OZONE_STUDIO_HOME/bin/ozone" up
echo
echo "ozone is installed at $OZONE_STUDIO_HOME/bin/ozone (add that folder to PATH)."
