# Shared helpers for shell tests. Source it first thing:  . "$(dirname "$0")/lib.sh"
# Results are lines "PASS name" / "FAIL name: why" / "SKIP name: why" (see scripts/run-tests.sh).
# Every test gets a private $T directory, removed at exit with whatever on_exit registered.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=$ROOT/build/bin
FIX=${FIXTURES:-$ROOT/../shared/fixtures}
[ -d "$FIX" ] || FIX=$ROOT/tests/fixtures
T=$(mktemp -d /tmp/orch-test.XXXXXX)
_exit_cmds=()
on_exit() { _exit_cmds+=("$*"); }
_run_exit() {
  local i
  for ((i = ${#_exit_cmds[@]} - 1; i >= 0; i--)); do eval "${_exit_cmds[$i]}" >/dev/null 2>&1 || true; done
  rm -rf "$T"
}
trap _run_exit EXIT
_failed=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1${2:+: $2}"; _failed=1; }
skip() { echo "SKIP $1: $2"; }
# check NAME CMD...: pass when CMD exits 0
check() { local n=$1; shift; if "$@"; then pass "$n"; else fail "$n" "command failed: $*"; fi; }
# expect_status NAME STATUS CMD...: pass when CMD exits with STATUS
expect_status() {
  local n=$1 want=$2; shift 2
  "$@" >"$T/.out" 2>"$T/.err"; local rc=$?
  if [ "$rc" = "$want" ]; then pass "$n"; else fail "$n" "exit $rc, want $want: $(head -c 300 "$T/.err")"; fi
}
# need CMD...: skip the whole file (exit 77) when a tool is missing
need() { local c; for c in "$@"; do command -v "$c" >/dev/null || { echo "SKIP $(basename "$0"): needs $c"; exit 77; }; done; }
finish() { exit $_failed; }
