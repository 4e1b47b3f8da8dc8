#!/usr/bin/env bash
# envd on the host (an ordinary process in a temp dir) driven with curl and the envd_client
# helper: health, process streams, uploads/downloads, filesystem RPCs and their errors, /init
# (env vars, defaults, clock decision, access token), a non-root user's permissions, bad input,
# client disconnects, slow clients; envd must keep serving and leak no fds or children.
. "$(dirname "$0")/lib.sh"
. "$ROOT/tests/envd/lib.sh"
envd_need
envd_start || { fail envd_start "envd did not come up ($(tail -3 "$T/envd.log"))"; finish; }
C() { "$CLIENT" -port "$EPORT" "$@"; }
# all stdout text of a stream, joined (it may arrive in several events)
outof() { echo "$1" | sed -n 's/^stdout //p' | tr -d '\n'; }
base_fds=$(envd_fds)

# ---- health and HTTP basics
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health")" = 204 ] && pass health_204 || fail health_204
r=$(curl -s -o /dev/null -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}' "$URL/health" "$URL/health" "$URL/envs" | tr -d '\n')
[ "$r" = "204 1204 0200 0" ] && pass keep_alive_reuses_connection || fail keep_alive_reuses_connection "$r"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/nope")" = 404 ] && pass unknown_path_404 || fail unknown_path_404
[ "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$URL/files")" = 405 ] && pass wrong_method_405 || fail wrong_method_405

[ "$(cat /proc/$EPID/comm)" = envd ] && pass process_name_envd || fail process_name_envd "$(cat /proc/$EPID/comm)"

# ---- processes
out=$(C start '{"process":{"cmd":"/bin/sh","args":["-c","echo out; echo err >&2; exit 3"]},"stdin":false}')
if echo "$out" | grep -qx 'stdout out\\n' && echo "$out" | grep -qx 'stderr err\\n' &&
   echo "$out" | grep -qx 'end 3 exit status 3' && echo "$out" | head -1 | grep -q '^start [0-9]'; then
  pass start_streams_out_err_exit3
else
  fail start_streams_out_err_exit3 "$out"
fi
out=$(C start "{\"process\":{\"cmd\":\"sh\",\"args\":[\"-c\",\"echo \$FOO-\$HOME; pwd\"],\"envs\":{\"FOO\":\"bar\"},\"cwd\":\"$T\"}}")
[ "$(outof "$out")" = "bar-/root\\n$T\\n" ] && pass start_env_and_cwd || fail start_env_and_cwd "$out"
out=$(C start '{"process":{"cmd":"env"}}')
echo "$out" | grep -q 'GLIBC_TUNABLES' && fail child_env_clean "$out" || pass child_env_clean
out=$(C start '{"process":{"cmd":"sh","args":["-c","kill -9 $$"]}}')
echo "$out" | grep -qx 'end -1 signal: killed' && pass start_killed_by_signal || fail start_killed_by_signal "$out"
out=$(C start '{"process":{"cmd":"/no/such/binary"}}')
echo "$out" | grep -q '^error invalid_argument' && pass start_missing_binary || fail start_missing_binary "$out"
out=$(C start '{"process":{"cmd":"true","cwd":"/no/such/dir"}}')
echo "$out" | grep -q "^error invalid_argument cwd '/no/such/dir' does not exist" && pass start_missing_cwd || fail start_missing_cwd "$out"
out=$(C start '{"stdin":false}')
echo "$out" | grep -q '^error invalid_argument' && pass start_missing_process_field || fail start_missing_process_field "$out"
# output larger than the pipe buffer and many chunks
out=$(C start '{"process":{"cmd":"sh","args":["-c","head -c 3000000 /dev/zero | tr \"\\\\0\" a"]}}')
n=$(echo "$out" | grep '^stdout ' | sed 's/^stdout //' | tr -d '\n' | wc -c)
[ "$n" = 3000000 ] && echo "$out" | grep -qx 'end 0 exit status 0' && pass start_large_output || fail start_large_output "got $n bytes"
# timeout header kills the process
out=$(C -timeout-ms 300 start '{"process":{"cmd":"sleep","args":["5"]}}')
echo "$out" | grep -q '^error deadline_exceeded' && pass start_connect_timeout || fail start_connect_timeout "$out"
out=$(C -keepalive 1 start '{"process":{"cmd":"sleep","args":["2.3"]}}')
[ "$(echo "$out" | grep -c '^keepalive$')" -ge 2 ] && echo "$out" | grep -qx 'end 0 exit status 0' && pass stream_keepalive_events || fail stream_keepalive_events "$out"
# background process: connect, list, input, signal
C start-drop '{"process":{"cmd":"sh","args":["-c","read x; echo got $x; sleep 0.3; echo late"]},"tag":"bg1","stdin":true}' >"$T/bg.out"
pid=$(sed -n 's/^start //p' "$T/bg.out")
r=$(rpc process.Process/List '{}')
echo "$r" | grep -q "\"pid\":$pid" && echo "$r" | grep -q '"tag":"bg1"' && pass list_shows_background || fail list_shows_background "$r"
C connect "{\"process\":{\"tag\":\"bg1\"}}" >"$T/conn.out" &
cpid=$!
sleep 0.3
r=$(rpc process.Process/SendInput "{\"process\":{\"pid\":$pid},\"input\":{\"stdin\":\"$(printf 'hello\n' | base64)\"}}")
[ "${r%% *}" = 200 ] && pass send_input || fail send_input "$r"
wait $cpid
grep -qx 'stdout got hello\\n' "$T/conn.out" && grep -qx 'stdout late\\n' "$T/conn.out" && grep -qx 'end 0 exit status 0' "$T/conn.out" &&
  pass connect_streams_running_process || fail connect_streams_running_process "$(cat "$T/conn.out")"
