/*
 * rpc.c - the Connect protocol (JSON codec) for envd's process.Process and
 * filesystem.Filesystem services (CONTRACTS §5).
 *
 * Unary: POST, Content-Type application/json, body = the request message; success is 200 with
 * the response message, failure the Connect error JSON {"code","message"} with the HTTP status
 * of that code. Server streaming: Content-Type application/connect+json, the request body and
 * every response are envelopes (flag byte, 4-byte big-endian length, JSON); the stream always
 * answers 200 and ends with an end-of-stream envelope (flag 0x02) holding {} or {"error":...}.
 * Threading: runs on the connection's thread; stream handlers block that thread only.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "envd.h"

int rpc_fail(struct rpc_error *e, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	e->code = code;
	return -1;
}

int rpc_fail_errno(struct rpc_error *e, int errnum, const char *fmt, ...)
{
	char what[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(e->message, sizeof(e->message), "%s: %s", what, strerror(errnum));
	e->code = errno_connect_code(errnum);
	return -1;
}

static int code_http_status(const char *code)
{
	static const struct {
		const char *code;
		int status;
	} map[] = {
		{ "canceled", 499 },         { "unknown", 500 },           { "invalid_argument", 400 },
		{ "deadline_exceeded", 504 }, { "not_found", 404 },        { "already_exists", 409 },
		{ "permission_denied", 403 }, { "resource_exhausted", 429 }, { "failed_precondition", 400 },
		{ "aborted", 409 },          { "out_of_range", 400 },      { "unimplemented", 501 },
		{ "internal", 500 },         { "unavailable", 503 },       { "data_loss", 500 },
		{ "unauthenticated", 401 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (strcmp(map[i].code, code) == 0)
			return map[i].status;
	return 500;
}

static struct json_object *error_json(const struct rpc_error *e)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "code", json_object_new_string(e->code));
	json_object_object_add(o, "message", json_object_new_string(e->message));
	return o;
}

static void unary_error(struct conn *c, const struct rpc_error *e)
{
	struct json_object *o = error_json(e);
	conn_respond_json(c, code_http_status(e->code), o);
	json_object_put(o);
}

/* Parse a JSON message; NULL + e set on failure. An empty body is the empty message. */
static struct json_object *parse_message(const char *buf, size_t len, struct rpc_error *e)
{
	if (len == 0)
		return json_object_new_object();
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = json_tokener_parse_ex(tok, buf, (int)len);
	enum json_tokener_error je = json_tokener_get_error(tok);
	size_t off = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	while (o && off < len && (buf[off] == ' ' || buf[off] == '\n' || buf[off] == '\r' || buf[off] == '\t'))
		off++;
	if (!o || je != json_tokener_success || off != len) {
		json_object_put(o);
		rpc_fail(e, "invalid_argument", "malformed JSON request message: %s",
			 je != json_tokener_success ? json_tokener_error_desc(je) : "trailing data");
		return NULL;
	}
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		rpc_fail(e, "invalid_argument", "request message must be a JSON object");
		return NULL;
	}
	return o;
}

static bool content_type_is(const char *ct, const char *want)
{
	if (!ct)
		return false;
	size_t wl = strlen(want);
	return strncasecmp(ct, want, wl) == 0 && (ct[wl] == '\0' || ct[wl] == ';' || ct[wl] == ' ');
}

int rpc_stream_send(struct rpc_stream *s, struct json_object *msg)
{
	if (!s->started) {
		if (conn_stream_begin(s->c, 200, "application/connect+json", NULL) < 0)
			return -1;
		s->started = true;
	}
	const char *j = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN |
								JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t jl = strlen(j);
	char *env = malloc(5 + jl);
	if (!env)
		return -1;
	env[0] = 0;
	env[1] = (char)(jl >> 24);
	env[2] = (char)(jl >> 16);
	env[3] = (char)(jl >> 8);
	env[4] = (char)jl;
	memcpy(env + 5, j, jl);
	int r = conn_stream_write(s->c, env, 5 + jl);
	free(env);
	return r;
}

