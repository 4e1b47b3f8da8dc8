#!/usr/bin/env bash
# resume: issue 5's resume benchmark (docs/bench.md "resume").
#  - template: busybox, 1 vCPU, 512 MiB RAM; its start command fills 128 MiB of /dev/shm with
#    random bytes and then runs httpd; built once into build/bench-resume/storage (rebuilt
#    when this script's template recipe changes).
#  - time, RESUME_RUNS (20) runs each (build/bench/resume/resume_bench -mode time); (b) and (c)
#    rotate run by run, the (a) runs follow. RESUME_KINDS=cold,full,ours,fullfile adds
#    "fullfile": the full stream restored through our VMM driver over an empty memfile.
#    (a) cold boot of the same image: kernel + initrd + the build's rootfs logical file, QEMU
#        microvm/TCG in a network slot, spawn -> envd answers POST /init;
#    (b) plain QEMU restore of a full migration stream with all RAM inside (saved once from a
#        restored sandbox): QEMU started by hand with anonymous RAM, `-incoming defer`,
#        migrate-incoming exec:cat STREAM, cont; spawn -> POST /init answered;
#    (c) ours: sandbox_resume, entry -> POST /init answered.
#  - memory: RESUME_SANDBOXES (16) sandboxes resumed and left idle RESUME_IDLE (5s); per QEMU
#    RssAnon, Private_Dirty and the guest pages written since restore; average % of guest RAM.
# Targets (issue 5): ours >= 10x faster than (a) and >= 3x faster than (b) at p50; private
# memory per idle sandbox <= 15 % of guest RAM. RESUME_STRICT=1: exit 1 when one is missed.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
RUNS=${RESUME_RUNS:-20}
NSB=${RESUME_SANDBOXES:-16}
IDLE=${RESUME_IDLE:-5s}
STORE=$ROOT/build/bench-resume/storage
BUILD=0b0b0b0b-5555-4555-8555-000000000005
HELPER=$ROOT/build/bench/resume/resume_bench
START_CMD='mkdir -p /dev/shm && (mountpoint -q /dev/shm || mount -t tmpfs -o size=256m tmpfs /dev/shm) && dd if=/dev/urandom of=/dev/shm/fill bs=1M count=128 2>/dev/null && mkdir -p /srv && echo ok > /srv/index.html && exec httpd -f -p 8080 -h /srv'
READY_CMD='test "$(stat -c %s /dev/shm/fill)" = 134217728 && wget -q -O- http://127.0.0.1:8080/index.html'

[ "$(id -u)" = 0 ] || { echo "resume bench: must run as root (network namespaces, taps)"; exit 1; }
for b in build/bin/build-template build/bin/inspect-data "$HELPER"; do
  [ -x "$b" ] || { echo "resume bench: $b missing (make all build/bench/resume/resume_bench)"; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "resume bench: qemu-system-x86_64 not installed"; exit 1; }
if [ ! -f build/kernels/default/vmlinux.bin ]; then
  make --no-print-directory kernel >/dev/null || { echo "resume bench: make kernel failed"; exit 1; }
fi
KDIR=$(readlink -f build/kernels/default)