C start-drop '{"process":{"cmd":"sleep","args":["30"]}}' >"$T/bg2.out"
pid=$(sed -n 's/^start //p' "$T/bg2.out")
r=$(rpc process.Process/SendSignal "{\"process\":{\"pid\":$pid},\"signal\":\"SIGNAL_SIGKILL\"}")
[ "${r%% *}" = 200 ] && pass send_signal_kill || fail send_signal_kill "$r"
for _ in $(seq 50); do rpc process.Process/List '{}' | grep -q "\"pid\":$pid" || break; sleep 0.05; done
rpc process.Process/List '{}' | grep -q "\"pid\":$pid" && fail killed_process_gone "still listed" || pass killed_process_gone
r=$(rpc process.Process/SendSignal '{"process":{"pid":999999},"signal":"SIGNAL_SIGTERM"}')
echo "$r" | grep -q '^404 .*"code":"not_found"' && pass signal_unknown_pid_404 || fail signal_unknown_pid_404 "$r"
r=$(rpc process.Process/SendSignal '{"process":{"pid":1},"signal":"SIGNAL_SIGSTOP"}')
echo "$r" | grep -q '^400 .*invalid_argument' && pass signal_invalid || fail signal_invalid "$r"
out=$(C connect '{"process":{"pid":999999}}')
echo "$out" | grep -q '^error not_found' && pass connect_unknown_pid || fail connect_unknown_pid "$out"

