# Block layer, NBD server and mount-rootfs: libfuse3 (FUSE single-file export) and libmnl
# (generic netlink for the kernel nbd client).
LDLIBS += -lfuse3 -lmnl
