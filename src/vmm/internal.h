/*
 * internal.h - what VMM drivers share with the generic layer (vmm.c). A driver's VM struct
 * embeds `struct vmm` as its first member.
 */
#ifndef ORCH_VMM_INTERNAL_H
#define ORCH_VMM_INTERNAL_H

#include <stdbool.h>

#include "vmm/vmm.h"

struct vmm {
	const struct vmm_ops *ops;
	struct vmm_machine machine;
	struct vmm_times times;
	pid_t pid;     /* the VMM process (our child); 0 once reaped */
	int pidfd;     /* -1 when the kernel has no pidfd_open */
	bool reaped;   /* waitpid done; why says how it ended */
	char why[128]; /* "exited with status N" / "killed by signal N" */
};

/* Reap pid if it has exited (WNOHANG, or waiting up to timeout_ms; 0 = do not wait).
 * Returns true when reaped (now or before). */
bool vmm_try_reap(struct vmm *vm, uint64_t timeout_ms);
/* SIGTERM, wait up to term_ms, SIGKILL, wait. Always reaps. */
void vmm_kill_reap(struct vmm *vm, uint64_t term_ms);
/* pidfd_open(2) without relying on a libc wrapper; -1 + errno. pidfds are O_CLOEXEC. */
int vmm_pidfd_open(pid_t pid);

#endif
