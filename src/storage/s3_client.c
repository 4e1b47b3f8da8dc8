/*
 * s3_client.c - the HTTP side of s3:// and gs:// locations, on libcurl.
 *
 * Signing: libcurl's CURLOPT_AWS_SIGV4 ("aws:amz:REGION:s3") with the header
 * "x-amz-content-sha256: UNSIGNED-PAYLOAD", so bodies are streamed, never hashed. GCS's XML
 * API accepts the same requests with HMAC keys. Query strings are built already canonical
 * (parameters sorted, values percent-encoded) because the signer takes them as written.
 *
 * Retries (s3_request): every request is retried with exponential backoff and full jitter on
 * transport failures (connect, timeout, reset, short body), 408, 429 and 5xx; never on other
 * 4xx. 403 is reported at once as an authentication error, 404 as ENOENT. Bodies are re-sent
 * from their source (buffer or file range) on each attempt; a whole-object download restarts
 * from byte 0, a ranged one rewrites its own range.
 *
 * Atomicity: a PUT or a completed multipart upload is atomic in S3, so readers never see a
 * half object; a failed multipart upload is aborted (best effort). Downloads go to a temp
 * file beside the destination and are renamed only after size and CRC32C match. Large
 * downloads are parallel ranged GETs pinned to one version with If-Match: <ETag>.
 *
 * Connections: a curl share object holds one connection cache (plus DNS and TLS sessions)
 * for every thread of the location; CURLOPT_MAXCONNECTS is raised so that more than curl's
 * default of 5 threads keep theirs.
 *
 * Threading: the client is shared. Mutable state: the curl handle pool (pool_lock), the curl
 * share object (share_locks, one per curl lock kind) and two atomic counters. Each request
 * runs on a handle owned by the calling thread for its duration. Multipart parts and download
 * ranges are handled by a few worker threads that report their first error back through
 * struct mp_job / struct dl_job.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "../common/flags.h"
#include "s3_client.h"

#define ERRBODY_MAX (64 * 1024)

struct s3_client {
	char *describe; /* "s3://bucket/prefix" */
	char *scheme, *bucket, *prefix;
	char *base_url; /* everything before "/<key>" */
	char *sigv4;    /* "aws:amz:REGION:s3" */
	char *access, *secret, *token;
	const char *access_var, *secret_var; /* env names, for messages */
	unsigned max_attempts;
	uint64_t base_ms, cap_ms;
	long connect_timeout_ms, low_speed_s;
	uint64_t part_size, multipart_threshold;
	unsigned upload_threads;
	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
	pthread_mutex_t pool_lock; /* guards pool, npool, cap */
	CURL **pool;
	size_t npool, cap;
	_Atomic uint64_t requests, range_gets;
};

/* ---- configuration ---- */

static int fail_with(int e, const char *fmt, ...) PRINTF_LIKE(2, 3);

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static const char *env_or(const char *a, const char *b)
{
	const char *v = getenv(a);
	if (v && *v)
		return v;
	if (b) {
		v = getenv(b);
		if (v && *v)
			return v;
	}
	return NULL;
}

static int env_u64(const char *name, uint64_t def, uint64_t *out)
{
	const char *v = getenv(name);
	if (!v || !*v) {
		*out = def;
		return 0;
	}
	if (parse_u64_size(v, out) < 0)
		return err_prefix("invalid %s", name);
	return 0;
}

static void share_lock(CURL *h UNUSED, curl_lock_data data, curl_lock_access acc UNUSED, void *opaque)
{
	struct s3_client *c = opaque;
	pthread_mutex_lock(&c->share_locks[data < CURL_LOCK_DATA_LAST ? data : 0]);
}

static void share_unlock(CURL *h UNUSED, curl_lock_data data, void *opaque)
{
	struct s3_client *c = opaque;
	pthread_mutex_unlock(&c->share_locks[data < CURL_LOCK_DATA_LAST ? data : 0]);
}

