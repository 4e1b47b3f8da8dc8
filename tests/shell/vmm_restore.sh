#!/usr/bin/env bash
# QEMU driver end to end under the accelerator vmm_accel_detect picks (TCG here): a busybox
# guest whose init counts ticks on the console and in a RAM file is booted with share=on RAM,
# snapshotted (device state only, x-ignore-shared), restored from the memfile with share=off
# under the seccomp sandbox, paused into a diff (dirty pages + filtered state), restored as the
# next generation (base + diff) and so on for 5 generations, then killed: each step must keep the guest's counters going.
# Four more restores of the same memfile run at once (RssAnon per QEMU printed).
# Also times 10 restores of ours against restores from a full migration stream (p50), and
# captures a real stream for the migstream parser (test_migstream_real).
. "$(dirname "$0")/lib.sh"
need qemu-system-x86_64 busybox cpio gzip
H=$ROOT/build/tests/helpers
[ -x "$H/vmm_scenario" ] || { echo "SKIP vmm_restore: helpers not built (make tests)"; exit 77; }
if ! ver=$(bash "$ROOT/scripts/kernel.sh" 2>"$T/kernel.err"); then
  echo "SKIP vmm_restore: no guest kernel ($(tail -1 "$T/kernel.err"))"; exit 77
fi
K=$ROOT/build/kernels/$ver/vmlinux.bin
BB=$(command -v busybox)
file -L "$BB" 2>/dev/null | grep -q 'statically linked' || [ -f /bin/busybox ] || { echo "SKIP vmm_restore: needs busybox-static"; exit 77; }

# the guest: busybox + an init that ticks
mkdir -p "$T/root/bin" "$T/root/proc" "$T/root/dev" "$T/root/tmp"
cp "$BB" "$T/root/bin/busybox"
cat >"$T/root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
i=0
while true; do
  i=$((i+1))
  echo "$i" >> /tmp/ticks
  echo "TICK $i $(wc -l < /tmp/ticks)"
  sleep 0.2
done
INIT
chmod +x "$T/root/init"
(cd "$T/root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 >"$T/initrd.gz")
truncate -s 16M "$T/disk.img"

# any QEMU left behind by the helper is killed by pid
on_exit 'for p in $(pgrep -f "mem-path=$T/" 2>/dev/null); do kill -9 $p; done'

"$H/vmm_scenario" -kernel "$K" -initrd "$T/initrd.gz" -dir "$T" -rootfs "$T/disk.img" -runs "${VMM_RUNS:-10}" -concurrent "${VMM_CONCURRENT:-4}" -generations "${VMM_GENERATIONS:-5}" \
  >"$T/out" 2>&1
rc=$?
cat "$T/out"
if [ $rc -ne 0 ] && ! grep -q '^FAIL' "$T/out"; then
  fail vmm_scenario "exit $rc: $(tail -3 "$T/out")"
fi
grep -q '^FAIL' "$T/out" && _failed=1

# nothing left running from this test
sleep 0.1
left=$(pgrep -f "mem-path=$T/" || true)
if [ -z "$left" ]; then pass vmm_no_qemu_left; else fail vmm_no_qemu_left "pids $left"; fi

# a real state stream for the parser: the filter must accept it and drop nothing more
if [ -x "$ROOT/build/tests/test_migstream" ] && [ -f "$T/state1" ]; then
  if MIGSTREAM_REAL="$T/state1" MIGSTREAM_FULL="$T/full" "$ROOT/build/tests/test_migstream" >"$T/ms.out" 2>&1; then
    grep -E '^(PASS|SKIP) test_real' "$T/ms.out" | sed 's/^/    /'
    pass vmm_real_stream_parses
  else
    fail vmm_real_stream_parses "$(grep FAIL "$T/ms.out" | head -3)"
  fi
fi
finish
