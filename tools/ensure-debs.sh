#!/usr/bin/env bash
# Install the Debian packages given as arguments when they are missing: as root,
# or with passwordless sudo; otherwise say which and how, and fail.
#   tools/ensure-debs.sh redis-server webdis
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  echo "missing Debian packages: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "installing Debian packages: ${missing[*]}"
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" \
  || { $sudo apt-get update -q && $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"; }