struct s3_client *s3_client_new(const char *url)
{
	struct s3_client *c;
	const char *endpoint, *region, *ak, *sk;
	uint64_t v;
	bool gcs;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		err_set("cannot initialise libcurl: %s", curl_easy_strerror(curl_init_rc));
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		err_set_errno(ENOMEM, "cannot open '%s'", url);
		return NULL;
	}
	pthread_mutex_init(&c->pool_lock, NULL);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&c->share_locks[i], NULL);
	if (s3_url_parse(url, &c->scheme, &c->bucket, &c->prefix) < 0)
		goto err;
	gcs = !strcmp(c->scheme, "gs");
	if (asprintf(&c->describe, "%s://%s%s%s", c->scheme, c->bucket, *c->prefix ? "/" : "", c->prefix) < 0)
		goto err_nomem;
	if (gcs) {
		endpoint = env_or("GCS_ENDPOINT_URL", NULL);
		if (!endpoint)
			endpoint = "https://storage.googleapis.com";
		region = env_or("GCS_REGION", NULL);
		if (!region)
			region = "auto";
		c->access_var = "GCS_ACCESS_KEY_ID";
		c->secret_var = "GCS_SECRET_ACCESS_KEY";
	} else {
		endpoint = env_or("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL");
		region = env_or("AWS_REGION", "AWS_DEFAULT_REGION");
		if (!region)
			region = "us-east-1";
		c->access_var = "AWS_ACCESS_KEY_ID";
		c->secret_var = "AWS_SECRET_ACCESS_KEY";
		if ((c->token = (char *)env_or("AWS_SESSION_TOKEN", NULL)) && !(c->token = strdup(c->token)))
			goto err_nomem;
	}
	ak = env_or(c->access_var, NULL);
	sk = env_or(c->secret_var, NULL);
	if (!ak || !sk) {
		fail_with(EACCES, "cannot open '%s': no credentials: set %s and %s", c->describe,
			  c->access_var, c->secret_var);
		goto err;
	}
	if (!(c->access = strdup(ak)) || !(c->secret = strdup(sk)))
		goto err_nomem;
	if (endpoint) {
		size_t el = strlen(endpoint);
		while (el > 0 && endpoint[el - 1] == '/')
			el--;
		if (strncmp(endpoint, "http://", 7) && strncmp(endpoint, "https://", 8)) {
			err_set_errno(EINVAL, "cannot open '%s': endpoint '%s' must start with http:// or https://",
				      c->describe, endpoint);
			goto err;
		}
		/* path style: <endpoint>/<bucket>/<key> */
		if (asprintf(&c->base_url, "%.*s/%s", (int)el, endpoint, c->bucket) < 0)
			goto err_nomem;
	} else {
		/* real AWS: virtual-host style, except for bucket names with dots, which the
		 * *.s3.REGION.amazonaws.com certificate does not cover */
		if (strchr(c->bucket, '.') ? asprintf(&c->base_url, "https://s3.%s.amazonaws.com/%s", region, c->bucket) < 0
					   : asprintf(&c->base_url, "https://%s.s3.%s.amazonaws.com", c->bucket, region) < 0)
			goto err_nomem;
	}
	if (asprintf(&c->sigv4, "aws:amz:%s:s3", region) < 0)
		goto err_nomem;

	if (env_u64("ORCH_S3_MAX_ATTEMPTS", 8, &v) < 0)
		goto err;
	c->max_attempts = (unsigned)MAX(1, MIN(v, 100));
	if (env_u64("ORCH_S3_RETRY_BASE_MS", 100, &c->base_ms) < 0 ||
	    env_u64("ORCH_S3_RETRY_MAX_MS", 5000, &c->cap_ms) < 0)
		goto err;
	if (env_u64("ORCH_S3_CONNECT_TIMEOUT_MS", 5000, &v) < 0)
		goto err;
	c->connect_timeout_ms = (long)MIN(v, 600000);
	if (env_u64("ORCH_S3_LOW_SPEED_SECONDS", 30, &v) < 0)
		goto err;
	c->low_speed_s = (long)MAX(1, MIN(v, 3600));
	if (env_u64("ORCH_S3_PART_SIZE", 32ull << 20, &c->part_size) < 0 ||
	    env_u64("ORCH_S3_MULTIPART_THRESHOLD", 64ull << 20, &c->multipart_threshold) < 0)
		goto err;
	if (c->part_size < 4096 || c->part_size > (5ull << 30)) {
		err_set_errno(EINVAL, "invalid ORCH_S3_PART_SIZE: must be between 4 KiB and 5 GiB");
		goto err;
	}
	if (env_u64("ORCH_S3_UPLOAD_THREADS", 4, &v) < 0)
		goto err;
	c->upload_threads = (unsigned)MAX(1, MIN(v, 64));

	if (!(c->share = curl_share_init()))
		goto err_nomem;
	curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	return c;
err_nomem:
	err_set_errno(ENOMEM, "cannot open '%s'", url);
err:
	s3_client_free(c);
	return NULL;
}

void s3_client_free(struct s3_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->npool; i++)
		curl_easy_cleanup(c->pool[i]);
	free(c->pool);
	if (c->share)
		curl_share_cleanup(c->share);
	pthread_mutex_destroy(&c->pool_lock);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&c->share_locks[i]);
	free(c->describe);
	free(c->scheme);
	free(c->bucket);
	free(c->prefix);
	free(c->base_url);
	free(c->sigv4);
	if (c->secret)
		explicit_bzero(c->secret, strlen(c->secret));
	free(c->access);
	free(c->secret);
	free(c->token);
	free(c);
}

const char *s3_client_describe(const struct s3_client *c)
{
	return c->describe;
}

uint64_t s3_client_requests(const struct s3_client *c)
{
	return atomic_load(&((struct s3_client *)c)->requests);
}

uint64_t s3_client_range_gets(const struct s3_client *c)
{
	return atomic_load(&((struct s3_client *)c)->range_gets);
}

/* ---- handle pool ---- */

static CURL *pool_get(struct s3_client *c)
{
	CURL *h = NULL;
	pthread_mutex_lock(&c->pool_lock);
	if (c->npool > 0)
		h = c->pool[--c->npool];
	pthread_mutex_unlock(&c->pool_lock);
	return h ? h : curl_easy_init();
}

static void pool_put(struct s3_client *c, CURL *h)
{
	pthread_mutex_lock(&c->pool_lock);
	if (c->npool == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 8;
		CURL **np = realloc(c->pool, nc * sizeof(*np));
		if (!np) {
			pthread_mutex_unlock(&c->pool_lock);
			curl_easy_cleanup(h);
			return;
		}
		c->pool = np;
		c->cap = nc;
	}
	c->pool[c->npool++] = h;
	pthread_mutex_unlock(&c->pool_lock);
}

/* ---- one request ---- */

enum sink_kind { SINK_NONE, SINK_MEM, SINK_BUF, SINK_FD };

