#!/usr/bin/env bash
# orch-init on the host: the kernel command line parser (-check-cmdline), the static binary,
# the initrd layout and the busybox rootfs script. No VM here (guest_boot.sh boots one).
. "$(dirname "$0")/lib.sh"
INIT=$ROOT/build/guest/orch-init
[ -x "$INIT" ] || { echo "SKIP guest_init: $INIT not built (make)"; exit 77; }

parse() { "$INIT" -check-cmdline "$1"; }
# has NAME CMDLINE KEY=VALUE...: every key=value line is in the parse of CMDLINE
has() {
  local n=$1 c=$2 out kv; shift 2
  out=$(parse "$c") || { fail "$n" "exit $?"; return; }
  for kv in "$@"; do
    grep -qxF -- "$kv" <<<"$out" || { fail "$n" "missing '$kv' in: $(tr '\n' ' ' <<<"$out")"; return; }
  done
  pass "$n"
}

has contract_cmdline \
  'console=ttyS0 loglevel=1 lpj=5000000 no_timer_check panic=1 reboot=t root=/dev/vda rw init=/usr/bin/orch-init ip=169.254.0.21::169.254.0.22:255.255.255.252:sbx-1:eth0:off' \
  init=/usr/bin/orch-init root=/dev/vda rootfstype=ext4 mode=rw ip=169.254.0.21/30 \
  gateway=169.254.0.22 hostname=sbx-1 device=eth0 envd=/usr/bin/envd
has defaults '' init=/usr/bin/orch-init root=/dev/vda rootfstype=ext4 mode=rw ip=none rootwait_ms=10000
has systemd_image 'root=/dev/vdb ro init=/sbin/init rootfstype=xfs rootflags=noatime' \
  init=/sbin/init root=/dev/vdb mode=ro rootfstype=xfs rootflags=noatime
has later_wins 'ro rw init=/a init=/b' mode=rw init=/b
has relative_init_ignored 'init=sbin/init' init=/usr/bin/orch-init
has slirp_net 'ip=10.0.2.15::10.0.2.2:255.255.255.0:guest:eth0:off' ip=10.0.2.15/24 gateway=10.0.2.2 hostname=guest
has classful_mask 'ip=10.1.2.3::10.0.0.1::::' ip=10.1.2.3/8 gateway=10.0.0.1 device=eth0
has no_gateway 'ip=192.168.7.2:::255.255.255.0::eth1:off' ip=192.168.7.2/24 gateway= device=eth1
has quoted 'foo="a b c" init=/x ip=1.2.3.4::1.2.3.1:255.255.255.252:h:eth0:off' init=/x ip=1.2.3.4/30
has envd_options 'orch.envd=/opt/envd orch.rootwait=250' envd=/opt/envd rootwait_ms=250
has envd_off 'orch.envd=off' envd=off
has dhcp_unsupported 'ip=dhcp' ip=none 'ip_error=ip=dhcp: only static addresses are supported'
has ip_off 'ip=off' ip=none
has bad_address 'ip=1.2.3::1.1.1.1:255.0.0.0::eth0:off' ip=none "ip_error=ip=: bad client address '1.2.3'"
has bad_mask 'ip=1.2.3.4::1.1.1.1:255.0.255.0::eth0:off' ip=none "ip_error=ip=: bad netmask '255.0.255.0'"
has bad_gateway 'ip=1.2.3.4::x:255.0.0.0::eth0:off' ip=none "ip_error=ip=: bad gateway 'x'"
has long_device 'ip=1.2.3.4::1.1.1.1:255.0.0.0::averyveryverylongname:off' ip=none
long=$(head -c 5000 /dev/zero | tr '\0' a)
has long_token "init=/$long init=/ok" init=/ok
has huge_line "$(printf 'x%.0s ' $(seq 3000)) ip=1.2.3.4::1.2.3.1:255.255.255.0::eth0:off" ip=1.2.3.4/24

expect_status usage_error 2 "$INIT" -bogus
expect_status help 0 "$INIT" -h
if file "$INIT" 2>/dev/null | grep -q 'statically linked' || ! ldd "$INIT" >/dev/null 2>&1; then
  pass static_binary
else
  fail static_binary "$(ldd "$INIT" 2>&1 | head -3)"
fi

