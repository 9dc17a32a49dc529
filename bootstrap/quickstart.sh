#!/usr/bin/env bash
# README command 1: from a fresh clone to the whole ecosystem running.
# Installs what is missing (nats-server 2.15.1, hash-pinned), builds `ozone` and the eight
# component binaries, runs `ozone up --detach`: the security plane, then the components phase
# by phase, then a status table; fetches the two models on first run; asks SPARK a question. Safe to re-run: init never replaces a key, and a running
# ecosystem is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

export OZONE_STUDIO_HOME="${OZONE_STUDIO_HOME:-$HOME/.ozone-studio}"
nats/install-nats-server.sh "$OZONE_STUDIO_HOME/bin"

binaries=(ozone ozone-spark ozone-cognis ozone-zsei ozone-studio ozone-nexus ozone-bridge ozone-forge ozone-scribe)
echo "building ${binaries[*]} (release)..."
packages=(-p ozone -p ozone-spark -p ozone-cognis -p ozone-zsei -p ozone-studio-core -p ozone-nexus -p ozone-bridge -p ozone-forge -p ozone-scribe)
cargo build --release --quiet "${packages[@]}"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
for b in "${binaries[@]}"; do
  install -m 755 "$target_dir/release/$b" "$OZONE_STUDIO_HOME/bin/$b.new"
  mv "$OZONE_STUDIO_HOME/bin/$b.new" "$OZONE_STUDIO_HOME/bin/$b"
done

"$OZONE_STUDIO_HOME/bin/ozone" up --detach
echo
# The main job: a chat generation through SPARK on the encrypted bus, tokens as they stream.
echo '$ ozone ask "What is the capital of France?"'
"$OZONE_STUDIO_HOME/bin/ozone" ask "What is the capital of France?" --seed 7 --temperature 0.2 --max-tokens 60
echo
echo "ozone is installed at $OZONE_STUDIO_HOME/bin/ozone (add that folder to PATH)."
