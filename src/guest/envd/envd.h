/*
 * envd.h - internals shared by envd's source files (the in-guest agent; see docs/envd.md).
 *
 * Threading: one detached thread per HTTP connection (server.c), one reader thread per child
 * process (process.c). Shared state is the sandbox defaults (state.c, one mutex), the user
 * database cache (users.c, one mutex) and the process table (process.c, one mutex plus one
 * per process). A request thread may switch its own filesystem identity (setfsuid/setfsgid
 * and supplementary groups are per thread on Linux) for the duration of a request.
 */
#ifndef ENVD_ENVD_H
#define ENVD_ENVD_H

#include <json-c/json.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/common.h"
#include "http.h"

#define ENVD_VERSION "0.5.7"
#define ENVD_MAX_JSON_BODY (16u << 20)

/* ---- connections (server.c) ---- */
enum body_mode { BODY_NONE, BODY_LENGTH, BODY_CHUNKED };

struct conn {
	int fd;
	char *buf; /* raw input; [off, len) not yet consumed */
	size_t cap, len, off;
	struct http_request req;
	enum body_mode body_mode;
	uint64_t body_left;
	struct http_chunked ch;
	bool body_done;
	bool continue_sent;
	bool keep_alive;
	bool responded;
	bool broken; /* a write failed or the body was malformed: close after this request */
};

/* Read request body bytes: > 0 bytes, 0 at the end of the body, -1 on error (errno). */
ssize_t conn_body_read(struct conn *c, void *buf, size_t n);
/* Whole body into a NUL-terminated malloc'd buffer. 0, -1 on I/O error, -2 when larger than max. */
int conn_body_read_all(struct conn *c, size_t max, char **out, size_t *len);
/* Send a complete response. extra: "Name: value\r\n" lines or NULL. 0/-1. */
int conn_respond(struct conn *c, int status, const char *ctype, const void *body, size_t len,
		 const char *extra);
/* Only the head of a response with a body of length bytes the caller sends itself. */
int conn_respond_head(struct conn *c, int status, const char *ctype, uint64_t length,
		      const char *extra);
/* {"code": status, "message": "..."} error response (the reference's REST error shape). */
int conn_json_error(struct conn *c, int status, const char *fmt, ...) PRINTF_LIKE(3, 4);
int conn_respond_json(struct conn *c, int status, struct json_object *o);
/* Chunked streaming response. */
int conn_stream_begin(struct conn *c, int status, const char *ctype, const char *extra);
int conn_stream_write(struct conn *c, const void *data, size_t len);
int conn_stream_end(struct conn *c);
/* Header lines every response carries (CORS). */
extern const char *envd_common_headers;

/* ---- global defaults (state.c) ---- */
void state_init(bool allow_clock);
/* 0 when the request may pass (no token set, or header matches). */
bool state_token_ok(const char *header_value);
bool state_token_is_set(void);
/* The reference's signed file URL check (no X-Access-Token header): signature must be
 * "v1_" + unpadded base64 of sha256("path:op:user:token[:expiration]") and not expired.
 * 0, or -1 with *msg set. */
int state_check_signature(const char *path, const char *op, const char *user,
			  const char *signature, const char *expiration, const char **msg);
/* Copies the default user / workdir into out ("" when unset). */
void state_default_user(char *out, size_t len);
void state_default_workdir(char *out, size_t len);
/* New json object holding the default env vars (caller puts it). */
struct json_object *state_env_vars(void);
/* POST /init body; returns HTTP status; *msg receives a static error text. Sets
 * *clock_action to "set", "skipped", "disabled", "stale" or "none". */
int state_apply_init(struct json_object *body, const char *header_token, const char **msg,
		     const char **clock_action);

/* ---- users (users.c) ---- */
#define ENVD_MAX_GROUPS 64
struct envd_user {
	char name[128];
	uid_t uid;
	gid_t gid;
	char home[PATH_MAX];
	gid_t groups[ENVD_MAX_GROUPS];
	int ngroups;
};
/* 0, or -1 with errno ENOENT (no such user) / other (cannot read the database). */
int user_lookup(const char *name, struct envd_user *u);
void user_name_of(uid_t uid, char *out, size_t len);
void group_name_of(gid_t gid, char *out, size_t len);

/* Per-thread filesystem identity: file operations made between enter and leave are checked
 * against the user's uid, gid and groups (no-op when envd is not root). */
struct ident_saved {
	bool active;
};
void ident_enter(const struct envd_user *u, struct ident_saved *s);
void ident_leave(struct ident_saved *s);

