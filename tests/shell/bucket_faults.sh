#!/usr/bin/env bash
# Bucket storage under faults, against s3rver behind tests/bucket/faultproxy.js:
# - 20 % of requests answered 500 (plus dropped connections and delays): copies succeed
#   through retries, both directions, multipart parts included;
# - wrong keys: a clear authentication error at once, no retry storm (requests counted);
# - server killed mid-copy (upload and download): non-zero exit, an error naming the
#   object, and nothing at the destination that looks complete but is not.
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/bucket/lib.sh"
s3_need
[ -x "$BIN/copy-build" ] || { echo "SKIP $(basename "$0"): build/bin/copy-build not built"; exit 77; }
s3_start || { fail s3rver_start "could not start s3rver"; finish; }
MK=$ROOT/build/tests/helpers/bucket_mkbuild
BT=$ROOT/build/tests/helpers/bucket_tool
read -r A B C < <("$MK" "$T/src" 8 4) || { fail mkbuild "bucket_mkbuild failed"; finish; }
keys() {
  for b in "$A" "$B" "$C"; do echo "$b/memfile"; echo "$b/rootfs.ext4"; done
  for n in memfile.header rootfs.ext4.header snapfile metadata.json; do echo "$C/$n"; done
}
keys | sort >"$T/want.keys"
# same_objects DIR: every expected object in DIR equals the source
same_objects() {
  local k
  while read -r k; do cmp -s "$T/src/$k" "$1/$k" || { echo "  differs: $k" >&2; return 1; }; done <"$T/want.keys"
}
# fast retries, small multipart parts so parts are exercised too
export ORCH_S3_RETRY_BASE_MS=10 ORCH_S3_RETRY_MAX_MS=200 ORCH_S3_MAX_ATTEMPTS=12
export ORCH_S3_MULTIPART_THRESHOLD=2M ORCH_S3_PART_SIZE=1M

# 1. 20 % 500s, 3 % dropped connections, up to 20 ms delay
proxy_start 0.2 0.03 20 || { fail proxy_start "faultproxy did not start"; finish; }
S3=s3://$S3_BUCKET/faulty
if AWS_ENDPOINT_URL=$PROXY_URL "$BIN/copy-build" -build "$C" -from "$T/src" -to "$S3" 2>"$T/up.err"; then
  n500=$(grep -c ' 500$' "$PROXY_LOG"); ndrop=$(grep -c ' drop$' "$PROXY_LOG"); nreq=$(wc -l <"$PROXY_LOG")
  echo "  upload: $nreq requests, $n500 answered 500, $ndrop dropped, $(grep -c sigv4-mismatch "$PROXY_LOG") bad signatures"
  [ "$n500" -gt 0 ] && pass faults_upload_succeeds || fail faults_upload_succeeds "no 500 was injected ($nreq requests)"
else
  fail faults_upload_succeeds "$(tail -n 3 "$T/up.err")"
fi
"$BIN/copy-build" -build "$C" -from "$S3" -to "$T/check1" 2>/dev/null && same_objects "$T/check1" &&
  pass faults_upload_byte_equal || fail faults_upload_byte_equal "objects differ after a faulty upload"
: >"$PROXY_LOG"
if AWS_ENDPOINT_URL=$PROXY_URL "$BIN/copy-build" -build "$C" -from "$S3" -to "$T/dl1" 2>"$T/dl.err" &&
  same_objects "$T/dl1"; then
  echo "  download: $(wc -l <"$PROXY_LOG") requests, $(grep -c ' 500$' "$PROXY_LOG") answered 500"
  pass faults_download_succeeds
else
  fail faults_download_succeeds "$(tail -n 3 "$T/dl.err")"
fi
# ranged reads under faults (the block layer's chunk fetches)
if AWS_ENDPOINT_URL=$PROXY_URL "$BT" read "$S3" "$A/memfile" 12345 300000 >"$T/range.out" 2>"$T/range.err" &&
  cmp -s "$T/range.out" <(tail -c +12346 "$T/src/$A/memfile" | head -c 300000); then
  pass faults_ranged_read
else
  fail faults_ranged_read "$(cat "$T/range.err")"
fi
proxy_stop

