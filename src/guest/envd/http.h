/*
 * http.h - envd's HTTP/1.1 request parser: the request head, chunked transfer decoding and
 * query strings. Pure functions over caller buffers (no I/O, no allocation), so the same code
 * runs in the server and in the libFuzzer harness (fuzz/fuzz_envd_http.c).
 */
#ifndef ENVD_HTTP_H
#define ENVD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP_MAX_HEAD (64 * 1024) /* request line + headers; larger heads get 431 */
#define HTTP_MAX_HEADERS 64

struct http_header {
	const char *name;
	const char *value;
};

struct http_request {
	const char *method;
	const char *target; /* as sent: path?query */
	char *path;         /* percent-decoded path (points into the head buffer) */
	const char *query;  /* raw query string without '?', "" when absent */
	int minor;          /* HTTP/1.minor */
	struct http_header headers[HTTP_MAX_HEADERS];
	size_t nheaders;
	/* derived from the headers */
	int64_t content_length; /* -1 when absent */
	bool chunked;
	bool keep_alive;
	bool expect_continue;
};

/*
 * Parse a request head at the start of buf[0..len). The head is NUL-terminated in place, so
 * buf must stay alive while req is used. Returns the head length (> 0) when complete, 0 when
 * more bytes are needed, -1 on invalid input with *status set to the HTTP status to answer
 * (400 malformed, 431 head too large, 501 unsupported transfer coding, 505 bad version).
 */
ssize_t http_parse_head(char *buf, size_t len, struct http_request *req, int *status);

/* Case-insensitive header lookup; NULL when absent. */
const char *http_header(const struct http_request *req, const char *name);

/* Chunked transfer decoding, one step at a time over whatever input has arrived. */
struct http_chunked {
	int state;
	uint64_t remaining; /* data bytes left in the current chunk */
	size_t line;        /* length of the current size/extension/trailer line */
	bool digits;
	bool done;
};

/*
 * Consume framing from in[0..len) until chunk data is reached, the body ends or the input
 * runs out; at most max_data data bytes are handed out. On return *consumed bytes were used; when *data_len > 0, in[*data_off ..
 * *data_off + *data_len) is body data (included in *consumed). c->done is set after the last
 * chunk and its trailers. Returns 0, or -1 on malformed framing.
 */
int http_chunked_step(struct http_chunked *c, const char *in, size_t len, size_t max_data,
		      size_t *consumed, size_t *data_off, size_t *data_len);

/*
 * Find key in a raw query string and percent-decode its value ('+' is a space) into
 * out[0..outlen). Returns the value's length, -1 when absent, -2 when it does not fit or
 * holds a NUL byte.
 */
ssize_t http_query_get(const char *query, const char *key, char *out, size_t outlen);

/* Percent-decode in place; returns -1 on a bad escape or a NUL byte. */
int http_percent_decode(char *s);

/* Reason phrase for a status code. */
const char *http_reason(int status);

#endif
