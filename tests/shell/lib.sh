# Shared helpers for shell tests. Source it first thing:  . "$(dirname "$0")/lib.sh"
# Results are lines "PASS name" / "FAIL name: why" / "SKIP name: why" (see scripts/run-tests.sh).
# Every test gets a private $T directory, removed at exit with whatever on_exit registered.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=$ROOT/build/bin
# the E2B-format fixtures (a copy of ../shared/fixtures kept in the repository)
FIX=${FIXTURES:-$ROOT/tests/fixtures}
[ -d "$FIX" ] || FIX=$ROOT/../shared/fixtures
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

# ---- VM tests ----
# need_vm: skip the file unless this host can run sandboxes (root, QEMU, kernel assets).
need_vm() {
  [ "$(id -u)" = 0 ] || { echo "SKIP $(basename "$0"): needs root"; exit 77; }
  need qemu-system-x86_64 nft
  if [ ! -f "$ROOT/build/kernels/default/initrd.img" ]; then
    (cd "$ROOT" && make --no-print-directory kernel >/dev/null 2>&1) ||
      { echo "SKIP $(basename "$0"): cannot provide the guest kernel (make kernel failed)"; exit 77; }
  fi
}
# shared_template: a busybox template with a web server started and ready, built once per
# checkout into $TSTORE and shared by the VM tests (they only add builds next to it).
# Sets TSTORE (storage dir) and TBUILD (build id).
TSTORE=$ROOT/build/test-storage
TBUILD=0b0b0b0b-1111-4111-8111-000000000001
shared_template() {
  mkdir -p "$TSTORE"
  (
    flock 9
    if [ ! -f "$TSTORE/templates/$TBUILD/metadata.json" ]; then
      "$BIN/build-template" -build "$TBUILD" -storage "$TSTORE" -force -vcpu 1 -memory 256 -disk 64 \
        -start-cmd 'mkdir -p /srv && echo ok > /srv/index.html && exec httpd -f -p 8080 -h /srv' \
        -ready-cmd 'wget -q -O- http://127.0.0.1:8080/index.html' >"$TSTORE/build.out" 2>&1
    fi
  ) 9>"$TSTORE/.lock"
  [ -f "$TSTORE/templates/$TBUILD/metadata.json" ]
}
# new_uuid: a random version-4 UUID
new_uuid() { cat /proc/sys/kernel/random/uuid; }
# no_leaks NAME: no namespace, QEMU or sandbox dir of this test's storage is left
no_leaks() {
  local n=$1 left
  left=$(ls "$TSTORE/sandbox" 2>/dev/null | head -3)
  [ -z "$left" ] || { fail "$n" "sandbox dirs left: $left"; return; }
  left=$(pgrep -f "$TSTORE/sandbox" | head -3)
  [ -z "$left" ] || { fail "$n" "QEMU processes left: $left"; return; }
  left=$(grep -c " $TSTORE" /proc/mounts)
  [ "$left" = 0 ] || { fail "$n" "mounts left under $TSTORE"; return; }
  pass "$n"
}
