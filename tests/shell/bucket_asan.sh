#!/usr/bin/env bash
# copy-build and the bucket backend under AddressSanitizer/UBSan (build/asan/bin/copy-build,
# made by `make asan-tests`): uploads and downloads through the fault proxy (500s, drops,
# multipart parts, parallel ranges), bucket -> bucket, wrong keys, a missing build, ranged
# reads and listing. Every run must exit as expected and print no sanitizer report
# (leaks included).
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/bucket/lib.sh"
CB=$ROOT/build/asan/bin/copy-build
BT=$ROOT/build/asan/helpers/bucket_tool
[ -x "$CB" ] && [ -x "$BT" ] || { echo "SKIP $(basename "$0"): run make asan-tests first"; exit 77; }
s3_need
s3_start || { fail s3rver_start "could not start s3rver"; finish; }
read -r A B C < <("$ROOT/build/tests/helpers/bucket_mkbuild" "$T/src" 8 4) || { fail mkbuild "failed"; finish; }
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ORCH_S3_RETRY_BASE_MS=10 ORCH_S3_RETRY_MAX_MS=200 ORCH_S3_MAX_ATTEMPTS=12
export ORCH_S3_MULTIPART_THRESHOLD=2M ORCH_S3_PART_SIZE=1M
export GCS_ENDPOINT_URL=$S3_URL GCS_ACCESS_KEY_ID=S3RVER GCS_SECRET_ACCESS_KEY=S3RVER
proxy_start 0.2 0.03 10 || { fail proxy_start "faultproxy did not start"; finish; }
S3=s3://$S3_BUCKET/asan

n=0
# run NAME WANT_STATUS CMD...: the exit status and a clean sanitizer log
run() {
  local name=$1 want=$2; shift 2
  n=$((n + 1))
  "$@" >"$T/out.$n" 2>"$T/err.$n"
  local rc=$?
  if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error: ' "$T/err.$n"; then
    cat "$T/err.$n"
    fail "$name" "sanitizer report"
  elif [ "$rc" != "$want" ]; then
    fail "$name" "exit $rc, want $want: $(tail -n 2 "$T/err.$n")"
  else
    pass "$name"
  fi
}
run asan_upload_faults 0 env AWS_ENDPOINT_URL="$PROXY_URL" "$CB" -build "$C" -from "$T/src" -to "$S3"
run asan_download_faults 0 env AWS_ENDPOINT_URL="$PROXY_URL" "$CB" -build "$C" -from "$S3" -to "$T/dl"
run asan_bucket_to_bucket 0 "$CB" -build "$C" -from "$S3" -to "gs://$S3_BUCKET/asan-gs"
run asan_second_copy_skips 0 "$CB" -build "$C" -from "$T/src" -to "$S3"
run asan_wrong_keys 1 env AWS_ACCESS_KEY_ID=WRONG "$CB" -build "$C" -from "$S3" -to "$T/x"
run asan_missing_build 1 "$CB" -build 11111111-2222-3333-4444-555555555555 -from "$S3" -to "$T/y"
run asan_ranged_read 0 env AWS_ENDPOINT_URL="$PROXY_URL" "$BT" read "$S3" "$A/memfile" 4095 70000
run asan_list 0 env AWS_ENDPOINT_URL="$PROXY_URL" "$BT" list "$S3"
run asan_missing_object 3 "$BT" stat "$S3" "$A/nope"
run asan_delete_prefix 0 "$BT" rm "gs://$S3_BUCKET/asan-gs" "$A/"
bad=0
for k in "$A/memfile" "$B/rootfs.ext4" "$C/memfile.header" "$C/metadata.json"; do
  cmp -s "$T/src/$k" "$T/dl/$k" || bad=1
done
[ $bad = 0 ] && pass asan_download_byte_equal || fail asan_download_byte_equal "objects differ"
finish
