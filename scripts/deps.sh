#!/usr/bin/env bash
# Installs the Debian packages listed in deps/*.txt that are missing. Idempotent: when every
# package is already installed it does nothing (no apt-get update, no network).
# Other scripts may add npm peers (see scripts/npm-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(cat deps/*.txt | sed -e 's/#.*//' -e 's/[[:space:]]//g' | grep -v '^$' | sort -u)
missing=()
for p in $want; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    # a tool installed another way (e.g. npm bundled with a nodejs from elsewhere) counts
    case "$p" in nodejs) cmd=node ;; *) cmd=$p ;; esac
    command -v "$cmd" >/dev/null 2>&1 && continue
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
