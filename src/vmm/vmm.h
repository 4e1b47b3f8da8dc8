/*
 * vmm.h - the VMM interface: boot a microVM, snapshot it, restore it from a memfile + state
 * file, pause a restored VM into a diff (dirty pages + device state), quit it.
 *
 * One driver today (QEMU microvm, qemu.c); a Firecracker driver would add a second
 * `struct vmm_ops` and be picked by `vmm_machine.type`. Callers never see QMP.
 *
 * Snapshot model (docs/vmm.md, PLATFORM.md §3):
 * - boot: guest RAM is a `memory-backend-file,share=on` over `memfile`, so after `snapshot`
 *   the memfile holds all of RAM and the state file holds only device state (x-ignore-shared).
 * - restore: the memfile is mapped `share=off` (MAP_PRIVATE, copy-on-write; the file is never
 *   modified), the state file is handed to QEMU as an fd (no exec: under the seccomp sandbox).
 * - pause_diff of a restored VM: stop, the pages the guest wrote since restore (pagemap) are
 *   copied out packed into a diff file, device state is saved through the RAM-record filter
 *   (migstream.h) so the state file stays small.
 *
 * Threading: a `struct vmm` is driven by one thread at a time (no internal locking); distinct
 * VMs may be driven from distinct threads concurrently. Every call has a timeout. The child
 * QEMU is always reaped: `vmm_quit` (SIGTERM, wait, SIGKILL, wait) on every path, including
 * failures inside boot/restore.
 */
#ifndef ORCH_VMM_H
#define ORCH_VMM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct json_object;

/* The guest MAC of every sandbox (CONTRACTS §4). */
#define VMM_GUEST_MAC "02:fc:00:00:00:05"
/* QEMU's id for the guest RAM backend (the RAM block dropped from pause streams). */
#define VMM_RAM_ID "ram0"
#define VMM_PAGE_SIZE 4096u
/* Default QMP timeout for one command. */
#define VMM_DEFAULT_TIMEOUT_MS 10000

/* Machine options, recorded in metadata.json "vmm" at build time and given back verbatim at
 * restore (CONTRACTS §3), so a snapshot always runs on the machine it was taken on. */
struct vmm_machine {
	char type[16];     /* "qemu" */
	char version[32];  /* "7.2.22" (from QEMU's QMP greeting); informative on restore */
	char accel[8];     /* "tcg" | "kvm" */
	char cpu[32];      /* "max" */
	char machine[256]; /* -M value, e.g. "microvm,x-option-roms=off,...,memory-backend=ram0" */
	unsigned vcpu;
	uint64_t memory_mib;
};

/* Accelerator to use: override (a "kvm"/"tcg" string, NULL or "" or "auto" = none), else env
 * ORCH_ACCEL, else "kvm" when /sys/module/kvm_intel or /sys/module/kvm_amd exists, else "tcg".
 * Returns a static string, or NULL + err for an unknown value. */
const char *vmm_accel_detect(const char *override);

/* Fill m with our QEMU microvm defaults (type qemu, cpu max, machine string, accel from
 * vmm_accel_detect(accel)). version stays "" until a boot fills it. 0/-1 + err. */
int vmm_machine_default(struct vmm_machine *m, const char *accel, unsigned vcpu,
			uint64_t memory_mib);
/* To/from the "vmm" object of metadata.json. to_json: new object (caller puts it).
 * from_json: validates every field (unknown keys ignored). 0/-1 + err. */
struct json_object *vmm_machine_to_json(const struct vmm_machine *m);
int vmm_machine_from_json(const struct json_object *o, struct vmm_machine *m);

struct vmm_config {
	struct vmm_machine machine;
	const char *qemu_path;  /* NULL: $ORCH_QEMU, else "qemu-system-x86_64" from PATH */
	const char *memfile;    /* RAM file (boot: created/extended to RAM size; restore: read) */
	const char *serial_log; /* guest console (ttyS0) goes here; required */
	const char *qemu_log;   /* QEMU's own stderr; NULL = /dev/null */
	/* boot only (restore ignores them: the kernel lives in the memfile) */
	const char *kernel;
	const char *initrd;  /* NULL: none */
	const char *cmdline; /* NULL: ""; under TCG " tsc_early_khz=<host rate>" is appended */
	bool no_tsc_hint;    /* do not append tsc_early_khz */
	/* devices: identical at boot and restore (device state must match) */
	const char *rootfs;     /* "nbd:unix:/path.sock" or a raw image path; NULL: no disk */
	bool rootfs_readonly;
	const char *tap;        /* tap interface name (e.g. "tap0") or NULL: no network */
	const char *netns_path; /* e.g. /run/netns/ns-3: QEMU runs in it (for the tap); NULL: ours */
	bool no_sandbox;        /* true: no -sandbox (default: seccomp on, spawn=deny) */
	uint64_t timeout_ms;    /* per QMP exchange / state transfer; 0 = VMM_DEFAULT_TIMEOUT_MS */
};

