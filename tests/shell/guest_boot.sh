#!/usr/bin/env bash
# Boots the busybox guest under QEMU microvm (TCG, PLATFORM.md §2 recipe) with our kernel,
# initrd (orch-init early stage), orch-init as PID 1 and the real envd; drives envd from the
# host through a user-networking port forward (slirp configured with the contract's network
# 169.254.0.20/30, so the guest command line is the production one).
#  - GUEST_BOOTS consecutive boots (default 3): each must answer GET /health with 204 within
#    BOOT_TIMEOUT seconds (default 60); prints each boot-to-health time (QEMU spawn -> first 204) and the median.
#  - one lifecycle boot (GUEST_LIFECYCLE=0 skips it): a start hook checks the guest's view
#    (hostname, address, route, mounts), makes an orphan zombie, kills envd once (orch-init must
#    restart it; /health must answer again), then, told so through envd, sends SIGTERM to PID 1:
#    QEMU must exit by itself and the disk must be clean (umount + read-only remount first).
# tests/slow/guest_boot20.sh runs it with GUEST_BOOTS=20.
. "$(dirname "$0")/lib.sh"
need qemu-system-x86_64 curl mkfs.ext4 e2fsck ss
BOOTS=${GUEST_BOOTS:-3}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-60}   # generous: a loaded 2-core host slows TCG 5x; a hang is forever
INIT=${GUEST_INIT:-$ROOT/build/guest/orch-init}
ENVD=${GUEST_ENVD:-$ROOT/build/guest/envd}
CLIENT=$ROOT/build/tests/helpers/envd_client
[ -x "$INIT" ] || { echo "SKIP guest_boot: $INIT not built (make)"; exit 77; }
[ -x "$ENVD" ] || { echo "SKIP guest_boot: $ENVD not built (make)"; exit 77; }
if ! ver=$(bash "$ROOT/scripts/kernel.sh" 2>"$T/kernel.err"); then
  echo "SKIP guest_boot: no guest kernel (scripts/kernel.sh: $(tail -1 "$T/kernel.err"))"; exit 77
fi
K=$ROOT/build/kernels/$ver
# another orch-init (GUEST_INIT) gets a private initrd: the shared one stays what make built
INITRD=$K/initrd.img
[ -n "${GUEST_INIT:-}" ] && INITRD=$T/initrd.img
bash "$ROOT/scripts/initrd.sh" "$K" "$INIT" "$INITRD" 2>"$T/initrd.err" ||
  { fail initrd "$(cat "$T/initrd.err")"; finish; }
ORCH_INIT=$INIT ENVD=$ENVD bash "$ROOT/scripts/guest-rootfs.sh" "$T/rootfs" "$T/rootfs.ext4" 64M 2>"$T/rootfs.err" ||
  { fail rootfs "$(cat "$T/rootfs.err")"; finish; }

