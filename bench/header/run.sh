#!/usr/bin/env bash
# Header benchmarks (issue 2): lookups/s on 100k mappings (target >= 20M/s, one thread) and
# reading a 1 GiB logical file made of 4 layers vs the same bytes from one flat file
# (target: layered >= 50% of flat), with diff runs of 1-64 blocks and, harder, 1-4 blocks.
# BENCH_HEADER_MIB changes the file size. Temporary files live under /tmp and are removed.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=build/bench/header/bench_header
[ -x "$B" ] || make --no-print-directory "$B" >/dev/null
dir=$(mktemp -d /tmp/bench-header.XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$B" lookup 100000
for runmax in 64 4; do
  mkdir -p "$dir/$runmax"
  "$B" layered "$dir/$runmax" "${BENCH_HEADER_MIB:-1024}" "$runmax"
  rm -rf "${dir:?}/$runmax"
done