# ---- uploads and downloads
head -c 1048576 /dev/urandom >"$T/1m.bin"
want=$(sha256sum <"$T/1m.bin" | cut -d' ' -f1)
r=$(curl -s -w ' %{http_code}' -F "file=@$T/1m.bin" "$URL/files?path=$T/up/deep/1m.bin")
echo "$r" | grep -q "\"path\":\"$T/up/deep/1m.bin\".*200$" && pass upload_multipart_creates_parents || fail upload_multipart_creates_parents "$r"
got=$(curl -s "$URL/files?path=$T/up/deep/1m.bin" | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] && pass upload_download_1mib_sha256 || fail upload_download_1mib_sha256 "$got != $want"
ct=$(curl -s -o /dev/null -w '%{content_type}' "$URL/files?path=$T/up/deep/1m.bin")
[ "$ct" = application/octet-stream ] && pass download_octet_stream || fail download_octet_stream "$ct"
curl -s -o /dev/null -H 'Content-Type: application/octet-stream' -H 'Transfer-Encoding: chunked' --data-binary "@$T/1m.bin" "$URL/files?path=$T/up/raw.bin"
got=$(sha256sum <"$T/up/raw.bin" | cut -d' ' -f1)
[ "$got" = "$want" ] && pass upload_raw_chunked || fail upload_raw_chunked "$got"
gzip -c "$T/1m.bin" >"$T/1m.bin.gz"
curl -s -o /dev/null -H 'Content-Type: application/octet-stream' -H 'Content-Encoding: gzip' --data-binary "@$T/1m.bin.gz" "$URL/files?path=$T/up/gz.bin"
got=$(sha256sum <"$T/up/gz.bin" | cut -d' ' -f1)
[ "$got" = "$want" ] && pass upload_gzip_raw || fail upload_gzip_raw "$got"
r=$(curl -s -w ' %{http_code}' -H 'Content-Type: application/octet-stream' -H 'Content-Encoding: gzip' --data-binary "@$T/1m.bin" "$URL/files?path=$T/up/badgz.bin")
echo "$r" | grep -q 'gzip.*400$' && pass upload_bad_gzip_400 || fail upload_bad_gzip_400 "$r"
# filename from the part when no path is given, relative to the user's home is covered below
r=$(curl -s -w ' %{http_code}' -F "file=@$T/1m.bin;filename=$T/up/named.bin" "$URL/files")
[ -f "$T/up/named.bin" ] && pass upload_path_from_filename || fail upload_path_from_filename "$r"
r=$(curl -s -w ' %{http_code}' -F "other=x" "$URL/files?path=$T/up/x")
echo "$r" | grep -q '400$' && pass upload_without_file_part_400 || fail upload_without_file_part_400 "$r"
r=$(curl -s -w ' %{http_code}' -F "file=@$T/1m.bin" "$URL/files?path=$T/up")
echo "$r" | grep -q '400$' && pass upload_onto_directory_400 || fail upload_onto_directory_400 "$r"
r=$(curl -s -w ' %{http_code}' "$URL/files?path=$T/up")
echo "$r" | grep -q 'is a directory.*400$' && pass download_directory_400 || fail download_directory_400 "$r"
r=$(curl -s -w ' %{http_code}' "$URL/files?path=$T/nothing")
echo "$r" | grep -q 'does not exist.*404$' && pass download_missing_404 || fail download_missing_404 "$r"
r=$(curl -s -w ' %{http_code}' -F "file=@$T/1m.bin" "$URL/files?path=$T/up/raw.bin/below")
echo "$r" | grep -q '400$' && pass upload_under_file_400 || fail upload_under_file_400 "$r"
r=$(curl -s -w ' %{http_code}' -H 'Content-Type: text/plain' -d x "$URL/files?path=$T/up/t")
echo "$r" | grep -q '400$' && pass upload_bad_content_type || fail upload_bad_content_type "$r"
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$T/small" && mount -t tmpfs -o size=256k tmpfs "$T/small" && on_exit "umount $T/small"
  r=$(curl -s -w ' %{http_code}' -F "file=@$T/1m.bin" "$URL/files?path=$T/small/big")
  echo "$r" | grep -q 'disk space.*507$' && pass upload_enospc_507 || fail upload_enospc_507 "$r"
else
  skip upload_enospc_507 "needs root to mount a small tmpfs"
fi

# ---- filesystem RPCs
mkdir -p "$T/fs/a/b" && echo hi >"$T/fs/a/f.txt" && ln -s "$T/fs/a/f.txt" "$T/fs/link"
r=$(rpc filesystem.Filesystem/Stat "{\"path\":\"$T/fs/a/f.txt\"}")
echo "$r" | grep -q '^200 .*"name":"f.txt","type":"FILE_TYPE_FILE".*"size":"3".*"permissions":"-rw-r--r--","owner":"root"' &&
  pass stat_file || fail stat_file "$r"
