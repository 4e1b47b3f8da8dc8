#!/usr/bin/env bash
# make check-slow: orch-init as the early stage of an image whose PID 1 is systemd.
# A Debian bookworm minbase + systemd-sysv rootfs (debootstrap, cached as a tarball in
# build/cache/guest/ after the first run) gets envd.service and orch-net.service (docs/guest.md);
# it boots with our initrd and init=/sbin/init; envd must answer /health from the host, run a
# command in the guest (PID 1 is systemd, the hostname and address came from ip=).
. "$(dirname "$0")/../shell/lib.sh"
need qemu-system-x86_64 curl mkfs.ext4 debootstrap tar jq
INIT=$ROOT/build/guest/orch-init
ENVD=$ROOT/build/guest/envd
CLIENT=$ROOT/build/tests/helpers/envd_client
for f in "$INIT" "$ENVD" "$CLIENT"; do
  [ -x "$f" ] || { echo "SKIP guest_systemd: $f not built (make tests)"; exit 77; }
done
if ! ver=$(bash "$ROOT/scripts/kernel.sh" 2>"$T/kernel.err"); then
  echo "SKIP guest_systemd: no guest kernel ($(tail -1 "$T/kernel.err"))"; exit 77
fi
K=$ROOT/build/kernels/$ver
bash "$ROOT/scripts/initrd.sh" "$K" "$INIT" 2>/dev/null || { fail initrd "initrd.sh failed"; finish; }

cache=$ROOT/build/cache/guest
tarball=$cache/debian-bookworm-systemd.tar
if [ ! -f "$tarball" ]; then
  mkdir -p "$cache"
  t0=$SECONDS
  if ! debootstrap --variant=minbase --include=systemd-sysv bookworm "$T/deb" \
       http://deb.debian.org/debian >"$T/debootstrap.log" 2>&1; then
    echo "SKIP guest_systemd: debootstrap failed: $(tail -2 "$T/debootstrap.log" | tr '\n' ' ')"; exit 77
  fi
  tar -C "$T/deb" -cf "$tarball.tmp.$$" . && mv -f "$tarball.tmp.$$" "$tarball"
  rm -rf "$T/deb"
  echo "debootstrap: $((SECONDS - t0)) s (cached in $tarball)"
fi
r=$T/root
mkdir -p "$r" && tar -C "$r" -xpf "$tarball"
install -m 0755 "$INIT" "$r/usr/bin/orch-init"
install -m 0755 "$ENVD" "$r/usr/bin/envd"
cat >"$r/etc/systemd/system/orch-net.service" <<'EOF'
[Unit]
Description=Sandbox network from the kernel command line (ip=)
DefaultDependencies=no
Before=network.target envd.service
After=systemd-sysctl.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/orch-init -net
[Install]
WantedBy=multi-user.target
EOF
cat >"$r/etc/systemd/system/envd.service" <<'EOF'
[Unit]
Description=envd, the sandbox agent
After=orch-net.service
Wants=orch-net.service
[Service]
ExecStart=/usr/bin/envd
Restart=always
RestartSec=100ms
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$r/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/orch-net.service "$r/etc/systemd/system/multi-user.target.wants/"
ln -sf /etc/systemd/system/envd.service "$r/etc/systemd/system/multi-user.target.wants/"
: >"$r/etc/fstab"
mkfs.ext4 -q -F -L rootfs -E root_owner=0:0 -d "$r" "$T/rootfs.ext4" 1G >/dev/null ||
  { fail rootfs "mkfs.ext4 failed"; finish; }
rm -rf "$r"

TSC_KHZ=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
PORT=
for try in 1 2 3 4 5; do
  p=$((20000 + RANDOM % 40000))
  [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ] && { PORT=$p; break; }
done
t0=$(date +%s.%N)
qemu-system-x86_64 -M microvm,x-option-roms=off,isa-serial=on,rtc=on -accel tcg -cpu max -smp 1 -m 512 \
  -nodefaults -no-user-config -display none -serial file:"$T/serial" -no-reboot \
  -kernel "$K/vmlinux.bin" -initrd "$K/initrd.img" \
  -append "console=ttyS0 loglevel=1 lpj=5000000 no_timer_check panic=1 reboot=t root=/dev/vda rw init=/sbin/init ip=169.254.0.21::169.254.0.22:255.255.255.252:sysd:eth0:off${TSC_KHZ:+ tsc_early_khz=$TSC_KHZ}" \
  -drive id=root,file="$T/rootfs.ext4",format=raw,if=none -device virtio-blk-device,drive=root \
  -netdev user,id=n0,net=169.254.0.20/30,host=169.254.0.22,dhcpstart=169.254.0.21,hostfwd=tcp:127.0.0.1:$PORT-:49983 \
  -device virtio-net-device,netdev=n0,mac=02:fc:00:00:00:05 </dev/null >"$T/qemu.log" 2>&1 &
QPID=$!
on_exit "kill -9 $QPID; wait $QPID"
ok=0
for i in $(seq 1200); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 0.5 "http://127.0.0.1:$PORT/health")" = 204 ] && { ok=1; break; }
  kill -0 $QPID 2>/dev/null || break
  sleep 0.1
done
if [ $ok = 1 ]; then
  echo "systemd guest: /health after $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") s"
  pass systemd_boot_health
else
  fail systemd_boot_health "no /health; serial: $(tail -c 800 "$T/serial" | tr '\r\n' '  ')"
  finish
fi
cmd='cat /proc/1/comm; hostname; cat /sys/class/net/eth0/operstate; awk '"'"'$2 == "00000000" {print "default-route " $1}'"'"' /proc/net/route; echo units=$(systemctl is-active envd orch-net | tr "\\n" ,)'
out=$("$CLIENT" -port "$PORT" -timeout-ms 20000 start \
  "$(jq -cn --arg c "$cmd" '{process: {cmd: "/bin/sh", args: ["-c", $c]}}')" 2>&1)
ok=1
for want in 'stdout systemd\n' 'stdout sysd\n' 'stdout up\n' 'stdout default-route eth0\n' \
  'units=active,active,' 'end 0 exit status 0'; do
  grep -qF -- "$want" <<<"$out" || { ok=0; fail systemd_guest_view "no '$want' in: $(tr '\n' '|' <<<"$out")"; break; }
done
[ $ok = 1 ] && pass systemd_guest_view
grep -q 'early init failed' "$T/serial" && fail early_stage_clean "$(grep 'orch-init' "$T/serial" | head -3)"
finish
