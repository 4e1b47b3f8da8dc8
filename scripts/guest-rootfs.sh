#!/usr/bin/env bash
# Builds a minimal busybox guest root filesystem for tests (docs/guest.md):
#   DIR: /bin/busybox + one symlink per applet, /etc/{passwd,group,hosts,hostname},
#        users root and user (uid 1000), /usr/bin/orch-init, /usr/bin/envd (when built)
#   IMG (optional): an ext4 image of DIR made with mkfs.ext4 -d, SIZE default 64M
# Usage: guest-rootfs.sh DIR [IMG [SIZE]]
# Env: ORCH_INIT (default build/guest/orch-init), ENVD (default build/guest/envd; skipped with a
# note when missing), BUSYBOX (default: the busybox-static binary).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: guest-rootfs.sh DIR [IMG [SIZE]]}
img=${2:-}
size=${3:-64M}
init=${ORCH_INIT:-$root/build/guest/orch-init}
envd=${ENVD:-$root/build/guest/envd}
busybox=${BUSYBOX:-}
if [ -z "$busybox" ]; then
  for b in /bin/busybox /usr/bin/busybox; do
    if [ -x "$b" ] && file -L "$b" 2>/dev/null | grep -q 'statically linked'; then busybox=$b; break; fi
  done
  # 'file' may be absent: fall back to the busybox-static path
  [ -n "$busybox" ] || busybox=/bin/busybox
fi
[ -x "$busybox" ] || { echo "guest-rootfs.sh: no busybox (install busybox-static)" >&2; exit 1; }
[ -x "$init" ] || { echo "guest-rootfs.sh: $init missing (run make)" >&2; exit 1; }

# DIR is replaced: refuse a non-empty directory this script did not make
if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ] && [ ! -f "$dir/.orch-guest-rootfs" ]; then
  echo "guest-rootfs.sh: $dir is not empty and not a rootfs made here; refusing to replace it" >&2
  exit 1
fi
rm -rf "$dir"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
touch "$dir/.orch-guest-rootfs"
if [ -n "$img" ]; then
  mkdir -p "$(dirname "$img")"
  img=$(cd "$(dirname "$img")" && pwd)/$(basename "$img")
fi
cd "$dir"
mkdir -p bin sbin usr/bin usr/sbin etc root home/user tmp proc sys dev run var/log \
  lib/modules etc/orch-init
chmod 0700 root
chmod 1777 tmp
install -m 0755 "$busybox" bin/busybox
# one symlink per applet at its usual place (busybox --list-full: "bin/sh", "usr/bin/awk", ...)
"$busybox" --list-full | while read -r p; do
  case "$p" in bin/busybox|"") continue ;; esac
  mkdir -p "$(dirname "$p")"
  [ -e "$p" ] || ln -s /bin/busybox "$p"
done
install -m 0755 "$init" usr/bin/orch-init
if [ -x "$envd" ]; then
  install -m 0755 "$envd" usr/bin/envd
else
  echo "guest-rootfs.sh: note: $envd missing, rootfs has no envd" >&2
fi

cat > etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > etc/group <<'EOF'
root:x:0:
tty:x:5:
user:x:1000:
nogroup:x:65534:
EOF
cat > etc/shadow <<'EOF'
root:*:19000:0:99999:7:::
user:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
EOF
chmod 0640 etc/shadow
cat > etc/hosts <<'EOF'
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
EOF
echo guest > etc/hostname
printf 'nameserver 8.8.8.8\n' > etc/resolv.conf
chown -R 1000:1000 home/user 2>/dev/null || true

if [ -n "$img" ]; then
  rm -f "$img"
  rm -f "$dir/.orch-guest-rootfs"   # not part of the image
  mkfs.ext4 -q -F -L rootfs -E root_owner=0:0 -d "$dir" "$img" "$size" >/dev/null
  touch "$dir/.orch-guest-rootfs"
fi
