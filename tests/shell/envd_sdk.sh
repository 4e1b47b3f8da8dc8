#!/usr/bin/env bash
# Compatibility with the official E2B JS SDK: `Sandbox.create({debug: true})` talks straight to
# envd on localhost:49983, so envd runs there (skip when the port is taken) and
# tests/envd/sdk_test.cjs drives commands.run (stdout, stderr, exit code, envs, cwd, stdin,
# background + kill, list) and files.write/read/list/exists/getInfo/makeDir/rename/remove.
# The SDK version is pinned in tests/envd/package.json and installed into build/envd-node.
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/envd/lib.sh"
envd_need
need node npm
NM=$ROOT/build/envd-node
want=$(sed -n 's/.*"e2b": "\(.*\)".*/\1/p' "$ROOT/tests/envd/package.json")
have=$(sed -n 's/^  "version": "\(.*\)",/\1/p' "$NM/node_modules/e2b/package.json" 2>/dev/null)
if [ "$have" != "$want" ]; then
  mkdir -p "$NM" && cp "$ROOT/tests/envd/package.json" "$NM/package.json"
  if ! (cd "$NM" && timeout 300 npm install --no-audit --no-fund >"$T/npm.log" 2>&1); then
    echo "SKIP envd_sdk.sh: npm install e2b@$want failed: $(tail -2 "$T/npm.log" | tr '\n' ' ')"
    exit 77
  fi
fi
if (exec 3<>/dev/tcp/127.0.0.1/49983) 2>/dev/null; then
  echo "SKIP envd_sdk.sh: 127.0.0.1:49983 is taken (the SDK's debug mode needs that port)"
  exit 77
fi
envd_start 49983 || { fail envd_start "envd did not come up on 49983 ($(tail -3 "$T/envd.log"))"; envd_sanitizer_check
finish; }
mkdir -p "$T/work"
base_fds=$(envd_fds)
timeout 120 node "$ROOT/tests/envd/sdk_test.cjs" "$NM/node_modules" "$T/work" || fail sdk_script "node exited with status $?"
for _ in $(seq 40); do [ "$(envd_children)" = 0 ] && [ "$(envd_fds)" -le "$base_fds" ] && break; sleep 0.05; done
fds=$(envd_fds)
[ "$fds" -le "$base_fds" ] && pass sdk_no_fd_leak || fail sdk_no_fd_leak "$fds fds, baseline $base_fds: $(ls -l /proc/$EPID/fd)"
[ "$(envd_children)" = 0 ] && pass sdk_no_child_left || fail sdk_no_child_left "$(ps -o pid,cmd --ppid "$EPID")"
envd_sanitizer_check
finish
