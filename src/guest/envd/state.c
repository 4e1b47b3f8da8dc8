/*
 * state.c - sandbox-wide defaults set by POST /init: access token, env vars, default user and
 * workdir, and the guest clock (reference §9.2).
 *
 * Clock rule: a timestamp not newer than the last applied one is ignored entirely (stale
 * retries); otherwise CLOCK_REALTIME is set to it when the guest clock is more than 50 ms
 * behind or more than 5 s ahead. -no-clock (tests on a host) computes the decision but never
 * sets the clock. Locking: state_lock guards everything here.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "envd.h"

#define MAX_TIME_IN_PAST_NS (50LL * 1000000)
#define MAX_TIME_IN_FUTURE_NS (5LL * 1000000000)

static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static char *token;
static char *default_user;
static char *default_workdir;
static struct json_object *env_vars; /* object of strings set by /init */
static int64_t last_ts_ns = INT64_MIN;
static bool clock_allowed;

void state_init(bool allow_clock)
{
	clock_allowed = allow_clock;
	env_vars = json_object_new_object();
	default_user = strdup("root");
}

static bool const_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char d = la != lb;
	for (size_t i = 0; i < la && i < lb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

bool state_token_ok(const char *hv)
{
	pthread_mutex_lock(&state_lock);
	bool ok = !token || (hv && const_eq(hv, token));
	pthread_mutex_unlock(&state_lock);
	return ok;
}

bool state_token_is_set(void)
{
	pthread_mutex_lock(&state_lock);
	bool set = token != NULL;
	pthread_mutex_unlock(&state_lock);
	return set;
}

int state_check_signature(const char *path, const char *op, const char *user,
			  const char *signature, const char *expiration, const char **msg)
{
	if (!signature || !*signature) {
		*msg = "missing signature query parameter";
		return -1;
	}
	long long exp = 0;
	if (expiration && *expiration) {
		char *end;
		exp = strtoll(expiration, &end, 10);
		if (*end) {
			*msg = "invalid signature_expiration";
			return -1;
		}
	}
	pthread_mutex_lock(&state_lock);
	if (!token) {
		pthread_mutex_unlock(&state_lock);
		return 0;
	}
	size_t n = strlen(path) + strlen(op) + strlen(user) + strlen(token) + 32;
	char *raw = malloc(n);
	if (!raw) {
		pthread_mutex_unlock(&state_lock);
		*msg = "out of memory";
		return -1;
	}
	if (expiration && *expiration)
		snprintf(raw, n, "%s:%s:%s:%s:%lld", path, op, user, token, exp);
	else
		snprintf(raw, n, "%s:%s:%s:%s", path, op, user, token);
	pthread_mutex_unlock(&state_lock);
	unsigned char digest[32];
	sha256(raw, strlen(raw), digest);
	explicit_bzero(raw, n);
	free(raw);
	char *b = b64_encode(digest, sizeof(digest));
	if (!b) {
		*msg = "out of memory";
		return -1;
	}
	char want[64];
	snprintf(want, sizeof(want), "v1_%.*s", 43, b); /* 32 bytes = 43 chars unpadded */
	free(b);
	if (!const_eq(want, signature)) {
		*msg = "invalid signature";
		return -1;
	}
	if (expiration && *expiration && exp < (long long)time(NULL)) {
		*msg = "signature is already expired";
		return -1;
	}
	return 0;
}

void state_default_user(char *out, size_t len)
{
	pthread_mutex_lock(&state_lock);
	snprintf(out, len, "%s", default_user ? default_user : "");
	pthread_mutex_unlock(&state_lock);
}

void state_default_workdir(char *out, size_t len)
{
	pthread_mutex_lock(&state_lock);
	snprintf(out, len, "%s", default_workdir ? default_workdir : "");
	pthread_mutex_unlock(&state_lock);
}

struct json_object *state_env_vars(void)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "E2B_SANDBOX", json_object_new_string("true"));
	pthread_mutex_lock(&state_lock);
	json_object_object_foreach(env_vars, k, v) json_object_object_add(o, k, json_object_get(v));
	pthread_mutex_unlock(&state_lock);
	return o;
}

