# Helpers for envd's shell tests (source after tests/shell/lib.sh).
# envd_start [ADDR PORT] [extra flags...]: runs build/guest/envd in $T on a free loopback port
# (or the given one); sets EPID, EPORT, URL. Returns 1 when it does not come up.
ENVD=${ENVD_BIN:-$ROOT/build/guest/envd}
CLIENT=$ROOT/build/tests/helpers/envd_client
envd_need() {
  [ -x "$ENVD" ] && [ -x "$CLIENT" ] || { echo "SKIP $(basename "$0"): build envd and the helpers first (make tests)"; exit 77; }
  need curl sha256sum
}
envd_start() {
  local port=${1:-} tries=0
  shift || true
  while :; do
    local p=${port:-$(shuf -i 20000-59999 -n 1)}
    (cd "$T" && exec "$ENVD" -addr 127.0.0.1 -port "$p" -no-clock "$@" >>"$T/envd.log" 2>&1) &
    EPID=$!
    local i
    for i in $(seq 100); do
      curl -s -o /dev/null "http://127.0.0.1:$p/health" 2>/dev/null && break
      kill -0 $EPID 2>/dev/null || break
      sleep 0.05
    done
    if kill -0 $EPID 2>/dev/null && curl -s -o /dev/null "http://127.0.0.1:$p/health"; then
      EPORT=$p
      URL=http://127.0.0.1:$p
      on_exit "kill $EPID; wait $EPID"
      return 0
    fi
    kill $EPID 2>/dev/null; wait $EPID 2>/dev/null
    tries=$((tries + 1))
    [ -z "$port" ] && [ $tries -lt 5 ] || return 1
  done
}
# rpc METHOD JSON [curl args...]: unary Connect call; prints "STATUS BODY"
rpc() {
  local m=$1 j=$2; shift 2
  local code
  code=$(curl -s -o "$T/.rpc" -w '%{http_code}' -H 'Content-Type: application/json' -d "$j" "$@" "$URL/$m")
  echo "$code $(cat "$T/.rpc")"
}
# children of envd (processes it started that are still around)
envd_children() { ps -o pid= --ppid "$EPID" | wc -l; }
envd_fds() { ls "/proc/$EPID/fd" | wc -l; }
# fail when envd's log holds a sanitizer report (ASan build runs)
envd_sanitizer_check() {
  if grep -qE 'AddressSanitizer|runtime error|LeakSanitizer' "$T/envd.log"; then
    fail envd_sanitizer_clean "$(grep -m3 -E 'Sanitizer|runtime error' "$T/envd.log")"
  else
    pass envd_sanitizer_clean
  fi
}
