# Guest boot assets (docs/guest.md): the static guest init, the kernel + initrd, a test rootfs.
#   make                      also builds build/guest/orch-init
#   make kernel               build/kernels/<ver>/{vmlinux.bin,initrd.img} (+ build/kernels/default)
#   make install-kernel HOST_KERNELS_DIR=DIR    copies them to DIR/<ver>/ (rename into place)
#   make guest-rootfs         build/guest/busybox-rootfs.ext4 (busybox, orch-init, envd if built)
# envd (src/guest/envd) has its own rules; this file only uses build/guest/envd when it exists.

# mk/*.mk is included before the Makefile's `all:`; keep `all` the default goal despite the rules below
.DEFAULT_GOAL := all

GUEST_CFLAGS = -std=gnu11 $(WARN) $(WERROR) -D_GNU_SOURCE -Os -static -Isrc
ORCH_INIT_SRCS := $(wildcard src/guest/init/*.c)

$(B)/guest/orch-init: $(ORCH_INIT_SRCS) $(wildcard src/guest/init/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) $(ORCH_INIT_SRCS) -s -o $@

ALL_EXTRA += $(B)/guest/orch-init

.PHONY: kernel install-kernel guest-rootfs
kernel: $(B)/guest/orch-init
	@ver=$$(bash scripts/kernel.sh $(B)/kernels) && \
	  bash scripts/initrd.sh $(B)/kernels/$$ver && echo "kernel $$ver: $(B)/kernels/$$ver"

install-kernel: kernel
	@test -n "$(HOST_KERNELS_DIR)" || { echo "install-kernel: set HOST_KERNELS_DIR" >&2; exit 2; }
	@ver=$$(basename $$(readlink $(B)/kernels/default)) && \
	  install -d "$(HOST_KERNELS_DIR)/$$ver" && \
	  for f in vmlinux.bin initrd.img; do \
	    install -m 0644 $(B)/kernels/$$ver/$$f "$(HOST_KERNELS_DIR)/$$ver/.$$f.tmp" && \
	    mv -f "$(HOST_KERNELS_DIR)/$$ver/.$$f.tmp" "$(HOST_KERNELS_DIR)/$$ver/$$f" || exit 1; \
	  done && echo "installed $(HOST_KERNELS_DIR)/$$ver"

guest-rootfs: $(B)/guest/orch-init
	@bash scripts/guest-rootfs.sh $(B)/guest/busybox-rootfs $(B)/guest/busybox-rootfs.ext4

# libFuzzer harness of the command line parser: only cmdline.c is needed (a specific rule
# beats the Makefile's generic one, which links the host library instead)
$(B)/fuzz/fuzz_guest_cmdline: fuzz/fuzz_guest_cmdline.c src/guest/init/cmdline.c src/guest/init/init.h
	@mkdir -p $(dir $@)
	$(CLANG) -std=gnu11 -D_GNU_SOURCE -Isrc -g -O1 -fsanitize=fuzzer,address,undefined \
	  fuzz/fuzz_guest_cmdline.c src/guest/init/cmdline.c -o $@
