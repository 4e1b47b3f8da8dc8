#!/usr/bin/env bash
# The envd API test (envd_api.sh) against the AddressSanitizer/UBSan build of envd
# (build/asan/guest/envd, made by `make asan-tests`); any sanitizer report fails it.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ ! -x "$ROOT/build/asan/guest/envd" ]; then
  echo "SKIP envd_asan.sh: build/asan/guest/envd not built (make asan-tests)"
  exit 77
fi
ENVD_BIN=$ROOT/build/asan/guest/envd exec bash "$ROOT/tests/shell/envd_api.sh"
