#!/usr/bin/env bash
# Runs each libFuzzer harness for FUZZ_SECONDS (default 30) with a corpus under build/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-30}
rc=0
for f in "$@"; do
  name=$(basename "$f")
  corpus=build/fuzz/corpus-$name
  mkdir -p "$corpus"
  [ -d "fuzz/seeds/$name" ] && cp -n fuzz/seeds/$name/* "$corpus/" 2>/dev/null || true
  echo "== $name (${secs}s)"
  if ! "$f" -max_total_time="$secs" -rss_limit_mb=2048 -artifact_prefix=build/fuzz/ "$corpus" 2>build/fuzz/$name.log; then
    echo "fuzz: $name found a crash, see build/fuzz/$name.log"; tail -30 build/fuzz/$name.log; rc=1
  else
    tail -1 build/fuzz/$name.log
  fi
done
exit $rc
