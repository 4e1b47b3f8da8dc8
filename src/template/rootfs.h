/*
 * rootfs.h - turning a base source into the ext4 image of a template (issue "template
 * builds", CONTRACTS §4): unpack the base, inject orch-init, envd and config, mkfs.ext4 -d.
 *
 * Base sources (-base): "" or "busybox" (embedded default: busybox-static from the host),
 * "debian" (debootstrap bookworm minbase + python3 + ca-certificates, cached), a directory,
 * a rootfs tarball, an OCI image layout directory ("oci:DIR[:TAG]" or a dir with oci-layout),
 * or a docker-archive tarball (docker save output).
 */
#ifndef ORCH_TEMPLATE_ROOTFS_H
#define ORCH_TEMPLATE_ROOTFS_H

#include <stdint.h>

struct rootfs_opts {
	const char *base;      /* see above */
	const char *envd_path; /* static envd binary */
	const char *init_path; /* static orch-init binary */
	const char *hostname;
	uint64_t disk_mib;     /* free space wanted in the image */
	const char *work_dir;  /* scratch space (removed by the caller) */
	const char *cache_dir; /* where "debian" is cached */
	int log_fd;            /* helper programs' output */
};

/* Build out_img. *size gets the image size in bytes; from_image (cap 256) a description of
 * the base for metadata.json. 0/-1 + err. */
int rootfs_build(const struct rootfs_opts *o, const char *out_img, uint64_t *size, char *from_image);

#endif
