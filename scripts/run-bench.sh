#!/usr/bin/env bash
# Runs every benchmark: bench/<name>/run.sh (each prints ours vs peer and the ratio).
set -uo pipefail
cd "$(dirname "$0")/.."
rc=0
for b in bench/*/run.sh; do
  [ -e "$b" ] || continue
  if [ -n "${BENCH_FILTER:-}" ] && ! [[ $b =~ $BENCH_FILTER ]]; then continue; fi
  echo "== $b"
  bash "$b" || { echo "bench: $b failed"; rc=1; }
done
exit $rc