struct vmm;

/* Timings of the last boot/restore/pause, in nanoseconds (for benchmarks and logs). */
struct vmm_times {
	uint64_t spawn_to_qmp;     /* fork to QMP greeting */
	uint64_t spawn_to_running; /* fork to `cont` answered (restore) or to running (boot) */
	uint64_t stop;             /* pause: QMP stop */
	uint64_t dirty_scan;       /* pause: pagemap scan */
	uint64_t dirty_copy;       /* pause: process_vm_readv + write */
	uint64_t state_save;       /* pause/snapshot: migration + filter */
};

/* Result of pause_diff. bitmap: one bit per VMM_PAGE_SIZE page of guest RAM (LSB-first in
 * 64-bit words, the layout of header.h mappings_from_bitmap), set = page in the diff file. */
struct vmm_diff {
	uint64_t *bitmap; /* malloc'd; vmm_diff_release frees */
	uint64_t npages;  /* bits in bitmap (RAM size / page size) */
	uint64_t ndirty;  /* set bits = pages in the diff file, in order */
	uint64_t state_bytes;
	uint64_t stream_bytes; /* unfiltered migration stream size */
};
void vmm_diff_release(struct vmm_diff *d);

/* Start a fresh VM from config->kernel; it runs when this returns. The memfile is created
 * (or truncated to) the RAM size. On success *out is the VM (free with vmm_quit) and
 * config->machine's version is recorded in vmm_machine(). 0/-1 + err (child reaped). */
int vmm_boot(const struct vmm_config *config, struct vmm **out);
/* Start a VM from memfile (share=off) + state file and run it. 0/-1 + err (child reaped). */
int vmm_restore(const struct vmm_config *config, const char *statefile, struct vmm **out);

int vmm_stop(struct vmm *vm);
int vmm_cont(struct vmm *vm);
/* Booted (share=on) VM: stop, save device state into statefile (RAM stays in the memfile,
 * which is complete when this returns). The VM stays stopped. 0/-1 + err. */
int vmm_snapshot(struct vmm *vm, const char *statefile);
/* Restored (share=off) VM: stop, copy the pages written since restore into diff_path (packed,
 * in page order), save the filtered device state into statefile. The VM stays stopped.
 * 0/-1 + err; *diff filled on success (release with vmm_diff_release). */
int vmm_pause_diff(struct vmm *vm, const char *statefile, const char *diff_path,
		   struct vmm_diff *diff);
/* Benchmark peer: stop and save a plain migration stream with all of RAM inside (restore
 * it with vmm_restore over an empty memfile of RAM size). The VM stays stopped. 0/-1 + err. */
int vmm_save_full(struct vmm *vm, const char *statefile);
/* Stop the VM process (SIGTERM, wait up to 2 s, SIGKILL), reap it, free vm. NULL is a no-op.
 * Returns 0, or -1 + err when QEMU had died on its own before (the error says how). */
int vmm_quit(struct vmm *vm);

pid_t vmm_pid(const struct vmm *vm);
/* The machine options in effect (version filled in). */
const struct vmm_machine *vmm_machine(const struct vmm *vm);
const struct vmm_times *vmm_times(const struct vmm *vm);
/* A pidfd that becomes readable when the VMM process exits (for poll/epoll in the caller's
 * event loop; then call vmm_alive to reap). -1 when the kernel has no pidfd or the process is
 * already reaped. Owned by vm: do not close. */
int vmm_exit_fd(const struct vmm *vm);
/* false when QEMU has exited (it is reaped then); *why (optional) describes the exit. */
bool vmm_alive(struct vmm *vm, const char **why);
/* QEMU's run state ("running", "paused", "postmigrate", ...) into buf. 0/-1 + err. */
int vmm_status(struct vmm *vm, char *buf, size_t len);

/* The driver interface (one per VMM type). Drivers fill `struct vmm` via vmm_internal.h. */
struct vmm_ops {
	const char *type;
	int (*boot)(const struct vmm_config *config, struct vmm **out);
	int (*restore)(const struct vmm_config *config, const char *statefile, struct vmm **out);
	int (*stop)(struct vmm *vm);
	int (*cont)(struct vmm *vm);
	int (*snapshot)(struct vmm *vm, const char *statefile);
	int (*pause_diff)(struct vmm *vm, const char *statefile, const char *diff_path,
			  struct vmm_diff *diff);
	int (*save_full)(struct vmm *vm, const char *statefile);
	int (*status)(struct vmm *vm, char *buf, size_t len);
	int (*quit)(struct vmm *vm);
};
extern const struct vmm_ops vmm_qemu_ops;

#endif