# requests that are never answered: the low-speed timeout gives up on them and retries
HANG_RATE=0.08 proxy_start 0 0 0
S3H=s3://$S3_BUCKET/hangs
t0=$(date +%s)
if AWS_ENDPOINT_URL=$PROXY_URL ORCH_S3_LOW_SPEED_SECONDS=1 "$BIN/copy-build" -build "$C" -from "$T/src" -to "$S3H" \
  2>"$T/hang.err" && "$BIN/copy-build" -build "$C" -from "$S3H" -to "$T/check-hang" 2>/dev/null &&
  same_objects "$T/check-hang"; then
  echo "  hangs: $(grep -c ' hang$' "$PROXY_LOG") of $(wc -l <"$PROXY_LOG") requests never answered; copy took $(( $(date +%s) - t0 )) s"
  [ "$(grep -c ' hang$' "$PROXY_LOG")" -gt 0 ] && pass timeouts_retried || fail timeouts_retried "no request hung"
else
  fail timeouts_retried "$(tail -n 2 "$T/hang.err")"
fi
proxy_stop

# 2. wrong keys: one clear error at once, no retries
proxy_start 0 0 0
t0=$(date +%s%N)
AWS_ENDPOINT_URL=$PROXY_URL AWS_ACCESS_KEY_ID=WRONG "$BIN/copy-build" -build "$C" -from "$T/src" -to "$S3" \
  >/dev/null 2>"$T/auth.err"
rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
nreq=$(wc -l <"$PROXY_LOG")
echo "  wrong keys (upload): exit $rc after $ms ms, $nreq requests: $(cat "$T/auth.err")"
if [ $rc = 1 ] && grep -q 'authentication failed (HTTP 403' "$T/auth.err" && grep -q AWS_ACCESS_KEY_ID "$T/auth.err" &&
  [ "$nreq" -le 1 ] && [ "$ms" -lt 3000 ]; then
  pass wrong_keys_upload_fails_at_once
else
  fail wrong_keys_upload_fails_at_once "exit $rc, $nreq requests, $ms ms"
fi
: >"$PROXY_LOG"
AWS_ENDPOINT_URL=$PROXY_URL AWS_ACCESS_KEY_ID=WRONG "$BIN/copy-build" -build "$C" -from "$S3" -to "$T/x" \
  >/dev/null 2>"$T/auth2.err"
rc=$?
nreq=$(wc -l <"$PROXY_LOG")
if [ $rc = 1 ] && grep -q 'authentication failed' "$T/auth2.err" && [ "$nreq" -le 1 ] && [ ! -e "$T/x/$C" ]; then
  pass wrong_keys_download_fails_at_once
else
  fail wrong_keys_download_fails_at_once "exit $rc, $nreq requests: $(cat "$T/auth2.err")"
fi
# a known key id with the wrong secret: the signature does not verify (checked by the proxy)
: >"$PROXY_LOG"
AWS_ENDPOINT_URL=$PROXY_URL AWS_SECRET_ACCESS_KEY=wrong "$BIN/copy-build" -build "$C" -from "$T/src" -to "$S3" \
  >/dev/null 2>"$T/auth3.err"
rc=$?
nreq=$(wc -l <"$PROXY_LOG")
if [ $rc = 1 ] && grep -q 'authentication failed (HTTP 403 SignatureDoesNotMatch' "$T/auth3.err" && [ "$nreq" -le 1 ]; then
  pass wrong_secret_fails_at_once
else
  fail wrong_secret_fails_at_once "exit $rc, $nreq requests: $(cat "$T/auth3.err")"
fi
unset GCS_ACCESS_KEY_ID GCS_SECRET_ACCESS_KEY
expect_status gs_without_keys_fails 1 "$BIN/copy-build" -build "$C" -from "$T/src" -to "gs://$S3_BUCKET/x"
grep -q 'GCS_ACCESS_KEY_ID' "$T/.err" && pass gs_without_keys_message || fail gs_without_keys_message "$(cat "$T/.err")"
proxy_stop

# 3. server killed mid-upload: a big base layer, every object multipart, one object at a time
read -r BA BB BC < <("$MK" "$T/big" 96 4) || { fail mkbuild_big "bucket_mkbuild failed"; finish; }
KILL=s3://$S3_BUCKET/killed
ORCH_S3_MULTIPART_THRESHOLD=0 ORCH_S3_PART_SIZE=4M ORCH_S3_UPLOAD_THREADS=2 ORCH_S3_MAX_ATTEMPTS=3 ORCH_S3_RETRY_BASE_MS=50 \
  "$BIN/copy-build" -parallel 1 -build "$BC" -from "$T/big" -to "$KILL" 2>"$T/kill.err" &
