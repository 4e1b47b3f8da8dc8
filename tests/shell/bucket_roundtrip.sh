#!/usr/bin/env bash
# Bucket storage against a real S3 server (s3rver): copy-build of a 3-layer build
# local -> s3 -> local with every object byte-equal, skips on a second copy, s3 -> gs://
# (same server through GCS_ENDPOINT_URL), legacy builds, metadata.json last, and the inspect
# commands reading through -storage s3://.
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/bucket/lib.sh"
s3_need
[ -x "$BIN/copy-build" ] || { echo "SKIP $(basename "$0"): build/bin/copy-build not built"; exit 77; }
s3_start || { fail s3rver_start "could not start s3rver"; finish; }
MK=$ROOT/build/tests/helpers/bucket_mkbuild
BT=$ROOT/build/tests/helpers/bucket_tool
S3=s3://$S3_BUCKET/builds

read -r A B C < <("$MK" "$T/src" 8 4) || { fail mkbuild "bucket_mkbuild failed"; finish; }
LEG=$("$MK" legacy "$T/src" 2)

# the objects copy-build must move for C: C's own objects + every layer's data objects
expected_keys() {
  for b in "$A" "$B" "$C"; do echo "$b/memfile"; echo "$b/rootfs.ext4"; done
  for n in memfile.header rootfs.ext4.header snapfile metadata.json; do echo "$C/$n"; done
}
expected_keys | sort >"$T/want.keys"

# 1. local -> s3 through a proxy that only counts (no faults)
proxy_start 0 0 0 || { fail proxy_start "faultproxy did not start"; finish; }
if AWS_ENDPOINT_URL=$PROXY_URL "$BIN/copy-build" -build "$C" -from "$T/src" -to "$S3" 2>"$T/up.err"; then
  pass roundtrip_upload
else
  fail roundtrip_upload "$(tail -n 3 "$T/up.err")"
fi
grep -qE '^copy-build: [0-9]+/10 objects \([0-9]+ skipped\), [0-9.]+/[0-9.]+ MiB, [0-9.]+ MB/s' "$T/up.err" &&
  grep -q '^copy-build: done: .* 10 copied' "$T/up.err" && pass progress_line ||
  fail progress_line "$(head -c 300 "$T/up.err")"
"$BT" list "$S3" >"$T/got.keys"
if diff -u "$T/want.keys" "$T/got.keys" >"$T/keys.diff"; then
  pass upload_exact_object_set
else
  fail upload_exact_object_set "$(head -c 400 "$T/keys.diff")"
fi
# connections are reused: far fewer TCP connections than requests
nreq=$(wc -l <"$PROXY_LOG"); nconn=$(wc -l <"$PROXY_LOG.conns")
echo "  upload of 10 objects: $nreq requests over $nconn connections"
[ "$nconn" -le 12 ] && [ "$nconn" -lt "$nreq" ] && pass connections_reused ||
  fail connections_reused "$nreq requests over $nconn connections"
# every request carried a valid SigV4 signature (the proxy recomputes it)
nsig=$(grep -c 'sigv4-mismatch' "$PROXY_LOG")
[ "$nsig" = 0 ] && [ -s "$PROXY_LOG" ] && pass sigv4_signatures_verify ||
  fail sigv4_signatures_verify "$(grep -m1 sigv4-mismatch "$PROXY_LOG")"
# metadata.json is the last object written
last_put=$(grep -E ' (PUT|POST) ' "$PROXY_LOG" | grep -v 'uploads=' | tail -n 1)
case $last_put in
*"/$C/metadata.json"*) pass metadata_written_last ;;
*) fail metadata_written_last "last write was: $last_put" ;;
esac
# checksums recorded with every object
bad=0
while read -r k; do
  read -r size crc < <("$BT" stat "$S3" "$k")
  want=$(stat -c %s "$T/src/$k")
  [ "$crc" != unknown ] && [ "$size" = "$want" ] || { bad=1; echo "  $k: $size $crc (want $want)"; }
