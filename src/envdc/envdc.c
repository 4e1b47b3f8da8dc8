/*
 * envdc.c - envd client over libcurl. Connect server streaming: the request body is one
 * envelope (flag byte, 4-byte big-endian length, JSON); the response is a sequence of such
 * envelopes, the last with flag 0x02 carrying {} or {"error":...}. Envelopes are parsed
 * incrementally in curl's write callback so output reaches the caller as it arrives.
 * One easy handle per call: calls are rare next to the work they do, and it keeps the
 * client free of shared state.
 */
#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "envdc.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

int envdc_init(struct envdc *c, const char *host, int port)
{
	pthread_once(&curl_once, curl_init_once);
	memset(c, 0, sizeof(*c));
	if (snprintf(c->base, sizeof(c->base), "http://%s:%d", host, port) >= (int)sizeof(c->base))
		return err_set("envd address '%s' is too long", host);
	return 0;
}

static size_t discard_cb(char *p UNUSED, size_t sz, size_t n, void *o UNUSED)
{
	return sz * n;
}

struct body {
	char *buf;
	size_t len;
};

static size_t collect_cb(char *p, size_t sz, size_t n, void *o)
{
	struct body *b = o;
	size_t add = sz * n;
	if (b->len < 4096) {
		size_t take = MIN(add, 4096 - b->len);
		char *nb = realloc(b->buf, b->len + take + 1);
		if (!nb)
			return 0;
		memcpy(nb + b->len, p, take);
		b->len += take;
		nb[b->len] = 0;
		b->buf = nb;
	}
	return add;
}

static struct curl_slist *common_headers(const struct envdc *c, struct curl_slist *h)
{
	char line[300];
	if (c->token[0]) {
		snprintf(line, sizeof(line), "X-Access-Token: %s", c->token);
		h = curl_slist_append(h, line);
	}
	return h;
}

int envdc_health(struct envdc *c, uint64_t timeout_ms)
{
	char url[160];
	CURL *e = curl_easy_init();
	CURLcode rc;
	long code = 0;
	if (!e)
		return err_set("cannot create HTTP client");
	snprintf(url, sizeof(url), "%s/health", c->base);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_cb);
	rc = curl_easy_perform(e);
	if (rc == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(e);
	if (rc != CURLE_OK)
		return err_set("envd health check at %s failed: %s", c->base, curl_easy_strerror(rc));
	if (code != 204)
		return err_set("envd health check at %s answered HTTP %ld", c->base, code);
	return 0;
}

static char *init_body(const struct envdc_init_req *req)
{
	struct json_object *o = json_object_new_object(), *env = json_object_new_object();
	struct timespec ts;
	struct tm tm;
	char stamp[64];
	char *out;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
	for (const char *const *p = req && req->env ? req->env : NULL; p && *p; p++) {
		const char *eq = strchr(*p, '=');
		char key[256];
		if (!eq || (size_t)(eq - *p) >= sizeof(key))
			continue;
		memcpy(key, *p, (size_t)(eq - *p));
		key[eq - *p] = 0;
		json_object_object_add(env, key, json_object_new_string(eq + 1));
	}
	json_object_object_add(o, "envVars", env);
	if (req && req->access_token)
		json_object_object_add(o, "accessToken", json_object_new_string(req->access_token));
	json_object_object_add(o, "timestamp", json_object_new_string(stamp));
	if (req && req->default_user)
		json_object_object_add(o, "defaultUser", json_object_new_string(req->default_user));
	if (req && req->default_workdir)
		json_object_object_add(o, "defaultWorkdir", json_object_new_string(req->default_workdir));
	out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return out;
}

int envdc_post_init(struct envdc *c, const struct envdc_init_req *req, uint64_t total_ms,
		    uint64_t retry_ms, bool (*alive)(void *opaque), void *opaque)
{
	char url[160];
	uint64_t deadline = now_ns() + total_ms * 1000000ull;
	CURL *e = curl_easy_init();
	long code = 0;
	CURLcode rc = CURLE_OK;
	struct body body = { 0 };
	int attempts = 0;
	uint64_t last_start = 0;
	if (!e)
		return err_set("cannot create HTTP client");
	snprintf(url, sizeof(url), "%s/init", c->base);
	for (;;) {
		struct curl_slist *h = common_headers(c, curl_slist_append(NULL, "Content-Type: application/json"));
		char *payload = init_body(req);
		last_start = now_ns();
		free(body.buf);
		body = (struct body){ 0 };
		curl_easy_reset(e);
		curl_easy_setopt(e, CURLOPT_URL, url);
		curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, payload);
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 1000L);
		curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 50L);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect_cb);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);
		rc = curl_easy_perform(e);
		code = 0;
		if (rc == CURLE_OK)
			curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
		curl_slist_free_all(h);
		free(payload);
		attempts++;
		if (rc == CURLE_OK && code == 204)
			break;
		if (rc == CURLE_OK && code != 502 && code != 503) {
			/* envd answered and refused: retrying will not help */
			curl_easy_cleanup(e);
			err_set("envd at %s refused /init: HTTP %ld: %s", c->base, code, body.buf ? body.buf : "");
			free(body.buf);
			return -1;
		}
		if (alive && !alive(opaque)) {
			curl_easy_cleanup(e);
			free(body.buf);
			return err_set("envd at %s: the VM exited while waiting for /init", c->base);
		}
		if (now_ns() >= deadline) {
			curl_easy_cleanup(e);
			free(body.buf);
			return err_set("envd at %s did not answer /init within %llu ms (%d attempts): %s", c->base,
				       (unsigned long long)total_ms, attempts, curl_easy_strerror(rc));
		}
		usleep((useconds_t)(retry_ms * 1000));
	}
	log_debug("envd at %s answered /init after %d attempt(s), last took %.1f ms", c->base, attempts,
		  (double)(now_ns() - last_start) / 1e6);
	curl_easy_cleanup(e);
	free(body.buf);
	if (req && req->access_token)
		snprintf(c->token, sizeof(c->token), "%s", req->access_token);
	return 0;
}

