/*
 * envdc.h - host-side client of envd, the in-guest agent (CONTRACTS §5, spec §9):
 * /health, /init (with the reference's retry loop), and process Start over the Connect
 * protocol (JSON codec, server streaming) with output delivered as it arrives.
 *
 * Threading: a struct envdc is used by one thread at a time; separate sandboxes have
 * separate clients. Every call has a timeout; nothing blocks forever.
 */
#ifndef ORCH_ENVDC_H
#define ORCH_ENVDC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENVD_PORT 49983

struct envdc {
	char base[128];    /* "http://HOST:PORT" */
	char token[256];   /* X-Access-Token once set ("" = none) */
	char user[64];     /* HTTP Basic user for process RPCs ("" = envd's default) */
};

struct envdc_init_req {
	const char *const *env; /* "K=V" strings, NULL-terminated; may be NULL */
	const char *access_token;
	const char *default_user;
	const char *default_workdir;
};

enum envdc_stream { ENVDC_STDOUT = 1, ENVDC_STDERR = 2 };
typedef void (*envdc_output_fn)(void *opaque, enum envdc_stream s, const void *data, size_t len);

struct envdc_proc {
	const char *cmd;            /* run as /bin/sh -c CMD */
	const char *const *env;     /* "K=V", NULL-terminated; may be NULL */
	const char *cwd;            /* may be NULL */
	const char *tag;            /* may be NULL */
	envdc_output_fn output;     /* may be NULL */
	void *opaque;
	uint64_t timeout_ms;        /* 0 = no limit */
	bool detach;                /* return after the start event (process keeps running) */
	bool (*alive)(void *opaque);/* polled while waiting; false aborts (the VM died). May be NULL */
	void *alive_opaque;
};

int envdc_init(struct envdc *c, const char *host, int port);
/* GET /health: 0 when envd answers 204 within timeout_ms. */
int envdc_health(struct envdc *c, uint64_t timeout_ms);
/* POST /init once per attempt with a fresh timestamp, every retry_ms, until 204 or
 * total_ms passes (reference: 5 ms / 10 s). alive(opaque) is polled between attempts so a
 * dead VM aborts the wait early; may be NULL. On success the token is remembered. */
int envdc_post_init(struct envdc *c, const struct envdc_init_req *req, uint64_t total_ms,
		    uint64_t retry_ms, bool (*alive)(void *opaque), void *opaque);
/* Start a process and stream its output. *exit_code gets its exit status (128+N when killed
 * by signal N); *pid its pid in the guest (either may be NULL). 0 on success (the process ran,
 * whatever its exit code), -1 when the RPC failed. */
int envdc_run(struct envdc *c, const struct envdc_proc *p, int *exit_code, uint32_t *pid);

#endif
