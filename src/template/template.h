/*
 * template.h - build-template's pipeline (issue "template builds", spec §7):
 *   from an image: base source -> ext4 rootfs with init/envd/config -> fresh boot -> start
 *   command in the background -> ready command every 2 s until it succeeds -> sync ->
 *   snapshot -> generation-0 build (rootfs + header, memfile + header, snapfile,
 *   metadata.json last);
 *   from a build: resume it -> start/ready -> pause -> a diff build on top of it.
 * One progress line per phase on stderr; the guest console and the start command's output
 * go to a build log whose path is printed. On failure nothing of the build stays in storage.
 */
#ifndef ORCH_TEMPLATE_H
#define ORCH_TEMPLATE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/hostenv.h"
#include "storage/storage.h"

struct template_opts {
	const struct hostenv *he;
	struct storage *st;
	const char *build_id;    /* canonical */
	const char *template_id;
	const char *from_build;  /* canonical, or NULL */
	const char *base;        /* see rootfs.h */
	const char *kernel;      /* version, or NULL */
	const char *kernel_path; /* vmlinux.bin path (initrd.img beside it is used), or NULL */
	const char *envd_path;   /* or NULL */
	const char *qemu_path;
	const char *accel;
	unsigned vcpu;
	uint64_t memory_mib;
	uint64_t disk_mib;
	const char *start_cmd;
	const char *ready_cmd;
	uint64_t ready_timeout_ns;
	bool force;
};

struct template_result {
	char log_path[4096];
	uint64_t total_ns;
	uint64_t rootfs_size, memfile_size;
};

int template_build(const struct template_opts *o, struct template_result *res);

#endif