r=$(rpc filesystem.Filesystem/Stat "{\"path\":\"$T/fs/link\"}")
echo "$r" | grep -q '"type":"FILE_TYPE_FILE"' && echo "$r" | grep -q '"permissions":"Lrwxrwxrwx"' &&
  echo "$r" | grep -q "\"symlinkTarget\":\"$T/fs/a/f.txt\"" &&
  pass stat_symlink || fail stat_symlink "$r"
r=$(rpc filesystem.Filesystem/Stat "{\"path\":\"$T/fs/none\"}")
echo "$r" | grep -q '^404 .*"code":"not_found"' && pass stat_missing_not_found || fail stat_missing_not_found "$r"
r=$(rpc filesystem.Filesystem/ListDir "{\"path\":\"$T/fs\"}")
n=$(echo "$r" | grep -o '"name"' | wc -l)
[ "${r%% *}" = 200 ] && [ "$n" = 2 ] && pass listdir_depth1 || fail listdir_depth1 "$r"
r=$(rpc filesystem.Filesystem/ListDir "{\"path\":\"$T/fs\",\"depth\":3}")
n=$(echo "$r" | grep -o '"name"' | wc -l)
[ "$n" = 4 ] && echo "$r" | grep -q "\"path\":\"$T/fs/a/b\"" && pass listdir_depth3 || fail listdir_depth3 "$n: $r"
r=$(rpc filesystem.Filesystem/ListDir "{\"path\":\"$T/fs/a/f.txt\"}")
echo "$r" | grep -q '^400 .*invalid_argument' && pass listdir_on_file || fail listdir_on_file "$r"
r=$(rpc filesystem.Filesystem/ListDir "{\"path\":\"$T/fs/none\"}")
echo "$r" | grep -q '^404 ' && pass listdir_missing || fail listdir_missing "$r"
r=$(rpc filesystem.Filesystem/MakeDir "{\"path\":\"$T/fs/new/x/y\"}")
echo "$r" | grep -q '^200 .*"type":"FILE_TYPE_DIRECTORY"' && [ -d "$T/fs/new/x/y" ] && pass makedir_parents || fail makedir_parents "$r"
r=$(rpc filesystem.Filesystem/MakeDir "{\"path\":\"$T/fs/new/x/y\"}")
echo "$r" | grep -q '^409 .*already_exists' && pass makedir_exists_409 || fail makedir_exists_409 "$r"
r=$(rpc filesystem.Filesystem/MakeDir "{\"path\":\"$T/fs/a/f.txt/sub\"}")
echo "$r" | grep -q '^400 ' && pass makedir_under_file_400 || fail makedir_under_file_400 "$r"
r=$(rpc filesystem.Filesystem/Move "{\"source\":\"$T/fs/a/f.txt\",\"destination\":\"$T/fs/moved/g.txt\"}")
echo "$r" | grep -q "^200 .*\"path\":\"$T/fs/moved/g.txt\"" && [ -f "$T/fs/moved/g.txt" ] && [ ! -e "$T/fs/a/f.txt" ] &&
  pass move_creates_parents || fail move_creates_parents "$r"
r=$(rpc filesystem.Filesystem/Move "{\"source\":\"$T/fs/a/f.txt\",\"destination\":\"$T/fs/x\"}")
echo "$r" | grep -q '^404 .*not_found' && pass move_missing_404 || fail move_missing_404 "$r"
r=$(rpc filesystem.Filesystem/Remove "{\"path\":\"$T/fs/new\"}")
[ "${r%% *}" = 200 ] && [ ! -e "$T/fs/new" ] && pass remove_recursive || fail remove_recursive "$r"
r=$(rpc filesystem.Filesystem/Remove "{\"path\":\"$T/fs/new\"}")
[ "${r%% *}" = 200 ] && pass remove_missing_ok_like_reference || fail remove_missing_ok_like_reference "$r"
r=$(rpc filesystem.Filesystem/CreateWatcher '{}')
echo "$r" | grep -q '^501 .*unimplemented' && pass unimplemented_method_501 || fail unimplemented_method_501 "$r"

