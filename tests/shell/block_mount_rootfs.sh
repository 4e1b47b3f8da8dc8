#!/usr/bin/env bash
# mount-rootfs on a 2-layer ext4 build: -verify, files readable and writable at the mount
# point, Ctrl-C leaves no mount, loop device, FUSE mount, socket or temp file behind; a dead
# mount-rootfs is cleaned up by the next one; bad input fails cleanly.
. "$(dirname "$0")/lib.sh"
need mkfs.ext4 debugfs e2fsck losetup
[ "$(id -u)" = 0 ] || { echo "SKIP block_mount_rootfs.sh: needs root (mount, loop devices)"; exit 77; }
[ -e /dev/fuse ] || { echo "SKIP block_mount_rootfs.sh: no /dev/fuse"; exit 77; }
[ -e /dev/loop-control ] || { echo "SKIP block_mount_rootfs.sh: no /dev/loop-control"; exit 77; }
H=$ROOT/build/tests/helpers
MR=$BIN/mount-rootfs
[ -x "$MR" ] && [ -x "$H/block_mkbuild" ] || { echo "SKIP block_mount_rootfs.sh: build first (make tests)"; exit 77; }
export ORCHESTRATOR_BASE_PATH=$T/orch
ST=$T/storage
B1=20000000-0000-4000-8000-000000000001
B2=20000000-0000-4000-8000-000000000002
BAD=20000000-0000-4000-8000-0000000000bd

# base image, and a second image = base + a file written offline (debugfs): the layer
mkdir -p "$T/root/etc"
echo "base layer" >"$T/root/etc/motd"
head -c 2000000 /dev/urandom >"$T/root/blob"
mkfs.ext4 -q -F -b 4096 -d "$T/root" "$T/a.img" 64M
cp "$T/a.img" "$T/b.img"
echo "second layer" >"$T/layer2.txt"
debugfs -w -R "write $T/layer2.txt /layer2.txt" "$T/b.img" >/dev/null 2>&1
"$H/block_mkbuild" base -storage "$ST" -build $B1 -image "$T/a.img" >/dev/null
"$H/block_mkbuild" layer -storage "$ST" -base $B1 -build $B2 -image "$T/b.img" >"$T/layer.out"
check layer_built grep -q "layer $B2" "$T/layer.out"

# a corrupted build for -verify to reject: root inode cleared
cp "$T/a.img" "$T/bad.img"
debugfs -w -R "clri <2>" "$T/bad.img" >/dev/null 2>&1
"$H/block_mkbuild" base -storage "$ST" -build $BAD -image "$T/bad.img" >/dev/null

expect_status verify_clean 0 "$MR" -build $B2 -storage "$ST" -verify
check verify_says_clean grep -q "clean" "$T/.out"
expect_status verify_detects_corruption 1 "$MR" -build $BAD -storage "$ST" -verify
check verify_error_line grep -q "^mount-rootfs: error: e2fsck" "$T/.err"

leftovers() { # prints anything mount-rootfs may have left behind
  grep -E "$T|orch-fusedev" /proc/mounts
  losetup -a | grep -F "$T"
  ls -A "$T/orch/sandbox" 2>/dev/null
}

MNT=$T/mnt
"$MR" -build $B2 -storage "$ST" -mount "$MNT" >"$T/mr.out" 2>"$T/mr.err" &
PID=$!
on_exit "kill -INT $PID; sleep 1; umount -l '$MNT'"
for _ in $(seq 100); do grep -q "press Ctrl-C" "$T/mr.out" && break; sleep 0.1; done
check mounted grep -q " $MNT ext4 rw" /proc/mounts
check base_file_readable grep -qx "base layer" "$MNT/etc/motd"
check layer_file_readable grep -qx "second layer" "$MNT/layer2.txt"
check base_blob_intact cmp -s "$MNT/blob" "$T/root/blob"
echo "written through the overlay" >"$MNT/new.txt" && sync
check written_file_reads_back grep -qx "written through the overlay" "$MNT/new.txt"
dd if=/dev/urandom of="$MNT/big" bs=1M count=8 status=none && sync
check big_write_reads_back test "$(stat -c %s "$MNT/big")" = 8388608
check fuse_mount_present grep -q "orch-fusedev" /proc/mounts
check loop_device_present bash -c "losetup -a | grep -qF '$T/orch'"
kill -INT $PID
wait $PID
rc=$?
[ $rc = 0 ] && pass clean_exit_on_sigint || fail clean_exit_on_sigint "exit $rc: $(head -c 300 "$T/mr.err")"
left=$(leftovers)
[ -z "$left" ] && pass nothing_left_behind || fail nothing_left_behind "$left"
check mount_dir_removed test ! -e "$MNT"
check base_unchanged cmp -s "$ST/$B1/rootfs.ext4" "$T/a.img"

# a mount-rootfs killed with SIGKILL leaves its mount; the next one cleans it up
"$MR" -build $B2 -storage "$ST" -mount "$MNT" >"$T/mr2.out" 2>&1 &
PID=$!
for _ in $(seq 100); do grep -q "press Ctrl-C" "$T/mr2.out" && break; sleep 0.1; done
kill -KILL $PID; wait $PID 2>/dev/null
check killed_left_mount grep -q " $MNT ext4" /proc/mounts
"$MR" -build $B2 -storage "$ST" -verify >"$T/mr3.out" 2>&1
check next_run_ok grep -q clean "$T/mr3.out"
sleep 0.5
left=$(leftovers)
[ -z "$left" ] && pass stale_owner_cleaned || fail stale_owner_cleaned "$left"
rmdir "$MNT" 2>/dev/null

# -empty: a zero device of the given size, attached but not mounted; a file system made on it
# lives in the throwaway COW layer
"$MR" -empty -size 32M -block-size 4096 >"$T/e.out" 2>&1 &
PID=$!
for _ in $(seq 100); do grep -q "press Ctrl-C" "$T/e.out" && break; sleep 0.1; done
DEV=$(sed -n 's/.*attached to \(\/dev\/loop[0-9]*\).*/\1/p' "$T/e.out")
check empty_device_size bash -c "[ -n '$DEV' ] && [ \"\$(blockdev --getsize64 '$DEV')\" = 33554432 ]"
check empty_device_reads_zeros bash -c "cmp -s -n 1048576 '$DEV' /dev/zero"
check empty_device_takes_mkfs mkfs.ext4 -q -F "$DEV"
kill -INT $PID; wait $PID
check empty_clean_exit test $? = 0
left=$(leftovers)
[ -z "$left" ] && pass empty_nothing_left || fail empty_nothing_left "$left"

# bad input
expect_status usage_no_build 2 "$MR" -mount "$MNT"
expect_status usage_bad_empty_size 2 "$MR" -empty -size 1000 -block-size 4096
expect_status help 0 "$MR" -h
expect_status missing_build 1 "$MR" -build 20000000-0000-4000-8000-0000000000ff -storage "$ST" -verify
check missing_build_message grep -q "^mount-rootfs: error: " "$T/.err"
expect_status bad_build_id 1 "$MR" -build not-a-uuid -storage "$ST" -verify
left=$(leftovers)
[ -z "$left" ] && pass nothing_left_after_errors || fail nothing_left_after_errors "$left"
finish
