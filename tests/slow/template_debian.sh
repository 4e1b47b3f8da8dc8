#!/usr/bin/env bash
# make check-slow: a real Debian bookworm template (debootstrap, cached after the first
# build) resumes into a sandbox where apt-get and python3 run.
. "$(dirname "$0")/../shell/lib.sh"
need_vm
need debootstrap
S=$T/storage
B=$(new_uuid)
t0=$(date +%s)
"$BIN/build-template" -build "$B" -storage "$S" -base debian -vcpu 1 -memory 512 -disk 256 >"$T/b" 2>&1; rc=$?
echo "    debian template build: $(( $(date +%s) - t0 ))s"
[ "$rc" = 0 ] && pass debian_build || { fail debian_build "$(tail -5 "$T/b")"; finish; }
out=$("$BIN/resume-sandbox" -build "$B" -from "$S" -cmd 'apt-get --version | head -1; python3 --version' 2>"$T/r"); rc=$?
echo "$out" | sed 's/^/    /'
[ "$rc" = 0 ] && echo "$out" | grep -q '^apt ' && echo "$out" | grep -q '^Python 3' && pass debian_apt_and_python ||
  fail debian_apt_and_python "rc=$rc out=$out $(cat "$T/r")"
finish