static void stream_finish(struct rpc_stream *s, const struct rpc_error *e)
{
	if (s->c->broken)
		return;
	if (!s->started) {
		if (conn_stream_begin(s->c, 200, "application/connect+json", NULL) < 0)
			return;
		s->started = true;
	}
	struct json_object *o = json_object_new_object();
	if (e->code)
		json_object_object_add(o, "error", error_json(e));
	const char *j = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	size_t jl = strlen(j);
	char *env = malloc(5 + jl);
	if (env) {
		env[0] = 0x02;
		env[1] = (char)(jl >> 24);
		env[2] = (char)(jl >> 16);
		env[3] = (char)(jl >> 8);
		env[4] = (char)jl;
		memcpy(env + 5, j, jl);
		if (conn_stream_write(s->c, env, 5 + jl) == 0)
			conn_stream_end(s->c);
		free(env);
	}
	json_object_put(o);
}

typedef struct json_object *(*unary_fn)(struct json_object *req, const struct envd_user *u,
					 struct rpc_error *e);

static struct json_object *u_list(struct json_object *r, const struct envd_user *u, struct rpc_error *e)
{
	(void)u;
	return process_list(r, e);
}
static struct json_object *u_signal(struct json_object *r, const struct envd_user *u, struct rpc_error *e)
{
	(void)u;
	return process_send_signal(r, e);
}
static struct json_object *u_input(struct json_object *r, const struct envd_user *u, struct rpc_error *e)
{
	(void)u;
	return process_send_input(r, e);
}
static struct json_object *u_close_stdin(struct json_object *r, const struct envd_user *u, struct rpc_error *e)
{
	(void)u;
	return process_close_stdin(r, e);
}
static struct json_object *u_update(struct json_object *r, const struct envd_user *u, struct rpc_error *e)
{
	(void)u;
	return process_update(r, e);
}

static const struct {
	const char *path;
	unary_fn fn;
	bool needs_user;
} unary_methods[] = {
	{ "/process.Process/List", u_list, false },
	{ "/process.Process/SendSignal", u_signal, false },
	{ "/process.Process/SendInput", u_input, false },
	{ "/process.Process/CloseStdin", u_close_stdin, false },
	{ "/process.Process/Update", u_update, false },
	{ "/filesystem.Filesystem/Stat", fs_stat, true },
	{ "/filesystem.Filesystem/ListDir", fs_list_dir, true },
	{ "/filesystem.Filesystem/MakeDir", fs_make_dir, true },
	{ "/filesystem.Filesystem/Move", fs_move, true },
	{ "/filesystem.Filesystem/Remove", fs_remove, true },
};

static int auth_user(struct conn *c, struct envd_user *u, struct rpc_error *e)
{
	int status;
	char msg[512];
	if (request_user(c, NULL, u, &status, msg, sizeof(msg)) < 0)
		return rpc_fail(e, status == 400 ? "invalid_argument" : "unauthenticated", "%s", msg);
	return 0;
}

static void handle_unary(struct conn *c, unary_fn fn, bool needs_user)
{
	struct rpc_error e = { 0 };
	const char *ct = http_header(&c->req, "Content-Type");
	if (!content_type_is(ct, "application/json")) {
		conn_json_error(c, 415, "unsupported content type '%s' (this envd speaks Connect with the JSON codec)",
				ct ? ct : "");
		return;
	}
	char *body;
	size_t len;
	int r = conn_body_read_all(c, ENVD_MAX_JSON_BODY, &body, &len);
	if (r < 0) {
		rpc_fail(&e, r == -2 ? "resource_exhausted" : "invalid_argument",
			 r == -2 ? "request message too large" : "cannot read request body");
		unary_error(c, &e);
		return;
	}
	struct json_object *req = parse_message(body, len, &e);
	free(body);
	if (!req) {
		unary_error(c, &e);
		return;
	}
	struct envd_user u;
	if (needs_user && auth_user(c, &u, &e) < 0) {
		json_object_put(req);
		unary_error(c, &e);
		return;
	}
	struct json_object *resp = fn(req, needs_user ? &u : NULL, &e);
	json_object_put(req);
	if (!resp) {
		if (!e.code)
			rpc_fail(&e, "internal", "handler failed");
		unary_error(c, &e);
		return;
	}
	conn_respond_json(c, 200, resp);
	json_object_put(resp);
}

