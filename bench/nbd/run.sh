#!/usr/bin/env bash
# bench/nbd: our NBD server serving a 1 GiB ext4 rootfs as a 3-layer build THROUGH the
# layered device (header lookups over 3 data objects) and a COW overlay, against the same
# bytes as one flat file served by `nbdkit file` and by `qemu-nbd`. Same client for all
# (fio's nbd engine, libnbd): sequential read MB/s (1 MiB requests) and 4 KiB random-read
# IOPS, queue depth 16 per connection, 4 connections. Runs are interleaved (ours, nbdkit,
# qemu-nbd, repeated RUNS times); medians and ours/peer ratios are printed.
# Env: RUNS (5), SECS per random-read run (5), SIZE_MB (1024), KEEP=1 keeps the work dir.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
RUNS=${RUNS:-5}
SECS=${SECS:-5}
SIZE_MB=${SIZE_MB:-1024}
for c in fio nbdkit qemu-nbd mkfs.ext4 nbdinfo; do
  command -v $c >/dev/null || { echo "bench/nbd: SKIP: needs $c"; exit 0; }
done
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "bench/nbd: SKIP: fio has no nbd engine"; exit 0; }
make --no-print-directory -s build/tests/helpers/nbd_serve build/tests/helpers/block_mkbuild >/dev/null || exit 1
H=$ROOT/build/tests/helpers
W=$(mktemp -d /tmp/bench-nbd.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
export ORCHESTRATOR_BASE_PATH=$W/orch

echo "preparing a ${SIZE_MB} MiB ext4 rootfs as a 3-layer build..."
mkdir -p "$W/root"
data_mb=$((SIZE_MB * 6 / 10))
for i in $(seq 0 $((data_mb / 64 - 1))); do
  head -c $((64 << 20)) /dev/urandom >"$W/root/file$i"
done
mkfs.ext4 -q -F -b 4096 -d "$W/root" "$W/base.img" "${SIZE_MB}M" || exit 1
rm -rf "$W/root"
L1=50000000-0000-4000-8000-000000000001
L2=50000000-0000-4000-8000-000000000002
L3=50000000-0000-4000-8000-000000000003
"$H/block_mkbuild" base -storage "$W/st" -build $L1 -image "$W/base.img" >/dev/null || exit 1
rm -f "$W/base.img"
"$H/block_mkbuild" layer -storage "$W/st" -base $L1 -build $L2 -writes 3000 -zeros 300 -seed 11 || exit 1
"$H/block_mkbuild" layer -storage "$W/st" -base $L2 -build $L3 -writes 3000 -zeros 300 -seed 12 || exit 1
"$H/block_mkbuild" cat -storage "$W/st" -build $L3 -o "$W/flat.img" >/dev/null || exit 1
nmaps=$(( $(stat -c %s "$W/st/$L3/rootfs.ext4.header") / 40 - 1 ))
echo "layer 3 header: $nmaps mappings over 3 data objects; flat copy: $(du -h --apparent-size "$W/flat.img" | cut -f1)"

wait_sock() { for _ in $(seq 200); do nbdinfo --size "nbd+unix:///?socket=$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }
"$H/nbd_serve" -storage "$W/st" -build $L3 -readonly -socket "$W/ours.sock" >"$W/ours.log" 2>&1 &
PIDS+=($!)
nbdkit -f -U "$W/nbdkit.sock" file "$W/flat.img" >"$W/nbdkit.log" 2>&1 &
PIDS+=($!)
qemu-nbd -f raw -r -e 8 -t -k "$W/qemu.sock" "$W/flat.img" >"$W/qemu.log" 2>&1 &
PIDS+=($!)
for s in ours nbdkit qemu; do wait_sock "$W/$s.sock" || { echo "bench/nbd: $s did not start"; cat "$W/$s.log"; exit 1; }; done
# warm the page cache for everyone (the same bytes are read from files in every case)
cat "$W"/st/*/rootfs.ext4 "$W/flat.img" >/dev/null

# fio: 4 jobs = 4 connections, iodepth 16 each. Prints one number; the JSON is kept in $W.
fio_json() { # OUT FIELD fio-args... -> prints the field of the read stats
  local out=$1 field=$2; shift 2
  fio --output-format=json --output="$out" "$@" >"$out.err" 2>&1
  python3 - "$out" "$field" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index('{'):])
r = j["jobs"][0]["read"]
print("%.0f" % (r["bw_bytes"] / 1e6 if sys.argv[2] == "mbs" else r["iops"]))
PY
}
seq_mbs() { # NAME URI
  fio_json "$W/seq-$1.json" mbs --name=seq --ioengine=nbd --uri="$2" --rw=read --bs=1M --iodepth=16 \
    --numjobs=4 --size=$((SIZE_MB / 4))M --offset_increment=$((SIZE_MB / 4))M --group_reporting
}
rand_iops() { # NAME URI
  fio_json "$W/rand-$1.json" iops --name=rand --ioengine=nbd --uri="$2" --rw=randread --bs=4k \
    --iodepth=16 --numjobs=4 --runtime="$SECS" --time_based --group_reporting
}
declare -A SEQ RAND
for r in $(seq "$RUNS"); do
  line="run $r:"
  for s in ours nbdkit qemu; do
    u="nbd+unix:///?socket=$W/$s.sock"
    a=$(seq_mbs $s "$u") || { echo "bench/nbd: fio failed against $s:"; cat "$W/seq-$s.json.err"; exit 1; }
    b=$(rand_iops $s "$u") || { echo "bench/nbd: fio failed against $s:"; cat "$W/rand-$s.json.err"; exit 1; }
    SEQ[$s]+="$a "
    RAND[$s]+="$b "
    line+=" $s ${a} MB/s ${b} IOPS;"
  done
  echo "$line"
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
printf '\n%-28s %12s %12s %12s %10s %10s\n' "median of $RUNS runs" ours nbdkit qemu-nbd ours/nbdkit ours/qemu
for m in SEQ RAND; do
  declare -n A=$m
  o=$(echo "${A[ours]}" | median); k=$(echo "${A[nbdkit]}" | median); q=$(echo "${A[qemu]}" | median)
  label=$([ $m = SEQ ] && echo "seq read MB/s (1M, QD16x4)" || echo "4k rand read IOPS (QD16x4)")
  printf '%-28s %12s %12s %12s %10s %10s\n' "$label" "$o" "$k" "$q" \
    "$(awk "BEGIN{printf \"%.2fx\", $o/$k}")" "$(awk "BEGIN{printf \"%.2fx\", $o/$q}")"
  best=$(awk "BEGIN{print ($k > $q) ? $k : $q}")
  awk "BEGIN{exit !($o >= $best)}" && echo "  -> ours >= the better peer" || echo "  -> ours BELOW the better peer"
done