struct s3_req {
	const char *method; /* GET HEAD PUT POST DELETE */
	const char *key;    /* relative to the location; NULL = the bucket itself */
	const char *query;  /* canonical, without '?' */
	const char *range;  /* "bytes=a-b" */
	const char *hdrs[4];
	/* body: memory or a file range */
	const char *body;
	int body_fd;
	uint64_t body_off, body_len;
	bool has_body;
	uint64_t body_pos;
	/* response body */
	enum sink_kind sink;
	void *buf;
	size_t buf_len; /* SINK_BUF: exact length; ranged SINK_FD: the most we accept */
	int fd;
	uint64_t fd_off; /* SINK_FD: where byte 0 of the body goes */
	/* results of the last attempt */
	long status;
	char *mem;
	size_t mem_len, mem_cap;
	uint64_t got;
	uint32_t crc;
	bool have_cl;
	uint64_t content_length;
	bool have_crc;
	uint32_t obj_crc;
	char etag[128];
	int local_errno;   /* a local write failed: do not retry */
	bool overflow;     /* server sent more than asked */
	unsigned max_attempts; /* 0 = the client's */
};

static bool is_error_status(long s)
{
	return s >= 300;
}

static size_t on_header(char *p, size_t size, size_t n, void *opaque)
{
	struct s3_req *r = opaque;
	size_t len = size * n, vl;
	const char *colon, *v;
	char val[160];
	if (len >= 5 && !strncmp(p, "HTTP/", 5)) {
		/* a new response (e.g. after 100 Continue): forget the previous headers */
		r->have_cl = r->have_crc = false;
		r->etag[0] = 0;
		return len;
	}
	colon = memchr(p, ':', len);
	if (!colon)
		return len;
	v = colon + 1;
	while (v < p + len && (*v == ' ' || *v == '\t'))
		v++;
	vl = (size_t)(p + len - v);
	while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
		vl--;
	if (vl >= sizeof(val))
		return len;
	memcpy(val, v, vl);
	val[vl] = 0;
#define HDR_IS(name) ((size_t)(colon - p) == strlen(name) && !strncasecmp(p, name, strlen(name)))
	if (HDR_IS("content-length")) {
		char *end;
		unsigned long long cl = strtoull(val, &end, 10);
		if (*end == 0 && end != val) {
			r->have_cl = true;
			r->content_length = cl;
		}
	} else if (HDR_IS("x-amz-meta-crc32c") || HDR_IS("x-goog-meta-crc32c")) {
		r->have_crc = s3_crc_from_b64(val, &r->obj_crc) == 0;
	} else if (HDR_IS("x-goog-hash") && !r->have_crc) {
		/* GCS reports its own CRC32C: "crc32c=AAAAAA==, md5=..." (same encoding as ours) */
		const char *cp = strstr(val, "crc32c=");
		if (cp) {
			char b[9];
			snprintf(b, sizeof(b), "%s", cp + 7);
			r->have_crc = s3_crc_from_b64(b, &r->obj_crc) == 0;
		}
	} else if (HDR_IS("etag")) {
		snprintf(r->etag, sizeof(r->etag), "%s", val);
	}
#undef HDR_IS
	return len;
}

static int mem_append(struct s3_req *r, const char *p, size_t len, size_t limit)
{
	if (r->mem_len + len > limit)
		len = limit > r->mem_len ? limit - r->mem_len : 0;
	if (r->mem_len + len + 1 > r->mem_cap) {
		size_t nc = MAX(r->mem_cap * 2, r->mem_len + len + 1);
		char *nm = realloc(r->mem, MAX(nc, 4096));
		if (!nm)
			return -1;
		r->mem = nm;
		r->mem_cap = MAX(nc, 4096);
	}
	memcpy(r->mem + r->mem_len, p, len);
	r->mem_len += len;
	r->mem[r->mem_len] = 0;
	return 0;
}

struct write_ctx {
	struct s3_req *r;
	CURL *h;
};

static size_t on_write(char *p, size_t size, size_t n, void *opaque)
{
	struct write_ctx *w = opaque;
	struct s3_req *r = w->r;
	size_t len = size * n;
	long status = 0;
	curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &status);
	if (is_error_status(status) || r->sink == SINK_MEM || r->sink == SINK_NONE) {
		size_t limit = r->sink == SINK_MEM && !is_error_status(status) ? SIZE_MAX / 2 : ERRBODY_MAX;
		if (mem_append(r, p, len, limit) < 0) {
			r->local_errno = ENOMEM;
			return 0;
		}
		return len;
	}
	if (r->sink == SINK_BUF) {
		if (r->got + len > r->buf_len) {
			r->overflow = true;
			return 0;
		}
		memcpy((char *)r->buf + r->got, p, len);
	} else {
		if (r->range && r->got + len > r->buf_len) {
			r->overflow = true;
			return 0;
		}
		if (full_pwrite(r->fd, p, len, r->fd_off + r->got) < 0) {
			r->local_errno = errno ? errno : EIO;
			return 0;
		}
		r->crc = crc32c_update(r->crc, p, len);
	}
	r->got += len;
	return len;
}

static size_t on_read(char *dst, size_t size, size_t n, void *opaque)
{
	struct s3_req *r = opaque;
	size_t want = size * n;
	uint64_t left = r->body_len - r->body_pos;
	if (want > left)
		want = (size_t)left;
	if (want == 0)
		return 0;
	if (r->body) {
		memcpy(dst, r->body + r->body_pos, want);
	} else if (full_pread(r->body_fd, dst, want, r->body_off + r->body_pos) < 0) {
		r->local_errno = errno ? errno : EIO;
		return CURL_READFUNC_ABORT;
	}
	r->body_pos += want;
	return want;
}