W=$(mktemp -d /tmp/resume-bench.XXXXXX)
HPID=
ALLPIDS=()
cleanup() {
  local p
  # the helper stops its own VMs on SIGTERM; anything left (helper SIGKILLed) is found by our paths
  if [ -n "$HPID" ] && kill -0 "$HPID" 2>/dev/null; then
    kill -TERM "$HPID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$HPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$HPID" 2>/dev/null
  fi
  for p in $(pgrep -f -- "qemu.*$W/" ; pgrep -f -- "qemu.*$STORE/sandbox/"); do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_helper OUT ARGS...: the helper in the background (a trapped signal interrupts `wait`, so
# the EXIT trap can stop it; a foreground pipeline would defer the trap), its output shown live
run_helper() {
  local out=$1 rc tpid
  shift
  "$HELPER" "$@" >"$out" 2>&1 &
  HPID=$!
  ALLPIDS+=("$HPID")
  tail -n +1 --pid="$HPID" -f "$out" &
  tpid=$!
  wait "$HPID"
  rc=$?
  wait "$tpid"
  HPID=
  return $rc
}

# ---- template (once) ----
mkdir -p "$STORE"
stamp=$(printf '%s\n%s\n' "$START_CMD" "$READY_CMD" | sha256sum | cut -c1-16)
(
  flock 9
  if [ ! -f "$STORE/templates/$BUILD/metadata.json" ] || [ "$(cat "$STORE/.recipe" 2>/dev/null)" != "$stamp" ]; then
    echo "building the bench template $BUILD (512 MiB RAM, 128 MiB touched) into $STORE"
    t0=$(date +%s.%N)
    build/bin/build-template -build "$BUILD" -storage "$STORE" -force -vcpu 1 -memory 512 -disk 64 \
      -start-cmd "$START_CMD" -ready-cmd "$READY_CMD" >"$STORE/build.out" 2>&1 ||
      { echo "resume bench: build-template failed:"; tail -5 "$STORE/build.out"; exit 1; }
    echo "$stamp" >"$STORE/.recipe"
    awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "template built in %.1f s\n", b - a }'
  fi
) 9>"$STORE/.lock" || exit 1

build/bin/inspect-data -build "$BUILD" -kind rootfs -logical -o "$W/rootfs.ext4" -storage "$STORE" >/dev/null ||
  { echo "resume bench: cannot extract the rootfs"; exit 1; }

# ---- time: (a) cold boot, (b) full-stream restore, (c) ours ----
echo "-- time to envd answering POST /init, $RUNS runs each; restores and ours rotating, then the cold boots (load: $(cut -d' ' -f1-3 /proc/loadavg))"
run_helper "$W/time.out" -mode time -storage "$STORE" -build "$BUILD" -rootfs "$W/rootfs.ext4" -kernel-dir "$KDIR" \
  -work "$W" -runs "$RUNS" -kinds "${RESUME_KINDS:-cold,full,ours}" || { echo "resume bench: timing failed"; exit 1; }

# ---- memory of idle sandboxes ----
echo "-- private memory of $NSB idle sandboxes (idle $IDLE)"
run_helper "$W/mem.out" -mode mem -storage "$STORE" -build "$BUILD" -n "$NSB" -idle "$IDLE" ||
  { echo "resume bench: memory run failed"; exit 1; }

# ---- leftovers ----
left=""
[ -z "$(ls -A "$STORE/sandbox" 2>/dev/null)" ] || left+=" sandbox-dirs:$(ls "$STORE/sandbox" | head -3 | tr '\n' ' ')"
[ -z "$(pgrep -f -- "qemu.*$STORE/sandbox/"; pgrep -f -- "qemu.*$W/")" ] || left+=" qemu-processes"
for f in /run/orch/network/slot-*.lock; do
  [ -e "$f" ] || continue
  for p in "${ALLPIDS[@]}"; do [ "$(cat "$f" 2>/dev/null)" = "$p" ] && left+=" net-slot:$f"; done
done
ls "$W" | grep -qv -e '^rootfs.ext4$' -e '^time.out$' -e '^mem.out$' && left+=" work-files:$(ls "$W" | tr '\n' ' ')"

# ---- summary ----
field() { sed -n "s/.*RESULT mode=$1 .* $2=\([0-9.]*\).*/\1/p" "$W/time.out"; }
memf() { sed -n "s/.*RESULT mem .* $1=\([0-9.]*\).*/\1/p" "$W/mem.out"; }
a50=$(field cold p50_ms); a99=$(field cold p99_ms)
b50=$(field full p50_ms); b99=$(field full p99_ms)
c50=$(field ours p50_ms); c99=$(field ours p99_ms)
acpu=$(field cold cpu_p50_ms); bcpu=$(field full cpu_p50_ms); ccpu=$(field ours cpu_p50_ms)
sbytes=$(sed -n 's/^RESULT stream_bytes=\([0-9]*\)/\1/p' "$W/time.out")
pct=$(memf pct_of_ram); anon=$(memf avg_rss_anon_kib); gd=$(memf avg_guest_dirty_kib); ans=$(memf answered)
echo
echo "== resume benchmark summary (512 MiB guest, 128 MiB touched, TCG; $RUNS runs each)"
awk -v acpu="$acpu" -v bcpu="$bcpu" -v ccpu="$ccpu" -v a50="$a50" -v a99="$a99" -v b50="$b50" -v b99="$b99" -v c50="$c50" -v c99="$c99" -v sb="$sbytes" \
    -v pct="$pct" -v anon="$anon" -v gd="$gd" -v n="$NSB" -v ans="$ans" -v strict="${RESUME_STRICT:-0}" 'BEGIN {
  printf "%-42s %9s %9s %12s %13s %9s\n", "spawn -> envd POST /init answered", "p50 ms", "p99 ms", "p50 vs ours", "CPU p50 ms", "vs ours"
  printf "%-42s %9.1f %9.1f %11.1fx %13.1f %8.1fx\n", "(a) cold boot, same image", a50, a99, a50 / c50, acpu, acpu / ccpu
  printf "%-42s %9.1f %9.1f %11.1fx %13.1f %8.1fx\n", sprintf("(b) plain QEMU restore, %.0f MiB stream", sb / 1048576), b50, b99, b50 / c50, bcpu, bcpu / ccpu
  printf "%-42s %9.1f %9.1f %12s %13.1f %9s\n", "(c) ours (sandbox_resume)", c50, c99, "1.0x", ccpu, "1.0x"
  printf "(CPU = QEMU threads + the orchestrator process from spawn to /init answered; wall times depend on host load)\n"
  printf "ratio ours/(a) at p50: %.3f   ours/(b): %.3f\n", c50 / a50, c50 / b50
  printf "idle memory, %d sandboxes: RssAnon %.1f MiB per QEMU = %.1f%% of guest RAM (guest-written pages %.1f MiB); %d of %d answered echo\n", n, anon / 1024, pct, gd / 1024, ans, n
  ok1 = a50 / c50 >= 10; ok2 = b50 / c50 >= 3; ok3 = pct <= 15
  printf "target ours >= 10x faster than (a) at p50: %s (%.1fx)\n", ok1 ? "met" : "MISSED", a50 / c50
  printf "target ours >= 3x faster than (b) at p50:  %s (%.1fx)\n", ok2 ? "met" : "MISSED", b50 / c50
  printf "target private memory <= 15%% of guest RAM: %s (%.1f%%)\n", ok3 ? "met" : "MISSED", pct
  exit (strict && !(ok1 && ok2 && ok3)) ? 3 : 0 }'
rc=$?
if [ -n "$left" ]; then echo "resume bench: leftovers:$left"; rc=1; else echo "leftovers: none (sandbox dirs, QEMU processes, network slots, work files)"; fi
[ $rc = 3 ] && { echo "resume bench: a target was missed (RESUME_STRICT=1)"; rc=1; }
exit $rc
