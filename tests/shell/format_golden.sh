#!/usr/bin/env bash
# Golden tests of inspect-header, inspect-data and simulate-headers-merge against the public
# E2B-format fixtures (../shared/fixtures/e2b-format: headers written by another
# implementation, with their expected answers).
. "$(dirname "$0")/lib.sh"
need jq sha256sum
E=$FIX/e2b-format
[ -f "$E/expected.json" ] || { echo "SKIP format_golden: no fixtures at $E"; exit 77; }

# inspect-header -json must equal the file's content; inspect-data -logical its logical file
for b in $(jq -r '.builds | keys[]' "$E/expected.json"); do
  for k in $(jq -r --arg b "$b" '.builds[$b] | keys[]' "$E/expected.json"); do
    want=$(jq -S -c --arg b "$b" --arg k "$k" '.builds[$b][$k].header' "$E/expected.json")
    got=$("$BIN/inspect-header" -build "$b" -kind "$k" -storage "$E/storage" -json 2>"$T/err" | jq -S -c . 2>/dev/null)
    if [ "$got" = "$want" ]; then pass "inspect-header-json $k $b"; else fail "inspect-header-json $k $b" "$(head -c 300 "$T/err")"; fi
    # the human form names every mapping and tags the current build
    if "$BIN/inspect-header" -build "$b" -kind "$k" -storage "$E/storage" >"$T/h" 2>"$T/err" &&
       [ "$(grep -c ' := ' "$T/h")" = "$(jq --arg b "$b" --arg k "$k" '.builds[$b][$k].header.mappings | length' "$E/expected.json")" ] &&
       grep -q "^$b: .*(current)" "$T/h"; then
      pass "inspect-header-human $k $b"
    else
      fail "inspect-header-human $k $b" "$(head -c 300 "$T/err")"
    fi
    want=$(jq -r --arg b "$b" --arg k "$k" '.builds[$b][$k].logical_sha256' "$E/expected.json")
    got=$("$BIN/inspect-data" -build "$b" -kind "$k" -storage "$E/storage" -logical -o - 2>"$T/err" | sha256sum | cut -d' ' -f1)
    if [ "$got" = "$want" ]; then pass "inspect-data-logical $k $b"; else fail "inspect-data-logical $k $b" "sha256 $got, want $want $(head -c 300 "$T/err")"; fi
  done
done

# -logical with a block range: the same bytes as the slice of the whole file
b=$(jq -r '.chains[0][1][-1]' "$E/expected.json"); k=$(jq -r '.chains[0][0]' "$E/expected.json")
"$BIN/inspect-data" -build "$b" -kind "$k" -storage "$E/storage" -logical -o "$T/full" &&
"$BIN/inspect-data" -build "$b" -kind "$k" -storage "$E/storage" -logical -start 3 -end 40 -o "$T/part" &&
bs=$(jq -r --arg b "$b" --arg k "$k" '.builds[$b][$k].block_size' "$E/expected.json") &&
if cmp -s "$T/part" <(dd if="$T/full" bs="$bs" skip=3 count=37 status=none); then pass "inspect-data-logical-range"; else fail "inspect-data-logical-range"; fi

# raw mode: one line per block of the packed diff, and a summary that adds up
"$BIN/inspect-data" -build "$b" -kind "$k" -storage "$E/storage" >"$T/raw" 2>"$T/err"
size=$(stat -c %s "$E/storage/$b/$(jq -r --arg k "$k" 'if $k=="memfile" then "memfile" else "rootfs.ext4" end' -n)")
nb=$(( (size + bs - 1) / bs ))
if [ "$(grep -c '^block ' "$T/raw")" = "$nb" ] && grep -q "^blocks inspected: $nb\$" "$T/raw"; then pass "inspect-data-raw"; else fail "inspect-data-raw" "$(head -c 300 "$T/err")"; fi

# simulate-headers-merge -json agrees with the reference merge + normalize
norm='map(if .build_id == "00000000-0000-0000-0000-000000000000" then .build_storage_offset = 0 else . end)'
n=$(jq length "$E/merge_cases.json")
for i in $(seq 0 $((n - 1))); do
  base=$(jq -r ".[$i].base" "$E/merge_cases.json"); diff=$(jq -r ".[$i].diff" "$E/merge_cases.json")
  kind=memfile; [ -f "$E/merge/$base/memfile.header" ] || kind=rootfs
  want=$(jq -c ".[$i].merged_normalized | $norm" "$E/merge_cases.json")
  got=$("$BIN/simulate-headers-merge" -base "$base" -diff "$diff" -kind $kind -storage "$E/merge" -json 2>"$T/err" | jq -c "$norm" 2>/dev/null)
  if [ "$got" = "$want" ]; then pass "simulate-headers-merge-json case $i"; else fail "simulate-headers-merge-json case $i" "$(head -c 300 "$T/err")"; fi
done
# human form + visualization run and draw one character per block
base=$(jq -r ".[0].base" "$E/merge_cases.json"); diff=$(jq -r ".[0].diff" "$E/merge_cases.json")
if "$BIN/simulate-headers-merge" -base "$base" -diff "$diff" -kind memfile -storage "$E/merge" -visualize >"$T/vis" 2>"$T/err" &&
   grep -q '^merged mappings are valid' "$T/vis" && grep -q '█' "$T/vis"; then
  pass "simulate-headers-merge-visualize"
else
  fail "simulate-headers-merge-visualize" "$(head -c 300 "$T/err")"
fi

# every bad fixture is refused: exit 1-125, one line on stderr, fast
for b in $(jq -r '.[].build' "$E/bad_cases.json"); do
  name=$(jq -r --arg b "$b" '.[] | select(.build == $b) | .name' "$E/bad_cases.json")
  for cmd in "inspect-header" "inspect-data -logical -o $T/out" "inspect-data"; do
    start=$(date +%s%N)
    timeout 5 $BIN/$cmd -build "$b" -kind memfile -storage "$E/bad" >/dev/null 2>"$T/err"; rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    lines=$(wc -l <"$T/err")
    if [ $rc -ge 1 ] && [ $rc -le 125 ] && [ "$lines" = 1 ] && grep -q "^${cmd%% *}: error: " "$T/err" && [ $ms -lt 5000 ]; then
      pass "bad fixture '$name' ${cmd%% *}"
    else
      fail "bad fixture '$name' $cmd" "exit $rc, $lines stderr lines, ${ms}ms: $(head -c 300 "$T/err")"
    fi
  done
done
finish