static int on_seek(void *opaque, curl_off_t off, int origin)
{
	struct s3_req *r = opaque;
	if (origin != SEEK_SET || off < 0 || (uint64_t)off > r->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	r->body_pos = (uint64_t)off;
	return CURL_SEEKFUNC_OK;
}

static char *full_key(struct s3_client *c, const char *key)
{
	char *k;
	if (asprintf(&k, "%s%s%s", c->prefix, *c->prefix ? "/" : "", key) < 0)
		return NULL;
	return k;
}

static char *request_url(struct s3_client *c, const struct s3_req *r)
{
	_cleanup_free_ char *fk = NULL, *enc = NULL;
	char *url;
	if (r->key) {
		if (!(fk = full_key(c, r->key)) || !(enc = s3_uri_encode(fk, true)))
			return NULL;
	}
	if (asprintf(&url, "%s/%s%s%s", c->base_url, enc ? enc : "", r->query ? "?" : "",
		     r->query ? r->query : "") < 0)
		return NULL;
	return url;
}

/* One attempt. Returns the curl code; r->status holds the HTTP status. */
static CURLcode perform(struct s3_client *c, struct s3_req *r, CURL *h, char *errbuf)
{
	struct curl_slist *hl = NULL, *tmp;
	struct write_ctx w = { .r = r, .h = h };
	_cleanup_free_ char *url = request_url(c, r);
	char line[256];
	CURLcode rc;
	if (!url)
		return CURLE_OUT_OF_MEMORY;
	curl_easy_reset(h);
	errbuf[0] = 0;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_SHARE, c->share);
	/* the connection cache is shared by every thread of this location; curl's default
	 * limit of 5 would close idle connections as soon as more threads than that ran */
	curl_easy_setopt(h, CURLOPT_MAXCONNECTS, 64L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->sigv4);
	curl_easy_setopt(h, CURLOPT_USERNAME, c->access);
	curl_easy_setopt(h, CURLOPT_PASSWORD, c->secret);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->low_speed_s);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	/* bigger buffers than curl's 16 KiB / 64 KiB defaults: fewer callbacks and pwrites */
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024);
	curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 1024L * 1024);
	/* no wait for "100 Continue". Removing the header with "Expect:" instead would make
	 * libcurl 7.88 sign an "expect" header it then does not send (caught by the SigV4 check in
	 * tests/bucket/faultproxy.js). */
	curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &w);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_USERAGENT, "orch-bucket/1");

#define ADD_HDR(s)                                                                                 \
	do {                                                                                       \
		if (!(tmp = curl_slist_append(hl, (s)))) {                                         \
			curl_slist_free_all(hl);                                                   \
			return CURLE_OUT_OF_MEMORY;                                                \
		}                                                                                  \
		hl = tmp;                                                                          \
	} while (0)
	ADD_HDR("x-amz-content-sha256: UNSIGNED-PAYLOAD");
	if (c->token) {
		snprintf(line, sizeof(line), "x-amz-security-token: %s", c->token);
		if (strlen(c->token) + 24 < sizeof(line))
			ADD_HDR(line);
	}
	if (r->range) {
		snprintf(line, sizeof(line), "Range: %s", r->range);
		ADD_HDR(line);
	}
	for (size_t i = 0; i < ARRAY_SIZE(r->hdrs) && r->hdrs[i]; i++)
		ADD_HDR(r->hdrs[i]);

	if (!strcmp(r->method, "HEAD")) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(r->method, "PUT")) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(r->has_body ? r->body_len : 0));
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, r);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
	} else if (!strcmp(r->method, "POST")) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->has_body ? r->body_len : 0));
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, r);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
		ADD_HDR("Content-Type: application/xml");
	} else if (strcmp(r->method, "GET")) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	}
#undef ADD_HDR
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	atomic_fetch_add(&c->requests, 1);
	rc = curl_easy_perform(h);
	r->status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hl);
	return rc;
}

static __thread uint64_t rng_state;

static double rand_unit(void)
{
	uint64_t x = rng_state;
	if (!x) {
		if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != sizeof(x))
			x = now_ns() ^ (uint64_t)(uintptr_t)&x;
		x |= 1;
	}
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return (double)(x >> 11) / (double)(1ull << 53);
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void reset_attempt(struct s3_req *r)
{
	r->status = 0;
	r->mem_len = 0;
	if (r->mem)
		r->mem[0] = 0;
	r->got = 0;
	r->crc = 0;
	r->have_cl = r->have_crc = false;
	r->etag[0] = 0;
	r->local_errno = 0;
	r->overflow = false;
	r->body_pos = 0;
}

/* "HTTP 500 InternalError: message" from the last attempt (error bodies are S3 XML). */
static void describe_status(const struct s3_req *r, char *out, size_t outlen)
{
	_cleanup_free_ char *code = NULL, *msg = NULL;
	if (r->mem_len) {
		code = s3_xml_first(r->mem, r->mem_len, "Code");
		msg = s3_xml_first(r->mem, r->mem_len, "Message");
	}
	snprintf(out, outlen, "HTTP %ld%s%s%s%s", r->status, code ? " " : "", code ? code : "",
		 msg && *msg ? ": " : "", msg ? msg : "");
}

/* Run a request with the retry policy. 0 on a 2xx; -1 + err otherwise (ENOENT on 404,
 * EACCES on 401/403). The message says what went wrong, the caller names the object. */
