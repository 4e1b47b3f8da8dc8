#!/usr/bin/env bash
# Runs the test suite and prints one closing line "N passed, N failed, N skipped".
# Every test program prints lines "PASS name", "FAIL name[: why]" or "SKIP name: why";
# a program that exits non-zero without a FAIL line counts as one failure (a crash), one
# that exits 0 or 77 printing nothing counts as one pass or one skip.
# Usage: run-tests.sh [DIR|FILE ...]   default: unit tests, their ASan build, tests/shell.
# TEST_FILTER=regex runs only matching programs.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOGDIR=$ROOT/build/test-logs
mkdir -p "$LOGDIR"
TIMEOUT=${TEST_TIMEOUT:-900}

progs=()
if [ $# -eq 0 ]; then
  set -- build/tests build/asan/tests tests/shell
fi
for arg in "$@"; do
  if [ -d "$arg" ]; then
    for f in $(find "$arg" -maxdepth 1 -type f \( -name 'test_*' -o -name '*.sh' \) | sort); do
      case "$f" in */lib.sh) continue ;; esac
      [ -x "$f" ] || [ "${f%.sh}" != "$f" ] || continue
      progs+=("$f")
    done
  else
    progs+=("$arg")
  fi
done

passed=0 failed=0 skipped=0
failed_names=()
start_all=$(date +%s)
for p in "${progs[@]}"; do
  if [ -n "${TEST_FILTER:-}" ] && ! [[ $p =~ $TEST_FILTER ]]; then continue; fi
  name=${p#./}
  log=$LOGDIR/$(echo "$name" | tr '/' '_').log
  t0=$(date +%s.%N)
  if [ "${p%.sh}" != "$p" ]; then
    timeout -k 10 "$TIMEOUT" bash "$p" >"$log" 2>&1 </dev/null; rc=$?
  else
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
      timeout -k 10 "$TIMEOUT" "$p" >"$log" 2>&1 </dev/null; rc=$?
  fi
  t1=$(date +%s.%N)
  np=$(grep -c '^PASS ' "$log"); nf=$(grep -c '^FAIL ' "$log"); ns=$(grep -c '^SKIP ' "$log")
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ "$nf" -eq 0 ]; then
    echo "FAIL $name: exited with status $rc" >>"$log"; nf=1
  fi
  if grep -q -E '^(==[0-9]+==ERROR: AddressSanitizer|.*runtime error: )' "$log"; then
    echo "FAIL $name: sanitizer report" >>"$log"; nf=$((nf + 1))
  fi
  if [ $((np + nf + ns)) -eq 0 ]; then
    if [ "$rc" -eq 77 ]; then ns=1; echo "SKIP $name: (no reason printed)" >>"$log"; else np=1; fi
  fi
  passed=$((passed + np)); failed=$((failed + nf)); skipped=$((skipped + ns))
  printf '%-50s %3d passed %3d failed %3d skipped  %6.1fs\n' "$name" "$np" "$nf" "$ns" \
    "$(awk "BEGIN{print $t1 - $t0}")"
  grep '^SKIP ' "$log" | sed 's/^/    /'
  if [ "$nf" -gt 0 ]; then
    failed_names+=("$name")
    echo "---- $log (last 40 lines) ----"
    tail -n 40 "$log"
    echo "----"
  fi
done
echo "total time: $(( $(date +%s) - start_all ))s"
[ ${#failed_names[@]} -gt 0 ] && echo "failed programs: ${failed_names[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
