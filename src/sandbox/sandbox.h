/*
 * sandbox.h - the sandbox lifecycle (issue "sandbox runtime"): a VM resumed from a build
 * with its own copy-on-write disk and memory, network slot and envd; paused into a new diff
 * build; killed. Also the fresh boot used by template builds.
 *
 * Resume (sandbox_resume):
 *   metadata.json -> machine shape (never from the command line, CONTRACTS §3)
 *   memfile + snapfile materialised once per host in SNAPSHOT_CACHE_DIR/<build>/ (shared,
 *   mapped MAP_PRIVATE by every sandbox of the build)
 *   rootfs: the build's layered rootfs -> private COW file -> NBD server on a unix socket
 *   network slot (namespace with tap0, host-reachable address)
 *   QEMU restore (share=off RAM, device state through an fd) -> POST /init to envd
 * Pause (sandbox_pause): stop; dirty RAM pages -> memfile diff; COW -> rootfs diff; filtered
 *   device state -> snapfile; metadata.json last: a new build in storage.
 *
 * Host resources (CONTRACTS §6) live in SANDBOX_DIR/<sandbox-id>/ with a lock file held by
 * the owner; sandbox_reap_dead() removes the leftovers of owners that died (never a live
 * one's). Every exit path of every call releases what it took.
 *
 * Threading: one thread drives one sandbox; distinct sandboxes may be driven from distinct
 * threads at once.
 */
#ifndef ORCH_SANDBOX_H
#define ORCH_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>

#include "common/hostenv.h"
#include "envdc/envdc.h"
#include "storage/metadata.h"
#include "storage/storage.h"

struct sandbox;
struct net_pool;

struct sandbox_times {
	uint64_t start_ns;      /* sandbox_resume / sandbox_boot entered */
	uint64_t files_ns;      /* memfile/snapfile ready */
	uint64_t disk_ns;       /* rootfs served */
	uint64_t net_ns;        /* network slot ready */
	uint64_t vmm_ns;        /* VM running */
	uint64_t ready_ns;      /* envd answered /init */
};

struct sandbox_opts {
	const struct hostenv *he;
	struct storage *st;         /* where the build lives */
	const char *build_id;       /* canonical */
	const char *access_token;   /* NULL: "local" */
	const char *qemu_path;      /* NULL: default */
	uint64_t init_timeout_ms;   /* 0: 10 s (reference ENVD_TIMEOUT) */
	const char *sandbox_id;     /* NULL: generated */
	struct net_pool *net_pool;  /* take the network slot from this pre-filled pool (NULL: create one) */
};

/* Resume a sandbox from a complete build. On success the guest runs and envd answered /init. */
int sandbox_resume(const struct sandbox_opts *o, struct sandbox **out);

struct sandbox_boot_opts {
	const struct hostenv *he;
	const char *kernel_dir;     /* holds vmlinux.bin (+ initrd.img) */
	const char *rootfs_image;   /* ext4 image; the VM writes to it directly */
	const char *accel;          /* NULL: auto */
	unsigned vcpu;
	uint64_t memory_mib;
	const char *qemu_path;
	const char *serial_log;     /* NULL: SANDBOX_DIR/<id>/serial.log */
	uint64_t envd_timeout_ms;   /* 0: 60 s */
};
/* Boot a fresh VM from a kernel and a rootfs image, wait for envd. */
int sandbox_boot(const struct sandbox_boot_opts *o, struct sandbox **out);

/* Run `sh -c cmd` through envd; output streamed to fn. *exit_code = its status. */
int sandbox_exec(struct sandbox *s, const char *cmd, envdc_output_fn fn, void *opaque, int *exit_code,
		 uint64_t timeout_ms);
/* Start `sh -c cmd` in the background (it keeps running; the call returns once it started). */
int sandbox_exec_background(struct sandbox *s, const char *cmd, uint32_t *pid);

/* Booted sandbox -> generation-0 build: memfile and rootfs packed (non-zero blocks),
 * snapfile, then meta (build id, machine filled in here) as metadata.json, last. The VM is
 * stopped and released; the sandbox must still be freed with sandbox_kill. On failure
 * nothing of new_build stays in st. */
int sandbox_snapshot_build(struct sandbox *s, struct storage *st, const char *new_build,
			   struct build_metadata *meta);
/* Resumed sandbox -> diff build on top of the one it was resumed from (in st_dst; its
 * ancestors' objects must be reachable there too, i.e. the same storage). meta may be NULL
 * (the source build's metadata is reused with the new build id). On failure nothing of
 * new_build stays in st_dst. The VM is stopped and released. */
struct sandbox_pause_stats {
	uint64_t memfile_diff_bytes, rootfs_diff_bytes, state_bytes, stream_bytes;
	uint64_t pause_ns;
};
int sandbox_pause(struct sandbox *s, struct storage *st_dst, const char *new_build,
		  struct build_metadata *meta, struct sandbox_pause_stats *stats);

/* Stop the VM and release everything (slot, NBD export, sockets, COW file, directory).
 * NULL is fine. Returns -1 (err) only to report that the VM had died on its own. */
int sandbox_kill(struct sandbox *s);

const char *sandbox_id(const struct sandbox *s);
/* Address where the host reaches envd (slot host IP). */
const char *sandbox_host_ip(const struct sandbox *s);
int sandbox_netns_index(const struct sandbox *s);
const struct sandbox_times *sandbox_times(const struct sandbox *s);
const struct build_metadata *sandbox_metadata(const struct sandbox *s);
int sandbox_vmm_pid(const struct sandbox *s);
/* false when the VM is gone; *why says how. */
bool sandbox_alive(struct sandbox *s, const char **why);

/* A flag (set by a signal handler) that makes waits inside sandbox calls give up: commands
 * in progress fail with "interrupted". NULL = none. */
void sandbox_set_cancel_flag(volatile int *flag);

/* Remove sandbox dirs, network slots and cache entries whose owner process is dead. */
int sandbox_reap_dead(const struct hostenv *he);

#endif
