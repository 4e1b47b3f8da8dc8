#!/usr/bin/env bash
# The block layer over a bucket (s3rver): a 3-layer rootfs build made in s3:// is served over
# NBD through the chunk cache; the bytes equal the same build made locally, every 4 MiB chunk
# is fetched from the bucket exactly once (ranged GETs counted by a proxy), a second full read
# fetches nothing, and the cache directory is gone after exit.
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/bucket/lib.sh"
s3_need
need nbdcopy sha256sum mkfs.ext4
H=$ROOT/build/tests/helpers
[ -x "$H/nbd_serve" ] && [ -x "$H/block_mkbuild" ] || { echo "SKIP block_bucket.sh: build the helpers first (make tests)"; exit 77; }
s3_start || { fail s3rver_start "could not start s3rver"; finish; }
export ORCHESTRATOR_BASE_PATH=$T/orch
S3=s3://$S3_BUCKET/builds
B1=60000000-0000-4000-8000-000000000001
B2=60000000-0000-4000-8000-000000000002
B3=60000000-0000-4000-8000-000000000003

mkdir -p "$T/root" && head -c 5000000 /dev/urandom >"$T/root/blob" && echo hi >"$T/root/hi"
mkfs.ext4 -q -F -b 4096 -d "$T/root" "$T/base.img" 40M
# the same 3 layers in the bucket and in a local directory (the layers are deterministic)
for loc in "$S3" "$T/local"; do
  "$H/block_mkbuild" base -storage "$loc" -build $B1 -image "$T/base.img" >/dev/null &&
  "$H/block_mkbuild" layer -storage "$loc" -base $B1 -build $B2 -writes 40 -zeros 5 -seed 21 >/dev/null &&
  "$H/block_mkbuild" layer -storage "$loc" -base $B2 -build $B3 -writes 40 -zeros 5 -seed 22 >/dev/null ||
    { fail mkbuild "block_mkbuild failed for $loc"; finish; }
done
pass mkbuild_in_bucket
"$H/block_mkbuild" cat -storage "$T/local" -build $B3 -o "$T/local.img" >/dev/null
check leftover_cache_dirs_after_mkbuild bash -c "[ -z \"\$(ls -A '$T/orch/build' 2>/dev/null)\" ]"

proxy_start 0 0 0 || { fail proxy_start "faultproxy did not start"; finish; }
SOCK=$T/nbd.sock
AWS_ENDPOINT_URL=$PROXY_URL "$H/nbd_serve" -storage "$S3" -build $B3 -socket "$SOCK" >"$T/serve.out" 2>"$T/serve.err" &
PID=$!
on_exit "kill $PID"
for _ in $(seq 100); do grep -q '^ready' "$T/serve.out" 2>/dev/null && break; sleep 0.1; done
: >"$PROXY_LOG"
nbdcopy --connections=4 "nbd+unix:///?socket=$SOCK" "$T/copy.img"
want=$(sha256sum <"$T/local.img" | cut -d' ' -f1)
got=$(sha256sum <"$T/copy.img" | cut -d' ' -f1)
[ "$want" = "$got" ] && pass bucket_build_served_equals_local || fail bucket_build_served_equals_local "$got != $want"
gets1=$(grep -E ' GET .*/rootfs\.ext4 .*range=bytes' "$PROXY_LOG" | wc -l)
dups=$(grep -E ' GET .*/rootfs\.ext4 .*range=bytes' "$PROXY_LOG" | awk '{print $3, $NF}' | sort | uniq -d | wc -l)
check cache_files_exist bash -c "ls '$T/orch/build'/chunks-*/*.cache >/dev/null 2>&1"
nbdcopy --connections=4 "nbd+unix:///?socket=$SOCK" "$T/copy2.img"
gets2=$(grep -E ' GET .*/rootfs\.ext4 .*range=bytes' "$PROXY_LOG" | wc -l)
kill -TERM $PID; wait $PID
fetched=$(sed -n 's/.*fetched=\([0-9]*\).*/\1/p' "$T/serve.out")
# chunks that exist: ceil(size / 4 MiB) per data object
max=0
for b in $B1 $B2 $B3; do
  sz=$(stat -c %s "$T/local/$b/rootfs.ext4"); max=$((max + (sz + 4194303) / 4194304))
done
[ "${fetched:-0}" -gt 0 ] && [ "$fetched" -le "$max" ] && pass fetched_counter "fetched=$fetched of $max chunks" ||
  fail fetched_counter "fetched=$fetched, at most $max chunks exist"
[ "$gets1" = "$fetched" ] && pass one_get_per_chunk || fail one_get_per_chunk "$gets1 ranged GETs for $fetched chunks"
[ "$dups" = 0 ] && pass no_chunk_fetched_twice || fail no_chunk_fetched_twice "$dups ranges fetched twice"
[ "$gets2" = "$gets1" ] && pass second_read_from_cache || fail second_read_from_cache "$((gets2 - gets1)) more GETs"
cmp -s "$T/copy2.img" "$T/local.img" && pass second_read_equal || fail second_read_equal "second copy differs"
check cache_removed_at_exit bash -c "[ -z \"\$(ls -A '$T/orch/build' 2>/dev/null)\" ]"
finish
