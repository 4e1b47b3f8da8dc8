#!/usr/bin/env bash
# Sandbox runtime (issue 5): resume -> command through envd, 16 concurrent sandboxes,
# pause sizes, a chain of 5 pause->resume generations, QEMU killed, orchestrator SIGKILLed,
# and nothing leaked afterwards.
. "$(dirname "$0")/lib.sh"
need_vm
RS=$BIN/resume-sandbox
ns_before=$(ip netns list | grep -c '^ns-')
shared_template || { fail template "$(tail -5 "$TSTORE/build.out")"; finish; }
pass template

# 1. resume -> echo hello
out=$($RS -build "$TBUILD" -from "$TSTORE" -cmd 'echo hello' 2>"$T/err"); rc=$?
[ "$rc" = 0 ] && [ "$out" = hello ] && pass resume_echo_hello || fail resume_echo_hello "rc=$rc out=$out $(cat "$T/err")"

# exit status and stderr pass through; the web server started at build time is running
out=$($RS -build "$TBUILD" -from "$TSTORE" -cmd 'wget -q -O- http://127.0.0.1:8080/index.html; echo oops >&2; exit 7' 2>"$T/err"); rc=$?
[ "$rc" = 7 ] && [ "$out" = ok ] && grep -q oops "$T/err" && pass exit_status_and_streams ||
  fail exit_status_and_streams "rc=$rc out=$out err=$(cat "$T/err")"

# 2. 16 concurrent sandboxes from one build, all answer
$RS -build "$TBUILD" -from "$TSTORE" -iterations 16 -concurrency 16 >"$T/conc" 2>&1; rc=$?
n=$(grep -c '^run ' "$T/conc")
[ "$rc" = 0 ] && [ "$n" = 16 ] && pass sixteen_concurrent || fail sixteen_concurrent "rc=$rc runs=$n $(tail -3 "$T/conc")"
grep -E '^(p50|p99)' "$T/conc" | sed 's/^/    concurrent resume /'

# 3. pause of a sandbox that wrote 10 MB to RAM and 4 MB to a file
P1=$(new_uuid)
$RS -build "$TBUILD" -from "$TSTORE" -pause-to "$P1" \
  -cmd 'dd if=/dev/urandom of=/dev/shm/ram bs=1M count=10 2>/dev/null; dd if=/dev/urandom of=/root/disk bs=1M count=4 2>/dev/null; sync' \
  >"$T/p1" 2>&1; rc=$?
mem=$(stat -c %s "$TSTORE/templates/$P1/memfile" 2>/dev/null || echo 0)
disk=$(stat -c %s "$TSTORE/templates/$P1/rootfs.ext4" 2>/dev/null || echo 0)
echo "    pause: memfile diff $mem B, rootfs diff $disk B; $(grep -o 'paused into.*' "$T/p1")"
if [ "$rc" = 0 ] && [ "$mem" -ge $((10 << 20)) ] && [ "$mem" -le $((64 << 20)) ]; then pass pause_memfile_diff_small
else fail pause_memfile_diff_small "rc=$rc memfile diff $mem B (want 10..64 MiB of 256 MiB RAM) $(tail -2 "$T/p1")"; fi
if [ "$disk" -ge $((4 << 20)) ] && [ "$disk" -le $((16 << 20)) ]; then pass pause_rootfs_diff_is_written_blocks
else fail pause_rootfs_diff_is_written_blocks "rootfs diff $disk B (want 4..16 MiB)"; fi
$BIN/inspect-header -build "$P1" -kind rootfs -storage "$TSTORE" -json >"$T/h.json" 2>&1 &&
  [ "$(jq .generation "$T/h.json")" = 1 ] && pass pause_header_generation || fail pause_header_generation "$(head -c 300 "$T/h.json")"

# 4. a chain of 5 pause->resume generations: a growing file and a running process survive
prev=$TBUILD
expect=$T/expect; : >"$expect"
$RS -build "$prev" -from "$TSTORE" -pause-to "$(new_uuid | tee "$T/g0")" \
  -cmd 'setsid sh -c "i=0; while true; do i=\$((i+1)); echo \$i > /dev/shm/counter; sleep 0.2; done" >/dev/null 2>&1 </dev/null & echo $! > /root/counter.pid; : > /root/growing; sleep 1' >"$T/chain" 2>&1 ||
  fail chain_start "$(tail -3 "$T/chain")"