static int s3_request(struct s3_client *c, struct s3_req *r)
{
	char errbuf[CURL_ERROR_SIZE];
	char why[600];
	for (unsigned attempt = 0;; attempt++) {
		CURL *h = pool_get(c);
		CURLcode rc;
		bool retry = false;
		if (!h)
			return err_set_errno(ENOMEM, "cannot create a curl handle");
		reset_attempt(r);
		/* a whole-object download starts over; a ranged one rewrites its own range */
		if (r->sink == SINK_FD && !r->range && ftruncate(r->fd, 0) < 0) {
			pool_put(c, h);
			return err_set_errno(errno, "cannot truncate download file");
		}
		rc = perform(c, r, h, errbuf);
		pool_put(c, h);
		if (r->local_errno)
			return err_set_errno(r->local_errno, "local i/o failed during %s", r->method);
		if (rc == CURLE_OUT_OF_MEMORY)
			return err_set_errno(ENOMEM, "%s failed", r->method);
		if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && r->overflow)) {
			snprintf(why, sizeof(why), "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
			retry = rc != CURLE_URL_MALFORMAT && rc != CURLE_UNSUPPORTED_PROTOCOL &&
				rc != CURLE_NOT_BUILT_IN;
		} else if (r->overflow) {
			snprintf(why, sizeof(why), "server sent more than the %zu bytes asked for", r->buf_len);
		} else if (r->status >= 200 && r->status < 300) {
			if ((r->sink == SINK_BUF || (r->sink == SINK_FD && r->range)) && r->got != r->buf_len) {
				snprintf(why, sizeof(why), "short body: %llu of %zu bytes",
					 (unsigned long long)r->got, r->buf_len);
				retry = true;
			} else if (r->sink == SINK_MEM && !strcmp(r->method, "POST") && r->mem_len &&
				   memmem(r->mem, r->mem_len, "<Error>", 7)) {
				/* CompleteMultipartUpload may fail inside a 200 response */
				_cleanup_free_ char *code = s3_xml_first(r->mem, r->mem_len, "Code");
				snprintf(why, sizeof(why), "HTTP %ld with error %s", r->status, code ? code : "?");
				retry = code && (!strcmp(code, "InternalError") || !strcmp(code, "SlowDown"));
			} else {
				return 0;
			}
		} else {
			describe_status(r, why, sizeof(why));
			if (r->status == 404)
				return fail_with(ENOENT, "no such object (%s)", why);
			if (r->status == 401 || r->status == 403)
				return fail_with(EACCES, "authentication failed (%s): check %s and %s", why,
						 c->access_var, c->secret_var);
			retry = s3_status_retryable(r->status);
		}
		if (!retry)
			return fail_with(EIO, "%s", why);
		if (attempt + 1 >= (r->max_attempts ? r->max_attempts : c->max_attempts))
			return fail_with(EIO, "%s (gave up after %u attempts)", why, attempt + 1);
		log_debug("%s %s: %s; retrying (attempt %u)", r->method, r->key ? r->key : "/", why, attempt + 2);
		sleep_ms(s3_backoff_ms(attempt, c->base_ms, c->cap_ms, rand_unit()));
	}
}

/* Record a message that already says why, and set errno for callers that branch on it. */
static int fail_with(int e, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int fail_with(int e, const char *fmt, ...)
{
	char buf[ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	err_set("%s", buf);
	errno = e;
	return -1;
}

static void req_release(struct s3_req *r)
{
	free(r->mem);
	r->mem = NULL;
}

/* ---- object operations ---- */

int s3_head(struct s3_client *c, const char *key, struct s3_stat *st)
{
	struct s3_req r = { .method = "HEAD", .key = key, .sink = SINK_NONE };
	int rc = s3_request(c, &r);
	if (rc == 0 && !r.have_cl)
		rc = err_set_errno(EPROTO, "HEAD response without Content-Length");
	if (rc == 0) {
		st->size = r.content_length;
		st->have_crc = r.have_crc;
		st->crc = r.obj_crc;
	}
	req_release(&r);
	if (rc < 0)
		return err_prefix("cannot stat '%s' in %s", key, c->describe);
	return 0;
}

int s3_get_range(struct s3_client *c, const char *key, void *buf, size_t len, uint64_t off)
{
	char range[64];
	struct s3_req r = { .method = "GET", .key = key, .range = range, .sink = SINK_BUF, .buf = buf, .buf_len = len };
	int rc;
	if (len == 0)
		return 0;
	snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)off,
		 (unsigned long long)(off + len - 1));
	atomic_fetch_add(&c->range_gets, 1);
	rc = s3_request(c, &r);
	req_release(&r);
	if (rc < 0)
		return err_prefix("cannot read %zu bytes at offset %llu of '%s' in %s", len,
				  (unsigned long long)off, key, c->describe);
	return 0;
}

void *s3_get_all(struct s3_client *c, const char *key, size_t *len)
{
	struct s3_req r = { .method = "GET", .key = key, .sink = SINK_MEM };
	if (s3_request(c, &r) < 0) {
		req_release(&r);
		err_prefix("cannot read '%s' from %s", key, c->describe);
		return NULL;
	}
	if (r.have_cl && r.content_length != r.mem_len) {
		req_release(&r);
		err_set_errno(EIO, "cannot read '%s' from %s: got %zu of %llu bytes", key, c->describe,
			      r.mem_len, (unsigned long long)r.content_length);
		return NULL;
	}
	if (!r.mem && !(r.mem = calloc(1, 1))) {
		err_set_errno(ENOMEM, "cannot read '%s'", key);
		return NULL;
	}
	*len = r.mem_len;
	return r.mem;
}

static int parent_mkdir(const char *path)
{
	char dir[PATH_MAX];
	char *slash;
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = 0;
	return mkdir_p(dir, 0755);
}

static int file_crc(int fd, uint64_t size, uint32_t *crc);

/* Ranged GETs of one object into one file by a few threads. Every range carries
 * If-Match: <ETag from the HEAD>, so an object replaced meanwhile fails (412) instead of
 * mixing two versions. */
