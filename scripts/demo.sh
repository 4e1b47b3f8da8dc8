#!/usr/bin/env bash
# make demo: build the default template (busybox base with a small web server started and
# ready in the snapshot) into .local-build, resume a sandbox from it, run a command in it,
# print the timings.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/bin
STORAGE=${DEMO_STORAGE:-.local-build}
BUILD=${DEMO_BUILD:-00000000-0000-4000-8000-00000000de30}
[ "$(id -u)" = 0 ] || { echo "demo: run as root (VM networking)" >&2; exit 1; }
make --no-print-directory kernel >/dev/null

echo "== build-template: busybox base, start command = a web server, ready check = fetch a page"
start=$(date +%s.%N)
$BIN/build-template -build "$BUILD" -storage "$STORAGE" -force -vcpu 1 -memory 512 -disk 256 \
  -start-cmd 'mkdir -p /srv && echo "hello from a snapshotted web server" > /srv/index.html && exec httpd -f -p 8080 -h /srv' \
  -ready-cmd 'wget -q -O- http://127.0.0.1:8080/index.html'
echo

echo "== resume-sandbox -cmd: the server is already running after resume"
$BIN/resume-sandbox -build "$BUILD" -from "$STORAGE" -v \
  -cmd 'echo "uname: $(uname -sr)"; echo -n "web server says: "; wget -q -O- http://127.0.0.1:8080/index.html'
echo

echo "== resume-sandbox -iterations 10: resume timings"
$BIN/resume-sandbox -build "$BUILD" -from "$STORAGE" -iterations 10 | tail -8
echo
echo "demo finished in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}") s"
echo "next: $BIN/resume-sandbox -build $BUILD -from $STORAGE   (interactive, Ctrl-C to stop)"