# orch-init -net in private mount/network/UTS namespaces: a veth named eth0 stands in for the
# guest's NIC, a bind mount over /proc/cmdline gives the command line. The host is untouched.
# net_case NAME CMDLINE EXPECTED-LINES...: each expected line must appear in the namespace's
# "ip -4 -o addr; ip route; hostname" output (whitespace squeezed)
net_case() {
  local n=$1 c=$2 out l; shift 2
  printf '%s\n' "$c" >"$T/cmdline.$n"
  out=$(unshare -mnu sh -c "mount --bind '$T/cmdline.$n' /proc/cmdline &&
    ip link add eth0 type veth peer name peer0 && ip link set peer0 up &&
    '$INIT' -net 2>&1; echo rc=\$?; ip -4 -o addr | awk '{print \$2, \$4}'; ip route; hostname" 2>&1 | tr -s ' ')
  for l in "$@"; do
    grep -qxF -- "$l" <<<"$out" || { fail "$n" "no '$l' in: $(tr '\n' '|' <<<"$out")"; return; }
  done
  pass "$n"
}
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && command -v ip >/dev/null &&
   unshare -mnu true 2>/dev/null; then
  net_case net_contract 'console=ttyS0 ip=169.254.0.21::169.254.0.22:255.255.255.252:sbx-net:eth0:off' \
    rc=0 'lo 127.0.0.1/8' 'eth0 169.254.0.21/30' 'default via 169.254.0.22 dev eth0 ' \
    '169.254.0.20/30 dev eth0 proto kernel scope link src 169.254.0.21 ' sbx-net
  net_case net_gateway_offlink 'ip=10.0.0.5::192.168.1.1:255.255.255.255:h2:eth0:off' \
    rc=0 'eth0 10.0.0.5/32' 'default via 192.168.1.1 dev eth0 onlink ' h2
  net_case net_no_ip 'console=ttyS0' rc=0 'lo 127.0.0.1/8'
else
  skip net_setup "needs root, unshare and ip (network namespaces)"
fi

# initrd layout: /init is orch-init, the modules and their order are under orch-boot
K=$ROOT/build/kernels/default
if [ -f "$K/vmlinux.bin" ] && command -v cpio >/dev/null; then
  bash "$ROOT/scripts/initrd.sh" "$K" "$INIT" 2>/dev/null
  ver=$(basename "$(readlink -f "$K")")
  list=$(cpio -it --quiet < "$K/initrd.img" 2>/dev/null)
  ok=1
  for f in init dev/console newroot "lib/modules/$ver/orch-boot/modules.order"; do
    grep -qxF "$f" <<<"$list" || { ok=0; fail initrd_layout "no $f in initrd.img"; }
  done
  while read -r m; do
    grep -qxF "lib/modules/$ver/orch-boot/$m.ko" <<<"$list" || { ok=0; fail initrd_layout "no $m.ko"; }
  done < "$K/modules.order"
  [ $ok = 1 ] && pass initrd_layout
  mkdir -p "$T/x" && (cd "$T/x" && cpio -id --quiet < "$K/initrd.img" 2>/dev/null)
  check initrd_init_is_orch_init cmp -s "$T/x/init" "$INIT"
  # make install-kernel: HOST_KERNELS_DIR/<ver>/{vmlinux.bin,initrd.img}
  if make -s -C "$ROOT" install-kernel HOST_KERNELS_DIR="$T/hk" >"$T/inst.out" 2>&1 &&
     cmp -s "$T/hk/$ver/vmlinux.bin" "$K/vmlinux.bin" && cmp -s "$T/hk/$ver/initrd.img" "$K/initrd.img"; then
    pass install_kernel
  else
    fail install_kernel "$(tail -3 "$T/inst.out"; ls -R "$T/hk" 2>&1 | head -5)"
  fi
  expect_status install_kernel_needs_dir 2 make -s -C "$ROOT" install-kernel HOST_KERNELS_DIR=
else
  skip initrd_layout "no kernel in build/kernels/default (make kernel)"
fi

# busybox rootfs: applets, users, orch-init; an ext4 image e2fsck accepts
if command -v mkfs.ext4 >/dev/null && [ -x /bin/busybox ]; then
  if ENVD=/nonexistent bash "$ROOT/scripts/guest-rootfs.sh" "$T/rootfs" "$T/rootfs.ext4" 16M 2>"$T/rootfs.err"; then
    r=$T/rootfs
    if [ -L "$r/bin/sh" ] && [ -x "$r/bin/busybox" ] && cmp -s "$r/usr/bin/orch-init" "$INIT" &&
       grep -q '^user:x:1000:1000:' "$r/etc/passwd" && grep -q '^root:x:0:' "$r/etc/group" &&
       [ ! -e "$r/usr/bin/envd" ] && grep -q 'no envd' "$T/rootfs.err"; then
      pass rootfs_dir
    else
      fail rootfs_dir "unexpected content: $(ls "$r" "$r/usr/bin" | tr '\n' ' ')"
    fi
    check rootfs_image_fsck eval "e2fsck -fn \"$T/rootfs.ext4\" >/dev/null 2>&1"
  else
    fail rootfs_dir "$(cat "$T/rootfs.err")"
  fi
else
  skip rootfs_dir "needs mkfs.ext4 and busybox-static"
fi
finish
