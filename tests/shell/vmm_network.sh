#!/usr/bin/env bash
# VMM + network slots: a busybox guest with virtio-net (169.254.0.21 on eth0, listener on
# port 49983) boots in slot A and answers the host at A's host IP; its snapshot restored in
# slot B answers at B's host IP (identical guest network in every slot). The guest's disk is
# served over NBD (nbd:unix:) when nbdkit is installed. No namespace, link,
# lock file or QEMU may be left behind.
. "$(dirname "$0")/lib.sh"
need qemu-system-x86_64 busybox cpio gzip ip nft
[ "$(id -u)" = 0 ] || { echo "SKIP vmm_network: needs root"; exit 77; }
H=$ROOT/build/tests/helpers
[ -x "$H/vmm_net" ] || { echo "SKIP vmm_network: helpers not built (make tests)"; exit 77; }
if ! ver=$(bash "$ROOT/scripts/kernel.sh" 2>"$T/kernel.err"); then
  echo "SKIP vmm_network: no guest kernel ($(tail -1 "$T/kernel.err"))"; exit 77
fi
KD=$ROOT/build/kernels/$ver
R=$T/root
mkdir -p "$R/bin" "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/modules"
cp "$(command -v busybox)" "$R/bin/busybox"
cp "$KD"/modules/*.ko "$R/modules/" 2>/dev/null || true
cp "$KD/modules.order" "$R/modules.order"
cat >"$R/serve.sh" <<'EOS'
#!/bin/sh
echo "GUEST $(cat /tmp/tick)"
EOS
cat >"$R/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /modules/$m.ko; done
ip link set lo up
ip addr add 169.254.0.21/30 dev eth0
ip link set eth0 up
ip route add default via 169.254.0.22
echo 0 > /tmp/tick
(i=0; while true; do i=$((i+1)); echo $i > /tmp/tick; sleep 0.2; done) &
nc -ll -p 49983 -e /bin/sh /serve.sh &
echo "NET UP"
while true; do sleep 1; echo "TICK $(cat /tmp/tick)"; done
INIT
chmod +x "$R/init" "$R/serve.sh"
(cd "$R" && find . | cpio -o -H newc 2>/dev/null | gzip -1 >"$T/initrd.gz")

on_exit 'for p in $(pgrep -f "mem-path=$T/" 2>/dev/null); do kill -9 $p; done'
# the disk comes from an NBD server over a unix socket, as in production (nbdkit stands in
# for ours); QEMU reconnects to it on restore
ROOTFS_ARG=()
if command -v nbdkit >/dev/null; then
  truncate -s 16M "$T/disk.img"
  nbdkit --exit-with-parent -f --unix "$T/nbd.sock" file "$T/disk.img" 2>"$T/nbdkit.log" &
  NBDKIT=$!
  on_exit "kill $NBDKIT"
  for i in $(seq 100); do [ -S "$T/nbd.sock" ] && break; sleep 0.05; done
  ROOTFS_ARG=(-rootfs "nbd:unix:$T/nbd.sock")
else
  echo "    (nbdkit missing: no disk attached)"
fi
on_exit "'$H/network_ctl' -dir '$T/net' cleanup"
"$H/vmm_net" -kernel "$KD/vmlinux.bin" -initrd "$T/initrd.gz" -dir "$T" "${ROOTFS_ARG[@]}" >"$T/out" 2>&1
rc=$?
cat "$T/out"
grep -q '^FAIL' "$T/out" && _failed=1
[ $rc -ne 0 ] && ! grep -q '^FAIL' "$T/out" && fail vmm_net "exit $rc"
if grep -q FAIL "$T/out"; then echo "--- serial A"; tail -5 "$T/serial-a.log"; echo "--- serial B"; tail -5 "$T/serial-b.log" 2>/dev/null; tail -5 "$T/qemu.log"; fi

sleep 0.1
left=""
[ -z "$(pgrep -f "mem-path=$T/")" ] || left+=" qemu"
for i in $(sed -n 's/^slot A \([0-9]*\) .*slot B \([0-9]*\) .*/\1 \2/p' "$T/out"); do
  ip netns list | awk '{print $1}' | grep -qx "ns-$i" && left+=" ns-$i"
  ip link show "veth-$i" >/dev/null 2>&1 && left+=" veth-$i"
done
[ -z "$(ls "$T/net" 2>/dev/null)" ] || left+=" locks"
[ -z "$left" ] && pass vmm_net_no_leak || fail vmm_net_no_leak "$left"
finish