/* ---- Connect streaming ---- */

static int b64val(int ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+' || ch == '-')
		return 62;
	if (ch == '/' || ch == '_')
		return 63;
	return -1;
}

/* Decode base64 (standard or URL alphabet, padding optional) in place; returns length. */
static size_t b64_decode_inplace(char *s)
{
	size_t out = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (char *p = s; *p; p++) {
		int v = b64val((unsigned char)*p);
		if (v < 0)
			continue;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			s[out++] = (char)((acc >> bits) & 0xff);
		}
	}
	return out;
}

struct stream_state {
	const struct envdc_proc *p;
	uint64_t last_alive_check;
	bool dead;
	char *buf;
	size_t len, cap;
	bool started, ended, detached;
	uint32_t pid;
	int exit_code;
	char error[512];
};

static void handle_event(struct stream_state *s, struct json_object *msg)
{
	struct json_object *ev, *x, *y;
	if (!json_object_object_get_ex(msg, "event", &ev))
		return;
	if (json_object_object_get_ex(ev, "start", &x)) {
		s->started = true;
		if (json_object_object_get_ex(x, "pid", &y))
			s->pid = (uint32_t)json_object_get_int64(y);
	}
	if (json_object_object_get_ex(ev, "data", &x) && s->p->output) {
		static const char *names[] = { "stdout", "stderr" };
		for (int i = 0; i < 2; i++) {
			if (json_object_object_get_ex(x, names[i], &y)) {
				char *d = strdup(json_object_get_string(y));
				size_t n;
				if (!d)
					continue;
				n = b64_decode_inplace(d);
				s->p->output(s->p->opaque, i == 0 ? ENVDC_STDOUT : ENVDC_STDERR, d, n);
				free(d);
			}
		}
	}
	if (json_object_object_get_ex(ev, "end", &x)) {
		int code = 0;
		s->ended = true;
		if (json_object_object_get_ex(x, "exitCode", &y))
			code = json_object_get_int(y);
		if (json_object_object_get_ex(x, "status", &y)) {
			const char *st = json_object_get_string(y);
			if (st && !strncmp(st, "signal: ", 8)) {
				code = !strcmp(st + 8, "killed") ? 137 : !strcmp(st + 8, "terminated") ? 143 : 128 + 1;
			}
		}
		if (code < 0)
			code = 128 + 9;
		s->exit_code = code;
	}
}

static size_t stream_cb(char *p, size_t sz, size_t n, void *o)
{
	struct stream_state *s = o;
	size_t add = sz * n, pos = 0;
	if (s->len + add > s->cap) {
		size_t cap = MAX(s->cap * 2, s->len + add + 4096);
		char *nb = realloc(s->buf, cap);
		if (!nb)
			return 0;
		s->buf = nb;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, p, add);
	s->len += add;
	while (s->len - pos >= 5) {
		uint8_t flags = (uint8_t)s->buf[pos];
		uint32_t mlen = (uint32_t)(uint8_t)s->buf[pos + 1] << 24 | (uint32_t)(uint8_t)s->buf[pos + 2] << 16 |
				(uint32_t)(uint8_t)s->buf[pos + 3] << 8 | (uint32_t)(uint8_t)s->buf[pos + 4];
		struct json_object *msg;
		if (mlen > 64u << 20) {
			snprintf(s->error, sizeof(s->error), "envd sent an oversized message (%u bytes)", mlen);
			return 0;
		}
		if (s->len - pos - 5 < mlen)
			break;
		{
			struct json_tokener *tok = json_tokener_new();
			msg = tok ? json_tokener_parse_ex(tok, s->buf + pos + 5, (int)mlen) : NULL;
			if (tok)
				json_tokener_free(tok);
		}
		if (!msg) {
			snprintf(s->error, sizeof(s->error), "envd sent a message that is not JSON");
			return 0;
		}
		if (flags & 0x02) {
			struct json_object *err, *m;
			if (json_object_object_get_ex(msg, "error", &err)) {
				const char *code = "", *text = "";
				if (json_object_object_get_ex(err, "code", &m))
					code = json_object_get_string(m);
				if (json_object_object_get_ex(err, "message", &m))
					text = json_object_get_string(m);
				snprintf(s->error, sizeof(s->error), "%s: %s", code, text);
			}
		} else {
			handle_event(s, msg);
		}
		json_object_put(msg);
		pos += 5 + mlen;
		if (s->p->detach && s->started) {
			s->detached = true;
			return 0; /* stop reading: the process keeps running in the guest */
		}
	}
	memmove(s->buf, s->buf + pos, s->len - pos);
	s->len -= pos;
	return add;
}

