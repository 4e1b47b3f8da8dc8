#!/usr/bin/env bash
# Provides a guest kernel from Debian's cloud kernel package (CONTRACTS §4, PLATFORM.md §2):
#   OUT/<version>/vmlinux.bin    ELF vmlinux with a PVH note (QEMU microvm / Firecracker boot it)
#   OUT/<version>/modules/*.ko   the virtio modules that kernel needs at boot, in load order
#   OUT/<version>/modules.order  that order
#   OUT/default                  symlink to the version (the default kernel)
# Usage: kernel.sh [OUT_DIR] [VERSION]   OUT_DIR default build/kernels; VERSION default: the one
# linux-image-cloud-amd64 depends on (e.g. 6.1.0-57-cloud-amd64). Idempotent: an existing
# OUT/<version>/vmlinux.bin is kept. Prints the version on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build/kernels}
ver=${2:-${KERNEL_VERSION:-}}
mkdir -p "$out"
if [ -z "$ver" ]; then
  if [ -L "$out/default" ] && [ -f "$out/default/vmlinux.bin" ]; then
    basename "$(readlink "$out/default")"; exit 0
  fi
  if ! ver=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/.*Depends: linux-image-\(.*\)$/\1/p' | head -1) || [ -z "$ver" ]; then
    apt-get update -q >/dev/null
    ver=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/.*Depends: linux-image-\(.*\)$/\1/p' | head -1)
  fi
  [ -n "$ver" ] || { echo "kernel.sh: cannot find the Debian cloud kernel version" >&2; exit 1; }
fi
dst=$out/$ver
if [ ! -f "$dst/vmlinux.bin" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download -q "linux-image-$ver" >/dev/null 2>&1) || {
    apt-get update -q >/dev/null; (cd "$work" && apt-get download -q "linux-image-$ver" >/dev/null)
  }
  dpkg-deb -x "$work"/linux-image-"$ver"_*.deb "$work/x"
  vmlinuz=$work/x/boot/vmlinuz-$ver
  # The bzImage carries an LZ4 (legacy frame) payload: find its magic and decompress.
  off=$(grep -obUaP '\x02\x21\x4c\x18' "$vmlinuz" | head -1 | cut -d: -f1)
  [ -n "$off" ] || { echo "kernel.sh: no LZ4 payload in $vmlinuz" >&2; exit 1; }
  tail -c +$((off + 1)) "$vmlinuz" | lz4 -dc > "$work/vmlinux" 2>/dev/null || true
  head -c 4 "$work/vmlinux" | grep -q 'ELF' || { echo "kernel.sh: decompressed kernel is not an ELF" >&2; exit 1; }
  mkdir -p "$work/stage/modules"
  mods="virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net"
  : > "$work/stage/modules.order"
  for m in $mods; do
    f=$(find "$work/x/lib/modules/$ver" -name "$m.ko*" | head -1)
    if [ -z "$f" ]; then continue; fi   # built in
    case "$f" in
      *.xz) xz -dc "$f" > "$work/stage/modules/$m.ko" ;;
      *.zst) zstd -qdc "$f" > "$work/stage/modules/$m.ko" ;;
      *) cp "$f" "$work/stage/modules/$m.ko" ;;
    esac
    echo "$m" >> "$work/stage/modules.order"
  done
  mv "$work/vmlinux" "$work/stage/vmlinux.bin"
  rm -rf "$dst.tmp"; mv "$work/stage" "$dst.tmp"; rm -rf "$dst"; mv "$dst.tmp" "$dst"
fi
ln -sfn "$ver" "$out/default"
echo "$ver"
