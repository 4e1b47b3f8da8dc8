#!/usr/bin/env bash
# Template builds (issue 6): a web server snapshotted running answers right after resume;
# -from-build gives a small diff build; an OCI layout base; bad input leaves no trace.
. "$(dirname "$0")/lib.sh"
need_vm
BT=$BIN/build-template
RS=$BIN/resume-sandbox
S=$T/storage
no_trace() { [ ! -e "$S/templates/$1" ]; }

# 1. web server template: build time, and `ok` right after resume (no start-up after resume)
B=$(new_uuid)
t0=$(date +%s.%N)
$BT -build "$B" -storage "$S" -vcpu 1 -memory 256 -disk 64 \
  -start-cmd 'mkdir -p /srv && echo ok > /srv/index.html && exec httpd -f -p 8080 -h /srv' \
  -ready-cmd 'wget -q -O- http://127.0.0.1:8080/index.html' >"$T/b1" 2>&1; rc=$?
secs=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}")
echo "    busybox template build: ${secs}s"
[ "$rc" = 0 ] && pass build_web_template || { fail build_web_template "$(tail -5 "$T/b1")"; finish; }
awk "BEGIN{exit !($secs <= 60)}" && pass build_under_60s || fail build_under_60s "${secs}s"
grep -q 'build log: ' "$T/b1" && pass build_log_printed || fail build_log_printed "no log path in output"
jq -e '.vmm.type == "qemu" and .vmm.memory_mib == 256 and .start.start_command != "" and .template.kernel_version != ""' \
  "$S/templates/$B/metadata.json" >/dev/null && pass metadata_json || fail metadata_json "$(cat "$S/templates/$B/metadata.json")"
t0=$(date +%s.%N)
out=$($RS -build "$B" -from "$S" -v -cmd 'wget -q -O- http://127.0.0.1:8080/index.html' 2>"$T/r1"); rc=$?
total=$(awk "BEGIN{printf \"%.3f\", $(date +%s.%N) - $t0}")
ready=$(sed -n 's/.*ready in \([0-9.]*\) ms.*/\1/p' "$T/r1")
after=$(awk "BEGIN{printf \"%.3f\", $total - ${ready:-0} / 1000}")
echo "    resume ${ready} ms, then wget answered ${after}s later (total ${total}s)"
[ "$rc" = 0 ] && [ "$out" = ok ] && pass web_server_answers_after_resume || fail web_server_answers_after_resume "rc=$rc out=$out $(cat "$T/r1")"
[ -n "$ready" ] && awk "BEGIN{exit !($after <= 1.0)}" && pass answers_within_1s_of_resume || fail answers_within_1s_of_resume "${after}s after resume"

# 2. -from-build: a diff build, small next to the base, layered, with the changes
D=$(new_uuid)
$BT -build "$D" -from-build "$B" -storage "$S" -start-cmd 'echo layer2 > /etc/layer2; sync' \
  -ready-cmd 'test -f /etc/layer2' >"$T/b2" 2>&1; rc=$?
[ "$rc" = 0 ] && pass from_build || fail from_build "$(tail -5 "$T/b2")"
for k in memfile rootfs; do
  obj=$([ $k = memfile ] && echo memfile || echo rootfs.ext4)
  base=$(stat -c %s "$S/templates/$B/$obj"); diff=$(stat -c %s "$S/templates/$D/$obj" 2>/dev/null || echo 0)
  echo "    $k: base $base B, diff $diff B"
  [ "$diff" -lt $((base / 2)) ] && pass "from_build_${k}_diff_small" || fail "from_build_${k}_diff_small" "diff $diff >= base/2 ($base)"
  $BIN/inspect-header -build "$D" -kind $k -storage "$S" -json >"$T/h.json" 2>/dev/null
  owners=$(jq -r '[.mappings[].build_id] | unique | join(" ")' "$T/h.json")
  if [ "$(jq .generation "$T/h.json")" -ge 1 ] && [[ $owners == *"$B"* ]] && [[ $owners == *"$D"* ]]; then pass "from_build_${k}_layered"
  else fail "from_build_${k}_layered" "generation $(jq .generation "$T/h.json"), owners: $owners"; fi