done <"$T/want.keys"
[ $bad = 0 ] && pass crc32c_metadata_recorded || fail crc32c_metadata_recorded "objects without x-amz-meta-crc32c"

# listing follows continuation tokens (the proxy makes s3rver answer 3 keys per page)
proxy_stop
LIST_MAX_KEYS=3 proxy_start 0 0 0
AWS_ENDPOINT_URL=$PROXY_URL "$BT" list "$S3" >"$T/paged.keys" 2>"$T/paged.err"
pages=$(grep -c 'list-type=2' "$PROXY_LOG")
if diff -q "$T/want.keys" "$T/paged.keys" >/dev/null && [ "$pages" -ge 4 ] && ! grep -q sigv4-mismatch "$PROXY_LOG"; then
  pass list_paginated
else
  fail list_paginated "$pages pages: $(cat "$T/paged.err"; head -c 200 "$T/paged.keys")"
fi
proxy_stop
proxy_start 0 0 0

# 2. s3 -> local: byte-equal
if "$BIN/copy-build" -build "$C" -from "$S3" -to "$T/dst" 2>"$T/down.err"; then
  pass roundtrip_download
else
  fail roundtrip_download "$(tail -n 3 "$T/down.err")"
fi
(cd "$T/dst" && find . -type f | sed 's|^\./||' | sort) >"$T/dst.keys"
bad=0
while read -r k; do cmp -s "$T/src/$k" "$T/dst/$k" || { bad=1; echo "  differs or missing: $k"; }; done <"$T/want.keys"
if [ $bad = 0 ] && diff -q "$T/want.keys" "$T/dst.keys" >/dev/null; then
  pass roundtrip_byte_equal
else
  fail roundtrip_byte_equal "local copy differs from the source"
fi

# 3. second copies transfer nothing
: >"$PROXY_LOG"
AWS_ENDPOINT_URL=$PROXY_URL "$BIN/copy-build" -build "$C" -from "$T/src" -to "$S3" 2>"$T/again.err"
rc=$?
puts=$(grep -cE ' (PUT|POST) ' "$PROXY_LOG")
if [ $rc = 0 ] && grep -q '0 copied (0 bytes), 10 skipped' "$T/again.err" && [ "$puts" = 0 ]; then
  pass second_upload_skips_all
else
  fail second_upload_skips_all "rc=$rc puts=$puts: $(tail -n 1 "$T/again.err")"
fi
touch -d '2001-01-01' "$T/dst/$A/memfile"
if "$BIN/copy-build" -build "$C" -from "$S3" -to "$T/dst" 2>"$T/again2.err" &&
  grep -q '0 copied (0 bytes), 10 skipped' "$T/again2.err"; then
  pass second_download_skips_all
else
  fail second_download_skips_all "$(tail -n 1 "$T/again2.err")"
fi
# a changed object at the destination is copied again (and only that one)
printf 'x' | dd of="$T/dst/$B/rootfs.ext4" bs=1 seek=100 conv=notrunc 2>/dev/null
if "$BIN/copy-build" -build "$C" -from "$S3" -to "$T/dst" 2>"$T/again3.err" &&
  grep -q ' 1 copied' "$T/again3.err" && cmp -s "$T/src/$B/rootfs.ext4" "$T/dst/$B/rootfs.ext4"; then
  pass changed_object_recopied
else
  fail changed_object_recopied "$(tail -n 1 "$T/again3.err")"
fi

# 4. bucket -> bucket: s3:// -> gs:// (the same s3rver through GCS_ENDPOINT_URL)
export GCS_ENDPOINT_URL=$S3_URL GCS_ACCESS_KEY_ID=S3RVER GCS_SECRET_ACCESS_KEY=S3RVER
GS=gs://$S3_BUCKET/gcs-copy
if "$BIN/copy-build" -build "$C" -from "$S3" -to "$GS" 2>"$T/gs.err" &&
  "$BIN/copy-build" -build "$C" -from "$GS" -to "$T/dst-gs" 2>>"$T/gs.err"; then
  bad=0
  while read -r k; do cmp -s "$T/src/$k" "$T/dst-gs/$k" || bad=1; done <"$T/want.keys"
  [ $bad = 0 ] && pass bucket_to_gs_roundtrip || fail bucket_to_gs_roundtrip "objects differ after s3 -> gs -> local"
