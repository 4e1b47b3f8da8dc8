# Bucket test helpers: a real S3 server (s3rver from npm, PLATFORM.md §7) and a fault proxy.
# Source after tests/shell/lib.sh.  s3_start sets S3_PORT, S3_URL (http://127.0.0.1:PORT),
# S3_DIR and the AWS_* variables; everything started here is stopped by on_exit.
S3RVER_VERSION=3.7.1
S3RVER_PREFIX=$ROOT/build/s3rver
S3RVER_BIN=$S3RVER_PREFIX/node_modules/.bin/s3rver
S3_BUCKET=test-bucket

# s3_install: installs s3rver into build/s3rver when missing. Non-zero (with a reason on
# stderr) when npm is missing or cannot install it.
s3_install() {
  [ -x "$S3RVER_BIN" ] && return 0
  command -v npm >/dev/null || { echo "npm not installed" >&2; return 1; }
  mkdir -p "$S3RVER_PREFIX"
  (cd "$S3RVER_PREFIX" && timeout 300 npm install --no-audit --no-fund --loglevel=error \
    "s3rver@$S3RVER_VERSION" >"$S3RVER_PREFIX/install.log" 2>&1) ||
    { echo "npm install s3rver@$S3RVER_VERSION failed: $(tail -n 3 "$S3RVER_PREFIX/install.log")" >&2; return 1; }
  [ -x "$S3RVER_BIN" ]
}

# s3_need: skip the whole test file when s3rver cannot be had.
s3_need() {
  need node curl
  local why
  why=$(s3_install 2>&1) || { echo "SKIP $(basename "$0"): s3rver unavailable: $why"; exit 77; }
}

# _wait_line FILE REGEX: wait up to 20 s for a line; prints the first capture of sed -E REGEX.
_wait_line() {
  local f=$1 re=$2 i
  for ((i = 0; i < 200; i++)); do
    if grep -qE "$re" "$f" 2>/dev/null; then sed -nE "s/.*$re.*/\1/p" "$f" | head -n1; return 0; fi
    sleep 0.1
  done
  return 1
}

# s3_start [PORT]: start s3rver on 127.0.0.1 (random free port unless given) over $T/s3data.
s3_start() {
  local port=${1:-0}
  S3_DIR=$T/s3data
  mkdir -p "$S3_DIR"
  # a fresh log per start: the redirection happens in the background child, so a reused
  # file could still show the previous server's line
  local log
  log=$(mktemp "$T/s3rver.XXXXXX.log")
  # s3rver's continuation tokens use DES, which OpenSSL 3 keeps in its legacy provider:
  # without it every truncated ListObjectsV2 page is a 500
  NODE_OPTIONS="${NODE_OPTIONS:-} --openssl-legacy-provider" \
    "$S3RVER_BIN" -d "$S3_DIR" -a 127.0.0.1 -p "$port" --configure-bucket "$S3_BUCKET" >"$log" 2>&1 &
  S3_PID=$!
  on_exit "kill $S3_PID"
  S3_PORT=$(_wait_line "$log" 'listening on 127\.0\.0\.1:([0-9]+)') ||
    { echo "s3rver did not start: $(tail -n 5 "$log")" >&2; return 1; }
  S3_URL=http://127.0.0.1:$S3_PORT
  export AWS_ENDPOINT_URL=$S3_URL AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
  unset AWS_ENDPOINT_URL_S3 AWS_SESSION_TOKEN TEMPLATE_BUCKET_NAME STORAGE_PROVIDER
}

s3_stop() {
  [ -n "${S3_PID:-}" ] || return 0
  kill "$S3_PID" 2>/dev/null; wait "$S3_PID" 2>/dev/null
  S3_PID=
}

# proxy_start FAIL DROP DELAY_MS [CHUNK_DELAY_MS]: fault proxy in front of s3rver (see
# faultproxy.js); sets PROXY_URL and PROXY_LOG (one line per request). The proxy checks
# SigV4 signatures with the secret S3RVER; LIST_MAX_KEYS in the environment makes s3rver page.
proxy_start() {
  local port out
  PROXY_LOG=$(mktemp "$T/proxy.XXXXXX.log")
  out=$(mktemp "$T/proxy.XXXXXX.out")
  # verify every request's SigV4 signature (s3rver itself checks only the key id)
  SIGV4_SECRET=${SIGV4_SECRET:-S3RVER} \
    node "$ROOT/tests/bucket/faultproxy.js" "$S3_PORT" "$PROXY_LOG" "$1" "$2" "$3" "${4:-0}" >"$out" 2>&1 &
  PROXY_PID=$!
  on_exit "kill $PROXY_PID"
  port=$(_wait_line "$out" 'faultproxy listening on ([0-9]+)') ||
    { echo "faultproxy did not start: $(cat "$out")" >&2; return 1; }
  PROXY_URL=http://127.0.0.1:$port
}

proxy_stop() {
  [ -n "${PROXY_PID:-}" ] || return 0
  kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null
  PROXY_PID=
}
