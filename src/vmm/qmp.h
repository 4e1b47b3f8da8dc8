/*
 * qmp.h - a small QMP (QEMU Machine Protocol) client over a connected unix socket.
 *
 * Synchronous: one command in flight; responses are matched by "id"; asynchronous events
 * that arrive meanwhile are queued for qmp_wait_event(). Every wait has a deadline and also
 * watches an optional pidfd so a dead QEMU is reported at once instead of timing out.
 * Threading: a struct qmp belongs to one thread at a time.
 */
#ifndef ORCH_VMM_QMP_H
#define ORCH_VMM_QMP_H

#include <stdbool.h>
#include <stdint.h>

struct json_object;

struct qmp {
	int fd;    /* connected socket (owned) */
	int pidfd; /* QEMU's pidfd or -1 (not owned) */
	char *buf; /* received bytes not yet parsed */
	size_t len, cap;
	uint64_t next_id;
	struct json_object **events; /* queued events (owned) */
	size_t nevents;
};

/* Take ownership of a connected fd, read the greeting (into *greeting when non-NULL, caller
 * puts) and negotiate capabilities. On failure fd is closed. 0/-1 + err. */
int qmp_open(struct qmp *q, int fd, int pidfd, uint64_t timeout_ms,
	     struct json_object **greeting);
void qmp_close(struct qmp *q);

/* Run cmd with args (consumed; NULL = none). pass_fd >= 0 is sent along with the command
 * (SCM_RIGHTS), for `getfd`. *ret (optional) receives the "return" value (caller puts).
 * A QMP error becomes -1 + err "CMD: DESC". */
int qmp_call(struct qmp *q, const char *cmd, struct json_object *args, int pass_fd,
	     uint64_t timeout_ms, struct json_object **ret);
/* Wait for an event named name whose "data" satisfies match (NULL = any). *ev (optional)
 * receives the event (caller puts). Earlier queued events that do not match are kept. */
int qmp_wait_event(struct qmp *q, const char *name,
		   bool (*match)(struct json_object *data, void *opaque), void *opaque,
		   uint64_t timeout_ms, struct json_object **ev);

#endif