struct dl_job {
	struct s3_client *c;
	const char *key;
	const char *if_match; /* "If-Match: ..." */
	int fd;
	uint64_t size, nparts;
	pthread_mutex_t lock; /* guards next, failed, err */
	uint64_t next;
	bool failed;
	char err[ERR_MSG_MAX];
};

static void *dl_worker(void *opaque)
{
	struct dl_job *j = opaque;
	for (;;) {
		char range[64];
		struct s3_req r = { .method = "GET", .key = j->key, .range = range, .sink = SINK_FD, .fd = j->fd };
		uint64_t part;
		int rc;
		pthread_mutex_lock(&j->lock);
		if (j->failed || j->next >= j->nparts) {
			pthread_mutex_unlock(&j->lock);
			return NULL;
		}
		part = j->next++;
		pthread_mutex_unlock(&j->lock);
		r.fd_off = part * j->c->part_size;
		r.buf_len = (size_t)MIN(j->c->part_size, j->size - r.fd_off);
		r.hdrs[0] = j->if_match;
		snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)r.fd_off,
			 (unsigned long long)(r.fd_off + r.buf_len - 1));
		rc = s3_request(j->c, &r);
		req_release(&r);
		if (rc < 0) {
			pthread_mutex_lock(&j->lock);
			if (!j->failed) {
				j->failed = true;
				snprintf(j->err, sizeof(j->err), "range %llu of %llu: %s%s",
					 (unsigned long long)(part + 1), (unsigned long long)j->nparts, err_msg(),
					 strstr(err_msg(), "HTTP 412") ? " (the object changed during the download)" : "");
			}
			pthread_mutex_unlock(&j->lock);
			return NULL;
		}
	}
}

static int download_parallel(struct s3_client *c, const char *key, int fd, uint64_t size, const char *etag,
			     bool have_crc, uint32_t want_crc)
{
	char if_match[160];
	struct dl_job j = { .c = c, .key = key, .if_match = if_match, .fd = fd, .size = size };
	pthread_t th[64];
	unsigned nth, started = 0;
	uint32_t crc = 0;
	snprintf(if_match, sizeof(if_match), "If-Match: %s", etag);
	if (ftruncate(fd, (off_t)size) < 0)
		return err_set_errno(errno, "cannot size the download file");
	j.nparts = (size + c->part_size - 1) / c->part_size;
	pthread_mutex_init(&j.lock, NULL);
	nth = (unsigned)MIN((uint64_t)c->upload_threads, j.nparts);
	for (; started < nth; started++)
		if (pthread_create(&th[started], NULL, dl_worker, &j) != 0)
			break;
	if (started == 0)
		dl_worker(&j);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&j.lock);
	if (j.failed)
		return fail_with(EIO, "%s", j.err);
	if (!have_crc)
		return 0;
	if (file_crc(fd, size, &crc) < 0)
		return -1;
	if (crc != want_crc) {
		char want[9], got[9];
		s3_crc_b64(want_crc, want);
		s3_crc_b64(crc, got);
		return fail_with(EIO, "checksum mismatch: object says crc32c %s, data has %s", want, got);
	}
	return 0;
}

int s3_download(struct s3_client *c, const char *key, const char *path)
{
	char tmp[PATH_MAX];
	struct s3_req r = { .method = "GET", .key = key, .sink = SINK_FD };
	struct s3_req head = { .method = "HEAD", .key = key, .sink = SINK_NONE };
	int fd, rc;
	bool parallel = false;
	/* large objects come down in parallel ranges: learn size, ETag and checksum first */
	if (c->upload_threads > 1) {
		if (s3_request(c, &head) < 0) {
			req_release(&head);
			return err_prefix("cannot download '%s' from %s", key, c->describe);
		}
		parallel = head.have_cl && head.content_length > c->multipart_threshold && head.etag[0];
	}
	req_release(&head); /* a HEAD has no body: only the parsed headers are used below */
	if (parent_mkdir(path) < 0)
		return err_prefix("cannot download '%s' from %s", key, c->describe);
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d.%llx", path, (int)getpid(), (unsigned long long)now_ns()) >=
	    (int)sizeof(tmp))
		return err_set_errno(ENAMETOOLONG, "cannot download to '%s'", path);
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set_errno(errno, "cannot create '%s'", tmp);
	r.fd = fd;
	if (parallel) {
		rc = download_parallel(c, key, fd, head.content_length, head.etag, head.have_crc, head.obj_crc);
		goto publish;
	}
	rc = s3_request(c, &r);
	if (rc == 0 && r.have_cl && r.got != r.content_length)
		rc = err_set_errno(EIO, "got %llu of %llu bytes", (unsigned long long)r.got,
				   (unsigned long long)r.content_length);
	if (rc == 0 && r.have_crc && r.crc != r.obj_crc) {
		char want[9], got[9];
		s3_crc_b64(r.obj_crc, want);
		s3_crc_b64(r.crc, got);
		rc = err_set_errno(EIO, "checksum mismatch: object says crc32c %s, data has %s", want, got);
	}
publish:
	if (rc == 0 && fsync(fd) < 0)
		rc = err_set_errno(errno, "cannot fsync '%s'", tmp);
	if (close(fd) < 0 && rc == 0)
		rc = err_set_errno(errno, "cannot close '%s'", tmp);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = err_set_errno(errno, "cannot rename '%s' to '%s'", tmp, path);
	req_release(&r);
	if (rc < 0) {
		unlink(tmp);
		return err_prefix("cannot download '%s' from %s", key, c->describe);
	}
	return 0;
}