/* Read the single request envelope of a server-streaming call. */
static struct json_object *read_envelope(struct conn *c, struct rpc_error *e)
{
	char *body;
	size_t len;
	int r = conn_body_read_all(c, ENVD_MAX_JSON_BODY, &body, &len);
	if (r < 0) {
		rpc_fail(e, r == -2 ? "resource_exhausted" : "invalid_argument",
			 r == -2 ? "request message too large" : "cannot read request body");
		return NULL;
	}
	struct json_object *o = NULL;
	if (len < 5) {
		rpc_fail(e, "invalid_argument", "request body is not a Connect envelope");
	} else {
		unsigned char *b = (unsigned char *)body;
		size_t ml = (size_t)b[1] << 24 | (size_t)b[2] << 16 | (size_t)b[3] << 8 | b[4];
		if (b[0] & 0x01)
			rpc_fail(e, "internal", "compressed request envelopes are not supported");
		else if (ml != len - 5)
			rpc_fail(e, "invalid_argument", "envelope length %zu does not match the body (%zu bytes)",
				 ml, len - 5);
		else
			o = parse_message(body + 5, ml, e);
	}
	free(body);
	return o;
}

static void handle_stream(struct conn *c, const char *method)
{
	struct rpc_error e = { 0 };
	struct rpc_stream s = { .c = c, .keepalive_ms = 90 * 1000 };
	const char *ct = http_header(&c->req, "Content-Type");
	if (!content_type_is(ct, "application/connect+json")) {
		conn_json_error(c, 415, "unsupported content type '%s' for a streaming call (want application/connect+json)",
				ct ? ct : "");
		return;
	}
	const char *ka = http_header(&c->req, "Keepalive-Ping-Interval");
	if (ka) {
		long v = strtol(ka, NULL, 10);
		if (v > 0 && v < 86400)
			s.keepalive_ms = (int)(v * 1000);
	}
	const char *to = http_header(&c->req, "Connect-Timeout-Ms");
	if (to) {
		char *end;
		long long ms = strtoll(to, &end, 10);
		if (*end || ms < 0 || end == to) {
			rpc_fail(&e, "invalid_argument", "invalid Connect-Timeout-Ms header '%s'", to);
			stream_finish(&s, &e);
			return;
		}
		if (ms > 0)
			s.deadline_ns = (int64_t)now_ns() + ms * 1000000LL;
	}
	struct json_object *req = read_envelope(c, &e);
	if (req) {
		if (strcmp(method, "Start") == 0) {
			struct envd_user u;
			if (auth_user(c, &u, &e) == 0)
				process_start(&s, req, &u, &e);
		} else if (strcmp(method, "Connect") == 0) {
			process_connect(&s, req, &e);
		} else if (strcmp(method, "WatchDir") == 0) {
			struct envd_user u;
			if (auth_user(c, &u, &e) == 0)
				fs_watch_dir(&s, req, &u, &e);
		}
		json_object_put(req);
	}
	stream_finish(&s, &e);
	/* A stream that ended because the client went away cannot be reused. */
	if (e.code && strcmp(e.code, "canceled") == 0)
		c->broken = true;
}

void rpc_handle(struct conn *c)
{
	const char *p = c->req.path;
	if (strcmp(c->req.method, "POST") != 0) {
		conn_json_error(c, 405, "Connect procedures take POST");
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(unary_methods); i++)
		if (strcmp(p, unary_methods[i].path) == 0) {
			handle_unary(c, unary_methods[i].fn, unary_methods[i].needs_user);
			return;
		}
	if (strcmp(p, "/process.Process/Start") == 0) {
		handle_stream(c, "Start");
		return;
	}
	if (strcmp(p, "/process.Process/Connect") == 0) {
		handle_stream(c, "Connect");
		return;
	}
	if (strcmp(p, "/filesystem.Filesystem/WatchDir") == 0) {
		handle_stream(c, "WatchDir");
		return;
	}
	struct rpc_error e;
	rpc_fail(&e, "unimplemented", "%s is not implemented", p);
	unary_error(c, &e);
}
