#!/usr/bin/env bash
# Multi-layer builds written by an independent writer (tests/helpers/format_gen: headers laid
# out byte by byte from a per-block model) with 4 KiB and 2 MiB blocks, generations 0-3:
# inspect-data -logical must reproduce every build's logical file byte for byte and
# inspect-header -json must describe exactly the header that was written. Also a legacy
# build (data object, no header).
. "$(dirname "$0")/lib.sh"
need jq cmp
GEN=$ROOT/build/tests/helpers/format_gen
[ -x "$GEN" ] || { fail format_layers "missing $GEN (make tests)"; finish; }

run_chain() { # name seed bs nblocks kind
  local name=$1 seed=$2 bs=$3 nb=$4 kind=$5 st=$T/$1/storage ex=$T/$1/expect g=0 id ok
  mkdir -p "$st" "$ex"
  "$GEN" chain "$st" "$ex" "$seed" "$bs" "$nb" 4 "$kind" >"$T/$name.ids" || { fail "$name" "format_gen failed"; return; }
  while read -r id; do
    ok=1
    "$BIN/inspect-data" -build "$id" -kind "$kind" -storage "$st" -logical -o "$T/out" 2>"$T/err" &&
      cmp -s "$T/out" "$ex/$id/logical" || ok=0
    [ $ok = 1 ] && pass "$name gen$g logical" || fail "$name gen$g logical" "$(head -c 300 "$T/err")"
    "$BIN/inspect-header" -build "$id" -kind "$kind" -storage "$st" -json >"$T/h.json" 2>"$T/err" &&
      jq -e --argjson g $g --argjson bs "$bs" --argjson size $((bs * nb)) --arg id "$id" '
        .version == 3 and .generation == $g and .block_size == $bs and .size == $size and .build_id == $id
        and ([.mappings[].length] | add) == $size and .mappings[0].offset == 0' "$T/h.json" >/dev/null
    [ $? = 0 ] && pass "$name gen$g header" || fail "$name gen$g header" "$(head -c 300 "$T/err")"
    # a range in the middle, through stdout
    if [ "$nb" -gt 6 ]; then
      "$BIN/inspect-data" -build "$id" -kind "$kind" -storage "$st" -logical -start 2 -end $((nb - 3)) -o - 2>"$T/err" |
        cmp -s - <(dd if="$ex/$id/logical" bs="$bs" skip=2 count=$((nb - 5)) status=none) &&
        pass "$name gen$g range" || fail "$name gen$g range" "$(head -c 300 "$T/err")"
    fi
    g=$((g + 1))
  done <"$T/$name.ids"
  [ $g = 4 ] || fail "$name" "expected 4 builds, got $g"
}

run_chain rootfs-4k-a 1 4096 700 rootfs
run_chain rootfs-4k-b 2 4096 97 rootfs
run_chain memfile-4k 3 4096 513 memfile
run_chain memfile-2m 4 2097152 12 memfile
run_chain memfile-2m-b 5 2097152 7 memfile

# legacy build: the header is synthesized (version 1, one mapping over the object)
st=$T/legacy/storage ex=$T/legacy/expect
mkdir -p "$st" "$ex"
id=$("$GEN" legacy "$st" "$ex" 9 $((6 * 2097152)) memfile)
"$BIN/inspect-data" -build "$id" -kind memfile -storage "$st" -logical -o "$T/out" 2>"$T/err" &&
  cmp -s "$T/out" "$ex/$id/logical" && pass "legacy logical" || fail "legacy logical" "$(head -c 300 "$T/err")"
"$BIN/inspect-header" -build "$id" -kind memfile -storage "$st" -json 2>"$T/err" |
  jq -e '.version == 1 and .block_size == 2097152 and (.mappings | length) == 1' >/dev/null &&
  pass "legacy header" || fail "legacy header" "$(head -c 300 "$T/err")"
id=$("$GEN" legacy "$st" "$ex" 10 $((5 * 4096)) rootfs)
"$BIN/inspect-data" -build "$id" -kind rootfs -storage "$st" -logical -o - 2>"$T/err" |
  cmp -s - "$ex/$id/logical" && pass "legacy rootfs logical" || fail "legacy rootfs logical" "$(head -c 300 "$T/err")"

# builds under DIR/templates/ are found when that directory exists
mkdir -p "$T/tdir/templates"
"$GEN" chain "$T/tdir/templates" "$T/tdir-expect" 11 4096 20 2 rootfs >"$T/tdir.ids"
id=$(tail -1 "$T/tdir.ids")
"$BIN/inspect-data" -build "$id" -kind rootfs -storage "$T/tdir" -logical -o - 2>"$T/err" |
  cmp -s - "$T/tdir-expect/$id/logical" && pass "templates subdirectory" || fail "templates subdirectory" "$(head -c 300 "$T/err")"
# and through TEMPLATE_BUCKET_NAME when no -storage is given
TEMPLATE_BUCKET_NAME=$T/tdir "$BIN/inspect-header" -build "${id^^}" -kind rootfs -json >/dev/null 2>"$T/err" &&
  pass "TEMPLATE_BUCKET_NAME location, upper-case id" || fail "TEMPLATE_BUCKET_NAME location" "$(head -c 300 "$T/err")"
finish