int state_apply_init(struct json_object *body, const char *header_token, const char **msg,
		     const char **clock_action)
{
	*clock_action = "none";
	struct json_object *v;
	const char *new_token = NULL;
	int64_t ts = 0;
	bool have_ts = false;
	/* validate everything before changing anything */
	if (!json_object_is_type(body, json_type_object)) {
		*msg = "request body must be a JSON object";
		return 400;
	}
	if (json_object_object_get_ex(body, "accessToken", &v) && !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_string)) {
			*msg = "accessToken must be a string";
			return 400;
		}
		new_token = json_object_get_string(v);
		if (!*new_token)
			new_token = NULL;
	}
	if (json_object_object_get_ex(body, "timestamp", &v) && !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_string) ||
		    parse_rfc3339(json_object_get_string(v), &ts) < 0) {
			*msg = "timestamp must be an RFC 3339 date-time";
			return 400;
		}
		have_ts = true;
	}
	struct json_object *envs = NULL;
	if (json_object_object_get_ex(body, "envVars", &v) && !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_object)) {
			*msg = "envVars must be an object of strings";
			return 400;
		}
		json_object_object_foreach(v, k, ev)
		{
			if (!json_object_is_type(ev, json_type_string) || !*k || strchr(k, '=')) {
				*msg = "envVars must be an object of strings with valid names";
				return 400;
			}
		}
		envs = v;
	}
	const char *user = NULL, *workdir = NULL;
	if (json_object_object_get_ex(body, "defaultUser", &v) && json_object_is_type(v, json_type_string))
		user = json_object_get_string(v);
	else if (v && !json_object_is_type(v, json_type_null)) {
		*msg = "defaultUser must be a string";
		return 400;
	}
	v = NULL;
	if (json_object_object_get_ex(body, "defaultWorkdir", &v) && json_object_is_type(v, json_type_string))
		workdir = json_object_get_string(v);
	else if (v && !json_object_is_type(v, json_type_null)) {
		*msg = "defaultWorkdir must be a string";
		return 400;
	}

	pthread_mutex_lock(&state_lock);
	if (token) {
		/* Once set, the caller proves it knows the token (header or the same token in the
		 * body); a different token is a conflict, not a reset. */
		bool header_ok = header_token && const_eq(header_token, token);
		bool body_same = new_token && const_eq(new_token, token);
		if (new_token && !body_same) {
			pthread_mutex_unlock(&state_lock);
			*msg = "access token is already set and cannot be changed";
			return 409;
		}
		if (!header_ok && !body_same) {
			pthread_mutex_unlock(&state_lock);
			*msg = "unauthorized access, please provide a valid access token";
			return 401;
		}
	}
	if (have_ts && ts <= last_ts_ns) {
		pthread_mutex_unlock(&state_lock);
		*clock_action = "stale";
		return 204; /* a retry older than what was applied: nothing to do */
	}
	if (have_ts) {
		last_ts_ns = ts;
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		int64_t guest = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
		if (guest < ts - MAX_TIME_IN_PAST_NS || guest > ts + MAX_TIME_IN_FUTURE_NS) {
			if (!clock_allowed) {
				*clock_action = "disabled";
			} else {
				struct timespec set = { .tv_sec = ts / 1000000000LL,
							.tv_nsec = ts % 1000000000LL };
				if (clock_settime(CLOCK_REALTIME, &set) == 0)
					*clock_action = "set";
				else
					*clock_action = "failed";
			}
		} else {
			*clock_action = "skipped";
		}
	}
	if (envs) {
		json_object_put(env_vars);
		env_vars = json_object_new_object();
		json_object_object_foreach(envs, k, ev) json_object_object_add(env_vars, k, json_object_get(ev));
	}
	if (new_token && !token)
		token = strdup(new_token);
	if (user && *user) {
		free(default_user);
		default_user = strdup(user);
	}
	if (workdir && *workdir) {
		free(default_workdir);
		default_workdir = strdup(workdir);
	}
	pthread_mutex_unlock(&state_lock);
	return 204;
}
