#!/usr/bin/env bash
# copy-build throughput against s3rver, next to curl moving the same bytes in one request.
#   upload:   copy-build local -> s3://  vs  curl -T FILE (one signed PUT)
#   download: copy-build s3:// -> local  vs  curl -o FILE (one signed GET)
# The build is a legacy build holding one BENCH_MIB (default 256) MiB object, so both sides
# move the same bytes. Best of BENCH_RUNS (default 3) runs each, alternating ours and curl.
# Uploads are measured twice: as configured (multipart above 64 MiB, 4 parts in flight) and
# as one PUT (ORCH_S3_MULTIPART_THRESHOLD=1G), because s3rver reassembles multipart uploads
# by copying the whole object again on complete, which real S3 does not. Downloads likewise:
# as configured (parallel ranged GETs above 64 MiB, which pays off against real S3's
# per-stream limits) and as one GET (ORCH_S3_UPLOAD_THREADS=1); s3rver is one node process.
# ours fsyncs what it downloads before the rename; "curl+sync" is curl -o followed by sync.
set -uo pipefail
. "$(dirname "$0")/../../tests/shell/lib.sh"
. "$ROOT/tests/bucket/lib.sh"
MIB=${BENCH_MIB:-256}
RUNS=${BENCH_RUNS:-3}
s3_install >/dev/null 2>&1 || { echo "bench copy: SKIP: s3rver unavailable"; exit 0; }
[ -x "$BIN/copy-build" ] && [ -x "$ROOT/build/tests/helpers/bucket_mkbuild" ] ||
  { echo "bench copy: needs make all tests"; exit 1; }
s3_start || exit 1
BT=$ROOT/build/tests/helpers/bucket_tool
ID=$("$ROOT/build/tests/helpers/bucket_mkbuild" legacy "$T/src" "$MIB")
OBJ=$T/src/$ID/rootfs.ext4
BYTES=$(stat -c %s "$OBJ")
S3=s3://$S3_BUCKET/bench
CURL=(curl -sS --fail --aws-sigv4 "aws:amz:us-east-1:s3" -u S3RVER:S3RVER -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")

secs() { awk "BEGIN { printf \"%.3f\", ($2 - $1) / 1e9 }"; }
best_up_ours=999999 best_up_single=999999 best_up_curl=999999 best_dn_ours=999999 best_dn_single=999999
best_dn_curl=999999 best_dn_curlsync=999999
min() { awk "BEGIN { print ($1 < $2) ? $1 : $2 }"; }
for ((r = 1; r <= RUNS; r++)); do
  "$BT" rm "$S3" "$ID/" >/dev/null 2>&1
  t0=$(date +%s%N)
  "$BIN/copy-build" -build "$ID" -from "$T/src" -to "$S3" 2>"$T/up.err" || { cat "$T/up.err"; exit 1; }
  t1=$(date +%s%N); best_up_ours=$(min "$best_up_ours" "$(secs "$t0" "$t1")")

  "$BT" rm "$S3" "$ID/" >/dev/null 2>&1
  t0=$(date +%s%N)
  ORCH_S3_MULTIPART_THRESHOLD=1G "$BIN/copy-build" -build "$ID" -from "$T/src" -to "$S3" 2>"$T/up.err" ||
    { cat "$T/up.err"; exit 1; }
  t1=$(date +%s%N); best_up_single=$(min "$best_up_single" "$(secs "$t0" "$t1")")

  t0=$(date +%s%N)
  "${CURL[@]}" -T "$OBJ" "$S3_URL/$S3_BUCKET/curl/obj" -o /dev/null || exit 1
  t1=$(date +%s%N); best_up_curl=$(min "$best_up_curl" "$(secs "$t0" "$t1")")

  rm -rf "$T/dl"
  t0=$(date +%s%N)
  "$BIN/copy-build" -build "$ID" -from "$S3" -to "$T/dl" 2>"$T/dn.err" || { cat "$T/dn.err"; exit 1; }
  t1=$(date +%s%N); best_dn_ours=$(min "$best_dn_ours" "$(secs "$t0" "$t1")")
  cmp -s "$OBJ" "$T/dl/$ID/rootfs.ext4" || { echo "bench copy: downloaded object differs"; exit 1; }

  rm -rf "$T/dl"
  t0=$(date +%s%N)
  ORCH_S3_UPLOAD_THREADS=1 "$BIN/copy-build" -build "$ID" -from "$S3" -to "$T/dl" 2>"$T/dn.err" ||
    { cat "$T/dn.err"; exit 1; }
  t1=$(date +%s%N); best_dn_single=$(min "$best_dn_single" "$(secs "$t0" "$t1")")

  rm -f "$T/curl.obj"
  t0=$(date +%s%N)
  "${CURL[@]}" -o "$T/curl.obj" "$S3_URL/$S3_BUCKET/curl/obj" || exit 1
  t1=$(date +%s%N); best_dn_curl=$(min "$best_dn_curl" "$(secs "$t0" "$t1")")

  rm -f "$T/curl.obj"
  t0=$(date +%s%N)
  "${CURL[@]}" -o "$T/curl.obj" "$S3_URL/$S3_BUCKET/curl/obj" && sync "$T/curl.obj" || exit 1
  t1=$(date +%s%N); best_dn_curlsync=$(min "$best_dn_curlsync" "$(secs "$t0" "$t1")")
done
mbps() { awk "BEGIN { printf \"%.1f\", $BYTES / 1e6 / $1 }"; }
ratio() { awk "BEGIN { printf \"%.2f\", $2 / $1 }"; }
echo "copy-build vs curl, one $MIB MiB object, s3rver on 127.0.0.1, best of $RUNS:"
printf '  upload   ours %7.1f MB/s (%.2f s)   curl %7.1f MB/s (%.2f s)   ours/curl %s   (multipart)\n' \
  "$(mbps "$best_up_ours")" "$best_up_ours" "$(mbps "$best_up_curl")" "$best_up_curl" "$(ratio "$best_up_ours" "$best_up_curl")"
printf '  upload   ours %7.1f MB/s (%.2f s)   curl %7.1f MB/s (%.2f s)   ours/curl %s   (one PUT)\n' \
  "$(mbps "$best_up_single")" "$best_up_single" "$(mbps "$best_up_curl")" "$best_up_curl" "$(ratio "$best_up_single" "$best_up_curl")"
printf '  download ours %7.1f MB/s (%.2f s)   curl %7.1f MB/s (%.2f s)   ours/curl %s   (parallel ranges)\n' \
  "$(mbps "$best_dn_ours")" "$best_dn_ours" "$(mbps "$best_dn_curl")" "$best_dn_curl" "$(ratio "$best_dn_ours" "$best_dn_curl")"
printf '  download ours %7.1f MB/s (%.2f s)   curl %7.1f MB/s (%.2f s)   ours/curl %s   (one GET)\n' \
  "$(mbps "$best_dn_single")" "$best_dn_single" "$(mbps "$best_dn_curl")" "$best_dn_curl" "$(ratio "$best_dn_single" "$best_dn_curl")"
printf '  download curl+sync %7.1f MB/s (%.2f s): ours (one GET) / curl+sync %s\n' \
  "$(mbps "$best_dn_curlsync")" "$best_dn_curlsync" "$(ratio "$best_dn_single" "$best_dn_curlsync")"
echo "  (ours includes checksumming, the skip check, verification and the build's small objects)"