else
  fail bucket_to_gs_roundtrip "$(tail -n 2 "$T/gs.err")"
fi

# GCS answers carry x-goog-hash instead of x-amz-meta-crc32c: checksums still known, skips work
proxy_stop
GCS_HEADERS=1 proxy_start 0 0 0
: >"$PROXY_LOG"
if GCS_ENDPOINT_URL=$PROXY_URL "$BT" stat "$GS" "$C/memfile.header" >"$T/gstat" 2>&1 &&
  [ "$(cut -d' ' -f2 "$T/gstat")" != unknown ] &&
  GCS_ENDPOINT_URL=$PROXY_URL "$BIN/copy-build" -build "$C" -from "$GS" -to "$T/dst-gs" 2>"$T/gs2.err" &&
  grep -q '0 copied (0 bytes), 10 skipped' "$T/gs2.err" && ! grep -q ' GET .*/memfile ' "$PROXY_LOG"; then
  pass gcs_hash_header_checksums
else
  fail gcs_hash_header_checksums "$(cat "$T/gstat"; tail -n 1 "$T/gs2.err")"
fi
proxy_stop
proxy_start 0 0 0

# 5. legacy build (data object, no header)
if "$BIN/copy-build" -build "$LEG" -from "$T/src" -to "$S3" 2>"$T/leg.err" &&
  [ "$("$BT" list "$S3" "$LEG/")" = "$LEG/metadata.json
$LEG/rootfs.ext4
$LEG/snapfile" ]; then
  pass legacy_build_copied
else
  fail legacy_build_copied "$(tail -n 2 "$T/leg.err"; "$BT" list "$S3" "$LEG/")"
fi

# 6. errors: missing build, invalid header
expect_status missing_build_fails 1 "$BIN/copy-build" -build 11111111-2222-3333-4444-555555555555 -from "$S3" -to "$T/x"
grep -q 'not found' "$T/.err" && [ ! -e "$T/x" ] && pass missing_build_message ||
  fail missing_build_message "$(cat "$T/.err"; ls -d "$T/x" 2>&1)"
cp -r "$T/src/$C" "$T/bad-$C" && mkdir -p "$T/badsrc" && mv "$T/bad-$C" "$T/badsrc/$C"
head -c 70 "$T/src/$C/memfile.header" >"$T/badsrc/$C/memfile.header"
expect_status invalid_header_refused 1 "$BIN/copy-build" -build "$C" -from "$T/badsrc" -to "$T/x2"
grep -q 'invalid header' "$T/.err" && [ ! -e "$T/x2/$C/metadata.json" ] && pass invalid_header_message ||
  fail invalid_header_message "$(cat "$T/.err")"
expect_status same_location_usage 2 "$BIN/copy-build" -build "$C" -from "$S3" -to "$S3"

# 7. inspect commands through -storage s3:// (they read only what they need)
if [ -x "$BIN/inspect-header" ]; then
  "$BIN/inspect-header" -build "$C" -kind memfile -storage "$T/src" >"$T/ih.local" 2>&1
  if "$BIN/inspect-header" -build "$C" -kind memfile -storage "$S3" >"$T/ih.s3" 2>"$T/ih.err" &&
    diff -q "$T/ih.local" "$T/ih.s3" >/dev/null; then
    pass inspect_header_s3
  else
    fail inspect_header_s3 "$(head -c 300 "$T/ih.err")"
  fi
else
  skip inspect_header_s3 "inspect-header not built"
fi
if [ -x "$BIN/inspect-data" ]; then
  for kind in memfile rootfs; do
    if "$BIN/inspect-data" -build "$C" -kind $kind -logical -o "$T/logical.$kind" -storage "$S3" 2>"$T/id.err" &&
      cmp -s "$T/logical.$kind" "$T/src/expected-$kind"; then
      pass inspect_data_logical_s3_$kind
    else
      fail inspect_data_logical_s3_$kind "$(head -c 300 "$T/id.err")"
    fi
  done
  # a few blocks of the raw diff: only those bytes are fetched
  : >"$PROXY_LOG"
  if AWS_ENDPOINT_URL=$PROXY_URL "$BIN/inspect-data" -build "$C" -kind memfile -start 0 -end 4 -storage "$S3" \
    >"$T/id.out" 2>"$T/id.err"; then
    fetched=$(grep ' GET ' "$PROXY_LOG" | sed -nE 's/.* bytes=([0-9]+).*/\1/p' | awk '{s+=$1} END {print s+0}')
    total=$(stat -c %s "$T/src/$C/memfile")
    echo "  inspect-data -start 0 -end 4: fetched $fetched of $total bytes in $(grep -c ' GET ' "$PROXY_LOG") GETs"
    [ "$fetched" -lt $((total / 4)) ] && pass inspect_data_fetches_only_touched ||
      fail inspect_data_fetches_only_touched "fetched $fetched of $total bytes"
  else
    fail inspect_data_fetches_only_touched "$(head -c 300 "$T/id.err")"
  fi
else
  skip inspect_data_logical_s3 "inspect-data not built"
fi

# 8. mount-rootfs -storage s3:// (a legacy build holding a real ext4 image): e2fsck through
# the chunk cache reads only the chunks it touches (ranged GETs counted at the proxy)
if [ -x "$BIN/mount-rootfs" ] && command -v mkfs.ext4 >/dev/null && [ -e /dev/fuse ] && command -v losetup >/dev/null; then
  MID=70000000-0000-4000-8000-0000000000a1
  mkdir -p "$T/mroot" "$T/msrc/$MID" && head -c 3000000 /dev/urandom >"$T/mroot/blob" && echo hi >"$T/mroot/hi"
  mkfs.ext4 -q -F -b 4096 -d "$T/mroot" "$T/msrc/$MID/rootfs.ext4" 64M >/dev/null 2>&1
  echo '{"version":2}' >"$T/msrc/$MID/metadata.json"
  "$BIN/copy-build" -build "$MID" -from "$T/msrc" -to "$S3" 2>/dev/null
  : >"$PROXY_LOG"
  AWS_ENDPOINT_URL=$PROXY_URL timeout 120 "$BIN/mount-rootfs" -build "$MID" -storage "$S3" -verify -v >"$T/mr.out" 2>&1
  rc=$?
  gets=$(grep -c ' GET .*/rootfs.ext4 206 ' "$PROXY_LOG")
  echo "  mount-rootfs -verify over s3: exit $rc, $gets ranged GETs of 16 chunks; $(grep -o '[0-9]* requests, [0-9]* ranged reads' "$T/mr.out")"
  if [ $rc = 0 ] && grep -q clean "$T/mr.out" && [ "$gets" -ge 1 ] && [ "$gets" -le 8 ]; then
    pass mount_rootfs_verify_s3_touched_chunks_only
  else
    fail mount_rootfs_verify_s3_touched_chunks_only "exit $rc, $gets GETs: $(tail -n 3 "$T/mr.out")"
  fi
else
  skip mount_rootfs_verify_s3 "needs mount-rootfs, mkfs.ext4, /dev/fuse and losetup"
fi

# 9. TEMPLATE_BUCKET_NAME resolution: a URL is used as is
if TEMPLATE_BUCKET_NAME=$S3 "$BIN/copy-build" -build "$C" -to "$T/dst-env" 2>"$T/env.err" &&
  cmp -s "$T/src/$C/metadata.json" "$T/dst-env/$C/metadata.json"; then
  pass template_bucket_name_source
else
  fail template_bucket_name_source "$(tail -n 2 "$T/env.err")"
fi
finish