prev=$(cat "$T/g0"); last_count=0; pid0=""; ok=1
for g in 1 2 3 4 5; do
  next=$(new_uuid)
  line="generation $g $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  echo "$line" >>"$expect"
  out=$($RS -build "$prev" -from "$TSTORE" -pause-to "$next" \
        -cmd "echo '$line' >> /root/growing; sync; sha256sum /root/growing | cut -d' ' -f1; cat /root/counter.pid; kill -0 \$(cat /root/counter.pid) && echo alive; cat /dev/shm/counter" 2>"$T/chain.err")
  rc=$?
  sum=$(echo "$out" | sed -n 1p); pid=$(echo "$out" | sed -n 2p); alive=$(echo "$out" | sed -n 3p); count=$(echo "$out" | sed -n 4p)
  want=$(sha256sum "$expect" | cut -d' ' -f1)
  [ -z "$pid0" ] && pid0=$pid
  if [ "$rc" != 0 ] || [ "$sum" != "$want" ] || [ "$pid" != "$pid0" ] || [ "$alive" != alive ] || ! [ "${count:-0}" -gt "$last_count" ]; then
    fail "chain_generation_$g" "rc=$rc sum=$sum want=$want pid=$pid/$pid0 alive=$alive count=$count last=$last_count $(tail -2 "$T/chain.err")"
    ok=0; break
  fi
  last_count=$count; prev=$next
done
[ "$ok" = 1 ] && pass chain_of_5_generations
gen=$($BIN/inspect-header -build "$prev" -kind memfile -storage "$TSTORE" -json 2>/dev/null | jq .generation)
[ "$gen" = 6 ] && pass chain_memfile_generation_6 || fail chain_memfile_generation_6 "generation=$gen"

# 5. faults: QEMU killed -> sandbox reported dead, exit 125, everything released
$RS -build "$TBUILD" -from "$TSTORE" -cmd 'sleep 60' >"$T/dead.out" 2>"$T/dead.err" &
rpid=$!
for i in $(seq 100); do qpid=$(pgrep -f "qemu-system-x86_64.*$TSTORE/sandbox" | head -1); [ -n "$qpid" ] && break; sleep 0.1; done
sleep 1
[ -n "$qpid" ] && kill -9 "$qpid"
wait $rpid; rc=$?
[ "$rc" = 125 ] && grep -q 'died' "$T/dead.err" && pass qemu_killed_reported || fail qemu_killed_reported "rc=$rc $(cat "$T/dead.err")"
no_leaks qemu_killed_released

# the command SIGKILLed -> its leftovers are removed by the next run
$RS -build "$TBUILD" -from "$TSTORE" >"$T/int.out" 2>&1 &
rpid=$!
for i in $(seq 100); do grep -q 'is running' "$T/int.out" && break; sleep 0.1; done
kill -9 $rpid; wait $rpid 2>/dev/null
sleep 0.2
left=$(ls "$TSTORE/sandbox" | wc -l)
[ "$left" -ge 1 ] && pass sigkill_leaves_leftovers || fail sigkill_leaves_leftovers "expected a leftover sandbox dir"
$RS -build "$TBUILD" -from "$TSTORE" -cmd true >/dev/null 2>"$T/reap.err"; rc=$?
[ "$rc" = 0 ] && pass rerun_after_sigkill || fail rerun_after_sigkill "rc=$rc $(cat "$T/reap.err")"
no_leaks leftovers_removed

# every ns-N left must belong to a live owner (its slot lock held): ours have all exited
leaked=""
for ns in $(ip netns list | awk '/^ns-/{print $1}'); do
  lock=${ORCH_NETWORK_DIR:-/run/orch/network}/slot-${ns#ns-}.lock
  if [ ! -e "$lock" ] || flock -n "$lock" true; then leaked="$leaked $ns"; fi
done
[ -z "$leaked" ] && pass no_namespace_leaked || fail no_namespace_leaked "namespaces without a live owner:$leaked (before: $ns_before)"
finish