cb=$!
on_exit "kill $cb"
killed=0
for ((i = 0; i < 600; i++)); do
  for kf in "$S3_DIR/$S3_BUCKET"/.*uploads*/*/key; do
    [ -f "$kf" ] && grep -q "^killed/$BA/memfile" "$kf" && [ -s "$(dirname "$kf")/2" ] && { killed=1; break; }
  done
  [ $killed = 1 ] && break
  kill -0 $cb 2>/dev/null || break
  sleep 0.02
done
kill -9 "$S3_PID"; wait "$S3_PID" 2>/dev/null
wait $cb
rc=$?
echo "  killed s3rver (caught in the big upload: $killed); copy-build exit $rc: $(tail -n 1 "$T/kill.err")"
if [ $killed = 1 ] && [ $rc = 1 ] && grep -q "cannot copy '$BA/memfile'" "$T/kill.err"; then
  pass killed_upload_fails_naming_object
else
  fail killed_upload_fails_naming_object "caught=$killed exit $rc: $(tail -n 2 "$T/kill.err")"
fi
s3_start "$S3_PORT" || { fail s3rver_restart "could not restart s3rver"; finish; }
"$BT" list "$KILL" >"$T/killed.keys"
bad=0
while read -r k; do
  [ -n "$k" ] || continue
  "$BT" get "$KILL" "$k" "$T/killed-obj" && cmp -s "$T/killed-obj" "$T/big/$k" || { bad=1; echo "  incomplete object visible: $k"; }
done <"$T/killed.keys"
if [ $bad = 0 ] && ! grep -q "$BA/memfile" "$T/killed.keys" && ! grep -q metadata.json "$T/killed.keys"; then
  pass killed_upload_leaves_no_half_object
else
  fail killed_upload_leaves_no_half_object "$(tr '\n' ' ' <"$T/killed.keys")"
fi
# and the copy can simply be run again
"$BIN/copy-build" -build "$BC" -from "$T/big" -to "$KILL" 2>"$T/rerun.err" &&
  "$BT" get "$KILL" "$BC/metadata.json" "$T/rerun.meta" && cmp -s "$T/rerun.meta" "$T/big/$BC/metadata.json" &&
  pass killed_upload_rerun_completes || fail killed_upload_rerun_completes "$(tail -n 2 "$T/rerun.err")"

# 4. server killed mid-download (the proxy the client talks to; throttled so the kill lands)
proxy_start 0 0 0 5
ORCH_S3_MAX_ATTEMPTS=3 ORCH_S3_RETRY_BASE_MS=50 AWS_ENDPOINT_URL=$PROXY_URL \
  "$BIN/copy-build" -parallel 1 -build "$BC" -from "$KILL" -to "$T/dlkill" 2>"$T/dlkill.err" &
cb=$!
on_exit "kill $cb"
caught=0
for ((i = 0; i < 1000; i++)); do
  f=$(find "$T/dlkill" -name 'memfile.tmp.*' -size +1M 2>/dev/null | head -n1)
  [ -n "$f" ] && case $f in *"/$BA/"*) caught=1; break ;; esac
  kill -0 $cb 2>/dev/null || break
  sleep 0.02
done
proxy_stop
wait $cb
rc=$?
left=$(find "$T/dlkill" -name '*.tmp.*' 2>/dev/null | wc -l)
echo "  killed the server mid-download (caught: $caught); exit $rc: $(tail -n 1 "$T/dlkill.err")"
bad=0
while read -r k; do cmp -s "$T/big/$k" "$T/dlkill/$k" || { bad=1; echo "  bad object: $k"; }; done < <(cd "$T/dlkill" && find . -type f | sed 's|^\./||')
if [ $caught = 1 ] && [ $rc = 1 ] && grep -q "cannot copy '$BA/memfile'" "$T/dlkill.err" && [ "$left" = 0 ] &&
  [ $bad = 0 ] && [ ! -e "$T/dlkill/$BA/memfile" ] && [ ! -e "$T/dlkill/$BC/metadata.json" ]; then
  pass killed_download_leaves_no_half_object
else
  fail killed_download_leaves_no_half_object "caught=$caught exit=$rc tmp-left=$left bad=$bad"
fi
finish
