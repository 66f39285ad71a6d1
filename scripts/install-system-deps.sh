#!/usr/bin/env bash
# Debian packages the tests need. Idempotent; skips apt when everything is already there.
set -euo pipefail
PACKAGES=(espeak-ng sox baresip chromium haproxy cmake g++)  # cmake, g++: scripts/build-llama-server.sh
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-system-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