# ---- bad input
r=$(rpc filesystem.Filesystem/Stat '{"path":')
echo "$r" | grep -q '^400 .*invalid_argument.*malformed JSON' && pass malformed_json_400 || fail malformed_json_400 "$r"
r=$(rpc filesystem.Filesystem/Stat '[1,2]')
echo "$r" | grep -q '^400 ' && pass non_object_json_400 || fail non_object_json_400 "$r"
r=$(curl -s -w ' %{http_code}' -H 'Content-Type: application/proto' -d x "$URL/filesystem.Filesystem/Stat")
echo "$r" | grep -q '415$' && pass proto_codec_415 || fail proto_codec_415 "$r"
r=$(curl -s -w ' %{http_code}' -H 'Content-Type: application/connect+json' --data-binary 'xx' "$URL/process.Process/Start" | tr -d '\0\002')
echo "$r" | grep -q 'invalid_argument.*200$' && pass bad_envelope_error || fail bad_envelope_error "$r"
r=$(curl -s -w ' %{http_code}' -d '{"envVars":' "$URL/init")
echo "$r" | grep -q '400$' && pass init_malformed_400 || fail init_malformed_400 "$r"
r=$(curl -s -w ' %{http_code}' -d '{"timestamp":"yesterday"}' "$URL/init")
echo "$r" | grep -q '400$' && pass init_bad_timestamp_400 || fail init_bad_timestamp_400 "$r"
{ printf 'GET /health HTTP/1.1\r\nX-Big: '; head -c 1048576 /dev/zero | tr '\0' a; printf '\r\n\r\n'; } >"$T/big.req"
r=$(timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$EPORT; (cat '$T/big.req' >&3 2>/dev/null &); head -1 <&3")
echo "$r" | grep -q '^HTTP/1.1 431' && pass huge_header_431 || fail huge_header_431 "got: $r"
r=$(printf 'GARBAGE\r\n\r\n' | timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$EPORT; cat >&3; head -1 <&3")
echo "$r" | grep -q '^HTTP/1.1 400' && pass garbage_request_400 || fail garbage_request_400 "$r"
r=$(printf 'POST /envs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n' | timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$EPORT; cat >&3; head -1 <&3")
echo "$r" | grep -q '^HTTP/1.1 ' && pass bad_chunked_answered || fail bad_chunked_answered "$r"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health")" = 204 ] && pass alive_after_bad_input || fail alive_after_bad_input

# ---- slow clients and disconnects
exec 7<>/dev/tcp/127.0.0.1/$EPORT
printf 'GET /hea' >&7 # a client that never finishes its request
t0=$(date +%s%N)
for _ in 1 2 3 4 5; do curl -s -o /dev/null "$URL/health"; done
ms=$((($(date +%s%N) - t0) / 1000000))
[ $ms -lt 2000 ] && pass slow_client_does_not_block "5 requests in ${ms}ms" || fail slow_client_does_not_block "${ms}ms"
exec 7>&-
out=$(C start-drop '{"process":{"cmd":"sh","args":["-c","sleep 0.5; echo done"]}}')
echo "$out" | grep -q '^start ' && pass stream_dropped_by_client || fail stream_dropped_by_client "$out"
pids=()
for i in $(seq 20); do
  C start "{\"process\":{\"cmd\":\"sh\",\"args\":[\"-c\",\"echo p$i; sleep 0.2\"]}}" >"$T/par$i.out" &
  pids+=($!)
done
wait "${pids[@]}"
ok=0
for i in $(seq 20); do grep -qx "stdout p$i\\\\n" "$T/par$i.out" && grep -qx 'end 0 exit status 0' "$T/par$i.out" && ok=$((ok + 1)); done
[ $ok = 20 ] && pass concurrent_streams_20 || fail concurrent_streams_20 "$ok of 20"

# ---- /init: env vars, defaults, clock decision
now=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
h=$(curl -s -D - -o /dev/null -d "{\"envVars\":{\"A\":\"1\",\"B\":\"two\"},\"timestamp\":\"$now\",\"defaultWorkdir\":\"$T\"}" "$URL/init")
echo "$h" | grep -q '^HTTP/1.1 204' && echo "$h" | grep -qi '^X-Envd-Clock: skipped' && pass init_204_clock_in_sync || fail init_204_clock_in_sync "$h"
r=$(curl -s "$URL/envs")
echo "$r" | grep -q '"A":"1"' && echo "$r" | grep -q '"B":"two"' && pass envs_after_init || fail envs_after_init "$r"
out=$(C start '{"process":{"cmd":"sh","args":["-c","echo $A$B; pwd"],"envs":{"B":"req"}}}')
[ "$(outof "$out")" = "1req\\n$T\\n" ] && pass init_env_and_workdir_used || fail init_env_and_workdir_used "$out"
h=$(curl -s -D - -o /dev/null -d "{\"timestamp\":\"2001-01-01T00:00:00Z\"}" "$URL/init")
echo "$h" | grep -qi '^X-Envd-Clock: stale' && pass init_stale_timestamp_ignored || fail init_stale_timestamp_ignored "$h"
future=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
h=$(curl -s -D - -o /dev/null -d "{\"timestamp\":\"$future\"}" "$URL/init")
echo "$h" | grep -qi '^X-Envd-Clock: disabled' && pass init_clock_would_be_set || fail init_clock_would_be_set "$h"

# ---- a non-root user
U=envdt$$
if [ "$(id -u)" = 0 ] && command -v useradd >/dev/null; then
  useradd -m -d "/home/$U" -s /bin/sh "$U" && on_exit "userdel -r $U"
  r=$(curl -s -w ' %{http_code}' "$URL/files?path=../../etc/shadow&username=$U")
  echo "$r" | grep -q '403$' && pass user_cannot_read_shadow_403 || fail user_cannot_read_shadow_403 "$r"
  r=$(curl -s -w ' %{http_code}' -F "file=@$T/1m.bin" "$URL/files?path=/root/envd-test-$$&username=$U")
  echo "$r" | grep -q '403$' && [ ! -e "/root/envd-test-$$" ] && pass user_cannot_write_root_403 || fail user_cannot_write_root_403 "$r"
  r=$(curl -s -w ' %{http_code}' -F "file=@$T/1m.bin" "$URL/files?path=rel/dir/f.bin&username=$U")
  [ "$(stat -c %U "/home/$U/rel/dir/f.bin" 2>/dev/null)" = "$U" ] && pass user_upload_relative_to_home_owned || fail user_upload_relative_to_home_owned "$r"
  out=$(C -user "$U" start '{"process":{"cmd":"sh","args":["-c","id -un; echo $HOME; cat /etc/shadow"],"cwd":"/"}}')
  [ "$(outof "$out")" = "$U\\n/home/$U\\n" ] && echo "$out" | grep -q '^end 1 ' && pass process_runs_as_user || fail process_runs_as_user "$out"
  r=$(rpc filesystem.Filesystem/ListDir '{"path":"/root"}' -u "$U:")
  echo "$r" | grep -q '^403 .*permission_denied' && pass user_listdir_root_403 || fail user_listdir_root_403 "$r"
  r=$(rpc filesystem.Filesystem/Stat '{"path":"x"}' -u "nosuchuser$$:")
  echo "$r" | grep -q '^401 .*unauthenticated' && pass unknown_user_401 || fail unknown_user_401 "$r"
else
  skip non_root_user "needs root and useradd"
fi

# ---- access token (last: it locks the instance)
r=$(curl -s -o /dev/null -w '%{http_code}' -d '{"accessToken":"s3cret"}' "$URL/init")
[ "$r" = 204 ] && pass init_sets_token || fail init_sets_token "$r"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/envs")" = 401 ] && pass token_missing_401 || fail token_missing_401
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Access-Token: wrong' "$URL/envs")" = 401 ] && pass token_wrong_401 || fail token_wrong_401
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Access-Token: s3cret' "$URL/envs")" = 200 ] && pass token_right_200 || fail token_right_200
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health")" = 204 ] && pass token_not_needed_for_health || fail token_not_needed_for_health
out=$(C start '{"process":{"cmd":"true"}}')
echo "$out" | grep -q '^HTTP 401' && pass token_needed_for_rpc || fail token_needed_for_rpc "$out"
r=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Access-Token: s3cret' -d '{"accessToken":"other"}' "$URL/init")
[ "$r" = 409 ] && pass init_change_token_409 || fail init_change_token_409 "$r"
r=$(curl -s -o /dev/null -w '%{http_code}' -d '{"accessToken":"s3cret"}' "$URL/init")
[ "$r" = 204 ] && pass init_same_token_204 || fail init_same_token_204 "$r"