static int put_single(struct s3_client *c, const char *key, const char *buf, int fd, uint64_t len, uint32_t crc)
{
	char meta[64];
	char b[9];
	struct s3_req r = { .method = "PUT", .key = key, .sink = SINK_NONE, .body = buf, .body_fd = fd,
			    .body_len = len, .has_body = true };
	int rc;
	s3_crc_b64(crc, b);
	snprintf(meta, sizeof(meta), "x-amz-meta-crc32c: %s", b);
	r.hdrs[0] = meta;
	r.hdrs[1] = "Content-Type: application/octet-stream";
	rc = s3_request(c, &r);
	req_release(&r);
	return rc;
}

int s3_put_buf(struct s3_client *c, const char *key, const void *buf, size_t len)
{
	if (put_single(c, key, buf ? buf : "", -1, len, crc32c(buf, len)) < 0)
		return err_prefix("cannot upload '%s' to %s", key, c->describe);
	return 0;
}

/* ---- multipart upload ---- */

struct mp_job {
	struct s3_client *c;
	const char *key;
	const char *upload_id_enc;
	int fd;
	uint64_t size;
	uint64_t nparts;
	char (*etags)[128];
	pthread_mutex_t lock; /* guards next, failed, err */
	uint64_t next;
	bool failed;
	char err[ERR_MSG_MAX];
};

static void *mp_worker(void *opaque)
{
	struct mp_job *j = opaque;
	for (;;) {
		uint64_t part;
		char query[512];
		struct s3_req r = { .method = "PUT", .key = j->key, .sink = SINK_NONE, .body_fd = j->fd,
				    .has_body = true };
		int rc;
		pthread_mutex_lock(&j->lock);
		if (j->failed || j->next >= j->nparts) {
			pthread_mutex_unlock(&j->lock);
			return NULL;
		}
		part = j->next++;
		pthread_mutex_unlock(&j->lock);
		r.body_off = part * j->c->part_size;
		r.body_len = MIN(j->c->part_size, j->size - r.body_off);
		snprintf(query, sizeof(query), "partNumber=%llu&uploadId=%s", (unsigned long long)(part + 1),
			 j->upload_id_enc);
		r.query = query;
		rc = s3_request(j->c, &r);
		if (rc == 0 && !r.etag[0])
			rc = err_set_errno(EPROTO, "no ETag in the answer");
		if (rc == 0)
			memcpy(j->etags[part], r.etag, sizeof(j->etags[part]));
		req_release(&r);
		if (rc < 0) {
			pthread_mutex_lock(&j->lock);
			if (!j->failed) {
				j->failed = true;
				snprintf(j->err, sizeof(j->err), "part %llu of %llu: %s",
					 (unsigned long long)(part + 1), (unsigned long long)j->nparts, err_msg());
			}
			pthread_mutex_unlock(&j->lock);
			return NULL;
		}
	}
}

static int put_multipart(struct s3_client *c, const char *key, int fd, uint64_t size, uint32_t crc)
{
	char meta[64], b[9];
	struct s3_req init = { .method = "POST", .key = key, .query = "uploads=", .sink = SINK_MEM,
			       .has_body = true, .body = "", .body_len = 0 };
	struct mp_job j = { .c = c, .key = key, .fd = fd, .size = size };
	_cleanup_free_ char *upload_id = NULL, *id_enc = NULL, *xml = NULL;
	pthread_t th[64];
	unsigned nth, started = 0;
	int rc = -1;
	size_t xl = 0, xcap;

	s3_crc_b64(crc, b);
	snprintf(meta, sizeof(meta), "x-amz-meta-crc32c: %s", b);
	init.hdrs[0] = meta;
	if (s3_request(c, &init) < 0) {
		req_release(&init);
		return err_prefix("cannot start multipart upload");
	}
	upload_id = init.mem ? s3_xml_first(init.mem, init.mem_len, "UploadId") : NULL;
	req_release(&init);
	if (!upload_id || !*upload_id)
		return err_set_errno(EPROTO, "cannot start multipart upload: no UploadId in the answer");
	if (!(id_enc = s3_uri_encode(upload_id, false)))
		return err_set_errno(ENOMEM, "cannot upload");

	j.upload_id_enc = id_enc;
	j.nparts = (size + c->part_size - 1) / c->part_size;
	if (j.nparts > 10000)
		return err_set_errno(EFBIG, "object needs %llu parts (more than 10000): raise ORCH_S3_PART_SIZE",
				     (unsigned long long)j.nparts);
	if (!(j.etags = calloc(j.nparts, sizeof(*j.etags))))
		return err_set_errno(ENOMEM, "cannot upload");
	pthread_mutex_init(&j.lock, NULL);
	nth = (unsigned)MIN((uint64_t)c->upload_threads, j.nparts);
	for (; started < nth; started++) {
		if (pthread_create(&th[started], NULL, mp_worker, &j) != 0)
			break;
	}
	if (started == 0)
		mp_worker(&j);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (j.failed) {
		err_set("%s", j.err);
		goto abort;
	}

	/* CompleteMultipartUpload, parts in order */
	xcap = 128 + j.nparts * 200;
	if (!(xml = malloc(xcap))) {
		err_set_errno(ENOMEM, "cannot upload");
		goto abort;
	}
	xl += (size_t)snprintf(xml + xl, xcap - xl, "<CompleteMultipartUpload>");
	for (uint64_t i = 0; i < j.nparts; i++)
		xl += (size_t)snprintf(xml + xl, xcap - xl, "<Part><PartNumber>%llu</PartNumber><ETag>%s</ETag></Part>",
				       (unsigned long long)(i + 1), j.etags[i]);
	xl += (size_t)snprintf(xml + xl, xcap - xl, "</CompleteMultipartUpload>");
	{
		char query[512];
		struct s3_req done = { .method = "POST", .key = key, .query = query, .sink = SINK_MEM,
				       .body = xml, .body_len = xl, .has_body = true };
		snprintf(query, sizeof(query), "uploadId=%s", id_enc);
		rc = s3_request(c, &done);
		req_release(&done);
		if (rc < 0 && errno == ENOENT) {
			/* a retried complete whose first attempt succeeded: the upload is gone and
			 * the object is there; accept it only if it is exactly ours */
			struct s3_stat st;
			char saved[ERR_MSG_MAX];
			snprintf(saved, sizeof(saved), "%s", err_msg());
			if (s3_head(c, key, &st) == 0 && st.size == size && st.have_crc && st.crc == crc)
				rc = 0;
			else
				fail_with(EIO, "%s", saved);
		}
		if (rc < 0) {
			err_prefix("cannot complete multipart upload");
			goto abort;
		}
	}
	free(j.etags);
	pthread_mutex_destroy(&j.lock);
	return 0;
abort: {
	/* best effort: drop the parts so nothing lingers; the object never appeared */
	char saved[ERR_MSG_MAX], query[512];
	int e = errno;
	struct s3_req ab = { .method = "DELETE", .key = key, .query = query, .sink = SINK_NONE,
			     .max_attempts = 2 };
	snprintf(saved, sizeof(saved), "%s", err_msg());
	snprintf(query, sizeof(query), "uploadId=%s", id_enc);
	s3_request(c, &ab);
	req_release(&ab);
	free(j.etags);
	pthread_mutex_destroy(&j.lock);
	return fail_with(e ? e : EIO, "%s", saved);
}
}

