#!/usr/bin/env bash
# Bad input to the three format commands: every case of the issue's must-show list gets an
# exit status in 1-125, exactly one "<cmd>: error: ..." line on stderr, no crash, no sanitizer
# report (the ASan/UBSan builds in build/asan/bin run too when present) and takes < 5 s.
# Also the flag contract (CONTRACTS §1): -h exit 0, usage errors exit 2.
. "$(dirname "$0")/lib.sh"
GEN=$ROOT/build/tests/helpers/format_gen
[ -x "$GEN" ] || { fail format_bad "missing $GEN (make tests)"; finish; }
ST=$T/storage
"$GEN" bad "$ST" >"$T/cases" || { fail format_bad "format_gen failed"; finish; }
# a good build for the id and existence checks
"$GEN" chain "$ST" "$T/expect" 7 4096 16 2 memfile >"$T/good"
good=$(head -1 "$T/good")

bindirs=("$BIN")
[ -x "$ROOT/build/asan/bin/inspect-header" ] && bindirs+=("$ROOT/build/asan/bin")

# expect_refused NAME CMD ARGS...: 1-125, one error line, no sanitizer output, < 5 s
expect_refused() {
  local name=$1 cmd=$2; shift 2
  local start rc ms lines
  start=$(date +%s%N)
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1 timeout 5 "$cmd" "$@" >"$T/out" 2>"$T/err"; rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  lines=$(wc -l <"$T/err")
  if [ $rc -ge 1 ] && [ $rc -le 125 ] && [ "$lines" = 1 ] && grep -q "^$(basename "$cmd"): error: " "$T/err" &&
     ! grep -q -E 'AddressSanitizer|runtime error|LeakSanitizer' "$T/err" && [ $ms -lt 5000 ]; then
    pass "$name"
  else
    fail "$name" "exit $rc, $lines stderr lines, ${ms}ms: $(head -c 400 "$T/err")"
  fi
}

for dir in "${bindirs[@]}"; do
  tag=$([ "$dir" = "$BIN" ] && echo plain || echo asan)
  while read -r name id; do
    expect_refused "$tag $name inspect-header" "$dir/inspect-header" -build "$id" -kind memfile -storage "$ST"
    expect_refused "$tag $name inspect-header -json" "$dir/inspect-header" -build "$id" -kind memfile -storage "$ST" -json
    expect_refused "$tag $name inspect-data -logical" "$dir/inspect-data" -build "$id" -kind memfile -storage "$ST" -logical -o "$T/o"
    expect_refused "$tag $name inspect-data" "$dir/inspect-data" -build "$id" -kind memfile -storage "$ST"
    expect_refused "$tag $name simulate-headers-merge" "$dir/simulate-headers-merge" -base "$good" -diff "$id" -kind memfile -storage "$ST"
  done <"$T/cases"
  for cmd in inspect-header inspect-data; do
    expect_refused "$tag non-uuid build id $cmd" "$dir/$cmd" -build ../etc -kind memfile -storage "$ST"
    expect_refused "$tag missing build $cmd" "$dir/$cmd" -build 01234567-89ab-4def-8123-456789abcdef -kind memfile -storage "$ST"
    expect_refused "$tag missing storage $cmd" "$dir/$cmd" -build "$good" -kind memfile -storage "$T/nonexistent"
  done
  expect_refused "$tag non-uuid base simulate-headers-merge" "$dir/simulate-headers-merge" -base ../etc -diff "$good" -kind memfile -storage "$ST"
  expect_refused "$tag missing diff simulate-headers-merge" "$dir/simulate-headers-merge" -base "$good" -diff 01234567-89ab-4def-8123-456789abcdef -kind memfile -storage "$ST"
  expect_refused "$tag block range past the end" "$dir/inspect-data" -build "$good" -kind memfile -storage "$ST" -logical -start 3 -end 17 -o "$T/o"
done

# -json stays one JSON document on stdout, with the problems in it
while read -r name id; do
  "$BIN/inspect-header" -build "$id" -kind memfile -storage "$ST" -json >"$T/out" 2>/dev/null
  if jq -e '(.problems | length) >= 1 and (.problems[0].offset | type) == "number"' "$T/out" >/dev/null 2>&1; then
    pass "$name inspect-header -json problems"
  else
    fail "$name inspect-header -json problems" "$(head -c 300 "$T/out")"
  fi
done <"$T/cases"

# the short-diff message names the build, the file and the offset
id=$(awk '$1 == "short-diff-object" {print $2}' "$T/cases")
"$BIN/inspect-data" -build "$id" -kind memfile -storage "$ST" -logical -o "$T/o" 2>"$T/err"
if grep -q "build $id memfile: data object '$id/memfile' is 12388 bytes, but the mapping at logical offset 0 needs 16384" "$T/err"; then
  pass "short diff message"; else fail "short diff message" "$(cat "$T/err")"; fi
# inspect-header prints what it parsed, then each problem as [offset N] problem
id=$(awk '$1 == "gap" {print $2}' "$T/cases")
"$BIN/inspect-header" -build "$id" -kind memfile -storage "$ST" >"$T/out" 2>/dev/null
if grep -q '^Block size    4096 B' "$T/out" && grep -q '^\[offset 104\] gap before mapping 1' "$T/out"; then
  pass "problems after parsed output"; else fail "problems after parsed output" "$(cat "$T/out")"; fi

# flags
for cmd in inspect-header inspect-data simulate-headers-merge; do
  expect_status "$cmd -h" 0 "$BIN/$cmd" -h
  grep -q "^usage: $cmd" "$T/.out" || fail "$cmd -h usage on stdout"
  expect_status "$cmd no flags" 2 "$BIN/$cmd"
  expect_status "$cmd unknown flag" 2 "$BIN/$cmd" -bogus
done
expect_status "inspect-header bad kind" 2 "$BIN/inspect-header" -build "$good" -kind swap -storage "$ST"
expect_status "inspect-data -logical without -o" 2 "$BIN/inspect-data" -build "$good" -kind memfile -logical -storage "$ST"
expect_status "inspect-header -flag=value and --flag" 0 "$BIN/inspect-header" --build="$good" -kind=memfile --storage "$ST" --json
finish