VM_PIDS=()
# GUEST_KEEP_LOGS=DIR keeps the serial logs for a look afterwards
[ -n "${GUEST_KEEP_LOGS:-}" ] && on_exit "mkdir -p '$GUEST_KEEP_LOGS' && cp '$T'/*.serial '$GUEST_KEEP_LOGS'/"
kill_vms() { local p; for p in "${VM_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; }
on_exit kill_vms

APPEND="console=ttyS0 loglevel=1 lpj=5000000 no_timer_check panic=1 reboot=t root=/dev/vda rw"
APPEND+=" init=/usr/bin/orch-init"
# Under TCG the guest's TSC is the host's. When the kernel's PIT calibration of the TSC fails
# (it does on a loaded host), it calibrates the APIC timer against jiffies, which never advance
# on microvm (no IRQ0 override in its MADT): the boot hangs forever at "calibrating APIC timer".
# Giving the TSC rate skips that path (docs/guest.md).
TSC_KHZ=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
[ -n "$TSC_KHZ" ] && [ "$TSC_KHZ" -gt 0 ] && APPEND+=" tsc_early_khz=$TSC_KHZ"

# start_vm NAME IMAGE HOSTNAME: boots a VM; sets VM_PID, VM_PORT, VM_LOG, VM_T0. 1 on failure.
start_vm() {
  local name=$1 img=$2 host=$3 try
  VM_LOG=$T/$name.serial
  for try in 1 2 3 4 5; do
    VM_PORT=$((20000 + RANDOM % 40000))
    [ -z "$(ss -Htln "sport = :$VM_PORT" 2>/dev/null)" ] || continue
    : >"$VM_LOG"
    VM_T0=$(date +%s.%N)
    qemu-system-x86_64 -M microvm,x-option-roms=off,isa-serial=on,rtc=on,memory-backend=ram0 \
      -accel tcg -cpu max -smp 1 -m 256 \
      -object memory-backend-file,id=ram0,size=256M,mem-path="$T/$name.mem",share=on \
      -nodefaults -no-user-config -display none -serial file:"$VM_LOG" -no-reboot \
      -kernel "$K/vmlinux.bin" -initrd "$INITRD" \
      -append "$APPEND ip=169.254.0.21::169.254.0.22:255.255.255.252:$host:eth0:off" \
      -drive id=root,file="$img",format=raw,if=none -device virtio-blk-device,drive=root \
      -netdev user,id=n0,net=169.254.0.20/30,host=169.254.0.22,dhcpstart=169.254.0.21,hostfwd=tcp:127.0.0.1:$VM_PORT-:49983 \
      -device virtio-net-device,netdev=n0,mac=02:fc:00:00:00:05 \
      </dev/null >"$T/$name.qemu" 2>&1 &
    VM_PID=$!
    VM_PIDS+=("$VM_PID")
    sleep 0.2
    if ! kill -0 "$VM_PID" 2>/dev/null; then
      wait "$VM_PID" 2>/dev/null
      grep -q 'host forwarding' "$T/$name.qemu" && continue   # port taken meanwhile: retry
      echo "qemu failed: $(head -c 300 "$T/$name.qemu")"; return 1
    fi
    return 0
  done
  echo "no free port"; return 1
}

# wait_health SECONDS: polls GET /health until 204; prints the seconds since VM_T0. 1 on timeout
# or when QEMU dies.
wait_health() {
  local limit=$1 code=none end
  end=$(awk "BEGIN{printf \"%.3f\", $(date +%s.%N) + $limit}")
  while awk "BEGIN{exit !($(date +%s.%N) < $end)}"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 0.5 "http://127.0.0.1:$VM_PORT/health")
    if [ "$code" = 204 ]; then
      awk "BEGIN{printf \"%.3f\n\", $(date +%s.%N) - $VM_T0}"
      return 0
    fi
    kill -0 "$VM_PID" 2>/dev/null || { echo "qemu exited"; return 1; }
    sleep 0.05
  done
  echo "no 204 from /health within ${limit}s (last code $code)"
  return 1
}

