#!/usr/bin/env bash
# NBD server over the layered device + COW, against real peers (nbdinfo, nbdcopy, nbdsh,
# qemu-io, qemu-img) and a raw client that misbehaves (tests/helpers/nbd_badclient.py).
. "$(dirname "$0")/lib.sh"
need nbdinfo nbdcopy nbdsh qemu-io qemu-img mkfs.ext4 python3 sha256sum
H=$ROOT/build/tests/helpers
[ -x "$H/nbd_serve" ] && [ -x "$H/block_mkbuild" ] || { echo "SKIP nbd_serve.sh: build the helpers first (make tests)"; exit 77; }
export ORCHESTRATOR_BASE_PATH=$T/orch
ST=$T/storage
B1=10000000-0000-4000-8000-000000000001
B2=10000000-0000-4000-8000-000000000002
B3=10000000-0000-4000-8000-000000000003
B4=10000000-0000-4000-8000-000000000004
B5=10000000-0000-4000-8000-000000000005

# a 4-layer rootfs build: ext4 base + 3 diff layers made by the COW export
mkdir -p "$T/root/etc" && echo "hello from the base" >"$T/root/etc/motd"
head -c 3000000 /dev/urandom >"$T/root/blob"
mkfs.ext4 -q -F -b 4096 -d "$T/root" "$T/base.img" 48M
"$H/block_mkbuild" base -storage "$ST" -build $B1 -image "$T/base.img" >/dev/null &&
"$H/block_mkbuild" layer -storage "$ST" -base $B1 -build $B2 -writes 30 -zeros 5 -seed 1 >/dev/null &&
"$H/block_mkbuild" layer -storage "$ST" -base $B2 -build $B3 -writes 30 -zeros 5 -seed 2 >/dev/null &&
"$H/block_mkbuild" layer -storage "$ST" -base $B3 -build $B4 -writes 30 -zeros 5 -seed 3 >/dev/null
check mkbuild_4_layers test -s "$ST/$B4/rootfs.ext4.header"
"$H/block_mkbuild" cat -storage "$ST" -build $B4 -o "$T/logical4.img" >/dev/null
SIZE=$(stat -c %s "$T/logical4.img")

SOCK=$T/nbd.sock
PID=
start() { # start ARGS...: serve and wait for "ready"
  rm -f "$T/serve.out"
  "$H/nbd_serve" -storage "$ST" -socket "$SOCK" "$@" >"$T/serve.out" 2>"$T/serve.err" &
  PID=$!
  for _ in $(seq 100); do grep -q '^ready' "$T/serve.out" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}