/* libcurl calls this about once a second even when no data flows: notice a dead VM. */
static int progress_cb(void *o, curl_off_t dt UNUSED, curl_off_t dn UNUSED, curl_off_t ut UNUSED,
		       curl_off_t un UNUSED)
{
	struct stream_state *s = o;
	uint64_t now = now_ns();
	if (!s->p->alive || now - s->last_alive_check < 100000000ull)
		return 0;
	s->last_alive_check = now;
	if (!s->p->alive(s->p->alive_opaque)) {
		s->dead = true;
		return 1;
	}
	return 0;
}

static char *start_body(const struct envdc_proc *p, size_t *len)
{
	struct json_object *o = json_object_new_object(), *proc = json_object_new_object();
	struct json_object *args = json_object_new_array(), *envs = json_object_new_object();
	const char *js;
	size_t jl;
	char *out;
	json_object_object_add(proc, "cmd", json_object_new_string("/bin/sh"));
	json_object_array_add(args, json_object_new_string("-c"));
	json_object_array_add(args, json_object_new_string(p->cmd));
	json_object_object_add(proc, "args", args);
	for (const char *const *e = p->env; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		char key[256];
		if (!eq || (size_t)(eq - *e) >= sizeof(key))
			continue;
		memcpy(key, *e, (size_t)(eq - *e));
		key[eq - *e] = 0;
		json_object_object_add(envs, key, json_object_new_string(eq + 1));
	}
	json_object_object_add(proc, "envs", envs);
	if (p->cwd)
		json_object_object_add(proc, "cwd", json_object_new_string(p->cwd));
	json_object_object_add(o, "process", proc);
	if (p->tag)
		json_object_object_add(o, "tag", json_object_new_string(p->tag));
	json_object_object_add(o, "stdin", json_object_new_boolean(0));
	js = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	jl = strlen(js);
	out = malloc(jl + 5);
	if (out) {
		out[0] = 0;
		out[1] = (char)(jl >> 24);
		out[2] = (char)(jl >> 16);
		out[3] = (char)(jl >> 8);
		out[4] = (char)jl;
		memcpy(out + 5, js, jl);
		*len = jl + 5;
	}
	json_object_put(o);
	return out;
}

int envdc_run(struct envdc *c, const struct envdc_proc *p, int *exit_code, uint32_t *pid)
{
	char url[160], auth[128];
	struct stream_state s = { .p = p };
	struct curl_slist *h = NULL;
	size_t blen = 0;
	char *body = start_body(p, &blen);
	CURL *e = curl_easy_init();
	CURLcode rc;
	long code = 0;
	int ret = -1;
	if (!e || !body) {
		free(body);
		if (e)
			curl_easy_cleanup(e);
		return err_set("cannot create envd request");
	}
	snprintf(url, sizeof(url), "%s/process.Process/Start", c->base);
	h = curl_slist_append(h, "Content-Type: application/connect+json");
	h = curl_slist_append(h, "Connect-Protocol-Version: 1");
	h = common_headers(c, h);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)blen);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	if (p->timeout_ms)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)p->timeout_ms);
	if (c->user[0]) {
		snprintf(auth, sizeof(auth), "%s:", c->user);
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(e, CURLOPT_USERPWD, auth);
	}
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, stream_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &s);
	if (p->alive) {
		curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, progress_cb);
		curl_easy_setopt(e, CURLOPT_XFERINFODATA, &s);
	}
	rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	if (s.detached) {
		ret = 0;
	} else if (s.dead) {
		err_set("running '%s' through envd at %s failed: the VM exited", p->cmd, c->base);
	} else if (rc != CURLE_OK) {
		err_set("running '%s' through envd at %s failed: %s%s%s", p->cmd, c->base,
			s.error[0] ? s.error : curl_easy_strerror(rc), s.error[0] ? "" : "", "");
	} else if (code != 200) {
		err_set("running '%s' through envd at %s failed: HTTP %ld", p->cmd, c->base, code);
	} else if (s.error[0]) {
		err_set("running '%s' through envd at %s failed: %s", p->cmd, c->base, s.error);
	} else if (!s.ended) {
		err_set("running '%s' through envd at %s failed: stream ended without an end event", p->cmd,
			c->base);
	} else {
		ret = 0;
	}
	if (ret == 0) {
		if (exit_code)
			*exit_code = s.exit_code;
		if (pid)
			*pid = s.pid;
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	free(body);
	free(s.buf);
	return ret;
}