static int file_crc(int fd, uint64_t size, uint32_t *crc)
{
	_cleanup_free_ char *buf = malloc(1 << 20);
	uint32_t v = 0;
	uint64_t off = 0;
	if (!buf)
		return err_set_errno(ENOMEM, "cannot checksum");
	while (off < size) {
		size_t n = (size_t)MIN((uint64_t)(1 << 20), size - off);
		if (full_pread(fd, buf, n, off) < 0)
			return err_set_errno(errno ? errno : EIO, "cannot read");
		v = crc32c_update(v, buf, n);
		off += n;
	}
	*crc = v;
	return 0;
}

int s3_put_file(struct s3_client *c, const char *key, const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	uint32_t crc = 0;
	int rc;
	if (fd < 0)
		return err_set_errno(errno, "cannot upload '%s' to %s: cannot open '%s'", key, c->describe, path);
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))
		return err_set_errno(errno ? errno : EINVAL, "cannot upload '%s' to %s: '%s' is not a regular file",
				     key, c->describe, path);
	if (file_crc(fd, (uint64_t)sb.st_size, &crc) < 0)
		return err_prefix("cannot upload '%s' to %s: '%s'", key, c->describe, path);
	if ((uint64_t)sb.st_size > c->multipart_threshold)
		rc = put_multipart(c, key, fd, (uint64_t)sb.st_size, crc);
	else
		rc = put_single(c, key, NULL, fd, (uint64_t)sb.st_size, crc);
	if (rc < 0)
		return err_prefix("cannot upload '%s' to %s", key, c->describe);
	return 0;
}

int s3_delete(struct s3_client *c, const char *key)
{
	struct s3_req r = { .method = "DELETE", .key = key, .sink = SINK_NONE };
	int rc = s3_request(c, &r);
	req_release(&r);
	if (rc < 0 && errno != ENOENT)
		return err_prefix("cannot delete '%s' from %s", key, c->describe);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int s3_list(struct s3_client *c, const char *prefix, char ***keys_out, size_t *n_out)
{
	_cleanup_free_ char *fp = NULL, *fp_enc = NULL, *token = NULL;
	char **keys = NULL;
	size_t n = 0, cap = 0, strip = *c->prefix ? strlen(c->prefix) + 1 : 0;
	bool truncated = true;
	if (!(fp = full_key(c, prefix)) || !(fp_enc = s3_uri_encode(fp, false)))
		return err_set_errno(ENOMEM, "cannot list %s", c->describe);
	while (truncated) {
		_cleanup_free_ char *query = NULL, *tok_enc = NULL;
		struct s3_req r = { .method = "GET", .sink = SINK_MEM };
		int rc = -1;
		/* parameters in canonical (sorted) order */
		if (token && !(tok_enc = s3_uri_encode(token, false)))
			err_set_errno(ENOMEM, "out of memory");
		else if (asprintf(&query, "%s%s%slist-type=2&prefix=%s", tok_enc ? "continuation-token=" : "",
				  tok_enc ? tok_enc : "", tok_enc ? "&" : "", fp_enc) < 0)
			err_set_errno(ENOMEM, "out of memory");
		else {
			r.query = query;
			free(token);
			token = NULL;
			rc = s3_request(c, &r);
			if (rc == 0)
				rc = s3_list_parse(r.mem ? r.mem : "", r.mem_len, &keys, &n, &cap, &truncated, &token);
			req_release(&r);
		}
		if (rc < 0) {
			for (size_t i = 0; i < n; i++)
				free(keys[i]);
			free(keys);
			return err_prefix("cannot list '%s' in %s", prefix, c->describe);
		}
	}
	/* keys relative to the location */
	for (size_t i = 0; i < n; i++) {
		if (strip && strlen(keys[i]) >= strip)
			memmove(keys[i], keys[i] + strip, strlen(keys[i] + strip) + 1);
	}
	if (n)
		qsort(keys, n, sizeof(*keys), cmp_str);
	*keys_out = keys;
	*n_out = n;
	return 0;
}