stop() { [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; local rc=$?; PID=; return $rc; }
on_exit 'stop'
URI="nbd+unix:///?socket=$SOCK"

check serve_starts start -build $B4
check nbdinfo_size bash -c "nbdinfo --size '$URI' | grep -qx $SIZE"
nbdcopy --connections=4 "$URI" "$T/copy.img"
want=$(sha256sum <"$T/logical4.img" | cut -d' ' -f1)
got=$(sha256sum <"$T/copy.img" | cut -d' ' -f1)
[ "$want" = "$got" ] && pass nbdcopy_4_layers_equals_logical || fail nbdcopy_4_layers_equals_logical "$got != $want"
check qemu_img_info bash -c "qemu-img info --output=json '$URI' | grep -q '\"virtual-size\": $SIZE'"

# writes through NBD read back (qemu-io, nbdsh), including unaligned and zeroing
qemu-io -f raw -c 'write -P 0xab 1M 64k' -c 'write -P 0xcd 3000 5000' -c 'write -z 8M 128k' "$URI" >"$T/qio.out" 2>&1
qemu-io -f raw -c 'read -P 0xab 1M 64k' -c 'read -P 0xcd 3000 5000' -c 'read -P 0 8M 128k' "$URI" >"$T/qio.out" 2>&1
if grep -qi 'fail' "$T/qio.out" || [ "$(grep -c '^read ' "$T/qio.out")" != 3 ]; then
  fail qemu_io_readback "$(head -c 300 "$T/qio.out")"
else pass qemu_io_readback; fi
qemu-io -f raw -c 'read -P 0xac 1M 64k' "$URI" >"$T/qio.out" 2>&1
check qemu_io_detects_mismatch grep -qi 'fail' "$T/qio.out"
PATH=/usr/bin:$PATH nbdsh -u "$URI" -c '
h.pwrite(b"\x5a" * 4096, 20 * 1024 * 1024)
assert h.pread(4096, 20 * 1024 * 1024) == b"\x5a" * 4096
h.flush()
h.trim(1 << 20, 24 << 20)
assert h.pread(1 << 20, 24 << 20) == bytes(1 << 20)
' 2>"$T/nbdsh.err" && pass nbdsh_write_flush_trim || fail nbdsh_write_flush_trim "$(head -c 300 "$T/nbdsh.err")"

# the same edits applied to a plain copy give the expected logical file of the export
cp "$T/logical4.img" "$T/expect.img"
python3 - "$T/expect.img" <<'EOF'
import sys
f = open(sys.argv[1], 'r+b')
def w(off, data): f.seek(off); f.write(data)
w(1 << 20, b'\xab' * 65536); w(3000, b'\xcd' * 5000); w(8 << 20, bytes(128 << 10))
w(20 << 20, b'\x5a' * 4096); w(24 << 20, bytes(1 << 20))
EOF
nbdcopy "$URI" "$T/copy2.img"
cmp -s "$T/copy2.img" "$T/expect.img" && pass reads_see_writes || fail reads_see_writes "served image differs from base + writes"

# TCP on loopback
stop
check serve_tcp start -build $B4 -tcp 0
PORT=$(sed -n 's/^ready [0-9]* port \([0-9]*\)$/\1/p' "$T/serve.out")
check nbdinfo_tcp bash -c "nbdinfo --size nbd://127.0.0.1:$PORT | grep -qx $SIZE"

# export: the new build is base + writes, and its diff holds only the written blocks
stop
start -build $B4 -export $B5
qemu-io -f raw -c 'write -P 0x11 4M 12k' -c 'write -P 0x22 40M 4k' -c 'write -z 16M 8k' "$URI" >/dev/null 2>&1
stop
exp_line=$(grep '^exported' "$T/serve.out")
[ "$exp_line" = "exported $B5 dirty=4 empty=2 bytes=16384" ] && pass export_counts || fail export_counts "got '$exp_line'"
check export_diff_size test "$(stat -c %s "$ST/$B5/rootfs.ext4")" = 16384
"$H/block_mkbuild" cat -storage "$ST" -build $B5 -o "$T/logical5.img" >/dev/null
cp "$T/logical4.img" "$T/expect5.img"
python3 - "$T/expect5.img" <<'EOF'
import sys
f = open(sys.argv[1], 'r+b')
def w(off, data): f.seek(off); f.write(data)
w(4 << 20, b'\x11' * 12288); w(40 << 20, b'\x22' * 4096); w(16 << 20, bytes(8192))
EOF
cmp -s "$T/logical5.img" "$T/expect5.img" && pass export_logical_is_base_plus_writes || fail export_logical_is_base_plus_writes "logical file of the export differs"
if command -v "$BIN/inspect-header" >/dev/null; then
  "$BIN/inspect-header" -storage "$ST" -build $B5 -kind rootfs >"$T/ih.out" 2>&1
  check export_header_valid grep -qi "generation" "$T/ih.out"
fi

# misbehaving clients: each gets an error reply or a closed connection; the server keeps serving
start -build $B4
python3 "$ROOT/tests/helpers/nbd_badclient.py" "$SOCK" "$SIZE" >"$T/bad.out" 2>&1
while read -r st name rest; do
  case $st in ok) pass "bad_client_$name" ;; bad) fail "bad_client_${name%:}" "$rest" ;; *) fail bad_client "$st $name $rest" ;; esac
done <"$T/bad.out"
[ -s "$T/bad.out" ] || fail bad_client "no output: $(head -c 300 "$T/bad.out")"
check still_serving bash -c "nbdinfo --size '$URI' | grep -qx $SIZE"
check still_serving_data bash -c "nbdcopy '$URI' - | cmp -s - '$T/logical4.img'"
stop
errs=$(sed -n 's/.*protocol_errors=\([0-9]*\).*/\1/p' "$T/serve.out")
[ "${errs:-0}" -ge 5 ] && pass protocol_errors_logged || fail protocol_errors_logged "protocol_errors=$errs"
check violation_log_lines grep -q 'closing it' "$T/serve.err"

# nothing left behind: socket removed, COW dir removed
check socket_removed test ! -e "$SOCK"
check cow_dirs_removed bash -c "[ -z \"\$(ls -A '$T/orch/sandbox' 2>/dev/null)\" ]"
finish