done
out=$($RS -build "$D" -from "$S" -cmd 'cat /etc/layer2; wget -q -O- http://127.0.0.1:8080/index.html' 2>"$T/r2"); rc=$?
[ "$rc" = 0 ] && [ "$out" = "$(printf 'layer2\nok')" ] && pass from_build_resume_shows_changes || fail from_build_resume_shows_changes "rc=$rc out=$out $(cat "$T/r2")"

# 3. OCI image layout made with umoci from a local directory
if command -v umoci >/dev/null; then
  L=$T/oci
  umoci init --layout "$L" >/dev/null 2>&1 && umoci new --image "$L:t" >/dev/null 2>&1 &&
    umoci unpack --image "$L:t" "$T/bundle" >/dev/null 2>&1
  mkdir -p "$T/bundle/rootfs/bin" "$T/bundle/rootfs/etc"
  cp /bin/busybox "$T/bundle/rootfs/bin/busybox"
  for a in sh cat echo mkdir sync test wget httpd ls; do ln -sf busybox "$T/bundle/rootfs/bin/$a"; done
  echo "from an OCI image" > "$T/bundle/rootfs/etc/marker"
  umoci repack --image "$L:t" "$T/bundle" >/dev/null 2>&1
  O=$(new_uuid)
  $BT -build "$O" -storage "$S" -base "oci:$L:t" -vcpu 1 -memory 256 -disk 32 >"$T/b3" 2>&1; rc=$?
  [ "$rc" = 0 ] && pass oci_base_build || fail oci_base_build "$(tail -5 "$T/b3")"
  out=$($RS -build "$O" -from "$S" -cmd 'cat /etc/marker' 2>"$T/r3")
  [ "$out" = "from an OCI image" ] && pass oci_base_resume || fail oci_base_resume "out=$out $(cat "$T/r3")"
else
  skip oci_base "umoci is not installed"
fi

# 4. bad input: clear error, non-zero exit, no trace in storage
expect_status bad_uuid 1 $BT -build ../etc -storage "$S"
grep -q 'not a UUID\|must be a UUID' "$T/.err" && pass bad_uuid_message || fail bad_uuid_message "$(cat "$T/.err")"
expect_status existing_without_force 1 $BT -build "$B" -storage "$S"
grep -q 'already exists' "$T/.err" && [ -f "$S/templates/$B/metadata.json" ] && pass existing_kept || fail existing_kept "$(cat "$T/.err")"
K=$(new_uuid)
expect_status missing_kernel 1 $BT -build "$K" -storage "$S" -kernel no-such-kernel
grep -q "kernel 'no-such-kernel' not found" "$T/.err" && no_trace "$K" && pass missing_kernel_message || fail missing_kernel_message "$(cat "$T/.err")"
F=$(new_uuid)
expect_status failing_start_cmd 1 $BT -build "$F" -storage "$S" -vcpu 1 -memory 256 -disk 16 -start-cmd 'echo broken >&2; exit 3'
grep -q 'start command failed with exit status 3' "$T/.err" && no_trace "$F" && pass failing_start_no_trace || fail failing_start_no_trace "$(tail -3 "$T/.err")"
R=$(new_uuid)
expect_status ready_timeout 1 $BT -build "$R" -storage "$S" -vcpu 1 -memory 256 -disk 16 -start-cmd 'sleep 1000' -ready-cmd false -ready-timeout 4s
grep -q 'did not succeed within' "$T/.err" && no_trace "$R" && pass ready_timeout_no_trace || fail ready_timeout_no_trace "$(tail -3 "$T/.err")"
expect_status firecracker_unavailable 1 $BT -build "$(new_uuid)" -storage "$S" -firecracker v1.12.1
grep -q 'Firecracker VMM not available' "$T/.err" && pass firecracker_message || fail firecracker_message "$(cat "$T/.err")"
left=$(ls "$S/sandbox" 2>/dev/null | wc -l)
[ "$left" = 0 ] && pass no_sandbox_left || fail no_sandbox_left "$left sandbox dirs left"
finish