/* Resolve a request path like the reference: "" -> default workdir, "~/x" -> home, relative
 * -> under home, then cleaned. 0, or -1 with a message in err. */
int path_resolve(const char *in, const struct envd_user *u, const char *workdir, char *out,
		 size_t outlen, char *err, size_t errlen);
/* Lexical clean (like Go's filepath.Clean) of an absolute path, in place. */
void path_clean(char *p);
/* mkdir -p of dir as the current identity (missing components only). 0/-1 errno. */
int ensure_dirs(const char *dir);

/* ---- request user (rpc.c / rest.c) ---- */
/* User from HTTP Basic auth, else name (query), else the default user. On failure answers
 * nothing and returns -1 with *status/msg set. */
int request_user(struct conn *c, const char *explicit_name, struct envd_user *u, int *status,
		 char *msg, size_t msglen);

/* ---- helpers (util.c) ---- */
char *b64_encode(const void *data, size_t len);                    /* malloc'd */
int b64_decode(const char *in, size_t inlen, unsigned char **out, size_t *outlen); /* 0/-1 */
/* RFC 3339 UTC with nanoseconds ("2024-01-02T03:04:05.123456789Z"). */
void format_rfc3339(int64_t sec, long nsec, char *out, size_t len);
/* Parse RFC 3339 (any offset, optional fraction) into ns since the epoch. 0/-1. */
int parse_rfc3339(const char *s, int64_t *ns);
void sha256(const void *data, size_t len, unsigned char out[32]);
/* HTTP status for an errno (CONTRACTS §5). */
int errno_http_status(int e);
/* Connect code for an errno. */
const char *errno_connect_code(int e);
const char *json_get_string(struct json_object *o, const char *key); /* NULL if absent/not string */

/* ---- Connect RPC (rpc.c) ---- */
struct rpc_error {
	const char *code; /* Connect code, NULL = ok */
	char message[512];
};
int rpc_fail(struct rpc_error *e, const char *code, const char *fmt, ...) PRINTF_LIKE(3, 4);
int rpc_fail_errno(struct rpc_error *e, int errnum, const char *fmt, ...) PRINTF_LIKE(3, 4);
void rpc_handle(struct conn *c);

/* Server-streaming context handed to stream handlers. */
struct rpc_stream {
	struct conn *c;
	bool started;
	int keepalive_ms;      /* Keepalive-Ping-Interval */
	int64_t deadline_ns;   /* Connect-Timeout-Ms as an absolute monotonic time, 0 = none */
};
/* Send one message envelope (starts the response on first use). 0/-1 (client gone). */
int rpc_stream_send(struct rpc_stream *s, struct json_object *msg);

/* ---- services ---- */
struct json_object *fs_stat(struct json_object *req, const struct envd_user *u, struct rpc_error *e);
struct json_object *fs_list_dir(struct json_object *req, const struct envd_user *u, struct rpc_error *e);
struct json_object *fs_make_dir(struct json_object *req, const struct envd_user *u, struct rpc_error *e);
struct json_object *fs_move(struct json_object *req, const struct envd_user *u, struct rpc_error *e);
struct json_object *fs_remove(struct json_object *req, const struct envd_user *u, struct rpc_error *e);
void fs_watch_dir(struct rpc_stream *s, struct json_object *req, const struct envd_user *u,
		  struct rpc_error *e);
/* EntryInfo for path (lstat); NULL + errno. */
struct json_object *fs_entry_info(const char *path);

void process_init(void);
struct json_object *process_list(struct json_object *req, struct rpc_error *e);
struct json_object *process_send_signal(struct json_object *req, struct rpc_error *e);
struct json_object *process_send_input(struct json_object *req, struct rpc_error *e);
struct json_object *process_close_stdin(struct json_object *req, struct rpc_error *e);
struct json_object *process_update(struct json_object *req, struct rpc_error *e);
/* Streams; on return the end-of-stream envelope has not been sent yet (rpc.c sends it). */
void process_start(struct rpc_stream *s, struct json_object *req, const struct envd_user *u,
		   struct rpc_error *e);
void process_connect(struct rpc_stream *s, struct json_object *req, struct rpc_error *e);
/* Number of live child processes (for tests / leaks). */
int process_count(void);

/* REST (rest.c) */
void rest_handle(struct conn *c);

/* ---- server (server.c) ---- */
int server_run(const char *addr, int port);
/* Drop the resident pages of the calling thread's stack below its frame (call at thread end). */
void release_thread_stack(void);

#endif