stop_vm() {
  kill -TERM "$VM_PID" 2>/dev/null
  wait "$VM_PID" 2>/dev/null
  rm -f "$T"/*.mem
}

# ---- N consecutive boots ----
times=()
ok=1
for ((i = 1; i <= BOOTS; i++)); do
  cp --sparse=always "$T/rootfs.ext4" "$T/boot.ext4"
  if ! start_vm boot "$T/boot.ext4" "boot$i" >"$T/why"; then
    ok=0; fail "boot_$i" "$(cat "$T/why")"; break
  fi
  if ! t=$(wait_health "$BOOT_TIMEOUT"); then
    ok=0; fail "boot_$i" "$t; serial: $(tail -c 600 "$VM_LOG" | tr '\r\n' '  ')"
    stop_vm; break
  fi
  if [ "$i" = 1 ]; then
    # a process in the guest through envd: PID 1 is orch-init, output and exit code come back
    if [ -x "$CLIENT" ]; then
      out=$("$CLIENT" -port "$VM_PORT" -timeout-ms 20000 start \
        '{"process":{"cmd":"/bin/sh","args":["-c","cat /proc/1/comm; hostname; echo err >&2; exit 3"]}}' 2>&1)
      if grep -qxF 'stdout orch-init\n' <<<"$out" && grep -qxF 'stdout boot1\n' <<<"$out" &&
         grep -qxF 'stderr err\n' <<<"$out" && grep -q '^end 3 ' <<<"$out"; then
        pass guest_process
      else
        fail guest_process "$(tr '\n' '|' <<<"$out")"
      fi
    else
      skip guest_process "$CLIENT not built (make tests)"
    fi
  fi
  if grep -q 'orch-init: cannot' "$VM_LOG"; then
    ok=0; fail "boot_${i}_clean" "$(grep 'orch-init: cannot' "$VM_LOG" | head -3 | tr '\r\n' '  ')"
  fi
  stop_vm
  times+=("$t")
  echo "boot $i: /health answered after $t s"
done
if [ $ok = 1 ] && [ "$BOOTS" -gt 0 ]; then
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
  echo "median boot-to-health: ${median} s over $BOOTS boots (min $(printf '%s\n' "${times[@]}" | sort -n | head -1), max $(printf '%s\n' "${times[@]}" | sort -n | tail -1))"
  pass "boots_${BOOTS}_of_${BOOTS}_healthy"
fi
rm -f "$T/boot.ext4"

# ---- early stage failure: no root disk -> a clear message and the VM powers off ----
if [ "${GUEST_LIFECYCLE:-1}" = 1 ]; then
  saved=$APPEND
  APPEND=${APPEND/root=\/dev\/vda/root=\/dev\/vdz orch.rootwait=300}
  if start_vm noroot "$T/rootfs.ext4" noroot >"$T/why"; then
    end=$((SECONDS + BOOT_TIMEOUT))
    while [ $SECONDS -lt $end ] && kill -0 "$VM_PID" 2>/dev/null; do sleep 0.2; done
    if kill -0 "$VM_PID" 2>/dev/null; then
      fail early_failure_powers_off "still running after ${BOOT_TIMEOUT}s: $(tail -c 300 "$VM_LOG")"
    elif grep -q 'early init failed: cannot mount /dev/vdz (ext4) on /newroot' "$VM_LOG"; then
      pass early_failure_powers_off
    else
      fail early_failure_powers_off "serial: $(tail -c 300 "$VM_LOG" | tr '\r\n' '  ')"
    fi
    stop_vm
  else
    fail early_failure_powers_off "$(cat "$T/why")"
  fi
  APPEND=$saved
fi

# ---- lifecycle: guest view, zombie reaping, envd restart, clean poweroff ----
if [ "${GUEST_LIFECYCLE:-1}" = 1 ]; then
  mkdir -p "$T/rootfs/etc/orch-init"
  cat >"$T/rootfs/etc/orch-init/start" <<'EOF'
#!/bin/sh
echo "hook: hostname=$(hostname)"
echo "hook: addr=$(ip -4 -o addr show dev eth0 | awk '{print $4}')"
echo "hook: route=$(ip route show default | head -1)"
for m in /proc /sys /dev /dev/pts /dev/shm /tmp /run; do
  grep -q " $m " /proc/mounts && echo "hook: mounted $m"
done
[ -L /dev/fd ] && echo "hook: /dev/fd link"
(
  # orphans: their parent subshell exits at once, so they become PID 1's children and, once
  # they exit, zombies until PID 1 reaps them
  ( sleep 0.2 & sleep 0.3 & )
  while ! pidof envd >/dev/null; do sleep 0.1; done
  first=$(pidof envd)
  sleep 1
  echo "hook: zombies=$(ps -o stat | grep -c "^Z")"
  kill "$first"
  while p=$(pidof envd); [ -z "$p" ] || [ "$p" = "$first" ]; do sleep 0.1; done
  echo "hook: envd restarted"
  # the host says when (through envd); at most 60 s
  i=0
  while [ ! -e /run/poweroff-now ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
  kill -TERM 1
) </dev/null &
EOF
  chmod 0755 "$T/rootfs/etc/orch-init/start"
  mkfs.ext4 -q -F -L rootfs -E root_owner=0:0 -d "$T/rootfs" "$T/life.ext4" 64M >/dev/null
  if ! start_vm life "$T/life.ext4" lifecycle >"$T/why"; then
    fail lifecycle_boot "$(cat "$T/why")"
  elif ! t=$(wait_health "$BOOT_TIMEOUT"); then
    fail lifecycle_boot "$t; serial: $(tail -c 600 "$VM_LOG" | tr '\r\n' '  ')"
  else
    pass lifecycle_boot
    log() { tr -d '\r' <"$VM_LOG"; }
    for want in 'hook: hostname=lifecycle' 'hook: addr=169.254.0.21/30' \
      'hook: route=default via 169.254.0.22 dev eth0' 'hook: mounted /dev/pts' \
      'hook: mounted /dev/shm' 'hook: mounted /tmp' 'hook: mounted /run' 'hook: /dev/fd link'; do
      log | grep -qF -- "$want" || fail guest_view "no '$want' in the serial log"
    done
    log | grep -q 'hook: mounted /run' && pass guest_view
    # envd restart: the kill is logged by orch-init, /health answers again
    end=$((SECONDS + 20))
    while [ $SECONDS -lt $end ] && ! log | grep -q 'hook: envd restarted'; do sleep 0.2; done
    if log | grep -q 'hook: zombies=0'; then pass zombies_reaped
    else fail zombies_reaped "$(log | grep 'hook: zombies' || echo 'hook did not report')"; fi
    if log | grep -q 'envd (pid [0-9]*) killed by signal 15' && log | grep -q 'hook: envd restarted'; then
      VM_T0=$(date +%s.%N)
      if t=$(wait_health 20); then pass envd_restarted; else fail envd_restarted "$t"; fi
    else
      fail envd_restarted "serial: $(log | grep orch-init | tail -5 | tr '\n' ' ')"
    fi
    # SIGTERM to PID 1 (sent by the hook once told so): QEMU exits by itself, disk clean
    [ -x "$CLIENT" ] && "$CLIENT" -port "$VM_PORT" -timeout-ms 10000 start \
      '{"process":{"cmd":"/bin/touch","args":["/run/poweroff-now"]}}' >/dev/null 2>&1
    end=$((SECONDS + 90))
    while [ $SECONDS -lt $end ] && kill -0 "$VM_PID" 2>/dev/null; do sleep 0.2; done
    if kill -0 "$VM_PID" 2>/dev/null; then
      fail poweroff "QEMU still running 90 s after the poweroff request: $(log | tail -3 | tr '\n' ' ')"
    else
      wait "$VM_PID"; rc=$?
      if [ $rc = 0 ] && log | grep -q 'orch-init: powering off (signal 15)'; then pass poweroff
      else fail poweroff "qemu exit $rc; $(log | tail -3 | tr '\n' ' ')"; fi
      # unmounted before poweroff: no journal left to replay, and e2fsck finds nothing
      if dumpe2fs -h "$T/life.ext4" 2>/dev/null | grep -q '^Filesystem features:.*needs_recovery'; then
        fail poweroff_disk_clean "the root filesystem was not unmounted (needs_recovery)"
      elif e2fsck -fn "$T/life.ext4" >"$T/fsck" 2>&1; then pass poweroff_disk_clean
      else fail poweroff_disk_clean "$(tail -3 "$T/fsck" | tr '\n' ' ')"; fi
    fi
  fi
  stop_vm
fi
finish
