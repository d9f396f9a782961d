#!/bin/bash
# Install the Debian packages pacestack's tests and lab need. Idempotent: does
# nothing when they are all present. Needs root.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mapfile -t pkgs < <(grep -Ev '^\s*(#|$)' "$here/debian-packages.txt")
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup-system: all ${#pkgs[@]} Debian packages present"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "setup-system: need root to install: ${missing[*]}" >&2
    exit 2
fi
echo "setup-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -q
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
