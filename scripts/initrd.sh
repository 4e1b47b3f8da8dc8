#!/usr/bin/env bash
# Builds KERNEL_DIR/initrd.img (CONTRACTS §4, docs/guest.md): an uncompressed newc cpio with
#   /init                                      orch-init (early stage: modules, mount root, switch_root)
#   /lib/modules/<ver>/orch-boot/*.ko           the boot modules of that kernel
#   /lib/modules/<ver>/orch-boot/modules.order  their load order
#   /dev/console, /proc, /sys, /newroot         what the early stage needs before devtmpfs
# Usage: initrd.sh [KERNEL_DIR] [ORCH_INIT] [OUT]   KERNEL_DIR default build/kernels/default (as
# made by scripts/kernel.sh: modules/*.ko + modules.order); ORCH_INIT default
# build/guest/orch-init; OUT default KERNEL_DIR/initrd.img.
# Rebuilt only when the inputs' checksums differ from those recorded beside the image
# (OUT.inputs). Deterministic: fixed mtimes, sorted names.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kdir=${1:-$root/build/kernels/default}
init=${2:-$root/build/guest/orch-init}
kdir=$(cd "$kdir" && pwd -P)
ver=$(basename "$kdir")
out=${3:-$kdir/initrd.img}
[ -f "$init" ] || { echo "initrd.sh: $init missing (run make)" >&2; exit 1; }
[ -f "$kdir/vmlinux.bin" ] || { echo "initrd.sh: $kdir/vmlinux.bin missing (run scripts/kernel.sh)" >&2; exit 1; }

# what goes in: orch-init and the modules (by content, so another orch-init never hides behind
# an older mtime)
inputs() {
  sha256sum "$init" | cut -d' ' -f1
  if [ -f "$kdir/modules.order" ]; then
    cat "$kdir/modules.order"
    while read -r m; do [ -n "$m" ] && sha256sum "$kdir/modules/$m.ko" | cut -d' ' -f1; done < "$kdir/modules.order"
  fi
}
want=$(inputs | sha256sum | cut -d' ' -f1)
if [ -f "$out" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
st=$work/root
mkdir -p "$st/dev" "$st/proc" "$st/sys" "$st/newroot" "$st/lib/modules/$ver/orch-boot"
install -m 0755 "$init" "$st/init"
if [ -f "$kdir/modules.order" ]; then
  cp "$kdir/modules.order" "$st/lib/modules/$ver/orch-boot/modules.order"
  while read -r m; do
    [ -n "$m" ] || continue
    cp "$kdir/modules/$m.ko" "$st/lib/modules/$ver/orch-boot/$m.ko"
  done < "$kdir/modules.order"
fi
# The kernel's built-in initramfs normally provides /dev/console already; ours adds it when we
# may create device nodes, so init has a console even on kernels without that default.
mknod -m 600 "$st/dev/console" c 5 1 2>/dev/null || true
find "$st" -exec touch -h -d @0 {} +
(cd "$st" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) > "$work/initrd.img"
# same-directory temp + rename: concurrent builders and readers never see a partial image
cp "$work/initrd.img" "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
echo "$want" > "$out.inputs.tmp.$$" && mv -f "$out.inputs.tmp.$$" "$out.inputs"
echo "initrd.sh: $out ($(stat -c %s "$out") bytes)" >&2