# signed file URLs (the reference's): v1_ + unpadded base64(sha256("path:op:user:token[:exp]"))
sign() { printf 'v1_%s' "$(printf '%s' "$1" | sha256sum | cut -d' ' -f1 | tr a-f A-F | basenc --base16 -d | base64 | tr -d '=\n' | sed 's|+|%2B|g')"; }
echo signed >"$T/signed.txt"
sig=$(sign "$T/signed.txt:read::s3cret")
r=$(curl -s -w ' %{http_code}' "$URL/files?path=$T/signed.txt&signature=$sig")
[ "$(echo $r)" = "signed 200" ] && pass signed_download || fail signed_download "$r"
exp=$(($(date +%s) + 60))
sig=$(sign "$T/signed2.txt:write:root:s3cret:$exp")
r=$(curl -s -o /dev/null -w '%{http_code}' -F "file=@$T/signed.txt" "$URL/files?path=$T/signed2.txt&username=root&signature=$sig&signature_expiration=$exp")
[ "$r" = 200 ] && [ -f "$T/signed2.txt" ] && pass signed_upload_with_expiration || fail signed_upload_with_expiration "$r"
r=$(curl -s -o /dev/null -w '%{http_code}' "$URL/files?path=$T/signed.txt&signature=v1_wrong")
[ "$r" = 401 ] && pass bad_signature_401 || fail bad_signature_401 "$r"
old=$(($(date +%s) - 10))
sig=$(sign "$T/signed.txt:read::s3cret:$old")
r=$(curl -s -w ' %{http_code}' "$URL/files?path=$T/signed.txt&signature=$sig&signature_expiration=$old")
echo "$r" | grep -q 'expired.*401$' && pass expired_signature_401 || fail expired_signature_401 "$r"
r=$(curl -s -o /dev/null -w '%{http_code}' "$URL/files?path=$T/signed.txt")
[ "$r" = 401 ] && pass unsigned_download_401 || fail unsigned_download_401 "$r"

# ---- leaks: every child reaped, fds back to the baseline
for _ in $(seq 40); do [ "$(envd_children)" = 0 ] && [ "$(envd_fds)" -le "$base_fds" ] && break; sleep 0.05; done
[ "$(envd_children)" = 0 ] && pass no_child_left || fail no_child_left "$(ps -o pid,stat,cmd --ppid "$EPID")"
ps -o stat= --ppid "$EPID" | grep -q Z && fail no_zombies || pass no_zombies
fds=$(envd_fds)
[ "$fds" -le "$base_fds" ] && pass no_fd_leak "$fds fds (baseline $base_fds)" || fail no_fd_leak "$fds fds, baseline $base_fds: $(ls -l /proc/$EPID/fd)"
kill -0 $EPID && pass envd_still_running || fail envd_still_running
envd_sanitizer_check
rss=$(awk '/VmRSS/ {print $2}' "/proc/$EPID/status")
echo "envd VmRSS after the test: ${rss} kB"
finish
